"""DNS message inspection (RFC 1035 wire format).

Written by hand rather than with ``dpkt.dns`` because we need field-level ``MalformedError``
reports (which section, which name, which pointer), strict compression-loop protection on
hostile input, framing of DNS-over-TCP streams that arrive a segment at a time, and raw rdata
kept for later parsing of SVCB/HTTPS (types 64/65) records.
"""

from __future__ import annotations

import struct
from _socket import AF_INET, AF_INET6, inet_ntop
from collections.abc import Callable
from dataclasses import dataclass

from classifier.compiled import compiled_function
from classifier.errors import MalformedError
from classifier.inspect import escape_label, normalize_hostname

__all__ = [
    "CLASS_IN",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_ANY",
    "TYPE_CNAME",
    "TYPE_DNAME",
    "TYPE_HTTPS",
    "TYPE_MX",
    "TYPE_NS",
    "TYPE_OPT",
    "TYPE_PTR",
    "TYPE_SOA",
    "TYPE_SRV",
    "TYPE_SVCB",
    "TYPE_TXT",
    "EchConfig",
    "Message",
    "Question",
    "Record",
    "ServiceBinding",
    "decode_name",
    "parse_message",
    "parse_message_py",
    "parse_svcb",
    "split_tcp_stream",
]

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_DNAME = 39
TYPE_OPT = 41
TYPE_SVCB = 64
TYPE_HTTPS = 65
TYPE_ANY = 255
CLASS_IN = 1

MAX_NAME_LENGTH = 255  # wire length: every label with its length byte, plus the root byte
MAX_POINTER_HOPS = 127  # a name has at most 127 labels; more hops than that is abuse

_HEADER = struct.Struct(">HHHHHH")
_QFIXED = struct.Struct(">HH")
_RFIXED = struct.Struct(">HHIH")
_NAME_TARGET_TYPES = frozenset({TYPE_CNAME, TYPE_NS, TYPE_PTR, TYPE_DNAME})


@dataclass(frozen=True, slots=True)
class Question:
    """One entry of a message's question section, as sent (the name decoded, not normalized)."""

    name: str
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record of an answer, authority or additional section, as sent."""

    name: str
    rtype: int
    rclass: int
    ttl: int  # as sent (unsigned 32-bit); clamping per RFC 2181 is the cache's business
    value: str | None  # A/AAAA address text; CNAME/NS/PTR/DNAME target name; otherwise None
    rdata: bytes  # raw rdata, kept for types parsed later (SVCB/HTTPS)


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed DNS message: what binding an answer to its query and the cache need."""

    id: int
    is_response: bool
    opcode: int
    rcode: int  # header rcode only (the EDNS extension bits stay in the OPT record)
    truncated: bool
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]
    authorities: tuple[Record, ...]
    additionals: tuple[Record, ...]


def _err(field: str, detail: str) -> MalformedError:
    return MalformedError("dns", field, detail)


# Cache of names already decoded in one message, keyed by the offset they start at:
# offset -> (text, wire length, pointer hops). Compression makes most names point at a few
# offsets (0xc00c above all), so this saves re-walking and re-decoding the same labels.
_NameCache = dict[int, tuple[str, int, int]]


