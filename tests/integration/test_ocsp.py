"""OCSP evidence and localisation end to end: real `openssl s_server`s
stapling (-status_file) responses that a real OCSP responder (`openssl
ocsp`, testworld/ocsp.py) made for the test CA about the real server's
certificate, reached directly and through real SOCKS5 spheres (microsocks,
each resolving server.test to the server of its case).

  127.0.0.6  staples a fresh good response
  127.0.0.7  staples a fresh revoked response
  127.0.0.8  staples nothing
  127.0.0.9  staples "revoked" signed by a look-alike CA (forged)
  127.0.0.10 staples a good response that expired three days ago
  127.0.0.11 staples nothing, and presents a rotated key

Every other server presents the same certificate and key (world.real, with
the CA in its chain): only the staple differs, so every key matches and
only the OCSP evidence can change the verdict."""

import calendar
import os
import re
import time

import pytest

from testworld.ocsp import backdated, respond
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, free_port, wait_tls
from testworld.processes import Process, run
from testworld.world import Sphere

EXIT_ACCEPT, EXIT_REJECT = 0, 2
ADDRS = {"good": "127.0.0.6", "revoked": "127.0.0.7", "none": "127.0.0.8",
         "forged": "127.0.0.9", "stale": "127.0.0.10", "rotated": "127.0.0.11"}


class Stapling:
    """The five servers on one port, and spheres leading to them."""

    prefix = "ocsp"           # of the spheres' names (folders in the world)

    def __init__(self, world, directory):
        self.world, self.dir = world, directory
        self.procs, self.spheres = [], {}
        ca, real = world.ca, world.real
        evil_key = os.path.join(directory, "evil.key")
        evil_crt = os.path.join(directory, "evil.crt")
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-out", evil_key])
        # Same name as the test CA, another key.
        run(["openssl", "req", "-x509", "-new", "-key", evil_key, "-sha256",
             "-days", "2", "-subj", "/CN=DetecTor Test CA", "-addext",
             "basicConstraints=critical,CA:TRUE", "-out", evil_crt])
        self.files = {
            "good": respond(directory, "good", ca.crt, real.crt, ca.crt, ca.key),
            "revoked": respond(directory, "revoked", ca.crt, real.crt, ca.crt,
                               ca.key, revoked=True),
            "forged": respond(directory, "forged", ca.crt, real.crt, evil_crt,
                              evil_key, revoked=True),
            "stale": backdated(directory, "stale", ca.crt, ca.key, real.crt),
            "none": None,
            "rotated": None,
        }
        self.rotated = world.pki.new_key("ocsp-rotated")
        self.port = free_port(*ADDRS.values())
        for kind, addr in ADDRS.items():
            cert = self.rotated if kind == "rotated" else real
            argv = ["openssl", "s_server", "-accept", "%s:%d" % (addr, self.port),
                    "-cert", cert.crt, "-key", cert.key, "-cert_chain", ca.crt, "-www"]
            if self.files[kind]:
                argv += ["-status_file", self.files[kind]]
            proc = Process("s_server ocsp-" + kind, argv,
                           os.path.join(directory, "s_server-%s.log" % kind))
            self.procs.append(proc)
            wait_tls(addr, self.port, proc)

    def sphere(self, kind, i=0):
        """A sphere resolving server.test to the server of `kind`."""
        key = (kind, i)
        if key not in self.spheres:
            s = Sphere(self.world, "%s-%s%d" % (self.prefix, kind, i),
                       {HOST: ADDRS[kind]})
            s.wait()
            self.spheres[key] = s
        return self.spheres[key]

    def stop(self):
        for s in self.spheres.values():
            s.proc.stop()
        for p in self.procs:
            p.stop()


def serve_stapling(world, scratch, prefix="ocsp"):
    """A Stapling in scratch/PREFIX whose spheres are named PREFIX-...,
    stopped when the generator ends (for a module's fixture)."""
    d = os.path.join(scratch, prefix)
    os.mkdir(d, 0o700)
    s = Stapling(world, d)
    s.prefix = prefix
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stapling(world, scratch):
    yield from serve_stapling(world, scratch)


def check(probe, st, direct, spheres, quorum):
    """sphere-probe --json, the direct path to the server of kind
    `direct`, through spheres of the kinds listed."""
    seen = {}
    sph = []
    for kind in spheres:
        sph.append(st.sphere(kind, seen.get(kind, 0)))
        seen[kind] = seen.get(kind, 0) + 1
    r = probe.run("--json", "-k", str(quorum), "--resolve",
                  "%s:%d:%s" % (HOST, st.port, ADDRS[direct]),
                  "--spheres", st.world.sphere_list(*sph),
                  "%s:%d" % (HOST, st.port))
    return r, sph


