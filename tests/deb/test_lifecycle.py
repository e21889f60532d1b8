"""The Debian packages' lifecycle, in a throwaway bookworm root.

make deb builds the packages (DETECTOR_DEB_DIR); this installs them in a
fresh root (debroot.py) and, in order:

 1. stock: an unmodified tstclnt (libnss3-tools) connects through the
    rogue-CA MITM of tests/testworld/world.py (the attack works);
 2. install: apt installs the four packages; libssl3.so is diverted and
    DetecTor's; the same tstclnt, without detector-run, now refuses the MITM
    (DETECTOR_ERROR_MITM) and still connects to the real server;
 3. spheres: there is no systemd in the root, so detector-spheres itself
    (what the unit's ExecStart/ExecStop run) starts five tor clients and
    stops them;
 4. remove and purge: the system's own libssl3.so is back, no diversion,
    and no file is left (the root's file list equals the one before 2);
 5. reinstall: DetecTor is back in place and refuses the MITM;
 6. NSS update: a libnss3 with a bumped version (the archive's package,
    repacked) is installed with apt: the upgrade succeeds, the system's own
    (new) libssl3.so is in place, no diversion, libnss3-detector is still
    installed, apt's output and syslog say so, tstclnt connects through the
    MITM as stock NSS does, and so does `detector-run tstclnt` (with a
    warning: it must not load the libssl3.so built for the old libnss3);
 7. back to the built-for libnss3 (a downgrade): the trigger puts DetecTor
    back;
 8. an upgrade of libnss3-detector itself keeps DetecTor in place;
 9. detector-deploy (detector-tools) is installed with its descriptors and
    manual; with a stand-in firefox-esr 140.12 (dpkg-deb) and its
    co-release deployed, an upgrade to firefox-esr 153.8 (no co-release)
    makes detector-tools' trigger put firefox-esr's own libssl3.so back and
    say so (apt's output, syslog); removing detector-tools takes a deployed
    co-release away too.

Needs root (chroot, mount namespaces, the sphere namespaces of World).
"""

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
import debroot  # noqa: E402  (tests/deb; tests/pytest.ini puts tests/ on the path)
from debroot import deb  # noqa: E402
from testworld.ports import free_port  # noqa: E402
from testworld.fixtures import world  # noqa: E402,F401 (a fixture)
from testworld.world import MITM_ADDR, REAL_ADDR  # noqa: E402

ROOT_DIR = os.path.join(TOP, "build", "deb-root")
PACKAGES = ["libdetector0", "detector-tools", "detector-spheres", "libnss3-detector"]
ARCH = debroot.host_arch()
MULTIARCH = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], check=True,
                           capture_output=True, text=True).stdout.strip()
LIBSSL = "/usr/lib/%s/libssl3.so" % MULTIARCH
ORIG = "/usr/lib/detector/libssl3.so.detector-orig"
SWITCH = "/usr/lib/detector/libnss3-detector-switch"
LIBNSS3 = "/usr/lib/%s/libnss3.so" % MULTIARCH
# detector-run's record that dpkg vouched for this libnss3.so (its mtime).
CHECKED = "/usr/lib/detector/libssl3.so.checked-against"

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (chroot, mount namespaces)")


def built_for():
    """The libnss3 version libnss3-detector was built for (its Depends)."""
    dep = subprocess.run(["dpkg-deb", "-f", deb("libnss3-detector"), "Depends"],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"(?:^|, )libnss3 \((?:>=|=) ([^)]+)\)", dep)
    if m is None:
        pytest.fail("libnss3-detector does not depend on a libnss3 version: %s" % dep)
    return m.group(1)


