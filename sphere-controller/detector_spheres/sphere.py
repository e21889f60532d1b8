"""One sphere: a tor client process, its torrc, its controller, its record.

Each sphere lives in STATE_DIR/NAME/: the torrc written for it, tor's data
directory (the same directory), tor's notice log, and sphere.json, the record
of the process this tool started (PID, torrc path, ports). `stop` only ever
signals a PID whose command line still names that torrc, so it ends exactly
the processes it started and never a recycled PID.

tor is launched with Stem's process API and queried with Stem's controller
(cookie authentication on 127.0.0.1): bootstrap phase, consensus, circuits,
signals. Nothing here reads tor's log to learn its state.
"""

import errno
import json
import os
import shutil
import signal
import socket
import time

import stem
import stem.control
import stem.process

CONTROL_ADDR = "127.0.0.1"
STOP_GRACE = 10.0           # seconds between SIGTERM and SIGKILL
SETSID = "/usr/bin/setsid"


class SphereError(Exception):
    """Something about one sphere's process failed; the message says what."""


def default_state_dir():
    """$XDG_STATE_HOME/detector/spheres (~/.local/state/... when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "detector", "spheres")


def find_tor(tor):
    """Absolute path of the tor binary, or SphereError saying how to get it."""
    path = shutil.which(tor)
    if not path:
        raise SphereError(
            "tor not found ('%s'): install Debian's 'tor' package (make deps) "
            "or set 'tor = /path/to/tor' in [spheres]" % tor)
    return path


def find_obfs4proxy(config):
    """SphereError unless obfs4proxy is there when an obfs4 bridge needs it."""
    if any(b.startswith("obfs4 ") for b in config.bridges) and \
            not os.access(config.obfs4proxy, os.X_OK):
        raise SphereError(
            "obfs4proxy not found ('%s'), needed by the obfs4 bridges: "
            "install Debian's 'obfs4proxy' package or set 'obfs4proxy = "
            "/path/to/obfs4proxy' in [spheres]" % config.obfs4proxy)


def _pid_alive(pid):
    """True unless the PID is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _addr(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Sphere:
    """A sphere as configured (cfg: config.SphereConfig) and/or as recorded."""

    def __init__(self, state_dir, name, cfg=None, config=None):
        self.name = name
        self.cfg = cfg
        self.config = config
        self.dir = os.path.join(state_dir, name)
        self.torrc = os.path.join(self.dir, "torrc")
        self.record_path = os.path.join(self.dir, "sphere.json")
        self.log = os.path.join(self.dir, "notice.log")
        self.record = self._read_record()

    @property
    def group(self):
        """The sphere this process is an instance of (its own name for the
        first instance)."""
        src = self.record or (self.cfg and self.cfg.to_json()) or {}
        return src.get("sphere") or self.name.split(".")[0]

    @property
    def instance(self):
        src = self.record or (self.cfg and self.cfg.to_json()) or {}
        return src.get("instance") or 1

    # ---- the record of what we started -------------------------------
    def _read_record(self):
        try:
            with open(self.record_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _write_record(self, rec):
        tmp = self.record_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rec, f, indent=1)
        os.replace(tmp, self.record_path)
        self.record = rec

    def _drop_record(self):
        for p in (self.record_path, os.path.join(self.dir, "tor.pid")):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self.record = None

    @property
    def control_port(self):
        if self.record:
            return self.record["control_port"]
        return self.cfg.control_port

    @property
    def socks(self):
        if self.record:
            return self.record["socks"]
        return _addr(self.config.listen, self.cfg.socks_port)

    def exit_restriction(self):
        src = self.record or (self.cfg and self.cfg.to_json()) or {}
        if src.get("fingerprints"):
            return {"fingerprints": src["fingerprints"]}
        return {"countries": src.get("countries", [])}

    def pid(self):
        """PID of the tor we started for this sphere, if it still runs."""
        if not self.record:
            return None
        pid = self.record.get("pid")
        if pid and _pid_alive(pid) and \
                self.record["torrc"].encode() in _cmdline(pid):
            return pid
        return None

    # ---- start -------------------------------------------------------
    def torrc_lines(self):
        """The torrc of this sphere: managed options, then [tor] extras."""
        c, s = self.config, self.cfg
        lines = [
            "DataDirectory " + self.dir,
            "PidFile " + os.path.join(self.dir, "tor.pid"),
            "Log notice stdout",            # read by Stem until launched
            "Log notice file " + self.log,
            "ClientOnly 1",
            "SocksPort " + _addr(c.listen, s.socks_port),
            "ControlPort " + _addr(CONTROL_ADDR, s.control_port),
            "CookieAuthentication 1",
            "ExitNodes " + s.exit_nodes(),
            "StrictNodes 1",
        ]
        lines += ["SocksPolicy " + p for p in c.socks_policy()]
        lines += c.bridge_torrc()
        lines += ["%s %s" % kv for kv in c.tor_options]
        return lines

    def check_ports(self):
        """SphereError unless the SOCKS and control ports can be bound."""
        for what, host, port in (("SOCKS", self.config.listen, self.cfg.socks_port),
                                 ("control", CONTROL_ADDR, self.cfg.control_port)):
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(fam, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError as e:
                    if e.errno == errno.EADDRNOTAVAIL:
                        raise SphereError(
                            "sphere %s: %s is not an address of this machine "
                            "(--listen must be one of its own addresses)"
                            % (self.name, host))
                    raise SphereError(
                        "sphere %s: %s port %s is already in use by another "
                        "program (%s); pick another port in the config or stop "
                        "that program" % (self.name, what, _addr(host, port),
                                          e.strerror))

    def launch(self, tor, timeout=60):
        """Write the torrc and launch tor with Stem; return its PID.

        tor runs as a daemon of its own session (setsid execs in place, so
        the PID Stem sees is tor's) and outlives this command.
        """
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        with open(self.torrc, "w") as f:
            f.write("# written by detector-spheres for sphere %s; do not edit\n"
                    % self.name)
            f.write("\n".join(self.torrc_lines()) + "\n")
        cmd, args = (SETSID, [tor]) if os.path.exists(SETSID) else (tor, [])
        try:
            proc = stem.process.launch_tor(
                cmd, args=args, torrc_path=self.torrc, completion_percent=0,
                timeout=timeout)
        except OSError as e:
            raise SphereError("sphere %s: tor did not start: %s (torrc %s, "
                              "log %s)" % (self.name, e, self.torrc, self.log))
        self._write_record({
            "name": self.name, "sphere": self.cfg.sphere,
            "instance": self.cfg.instance, "pid": proc.pid,
            "torrc": self.torrc,
            "socks": _addr(self.config.listen, self.cfg.socks_port),
            "control_port": self.cfg.control_port,
            "countries": self.cfg.countries,
            "fingerprints": self.cfg.fingerprints,
            "allow": [str(n) for n in self.config.allow],
            "started": time.time(),
        })
        # Stem closed tor's stdout: from now on tor logs to its file only.
        try:
            with self.controller() as ctl:
                ctl.set_conf("Log", "notice file " + self.log)
        except (stem.ControllerError, stem.SocketError, OSError):
            pass        # harmless: tor ignores writes to a closed stdout
        return proc.pid

    # ---- stop --------------------------------------------------------
    def stop(self, grace=STOP_GRACE):
        """End the tor we started: SIGTERM, SIGKILL after `grace` seconds.
        Returns a sentence for the user."""
        if not self.record:
            return "not running"
        pid = self.pid()
        if pid is None:
            old = self.record.get("pid")
            self._drop_record()
            return "not running (recorded pid %s is gone or no longer its " \
                "tor)" % old
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        how = "stopped"
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            how = "killed (SIGTERM ignored for %.0f s)" % grace
            while _pid_alive(pid):
                time.sleep(0.05)
        self._drop_record()
        return "%s (pid %d)" % (how, pid)

    # ---- controller queries ------------------------------------------
    def controller(self):
        ctl = stem.control.Controller.from_port(address=CONTROL_ADDR,
                                                port=self.control_port)
        try:
            ctl.authenticate()          # cookie auth, file found via PROTOCOLINFO
        except BaseException:
            ctl.close()
            raise
        return ctl


def bootstrap(ctl):
    """GETINFO status/bootstrap-phase as a dict: progress, tag, summary, and
    warning/reason/recommendation when tor reports a problem."""
    phase = ctl.get_info("status/bootstrap-phase")
    out = {"progress": 0, "tag": None, "summary": None}
    import shlex
    try:
        parts = shlex.split(phase)
    except ValueError:
        parts = phase.split()
    for part in parts:
        if "=" in part:
            k, v = part.split("=", 1)
            k = k.lower()
            if k == "progress":
                out["progress"] = int(v)
            elif k in ("tag", "summary", "warning", "reason", "recommendation",
                       "count", "hostaddr"):
                out[k] = v
    if parts:
        out["severity"] = parts[0]
    return out


def countries_of(ctl, addresses):
    """{address: lower-case country code or '??'} via GETINFO ip-to-country."""
    addresses = sorted(set(addresses))
    if not addresses:
        return {}
    try:
        info = ctl.get_info(["ip-to-country/" + a for a in addresses])
    except (stem.ControllerError, stem.SocketError):
        return {a: "??" for a in addresses}
    return {a: (info.get("ip-to-country/" + a) or "??").lower()
            for a in addresses}


def usable_exits(ctl, restriction):
    """Running exit relays of the consensus that match the sphere's ExitNodes:
    [(fingerprint, nickname, address, country)]."""
    exits = [e for e in ctl.get_network_statuses()
             if "Exit" in e.flags and "Running" in e.flags
             and "BadExit" not in e.flags]
    if restriction.get("fingerprints"):
        fps = set(restriction["fingerprints"])
        exits = [e for e in exits if e.fingerprint in fps]
        cc = countries_of(ctl, [e.address for e in exits])
        return [(e.fingerprint, e.nickname, e.address, cc[e.address])
                for e in exits]
    cc = countries_of(ctl, [e.address for e in exits])
    want = set(restriction.get("countries", []))
    return [(e.fingerprint, e.nickname, e.address, cc[e.address])
            for e in exits if cc[e.address] in want]


def circuits(ctl):
    """Built exit circuits: [{id, purpose, path, exit}], exit with its
    address and country. Tor >= 0.4.8 carries streams over conflux
    (multipath) sets too, whose legs all end at one exit: purpose
    CONFLUX_LINKED. Internal circuits (directory fetches, one-hop tunnels,
    onion-service vanguards) end at relays that are no exit of the sphere,
    so they are left out."""
    out = []
    built = [c for c in ctl.get_circuits()
             if c.status == "BUILT" and c.path
             and c.purpose in ("GENERAL", "CONFLUX_LINKED")
             and not {"IS_INTERNAL", "ONEHOP_TUNNEL"} & set(c.build_flags or ())]
    addrs = {}
    for c in built:
        fp = c.path[-1][0]
        if fp not in addrs:
            try:
                addrs[fp] = ctl.get_network_status(fp).address
            except (stem.ControllerError, ValueError):
                addrs[fp] = None
    cc = countries_of(ctl, [a for a in addrs.values() if a])
    for c in built:
        fp, nick = c.path[-1]
        out.append({
            "id": c.id,
            "purpose": c.purpose,
            "path": [{"fingerprint": f, "nickname": n} for f, n in c.path],
            "exit": {"fingerprint": fp, "nickname": nick,
                     "address": addrs[fp],
                     "country": cc.get(addrs[fp], "??")},
        })
    return out
