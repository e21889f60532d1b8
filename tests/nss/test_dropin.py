#!/usr/bin/python3
"""Prove that the enhanced libssl3.so is a drop-in for the system's.

    tests/nss/test_dropin.py [--system PATH] build/nss/lib/libssl3.so

Static checks against the system libssl3.so (same SONAME, the same exported
name@version set, the same version definitions and NEEDED list, `ldd -r`
clean), then real handshakes on loopback with Debian's unmodified tstclnt
(libnss3-tools) loaded with our library through LD_LIBRARY_PATH:

  * against openssl s_server on 127.0.0.1 (an independent TLS stack),
    TLS 1.2 and 1.3, with tstclnt's asynchronous certificate check (its
    default: the auth hook returns SECWouldBlock, then
    SSL_AuthCertificateComplete) and its synchronous one (-O);
  * a server certificate from an unknown CA is still refused;
  * our library on both ends (selfserv + tstclnt), inside a private network
    namespace because selfserv may listen on every address; skipped when
    `unshare --net` is not permitted.

Prints one line per check and "N passed, N failed[, N skipped]" last; exits
non-zero when a check failed. Needs: binutils, libc-bin, libnss3-tools,
openssl, util-linux and iproute2 (for the namespace check).
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

TIMEOUT = 30  # seconds for any one command; a handshake takes milliseconds


class Results:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}")
            lines = str(detail).rstrip().splitlines()
            if len(lines) > 40:    # the head says why, the tail where
                lines = lines[:15] + ["..."] + lines[-20:]
            for line in lines:
                print(f"     | {line}")
        return ok

    def skip(self, name, why):
        self.skipped += 1
        print(f"skip {name}: {why}")

    def summary(self):
        line = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            line += f", {self.skipped} skipped"
        print(line)
        return 1 if self.failed or not self.passed else 0


def run(cmd, env=None, timeout=TIMEOUT, cwd=None):
    """Run cmd, return (exit code, stdout+stderr); never raises on failure.
    cmd runs in its own process group, and on timeout the whole group is
    killed, so a server it started cannot outlive the test."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        p = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, errors="replace", start_new_session=True)
    except OSError as e:
        return -1, f"cannot run {cmd[0]}: {e}"
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return -1, (out or "") + f"\n(timed out after {timeout}s: {' '.join(cmd)})"


def system_libssl():
    """The libssl3.so that libnss3 installed (multiarch path)."""
    arch = run(["dpkg", "--print-architecture"])[1].strip()
    rc, out = run(["dpkg-query", "-L", f"libnss3:{arch}"])
    for path in out.splitlines():
        if path.endswith("/libssl3.so") and os.path.isfile(path):
            return path
    return None


# --- ELF facts -----------------------------------------------------------------

def exported_symbols(lib):
    """{(binding, type, version, name)} of the symbols lib defines."""
    rc, out = run(["objdump", "-T", lib])
    syms = set()
    for line in out.splitlines():
        tok = line.split()
        for i, t in enumerate(tok):
            if t in ("DF", "DO") and len(tok) >= i + 5:
                if tok[i + 1] != "*UND*":
                    syms.add((tok[1], t, tok[i + 3], tok[-1]))
                break
    return syms


def version_definitions(lib):
    """The "Version definitions" block of objdump -p, as a list of lines."""
    rc, out = run(["objdump", "-p", lib])
    m = re.search(r"Version definitions:\n(.*?)(?:\n\n|\Z)", out, re.S)
    return [l.strip() for l in m.group(1).splitlines()] if m else []


def dynamic_entries(lib, tag):
    rc, out = run(["readelf", "-d", lib])
    return [m.group(1) for m in re.finditer(r"\(" + tag + r"\)\s+.*?\[(.*?)\]", out)]


