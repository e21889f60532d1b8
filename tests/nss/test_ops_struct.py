#!/usr/bin/python3
"""Check that every patch series' copy of libdetector's ops struct matches
detector/include/detector_nss.h.

    tests/nss/test_ops_struct.py [--header H] [PATCH...]

NSS builds without DetecTor's headers, so ssldetector.c (added by the
patches in nss-patches/*/) mirrors `struct detector_nss_ops` by hand. A
mismatch is an ABI break that no compiler sees: the patched libssl3.so would
call the wrong member. For each patch that adds ssldetector.c (default: every
patch in nss-patches/*/series), this checks:

  * the member names, in order, are the same (so a member added, removed or
    reordered on one side fails);
  * gcc agrees that each pair of members has compatible types at the same
    offset, and the structs have the same size (parameter names may differ;
    parameter types, return types and the callback's type may not);
  * the entry point libssl looks up is the one the header declares
    (detector_nss_v1), and the pending code is the same value.

The same holds for `struct detector_nss_reroute_ops` (the separately
versioned reroute entry, detector_nss_reroute_v1) in every series whose
ssldetector.c looks that entry up; a series that does not is a libssl that
never reroutes, and is fine.

It then proves that it can fail: a member appended to the header, and two
members swapped in the patch's copy, must each be reported.

Prints one line per check and "N passed, N failed" last; exits non-zero
when a check failed. Needs gcc.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER = os.path.join(ROOT, "detector", "include", "detector_nss.h")


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", " ", re.sub(r"//[^\n]*", "", text), flags=re.S)


def new_file_from_patch(patch, name="ssldetector.c"):
    """The content of `name` as the patch adds it, or None."""
    out, inside = [], False
    for line in open(patch, encoding="utf-8"):
        if line.startswith("diff "):
            inside = False
        elif line.startswith("+++ "):
            inside = line.split()[1].endswith("/" + name)
        elif inside and line.startswith("+"):
            out.append(line[1:])
        elif inside and line.startswith("@@") and not line.startswith("@@ -0,0 "):
            raise ValueError(f"{patch} changes {name} instead of adding it")
    return "".join(out) if out else None


def members(body):
    """Member names of a struct body, in order."""
    names = []
    for decl in (d.strip() for d in body.split(";")):
        if not decl:
            continue
        m = re.match(r"^[^(]*\(\s*\*\s*(\w+)\s*\)", decl) or re.search(r"(\w+)\s*(\[[^]]*\])?$", decl)
        if not m:
            raise ValueError(f"cannot read the member declaration '{decl}'")
        names.append(m.group(1))
    return names


# One ABI struct libssl mirrors: the header's struct, the patch's typedef,
# the patch's declarations to compile (first .. last pattern) and the
# constants that must agree.
OPS = {"header": "detector_nss_ops", "patch": "sslDetectorOps",
       "decl": (r"typedef void \(\*ssl_DetectorDoneFn\)", r"#define SSL_DETECTOR_PENDING\s+\d+"),
       "consts": [("DETECTOR_NSS_PENDING", "SSL_DETECTOR_PENDING")], "what": "",
       "last": r"(void\s*\(\s*\*\s*cancel\s*\)\s*\(\s*void\s*\*\s*pending\s*\)\s*;)",
       "swap": r"(int \(\*check\)\(.*?\);)(\s*)(void \(\*cancel\)\(void \*pending\);)",
       "mutation": ("a parameter's type changed in the patch's copy",
                    lambda t: t.replace("unsigned int derLen", "unsigned short derLen", 1))}
REROUTE_OPS = {"header": "detector_nss_reroute_ops", "patch": "sslDetectorRerouteOps",
               "decl": (r"typedef void \(\*ssl_DetectorRerouteFn\)",
                        r"#define SSL_DETECTOR_ERROR_REROUTE[^\n]*"),
               "consts": [("DETECTOR_ERROR_MITM", "SSL_DETECTOR_ERROR_MITM"),
                          ("DETECTOR_ERROR_REROUTE", "SSL_DETECTOR_ERROR_REROUTE")],
               "what": "(reroute ops) ",
               "last": r"(void\s*\(\s*\*\s*release\s*\)\s*\(\s*void\s*\*\s*handle\s*\)\s*;)",
               "swap": r"(int \(\*verify\)\(.*?\);)(\s*)(void \(\*release\)\(void \*handle\);)",
               "mutation": ("the reroute code changed in the patch's copy",
                            lambda t: re.sub(r"(#define SSL_DETECTOR_ERROR_REROUTE \(-0x3000 \+ 0x380 \+ )5\)",
                                             r"\g<1>6)", t, count=1))}


def header_struct(text, spec=OPS):
    """(members, entry point) of the header's struct."""
    text = strip_comments(text)
    m = re.search(r"struct\s+%s\s*\{([^{}]*)\}\s*;" % spec["header"], text)
    if not m:
        raise ValueError("no 'struct %s { ... };' in the header" % spec["header"])
    entry = re.search(r"struct\s+%s\s*\*\s*(detector_\w+_v\d+)\s*\(\s*void\s*\)" % spec["header"],
                      text)
    return members(m.group(1)), entry.group(1) if entry else None


def patch_struct(text, spec=OPS):
    """(members, the entry points the patch looks up)."""
    text = strip_comments(text)
    m = re.search(r"typedef\s+struct\s*\{([^{}]*)\}\s*%s\s*;" % spec["patch"], text)
    if not m:
        raise ValueError("no 'typedef struct { ... } %s;' in ssldetector.c" % spec["patch"])
    entries = re.findall(r'PR_FindFunctionSymbol\s*\(\s*\w+\s*,\s*"(\w+)"\s*\)', text)
    return members(m.group(1)), entries


