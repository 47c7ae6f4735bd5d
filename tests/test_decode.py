"""decode(): link layers, IP options and extension headers, fragments, malformed frames."""

import random
import socket
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from classifier.decode import decode, skip_reason
from classifier.errors import MalformedError

A4 = socket.inet_aton("192.0.2.1")
B4 = socket.inet_aton("203.0.113.9")
A6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
B6 = socket.inet_pton(socket.AF_INET6, "2001:db8::2")


def tcp4(payload=b"hello", **kw):
    return (
        IP(src="192.0.2.1", dst="203.0.113.9", **kw)
        / TCP(sport=40000, dport=443, flags="PA", seq=1000)
        / Raw(payload)
    )


def test_ethernet_ipv4_tcp_fields():
    frame = bytes(Ether() / tcp4())
    proto, src, sport, dst, dport, flags, seq, payload, ip_len, frag, tunnel = decode(1, frame)
    assert (proto, src, sport, dst, dport) == (6, A4, 40000, B4, 443)
    assert flags == 0x18 and seq == 1000 and payload == b"hello"
    assert ip_len == 20 + 20 + 5 and frag is None and tunnel is None


def test_ethernet_padding_is_not_payload():
    frame = bytes(Ether() / tcp4(b"")) + b"\x00" * 6  # minimum frame padding
    assert decode(1, frame)[7] == b""


@pytest.mark.parametrize(
    "wrap",
    [
        lambda p: Ether() / Dot1Q(vlan=10) / p,
        lambda p: Ether() / Dot1AD(vlan=20) / Dot1Q(vlan=10) / p,
    ],
)
def test_vlan_and_qinq(wrap):
    d = decode(1, bytes(wrap(tcp4())))
    assert d[1] == A4 and d[7] == b"hello"


def test_mpls_and_pppoe():
    ip = bytes(tcp4())
    mpls = b"\x00" * 12 + b"\x88\x47" + struct.pack("!I", (100 << 12) | 0x100 | 64) + ip
    assert decode(1, mpls)[7] == b"hello"
    pppoe = b"\x00" * 12 + b"\x88\x64" + struct.pack("!BBHH", 0x11, 0, 1, len(ip) + 2) + b"\x00\x21" + ip
    assert decode(1, pppoe)[3] == B4


def test_linux_sll_and_sll2():
    ip = bytes(tcp4())
    sll = struct.pack("!HHH8sH", 0, 1, 6, b"\x00" * 8, 0x0800) + ip
    assert decode(113, sll)[4] == 443
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x00" * 8) + ip
    assert decode(276, sll2)[4] == 443


def test_raw_null_loop():
    ip4 = bytes(tcp4())
    ip6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5000, dport=53) / Raw(b"q"))
    for lt in (101, 228, 12, 14):
        assert decode(lt, ip4)[1] == A4
    assert decode(229, ip6)[1] == A6
    assert decode(0, struct.pack("<I", 2) + ip4)[1] == A4  # little-endian host
    assert decode(0, struct.pack(">I", 2) + ip4)[1] == A4  # big-endian host
    for af in (24, 28, 30):
        assert decode(0, struct.pack("<I", af) + ip6)[7] == b"q"
    assert decode(108, struct.pack(">I", 2) + ip4)[3] == B4


def test_ipv4_options_skipped():
    pkt = (
        IP(src="192.0.2.1", dst="203.0.113.9", options=[IPOption_RR(routers=["1.2.3.4"])])
        / TCP(sport=1, dport=2)
        / Raw(b"xyz")
    )
    assert len(bytes(pkt)) > 20 + 20 + 3
    assert decode(101, bytes(pkt))[7] == b"xyz"


def test_ipv6_extension_headers():
    pkt = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=40000, dport=443)
        / Raw(b"abc")
    )
    d = decode(229, bytes(pkt))
    assert d[0] == 6 and d[1] == A6 and d[4] == 443 and d[7] == b"abc"


