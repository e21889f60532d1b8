"""Unit tests of detector-spheres' configuration: parsing and validation.

No tor, no network: run with /usr/bin/python3 -m pytest sphere-controller/tests
"""

import base64
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from detector_spheres import cli, config  # noqa: E402
from detector_spheres.continents import COUNTRY_CODES, DEFAULT_SPHERES  # noqa: E402
from detector_spheres.sphere import Sphere, SphereError, find_tor  # noqa: E402

FP1 = "A" * 40
FP2 = "0123456789abcdef0123456789ABCDEF01234567"


def parse(text, **kw):
    return config.parse(textwrap.dedent(text), "t.conf", **kw)


def problems(text, **kw):
    with pytest.raises(config.ConfigError) as e:
        parse(text, **kw)
    return e.value.problems


def test_defaults_are_five_continents_on_9160_to_9169():
    cfg = parse("")
    assert [s.name for s in cfg.spheres] == [
        "asia", "europe", "north-america", "africa-south-america",
        "oceania-antarctica"]
    assert [(s.socks_port, s.control_port) for s in cfg.spheres] == [
        (9160, 9161), (9162, 9163), (9164, 9165), (9166, 9167), (9168, 9169)]
    assert cfg.listen == "127.0.0.1" and not cfg.gateway and not cfg.allow
    assert cfg.socks_policy() == []


def test_every_country_is_in_exactly_one_default_sphere():
    seen = [c for _, cs in DEFAULT_SPHERES for c in cs]
    assert len(seen) == len(set(seen)) == len(COUNTRY_CODES)
    assert {"jp", "de", "us", "br", "za", "au", "aq"} <= COUNTRY_CODES
    assert len(COUNTRY_CODES) == 249 + 5     # ISO 3166-1 + tor GeoIP extras


def test_exit_nodes_value_for_countries_and_fingerprints():
    cfg = parse("""
        [sphere a]
        countries = JP, kr {tw}
        [sphere b]
        exit_nodes = $%s %s~nick
        """ % (FP1, FP2))
    a, b = cfg.spheres
    assert a.exit_nodes() == "{jp},{kr},{tw}"
    assert b.exit_nodes() == "$%s,$%s" % (FP1, FP2.upper())
    assert (a.socks_port, a.control_port, b.socks_port) == (9160, 9161, 9162)


def test_bad_country_code_is_named_with_its_sphere():
    p = problems("""
        [sphere asia]
        countries = jp xx japan
        """)
    assert len(p) == 2
    assert "t.conf:3: [sphere asia] countries: 'xx' is not an ISO 3166-1" in p[0]
    assert "'japan'" in p[1]


def test_country_in_two_spheres():
    p = problems("""
        [sphere one]
        countries = jp kr
        [sphere two]
        countries = de kr
        """)
    assert p == ["t.conf: country 'kr' is in two spheres: 'one' and 'two'"]


def test_fingerprint_in_two_spheres_and_bad_fingerprint():
    p = problems("""
        [sphere one]
        exit_nodes = $%s
        [sphere two]
        exit_nodes = %s, $1234
        """ % (FP1, FP1.lower()))
    assert any("'$1234' is not a relay fingerprint" in x for x in p)
    assert any("exit relay %s is in two spheres: 'one' and 'two'" % FP1 in x
               for x in p)


def test_port_clash_between_spheres():
    p = problems("""
        [sphere one]
        countries = jp
        socks_port = 9000
        [sphere two]
        countries = de
        socks_port = 9001
        """)
    assert p == ["t.conf: port clash: 9001 is [sphere one] control_port and "
                 "[sphere two] socks_port"]


def test_bad_ports():
    p = problems("""
        [sphere one]
        countries = jp
        socks_port = http
        control_port = 70000
        """)
    assert "[sphere one] socks_port: 'http' is not a port number" in p[0]
    assert "[sphere one] control_port: port 70000 is outside 1-65535" in p[1]


def test_countries_and_exit_nodes_are_exclusive_and_one_is_needed():
    p = problems("""
        [sphere both]
        countries = jp
        exit_nodes = %s
        [sphere neither]
        socks_port = 9200
        """ % FP1)
    assert any("[sphere both]: give either countries or exit_nodes" in x for x in p)
    assert any("[sphere neither]: no exits" in x for x in p)


