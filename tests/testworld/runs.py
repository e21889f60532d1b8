"""What a test keeps of one finished run of a program under test, and how
a part of the world is started under pytest.

  Run        argv, exit status, stdout, stderr and time of a finished
             subprocess.run(), its --json output parsed when asked for;
             str() is everything a failing assertion should show.
             Subclasses add how to read the program's output.
  started()  start a part of the world, or fail the test run (no
             traceback) saying which part could not start and why
"""

import json

import pytest

from . import WorldError


class Run:
    """One finished run of a program under test."""

    name = None     # shown before argv when argv does not hold the program

    def __init__(self, argv, proc, elapsed):
        self.argv, self.rc, self.elapsed = argv, proc.returncode, elapsed
        self.out, self.err = proc.stdout, proc.stderr
        self.data = None            # stdout as one JSON value, with --json
        if "--json" in argv:
            try:
                self.data = json.loads(self.out)
            except ValueError:
                pass

    def __str__(self):
        """Everything a failing assertion should show."""
        command = " ".join(([self.name] if self.name else []) + list(self.argv))
        return ("%s\n  exit %s after %.2fs\n--- stdout\n%s--- stderr\n%s---"
                % (command, self.rc, self.elapsed, self.out, self.err))

    __repr__ = __str__


def started(part, what):
    """part.start(), or fail the test run saying `could not <what>: why`."""
    try:
        part.start()
    except WorldError as e:
        pytest.fail("could not %s: %s" % (what, e), pytrace=False)
    return part
