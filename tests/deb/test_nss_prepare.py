"""`make nss` when Debian moved first: the installed libnss3 is a version
no coreleases/*.release names (an NSS security update published after our
last co-release).

- Same NSS release line as a patch series (2:3.87.1-1+deb12u99 and
  nss-patches/3.87): the build goes on with that series, pins the source
  to the checksums of apt's authenticated Sources index in a descriptor
  written under BUILD/unreviewed/ (never into coreleases/), and says loudly
  that the co-release is unreviewed.
- Another release line (3.200): it fails, naming the installed version,
  the known series and what to do.

scripts/nss-prepare.sh runs with NSS_VERSION set to the fake version and
stand-ins for apt-cache and apt-get first on PATH (their Sources index lists
the fake version): nothing is downloaded, no root needed.
"""

import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
PREPARE = os.path.join(TOP, "scripts", "nss-prepare.sh")
FAKE = "2:3.87.1-1+deb12u99"
DSC_SUM = "1" * 64
ORIG_SUM = "f30fb0de6986e59420ce3bfea340e801222be1da144b420bcbfec1d977dab4d5"
DEB_SUM = "2" * 64


def stubs(tmp_path):
    """apt-cache showsrc lists FAKE (and an older version, with other
    checksums); apt-get source fails as the archive would for a version it
    does not serve."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    index = ("Package: nss\nVersion: 2:3.87.1-1+deb12u2\nChecksums-Sha256:\n"
             " %s 2202 nss_3.87.1-1+deb12u2.dsc\n\n"
             "Package: nss\nVersion: %s\nBinary: libnss3\nChecksums-Sha256:\n"
             " %s 2254 nss_3.87.1-1+deb12u99.dsc\n"
             " %s 71430196 nss_3.87.1.orig.tar.gz\n"
             " %s 30428 nss_3.87.1-1+deb12u99.debian.tar.xz\n"
             "Homepage: https://example.org/\n\n" % ("3" * 64, FAKE, DSC_SUM, ORIG_SUM, DEB_SUM))
    (tmp_path / "index").write_text(index)
    (bin_ / "apt-cache").write_text("#!/bin/sh\ncat '%s'\n" % (tmp_path / "index"))
    (bin_ / "apt-get").write_text("#!/bin/sh\necho 'E: stand-in: no network' >&2\nexit 100\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    return str(bin_)


def prepare(tmp_path, version):
    env = dict(os.environ, NSS_VERSION=version,
               PATH=stubs(tmp_path) + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
    return subprocess.run([PREPARE, str(tmp_path / "build")], capture_output=True,
                          text=True, env=env, timeout=120)


def test_same_release_line_builds_an_unreviewed_corelease(tmp_path):
    p = prepare(tmp_path, FAKE)
    assert "UNREVIEWED CO-RELEASE" in p.stderr, p
    assert "libnss3 %s; building it with nss-patches/3.87/series" % FAKE in p.stderr, p
    written = tmp_path / "build" / "unreviewed"
    found = list(written.glob("*.release"))
    assert len(found) == 1, p
    text = found[0].read_text()
    assert "\nversion  %s\n" % FAKE in text, text
    assert "sha256   %s  nss_3.87.1-1+deb12u99.dsc\n" % DSC_SUM in text, text
    assert "sha256   %s  nss_3.87.1.orig.tar.gz\n" % ORIG_SUM in text, text
    assert "sha256   %s  nss_3.87.1-1+deb12u99.debian.tar.xz\n" % DEB_SUM in text, text
    assert "3" * 64 not in text, "checksums of another version: " + text
    assert "\nseries   nss-patches/3.87/series\n" in text, text
    assert "UNREVIEWED" in text
    # It then fetches exactly that source (here apt-get refuses: no network).
    assert p.returncode != 0
    assert "apt-get source --download-only nss=%s failed" % FAKE in p.stderr, p
    # coreleases/ is untouched.
    assert not [f for f in os.listdir(os.path.join(TOP, "coreleases")) if "deb12u99" in f]


def test_another_release_line_fails_and_says_what_to_do(tmp_path):
    p = prepare(tmp_path, "2:3.200.0-1")
    assert p.returncode != 0, p
    err = p.stderr
    assert "no descriptor in coreleases/ for the installed NSS 2:3.200.0-1, and no patch " \
        "series for its release line 3.200" in err, err
    series = [line for line in err.splitlines()
              if "patch series exist for the NSS release lines:" in line]
    assert series and " 3.87 " in series[0] + " " and " 3.112 " in series[0] + " ", err
    assert "descriptors exist for: 2:3.87.1-1+deb12u4" in err, err
    assert "port the patch to NSS 3.200" in err and "nss-patches/3.200/series" in err, err
    assert "UNREVIEWED" not in err
