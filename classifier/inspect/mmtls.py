"""WeChat's mmtls framing: recognise a client's first mmtls record.

mmtls is Tencent's TLS 1.3 derivative that WeChat uses on its long and short connections (TCP
80/443/8080) instead of TLS, so those flows carry no SNI. Its records start like TLS records but
with version bytes 0xf1 0x03 / 0xf1 0x04, and a ClientHello body starts with a 4-byte section
length and the constant 01 03 f1 (Citizen Lab, "Should We Chat, Too?", 2024, and
citizenlab/wechat-security-report docs/mmtls-network-format.md). Only the first few bytes are
needed to recognise it; nothing in it is decrypted. Which app it names, and how surely, is data
(``signatures/protocols.toml``, entry ``mmtls``); this module registers how to recognise it.
"""

from __future__ import annotations

from dataclasses import dataclass

from classifier.errors import MalformedError
from classifier.inspect.registry import AppProtocol, register

RECORD_HANDSHAKE = 0x16  # 1-RTT handshake
RECORD_EARLY = 0x19  # 0-RTT handshake (PSK resumption)
VERSIONS = (0xF103, 0xF104)
_HELLO_CONSTANT = b"\x01\x03\xf1"
_HEADER = 5


@dataclass(frozen=True, slots=True)
class MmtlsHello:
    """The facts a client's first mmtls record shows."""

    version: int  # record version: 0xf103 or 0xf104
    mode: str  # "1-rtt" (record 0x16) or "0-rtt" (record 0x19)
    record_length: int
    cipher_suites: tuple[int, ...]


def looks_like_mmtls(data: bytes) -> bool:
    """First bytes of a stream: an mmtls handshake record header (judges only what is present)."""
    n = len(data)
    if n == 0 or data[0] not in (RECORD_HANDSHAKE, RECORD_EARLY):
        return False
    if n > 1 and data[1] != 0xF1:
        return False
    return not (n > 2 and data[2] not in (0x03, 0x04))


def parse_client_hello(data: bytes) -> MmtlsHello | None:
    """The client's first mmtls record; None until its first bytes are all present."""
    if not looks_like_mmtls(data):
        raise MalformedError("mmtls", "record.header", "not an mmtls handshake record")
    if len(data) < _HEADER + 4 + 3 + 1:
        return None
    length = (data[3] << 8) | data[4]
    section = int.from_bytes(data[5:9], "big")
    if section + 4 != length:
        raise MalformedError(
            "mmtls", "client_hello.length", f"section length {section} does not fit record length {length}"
        )
    if data[9:12] != _HELLO_CONSTANT:
        raise MalformedError("mmtls", "client_hello.type", f"bytes {data[9:12].hex()} are not 01 03 f1")
    count = data[12]
    if count == 0 or 13 + 2 * count > _HEADER + length:
        raise MalformedError("mmtls", "client_hello.cipher_suites", f"{count} cipher suites do not fit")
    if len(data) < 13 + 2 * count:
        return None
    suites = tuple((data[13 + 2 * i] << 8) | data[14 + 2 * i] for i in range(count))
    return MmtlsHello(
        version=(data[1] << 8) | data[2],
        mode="1-rtt" if data[0] == RECORD_HANDSHAKE else "0-rtt",
        record_length=length,
        cipher_suites=suites,
    )


def describe(hello: MmtlsHello) -> str:
    """The evidence text of an mmtls greeting."""
    return f"mmtls {hello.mode} ClientHello, record version {hello.version:#06x}"


PROTOCOL = register(AppProtocol("mmtls", looks_like_mmtls, parse_client_hello, describe))
