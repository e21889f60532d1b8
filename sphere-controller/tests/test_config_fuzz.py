"""A mutation fuzzer for detector-spheres' configuration parser: whatever
the text, config.parse() returns a Config or raises ConfigError (every
problem a string naming the file), never another exception. Seeded, so a
failure is reproducible; DETECTOR_FUZZ_ROUNDS raises the round count."""

import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from detector_spheres import config  # noqa: E402

SEED_TEXT = """[spheres]
listen = 127.0.0.1
allow = 10.0.0.0/8
timeout = 30
instances = 2
bridges = 192.0.2.1:9001 %(fp)s
    obfs4 [2001:db8::1]:443 %(fp)s cert=%(cert)s iat-mode=1
obfs4proxy = /usr/bin/obfs4proxy

[sphere asia]
countries = jp kr
socks_port = 9160

[sphere lab]
exit_nodes = $%(fp)s
control_port = 9300

[tor]
UseMicrodescriptors = 0
DirAuthority = a orport=1 127.0.0.1:2 %(fp)s
    b orport=3 127.0.0.1:4 %(fp)s
""" % {"fp": "A" * 40, "cert": "B" * 70}

TOKENS = ["[", "]", "=", ":", "\n", "\n    ", " ", ",", "$", "|", "\\", "\x00",
          "\r", "\t", "#", ";", "__", "Port", "65535", "65536", "0", "-1",
          "obfs4", "cert=", "iat-mode=", "instances", "[sphere x]", "[tor]",
          "[spheres]", "socks_port", "ControlPo", "::", "[::1]", "%", "é",
          "\ufeff", "9" * 30]


def mutate(rng, text):
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(text) + 1)
        op = rng.random()
        if op < 0.4:
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif op < 0.7:
            text = text[:i] + text[i + rng.randint(1, 20):]
        elif op < 0.85:
            j = rng.randrange(len(text) + 1)
            text = text[:i] + text[j:j + rng.randint(1, 40)] + text[i:]
        else:
            text = text[:i] + chr(rng.randrange(1, 0x3000)) + text[i:]
    return text


def test_parse_never_crashes_on_mutated_configs():
    rng = random.Random(20261202)
    rounds = int(os.environ.get("DETECTOR_FUZZ_ROUNDS", "3000"))
    ok = refused = 0
    for n in range(rounds):
        text = mutate(rng, SEED_TEXT)
        try:
            cfg = config.parse(text, "f.conf")
        except config.ConfigError as e:
            assert e.problems and all(
                isinstance(p, str) and p.startswith("f.conf")
                for p in e.problems), (n, text, e.problems)
            refused += 1
            continue
        except Exception as e:      # noqa: BLE001 - that is the finding
            raise AssertionError("round %d: %r on:\n%r" % (n, e, text))
        ok += 1
        for p in cfg.processes:                 # what start would use
            assert 1 <= p.socks_port <= 65535 and 1 <= p.control_port <= 65535
        for key, value in cfg.tor_options:
            assert "\n" not in value and not config.refused_tor_options(key)
    assert ok and refused          # the fuzzer reaches both outcomes
