"""debian/detector.conf, the conffile /etc/detector/detector.conf.

It must document every key libdetector accepts (the list in
detector/lib/config.c), show each one's real default (detector.h), change
nothing as shipped, and be a valid file when every key is uncommented.
"""

import os
import re
import subprocess
import tempfile

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONF = os.path.join(TOP, "debian", "detector.conf")
BUILD = os.environ.get("DETECTOR_BUILD", os.path.join(TOP, "build"))


def read(path):
    with open(path) as f:
        return f.read()


def engine_keys():
    text = read(os.path.join(TOP, "detector", "lib", "config.c"))
    block = re.search(r"config_keys\[\] = \{(.*?)\};", text, re.S).group(1)
    return set(re.findall(r'"([a-z_]+)"', block))


def documented():
    """key -> the values of its commented-out '#key = value' lines."""
    keys = {}
    for line in read(CONF).splitlines():
        m = re.match(r"^#([a-z_]+) = (.*)$", line)
        if m:
            keys.setdefault(m.group(1), []).append(m.group(2))
    return keys


def test_every_engine_key_is_documented_and_no_other():
    assert set(documented()) == engine_keys()


def test_defaults_shown_are_the_engine_defaults():
    header = read(os.path.join(TOP, "detector", "include", "detector.h"))

    def define(name):
        m = re.search(r"#define %s\s+(?:\\\n\s*)?(\S+)" % name, header)
        return m.group(1).strip('"')

    doc = documented()
    assert doc["spheres"] == [define("DETECTOR_DEFAULT_SPHERES")]
    assert doc["quorum"] == [define("DETECTOR_DEFAULT_QUORUM")]
    assert doc["probe_timeout_ms"] == [define("DETECTOR_DEFAULT_PROBE_TIMEOUT_MS")]
    assert doc["deadline_ms"] == [define("DETECTOR_DEFAULT_DEADLINE_MS")]
    assert doc["cache_validity"] == [define("DETECTOR_DEFAULT_CACHE_VALIDITY_S")]
    assert doc["on_undecided"] == ["accept"]
    assert doc["enabled"] == ["yes"]
    assert doc["log"] == ["errors,stderr"]
    assert doc["history_days"] == [define("DETECTOR_DEFAULT_HISTORY_DAYS")]
    assert doc["survey_days"] == [define("DETECTOR_DEFAULT_SURVEY_DAYS")]


def test_as_shipped_sets_nothing():
    for line in read(CONF).splitlines():
        s = line.strip()
        assert s == "" or s[0] in "#;" or s == "[detector]", \
            "an active line in the shipped file: %r" % line


def probe_config(text):
    probe = os.path.join(BUILD, "sphere-probe")
    if not os.access(probe, os.X_OK):
        pytest.skip("%s is not built (make)" % probe)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "detector.conf")
        with open(path, "w") as f:
            f.write(text)
        env = dict(os.environ, HOME=d, XDG_CACHE_HOME=os.path.join(d, "cache"))
        env.pop("DETECTOR_CONFIG", None)
        # The package build links sphere-probe against libdetector.so.0
        # (TOOLS_LIB=shared), next to it in the build folder.
        env["LD_LIBRARY_PATH"] = BUILD
        return subprocess.run([probe, "--config", path, "--cache-list"], env=env,
                              capture_output=True, text=True, timeout=30)


def test_shipped_file_and_every_key_uncommented_load():
    shipped = probe_config(read(CONF))
    assert shipped.returncode == 0, shipped.stderr
    # Every example uncommented ("cache = off" aside: --cache-list needs one).
    text = re.sub(r"^#([a-z_]+ = )", r"\1", read(CONF), flags=re.M)
    text = text.replace("\ncache = off\n", "\n")
    every = probe_config(text)
    assert every.returncode == 0, every.stderr
    # ... and a typo is refused, naming the file, the line and the key.
    bad = probe_config(read(CONF) + "quorom = 3\n")
    assert bad.returncode != 0
    assert "detector.conf:%d: key 'quorom': unknown key" % (
        read(CONF).count("\n") + 1) in bad.stderr, bad.stderr
