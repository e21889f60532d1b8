"""A site's evidence options (issue 17, detector.conf(5) [site NAME]):
require_direct_staple, tolerance = same-issuer and tolerance = survey, end
to end with real `openssl s_server`s stapling responses a real OCSP
responder (`openssl ocsp`, testworld/ocsp.py) made, reached directly and
through real SOCKS5 spheres (microsocks) whose hosts file each test points
at one server or another.

  127.0.0.12  the real certificate, the test CA's chain, a fresh good staple
  127.0.0.13  "regional": another key, same subject, same CA, fresh good staple
  127.0.0.14  the regional certificate, no staple
  127.0.0.15  the regional certificate, a stale staple (expired 3 days ago)
  127.0.0.16  a look-alike CA (the test CA's name, another key): its leaf
              for server.test, its chain, a fresh good staple it signed
  127.0.0.17  another CA: its leaf for server.test, chain, good staple
  127.0.0.18  the real certificate and chain, no staple

Every tolerated ACCEPT says so (the reason, --json's evidence.tolerated);
every attack each mode must resist is refused."""

import os
import threading
import time

import pytest

from testworld.ocsp import backdated, respond
from testworld.ports import HOST, free_port, wait_tls
from testworld.processes import Process, run
from testworld.relay import Relay, relay
from testworld.services import close_quietly
from testworld.world import Sphere

EXIT_ACCEPT, EXIT_REJECT = 0, 2
ADDRS = {"good": "127.0.0.12", "regional": "127.0.0.13", "bare": "127.0.0.14",
         "stale": "127.0.0.15", "lookalike": "127.0.0.16", "otherca": "127.0.0.17",
         "real-bare": "127.0.0.18"}
DEAD = "127.0.0.19"     # no server: a sphere pointed there fails (Tor blocked)
NSPHERES = 5
# Servers an NSS application's direct path reaches: its handshake waits
# for DetecTor while DetecTor's second direct connection reads the
# staple, which one single-threaded s_server would only accept after the
# first ended.  Two of them behind a relay taking turns, as a real site's
# servers would serve both at once.
CONCURRENT = ("good", "regional", "bare", "real-bare")


class TakingTurns(Relay):
    """Each connection to the least busy of several upstreams."""
    kind = "taking-turns"

    def __init__(self, addr, upstreams, port):
        self.active = {u: 0 for u in upstreams}
        self.turns = threading.Lock()
        super().__init__(addr, upstreams[0], port=port)

    def _serve(self, conn):
        with self.turns:
            up = min(self.active, key=self.active.get)
            self.active[up] += 1
        sock = None
        try:
            sock = self._connect(up)
            relay(conn, sock, self._stop, self.lifetime)
        except (OSError, ValueError):
            pass
        finally:
            close_quietly(conn, sock)
            with self.turns:
                self.active[up] -= 1


def make_ca(d, name, cn):
    key = os.path.join(d, name + ".key")
    crt = os.path.join(d, name + ".crt")
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-out", key])
    run(["openssl", "req", "-x509", "-new", "-key", key, "-sha256", "-days", "2",
         "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", crt])
    return crt, key


def make_leaf(d, name, ca_crt, ca_key):
    """A leaf for server.test (CN and SAN, as the world's) from ca."""
    key = os.path.join(d, name + ".key")
    csr = os.path.join(d, name + ".csr")
    crt = os.path.join(d, name + ".crt")
    ext = os.path.join(d, name + ".ext")
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-out", key])
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\n" % HOST)
    run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + HOST, "-out", csr])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
         "-sha256", "-extfile", ext, "-out", crt])
    return crt, key


