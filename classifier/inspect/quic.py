"""QUIC inspection: the client's ClientHello (or gQUIC CHLO) out of its first UDP datagrams.

A QUIC client's first flight is encrypted, but only with keys anyone can derive from the
Destination Connection ID it chose (RFC 9001 section 5.2): that protects against tampering,
not against reading. So to learn the SNI we derive those Initial keys, remove header
protection, decrypt the Initial packets with AES-128-GCM, walk their frames and reassemble the
CRYPTO stream by offset until it holds a whole TLS ClientHello, which ``tls.py`` parses.

Everything is per flow (:class:`QuicInitialState`) because one ClientHello can span several
Initial packets and datagrams (Chrome's post-quantum key share does), arrive out of order,
follow a Retry (new Destination Connection ID, so new keys) or a Version Negotiation.

Versions, and where each salt comes from:

* QUIC v1 ``0x00000001``: RFC 9001 section 5.2.
* QUIC v2 ``0x6b3343cf``: RFC 9369 section 3.3 (salt, "quicv2" labels, packet type bits).
* IETF drafts 22-34 ``0xff000016``-``0xff000022``: draft-22 salt (draft-ietf-quic-tls-22),
  drafts 23-28 one salt (draft-ietf-quic-tls-23..28), 29-32 another (draft-ietf-quic-tls-29),
  33-34 the final v1 salt; as in Wireshark's and nDPI's ``quic_derive_initial_secrets``.
* Facebook mvfst ``0xfaceb001`` (= draft-22), ``0xfaceb002`` and ``0xfaceb00e`` (= draft-27):
  mapping from Wireshark/nDPI.
* Google QUIC Q050, T050, T051: salts ``kQ050Salt``/``kT050Salt``/``kT051Salt`` of Chromium's
  ``quic/core/crypto/crypto_utils.cc`` (the same bytes are in Wireshark, nDPI and lsquic). Their
  Initials have the IETF long header but gQUIC frames, with the handshake in a CRYPTO frame of
  type 0x08 (lsquic ``lsquic_parse_Q050.c``); Q050 carries a CHLO, T05x a TLS ClientHello.
* Google QUIC Q024-Q043 (public header) and Q046 (long header with CID-length nibbles): the CHLO
  travels unencrypted in a STREAM frame on stream 1 (Wireshark ``packet-gquic.c``).

Bounds: at most ``MAX_CRYPTO_BYTES`` of handshake data and ``MAX_DATAGRAMS`` datagrams per flow,
a few cached key sets. Bad input raises ``MalformedError("quic", field, ...)`` (a ClientHello that
does not parse keeps ``tls.*`` reasons), never anything else.
"""

from __future__ import annotations

import hashlib
import re
import struct
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal, Protocol

from classifier.compiled import compiled_function
from classifier.errors import MalformedError
from classifier.inspect import normalize_hostname
from classifier.inspect.tls import ClientHello, parse_client_hello_message

__all__ = [
    "MAX_CRYPTO_BYTES",
    "MAX_DATAGRAMS",
    "QuicFacts",
    "QuicInitialState",
    "initial_key_material",
    "looks_like_quic",
    "version_name",
]

MAX_CRYPTO_BYTES = 64 * 1024  # CRYPTO (or gQUIC handshake stream) bytes kept per flow
MAX_DATAGRAMS = 16  # datagrams examined per flow before giving up
_MAX_KEY_SETS = 4  # (version, DCID) key sets cached per flow
_MAX_CID = 20

_PT_INITIAL, _PT_0RTT, _PT_HANDSHAKE, _PT_RETRY = 0, 1, 2, 3

_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
_SALT_D22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
_SALT_D23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
_SALT_D29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
_SALT_Q050 = bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45")
_SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
_SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")

