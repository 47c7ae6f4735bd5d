"""TLS ServerHello inspection: just what a JA4S fingerprint needs.

The server's first bytes are read only for a fingerprint, never for a name or a verdict, so this
parser keeps only the version, the chosen cipher suite, the extension types in order and the chosen
ALPN protocol. Like ``tls.parse_client_hello`` it answers ``None`` while the message is still
spread over records and segments not yet seen, and ``MalformedError`` for bytes that are not one.
"""

from __future__ import annotations

from dataclasses import dataclass

from classifier.errors import MalformedError
from classifier.inspect.tls import (
    CONTENT_TYPE_HANDSHAKE,
    EXT_ALPN,
    EXT_SUPPORTED_VERSIONS,
    MAX_RECORD_LENGTH,
    is_grease,
)

__all__ = ["ServerHello", "parse_server_hello"]

HANDSHAKE_SERVER_HELLO = 2
# version, random, session id <0..32>, cipher suite, compression, extensions <0..2^16-1>
MAX_SERVER_HELLO_LENGTH = 2 + 32 + 1 + 32 + 2 + 1 + 2 + 65535


@dataclass(frozen=True, slots=True)
class ServerHello:
    """The server's choices, as JA4S reads them."""

    version: int  # supported_versions' selected version if present, else legacy_version
    cipher_suite: int
    extensions: tuple[int, ...]  # types in order, GREASE removed
    alpn: bytes  # the chosen protocol (b"" when none)


def _err(field: str, detail: str) -> MalformedError:
    return MalformedError("tls", field, detail)


def parse_server_hello(data: bytes) -> ServerHello | None:
    """The ServerHello at the start of the server's stream, or ``None`` until it is whole."""
    n = len(data)
    pos = 0
    hs = bytearray()
    while n - pos >= 5:
        if data[pos] != CONTENT_TYPE_HANDSHAKE:
            raise _err("server_hello.record", f"content type {data[pos]} before the ServerHello ended")
        if data[pos + 1] != 3:
            raise _err("server_hello.record", f"record version major {data[pos + 1]}, expected 3")
        rlen = (data[pos + 3] << 8) | data[pos + 4]
        if rlen == 0 or rlen > MAX_RECORD_LENGTH:
            raise _err("server_hello.record", f"record length {rlen}")
        hs += data[pos + 5 : pos + 5 + rlen]
        pos += 5 + rlen
        if not hs:
            return None
        if hs[0] != HANDSHAKE_SERVER_HELLO:
            raise _err("server_hello.type", f"handshake type {hs[0]}, expected 2 (ServerHello)")
        if len(hs) >= 4:
            length = (hs[1] << 16) | (hs[2] << 8) | hs[3]
            if length > MAX_SERVER_HELLO_LENGTH:
                raise _err("server_hello.length", f"handshake length {length} too large for a ServerHello")
            if len(hs) >= 4 + length:
                return _server_hello(bytes(hs[4 : 4 + length]))
    if pos < n and data[pos] != CONTENT_TYPE_HANDSHAKE:
        raise _err("server_hello.record", f"content type {data[pos]} before the ServerHello ended")
    return None


def _server_hello(b: bytes) -> ServerHello:
    n = len(b)
    if n < 35 or b[0] != 3:
        raise _err("server_hello.version", "body too short or version major not 3")
    legacy = (b[0] << 8) | b[1]
    pos = 35 + b[34]
    if pos + 3 > n:
        raise _err("server_hello.cipher_suite", "message ends before the cipher suite")
    cipher = (b[pos] << 8) | b[pos + 1]
    pos += 3  # cipher suite, compression method
    version = legacy
    alpn = b""
    types: list[int] = []
    if pos + 2 <= n:
        end = min(n, pos + 2 + ((b[pos] << 8) | b[pos + 1]))
        pos += 2
        while pos + 4 <= end:
            etype = (b[pos] << 8) | b[pos + 1]
            start = pos + 4
            pos = start + ((b[pos + 2] << 8) | b[pos + 3])
            if pos > end:
                raise _err("server_hello.extension", f"extension {etype:#06x} overruns the extensions block")
            if is_grease(etype):
                continue
            types.append(etype)
            if etype == EXT_SUPPORTED_VERSIONS and pos - start == 2:
                version = (b[start] << 8) | b[start + 1]
            elif etype == EXT_ALPN and pos - start >= 4:
                alpn = bytes(b[start + 3 : min(pos, start + 3 + b[start + 2])])
    return ServerHello(version, cipher, tuple(types), alpn)