class Sites:
    """The servers on one port, and NSPHERES spheres to point at them."""

    def __init__(self, world, d):
        self.world, self.dir, self.procs = world, d, []
        ca, real = world.ca, world.real
        self.regional = world.pki.new_key("tolerance-regional")
        look_crt, look_key = make_ca(d, "lookalike-ca", "DetecTor Test CA")
        look_leaf = make_leaf(d, "lookalike-leaf", look_crt, look_key)
        other_crt, other_key = make_ca(d, "other-ca", "Another Test CA")
        other_leaf = make_leaf(d, "other-leaf", other_crt, other_key)
        # (certificate, key, chain, staple) of each server
        self.servers = {
            "good": (real.crt, real.key, ca.crt,
                     respond(d, "good", ca.crt, real.crt, ca.crt, ca.key)),
            "regional": (self.regional.crt, self.regional.key, ca.crt,
                         respond(d, "regional", ca.crt, self.regional.crt,
                                 ca.crt, ca.key)),
            "bare": (self.regional.crt, self.regional.key, ca.crt, None),
            "stale": (self.regional.crt, self.regional.key, ca.crt,
                      backdated(d, "stale", ca.crt, ca.key, self.regional.crt)),
            "lookalike": (look_leaf[0], look_leaf[1], look_crt,
                          respond(d, "lookalike", look_crt, look_leaf[0],
                                  look_crt, look_key)),
            "otherca": (other_leaf[0], other_leaf[1], other_crt,
                        respond(d, "otherca", other_crt, other_leaf[0],
                                other_crt, other_key)),
            "real-bare": (real.crt, real.key, ca.crt, None),
        }
        self.port = free_port(*ADDRS.values())
        self.relays = []
        for kind, (crt, key, chain, staple) in self.servers.items():
            addr = ADDRS[kind]
            ports = [self.port]
            if kind in CONCURRENT:
                ports = [free_port(addr) for _ in range(3)]
            for i, port in enumerate(ports):
                argv = ["openssl", "s_server", "-accept", "%s:%d" % (addr, port),
                        "-cert", crt, "-key", key, "-cert_chain", chain, "-www"]
                if staple:
                    argv += ["-status_file", staple]
                proc = Process("s_server tolerance-%s%d" % (kind, i), argv,
                               os.path.join(d, "s_server-%s%d.log" % (kind, i)))
                self.procs.append(proc)
                wait_tls(addr, port, proc)
            if kind in CONCURRENT:
                self.relays.append(TakingTurns(addr, [(addr, p) for p in ports],
                                               self.port))
                wait_tls(addr, self.port)
        self.spheres = [Sphere(world, "tolerance%d" % i, {HOST: ADDRS["good"]})
                        for i in range(NSPHERES)]
        for s in self.spheres:
            s.wait()

    def point(self, *kinds):
        """Points sphere i at the server of kinds[i] (the rest at "good"):
        the hosts file bind-mounted into its namespace is rewritten in
        place, and microsocks reads it for every connection."""
        kinds = list(kinds) + ["good"] * (NSPHERES - len(kinds))
        for s, kind in zip(self.spheres, kinds):
            with open(s.hosts_file, "w") as f:
                f.write("127.0.0.1\tlocalhost\n%s\t%s\n"
                        % (ADDRS.get(kind, DEAD), HOST))

    def stop(self):
        for r in self.relays:
            r.stop()
        for p in self.procs:
            p.stop()


@pytest.fixture(scope="module")
def sites(world, scratch):
    d = os.path.join(scratch, "tolerance")
    os.mkdir(d, 0o700)
    s = Sites(world, d)
    yield s
    s.stop()


