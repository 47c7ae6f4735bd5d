"""The sample captures in pcaps/ are reproducible and readable, with the counts pcaps/README.md states.

The builder is run twice into temporary directories: both runs and the committed files must be
byte-identical, so nobody can edit a capture or its expectations without the builder (or the
builder without regenerating them). The ClientHellos inside are stored data (pcaps/client_hellos.json),
so the comparison holds whatever OpenSSL the machine has; the OpenSSL in use is checked only for what
matters (a refresh still yields hellos with the right SNI and ALPN).
"""

from __future__ import annotations

import json
import re
import ssl
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest
from scapy.utils import rdpcap

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
CAPTURES = ["demo.pcap", "linktypes.pcapng", "linktypes-ns-be.pcap", "malformed.pcap", "hidden.pcap"]
OUTPUTS = CAPTURES + [f"expected/{Path(c).stem}.json" for c in CAPTURES]


# Runs the builder with Python's OpenSSL unusable, so a build that still asks it for a ClientHello fails.
NO_OPENSSL = """
import runpy, ssl, sys
def refuse(*args, **kwargs):
    raise AssertionError("the build asked this machine's OpenSSL for a ClientHello")
ssl.SSLContext = refuse
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _build(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_OPENSSL, str(PCAPS / "build_samples.py"), str(out), *extra],
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    _build(first)
    _build(second)
    return first, second


def _readme_section(title: str) -> str:
    text = (PCAPS / "README.md").read_text()
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _readme_counts() -> dict[str, dict[str, int]]:
    rows = {}
    row = re.compile(r"^\| `([^`]+)` \| (\d+) \| [^|]+ \| (\d+) \| (\d+) \| (\d+) \|$", re.M)
    for name, size, scapy_n, dpkt_n, flows in row.findall(_readme_section("Packet counts")):
        rows[name] = {"bytes": int(size), "scapy": int(scapy_n), "dpkt": int(dpkt_n), "flows": int(flows)}
    return rows


def test_builder_writes_exactly_the_committed_files(builds: tuple[Path, Path]) -> None:
    first, _ = builds
    made = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    assert made == sorted(OUTPUTS)


@pytest.mark.parametrize("name", OUTPUTS)
def test_build_is_deterministic_and_matches_committed(builds: tuple[Path, Path], name: str) -> None:
    first, second = builds
    assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name}: two builds differ"
    assert (first / name).read_bytes() == (PCAPS / name).read_bytes(), (
        f"{name}: a fresh build differs from the committed file. Rebuild with "
        f"`.venv/bin/python pcaps/build_samples.py` and review the change"
    )


def _parsed_hellos(path: Path) -> dict[str, tuple[str | None, tuple[str, ...], bytes]]:
    """SNI key -> (SNI, ALPN, per-connection bytes) of every ClientHello in a client_hellos.json."""
    from classifier.inspect.tls import parse_client_hello

    out = {}
    for key, hexa in json.loads(path.read_text())["hellos"].items():
        record = bytes.fromhex(hexa)
        hello = parse_client_hello(record)
        assert hello is not None, key
        sid_len = record[43]
        out[key] = (hello.sni, hello.alpn, record[11:43] + record[44 : 44 + sid_len])
    return out


def test_stored_client_hellos_are_real_and_zeroed() -> None:
    hellos = _parsed_hellos(PCAPS / "client_hellos.json")
    assert "" in hellos and "www.tiktok.com" in hellos
    for key, (sni, alpn, variable) in hellos.items():
        assert sni == (key or None)
        assert alpn == ("h2", "http/1.1")
        assert variable == bytes(len(variable)), f"{key}: random/session id not zeroed"


def test_refresh_makes_the_same_client_hellos_with_this_openssl(tmp_path: Path) -> None:
    """--refresh-client-hellos asks this OpenSSL; byte layout may differ by version, meaning may not."""
    proc = subprocess.run(
        [sys.executable, str(PCAPS / "build_samples.py"), str(tmp_path), "--refresh-client-hellos"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert ssl.OPENSSL_VERSION in proc.stdout
    made = json.loads((tmp_path / "client_hellos.json").read_text())
    assert made["openssl"] == ssl.OPENSSL_VERSION
    assert _parsed_hellos(tmp_path / "client_hellos.json") == _parsed_hellos(PCAPS / "client_hellos.json")
    for name in CAPTURES:
        assert (tmp_path / name).stat().st_size > 0


def test_missing_stored_client_hello_is_a_one_line_error(tmp_path: Path) -> None:
    builder = tmp_path / "build_samples.py"
    builder.write_text((PCAPS / "build_samples.py").read_text())
    stored = json.loads((PCAPS / "client_hellos.json").read_text())
    del stored["hellos"]["www.tiktok.com"]
    (tmp_path / "client_hellos.json").write_text(json.dumps(stored))
    argv = [sys.executable, str(builder), str(tmp_path / "out")]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "no stored ClientHello for SNI 'www.tiktok.com'" in proc.stderr
    assert "--refresh-client-hellos" in proc.stderr


def test_readme_lists_every_capture() -> None:
    assert sorted(_readme_counts()) == sorted(CAPTURES)


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_counts_match_readme(name: str) -> None:
    stated = _readme_counts()[name]
    path = PCAPS / name
    assert path.stat().st_size == stated["bytes"]
    assert path.stat().st_size < 200_000
    assert len(rdpcap(str(path))) == stated["scapy"]
    with path.open("rb") as f:
        reader = dpkt.pcapng.Reader(f) if name.endswith(".pcapng") else dpkt.pcap.Reader(f)
        assert sum(1 for _ in reader) == stated["dpkt"]
    flows = json.loads((PCAPS / "expected" / f"{path.stem}.json").read_text())
    assert len(flows) == stated["flows"]


def test_malformed_truncation_is_where_readme_says() -> None:
    section = _readme_section("`malformed.pcap`")
    complete = int(re.search(r"(\d+) complete records", section).group(1))
    cut_header = int(re.search(r"header starts at byte offset (\d+)", section).group(1))
    truncated_at = int(re.search(r"truncation starts at byte offset (\d+)", section).group(1))
    data = (PCAPS / "malformed.pcap").read_bytes()
    assert len(data) == truncated_at
    offset, whole = 24, 0
    while offset + 16 + struct.unpack_from("<I", data, offset + 8)[0] <= len(data):
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
        whole += 1
    assert (whole, offset) == (complete, cut_header)
    assert offset + 16 < len(data), "the cut must fall inside the last record's data"