def test_unknown_keys_sections_and_bad_names():
    p = problems("""
        [spheres]
        listn = 127.0.0.1
        [sphere Asia_1]
        countries = jp
        [sphere ok]
        country = jp
        [tors]
        """)
    assert any("[spheres] listn: unknown key" in x for x in p)
    assert any("sphere name 'Asia_1'" in x for x in p)
    assert any("[sphere ok] country: unknown key" in x for x in p)
    assert any("unknown section [tors]" in x for x in p)


def test_syntax_errors_name_the_file_and_line():
    p = problems("countries = jp\n")
    assert p[0].startswith("t.conf: File contains no section headers")
    p = problems("[sphere a]\ncountries = jp\n[sphere a]\ncountries = de\n")
    assert "t.conf" in p[0] and "line 3" in p[0] and "already exists" in p[0]


def test_tor_section_passes_options_through_multi_valued():
    cfg = parse("""
        [sphere a]
        exit_nodes = %s
        [tor]
        TestingTorNetwork = 1
        DirAuthority = auth0 orport=7000 127.0.0.1:7050 AAAA
            auth1 orport=7001 127.0.0.1:7051 BBBB
        DirServer = auth2 orport=7002 127.0.0.1:7052 CCCC
        """ % FP1)
    assert cfg.tor_options == [
        ("TestingTorNetwork", "1"),
        ("DirAuthority", "auth0 orport=7000 127.0.0.1:7050 AAAA"),
        ("DirAuthority", "auth1 orport=7001 127.0.0.1:7051 BBBB"),
        ("DirServer", "auth2 orport=7002 127.0.0.1:7052 CCCC")]


def test_tor_section_may_not_override_managed_options():
    p = problems("""
        [tor]
        SocksPort = 9050
        exitnodes = {us}
        """)
    assert len(p) == 2
    assert "t.conf:3: [tor] SocksPort: set by detector-spheres itself" in p[0]
    assert "t.conf:4: [tor] exitnodes: set by detector-spheres itself" in p[1]


def test_gateway_needs_allow_list():
    p = problems("[spheres]\nlisten = 192.168.1.1\n")
    assert "gateway mode (listen = 192.168.1.1) needs an allow list" in p[0]
    p = problems("", listen="10.0.0.1")
    assert "needs an allow list" in p[0]


def test_gateway_socks_policy_from_command_line():
    cfg = parse("", listen="192.168.7.1", allow="192.168.7.0/24,10.1.0.0/16")
    assert cfg.gateway
    assert cfg.allow == [ipaddress.ip_network("192.168.7.0/24"),
                         ipaddress.ip_network("10.1.0.0/16")]
    assert cfg.socks_policy() == ["accept 192.168.7.0/24",
                                  "accept 10.1.0.0/16", "reject *"]
    cfg = parse("", listen="fd00::1", allow="fd00::/64")
    assert cfg.socks_policy() == ["accept [fd00::]/64", "reject *"]


def test_gateway_bad_values():
    p = problems("", listen="gateway.example", allow="192.168.7.0/33")
    assert any("--listen: 'gateway.example' is not an IP address" in x for x in p)
    assert any("--allow: '192.168.7.0/33' is not a network" in x for x in p)
    p = problems("", listen="192.168.7.1", allow="0.0.0.0/0")
    assert any("would open the spheres to everyone" in x for x in p)
    p = problems("", listen="192.168.7.1", allow="192.168.7.1/24")
    assert any("has host bits set" in x for x in p)
    p = problems("", listen="192.168.7.1", allow="fd00::/64")
    assert any("no client could connect" in x for x in p)


def test_globals():
    cfg = parse("""
        [spheres]
        state_dir = /srv/spheres
        tor = /opt/tor/bin/tor
        timeout = 30
        """)
    assert (cfg.state_dir, cfg.tor, cfg.timeout) == (
        "/srv/spheres", "/opt/tor/bin/tor", 30.0)
    p = problems("[spheres]\ntimeout = soon\n")
    assert "'soon' is not a positive number of seconds" in p[0]


def test_all_problems_are_reported_at_once():
    p = problems("""
        [sphere a]
        countries = zz
        socks_port = 1
        [sphere b]
        countries = yy
        socks_port = 1
        """)
    assert len(p) == 4      # two bad codes; socks and control ports clash


