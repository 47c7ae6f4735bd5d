"""Encapsulations and the link types PPP, HDLC, 802.11 (radiotap) and NFLOG: decode() finds the
inner TCP/UDP packet and the tunnels it came through; broken tunnels are malformed by layer and
field; overlapping inner addresses in different tunnels are different flows."""

from __future__ import annotations

import csv
import ipaddress
import struct

import pytest
from conftest import ROOT, run_cli
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.layers.dot11 import Dot11, Dot11Beacon, Dot11QoS, RadioTap
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, LLC, SNAP, Ether
from scapy.layers.ppp import HDLC, PPP
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from classifier.decode import DPORT, FRAG_KEY, PAYLOAD, SPORT, TUNNEL, decode, fragment, skip_reason
from classifier.errors import MalformedError
from classifier.flows import FlowConfig
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import flow_record

OUT_A, OUT_B = "198.51.100.1", "198.51.100.2"  # tunnel endpoints
OUT6_A, OUT6_B = "2001:db8:ff::1", "2001:db8:ff::2"
SUB = "192.0.2.7"  # the subscriber's inner address (the same in every tunnel)
SRV = "203.0.113.9"


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def inner(payload: bytes = b"\x16\x03\x01hello", sport: int = 40000) -> IP:
    return IP(src=SUB, dst=SRV) / TCP(sport=sport, dport=443, flags="PA", seq=7) / Raw(payload)


def inner6() -> IPv6:
    return IPv6(src="2001:db8:1::7", dst="2001:db8:2::9") / UDP(sport=5353, dport=443) / Raw(b"quic")


def outer4(proto_layer) -> Ether:
    return Ether() / IP(src=OUT_A, dst=OUT_B) / proto_layer


def udp4(dport: int, sport: int = 51000) -> Ether:
    return Ether() / IP(src=OUT_A, dst=OUT_B) / UDP(sport=sport, dport=dport)


ETH_IN = Ether(src="02:00:00:00:00:07", dst="02:00:00:00:00:09")

ENCAPSULATIONS = {
    "gre": (outer4(GRE(proto=0x0800)) / inner(), [("gre", None)]),
    "gre-keyed-csum-seq": (
        outer4(
            GRE(proto=0x0800, key_present=1, key=77, chksum_present=1, seqnum_present=1, sequence_number=5)
        )
        / inner(),
        [("gre", 77)],
    ),
    "gretap": (outer4(GRE(proto=0x6558, key_present=1, key=9)) / ETH_IN / inner(), [("gre", 9)]),
    "erspan1": (outer4(GRE(proto=0x88BE)) / ETH_IN / inner(), [("erspan1", None)]),
    "erspan2": (
        outer4(GRE(proto=0x88BE, seqnum_present=1)) / ERSPAN_II(session_id=513) / ETH_IN / inner(),
        [("erspan2", 513)],
    ),
    "erspan3": (
        outer4(GRE(proto=0x22EB, seqnum_present=1)) / ERSPAN_III(session_id=3) / ETH_IN / inner(),
        [("erspan3", 3)],
    ),
    "erspan3-platform": (
        outer4(GRE(proto=0x22EB, seqnum_present=1))
        / ERSPAN_III(session_id=4, o=1)
        / ERSPAN_PlatformSpecific()
        / ETH_IN
        / inner(),
        [("erspan3", 4)],
    ),
    "vxlan": (udp4(4789) / VXLAN(vni=4242) / ETH_IN / inner(), [("vxlan", 4242)]),
    "geneve-ethernet-options": (
        udp4(6081)
        / GENEVE(vni=66, proto=0x6558, optionlen=2, options=b"\x01\x02\x03\x01\x00\x00\x00\x00")
        / ETH_IN
        / inner(),
        [("geneve", 66)],
    ),
    "geneve-ip": (udp4(6081) / GENEVE(vni=67, proto=0x0800) / inner(), [("geneve", 67)]),
    "gtp-u": (udp4(2152, 2152) / GTP_U_Header(teid=0xABCDEF) / inner(), [("gtp-u", 0xABCDEF)]),
    "gtp-u-pdu-session": (
        udp4(2152, 2152) / GTP_U_Header(teid=12) / GTPPDUSessionContainer(type=1, QFI=9) / inner(),
        [("gtp-u", 12)],
    ),
    "ipip": (outer4(Raw()) / Raw(), [("ipip", None)]),  # filled in below (proto 4)
    "6in4": (None, [("6in4", None)]),
    "4in6": (None, [("4in6", None)]),
    "6in6": (None, [("6in6", None)]),
    "gtp-u-in-vxlan": (
        udp4(4789)
        / VXLAN(vni=5)
        / ETH_IN
        / IP(src=OUT_A, dst=OUT_B)
        / UDP(sport=2152, dport=2152)
        / GTP_U_Header(teid=99)
        / inner(),
        [("vxlan", 5), ("gtp-u", 99)],
    ),
}
ENCAPSULATIONS["vxlan-vlan"] = (
    udp4(4789) / VXLAN(vni=1) / Raw(bytes(ETH_IN)[:12] + b"\x81\x00\x00\x0a\x08\x00" + bytes(inner())),
    [("vxlan", 1)],
)
ENCAPSULATIONS["ipip"] = (Ether() / IP(src=OUT_A, dst=OUT_B, proto=4) / inner(), [("ipip", None)])
ENCAPSULATIONS["6in4"] = (Ether() / IP(src=OUT_A, dst=OUT_B, proto=41) / inner6(), [("6in4", None)])
ENCAPSULATIONS["4in6"] = (Ether() / IPv6(src=OUT6_A, dst=OUT6_B, nh=4) / inner(), [("4in6", None)])
ENCAPSULATIONS["6in6"] = (Ether() / IPv6(src=OUT6_A, dst=OUT6_B, nh=41) / inner6(), [("6in6", None)])


