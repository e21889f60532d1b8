"""detector-run never loads an enhanced libssl3.so built for another libnss3.

The libssl3.so next to detector-run (the package's /usr/lib/detector, or a
build tree's build/lib) carries libssl3.so.built-for: the libnss3 version it
is a drop-in for.  After an NSS update without a matching co-release
(libnss3-detector's trigger has already put the system's own libssl3.so
back), detector-run must run the application with the system's own NSS and
say so loudly on stderr, never put the mismatched library first.

Asking dpkg costs 60-150 ms at every start, so the answer is kept:
libssl3.so.checked-against names the built-for version and the libnss3.so
that dpkg said was that version, with that file's modification time.  While
the file is unchanged detector-run trusts it without asking dpkg; any other
file there (an NSS update replaces it) makes it ask dpkg again.

Fake libraries and a shell "application" that prints what it was given:
nothing is loaded, no root needed.  Fake dpkg and dpkg-query (first on
PATH) show whether dpkg was asked, and what it answered.
"""

import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
RUN = os.path.join(TOP, "detector", "tools", "detector-run")
SHOW = ["sh", "-c", 'echo "LD=${LD_LIBRARY_PATH:-} NDL=${NSS_DETECTOR_LIBRARY:-}"; exit 7']


def installed_nss():
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True, check=True).stdout.strip()
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libnss3:" + arch],
                          capture_output=True, text=True, check=True).stdout


def libdir(tmp_path, built_for):
    d = tmp_path / "lib"
    d.mkdir()
    (d / "libssl3.so").write_bytes(b"not loaded")
    (d / "libdetector.so.0").write_bytes(b"not loaded")
    if built_for is not None:
        (d / "libssl3.so.built-for").write_text(built_for + "\n")
    return str(d)


def run(lib, path=None):
    env = {"PATH": path or os.environ.get("PATH", "/usr/bin:/bin"), "DETECTOR_LIBDIR": lib}
    return subprocess.run([RUN] + SHOW, capture_output=True, text=True, env=env, timeout=30)


