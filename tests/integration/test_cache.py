"""The verdict cache shared by every process (LMDB): a second process does
not probe again, the cache survives damage, sphere-probe manages it."""

import os
import re
import stat

from test_nss_hook import marks, probes_seen, run_app, tstclnt
from testworld.ports import MITM_ADDR, REAL_ADDR


def cache_file(home):
    return os.path.join(home, ".cache", "detector", "verdicts.mdb")


def test_second_process_makes_no_probe(world, nssdb, tmpdir_):
    m = marks(world)
    first = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
    assert first.rc == 0 and "hello" in first.out, first
    assert probes_seen(world, m) >= 4
    path = cache_file(tmpdir_)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    m = marks(world)
    second = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
    assert second.rc == 0 and "hello" in second.out, second
    assert "remembered verdict 'accept' for this key, no probe" in second.err, second
    assert probes_seen(world, m) == 0, "the second process probed again"


def test_a_different_key_is_probed_again(world, nssdb, tmpdir_):
    # The clean verdict is cached; the MITM's key is another key: probed,
    # refused (the "mismatch is the natural cue" rule), then refused from
    # the cache without probing.
    run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
    m = marks(world)
    mitm = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR)
    assert mitm.rc != 0 and "DETECTOR_ERROR_MITM" in mitm.err, mitm
    assert probes_seen(world, m) >= 2
    m = marks(world)
    again = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR)
    assert again.rc != 0 and "DETECTOR_ERROR_MITM" in again.err, again
    assert "remembered verdict 'reject'" in again.err, again
    assert probes_seen(world, m) == 0


def test_damaged_cache_is_set_aside_and_rebuilt(world, nssdb, tmpdir_):
    run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
    path = cache_file(tmpdir_)
    size = os.path.getsize(path)
    for damage in ("garbage", "truncated"):
        if damage == "garbage":
            with open(path, "r+b") as f:
                f.write(os.urandom(8192))
        else:
            with open(path, "r+b") as f:
                f.truncate(size // 3)
        app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
        assert app.rc == 0 and "hello" in app.out, app
        assert re.search(r"verdict cache .*verdicts\.mdb was damaged .*moved it aside to "
                         r".*verdicts\.mdb\.corrupt-\d+ and started a new one", app.err), app
        assert os.path.exists(path)
        # and the new cache works: the next process is answered from it
        again = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
        assert "remembered verdict 'accept'" in again.err, again
        size = os.path.getsize(path)
    aside = [n for n in os.listdir(os.path.dirname(path)) if ".corrupt-" in n]
    assert aside, "the damaged file must be kept for inspection"


def test_sphere_probe_cache_commands(world, probe, tmpdir_):
    env = probe.env(HOME=tmpdir_)
    args = ["--spheres", world.sphere_list(*world.honest),
            "--resolve", world.resolve(REAL_ADDR), "%s:%d" % (world.host, world.port)]
    first = probe.run(*args, env=env, cache=True)
    assert first.rc == 0 and "cached" not in first.out, first
    second = probe.run("--json", *args, env=env, cache=True)
    assert second.rc == 0 and second.json["verdict"] == "accept", second
    assert second.json.get("cached") is True and second.json["spheres"] == [], second
    fresh = probe.run("--json", "--no-cache", *args, env=env, cache=True)
    assert fresh.json.get("cached") is None and len(fresh.json["spheres"]) == 5, fresh
    listed = probe.run("--cache-list", env=env, cache=True)
    assert listed.rc == 0, listed
    assert re.search(r"^server\.test:%d\s+accept\s+%s" % (world.port, world.real.spki_sha256[:16]),
                     listed.out, re.M), listed
    forgot = probe.run("--cache-forget", "server.test", env=env, cache=True)
    assert forgot.rc == 0 and "forgot 1 cached verdict for server.test" in forgot.out, forgot
    listed = probe.run("--cache-list", env=env, cache=True)
    assert "server.test" not in listed.out, listed


def test_read_only_cache_is_read_not_written(world, nssdb, tmpdir_):
    run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
    d = os.path.dirname(cache_file(tmpdir_))
    ro = 'mount --bind "%s" "%s" && mount -o remount,bind,ro "%s"' % (d, d, d)
    m = marks(world)
    hit = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR, setup=ro)
    assert hit.rc == 0 and "hello" in hit.out, hit
    assert "is read-only" in hit.err and "remembered verdict 'accept'" in hit.err, hit
    assert probes_seen(world, m) == 0
    # A new verdict cannot be written: the handshake is still decided (here
    # refused), and kept in memory.
    mitm = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR, setup=ro)
    assert mitm.rc != 0 and "DETECTOR_ERROR_MITM" in mitm.err, mitm
