"""Host names under the enhanced NSS (issue 13, item 1): a handshake NSS
accepted but DetecTor cannot check is refused, never accepted as a routine
UNDECIDED; and every spelling NSS's name matching reads as an IPv4 address
is that address for DetecTor too, when it is excluded and when it is
probed.

The client is Debian's unmodified tstclnt under detector-run.  Its -a
option names the host the certificate is checked against (SSL_SetURL)
while it connects to server.test, which its private /etc/hosts sends to
the real server's address, 127.0.0.2.
"""

import os
import subprocess

import pytest

from test_nss_hook import marks, probes_seen, run_app, tstclnt
from testworld.world import Sphere
from world import REAL_ADDR, Cert, Process, free_port, wait_tls


def issue(world, tmpdir, name, subject, san=None):
    """A certificate from the world's CA for subject (and a SAN)."""
    key, csr, crt, ext = (os.path.join(tmpdir, name + s)
                          for s in (".key", ".csr", ".crt", ".ext"))
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], check=True,
                   capture_output=True)
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
        if san:
            f.write("subjectAltName=%s\n" % san)
    subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + subject,
                    "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", world.ca.crt,
                    "-CAkey", world.ca.key, "-set_serial",
                    str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
                    "-sha256", "-extfile", ext, "-out", crt], check=True,
                   capture_output=True)
    return Cert(name, crt, key)


def serve(d, name, cert):
    """A forking TLS server on the real address that answers "hello": the
    spheres' probes must reach it while DetecTor holds the application's
    handshake open."""
    port = free_port(REAL_ADDR)
    proc = Process("names " + name,
                   ["socat", "OPENSSL-LISTEN:%d,bind=%s,reuseaddr,fork,cert=%s,key=%s,"
                    "verify=0" % (port, REAL_ADDR, cert.crt, cert.key),
                    "SYSTEM:head -c 16 >/dev/null && echo hello"],
                   os.path.join(d, name + ".log"))
    wait_tls(REAL_ADDR, port, proc)
    return proc, port


@pytest.fixture(scope="module")
def servers(world, scratch):
    """Two servers on the real address: CN "bank test" (no SAN, so NSS
    matches the CN), and one for the IP address 127.0.0.2 only."""
    d = os.path.join(scratch, "names-pki")
    os.mkdir(d, 0o700)
    spaced, spaced_port = serve(d, "bank-test",
                                issue(world, d, "bank-test", "bank test"))
    ip, ip_port = serve(d, "ip-only", issue(world, d, "ip-only", "ip only",
                                            "IP:%s" % REAL_ADDR))
    yield {"spaced": spaced_port, "ip": ip_port}
    spaced.stop()
    ip.stop()


def as_host(nssdb, port, name):
    return tstclnt(nssdb, port) + ["-a", name]


def sphere_targets(world, m):
    return [t for s, mk in zip(world.honest, m) for t in s.targets(mk)]


def test_a_name_nss_accepts_but_detector_cannot_check_is_refused(world, nssdb, tmpdir_,
                                                                servers):
    port = servers["spaced"]
    stock = run_app(world, tmpdir_, as_host(nssdb, port, "bank test"), REAL_ADDR,
                    detector=False)
    assert stock.rc == 0 and "hello" in stock.out, \
        "NSS itself must accept CN 'bank test' for this test to mean anything:\n%s" % stock
    m = marks(world)
    app = run_app(world, tmpdir_, as_host(nssdb, port, "bank test"), REAL_ADDR)
    assert app.rc != 0 and "hello" not in app.out, app
    assert "DETECTOR_ERROR_UNCHECKABLE" in app.err, app
    assert "bank test:%d REFUSED (uncheckable)" % port in app.err, app
    assert "accepted" not in app.err, app
    assert probes_seen(world, m) == 0, "nothing can be asked about that name"
    # on_undecided = accept (the default above) does not let it through,
    # and neither does a verdict cache: nothing was remembered.
    again = run_app(world, tmpdir_, as_host(nssdb, port, "bank test"), REAL_ADDR)
    assert again.rc != 0 and "DETECTOR_ERROR_UNCHECKABLE" in again.err, again


SPELLINGS = ["2130706434", "127.2", "0x7f.0.0.2", "::ffff:127.0.0.2"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_excluded_address_is_excluded_however_it_is_spelled(world, nssdb, tmpdir_,
                                                               servers, spelling):
    port = servers["ip"]
    stock = run_app(world, tmpdir_, as_host(nssdb, port, spelling), REAL_ADDR,
                    detector=False)
    assert stock.rc == 0 and "hello" in stock.out, \
        "NSS must match %s to the IP SAN for this test to mean anything:\n%s" % (
            spelling, stock)
    m = marks(world)
    app = run_app(world, tmpdir_, as_host(nssdb, port, spelling), REAL_ADDR,
                  config="[detector]\nexclude = 127.0.0.0/8\n")
    assert app.rc == 0 and "hello" in app.out, app
    assert "%s:%d not probed: excluded by '127.0.0.0/8'" % (REAL_ADDR, port) in app.err, app
    assert probes_seen(world, m) == 0, \
        "an excluded intranet address was sent to the spheres: %s" % sphere_targets(world, m)


@pytest.fixture(scope="module")
def address_spheres(world):
    """Five spheres of this module's own: an IP literal is rightly sent to
    the spheres as an address, and the world's honest spheres must never
    see one (test_sphere_privacy.py checks that over the whole session)."""
    spheres = [Sphere(world, "addr%d" % i, {}) for i in range(5)]
    for s in spheres:
        s.wait()
    return spheres


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_address_is_probed_as_that_address(world, nssdb, tmpdir_, servers, spelling,
                                              address_spheres):
    port = servers["ip"]
    m = [s.log_size() for s in address_spheres]
    app = run_app(world, tmpdir_, as_host(nssdb, port, spelling), REAL_ADDR,
                  config="[detector]\ncache = off\n",
                  spheres=world.sphere_list(*address_spheres))
    assert app.rc == 0 and "hello" in app.out, app
    assert "%s:%d accepted (accept)" % (REAL_ADDR, port) in app.err, app
    targets = [t for s, mk in zip(address_spheres, m) for t in s.targets(mk)]
    assert len(targets) >= 4 and set(targets) == {(REAL_ADDR, port)}, \
        "the spheres must be asked for the address %s, not a name: %s" % (REAL_ADDR, targets)