def _decode(data: bytes, offset: int, cache: _NameCache | None) -> tuple[str, int]:
    n = len(data)
    if offset < 0 or offset >= n:
        raise _err("name.offset", f"name starts at {offset}, outside the {n}-byte message")
    labels: list[bytes] = []
    pos = seq_start = offset
    after = -1  # offset just after the name where it was found
    wire = 1  # the root byte
    hops = 0
    suffix: str | None = None
    while True:
        if pos >= n:
            raise _err("name.label", "name runs past the end of the message")
        length = data[pos]
        if length == 0:
            if after < 0:
                after = pos + 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise _err("name.pointer", "truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= seq_start:
                raise _err("name.pointer", f"pointer at {pos} to {target} does not point backwards")
            if after < 0:
                after = pos + 2
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise _err("name.pointer", "too many compression pointers")
            if cache is not None and target in cache:
                suffix, s_wire, s_hops = cache[target]
                wire += s_wire - 1
                hops += s_hops
                if wire > MAX_NAME_LENGTH:
                    raise _err("name.length", f"name longer than {MAX_NAME_LENGTH} bytes")
                if hops > MAX_POINTER_HOPS:
                    raise _err("name.pointer", "too many compression pointers")
                break
            pos = seq_start = target
            continue
        if kind:
            raise _err("name.label", f"label type {kind:#04x} is not supported")
        pos += 1
        stop = pos + length
        if stop > n:
            raise _err("name.label", "label runs past the end of the message")
        wire += length + 1
        if wire > MAX_NAME_LENGTH:
            raise _err("name.length", f"name longer than {MAX_NAME_LENGTH} bytes")
        labels.append(data[pos:stop])
        pos = stop

    raw = b".".join(labels)
    if raw.count(b".") == len(labels) - 1 or not labels:
        text = normalize_hostname(raw)
    else:  # a label holds a dot byte: escape it so label boundaries stay unambiguous
        text = ".".join([escape_label(label) for label in labels])
    if suffix is not None:
        text = f"{text}.{suffix}" if text and suffix else text or suffix
    if cache is not None:
        cache[offset] = (text, wire, hops)
    return text, after


def decode_name(data: bytes, offset: int) -> tuple[str, int]:
    """The domain name at ``offset`` of message ``data`` and the offset just after it in place.

    Compression pointers must point strictly before the start of the label sequence they end
    (so every chain terminates), at most 127 hops; wire length at most 255; label types
    0x40/0x80 are refused. The name is lowercased, without trailing dot, odd bytes escaped;
    the root is ``""``.
    """
    return _decode(data, offset, None)


def _records(
    data: bytes, pos: int, count: int, section: str, cache: _NameCache
) -> tuple[tuple[Record, ...], int]:
    n = len(data)
    out: list[Record] = []
    for i in range(count):
        if pos >= n:
            raise _err(f"{section}.count", f"header says {count} records, message holds {i}")
        name, pos = _decode(data, pos, cache)
        if pos + 10 > n:
            raise _err(f"{section}.fixed", "message ends inside type/class/ttl/rdlength")
        rtype, rclass, ttl, rdlength = _RFIXED.unpack_from(data, pos)
        start = pos + 10
        pos = start + rdlength
        if pos > n:
            raise _err(f"{section}.rdlength", f"rdata of {rdlength} bytes overruns the message")
        rdata = data[start:pos]
        value: str | None = None
        if rtype == TYPE_A and rclass & 0x7FFF == CLASS_IN:  # low 15 bits: mDNS sets the top one
            if rdlength != 4:
                raise _err(f"{section}.rdlength", f"A record with rdlength {rdlength}")
            value = inet_ntop(AF_INET, rdata)
        elif rtype == TYPE_AAAA and rclass & 0x7FFF == CLASS_IN:
            if rdlength != 16:
                raise _err(f"{section}.rdlength", f"AAAA record with rdlength {rdlength}")
            value = inet_ntop(AF_INET6, rdata)
        elif rtype in _NAME_TARGET_TYPES:
            if rdlength == 0:
                raise _err(f"{section}.rdata", "empty rdata where a name is expected")
            value, end = _decode(data, start, cache)
            if end > pos:
                raise _err(f"{section}.rdata", "name runs past the end of its rdata")
        out.append(Record(name, rtype, rclass, ttl, value, rdata))
    return tuple(out), pos


def parse_message_py(data: bytes) -> Message:
    """One DNS message (a UDP payload, or one message from :func:`split_tcp_stream`).

    Any inconsistency raises ``MalformedError`` naming the section and field; bytes after the
    last record the header announces are ignored. The pure-Python reference of the compiled
    ``parse_message`` (classifier/_dnsparse.pyx, chosen at the end of this module).
    """
    n = len(data)
    if n < 12:
        raise _err("header.length", f"{n} bytes, a header needs 12")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data, 0)
    cache: _NameCache = {}
    pos = 12
    questions: list[Question] = []
    for i in range(qdcount):
        if pos >= n:
            raise _err("question.count", f"header says {qdcount} questions, message holds {i}")
        name, pos = _decode(data, pos, cache)
        if pos + 4 > n:
            raise _err("question.fixed", "message ends inside qtype/qclass")
        qtype, qclass = _QFIXED.unpack_from(data, pos)
        pos += 4
        questions.append(Question(name, qtype, qclass))
    answers, pos = _records(data, pos, ancount, "answer", cache)
    authorities, pos = _records(data, pos, nscount, "authority", cache)
    additionals, pos = _records(data, pos, arcount, "additional", cache)
    return Message(
        id=ident,
        is_response=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        rcode=flags & 0xF,
        truncated=bool(flags & 0x0200),
        questions=tuple(questions),
        answers=answers,
        authorities=authorities,
        additionals=additionals,
    )


