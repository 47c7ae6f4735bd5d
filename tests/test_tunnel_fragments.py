"""Fragmented tunnel packets: the outer IP datagram is reassembled (bounded), then opened; inner
fragments are reassembled keyed by their tunnel; conflicting overlaps are malformed and dropped."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT
from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet import fragment as fragment4
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from test_scanner import client_hello

from classifier.flows import FlowConfig
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import flow_record

OUT_A, OUT_B = "198.51.100.1", "198.51.100.2"
OUT6_A, OUT6_B = "2001:db8:ff::1", "2001:db8:ff::2"
SUB, SRV, RESOLVER = "192.0.2.7", "203.0.113.9", "198.51.100.53"
NAME = "www.tiktok.com"


def handshake(wrap, cport=40000, name=NAME) -> list:
    """SYN, SYN-ACK and a ClientHello padded past one MTU: its tunnel packet must be fragmented."""
    hello = client_hello(name)
    return [
        wrap(IP(src=SUB, dst=SRV) / TCP(sport=cport, dport=443, flags="S", seq=1000)),
        wrap(IP(src=SRV, dst=SUB) / TCP(sport=443, dport=cport, flags="SA", seq=5000, ack=1001)),
        wrap(IP(src=SUB, dst=SRV) / TCP(sport=cport, dport=443, flags="PA", seq=1001, ack=5001) / hello),
    ]


def gre(inner):
    return IP(src=OUT_A, dst=OUT_B, id=0x4242) / GRE(proto=0x0800, key_present=1, key=7) / inner


def vxlan(inner):
    return (
        IP(src=OUT_A, dst=OUT_B, id=0x4343) / UDP(sport=49152, dport=4789) / VXLAN(vni=42) / Ether() / inner
    )


def fragmented(pkt, size=256, reverse=False) -> list:
    """The packet's outer IP datagram in fragments (IPv4 or IPv6)."""
    if IPv6 in pkt and pkt.firstlayer().__class__ is IPv6:
        frags = fragment6(IPv6(bytes(pkt.firstlayer()[IPv6])) / IPv6ExtHdrFragment(id=9), size + 48)
        frags = [IPv6(bytes(f)) for f in frags]
    else:
        frags = fragment4(IP(bytes(pkt)), fragsize=size)
    return list(reversed(frags)) if reverse else frags


def scan(sigs, policy, packets) -> tuple[Scanner, list[dict]]:
    records: list[dict] = []
    scanner = Scanner(sigs, policy, ScanOptions(flows=FlowConfig()), lambda f: records.append(flow_record(f)))
    for n, pkt in enumerate(packets):
        scanner.feed(1_740_000_000.0 + n * 0.01, 1, bytes(Ether() / pkt))
    scanner.finish()
    return scanner, records


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
@pytest.mark.parametrize("wrap,kind", [(gre, "gre"), (vxlan, "vxlan")])
def test_fragmented_outer_ipv4_is_reassembled_then_opened(sigs, policy, wrap, kind, reverse):
    syn, synack, hello = handshake(wrap)
    pieces = fragmented(hello, reverse=reverse)
    assert len(pieces) >= 3
    scanner, records = scan(sigs, policy, [syn, synack, *pieces])
    (rec,) = records  # one flow: the inner one; the outer datagram makes none
    assert rec["sni"] == NAME and rec["tunnel"][0]["type"] == kind
    assert (rec["src"], rec["sport"], rec["dst"], rec["dport"]) == (SUB, 40000, SRV, 443)
    assert (rec["packets_c2s"], rec["packets_s2c"]) == (2, 1)  # the whole tunnel packet counts once
    assert scanner.packets == 2 + len(pieces) and scanner.fragments == len(pieces)
    assert not scanner.malformed and not scanner.skipped


def test_fragmented_outer_ipv6_is_reassembled_then_opened(sigs, policy):
    def in6(inner):
        return IPv6(src=OUT6_A, dst=OUT6_B, nh=4) / inner

    syn, synack, hello = handshake(in6)
    _, records = scan(sigs, policy, [syn, synack, *fragmented(hello, reverse=True)])
    (rec,) = records
    assert rec["sni"] == NAME and rec["tunnel"] == [
        {"type": "4in6", "src": OUT6_A, "dst": OUT6_B, "id": None}
    ]


