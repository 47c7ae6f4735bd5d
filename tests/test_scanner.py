"""Scanner on hand-built packet sequences: orientation, reassembly on any port, DNS over TCP, TTLs."""

from __future__ import annotations

import gc
import ssl
import struct
import types

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.l2 import Ether

from classifier.pipeline import Scanner, ScanOptions

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
    q1 = bytes(DNS(id=1, qd=DNSQR(qname="www.tiktok.com")))
    q2 = bytes(DNS(id=2, qd=DNSQR(qname="example.org")))
    q = struct.pack("!H", len(q1)) + q1 + struct.pack("!H", len(q2)) + q2  # pipelined queries
    a1 = bytes(
        DNS(
            id=1,
            qr=1,
            qd=DNSQR(qname="www.tiktok.com"),
            an=[DNSRR(rrname="www.tiktok.com", type="A", rdata="203.0.113.80", ttl=30)],
        )
    )
    a2 = bytes(
        DNS(
            id=2,
            qr=1,
            qd=DNSQR(qname="example.org"),
            an=[DNSRR(rrname="example.org", type="A", rdata="203.0.113.81", ttl=30)],
        )
    )
    r = "198.51.100.53"
    run = Run(sigs, policy)
    run.send(tcp(C, r, 40004, 53, "S", 1))
    run.send(tcp(r, C, 53, 40004, "SA", 9, 2))
    run.send(tcp(C, r, 40004, 53, "PA", 2, 10, q))
    both = struct.pack("!H", len(a1)) + a1 + struct.pack("!H", len(a2)) + a2
    run.send(tcp(r, C, 53, 40004, "PA", 10, 2 + len(q), both))
    assert run.scanner.dnscache.answers == 2
    run.send(tcp(C, "203.0.113.80", 40005, 443, "S", 1), dt=5)
    run.send(tcp(C, "203.0.113.80", 40005, 443, "PA", 2, 0, client_hello(None)))
    run.send(tcp(C, "203.0.113.80", 40006, 443, "S", 1), dt=60)  # after the 30 s TTL
    records = {rec.client_port: rec for rec in run.done()}
    assert records[40004].attribution.app == "tiktok" and records[40004].facts.dns_responses == 2
    named = records[40005].attribution
    assert named.hostname == "www.tiktok.com" and named.hostname_source == "dns"
    assert named.app == "tiktok" and named.confidence == "medium"
    assert records[40006].attribution.hostname is None


def test_fragmented_udp_is_counted_and_reassembled(sigs, policy):
    answers = [
        DNSRR(rrname="www.tiktok.com", type="A", rdata=f"203.0.113.{i}", ttl=60) for i in range(1, 120)
    ]
    resp = (
        IP(src="198.51.100.53", dst=C, id=7)
        / UDP(sport=53, dport=40007)
        / DNS(id=3, qr=1, qd=DNSQR(qname="www.tiktok.com"), an=answers)
    )
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


def with_extension(record: bytes, ext_type: int, data: bytes) -> bytes:
    """A TLS ClientHello record with one more extension (lengths fixed up)."""
    body = record[9:]
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 1 + body[pos]
    ext_len = int.from_bytes(body[pos : pos + 2], "big")
    ext = struct.pack("!HH", ext_type, len(data)) + data
    body = body[:pos] + struct.pack("!H", ext_len + len(ext)) + body[pos + 2 :] + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return record[:3] + struct.pack("!H", len(hs)) + hs


ECH_OUTER = b"\x00" + b"\x00\x01\x00\x01" + b"\x07" + b"\x00\x20" + b"e" * 32 + b"\x00\x10" + b"p" * 16


def tls_flow(run, server, port, hello, cport):
    run.send(tcp(C, server, cport, port, "S", 1000))
    run.send(tcp(server, C, port, cport, "SA", 5000, 1001))
    run.send(tcp(C, server, cport, port, "PA", 1001, 5001, hello))


def dns_answer(run, name, addr, cport, extra=()):
    r = "198.51.100.53"
    an = [DNSRR(rrname=name, type="A", rdata=addr, ttl=300), *extra]
    run.send(IP(src=C, dst=r) / UDP(sport=cport, dport=53) / DNS(id=cport, qd=DNSQR(qname=name)))
    run.send(IP(src=r, dst=C) / UDP(sport=53, dport=cport) / DNS(id=cport, qr=1, qd=DNSQR(qname=name), an=an))


