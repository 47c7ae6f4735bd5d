"""Teredo (RFC 4380): IPv6 in UDP/IPv4 on port 3544, found only when the payload is an IPv6 packet
that fills the datagram (after the optional authentication and origin indication headers); other
payloads on the port stay plain UDP, and a Teredo header that breaks is malformed."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from classifier.decode import TUNNEL, decode, skip_reason
from classifier.errors import MalformedError

CLIENT_NAT, RELAY = "198.51.100.20", "203.0.113.44"  # outer IPv4: the client's NAT, the relay
SUB6, SRV6 = "2001:db8:1::7", "2001:db8:2::9"


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def ipv6_tcp(payload: bytes = b"\x16\x03\x01hello") -> bytes:
    return bytes(IPv6(src=SUB6, dst=SRV6) / TCP(sport=40000, dport=443, flags="PA", seq=7) / Raw(payload))


def auth(client_id: bytes = b"", value: bytes = b"") -> bytes:
    """RFC 4380 5.1.1 authentication header: indicator, ID-len, AU-len, id, value, nonce, confirmation."""
    return struct.pack("!HBB", 1, len(client_id), len(value)) + client_id + value + b"\x01" * 8 + b"\x00"


def origin(port: int = 40000, addr: str = CLIENT_NAT) -> bytes:
    """Origin indication: indicator 0, the port and address each bit-inverted."""
    return struct.pack("!HH", 0, port ^ 0xFFFF) + bytes(b ^ 0xFF for b in a(addr))


def teredo(payload: bytes, sport: int = 40000, dport: int = 3544) -> bytes:
    return bytes(Ether() / IP(src=CLIENT_NAT, dst=RELAY) / UDP(sport=sport, dport=dport) / Raw(payload))


@pytest.mark.parametrize(
    "headers",
    [b"", auth(), auth(b"client-7", b"\xaa" * 20), origin(), auth(b"id") + origin()],
    ids=["bare", "auth", "auth-id-value", "origin", "auth-origin"],
)
@pytest.mark.parametrize("ports", [(40000, 3544), (3544, 40000)], ids=["to-3544", "from-3544"])
def test_teredo_yields_the_ipv6_packet(headers, ports):
    d = decode(1, teredo(headers + ipv6_tcp(), *ports))
    assert d is not None, skip_reason(1, teredo(headers + ipv6_tcp(), *ports))
    proto, src, sport, dst, dport, _flags, seq, payload, _ip_len, _frag, tunnel = d
    assert (proto, src, sport, dst, dport, seq, payload) == (
        6,
        a(SUB6),
        40000,
        a(SRV6),
        443,
        7,
        b"\x16\x03\x01hello",
    )
    assert [(t.kind, t.src, t.dst, t.ident) for t in tunnel] == [("teredo", a(CLIENT_NAT), a(RELAY), None)]


@pytest.mark.parametrize(
    "payload",
    [
        b"\x16\x03\x01 not ipv6 at all, a DNS-ish or any datagram" * 2,
        ipv6_tcp()[:-3],  # an IPv6 header whose payload length overruns the datagram
        ipv6_tcp() + b"pad",  # ... or does not fill it
        b"\x60" + b"\x00" * 5 + b"\x99" + b"\x00" * 40,  # next header 0x99: not a first header Teredo carries
        b"\x60\x00",
    ],
    ids=["not-ipv6", "short", "padded", "odd-next-header", "tiny"],
)
def test_port_3544_alone_is_not_teredo(payload):
    d = decode(1, teredo(payload))
    assert d is not None and d[TUNNEL] is None and d[4] == 3544 and d[7] == payload


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b"\x00\x01\x05", "teredo.auth"),
        (struct.pack("!HBB", 1, 200, 0) + b"\x00" * 20 + ipv6_tcp(), "teredo.auth"),
        (b"\x00\x00\x01\x02", "teredo.origin"),
        (origin() + b"\x45" + b"\x00" * 60, "teredo.ipv6"),
        (auth() + ipv6_tcp()[:-2], "teredo.payload_length"),
    ],
)
def test_broken_teredo_headers_are_malformed(payload, reason):
    with pytest.raises(MalformedError) as exc:
        decode(1, teredo(payload))
    assert exc.value.reason == reason


def test_bubbles_are_skipped_with_a_reason():
    bubble = bytes(IPv6(src=SUB6, dst=SRV6, nh=59, plen=0))
    frame = teredo(origin() + bubble, 3544, 40000)
    assert decode(1, frame) is None
    assert skip_reason(1, frame) == "teredo:ip-proto:59"


def test_teredo_inside_udp_is_found_by_the_general_path_too():
    """IPv4 options push the frame off decode's fast path: same answer."""
    frame = bytes(
        Ether()
        / IP(src=CLIENT_NAT, dst=RELAY, options=[b"\x01" * 4])
        / UDP(sport=40000, dport=3544)
        / Raw(auth() + ipv6_tcp())
    )
    assert decode(1, frame)[TUNNEL][0].kind == "teredo"
