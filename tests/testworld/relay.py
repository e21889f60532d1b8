"""The one TCP relay loop of the test world, and the relays built on it.

relay() copies bytes both ways between two connected sockets (plain or
TLS) until one side closes, a stop event is set or a lifetime runs out;
options cut the upstream's answer after `limit` bytes, deliver it one
byte per `drip` seconds, or show each chunk to an observer.  The SOCKS5
test server, the STARTTLS MITM and the relays below all use it.

  Relay          a listener that connects each client to `upstream` and
                 relays, after an optional delay, cut after `limit` bytes
  SlowLink       a Relay holding each connection `delay` seconds first: a
                 slow network path in front of a real server

tlsbytes.CountingRelay (bench P3) is a Relay too.
"""

import select
import time

from .services import TcpService, close_quietly

SLOW_LINK_DELAY = 0.4        # seconds the slow link holds each connection
LIFETIME = 30.0              # seconds any one relayed connection may last


def relay(client, upstream, stop, lifetime=LIFETIME, limit=None, drip=None,
          observe=None, bufsize=65536):
    """Copy bytes between client and upstream, both ways, until either side
    closes, `stop` (a threading.Event) is set or `lifetime` seconds pass.

    limit: return once `limit` bytes of upstream's answer were delivered
    (the rest is dropped).  drip: deliver upstream's answer one byte per
    `drip` seconds.  observe(from_client, data): called with each chunk
    read, before it is forwarded.  Socket errors propagate to the caller.
    """
    sent = 0
    end = time.monotonic() + lifetime
    while not stop.is_set() and time.monotonic() < end:
        r, _, _ = select.select([client, upstream], [], [], 0.2)
        for s in r:
            data = s.recv(bufsize)
            if not data:
                return
            if observe is not None:
                observe(s is client, data)
            if s is client:
                upstream.sendall(data)
                continue
            if limit is not None:
                data = data[:limit - sent]
            if drip is None:
                client.sendall(data)
                sent += len(data)
            else:
                for b in data:
                    if stop.wait(drip):
                        return
                    client.sendall(bytes([b]))
                    sent += 1
            if limit is not None and sent >= limit:
                return


class Relay(TcpService):
    """Connects each client to `upstream` (addr, port) after `delay`
    seconds and relays for at most `lifetime` seconds; with `limit`, closes
    after that many bytes of the upstream's answer."""
    kind = "relay"

    def __init__(self, addr, upstream, delay=0.0, limit=None, lifetime=LIFETIME,
                 port=None):
        self.upstream, self.delay = upstream, delay
        self.limit, self.lifetime = limit, lifetime
        super().__init__(addr, port)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def observer(self, conn):
        """A per-connection observe() for relay(), or None."""
        return None

    def closed(self, conn):
        """Called when the connection from conn has ended."""

    def _serve(self, conn):
        up = None
        observe = self.observer(conn)
        try:
            if self.delay and self._stop.wait(self.delay):
                return
            up = self._connect(self.upstream)
            relay(conn, up, self._stop, self.lifetime, limit=self.limit,
                  observe=observe)
        except (OSError, ValueError):
            pass
        finally:
            close_quietly(conn, up)
            self.closed(conn)


class SlowLink(Relay):
    """A relay that holds each connection for `delay` seconds before
    connecting to upstream and copying bytes both ways: a slow network path
    in front of a real server."""
    kind = "slow-link"

    def __init__(self, addr, upstream, delay=SLOW_LINK_DELAY, port=None):
        super().__init__(addr, upstream, delay=delay, port=port)