def test_all_good_accepts(probe, stapling, world):
    r, sph = check(probe, stapling, "good", ["good"] * 4, 4)
    j = r.json
    assert r.rc == EXIT_ACCEPT, r
    assert j["revoked"] is False and j["ocsp_direct_missing"] is False, r
    assert j["direct"]["ocsp"]["status"] == "good", r
    assert j["direct"]["ocsp"]["fresh"] is True, r
    # openssl ocsp -ndays 7: nextUpdate a week after thisUpdate
    o = j["direct"]["ocsp"]
    assert o["next_update"] - o["this_update"] == 7 * 86400, r
    for s in j["spheres"]:
        assert s["status"] == "match", r
        assert s["ocsp"]["status"] == "good" and s["ocsp"]["fresh"], r
    assert j["locality"] == "consistent", r


def test_revoked_on_one_sphere_path_rejects(probe, stapling):
    # Quorum 5 of 5: every sphere is awaited, so the one whose path
    # reaches the server stapling "revoked" is always heard.
    r, sph = check(probe, stapling, "good", ["good"] * 4 + ["revoked"], 5)
    j = r.json
    assert r.rc == EXIT_REJECT, r
    assert j["verdict"] == "reject", r
    assert [s["status"] for s in j["spheres"]] == ["match"] * 5, r
    assert j["revoked"] is True, r
    assert j["revoked_via"] == sph[4].address, r
    assert r.sphere(sph[4])["ocsp"]["status"] == "revoked", r
    assert "revoked" in j["reason"], r
    assert j["locality"] == "consistent", r
    # The same through the text report.
    t = probe.run("-k", "5", "--resolve", "%s:%d:%s" % (HOST, stapling.port, ADDRS["good"]),
                  "--spheres", stapling.world.sphere_list(*sph),
                  "%s:%d" % (HOST, stapling.port))
    assert t.rc == EXIT_REJECT, t
    assert "verdict: REJECT" in t.out and "revoked" in t.out, t
    assert "%s revoked, fresh" % sph[4].address in " ".join(t.out.split()), t


def test_revoked_on_direct_path_rejects(probe, stapling):
    r, sph = check(probe, stapling, "revoked", ["good"] * 4, 4)
    j = r.json
    assert r.rc == EXIT_REJECT, r
    assert j["revoked"] is True and j["revoked_via"] == "direct", r
    assert j["direct"]["ocsp"]["status"] == "revoked", r
    assert j["direct"]["ocsp"]["revoked_at"] > 0, r
    assert j["direct"]["spki_sha256"] == stapling.world.real.spki_sha256, r


def test_missing_direct_staple_noted(probe, stapling):
    r, sph = check(probe, stapling, "none", ["good"] * 4, 4)
    j = r.json
    assert r.rc == EXIT_ACCEPT and j["verdict"] == "accept", r
    assert j["direct"]["ocsp"]["status"] == "none", r
    assert j["ocsp_direct_missing"] is True, r
    assert "ocsp_direct_missing" in j["reason"], r
    # Stale on the direct path: the same.
    r, sph = check(probe, stapling, "stale", ["good"] * 4, 4)
    j = r.json
    assert r.rc == EXIT_ACCEPT, r
    assert j["direct"]["ocsp"]["status"] == "good", r
    assert j["direct"]["ocsp"]["fresh"] is False, r
    assert j["ocsp_direct_missing"] is True, r
    # Nothing stapled anywhere: nothing withheld.
    r, sph = check(probe, stapling, "none", ["none"] * 4, 4)
    assert r.rc == EXIT_ACCEPT, r
    assert r.json["ocsp_direct_missing"] is False, r


def test_forged_response_ignored(probe, stapling):
    # "Revoked", signed by a look-alike CA, on one sphere's path: ignored.
    r, sph = check(probe, stapling, "good", ["good"] * 4 + ["forged"], 5)
    j = r.json
    assert r.rc == EXIT_ACCEPT, r
    assert j["revoked"] is False, r
    f = r.sphere(sph[4])["ocsp"]
    assert f["status"] == "invalid", r
    assert "signature does not verify" in f["error"], r
    # On the direct path: ignored, and no fresh staple there.
    r, sph = check(probe, stapling, "forged", ["good"] * 4, 4)
    j = r.json
    assert r.rc == EXIT_ACCEPT, r
    assert j["revoked"] is False, r
    assert j["direct"]["ocsp"]["status"] == "invalid", r
    assert j["ocsp_direct_missing"] is True, r


