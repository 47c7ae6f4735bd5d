"""One packet with an impossible timestamp never stops a scan.

The captures are the demo capture rewritten with one packet's timestamp out of range (pcapng
ticks past year 9999, a negative if_tsoffset, a pcap fraction of a second not below one second).
The scan must end normally, write the record of every flow (the damaged packet's flow too, from
its other packets), and count the packet as malformed by reason, naming file and packet number.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from classifier.capture import open_capture
from classifier.errors import MalformedError
from classifier.timeutil import MAX_INSTANT, format_instant

DEMO = ROOT / "pcaps" / "demo.pcap"


def demo_packets() -> list[tuple[float, int, bytes]]:
    with open_capture(str(DEMO)) as reader:
        return [(ts, linktype, frame) for ts, linktype, frame, _ in reader]


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def pcapng(
    packets: list[tuple[int, int, bytes]], tsresol: int = 6, tsoffset: int = 0, obsolete_pb: bool = False
) -> bytes:
    """One section, one Ethernet interface; packets are (interface ticks, linktype, frame)."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    opts = struct.pack("<HH", 9, 1) + bytes([tsresol]) + b"\0\0\0"
    if tsoffset:
        opts += struct.pack("<HHq", 14, 8, tsoffset)
    out.append(_block(1, struct.pack("<HHI", 1, 0, 0) + opts + struct.pack("<HH", 0, 0)))
    for ticks, _linktype, frame in packets:
        if obsolete_pb:  # the obsolete Packet Block goes through the reader's general path
            head = struct.pack("<HHIIII", 0, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
            out.append(_block(2, head + frame))
        else:
            head = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
            out.append(_block(6, head + frame))
    return b"".join(out)


def pcap(packets: list[tuple[int, int, bytes]]) -> bytes:
    """Microsecond pcap; packets are (seconds, fraction, frame)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    out += [struct.pack("<IIII", sec, frac, len(f), len(f)) + f for sec, frac, f in packets]
    return b"".join(out)


def micro_ticks(packets: list[tuple[float, int, bytes]]) -> list[tuple[int, int, bytes]]:
    return [(round(ts * 1_000_000), lt, f) for ts, lt, f in packets]


def scan(tmp_path: Path, data: bytes, name: str, *extra: str) -> tuple[int, list[dict], dict, str]:
    capture = tmp_path / name
    capture.write_bytes(data)
    stats = tmp_path / f"{name}.stats.json"
    proc = run_cli("scan", str(capture), "--stats", str(stats), *extra, check_status=None)
    records = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    return proc.returncode, records, json.loads(stats.read_text()), proc.stderr.decode()


def flows(records: list[dict]) -> dict[tuple, dict]:
    return {(r["src"], r["sport"], r["dst"], r["dport"], r["proto"]): r for r in records}


@pytest.fixture(scope="module")
def packets() -> list[tuple[float, int, bytes]]:
    return demo_packets()


@pytest.fixture(scope="module")
def reference(packets, tmp_path_factory) -> dict[tuple, dict]:
    """The records of the demo packets as an undamaged pcapng."""
    code, records, stats, _ = scan(
        tmp_path_factory.mktemp("ref"), pcapng(micro_ticks(packets)), "ref.pcapng", "-q"
    )
    assert code == 0 and stats["malformed"] == {}
    return flows(records)


def assert_one_packet_lost(records: list[dict], reference: dict[tuple, dict]) -> None:
    """Every flow of the reference is there; only the damaged packet's flow lost one packet."""
    got = flows(records)
    assert set(got) == set(reference)
    counts = {k: r["packets_c2s"] + r["packets_s2c"] for k, r in got.items()}
    want = {k: r["packets_c2s"] + r["packets_s2c"] for k, r in reference.items()}
    changed = [k for k in want if counts[k] != want[k]]
    assert len(changed) == 1 and counts[changed[0]] == want[changed[0]] - 1, changed


@pytest.mark.parametrize("obsolete_pb", [False, True], ids=["epb", "packet-block"])
def test_pcapng_timestamp_past_year_9999_is_one_malformed_packet(tmp_path, packets, reference, obsolete_pb):
    ticks = micro_ticks(packets)
    victim = 40  # a packet in the middle of a TLS flow
    ticks[victim] = ((1 << 64) - 1, *ticks[victim][1:])  # 1.8e13 s: year 586,912
    code, records, stats, stderr = scan(tmp_path, pcapng(ticks, obsolete_pb=obsolete_pb), "late.pcapng")
    assert code == 0, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert stats["malformed"] == {"pcapng.timestamp": 1}
    assert stats["packets"] == len(packets)  # the dropped packet is still a packet of the input
    assert_one_packet_lost(records, reference)
    assert f"late.pcapng: packet {victim + 1}: pcapng: timestamp: " in stderr  # file and packet number
    assert all(r["first_ts"] <= r["last_ts"] < "9999" for r in records)


def test_pcapng_negative_time_and_every_packet_out_of_range(tmp_path, packets):
    # if_tsoffset moves every packet of the interface before 1970: nothing to record, all counted
    ticks = micro_ticks(packets)
    code, records, stats, stderr = scan(tmp_path, pcapng(ticks, tsoffset=-(1 << 40)), "early.pcapng")
    assert code == 0, stderr
    assert records == []
    assert stats["malformed"] == {"pcapng.timestamp": len(packets)} and stats["packets"] == len(packets)


def test_pcapng_seconds_resolution_past_9999(tmp_path, packets, reference):
    # if_tsresol 0: ticks are seconds, so a plausible-looking 64-bit count is far in the future
    ticks = [(round(ts), lt, f) for ts, lt, f in packets]
    victim = 3
    ticks[victim] = (1 << 40, *ticks[victim][1:])
    code, records, stats, stderr = scan(tmp_path, pcapng(ticks, tsresol=0), "sec.pcapng", "-q")
    assert code == 0, stderr
    assert stats["malformed"] == {"pcapng.timestamp": 1}
    assert set(flows(records)) == set(reference)


def test_pcap_fraction_not_below_one_second(tmp_path, packets, reference):
    rows = [(int(ts), round((ts - int(ts)) * 1_000_000), f) for ts, _lt, f in packets]
    victim = 100
    rows[victim] = (rows[victim][0], 4_000_000_000, rows[victim][2])
    code, records, stats, stderr = scan(tmp_path, pcap(rows), "frac.pcap", "-q")
    assert code == 0, stderr
    assert stats["malformed"] == {"pcap.timestamp": 1}
    assert_one_packet_lost(records, reference)


def test_reader_counts_and_reports_in_packet_order(tmp_path, packets):
    ticks = micro_ticks(packets)[:6]
    ticks[1] = ((1 << 64) - 1, *ticks[1][1:])
    ticks[4] = ((1 << 63), *ticks[4][1:])
    path = tmp_path / "r.pcapng"
    path.write_bytes(pcapng(ticks))
    seen: list[tuple[int, MalformedError]] = []
    with open_capture(str(path)) as reader:
        got = []
        reader.on_malformed = lambda err: seen.append((len(got), err))
        got.extend(reader)
    assert len(got) == 4 and reader.records == 4 and reader.problems == []
    assert [n for n, _ in seen] == [1, 3]  # told between the packets around each dropped one
    assert reader.malformed == {"pcapng.timestamp": 2}
    assert all(err.reason == "pcapng.timestamp" for _, err in seen)


def test_every_timestamp_a_reader_yields_formats():
    # the reader's bounds are the formatter's: the extremes it lets through format
    assert format_instant(0.0, True) == "1970-01-01T00:00:00.000000Z"
    assert format_instant(MAX_INSTANT, True) == "9999-12-31T23:59:59.000000Z"
    assert format_instant(MAX_INSTANT - 1e-7, True).startswith("9999-12-31T23:59:5")