def static_checks(r, ours, system):
    ours_syms, sys_syms = exported_symbols(ours), exported_symbols(system)
    missing = sorted(sys_syms - ours_syms)
    extra = sorted(ours_syms - sys_syms)
    detail = "\n".join([f"missing: {' '.join(s)}" for s in missing] +
                       [f"extra:   {' '.join(s)}" for s in extra])
    r.check(f"exported symbols: {len(ours_syms)} name@version (binding, type) "
            f"identical to the system's {len(sys_syms)}",
            bool(sys_syms) and not missing and not extra, detail)

    ours_v, sys_v = version_definitions(ours), version_definitions(system)
    r.check(f"version definitions identical ({len(sys_v)} entries, "
            f"{ours_v[1].split()[-1] if len(ours_v) > 1 else '?'} .. "
            f"{ours_v[-1].split()[-1] if ours_v else '?'})",
            bool(sys_v) and ours_v == sys_v,
            "ours:\n  " + "\n  ".join(ours_v) + "\nsystem:\n  " + "\n  ".join(sys_v))

    ours_so, sys_so = dynamic_entries(ours, "SONAME"), dynamic_entries(system, "SONAME")
    r.check(f"SONAME {ours_so} same as the system's", ours_so == sys_so == ["libssl3.so"],
            f"ours {ours_so}, system {sys_so}")

    ours_n, sys_n = dynamic_entries(ours, "NEEDED"), dynamic_entries(system, "NEEDED")
    r.check(f"NEEDED {' '.join(ours_n)} same as the system's",
            sorted(ours_n) == sorted(sys_n), f"ours {ours_n}, system {sys_n}")

    rc, out = run(["ldd", "-r", ours])
    r.check("ldd -r: every symbol resolves, every library found",
            rc == 0 and "undefined symbol" not in out and "not found" not in out, out)


# --- Handshakes ------------------------------------------------------------------

