"""A throwaway Debian bookworm root for the package tests.

The base system (mmdebstrap, variant apt, plus the packages ours depend on
and libnss3-tools, from this machine's own apt sources, with libnss3 at the
version libnss3-detector was built for) is made once per machine and cached
as a tarball in DETECTOR_ROOT_CACHE (default /var/cache/detector); each test
run unpacks a fresh copy under build/.  Commands run in it with chroot, in a
private mount namespace that adds /proc and the /dev nodes a program needs,
so nothing is ever mounted on the host and its /usr is never touched.  The
root shares the host's network namespace: servers on 127.0.0.x are
reachable from inside.  deb() finds the packages make deb built.
"""

import glob
import hashlib
import os
import shutil
import subprocess
import tarfile

import pytest

ROOT_CACHE = os.environ.get("DETECTOR_ROOT_CACHE", "/var/cache/detector")
HOST_SOURCES = "/etc/apt/sources.list.d/debian.sources"
SUITE = "bookworm"
# What our packages depend on (so that installing them needs no download),
# the NSS tools the tests run, and systemd (not running: for
# systemd-analyze verify of our units).
BASE_PACKAGES = ["libnss3-tools", "libnspr4", "libinih1", "libjansson4",
                 "liblmdb0", "tor", "python3", "python3-stem",
                 "init-system-helpers", "procps", "systemd"]
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
       "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
DEV_NODES = ("null", "zero", "random", "urandom", "full")


class RootError(RuntimeError):
    pass


TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEB_DIR = os.environ.get("DETECTOR_DEB_DIR", os.path.join(TOP, "build", "deb"))


def deb(name):
    """The one .deb of package name in DEB_DIR (the test fails otherwise)."""
    found = glob.glob(os.path.join(DEB_DIR, "%s_*_*.deb" % name))
    if len(found) != 1:
        pytest.fail("expected one %s .deb in %s (run make deb), found %s"
                    % (name, DEB_DIR, found))
    return found[0]


def host_arch():
    return subprocess.run(["dpkg", "--print-architecture"], check=True,
                          capture_output=True, text=True).stdout.strip()


def base_tarball(nss_version):
    """The cached base tarball, made first if missing.  Its name hashes
    everything that goes into it, so a change makes a new one."""
    if not os.path.exists(HOST_SOURCES):
        raise RootError("%s is missing: the throwaway root uses this machine's "
                        "own Debian mirror" % HOST_SOURCES)
    with open(HOST_SOURCES, "rb") as f:
        sources = f.read()
    include = BASE_PACKAGES + ["libnss3=" + nss_version]
    argv = ["mmdebstrap", "--quiet", "--mode=root", "--variant=apt",
            "--include=" + ",".join(include), SUITE]
    key = hashlib.sha256(repr(argv).encode() + sources).hexdigest()[:16]
    path = os.path.join(ROOT_CACHE, "%s-%s-root-%s.tar" % (SUITE, host_arch(), key))
    if os.path.exists(path):
        return path
    os.makedirs(ROOT_CACHE, mode=0o755, exist_ok=True)
    tmp = path[:-len(".tar")] + ".tmp.tar"   # mmdebstrap: the suffix says tar
    proc = subprocess.run(argv + [tmp, HOST_SOURCES], capture_output=True, text=True)
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise RootError("mmdebstrap failed (exit %d) making %s:\n%s" %
                        (proc.returncode, path, proc.stderr[-3000:]))
    os.rename(tmp, path)
    # Older bases (another package list, other sources) are never used
    # again: 200+ MB each.
    for old in glob.glob(os.path.join(ROOT_CACHE, "%s-%s-root-*.tar" % (SUITE, host_arch()))):
        if old != path:
            os.unlink(old)
    return path


class Root:
    """A bookworm root unpacked at `path` (removed by remove())."""

    def __init__(self, path, tarball):
        if os.path.exists(path):
            shutil.rmtree(path)
        os.makedirs(path)
        self.path = os.path.realpath(path)
        subprocess.run(["tar", "-x", "-p", "--numeric-owner", "-f", tarball,
                        "-C", self.path], check=True)
        for d in DEV_NODES:     # mount points for the host's nodes
            node = self.file("/dev/" + d)
            if not os.path.exists(node):
                open(node, "w").close()
        # No service of a package installed here may start (there is no
        # init; invoke-rc.d would run tor's init script otherwise).
        self.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)

    def file(self, path):
        return os.path.join(self.path, path.lstrip("/"))

    def write(self, path, text, mode=0o644):
        p = self.file(path)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def run(self, argv, env=None, check=True, timeout=600):
        """argv inside the root; returns the CompletedProcess (text)."""
        script = ('set -e; r=$1; shift; mount -t proc proc "$r/proc"; '
                  'for d in %s; do mount --bind "/dev/$d" "$r/dev/$d"; done; '
                  'exec chroot "$r" "$@"' % " ".join(DEV_NODES))
        full = ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", script, "sh", self.path] + list(argv)
        e = dict(ENV)
        e.update(env or {})
        proc = subprocess.run(full, env=e, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RootError("in the root: %s: exit %d\nstdout:\n%s\nstderr:\n%s" %
                            (" ".join(argv), proc.returncode, proc.stdout[-4000:],
                             proc.stderr[-4000:]))
        return proc

    def sh(self, script, **kw):
        return self.run(["sh", "-c", script], **kw)

    def files(self):
        """Every path in the root but the volatile places (apt's and dpkg's
        own state, caches, logs, /tmp, /root): what a package may leave."""
        skip = {"proc", "dev", "tmp", "run", "root", "var/cache", "var/lib/apt",
                "var/lib/dpkg", "var/log"}
        out = set()
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = os.path.relpath(dirpath, self.path)
            rel = "" if rel == "." else rel
            dirnames[:] = [d for d in dirnames
                           if os.path.join(rel, d) not in skip]
            for n in dirnames + filenames:
                out.add(os.path.join(rel, n))
        return out

    def sha256(self, path):
        with open(self.file(path), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


def deb_member_sha256(deb, member):
    """sha256 of one file inside a .deb (its data.tar)."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True,
                          capture_output=True).stdout
    import io
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        f = t.extractfile("./" + member.lstrip("/"))
        return hashlib.sha256(f.read()).hexdigest()