@pytest.mark.parametrize("name", sorted(ENCAPSULATIONS))
def test_encapsulation_yields_the_inner_packet_and_its_tunnels(name):
    packet, layers = ENCAPSULATIONS[name]
    d = decode(1, bytes(packet))
    assert d is not None, skip_reason(1, bytes(packet))
    proto, src, sport, dst, dport, _flags, seq, payload, ip_len, _frag_key, tunnel = d
    if "6in" in name:
        assert (proto, sport, dport, payload) == (17, 5353, 443, b"quic")
        assert src == a("2001:db8:1::7")
    else:
        assert (proto, src, sport, dst, dport) == (6, a(SUB), 40000, a(SRV), 443)
        assert payload == b"\x16\x03\x01hello" and seq == 7 and ip_len == 20 + 20 + 8
    assert [(t.kind, t.ident) for t in tunnel] == layers
    outer = (a(OUT6_A), a(OUT6_B)) if name in ("4in6", "6in6") else (a(OUT_A), a(OUT_B))
    assert (tunnel[0].src, tunnel[0].dst) == outer


def test_untunnelled_packets_have_no_tunnel_and_tunnel_ports_need_the_header():
    plain = decode(1, bytes(Ether() / inner()))
    assert plain[TUNNEL] is None and plain[FRAG_KEY] is None
    # A tunnel port as the *source* port is an ordinary UDP flow (the reply of a client on 4789).
    reply = decode(1, bytes(Ether() / IP(src=OUT_A, dst=OUT_B) / UDP(sport=4789, dport=40000) / Raw(b"x")))
    assert reply[TUNNEL] is None and reply[PAYLOAD] == b"x"


def test_depth_is_bounded():
    packet = inner()
    for _ in range(5):
        packet = IP(src=OUT_A, dst=OUT_B, proto=4) / packet
    with pytest.raises(MalformedError) as exc:
        decode(101, bytes(packet))
    assert exc.value.reason == "ipip.depth"
    four = inner()
    for _ in range(4):
        four = IP(src=OUT_A, dst=OUT_B, proto=4) / four
    assert len(decode(101, bytes(four))[TUNNEL]) == 4