def test_load_missing_file():
    with pytest.raises(config.ConfigError) as e:
        config.load("/nonexistent/spheres.conf")
    assert e.value.problems == ["/nonexistent/spheres.conf: cannot read the "
                                "config file: No such file or directory"]


def test_tor_missing():
    with pytest.raises(SphereError) as e:
        find_tor("/nonexistent/tor")
    assert "tor not found" in str(e.value) and "'tor' package" in str(e.value)


def test_torrc_of_a_gateway_sphere(tmp_path):
    cfg = parse("""
        [sphere lab]
        exit_nodes = %s
        socks_port = 9300
        [tor]
        UseMicrodescriptors = 0
        """ % FP1, listen="192.168.7.1", allow="192.168.7.0/24")
    s = Sphere(str(tmp_path), "lab", cfg.spheres[0], cfg)
    lines = s.torrc_lines()
    assert "SocksPort 192.168.7.1:9300" in lines
    assert "ControlPort 127.0.0.1:9301" in lines
    assert "ExitNodes $%s" % FP1 in lines and "StrictNodes 1" in lines
    assert lines.index("SocksPolicy accept 192.168.7.0/24") < \
        lines.index("SocksPolicy reject *")
    assert lines[-1] == "UseMicrodescriptors 0"
    assert "DataDirectory %s/lab" % tmp_path in lines


