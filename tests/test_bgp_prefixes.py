"""``classifier signatures build-prefixes`` (from MRT and MMDB) and ``export-prefixes`` (plain, BIRD,
FRR, nftables)."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import test_bgp_mrtwriter as w
from conftest import ROOT, SHARED, need_shared, run_cli
from test_bgp_mrt import DUMP, rib_file, ts

ORIGIN_ASN_MMDB = SHARED / "data" / "asn" / "offline_db" / "origin-asn.20260916.mmdb.gz"
SHIPPED = ROOT / "signatures"


def networks(path: Path) -> list:
    return [
        ipaddress.ip_network(line)
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def header(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("#")]


def test_build_from_rib(tmp_path):
    rib = tmp_path / "rib.mrt"
    # a prefix two operator ASNs originate: two peers see AS396986, one AS138699
    moas = w.rib(
        DUMP,
        9,
        "198.18.0.0/24",
        [
            (0, ts("2024-01-01T00:00:00Z"), w.rib_attrs(w.seq(64500, 396986)), None),
            (1, ts("2024-01-01T00:00:00Z"), w.rib_attrs(w.seq(64501, 396986)), None),
            (2, ts("2024-01-01T00:00:00Z"), w.rib_attrs(w.seq(64502, 138699)), None),
        ],
    )
    rib.write_bytes(rib_file() + moas)
    out = tmp_path / "prefixes"
    proc = run_cli("signatures", "build-prefixes", str(rib), "-o", str(out))
    assert f"{out}/AS396986-ipv4.txt: 2 prefixes" in proc.stdout.decode()

    assert [str(n) for n in networks(out / "AS396986-ipv4.txt")] == ["71.18.0.0/16", "198.18.0.0/24"]
    assert [str(n) for n in networks(out / "AS150436-ipv6.txt")] == ["2605:340::/32"]
    assert [str(n) for n in networks(out / "AS137718-ipv4.txt")] == ["71.18.64.0/20"]  # ADD-PATH RIB
    assert [str(n) for n in networks(out / "AS45090-ipv4.txt")] == ["1.12.0.0/21"]
    assert networks(out / "AS138699-ipv4.txt") == []  # 203.0.113.0/24 is only transit through it
    assert networks(out / "AS11983-ipv4.txt") == []  # the AS_SET origin is ambiguous: left out

    head = header(out / "AS396986-ipv4.txt")
    assert head[0] == "# AS396986 Bytedance Inc. (US, ARIN): IPv4 prefixes, owner bytedance"
    assert head[1].startswith("# source: MRT rib.mrt (")
    assert head[2:4] == ["# date: 2025-03-01", "# prefixes: 2"]
    assert "# note: 198.18.0.0/24 also originated by AS138699; kept here (seen by 2 peers)" in head
    assert any("AS_SET origin" in line for line in head)

    # the lists replace the shipped operator lists and load as a signature set
    sig = tmp_path / "sig"
    shutil.copytree(SHIPPED, sig)
    for path in out.iterdir():
        shutil.copy(path, sig / "prefixes" / path.name)
    from classifier.signatures import Signatures

    sigs = Signatures.load(sig)
    hit = sigs.prefixes.lookup(ipaddress.ip_address("198.18.0.7").packed)
    assert hit is not None and hit.asn == 396986
    assert sigs.prefixes.lookup(ipaddress.ip_address("203.0.113.1").packed) is None


def test_build_from_truncated_rib_says_so(tmp_path):
    data = rib_file()
    rib = tmp_path / "cut.mrt"
    rib.write_bytes(data[:-7])
    proc = run_cli("signatures", "build-prefixes", str(rib), "-o", str(tmp_path / "out"), check_status=3)
    assert "cut.mrt: record 8" in proc.stderr.decode()
    assert any(
        line.startswith("# input problem: cut.mrt: record 8")
        for line in header(tmp_path / "out" / "AS396986-ipv4.txt")
    )


@pytest.mark.real
def test_build_from_mmdb_matches_the_shipped_lists(tmp_path):
    out = tmp_path / "prefixes"
    run_cli("signatures", "build-prefixes", str(need_shared(ORIGIN_ASN_MMDB)), "-o", str(out))
    head = header(out / "AS45090-ipv4.txt")
    assert head[1].startswith("# source: MMDB origin-asn.20260916.mmdb.gz (asn ipvAll, build 2026-09-16")
    assert head[2] == "# date: 2026-09-16"
    total = 0
    for path in sorted(out.glob("AS*.txt")):
        made = networks(path)
        # the shipped lists are the union of origin-asn and iptoasn: every network origin-asn
        # gives an ASN lies inside that ASN's shipped list
        shipped = networks(SHIPPED / "prefixes" / path.name)
        outside = [n for n in made if not any(n.version == s.version and n.subnet_of(s) for s in shipped)]
        assert outside == [], path.name
        total += len(made)
    assert total > 500
    assert len(networks(out / "AS396986-ipv4.txt")) == 72


def test_build_rejects_what_it_cannot_read(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    proc = run_cli("signatures", "build-prefixes", str(junk), "-o", str(tmp_path / "o"), check_status=2)
    assert "neither MRT nor an MMDB file" in proc.stderr.decode()


# --------------------------------------------------------------------------------------------
# export


def export(*args: str) -> str:
    return run_cli("signatures", "export-prefixes", *args).stdout.decode()


def shipped(operator: str, family: int) -> list:
    from classifier.signatures import Signatures

    sigs = Signatures.load()
    nets = []
    for asn in sigs.asns.values():
        if asn.owner == operator:
            nets += networks(SHIPPED / (asn.ipv4 if family == 4 else asn.ipv6))
    return list(ipaddress.collapse_addresses(nets))


def test_export_plain_is_the_shipped_space_collapsed():
    text = export("--format", "plain", "--operator", "bytedance", "--family", "4")
    got = [ipaddress.ip_network(line) for line in text.splitlines() if line and not line.startswith("#")]
    assert got == shipped("bytedance", 4)
    # AS11983's more-specifics merge into the ByteDance space around them
    assert any(ipaddress.ip_network("71.18.6.0/24").subnet_of(n) for n in got)
    assert "# bytedance IPv4:" in text and "tencent" not in text.split("\n", 1)[1]


def test_export_frr():
    text = export("--format", "frr", "--operator", "tencent")
    lines = [line for line in text.splitlines() if not line.startswith("!")]
    pattern = re.compile(
        r"(ip|ipv6) prefix-list (TENCENT-V4|TENCENT-V6) seq (\d+) permit (\S+)"
        r"( le (32|128))?"
    )
    seqs: dict[str, list[int]] = {}
    for line in lines:
        m = pattern.fullmatch(line)
        assert m, line
        net = ipaddress.ip_network(m.group(4))
        assert (m.group(1) == "ip") == (net.version == 4) and m.group(2).endswith(str(net.version))
        if m.group(5):
            assert int(m.group(6)) == net.max_prefixlen > net.prefixlen
        seqs.setdefault(m.group(2), []).append(int(m.group(3)))
    assert len(seqs["TENCENT-V4"]) == len(shipped("tencent", 4))
    assert all(s == sorted(set(s)) for s in seqs.values())


def test_export_bird_structure():
    text = export("--format", "bird")
    blocks = re.findall(r"define ([A-Z0-9_]+) = \[\n(.*?)\n\];", text, re.S)
    assert {name for name, _ in blocks} == {"BYTEDANCE_V4", "BYTEDANCE_V6", "TENCENT_V4", "TENCENT_V6"}
    for name, body in blocks:
        items = [item.strip() for item in body.split(",")]
        for item in items:
            assert item.endswith("+"), item
            assert ipaddress.ip_network(item[:-1]).version == int(name[-1])
        assert len(items) == len(shipped(name.split("_")[0].lower(), int(name[-1])))
    # nothing outside the define blocks but comments
    rest = re.sub(r"define [A-Z0-9_]+ = \[\n.*?\n\];", "", text, flags=re.S)
    assert all(not line.strip() or line.startswith("#") for line in rest.splitlines())


def test_export_nft_loads_in_nft(tmp_path):
    text = export("--format", "nft", "--nft-table", "clf_test")
    assert "table inet clf_test {" in text and "flags interval" in text
    assert "set bytedance_v4 {" in text and "type ipv6_addr" in text
    path = tmp_path / "operators.nft"
    path.write_text(text)
    nft = shutil.which("nft")
    if nft is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("nft (as root) is needed to check the nftables syntax, and CI must run it")
        pytest.skip("nft as root is needed to check the syntax")
    proc = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    broken = tmp_path / "broken.nft"
    broken.write_text(text.replace("flags interval", "flags intervall", 1))
    assert subprocess.run([nft, "-c", "-f", str(broken)], capture_output=True).returncode != 0


def test_export_to_file_and_errors(tmp_path):
    out = tmp_path / "x.txt"
    run_cli("signatures", "export-prefixes", "--family", "6", "-o", str(out))
    text = out.read_text()
    assert "IPv6" in text and "IPv4" not in text
    proc = run_cli("signatures", "export-prefixes", "--operator", "nobody", check_status=2)
    assert "--operator nobody: unknown" in proc.stderr.decode()
