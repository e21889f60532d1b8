"""DetecTor's test world: real servers, a real MITM and real spheres on
loopback, for tests/integration, tests/tornet, bench/run.py and
tests/demo.py.  One concept per module:

  processes    start a program (own session, dies with its parent), stop it
               by PID: SIGTERM, SIGKILL after a grace period, its process
               group; short commands with a deadline
  ports        the loopback addresses, free_port(), wait_tcp(), wait_tls()
               and tls_peer_cert() (readiness and independent checks)
  services     TcpService: a Python listener on a free port, served by
               threads, every connection closed by stop()
  relay        the one TCP relay loop (relay()) and the relays built on it:
               SlowLink (a delay), CountingRelay (bytes counted)
  socks5       the one SOCKS5 client (connect()) and the one SOCKS5 test
               server (Socks5Server: Tor-like, recording; its variants, as
               options, slow replies and misbehaviour after CONNECT)
  tls          the test PKI (openssl CLI), certificate hashes, TLS servers
               in Python (DualCertServer), TLS record types
  mitm         the TLS-intercepting proxies: socat_mitm() and, for
               STARTTLS protocols, StarttlsMitm
  starttls     the five STARTTLS preambles in Python, client and server side
  mailservers  Debian's postfix, dovecot, prosody and slapd as STARTTLS
               servers, and a hostile SMTP server
  faults       misbehaving peers: blackholes, garbage, a slowloris sphere,
               SOCKS5 misfits, a server that cuts the handshake
  world        World: all of the above assembled (PKI, servers, MITMs,
               microsocks spheres in mount namespaces, misfits)
  mozilla      Firefox ESR and Thunderbird as test subjects: the co-release
               for the installed package, its folder with libssl3.so
               swapped, profiles, Marionette, one headless start
  fixtures     pytest fixtures shared by test folders (world, work): the
               one module that imports pytest
  tornet       a private Tor network (TorNetwork) and its command line:
               `python3 -m testworld.tornet isolate -- CMD`
  dnsquery     the smallest DNS client (one A query)
  tlsbytes     where in a TLS byte stream the server's Certificate ends

Import it as `testworld` with tests/ on the path: pytest does that through
tests/pytest.ini (`pythonpath = .`), tests/demo.py lives next to it, and
mk/bench.mk and mk/tor.mk set PYTHONPATH for bench/run.py and the Tor CLI.
Only the Python standard library (and Stem, in tornet) is used.
"""


class WorldError(RuntimeError):
    """The world could not be built; the message says which part and why."""