def test_inner_fragments_with_equal_ids_in_two_tunnels_never_mix(sigs, policy):
    """Two subscribers with the same private address get fragmented DNS answers with the same IP id,
    interleaved: each answer binds to its own query, in its own tunnel."""

    def gtpu(teid, enb):
        def wrap(inner):
            up = inner[IP].src == SUB
            outer = IP(src=enb if up else OUT_B, dst=OUT_B if up else enb)
            return outer / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=teid) / inner

        return wrap

    tunnels = [(gtpu(1, "198.51.100.11"), "www.tiktok.com"), (gtpu(2, "198.51.100.12"), "www.example.com")]
    queries, answers = [], []
    for wrap, name in tunnels:
        queries.append(
            wrap(IP(src=SUB, dst=RESOLVER) / UDP(sport=40100, dport=53) / DNS(id=7, qd=DNSQR(qname=name)))
        )
        an = [DNSRR(rrname=name, type="TXT", rdata="x" * 200) for _ in range(4)]
        an.append(DNSRR(rrname=name, type="A", rdata=SRV if "tiktok" in name else "203.0.113.10"))
        reply = (
            IP(src=RESOLVER, dst=SUB, id=0x5151)
            / UDP(sport=53, dport=40100)
            / DNS(id=7, qr=1, qd=DNSQR(qname=name), an=an)
        )
        answers.append([wrap(f) for f in fragment4(IP(bytes(reply)), fragsize=400)])
    interleaved = [f for pair in zip(*answers, strict=True) for f in pair]
    scanner, records = scan(sigs, policy, [*queries, *interleaved])
    assert scanner.inspection.queries.counts["bound"] == 2 and not scanner.malformed
    assert {(r["tunnel"][0]["src"], tuple(r["dns_queries"])) for r in records} == {
        ("198.51.100.11", ("www.tiktok.com",)),
        ("198.51.100.12", ("www.example.com",)),
    }
    subscriber, answered = bytes([192, 0, 2, 7]), bytes([203, 0, 113, 9])
    when = 1_740_000_000.5
    first = (("gtp-u", bytes([198, 51, 100, 11]), 1),)
    second = (("gtp-u", bytes([198, 51, 100, 12]), 2),)
    assert scanner.dnscache.lookup(answered, when, subscriber, first).answer.name == "www.tiktok.com"
    assert scanner.dnscache.lookup(answered, when, subscriber, second) is None


def test_conflicting_overlap_is_malformed_and_the_datagram_dropped(sigs, policy):
    syn, synack, hello = handshake(gre)
    pieces = fragmented(hello)
    forged = pieces[1].copy()
    forged[IP].payload = type(forged[IP].payload)(
        bytes(forged[IP].payload)[:8] + b"\xee" * (len(forged[IP].payload) - 8)
    )
    scanner, records = scan(sigs, policy, [syn, synack, pieces[0], forged, *pieces[1:]])
    assert scanner.malformed == {"ip.fragment_overlap": 1}
    (rec,) = records
    assert rec["sni"] is None  # nothing decided on a datagram the inspector cannot trust


def test_a_missing_fragment_leaves_no_flow_and_is_counted(sigs, policy):
    syn, synack, hello = handshake(gre)
    pieces = fragmented(hello)
    scanner, records = scan(sigs, policy, [syn, synack, *pieces[:-1]])
    (rec,) = records
    assert rec["sni"] is None and rec["packets_c2s"] == 1
    assert scanner.skipped["fragment-without-first"] == len(pieces) - 1


def test_a_fragmented_tunnel_inside_a_tunnel_is_counted_not_followed(sigs, policy):
    _, _, hello = handshake(gre)
    outer = [
        IP(src="198.51.100.21", dst=OUT_B) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=3) / f
        for f in fragmented(hello)
    ]
    scanner, records = scan(sigs, policy, outer)
    assert records == [] and scanner.skipped == {"fragmented-tunnel:nested:ip-proto:47": 1}


def test_the_fragment_captures_are_what_their_builder_makes(tmp_path):
    """pcaps/build_tunnel_fragments.py is deterministic: the committed captures are its output."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pcaps" / "build_tunnel_fragments.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    built = sorted(p.name for p in tmp_path.iterdir())
    assert built == sorted(p.name for p in (ROOT / "pcaps").glob("tunnel-*-fragments.pcap")), proc.stdout
    for name in built:
        assert (tmp_path / name).read_bytes() == (ROOT / "pcaps" / name).read_bytes(), name
