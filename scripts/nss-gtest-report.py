#!/usr/bin/python3
"""nss-gtest-report.py: compare the three ssl_gtest runs of scripts/nss-gtest.sh.

    scripts/nss-gtest-report.py RESULTS_DIR NSS_TREE_NAME

Reads RESULTS_DIR/{unpatched,patched,excluded}.N.xml (one per shard), .log
and .seconds; prints each run's counts and wall time, every test whose
outcome differs from the unpatched run, and, for the excluded run, what
DetecTor said: every handshake it was asked about must have been "not
probed: excluded".  Writes the same text to RESULTS_DIR/summary.txt.

Exit status 0 when the patched runs end every test as the unpatched run did
and DetecTor excluded every host; 1 otherwise.
"""
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

RUNS = [
    ("unpatched", "unpatched tree"),
    ("patched", "patched, libdetector absent"),
    ("excluded", "patched, libdetector loaded, all hosts excluded"),
]


def outcomes(results, run):
    """{test: 'passed'|'failed'|'disabled'|'skipped'} over the run's shards."""
    out = {}
    files = sorted(glob.glob(os.path.join(results, run + ".*.xml")))
    if not files:
        return None
    for f in files:
        for case in ET.parse(f).getroot().iter("testcase"):
            name = "%s.%s" % (case.get("classname"), case.get("name"))
            if case.get("status") == "notrun":
                state = "disabled"
            elif case.find("failure") is not None or case.find("error") is not None:
                state = "failed"
            elif case.get("result") == "skipped" or case.find("skipped") is not None:
                state = "skipped"
            else:
                state = "passed"
            out[name] = state
    return out


def detector_lines(results):
    """(excluded count, [(test, line)] of anything else DetecTor said)."""
    excluded, other = 0, []
    for f in sorted(glob.glob(os.path.join(results, "excluded.*.log"))):
        test = "(before the first test)"
        with open(f, errors="replace") as fh:
            for line in fh:
                m = re.match(r"\[ RUN +\] (\S+)", line)
                if m:
                    test = m.group(1)
                    continue
                i = line.find("DetecTor[")
                if i < 0:
                    continue
                line = line[i:].rstrip()
                if "not probed: excluded by" in line:
                    excluded += 1
                else:
                    other.append((test, line))
    return excluded, other


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: nss-gtest-report.py RESULTS_DIR NSS_TREE_NAME")
    results, tree = sys.argv[1], sys.argv[2]
    lines = ["ssl_gtest of %s" % tree, ""]
    ok = True
    base = None
    table = []
    for run, label in RUNS:
        res = outcomes(results, run)
        if res is None:
            lines.append("%s: no report (did ssl_gtest crash? see %s/%s.*.log)"
                         % (label, results, run))
            ok = False
            continue
        try:
            with open(os.path.join(results, run + ".seconds")) as fh:
                secs = int(fh.read())
        except (OSError, ValueError):
            secs = -1
        counts = {k: sum(1 for v in res.values() if v == k)
                  for k in ("passed", "failed", "disabled", "skipped")}
        table.append((label, len(res), counts, secs))
        if base is None:
            base = res
            basename = label
            continue
        diff = sorted(t for t in set(base) | set(res)
                      if base.get(t, "absent") != res.get(t, "absent"))
        if diff:
            ok = False
            lines.append("%s: %d test(s) end differently than in the %s:"
                         % (label, len(diff), basename))
            for t in diff:
                lines.append("  %s: %s -> %s" % (t, base.get(t, "absent"),
                                                 res.get(t, "absent")))
    lines.append("%-50s %6s %6s %6s %8s %7s %6s" % (
        "run", "tests", "passed", "failed", "disabled", "skipped", "wall"))
    for label, total, c, secs in table:
        lines.append("%-50s %6d %6d %6d %8d %7d %5ds" % (
            label, total, c["passed"], c["failed"], c["disabled"],
            c["skipped"], secs))
    if base is not None:
        failed = sorted(t for t, v in base.items() if v == "failed")
        if failed:
            lines.append("tests that fail already unpatched (%d): %s"
                         % (len(failed), " ".join(failed)))
    excluded, other = detector_lines(results)
    lines.append("DetecTor (excluded run): %d handshake(s) not probed: excluded"
                 % excluded)
    if excluded == 0:
        ok = False
        lines.append("  libdetector was never consulted: the excluded run "
                     "proves nothing (was it loaded?)")
    if other:
        ok = False
        lines.append("  and %d other line(s): a host the configuration does "
                     "not exclude, or an error:" % len(other))
        for test, line in other[:50]:
            lines.append("  %s: %s" % (test, line))
        if len(other) > 50:
            lines.append("  ... (%d more, in %s/excluded.*.log)"
                         % (len(other) - 50, results))
    lines.append("RESULT: %s" % ("same results in all three runs" if ok else
                                 "DIFFERENT (see above)"))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(results, "summary.txt"), "w") as fh:
        fh.write(text)
    sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
