"""The record fields that join other tools' logs: file as given, first_packet, duration, vlan,
community_id (checked against the reference implementation on every flow of every real capture)
and a CSV that keeps every field."""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
from datetime import datetime
from pathlib import Path

import communityid
import dpkt
from conftest import REAL, ROOT, need_shared, run_cli, scan_records
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.utils import wrpcap

from classifier.record import _TLS_VERSIONS as TLS_VERSIONS
from classifier.record import tls_version_names
from classifier.timeutil import format_instant, parse_instant

DEMO = ROOT / "pcaps" / "demo.pcap"
PROTOS = {"tcp": 6, "udp": 17}


def _packed(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def _reference(record: dict, seed: int = 0) -> str:
    tpl = communityid.FlowTuple(
        PROTOS[record["proto"]],
        _packed(record["src"]),
        _packed(record["dst"]),
        record["sport"],
        record["dport"],
    )
    return communityid.CommunityID(seed).calc(tpl)


def _ntop(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _real_captures() -> list[str]:
    return sorted(str(p) for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))


def test_file_is_the_path_as_given(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copyfile(DEMO, a / "x.pcap")
    shutil.copyfile(DEMO, b / "x.pcap")
    records = scan_records(str(a / "x.pcap"), str(b / "x.pcap"))
    by_file = {str(a / "x.pcap"): 0, str(b / "x.pcap"): 0}
    for r in records:
        by_file[r["file"]] += 1
    assert by_file == {str(a / "x.pcap"): 34, str(b / "x.pcap"): 34}


def test_first_packet_is_the_frame_number_of_the_flows_first_packet() -> None:
    with open(DEMO, "rb") as f:
        frames = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    records = scan_records(str(DEMO))
    assert len({r["first_packet"] for r in records}) == len(records) == 34
    for r in records:
        ts, frame = frames[r["first_packet"] - 1]  # Wireshark's frame.number counts from 1
        ip = dpkt.ethernet.Ethernet(frame).data
        ends = {
            (_ntop(ip.src), ip.data.sport),
            (_ntop(ip.dst), ip.data.dport),
        }
        assert ends == {(r["src"], r["sport"]), (r["dst"], r["dport"])}
        assert abs(ts - _instant(r["first_ts"])) < 1e-6
        # no earlier packet belongs to the flow
        for _ts, earlier in frames[: r["first_packet"] - 1]:
            e = dpkt.ethernet.Ethernet(earlier).data
            pair = {
                (_ntop(e.src), e.data.sport),
                (_ntop(e.dst), e.data.dport),
            }
            assert pair != ends or r["end_reason"] == "closed"
        assert r["duration"] == round(_instant(r["last_ts"]) - _instant(r["first_ts"]), 6)


def test_first_packet_counts_per_file_with_several_inputs(tmp_path: Path) -> None:
    with open(DEMO, "rb") as f:
        packets = list(dpkt.pcap.Reader(f))
    second = tmp_path / "second.pcap"
    with open(second, "wb") as f:
        w = dpkt.pcap.Writer(f)
        for ts, buf in packets[100:]:
            w.writepkt(buf, ts)
    alone = {(r["src"], r["sport"]): r["first_packet"] for r in scan_records(str(DEMO))}
    for continuous in ((), ("--continuous",)):
        records = [r for r in scan_records(*continuous, str(DEMO), str(second)) if r["file"] == str(second)]
        assert records
        for r in records:  # numbered from 1 in the second file: the packet's own index there + 1
            assert 1 <= r["first_packet"] <= len(packets) - 100
            key = (r["src"], r["sport"])
            if key in alone and alone[key] > 100:
                assert r["first_packet"] == alone[key] - 100


def test_vlan_ids_of_the_first_packet_outermost_first(tmp_path: Path) -> None:
    hello = IP(src="198.51.100.7", dst="203.0.113.9") / TCP(sport=40000, dport=80, flags="S")
    path = tmp_path / "vlan.pcap"
    wrpcap(
        str(path),
        [
            Ether() / Dot1AD(vlan=300) / Dot1Q(vlan=42) / hello,
            Ether()
            / Dot1Q(vlan=7)
            / (IP(src="198.51.100.7", dst="203.0.113.9") / TCP(sport=40001, dport=80)),
            Ether() / (IP(src="198.51.100.7", dst="203.0.113.9") / TCP(sport=40002, dport=80)),
        ],
    )
    records = {r["sport"]: r for r in scan_records(str(path))}
    assert records[40000]["vlan"] == [300, 42]
    assert records[40001]["vlan"] == [7]
    assert records[40002]["vlan"] is None


def test_instants_and_duration_as_format_instant_writes_them(tmp_path: Path) -> None:
    """first_ts, last_ts and duration are written from the packets' times and decided_at from the
    decision's instant exactly as format_instant and round write them (the record takes shortcuts:
    one packet, a decision at the first packet, whole seconds)."""
    times = {40000: [1600000000.0], 40001: [1600000000.5, 1600000001.25], 40002: [1600000002.0, 1600000002.0]}
    times[40003] = [1600000003.0, 1600000003.000001]
    packets = []
    for sport, stamps in times.items():
        for ts in stamps:
            packet = Ether() / IP(src="198.51.100.7", dst="203.0.113.9") / TCP(sport=sport, dport=80)
            packet.time = ts
            packets.append(packet)
    path = tmp_path / "times.pcap"
    wrpcap(str(path), packets)
    for extra in ((), ("--as-of", "2020-09-21T04:00:00Z"), ("--as-of", "2020-09-21T04:00:00.5Z")):
        records = {r["sport"]: r for r in scan_records(*extra, str(path))}
        assert set(records) == set(times)
        for sport, stamps in times.items():
            r, first, last = records[sport], stamps[0], stamps[-1]
            assert r["first_ts"] == format_instant(first, True)
            assert r["last_ts"] == format_instant(last, True)
            assert r["duration"] == round(last - first, 6)
            assert type(r["duration"]) is float
            when = parse_instant(extra[1]) if extra else first
            assert r["decided_at"] == format_instant(when)
    assert records[40000]["first_ts"] == "2020-09-13T12:26:40.000000Z"
    assert records[40000]["decided_at"] == "2020-09-21T04:00:00.500000Z"


def test_community_id_matches_the_reference_on_every_real_flow() -> None:
    records = scan_records(*_real_captures(), str(DEMO))
    assert len(records) > 100
    assert all(r["community_id"] == _reference(r) for r in records)


def test_community_id_seed(tmp_path: Path) -> None:
    default = scan_records(str(DEMO))
    seeded = scan_records("--community-id-seed", "4242", str(DEMO))
    assert all(r["community_id"] == _reference(r, 4242) for r in seeded)
    assert all(a["community_id"] != b["community_id"] for a, b in zip(default, seeded, strict=True))
    proc = run_cli("scan", "--community-id-seed", "65536", str(DEMO), check_status=2)
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert "--community-id-seed" in last and "0..65535" in last


def test_csv_keeps_every_field_losslessly() -> None:
    captures = [*_real_captures(), str(ROOT / "pcaps" / "malformed.pcap")]
    records = scan_records(*captures, check_status=None)
    text = run_cli("scan", *captures, "--format", "csv", "-q", check_status=None).stdout.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(records)
    assert set(rows[0]) == set(records[0])  # every field has its column
    noted = signed = 0
    for rec, row in zip(records, rows, strict=True):
        for key in ("evidence", "notes"):
            assert (json.loads(row[key]) if row[key] else []) == rec[key]
        noted += bool(rec["notes"])
        signed += any("signature" in e and "source" in e for e in json.loads(row["evidence"] or "[]"))
    assert signed, "no evidence with signature and source: the test would not show they reach CSV"
    assert noted, "no record with notes: the test would not show they reach CSV"


def test_tls_version_names_as_written_before_they_were_remembered() -> None:
    """tls_versions names each offered version (unknown ones in hex), a fresh list per record."""
    for versions in [(0x0304, 0x0303), (0x0303,), (0x7F1C, 0x0304, 0x0300, 0x0301, 0x0302), ()]:
        expected = [TLS_VERSIONS.get(v, f"0x{v:04x}") for v in versions]
        first, again = tls_version_names(versions), tls_version_names(versions)
        assert first == again == expected
        assert first is not again
    assert tls_version_names((0x7F1C,)) == ["0x7f1c"]