class Syslog:
    """A syslog socket at the root's /dev/log: what logger sends there."""

    def __init__(self, path):
        self.path = path
        self.lines = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            self.lines.append(data.decode(errors="replace"))

    def close(self):
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture(scope="module")
def root(world):
    tarball = debroot.base_tarball(built_for())
    r = debroot.Root(ROOT_DIR, tarball)
    r.syslog = Syslog(r.file("/dev/log"))
    r.debs = {}
    os.makedirs(r.file("/tmp/debs"), exist_ok=True)
    for p in PACKAGES:
        shutil.copy(deb(p), r.file("/tmp/debs"))
        r.debs[p] = "/tmp/debs/" + os.path.basename(deb(p))
    # An NSS database trusting the world's CA (which also signed the rogue
    # certificate: a compelled CA), and tstclnt's request.
    shutil.copy(world.ca.crt, r.file("/root/ca.crt"))
    os.mkdir(r.file("/root/nssdb"), 0o700)
    r.run(["certutil", "-N", "-d", "sql:/root/nssdb", "--empty-password"])
    r.run(["certutil", "-A", "-d", "sql:/root/nssdb", "-n", "testca", "-t", "C,,",
           "-i", "/root/ca.crt"])
    r.write("/root/request", "GET / HTTP/1.0\r\n\r\n")
    r.write("/etc/hosts", "127.0.0.1\tlocalhost\n")     # tstclnt() rewrites it
    yield r
    r.syslog.close()
    if not os.environ.get("DETECTOR_KEEP_ROOT"):
        r.remove()


def tstclnt(root, world, addr, wrapper=()):
    """An unmodified tstclnt in the root to server.test, which the root's
    /etc/hosts sends to addr; DetecTor (if installed) asks the world's
    honest spheres.  No detector-run (unless wrapper names it), no
    LD_LIBRARY_PATH."""
    root.write("/etc/hosts", "127.0.0.1\tlocalhost\n%s\tserver.test\n" % addr)
    shutil.rmtree(root.file("/root/.cache"), ignore_errors=True)
    return root.run([*wrapper, "tstclnt", "-h", "server.test", "-p", str(world.cport),
                     "-d", "sql:/root/nssdb", "-A", "/root/request"],
                    env={"DETECTOR_SPHERES": world.sphere_list(*world.honest),
                         "DETECTOR_LOG": "decisions"},
                    check=False, timeout=120)


def show(proc):
    return "exit %d\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout[-3000:],
                                                   proc.stderr[-3000:])


def assert_stock(root, msg=""):
    """The system's own libssl3.so, regular file, no diversion of it."""
    div = root.run(["dpkg-divert", "--list", LIBSSL]).stdout
    assert div.strip() == "", "a diversion of %s is left: %s %s" % (LIBSSL, div, msg)
    assert not os.path.islink(root.file(LIBSSL)), "%s is still a symlink %s" % (LIBSSL, msg)
    assert os.path.isfile(root.file(LIBSSL)), "%s is missing %s" % (LIBSSL, msg)
    assert not os.path.exists(root.file(ORIG)), "%s is left %s" % (ORIG, msg)
    owner = root.run(["dpkg", "-S", LIBSSL]).stdout
    assert owner.startswith("libnss3:%s: " % ARCH), owner
    assert not os.path.exists(root.file(CHECKED)), "%s is left %s" % (CHECKED, msg)


def assert_detector(root):
    div = root.run(["dpkg-divert", "--list", LIBSSL]).stdout
    assert "diversion of %s to %s by libnss3-detector" % (LIBSSL, ORIG) in div, div
    assert os.readlink(root.file(LIBSSL)) == "../detector/libssl3.so"
    assert root.run([SWITCH, "status"], check=False).returncode == 0
    # detector-run trusts this libnss3.so without asking dpkg.
    with open(root.file(CHECKED)) as f:
        assert f.read() == "%s\n%s\n" % (built_for(), LIBNSS3)
    assert os.stat(root.file(CHECKED)).st_mtime_ns == \
        os.stat(root.file(LIBNSS3)).st_mtime_ns


def assert_refused(proc):
    assert proc.returncode != 0, "the MITM was not refused:\n" + show(proc)
    assert "hello" not in proc.stdout, show(proc)
    assert "DETECTOR_ERROR_MITM" in proc.stderr, show(proc)


def assert_connected(proc):
    assert proc.returncode == 0 and "hello" in proc.stdout, show(proc)


def apt_install(root, *debs, extra=()):
    return root.run(["apt-get", "install", "-y", "--no-install-recommends", *extra,
                     *debs], check=False)


# -- the lifecycle, in order


def test_1_stock_nss_falls_for_the_mitm(root, world):
    root.before = root.files()
    root.stock_sha = root.sha256(LIBSSL)
    assert_stock(root)
    assert_connected(tstclnt(root, world, MITM_ADDR))


