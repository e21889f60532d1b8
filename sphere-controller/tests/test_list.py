"""`detector-spheres list`: the `spheres =` line for detector.conf names
each sphere by the region it exits in ("europe=127.0.0.1:9162"), so that
DetecTor's reports can say where an attack sits (issue 17)."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from detector_spheres import cli  # noqa: E402
from detector_spheres.continents import DEFAULT_SPHERES  # noqa: E402


def test_default_spheres_listed_by_continent(tmp_path, capsys):
    assert cli.main(["list", "--state-dir", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    assert out == "spheres = " + ", ".join(
        "%s=127.0.0.1:%d" % (name, 9160 + 2 * i)
        for i, (name, _) in enumerate(DEFAULT_SPHERES)) + "\n"
    assert "europe=127.0.0.1:9162" in out
    assert cli.main(["list", "--json", "--state-dir",
                     str(tmp_path / "state")]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["entry"] for e in entries] == out[len("spheres = "):-1].split(
        ", ")


def test_unreadable_name_left_out():
    assert cli.list_entry("asia", ["127.0.0.1:1", "127.0.0.1:2"]) == \
        "asia=127.0.0.1:1|127.0.0.1:2"
    # a sphere.json edited by hand: detector.conf would refuse the name
    for name in ("Asia", "a b", "a=b", "x" * 33, "", "-a", "a\n"):
        assert cli.list_entry(name, ["127.0.0.1:1"]) == "127.0.0.1:1"
