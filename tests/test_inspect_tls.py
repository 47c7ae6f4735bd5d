"""Tests for classifier.inspect.tls: ClientHello facts from TLS records arriving piecemeal."""

from __future__ import annotations

import random
import ssl
import struct

import pytest

from classifier.errors import MalformedError
from classifier.inspect.tls import (
    EXT_ALPN,
    EXT_ECH,
    EXT_PADDING,
    EXT_SERVER_NAME,
    EXT_SUPPORTED_VERSIONS,
    MAX_RECORD_LENGTH,
    ClientHello,
    is_grease,
    looks_like_tls,
    parse_client_hello,
    parse_client_hello_message,
)

# --- builders -------------------------------------------------------------------------------


def stdlib_client_hello(hostname: str | None = "www.tiktok.com") -> bytes:
    """A real ClientHello as OpenSSL sends it: the client's first flight, TLS records included."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if hostname is None:
        ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sock = ctx.wrap_bio(incoming, outgoing, server_hostname=hostname)
    with pytest.raises(ssl.SSLWantReadError):
        sock.do_handshake()
    return outgoing.read()


def ext(etype: int, body: bytes) -> bytes:
    return struct.pack(">HH", etype, len(body)) + body


def sni_ext(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(struct.pack(">BH", name_type, len(n)) + n for n in names)
    return ext(EXT_SERVER_NAME, struct.pack(">H", len(entries)) + entries)


def alpn_ext(*protocols: bytes) -> bytes:
    entries = b"".join(bytes([len(p)]) + p for p in protocols)
    return ext(EXT_ALPN, struct.pack(">H", len(entries)) + entries)


def versions_ext(*versions: int) -> bytes:
    body = b"".join(struct.pack(">H", v) for v in versions)
    return ext(EXT_SUPPORTED_VERSIONS, bytes([len(body)]) + body)


def hello_body(
    extensions: list[bytes] | None,
    ciphers: tuple[int, ...] = (0x1301, 0x1302, 0xC02F),
    legacy_version: int = 0x0303,
    session_id: bytes = b"\x55" * 32,
) -> bytes:
    body = struct.pack(">H", legacy_version) + bytes(range(32))
    body += bytes([len(session_id)]) + session_id
    body += struct.pack(">H", 2 * len(ciphers)) + b"".join(struct.pack(">H", c) for c in ciphers)
    body += b"\x01\x00"
    if extensions is not None:
        block = b"".join(extensions)
        body += struct.pack(">H", len(block)) + block
    return body


def handshake(body: bytes, htype: int = 1) -> bytes:
    return bytes([htype]) + len(body).to_bytes(3, "big") + body


def records(hs: bytes, sizes: list[int] | None = None, max_size: int = 2**14) -> bytes:
    """Frame handshake bytes into TLS records of the given fragment sizes (rest in max_size)."""
    out = bytearray()
    pos = 0
    sizes = list(sizes or [])
    while pos < len(hs):
        size = sizes.pop(0) if sizes else max_size
        frag = hs[pos : pos + size]
        out += struct.pack(">BHH", 22, 0x0301, len(frag)) + frag
        pos += size
    return bytes(out)


def split_records(data: bytes) -> list[bytes]:
    """Handshake fragments of each record of ``data`` (test helper, trusts its input)."""
    frags = []
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">H", data, pos + 3)
        frags.append(data[pos + 5 : pos + 5 + length])
        pos += 5 + length
    return frags


def simple_hello(**kw: object) -> bytes:
    exts = [sni_ext(b"www.tiktok.com"), alpn_ext(b"h2", b"http/1.1"), versions_ext(0x0304, 0x0303)]
    return records(handshake(hello_body(exts, **kw)))  # type: ignore[arg-type]


def assert_malformed(data: bytes, field: str) -> MalformedError:
    with pytest.raises(MalformedError) as info:
        parse_client_hello(data)
    assert info.value.layer == "tls"
    assert info.value.field == field, info.value
    return info.value


# --- real ClientHellos ----------------------------------------------------------------------


def test_stdlib_client_hello_facts():
    data = stdlib_client_hello()
    hello = parse_client_hello(data)
    assert isinstance(hello, ClientHello)
    assert hello.sni == "www.tiktok.com"
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.legacy_version == 0x0303
    assert 0x0304 in hello.versions
    assert hello.ech is False
    assert hello.cipher_suites >= 3
    assert hello.extensions[:1] == (EXT_SERVER_NAME,)
    assert {EXT_ALPN, EXT_SUPPORTED_VERSIONS} <= set(hello.extensions)
    # cipher suite count matches the raw list (OpenSSL sends no GREASE)
    body = split_records(data)[0][4:]
    sid_len = body[34]
    (cs_len,) = struct.unpack_from(">H", body, 35 + sid_len)
    assert hello.cipher_suites == cs_len // 2


def test_facts_are_frozen():
    hello = parse_client_hello(simple_hello())
    assert hello is not None
    with pytest.raises(AttributeError):
        hello.sni = "other"  # type: ignore[misc]
    assert not hasattr(hello, "__dict__")


def test_stdlib_client_hello_split_at_every_byte():
    data = stdlib_client_hello()
    full = parse_client_hello(data)
    assert full is not None and full.sni == "www.tiktok.com"
    for cut in range(len(data)):
        first, second = data[:cut], data[cut:]
        assert parse_client_hello(first) is None, cut
        assert parse_client_hello(first + second) == full


def test_stdlib_client_hello_without_sni():
    hello = parse_client_hello(stdlib_client_hello(hostname=None))
    assert hello is not None
    assert hello.sni is None
    assert EXT_SERVER_NAME not in hello.extensions
    assert hello.alpn == ("h2", "http/1.1")


def test_scapy_built_client_hello():
    from scapy.layers.tls.extensions import (
        ProtocolName,
        ServerName,
        TLS_Ext_ALPN,
        TLS_Ext_ServerName,
        TLS_Ext_SupportedVersion_CH,
    )
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.record import TLS

    ch = TLSClientHello(
        ciphers=[0x1301, 0x1302, 0xC02F],
        ext=[
            TLS_Ext_ServerName(servernames=[ServerName(servername=b"Example.COM")]),
            TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2")]),
            TLS_Ext_SupportedVersion_CH(versions=[0x0304, 0x0303]),
        ],
    )
    hello = parse_client_hello(bytes(TLS(msg=[ch])))
    assert hello == ClientHello(
        sni="example.com",
        alpn=("h2",),
        versions=(0x0304, 0x0303),
        legacy_version=0x0303,
        ech=False,
        cipher_suites=3,
        extensions=(EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS),
        cipher_bytes=bytes.fromhex("13011302c02f"),
        alpn_first=b"h2",
    )
    assert hello.cipher_list == (0x1301, 0x1302, 0xC02F)


# --- spanning records and segments ----------------------------------------------------------


def test_client_hello_over_three_records():
    data = stdlib_client_hello()
    (frag,) = split_records(data)
    third = len(frag) // 3
    three = records(frag, [third, third, len(frag) - 2 * third])
    assert len(split_records(three)) == 3
    expected = parse_client_hello(data)
    assert parse_client_hello(three) == expected
    for cut in range(len(three)):
        assert parse_client_hello(three[:cut]) is None, cut


def test_handshake_header_split_across_records():
    hs = handshake(hello_body([sni_ext(b"a.example")]))
    for first in (1, 2, 3, 4, 5):
        data = records(hs, [first])
        hello = parse_client_hello(data)
        assert hello is not None and hello.sni == "a.example"


def test_client_hello_larger_than_16k():
    padding = ext(EXT_PADDING, bytes(17000))
    body = hello_body([sni_ext(b"big.example"), padding, alpn_ext(b"h2")])
    hs = handshake(body)
    assert len(hs) > 2**14
    data = records(hs)
    assert len(split_records(data)) == 2
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.sni == "big.example"
    assert hello.alpn == ("h2",)
    assert hello.extensions == (EXT_SERVER_NAME, EXT_PADDING, EXT_ALPN)
    # second record header at 5 + 2**14: probe around it and across the whole stream
    boundary = 5 + 2**14
    for cut in [*range(0, len(data), 997), boundary - 1, boundary, boundary + 1, boundary + 5, len(data) - 1]:
        assert parse_client_hello(data[:cut]) is None, cut
    # the same message in small records
    small = records(hs, max_size=1000)
    assert len(split_records(small)) == 18
    assert parse_client_hello(small) == hello


def test_bytes_after_the_client_hello_are_ignored():
    data = simple_hello()
    ccs = b"\x14\x03\x03\x00\x01\x01"
    assert parse_client_hello(data + ccs) == parse_client_hello(data)
    assert parse_client_hello(data + b"\x17garbage") == parse_client_hello(data)


# --- extension facts ------------------------------------------------------------------------


def test_grease_values_removed():
    exts = [
        ext(0x0A0A, b""),
        sni_ext(b"g.example"),
        ext(0x1A1A, b"\x00"),
        versions_ext(0x2A2A, 0x0304, 0x0303),
        alpn_ext(b"h2"),
        ext(0xFAFA, b""),
    ]
    hello = parse_client_hello(records(handshake(hello_body(exts, ciphers=(0x3A3A, 0x1301, 0x1302)))))
    assert hello is not None
    assert hello.cipher_suites == 2
    assert hello.versions == (0x0304, 0x0303)
    assert hello.extensions == (EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS, EXT_ALPN)


@pytest.mark.parametrize(
    ("value", "grease"),
    [(0x0A0A, True), (0xFAFA, True), (0x1A1A, True), (0x0A1A, False), (0x1301, False), (0x0303, False)],
)
def test_is_grease(value, grease):
    assert is_grease(value) is grease


def test_grease_set_is_rfc8701_and_reads_alike_in_either_byte_order():
    assert {v for v in range(0x10000) if is_grease(v)} == {0x0A0A + 0x1010 * i for i in range(16)}
    assert all(int.from_bytes(v.to_bytes(2, "big"), "little") == v for v in range(0x10000) if is_grease(v))


def test_cipher_suite_count_leaves_out_every_grease_value():
    ciphers = (0x0A0A, 0x1301, 0xFAFA, 0x1302, 0x0A1A, 0x1A0A, 0xBABA, 0x00FF)
    hello = parse_client_hello(records(handshake(hello_body([sni_ext(b"c.example")], ciphers=ciphers))))
    assert hello is not None
    assert hello.cipher_suites == 5  # 0x0a1a and 0x1a0a are not GREASE
    assert hello.cipher_list == (0x1301, 0x1302, 0x0A1A, 0x1A0A, 0x00FF)


def test_repeated_extensions_listed_each_time_first_one_read():
    exts = [sni_ext(b"first.example"), ext(10, b"\x00\x02\x00\x17"), sni_ext(b"second.example"), ext(10, b"")]
    hello = parse_client_hello(records(handshake(hello_body(exts))))
    assert hello is not None
    assert hello.sni == "first.example"
    assert hello.extensions == (EXT_SERVER_NAME, 10, EXT_SERVER_NAME, 10)


def test_ech_extension_present():
    exts = [sni_ext(b"public.example"), ext(EXT_ECH, b"\x00\x00\x01\x00\x01" + bytes(40))]
    hello = parse_client_hello(records(handshake(hello_body(exts))))
    assert hello is not None
    assert hello.ech is True
    assert hello.sni == "public.example"
    assert EXT_ECH in hello.extensions
    assert parse_client_hello(simple_hello()).ech is False  # type: ignore[union-attr]


def test_no_sni_and_no_supported_versions():
    hello = parse_client_hello(records(handshake(hello_body([alpn_ext(b"http/1.1")], legacy_version=0x0301))))
    assert hello is not None
    assert hello.sni is None
    assert hello.versions == (0x0301,)
    assert hello.legacy_version == 0x0301


def test_no_extensions_block_at_all():
    hello = parse_client_hello(records(handshake(hello_body(None))))
    assert hello is not None
    assert (hello.sni, hello.alpn, hello.extensions) == (None, (), ())


def test_sni_uppercase_and_trailing_dot():
    hello = parse_client_hello(records(handshake(hello_body([sni_ext(b"WWW.TikTok.COM.")]))))
    assert hello is not None and hello.sni == "www.tiktok.com"


def test_sni_first_host_name_entry_wins():
    entries = struct.pack(">BH", 7, 3) + b"odd" + struct.pack(">BH", 0, 5) + b"first"
    entries += struct.pack(">BH", 0, 6) + b"second"
    body = ext(EXT_SERVER_NAME, struct.pack(">H", len(entries)) + entries)
    hello = parse_client_hello(records(handshake(hello_body([body]))))
    assert hello is not None and hello.sni == "first"


def test_sni_non_ascii_is_escaped_not_fatal():
    hello = parse_client_hello(records(handshake(hello_body([sni_ext("Bücher.example".encode())]))))
    assert hello is not None
    assert hello.sni == "b\\xc3\\xbccher.example"


# --- malformed ------------------------------------------------------------------------------


def test_looks_like_tls():
    data = stdlib_client_hello()
    assert looks_like_tls(data)
    assert looks_like_tls(data[:1])
    assert looks_like_tls(data[:5])
    assert not looks_like_tls(b"")
    assert not looks_like_tls(b"GET / HTTP/1.1\r\n")
    assert not looks_like_tls(b"\x16\x04")
    assert not looks_like_tls(b"\x16\x03\x01\x00\x05\x02")  # ServerHello
    assert not looks_like_tls(b"\x17\x03\x03")


def test_wrong_content_type_first_record():
    assert_malformed(b"\x17", "record.content_type")
    assert_malformed(b"\x15\x03\x03\x00\x02\x02\x28", "record.content_type")
    assert_malformed(b"GET / HTTP/1.1\r\n", "record.content_type")


def test_wrong_content_type_before_hello_complete():
    hs = handshake(hello_body([sni_ext(b"x.example")]))
    data = records(hs, [10])
    second = 5 + 10
    bad = data[:second] + b"\x17" + data[second + 1 :]
    assert_malformed(bad, "record.content_type")
    assert_malformed(data[:second] + b"\x17", "record.content_type")


def test_record_version_major():
    data = bytearray(simple_hello())
    data[1] = 4
    assert_malformed(bytes(data), "record.version")
    assert_malformed(bytes(data[:2]), "record.version")


def test_record_length_too_large():
    header = struct.pack(">BHH", 22, 0x0301, MAX_RECORD_LENGTH + 1)
    assert_malformed(header + b"\x01", "record.length")
    # exactly the limit is fine (need more)
    assert parse_client_hello(struct.pack(">BHH", 22, 0x0301, MAX_RECORD_LENGTH) + b"\x01") is None


def test_empty_record():
    assert_malformed(struct.pack(">BHH", 22, 0x0301, 0), "record.length")


def test_handshake_type_not_client_hello():
    assert_malformed(records(handshake(hello_body([]), htype=2)), "handshake.type")
    assert_malformed(b"\x16\x03\x01\x01\x00\x02", "handshake.type")  # fails on its first byte


def test_handshake_length_impossible():
    assert_malformed(b"\x16\x03\x01\x00\x04\x01\xff\xff\xff", "handshake.length")


def test_record_complete_but_body_missing_is_need_more():
    data = simple_hello()
    assert parse_client_hello(data[:-1]) is None
    assert parse_client_hello(data[:6]) is None


def _mutate_body(body: bytes, offset: int, new: bytes) -> bytes:
    return body[:offset] + new + body[offset + len(new) :]


def test_malformed_lengths_in_client_hello_body():
    body = hello_body([sni_ext(b"x.example"), alpn_ext(b"h2"), versions_ext(0x0304)])
    sid_at = 34
    cs_at = sid_at + 1 + 32
    comp_at = cs_at + 2 + 6
    ext_at = comp_at + 2

    def check(new_body: bytes, field: str) -> None:
        assert_malformed(records(handshake(new_body)), field)
        with pytest.raises(MalformedError) as info:
            parse_client_hello_message(new_body)
        assert info.value.field == field

    check(body[:20], "client_hello.random")
    check(_mutate_body(body, 0, b"\x02"), "client_hello.legacy_version")
    check(_mutate_body(body, sid_at, b"\x21"), "client_hello.session_id")
    check(_mutate_body(body, cs_at, b"\x00\x05"), "client_hello.cipher_suites")  # odd
    check(_mutate_body(body, cs_at, b"\x00\x00"), "client_hello.cipher_suites")  # empty
    check(_mutate_body(body, cs_at, b"\xff\xfe"), "client_hello.cipher_suites")  # overruns
    check(_mutate_body(body, comp_at, b"\x00"), "client_hello.compression_methods")
    check(body[:comp_at] + b"\xff\x00", "client_hello.compression_methods")
    check(_mutate_body(body, ext_at, b"\xff\xff"), "client_hello.extensions")
    check(body[: ext_at + 1], "client_hello.extensions")
    # first extension (server_name) claims more than the block holds
    check(_mutate_body(body, ext_at + 4, b"\x0f\xff"), "extension.length")
    # truncated extension header inside the block
    trunc = hello_body([sni_ext(b"x.example")])[: -len(sni_ext(b"x.example"))]
    trunc = trunc[:-2] + b"\x00\x03" + b"\x00\x00\x00"
    check(trunc, "extension.header")


@pytest.mark.parametrize(
    "sni_body",
    [
        b"",  # no list length
        b"\x00\x00",  # empty list
        b"\x00\x05\x00\x00\x09abc",  # list longer than the extension
        b"\x00\x08\x00\x00\x09abcde",  # host name overruns the list
        b"\x00\x02\x00\x00",  # truncated entry
        b"\x00\x03\x00\x00\x00",  # empty host_name
    ],
)
def test_malformed_sni_list(sni_body):
    body = hello_body([ext(EXT_SERVER_NAME, sni_body)])
    assert_malformed(records(handshake(body)), "extension.server_name")


@pytest.mark.parametrize(
    ("etype", "ebody", "field"),
    [
        (EXT_ALPN, b"\x00\x03\x05h2", "extension.alpn"),  # entry overruns list
        (EXT_ALPN, b"\x00\x00", "extension.alpn"),
        (EXT_ALPN, b"\x00\x01\x00", "extension.alpn"),  # empty name
        (EXT_ALPN, b"\x00\x04\x02h2", "extension.alpn"),  # list longer than extension
        (EXT_SUPPORTED_VERSIONS, b"\x03\x03\x04\x03", "extension.supported_versions"),
        (EXT_SUPPORTED_VERSIONS, b"\x04\x03\x04", "extension.supported_versions"),
        (EXT_SUPPORTED_VERSIONS, b"", "extension.supported_versions"),
    ],
)
def test_malformed_alpn_and_versions(etype, ebody, field):
    assert_malformed(records(handshake(hello_body([ext(etype, ebody)]))), field)


# --- fuzz -----------------------------------------------------------------------------------


def _fuzz_one(data: bytes) -> None:
    try:
        result = parse_client_hello(data)
    except MalformedError as exc:
        assert exc.layer == "tls" and exc.field and exc.detail
        return
    assert result is None or isinstance(result, ClientHello)


def _fuzz_message(body: bytes) -> None:
    try:
        result = parse_client_hello_message(body)
    except MalformedError as exc:
        assert exc.layer == "tls"
        return
    assert isinstance(result, ClientHello)


def test_fuzz_random_bytes_and_mutations():
    rng = random.Random(20240601)
    seeds = [
        stdlib_client_hello(),
        simple_hello(),
        records(handshake(hello_body([sni_ext(b"a.b"), ext(0x0A0A, b""), ext(EXT_ECH, b"xyz")])), [7, 9]),
    ]
    for _ in range(1500):
        _fuzz_one(rng.randbytes(rng.randrange(0, 300)))
        _fuzz_one(b"\x16\x03" + rng.randbytes(rng.randrange(0, 300)))
        _fuzz_message(rng.randbytes(rng.randrange(0, 200)))
    for seed in seeds:
        body = b"".join(split_records(seed))[4:]
        for _ in range(1500):
            data = bytearray(seed)
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            _fuzz_one(bytes(data))
            _fuzz_one(bytes(data[: rng.randrange(len(data))]))
            mbody = bytearray(body)
            mbody[rng.randrange(len(mbody))] = rng.randrange(256)
            _fuzz_message(bytes(mbody[: rng.randrange(len(mbody) + 1)]))
        for cut in range(len(body)):
            _fuzz_message(body[:cut])