def test_cli_exit_codes_for_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.conf"
    bad.write_text("[sphere a]\ncountries = xx\n")
    rc = cli.main(["start", "--config", str(bad), "--state-dir",
                   str(tmp_path / "state")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "detector-spheres: error: %s:2: [sphere a] countries: 'xx'" % bad \
        in err
    assert not (tmp_path / "state").exists()       # nothing was started
    good = tmp_path / "tor.conf"
    good.write_text("[spheres]\ntor = /nonexistent/tor\n")
    assert cli.main(["start", "--config", str(good), "--state-dir",
                     str(tmp_path / "state")]) == 2
    assert "tor not found" in capsys.readouterr().err
    assert cli.main(["status", "--state-dir", str(tmp_path / "state"),
                     "--sphere", "nowhere"]) == 2
    assert "no sphere named 'nowhere'" in capsys.readouterr().err


def test_tor_section_refuses_underscore_forms_of_managed_ports():
    # issue 13 item 5: tor reads __ControlPort and __SocksPort as ControlPort
    # and SocksPort: a control port and an unrestricted SOCKS port for all.
    p = problems("""
        [tor]
        UseMicrodescriptors = 0
        __ControlPort = 0.0.0.0:9799
        __SocksPort = 0.0.0.0:9798
        """)
    assert p == [
        "t.conf:4: [tor] __ControlPort: '__' options are tor's "
        "controller-only forms (this one means ControlPort); not accepted "
        "in [tor]",
        "t.conf:5: [tor] __SocksPort: '__' options are tor's "
        "controller-only forms (this one means SocksPort); not accepted "
        "in [tor]"]


@pytest.mark.parametrize("key,means", [
    ("CONTROLPORT", "ControlPort"),         # case
    ("controlPort", "ControlPort"),
    ("ControlPo", "ControlPort or ControlPortFileGroupReadable or "
     "ControlPortWriteToFile"),             # tor's prefix match
    ("ControlPortLines", "ControlPort"),    # the virtual *Lines form
    ("SocksP", "SocksPolicy or SocksPort"),
    ("Socks", "SocksPolicy or SocksPort"),
    ("Control", "ControlPort or ControlPortFileGroupReadable or "
     "ControlPortWriteToFile or ControlSocket or ControlSocketsGroupWritable"),
    ("StrictNode", "StrictNodes"),          # option_abbrevs_ PLURAL()
    ("ExitNode", "ExitNodes"),
    ("DataDirectory", "DataDirectory"),
    ("CookieAuthent", "CookieAuthentication"),
    ("hashedcontrolpassword", "HashedControlPassword"),
])
def test_tor_section_refuses_aliases_case_and_abbreviations(key, means):
    p = problems("[tor]\n%s = 0.0.0.0:9799\n" % key)
    assert len(p) == 1
    assert p[0].startswith("t.conf:2: [tor] %s: " % key)
    if key.lower() == means.lower():
        assert "set by detector-spheres itself" in p[0]
    else:
        assert ("to tor this is an alias, form or abbreviation of %s, which "
                % means) in p[0]


@pytest.mark.parametrize("key,what", [
    ("ORPort", "a listener"), ("DNSPort", "a listener"),
    ("TransPort", "a listener"), ("HTTPTunnelPort", "a listener"),
    ("NATDPort", "a listener"), ("MetricsPort", "a listener"),
    ("ExtORPort", "a listener"), ("DirPort", "a listener"),
    ("ControlSocket", "a control channel"),
    ("CookieAuthFileGroupReadable", "a control channel"),
    ("HiddenServicePort", "an onion service"),
    ("ServerTransportPlugin", "a program tor would run"),
    ("metricsp", "a listener"),
])
def test_tor_section_refuses_other_ways_in(key, what):
    p = problems("[tor]\n%s = 0.0.0.0:9797\n" % key)
    assert len(p) == 1 and p[0].startswith("t.conf:2: [tor] %s: " % key)
    assert "would give the sphere %s" % what in p[0]


def test_tor_section_refuses_every_double_underscore_option():
    p = problems("[tor]\n__OwningControllerProcess = 1\n"
                 "__DisablePredictedCircuits = 1\n")
    assert len(p) == 2
    assert "(this one means OwningControllerProcess)" in p[0]
    assert "__DisablePredictedCircuits: '__' options" in p[1]


def test_tor_section_refuses_values_that_could_add_torrc_lines():
    p = problems("[tor]\nContactInfo = a\\\nNickname = x\ry\n")
    assert len(p) == 2
    assert p[0].startswith("t.conf:2: [tor] ContactInfo: value 'a\\\\'")
    assert "ends in a backslash" in p[0]
    assert p[1].startswith("t.conf:3: [tor] Nickname: value 'x\\ry' has a "
                           "control character")


def test_refused_tor_options_match_what_tor_knows():
    """Every refused name is a real option of the installed tor, and no
    real option other than those is refused (no false positives from the
    prefix rule)."""
    tor = shutil.which("tor")
    if not tor:
        pytest.skip("tor is not installed")
    out = subprocess.run([tor, "--list-torrc-options"], capture_output=True,
                         text=True, check=True).stdout.split()
    known = {o.lower().lstrip("_") for o in out}
    refused = set(config.MANAGED_TOR_OPTIONS) | set(
        config.FORBIDDEN_TOR_OPTIONS)
    assert {r.lower() for r in refused} <= known
    wrongly = [o for o in out if o.lower().lstrip("_") not in
               {r.lower() for r in refused} and config.refused_tor_options(o)]
    assert wrongly == []
    for alias, full in config.TOR_OPTION_ALIASES.items():
        assert full.lower().lstrip("_") in known or full in (
            # obsolete in tor 0.4.9, still in its alias table
            "AllowInvalidNodes", "StatusFetchPeriod", "ORListenAddress",
            "DirListenAddress", "SocksListenAddress", "StrictEntryNodes",
            "StrictExitNodes", "PreferTunneledDirConns",
            "HiddenServiceNodes", "HiddenServiceExcludeNodes", "RendNodes",
            "RendExcludeNodes", "RecommendedPackages", "NumCPUs",
            "AuthDirBadDirCCs") or full.endswith("DownloadInitialDelay"), full


# ---- instances: several tor processes per sphere ---------------------
def test_instances_default_to_one_process_per_sphere():
    cfg = parse("")
    assert cfg.instances == 1
    assert [p.name for p in cfg.processes] == [s.name for s in cfg.spheres]


def test_two_instances_of_the_default_spheres():
    cfg = parse("[spheres]\ninstances = 2\n")
    assert [(p.name, p.sphere, p.instance, p.socks_port, p.control_port)
            for p in cfg.processes] == [
        ("asia", "asia", 1, 9160, 9161), ("asia.2", "asia", 2, 9170, 9171),
        ("europe", "europe", 1, 9162, 9163),
        ("europe.2", "europe", 2, 9172, 9173),
        ("north-america", "north-america", 1, 9164, 9165),
        ("north-america.2", "north-america", 2, 9174, 9175),
        ("africa-south-america", "africa-south-america", 1, 9166, 9167),
        ("africa-south-america.2", "africa-south-america", 2, 9176, 9177),
        ("oceania-antarctica", "oceania-antarctica", 1, 9168, 9169),
        ("oceania-antarctica.2", "oceania-antarctica", 2, 9178, 9179)]
    asia, asia2 = cfg.processes[:2]
    assert asia2.exit_nodes() == asia.exit_nodes()
    assert cfg.sphere("asia.2") is asia2
    assert [(g, [p.name for p in ps]) for g, ps in cfg.groups()][0] == (
        "asia", ["asia", "asia.2"])


def test_instance_torrc_has_its_own_ports_dir_and_the_same_exits(tmp_path):
    cfg = parse("""
        [spheres]
        instances = 3
        [sphere lab]
        exit_nodes = %s
        socks_port = 9300
        """ % FP1)
    third = cfg.sphere("lab.3")
    s = Sphere(str(tmp_path), third.name, third, cfg)
    lines = s.torrc_lines()
    assert "SocksPort 127.0.0.1:9304" in lines
    assert "ControlPort 127.0.0.1:9305" in lines
    assert "ExitNodes $%s" % FP1 in lines
    assert "DataDirectory %s/lab.3" % tmp_path in lines
    assert (s.group, s.instance) == ("lab", 3)


@pytest.mark.parametrize("value", ["0", "9", "-1", "two", "1.5", ""])
def test_instances_must_be_1_to_8(value):
    p = problems("[spheres]\ntimeout = 5\ninstances = %s\n" % value)
    assert p == ["t.conf:3: [spheres] instances: '%s' is not a whole number "
                 "from 1 to 8 (tor processes per sphere)" % value]


def test_instance_ports_must_not_clash_or_overflow():
    p = problems("""
        [spheres]
        instances = 2
        [sphere a]
        countries = jp
        socks_port = 9000
        [sphere b]
        countries = de
        socks_port = 9004
        """)
    # a.2 uses 9004/9005 (step 2 x 2 spheres): b's ports
    assert p == [
        "t.conf:3: [spheres] instances: instance 2 of sphere 'a' would need "
        "socks_port 9004, which is b's socks_port (instance k uses the "
        "sphere's ports + (k - 1) x 4: leave room after the spheres' ports)",
        "t.conf:3: [spheres] instances: instance 2 of sphere 'a' would need "
        "control_port 9005, which is b's control_port (instance k uses the "
        "sphere's ports + (k - 1) x 4: leave room after the spheres' ports)"]
    p = problems("""
        [spheres]
        instances = 3
        [sphere a]
        countries = jp
        socks_port = 65532
        """)
    assert p == [
        "t.conf:3: [spheres] instances: instance 3 of sphere 'a' would need "
        "%s, beyond 65535 (instance k uses the sphere's ports + (k - 1) x 2)"
        % what for what in ("socks_port 65536", "control_port 65537")]


def test_list_groups_instances_per_sphere(tmp_path, capsys):
    conf = tmp_path / "s.conf"
    conf.write_text("[spheres]\ninstances = 2\n[sphere a]\ncountries = jp\n"
                    "[sphere b]\ncountries = de\n")
    assert cli.main(["list", "--config", str(conf), "--state-dir",
                     str(tmp_path / "state")]) == 0
    assert capsys.readouterr().out == (
        "spheres = a=127.0.0.1:9160|127.0.0.1:9164, "
        "b=127.0.0.1:9162|127.0.0.1:9166\n")
    assert cli.main(["list", "--json", "--config", str(conf), "--state-dir",
                     str(tmp_path / "state"), "--sphere", "b"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"sphere": "b", "socks": ["127.0.0.1:9162", "127.0.0.1:9166"],
         "entry": "b=127.0.0.1:9162|127.0.0.1:9166"}]
    assert cli.main(["list", "--config", str(conf), "--state-dir",
                     str(tmp_path / "state"), "--sphere", "a.2"]) == 0
    assert capsys.readouterr().out == "spheres = a=127.0.0.1:9164\n"


# ---- bridges ---------------------------------------------------------
CERT = base64.b64encode(bytes(range(52))).decode().rstrip("=")
assert len(CERT) == 70


def test_bridges_plain_and_obfs4_become_torrc_lines(tmp_path):
    cfg = parse("""
        [spheres]
        bridges = 192.0.2.1:9001 %s
            obfs4 [2001:db8::7]:443 %s cert=%s iat-mode=1
        [sphere a]
        countries = jp
        """ % (FP2, FP1, CERT))
    assert cfg.bridges == [
        "192.0.2.1:9001 %s" % FP2.upper(),
        "obfs4 [2001:db8::7]:443 %s cert=%s iat-mode=1" % (FP1, CERT)]
    s = Sphere(str(tmp_path), "a", cfg.spheres[0], cfg)
    lines = s.torrc_lines()
    assert lines[lines.index("UseBridges 1"):][:4] == [
        "UseBridges 1", "Bridge 192.0.2.1:9001 %s" % FP2.upper(),
        "Bridge obfs4 [2001:db8::7]:443 %s cert=%s iat-mode=1" % (FP1, CERT),
        "ClientTransportPlugin obfs4 exec /usr/bin/obfs4proxy"]


def test_no_bridges_no_bridge_lines(tmp_path):
    cfg = parse("[sphere a]\ncountries = jp\n")
    lines = Sphere(str(tmp_path), "a", cfg.spheres[0], cfg).torrc_lines()
    assert not [x for x in lines if "Bridge" in x or "Transport" in x]


def test_plain_bridges_need_no_obfs4proxy(tmp_path):
    cfg = parse("[spheres]\nbridges = 192.0.2.1:9001 %s\n" % FP1)
    assert "ClientTransportPlugin" not in " ".join(cfg.bridge_torrc())


@pytest.mark.parametrize("line,why", [
    ("192.0.2.1:9001", "fingerprint (40 hex digits after the address) is "
     "missing"),
    ("192.0.2.1:9001 $" + FP1, "fingerprint"),
    ("192.0.2.1 " + FP1, "is not IP:PORT"),
    ("192.0.2.1:0 " + FP1, "is not IP:PORT"),
    ("192.0.2.1:70000 " + FP1, "is not IP:PORT"),
    ("bridge.example:443 " + FP1, "'bridge.example:443' is not IP:PORT"),
    ("2001:db8::1:443 " + FP1, "is not IP:PORT"),
    ("[192.0.2.1]:443 " + FP1, "is not IP:PORT"),
    ("192.0.2.1:443 %s cert=%s" % (FP1, CERT), "a plain bridge takes no "
     "arguments"),
    ("meek 0.0.2.0:2 " + FP1, "transport 'meek' is not supported"),
    ("snowflake 192.0.2.3:80 " + FP1, "transport 'snowflake'"),
    ("obfs4 192.0.2.1:443 %s iat-mode=0" % FP1, "obfs4 needs exactly "
     "cert=... and iat-mode=... (has: iat-mode)"),
    ("obfs4 192.0.2.1:443 %s cert=%s" % (FP1, CERT), "(has: cert)"),
    ("obfs4 192.0.2.1:443 %s cert=%s iat-mode=3" % (FP1, CERT),
     "iat-mode= must be 0, 1 or 2"),
    ("obfs4 192.0.2.1:443 %s cert=%s iat-mode=0" % (FP1, CERT[:-1]),
     "cert= must be 70 base64 characters"),
    ("obfs4 192.0.2.1:443 %s cert=%s iat-mode=0" % (FP1, CERT[:-1] + "!"),
     "cert= must be 70 base64"),
    ("obfs4 192.0.2.1:443 %s cert=%s iat-mode=0 x=1" % (FP1, CERT),
     "(has: cert, iat-mode, x)"),
    ("obfs4 192.0.2.1:443 %s cert=%s cert=%s iat-mode=0" % (FP1, CERT, CERT),
     "repeats one"),
    ("obfs4 192.0.2.1:443 %s cert" % FP1, "is not a KEY=VALUE"),
    ("obfs4", "'' is not IP:PORT"),
])
def test_bad_bridge_lines_are_named_with_file_line_and_key(line, why):
    p = problems("[spheres]\ntimeout = 9\nbridges = %s\n" % line)
    assert len(p) == 1, p
    assert p[0].startswith("t.conf:3: [spheres] bridges: bridge '%s': "
                           % line), p[0]
    assert why in p[0], p[0]


def test_bridge_listed_twice_and_empty_bridges():
    p = problems("[spheres]\nbridges = 192.0.2.1:1 %s\n  192.0.2.1:1 %s\n"
                 % (FP1, FP1.lower()))
    assert len(p) == 1 and "listed twice" in p[0]
    p = problems("[spheres]\nbridges =\n")
    assert p == ["t.conf:2: [spheres] bridges: no bridge given"]


@pytest.mark.parametrize("key", ["Bridge", "UseBridges", "bridge",
                                 "ClientTransportPlugin", "UseBridge"])
def test_tor_section_may_not_set_bridges(key):
    p = problems("[tor]\n%s = 1\n" % key)
    assert len(p) == 1 and "t.conf:2: [tor] %s:" % key in p[0]
    assert "set by detector-spheres itself" in p[0]


def test_obfs4proxy_is_required_only_for_obfs4(tmp_path, capsys):
    conf = tmp_path / "b.conf"
    conf.write_text("[spheres]\nobfs4proxy = /nonexistent/obfs4proxy\n"
                    "bridges = obfs4 192.0.2.1:443 %s cert=%s iat-mode=0\n"
                    % (FP1, CERT))
    assert cli.main(["start", "--config", str(conf), "--state-dir",
                     str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert "obfs4proxy not found ('/nonexistent/obfs4proxy')" in err
    assert "'obfs4proxy' package" in err
    assert not (tmp_path / "state").exists()
    p = problems("[spheres]\nobfs4proxy = obfs4proxy\n")
    assert p == ["t.conf:2: [spheres] obfs4proxy: 'obfs4proxy' is not an "
                 "absolute path"]


# ---- who may change the configuration --------------------------------
def test_config_file_others_can_change_is_refused(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("[spheres]\ntimeout = 5\n")
    conf.chmod(0o644)
    assert config.load(str(conf)).timeout == 5
    conf.chmod(0o666)
    with pytest.raises(config.ConfigError) as e:
        config.load(str(conf))
    assert e.value.problems == ["%s: writable by group and others (mode "
                                "0666); chmod go-w %s" % (conf, conf)]
    conf.chmod(0o620)
    with pytest.raises(config.ConfigError) as e:
        config.load(str(conf))
    assert "writable by group (mode 0620)" in e.value.problems[0]


def test_config_symlink_and_open_folder_are_refused(tmp_path):
    real = tmp_path / "real.conf"
    real.write_text("[spheres]\ntimeout = 5\n")
    link = tmp_path / "link.conf"
    link.symlink_to(real)
    with pytest.raises(config.ConfigError) as e:
        config.load(str(link))
    assert e.value.problems == ["%s: is a symbolic link; give the real "
                                "file's path" % link]
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    conf = open_dir / "s.conf"
    conf.write_text("[spheres]\ntimeout = 5\n")
    open_dir.chmod(0o777)
    with pytest.raises(config.ConfigError) as e:
        config.load(str(conf))
    assert "its folder %s is writable by group or others (mode 0777)" \
        % open_dir in e.value.problems[0]
    open_dir.chmod(0o1777)              # sticky, like /tmp: fine
    assert config.load(str(conf)).timeout == 5


def test_config_owned_by_someone_else_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    conf = tmp_path / "s.conf"
    conf.write_text("[spheres]\ntimeout = 5\n")
    os.chown(conf, 4242, 4242)
    with pytest.raises(config.ConfigError) as e:
        config.load(str(conf))
    assert e.value.problems == ["%s: owned by uid 4242, not by you (uid 0) "
                                "or root; anyone who can change it controls "
                                "the spheres" % conf]


def test_stuck_before_reaching_a_relay_suggests_blocking_and_bridges():
    hint = cli._hint(5)
    assert hint.startswith("Tor unreachable (possible blocking)")
    assert "'bridges ='" in hint
    assert "blocking" not in cli._hint(50)


def test_bridges_refuse_full_descriptors():
    # measured on the private network: UseMicrodescriptors 0 + any bridge
    # and tor never builds a circuit (75 %, "0/3 direct routers suitable")
    p = problems("[spheres]\nbridges = 192.0.2.1:9001 %s\n[tor]\n"
                 "UseMicrodescriptors = 0\n" % FP1)
    assert p == ["t.conf:4: [tor] UseMicrodescriptors = 0: with bridges tor "
                 "0.4.9 then builds no circuit at all (it finds no usable "
                 "first hop); drop it or the bridges"]
    assert parse("[spheres]\nbridges = 192.0.2.1:9001 %s\n[tor]\n"
                 "UseMicrodescriptors = 1\n" % FP1).bridges