def test_locality(probe, world):
    """Where the attack sits, with the world's MITM and lying exit."""
    def go(addr, spheres):
        return probe.run("--json", "--resolve", "%s:%d:%s" % (HOST, world.port, addr),
                         "--spheres", world.sphere_list(*spheres), "-k", "4",
                         "%s:%d" % (HOST, world.port))
    # The MITM on the direct path only: every sphere agrees on another key.
    r = go(MITM_ADDR, world.honest)
    assert r.rc == EXIT_REJECT, r
    assert r.json["locality"] == "local-path", r
    # One sphere's exit lies: regional, naming it.
    r = go(REAL_ADDR, world.honest[:4] + [world.lying])
    j = r.json
    if r.sphere(world.lying)["status"] == "mismatch":
        assert j["locality"] == "regional", r
        assert world.lying.address in j["locality_detail"], r
    else:   # decided before the lying sphere answered
        assert j["locality"] == "consistent", r
    # And the text report says it.
    t = probe.run("--resolve", "%s:%d:%s" % (HOST, world.port, MITM_ADDR),
                  "--spheres", world.sphere_list(*world.honest),
                  "%s:%d" % (HOST, world.port))
    assert "where: local-path:" in t.out, t


def test_server_or_global(probe, stapling, tmpdir_):
    """Every path agrees on a key other than the one accepted before for
    host:port (the verdict cache is the key history)."""
    env = probe.env(HOME=tmpdir_, XDG_CACHE_HOME=os.path.join(tmpdir_, "cache"))
    st = stapling

    def go(kind):
        sph = [st.sphere(kind, i) for i in range(4)]
        return probe.run("--json", "--resolve", "%s:%d:%s" % (HOST, st.port, ADDRS[kind]),
                         "--spheres", st.world.sphere_list(*sph),
                         "%s:%d" % (HOST, st.port), env=env, cache=True)
    r = go("good")              # first visit: nothing to compare with
    assert r.rc == EXIT_ACCEPT, r
    assert r.json["locality"] == "consistent", r
    assert "no key was accepted here before" in r.json["locality_detail"], r
    r = go("good")              # stapled: probed again, the same key
    assert r.json["locality"] == "consistent", r
    assert "sees the key accepted" in r.json["locality_detail"], r
    r = go("rotated")           # everyone sees the new key
    assert r.rc == EXIT_ACCEPT, r
    assert r.json["direct"]["spki_sha256"] == st.rotated.spki_sha256, r
    assert r.json["locality"] == "server-or-global", r
    assert "key rotation" in r.json["locality_detail"], r


def test_cached_accept_ends_with_the_staples(probe, stapling, tmpdir_):
    """Security review M2: a remembered ACCEPT is not probed again, so it
    must not outlive the good staples that vouched for it.  cache_validity
    is 30 days; the staples' nextUpdate is 7 days on: the cached ACCEPT
    expires then, not in 30 days."""
    env = probe.env(HOME=tmpdir_, XDG_CACHE_HOME=os.path.join(tmpdir_, "cache-m2"))
    st = stapling
    conf = os.path.join(tmpdir_, "m2.conf")
    with open(conf, "w") as f:
        f.write("cache_validity = %d\n" % (30 * 86400))
    os.chmod(conf, 0o600)
    sph = [st.sphere("good", i) for i in range(4)]
    r = probe.run("-c", conf, "--json", "--resolve",
                  "%s:%d:%s" % (HOST, st.port, ADDRS["good"]),
                  "--spheres", st.world.sphere_list(*sph),
                  "%s:%d" % (HOST, st.port), env=env, cache=True)
    assert r.rc == EXIT_ACCEPT, r
    next_update = r.json["direct"]["ocsp"]["next_update"]
    listed = probe.run("-c", conf, "--cache-list", env=env, cache=True)
    assert listed.rc == 0, listed
    m = re.search(r"^%s:%d\s+accept\s.*expires (\S+)" % (re.escape(HOST), st.port),
                  listed.out, re.M)
    assert m, listed
    expires = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ"))
    assert expires <= next_update + 5, (expires, next_update, listed)
    assert expires >= next_update - 120, (expires, next_update, listed)


def test_nss_application_refuses_a_revoked_certificate(stapling, nssdb, tmpdir_):
    """An unmodified NSS client (tstclnt under detector-run): the direct
    path staples nothing, one sphere's path reaches a server stapling the
    CA's "revoked": the handshake is refused although every key matches.
    (The NSS hook passes no staple of its own: the certificate checked is
    the one a sphere saw byte for byte.)"""
    from test_nss_hook import run_app, tstclnt
    st = stapling
    sph = [st.sphere("good", i) for i in range(4)]
    conf = "[detector]\nquorum = 5\n"
    clean = run_app(st.world, tmpdir_, tstclnt(nssdb, st.port), ADDRS["none"],
                    spheres=st.world.sphere_list(*sph, st.sphere("good", 4)),
                    config=conf)
    assert clean.rc == 0, clean
    fresh = os.path.join(tmpdir_, "second")      # no remembered verdict
    os.mkdir(fresh, 0o700)
    app = run_app(st.world, fresh, tstclnt(nssdb, st.port), ADDRS["none"],
                  spheres=st.world.sphere_list(*sph, st.sphere("revoked")),
                  config=conf)
    assert app.rc != 0, app
    assert "REFUSED" in app.err and "revoked" in app.err, app
    assert "DETECTOR_ERROR_REVOKED" in app.err, app         # not ..._MITM