@pytest.mark.parametrize(
    "frame,reason",
    [
        (bytes(udp4(4789) / Raw(b"\x00" * 8) / ETH_IN / inner()), "vxlan.flags"),
        (bytes(udp4(4789) / Raw(b"\x08\x00\x00")), "vxlan.header"),
        (bytes(udp4(4789) / VXLAN(vni=1) / Raw(b"\x00" * 6)), "vxlan.ethernet"),
        (bytes(udp4(6081) / GENEVE(version=1, proto=0x0800) / inner()), "geneve.version"),
        (bytes(udp4(6081) / Raw(b"\x3f\x00\x08\x00" + b"\x00" * 8)), "geneve.options"),
        (bytes(udp4(2152) / Raw(b"\x50\xff\x00\x10" + b"\x00" * 4) / inner()), "gtp-u.version"),
        (
            bytes(udp4(2152) / Raw(b"\x34\xff\x00\x30\x00\x00\x00\x01\x00\x00\x00\x85\x00\x10") / inner()),
            "gtp-u.extension",
        ),
        (
            bytes(udp4(2152) / Raw(b"\x34\xff\x00\x30\x00\x00\x00\x01\x00\x00\x00\x85\x09\x10") / inner()),
            "gtp-u.extension",
        ),
        (bytes(udp4(2152) / GTP_U_Header(teid=1, gtp_type=255) / Raw(b"\x20" * 30)), "gtp-u.version"),
        (bytes(outer4(GRE(proto=0x0800, version=3)) / inner()), "gre.version"),
        (bytes(outer4(GRE(proto=0x0800, routing_present=1)) / inner()), "gre.flags"),
        (
            bytes(
                outer4(GRE(proto=0x88BE, seqnum_present=1)) / Raw(b"\x20" + b"\x00" * 7) / ETH_IN / inner()
            ),
            "erspan2.version",
        ),
        (bytes(outer4(GRE(proto=0x0800)) / Raw(b"\x45" + b"\x00" * 10)), "ipv4.header"),
        (bytes(Ether() / IP(src=OUT_A, dst=OUT_B, proto=41) / inner()), "6in4.version"),
        (bytes(Ether() / IP(src=OUT_A, dst=OUT_B, proto=4)), "ipip.payload"),
    ],
)
def test_broken_tunnels_are_malformed_by_layer_and_field(frame, reason):
    with pytest.raises(MalformedError) as exc:
        decode(1, frame)
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    "frame,reason",
    [
        (
            bytes(udp4(2152, 2152) / GTP_U_Header(gtp_type=1, teid=0, seq=1, S=1) / Raw(b"\x00")),
            "gtp-u:message-type:1",
        ),
        (bytes(udp4(4789) / VXLAN(vni=3) / Ether() / ARP()), "vxlan:non-ip:0x0806"),
        (
            bytes(outer4(GRE(proto=0x0800)) / IP(src=SUB, dst=SRV, proto=1) / Raw(b"\x08\x00" + b"\x00" * 6)),
            "gre:ip-proto:1",
        ),
        (bytes(outer4(GRE(proto=0x88CC)) / Raw(b"lldp")), "gre:non-ip:0x88cc"),
        (bytes(udp4(6081) / GENEVE(vni=1, proto=0x0800, oam=1) / Raw(b"oam")), "geneve:control"),
    ],
)
def test_tunnel_packets_without_user_data_are_skipped_with_a_reason(frame, reason):
    assert decode(1, frame) is None
    assert skip_reason(1, frame) == reason


def test_inner_fragments_are_keyed_by_their_tunnel():
    big = IP(src=SUB, dst=SRV, id=77) / UDP(sport=5353, dport=53) / Raw(b"q" * 64)
    from scapy.layers.inet import fragment as scapy_fragment

    first, second = scapy_fragment(big, fragsize=40)
    frames = [bytes(udp4(2152, 2152) / GTP_U_Header(teid=5) / f) for f in (first, second)]
    d1, d2 = decode(1, frames[0]), decode(1, frames[1])
    assert d1[FRAG_KEY] == d2[FRAG_KEY] and d1[FRAG_KEY][-1] == d1[TUNNEL] and d2[SPORT] == -1
    assert fragment(1, frames[1])[0] == 40  # the inner fragment's offset, not the outer packet's


# -- link types ----------------------------------------------------------------------------------

PPP_IP = bytes(inner())


