"""DnsCache: CNAME chains back to the queried name, TTL in packet time, client preference."""

import socket

from scapy.layers.dns import DNS, DNSQR, DNSRR

from classifier.dnscache import DnsCache
from classifier.inspect.dns import parse_message

ME = b"\xc0\x00\x02\x0a"
OTHER = b"\xc0\x00\x02\x0b"
EDGE = socket.inet_aton("92.122.95.99")


def response(qname, answers):
    return parse_message(bytes(DNS(id=1, qr=1, qd=DNSQR(qname=qname), an=answers)))


def test_cname_chain_maps_address_to_queried_name():
    msg = response(
        "v16.tiktokcdn.com",
        [
            DNSRR(rrname="v16.tiktokcdn.com", type="CNAME", rdata="v16.tiktokcdn.com.edgesuite.net", ttl=300),
            DNSRR(rrname="v16.tiktokcdn.com.edgesuite.net", type="CNAME", rdata="a1.dscd.akamai.net", ttl=60),
            DNSRR(rrname="a1.dscd.akamai.net", type="A", rdata="92.122.95.99", ttl=20),
        ],
    )
    cache = DnsCache()
    assert cache.add(msg, 100.0, ME) == 1
    m = cache.lookup(EDGE, 105.0, ME)
    assert m.answer.name == "v16.tiktokcdn.com"
    assert m.answer.chain == ("v16.tiktokcdn.com", "v16.tiktokcdn.com.edgesuite.net", "a1.dscd.akamai.net")
    assert m.answer.expires == 120.0 and m.same_client  # the smallest TTL along the chain


def test_ttl_and_order_in_packet_time():
    cache = DnsCache()
    cache.add(
        response("a.example", [DNSRR(rrname="a.example", type="A", rdata="92.122.95.99", ttl=30)]), 100.0, ME
    )
    assert cache.lookup(EDGE, 99.0, ME) is None  # the flow started before the answer
    assert cache.lookup(EDGE, 130.0, ME) is not None
    assert cache.lookup(EDGE, 130.5, ME) is None  # expired


def test_same_client_preferred_and_others_reported():
    cache = DnsCache()
    cache.add(
        response("www.tiktok.com", [DNSRR(rrname="www.tiktok.com", type="A", rdata="92.122.95.99", ttl=60)]),
        10.0,
        ME,
    )
    cache.add(
        response(
            "unrelated.example", [DNSRR(rrname="unrelated.example", type="A", rdata="92.122.95.99", ttl=60)]
        ),
        20.0,
        OTHER,
    )
    mine = cache.lookup(EDGE, 30.0, ME)
    assert mine.answer.name == "www.tiktok.com" and mine.same_client
    assert mine.others == ("unrelated.example",)
    theirs = cache.lookup(EDGE, 30.0, b"\xc0\x00\x02\x63")
    assert theirs.answer.name == "unrelated.example" and not theirs.same_client


def test_cname_loop_terminates_and_queries_ignored():
    msg = response(
        "x.example",
        [
            DNSRR(rrname="x.example", type="CNAME", rdata="y.example"),
            DNSRR(rrname="y.example", type="CNAME", rdata="x.example"),
            DNSRR(rrname="y.example", type="A", rdata="92.122.95.99", ttl=30),
        ],
    )
    cache = DnsCache()
    assert cache.add(msg, 1.0, ME) == 1
    query = parse_message(bytes(DNS(id=2, qd=DNSQR(qname="x.example"))))
    assert cache.add(query, 1.0, ME) == 0


def test_bounded_size_drops_oldest():
    cache = DnsCache(max_addresses=3)
    for i in range(5):
        rr = DNSRR(rrname=f"n{i}.example", type="A", rdata=f"198.51.100.{i}", ttl=60)
        cache.add(response(f"n{i}.example", [rr]), 1.0, ME)
    assert len(cache) == 3 and cache.dropped == 2
    assert cache.lookup(socket.inet_aton("198.51.100.0"), 2.0, ME) is None
    assert cache.lookup(socket.inet_aton("198.51.100.4"), 2.0, ME).answer.name == "n4.example"


