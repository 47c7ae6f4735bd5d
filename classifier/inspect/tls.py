"""TLS ClientHello inspection.

Written by hand rather than with ``dpkt.ssl`` because the flow table hands us the client's
first bytes a TCP segment at a time: we need a "need more bytes" answer (``None``) while a
ClientHello is still spread over unfinished TLS records and segments, field-level
``MalformedError`` reports, and a message-level entry point that QUIC can reuse (its CRYPTO
frames carry handshake messages without TLS records).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from classifier.compiled import compiled_function
from classifier.errors import MalformedError
from classifier.inspect import normalize_hostname

__all__ = [
    "EXT_ALPN",
    "EXT_ECH",
    "EXT_PADDING",
    "EXT_SERVER_NAME",
    "EXT_SUPPORTED_VERSIONS",
    "ClientHello",
    "is_grease",
    "looks_like_tls",
    "parse_client_hello",
    "parse_client_hello_message",
]

CONTENT_TYPE_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
MAX_RECORD_LENGTH = 2**14 + 2048  # TLSCiphertext limit; a plaintext handshake record is smaller

EXT_SERVER_NAME = 0
EXT_SIGNATURE_ALGORITHMS = 13
EXT_PADDING = 21
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
EXT_ECH = 0xFE0D
# The extensions a ClientHello's facts come from (the rest are only listed, for fingerprints).
_READ = frozenset((EXT_SERVER_NAME, EXT_ALPN, EXT_SIGNATURE_ALGORITHMS, EXT_SUPPORTED_VERSIONS, EXT_ECH))

# The largest body a ClientHello can have: version, random, session id <0..32>,
# cipher suites <2..2^16-2>, compression methods <1..2^8-1>, extensions <8..2^16-1>.
# A handshake header claiming more than this cannot be a ClientHello, so fail early instead
# of asking the caller to buffer megabytes.
MAX_CLIENT_HELLO_LENGTH = 2 + 32 + 1 + 32 + 2 + 65534 + 1 + 255 + 2 + 65535

_U16 = struct.Struct(">H")
# RFC 8701 GREASE values. Each is one byte twice, so it reads the same in either byte order: a
# list of u16 can be tested for them through a native-order memoryview, with no unpacking.
GREASE = frozenset(range(0x0A0A, 0x10000, 0x1010))
_is_grease_value = GREASE.__contains__
_EXT_HEADER = struct.Struct(">HH")  # extension type, length


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What a ClientHello says about where the client wants to go."""

    sni: str | None  # first host_name entry of server_name, normalized
    alpn: tuple[str, ...]  # protocol names in order
    versions: tuple[int, ...]  # supported_versions (GREASE removed) if present, else (legacy_version,)
    legacy_version: int
    ech: bool  # encrypted_client_hello (0xfe0d) present (real ECH or GREASE: the wire looks alike)
    cipher_suites: int  # count, GREASE removed
    extensions: tuple[int, ...]  # types in order, GREASE removed
    ech_config_id: int | None = None  # config_id of an outer ECH extension (RFC 9849 5)
    # What a JA4 fingerprint needs besides the above, kept as the wire bytes (a slice costs less
    # than decoding on every ClientHello; only a fingerprint reads them, through the properties):
    cipher_bytes: bytes = b""  # the cipher_suites list, GREASE included
    signature_algorithm_bytes: bytes = b""  # the signature_algorithms list, GREASE included
    alpn_first: bytes = b""  # the first ALPN protocol name as sent (b"" when none)

    @property
    def cipher_list(self) -> tuple[int, ...]:
        """The cipher suites in the order sent, GREASE removed."""
        return _u16_list(self.cipher_bytes)

    @property
    def signature_algorithms(self) -> tuple[int, ...]:
        """signature_algorithms (RFC 8446 section 4.2.3) in the client's order, GREASE removed."""
        return _u16_list(self.signature_algorithm_bytes)


