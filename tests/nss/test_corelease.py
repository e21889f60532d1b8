#!/usr/bin/python3
"""Prove that a co-release libssl3.so is a drop-in for an application's own.

    tests/nss/test_corelease.py coreleases/X.bundled build/corelease/X/lib/libssl3.so

For each application the descriptor names (`app PACKAGE VERSION FOLDER`)
that is installed at exactly that version, against FOLDER/libssl3.so:

  * the exported dynamic symbols (binding, type, version, name) are the same
    set, the version definitions are identical, same SONAME, same NEEDED;
  * with LD_LIBRARY_PATH=FOLDER (what the application's absolute-path loading
    amounts to), `ldd -r` resolves libnss3.so and libnssutil3.so to the
    application's own copies and reports no undefined symbol;
  * loaded that way, NSSSSL_GetVersion() of ours, and NSS_GetVersion() of the
    application's libnss3, both say the descriptor's NSS version;
  * ours carries DetecTor's hook (it looks up detector_nss_v1), the
    application's does not.

An application not installed at that version is reported as skipped. Prints
one line per check and "N passed, N failed[, N skipped]" last; exits
non-zero when a check failed or nothing was checked.
"""

import argparse
import os
import re
import sys

from test_dropin import Results, dynamic_entries, exported_symbols, run, version_definitions

# Prints NSSSSL_GetVersion() of argv[1] and NSS_GetVersion() of argv[2].
VERSION_PROBE = """
import ctypes, sys
nss = ctypes.CDLL(sys.argv[2], mode=ctypes.RTLD_GLOBAL)
ssl = ctypes.CDLL(sys.argv[1])
ssl.NSSSSL_GetVersion.restype = nss.NSS_GetVersion.restype = ctypes.c_char_p
print(ssl.NSSSSL_GetVersion().decode(), nss.NSS_GetVersion().decode())
"""


def read_descriptor(path):
    nss, apps = None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            tok = line.split()
            if not tok or tok[0].startswith("#"):
                continue
            if tok[0] == "nss":
                nss = tok[1]
            elif tok[0] == "app" and len(tok) == 4:
                apps.append((tok[1], tok[2], tok[3]))
    return nss, apps


def installed_version(package):
    rc, out = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", package])
    tok = out.split()
    return tok[1] if rc == 0 and len(tok) == 2 and tok[0] == "ii" else None


def check_app(r, ours, nss, package, folder):
    theirs = os.path.join(folder, "libssl3.so")
    if not r.check(f"{package}: {theirs} exists", os.path.isfile(theirs)):
        return
    ours_syms, their_syms = exported_symbols(ours), exported_symbols(theirs)
    missing, extra = sorted(their_syms - ours_syms), sorted(ours_syms - their_syms)
    r.check(f"{package}: exported symbols: {len(ours_syms)} name@version (binding, type) "
            f"identical to the application's {len(their_syms)}",
            bool(their_syms) and not missing and not extra,
            "\n".join([f"missing: {' '.join(s)}" for s in missing] +
                      [f"extra:   {' '.join(s)}" for s in extra]))
    ours_v, their_v = version_definitions(ours), version_definitions(theirs)
    r.check(f"{package}: version definitions identical ({len(their_v)} entries, "
            f"up to {their_v[-1].split()[-1] if their_v else '?'})",
            bool(their_v) and ours_v == their_v,
            "ours:\n  " + "\n  ".join(ours_v) + "\napplication's:\n  " + "\n  ".join(their_v))
    ours_so, their_so = dynamic_entries(ours, "SONAME"), dynamic_entries(theirs, "SONAME")
    r.check(f"{package}: SONAME {ours_so} same as the application's",
            ours_so == their_so == ["libssl3.so"], f"ours {ours_so}, application's {their_so}")
    ours_n, their_n = dynamic_entries(ours, "NEEDED"), dynamic_entries(theirs, "NEEDED")
    r.check(f"{package}: NEEDED {' '.join(sorted(ours_n))} same as the application's",
            sorted(ours_n) == sorted(their_n), f"ours {ours_n}, application's {their_n}")

    env = {"LD_LIBRARY_PATH": folder}
    rc, out = run(["ldd", "-r", ours], env=env)
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", out, re.M))
    own = all(os.path.dirname(os.path.realpath(resolved.get(lib, ""))) == os.path.realpath(folder)
              for lib in ("libnss3.so", "libnssutil3.so"))
    r.check(f"{package}: ldd -r with LD_LIBRARY_PATH={folder}: libnss3.so and libnssutil3.so "
            f"are the application's, every symbol resolves",
            rc == 0 and own and "undefined symbol" not in out and "not found" not in out, out)

    rc, out = run(["/usr/bin/python3", "-c", VERSION_PROBE, ours, os.path.join(folder, "libnss3.so")],
                  env=env)
    r.check(f"{package}: loaded with the application's libnss3, ours says NSS {nss} and so does "
            f"the application's libnss3", rc == 0 and out.split() == [nss, nss], out)

    with open(ours, "rb") as f:
        ours_hook = b"detector_nss_v1" in f.read()
    with open(theirs, "rb") as f:
        their_hook = b"detector_nss_v1" in f.read()
    r.check(f"{package}: ours carries DetecTor's hook, the application's does not",
            ours_hook and not their_hook)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("descriptor", help="coreleases/*.bundled")
    ap.add_argument("library", help="the built libssl3.so")
    args = ap.parse_args()
    r = Results()
    ours = os.path.realpath(args.library)
    if not r.check(f"built library exists: {args.library}", os.path.isfile(ours),
                   "run 'make corelease' first"):
        return r.summary()
    nss, apps = read_descriptor(args.descriptor)
    if not r.check(f"{args.descriptor} names the NSS version and at least one application",
                   bool(nss and apps)):
        return r.summary()
    for package, version, folder in apps:
        have = installed_version(package)
        if have != version:
            r.skip(f"{package} {version}", f"installed: {have or 'no'} "
                   f"(apt-get install --no-install-recommends {package}={version})")
            continue
        check_app(r, ours, nss, package, folder)
    return r.summary()


if __name__ == "__main__":
    sys.exit(main())
