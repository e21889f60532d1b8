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


# "exclude = " and a rule must fit in one detector.conf line (inireader.h).
CONF_LINE_MAX = 199
DETECTOR_LINE = re.compile(r"DetecTor\[\d+\]: (\S*):(\d+) (.*)")


def unexcludable(host):
    return len("exclude = ") + len(host) > CONF_LINE_MAX


def detector_lines(results):
    """(excluded count, {test: [(host, line)]} of anything else DetecTor
    said in the excluded run)."""
    excluded, other = 0, {}
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
                    continue
                m = DETECTOR_LINE.match(line)
                other.setdefault(test, []).append((m.group(1) if m else None, line))
    return excluded, other


def short(text):
    """A line with its runs of one letter (the padding tests' names) cut."""
    return re.sub(r"(.)\1{29,}", lambda m: "%s*%d" % (m.group(1), len(m.group(0))), text)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: nss-gtest-report.py RESULTS_DIR NSS_TREE_NAME")
    results, tree = sys.argv[1], sys.argv[2]
    lines = ["ssl_gtest of %s" % tree, ""]
    ok = True
    base = None
    table = []
    diffs = {}
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
        diffs[run] = (label, res, diff)
    excluded, other = detector_lines(results)
    explained = {}
    for run, (label, res, diff) in diffs.items():
        unexplained = []
        for t in diff:
            said = other.get(t, [])
            # The excluded run may fail a test only because its server name
            # cannot be excluded: DetecTor then checks it, and refuses it.
            if (run == "excluded" and said and res.get(t) == "failed" and
                    all(h is not None and unexcludable(h) for h, _ in said)):
                explained[t] = said[0][1]
            else:
                unexplained.append(t)
        if unexplained:
            ok = False
            lines.append("%s: %d test(s) end differently than in the %s:"
                         % (label, len(unexplained), basename))
            for t in unexplained:
                lines.append("  %s: %s -> %s" % (t, base.get(t, "absent"),
                                                 res.get(t, "absent")))
                for _, said in other.get(t, [])[:3]:
                    lines.append("    %s" % short(said))
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
    lines.append("DetecTor (excluded run): %d handshake(s) not probed: excluded"
                 % excluded)
    if excluded == 0:
        ok = False
        lines.append("  libdetector was never consulted: the excluded run "
                     "proves nothing (was it loaded?)")
    if explained:
        reasons = {}
        for t, said in explained.items():
            reasons.setdefault(short(re.sub(r"^DetecTor\[\d+\]: ", "", said)), []).append(t)
        lines.append("  %d test(s) fail only in the excluded run because their "
                     "server name is longer than a detector.conf line can "
                     "exclude (%d characters with 'exclude = '): DetecTor "
                     "checks the name and refuses it:"
                     % (len(explained), CONF_LINE_MAX))
        for why, tests in sorted(reasons.items()):
            lines.append("    %d x %s" % (len(tests), why))
            for t in sorted(tests):
                lines.append("      %s" % t)
    stray = [(t, h, said) for t, l in sorted(other.items()) for h, said in l
             if t not in explained and not (h is not None and unexcludable(h))]
    if stray:
        ok = False
        lines.append("  %d line(s) about hosts the configuration should have "
                     "excluded, or errors:" % len(stray))
        for t, _, said in stray[:50]:
            lines.append("  %s: %s" % (t, short(said)))
        if len(stray) > 50:
            lines.append("  ... (%d more, in %s/excluded.*.log)"
                         % (len(stray) - 50, results))
    if not ok:
        verdict = "DIFFERENT (see above)"
    elif explained:
        verdict = ("same results in all three runs, except the %d test(s) "
                   "whose server name cannot be excluded" % len(explained))
    else:
        verdict = "same results in all three runs"
    lines.append("RESULT: " + verdict)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(results, "summary.txt"), "w") as fh:
        fh.write(text)
    sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
