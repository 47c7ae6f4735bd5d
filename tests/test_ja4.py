"""JA4 / JA4S against the FoxIO specification's examples and the JA4 project's published values.

Sources (FoxIO-LLC/ja4): technical_details/JA4.md (the worked example t13d1516h2_8daaf6152771_e5627efa2ab1
and its variants without signature algorithms), technical_details/JA4S.md (t120400_c030_4e8089b08790),
python/test/testdata/chrome-cloudflare-quic-with-secrets.pcapng.json (JA4 of Chrome's ClientHello in
the original order JA4_ro, and JA4S t130200_1301_234ea6891581 with JA4S_r t130200_1301_0033,002b).
The ClientHellos below are built byte by byte with exactly the values those documents list, then
go through the project's own parser.
"""

from __future__ import annotations

import struct

import pytest

from classifier.inspect.ja4 import ja4, ja4s
from classifier.inspect.serverhello import parse_server_hello
from classifier.inspect.tls import parse_client_hello

CHROME_CIPHERS = [
    0x1301,
    0x1302,
    0x1303,
    0xC02B,
    0xC02F,
    0xC02C,
    0xC030,
    0xCCA9,
    0xCCA8,
    0xC013,
    0xC014,
    0x009C,
    0x009D,
    0x002F,
    0x0035,
]
CHROME_SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
# JA4_ro of the published capture: extensions in the order Chrome sent them
CHROME_EXTS = [
    0x0000,
    0x0017,
    0xFF01,
    0x000A,
    0x000B,
    0x0023,
    0x0010,
    0x0005,
    0x000D,
    0x0012,
    0x0033,
    0x002D,
    0x002B,
    0x001B,
    0x4469,
    0x0015,
]
GREASE = 0x3A3A


def u16s(values) -> bytes:
    return b"".join(struct.pack(">H", v) for v in values)


