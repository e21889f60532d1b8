"""detector-deploy against a fake root (--root): a copy of Firefox ESR's NSS
files under DIR/usr/lib/firefox-esr and a dpkg database in DIR/var/lib/dpkg
that says which firefox-esr is installed.  The host's /usr is never touched.
Needs the built co-release (make corelease).
"""

import os
import shutil
import subprocess

import pytest

from testworld.mozilla import CORELEASE_BUILD, ROOT, find_corelease

TOOL = os.path.join(ROOT, "detector", "tools", "detector-deploy")
CORELEASE, WHY_NOT = find_corelease("firefox-esr")
pytestmark = pytest.mark.skipif(CORELEASE is None, reason=WHY_NOT or "")
APP = "/usr/lib/firefox-esr"


def status_entry(package, version):
    return ("Package: %s\nStatus: install ok installed\nPriority: optional\n"
            "Section: web\nMaintainer: x <x@example.org>\nArchitecture: amd64\n"
            "Version: %s\nDescription: fake\n\n" % (package, version))


@pytest.fixture
def root(tmp_path):
    if not os.path.isfile(CORELEASE.library):
        pytest.fail("%s is missing: run `make corelease`" % CORELEASE.library, pytrace=False)
    return make_root(tmp_path)


@pytest.fixture
def bare_root(tmp_path):
    """The same fake root, for tests that need no built co-release."""
    return make_root(tmp_path)


@pytest.fixture
def fake_build(tmp_path):
    """A build folder whose co-release libssl3.so is a stand-in carrying
    the hook's marker (detector-deploy recognises its own file by it):
    enough to test the diversions without `make corelease`."""
    name = os.path.basename(CORELEASE.descriptor)[:-len(".bundled")]
    d = tmp_path / "build" / name / "lib"
    d.mkdir(parents=True)
    (d / "libssl3.so").write_bytes(b"stand-in co-release, detector_nss_v1\n")
    return str(tmp_path / "build")


def make_root(tmp_path):
    r = str(tmp_path / "root")
    os.makedirs(r + "/var/lib/dpkg/info")
    os.makedirs(r + APP)
    for name in ("libnss3.so", "libnssutil3.so", "libssl3.so", "libsoftokn3.so",
                 "libfreeblpriv3.so"):
        shutil.copy2(os.path.join(CORELEASE.folder, name), r + APP)
    set_version(r, installed_of("firefox-esr"))
    return r


def installed_of(package):
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                          capture_output=True, text=True).stdout


def set_version(r, version):
    with open(r + "/var/lib/dpkg/status", "w") as f:
        f.write(status_entry("firefox-esr", version))


def deploy(r, *args, build=CORELEASE_BUILD):
    p = subprocess.run(["/usr/bin/python3", TOOL, "--root", r, "--build", build]
                       + list(args), capture_output=True, text=True, timeout=60)
    print(p.stdout, p.stderr)
    return p


def content(path):
    with open(path, "rb") as f:
        return f.read()


def diversions(r):
    return subprocess.run(["dpkg-divert", "--root", r, "--list"], capture_output=True,
                          text=True).stdout


def test_status_lists_the_bundled_nss_and_the_corelease(root):
    p = deploy(root, "status")
    assert p.returncode == 0, p
    assert "firefox-esr %s: bundled NSS %s in %s" % (installed_of("firefox-esr"),
                                                      CORELEASE.nss, APP) in p.stdout
    assert "DetecTor: inactive: co-release %s available" % \
        os.path.basename(CORELEASE.descriptor) in p.stdout