def split_tcp_stream(data: bytes) -> tuple[list[bytes], int]:
    """Split DNS-over-TCP bytes (RFC 1035 4.2.2: 2-byte length prefix) into whole messages.

    Returns the complete messages and how many bytes they used; a partial trailing message
    is left for the next call. Never raises: each message is judged by :func:`parse_message`.
    """
    n = len(data)
    pos = 0
    out: list[bytes] = []
    while pos + 2 <= n:
        end = pos + 2 + ((data[pos] << 8) | data[pos + 1])
        if end > n:
            break
        out.append(data[pos + 2 : end])
        pos = end
    return out, pos


# --------------------------------------------------------------------------------------------
# SVCB / HTTPS records (RFC 9460), with the ECH configs they publish (RFC 9849 section 4)
# --------------------------------------------------------------------------------------------

SVC_ALPN = 1
SVC_IPV4HINT = 4
SVC_ECH = 5
SVC_IPV6HINT = 6
ECH_VERSION = 0xFE0D


@dataclass(frozen=True, slots=True)
class EchConfig:
    """One ECHConfig: the client encrypts to it and shows ``public_name`` as its outer SNI."""

    version: int
    config_id: int
    public_name: str


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    """What an HTTPS/SVCB record tells a client: where to connect, with which ALPN and ECH keys."""

    priority: int  # 0 = alias mode
    target: str  # TargetName ("" for ".", meaning the owner name)
    alpn: tuple[str, ...]
    ipv4hint: tuple[bytes, ...]
    ipv6hint: tuple[bytes, ...]
    ech: tuple[EchConfig, ...]


def _svcb_err(field: str, detail: str) -> MalformedError:
    return MalformedError("dns", f"svcb.{field}", detail)


