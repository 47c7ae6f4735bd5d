"""DNS state per tunnel: subscribers in different GTP-U TEIDs or VXLAN VNIs may use the same private
addresses, so a DNS answer (or a remembered SNI) seen in one tunnel names flows of that tunnel only,
and a response binds only to a query that crossed the same tunnel."""

from __future__ import annotations

import pickle

from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from test_scanner import Run, client_hello, tcp

from classifier.gateway import channel
from classifier.gateway.dnsshare import SharedDnsCache
from classifier.tunnels import Tunnel, client_scope

VTEP_A, VTEP_B = "198.51.100.1", "198.51.100.2"  # the two VTEPs every VNI runs between
ENB, SGW = "198.51.100.11", "198.51.100.20"  # a base station and the core's user plane
SUB, RESOLVER, SERVER = "192.0.2.7", "198.51.100.53", "203.0.113.80"  # the same in every tunnel
TIKTOK = "www.tiktok.com"


def vxlan(vni: int):
    """Wrap a packet in VXLAN ``vni``, outer addresses by the inner direction (client side is A)."""

    def wrap(pkt):
        up = pkt[IP].src == SUB
        outer = IP(src=VTEP_A if up else VTEP_B, dst=VTEP_B if up else VTEP_A)
        return outer / UDP(sport=49152, dport=4789) / VXLAN(vni=vni) / Ether() / pkt

    return wrap


def gtpu(uplink_teid: int):
    """GTP-U: the uplink TEID (the core's) names the subscriber; the downlink one is the base
    station's, here the uplink one + 0x1000."""

    def wrap(pkt):
        up = pkt[IP].src == SUB
        outer = IP(src=ENB if up else SGW, dst=SGW if up else ENB)
        teid = uplink_teid if up else uplink_teid + 0x1000
        return outer / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=teid) / pkt

    return wrap


def dns_exchange(run, wrap, txid=0x1234, cport=40100, answer=SERVER, respond=None):
    """The subscriber asks its resolver for www.tiktok.com; the answer crosses ``respond`` (default:
    the same tunnel)."""
    run.send(
        wrap(IP(src=SUB, dst=RESOLVER) / UDP(sport=cport, dport=53) / DNS(id=txid, qd=DNSQR(qname=TIKTOK)))
    )
    an = DNSRR(rrname=TIKTOK, type="A", rdata=answer, ttl=300)
    run.send(
        (respond or wrap)(
            IP(src=RESOLVER, dst=SUB)
            / UDP(sport=53, dport=cport)
            / DNS(id=txid, qr=1, qd=DNSQR(qname=TIKTOK), an=an)
        )
    )


def nameless_tls(run, wrap, cport):
    """A TLS connection without SNI to the answered address a moment later."""
    run.send(wrap(tcp(SUB, SERVER, cport, 443, "S", 1000)), dt=1)
    run.send(wrap(tcp(SERVER, SUB, 443, cport, "SA", 5000, 1001)))
    run.send(wrap(tcp(SUB, SERVER, cport, 443, "PA", 1001, 5001, client_hello(None))))


def by_port(records, cport):
    (flow,) = [f for f in records if f.client_port == cport]
    return flow


def test_a_dns_answer_names_flows_of_its_own_vxlan_vni_only(sigs, policy):
    run = Run(sigs, policy)
    dns_exchange(run, vxlan(100))
    nameless_tls(run, vxlan(100), 41000)  # the subscriber that asked
    nameless_tls(run, vxlan(200), 41001)  # another tenant's host with the same private address
    records = run.done()
    mine, theirs = by_port(records, 41000), by_port(records, 41001)
    assert mine.attribution.hostname == TIKTOK and mine.attribution.hostname_source == "dns"
    assert theirs.attribution.hostname is None
    assert theirs.decision.action != "block"