def vec16(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def ext_body(etype: int, sigalgs, alpn: bytes) -> bytes:
    if etype == 0x0000:
        name = b"cloudflare-quic.com"
        return vec16(b"\x00" + vec16(name))
    if etype == 0x0010:
        return vec16(bytes([len(alpn)]) + alpn + b"\x08http/1.1")
    if etype == 0x002B:
        return bytes([4]) + u16s([GREASE, 0x0304])
    if etype == 0x000D:
        return vec16(u16s(sigalgs))
    return b""


def build_hello(ciphers, exts, sigalgs=CHROME_SIGALGS, alpn=b"h2", version=0x0303) -> bytes:
    """A ClientHello record with GREASE in front of the ciphers and extensions, as Chrome sends it."""
    ext_bytes = u16s([GREASE]) + b"\x00\x00"
    for e in exts:
        body = ext_body(e, sigalgs, alpn)
        ext_bytes += u16s([e]) + vec16(body)
    body = (
        struct.pack(">H", version)
        + bytes(32)
        + b"\x00"
        + vec16(u16s([GREASE, *ciphers]))
        + b"\x01\x00"
        + vec16(ext_bytes)
    )
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + vec16(msg)


def hello(*args, **kw):
    parsed = parse_client_hello(build_hello(*args, **kw))
    assert parsed is not None
    return parsed


def test_published_chrome_value():
    """JA4 project test data: Chrome to cloudflare-quic.com."""
    assert ja4(hello(CHROME_CIPHERS, CHROME_EXTS)) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_order_of_ciphers_and_extensions_does_not_matter():
    """JA4 sorts both lists, so Chrome's randomised extension order gives one fingerprint."""
    shuffled = list(reversed(CHROME_EXTS))
    assert ja4(hello(list(reversed(CHROME_CIPHERS)), shuffled)) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_quic_prefix_and_version_without_supported_versions():
    exts = [e for e in CHROME_EXTS if e != 0x002B]
    assert ja4(hello(CHROME_CIPHERS, exts), quic=True).startswith("q12d1515h2_8daaf6152771_")


def test_spec_extension_hash_without_signature_algorithms():
    """JA4.md: 'If there are no signature algorithms ... the string ends without an underscore'
    (0005,...,ff01 = 6d807ffa2a79), for the spec's example extension list."""
    spec_exts = [
        0x001B,
        0x0000,
        0x0033,
        0x0010,
        0x4469,
        0x0017,
        0x002D,
        0x0005,
        0x0023,
        0x0012,
        0x002B,
        0xFF01,
        0x000B,
        0x000A,
        0x0015,
    ]
    got = ja4(hello(CHROME_CIPHERS, [*spec_exts, 0x000D], sigalgs=[]))
    assert got == "t13d1516h2_8daaf6152771_6d807ffa2a79"
    with_sigalgs = ja4(hello(CHROME_CIPHERS, [*spec_exts, 0x000D]))
    assert with_sigalgs == "t13d1516h2_8daaf6152771_e5627efa2ab1"  # the spec's example, hash and all


@pytest.mark.parametrize(
    "alpn,chars",
    [
        (b"http/1.1", "h1"),
        (b"h2", "h2"),
        (b"h", "hh"),
        (b"\xab", "ab"),
        (b"\xab\xcd", "ad"),
        (b"\x30\xab", "3b"),
        (b"\x30\x31\xab\xcd", "3d"),
        (b"\x30\xab\xcd\x31", "01"),
    ],
)
def test_alpn_characters_per_spec(alpn, chars):
    """The spec's examples of first/last ALPN characters, hex when not alphanumeric."""
    assert ja4(hello(CHROME_CIPHERS, CHROME_EXTS, alpn=alpn))[8:10] == chars


def test_no_sni_no_alpn_no_extensions():
    got = ja4(hello([0x002F], [], version=0x0301))
    assert got == "t10i010000_ba72b8082249_000000000000"  # sha256("002f"); no extensions: zeros


def server_hello(cipher: int, exts: list[tuple[int, bytes]], version: int = 0x0303) -> bytes:
    ext_bytes = b"".join(u16s([t]) + vec16(d) for t, d in exts)
    body = struct.pack(">H", version) + bytes(32) + b"\x00" + u16s([cipher]) + b"\x00" + vec16(ext_bytes)
    msg = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + vec16(msg)


def test_ja4s_spec_example():
    """JA4S.md: TLS 1.2, extensions 0005,0017,ff01,0000, cipher c030."""
    raw = server_hello(0xC030, [(0x0005, b""), (0x0017, b""), (0xFF01, b"\x00"), (0x0000, b"")])
    assert ja4s(parse_server_hello(raw)) == "t120400_c030_4e8089b08790"


def test_ja4s_published_tls13_value():
    """JA4 project test data: Cloudflare's TLS 1.3 ServerHello (key_share, supported_versions)."""
    raw = server_hello(0x1301, [(0x0033, b"\x00\x1d\x00\x20" + bytes(32)), (0x002B, b"\x03\x04")])
    assert ja4s(parse_server_hello(raw)) == "t130200_1301_234ea6891581"


def test_ja4s_alpn_and_piecemeal_records():
    raw = server_hello(0x1302, [(0x0010, b"\x00\x03\x02h2"), (0x002B, b"\x03\x04")])
    for n in range(len(raw)):
        assert parse_server_hello(raw[:n]) is None
    assert ja4s(parse_server_hello(raw + b"\x14\x03\x03\x00\x01\x01")).startswith("t1302h2_1302_")


def test_memoised_ja4_follows_every_input():
    """JA4 is memoised by the ClientHello's fingerprint inputs: a hello that differs in one of them
    (signature algorithms, cipher order, transport) must not get another's cached value."""
    base = ja4(hello(CHROME_CIPHERS, CHROME_EXTS))
    assert ja4(hello(CHROME_CIPHERS, CHROME_EXTS)) == base
    assert ja4(hello(CHROME_CIPHERS, CHROME_EXTS, sigalgs=CHROME_SIGALGS[:-1])) != base
    assert ja4(hello(CHROME_CIPHERS, CHROME_EXTS), quic=True) == "q" + base[1:]
    # cipher order does not change JA4 (sorted), but a different set does
    assert ja4(hello(CHROME_CIPHERS[::-1], CHROME_EXTS)) == base
    assert ja4(hello(CHROME_CIPHERS[:-1], CHROME_EXTS)) != base


def test_client_hello_keeps_fingerprint_lists_as_wire_bytes():
    """The parser slices the cipher and signature_algorithms lists (GREASE included) and decodes
    them only when a fingerprint asks, GREASE removed."""
    parsed = hello(CHROME_CIPHERS, CHROME_EXTS)  # GREASE first, as Chrome sends it
    assert parsed.cipher_bytes[:2] == struct.pack("!H", GREASE)
    assert parsed.cipher_list == tuple(CHROME_CIPHERS)
    assert parsed.cipher_suites == len(CHROME_CIPHERS)
    assert parsed.signature_algorithms == tuple(CHROME_SIGALGS)
