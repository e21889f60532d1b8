"""The configuration of the spheres: parsing and validation.

Pure logic: it reads the INI text it is given and checks it, and touches
nothing else (the checks that need the system, such as whether tor is
installed or a port is free, live in sphere.py). Every problem is reported,
not only the first, each naming the file, section and key at fault.

    [spheres]                      ; settings for all spheres (all optional)
    listen = 127.0.0.1             ; address the SOCKS ports bind to
    allow = 192.168.1.0/24, ...    ; gateway mode: who may use them
    state_dir = /var/lib/detector/spheres
    tor = /usr/bin/tor
    timeout = 180                  ; seconds `start`/`wait` wait for bootstrap
    instances = 1                  ; tor processes per sphere (1-8)
    bridges = obfs4 192.0.2.1:443 FINGERPRINT cert=... iat-mode=0
        198.51.100.7:9001 FINGERPRINT    ; one bridge per (indented) line
    obfs4proxy = /usr/bin/obfs4proxy

    [sphere asia]                  ; one section per sphere, in order
    countries = cn jp kr ...       ; exits in these countries, or
    exit_nodes = $FINGERPRINT ...  ; exits pinned by relay fingerprint
    socks_port = 9160              ; default 9160 + 2 * position
    control_port = 9161            ; default socks_port + 1

    [tor]                          ; extra torrc options for every sphere;
    TestingTorNetwork = 1          ; an option given several times is written
    DirAuthority = auth0 ...       ; one value per (indented) line
        auth1 ...

Without [sphere ...] sections the five continents of continents.py are used.
"""

import configparser
import ipaddress
import os
import re
import stat

from .continents import COUNTRY_CODES, DEFAULT_SPHERES

FIRST_SOCKS_PORT = 9160
MAX_INSTANCES = 8
DEFAULT_TIMEOUT = 180.0
DEFAULT_LISTEN = "127.0.0.1"

SPHERES_KEYS = {"listen", "allow", "state_dir", "tor", "timeout", "instances",
                "bridges", "obfs4proxy"}
DEFAULT_OBFS4PROXY = "/usr/bin/obfs4proxy"
# obfs4's cert: node ID (20 bytes) + Curve25519 public key (32), base64
# without padding: 70 characters.
OBFS4_CERT_RE = re.compile(r"^[A-Za-z0-9+/]{70}$")
SPHERE_KEYS = {"countries", "exit_nodes", "socks_port", "control_port"}

