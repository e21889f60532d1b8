"""The TLS-intercepting proxies of the test world: the attackers, not the
component under test.

  socat_mitm()   socat on MITM_ADDR: TLS in with the rogue certificate, TLS
                 out to the real server (SNI server.test, no verification),
                 one child per connection
  StarttlsMitm   the same for a STARTTLS protocol, in Python: the preamble
                 (canned), TLS with the rogue certificate to the victim, and
                 the same preamble + TLS as a client to the real server,
                 relayed both ways
"""

import os
import socket
import ssl

from . import WorldError
from .ports import HOST, MITM_ADDR, REAL_ADDR, wait_tls
from .processes import Process
from .relay import relay
from .services import TcpService, close_quietly
from .starttls import IO_TIMEOUT, starttls_client, starttls_server


def socat_mitm(name, directory, listen_port, upstream_port, rogue, verbose=False):
    """socat: TLS in on MITM_ADDR:listen_port with the rogue Cert, TLS out
    to REAL_ADDR:upstream_port (SNI server.test, no verification), one
    child per connection; its log in directory.  Up when this returns.
    verbose (socat -v): the log holds every plaintext chunk it relays, '>'
    from the victim to the real server, '<' back."""
    proc = Process("socat " + name,
                   ["socat"] + (["-v"] if verbose else []) +
                   ["OPENSSL-LISTEN:%d,bind=%s,reuseaddr,fork,cert=%s,key=%s,verify=0"
                    % (listen_port, MITM_ADDR, rogue.crt, rogue.key),
                    "OPENSSL:%s:%d,verify=0,snihost=%s" % (REAL_ADDR, upstream_port, HOST)],
                   os.path.join(directory, "socat-%s.log" % name))
    try:
        wait_tls(MITM_ADDR, listen_port, proc)
    except BaseException:
        proc.stop()
        raise
    return proc


class StarttlsMitm(TcpService):
    """A STARTTLS-aware TLS-intercepting proxy on MITM_ADDR:port: the
    preamble (canned), TLS with the rogue certificate to the victim, and the
    same preamble + TLS as a client to the real server, relayed both ways."""
    kind = "starttls-mitm"
    LIFETIME = 30.0

    def __init__(self, proto, port, rogue, upstream):
        self.proto, self.upstream = proto, upstream
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(rogue.crt, rogue.key)
        self.intercepted = 0            # victims that reached our TLS
        self.tls_done = 0               # victims whose TLS with us completed
        super().__init__(MITM_ADDR, port)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _serve(self, conn):
        up = None
        try:
            conn.settimeout(IO_TIMEOUT)
            starttls_server(self.proto, conn)
            with self._lock:
                self.intercepted += 1
            victim = self.ctx.wrap_socket(conn, server_side=True)
            with self._lock:
                self.tls_done += 1
            up = socket.create_connection(self.upstream, timeout=IO_TIMEOUT)
            starttls_client(self.proto, up)
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.check_hostname = False
            cctx.verify_mode = ssl.CERT_NONE
            up = cctx.wrap_socket(up, server_hostname=HOST)
            relay(victim, up, self._stop, self.LIFETIME, bufsize=16384)
        except (OSError, ssl.SSLError, WorldError):
            pass    # DetecTor's probes hang up after the certificate
        finally:
            close_quietly(up, conn)