def test_ech_public_name_is_not_the_flows_name(sigs, policy):
    run = Run(sigs, policy)
    dns_answer(run, "www.tiktok.com", "203.0.113.90", 5301)
    hidden = with_extension(client_hello("cloudflare-ech.com"), 0xFE0D, ECH_OUTER)
    tls_flow(run, "203.0.113.90", 443, hidden, 40010)
    grease = with_extension(client_hello("www.tiktok.com"), 0xFE0D, ECH_OUTER)  # ECH GREASE
    tls_flow(run, "203.0.113.91", 443, grease, 40011)
    recs = {r.client_port: r for r in run.done()}
    a = recs[40010].attribution
    assert a.ech_public_name == "cloudflare-ech.com"
    assert a.hostname == "www.tiktok.com" and a.hostname_source == "dns" and a.app == "tiktok"
    assert [e.kind for e in a.evidence][:2] == ["ech", "dns"]
    g = recs[40011].attribution
    assert g.ech_public_name is None and g.hostname_source == "sni" and g.app == "tiktok"


def test_ech_public_name_learned_from_an_https_record(sigs, policy):
    from test_dnscache import https_rdata

    run = Run(sigs, policy)
    https = DNSRR(rrname="web.wechat.com", type=65, ttl=300, rdata=https_rdata(b"ech.example.net"))
    dns_answer(run, "web.wechat.com", "203.0.113.92", 5302, extra=[https])
    tls_flow(
        run, "203.0.113.92", 443, with_extension(client_hello("ech.example.net"), 0xFE0D, ECH_OUTER), 40012
    )
    tls_flow(run, "203.0.113.93", 443, client_hello("ech.example.net"), 40013)  # no ECH: a real name
    recs = {r.client_port: r for r in run.done()}
    a = recs[40012].attribution
    assert a.ech_public_name == "ech.example.net" and a.app == "wechat"
    assert "web.wechat.com published" in a.evidence[0].value
    assert recs[40013].attribution.hostname == "ech.example.net"


def test_encrypted_dns_kinds(sigs, policy):
    run = Run(sigs, policy)
    tls_flow(run, "203.0.113.94", 853, client_hello("dns.example"), 40020)  # DoT by port
    tls_flow(run, "203.0.113.95", 443, client_hello("dns.google"), 40021)  # DoH by name
    tls_flow(run, "8.8.8.8", 443, client_hello(None), 40022)  # DoH by resolver address, no SNI
    tls_flow(run, "8.8.8.8", 443, client_hello("www.example.org"), 40023)  # another name: not DoH
    recs = {r.client_port: r.attribution for r in run.done()}
    assert recs[40020].encrypted_dns == "dot"
    assert recs[40021].encrypted_dns == "doh" and recs[40022].encrypted_dns == "doh"
    assert recs[40023].encrypted_dns is None
    assert all(recs[p].app is None and recs[p].category is None for p in (40020, 40021, 40022))


def test_mmtls_long_connection_is_wechat(sigs, policy):
    from test_inspect_mmtls import hello_1rtt

    run = Run(sigs, policy)
    tls_flow(run, "203.205.147.171", 8080, hello_1rtt(), 40030)  # Tencent AS132203
    tls_flow(run, "203.0.113.96", 443, hello_1rtt(), 40031)  # unknown address
    recs = {r.client_port: r for r in run.done()}
    on_tencent = recs[40030].attribution
    assert recs[40030].facts.app_proto == "mmtls" and recs[40030].facts.greeting.mode == "1-rtt"
    assert on_tencent.app == "wechat" and on_tencent.confidence == "high"
    assert {e.kind for e in on_tencent.evidence} == {"mmtls", "prefix"}
    elsewhere = recs[40031].attribution
    assert elsewhere.app == "wechat" and elsewhere.confidence == "medium"
    assert recs[40031].decision.action == "log"  # 2025: WeChat was never covered again


def test_a_recorded_malformed_error_leaves_no_reference_cycle(sigs, policy):
    # the QUIC state keeps its errors; a traceback kept with one would hold frames that hold the
    # state and the flow: a cycle only the cyclic collector frees (rarely, during a scan)
    from aioquic.quic.packet import encode_quic_version_negotiation

    vn = encode_quic_version_negotiation(
        source_cid=b"\x01" * 8, destination_cid=b"\x02" * 8, supported_versions=[1]
    )
    was_on = gc.isenabled()
    gc.disable()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run = Run(sigs, policy)
        for sport in (40001, 40002):
            run.send(IP(src=C, dst="198.51.100.9") / UDP(sport=sport, dport=443) / vn)
        errors = dict(run.scanner.inspection.errors)
        run.done()
        del run
        gc.collect()
        frames = [o for o in gc.garbage if isinstance(o, types.FrameType)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_on:
            gc.enable()
    assert errors.get("quic.version_negotiation") == 2, errors
    assert not frames, [f.f_code.co_name for f in frames]
