"""No unchecked resumption (issue 14): a TLS session that DetecTor accepted
without a quorum's confirmation (the spheres could not decide and
`on_undecided = accept` let it through) must not be resumable, or the next
connection resumes it, shows no certificate, and DetecTor never checks
again while the session lives.

A resuming client (tests/hook/nbclient with NSS's session cache, two
connections one after the other in one process, each reporting
SSL_GetChannelInfo's `resumed`) against a real TLS server (Python's ssl:
session IDs and tickets for TLS 1.2, NewSessionTicket for TLS 1.3) on the
clean path:

  * every sphere down, on_undecided = accept: both connections are full
    handshakes and DetecTor decides on each;
  * honest spheres (a quorum's ACCEPT): the second connection resumes, as
    with stock NSS (the control: the client and server do resume);
  * the same without DetecTor at all: the second connection resumes.
"""

import re
import ssl

import pytest

from test_nss_hook import NBCLIENT, run_app
from test_reroute import MarkerServer
from test_reroute_nss import nw  # noqa: F401 (the world: servers, NSS db, spheres)
from testworld import WorldError
from testworld.ports import HOST, REAL_ADDR, free_port
from testworld.socks5 import Socks5Server


class ResumingServer(MarkerServer):
    """The marker server, closing each connection cleanly (close_notify):
    OpenSSL keeps a TLS 1.2 session resumable only after a clean shutdown."""
    kind = "resuming-server"

    def _serve(self, conn):
        try:
            conn.settimeout(10)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            tls.recv(4096)
            tls.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + self.marker.encode())
            tls.unwrap()
        except (OSError, ValueError, ssl.SSLError, WorldError):
            pass
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(nw):  # noqa: F811
    s = ResumingServer(REAL_ADDR, free_port(REAL_ADDR), nw.pki.real, nw.real_marker)
    yield s
    s.stop()

ACCEPT_UNDECIDED = "[detector]\non_undecided = accept\ncache = off\n"
VERSIONS = [(), ("tls12",), ("blocking",)]
IDS = ["tls13", "tls12", "tls13-blocking"]


def two_connections(nw, server, *words):
    return [NBCLIENT, nw.db, HOST, str(server.port), REAL_ADDR, "2", "cache", "fetch", *words]


def dead_spheres():
    """Five sphere addresses nothing listens on: every probe is refused."""
    spheres = [Socks5Server({}) for _ in range(5)]
    for s in spheres:
        s.stop()
    return ",".join(s.address for s in spheres)


def resumed(app):
    return [int(x) for x in re.findall(r"^resumed: (\d)$", app.out, re.M)]


def decisions(app):
    """DetecTor's decisions, one per handshake it was asked about."""
    return re.findall(r"^DetecTor\[\d+\]: %s:\d+ (accepted|REFUSED)" % re.escape(HOST),
                      app.err, re.M)


@pytest.mark.parametrize("words", VERSIONS, ids=IDS)
def test_a_session_accepted_undecided_is_not_resumed(nw, server, tmpdir_, words):
    app = run_app(None, tmpdir_, two_connections(nw, server, *words), REAL_ADDR,
                  config=ACCEPT_UNDECIDED, spheres=dead_spheres())
    assert re.findall(r"^result: (.*)$", app.out, re.M) == ["ok", "ok"], app
    assert app.out.count(nw.real_marker) == 2, app
    assert resumed(app) == [0, 0], "the unconfirmed session was resumed:\n%s" % app
    assert len(decisions(app)) == 2, "DetecTor must decide on both handshakes:\n%s" % app
    assert app.err.count("session not resumable") == 2, app


@pytest.mark.parametrize("words", VERSIONS, ids=IDS)
def test_a_session_a_quorum_accepted_is_resumed(nw, server, tmpdir_, words):
    spheres = nw.start_spheres()
    app = run_app(None, tmpdir_, two_connections(nw, server, *words), REAL_ADDR,
                  config="[detector]\ncache = off\n", spheres=spheres)
    assert re.findall(r"^result: (.*)$", app.out, re.M) == ["ok", "ok"], app
    assert resumed(app) == [0, 1], "a confirmed session must stay resumable:\n%s" % app
    assert decisions(app) == ["accepted"], app
    assert "not resumable" not in app.err, app


@pytest.mark.parametrize("words", VERSIONS, ids=IDS)
def test_stock_nss_resumes(nw, server, tmpdir_, words):
    app = run_app(None, tmpdir_, two_connections(nw, server, *words), REAL_ADDR, detector=False,
                  spheres=dead_spheres())
    assert resumed(app) == [0, 1], app
