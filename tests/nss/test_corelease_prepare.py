#!/usr/bin/python3
"""Failure paths of scripts/corelease-prepare.sh: each stops before anything
is downloaded or built, and says what is wrong and what to do.

    tests/nss/test_corelease_prepare.py

Uses a copy of the first coreleases/*.bundled descriptor with one line
changed, a temporary source cache and build folder. The checksum case needs
apt's source index to list the descriptor's source version (make corelease
sets that up); it reads only the local index, no network.

Prints one line per check and "N passed, N failed[, N skipped]" last.
"""

import glob
import os
import re
import sys
import tempfile

from test_dropin import Results, run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "corelease-prepare.sh")


def prepare(d, text):
    desc = os.path.join(d, "test.bundled")
    with open(desc, "w") as f:
        f.write(text)
    cache = os.path.join(d, "cache")
    rc, out = run([SCRIPT, desc, os.path.join(d, "build")], env={"DETECTOR_SOURCE_CACHE": cache})
    cached = os.listdir(cache) if os.path.isdir(cache) else []
    return rc, out, cached


def main():
    r = Results()
    descs = sorted(glob.glob(os.path.join(ROOT, "coreleases", "*.bundled")))
    if not r.check("a coreleases/*.bundled descriptor exists", bool(descs)):
        return r.summary()
    with open(descs[0]) as f:
        good = f.read()
    package = re.search(r"^package\s+(\S+)", good, re.M).group(1)
    version = re.search(r"^version\s+(\S+)", good, re.M).group(1)
    app = re.search(r"^app\s+(\S+)\s+(\S+)", good, re.M)

    with tempfile.TemporaryDirectory(prefix="detector-corelease-") as d:
        rc, out, cached = prepare(d, good + "colour blue\n")
        r.check("an unknown key is refused, naming it and the known keys",
                rc != 0 and "unknown key 'colour'" in out and "known:" in out, out)

    with tempfile.TemporaryDirectory(prefix="detector-corelease-") as d:
        rc, out, cached = prepare(d, good.replace(f"{app.group(1)}  {app.group(2)}",
                                                  f"{app.group(1)}  0.0-not-installed", 1))
        r.check("an application not installed at the descriptor's version: refused, with the "
                "apt-get install line to run",
                rc != 0 and f"apt-get install --no-install-recommends {app.group(1)}=0.0-not-installed" in out
                and not cached, out)

    _, listed = run(["apt-cache", "showsrc", package])
    if f"Version: {version}\n" not in listed + "\n" or \
            run(["dpkg-query", "-W", "-f=${Version}", app.group(1)])[1] != app.group(2):
        r.skip("a wrong sha256 is refused", f"needs apt to list the source {package} {version} and "
               f"{app.group(1)} {app.group(2)} installed (make corelease)")
    else:
        with tempfile.TemporaryDirectory(prefix="detector-corelease-") as d:
            m = re.search(r"^sha256\s+([0-9a-f]{64})\s+(\S+\.dsc)$", good, re.M)
            wrong = m.group(1)[:-1] + ("0" if m.group(1)[-1] != "0" else "1")
            rc, out, cached = prepare(d, good.replace(m.group(1), wrong))
            r.check("a sha256 that is not the one in apt's authenticated index: refused before "
                    "downloading, both checksums shown",
                    rc != 0 and "authenticated source index" in out and wrong in out
                    and m.group(1) in out and not cached, out)
    return r.summary()


if __name__ == "__main__":
    sys.exit(main())
