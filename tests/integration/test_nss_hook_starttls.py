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


def config(port, mapped=True):
    return "[detector]\nprobe_timeout_ms = 3000\ndeadline_ms = 3000\n" + \
        ("starttls = %d:smtp\n" % port if mapped else "")


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