def test_ttl_zero_and_negative_bit_get_the_minimum_lifetime():
    msg = response("z.example", [DNSRR(rrname="z.example", type="A", rdata="92.122.95.99", ttl=0xFFFFFFFF)])
    cache = DnsCache(min_ttl=10.0)
    cache.add(msg, 50.0, ME)
    assert cache.lookup(EDGE, 59.0, ME) is not None  # used by the connection it was asked for
    assert cache.lookup(EDGE, 60.5, ME) is None  # not the 136 years the raw value says


def https_rdata(public_name: bytes, config_id: int = 7) -> bytes:
    import struct

    contents = (
        bytes([config_id])
        + b"\x00\x20"
        + b"\x00\x20"
        + b"k" * 32
        + b"\x00\x04\x00\x01\x00\x01"
        + b"\x00"
        + bytes([len(public_name)])
        + public_name
        + b"\x00\x00"
    )
    cfg = b"\xfe\x0d" + struct.pack("!H", len(contents)) + contents
    ech = struct.pack("!H", len(cfg)) + cfg
    return (
        b"\x00\x01\x00"
        + struct.pack("!HH", 1, 3)
        + b"\x02h2"
        + struct.pack("!HH", 4, 4)
        + socket.inet_aton("203.0.113.77")
        + struct.pack("!HH", 5, len(ech))
        + ech
    )


def test_https_record_hints_and_ech_public_name():
    from scapy.layers.dns import DNSRR as RR

    rr = RR(rrname="www.tiktok.com", type=65, ttl=60, rdata=https_rdata(b"cloudflare-ech.com"))
    msg = response("www.tiktok.com", [rr])
    assert msg.answers[0].rtype == 65
    cache = DnsCache()
    assert cache.add(msg, 10.0, ME) == 1  # the ipv4hint
    hit = cache.lookup(socket.inet_aton("203.0.113.77"), 11.0, ME)
    assert hit.answer.name == "www.tiktok.com"
    assert cache.ech_public_names == {"cloudflare-ech.com": ("www.tiktok.com", 7)}


def test_broken_https_record_reported_and_the_rest_kept():
    from scapy.layers.dns import DNSRR as RR

    from classifier.dnscache import resolve

    bad = RR(rrname="x.example", type=65, ttl=60, rdata=b"\x00\x01\x00\x00\x05\x00\x09oops")
    good = RR(rrname="x.example", type="A", rdata="198.51.100.9", ttl=60)
    resolutions, errors = resolve(response("x.example", [bad, good]))
    assert [e.reason for e in errors] == ["dns.svcb.param"]
    assert resolutions[0].addresses == ((socket.inet_aton("198.51.100.9"), 60),)


def _put_reference(by_addr, addr, name, chain, ts, expires, client, unbound, scope, cap=8):
    """``DnsCache._put`` as it was before its fast path (the entry filed last extended in place):
    every match found by a walk of the list, then the list filtered."""
    from classifier.dnscache import DnsAnswer

    lst = by_addr.pop(addr, None)
    if lst is None:
        lst = []
    else:
        extended = False
        for a in lst:
            if a.name == name and a.client == client and a.scope == scope:
                ts, expires, extended = a.ts, max(a.expires, expires), True
        if extended:
            lst = [a for a in lst if a.name != name or a.client != client or a.scope != scope]
        del lst[: max(0, len(lst) - cap + 1)]
    lst.append(DnsAnswer(name, chain, ts, expires, client, unbound, scope))
    by_addr[addr] = lst


def test_put_extends_as_the_general_walk_does():
    """The fast path (the same name, client and scope as the entry filed last) leaves every
    address's answers, their order and the addresses' order exactly as the general path would,
    over random runs that mix it with new names, other clients and scopes, and full lists."""
    import random

    rng = random.Random(11)
    names = ("a.example", "b.example", "c.example", *(f"n{i}.example" for i in range(9)))
    for _run in range(200):
        cache = DnsCache(max_addresses=10_000)
        reference: dict = {}
        ts = 0.0
        for _ in range(60):
            ts += rng.random()
            addr = rng.choice((EDGE, ME, OTHER))
            name = rng.choice(names)
            client = rng.choice((ME, OTHER))
            scope = rng.choice((None, None, ("gre", 1)))
            life = rng.choice((5.0, 50.0, 600.0))
            cache.remember(addr, name, ts, client, life, scope)
            _put_reference(reference, addr, name, (name,), ts, ts + life, client, None, scope)
            assert list(cache._by_addr) == list(reference)
            assert cache._by_addr == reference