def test_ipv4_fragments_first_carries_ports_rest_keyed():
    pkt = IP(src="192.0.2.1", dst="203.0.113.9", id=77) / UDP(sport=53, dport=4000) / Raw(b"x" * 3000)
    frags = fragment(pkt, fragsize=1000)
    assert len(frags) >= 3
    first = decode(101, bytes(frags[0]))
    assert first[2] == 53 and first[4] == 4000 and first[9] == (A4, B4, 17, 77)
    later = decode(101, bytes(frags[1]))
    assert later[2] == -1 and later[4] == -1 and later[9] == first[9] and later[7] == b""


def test_ipv6_fragment():
    pkt = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(id=5, offset=0, m=1)
        / UDP(sport=1, dport=2)
        / Raw(b"a" * 8)
    )
    d = decode(229, bytes(pkt))
    assert d[2] == 1 and d[9] == (A6, B6, 17, 5)
    later = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(id=5, offset=2, m=0, nh=17)
        / Raw(b"b" * 8)
    )
    assert decode(229, bytes(later))[2] == -1


def test_non_ip_and_other_protocols_are_not_errors():
    arp = bytes(Ether() / ARP())
    assert decode(1, arp) is None
    assert skip_reason(1, arp) == "non-ip:0x0806"
    icmp = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2", proto=1) / Raw(b"\x08\x00" + b"\x00" * 6))
    assert decode(1, icmp) is None
    assert skip_reason(1, icmp) == "ip-proto:1"
    llc = b"\x01\x80\xc2\x00\x00\x00" + b"\x00" * 6 + struct.pack("!H", 38) + b"\x42" * 38
    assert decode(1, llc) is None and skip_reason(1, llc) == "non-ip:802.3"
    assert decode(147, b"anything") is None and skip_reason(147, b"x") == "unsupported-linktype:147:USER0"
    vlan_arp = bytes(Ether() / Dot1Q(vlan=3) / ARP())
    assert skip_reason(1, vlan_arp) == "non-ip:0x0806"


@pytest.mark.parametrize(
    "frame,reason",
    [
        (b"\x00" * 10, "ethernet.header"),
        (bytes(Ether(type=0x800))[:14] + b"\x45" + b"\x00" * 10, "ipv4.header"),
        (bytes(Ether(type=0x800))[:14] + bytes([0x44]) + bytes(IP())[1:], "ipv4.ihl"),
        (bytes(Ether(type=0x800))[:14] + bytes(IP(len=10) / TCP()), "ipv4.total_length"),
        (bytes(Ether() / IP() / TCP(dataofs=15)), "tcp.data_offset"),
        (bytes(Ether() / IP() / TCP(dataofs=2)), "tcp.data_offset"),
        (bytes(Ether() / IP(proto=6) / Raw(b"\x00" * 10)), "tcp.header"),
        (bytes(Ether(type=0x86DD) / Raw(b"\x60" + b"\x00" * 20)), "ipv6.header"),
        (bytes(Ether(type=0x8100) / Raw(b"\x00")), "vlan.tag"),
    ],
)
def test_malformed_frames_raise_with_reason(frame, reason):
    with pytest.raises(MalformedError) as exc:
        decode(1, frame)
    assert exc.value.reason == reason


def test_fuzz_only_malformed_or_result():
    rng = random.Random(1234)
    seeds = [
        bytes(Ether() / tcp4()),
        bytes(Ether() / Dot1Q() / tcp4()),
        bytes(Ether() / IPv6() / IPv6ExtHdrHopByHop() / TCP() / Raw(b"x")),
    ]
    for _ in range(5000):
        frame = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        frame = bytes(frame[: rng.randint(0, len(frame))])
        lt = rng.choice((1, 101, 113, 276, 0, 108))
        try:
            d = decode(lt, frame)
        except MalformedError:
            continue
        if d is None:
            skip_reason(lt, frame)  # must not raise for what decode accepted as non-flow
        else:
            assert d[0] in (6, 17)
