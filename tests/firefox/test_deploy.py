"""detector-deploy against a fake root (--root): a copy of Firefox ESR's NSS
files under DIR/usr/lib/firefox-esr and a dpkg database in DIR/var/lib/dpkg
that says which firefox-esr is installed.  The host's /usr is never touched.
Needs the built co-release (make corelease).
"""

import os
import shutil
import subprocess

import pytest

from firefox import CORELEASE_BUILD, ROOT, find_corelease

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


def deploy(r, *args):
    p = subprocess.run(["/usr/bin/python3", TOOL, "--root", r, "--build", CORELEASE_BUILD]
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
