"""``Scanner.feed_batches`` (packets of flows no longer inspected counted in place) gives exactly
what ``feed`` gives packet by packet: the same records and the same statistics, on the real
captures and on the packets where the two paths part (FIN, RST, port reuse, DNS flows inspected
after their decision, tunnel ports, IPv4 options, fragments, dropped timestamps)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conftest import REAL, ROOT, need_shared
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.l2 import Ether
from test_scanner import client_hello

from classifier.capture import open_capture
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import flow_record
from classifier.report import InputStats


def _scan(sigs, policy, path: Path, batches: bool) -> tuple[list[dict], dict, int, int]:
    """(records, statistics, packets, packets that went through ``feed``) of one capture."""
    records: list[dict] = []
    scanner = Scanner(sigs, policy, ScanOptions(), lambda flow: records.append(flow_record(flow)))
    through_feed = 0
    feed = scanner.feed

    def counting(*packet):
        nonlocal through_feed
        through_feed += 1
        return feed(*packet)

    scanner.feed = counting  # type: ignore[method-assign]
    with open_capture(str(path)) as reader:
        scanner.start_input(path.name, reader.interfaces)
        reader.on_malformed = scanner.malformed_packet
        if batches:
            scanner.feed_batches(reader.batches())
        else:
            for packet in reader:
                scanner.feed(*packet)
    scanner.finish()
    stats = InputStats()
    scanner.fill_stats(stats)
    everything = {**stats.as_dict(), "examples": stats.malformed_examples, "binding": stats.dns_binding}
    return records, everything, scanner.packets, through_feed


def _same(sigs, policy, path: Path) -> tuple[int, int]:
    """Assert both paths agree on ``path``; (packets, packets the batch path sent to ``feed``)."""
    want_records, want_stats, packets, _ = _scan(sigs, policy, path, batches=False)
    got_records, got_stats, got_packets, through_feed = _scan(sigs, policy, path, batches=True)
    assert got_packets == packets
    assert got_stats == want_stats
    assert len(got_records) == len(want_records)
    for got, want in zip(got_records, want_records, strict=True):
        assert got == want
    return packets, through_feed


def _captures() -> list[Path]:
    own = sorted(p for p in (ROOT / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
    real = sorted(p for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))
    return own + real


def test_batches_give_the_records_and_stats_of_feed_on_every_capture(sigs, policy):
    total = counted_in_place = 0
    for path in _captures():
        packets, through_feed = _same(sigs, policy, path)
        total += packets
        counted_in_place += packets - through_feed
    # The comparison means something only if the in-place path took most packets.
    assert counted_in_place > total // 2, (counted_in_place, total)


T0 = 1_740_000_000.0  # 2025-02-19
C, S = "198.51.100.7", "203.0.113.9"


def _pcap(path: Path, packets: list, stamps: list[tuple[int, int]] | None = None) -> Path:
    """A microsecond pcap of Ethernet frames; ``stamps`` overrides (seconds, fraction) per packet."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, pkt in enumerate(packets):
        if isinstance(pkt, tuple):  # (seconds after T0, packet)
            sec, pkt = int(T0) + pkt[0], pkt[1]
            frac = 0
        else:
            sec, frac = stamps[i] if stamps else (int(T0) + i, 0)
        frame = (
            pkt
            if isinstance(pkt, bytes)
            else bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt)
        )
        out.append(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def _tcp(src, dst, sport, dport, flags, seq, ack=0, data=b"", **ip):
    return IP(src=src, dst=dst, **ip) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / data


def _conversation() -> list:
    """A decided TLS flow that goes on, closes and is reused; a DNS flow inspected after its
    decision; UDP to a tunnel port; IPv4 options and fragments on a decided flow."""
    hello = client_hello("www.example.com")
    pkts = [
        _tcp(C, S, 40000, 443, "S", 1000),
        _tcp(S, C, 443, 40000, "SA", 5000, 1001),
        _tcp(C, S, 40000, 443, "A", 1001, 5001),
        _tcp(C, S, 40000, 443, "PA", 1001, 5001, hello),
    ]
    pkts += [_tcp(S, C, 443, 40000, "A", 5001 + 100 * i, 1001 + len(hello), b"x" * 100) for i in range(6)]
    pkts += [_tcp(C, S, 40000, 443, "A", 1001 + len(hello), 5601, options=[IPOption_RR()])]
    pkts += [_tcp(C, S, 40000, 443, "FA", 1001 + len(hello), 5601)]
    pkts += [_tcp(S, C, 443, 40000, "A", 5601, 1002 + len(hello), b"late")]  # after the client's FIN
    pkts += [_tcp(S, C, 443, 40000, "FA", 5605, 1002 + len(hello))]
    pkts += [_tcp(C, S, 40000, 443, "S", 9000)]  # port reuse: a new connection
    pkts += [_tcp(S, C, 443, 40000, "SA", 7000, 9001), _tcp(C, S, 40000, 443, "R", 9001)]
    query = DNS(id=7, rd=1, qd=DNSQR(qname="www.example.com"))
    answer = DNS(id=7, qr=1, qd=DNSQR(qname="www.example.com"), an=DNSRR(rrname="www.example.com", rdata=S))
    pkts += [IP(src=C, dst="192.0.2.53") / UDP(sport=5353 + 1, dport=53) / query]
    pkts += [IP(src="192.0.2.53", dst=C) / UDP(sport=53, dport=5354) / answer]
    pkts += [IP(src=C, dst="192.0.2.53") / UDP(sport=5354, dport=53) / query]
    pkts += [IP(src=C, dst=S) / UDP(sport=40001, dport=4789) / (b"\x08" + b"\x00" * 7 + b"junk")]
    pkts += [IP(src=C, dst=S) / UDP(sport=40002, dport=9999) / b"first"]
    pkts += [IP(src=C, dst=S) / UDP(sport=40002, dport=9999) / b"second"]
    pkts += fragment(IP(src=C, dst=S) / UDP(sport=40002, dport=9999) / (b"y" * 1400), fragsize=600)
    pkts += [IP(src=S, dst=C) / UDP(sport=9999, dport=40002) / b"reply"]
    return pkts


def test_batches_match_feed_where_the_paths_part(sigs, policy, tmp_path):
    packets, through_feed = _same(sigs, policy, _pcap(tmp_path / "parts.pcap", _conversation()))
    assert 0 < through_feed < packets  # both paths were taken


def _with_option(frame: bytes, option: bytes) -> bytes:
    """An Ethernet/IPv4 frame with 4 option bytes inserted after its 20-byte IP header."""
    ip = bytearray(frame[14:34])
    ip[0] = 0x46
    ip[2:4] = struct.pack("!H", struct.unpack("!H", ip[2:4])[0] + 4)
    ip[10:12] = b"\0\0"
    return frame[:14] + bytes(ip) + option + frame[34:]


def test_batches_match_feed_on_lookalikes_and_timeouts(sigs, policy, tmp_path):
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    decided = [(0, _tcp(C, S, 40000, 443, "S", 1000)), (0, _tcp(S, C, 443, 40000, "SA", 5000, 1001))]
    decided.append((0, _tcp(C, S, 40000, 443, "PA", 1001, 5001, client_hello("www.example.com"))))
    # (its ack puts 0x50, a data offset of 20, where the in-place read expects the TCP data offset)
    other = bytes(ether / _tcp(C, S, 41000, 8443, "A", 1, 0x50000000, b"z"))
    pkts = [
        *decided,
        # IPv4 options whose bytes read as the decided flow's ports: another flow all the same
        (1, _with_option(other, struct.pack("!HH", 40000, 443))),
        # from a tunnel port: an ordinary flow; back to that port: a tunnel packet, not the flow's
        (1, IP(src=S, dst=C) / UDP(sport=4789, dport=50000) / b"a"),
        (1, IP(src=S, dst=C) / UDP(sport=4789, dport=50000) / b"b"),
        (2, IP(src=C, dst=S) / UDP(sport=50000, dport=4789) / (b"\x08" + b"\x00" * 7 + b"junk")),
        # only in-place packets while another flow times out: it must end then, not later
        (3, IP(src=C, dst=S) / UDP(sport=40010, dport=9999) / b"one"),
        (4, IP(src=C, dst=S) / UDP(sport=40010, dport=9999) / b"two"),
        (5, IP(src=C, dst=S) / UDP(sport=40011, dport=9998) / b"one"),
        (6, IP(src=C, dst=S) / UDP(sport=40011, dport=9998) / b"two"),
        (70, IP(src=C, dst=S) / UDP(sport=40011, dport=9998) / b"three"),
        (71, IP(src=C, dst=S) / UDP(sport=40010, dport=9999) / b"back"),
    ]
    packets, through_feed = _same(sigs, policy, _pcap(tmp_path / "lookalikes.pcap", pkts))
    assert 0 < through_feed < packets


def test_dropped_timestamps_keep_their_packet_numbers(sigs, policy, tmp_path):
    pkts = _conversation()
    stamps = [(int(T0) + i, 0) for i in range(len(pkts))]
    for victim in (5, 6, 12):  # among packets the in-place path would take
        stamps[victim] = (int(T0) + victim, 4_000_000)  # a fraction of a second above one second
    path = _pcap(tmp_path / "frac.pcap", pkts, stamps)
    _same(sigs, policy, path)
    _, stats, _, _ = _scan(sigs, policy, path, batches=True)
    assert stats["malformed"]["pcap.timestamp"] == 3
    assert [e.split(": ")[1] for e in stats["examples"]["pcap.timestamp"]] == [
        "packet 6",
        "packet 7",
        "packet 13",
    ]


@pytest.mark.parametrize("cut", [1, 7, 20])
def test_a_cut_capture_delivers_every_whole_record(sigs, policy, tmp_path, cut):
    whole = _pcap(tmp_path / "whole.pcap", _conversation()).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[:-cut])
    with open_capture(str(path)) as reader:
        frames = [frame for _, _, frame, _ in reader]
    with open_capture(str(path)) as reader:
        batched = [buf[start:end] for buf, records, _ in reader.batches() for _, _, start, end, _ in records]
        assert len(reader.problems) == 1
    assert batched == frames and len(frames) == len(_conversation()) - 1
    _same(sigs, policy, path)


def test_a_wrapper_sees_every_packet_as_the_reader_yields_it(sigs, policy, tmp_path):
    pkts = _conversation()
    stamps = [(int(T0) + i, 0) for i in range(len(pkts))]
    stamps[3] = (int(T0) + 3, 2_000_000)  # dropped by the reader: counted by the scanner, not passed on
    path = _pcap(tmp_path / "each.pcap", pkts, stamps)
    with open_capture(str(path)) as reader:
        want = list(reader)
    seen: list[tuple] = []
    scanner = Scanner(sigs, policy, ScanOptions(), lambda flow: None)
    with open_capture(str(path)) as reader:
        scanner.start_input(path.name, reader.interfaces)
        scanner.feed_batches(reader.batches(), lambda *packet: seen.append(packet))
    assert seen == want and len(seen) == len(pkts) - 1
    assert scanner.malformed == {"pcap.timestamp": 1} and scanner.packets == 1