def make_pki(d):
    """A test CA and a localhost/127.0.0.1 server certificate, in PEM, plus
    NSS databases: 'trusting' (the CA trusted), 'empty' (nothing trusted)
    and 'server' (the server's certificate and key, for selfserv)."""
    def sh(cmd):
        rc, out = run(cmd, cwd=d)
        if rc != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out}")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    sh(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=DetecTor drop-in test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    sh(["openssl", "req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost"])
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                "extendedKeyUsage=serverAuth\n")
    sh(["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "2", "-days", "2", "-extfile", "srv.ext", "-out", "srv.pem"])
    sh(["openssl", "pkcs12", "-export", "-in", "srv.pem", "-inkey", "srv.key",
        "-name", "server", "-out", "srv.p12", "-passout", "pass:"])
    for db in ("trusting", "empty", "server"):
        os.mkdir(os.path.join(d, db))
        sh(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"])
    sh(["certutil", "-A", "-d", "sql:trusting", "-n", "ca", "-t", "C,,", "-i", "ca.pem"])
    sh(["certutil", "-A", "-d", "sql:server", "-n", "ca", "-t", "C,,", "-i", "ca.pem"])
    sh(["pk12util", "-i", "srv.p12", "-d", "sql:server", "-W", ""])
    # tstclnt sends this after the handshake (-A): both test servers answer
    # and close, so tstclnt exits on its own (with -Q, a TLS 1.2 tstclnt can
    # wait forever for a server that has nothing to say).
    with open(os.path.join(d, "request"), "w") as f:
        f.write("GET / HTTP/1.0\r\n\r\n")


def start_openssl_server(d):
    """openssl s_server on 127.0.0.1, an ephemeral port; returns (proc, port)."""
    log = open(os.path.join(d, "s_server.log"), "w")
    proc = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0",
                             "-cert", "srv.pem", "-key", "srv.key", "-www"],
                            cwd=d, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(log.name) as f:
            m = re.search(r"^ACCEPT 127\.0\.0\.1:(\d+)", f.read(), re.M)
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    with open(log.name) as f:
        raise RuntimeError("openssl s_server did not start:\n" + f.read())


def loaded_from(output, lib):
    """True if the dynamic loader's LD_DEBUG=libs trace shows lib initialised."""
    return re.search(r"calling init: " + re.escape(lib) + r"\s*$", output, re.M) is not None


def without_ld_debug(output):
    """output less the loader's trace, for failure reports."""
    return "\n".join(l for l in output.splitlines() if not re.match(r"\s*\d+:", l))


def unmet_expectations(rc, out, ours, texts):
    """What a successful tstclnt run did not show: exit 0, our library
    initialised by the loader, each of texts in its output."""
    unmet = [] if rc == 0 else [f"exit code {rc}"]
    if not loaded_from(out, ours):
        unmet.append(f"no 'calling init: {ours}' in the loader trace")
    return unmet + [f"no {t!r} in the output" for t in texts if t not in out]


def handshake_checks(r, ours, tstclnt, d):
    libdir = os.path.dirname(ours)
    env = {"LD_LIBRARY_PATH": libdir, "LD_DEBUG": "libs"}
    server, port = start_openssl_server(d)
    try:
        for version, wire in (("tls1.2", "3.3"), ("tls1.3", "3.4")):
            # tstclnt's default: its auth hook returns SECWouldBlock, then it
            # checks the chain and calls SSL_AuthCertificateComplete. -O:
            # the hook calls SSL_AuthCertificate and returns its verdict.
            for mode, flag, shows in (
                    ("asynchronous", [], ["using asynchronous certificate validation",
                                          "handshake was paused by auth certificate hook"]),
                    ("synchronous", ["-O"], [])):
                rc, out = run([tstclnt, "-h", "127.0.0.1", "-p", str(port), "-d", "sql:trusting",
                               "-V", f"{version}:{version}", "-A", "request", "-v", *flag],
                              env=env, cwd=d)
                unmet = unmet_expectations(rc, out, ours, [
                    f"SSL version {wire}",               # tstclnt's view
                    f"Protocol  : TLSv{version[3:]}",    # s_server's page
                    "HTTP/1.0 200 ok", *shows])
                if flag and "asynchronous" in out:
                    unmet.append("-O, yet tstclnt used asynchronous validation")
                r.check(f"tstclnt + our libssl3.so -> openssl s_server, {version}, "
                        f"{mode} certificate check: handshake and HTTP round trip",
                        not unmet, "unmet: " + "; ".join(unmet) + "\n" + without_ld_debug(out))
        rc, out = run([tstclnt, "-h", "127.0.0.1", "-p", str(port), "-d", "sql:empty",
                       "-A", "request"], env=env, cwd=d)
        r.check("tstclnt + our libssl3.so refuses a certificate from an unknown CA "
                "(SEC_ERROR_UNKNOWN_ISSUER)",
                rc != 0 and "SEC_ERROR_UNKNOWN_ISSUER" in out and loaded_from(out, ours),
                f"exit {rc}\n{without_ld_debug(out)}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# Runs inside `unshare --net`: only this namespace's loopback exists, so
# selfserv's listening socket is reachable from nowhere else.
NETNS_SCRIPT = r"""
set -u
ip link set lo up || exit 97
selfserv -d sql:server -n server -p 4433 >selfserv.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait 2>/dev/null' EXIT
for v in tls1.3 tls1.2; do
    for i in $(seq 50); do      # until selfserv listens
        timeout 10 tstclnt -h localhost -p 4433 -d sql:trusting -V $v:$v -A request -v \
            >tstclnt-$v.log 2>&1 && break
        sleep 0.1
    done
    cat tstclnt-$v.log
done
if grep -q " r-xp .*$OURS\$" /proc/$server/maps; then
    echo "selfserv runs our $OURS"
else
    echo "selfserv does not map $OURS"
fi
"""


def server_role_check(r, ours, d):
    name = "selfserv + our libssl3.so <-> tstclnt + our libssl3.so, TLS 1.3 and 1.2 (private netns)"
    rc, out = run(["unshare", "--net", "true"])
    if rc != 0:
        r.skip(name, "unshare --net not permitted here")
        return
    rc, out = run(["unshare", "--net", "bash", "-c", NETNS_SCRIPT], cwd=d,
                  env={"LD_LIBRARY_PATH": os.path.dirname(ours), "OURS": ours})
    if rc == 97:
        r.skip(name, "cannot bring up loopback in a new network namespace")
        return
    r.check(name, rc == 0 and "SSL version 3.4" in out and "SSL version 3.3" in out
            and out.count("HTTP/1.0 200 OK") == 2 and "selfserv runs our" in out, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("library", help="the built libssl3.so")
    ap.add_argument("--system", help="the system libssl3.so (default: libnss3's)")
    args = ap.parse_args()
    ours = os.path.realpath(args.library)
    system = args.system or system_libssl()
    r = Results()

    if not r.check(f"built library exists: {args.library}", os.path.isfile(ours),
                   "run 'make nss' first"):
        return r.summary()
    if not r.check(f"system library found: {system}", system and os.path.isfile(system),
                   "is libnss3 installed? (make deps)"):
        return r.summary()
    static_checks(r, ours, system)

    tstclnt = "/usr/bin/tstclnt"
    rc, out = run(["ldd", tstclnt], env={"LD_LIBRARY_PATH": os.path.dirname(ours)})
    m = re.search(r"^\s*libssl3\.so => (\S+)", out, re.M)
    resolved = os.path.realpath(m.group(1)) if m else None
    r.check(f"ldd {tstclnt} with LD_LIBRARY_PATH resolves libssl3.so to ours",
            resolved == ours, f"resolved to {resolved}\n{out}")

    with tempfile.TemporaryDirectory(prefix="detector-nss-dropin-") as d:
        try:
            make_pki(d)
        except RuntimeError as e:
            r.check("test PKI and NSS databases created", False, str(e))
            return r.summary()
        try:
            handshake_checks(r, ours, tstclnt, d)
        except RuntimeError as e:
            r.check("openssl s_server on 127.0.0.1 started", False, str(e))
        server_role_check(r, ours, d)
    return r.summary()


if __name__ == "__main__":
    sys.exit(main())