@pytest.mark.parametrize(
    "linktype,frame",
    [
        (9, b"\xff\x03\x00\x21" + PPP_IP),  # RFC 1662 framing
        (9, b"\x00\x21" + PPP_IP),  # no address/control
        (9, b"\x21" + PPP_IP),  # protocol-field compression
        (9, b"\xff\x03\x00\x57" + bytes(IPv6(src="2001:db8:1::7", dst="2001:db8:2::9") / inner()[TCP])),
        (204, b"\x01\xff\x03\x00\x21" + PPP_IP),  # PPP_WITH_DIR
        (50, bytes(HDLC() / PPP(proto=0x0021)) + PPP_IP),  # PPP in HDLC-like framing
        (50, b"\x0f\x00\x08\x00" + PPP_IP),  # Cisco HDLC
        (104, b"\x8f\x00\x08\x00" + PPP_IP),
        (105, bytes(Dot11(type=2, subtype=0, FCfield=1) / LLC() / SNAP(code=0x0800)) + PPP_IP),
        (105, bytes(Dot11(type=2, subtype=8, FCfield=3) / Dot11QoS() / LLC() / SNAP(code=0x0800)) + PPP_IP),
        (
            127,
            bytes(
                RadioTap(present="Flags+Rate", Flags=0, Rate=2)
                / Dot11(type=2, FCfield=2)
                / LLC()
                / SNAP(code=0x0800)
            )
            + PPP_IP,
        ),
    ],
)
def test_link_types_reach_the_ip_packet(linktype, frame):
    d = decode(linktype, frame)
    assert d is not None, skip_reason(linktype, frame)
    assert (d[SPORT], d[DPORT], d[PAYLOAD]) == (40000, 443, b"\x16\x03\x01hello")


def nflog(packet: bytes, order: str = "<") -> bytes:
    """tcpdump -i nflog: nfgenmsg (family, version, resource id), then TLVs padded to 4 bytes."""

    def tlv(kind: int, value: bytes) -> bytes:
        raw = struct.pack(f"{order}HH", 4 + len(value), kind) + value
        return raw + b"\x00" * (-len(raw) % 4)

    prefix = b"lab-prefix\x00"
    return struct.pack("!BBH", 2, 0, 5) + tlv(1, b"\x08\x00\x03\x00") + tlv(10, prefix) + tlv(9, packet)


@pytest.mark.parametrize("order", ["<", ">"])
def test_nflog_payload_in_either_byte_order(order):
    d = decode(239, nflog(PPP_IP, order))
    assert d[DPORT] == 443 and d[PAYLOAD] == b"\x16\x03\x01hello"
    assert skip_reason(239, struct.pack("!BBH", 2, 0, 5) + struct.pack("<HH", 8, 1) + b"\0" * 4) == (
        "non-ip:nflog-without-payload"
    )
    with pytest.raises(MalformedError) as exc:
        decode(239, struct.pack("!BBH", 2, 0, 5) + struct.pack(f"{order}HH", 200, 9) + PPP_IP[:20])
    assert exc.value.reason == "nflog.tlv"


def test_link_types_say_why_a_frame_holds_no_ip():
    beacon = bytes(RadioTap() / Dot11(type=0, subtype=8) / Dot11Beacon())
    assert decode(127, beacon) is None and skip_reason(127, beacon) == "non-ip:802.11-management"
    protected = bytes(Dot11(type=2, FCfield=0x40) / Raw(b"\x00" * 40))
    assert skip_reason(105, protected) == "non-ip:802.11-protected"
    lcp = b"\xff\x03\xc0\x21\x01\x01\x00\x04"
    assert decode(9, lcp) is None and skip_reason(9, lcp) == "non-ip:0xc021"
    with pytest.raises(MalformedError) as exc:
        decode(50, b"\x42\x03\x00\x21" + PPP_IP)
    assert exc.value.reason == "hdlc.address"
    with pytest.raises(MalformedError) as exc:
        decode(127, b"\x00\x00\xff\x00" + b"\x00" * 8)
    assert exc.value.reason == "radiotap.length"


def test_unsupported_link_type_is_named():
    assert decode(147, b"x") is None
    assert skip_reason(147, b"x") == "unsupported-linktype:147:USER0"
    assert skip_reason(119, b"x") == "unsupported-linktype:119:IEEE802_11_PRISM"
    assert skip_reason(999, b"x") == "unsupported-linktype:999:unassigned"