def parse_svcb(rdata: bytes) -> ServiceBinding:
    """Parse the rdata of an SVCB (64) or HTTPS (65) record.

    TargetName is never compressed (RFC 9460 2.2), so the rdata parses on its own.
    """
    n = len(rdata)
    if n < 3:
        raise _svcb_err("priority", f"rdata of {n} bytes is too short")
    priority = (rdata[0] << 8) | rdata[1]
    labels = []
    pos = 2
    while True:
        if pos >= n:
            raise _svcb_err("target", "TargetName runs past the rdata")
        ln = rdata[pos]
        pos += 1
        if ln == 0:
            break
        if ln > 63 or pos + ln > n:
            raise _svcb_err("target", f"bad label length {ln}")
        labels.append(escape_label(rdata[pos : pos + ln]))
        pos += ln
    target = ".".join(labels).lower()
    alpn: tuple[str, ...] = ()
    v4: tuple[bytes, ...] = ()
    v6: tuple[bytes, ...] = ()
    ech: tuple[EchConfig, ...] = ()
    while pos < n:
        if pos + 4 > n:
            raise _svcb_err("param", "truncated SvcParam header")
        key = (rdata[pos] << 8) | rdata[pos + 1]
        ln = (rdata[pos + 2] << 8) | rdata[pos + 3]
        pos += 4
        if pos + ln > n:
            raise _svcb_err("param", f"SvcParam {key} of {ln} bytes runs past the rdata")
        value = rdata[pos : pos + ln]
        pos += ln
        if key == SVC_ALPN:
            alpn = _svcb_alpn(value)
        elif key == SVC_IPV4HINT:
            if ln % 4 or not ln:
                raise _svcb_err("ipv4hint", f"length {ln} is not a multiple of 4")
            v4 = tuple(value[i : i + 4] for i in range(0, ln, 4))
        elif key == SVC_IPV6HINT:
            if ln % 16 or not ln:
                raise _svcb_err("ipv6hint", f"length {ln} is not a multiple of 16")
            v6 = tuple(value[i : i + 16] for i in range(0, ln, 16))
        elif key == SVC_ECH:
            ech = _ech_config_list(value)
    return ServiceBinding(priority, target, alpn, v4, v6, ech)


def _svcb_alpn(value: bytes) -> tuple[str, ...]:
    out = []
    pos = 0
    while pos < len(value):
        ln = value[pos]
        if ln == 0 or pos + 1 + ln > len(value):
            raise _svcb_err("alpn", "bad alpn-id length")
        out.append(value[pos + 1 : pos + 1 + ln].decode("ascii", "backslashreplace"))
        pos += 1 + ln
    return tuple(out)


def _ech_config_list(value: bytes) -> tuple[EchConfig, ...]:
    """ECHConfigList: configs of unknown versions are skipped, as clients do."""
    if len(value) < 2 or ((value[0] << 8) | value[1]) != len(value) - 2:
        raise _svcb_err("ech", "ECHConfigList length does not match")
    out = []
    pos = 2
    while pos < len(value):
        if pos + 4 > len(value):
            raise _svcb_err("ech", "truncated ECHConfig header")
        version = (value[pos] << 8) | value[pos + 1]
        ln = (value[pos + 2] << 8) | value[pos + 3]
        body = value[pos + 4 : pos + 4 + ln]
        pos += 4 + ln
        if len(body) != ln:
            raise _svcb_err("ech", "ECHConfig runs past the list")
        if version == ECH_VERSION:
            out.append(_ech_config(version, body))
    return tuple(out)


def _ech_config(version: int, b: bytes) -> EchConfig:
    # HpkeKeyConfig: config_id(1) kem_id(2) public_key<2> cipher_suites<2>; then
    # maximum_name_length(1) public_name<1> extensions<2>.
    try:
        config_id = b[0]
        pos = 3
        pos += 2 + ((b[pos] << 8) | b[pos + 1])
        pos += 2 + ((b[pos] << 8) | b[pos + 1])
        pos += 1
        ln = b[pos]
        name = b[pos + 1 : pos + 1 + ln]
    except IndexError:
        raise _svcb_err("ech", "truncated ECHConfig contents") from None
    if len(name) != ln or not ln:
        raise _svcb_err("ech", "bad public_name")
    return EchConfig(version, config_id, normalize_hostname(name))


# The compiled twin of ``parse_message_py`` (classifier/_dnsparse.pyx), found last: it imports the
# dataclasses and helpers above from this module. Every DNS message is parsed, by every worker of
# ``scan --workers`` too, so this is once-per-message work that every process repeats.
COMPILED_PARSE_MESSAGE: Callable[[bytes], Message] | None = compiled_function("_dnsparse", "parse_message")
parse_message: Callable[[bytes], Message] = COMPILED_PARSE_MESSAGE or parse_message_py