# How tor reads an option name in a torrc (tor 0.4.9, src/app/config/config.c
# and src/lib/confmgt/confmgt.c), which [tor] keys are checked against:
#  1. an alias of option_abbrevs_[] in config.c is replaced by its target
#     (case-insensitively; PLURAL(X) there means "X" -> "Xs");
#  2. the name is looked up case-insensitively; every *Port option also
#     exists as "__XPort" (VPORT() in config.c: the same setting, hidden
#     from SAVECONF) and as the virtual "XPortLines";
#  3. failing an exact match, tor takes the FIRST option the name is a
#     prefix of ("ControlPo" is ControlPort, "Socks" is Socks4Proxy) and
#     only warns.
# So a key is refused when, after step 1 and without leading underscores,
# it equals or is a prefix of a refused option (or its "Lines" form), and
# every "__" key is refused: those are tor's controller-only forms.
TOR_OPTION_ALIASES = {a.lower(): full for a, full in (
    # option_abbrevs_[] of tor 0.4.9's config.c, complete. The command-line
    # only entries ("l" -> Log, HashedControlPassword ->
    # __HashedControlSessionPassword) do not apply in a torrc.
    ("AuthDirBadDirCC", "AuthDirBadDirCCs"),
    ("AuthDirBadExitCC", "AuthDirBadExitCCs"),
    ("AuthDirInvalidCC", "AuthDirInvalidCCs"),
    ("AuthDirMiddleOnlyCC", "AuthDirMiddleOnlyCCs"),
    ("AuthDirRejectCC", "AuthDirRejectCCs"),
    ("EntryNode", "EntryNodes"),
    ("ExcludeNode", "ExcludeNodes"),
    ("FirewallPort", "FirewallPorts"),
    ("LongLivedPort", "LongLivedPorts"),
    ("HiddenServiceNode", "HiddenServiceNodes"),
    ("HiddenServiceExcludeNode", "HiddenServiceExcludeNodes"),
    ("NumCPU", "NumCPUs"),
    ("RendNode", "RendNodes"),
    ("RecommendedPackage", "RecommendedPackages"),
    ("RendExcludeNode", "RendExcludeNodes"),
    ("StrictEntryNode", "StrictEntryNodes"),
    ("StrictExitNode", "StrictExitNodes"),
    ("StrictNode", "StrictNodes"),
    ("AllowUnverifiedNodes", "AllowInvalidNodes"),
    ("AutomapHostSuffixes", "AutomapHostsSuffixes"),
    ("AutomapHostOnResolve", "AutomapHostsOnResolve"),
    ("BandwidthRateBytes", "BandwidthRate"),
    ("BandwidthBurstBytes", "BandwidthBurst"),
    ("DirFetchPostPeriod", "StatusFetchPeriod"),
    ("DirServer", "DirAuthority"),
    ("MaxConn", "ConnLimit"),
    ("MaxMemInCellQueues", "MaxMemInQueues"),
    ("ORBindAddress", "ORListenAddress"),
    ("DirBindAddress", "DirListenAddress"),
    ("SocksBindAddress", "SocksListenAddress"),
    ("UseHelperNodes", "UseEntryGuards"),
    ("NumHelperNodes", "NumEntryGuards"),
    ("UseEntryNodes", "UseEntryGuards"),
    ("NumEntryNodes", "NumEntryGuards"),
    ("ResolvConf", "ServerDNSResolvConfFile"),
    ("SearchDomains", "ServerDNSSearchDomains"),
    ("ServerDNSAllowBrokenResolvConf", "ServerDNSAllowBrokenConfig"),
    ("PreferTunnelledDirConns", "PreferTunneledDirConns"),
    ("BridgeAuthoritativeDirectory", "BridgeAuthoritativeDir"),
    ("VirtualAddrNetwork", "VirtualAddrNetworkIPv4"),
    ("SocksSocketsGroupWritable", "UnixSocksGroupWritable"),
    ("_HSLayer2Nodes", "HSLayer2Nodes"),
    ("_HSLayer3Nodes", "HSLayer3Nodes"),
) + tuple((name + "DownloadSchedule", name + "DownloadInitialDelay")
          for name in ("ClientBootstrapConsensusAuthority",
                       "ClientBootstrapConsensusAuthorityOnly",
                       "ClientBootstrapConsensusFallback", "TestingBridge",
                       "TestingBridgeBootstrap", "TestingClient",
                       "TestingClientConsensus", "TestingServer",
                       "TestingServerConsensus"))}

# torrc options the controller sets itself; [tor] may not set them.
MANAGED_TOR_OPTIONS = (
    "SocksPort", "ControlPort", "DataDirectory", "ExitNodes", "StrictNodes",
    "PidFile", "RunAsDaemon", "SocksPolicy", "CookieAuthentication",
    "CookieAuthFile", "HashedControlPassword", "ClientOnly",
    "UseBridges", "Bridge", "ClientTransportPlugin",
)
# torrc options [tor] may not set because they would open another way in
# (a listener, a control channel, a readable cookie, an onion service),
# move a sphere's files out of its state directory, or hang its streams.
FORBIDDEN_TOR_OPTIONS = {
    "ORPort": "a listener", "DirPort": "a listener",
    "DNSPort": "a listener", "TransPort": "a listener",
    "NATDPort": "a listener", "HTTPTunnelPort": "a listener",
    "ExtORPort": "a listener", "MetricsPort": "a listener",
    "MetricsPortPolicy": "a listener",
    "ControlSocket": "a control channel",
    "ControlSocketsGroupWritable": "a control channel",
    "ControlPortWriteToFile": "a control channel",
    "ControlPortFileGroupReadable": "a control channel",
    "CookieAuthFileGroupReadable": "a control channel",
    "HashedControlSessionPassword": "a control channel",
    "OwningControllerProcess": "a control channel",
    "OwningControllerFD": "a control channel",
    "LeaveStreamsUnattached": "streams no one attaches",
    "ServerTransportPlugin": "a program tor would run",
    "HiddenServiceDir": "an onion service",
    "HiddenServicePort": "an onion service",
    "DataDirectoryGroupReadable": "files outside the sphere's control",
    "KeyDirectory": "files outside the sphere's control",
    "CacheDirectory": "files outside the sphere's control",
    "CacheDirectoryGroupReadable": "files outside the sphere's control",
}
_REFUSED = {n.lower(): n for n in MANAGED_TOR_OPTIONS + tuple(
    FORBIDDEN_TOR_OPTIONS)}


