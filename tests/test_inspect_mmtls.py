"""mmtls recognition: the record and ClientHello layout Citizen Lab documented (2024)."""

import contextlib
import random

import pytest

from classifier.errors import MalformedError
from classifier.inspect.mmtls import looks_like_mmtls, parse_client_hello


def hello_1rtt() -> bytes:
    # 16 f1 04 | 01 6e | 00 00 01 6a | 01 03 f1 | 02 | c0 2b 00 a8 | random ... (366-byte record)
    body = bytes.fromhex("0000016a") + bytes.fromhex("0103f1") + b"\x02\xc0\x2b\x00\xa8" + bytes(354)
    assert len(body) == 0x16E
    return bytes.fromhex("16f104016e") + body


def hello_0rtt() -> bytes:
    body = bytes.fromhex("0000009d0103f10100a8") + bytes(0xA1 - 10)
    return bytes.fromhex("19f10400a1") + body


def test_one_rtt_client_hello():
    h = parse_client_hello(hello_1rtt())
    assert h.version == 0xF104 and h.mode == "1-rtt" and h.cipher_suites == (0xC02B, 0x00A8)
    assert h.record_length == 0x16E


def test_zero_rtt_and_old_version():
    h = parse_client_hello(hello_0rtt())
    assert h.mode == "0-rtt" and h.cipher_suites == (0x00A8,)
    old = bytearray(hello_1rtt())
    old[2] = 0x03
    assert parse_client_hello(bytes(old)).version == 0xF103


def test_needs_only_the_first_bytes():
    data = hello_1rtt()
    for cut in range(1, 17):
        assert looks_like_mmtls(data[:cut])
        assert parse_client_hello(data[:cut]) is None
    assert parse_client_hello(data[:17]) is not None


def test_tls_and_http_are_not_mmtls():
    assert not looks_like_mmtls(bytes.fromhex("160301020001"))
    assert not looks_like_mmtls(b"GET / HTTP/1.1\r\n")
    assert not looks_like_mmtls(bytes.fromhex("16f105"))


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda b: b[:5] + bytes.fromhex("00000099") + b[9:], "mmtls.client_hello.length"),
        (lambda b: b[:9] + b"\x02\x03\xf1" + b[12:], "mmtls.client_hello.type"),
        (lambda b: b[:12] + b"\x00" + b[13:], "mmtls.client_hello.cipher_suites"),
        (lambda b: b[:12] + b"\xff" + b[13:], "mmtls.client_hello.cipher_suites"),
    ],
)
def test_malformed(mutate, field):
    with pytest.raises(MalformedError) as exc:
        parse_client_hello(mutate(hello_1rtt()))
    assert exc.value.reason == field


def test_fuzz_never_raises_anything_else():
    rng = random.Random(5)
    seed = hello_1rtt()
    for _ in range(3000):
        b = bytearray(seed[: rng.randint(0, 40)])
        for _ in range(rng.randint(0, 3)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        with contextlib.suppress(MalformedError):
            parse_client_hello(bytes(b))
