"""TcpService: a Python listener on a free loopback port, served by daemon
threads and shut by stop(): listener closed, every accepted connection (and
every upstream connection a subclass registers) closed, threads joined.

Each misbehaving peer, relay, SOCKS5 server and Python TLS server of the
test world is a subclass that says what handle(conn) does.
"""

import socket
import threading

from .ports import SPHERE_ADDR, free_port


def close_quietly(*socks):
    """Close every socket given (None is skipped), ignoring errors."""
    for s in socks:
        if s is not None:
            try:
                s.close()
            except OSError:
                pass


class TcpService:
    """A listener on a free loopback port, served by daemon threads and shut
    by stop(): listener closed, every accepted connection closed."""

    kind = "service"

    def __init__(self, addr=SPHERE_ADDR, port=None):
        self.addr = addr
        self.port = port or free_port(addr)
        self.address = "%s:%d" % (addr, self.port)
        self.connections = 0
        self._stop = threading.Event()
        self._conns = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((addr, self.port))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True,
                                          name="%s %s" % (self.kind, self.address))]
        self._threads[0].start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            self.handle(conn)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _connect(self, addr, timeout=5):
        """A connection to addr, closed by stop() with the others."""
        up = socket.create_connection(addr, timeout=timeout)
        with self._lock:
            self._conns.append(up)
        return up

    def handle(self, conn):
        raise NotImplementedError

    def stop(self):
        self._stop.set()
        self._sock.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        close_quietly(*conns)
        for t in threads:
            t.join(2)