def refused_tor_options(key):
    """The refused tor options (canonical spelling, sorted) that tor could
    read the [tor] key `key` as: the one it names, aliases or is a form of,
    or every one it abbreviates. [] when it is none of them."""
    k = key.lower()
    k = TOR_OPTION_ALIASES.get(k, k).lower().lstrip("_")
    if not k:
        return []
    if k in _REFUSED or (k.endswith("lines") and k[:-5] in _REFUSED):
        return [_REFUSED.get(k) or _REFUSED[k[:-5]]]
    return sorted(name for low, name in _REFUSED.items()
                  if low.startswith(k) or (low + "lines").startswith(k))


NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# $FP, FP, $FP~nick or $FP=nick (Tor's ExitNodes forms for one relay)
FINGERPRINT_RE = re.compile(r"^\$?([0-9A-Fa-f]{40})(?:[~=][A-Za-z0-9]{1,19})?$")


class ConfigError(Exception):
    """The configuration is invalid; .problems lists every reason."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SphereConfig:
    """One sphere (or one instance of a sphere): its name, exit restriction
    and ports. Instance k > 1 of sphere S is named "S.k" (a name no sphere
    can have), `sphere` names the sphere it belongs to."""

    def __init__(self, name, countries=(), fingerprints=(), socks_port=None,
                 control_port=None, sphere=None, instance=1):
        self.name = name
        self.countries = list(countries)        # lower-case ISO codes
        self.fingerprints = list(fingerprints)  # upper-case hex, no '$'
        self.socks_port = socks_port
        self.control_port = control_port
        self.sphere = sphere or name
        self.instance = instance

    def instance_config(self, k, step):
        """Instance k (2, 3, ...) of this sphere: same exits, its ports
        shifted by (k - 1) * step."""
        shift = (k - 1) * step
        return SphereConfig(
            "%s.%d" % (self.name, k), self.countries, self.fingerprints,
            self.socks_port + shift if self.socks_port else None,
            self.control_port + shift if self.control_port else None,
            sphere=self.name, instance=k)

    def exit_nodes(self):
        """The value of tor's ExitNodes option for this sphere."""
        if self.fingerprints:
            return ",".join("$" + fp for fp in self.fingerprints)
        return ",".join("{%s}" % cc for cc in self.countries)

    def to_json(self):
        return {"name": self.name, "sphere": self.sphere,
                "instance": self.instance, "countries": self.countries,
                "fingerprints": self.fingerprints,
                "socks_port": self.socks_port,
                "control_port": self.control_port}