def test_install_then_remove(root):
    own = content(root + APP + "/libssl3.so")
    p = deploy(root, "install", "firefox-esr")
    assert p.returncode == 0, p
    assert content(root + APP + "/libssl3.so") == content(CORELEASE.library)
    assert content(root + APP + "/libssl3.so.detector-orig") == own
    assert "diversion of %s/libssl3.so to %s/libssl3.so.detector-orig by detector-deploy" \
        % (APP, APP) in diversions(root)
    assert "DetecTor: ACTIVE" in deploy(root, "status").stdout
    again = deploy(root, "install", "firefox-esr")
    assert again.returncode == 0 and "already active" in again.stdout, again
    p = deploy(root, "remove", "firefox-esr")
    assert p.returncode == 0, p
    assert content(root + APP + "/libssl3.so") == own
    assert not os.path.exists(root + APP + "/libssl3.so.detector-orig")
    assert "libssl3.so" not in diversions(root)
    assert "DetecTor: inactive" in deploy(root, "status").stdout


def test_install_refuses_another_application_version(root):
    own = content(root + APP + "/libssl3.so")
    set_version(root, "140.13.0esr-1~deb12u1")
    p = deploy(root, "install", "firefox-esr")
    assert p.returncode == 1, p
    assert "firefox-esr is 140.13.0esr-1~deb12u1, the co-release" in p.stderr, p
    assert content(root + APP + "/libssl3.so") == own and diversions(root) == ""
    s = deploy(root, "status").stdout
    assert "DetecTor: inactive: the co-release %s is for firefox-esr" % \
        os.path.basename(CORELEASE.descriptor) in s, s
    assert "installed is 140.13.0esr-1~deb12u1" in s, s


def test_status_warns_after_an_upgrade_under_the_corelease(root):
    assert deploy(root, "install", "firefox-esr").returncode == 0
    set_version(root, "153.8.0esr-1~deb12u1")
    s = deploy(root, "status").stdout
    assert "DANGER: DetecTor's libssl3.so is in place but firefox-esr is now " \
        "153.8.0esr-1~deb12u1" in s, s
    assert deploy(root, "remove", "firefox-esr").returncode == 0


def test_install_never_takes_over_a_foreign_diversion(root):
    lib = APP + "/libssl3.so"
    subprocess.run(["dpkg-divert", "--root", root, "--package", "someone", "--no-rename",
                    "--divert", lib + ".someone", "--add", lib], check=True,
                   capture_output=True)
    own = content(root + lib)
    p = deploy(root, "install", "firefox-esr")
    assert p.returncode == 1 and "already diverted by someone" in p.stderr, p
    assert content(root + lib) == own


FF153 = "153.8.0esr-1~deb12u1"


def test_153_8_has_no_corelease_and_status_says_why(bare_root):
    """firefox-esr 153.8 (bookworm-security, NSS 3.125.1): no co-release can
    be built (its source is not reachable); status says so plainly, and how
    to add one; install refuses and changes nothing."""
    own = content(bare_root + APP + "/libssl3.so")
    set_version(bare_root, FF153)
    s = deploy(bare_root, "status").stdout
    assert "firefox-esr %s: bundled NSS" % FF153 in s, s
    assert "installed is %s" % FF153 in s, s
    assert "no co-release exists for firefox-esr %s because the source is not reachable" \
        % FF153 in s, s
    assert "answer 404" in s and "NSS 3.125.1" in s, s
    assert "to add one when Debian's archive serves the source" in s, s
    p = deploy(bare_root, "install", "firefox-esr")
    assert p.returncode == 1 and "firefox-esr is %s, the co-release" % FF153 in p.stderr, p
    assert content(bare_root + APP + "/libssl3.so") == own and diversions(bare_root) == ""


def upgrade_under_the_diversion(r, version, data):
    """What dpkg does when it upgrades firefox-esr while detector-deploy's
    diversion is in place: the new libssl3.so goes to the diverted name."""
    with open(r + APP + "/libssl3.so.detector-orig.new", "wb") as f:
        f.write(data)
    os.replace(r + APP + "/libssl3.so.detector-orig.new", r + APP + "/libssl3.so.detector-orig")
    set_version(r, version)