def conf(tmpdir_, text, name="site.conf"):
    path = os.path.join(tmpdir_, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def check(probe, st, direct, config=None, env=None, cache=False, text=False):
    """sphere-probe (--json unless text), the direct path to the server of
    kind `direct`, through every sphere, quorum 4 of 5."""
    args = [] if text else ["--json"]
    if config:
        args += ["-c", config]
    return probe.run(*args, "-k", "4", "--resolve",
                     "%s:%d:%s" % (HOST, st.port, ADDRS[direct]),
                     "--spheres", st.world.sphere_list(*st.spheres),
                     "%s:%d" % (HOST, st.port), env=env, cache=cache)


def evidence(r):
    return r.json["evidence"]


# -- require_direct_staple

def test_require_direct_staple(probe, sites, tmpdir_):
    sites.point()
    # Off by default: a missing staple is only noted.
    r = check(probe, sites, "real-bare")
    assert r.rc == EXIT_ACCEPT, r
    assert r.json["ocsp_direct_missing"] is True, r
    assert evidence(r) == {"require_direct_staple": False, "tolerance": "off",
                           "staple_refused": False, "tolerated": None}, r
    c = conf(tmpdir_, "[site %s]\nrequire_direct_staple = yes\n" % HOST)
    r = check(probe, sites, "real-bare", config=c)
    assert r.rc == EXIT_REJECT, r
    assert r.json["verdict"] == "reject", r
    assert evidence(r)["staple_refused"] is True, r
    assert "require_direct_staple" in r.json["reason"], r
    assert r.json["revoked"] is False, r
    assert set(s["status"] for s in r.json["spheres"]) <= {"match", "skipped"}, r
    assert r.json["policy"]["action"] == "refuse", r
    # The direct path staples a fresh good response: accepted.
    r = check(probe, sites, "good", config=c)
    assert r.rc == EXIT_ACCEPT, r
    assert evidence(r)["staple_refused"] is False, r
    # The text report says it.
    t = check(probe, sites, "real-bare", config=c, text=True)
    assert t.rc == EXIT_REJECT, t
    assert "verdict: REJECT" in t.out and "require_direct_staple" in t.out, t


def test_require_direct_staple_not_answered_from_memory(probe, sites, tmpdir_):
    """The verdict cache is keyed by the key: an ACCEPT remembered for a
    connection that stapled must not answer one with the same key that
    does not (an old certificate of a stolen key, replayed)."""
    sites.point()
    env = probe.env(HOME=tmpdir_, XDG_CACHE_HOME=os.path.join(tmpdir_, "cache"))
    c = conf(tmpdir_, "[site %s]\nrequire_direct_staple = yes\n" % HOST)
    r = check(probe, sites, "good", config=c, env=env, cache=True)
    assert r.rc == EXIT_ACCEPT, r
    r = check(probe, sites, "real-bare", config=c, env=env, cache=True)
    assert r.rc == EXIT_REJECT, r
    assert evidence(r)["staple_refused"] is True, r


# -- tolerance = same-issuer

def test_require_direct_staple_when_tor_is_blocked(probe, sites, tmpdir_):
    """Every sphere failing (Tor blocked) leaves no sphere staple to
    compare with: the direct path must staple a fresh good response
    itself, even for a key the key history knows (security review of
    issue 17, H1: a stolen key replayed without its staple passed)."""
    sites.point()
    env = probe.env(HOME=tmpdir_, XDG_CACHE_HOME=os.path.join(tmpdir_, "cache"))
    c = conf(tmpdir_, "[detector]\ncache_validity = 1\n"
             "[site %s]\nrequire_direct_staple = yes\n" % HOST)
    r = check(probe, sites, "good", config=c, env=env, cache=True)
    assert r.rc == EXIT_ACCEPT, r              # the key enters the history
    time.sleep(1.2)
    sites.point(*["dead"] * NSPHERES)
    try:
        r = check(probe, sites, "real-bare", config=c, env=env, cache=True)
        assert r.rc == EXIT_REJECT, r
        assert r.json["verdict"] == "reject", r
        assert evidence(r)["staple_refused"] is True, r
        assert "the spheres could not decide" in r.json["reason"], r
        # the direct path stapling a fresh good response: accepted by
        # history as before
        r = check(probe, sites, "good", config=c, env=env, cache=True)
        assert r.json["verdict"] == "undecided", r
        assert r.json["history"] == "accepted-by-history", r
        assert evidence(r)["staple_refused"] is False, r
        # a site never seen, no staple: refused whatever on_undecided says
        fresh = probe.env(HOME=os.path.join(tmpdir_, "h2"),
                          XDG_CACHE_HOME=os.path.join(tmpdir_, "cache2"))
        os.mkdir(os.path.join(tmpdir_, "h2"), 0o700)
        r = check(probe, sites, "real-bare", config=c, env=fresh, cache=True)
        assert r.rc == EXIT_REJECT and evidence(r)["staple_refused"], r
    finally:
        sites.point()


SAME_ISSUER = "[site %s]\ntolerance = same-issuer\n" % HOST


def test_same_issuer_off_by_default(probe, sites):
    sites.point()
    r = check(probe, sites, "regional")
    assert r.rc == EXIT_REJECT, r
    assert evidence(r)["tolerated"] is None, r


def test_same_issuer_tolerates_and_says_so(probe, sites, tmpdir_):
    sites.point()
    c = conf(tmpdir_, SAME_ISSUER)
    r = check(probe, sites, "regional", config=c)
    assert r.rc == EXIT_ACCEPT, r
    j = r.json
    assert j["verdict"] == "accept", r
    assert evidence(r)["tolerance"] == "same-issuer", r
    assert evidence(r)["tolerated"] == "same-issuer", r
    assert j["reason"].startswith("tolerated (tolerance = same-issuer, [site %s])"
                                  % HOST), r
    assert [s["status"] for s in j["spheres"]] == ["mismatch"] * NSPHERES, r
    assert j["direct"]["spki_sha256"] == sites.regional.spki_sha256, r
    t = check(probe, sites, "regional", config=c, text=True)
    assert t.rc == EXIT_ACCEPT, t
    assert "verdict: ACCEPT" in t.out and "tolerated" in t.out, t


@pytest.mark.parametrize("kind,why", [
    ("otherca", "vouch"),            # a rogue certificate from another CA
    ("lookalike", "vouch"),          # the CA's very name, another key
    ("bare", "staples no OCSP"),     # the same CA, no staple
    ("stale", "stale"),              # the same CA, a stale staple
])
def test_same_issuer_refuses_attacks(probe, sites, tmpdir_, kind, why):
    sites.point()
    r = check(probe, sites, kind, config=conf(tmpdir_, SAME_ISSUER))
    assert r.rc == EXIT_REJECT, r
    assert evidence(r)["tolerated"] is None, r
    assert "not tolerated (tolerance = same-issuer)" in r.json["reason"], r
    assert why in r.json["reason"], r


def test_same_issuer_needs_a_quorum(probe, sites, tmpdir_):
    """Two spheres' paths lead to another CA's certificate: three vouch,
    fewer than the quorum of four."""
    sites.point("otherca", "otherca")
    try:
        r = check(probe, sites, "regional", config=conf(tmpdir_, SAME_ISSUER))
    finally:
        sites.point()
    assert r.rc == EXIT_REJECT, r
    assert "3 of 5 spheres vouch" in r.json["reason"], r


# -- tolerance = survey

SURVEY = "[site %s]\ntolerance = survey\n" % HOST


def survey_env(probe, tmpdir_):
    return probe.env(HOME=tmpdir_, XDG_CACHE_HOME=os.path.join(tmpdir_, "cache"))


def test_survey_key_no_sphere_saw(probe, sites, tmpdir_):
    env = survey_env(probe, tmpdir_)
    c = conf(tmpdir_, SURVEY)
    sites.point()
    r = check(probe, sites, "good", config=c, env=env, cache=True)
    assert r.rc == EXIT_ACCEPT and evidence(r)["tolerated"] is None, r
    r = check(probe, sites, "otherca", config=c, env=env, cache=True)
    assert r.rc == EXIT_REJECT, r
    assert evidence(r)["tolerated"] is None, r


def test_survey_tolerates_a_key_a_sphere_saw(probe, sites, tmpdir_):
    env = survey_env(probe, tmpdir_)
    c = conf(tmpdir_, SURVEY)
    # Off by default (and nothing recorded then).
    sites.point("regional", "regional")
    try:
        r = check(probe, sites, "good", env=env, cache=True)
        assert r.rc == EXIT_REJECT, r
        # Two spheres see the regional key, three the real one: no quorum
        # contradicts either.  The direct (real) key is seen now.
        r = check(probe, sites, "good", config=c, env=env, cache=True)
        assert r.rc == EXIT_ACCEPT, r
        assert evidence(r)["tolerated"] == "survey", r
        assert "a sphere sees this key now" in r.json["reason"], r
    finally:
        sites.point()
    # Every sphere sees the real key now; the regional key was seen.
    r = check(probe, sites, "regional", config=c, env=env, cache=True)
    assert r.rc == EXIT_ACCEPT, r
    assert evidence(r)["tolerated"] == "survey", r
    assert "a sphere saw this key on" in r.json["reason"], r
    assert "survey_days = 7" in r.json["reason"], r
    # A tolerated ACCEPT is not remembered: probed again, and said again.
    r = check(probe, sites, "regional", config=c, env=env, cache=True)
    assert r.rc == EXIT_ACCEPT and evidence(r)["tolerated"] == "survey", r
    # Outside the window: survey_days can only be 1 or more, so the
    # sighting is forgotten with the host instead.
    f = probe.run("--cache-forget", "%s:%d" % (HOST, sites.port), env=env, cache=True)
    assert f.rc == 0, f
    r = check(probe, sites, "regional", config=c, env=env, cache=True)
    assert r.rc == EXIT_REJECT, r


def test_survey_one_lying_sphere_is_contradicted(probe, sites, tmpdir_):
    """One sphere's path leads to another CA's certificate while the other
    four agree on the real key: that sighting is contradicted by a quorum
    at the same time and never tolerates the rogue key later."""
    env = survey_env(probe, tmpdir_)
    c = conf(tmpdir_, SURVEY)
    sites.point("otherca")
    try:
        r = check(probe, sites, "good", config=c, env=env, cache=True)
        assert r.rc == EXIT_ACCEPT and evidence(r)["tolerated"] is None, r
    finally:
        sites.point()
    r = check(probe, sites, "otherca", config=c, env=env, cache=True)
    assert r.rc == EXIT_REJECT, r
    assert evidence(r)["tolerated"] is None, r


def test_survey_one_lying_and_one_blocked_sphere_record_nothing(
        probe, sites, tmpdir_):
    """One sphere's path leads to another CA's certificate, another sphere
    is blocked, the other three (under the quorum of 4) agree on the real
    key: nothing contradicts the liar with a quorum, yet its key must not
    become a sighting that tolerates it later (security review of issue
    17, M2: it did)."""
    env = survey_env(probe, tmpdir_)
    c = conf(tmpdir_, SURVEY)
    sites.point("otherca", "dead")
    try:
        r = check(probe, sites, "good", config=c, env=env, cache=True)
        assert r.json["verdict"] == "undecided", r
    finally:
        sites.point()
    r = check(probe, sites, "otherca", config=c, env=env, cache=True)
    assert r.rc == EXIT_REJECT, r
    assert evidence(r)["tolerated"] is None, r


# -- through the NSS integration (an unmodified tstclnt under detector-run)

def nss_app(sites, nssdb, tmpdir_, direct, site_text, log="decisions"):
    from test_nss_hook import run_app, tstclnt
    return run_app(sites.world, tmpdir_, tstclnt(nssdb, sites.port), ADDRS[direct],
                   spheres=sites.world.sphere_list(*sites.spheres),
                   config="[detector]\nquorum = 4\ncache = off\n" + site_text,
                   log=log)


def test_nss_require_direct_staple(sites, nssdb, tmpdir_):
    """The NSS hook hands over the certificate only: the direct staple is
    read by a second direct connection (inside the application's own
    name space, so to the same server), and its absence refuses."""
    sites.point()
    site = "[site %s]\nrequire_direct_staple = yes\n" % HOST
    app = nss_app(sites, nssdb, tmpdir_, "real-bare", site)
    assert app.rc != 0, app
    assert "DETECTOR_ERROR_STAPLE_MISSING" in app.err, app
    assert "REFUSED" in app.err and "require_direct_staple" in app.err, app
    ok = os.path.join(tmpdir_, "good")
    os.mkdir(ok, 0o700)
    app = nss_app(sites, nssdb, ok, "good", site)
    assert app.rc == 0, app


def test_nss_same_issuer_logged_as_tolerated(sites, nssdb, tmpdir_):
    sites.point()
    site = "[site %s]\ntolerance = same-issuer\n" % HOST
    # Said at the default log level (errors), where a confirmed ACCEPT
    # is not (security review of issue 17, L1).
    app = nss_app(sites, nssdb, tmpdir_, "regional", site, log="errors")
    assert app.rc == 0, app
    assert "accepted (accept)" in app.err, app
    assert "tolerated (tolerance = same-issuer, [site %s])" % HOST in app.err, app
    # The same CA's certificate without its fresh staple: refused.
    bare = os.path.join(tmpdir_, "bare")
    os.mkdir(bare, 0o700)
    app = nss_app(sites, nssdb, bare, "bare", site)
    assert app.rc != 0, app
    assert "DETECTOR_ERROR_MITM" in app.err, app
    assert "not tolerated (tolerance = same-issuer)" in app.err, app