class Config:
    """The whole, validated configuration."""

    def __init__(self):
        self.path = None
        self.spheres = []
        self.listen = DEFAULT_LISTEN
        self.allow = []             # ipaddress networks
        self.state_dir = None
        self.tor = "tor"
        self.timeout = DEFAULT_TIMEOUT
        self.tor_options = []       # [(option, value)] in file order
        self.instances = 1          # tor processes per sphere
        self.bridges = []           # Bridge lines, validated
        self.obfs4proxy = DEFAULT_OBFS4PROXY
        self.processes = []         # every instance of every sphere

    @property
    def port_step(self):
        """How far instance k + 1's ports are from instance k's: the whole
        block of SOCKS and control ports repeats after the last sphere
        (9170-9179 for the second instances of the five defaults)."""
        return 2 * len(self.spheres)

    @property
    def gateway(self):
        return not ipaddress.ip_address(self.listen).is_loopback

    def socks_policy(self):
        """SocksPolicy lines for gateway mode: the allowed networks, then
        reject everyone else. Empty when nothing is restricted."""
        if not self.allow:
            return []
        lines = []
        for net in self.allow:
            if net.version == 6:
                lines.append("accept [%s]/%d" % (net.network_address,
                                                 net.prefixlen))
            else:
                lines.append("accept %s" % net.with_prefixlen)
        return lines + ["reject *"]

    def bridge_torrc(self):
        """torrc lines for the bridges (none without bridges)."""
        if not self.bridges:
            return []
        lines = ["UseBridges 1"] + ["Bridge " + b for b in self.bridges]
        if any(b.startswith("obfs4 ") for b in self.bridges):
            lines.append("ClientTransportPlugin obfs4 exec " + self.obfs4proxy)
        return lines

    def sphere(self, name):
        """The sphere or instance of that name (None if unknown)."""
        for s in self.processes or self.spheres:
            if s.name == name:
                return s
        return None

    def groups(self):
        """[(sphere name, [its instances])] in configuration order."""
        return [(s.name, [p for p in self.processes if p.sphere == s.name])
                for s in self.spheres]


def _split_list(value):
    return [v for v in re.split(r"[\s,]+", value.strip()) if v]


def _parse_port(value, where, problems):
    try:
        port = int(value)
    except ValueError:
        problems.append("%s: '%s' is not a port number" % (where, value))
        return None
    if not 1 <= port <= 65535:
        problems.append("%s: port %d is outside 1-65535" % (where, port))
        return None
    return port


def parse_networks(value, where, problems):
    """CIDR list 'a.b.c.d/n, ...' -> [ip_network]; bad items go to problems."""
    nets = []
    for item in _split_list(value):
        try:
            nets.append(ipaddress.ip_network(item, strict=True))
        except ValueError as e:
            problems.append("%s: '%s' is not a network in CIDR form (%s)"
                            % (where, item, e))
    if not nets:
        problems.append("%s: no network given" % where)
    return nets


def _bridge_address(text):
    """'IP:PORT' or '[IPv6]:PORT' -> True if valid (tor needs an address,
    not a name)."""
    m = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$", text)
    if not m:
        return False
    try:
        ip = ipaddress.ip_address(m.group(1) or m.group(2))
    except ValueError:
        return False
    if (m.group(1) is not None) != (ip.version == 6):
        return False
    return 1 <= int(m.group(3)) <= 65535


def parse_bridges(value, where, problems):
    """One bridge per line, tor's Bridge syntax restricted to what the
    spheres support: 'IP:PORT FINGERPRINT' (a plain bridge) or 'obfs4
    IP:PORT FINGERPRINT cert=CERT iat-mode=0|1|2'. The fingerprint is
    required: without it tor would take any relay at that address as the
    bridge. Returns the normalised lines; bad ones go to problems."""
    out = []
    for n, line in enumerate(v.strip() for v in value.split("\n")):
        if not line:
            continue
        bad = lambda why: problems.append(  # noqa: E731
            "%s: bridge '%s': %s" % (where, line, why))
        words = line.split()
        transport = None
        if words[0].lower() == "obfs4":
            transport, words = "obfs4", words[1:]
        elif re.match(r"^[A-Za-z][A-Za-z0-9_]*$", words[0]):
            bad("transport '%s' is not supported (plain bridges and obfs4 "
                "only)" % words[0])
            continue
        if not words or not _bridge_address(words[0]):
            bad("'%s' is not IP:PORT (an IPv4 address or [IPv6], not a "
                "name; port 1-65535)" % (words[0] if words else ""))
            continue
        if len(words) < 2 or not re.match(r"^[0-9A-Fa-f]{40}$", words[1]):
            bad("the bridge's fingerprint (40 hex digits after the address) "
                "is missing or malformed; without it tor would accept any "
                "relay at that address")
            continue
        args = {}
        for kv in words[2:]:
            k, sep, v = kv.partition("=")
            if not sep or k in args:
                bad("'%s' is not a KEY=VALUE argument, or repeats one" % kv)
                break
            args[k] = v
        else:
            if transport is None and args:
                bad("a plain bridge takes no arguments (%s)"
                    % " ".join(words[2:]))
                continue
            if transport == "obfs4":
                if set(args) != {"cert", "iat-mode"}:
                    bad("obfs4 needs exactly cert=... and iat-mode=... "
                        "(has: %s)" % (", ".join(sorted(args)) or "none"))
                    continue
                if not OBFS4_CERT_RE.match(args["cert"]):
                    bad("cert= must be 70 base64 characters (the bridge's "
                        "node ID and public key)")
                    continue
                if args["iat-mode"] not in ("0", "1", "2"):
                    bad("iat-mode= must be 0, 1 or 2")
                    continue
            norm = " ".join(([transport] if transport else []) +
                            [words[0], words[1].upper()] +
                            ["%s=%s" % kv for kv in args.items()])
            if norm in out:
                bad("listed twice")
                continue
            out.append(norm)
    if not out and not any(p.startswith(where) for p in problems):
        problems.append("%s: no bridge given" % where)
    return out