def test_reconcile_after_an_upgrade_to_153_8_puts_its_own_nss_back(bare_root, fake_build):
    """The dpkg trigger's work (detector-tools runs `detector-deploy
    reconcile` when a package changes /usr/lib/firefox-esr): never leave the
    140.12 co-release in front of 153.8's NSS."""
    assert deploy(bare_root, "install", "firefox-esr", build=fake_build).returncode == 0
    assert "DetecTor: ACTIVE" in deploy(bare_root, "status", build=fake_build).stdout
    upgrade_under_the_diversion(bare_root, FF153, b"firefox-esr 153.8's own libssl3.so")
    p = deploy(bare_root, "reconcile", build=fake_build)
    assert p.returncode == 0, p
    assert content(bare_root + APP + "/libssl3.so") == b"firefox-esr 153.8's own libssl3.so"
    assert not os.path.exists(bare_root + APP + "/libssl3.so.detector-orig")
    assert diversions(bare_root) == ""
    assert ("firefox-esr is now %s, but DetecTor's co-release libssl3.so in %s was built for "
            "firefox-esr %s" % (FF153, APP, installed_of("firefox-esr"))) in p.stderr, p
    assert "NOT checked by DetecTor" in p.stderr and "answer 404" in p.stderr, p
    s = deploy(bare_root, "status", build=fake_build).stdout
    assert "DetecTor: inactive" in s and "DANGER" not in s, s
    again = deploy(bare_root, "reconcile", build=fake_build)
    assert again.returncode == 0 and again.stderr == "", again


def test_reconcile_keeps_the_matching_corelease(bare_root, fake_build):
    assert deploy(bare_root, "install", "firefox-esr", build=fake_build).returncode == 0
    lib = content(bare_root + APP + "/libssl3.so")
    state = bare_root + "/var/lib/detector/deploy/firefox-esr"
    assert content(state).startswith(installed_of("firefox-esr").encode() + b" "), content(state)
    # The record install made decides, not the build folder (the trigger
    # runs with the default one, which may not be where it was built).
    for build in (fake_build, "/nonexistent"):
        p = deploy(bare_root, "reconcile", build=build)
        assert p.returncode == 0 and p.stderr == "", p
        assert content(bare_root + APP + "/libssl3.so") == lib
        assert "by detector-deploy" in diversions(bare_root)
    assert deploy(bare_root, "remove", "firefox-esr", build=fake_build).returncode == 0
    assert not os.path.exists(state)


def test_reconcile_after_the_application_was_removed(bare_root, fake_build):
    assert deploy(bare_root, "install", "firefox-esr", build=fake_build).returncode == 0
    # dpkg removed firefox-esr's files, its libssl3.so under the diverted name.
    for name in os.listdir(bare_root + APP):
        if name != "libssl3.so":
            os.unlink(os.path.join(bare_root + APP, name))
    with open(bare_root + "/var/lib/dpkg/status", "w") as f:
        f.write("")
    p = deploy(bare_root, "reconcile", build=fake_build)
    assert p.returncode == 0, p
    assert not os.path.exists(bare_root + APP), os.listdir(bare_root + APP)
    assert diversions(bare_root) == ""
    assert "firefox-esr was removed" in p.stderr, p


def test_reconcile_replaces_a_corelease_that_is_not_the_matching_one(bare_root, fake_build):
    """The installed version has a co-release, but the file in place is not
    it (deployed for an earlier version with its own co-release): the
    application's own libssl3.so goes back; never a co-release by name only."""
    assert deploy(bare_root, "install", "firefox-esr", build=fake_build).returncode == 0
    own = content(bare_root + APP + "/libssl3.so.detector-orig")
    # Another co-release took its place behind install's back.
    with open(bare_root + APP + "/libssl3.so", "wb") as f:
        f.write(b"another build, detector_nss_v1\n")
    p = deploy(bare_root, "reconcile", build=fake_build)
    assert p.returncode == 0, p
    assert content(bare_root + APP + "/libssl3.so") == own
    assert diversions(bare_root) == ""
    assert "NOT checked by DetecTor" in p.stderr, p
