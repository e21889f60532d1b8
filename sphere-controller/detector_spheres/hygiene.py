"""Circuit hygiene: close a sphere's circuits once their isolated streams end.

Every check reaches a sphere with a fresh SOCKS username/password, so tor
(IsolateSOCKSAuth) never lets another check use its circuit. Left alone,
tor keeps such a circuit open until MaxCircuitDirtiness (10 minutes) has
passed since its first stream: at 15 checks a second a sphere holds
thousands of open circuits, and its CPU per check grows with them (issue
16). A CircuitJanitor watches one tor through Stem and closes every
circuit that carried a stream with SOCKS credentials as soon as no stream
uses it any more (after GRACE seconds, for a client that reuses its
credentials at once). Clean circuits tor built ahead of time (no stream
yet, no isolation) are left to tor: the next check takes one of them.

tor 0.4.8+ carries streams over conflux sets: two circuits ("legs") with
one CONFLUX_ID, of which only the leg a stream was attached to names the
SOCKS credentials. A used set is closed leg by leg.

Two sources, so that nothing is missed: STREAM events (a circuit is
closed GRACE seconds after its last isolated stream ended) and a periodic
sweep of GETINFO circuit-status and stream-status (circuits used before the
janitor connected, or whose events were lost when a controller
reconnected).
"""

import threading
import time

import stem
import stem.control
from stem.control import EventType

GRACE = 1.0             # seconds a used circuit may stay idle
SWEEP_INTERVAL = 5.0    # seconds between two full sweeps
ATTACHED = ("NEW", "NEWRESOLVE", "SENTCONNECT", "SENTRESOLVE", "SUCCEEDED",
            "REMAP")
ENDED = ("CLOSED", "FAILED", "DETACHED")


def _isolated(ev):
    """True if a STREAM event or a circuit names SOCKS credentials."""
    kw = getattr(ev, "keyword_args", None) or {}
    return bool(kw.get("SOCKS_USERNAME") or kw.get("SOCKS_PASSWORD"))


class CircuitJanitor:
    """Closes one tor's used isolated circuits. `ctl`: an authenticated
    stem Controller this object owns from now on (close() closes it)."""

    def __init__(self, name, ctl, grace=GRACE, clock=time.monotonic):
        self.name = name
        self.ctl = ctl
        self.grace = grace
        self.clock = clock
        self.lock = threading.Lock()
        self.streams = {}       # open stream id -> circuit id
        self.used = set()       # circuits that carried an isolated stream
        self.idle = {}          # used circuit id -> when its last stream ended
        self.conflux = {}       # circuit id -> CONFLUX_ID
        self.closed = 0         # circuits this janitor closed
        self.last_sweep = None

    def start(self):
        self.ctl.add_event_listener(self.on_stream, EventType.STREAM)
        self.ctl.add_event_listener(self.on_circ, EventType.CIRC)
        self.sweep()

    def close(self):
        try:
            self.ctl.close()
        except Exception:       # noqa: BLE001 - closing a dead socket
            pass

    @property
    def alive(self):
        return self.ctl.is_alive()

    # ---- events (Stem's event thread) ---------------------------------
    def on_circ(self, ev):
        with self.lock:
            if ev.status in ("CLOSED", "FAILED"):
                self._forget(ev.id)
                return
            cid = ev.keyword_args.get("CONFLUX_ID")
            if cid:
                self.conflux[ev.id] = cid

    def on_stream(self, ev):
        circ = ev.circ_id if ev.circ_id and ev.circ_id != "0" else None
        with self.lock:
            if ev.status in ENDED:
                circ = self.streams.pop(ev.id, None) or circ
                if circ and circ in self.used and not self._busy(circ):
                    self.idle.setdefault(circ, self.clock())
            elif ev.status in ATTACHED and circ:
                self.streams[ev.id] = circ
                self.idle.pop(circ, None)
                if _isolated(ev):
                    self.used.add(circ)

    # ---- closing (the caller's thread) -------------------------------
    def _busy(self, circ):
        """A stream uses the circuit or a leg of its conflux set."""
        legs = self._legs(circ)
        return any(c in legs for c in self.streams.values())

    def _legs(self, circ):
        cid = self.conflux.get(circ)
        if not cid:
            return {circ}
        return {c for c, x in self.conflux.items() if x == cid} | {circ}

    def _forget(self, circ):
        self.used.discard(circ)
        self.idle.pop(circ, None)
        self.conflux.pop(circ, None)

    def close_idle(self):
        """Close every used circuit idle for GRACE seconds; returns how many
        circuits were closed."""
        now = self.clock()
        with self.lock:
            due = [c for c, t in self.idle.items()
                   if now - t >= self.grace and not self._busy(c)]
            victims = set()
            for c in due:
                victims |= self._legs(c)
                self.idle.pop(c, None)
        n = 0
        for c in sorted(victims, key=lambda x: int(x) if x.isdigit() else 0):
            try:
                # IfUnused: tor itself refuses if a stream got attached
                # after the decision above (a client reusing credentials).
                self.ctl.close_circuit(c, "IfUnused")
                n += 1
            except (stem.InvalidArguments, stem.InvalidRequest,
                    stem.ControllerError):
                pass            # already gone (tor closed its partner leg)
            with self.lock:
                self._forget(c)
        self.closed += n
        return n

    def sweep(self):
        """Mark as idle every circuit that names SOCKS credentials (or is a
        leg of such a conflux set) and carries no stream, as tor reports
        them now."""
        circuits = self.ctl.get_circuits()
        streams = self.ctl.get_streams()
        now = self.clock()
        with self.lock:
            open_ids = {st.id for st in streams}
            for sid in [s for s in self.streams if s not in open_ids]:
                del self.streams[sid]       # its end event was lost
            for st in streams:
                if st.circ_id and st.circ_id != "0":
                    self.streams[st.id] = st.circ_id
            for c in circuits:
                cid = c.keyword_args.get("CONFLUX_ID")
                if cid:
                    self.conflux[c.id] = cid
                if c.status == "BUILT" and (c.socks_username or
                                            c.socks_password):
                    self.used.add(c.id)
            for c in list(self.used):
                if not self._busy(c):
                    self.idle.setdefault(c, now)
        self.last_sweep = now


def count_circuits(ctl):
    """(open circuits, of which used by an isolated stream) of one tor,
    conflux partner legs of a used set counted as used."""
    circuits = [c for c in ctl.get_circuits() if c.status != "CLOSED"]
    used_sets = {c.keyword_args.get("CONFLUX_ID") for c in circuits
                 if c.socks_username or c.socks_password}
    used = [c for c in circuits if c.socks_username or c.socks_password
            or (c.keyword_args.get("CONFLUX_ID") or "") in used_sets - {None}]
    return len(circuits), len(used)