def check_listen(value, where, problems):
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        problems.append("%s: '%s' is not an IP address (gateway mode binds "
                        "the SOCKS ports on one address of this machine)"
                        % (where, value))
        return None


def parse(text, path="<config>", listen=None, allow=None):
    """Parse and validate INI text; `listen`/`allow` (strings from the command
    line) override the file. Returns a Config or raises ConfigError."""
    problems = []
    cfg = Config()
    cfg.path = path
    cp = configparser.ConfigParser(interpolation=None, strict=True,
                                   empty_lines_in_values=False,
                                   default_section="\0none")
    cp.optionxform = str            # keep the case of tor options
    try:
        cp.read_string(text, source=path)
    except configparser.Error as e:
        raise ConfigError(["%s: %s" % (path, " ".join(str(e).split()))])

    lines = _key_lines(text)
    sphere_sections = []
    for section in cp.sections():
        if section == "spheres":
            _parse_globals(cfg, cp[section], path, problems, lines)
        elif section == "tor":
            _parse_tor(cfg, cp[section], path, problems, lines)
        elif section.startswith("sphere "):
            sphere_sections.append(section)
        else:
            problems.append("%s: unknown section [%s] (known: [spheres], "
                            "[sphere NAME], [tor])" % (path, section))

    if listen is not None:
        cfg.listen = check_listen(listen, "--listen", problems) or cfg.listen
    if allow is not None:
        cfg.allow = parse_networks(allow, "--allow", problems)

    if sphere_sections:
        for i, section in enumerate(sphere_sections):
            s = _parse_sphere(section, cp[section], i, path, problems,
                              lines)
            if s:
                cfg.spheres.append(s)
    else:
        for i, (name, countries) in enumerate(DEFAULT_SPHERES):
            cfg.spheres.append(SphereConfig(
                name, countries=countries, socks_port=FIRST_SOCKS_PORT + 2 * i,
                control_port=FIRST_SOCKS_PORT + 2 * i + 1))

    for s in cfg.spheres:
        cfg.processes.append(s)
        if s.socks_port and s.control_port:
            cfg.processes += [s.instance_config(k, cfg.port_step)
                              for k in range(2, cfg.instances + 1)]
    if cfg.bridges:
        for key, value in cfg.tor_options:
            if key.lower() == "usemicrodescriptors" and value == "0":
                problems.append(
                    "%s: [tor] %s = 0: with bridges tor 0.4.9 then builds no "
                    "circuit at all (it finds no usable first hop); drop it "
                    "or the bridges" % (_at(path, lines, "tor", key), key))
    _check_disjoint(cfg, path, problems)
    _check_instance_ports(cfg, path, lines, problems)
    _check_gateway(cfg, path, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def check_trusted(path):
    """Problems that make a config file untrustworthy (issue 13 item 3): it
    decides which tor options run and where the spheres exit, so only its
    owner (or root) may be able to change it. [] when it is fine."""
    out = []
    try:
        st = os.lstat(path)
    except OSError:
        return out                  # open() reports it
    if stat.S_ISLNK(st.st_mode):
        out.append("%s: is a symbolic link; give the real file's path" % path)
        return out
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        out.append("%s: owned by uid %d, not by you (uid %d) or root; "
                   "anyone who can change it controls the spheres"
                   % (path, st.st_uid, me))
    if st.st_mode & 0o022:
        out.append("%s: writable by %s (mode %04o); chmod go-w %s"
                   % (path, "group and others" if st.st_mode & 0o022 == 0o022
                      else "group" if st.st_mode & 0o020 else "others",
                      stat.S_IMODE(st.st_mode), path))
    folder = os.path.dirname(os.path.abspath(path))
    try:
        dst = os.stat(folder)
    except OSError:
        return out
    if dst.st_uid not in (me, 0):
        out.append("%s: its folder %s is owned by uid %d, not by you or root"
                   % (path, folder, dst.st_uid))
    if dst.st_mode & 0o022 and not dst.st_mode & stat.S_ISVTX:
        out.append("%s: its folder %s is writable by group or others (mode "
                   "%04o), so the file could be replaced; chmod go-w %s"
                   % (path, folder, stat.S_IMODE(dst.st_mode), folder))
    return out


def load(path=None, listen=None, allow=None):
    """Read and validate a config file (None: the defaults only)."""
    if path is None:
        return parse("", "<defaults>", listen=listen, allow=allow)
    untrusted = check_trusted(path)
    if untrusted:
        raise ConfigError(untrusted)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(["%s: cannot read the config file: %s"
                           % (path, e.strerror or e)])
    except UnicodeDecodeError as e:
        raise ConfigError(["%s: not UTF-8 text (%s)" % (path, e)])
    return parse(text, path, listen=listen, allow=allow)


def _key_lines(text):
    """{(section, lower-case key): line number} of the INI text, read the
    way configparser reads it (a key starts a line that is not indented),
    so that problems can name the line."""
    out, section = {}, None
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line[0] in "#;" or line[0].isspace():
            continue
        m = re.match(r"\[(.+)\]", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"(.*?)\s*[=:]", line)
        if m and section is not None:
            out.setdefault((section, m.group(1).strip().lower()), n)
    return out


def _at(path, lines, section, key):
    """'FILE:LINE' of a key (just 'FILE' when the key has no line)."""
    n = lines.get((section, key.lower()))
    return "%s:%d" % (path, n) if n else path


def _parse_globals(cfg, sec, path, problems, lines):
    for key, value in sec.items():
        where = "%s: [spheres] %s" % (_at(path, lines, "spheres", key), key)
        k = key.lower()
        if k not in SPHERES_KEYS:
            problems.append("%s: unknown key (known: %s)"
                            % (where, ", ".join(sorted(SPHERES_KEYS))))
        elif k == "listen":
            cfg.listen = check_listen(value.strip(), where, problems) or cfg.listen
        elif k == "allow":
            cfg.allow = parse_networks(value, where, problems)
        elif k == "state_dir":
            cfg.state_dir = value.strip()
        elif k == "tor":
            cfg.tor = value.strip()
        elif k == "bridges":
            cfg.bridges = parse_bridges(value, where, problems)
        elif k == "obfs4proxy":
            cfg.obfs4proxy = value.strip()
            if not cfg.obfs4proxy.startswith("/"):
                problems.append("%s: '%s' is not an absolute path" %
                                (where, cfg.obfs4proxy))
        elif k == "instances":
            try:
                cfg.instances = int(value.strip())
            except ValueError:
                cfg.instances = None
            if cfg.instances is None or \
                    not 1 <= cfg.instances <= MAX_INSTANCES:
                problems.append("%s: '%s' is not a whole number from 1 to %d "
                                "(tor processes per sphere)"
                                % (where, value.strip(), MAX_INSTANCES))
                cfg.instances = 1
        elif k == "timeout":
            try:
                cfg.timeout = float(value)
                if cfg.timeout <= 0:
                    raise ValueError
            except ValueError:
                problems.append("%s: '%s' is not a positive number of seconds"
                                % (where, value))


def _parse_tor(cfg, sec, path, problems, lines):
    for key, value in sec.items():
        where = "%s: [tor] %s" % (_at(path, lines, "tor", key), key)
        values = [v.strip() for v in value.split("\n") if v.strip()]
        bad = []
        refused = refused_tor_options(key)
        names = " or ".join(refused)
        how = ""
        if refused and key.lower() != names.lower():
            how = "to tor this is an alias, form or abbreviation of %s, " \
                  "which " % names
        if not re.match(r"^_{0,2}[A-Za-z][A-Za-z0-9]*$", key):
            bad.append("not a tor option name")
        elif key.startswith("__"):
            bad.append("'__' options are tor's controller-only forms%s; not "
                       "accepted in [tor]" % (" (this one means %s)" % names
                                              if refused else ""))
        elif set(refused) & set(MANAGED_TOR_OPTIONS):
            bad.append("%s%sset by detector-spheres itself; use the "
                       "[spheres]/[sphere NAME] settings instead"
                       % (how, "is " if how else ""))
        elif refused:
            bad.append("%swould give the sphere %s; not accepted in [tor]"
                       % (how, FORBIDDEN_TOR_OPTIONS[refused[0]]))
        if not values:
            bad.append("no value")
        for v in values:
            if re.search(r"[\x00-\x1f\x7f]", v) or v.endswith("\\"):
                bad.append("value %r has a control character or ends in a "
                           "backslash (a torrc line continuation)" % v)
        problems.extend("%s: %s" % (where, b) for b in bad)
        if not bad:
            cfg.tor_options.extend((key, v) for v in values)


def _parse_sphere(section, sec, index, path, problems, lines):
    name = section[len("sphere "):].strip()
    where = "%s: [%s]" % (path, section)

    def at(key):
        return "%s: [%s] %s" % (_at(path, lines, section, key), section, key)

    if not NAME_RE.match(name):
        problems.append("%s: sphere name '%s' must be 1-32 lower-case letters, "
                        "digits or '-'" % (where, name))
        return None
    s = SphereConfig(name)
    keys = {k.lower(): v for k, v in sec.items()}
    for k in keys:
        if k not in SPHERE_KEYS:
            problems.append("%s: unknown key (known: %s)"
                            % (at(k), ", ".join(sorted(SPHERE_KEYS))))
    if "countries" in keys and "exit_nodes" in keys:
        problems.append("%s: give either countries or exit_nodes, not both"
                        % where)
    elif "countries" not in keys and "exit_nodes" not in keys:
        problems.append("%s: no exits: set countries (e.g. 'countries = jp kr') "
                        "or exit_nodes (relay fingerprints)" % where)
    before = len(problems)
    if "countries" in keys:
        for cc in _split_list(keys["countries"]):
            c = cc.lower().strip("{}")
            if c not in COUNTRY_CODES:
                problems.append("%s: '%s' is not an ISO 3166-1 "
                                "alpha-2 country code (two letters, e.g. 'jp')"
                                % (at("countries"), cc))
            elif c in s.countries:
                problems.append("%s: '%s' is listed twice" % (at("countries"), c))
            else:
                s.countries.append(c)
        if not s.countries and len(problems) == before:
            problems.append("%s: empty" % at("countries"))
    before = len(problems)
    if "exit_nodes" in keys:
        for item in _split_list(keys["exit_nodes"]):
            m = FINGERPRINT_RE.match(item)
            if not m:
                problems.append("%s: '%s' is not a relay fingerprint "
                                "(40 hex digits, optionally '$'-prefixed)"
                                % (at("exit_nodes"), item))
            elif m.group(1).upper() in s.fingerprints:
                problems.append("%s: '%s' is listed twice"
                                % (at("exit_nodes"), item))
            else:
                s.fingerprints.append(m.group(1).upper())
        if not s.fingerprints and len(problems) == before:
            problems.append("%s: empty" % at("exit_nodes"))
    s.socks_port = FIRST_SOCKS_PORT + 2 * index
    if "socks_port" in keys:
        s.socks_port = _parse_port(keys["socks_port"], at("socks_port"),
                                   problems)
    if "control_port" in keys:
        s.control_port = _parse_port(keys["control_port"],
                                     at("control_port"), problems)
    elif s.socks_port:
        if s.socks_port < 65535:
            s.control_port = s.socks_port + 1
        else:
            problems.append("%s: 65535 leaves no room for the "
                            "default control port (socks_port + 1); set "
                            "control_port" % at("socks_port"))
    return s


def _check_disjoint(cfg, path, problems):
    """Spheres must not share a country, an exit relay or a port."""
    names, countries, fps, ports = {}, {}, {}, {}
    for s in cfg.spheres:
        if s.name in names:
            problems.append("%s: sphere '%s' is defined twice" % (path, s.name))
        names[s.name] = s
        for c in s.countries:
            if c in countries:
                problems.append("%s: country '%s' is in two spheres: '%s' and "
                                "'%s'" % (path, c, countries[c], s.name))
            countries.setdefault(c, s.name)
        for fp in s.fingerprints:
            if fp in fps:
                problems.append("%s: exit relay %s is in two spheres: '%s' and "
                                "'%s'" % (path, fp, fps[fp], s.name))
            fps.setdefault(fp, s.name)
        for kind, port in (("socks_port", s.socks_port),
                           ("control_port", s.control_port)):
            if port is None:
                continue
            if port in ports:
                problems.append("%s: port clash: %d is [sphere %s] %s and "
                                "[sphere %s] %s" % ((path, port) + ports[port]
                                                    + (s.name, kind)))
            else:
                ports[port] = (s.name, kind)


def _check_instance_ports(cfg, path, lines, problems):
    """Instances 2..N: ports in range and clear of every other port."""
    if cfg.instances == 1:
        return
    where = "%s: [spheres] instances" % _at(path, lines, "spheres",
                                            "instances")
    owner = {}
    for p in cfg.processes:
        for kind, port in (("socks_port", p.socks_port),
                           ("control_port", p.control_port)):
            if port is None:
                continue
            if port > 65535:
                problems.append("%s: instance %d of sphere '%s' would need "
                                "%s %d, beyond 65535 (instance k uses the "
                                "sphere's ports + (k - 1) x %d)"
                                % (where, p.instance, p.sphere, kind, port,
                                   cfg.port_step))
            elif port in owner:
                q, qkind = owner[port]
                if q.instance == 1 and p.instance == 1:
                    continue            # reported by _check_disjoint
                a, akind, b, bkind = (p, kind, q, qkind) if p.instance > 1 \
                    else (q, qkind, p, kind)
                problems.append("%s: instance %d of sphere '%s' would need "
                                "%s %d, which is %s's %s (instance k uses "
                                "the sphere's ports + (k - 1) x %d: leave "
                                "room after the spheres' ports)"
                                % (where, a.instance, a.sphere, akind, port,
                                   b.name, bkind, cfg.port_step))
            else:
                owner[port] = (p, kind)


def _check_gateway(cfg, path, problems):
    if cfg.gateway and not cfg.allow:
        problems.append("%s: gateway mode (listen = %s) needs an allow list "
                        "(--allow CIDR,... or 'allow =' in [spheres]) so that "
                        "only your own networks can use the spheres"
                        % (path, cfg.listen))
    for net in cfg.allow:
        if net.prefixlen == 0:
            problems.append("%s: allow %s would open the spheres to everyone; "
                            "list your own networks" % (path, net))
    listen = ipaddress.ip_address(cfg.listen)
    if cfg.allow and not listen.is_unspecified:
        listen_v = listen.version
        if all(n.version != listen_v for n in cfg.allow):
            problems.append("%s: listen %s is IPv%d but every allowed network "
                            "is IPv%d: no client could connect"
                            % (path, cfg.listen, listen_v, 10 - listen_v))
