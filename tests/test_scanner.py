"""Scanner on hand-built packet sequences: orientation, reassembly on any port, DNS over TCP, TTLs."""

from __future__ import annotations

import ssl
import struct

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.l2 import Ether

from classifier.scan import Scanner, ScanOptions

C, S = "192.0.2.7", "71.18.1.10"  # client; a ByteDance (AS396986) server


def client_hello(name: str | None) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


class Run:
    def __init__(self, sigs, policy, **opts):
        self.records = []
        self.scanner = Scanner(sigs, policy, ScanOptions(**opts), self.records.append)
        self.scanner.start_input("test")
        self.t = 1_740_000_000.0  # 2025-02-19

    def send(self, pkt, dt=0.01):
        self.t += dt
        self.scanner.feed(self.t, 1, bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt))

    def done(self):
        self.scanner.finish()
        return self.records


def tcp(src, dst, sport, dport, flags, seq, ack=0, data=b""):
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / data


def test_clienthello_on_any_port_out_of_order_with_retransmission(sigs, policy):
    hello = client_hello("www.tiktok.com")
    a, b, c = hello[:50], hello[50:200], hello[200:]
    run = Run(sigs, policy)
    run.send(tcp(C, S, 40001, 9999, "S", 1000))
    run.send(tcp(S, C, 9999, 40001, "SA", 5000, 1001))
    run.send(tcp(C, S, 40001, 9999, "A", 1001, 5001))
    run.send(tcp(C, S, 40001, 9999, "PA", 1001 + 200, 5001, c))  # third part first
    run.send(tcp(C, S, 40001, 9999, "PA", 1001 + 50, 5001, b))
    run.send(tcp(C, S, 40001, 9999, "PA", 1001 + 50, 5001, b))  # retransmission
    assert run.scanner.table.live == 1
    flow = next(iter(run.scanner.table))
    assert flow.attribution is None  # still missing the first bytes
    run.send(tcp(C, S, 40001, 9999, "PA", 1001, 5001, a))
    assert flow.attribution is not None and flow.attribution.hostname == "www.tiktok.com"
    (r,) = run.done()
    assert r.decision.action == "block" and r.attribution.category == "hosting"  # PAFACA, announced
    assert r.c2s_pkts == 6 and r.s2c_pkts == 1


def test_orientation_from_syn_ack_when_the_syn_is_missing(sigs, policy):
    run = Run(sigs, policy)
    run.send(tcp(S, C, 443, 40002, "SA", 5000, 1001))
    run.send(tcp(C, S, 40002, 443, "PA", 1001, 5001, client_hello("m.tiktok.com")))
    (r,) = run.done()
    assert r.client_port == 40002 and r.server_port == 443
    assert r.attribution.hostname == "m.tiktok.com"


def test_port_reuse_after_close_is_a_new_flow(sigs, policy):
    run = Run(sigs, policy)
    for _ in range(2):
        run.send(tcp(C, S, 40003, 443, "S", 1000))
        run.send(tcp(S, C, 443, 40003, "SA", 5000, 1001))
        run.send(tcp(C, S, 40003, 443, "FA", 1001, 5001))
        run.send(tcp(S, C, 443, 40003, "FA", 5001, 1002))
    records = run.done()
    assert len(records) == 2 and records[0].end_reason == "closed"
    assert all(r.c2s_pkts == 2 and r.s2c_pkts == 2 for r in records)


def test_dns_over_tcp_two_messages_in_one_segment_name_a_later_flow(sigs, policy):
    q = bytes(DNS(id=1, qd=DNSQR(qname="www.tiktok.com")))
    a1 = bytes(DNS(id=1, qr=1, qd=DNSQR(qname="www.tiktok.com"),
                   an=[DNSRR(rrname="www.tiktok.com", type="A", rdata="203.0.113.80", ttl=30)]))
    a2 = bytes(DNS(id=2, qr=1, qd=DNSQR(qname="example.org"),
                   an=[DNSRR(rrname="example.org", type="A", rdata="203.0.113.81", ttl=30)]))
    r = "198.51.100.53"
    run = Run(sigs, policy)
    run.send(tcp(C, r, 40004, 53, "S", 1))
    run.send(tcp(r, C, 53, 40004, "SA", 9, 2))
    run.send(tcp(C, r, 40004, 53, "PA", 2, 10, struct.pack("!H", len(q)) + q))
    both = struct.pack("!H", len(a1)) + a1 + struct.pack("!H", len(a2)) + a2
    run.send(tcp(r, C, 53, 40004, "PA", 10, 2 + 2 + len(q), both))
    assert run.scanner.dnscache.answers == 2
    run.send(tcp(C, "203.0.113.80", 40005, 443, "S", 1), dt=5)
    run.send(tcp(C, "203.0.113.80", 40005, 443, "PA", 2, 0, client_hello(None)))
    run.send(tcp(C, "203.0.113.80", 40006, 443, "S", 1), dt=60)  # after the 30 s TTL
    records = {rec.client_port: rec for rec in run.done()}
    assert records[40004].attribution.app == "tiktok" and records[40004].facts["dns_responses"] == 2
    named = records[40005].attribution
    assert named.hostname == "www.tiktok.com" and named.hostname_source == "dns"
    assert named.app == "tiktok" and named.confidence == "medium"
    assert records[40006].attribution.hostname is None


def test_fragmented_udp_is_counted_and_reassembled(sigs, policy):
    answers = [DNSRR(rrname="www.tiktok.com", type="A", rdata=f"203.0.113.{i}", ttl=60)
               for i in range(1, 120)]
    resp = IP(src="198.51.100.53", dst=C, id=7) / UDP(sport=53, dport=40007) / DNS(
        id=3, qr=1, qd=DNSQR(qname="www.tiktok.com"), an=answers)
    frags = fragment(resp, fragsize=600)
    assert len(frags) >= 3
    run = Run(sigs, policy)
    query = DNS(id=3, qd=DNSQR(qname="www.tiktok.com"))
    run.send(IP(src=C, dst="198.51.100.53") / UDP(sport=40007, dport=53) / query)
    for f in reversed(frags[1:]):
        run.send(f)
    run.send(frags[0])
    (r,) = run.done()
    assert r.s2c_pkts == len(frags) and r.c2s_pkts == 1
    assert run.scanner.dnscache.answers == 119
    assert not run.scanner.inspection.errors