_LABELS_V1 = (b"quic key", b"quic iv", b"quic hp")
_LABELS_V2 = (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
_TYPES_V1 = (_PT_INITIAL, _PT_0RTT, _PT_HANDSHAKE, _PT_RETRY)  # wire bits -> packet type
_TYPES_V2 = (_PT_RETRY, _PT_INITIAL, _PT_0RTT, _PT_HANDSHAKE)  # RFC 9369 section 3.2

# Frame dialect / header layout of a version.
_IETF = 0  # IETF long header, IETF frames, TLS handshake in CRYPTO frames
_GQUIC_CRYPTO = 1  # IETF long header, encrypted, gQUIC frames + CRYPTO frame 0x08 (Q050, T05x)
_GQUIC_Q046 = 2  # long header with CID-length nibbles, clear, handshake on stream 1
_GQUIC_PUBLIC = 3  # gQUIC public header (Q043 and older), clear, handshake on stream 1


@dataclass(frozen=True, slots=True)
class _Version:
    """What differs between the QUIC versions read: Initial layout, salt, key labels, packet types."""

    number: int
    name: str
    layout: int
    salt: bytes | None
    labels: tuple[bytes, bytes, bytes]
    types: tuple[int, int, int, int]
    chlo: bool  # handshake is a gQUIC CHLO rather than a TLS ClientHello
    big_endian: bool  # gQUIC integer byte order (Q039 and later)


def _ietf(number: int, name: str, salt: bytes) -> _Version:
    return _Version(number, name, _IETF, salt, _LABELS_V1, _TYPES_V1, False, True)


def _gquic_tag(name: str) -> int:
    return int.from_bytes(name.encode("ascii"), "big")


_VERSIONS: dict[int, _Version] = {
    1: _ietf(1, "1", _SALT_V1),
    0x6B3343CF: _Version(0x6B3343CF, "2", _IETF, _SALT_V2, _LABELS_V2, _TYPES_V2, False, True),
    0xFACEB001: _ietf(0xFACEB001, "mvfst-22", _SALT_D22),
    0xFACEB002: _ietf(0xFACEB002, "mvfst-27", _SALT_D23),
    0xFACEB00E: _ietf(0xFACEB00E, "mvfst-exp", _SALT_D23),
}
for _draft in range(22, 35):
    _VERSIONS[0xFF000000 | _draft] = _ietf(
        0xFF000000 | _draft,
        f"draft-{_draft}",
        _SALT_D22 if _draft == 22 else _SALT_D23 if _draft <= 28 else _SALT_D29 if _draft <= 32 else _SALT_V1,
    )
for _name, _salt, _chlo in (
    ("Q050", _SALT_Q050, True),
    ("T050", _SALT_T050, False),
    ("T051", _SALT_T051, False),
):
    _VERSIONS[_gquic_tag(_name)] = _Version(
        _gquic_tag(_name), _name, _GQUIC_CRYPTO, _salt, _LABELS_V1, _TYPES_V1, _chlo, True
    )
_VERSIONS[_gquic_tag("Q046")] = _Version(
    _gquic_tag("Q046"), "Q046", _GQUIC_Q046, None, _LABELS_V1, _TYPES_V1, True, True
)
for _n in range(24, 44):
    _VERSIONS[_gquic_tag(f"Q0{_n}")] = _Version(
        _gquic_tag(f"Q0{_n}"), f"Q0{_n}", _GQUIC_PUBLIC, None, _LABELS_V1, _TYPES_V1, True, _n >= 39
    )
del _draft, _name, _salt, _chlo, _n
# Versions whose packets carry the long-header bit (gQUIC Q043 and older use a public header).
_LONG_HEADER_VERSIONS = frozenset(n for n, v in _VERSIONS.items() if v.layout != _GQUIC_PUBLIC)


def version_name(version: int) -> str:
    """Readable name of a QUIC version number ("1", "2", "draft-29", "Q050", or hex)."""
    v = _VERSIONS.get(version)
    if v is not None:
        return v.name
    if version == 0:
        return "negotiation"
    if _is_reserved(version):
        return f"reserved-{version:08x}"
    return f"{version:#010x}"


def _is_reserved(version: int) -> bool:
    """RFC 9000 section 15: 0x?a?a?a?a versions exist only to exercise Version Negotiation."""
    return (version & 0x0F0F0F0F) == 0x0A0A0A0A


@dataclass(frozen=True, slots=True)
class QuicFacts:
    """What a QUIC client's first flight says about where it wants to go."""

    version: int  # version of the Initial that completed the ClientHello (gQUIC: 'Q050' as int)
    version_name: str  # "1", "2", "draft-29", "mvfst-22", "Q050", "T051", ...
    dcid: bytes  # DCID of the packet that completed the ClientHello / CHLO
    client_hello: ClientHello | None  # None for a gQUIC CHLO (see sni, user_agent)
    sni: str | None  # ClientHello server_name or CHLO "SNI" tag, normalized
    alpn: tuple[str, ...]
    retry: bool  # a Retry was seen before this Initial
    packets: int  # client Initial (gQUIC: handshake) packets decrypted/parsed for this
    user_agent: str | None = None  # gQUIC CHLO "UAID" tag


def _quic_facts(values: tuple[Any, ...]) -> QuicFacts:
    """``QuicFacts(*values)``: the reference of the compiled twin (classifier/_hello.pyx), which
    ``quic_facts`` is when built."""
    return QuicFacts(*values)


quic_facts: Callable[[tuple[Any, ...]], QuicFacts] = compiled_function("_hello", "quic_facts") or _quic_facts


# --- cheap classification -------------------------------------------------------------------


def looks_like_quic(datagram: bytes) -> bool:
    """Cheap test of a datagram's first bytes: a QUIC long header of a known (or negotiation)
    version, or a gQUIC public header that carries a Q0xx version."""
    n = len(datagram)
    if n < 7:
        return False
    b0 = datagram[0]
    if b0 & 0x80:
        version = int.from_bytes(datagram[1:5], "big")
        if version == 0:
            return True
        if not b0 & 0x40:
            return False
        return version in _LONG_HEADER_VERSIONS or _is_reserved(version)
    # gQUIC public header: version flag and 8-byte connection id, then "Q0dd".
    return (
        n >= 13
        and (b0 & 0x09) == 0x09
        and datagram[9] == 0x51
        and datagram[10] == 0x30
        and 0x30 <= datagram[11] <= 0x39
        and 0x30 <= datagram[12] <= 0x39
    )


# --- keys -----------------------------------------------------------------------------------


_IPAD = bytes(b ^ 0x36 for b in range(256))  # RFC 2104 inner and outer pads, as translate tables
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _PreKeyed:
    """HMAC-SHA256 with its key absorbed once (RFC 2104): each message then costs two hash copies
    instead of a full HMAC set-up. The Initial salt is one key per version for every flow, and a
    flow's client secret keys three expansions (key, iv, hp)."""

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\x00")
        self.inner = hashlib.sha256(key.translate(_IPAD))
        self.outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(message)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_SALTS: dict[bytes, _PreKeyed] = {}


_LABEL_INFOS: dict[tuple[bytes, int], bytes] = {}  # a few labels per version: built once each


def _label_info(label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label's info for an empty context, with HKDF-Expand's block counter 1."""
    info = _LABEL_INFOS.get((label, length))
    if info is None:
        full = b"tls13 " + label
        info = _LABEL_INFOS[(label, length)] = struct.pack(">HB", length, len(full)) + full + b"\x00\x01"
    return info


# The infos of the client secret's expansion and, per label set, of its key (16 bytes), iv (12)
# and hp (16) expansions: a few bytes each, built at import rather than looked up per flow.
_CLIENT_IN = _label_info(b"client in", 32)
_EXPAND_INFOS = {
    labels: (_label_info(labels[0], 16), _label_info(labels[1], 12), _label_info(labels[2], 16))
    for labels in (_LABELS_V1, _LABELS_V2)
}


# Per version with Initial encryption: its salt and the infos of the client secret's expansion and
# of its key, iv and hp expansions: what both key twins (``_Keys``, ``_quicinitial.InitialKeys``) take.
_Schedule = tuple[bytes, bytes, bytes, bytes, bytes]
_SCHEDULES: dict[int, _Schedule] = {
    number: (v.salt, _CLIENT_IN, *_EXPAND_INFOS[v.labels])
    for number, v in _VERSIONS.items()
    if v.salt is not None
}


def initial_key_material(version: int, dcid: bytes) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) that protect the client's Initial packets for ``dcid`` (RFC 9001 5.2).

    Raises MalformedError for a version without Initial encryption.
    """
    schedule = _SCHEDULES.get(version)
    if schedule is None:
        raise MalformedError("quic", "version", f"no Initial keys for version {version_name(version)}")
    return _key_material(schedule, dcid)


def _key_material(schedule: _Schedule, dcid: bytes) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) of a version's schedule and a DCID: HKDF-Extract, then HKDF-Expand-Label."""
    salt_key, client_in, key_info, iv_info, hp_info = schedule
    salt = _SALTS.get(salt_key)
    if salt is None:
        salt = _SALTS[salt_key] = _PreKeyed(salt_key)
    initial_secret = salt.digest(dcid)  # HKDF-Extract: the salt is one pre-keyed pair per version
    # The secrets below key one or three HMACs each, once per flow: RFC 2104 spelled out with
    # one-shot hashes of the padded key and the message costs less than absorbing the key into a
    # pre-keyed pair first (whose set-up is two more hash objects) or hmac.digest's set-up.
    sha256 = hashlib.sha256
    k = initial_secret.ljust(64, b"\x00")
    # HKDF-Expand-Label(initial_secret, "client in", 32): one SHA-256 block.
    inner = sha256(k.translate(_IPAD) + client_in).digest()
    k = sha256(k.translate(_OPAD) + inner).digest().ljust(64, b"\x00")
    ki = k.translate(_IPAD)
    ko = k.translate(_OPAD)
    return (
        sha256(ko + sha256(ki + key_info).digest()).digest()[:16],
        sha256(ko + sha256(ki + iv_info).digest()).digest()[:12],
        sha256(ko + sha256(ki + hp_info).digest()).digest()[:16],
    )


_CIPHERS: list[Any] = []  # [AESGCM, header-protection encryptor of a key], once a flow needs them


def _ciphers() -> list[Any]:
    """The cryptography constructors, imported on the first QUIC Initial rather than at module
    level (most scans meet none, and the bindings cost more start-up time than a small capture
    takes to scan), and then kept: an import statement per flow costs more than the lookup."""
    if not _CIPHERS:
        from cryptography.hazmat.primitives.ciphers import algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        _CIPHERS[:] = [AESGCM, _header_protection_constructor(algorithms.AES, modes.ECB())]
    return _CIPHERS


def _header_protection_constructor(aes: Any, ecb: Any) -> Any:
    """A function of a key to its AES-ECB encryptor (RFC 9001 5.4.3), one per flow.

    ``Cipher(AES(key), ECB()).encryptor()`` spends most of its time in ``Cipher``'s checks of
    the algorithm and mode against abstract classes, the same answer for every key: the context
    is made by the binding ``encryptor()`` itself calls, which makes the same OpenSSL context.
    Where that binding is not there (another cryptography release), through ``Cipher``.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher

    def cipher_encryptor(key: bytes) -> Any:
        return Cipher(aes(key), ecb).encryptor()

    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        create = rust_openssl.ciphers.create_encryption_ctx
        probe = bytes(range(16))  # the binding takes these arguments and encrypts as Cipher does
        if create(aes(probe), ecb).update(probe) != cipher_encryptor(probe).update(probe):
            return cipher_encryptor
    except (ImportError, AttributeError, TypeError, ValueError):
        return cipher_encryptor

    def direct_encryptor(key: bytes) -> Any:
        return create(aes(key), ecb)

    return direct_encryptor


class _Keys:
    """The cipher objects for one (version, DCID); built once, used for every packet.

    The reference of the compiled twin (``classifier/_quicinitial.pyx`` ``InitialKeys``), which
    ``initial_keys`` is when built: the same constructor and ``open``."""

    __slots__ = ("aead", "hp", "iv")

    def __init__(self, schedule: _Schedule, dcid: bytes) -> None:
        aesgcm, header_protection = _CIPHERS or _ciphers()
        key, iv, hp = _key_material(schedule, dcid)
        self.aead = aesgcm(key)
        self.iv = int.from_bytes(iv, "big")
        self.hp = header_protection(hp)

    def open(
        self, d: bytes, start: int, pn_offset: int, end: int, largest: int
    ) -> tuple[bytes, int, int] | None:
        """Header protection removed and the packet decrypted: (plaintext, packet number length,
        packet number), or None when the tag does not verify under these keys. The caller has
        checked the packet (``start`` to ``end`` of ``d``) holds the 16-byte sample after 4 bytes."""
        mask = self.hp.update(d[pn_offset + 4 : pn_offset + 20])
        b0 = d[start] ^ (mask[0] & 0x0F)
        pn_len = (b0 & 3) + 1
        truncated = 0
        for i in range(pn_len):
            truncated = (truncated << 8) | (d[pn_offset + i] ^ mask[1 + i])
        # The header as sent before protection: the associated data.
        header = b"%c%s%s" % (b0, d[start + 1 : pn_offset], truncated.to_bytes(pn_len, "big"))
        # Before any packet number, the truncated one is the packet number (RFC 9000 A.3).
        pn = truncated if largest < 0 else _decode_pn(largest, truncated, pn_len * 8)
        nonce = (self.iv ^ pn).to_bytes(12, "big")
        try:
            payload = self.aead.decrypt(nonce, d[pn_offset + pn_len : end], header)
        except Exception as err:  # cryptography's InvalidTag: the key does not fit this packet
            if type(err).__name__ != "InvalidTag":
                raise
            return None
        return payload, pn_len, pn


class _PacketKeys(Protocol):
    """What ``QuicInitialState`` asks of a key set: ``_Keys`` or its compiled twin."""

    def open(
        self, d: bytes, start: int, pn_offset: int, end: int, largest: int
    ) -> tuple[bytes, int, int] | None: ...


# The compiled twin: OpenSSL's SHA-256 and AES called from C, no cryptography import at all.
COMPILED_INITIAL_KEYS: Callable[[_Schedule, bytes], _PacketKeys] | None = compiled_function(
    "_quicinitial", "InitialKeys"
)
initial_keys: Callable[[_Schedule, bytes], _PacketKeys] = COMPILED_INITIAL_KEYS or _Keys


# --- small readers --------------------------------------------------------------------------

# A run of zero bytes: matched with a repeat of one literal, which sre counts in a tight loop (a
# search for the next non-zero byte tries a character class at each position, several times slower
# over Chrome's hundreds of bytes of PADDING per Initial).
_ZEROS = re.compile(rb"\x00+")


def _err(field: str, detail: str) -> MalformedError:
    return MalformedError("quic", field, detail)


def _varint(b: bytes, pos: int, end: int, field: str) -> tuple[int, int]:
    """RFC 9000 section 16 variable-length integer at ``pos``: (value, position after it)."""
    if pos >= end:
        raise _err(field, "truncated variable-length integer")
    first = b[pos]
    size = 1 << (first >> 6)
    if pos + size > end:
        raise _err(field, "truncated variable-length integer")
    if size == 1:
        return first, pos + 1
    value = first & 0x3F
    for i in range(pos + 1, pos + size):
        value = (value << 8) | b[i]
    return value, pos + size


def _decode_pn(largest: int, truncated: int, nbits: int) -> int:
    """RFC 9000 appendix A.3: the full packet number nearest to the next expected one."""
    expected = largest + 1
    win = 1 << nbits
    hwin = win >> 1
    candidate = (expected & ~(win - 1)) | truncated
    if candidate <= expected - hwin and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + hwin and candidate >= win:
        return candidate - win
    return candidate


# --- stream reassembly ----------------------------------------------------------------------


class _Stream:
    """CRYPTO (or gQUIC stream 1) bytes by offset: out of order, duplicated or overlapping.

    Received ranges are kept merged and sorted in two parallel lists, so each frame costs a
    bisect and a slice, not a re-sort: a flow of thousands of one-byte frames stays cheap.
    """

    __slots__ = ("buf", "contiguous", "ends", "starts")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.contiguous = 0  # bytes present from offset 0

    def add(self, offset: int, data: bytes | bytearray) -> None:
        end = offset + len(data)
        if end > MAX_CRYPTO_BYTES:
            raise _err("crypto.offset", f"handshake data up to offset {end} exceeds {MAX_CRYPTO_BYTES} bytes")
        if not data:
            return
        if end > len(self.buf):
            self.buf.extend(bytes(end - len(self.buf)))
        self.buf[offset:end] = data
        starts, ends = self.starts, self.ends
        start = offset
        i = bisect_left(starts, start)
        if i and ends[i - 1] >= start:  # touches or overlaps the range before
            i -= 1
            start = starts[i]
        j = i
        while j < len(starts) and starts[j] <= end:  # swallow every range it reaches
            if ends[j] > end:
                end = ends[j]
            j += 1
        starts[i:j] = [start]
        ends[i:j] = [end]
        self.contiguous = ends[0] if starts[0] == 0 else 0

    def add_all(self, chunks: list[tuple[int, bytes]]) -> None:
        """``add`` each chunk in turn. A packet's CRYPTO frames (Chrome scatters its ClientHello
        over several, out of order) usually tile one range: that range is then added once, as one
        joined chunk, and the range lists are touched once per packet instead of once per frame.
        Chunks that overlap or leave gaps are added one by one, in order, as they came (where
        overlapping bytes differ, the later frame's win: a joined chunk must not change that)."""
        if len(chunks) > 1:
            ordered = sorted(chunks, key=_chunk_offset)
            start, data = ordered[0]
            end = start + len(data)
            for offset, data in ordered[1:]:
                if offset != end:
                    break
                end += len(data)
            else:
                if end <= MAX_CRYPTO_BYTES:  # else each chunk up to the one over, as add would
                    self.add(start, b"".join([data for _offset, data in ordered]))
                    return
        for offset, data in chunks:
            self.add(offset, data)


def _from_zero(chunks: list[tuple[int, bytes]]) -> bytes | None:
    """The chunks joined, if they tile one range from offset 0 (what ``_Stream.add_all`` of an
    empty stream would hold, from 0 to its end); else None.

    The reference of the compiled twin (classifier/_hello.pyx), which ``from_zero`` is when built."""
    if len(chunks) == 1:
        offset, data = chunks[0]
        return data if offset == 0 and len(data) <= MAX_CRYPTO_BYTES else None
    if not chunks:
        return b""
    ordered = sorted(chunks, key=_chunk_offset)
    end = 0
    for offset, data in ordered:
        if offset != end:
            return None
        end += len(data)
    if end > MAX_CRYPTO_BYTES:
        return None
    return b"".join([data for _offset, data in ordered])


_chunk_offset = itemgetter(0)  # a chunk's offset, in C

# The compiled twin (classifier/_hello.pyx), chosen under the same condition as ``ietf_frames``.
COMPILED_FROM_ZERO: Callable[[list[tuple[int, bytes]]], bytes | None] | None = (
    compiled_function("_hello", "from_zero")
    if compiled_function("_hello", "MAX_CRYPTO_BYTES") == MAX_CRYPTO_BYTES
    else None
)
from_zero: Callable[[list[tuple[int, bytes]]], bytes | None] = COMPILED_FROM_ZERO or _from_zero

# --- the per-flow state ---------------------------------------------------------------------


class QuicInitialState:
    """Per-flow state: CRYPTO reassembly and key cache. Feed client and server datagrams in order.

    ``feed`` returns :class:`QuicFacts` once the ClientHello (CHLO) is complete, ``None`` while
    more is needed, and raises ``MalformedError`` for a datagram that breaks the protocol. A bad
    datagram does not spoil the state: a later good one still completes the ClientHello. After
    facts (or a fatal problem in authenticated data, or ``MAX_DATAGRAMS`` datagrams) ``done`` is
    true and ``feed`` returns ``None`` without work.
    """

    __slots__ = (
        "_gquic_version",
        "_key_dcid",
        "_keys",
        "_largest_pn",
        "_stream",
        "datagrams",
        "done",
        "errors",
        "facts",
        "packets",
        "retry_seen",
        "versions_offered",
    )

    def __init__(self) -> None:
        self._keys: dict[tuple[int, bytes], _PacketKeys] = {}
        self._key_dcid: bytes | None = None  # DCID the client's Initial keys come from
        self._largest_pn = -1
        self._stream: _Stream | None = None  # the handshake bytes so far, once a packet leaves a gap
        self._gquic_version: _Version | None = None  # public-header gQUIC seen from the client
        self.datagrams = 0
        self.done = False
        self.errors: list[MalformedError] = []
        self.facts: QuicFacts | None = None
        self.packets = 0
        self.retry_seen = False
        self.versions_offered: tuple[int, ...] = ()

    # public entry point

    def feed(self, datagram: bytes, from_client: bool) -> QuicFacts | None:
        """Examine one UDP payload of the flow; facts once the ClientHello is whole."""
        if self.done:
            return None
        self.datagrams += 1
        if self.datagrams > MAX_DATAGRAMS:
            self.done = True
            raise self._record(_err("datagrams", f"no complete ClientHello in {MAX_DATAGRAMS} datagrams"))
        try:
            d = datagram if type(datagram) is bytes else bytes(datagram)
            return self._datagram(d, from_client)
        except MalformedError as e:
            raise self._record(e) from None
        except (IndexError, ValueError, OverflowError, struct.error) as e:  # a missed bound: never leak
            raise self._record(_err("datagram", f"unparseable: {type(e).__name__}: {e}")) from None

    def _record(self, e: MalformedError) -> MalformedError:
        self.errors.append(e)  # at most one per datagram, and at most MAX_DATAGRAMS + 1 datagrams
        return e

    # datagram level

    def _datagram(self, d: bytes, from_client: bool) -> QuicFacts | None:
        n = len(d)
        if n == 0:
            raise _err("header", "empty datagram")
        if not d[0] & 0x80:
            return self._public_or_short(d, from_client)
        pos = 0
        first_error: MalformedError | None = None
        while pos < n:
            b0 = d[pos]
            if b0 == 0 or not b0 & 0x80:
                break  # padding after the last packet, or a short-header packet: nothing more here
            if n - pos < 7:
                raise _err("header", f"long header truncated at {n - pos} bytes")
            version = int.from_bytes(d[pos + 1 : pos + 5], "big")
            if version == 0:
                if pos == 0:
                    self._version_negotiation(d, from_client)
                break
            v = _VERSIONS.get(version) if version in _LONG_HEADER_VERSIONS else None
            if v is None:
                if _is_reserved(version):
                    break  # a client forcing Version Negotiation; its payload is meaningless
                if pos:
                    raise _err("version", f"coalesced packet of unknown version {version:#010x}")
                raise _err("version", f"unknown version {version:#010x}")
            if v.layout == _GQUIC_Q046:
                return self._q046(d, v, from_client) if pos == 0 else None
            ptype = v.types[(b0 >> 4) & 3]
            if ptype == _PT_RETRY:
                if not from_client:
                    self._retry(d, pos, v)
                break  # a Retry takes the rest of the datagram
            # Errors in the header leave the packet's extent unknown: they end the datagram.
            ptype, dcid, _scid, pn_offset, end = self._extent(d, pos, v)
            if ptype == _PT_INITIAL and from_client:
                # Errors inside one packet do not: its Length says where the next one starts.
                try:
                    facts = self._initial(d, pos, pn_offset, end, v, dcid)
                except MalformedError as e:
                    if self.done:
                        raise
                    if first_error is None:
                        first_error = e
                else:
                    if facts is not None:
                        return facts
            pos = end  # 0-RTT, Handshake, or the server's Initial: not ours to read
        if first_error is not None:
            raise first_error
        return None

    def _initial(
        self, d: bytes, pos: int, pn_offset: int, end: int, v: _Version, dcid: bytes
    ) -> QuicFacts | None:
        payload, pn_len = self._open(d, pos, pn_offset, end, v, dcid)
        self.packets += 1
        if v.layout == _IETF:
            chunks = ietf_frames(payload)
        else:
            chunks = _gquic_frames(payload, v, pn_len, crypto_frames=True)
        return self._add(chunks, v, dcid)

    def _header(self, d: bytes, pos: int, v: _Version) -> tuple[int, bytes, bytes, int]:
        """(packet type, DCID, SCID, offset after SCID) of a long header at ``pos``."""
        n = len(d)
        ptype = v.types[(d[pos] >> 4) & 3]
        p = pos + 5
        dcil = d[p]
        if dcil > _MAX_CID:
            raise _err("cid", f"destination connection id length {dcil} exceeds {_MAX_CID}")
        p += 1
        dcid = d[p : p + dcil]
        p += dcil
        if p >= n:
            raise _err("header", "long header ends inside the connection ids")
        scil = d[p]
        if scil > _MAX_CID:
            raise _err("cid", f"source connection id length {scil} exceeds {_MAX_CID}")
        p += 1
        scid = d[p : p + scil]
        p += scil
        if p > n:
            raise _err("header", "long header ends inside the connection ids")
        return ptype, dcid, scid, p

    def _extent(self, d: bytes, pos: int, v: _Version) -> tuple[int, bytes, bytes, int, int]:
        """(type, DCID, SCID, packet number offset, end) of a long-header packet with a Length."""
        n = len(d)
        ptype, dcid, scid, p = self._header(d, pos, v)
        if ptype == _PT_INITIAL:
            if p < n and d[p] == 0:  # no token: a client's first Initial (read as _varint would)
                p += 1
            else:
                token_len, p = _varint(d, p, n, "token")
                p += token_len
                if p > n:
                    raise _err("token", f"token of {token_len} bytes overruns the datagram")
        if p + 1 < n and 0x40 <= d[p] < 0x80:  # the usual two-byte Length, read as _varint would
            length = ((d[p] & 0x3F) << 8) | d[p + 1]
            p += 2
        else:
            length, p = _varint(d, p, n, "length")
        end = p + length
        if end > n:
            raise _err("length", f"packet length {length} overruns the datagram ({n - p} bytes left)")
        return ptype, dcid, scid, p, end

    # decryption

    def _new_keys(self, version: int, dcid: bytes) -> _PacketKeys:
        """Keys for (version, DCID), kept for the flow's later packets: the oldest of
        ``_MAX_KEY_SETS`` goes first."""
        if len(self._keys) >= _MAX_KEY_SETS:
            del self._keys[next(iter(self._keys))]
        k = self._keys[(version, dcid)] = initial_keys(_SCHEDULES[version], dcid)
        return k

    def _open(
        self, d: bytes, start: int, pn_offset: int, end: int, v: _Version, dcid: bytes
    ) -> tuple[bytes, int]:
        """Remove header protection and decrypt one client Initial: (plaintext, packet number length).

        Keys come from the DCID the client chose for its first Initial (or the Retry's SCID);
        after the server answers, the client's DCID changes but its Initial keys do not, so
        both that DCID and the packet's own are tried.
        """
        if pn_offset + 20 > end:
            raise _err("initial.length", "packet too short for a header-protection sample")
        key_dcid = self._key_dcid
        candidates = (dcid,) if key_dcid is None or key_dcid == dcid else (key_dcid, dcid)
        for cid in candidates:
            keys = self._keys.get((v.number, cid)) or self._new_keys(v.number, cid)
            opened = keys.open(d, start, pn_offset, end, self._largest_pn)
            if opened is None:
                continue
            payload, pn_len, pn = opened
            if pn > self._largest_pn:
                self._largest_pn = pn
            if self._key_dcid is None:
                self._key_dcid = cid
            return payload, pn_len
        raise _err("initial.decrypt", f"Initial packet does not decrypt with the keys of DCID {dcid.hex()}")

    # server packets that change what the client does next

    def _version_negotiation(self, d: bytes, from_client: bool) -> None:
        if from_client:
            raise _err("version_negotiation", "Version Negotiation packet from the client")
        n = len(d)
        p = 5
        dcil = d[p]
        p += 1 + dcil
        if p >= n:
            raise _err("version_negotiation", "truncated connection ids")
        p += 1 + d[p]
        if p > n or (n - p) % 4:
            raise _err("version_negotiation", "version list is not a whole number of versions")
        self.versions_offered = tuple(int.from_bytes(d[i : i + 4], "big") for i in range(p, n, 4))
        # The client starts over (new version, new ClientHello, packet numbers from 0).
        self._stream = None
        self._largest_pn = -1
        self._key_dcid = None

    def _retry(self, d: bytes, pos: int, v: _Version) -> None:
        _ptype, _dcid, scid, p = self._header(d, pos, v)
        if len(d) - p < 16:
            raise _err("retry", "Retry packet without room for its integrity tag")
        self.retry_seen = True
        # The client resends its ClientHello in an Initial to the Retry's SCID, under keys
        # derived from that SCID.
        self._key_dcid = scid
        self._stream = None

    # gQUIC packets without encryption

    def _public_or_short(self, d: bytes, from_client: bool) -> QuicFacts | None:
        """A gQUIC public-header packet (Q043 and older), or an IETF short header (ignored)."""
        b0 = d[0]
        n = len(d)
        if b0 & 0x40 and self._gquic_version is None:
            return None  # IETF 1-RTT packet: encrypted with keys we do not have
        v = self._gquic_version
        p = 1
        if b0 & 0x08:
            p += 8
        if b0 & 0x01:  # version present (client) or Version Negotiation (server)
            if n < p + 4:
                raise _err("header", "public header truncated before the version")
            if not from_client:
                offered = [d[i : i + 4] for i in range(p, n, 4)]
                if (n - p) % 4 or not all(t[:1] in (b"Q", b"T") for t in offered):
                    return None  # not a gQUIC version list: some other server packet
                self.versions_offered = tuple(int.from_bytes(t, "big") for t in offered)
                return None
            version = int.from_bytes(d[p : p + 4], "big")
            v = _VERSIONS.get(version)
            if v is None or v.layout != _GQUIC_PUBLIC:
                raise _err("version", f"unknown gQUIC version {d[p : p + 4]!r}")
            self._gquic_version = v
            p += 4
        if v is None or not from_client:
            return None  # no version known for this flow, or a server packet we do not read
        if b0 & 0x02:
            return None  # public reset
        pn_len = (1, 2, 4, 6)[(b0 >> 4) & 3]
        p += pn_len + 12  # packet number, then the null-encryption message hash
        num = int(v.name[1:])
        if num < 34:
            p += 1  # private flags
        if p > n:
            raise _err("header", "public header overruns the datagram")
        cid = d[1:9] if b0 & 0x08 else b""
        self.packets += 1
        return self._add(_gquic_frames(d[p:], v, pn_len, crypto_frames=False), v, cid)

    def _q046(self, d: bytes, v: _Version, from_client: bool) -> QuicFacts | None:
        """Q046 long header: CID lengths as nibbles, no Length field, payload in the clear."""
        if not from_client:
            return None
        b0 = d[0]
        if (b0 >> 4) & 3 != _PT_INITIAL:
            return None
        nib = d[5]
        dcil = (nib >> 4) + 3 if nib >> 4 else 0
        scil = (nib & 15) + 3 if nib & 15 else 0
        pn_len = (b0 & 3) + 1
        p = 6 + dcil + scil + pn_len + 12
        if p > len(d):
            raise _err("header", "Q046 header overruns the datagram")
        dcid = d[6 : 6 + dcil]
        self.packets += 1
        return self._add(_gquic_frames(d[p:], v, pn_len, crypto_frames=False), v, dcid)

    # the handshake stream

    def _add(self, chunks: list[tuple[int, bytes]], v: _Version, dcid: bytes) -> QuicFacts | None:
        stream = self._stream
        if stream is not None:
            stream.add_all(chunks)
            buf: bytes | bytearray = stream.buf
            have = stream.contiguous
        else:
            # Nothing of the handshake yet. Most clients send their whole ClientHello in their
            # first Initial: frames that tile it from offset 0 are read where they were joined,
            # and go into a stream only if the message needs more.
            data = from_zero(chunks)
            if data is None:
                stream = self._stream = _Stream()
                stream.add_all(chunks)
                buf, have = stream.buf, stream.contiguous
            else:
                buf, have = data, len(data)
        if v.chlo:
            found = self._complete_chlo(buf, have)
            if found is not None:
                sni, uaid = found
                return self._finish(
                    quic_facts((v.number, v.name, dcid, None, sni, (), self.retry_seen, self.packets, uaid))
                )
        else:
            hello = self._complete_client_hello(buf, have)
            if hello is not None:
                return self._finish(
                    quic_facts(
                        (
                            v.number,
                            v.name,
                            dcid,
                            hello,
                            hello.sni,
                            hello.alpn,
                            self.retry_seen,
                            self.packets,
                            None,
                        )
                    )
                )
        if stream is None and have:
            self._stream = stream = _Stream()
            stream.add(0, buf)
        return None

    def _finish(self, facts: QuicFacts) -> QuicFacts:
        self.done = True
        self.facts = facts
        self._keys.clear()
        self._stream = None
        return facts

    def _fatal(self, e: MalformedError) -> MalformedError:
        """The handshake stream from offset 0 is authenticated (or final): it will not get better."""
        self.done = True
        return e

    def _complete_client_hello(self, b: bytes | bytearray, have: int) -> ClientHello | None:
        """The ClientHello once the ``have`` bytes from offset 0 of ``b`` hold all of it."""
        if have == 0:
            return None
        if b[0] != 1:
            raise self._fatal(
                _err(
                    "crypto.handshake_type",
                    f"first handshake message has type {b[0]}, expected 1 (ClientHello)",
                )
            )
        if have < 4:
            return None
        length = (b[1] << 16) | (b[2] << 8) | b[3]
        if 4 + length > MAX_CRYPTO_BYTES:
            raise self._fatal(
                _err(
                    "crypto.handshake_length",
                    f"ClientHello of {length} bytes exceeds {MAX_CRYPTO_BYTES} bytes",
                )
            )
        if have < 4 + length:
            return None
        try:
            return parse_client_hello_message(bytes(b[4 : 4 + length]))
        except MalformedError as e:
            raise self._fatal(e) from None

    def _complete_chlo(self, b: bytes | bytearray, have: int) -> tuple[str | None, str | None] | None:
        """(SNI, UAID) of a complete CHLO message (little-endian tag/value map), else None."""
        if have < 8:
            if have and bytes(b[:have]) != b"CHLO"[:have]:
                raise self._fatal(
                    _err("chlo.tag", f"handshake message starts {bytes(b[: min(have, 4)])!r}, expected CHLO")
                )
            return None
        if bytes(b[:4]) != b"CHLO":
            raise self._fatal(_err("chlo.tag", f"handshake message tag {bytes(b[:4])!r}, expected CHLO"))
        count = b[4] | (b[5] << 8)
        values = 8 + 8 * count
        if values > MAX_CRYPTO_BYTES:
            raise self._fatal(_err("chlo.entries", f"{count} tags do not fit in {MAX_CRYPTO_BYTES} bytes"))
        if have < values:
            return None
        total = values + (int.from_bytes(b[values - 4 : values], "little") if count else 0)
        if total > MAX_CRYPTO_BYTES:
            raise self._fatal(_err("chlo.length", f"CHLO of {total} bytes exceeds {MAX_CRYPTO_BYTES} bytes"))
        if have < total:
            return None
        sni: str | None = None
        uaid: str | None = None
        prev = 0
        for i in range(count):
            at = 8 + 8 * i
            tag = bytes(b[at : at + 4])
            end = int.from_bytes(b[at + 4 : at + 8], "little")
            if end < prev:
                raise self._fatal(_err("chlo.offsets", f"tag {tag!r} ends at {end}, before {prev}"))
            value = bytes(b[values + prev : values + end])
            prev = end
            if tag == b"SNI\x00" and sni is None:
                sni = normalize_hostname(value) or None
            elif tag == b"UAID" and uaid is None:
                uaid = value.decode("ascii", "backslashreplace")
        return sni, uaid


# --- frames ---------------------------------------------------------------------------------


def _crypto_frame(b: bytes, pos: int, n: int, out: list[tuple[int, bytes]]) -> int:
    """A CRYPTO frame's offset, length and data from ``pos`` (after the type): appended to ``out``."""
    # Offsets and lengths of a ClientHello's frames take one or two bytes: those are read inline
    # (two calls per frame otherwise), anything else (or a truncated one) through _varint.
    first = b[pos] if pos < n else 0xFF
    if first < 0x40:
        offset = first
        pos += 1
    elif first < 0x80 and pos + 2 <= n:
        offset = ((first & 0x3F) << 8) | b[pos + 1]
        pos += 2
    else:
        offset, pos = _varint(b, pos, n, "frame.crypto")
    first = b[pos] if pos < n else 0xFF
    if first < 0x40:
        length = first
        pos += 1
    elif first < 0x80 and pos + 2 <= n:
        length = ((first & 0x3F) << 8) | b[pos + 1]
        pos += 2
    else:
        length, pos = _varint(b, pos, n, "frame.crypto")
    if pos + length > n:
        raise _err("frame.crypto", f"CRYPTO data of {length} bytes overruns the packet")
    if offset + length > MAX_CRYPTO_BYTES:
        raise _err(
            "crypto.offset", f"CRYPTO data up to offset {offset + length} exceeds {MAX_CRYPTO_BYTES} bytes"
        )
    out.append((offset, b[pos : pos + length]))
    return pos + length


def _ietf_frames(b: bytes) -> list[tuple[int, bytes]]:
    """CRYPTO (offset, data) of a decrypted Initial payload; the frames allowed in Initials.

    The reference of the compiled twin (classifier/_hello.pyx), which ``ietf_frames`` is when built.
    """
    n = len(b)
    pos = 0
    out: list[tuple[int, bytes]] = []
    zeros = _ZEROS.match
    while pos < n:
        ftype = b[pos]
        if ftype == 0x06:  # CRYPTO (the compiled twin, _hello.ietf_frames, reads it inline)
            pos = _crypto_frame(b, pos + 1, n, out)
        elif ftype == 0x00:  # PADDING: skip the whole run of zeros in C, not byte by byte
            pos = zeros(b, pos).end()  # type: ignore[union-attr]  # b[pos] is a zero
        elif ftype == 0x01:  # PING
            pos += 1
        elif ftype == 0x02 or ftype == 0x03:  # ACK, ACK_ECN
            _largest, pos = _varint(b, pos + 1, n, "frame.ack")
            _delay, pos = _varint(b, pos, n, "frame.ack")
            count, pos = _varint(b, pos, n, "frame.ack")
            _first, pos = _varint(b, pos, n, "frame.ack")
            if count * 2 > n - pos:
                raise _err("frame.ack", f"ACK range count {count} overruns the packet")
            for _ in range(count * 2):
                _v, pos = _varint(b, pos, n, "frame.ack")
            if ftype == 0x03:
                for _ in range(3):
                    _v, pos = _varint(b, pos, n, "frame.ack")
        elif ftype == 0x1C or ftype == 0x1D:  # CONNECTION_CLOSE: nothing after it matters
            break
        else:
            raise _err("frame.type", f"frame type {ftype:#04x} is not allowed in an Initial packet")
    return out


# The compiled twin bounds the handshake by its own copy of MAX_CRYPTO_BYTES: chosen while they agree.
COMPILED_IETF_FRAMES: Callable[[bytes], list[tuple[int, bytes]]] | None = (
    compiled_function("_hello", "ietf_frames")
    if compiled_function("_hello", "MAX_CRYPTO_BYTES") == MAX_CRYPTO_BYTES
    else None
)
ietf_frames: Callable[[bytes], list[tuple[int, bytes]]] = COMPILED_IETF_FRAMES or _ietf_frames

_GQUIC_LEN = (1, 2, 4, 6)


def _gquic_frames(b: bytes, v: _Version, pn_len: int, crypto_frames: bool) -> list[tuple[int, bytes]]:
    """Handshake (offset, data) of a gQUIC frame sequence: stream-1 STREAM data, or CRYPTO frames
    (type 0x08, IETF encoding) for Q050/T05x (Wireshark ``packet-gquic.c``, lsquic)."""
    n = len(b)
    order: Literal["big", "little"] = "big" if v.big_endian else "little"
    pos = 0
    out: list[tuple[int, bytes]] = []
    while pos < n:
        ftype = b[pos]
        pos += 1
        if ftype & 0x80:  # STREAM: 1fdooo ss
            id_len = (ftype & 3) + 1
            ooo = (ftype >> 2) & 7
            off_len = ooo + 1 if ooo else 0
            has_len = ftype & 0x20
            need = id_len + off_len + (2 if has_len else 0)
            if pos + need > n:
                raise _err("frame.stream", "truncated STREAM frame header")
            stream_id = int.from_bytes(b[pos : pos + id_len], order)
            pos += id_len
            offset = int.from_bytes(b[pos : pos + off_len], order)
            pos += off_len
            if has_len:
                length = int.from_bytes(b[pos : pos + 2], order)
                pos += 2
            else:
                length = n - pos
            if pos + length > n:
                raise _err("frame.stream", f"STREAM data of {length} bytes overruns the packet")
            if stream_id == 1 and not crypto_frames:
                if offset + length > MAX_CRYPTO_BYTES:
                    raise _err(
                        "crypto.offset",
                        f"handshake data up to offset {offset + length} exceeds {MAX_CRYPTO_BYTES} bytes",
                    )
                out.append((offset, b[pos : pos + length]))
            pos += length
        elif ftype & 0x40:  # ACK (the Q034+ layout): 01n0llmm
            if v.layout == _GQUIC_PUBLIC and int(v.name[1:]) < 34:
                raise _err("frame.ack", f"ACK frames of {v.name} are not parsed")
            largest_len = _GQUIC_LEN[(ftype >> 2) & 3]
            block_len = _GQUIC_LEN[ftype & 3]
            pos += largest_len + 2  # largest acked, ack delay
            blocks = 0
            if ftype & 0x20:
                if pos >= n:
                    raise _err("frame.ack", "truncated ACK frame")
                blocks = b[pos]
                pos += 1
            pos += block_len + blocks * (1 + block_len)
            if pos >= n:
                raise _err("frame.ack", "truncated ACK frame")
            stamps = b[pos]
            pos += 1
            if stamps:
                pos += 5 + (stamps - 1) * 3
            if pos > n:
                raise _err("frame.ack", "truncated ACK frame")
        elif ftype == 0x00:  # PADDING: the rest of the packet
            break
        elif ftype == 0x07:  # PING
            pass
        elif ftype == 0x08 and crypto_frames:  # CRYPTO (Q050, T05x)
            pos = _crypto_frame(b, pos, n, out)
        elif ftype == 0x06:  # STOP_WAITING: least-unacked delta (an entropy byte before Q034)
            pos += pn_len + (1 if v.layout == _GQUIC_PUBLIC and int(v.name[1:]) < 34 else 0)
        elif ftype == 0x01:  # RST_STREAM
            pos += 16
        elif ftype == 0x04:  # WINDOW_UPDATE
            pos += 12
        elif ftype == 0x05:  # BLOCKED
            pos += 4
        elif ftype == 0x02 or ftype == 0x03:  # CONNECTION_CLOSE, GOAWAY
            break
        else:
            raise _err("frame.type", f"gQUIC frame type {ftype:#04x} unknown")
        if pos > n:
            raise _err("frame", f"gQUIC frame {ftype:#04x} overruns the packet")
    return out
