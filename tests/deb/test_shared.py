"""The packaged tools use libdetector0, the shared library Debian ships
once, with a symbols file (Debian policy 8.6 and 10.7.1's "link dynamically
with libraries available in the archive"), not a static copy each.

Reads the .deb files make deb built (DETECTOR_DEB_DIR); no root needed.
"""

import os
import subprocess

from debroot import deb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_tools_link_libdetector_so_0(tmp_path):
    subprocess.run(["dpkg-deb", "-x", deb("detector-tools"), str(tmp_path)], check=True)
    for tool in ("sphere-probe", "detector-monitor"):
        dyn = subprocess.run(["readelf", "-d", str(tmp_path / "usr" / "bin" / tool)],
                             check=True, capture_output=True, text=True).stdout
        assert "Shared library: [libdetector.so.0]" in dyn, "%s: %s" % (tool, dyn)
    depends = subprocess.run(["dpkg-deb", "-f", deb("detector-tools"), "Depends"],
                             check=True, capture_output=True, text=True).stdout
    assert "libdetector0 (>= 0.1.0)" in depends or "libdetector0 (=" in depends, depends


def test_libdetector0_has_a_symbols_file(tmp_path):
    subprocess.run(["dpkg-deb", "-e", deb("libdetector0"), str(tmp_path / "DEBIAN")],
                   check=True)
    symbols = (tmp_path / "DEBIAN" / "symbols").read_text()
    assert symbols.startswith("libdetector.so.0 libdetector0 #MINVER#\n"), symbols
    assert " detector_check@Base 0.1.0\n" in symbols, symbols
    # Only the public API (and the hook's entry point) is exported.
    names = [line.split("@")[0].strip() for line in symbols.splitlines()[1:]]
    assert names and all(n.startswith("detector_") for n in names), names


def test_symbols_file_lists_every_exported_symbol(tmp_path):
    # The packaged library's dynamic symbols and debian/libdetector0.symbols
    # must agree both ways: a symbol exported but not listed gets no
    # minimal version (dpkg-gensymbols only warns), one listed but gone
    # breaks the ABI.
    subprocess.run(["dpkg-deb", "-x", deb("libdetector0"), str(tmp_path)], check=True)
    lib = next((tmp_path / "usr" / "lib").rglob("libdetector.so.0"))
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], check=True,
                         capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in out.splitlines()
                if line.split() and line.split()[-1].startswith("detector_")}
    with open(os.path.join(ROOT, "debian", "libdetector0.symbols")) as f:
        listed = {line.split("@")[0].strip() for line in f
                  if line.startswith(" ")}
    assert exported - listed == set(), "exported, not in the symbols file"
    assert listed - exported == set(), "in the symbols file, not exported"
