"""Sphere groups (issue 16 item 4, libdetector's side): a sphere served
by several tor processes is listed as its SOCKS ports joined by '|'.  It
has one vote, and each check goes through one of its members, so that
checks spread across them.  Real sphere-probe runs through the world's
honest spheres (microsocks), which log every connection they make.
"""

from world import HOST, REAL_ADDR

RUNS = 20   # all through one member by chance: 2 * 2**-20 per group


def test_a_group_has_one_vote_and_checks_spread_across_its_members(world, probe):
    h = world.honest
    groups = "%s|%s, %s|%s, %s" % tuple(s.address for s in h)
    marks = [s.log_size() for s in h]
    used = set()
    for _ in range(RUNS):
        run = probe.run("--json", "--quorum", "3", "--spheres", groups,
                        "--resolve", world.resolve(REAL_ADDR),
                        "%s:%d" % (HOST, world.port))
        assert run.rc == 0, run
        data = run.json
        assert data["verdict"] == "accept", run
        # One entry, one vote per group: three spheres, not five.
        assert len(data["spheres"]) == 3, run
        assert data["policy"] == {"quorum": 3, "on_undecided": "accept",
                                  "on_mitm": "refuse", "site": None,
                                  "action": "accept", "note": None}, run
        via = [s["address"] for s in data["spheres"]]
        assert via[0] in (h[0].address, h[1].address), run
        assert via[1] in (h[2].address, h[3].address), run
        assert via[2] == h[4].address, run
        used.update(via)
    assert used == {s.address for s in h}, \
        "every member of every group must carry some of %d checks: %s" % (RUNS, used)
    # ... and the members really were the ones asked.
    for s, m in zip(h, marks):
        assert s.targets(m), "sphere %s made no connection" % s.address
