"""The sample captures in pcaps/ are reproducible and readable, with the counts pcaps/README.md states.

The builder is run twice into temporary directories: both runs and the committed files must be
byte-identical, so nobody can edit a capture or its expectations without the builder (or the
builder without regenerating them).
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


def _build(out: Path) -> None:
    subprocess.run(
        [sys.executable, str(PCAPS / "build_samples.py"), str(out)], check=True, capture_output=True
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
        f"`.venv/bin/python pcaps/build_samples.py` and review the change; the ClientHellos come from "
        f"this Python's OpenSSL ({ssl.OPENSSL_VERSION}), pcaps/README.md names the one used for the "
        f"committed files."
    )


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