# -- flows and records ---------------------------------------------------------------------------


def scan(sigs, policy, frames: list[bytes]) -> list[dict]:
    records: list[dict] = []
    scanner = Scanner(sigs, policy, ScanOptions(flows=FlowConfig()), lambda f: records.append(flow_record(f)))
    for n, frame in enumerate(frames):
        scanner.feed(1000.0 + n, 1, frame)
    scanner.finish()
    return records


def test_same_inner_addresses_in_two_tunnels_are_two_flows(sigs, policy):
    frames = []
    for vni in (100, 200):
        frames.append(bytes(udp4(4789) / VXLAN(vni=vni) / ETH_IN / inner()))
    for teid in (1, 2):  # two GTP-U tunnels between different base stations and the same core
        frames.append(
            bytes(
                Ether()
                / IP(src=f"198.51.100.{10 + teid}", dst=OUT_B)
                / UDP(sport=2152, dport=2152)
                / GTP_U_Header(teid=teid)
                / inner()
            )
        )
    frames.append(bytes(Ether() / inner()))  # and once untunnelled
    records = scan(sigs, policy, frames)
    assert len(records) == 5
    assert {(r["src"], r["sport"], r["dst"], r["dport"]) for r in records} == {(SUB, 40000, SRV, 443)}
    assert sorted(str(r["tunnel"]) for r in records) == sorted(
        str(t)
        for t in [
            [{"type": "vxlan", "src": OUT_A, "dst": OUT_B, "id": 100}],
            [{"type": "vxlan", "src": OUT_A, "dst": OUT_B, "id": 200}],
            [{"type": "gtp-u", "src": "198.51.100.11", "dst": OUT_B, "id": 1}],
            [{"type": "gtp-u", "src": "198.51.100.12", "dst": OUT_B, "id": 2}],
            None,
        ]
    )


def test_both_directions_of_a_tunnelled_flow_are_one_flow(sigs, policy):
    """GTP-U: each end picks the TEID it receives on, so uplink and downlink TEIDs differ; the
    reply's outer addresses are swapped. Still one flow, oriented from the client."""
    syn = inner(b"")
    syn[TCP].flags = "S"
    synack = IP(src=SRV, dst=SUB) / TCP(sport=443, dport=40000, flags="SA")
    frames = [
        bytes(
            Ether()
            / IP(src=OUT_B, dst=OUT_A)
            / UDP(sport=2152, dport=2152)
            / GTP_U_Header(teid=0x22)
            / synack
        ),
        bytes(
            Ether() / IP(src=OUT_A, dst=OUT_B) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=0x11) / syn
        ),
        bytes(
            Ether()
            / IP(src=OUT_A, dst=OUT_B)
            / UDP(sport=2152, dport=2152)
            / GTP_U_Header(teid=0x11)
            / inner()
        ),
    ]
    (record,) = scan(sigs, policy, frames)
    assert (record["src"], record["dst"], record["packets_c2s"], record["packets_s2c"]) == (SUB, SRV, 2, 1)
    assert record["tunnel"] == [{"type": "gtp-u", "src": OUT_A, "dst": OUT_B, "id": 0x22}]


def test_scan_names_an_unsupported_link_type_once_and_writes_the_tunnel_in_csv(tmp_path):
    pcap = tmp_path / "user0.pcap"
    records = b"".join(struct.pack("<IIII", 1_700_000_000 + i, 0, 4, 4) + b"abcd" for i in range(3))
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147) + records)
    summary = run_cli("scan", str(pcap), "-o", str(tmp_path / "out.jsonl")).stderr.decode()
    assert summary.count("unsupported-linktype:147:USER0 3") == 1, summary
    csv_text = run_cli(
        "scan", str(ROOT / "pcaps" / "tunnel-gtpu.pcap"), "--format", "csv", "-q"
    ).stdout.decode()
    header, first = csv_text.splitlines()[:2]
    cell = next(csv.reader([first]))[header.split(",").index("tunnel")]
    assert cell == "gtp-u:192.0.2.10>192.0.2.1#4097"
