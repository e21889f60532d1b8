"""Configuration files anyone could change are refused, not obeyed (issue 13
item 3).

A configuration that says `enabled = no` switches DetecTor off, and
detector-monitor's `pem =` names the key a service must show: whoever can
write such a file, or the folder holding it, decides what DetecTor does.
So libdetector (for the NSS integration, sphere-probe, detector-monitor's
engine configuration) and detector-monitor (monitor.conf, its pem files)
obey a file only if it is not a symlink, belongs to the user or root, and
neither group nor others may write it or its folder (detector/lib/
filetrust.h).  Otherwise the program fails closed: unmodified tstclnt under
detector-run refuses the handshake with DETECTOR_ERROR_CONFIG, sphere-probe
and detector-monitor exit 3; the message names the file, the rule broken
and what to do.  Each case has a control: the same file, made private, is
obeyed.
"""

import os
import shutil

import pytest

from test_monitor import Monitor, service
from test_nss_hook import run_app, tstclnt
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR

OFF = "[detector]\nenabled = no\n"


def write(path, text, mode):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def untrusted(tmpdir, how, text):
    """A configuration file holding text that breaks one rule (how); returns
    (path, the file or folder at fault, words the message must hold)."""
    if how == "file-0666":
        path = write(os.path.join(tmpdir, "detector.conf"), text, 0o666)
        return path, path, "chmod go-w %s" % path
    if how == "file-0620":
        path = write(os.path.join(tmpdir, "detector.conf"), text, 0o620)
        return path, path, "chmod go-w %s" % path
    if how == "other-owner":
        path = write(os.path.join(tmpdir, "detector.conf"), text, 0o644)
        os.chown(path, 65534, 65534)
        return path, path, "belongs to uid 65534"
    if how == "folder-0775":
        d = os.path.join(tmpdir, "shared")
        os.mkdir(d)
        os.chmod(d, 0o775)
        path = write(os.path.join(d, "detector.conf"), text, 0o644)
        return path, d, "chmod go-w %s" % d
    if how == "folder-1777":
        d = os.path.join(tmpdir, "sticky")
        os.mkdir(d)
        os.chmod(d, 0o1777)
        path = write(os.path.join(d, "detector.conf"), text, 0o644)
        return path, d, "chmod go-w %s" % d
    if how == "symlink":
        real = write(os.path.join(tmpdir, "real.conf"), text, 0o600)
        path = os.path.join(tmpdir, "detector.conf")
        os.symlink(real, path)
        return path, path, "symlink"
    raise AssertionError(how)


CASES = ["file-0666", "file-0620", "other-owner", "folder-0775", "folder-1777", "symlink"]


def assert_names(err, path, culprit, want):
    assert path in err and culprit in err and want in err and "refused" in err, err


@pytest.fixture(autouse=True)
def as_root():
    if os.geteuid() != 0:
        pytest.skip("the cases give files to uid 65534: run as root")


# -- 1. Unmodified tstclnt under detector-run: fail closed

def test_nss_obeys_a_private_config(world, nssdb, tmpdir_):
    """The control: a 0600 `enabled = no` is obeyed (DetecTor is off, so
    the rogue-CA MITM's handshake goes through).  Without it the refusals
    below would prove nothing."""
    path = write(os.path.join(tmpdir_, "detector.conf"), OFF, 0o600)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR,
                  setup="export DETECTOR_CONFIG='%s'" % path)
    assert app.rc == 0 and "hello" in app.out, app


@pytest.mark.parametrize("how", CASES)
def test_nss_untrusted_config_fails_closed(world, nssdb, tmpdir_, how):
    """$DETECTOR_CONFIG breaks a rule and says `enabled = no`: the MITM's
    handshake is refused with DETECTOR_ERROR_CONFIG, not let through."""
    path, culprit, want = untrusted(tmpdir_, how, OFF)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR,
                  setup="export DETECTOR_CONFIG='%s'" % path)
    assert app.rc != 0 and "DETECTOR_ERROR_CONFIG" in app.err, app
    assert "hello" not in app.out, app
    assert_names(app.err, path, culprit, want)


def test_nss_world_writable_home_config_fails_closed(world, nssdb, tmpdir_):
    """The per-user file (~/.config/detector/detector.conf, no
    $DETECTOR_CONFIG) mode 0666: refused; a missing one is still fine."""
    d = os.path.join(tmpdir_, ".config", "detector")
    os.makedirs(d, 0o700)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
    assert app.rc == 0 and "hello" in app.out, app
    path = write(os.path.join(d, "detector.conf"), OFF, 0o666)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR)
    assert app.rc != 0 and "DETECTOR_ERROR_CONFIG" in app.err, app
    assert "hello" not in app.out, app
    assert_names(app.err, path, path, "chmod go-w %s" % path)


# -- 2. sphere-probe: exit 3 before any probe

def probe_target(world):
    return ["--resolve", world.resolve(REAL_ADDR, world.cport), "%s:%d" % (HOST, world.cport)]


@pytest.mark.parametrize("how", CASES)
def test_sphere_probe_refuses_untrusted_config(world, probe, tmpdir_, how):
    text = "[detector]\nspheres = %s\nquorum = 2\n" % world.sphere_list(*world.honest)
    path, culprit, want = untrusted(tmpdir_, how, text)
    run = probe.run("-c", path, *probe_target(world))
    assert run.rc == 3, run
    assert_names(run.err, path, culprit, want)
    run = probe.run(*probe_target(world), env=probe.env(DETECTOR_CONFIG=path))
    assert run.rc == 3, run
    assert_names(run.err, path, culprit, want)
    # The control: the same text in a private file is obeyed.
    good = os.path.join(tmpdir_, "private")
    os.mkdir(good, 0o700)
    good = write(os.path.join(good, "detector.conf"), text, 0o600)
    run = probe.run("-c", good, *probe_target(world))
    assert run.rc == 0, run


# -- 3. detector-monitor: its own files and the engine's

def test_monitor_refuses_untrusted_files(world, tmpdir_):
    """monitor.conf, a `pem =` file and --detector-config, each mode 0666
    in turn: exit 3 (UNKNOWN) naming the file; each made 0600, it runs."""
    srv = world.tls_server("mon-config-trust", world.real)
    try:
        mon = Monitor(world, tmpdir_)
        pem = os.path.join(tmpdir_, "real.pem")
        shutil.copy(world.real.crt, pem)
        os.chmod(pem, 0o600)
        mon.write({"web": service(srv.port, pem=pem)})
        os.chmod(mon.config, 0o600)
        assert mon.run("--once").rc == 0

        for path in (mon.config, pem, mon.dconfig):
            os.chmod(path, 0o666)
            r = mon.run("--once")
            assert r.rc == 3, r
            assert_names(r.err, path, path, "chmod go-w %s" % path)
            os.chmod(path, 0o600)

        # A pem file of another user's is refused as well.
        os.chown(pem, 65534, 65534)
        r = mon.run("--once")
        assert r.rc == 3, r
        assert_names(r.err, pem, pem, "belongs to uid 65534")
        os.chown(pem, 0, 0)
        assert mon.run("--once").rc == 0
    finally:
        srv.stop()


def test_monitor_refuses_symlinked_config(world, tmpdir_):
    mon = Monitor(world, tmpdir_)
    mon.write({"web": service(443, pin=world.real.spki_sha256)})
    link = os.path.join(tmpdir_, "link.conf")
    os.symlink(mon.config, link)
    mon.config = link
    r = mon.run("--once")
    assert r.rc == 3, r
    assert_names(r.err, link, link, "symlink")

