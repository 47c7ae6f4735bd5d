"""peek() answers only where decode() returns the same packet whole, and answers for most traffic.

A ``scan --workers`` partition trusts ``peek`` instead of ``decode`` for the packets of flows other
partitions report: a frame peek accepts but decode rejects (an error, a tunnel, a fragment) would
make the partition count packets or close flows differently from one process.
"""

from __future__ import annotations

import random

import pytest
from conftest import REAL, ROOT, need_shared
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from classifier.capture import open_capture
from classifier.decode import FLAGS, FRAG_KEY, TUNNEL, decode
from classifier.errors import MalformedError
from classifier.peek import peek


def _agrees(linktype: int, frame: bytes) -> bool:
    """True if peek answered; fails the test if its answer is not decode's packet."""
    peeked = peek(linktype, frame)
    if peeked is None:
        return False
    try:
        d = decode(linktype, frame)
    except MalformedError as err:
        pytest.fail(f"peek accepted a frame decode rejects ({err}): {frame.hex()}")
    assert d is not None, frame.hex()
    assert d[FRAG_KEY] is None and d[TUNNEL] is None, frame.hex()
    assert peeked == (*d[:5], d[FLAGS]), frame.hex()
    return True


def _frames(paths: list) -> list[tuple[int, bytes]]:
    frames = []
    for path in paths:
        with open_capture(str(path)) as reader:
            frames.extend((lt, frame) for _, lt, frame, _ in reader)
    return frames


@pytest.mark.real
def test_agrees_with_decode_on_the_real_captures() -> None:
    frames = _frames(sorted(p for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng")))
    peeked = sum(_agrees(lt, frame) for lt, frame in frames)
    # Most real traffic is Ethernet IPv4 TCP/UDP: the short cut must actually be taken.
    assert peeked > 0.7 * len(frames), (peeked, len(frames))


def test_agrees_with_decode_on_the_samples() -> None:
    frames = _frames(sorted(p for p in (ROOT / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng")))
    assert sum(_agrees(lt, frame) for lt, frame in frames) > 0


def test_leaves_tunnels_fragments_tags_and_errors_to_decode() -> None:
    base = Ether() / IP(src="192.0.2.1", dst="203.0.113.9")
    tcp = base / TCP(sport=40000, dport=443, flags="S")
    assert peek(1, bytes(tcp)) == (6, bytes([192, 0, 2, 1]), 40000, bytes([203, 0, 113, 9]), 443, 0x02)
    for frame in (
        base / UDP(sport=40000, dport=4789) / Raw(b"\x08" + b"\x00" * 7),  # VXLAN
        Ether() / IP(src="192.0.2.1", dst="203.0.113.9", flags="MF") / UDP() / Raw(b"x" * 20),  # fragment
        Ether() / Dot1Q(vlan=3) / IP() / TCP(),  # tagged: decode's general path
        base / TCP(dataofs=2),  # broken data offset: decode raises
        Ether() / IP(ihl=6, options=b"\x01\x01\x01\x01") / TCP(),  # options
    ):
        assert peek(1, bytes(frame)) is None, frame.summary()
    assert peek(101, bytes(tcp)[14:]) is None  # raw IP: left to decode


def test_mutated_frames_agree_with_decode() -> None:
    rng = random.Random(4321)
    seeds = [
        bytes(Ether() / IP(src="192.0.2.1", dst="203.0.113.9") / TCP(sport=40000, dport=443) / Raw(b"hi")),
        bytes(Ether() / IP(src="192.0.2.1", dst="203.0.113.9") / UDP(sport=5353, dport=53) / Raw(b"q")),
    ]
    answered = 0
    for _ in range(20000):
        frame = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            frame[rng.randrange(14, len(frame))] = rng.randrange(256)
        answered += _agrees(1, bytes(frame[: rng.randint(30, len(frame))]))
    assert answered > 1000  # the mutations do reach the accepting branches