def _u16_list(data: bytes) -> tuple[int, ...]:
    return tuple(v for (v,) in _U16.iter_unpack(data) if v not in GREASE)


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE value (0x0a0a, 0x1a1a, ... 0xfafa): noise that says nothing about the client."""
    return value in GREASE


def looks_like_tls(data: bytes) -> bool:
    """Cheap test of the first bytes: a handshake record, version 3.x, and a ClientHello if visible.

    Judges only the bytes present, so a 1-byte first segment of 0x16 answers True.
    """
    n = len(data)
    if n == 0 or data[0] != CONTENT_TYPE_HANDSHAKE:
        return False
    if n > 1 and data[1] != 3:
        return False
    return not (n > 5 and data[5] != HANDSHAKE_CLIENT_HELLO)


def _err(field: str, detail: str) -> MalformedError:
    return MalformedError("tls", field, detail)


def parse_client_hello(data: bytes) -> ClientHello | None:
    """Facts from the client's first bytes of a TLS stream, or ``None`` until the ClientHello is whole.

    ``data`` is the stream from its start in sequence order; the handshake fragments of
    successive handshake records are joined, so a ClientHello spanning several records and
    TCP segments is fine. Work is linear in ``len(data)`` per call.
    """
    n = len(data)
    pos = 0
    hs = bytearray()
    msg_len = -1
    while True:
        if n - pos < 5:
            # Judge what there is of the record header so garbage fails on its first byte.
            if pos < n and data[pos] != CONTENT_TYPE_HANDSHAKE:
                raise _err("record.content_type", f"content type {data[pos]} before the ClientHello ended")
            if pos + 1 < n and data[pos + 1] != 3:
                raise _err("record.version", f"record version major {data[pos + 1]}, expected 3")
            return None
        if data[pos] != CONTENT_TYPE_HANDSHAKE:
            raise _err("record.content_type", f"content type {data[pos]} before the ClientHello ended")
        if data[pos + 1] != 3:
            raise _err("record.version", f"record version major {data[pos + 1]}, expected 3")
        rlen = (data[pos + 3] << 8) | data[pos + 4]
        if rlen > MAX_RECORD_LENGTH:
            raise _err("record.length", f"record length {rlen} exceeds {MAX_RECORD_LENGTH}")
        if rlen == 0:
            raise _err("record.length", "empty handshake record")
        start = pos + 5
        end = start + rlen
        hs += data[start:end]
        if msg_len < 0 and hs:
            if hs[0] != HANDSHAKE_CLIENT_HELLO:
                raise _err("handshake.type", f"handshake type {hs[0]}, expected 1 (ClientHello)")
            if len(hs) >= 4:
                msg_len = (hs[1] << 16) | (hs[2] << 8) | hs[3]
                if msg_len > MAX_CLIENT_HELLO_LENGTH:
                    raise _err("handshake.length", f"handshake length {msg_len} too large for a ClientHello")
        if msg_len >= 0 and len(hs) >= 4 + msg_len:
            return parse_client_hello_message(bytes(hs[4 : 4 + msg_len]))
        if end > n:
            return None
        pos = end


def parse_client_hello_message_py(handshake: bytes) -> ClientHello:
    """Facts from a complete ClientHello body (the bytes after the 4-byte handshake header).

    Everything must be present: a short body is ``MalformedError``, never ``None``. Bytes after
    the extensions block are ignored. The reference of the compiled twin (classifier/_hello.pyx),
    which ``parse_client_hello_message`` is when built.
    """
    b = handshake
    n = len(b)
    if n < 34:
        raise _err("client_hello.random", f"body of {n} bytes ends before the random")
    if b[0] != 3:
        raise _err("client_hello.legacy_version", f"version major {b[0]}, expected 3")
    legacy_version = (b[0] << 8) | b[1]
    pos = 34
    if pos >= n:
        raise _err("client_hello.session_id", "body ends before the session id")
    sid_len = b[pos]
    if sid_len > 32:
        raise _err("client_hello.session_id", f"session id length {sid_len} exceeds 32")
    pos += 1 + sid_len
    if pos + 2 > n:
        raise _err("client_hello.session_id", "session id overruns the message")

    cs_len = (b[pos] << 8) | b[pos + 1]
    pos += 2
    if cs_len == 0 or cs_len % 2:
        raise _err("client_hello.cipher_suites", f"cipher suites length {cs_len} is zero or odd")
    if pos + cs_len > n:
        raise _err("client_hello.cipher_suites", "cipher suites overrun the message")
    cipher_bytes = bytes(b[pos : pos + cs_len])
    cipher_suites = (cs_len >> 1) - sum(map(_is_grease_value, memoryview(cipher_bytes).cast("H")))
    pos += cs_len

    if pos >= n:
        raise _err("client_hello.compression_methods", "message ends before compression methods")
    comp_len = b[pos]
    if comp_len == 0:
        raise _err("client_hello.compression_methods", "empty compression methods")
    pos += 1 + comp_len
    if pos > n:
        raise _err("client_hello.compression_methods", "compression methods overrun the message")

    sni: str | None = None
    alpn: tuple[str, ...] = ()
    alpn_first = b""
    sig_algs = b""
    versions: tuple[int, ...] | None = None
    ech = False
    ech_config_id: int | None = None
    ext_types: list[int] = []
    if pos < n:  # pre-TLS-1.2 clients may omit the extensions block entirely
        if pos + 2 > n:
            raise _err("client_hello.extensions", "truncated extensions length")
        ext_end = pos + 2 + ((b[pos] << 8) | b[pos + 1])
        pos += 2
        if ext_end > n:
            raise _err("client_hello.extensions", "extensions overrun the message")
        seen: set[int] = set()  # of the types read below
        append = ext_types.append
        header = _EXT_HEADER.unpack_from  # (a dozen extensions or so: looked up once)
        while pos < ext_end:
            if pos + 4 > ext_end:
                raise _err("extension.header", "truncated extension header")
            etype, elen = header(b, pos)
            start = pos + 4
            end = start + elen
            if end > ext_end:
                raise _err("extension.length", f"extension {etype:#06x} overruns the extensions block")
            pos = end
            if etype in GREASE:
                continue
            append(etype)
            if etype not in _READ or etype in seen:
                continue  # duplicates are forbidden; the first occurrence is the one we report
            seen.add(etype)
            if etype == EXT_SERVER_NAME:
                sni = _server_name(b, start, end)
            elif etype == EXT_ALPN:
                alpn = _alpn(b, start, end)
                alpn_first = bytes(b[start + 3 : start + 3 + b[start + 2]])
            elif etype == EXT_SIGNATURE_ALGORITHMS:
                sig_algs = _signature_algorithms(b, start, end)
            elif etype == EXT_SUPPORTED_VERSIONS:
                versions = _supported_versions(b, start, end)
            elif etype == EXT_ECH:
                ech = True
                ech_config_id = _ech_config_id(b, start, end)
    return ClientHello(
        sni=sni,
        alpn=alpn,
        versions=versions if versions is not None else (legacy_version,),
        legacy_version=legacy_version,
        ech=ech,
        cipher_suites=cipher_suites,
        extensions=tuple(ext_types),
        ech_config_id=ech_config_id,
        cipher_bytes=cipher_bytes,
        signature_algorithm_bytes=sig_algs,
        alpn_first=alpn_first,
    )


def _ech_config_id(b: bytes, start: int, end: int) -> int | None:
    """config_id of an outer ECHClientHello: type(1)=0, cipher suite(4), config_id(1), enc, payload.

    An inner ECH extension (type 1) carries no config id; a malformed one is reported as None
    rather than an error: the flag alone already says the ClientHello uses ECH.
    """
    if end - start >= 6 and b[start] == 0:
        return b[start + 5]
    return None


def _list_body(b: bytes, start: int, end: int, field: str, what: str) -> int:
    """Start of a non-empty list whose 2-byte length must fill the extension exactly."""
    if end - start < 2:
        raise _err(field, f"missing {what} list length")
    list_len = (b[start] << 8) | b[start + 1]
    pos = start + 2
    if pos + list_len != end:
        raise _err(field, f"list length {list_len} does not fill the extension ({end - pos} bytes)")
    if list_len == 0:
        raise _err(field, f"empty {what} list")
    return pos


def _server_name(b: bytes, start: int, end: int) -> str | None:
    """First host_name (type 0) of a server_name list (RFC 6066 section 3)."""
    field = "extension.server_name"
    pos = _list_body(b, start, end, field, "server name")
    sni: str | None = None
    while pos < end:
        if pos + 3 > end:
            raise _err(field, "truncated server name entry")
        name_type = b[pos]
        name_len = (b[pos + 1] << 8) | b[pos + 2]
        pos += 3
        if pos + name_len > end:
            raise _err(field, "server name overruns the list")
        if name_type == 0 and sni is None:
            if name_len == 0:
                raise _err(field, "empty host_name")
            sni = normalize_hostname(bytes(b[pos : pos + name_len])) or None
        pos += name_len
    return sni


def _alpn(b: bytes, start: int, end: int) -> tuple[str, ...]:
    """Protocol names of application_layer_protocol_negotiation (RFC 7301)."""
    field = "extension.alpn"
    pos = _list_body(b, start, end, field, "protocol name")
    names: list[str] = []
    while pos < end:
        plen = b[pos]
        pos += 1
        if plen == 0:
            raise _err(field, "empty protocol name")
        if pos + plen > end:
            raise _err(field, "protocol name overruns the list")
        names.append(bytes(b[pos : pos + plen]).decode("ascii", "backslashreplace"))
        pos += plen
    return tuple(names)


def _signature_algorithms(b: bytes, start: int, end: int) -> bytes:
    """The signature_algorithms list's bytes (RFC 8446 section 4.2.3), decoded only by a fingerprint.

    Only a fingerprint needs them, so a malformed list gives what parses rather than an error that
    would cost the ClientHello's name.
    """
    if end - start < 2:
        return b""
    stop = min(end, start + 2 + ((b[start] << 8) | b[start + 1]))
    stop -= (stop - start) % 2
    return bytes(b[start + 2 : stop])


def _supported_versions(b: bytes, start: int, end: int) -> tuple[int, ...]:
    """The client's supported_versions list (RFC 8446 section 4.2.1), GREASE removed."""
    field = "extension.supported_versions"
    if end - start < 1:
        raise _err(field, "missing versions length")
    vlen = b[start]
    if vlen == 0 or vlen % 2 or start + 1 + vlen != end:
        raise _err(field, f"versions length {vlen} is zero, odd, or does not fill the extension")
    return tuple([v for (v,) in _U16.iter_unpack(b[start + 1 : end]) if v not in GREASE])


# The compiled twin gives the same facts and errors in about an eighth of the time
# (tests/test_hello_twins.py).
COMPILED_PARSE_CLIENT_HELLO_MESSAGE: Callable[[bytes], ClientHello] | None = compiled_function(
    "_hello", "parse_client_hello_message"
)
parse_client_hello_message: Callable[[bytes], ClientHello] = (
    COMPILED_PARSE_CLIENT_HELLO_MESSAGE or parse_client_hello_message_py
)