def test_2_install_protects_unmodified_tstclnt(root, world):
    proc = apt_install(root, *[root.debs[p] for p in PACKAGES])
    assert proc.returncode == 0, show(proc)
    assert "NSS applications now use DetecTor's libssl3.so" in proc.stdout + proc.stderr
    assert_detector(root)
    assert root.sha256(ORIG) == root.stock_sha, "the system's libssl3.so was not kept"
    assert os.path.isfile(root.file("/etc/detector/detector.conf"))
    # dpkg (and debsums) see libnss3's files intact: dpkg follows the
    # diversion to the system's libssl3.so.
    verify = root.run(["dpkg", "--verify", "libnss3"], check=False)
    assert verify.returncode == 0 and verify.stdout == "", show(verify)
    refused = tstclnt(root, world, MITM_ADDR)
    assert_refused(refused)
    # detector-run finds the package's libssl3.so, built for this libnss3.
    run = tstclnt(root, world, MITM_ADDR, wrapper=["detector-run"])
    assert_refused(run)
    assert "WARNING" not in run.stderr, show(run)
    assert_connected(tstclnt(root, world, REAL_ADDR))
    # The spheres start at the next boot; the monitor waits for its
    # configuration (not enabled).
    wants = root.file("/etc/systemd/system/multi-user.target.wants")
    assert os.path.islink(os.path.join(wants, "detector-spheres.service"))
    assert not os.path.lexists(os.path.join(wants, "detector-monitor.service"))
    assert not os.path.lexists(root.file(
        "/etc/systemd/system/timers.target.wants/detector-monitor.timer"))
    # The units are valid for the root's systemd (syntax, executables,
    # users, the timer's service).
    units = ["/lib/systemd/system/" + u for u in
             ("detector-spheres.service", "detector-monitor.service",
              "detector-monitor-once.service", "detector-monitor.timer")]
    verify = root.run(["systemd-analyze", "verify", "--man=no", *units], check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == "", show(verify)
    # The conffile (every key commented out) loads: sphere-probe reads it.
    proc = root.run(["sphere-probe", "--config", "/etc/detector/detector.conf",
                     "--cache-list"], check=False)
    assert proc.returncode == 0, show(proc)


def tors_in(root):
    """PIDs of the tor processes whose root directory is this root (the
    host's other tor processes, if any, are not ours)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
            if comm == "tor" and os.readlink("/proc/%s/root" % pid) == root.path:
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def test_3_spheres_start_and_stop_five_tor_clients(root, world):
    """No systemd in a chroot: detector-spheres start/stop, as the unit's
    ExecStart/ExecStop run them, with DisableNetwork (no traffic leaves the
    machine) and free ports."""
    conf = "[spheres]\nstate_dir = /root/spheres\n\n"
    for i, (name, cc) in enumerate((("asia", "jp"), ("europe", "de"),
                                    ("north-america", "us"), ("south", "br"),
                                    ("oceania", "au"))):
        conf += ("[sphere %s]\ncountries = %s\nsocks_port = %d\ncontrol_port = %d\n\n"
                 % (name, cc, free_port("127.0.0.1"), free_port("127.0.0.1")))
    conf += "[tor]\nDisableNetwork = 1\n"
    root.write("/root/spheres.conf", conf)
    proc = root.run(["detector-spheres", "start", "--no-wait", "--config",
                     "/root/spheres.conf"], check=False, timeout=120)
    assert proc.returncode == 0, show(proc)
    try:
        tors = tors_in(root)
        assert len(tors) == 5, "expected 5 tor processes in the root, found %s" % tors
        status = root.run(["detector-spheres", "status", "--config", "/root/spheres.conf"],
                          check=False)
        for name in ("asia", "europe", "north-america", "south", "oceania"):
            assert name in status.stdout, show(status)
    finally:
        stop = root.run(["detector-spheres", "stop", "--config", "/root/spheres.conf"],
                        check=False, timeout=120)
    assert stop.returncode == 0, show(stop)
    assert tors_in(root) == [], "tor processes left"


def test_4_remove_and_purge_leave_nothing(root, world):
    proc = root.run(["apt-get", "remove", "-y", *PACKAGES], check=False)
    assert proc.returncode == 0, show(proc)
    assert_stock(root, "after remove")
    assert root.sha256(LIBSSL) == root.stock_sha
    proc = root.run(["apt-get", "purge", "-y", *PACKAGES], check=False)
    assert proc.returncode == 0, show(proc)
    assert_stock(root, "after purge")
    left = root.files() - root.before
    gone = root.before - root.files()
    assert not left, "files left after purge: %s" % sorted(left)
    assert not gone, "files gone after purge: %s" % sorted(gone)
    assert_connected(tstclnt(root, world, MITM_ADDR))


def test_5_reinstall(root, world):
    proc = apt_install(root, *[root.debs[p] for p in PACKAGES])
    assert proc.returncode == 0, show(proc)
    assert_detector(root)
    assert_refused(tstclnt(root, world, MITM_ADDR))


@pytest.fixture(scope="module")
def nss_debs(root):
    """The archive's libnss3 (the built-for version), and the same package
    repacked with a bumped version: an NSS update with no co-release."""
    version = built_for()
    cache = os.path.join(debroot.ROOT_CACHE, "debs")
    os.makedirs(cache, exist_ok=True)
    found = glob.glob(os.path.join(cache, "libnss3_*_%s.deb" % ARCH))
    orig = [f for f in found if "detectortest" not in f]
    if not orig:
        subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
                        "libnss3:%s=%s" % (ARCH, version)], cwd=cache, check=True,
                       capture_output=True)
        orig = [f for f in glob.glob(os.path.join(cache, "libnss3_*_%s.deb" % ARCH))
                if "detectortest" not in f]
    orig = orig[0]
    bumped_version = version + "+detectortest1"
    work = tempfile.mkdtemp(prefix="detector-nss-")
    try:
        tree = os.path.join(work, "tree")
        subprocess.run(["dpkg-deb", "-R", orig, tree], check=True)
        control = os.path.join(tree, "DEBIAN", "control")
        with open(control) as f:
            text = f.read()
        assert "\nVersion: %s\n" % version in text
        with open(control, "w") as f:
            f.write(text.replace("\nVersion: %s\n" % version,
                                 "\nVersion: %s\n" % bumped_version))
        bumped = os.path.join(work, "libnss3_bumped.deb")
        subprocess.run(["dpkg-deb", "-b", tree, bumped], check=True, capture_output=True)
        shutil.copy(orig, root.file("/tmp/debs/libnss3_orig.deb"))
        shutil.copy(bumped, root.file("/tmp/debs/libnss3_bumped.deb"))
        sha = debroot.deb_member_sha256(bumped, LIBSSL)
    finally:
        shutil.rmtree(work)
    return {"version": version, "bumped": bumped_version, "bumped_sha": sha}


def test_6_nss_update_proceeds_and_restores_stock_libssl(root, world, nss_debs):
    """`apt-get upgrade` (what unattended-upgrades does) from a repository
    that has the new libnss3 and no matching libnss3-detector: nothing may
    be kept back or removed."""
    repo = root.file("/tmp/repo")
    os.makedirs(repo)
    shutil.copy(root.file("/tmp/debs/libnss3_bumped.deb"),
                os.path.join(repo, "libnss3_bumped_%s.deb" % ARCH))
    packages = subprocess.run(["dpkg-scanpackages", "."], cwd=repo, check=True,
                              capture_output=True, text=True).stdout
    root.write("/tmp/repo/Packages", packages)
    root.write("/tmp/repo.list", "deb [trusted=yes] file:/tmp/repo ./\n")
    only_repo = ["-o", "Dir::Etc::SourceList=/tmp/repo.list",
                 "-o", "Dir::Etc::SourceParts=-"]
    root.run(["apt-get", *only_repo, "update"])
    mark = len(root.syslog.lines)
    proc = root.run(["apt-get", *only_repo, "upgrade", "-y"], check=False)
    out = proc.stdout + proc.stderr
    assert "kept back" not in out and "0 upgraded" not in out, out
    print("\n".join(line for line in out.splitlines() if "libnss3" in line))
    assert proc.returncode == 0, show(proc)
    now = root.run(["dpkg-query", "-W", "-f=${Version} ${Status}",
                    "libnss3:" + ARCH]).stdout
    assert now == nss_debs["bumped"] + " install ok installed", now
    ours = root.run(["dpkg-query", "-W", "-f=${Status}", "libnss3-detector"]).stdout
    assert ours == "install ok installed", "libnss3-detector was removed or held: " + ours
    assert_stock(root, "after the NSS update")
    assert root.sha256(LIBSSL) == nss_debs["bumped_sha"], \
        "the libssl3.so in place is not the updated libnss3's"
    told = ("libnss3 is now %s, but DetecTor's libssl3.so was built for libnss3 %s"
            % (nss_debs["bumped"], nss_debs["version"]))
    assert told in out, "apt's output does not say it:\n" + out
    assert "NOT checked by DetecTor" in out, out
    logged = [line for line in root.syslog.lines[mark:] if "detector: " in line]
    assert any(told in line for line in logged), \
        "syslog got: %s" % root.syslog.lines[mark:]
    status = root.run([SWITCH, "status"], check=False)
    assert status.returncode == 1, show(status)
    assert_connected(tstclnt(root, world, MITM_ADDR))
    # detector-run must not load /usr/lib/detector/libssl3.so (built for the
    # old libnss3) either: the stock NSS, and a loud warning.
    run = tstclnt(root, world, MITM_ADDR, wrapper=["detector-run"])
    assert_connected(run)
    assert ("/usr/lib/detector/libssl3.so was built for libnss3 %s, but the installed "
            "libnss3 is %s" % (nss_debs["version"], nss_debs["bumped"])) in run.stderr, show(run)
    assert "NOT checked by DetecTor" in run.stderr, show(run)


def test_7_back_to_the_built_for_nss_reactivates(root, world, nss_debs):
    proc = apt_install(root, "/tmp/debs/libnss3_orig.deb", extra=["--allow-downgrades"])
    assert proc.returncode == 0, show(proc)
    assert_detector(root)
    assert_refused(tstclnt(root, world, MITM_ADDR))


def test_8_upgrading_libnss3_detector_keeps_it_in_place(root, world):
    """An upgrade of libnss3-detector itself (same NSS): prerm puts the
    system's libssl3.so back, the new postinst DetecTor's again."""
    work = tempfile.mkdtemp(prefix="detector-upgrade-")
    try:
        tree = os.path.join(work, "tree")
        subprocess.run(["dpkg-deb", "-R", deb("libnss3-detector"), tree], check=True)
        control = os.path.join(tree, "DEBIAN", "control")
        with open(control) as f:
            text = f.read()
        version = re.search(r"^Version: (.*)$", text, re.M).group(1)
        with open(control, "w") as f:
            f.write(text.replace("\nVersion: %s\n" % version,
                                 "\nVersion: %s+1\n" % version))
        subprocess.run(["dpkg-deb", "-b", tree, root.file("/tmp/debs/upgrade.deb")],
                       check=True, capture_output=True)
    finally:
        shutil.rmtree(work)
    proc = apt_install(root, "/tmp/debs/upgrade.deb")
    assert proc.returncode == 0, show(proc)
    now = root.run(["dpkg-query", "-W", "-f=${Version}", "libnss3-detector"]).stdout
    assert now == version + "+1", now
    assert_detector(root)
    assert root.run(["dpkg-divert", "--list", "*libssl3*"]).stdout.count("\n") == 1
    assert_refused(tstclnt(root, world, MITM_ADDR))


# -- detector-deploy (detector-tools) and an application that bundles NSS

FF_OLD = "140.12.0esr-1~deb12u1"        # has a co-release (coreleases/*.bundled)
FF_NEW = "153.8.0esr-1~deb12u1"         # bundles NSS 3.125.1: no co-release
FF_DIR = "/usr/lib/firefox-esr"
FF_DESCRIPTOR = "debian-bookworm-firefox-esr-140.12.0esr-nss-3.112.5"


def fake_firefox(root, version):
    """A firefox-esr package of that version (dpkg-deb) whose libssl3.so
    says which version it is: what apt would install, minus the browser."""
    work = tempfile.mkdtemp(prefix="detector-ff-")
    try:
        tree = os.path.join(work, "tree")
        os.makedirs(os.path.join(tree, "DEBIAN"))
        os.makedirs(tree + FF_DIR)
        with open(os.path.join(tree, "DEBIAN", "control"), "w") as f:
            f.write("Package: firefox-esr\nVersion: %s\nArchitecture: %s\n"
                    "Maintainer: DetecTor tests <tests@example.org>\n"
                    "Description: stand-in for the test of detector-deploy\n" % (version, ARCH))
        for name in ("libssl3.so", "libnss3.so"):
            with open(tree + FF_DIR + "/" + name, "w") as f:
                f.write("firefox-esr %s's own %s\n" % (version, name))
        out = "/tmp/debs/firefox-esr_%s.deb" % version
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, root.file(out)],
                       check=True, capture_output=True)
    finally:
        shutil.rmtree(work)
    return out


def deploy(root, *args):
    return root.run(["detector-deploy", "--build", "/root/corelease", *args], check=False)


def test_9_detector_deploy_is_packaged_and_reverted_by_an_application_upgrade(root):
    """detector-tools ships detector-deploy, the descriptors and the manual;
    its dpkg trigger puts firefox-esr's own libssl3.so back when firefox-esr
    is upgraded to a version without a co-release (apt's output, syslog)."""
    for path in ("/usr/bin/detector-deploy", "/usr/share/man/man1/detector-deploy.1.gz",
                 "/usr/share/detector/coreleases/%s.bundled" % FF_DESCRIPTOR):
        assert os.path.isfile(root.file(path)), path + " is not installed"
    status = root.run(["detector-deploy", "status"], check=False)
    assert status.returncode == 0, show(status)
    assert "system libnss3 %s" % built_for() in status.stdout, show(status)
    assert "DetecTor: ACTIVE (libnss3-detector" in status.stdout, show(status)

    proc = apt_install(root, fake_firefox(root, FF_OLD))
    assert proc.returncode == 0, show(proc)
    # A stand-in for the built co-release (make corelease), with the hook's
    # marker by which detector-deploy knows its own file.
    os.makedirs(root.file("/root/corelease/%s/lib" % FF_DESCRIPTOR), exist_ok=True)
    root.write("/root/corelease/%s/lib/libssl3.so" % FF_DESCRIPTOR,
               "stand-in co-release, detector_nss_v1\n")
    proc = deploy(root, "install", "firefox-esr")
    assert proc.returncode == 0, show(proc)
    assert "DetecTor: ACTIVE (co-release" in deploy(root, "status").stdout

    new = fake_firefox(root, FF_NEW)
    mark = len(root.syslog.lines)
    proc = apt_install(root, new)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, show(proc)
    with open(root.file(FF_DIR + "/libssl3.so")) as f:
        assert f.read() == "firefox-esr %s's own libssl3.so\n" % FF_NEW, \
            "the 140.12 co-release is still in front of 153.8's NSS"
    assert root.run(["dpkg-divert", "--list", FF_DIR + "/*"]).stdout == ""
    assert not os.path.exists(root.file(FF_DIR + "/libssl3.so.detector-orig"))
    told = ("firefox-esr is now %s, but DetecTor's co-release libssl3.so in %s was built "
            "for firefox-esr %s" % (FF_NEW, FF_DIR, FF_OLD))
    assert told in out, "apt's output does not say it:\n" + out
    logged = [line for line in root.syslog.lines[mark:] if "detector-deploy: " in line]
    assert any(told in line for line in logged), "syslog got: %s" % root.syslog.lines[mark:]
    state = root.run(["dpkg-query", "-W", "-f=${Status}", "firefox-esr"]).stdout
    assert state == "install ok installed", state
    status = deploy(root, "status").stdout
    assert "no co-release exists for firefox-esr %s because the source is not reachable" \
        % FF_NEW in status, status

    # Back to 140.12, deployed again; removing detector-tools takes the
    # co-release away with it; then firefox-esr goes.
    assert apt_install(root, "/tmp/debs/firefox-esr_%s.deb" % FF_OLD,
                       extra=["--allow-downgrades"]).returncode == 0
    assert deploy(root, "install", "firefox-esr").returncode == 0
    proc = root.run(["apt-get", "remove", "-y", "detector-tools"], check=False)
    assert proc.returncode == 0, show(proc)
    with open(root.file(FF_DIR + "/libssl3.so")) as f:
        assert f.read() == "firefox-esr %s's own libssl3.so\n" % FF_OLD
    assert root.run(["dpkg-divert", "--list", FF_DIR + "/*"]).stdout == ""
    proc = root.run(["apt-get", "purge", "-y", "firefox-esr"], check=False)
    assert proc.returncode == 0, show(proc)
    assert not os.path.exists(root.file(FF_DIR))
