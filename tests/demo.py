#!/usr/bin/python3
"""make demo: DetecTor catching a real TLS man-in-the-middle on loopback.

Builds the loopback world of tests/integration/world.py (a test CA, a real
server for server.test, a MITM holding a rogue certificate for the same name
from the same CA, five SOCKS5 spheres that resolve server.test themselves),
then runs sphere-probe twice:

  1. the clean path: the direct connection reaches the real server -> ACCEPT (0)
  2. through the MITM: the direct connection is intercepted -> REJECT (2)

Exits 0 when both verdicts are as expected, 1 otherwise."""

import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))
from world import HOST, MITM_ADDR, REAL_ADDR, World, WorldError  # noqa: E402

BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(HERE, "..", "build")
PROBE = os.path.join(BUILD, "sphere-probe")


def heading(text):
    print("\n" + "=" * 78)
    print(textwrap.fill(text, 78))
    print("=" * 78, flush=True)


def run_probe(world, direct_addr, home):
    argv = [PROBE, "--resolve", world.resolve(direct_addr),
            "--spheres", world.sphere_list(*world.honest),
            "%s:%d" % (HOST, world.port)]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DETECTOR_CONFIG", "DETECTOR_SPHERES")}
    env["HOME"] = home
    print("$ sphere-probe " + " ".join(argv[1:]), flush=True)
    try:
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        print("sphere-probe did not finish within 60 s")
        return None
    sys.stdout.write(p.stdout)
    if p.stderr:
        sys.stdout.write(p.stderr)
    print("(exit status %d)" % p.returncode, flush=True)
    return p.returncode


def main():
    if not os.access(PROBE, os.X_OK):
        print("demo: %s is missing; run `make` first" % PROBE, file=sys.stderr)
        return 1
    heading("Building the loopback world: a test CA, the real server for %s on %s, "
            "a TLS-terminating MITM on %s holding a rogue certificate for the same "
            "name from the same CA (a compelled CA), and five SOCKS5 spheres "
            "(microsocks), each resolving %s itself." % (HOST, REAL_ADDR, MITM_ADDR, HOST))
    try:
        world = World(minimal=True).start()
    except WorldError as e:
        print("demo: could not build the world: %s" % e, file=sys.stderr)
        return 1
    try:
        home = os.path.join(world.dir, "home")
        os.mkdir(home, 0o700)
        print("real key  (SPKI SHA-256): %s" % world.real.spki_sha256)
        print("rogue key (SPKI SHA-256): %s" % world.rogue.spki_sha256)
        print("spheres: %s" % world.sphere_list(*world.honest))

        heading("1. Clean path. The direct connection reaches the real server; the "
                "spheres, each on its own path, see the same key. Expected: ACCEPT, "
                "exit 0.")
        clean = run_probe(world, REAL_ADDR, home)

        heading("2. Intercepted path. The direct connection goes through the MITM, "
                "which presents a certificate that is valid for %s and signed by the "
                "same CA, but carries another key. The spheres still see the real "
                "key. Expected: REJECT, exit 2." % HOST)
        mitm = run_probe(world, MITM_ADDR, home)
    finally:
        world.stop()

    ok = clean == 0 and mitm == 2
    heading("Result: %s (clean path exit %s, expected 0; MITM path exit %s, expected 2)"
            % ("MITM detected, clean path accepted" if ok else "UNEXPECTED VERDICT",
               clean, mitm))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