def fake_dpkg(tmp_path, version):
    """A PATH whose dpkg-query answers VERSION for libnss3 and notes each
    question in the file it returns (the second value)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    asked = tmp_path / "asked"
    (bindir / "dpkg").write_text('#!/bin/sh\necho "dpkg $*" >>%s\necho amd64\n' % asked)
    (bindir / "dpkg-query").write_text(
        '#!/bin/sh\necho "dpkg-query $*" >>%s\nprintf %%s "%s"\n' % (asked, version))
    for f in ("dpkg", "dpkg-query"):
        os.chmod(bindir / f, 0o755)
    return "%s:/usr/bin:/bin" % bindir, asked


def checked_against(lib, version, nss, mtime):
    """libssl3.so.checked-against as make and the postinst write it."""
    path = os.path.join(lib, "libssl3.so.checked-against")
    with open(path, "w") as f:
        f.write("%s\n%s\n" % (version, nss))
    os.utime(path, ns=(mtime, mtime))
    return path


def fake_libnss3(tmp_path):
    nss = tmp_path / "libnss3.so"
    nss.write_bytes(b"the libnss3.so dpkg installed")
    os.utime(nss, ns=(1754742242 * 10**9, 1754742242 * 10**9))
    return str(nss), os.stat(nss).st_mtime_ns


def test_matching_libnss3_puts_the_enhanced_library_first(tmp_path):
    lib = libdir(tmp_path, installed_nss())
    p = run(lib)
    assert p.returncode == 7, p
    assert "LD=%s NDL=%s/libdetector.so.0" % (lib, lib) in p.stdout, p
    assert "WARNING" not in p.stderr, p


def test_other_libnss3_runs_the_stock_nss_and_says_so(tmp_path):
    other = installed_nss() + "+notthisone1"
    lib = libdir(tmp_path, other)
    p = run(lib)
    assert p.returncode == 7, p                     # the application still ran
    assert "LD= NDL=" in p.stdout, "the mismatched libssl3.so was loaded: %s" % p
    assert "built for libnss3 %s, but the installed libnss3 is %s" \
        % (other, installed_nss()) in p.stderr, p
    assert "NOT checked by DetecTor" in p.stderr, p


def test_unreadable_stamp_is_a_mismatch(tmp_path):
    lib = libdir(tmp_path, "")
    p = run(lib)
    assert p.returncode == 7 and "LD= NDL=" in p.stdout, p
    assert "NOT checked by DetecTor" in p.stderr, p


BUILT_FOR = "2:3.87.1-1+deb12u4"
NEXT = "2:3.87.1-1+deb12u5"


def test_unchanged_libnss3_is_trusted_without_asking_dpkg(tmp_path):
    """The fast check: dpkg is not asked while the libnss3.so it vouched for
    is still there (fails before: detector-run ran dpkg-query every time)."""
    lib = libdir(tmp_path, BUILT_FOR)
    nss, mtime = fake_libnss3(tmp_path)
    checked_against(lib, BUILT_FOR, nss, mtime)
    path, asked = fake_dpkg(tmp_path, "dpkg must not be asked")
    p = run(lib, path)
    assert p.returncode == 7, p
    assert "LD=%s NDL=%s/libdetector.so.0" % (lib, lib) in p.stdout, p
    assert "WARNING" not in p.stderr, p
    assert not asked.exists(), "dpkg was asked: %s" % asked.read_text()


def test_nss_update_replaces_the_file_and_dpkg_is_asked_again(tmp_path):
    """An NSS update (without a matching co-release) puts another libnss3.so
    in place, with its own build's time: the record no longer vouches for
    it, dpkg is asked, and the mismatched library is not loaded."""
    lib = libdir(tmp_path, BUILT_FOR)
    nss, mtime = fake_libnss3(tmp_path)
    checked_against(lib, BUILT_FOR, nss, mtime)
    os.utime(nss, ns=(mtime + 86400 * 10**9,) * 2)      # the update's file
    path, asked = fake_dpkg(tmp_path, NEXT)
    p = run(lib, path)
    assert p.returncode == 7, p
    assert "LD= NDL=" in p.stdout, "the mismatched libssl3.so was loaded: %s" % p
    assert "built for libnss3 %s, but the installed libnss3 is %s" % (BUILT_FOR, NEXT) \
        in p.stderr, p
    assert "NOT checked by DetecTor" in p.stderr, p
    assert "dpkg-query" in asked.read_text()
    # Even one nanosecond apart is another file.
    os.utime(nss, ns=(mtime + 1,) * 2)
    p = run(lib, path)
    assert "LD= NDL=" in p.stdout and "NOT checked by DetecTor" in p.stderr, p


def test_record_for_another_version_is_not_trusted(tmp_path):
    """A record left from a build for another version (the stamp changed,
    the record did not): dpkg is asked."""
    lib = libdir(tmp_path, NEXT)
    nss, mtime = fake_libnss3(tmp_path)
    checked_against(lib, BUILT_FOR, nss, mtime)
    path, asked = fake_dpkg(tmp_path, BUILT_FOR)
    p = run(lib, path)
    assert "LD= NDL=" in p.stdout, p
    assert "built for libnss3 %s, but the installed libnss3 is %s" % (NEXT, BUILT_FOR) \
        in p.stderr, p
    assert asked.exists()


def test_missing_libnss3_or_broken_record_asks_dpkg(tmp_path):
    lib = libdir(tmp_path, BUILT_FOR)
    nss, mtime = fake_libnss3(tmp_path)
    path, asked = fake_dpkg(tmp_path, BUILT_FOR)
    for version, named in ((BUILT_FOR, str(tmp_path / "gone.so")),   # no such file
                           (BUILT_FOR, "libnss3.so"),                # not absolute
                           (BUILT_FOR, ""),                          # one line only
                           ("", nss)):                               # no version
        checked_against(lib, version, named, mtime)
        if asked.exists():
            asked.unlink()
        p = run(lib, path)
        # dpkg says it is the built-for version: loaded, after asking.
        assert "LD=%s" % lib in p.stdout, (version, named, p)
        assert asked.exists(), (version, named)
    os.unlink(os.path.join(lib, "libssl3.so.checked-against"))
    asked.unlink()
    p = run(lib, path)
    assert "LD=%s" % lib in p.stdout and asked.exists(), p
