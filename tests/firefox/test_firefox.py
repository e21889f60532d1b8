"""Debian's Firefox ESR, unmodified, with DetecTor's co-release libssl3.so.

Headless firefox-esr loads https://server.test:PORT/ from a small HTTPS
server that records every HTTP request it is sent; a private /etc/hosts in
a mount namespace sends server.test to the rogue-CA MITM of the test world
(127.0.0.3, socat, relaying to the real server) or to the real server
(127.0.0.2).  The profile's cert9.db trusts the test CA, which also signed
the MITM's certificate (a compelled CA), so stock Firefox accepts the MITM.

  stock        /usr/lib/firefox-esr/firefox-esr itself, its own libssl3.so:
               the page loads through the MITM (the attack works).
  co-release   a folder of symlinks to /usr/lib/firefox-esr with a copy of
               the program and the co-release libssl3.so (make corelease):
               through the MITM no request reaches the server, DetecTor's
               log names the host and the verdict, Firefox shows its error
               page (screenshot kept under tests/firefox/output/); on the
               clean path the page loads and the spheres were probed.

When the installed firefox-esr has no co-release descriptor (or is not
installed), every test skips, naming the missing co-release and the NSS
version the installed Firefox bundles.
"""

import http.server
import os
import ssl
import threading
import uuid

import pytest

from firefox import load_page, make_profile
from testworld.mitm import socat_mitm
from testworld.mozilla import accepted, assert_refused_by_probes, assert_stock, checks, \
    detector_env, find_corelease, libssl_beside, probes_seen, sphere_marks
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, free_low_port
from testworld.fixtures import protected, work, world  # noqa: F401 (fixtures)

OUTPUT = os.environ.get("DETECTOR_TEST_OUTPUT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "output")

CORELEASE, WHY_NOT = find_corelease("firefox-esr")
PROGRAM = "firefox-esr"         # in CORELEASE.folder (or its copy: protected)
pytestmark = pytest.mark.skipif(CORELEASE is None, reason=WHY_NOT or "")
if CORELEASE is None:
    print("\n*** test_firefox: SKIPPED: %s ***\n" % WHY_NOT)


class PageServer:
    """HTTPS on REAL_ADDR:port with the real certificate; answers every GET
    with a page carrying a marker only it sends, and records the request
    paths.  TLS handshakes (the spheres' probes) that send no request are
    not requests."""

    def __init__(self, cert, port):
        self.marker = "detector-real-server-" + uuid.uuid4().hex[:12]
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                body = ("<!doctype html><title>%s</title><body style='font: 32px sans-serif'>"
                        "<h1>The real server.test</h1><p>%s</p></body>"
                        % (owner.marker, owner.marker)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass     # the spheres hang up after the certificate

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert.crt, cert.key)
        self.httpd = Server((REAL_ADDR, port), Handler)
        # The handshake runs in the request's thread, not in accept().
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                            do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def site(world):
    """The page server on REAL_ADDR:port and a socat MITM on MITM_ADDR:port."""
    port = free_low_port(REAL_ADDR, MITM_ADDR)
    server = PageServer(world.real, port)
    mitm = socat_mitm("firefox", world.dir, port, port, world.rogue)
    server.port, server.url = port, "https://%s:%d/" % (HOST, port)
    yield server
    mitm.stop()
    server.stop()


def run(world, site, work, name, program, addr, enabled=True, config=None):
    d = os.path.join(work, name)
    os.mkdir(d)
    profile = make_profile(os.path.join(d, "profile"), world.ca.crt)
    os.makedirs(OUTPUT, exist_ok=True)
    shot = os.path.join(OUTPUT, "firefox-%s.png" % name)
    if os.path.exists(shot):
        os.unlink(shot)
    env = detector_env(world, d, enabled, config)
    before = len(site.requests)
    load = load_page(program, profile, site.url + name, addr, d, shot, env)
    load.requests = site.requests[before:]
    print(load)
    print("requests the real server got:", load.requests)
    return load


def test_stock_firefox_loads_the_page_through_the_mitm(world, site, work):
    m = sphere_marks(world)
    load = run(world, site, work, "stock-mitm", os.path.join(CORELEASE.folder, PROGRAM),
               MITM_ADDR)
    assert_stock(world, m, os.path.join(CORELEASE.folder, PROGRAM), site.port, load)
    assert load.requests[:1] == ["/stock-mitm"] and site.marker in load.source, \
        "stock Firefox must load the real server's page through the MITM (the attack " \
        "works):\n%s" % load
    assert load.nav_error is None and load.rc == 0, load


def test_corelease_firefox_refuses_the_mitm(world, site, work, protected):
    m = sphere_marks(world)
    load = run(world, site, work, "detector-mitm", protected, MITM_ADDR)
    assert_refused_by_probes(world, m, protected, site.port, load)
    assert load.requests == [], \
        "no request may reach the real server through the MITM:\n%s" % load
    assert "possible man-in-the-middle" in load.err or "differs" in load.err, load
    assert site.marker not in load.source, load
    # Firefox shows its own error page for the refusal ("Secure Connection
    # Failed", nssFailure2, no override button), the screenshot of it kept
    # for people (docs/nss-hook.md, "What a Firefox user sees").  It needs
    # DetecTor's codes inside NSS's SSL range (detector_nss.h): at -0x3800
    # Firefox mapped them to NS_ERROR_FAILURE and the tab stayed blank.
    # Marionette's Navigate says where it ended ("Reached error page:
    # about:neterror?e=nssFailure2&u=...&d=%20"): d is empty because Firefox
    # takes the message from its own string bundle by PR_ErrorToName, which
    # has no DETECTOR_ERROR_* entry.
    nav = (load.nav_error or {}).get("message", "")
    assert "Reached error page: about:neterror?e=nssFailure2&" in nav, load
    assert 'data-l10n-id="nssFailure2-title"' in load.source, load.source
    assert "Secure Connection Failed" in load.source, load.source
    # (The error page's document reports readyState "interactive" to
    # Marionette, measured; its content is what is asserted above.)
    with open(load.screenshot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", load


def test_corelease_firefox_loads_the_clean_page(world, site, work, protected):
    m = sphere_marks(world)
    load = run(world, site, work, "detector-clean", protected, REAL_ADDR)
    assert load.libssl_loaded() == libssl_beside(protected), load
    assert load.nav_error is None and load.rc == 0, load
    assert load.requests and load.requests[0] == "/detector-clean", load
    assert site.marker in load.source, load
    assert accepted(load.err, site.port), load
    assert checks(load.err, site.port) == 1, \
        "one check for the page:\n%s" % load
    seen = probes_seen(world, m, site.port)
    assert 4 <= seen <= 5, "quorum 4 needs four real probes, one round: saw %d" % seen


def test_corelease_firefox_with_detector_disabled_is_stock_firefox(world, site, work, protected):
    # enabled = no: the co-release behaves as Firefox's own libssl3.so (the
    # MITM gets through, nothing is probed): the drop-in itself is sound.
    m = sphere_marks(world)
    load = run(world, site, work, "detector-disabled", protected, MITM_ADDR,
               config="[detector]\nenabled = no\n")
    assert load.libssl_loaded() == libssl_beside(protected), load
    assert load.requests[:1] == ["/detector-disabled"] and site.marker in load.source, load
    assert load.nav_error is None and load.rc == 0, load
    assert probes_seen(world, m, site.port) == 0, load
