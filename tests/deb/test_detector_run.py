"""detector-run never loads an enhanced libssl3.so built for another libnss3.

The libssl3.so next to detector-run (the package's /usr/lib/detector, or a
build tree's build/lib) carries libssl3.so.built-for: the libnss3 version it
is a drop-in for.  After an NSS update without a matching co-release
(libnss3-detector's trigger has already put the system's own libssl3.so
back), detector-run must run the application with the system's own NSS and
say so loudly on stderr, never put the mismatched library first.

Fake libraries and a shell "application" that prints what it was given:
nothing is loaded, no root needed.
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


def run(lib):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DETECTOR_LIBDIR": lib}
    return subprocess.run([RUN] + SHOW, capture_output=True, text=True, env=env, timeout=30)


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
