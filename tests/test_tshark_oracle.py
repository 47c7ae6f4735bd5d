"""tshark as an independent oracle for the names the scanner reads from ClientHellos.

For every real capture in ../shared/pcaps/real, the project's QUIC captures (pcaps/quic*.pcap) and
pcaps/demo.pcap, tshark lists every TLS ClientHello (over TCP, inside HTTP CONNECT tunnels, inside
QUIC Initial packets, which tshark decrypts itself) and every gQUIC CHLO with its flow and SNI; the
scanner's records must carry exactly the same names on exactly the same flows: the set of
(proto, client, client port, server, server port, SNI) is equal, nothing missing, nothing extra.

The scanner reports one record per flow with the SNI of the flow's first ClientHello, so tshark's
side keeps the first ClientHello of each of its conversations (tcp.stream / udp.stream): a second
ClientHello after a HelloRetryRequest, a QUIC Retry or a Version Negotiation is not compared.
A ClientHello without server_name contributes nothing (the record's sni is null then, like a flow
with no ClientHello at all).

tshark decoding is made independent of names and ports: ``-n`` (no name resolution), out-of-order
TCP segments reassembled, and ``-d tcp.port==P,tls`` for every TCP port where a segment starts
with a TLS handshake record carrying a ClientHello that tshark did not decode as TLS (e.g. TLS on
8080, which tshark takes for HTTP). QUIC and gQUIC are found by tshark's UDP heuristics on any port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
from conftest import REAL, ROOT, need_shared, run_cli

PCAPS = ROOT / "pcaps"
QUIC_VERSION_NAMES = {0x00000001: "1", 0x6B3343CF: "2", 0xFF00001D: "draft-29"}

FIELDS = [
    "frame.number",
    "frame.protocols",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "udp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "udp.dstport",
    "tcp.stream",
    "udp.stream",
    "tls.handshake.type",
    "tls.handshake.extensions_server_name",
    "gquic.tag.sni",
    "quic.version",
]

BASE_OPTIONS = [
    "-n",
    "-o",
    "tcp.reassemble_out_of_order:TRUE",
    "-o",
    "tcp.desegment_tcp_streams:TRUE",
    "-o",
    "tls.desegment_ssl_records:TRUE",
]


def need_tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is not installed, and CI must run the oracle")
        pytest.skip("tshark is not installed")
    return path


def own_captures() -> list[str]:
    return [
        "demo.pcap",
        "preludes.pcap",
        "tfo.pcap",
        *sorted(p.name for p in PCAPS.glob("quic*.pcap")),
        *tunnel_captures(),
    ]


def tunnel_captures() -> list[str]:
    """Captures made through tunnels and on other link types by pcaps/build_tunnels.py."""
    return sorted(p.name for pattern in ("tunnel-*.pcap", "linktype-*.pcap") for p in PCAPS.glob(pattern))


def real_captures() -> list[str]:
    if not REAL.exists():
        return ["<absent>"]
    return sorted(p.name for p in REAL.iterdir() if p.suffix in (".pcap", ".pcapng"))


def capture_path(name: str) -> Path:
    if name.startswith("real/"):
        return need_shared(REAL / name.removeprefix("real/"))
    return PCAPS / name


def tshark(path: Path, *args: str) -> str:
    proc = subprocess.run(
        [need_tshark(), *BASE_OPTIONS, "-r", str(path), *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"tshark {path.name}: {proc.stderr}"
    return proc.stdout


def tls_ports_tshark_missed(path: Path) -> list[int]:
    """TCP server ports where a segment starts a TLS ClientHello record that tshark left undecoded."""
    out = tshark(
        path,
        "-Y",
        "tcp.len > 5 && tcp.payload[0:2] == 16:03 && tcp.payload[5] == 01 && !tls "
        "&& !tcp.analysis.retransmission && !tcp.analysis.out_of_order "
        "&& !tcp.analysis.spurious_retransmission",
        "-T",
        "fields",
        "-e",
        "tcp.dstport",
    )
    return sorted({int(p) for p in out.split()})


def first(value: str) -> str:
    return value.split(",")[0] if value else ""


def last(value: str) -> str:
    return value.split(",")[-1] if value else ""


@cache
def tshark_hellos(name: str) -> dict[tuple, dict]:
    """(proto, stream) -> the first ClientHello tshark decodes in it: flow key, SNI, QUIC version."""
    path = capture_path(name)
    decode_as = [arg for port in tls_ports_tshark_missed(path) for arg in ("-d", f"tcp.port=={port},tls")]
    out = tshark(
        path,
        *decode_as,
        "-Y",
        "tls.handshake.type == 1 || gquic.tag.sni",
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        *[arg for f in FIELDS for arg in ("-e", f)],
    )
    hellos: dict[tuple, dict] = {}
    for line in out.splitlines():
        row = dict(zip(FIELDS, line.split("\t"), strict=True))
        types = row["tls.handshake.type"].split(",")
        tcp = bool(row["tcp.srcport"])
        proto = "tcp" if tcp else "udp"
        # the innermost conversation: through GTP-U every flow shares the outer UDP stream
        stream = (proto, int(last(row["tcp.stream" if tcp else "udp.stream"])))
        if stream in hellos:
            continue  # not the conversation's first ClientHello
        # one frame can hold several handshake messages (and QUIC packets): the first ClientHello's SNI
        snis = row["tls.handshake.extensions_server_name"].split(",") if "1" in types else []
        sni = (snis[0] if snis else "") or first(row["gquic.tag.sni"])
        # the innermost IP header carries the transport (6in4, IP-in-IP: the last one in the frame)
        family = [p for p in row["frame.protocols"].split(":") if p in ("ip", "ipv6")][-1]
        src, dst = last(row[f"{family}.src"]), last(row[f"{family}.dst"])
        sport = int(last(row["tcp.srcport" if tcp else "udp.srcport"]))
        dport = int(last(row["tcp.dstport" if tcp else "udp.dstport"]))
        version = first(row["quic.version"])
        hellos[stream] = {
            "key": (proto, src, sport, dst, dport),
            "sni": sni or None,
            "frame": int(first(row["frame.number"])),
            "quic_version": int(version, 0) if version else None,
            "gquic": bool(row["gquic.tag.sni"]),
        }
    return hellos


@cache
def project_records(name: str) -> list[dict]:
    proc = run_cli("scan", str(capture_path(name)), "-q", check_status=None)
    assert proc.returncode in (0, 3), (name, proc.returncode, proc.stderr.decode(errors="replace"))
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def describe(items: set[tuple], hellos: dict | None = None) -> str:
    frames = {}
    for h in (hellos or {}).values():
        frames.setdefault((*h["key"], h["sni"]), h["frame"])
    lines = []
    for proto, src, sport, dst, dport, sni in sorted(items, key=str):
        where = (
            f" (tshark frame {frames[(proto, src, sport, dst, dport, sni)]})"
            if (proto, src, sport, dst, dport, sni) in frames
            else ""
        )
        lines.append(f"  {proto} {src}:{sport} -> {dst}:{dport} {sni}{where}")
    return "\n".join(lines)


def compare(name: str) -> None:
    hellos = tshark_hellos(name)
    oracle = {(*h["key"], h["sni"]) for h in hellos.values() if h["sni"]}
    ours = {
        (r["proto"], r["src"], r["sport"], r["dst"], r["dport"], r["sni"])
        for r in project_records(name)
        if r["sni"]
    }
    missing, extra = oracle - ours, ours - oracle
    assert not missing and not extra, (
        f"{name}: tshark {len(oracle)} named ClientHellos, project {len(ours)}\n"
        f"seen by tshark, not by the project:\n{describe(missing, hellos) or '  none'}\n"
        f"reported by the project, not by tshark:\n{describe(extra) or '  none'}"
    )


@pytest.mark.parametrize("name", own_captures())
def test_own_captures_match_tshark(name):
    compare(name)


@pytest.mark.real
@pytest.mark.parametrize("capture", real_captures())
def test_real_captures_match_tshark(capture):
    need_shared(REAL)
    compare(f"real/{capture}")


@pytest.mark.parametrize("name", [n for n in own_captures() if n.startswith("quic")])
def test_quic_versions_match_tshark(name):
    """The record's quic_version is the version of the Initial that carried the first ClientHello."""
    by_key = {}
    for h in tshark_hellos(name).values():
        if h["sni"] and h["quic_version"] is not None:
            by_key[(*h["key"], h["sni"])] = QUIC_VERSION_NAMES.get(h["quic_version"], hex(h["quic_version"]))
    assert by_key, f"{name}: tshark decoded no QUIC ClientHello"
    got = {}
    for r in project_records(name):
        key = (r["proto"], r["src"], r["sport"], r["dst"], r["dport"], r["sni"])
        if key in by_key:
            assert "quic_version" in r, f"{name}: records have no quic_version field"
            got[key] = r["quic_version"]
    wrong = {k: (got.get(k), v) for k, v in by_key.items() if got.get(k) != v}
    assert not wrong, f"{name}: (project, tshark) quic_version differ: {wrong}"


def test_quic_expectations_agree_with_tshark():
    """pcaps/expected/quic.json and the QUIC captures say the same (the oracle checks the builder)."""
    expected = json.loads((PCAPS / "expected" / "quic.json").read_text())
    want = {
        (
            e["capture"],
            e["proto"],
            e["src"],
            e["sport"],
            e["dst"],
            e["dport"],
            e["hostname"],
            e["quic_version"],
        )
        for e in expected
    }
    seen = set()
    for name in {e["capture"] for e in expected}:
        for h in tshark_hellos(name).values():
            version = QUIC_VERSION_NAMES.get(h["quic_version"], str(h["quic_version"]))
            seen.add((name, *h["key"], h["sni"], version))
    assert seen == want
