"""The enhanced NSS with an application that speaks SMTP's plaintext
STARTTLS preamble itself (as a mail client does) and then hands the socket
to NSS: DetecTor's probes must speak the same preamble, or every sphere
fails and the check can only end undecided.

The port's usual preamble is used (587: SMTP); the test servers listen on
free ports, so the `starttls` configuration key maps this one, which is
also what a user with a non-standard submission port does.  Real postfix
(tests/testworld/mailservers.py, the fixture `mail`); the MITM speaks the
preamble and presents the world's rogue certificate.
"""

import re

from test_nss_hook import run_app
from test_nss_hook_async import asyncclient, results
from testworld.ports import MITM_ADDR, REAL_ADDR


def config(port, mapped=True, proto="smtp"):
    return "[detector]\nprobe_timeout_ms = 3000\ndeadline_ms = 3000\n" + \
        ("starttls = %d:%s\n" % (port, proto) if mapped else "")


def test_smtp_client_clean_path_probed_with_starttls(world, nssdb, tmpdir_, mail):
    port = mail.port["smtp"]
    app = run_app(world, tmpdir_, asyncclient(nssdb, port, REAL_ADDR, "--smtp"), REAL_ADDR,
                  config=config(port))
    assert results(app) == ["ok"], app
    assert "accepted (accept)" in app.err, app


def test_smtp_client_mitm_refused(world, nssdb, tmpdir_, mail):
    port = mail.port["smtp"]
    app = run_app(world, tmpdir_, asyncclient(nssdb, port, MITM_ADDR, "--smtp"), MITM_ADDR,
                  config=config(port))
    [result] = results(app)
    assert result.startswith("failed DETECTOR_ERROR_MITM"), app


def test_without_the_preamble_the_spheres_cannot_confirm(world, nssdb, tmpdir_, mail):
    # The same, with the port not known as SMTP: plain-TLS probes to an
    # SMTP server fail, and the MITM is only "undecided" (accepted by the
    # default policy): why the preamble matters.
    port = mail.port["smtp"]
    app = run_app(world, tmpdir_, asyncclient(nssdb, port, MITM_ADDR, "--smtp"), MITM_ADDR,
                  config=config(port, mapped=False))
    assert results(app) == ["ok"], app
    assert "accepted (undecided, on_undecided = accept)" in app.err, app
    assert "0 disagreed, 5 failed" in app.err, app


def test_smtp_client_through_the_mitm_is_rerouted_to_postfix(world, nssdb, tmpdir_, mail):
    # on_mitm = reroute (issue 12, acceptance 3): the application spoke its
    # EHLO/STARTTLS to the MITM; the tunnel through a sphere speaks the same
    # preamble to the real postfix, the handshake starts over there, and the
    # application's EHLO inside TLS is answered by postfix.
    port = mail.port["smtp"]
    app = run_app(world, tmpdir_, asyncclient(nssdb, port, MITM_ADDR, "--smtp", "--fetch"),
                  MITM_ADDR, config=config(port) + "on_mitm = reroute\n")
    assert results(app) == ["ok"], app
    assert "REROUTED server.test:%d via" % port in app.err, app
    assert re.search(r"^response: 250[- ]", app.out, re.M), app


def test_xmpp_client_clean_path_probed_with_starttls(world, nssdb, tmpdir_, mail):
    port = mail.port["xmpp"]
    app = run_app(world, tmpdir_, asyncclient(nssdb, port, REAL_ADDR, "--xmpp"), REAL_ADDR,
                  config=config(port, proto="xmpp"))
    assert results(app) == ["ok"], app
    assert "accepted (accept)" in app.err, app


def test_xmpp_client_mitm_refused(world, nssdb, tmpdir_, mail):
    port = mail.port["xmpp"]
    app = run_app(world, tmpdir_, asyncclient(nssdb, port, MITM_ADDR, "--xmpp"), MITM_ADDR,
                  config=config(port, proto="xmpp") + "on_mitm = refuse\n")
    [result] = results(app)
    assert result.startswith("failed DETECTOR_ERROR_MITM"), app


def test_xmpp_client_through_the_mitm_is_rerouted_to_prosody(world, nssdb, tmpdir_, mail):
    # The same as the SMTP test above with XMPP: the application's stream
    # header, <starttls/> and <proceed/> went to the MITM; the tunnel speaks
    # them to the real prosody, and the stream the application restarts
    # inside TLS is answered by prosody's features after TLS (SASL; the
    # MITM's canned features offer only STARTTLS).  The application's TLS
    # with the MITM never completed: no application byte reached it.
    port = mail.port["xmpp"]
    mitm = mail.mitm["xmpp"]
    intercepted, tls_done = mitm.intercepted, mitm.tls_done
    app = run_app(world, tmpdir_, asyncclient(nssdb, port, MITM_ADDR, "--xmpp", "--fetch"),
                  MITM_ADDR, config=config(port, proto="xmpp") + "on_mitm = reroute\n")
    assert results(app) == ["ok"], app
    assert "REROUTED server.test:%d via" % port in app.err, app
    assert re.search(r"^response: .*<stream:features.*"
                     r"urn:ietf:params:xml:ns:xmpp-sasl.*</stream:features>$", app.out,
                     re.M), app
    assert mitm.intercepted > intercepted and mitm.tls_done == tls_done, app