def compile_check(header_text, patch_text, names, spec=OPS):
    """None when gcc accepts the pairwise type/offset/size assertions, else
    its complaint."""
    # The patch's declarations, without NSS's includes.
    first, last = spec["decl"]
    decls = [re.search(first + ".*?" + last, patch_text, re.S) for first, last in
             ([OPS["decl"]] + ([spec["decl"]] if spec is not OPS else []))]
    if not all(decls):
        return "cannot find the declarations (%s .. %s) in ssldetector.c" % (first, last)
    h, p = "struct " + spec["header"], spec["patch"]
    with tempfile.TemporaryDirectory(prefix="detector-ops-") as d:
        inc = os.path.join(d, "include")
        os.mkdir(inc)
        for hdr in glob.glob(os.path.join(os.path.dirname(HEADER), "*.h")):
            with open(hdr, encoding="utf-8") as src, open(os.path.join(inc, os.path.basename(hdr)), "w") as dst:
                dst.write(src.read())
        with open(os.path.join(inc, "detector_nss.h"), "w") as f:
            f.write(header_text)
        c = ["#include <stddef.h>", '#include "detector_nss.h"'] + [m.group(0) for m in decls] + [
             "#define SAME(a, b) __builtin_types_compatible_p(__typeof__(a), __typeof__(b))",
             f"_Static_assert(sizeof({h}) == sizeof({p}), \"size\");"]
        for a, b in spec["consts"]:
            c.append(f"_Static_assert({a} == {b}, \"{a}\");")
        for n in names:
            c.append(f"_Static_assert(SAME((({h} *)0)->{n}, (({p} *)0)->{n}), \"type of {n}\");")
            c.append(f"_Static_assert(offsetof({h}, {n}) == offsetof({p}, {n}), \"offset of {n}\");")
        src = os.path.join(d, "ops.c")
        with open(src, "w") as f:
            f.write("\n".join(c) + "\n")
        p = subprocess.run(["gcc", "-std=c11", "-fsyntax-only", "-I", inc, src],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return None if p.returncode == 0 else p.stdout


def compare(header_text, patch_text, spec=OPS):
    """A list of mismatches (empty: the two agree)."""
    problems = []
    try:
        h_names, h_entry = header_struct(header_text, spec)
        p_names, p_entries = patch_struct(patch_text, spec)
    except ValueError as e:
        return [str(e)]
    if h_names != p_names:
        problems.append(f"members differ: header {h_names}, patch {p_names}")
    if not h_entry or h_entry not in p_entries:
        problems.append(f"entry point differs: header declares {h_entry}, patch looks up {p_entries}")
    if not problems:
        err = compile_check(header_text, patch_text, h_names, spec)
        if err:
            problems.append("gcc: " + err.strip())
    return problems


def compare_reroute(header_text, patch_text):
    """compare() for the reroute entry, if this patch looks it up."""
    if '"detector_nss_reroute_v1"' not in strip_comments(patch_text):
        return []
    return compare(header_text, patch_text, REROUTE_OPS)


def series_patches():
    out = []
    for series in sorted(glob.glob(os.path.join(ROOT, "nss-patches", "*", "series"))):
        for line in open(series, encoding="utf-8"):
            name = line.split("#")[0].split()
            if name:
                out.append(os.path.join(os.path.dirname(series), name[0]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header", default=HEADER)
    ap.add_argument("patches", nargs="*", help="default: every patch in nss-patches/*/series")
    args = ap.parse_args()
    with open(args.header, encoding="utf-8") as f:
        header_text = f.read()
    passed = failed = 0

    def check(name, problems):
        nonlocal passed, failed
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for p in problems:
                for line in p.splitlines()[:20]:
                    print(f"     | {line}")
        else:
            passed += 1
            print(f"ok   {name}")

    copies = []
    for patch in args.patches or series_patches():
        text = new_file_from_patch(patch)
        if text is not None:
            copies.append((os.path.relpath(patch, ROOT), text))
    check("at least one patch adds ssldetector.c", [] if copies else ["none found"])
    for name, text in copies:
        check(f"{name}: ops struct matches {os.path.relpath(args.header, ROOT)} "
              f"(members, types, offsets, size, entry point, pending code)", compare(header_text, text))
        rerouting = '"detector_nss_reroute_v1"' in text
        check(f"{name}: reroute ops struct " + ("matches (members, types, offsets, size, entry point, "
              "error codes)" if rerouting else "not looked up: this libssl never reroutes"),
              compare_reroute(header_text, text))

    # Each spec's mutations must be reported: a member appended to the
    # header only, two members swapped in the patch's copy, and one more.
    for spec in (OPS, REROUTE_OPS):
        found = [(n, t) for n, t in copies if spec is OPS or '"detector_nss_reroute_v1"' in t]
        if not found:
            continue
        name, text = found[0]
        what, mutate = spec["mutation"]
        for what, h, p in ((spec["what"] + "a member appended to the header",
                            re.sub(spec["last"], r"\1\n\tint (*extra)(void);", header_text, count=1),
                            text),
                           (spec["what"] + "two members swapped in the patch's copy", header_text,
                            re.sub(spec["swap"], r"\3\2\1", text, count=1, flags=re.S)),
                           (spec["what"] + what, header_text, mutate(text))):
            changed = h != header_text or p != text
            check(f"detects {what}",
                  [] if changed and compare(h, p, spec) else
                  [f"the mutation did not apply to {name}" if not changed else "not detected"])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