def test_a_dns_answer_names_flows_of_its_own_gtpu_teid_only(sigs, policy):
    """Two subscribers behind one base station: same outer addresses, different TEIDs."""
    run = Run(sigs, policy)
    dns_exchange(run, gtpu(0x11))
    nameless_tls(run, gtpu(0x11), 41000)
    nameless_tls(run, gtpu(0x22), 41001)
    records = run.done()
    assert by_port(records, 41000).attribution.hostname == TIKTOK
    assert by_port(records, 41001).attribution.hostname is None


def test_an_untunnelled_answer_names_no_tunnelled_flow_and_the_reverse(sigs, policy):
    run = Run(sigs, policy)
    dns_exchange(run, lambda pkt: pkt)
    nameless_tls(run, vxlan(100), 41000)
    nameless_tls(run, lambda pkt: pkt, 41001)
    records = run.done()
    assert by_port(records, 41000).attribution.hostname is None
    assert by_port(records, 41001).attribution.hostname == TIKTOK


def test_a_response_in_another_tunnel_does_not_answer_the_query(sigs, policy):
    """Same 5-tuple, id and question, but the response crossed VNI 200: unsolicited there, and the
    query of VNI 100 stays unanswered."""
    run = Run(sigs, policy)
    dns_exchange(run, vxlan(100), respond=vxlan(200))
    nameless_tls(run, vxlan(100), 41000)
    nameless_tls(run, vxlan(200), 41001)
    records = run.done()
    counts = run.scanner.inspection.queries.counts
    assert counts["bound"] == 0 and counts["dns-unsolicited"] == 1
    assert by_port(records, 41000).attribution.hostname is None
    theirs = by_port(records, 41001).attribution  # only the low-confidence, unbound name
    assert theirs.hostname_source == "dns-unsolicited"


def test_the_name_memory_is_per_tunnel_too(sigs, policy):
    """A client that sent an SNI to an address names its later nameless flows there, in its tunnel."""
    run = Run(sigs, policy)
    for wrap, cport in ((vxlan(100), 41000),):
        run.send(wrap(tcp(SUB, SERVER, cport, 443, "S", 1000)))
        run.send(wrap(tcp(SERVER, SUB, 443, cport, "SA", 5000, 1001)))
        run.send(wrap(tcp(SUB, SERVER, cport, 443, "PA", 1001, 5001, client_hello(TIKTOK))))
    nameless_tls(run, vxlan(100), 41001)
    nameless_tls(run, vxlan(200), 41002)
    records = run.done()
    assert by_port(records, 41001).attribution.hostname_source == "name-history"
    assert by_port(records, 41002).attribution.hostname is None


def test_workers_share_answers_with_their_tunnel():
    """The gateway's supervisor relays answers between queue workers: the tunnel goes with them."""
    published: list[tuple[bytes, tuple]] = []
    seen = SharedDnsCache(lambda kind, args: published.append((kind, args)))
    other = SharedDnsCache(lambda kind, args: None)
    server, client = bytes([203, 0, 113, 80]), bytes([192, 0, 2, 7])
    from classifier.dnscache import Resolution

    vni100 = client_scope((Tunnel("vxlan", bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2]), 100),))
    vni200 = client_scope((Tunnel("vxlan", bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2]), 200),))
    answer = (Resolution((TIKTOK,), ((server, 300),), None, ()),)
    seen.add_resolutions(answer, 100.0, client, None, vni100)
    seen.remember(bytes([203, 0, 113, 10]), "www.google.com", 100.0, client, 600.0, vni100)
    assert [k for k, _ in published] == [channel.DNS, channel.NAME]
    for kind, args in published:
        other.learn(kind, pickle.loads(pickle.dumps(args)))
    assert other.lookup(server, 101.0, client, vni100).answer.name == TIKTOK
    assert other.lookup(server, 101.0, client, vni200) is None
    assert other.lookup(server, 101.0, client) is None
    assert other.lookup(bytes([203, 0, 113, 10]), 101.0, client, vni200) is None
    seen.withdraw(answer, client, vni100)
    other.learn(*published[-1])
    assert other.lookup(server, 101.0, client, vni100) is None
