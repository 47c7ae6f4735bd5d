"""The in-place counting of ``Scanner.feed_batches`` beyond untagged Ethernet and IPv4: IPv6, VLAN
tags, Linux cooked (SLL, SLL2) and raw IP. Packets of decided flows on those are counted without
``feed`` where ``decode`` would read them in one piece, and go to ``feed`` where it would not
(extension headers, fragments, a third tag, cut or broken headers); either way the records and
statistics are those of ``feed``, on the pure-Python loop and on the compiled one; the two
``_in_place`` twins read every frame alike, and the compiled ``decode`` gives what decode.py gives."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from conftest import REAL, ROOT, need_extension, need_shared
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from test_scanner import client_hello

from classifier import capture, pipeline
from classifier.capture import open_capture
from classifier.compiled import compiled_function
from classifier.decode import decode
from classifier.errors import MalformedError
from classifier.pipeline import Scanner, ScanOptions, _in_place
from classifier.record import flow_record
from classifier.report import InputStats

T0 = 1_740_000_000
C4, S4 = "198.51.100.7", "203.0.113.9"
C6, S6 = "2001:db8::7", "2001:db8:1::9"
ETHER = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

# link name -> (pcap linktype, what goes before the IP packet)
LINKS = {
    "ethernet": (1, lambda ip: Ether(**ETHER) / ip),
    "vlan": (1, lambda ip: Ether(**ETHER) / Dot1Q(vlan=10) / ip),
    "qinq": (1, lambda ip: Ether(**ETHER) / Dot1AD(vlan=20) / Dot1Q(vlan=10) / ip),
    "three-tags": (1, lambda ip: Ether(**ETHER) / Dot1AD(vlan=30) / Dot1Q(vlan=20) / Dot1Q(vlan=10) / ip),
    "sll": (113, lambda ip: CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6) / ip),
    "sll2": (276, lambda ip: CookedLinuxV2(pkttype=0, lladdrtype=1, lladdrlen=6) / ip),
    "raw": (101, lambda ip: ip),
}


def _compiled_feed():
    need_extension("_batchcount")  # CI fails without it
    found = compiled_function("_batchcount", "feed_batches", "decode")
    return found or pytest.skip("CLASSIFIER_PURE_PYTHON refuses the compiled loop")


def _ip(version: int, src: str, dst: str, **kw):
    if version == 4:
        return IP(src=src, dst=dst, **kw)
    return IPv6(src=src, dst=dst)


def _conversation(version: int) -> list:
    """(seconds, IP packet): a decided TLS flow going on both ways (one timestamp going back),
    closed and reused; UDP flows, one on equal ports, one to a tunnel port; a flow that times out
    while only in-place packets come; on IPv6 extension headers and fragments on the decided flow."""
    c, s = (C4, S4) if version == 4 else (C6, S6)

    def tcp(src, dst, sport, dport, flags, seq, ack=0, data=b""):
        return _ip(version, src, dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / data

    hello = client_hello("www.example.com")
    at = 0.0
    pkts: list = []

    def add(pkt, step=0.25):
        nonlocal at
        at += step
        pkts.append((at, pkt))

    add(tcp(c, s, 40000, 443, "S", 1000))
    add(tcp(s, c, 443, 40000, "SA", 5000, 1001))
    add(tcp(c, s, 40000, 443, "PA", 1001, 5001, hello))
    for i in range(8):
        add(tcp(s, c, 443, 40000, "A", 5001 + 100 * i, 1001 + len(hello), b"x" * 100))
        add(tcp(c, s, 40000, 443, "A", 1001 + len(hello), 5101 + 100 * i), step=-0.1 if i == 3 else 0.25)
    if version == 6:
        inner = TCP(sport=40000, dport=443, flags="A", seq=1001 + len(hello)) / (b"y" * 900)
        add(IPv6(src=c, dst=s) / IPv6ExtHdrHopByHop() / inner)
        for piece in fragment6(IPv6(src=c, dst=s) / IPv6ExtHdrFragment(id=7) / inner, 600):
            add(piece)
    add(tcp(c, s, 40000, 443, "FA", 1001 + len(hello), 5801))
    add(tcp(s, c, 443, 40000, "A", 5801, 1002 + len(hello), b"late"))
    add(tcp(s, c, 443, 40000, "FA", 5805, 1002 + len(hello)))
    add(tcp(c, s, 40000, 443, "S", 9000))  # port reuse: a new connection
    add(tcp(s, c, 443, 40000, "SA", 7000, 9001))
    add(tcp(c, s, 40000, 443, "R", 9001))
    for i in range(4):
        add(_ip(version, c, s) / UDP(sport=5000, dport=5000) / (b"same ports %d" % i))
        add(_ip(version, s, c) / UDP(sport=5000, dport=5000) / (b"back %d" % i))
        add(_ip(version, c, s) / UDP(sport=40001, dport=4789) / (b"\x08" + b"\x00" * 7 + b"junk"))
        add(_ip(version, c, s) / UDP(sport=40002, dport=9999) / (b"timing out %d" % i))
    for _ in range(6):  # only in-place packets of one flow while the other times out
        add(_ip(version, c, s) / UDP(sport=5000, dport=5000) / b"keep", step=30.0)
    add(_ip(version, c, s) / UDP(sport=40002, dport=9999) / b"after its timeout")
    return pkts


def _pcap(
    path: Path, linktype: int, frames: list[tuple[float, bytes, int]], nano: bool = False, order: str = "<"
) -> Path:
    """A pcap of (seconds after T0, frame, bytes kept of it) records; a frame kept to -1 bytes
    gets a fraction of a second out of range (the reader drops it, the scanner counts it)."""
    magic, units = (0xA1B23C4D, 1_000_000_000) if nano else (0xA1B2C3D4, 1_000_000)
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for at, frame, kept in frames:
        whole = T0 + at
        sec = int(whole)
        frac = round((whole - sec) * units) + (7 if nano else 0)
        if kept < 0:
            frac, kept = units + 1, len(frame)
        out.append(struct.pack(order + "IIII", sec, frac, kept, len(frame)) + frame[:kept])
    path.write_bytes(b"".join(out))
    return path


def _capture(tmp_path: Path, link: str, version: int, cut: bool = False, nano: bool = False) -> Path:
    """The conversation on ``link``; with ``cut``, every seventh frame cut inside its headers (a
    snap length) and every eleventh dropped by the reader (timestamp out of range); nanosecond
    captures written big-endian."""
    linktype, wrap = LINKS[link]
    frames = []
    for i, (at, pkt) in enumerate(_conversation(version)):
        frame = bytes(wrap(pkt))
        kept = len(frame)
        if cut and i % 7 == 5 and len(frame) > 90:
            kept -= 30
        elif cut and i % 11 == 10:
            kept = -1
        frames.append((at, frame, kept))
    order = ">" if nano else "<"
    return _pcap(tmp_path / f"{link}-{version}-{cut}-{nano}.pcap", linktype, frames, nano, order)


def _scan(sigs, policy, path: Path, batches: bool) -> tuple[bytes, dict, int]:
    """(records, statistics, packets that went through ``feed``) of one capture."""
    records: list[bytes] = []
    scanner = Scanner(
        sigs, policy, ScanOptions(), lambda flow: records.append(repr(flow_record(flow)).encode())
    )
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
            scanner.feed_batches(scanner.batches_of(reader))  # runs for the compiled loop
        else:
            for packet in reader:
                scanner.feed(*packet)
    scanner.finish()
    stats = InputStats()
    scanner.fill_stats(stats)
    everything = {**stats.as_dict(), "examples": stats.malformed_examples, "packets": scanner.packets}
    return b"\n".join(records), everything, through_feed


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("cut", [False, True])
@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("link", list(LINKS))
def test_every_link_gives_the_records_of_feed_on_both_loops(
    sigs, policy, tmp_path, monkeypatch, link, version, cut, nano
):
    compiled = _compiled_feed()
    path = _capture(tmp_path, link, version, cut, nano)
    want_records, want_stats, fed = _scan(sigs, policy, path, batches=False)
    packets = want_stats["packets"]
    dropped = want_stats["malformed"].get("pcap.timestamp", 0)
    assert fed + dropped == packets > 40
    assert want_stats["flows"] >= 4
    if cut:  # the cut frames and the dropped ones are counted, not fed quietly
        assert want_stats["malformed"]["pcap.timestamp"] >= 4
        assert sum(want_stats["malformed"].values()) > want_stats["malformed"]["pcap.timestamp"]
    through = {}
    for name, loop in (("pure", None), ("compiled", compiled)):
        monkeypatch.setattr(pipeline, "COMPILED_FEED", loop)
        got_records, got_stats, through[name] = _scan(sigs, policy, path, batches=True)
        assert got_stats == want_stats, name
        assert got_records == want_records, name
    assert through["pure"] == through["compiled"]  # the twins count the same packets in place
    if link == "three-tags":
        assert through["pure"] + dropped == packets  # more tags than the in-place path reads: all to feed
    else:
        assert through["pure"] < packets * 2 // 3, (through, packets)  # most counted in place


def _frames() -> list[tuple[int, bytes]]:
    """(linktype, frame) of every link and IP version, and their cuts."""
    out = []
    for version in (4, 6):
        for linktype, wrap in LINKS.values():
            for _, pkt in _conversation(version):
                frame = bytes(wrap(pkt))
                out += [(linktype, frame[:n]) for n in range(0, len(frame) + 1, 3)]
                out.append((linktype, frame))
    return out


def test_the_in_place_twins_read_every_frame_alike_and_as_decode_does():
    compiled = need_extension("_batchcount")
    frames = _mutated(_frames(), 5)
    taken = 0
    for linktype, frame in frames:
        for lt in (linktype, 0, 9, -1):
            buf = b"pad" + frame
            found = _in_place(buf, 3, len(frame), lt)
            assert compiled.in_place(buf, 3, len(frame), lt) == found, (lt, frame.hex())
            if found is None:
                continue
            taken += 1
            # what decode gives: the same fields, no tunnel, no fragment
            proto, src, sport, dst, dport, flags, ip_len = found
            d = decode(lt, frame)
            assert d is not None
            assert (d[0], d[1], d[2], d[3], d[4], d[5], d[8], d[9], d[10]) == (
                proto,
                src,
                sport,
                dst,
                dport,
                flags,
                ip_len,
                None,
                None,
            )
    assert taken > 1000


def _decoded(decoder, linktype: int, frame: bytes) -> object:
    """What a decoder gives a frame: its tuple or None, or the error it raises (as reason and text)."""
    try:
        return decoder(linktype, frame)
    except MalformedError as err:
        return ("error", err.reason, str(err))


def _mutated(frames: list[tuple[int, bytes]], seed: int) -> list[tuple[int, bytes]]:
    """The frames, and each with two bits flipped in its first 80 bytes."""
    rng = random.Random(seed)
    out = list(frames)
    for linktype, frame in frames:
        for _ in range(2):
            b = bytearray(frame)
            if b:
                b[rng.randrange(min(len(b), 80))] ^= 1 << rng.randrange(8)
            out.append((linktype, bytes(b)))
    return out


def test_the_compiled_decode_gives_what_decode_gives_on_every_frame():
    compiled = need_extension("_batchcount")
    frames = _mutated(_frames(), 11)
    for path in _real_captures():
        with open_capture(str(path)) as reader:
            frames += [(linktype, frame) for _, linktype, frame, _ in reader]
    in_c = 0
    for linktype, frame in frames:
        for lt in (linktype, 113, 101):
            want = _decoded(decode, lt, frame)
            got = _decoded(compiled.decode, lt, frame)
            assert got == want, (lt, frame.hex())
            if _in_place(frame, 0, len(frame), lt) is not None:
                in_c += 1
    assert in_c > 10_000  # most frames took the C path
    # a frame that is not bytes goes to decode.py as it is
    linktype, frame = next((lt, f) for lt, f in frames if _in_place(f, 0, len(f), lt) is not None)
    assert compiled.decode(linktype, bytearray(frame)) == decode(linktype, bytearray(frame)) is not None


def _real_captures() -> list[Path]:
    own = sorted(p for p in (ROOT / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
    real = sorted(p for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))
    return own + real


@pytest.mark.real
def test_runs_on_the_compiled_loop_give_the_records_of_the_pure_loop_on_every_capture(
    sigs, policy, monkeypatch
):
    compiled = _compiled_feed()
    runs = 0
    for path in _real_captures():
        monkeypatch.setattr(pipeline, "COMPILED_FEED", compiled)
        with open_capture(str(path)) as reader:
            runs += sum(isinstance(records, tuple) for _, records, _ in reader.runs())
        got = _scan(sigs, policy, path, batches=True)
        monkeypatch.setattr(pipeline, "COMPILED_FEED", None)
        want = _scan(sigs, policy, path, batches=True)
        assert got[:2] == want[:2], path.name
        assert got[2] <= want[2], path.name  # IPv6, VLAN, SLL packets counted in place by both
    assert runs >= 10


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("units", [1e6, 1e9])
@pytest.mark.parametrize("limit", [70, 0xFFFF])
def test_pcap_run_twins_agree_and_a_run_lists_as_the_records(order, units, limit):
    scan = need_extension("_pcapscan")
    records = [(1_600_000_000 + i, i * 123_457 % 1_000_000, 60 + i % 13) for i in range(40)]
    records[17] = (7, 999_999_999, 4)  # a fraction out of range for microseconds only
    records[29] = (7, 0, 100)  # longer than the lower limit
    buf = b"xx" + b"".join(
        struct.pack(order + "IIII", sec, frac, incl, incl) + bytes(range(incl)) for sec, frac, incl in records
    )
    buf = buf[:-7]  # the last record cut
    pos = 2
    seen = 0
    while True:
        want = capture.whole_pcap_run(buf, pos, order == ">", units, limit)
        assert scan.whole_pcap_run(buf, pos, order == ">", units, limit) == want
        end, count = want
        listed: list = []
        assert capture.whole_pcap_records(buf, pos, order == ">", units, 1, limit, listed) == end
        assert len(listed) == count
        assert capture.run_records(buf, (pos, end, order == ">", units, 1)) == listed
        seen += count
        if end + 16 > len(buf) or (count == 0 and pos == end):
            if end + 16 <= len(buf):  # a record the run does not take: skip it as the reader would
                incl = struct.unpack_from(order + "I", buf, end + 8)[0]
                pos = end + 16 + incl
                if pos <= len(buf):
                    continue
            break
        pos = end
    assert seen >= 30
