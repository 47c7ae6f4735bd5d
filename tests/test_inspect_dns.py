"""Tests for classifier.inspect.dns: messages, names, compression abuse, TCP framing."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRROPT

from classifier.errors import MalformedError
from classifier.inspect.dns import (
    CLASS_IN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_HTTPS,
    TYPE_NS,
    TYPE_OPT,
    TYPE_PTR,
    TYPE_SVCB,
    Message,
    Question,
    Record,
    decode_name,
    parse_message,
    split_tcp_stream,
)

# --- builders -------------------------------------------------------------------------------


def name(text: str) -> bytes:
    out = b""
    for label in text.split(".") if text else []:
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def ptr(offset: int) -> bytes:
    return struct.pack(">H", 0xC000 | offset)


def header(qd=0, an=0, ns=0, ar=0, ident=0xBEEF, flags=0x8180) -> bytes:
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def question(raw_name: bytes, qtype=TYPE_A, qclass=CLASS_IN) -> bytes:
    return raw_name + struct.pack(">HH", qtype, qclass)


def rr(raw_name: bytes, rtype: int, rdata: bytes, ttl=300, rclass=CLASS_IN) -> bytes:
    return raw_name + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def malformed(data: bytes) -> MalformedError:
    with pytest.raises(MalformedError) as info:
        parse_message(data)
    assert info.value.layer == "dns"
    return info.value


def name_error(data: bytes, offset: int) -> MalformedError:
    with pytest.raises(MalformedError) as info:
        decode_name(data, offset)
    assert info.value.layer == "dns"
    return info.value


# --- ordinary messages ----------------------------------------------------------------------


def test_a_response_from_scapy():
    pkt = DNS(
        id=0x1234,
        qr=1,
        rd=1,
        ra=1,
        qd=[DNSQR(qname="www.TikTok.com", qtype="A")],
        an=[DNSRR(rrname="www.tiktok.com", type="A", ttl=300, rdata="203.0.113.7")],
    )
    msg = parse_message(bytes(pkt))
    assert msg.id == 0x1234
    assert msg.is_response and not msg.truncated
    assert (msg.opcode, msg.rcode) == (0, 0)
    assert msg.questions == (Question("www.tiktok.com", TYPE_A, CLASS_IN),)
    assert msg.answers == (
        Record("www.tiktok.com", TYPE_A, CLASS_IN, 300, "203.0.113.7", bytes([203, 0, 113, 7])),
    )
    assert msg.authorities == () and msg.additionals == ()


def test_aaaa_and_cname_and_opt_from_scapy_compressed():
    pkt = DNS(
        id=7,
        qr=1,
        qd=[DNSQR(qname="v16.tiktokcdn.com", qtype="AAAA")],
        an=[
            DNSRR(rrname="v16.tiktokcdn.com", type="CNAME", ttl=60, rdata="v16.tiktokcdn.com.c.example.net"),
            DNSRR(rrname="v16.tiktokcdn.com.c.example.net", type="AAAA", ttl=20, rdata="2001:db8::5"),
        ],
        ar=[DNSRROPT(rclass=1232)],
    )
    plain = parse_message(bytes(pkt))
    compressed_bytes = bytes(pkt.compress())
    assert len(compressed_bytes) < len(bytes(pkt))
    msg = parse_message(compressed_bytes)
    assert msg == plain
    cname, aaaa = msg.answers
    assert (cname.rtype, cname.value, cname.ttl) == (TYPE_CNAME, "v16.tiktokcdn.com.c.example.net", 60)
    assert (aaaa.name, aaaa.rtype, aaaa.value) == (
        "v16.tiktokcdn.com.c.example.net",
        TYPE_AAAA,
        "2001:db8::5",
    )
    assert len(aaaa.rdata) == 16
    (opt,) = msg.additionals
    assert (opt.name, opt.rtype, opt.rclass, opt.value) == ("", TYPE_OPT, 1232, None)


def test_query_flags_and_rcode():
    flags = (5 << 11) | 0x0200 | 0x0003  # opcode 5 (UPDATE), TC, NXDOMAIN; query
    msg = parse_message(header(qd=1, flags=flags, ident=9) + question(name("a.example")))
    assert msg.id == 9
    assert msg.is_response is False
    assert msg.opcode == 5
    assert msg.truncated is True
    assert msg.rcode == 3


def test_cname_chain_with_compression():
    data = header(qd=1, an=3) + question(name("www.tiktok.com"))
    a1_rdata_at = len(data) + 2 + 10
    rdata1 = name("tiktok.map.fastly.net")
    data += rr(ptr(12), TYPE_CNAME, rdata1, ttl=3600)
    a2_rdata_at = len(data) + 2 + 10
    rdata2 = b"\x01a" + ptr(a1_rdata_at + 7)  # "a" + "map.fastly.net"
    data += rr(ptr(a1_rdata_at), TYPE_CNAME, rdata2, ttl=30)
    data += rr(ptr(a2_rdata_at), TYPE_A, bytes([151, 101, 1, 1]), ttl=5)
    msg = parse_message(data)
    names = [(r.name, r.rtype, r.value, r.ttl) for r in msg.answers]
    assert names == [
        ("www.tiktok.com", TYPE_CNAME, "tiktok.map.fastly.net", 3600),
        ("tiktok.map.fastly.net", TYPE_CNAME, "a.map.fastly.net", 30),
        ("a.map.fastly.net", TYPE_A, "151.101.1.1", 5),
    ]
    assert msg.answers[1].rdata == rdata2  # raw, pointers and all
    # the per-message name cache gives the same answers as decoding each name on its own
    assert decode_name(data, a2_rdata_at) == ("a.map.fastly.net", a2_rdata_at + len(rdata2))


@pytest.mark.parametrize("rtype", [TYPE_NS, TYPE_PTR, 39])
def test_name_valued_types(rtype):
    data = header(qd=1, an=1) + question(name("x.example")) + rr(ptr(12), rtype, b"\x02ns" + ptr(14))
    (record,) = parse_message(data).answers
    assert record.value == "ns.example"


@pytest.mark.parametrize("rtype", [TYPE_SVCB, TYPE_HTTPS, 16])
def test_other_types_keep_raw_rdata(rtype):
    rdata = b"\x00\x01\x00\x00\x01\x00\x03\x02h2"
    data = header(qd=1, an=1) + question(name("x.example"), qtype=rtype) + rr(ptr(12), rtype, rdata)
    (record,) = parse_message(data).answers
    assert record.value is None
    assert record.rdata == rdata
    assert record.rtype == rtype


@pytest.mark.parametrize("ttl", [0, 1, 300, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
def test_ttl_values_unsigned(ttl):
    data = (
        header(qd=1, an=1) + question(name("t.example")) + rr(ptr(12), TYPE_A, b"\x01\x02\x03\x04", ttl=ttl)
    )
    assert parse_message(data).answers[0].ttl == ttl


def test_trailing_garbage_ignored():
    data = header(qd=1, an=1) + question(name("g.example")) + rr(ptr(12), TYPE_A, b"\x0a\x00\x00\x01")
    assert parse_message(data + b"\xff" * 17) == parse_message(data)


def test_mdns_cache_flush_class_still_gives_address():
    data = header(an=1) + rr(name("printer.local"), TYPE_A, b"\xc0\xa8\x01\x02", rclass=0x8001)
    assert parse_message(data).answers[0].value == "192.168.1.2"


def test_records_in_every_section():
    data = header(qd=1, an=1, ns=1, ar=1) + question(name("s.example"))
    data += rr(ptr(12), TYPE_A, b"\x01\x01\x01\x01")
    data += rr(name("example"), TYPE_NS, name("ns1.example"))
    data += rr(name("ns1.example"), TYPE_AAAA, bytes(15) + b"\x01")
    msg = parse_message(data)
    assert [r.value for r in msg.answers + msg.authorities + msg.additionals] == [
        "1.1.1.1",
        "ns1.example",
        "::1",
    ]


# --- names ----------------------------------------------------------------------------------


def test_decode_name_offsets_and_normalization():
    data = b"\x00" * 4 + b"\x03WWW\x06TikTok\x03COM\x00" + b"\x02mx" + ptr(8) + b"\x00"
    assert decode_name(data, 4) == ("www.tiktok.com", 20)
    assert decode_name(data, 20) == ("mx.tiktok.com", 25)  # pointer: offset after the 2 pointer bytes
    assert decode_name(b"\x00", 0) == ("", 1)  # root


def test_label_with_dot_and_non_ascii_escaped():
    assert decode_name(b"\x03a.b\x03com\x00", 0) == ("a\\x2eb.com", 9)
    assert decode_name(b"\x04caf\xe9\x00", 0) == ("caf\\xe9", 6)
    assert decode_name(b"\x03A\\b\x00", 0) == ("a\\x5cb", 5)


def test_pointer_loop_two_pointers():
    data = header(qd=1) + ptr(14) + ptr(12) + b"\x00\x01\x00\x01"
    assert malformed(data).field == "name.pointer"
    assert name_error(data, 14).field == "name.pointer"


def test_self_pointer():
    data = header(qd=1) + ptr(12) + b"\x00\x01\x00\x01"
    assert malformed(data).field == "name.pointer"


def test_pointer_into_own_labels():
    # "a" then a pointer back to its own first label: points at the sequence start, a loop
    data = header(qd=1) + b"\x01a" + ptr(12) + b"\x00\x01\x00\x01"
    assert malformed(data).field == "name.pointer"


def test_pointer_forward():
    data = header(qd=1, an=1) + question(ptr(18)) + b"\x01z\x00" + b"\x00"
    assert name_error(data, 12).field == "name.pointer"
    assert decode_name(data, 18) == ("z", 21)
    assert malformed(data).field == "name.pointer"


def test_too_many_pointer_hops():
    data = b"\x00"  # root at 0
    for i in range(200):
        data += ptr(max(0, len(data) - 2) if i else 0)
    last = len(data) - 2
    assert name_error(data, last).field == "name.pointer"
    assert decode_name(data, 3) == ("", 5)  # a short chain is fine


def test_truncated_pointer_and_label():
    assert name_error(b"\x01a\xc0", 0).field == "name.pointer"
    assert name_error(b"\x05ab", 0).field == "name.label"
    assert name_error(b"\x01a", 0).field == "name.label"
    assert name_error(b"\x00", 1).field == "name.offset"


@pytest.mark.parametrize("length_byte", [0x40, 0x41, 0x80, 0xBF])
def test_extended_label_types_rejected(length_byte):
    data = header(qd=1) + bytes([length_byte]) + b"abc\x00\x00\x01\x00\x01"
    err = malformed(data)
    assert err.field == "name.label"


def test_name_length_limit():
    ok = b"".join(bytes([n]) + b"a" * n for n in (63, 63, 63, 61)) + b"\x00"
    assert len(ok) == 255
    text, end = decode_name(ok, 0)
    assert end == 255 and len(text) == 253
    too_long = b"".join(bytes([63]) + b"b" * 63 for _ in range(5)) + b"\x00"
    assert name_error(too_long, 0).field == "name.length"
    over_by_one = b"".join(bytes([n]) + b"a" * n for n in (63, 63, 63, 62)) + b"\x00"
    assert name_error(over_by_one, 0).field == "name.length"


def test_name_length_limit_through_compression():
    long_name = b"".join(bytes([n]) + b"a" * n for n in (63, 63, 63, 50)) + b"\x00"  # 244 bytes
    data = header(qd=2) + question(long_name)
    second = b"\x0c" + b"c" * 12 + ptr(12)  # 13 + 244 > 255
    data += question(second)
    assert malformed(data).field == "name.length"
    assert name_error(data, 12 + len(long_name) + 4).field == "name.length"
    exact = header(qd=2) + question(long_name) + question(b"\x0a" + b"c" * 10 + ptr(12))  # 11 + 244 = 255
    assert parse_message(exact).questions[1].name.startswith("cccccccccc.aaa")


# --- malformed messages ---------------------------------------------------------------------


def test_header_too_short():
    assert malformed(b"\x00" * 11).field == "header.length"


@pytest.mark.parametrize(
    ("counts", "field"),
    [
        ({"qd": 2}, "question.count"),
        ({"qd": 1, "an": 2}, "answer.count"),
        ({"qd": 1, "an": 1, "ns": 1}, "authority.count"),
        ({"qd": 1, "an": 1, "ar": 3}, "additional.count"),
    ],
)
def test_counts_exceed_message(counts, field):
    body = question(name("c.example"))
    if counts.get("an"):
        body += rr(ptr(12), TYPE_A, b"\x01\x02\x03\x04")
    assert malformed(header(**counts) + body).field == field


def test_truncated_answer():
    full = header(qd=1, an=1) + question(name("tr.example")) + rr(ptr(12), TYPE_A, b"\x01\x02\x03\x04")
    assert parse_message(full).answers[0].value == "1.2.3.4"
    q_end = 12 + len(name("tr.example")) + 4
    assert malformed(full[:-1]).field == "answer.rdlength"
    assert malformed(full[: q_end + 5]).field == "answer.fixed"
    assert malformed(full[: q_end + 1]).field == "name.pointer"
    assert malformed(full[:q_end]).field == "answer.count"
    assert malformed(full[: q_end - 1]).field == "question.fixed"
    for cut in range(12, len(full)):
        with pytest.raises(MalformedError):
            parse_message(full[:cut])


@pytest.mark.parametrize(("rtype", "size"), [(TYPE_A, 3), (TYPE_A, 16), (TYPE_AAAA, 4), (TYPE_AAAA, 17)])
def test_address_rdlength_must_fit(rtype, size):
    data = header(qd=1, an=1) + question(name("x.example")) + rr(ptr(12), rtype, bytes(size))
    err = malformed(data)
    assert err.field == "answer.rdlength"


def test_cname_target_overruns_rdata():
    rdata = name("target.example")
    data = header(qd=1, an=1) + question(name("x.example"))
    data += ptr(12) + struct.pack(">HHIH", TYPE_CNAME, CLASS_IN, 60, 4) + rdata
    assert malformed(data).field == "answer.rdata"
    empty = header(an=1) + rr(name("x"), TYPE_CNAME, b"")
    assert malformed(empty).field == "answer.rdata"


# --- TCP framing ----------------------------------------------------------------------------


def _framed(msg: bytes) -> bytes:
    return struct.pack(">H", len(msg)) + msg


def test_split_tcp_stream_two_and_a_partial():
    m1 = bytes(DNS(id=1, qd=[DNSQR(qname="one.example")]))
    m2 = bytes(
        DNS(id=2, qr=1, qd=[DNSQR(qname="two.example")], an=[DNSRR(rrname="two.example", rdata="192.0.2.2")])
    )
    m3 = bytes(DNS(id=3, qd=[DNSQR(qname="three.example")]))
    stream = _framed(m1) + _framed(m2) + _framed(m3)
    segment = stream[: len(_framed(m1)) + len(_framed(m2)) + 5]
    messages, used = split_tcp_stream(segment)
    assert messages == [m1, m2]
    assert used == len(_framed(m1)) + len(_framed(m2))
    assert [parse_message(m).id for m in messages] == [1, 2]
    assert parse_message(messages[1]).answers[0].value == "192.0.2.2"
    rest, used2 = split_tcp_stream(stream[used:])
    assert rest == [m3] and used2 == len(_framed(m3))


def test_split_tcp_stream_edges():
    assert split_tcp_stream(b"") == ([], 0)
    assert split_tcp_stream(b"\x00") == ([], 0)
    assert split_tcp_stream(b"\x00\x05abc") == ([], 0)
    assert split_tcp_stream(b"\x00\x00\x00\x01x\x00") == ([b"", b"x"], 5)


# --- fuzz -----------------------------------------------------------------------------------


def _fuzz_one(data: bytes) -> None:
    try:
        result = parse_message(data)
    except MalformedError as exc:
        assert exc.layer == "dns" and exc.field
        return
    assert isinstance(result, Message)


def test_fuzz_random_bytes_and_mutations():
    rng = random.Random(53)
    seeds = [
        bytes(
            DNS(
                id=7,
                qr=1,
                qd=[DNSQR(qname="v16.tiktokcdn.com", qtype="AAAA")],
                an=[
                    DNSRR(rrname="v16.tiktokcdn.com", type="CNAME", rdata="v16.tiktokcdn.com.c.example.net"),
                    DNSRR(rrname="v16.tiktokcdn.com.c.example.net", type="AAAA", rdata="2001:db8::5"),
                    DNSRR(rrname="v16.tiktokcdn.com.c.example.net", type="A", rdata="192.0.2.1"),
                ],
                ar=[DNSRROPT(rclass=1232)],
            ).compress()
        ),
        header(qd=1, an=1) + question(name("x.example")) + rr(ptr(12), TYPE_NS, b"\x02ns" + ptr(14)),
    ]
    for _ in range(3000):
        blob = rng.randbytes(rng.randrange(0, 120))
        _fuzz_one(blob)
        _fuzz_one(header(qd=rng.randrange(3), an=rng.randrange(3)) + blob)
        if blob:
            try:
                text, end = decode_name(blob, rng.randrange(len(blob)))
            except MalformedError:
                pass
            else:
                assert isinstance(text, str) and 0 < end <= len(blob)
        messages, used = split_tcp_stream(blob)
        assert 0 <= used <= len(blob) and sum(len(m) + 2 for m in messages) == used
    for seed in seeds:
        for _ in range(3000):
            data = bytearray(seed)
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            _fuzz_one(bytes(data))
            _fuzz_one(bytes(data[: rng.randrange(len(data) + 1)]))
