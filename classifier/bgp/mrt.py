"""Stream MRT files (RFC 6396, RFC 8050) record by record; decode only what can concern an operator.

mrtparse decodes a record into nested dicts, which costs about a millisecond for a RIB record of a
full table: a million prefixes would take a quarter of an hour. So this module frames the records
itself (a 12-byte header and a length), counts them, and hands a record to mrtparse only when it can
matter to the audit:

* a RIB or TABLE_DUMP record only if its bytes contain an operator ASN in the encoding its AS_PATH
  uses (4 bytes in TABLE_DUMP_V2 and the AS4 BGP4MP subtypes; 2 bytes, or 4 in AS4_PATH,
  elsewhere). A path through an operator cannot hide from that test; a false hit only costs a
  decode, after which the decoded path decides.
* a BGP4MP UPDATE if it contains an operator ASN, or if it announces or withdraws a prefix for
  which its peer has an operator route live (withdrawals carry no AS_PATH): the prefixes an UPDATE
  touches are listed by walking its NLRI fields, which is much cheaper than decoding it.
* PEER_INDEX_TABLE and BGP4MP state changes always (they are small and change the state).

Nothing is kept between records except what the sink keeps, so memory does not grow with the file.
Framing problems (a truncated record, a damaged compressed stream, bytes that are not MRT) stop
the file with a problem naming the record number and byte offset (of the decompressed stream);
a record mrtparse cannot decode is reported the same way and skipped.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import re
import signal
import socket
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from . import aspath

_HEADER = struct.Struct(">IHHI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

# RFC 6396 types and subtypes (protocol constants, not audit data)
TABLE_DUMP = 12
TABLE_DUMP_V2 = 13
BGP4MP = 16
BGP4MP_ET = 17
TYPE_NAMES = {
    0: "NULL", 1: "START", 2: "DIE", 3: "I_AM_DEAD", 4: "PEER_DOWN", 5: "BGP", 6: "RIP", 7: "IDRP",
    8: "RIPNG", 9: "BGP4PLUS", 10: "BGP4PLUS_01", 11: "OSPFv2", 12: "TABLE_DUMP",
    13: "TABLE_DUMP_V2", 16: "BGP4MP", 17: "BGP4MP_ET", 32: "ISIS", 33: "ISIS_ET", 48: "OSPFv3",
    49: "OSPFv3_ET",
}
PEER_INDEX_TABLE = 1
RIB_UNICAST = {2: 4, 4: 16, 8: 4, 10: 16}  # subtype -> address size (IPv4/IPv6 unicast, add-path)
RIB_GENERIC = {6, 12}
STATE_CHANGE = {0: 2, 5: 4}  # subtype -> AS number size
MESSAGE = {1: 2, 4: 4, 6: 2, 7: 4, 8: 2, 9: 4, 10: 2, 11: 4}
ADDPATH_MESSAGES = {8, 9, 10, 11}
BGP_UPDATE = 2
ESTABLISHED = 6
AFI_IPV4 = 1
AFI_IPV6 = 2
SAFI_UNICAST = 1
ATTR_AS_PATH = 2
ATTR_MP_REACH = 14
ATTR_MP_UNREACH = 15
ATTR_AS4_PATH = 17

MAX_RECORD = 16 << 20  # far above any real record; a larger length means the framing is lost

GZIP_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"

Peer = tuple[int | None, str]  # (peer ASN, peer address)


class Sink(Protocol):
    """What the reader reports to; see :class:`classifier.bgp.routes.RouteTable`."""

    def live_prefixes(self, peer: Peer) -> Container[bytes]:
        """:func:`prefix_key` of every prefix the peer has an operator route for."""
        ...

    def announce(self, file: str, source: str, when: float, peer: Peer, prefix: str,
                 path_id: int | None, path: aspath.Path, seen: float) -> None: ...

    def withdraw(self, file: str, when: float, peer: Peer, prefix: str, path_id: int | None) -> None: ...

    def session_down(self, file: str, when: float, peer: Peer, state: str) -> None: ...

    def seen_until(self, when: float) -> None:
        """The input went on until ``when`` (its last record), decoded or not."""
        ...


@dataclass
class FileStats:
    """What reading one file found: counts, the time span and the problems."""

    file: str
    compression: str = "none"
    records: int = 0
    bytes: int = 0
    decoded: int = 0
    by_type: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    rib_prefixes: int = 0
    rib_entries: int = 0
    updates: int = 0
    state_changes: int = 0
    first_ts: float | None = None
    last_ts: float | None = None  # with the microseconds of BGP4MP_ET
    problems: list[str] = field(default_factory=list)
    complete: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "compression": self.compression, "records": self.records,
            "bytes": self.bytes, "decoded": self.decoded, "by_type": dict(self.by_type),
            "skipped": dict(self.skipped), "rib_prefixes": self.rib_prefixes,
            "rib_entries": self.rib_entries, "updates": self.updates,
            "state_changes": self.state_changes, "problems": list(self.problems),
            "complete": self.complete,
        }


class MrtError(Exception):
    """The file cannot be read on from here; the message names record and offset."""


def open_input(path: str) -> tuple[BinaryIO, str]:
    """The decompressed byte stream of ``path`` (plain, gzip or bzip2, detected by content)."""
    if path == "-":
        raw = sys.stdin.buffer
        head = raw.peek(3)[:3] if isinstance(raw, io.BufferedReader) else b""
        if head.startswith(GZIP_MAGIC):
            return gzip.GzipFile(fileobj=raw, mode="rb"), "gzip"
        if head.startswith(BZ2_MAGIC):
            return bz2.BZ2File(raw, "rb"), "bzip2"
        return raw, "none"
    with open(path, "rb") as f:
        head = f.read(3)
    if head.startswith(GZIP_MAGIC):
        return gzip.open(path, "rb"), "gzip"
    if head.startswith(BZ2_MAGIC):
        return bz2.open(path, "rb"), "bzip2"
    return open(path, "rb"), "none"


def import_mrtparse() -> Any:
    """mrtparse resets SIGPIPE to the default on import (it kills the process on a closed pipe);
    put back the handler the command line relies on. Its AIGP decoder loops forever (growing a
    list until memory runs out) on a TLV whose length is 0; a bounded one replaces it."""
    try:
        previous = signal.getsignal(signal.SIGPIPE)
    except (AttributeError, ValueError):
        previous = None
    import mrtparse
    if previous is not None:
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGPIPE, previous)
    mrtparse.BgpAttr.unpack_aigp = _unpack_aigp
    return mrtparse


def _unpack_aigp(self: Any) -> None:
    """mrtparse's ``BgpAttr.unpack_aigp`` (RFC 7311 TLVs), refusing a TLV length below its own
    3-byte header, which would not advance the position."""
    from mrtparse import MrtFormatError

    attr_len = self.p + self.data["length"]
    self.data["value"] = []
    while self.p < attr_len:
        tlv: dict[str, Any] = {"type": self.val_num(1), "length": self.val_num(2)}
        if tlv["length"] < 3:
            raise MrtFormatError(f"AIGP TLV length {tlv['length']} is below 3")
        tlv["value"] = self.val_num(tlv["length"] - 3)
        self.data["value"].append(tlv)


class Needles:
    """The byte strings an operator ASN takes in an AS_PATH: 4-byte always, 2-byte below 65536.

    One compiled alternation per encoding: a regex search over a record is faster than one
    substring search per ASN.
    """

    def __init__(self, operator_asns: Iterable[int]) -> None:
        asns = sorted(set(operator_asns))
        four = [_U32.pack(a) for a in asns]
        two = [_U16.pack(a) for a in asns if a < 0x10000]
        self.four = self._pattern(four)
        self.two_or_four = self._pattern(four + two)

    @staticmethod
    def _pattern(needles: list[bytes]) -> re.Pattern[bytes]:
        return re.compile(b"|".join(re.escape(n) for n in needles) if needles else b"(?!)")

    @staticmethod
    def found(body: bytes, pattern: re.Pattern[bytes]) -> bool:
        return pattern.search(body) is not None


class _Feed:
    """A file-like object serving one record to mrtparse.Reader, which reads from a stream."""

    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0

    def load(self, data: bytes) -> None:
        self.buf = data
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.buf) if n < 0 else self.pos + n
        chunk = self.buf[self.pos:end]
        self.pos += len(chunk)
        return chunk


class MrtReader:
    """Read one MRT file into a :class:`Sink`; ``stats`` holds the counts and problems."""

    def __init__(self, path: str, name: str, needles: Needles, sink: Sink, decode_all: bool = False) -> None:
        self.decode_all = decode_all  # no prefilter: every record through mrtparse (tests, baseline)
        self.path = path
        self.name = name
        self.needles = needles
        self.sink = sink
        self.stats = FileStats(name)
        self.peers: list[Peer] = []
        self._mrtparse = import_mrtparse()
        self._feed = _Feed()
        self._reader = self._mrtparse.Reader(self._feed)

    # -- framing -----------------------------------------------------------------------------

    def run(self) -> FileStats:
        st = self.stats
        try:
            stream, st.compression = open_input(self.path)
        except OSError as err:
            st.problems.append(f"{self.name}: cannot open: {err.strerror or err}")
            return st
        offset = 0
        number = 0
        try:
            with stream:
                while True:
                    number += 1
                    where = f"{self.name}: record {number}: offset {offset}"
                    header = self._read(stream, 12, where)
                    if not header:
                        st.complete = True
                        break
                    if len(header) < 12:
                        raise MrtError(f"{where}: truncated record header: {len(header)} of 12 bytes")
                    ts, mtype, subtype, length = _HEADER.unpack(header)
                    if mtype not in TYPE_NAMES:
                        raise MrtError(f"{where}: not an MRT record (type {mtype}); "
                                       "stopped reading this file")
                    if length > MAX_RECORD:
                        raise MrtError(f"{where}: record length {length} is not plausible; "
                                       "stopped reading this file")
                    body = self._read(stream, length, where)
                    if len(body) < length:
                        raise MrtError(f"{where}: truncated record: header says {length} bytes, "
                                       f"{len(body)} present")
                    st.records += 1
                    st.bytes += 12 + length
                    offset += 12 + length
                    self._record(where, ts, mtype, subtype, header, body)
        except MrtError as err:
            st.problems.append(str(err))
        except OSError as err:  # e.g. a read error on the device
            st.problems.append(f"{self.name}: record {number}: offset {offset}: read error: {err}")
        if st.last_ts is not None:
            self.sink.seen_until(st.last_ts)
        return st

    @staticmethod
    def _read(stream: BinaryIO, n: int, where: str) -> bytes:
        try:
            return stream.read(n)
        except EOFError:
            raise MrtError(f"{where}: compressed stream ends early (truncated file)") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as err:
            raise MrtError(f"{where}: damaged compressed stream: {err}") from None

    # -- prefilter ---------------------------------------------------------------------------

    def _record(self, where: str, ts: int, mtype: int, subtype: int, header: bytes, body: bytes) -> None:
        st = self.stats
        st.by_type[TYPE_NAMES[mtype]] += 1
        when = ts + _U32.unpack_from(body)[0] / 1e6 if mtype == BGP4MP_ET and len(body) >= 4 else ts
        if st.first_ts is None or when < st.first_ts:
            st.first_ts = when
        if st.last_ts is None or when > st.last_ts:
            st.last_ts = when
        if mtype == TABLE_DUMP_V2:
            if subtype == PEER_INDEX_TABLE:
                self._decode(where, header + body)
            elif subtype in RIB_UNICAST:
                size = RIB_UNICAST[subtype]
                st.rib_prefixes += 1
                plen_at = 4
                if len(body) > plen_at:
                    count_at = plen_at + 1 + (body[plen_at] + 7) // 8
                    if len(body) >= count_at + 2 and body[plen_at] <= size * 8:
                        st.rib_entries += _U16.unpack_from(body, count_at)[0]
                if self.decode_all or Needles.found(body, self.needles.four):
                    self._decode(where, header + body)
            elif subtype in RIB_GENERIC:
                st.rib_prefixes += 1
                if self.decode_all or Needles.found(body, self.needles.four):
                    self._decode(where, header + body)
            else:
                st.skipped["TABLE_DUMP_V2 multicast/other subtype"] += 1
        elif mtype == TABLE_DUMP:
            st.rib_entries += 1  # one record per prefix and peer: distinct prefixes are not counted
            if self.decode_all or Needles.found(body, self.needles.two_or_four):
                self._decode(where, header + body)
        elif mtype in (BGP4MP, BGP4MP_ET):
            rest = body[4:] if mtype == BGP4MP_ET else body
            if subtype in STATE_CHANGE:
                st.state_changes += 1
                self._decode(where, header + body)
            elif subtype in MESSAGE:
                as_size = MESSAGE[subtype]
                peer, message = _peek_bgp4mp(rest, as_size)
                if message is None:  # not even the BGP4MP header parses: let mrtparse say why
                    self._decode(where, header + body)
                    return
                if len(message) <= 18 or message[18] != BGP_UPDATE:
                    return  # OPEN, KEEPALIVE, NOTIFICATION: state changes say what happened
                st.updates += 1
                needles = self.needles.four if as_size == 4 else self.needles.two_or_four
                if self.decode_all or Needles.found(rest, needles):
                    self._decode(where, header + body)
                    return
                live = self.sink.live_prefixes(peer)
                if live:
                    touched = touched_prefixes(message, subtype in ADDPATH_MESSAGES)
                    if touched is None or any(k in live for k in touched):
                        self._decode(where, header + body)
            else:
                st.skipped[f"{TYPE_NAMES[mtype]} subtype {subtype}"] += 1
        else:
            st.skipped[TYPE_NAMES[mtype]] += 1

    # -- decoding ----------------------------------------------------------------------------

    def _decode(self, where: str, record: bytes) -> None:
        self._feed.load(record)
        reader = self._reader
        reader.err = None
        try:
            next(reader)
            if reader.err:
                raise ValueError(reader.err_msg or "undecodable record")
        except Exception as err:  # mrtparse raises whatever its lookups raise on bad bytes
            self.stats.problems.append(f"{where}: corrupt record skipped: {type(err).__name__}: {err}")
            return
        self.stats.decoded += 1
        try:
            self._dispatch(reader.data)
        except (KeyError, IndexError, TypeError, ValueError) as err:  # a structure mrtparse left out
            self.stats.problems.append(f"{where}: undecodable record skipped: {type(err).__name__}: {err}")

    def _dispatch(self, d: dict[str, Any]) -> None:
        mtype = next(iter(d["type"]))
        subtype = next(iter(d["subtype"]))
        when = float(next(iter(d["timestamp"])))
        if "microsecond_timestamp" in d:
            when += d["microsecond_timestamp"] / 1e6
        if mtype == TABLE_DUMP_V2:
            if subtype == PEER_INDEX_TABLE:
                self.peers = [(int(e["peer_as"]), e["peer_ip"]) for e in d["peer_entries"]]
            elif subtype in RIB_UNICAST:
                self._rib(when, f"{d['prefix']}/{d['length']}", d["rib_entries"])
            elif subtype in RIB_GENERIC:
                if d["safi"][0] != SAFI_UNICAST or d["afi"][0] not in (AFI_IPV4, AFI_IPV6):
                    return
                for n in d["nlri"]:
                    self._rib(when, f"{n['prefix']}/{n['length']}", d["rib_entries"])
        elif mtype == TABLE_DUMP:
            path = _path(d["path_attributes"], two_byte=True)
            peer = (int(d["peer_as"]), d["peer_ip"])
            originated = float(next(iter(d["originated_time"])))
            self.sink.announce(self.name, "rib", _sane(originated, when), peer,
                               f"{d['prefix']}/{d['length']}", None, path, when)
        elif subtype in STATE_CHANGE:
            old = next(iter(d["old_state"]))
            new = next(iter(d["new_state"]))
            if old == ESTABLISHED and new != ESTABLISHED:
                peer = (int(d["peer_as"]), d["peer_ip"])
                self.sink.session_down(self.name, when, peer, next(iter(d["new_state"].values())))
        else:
            self._message(when, subtype, d)

    def _rib(self, when: float, prefix: str, entries: list[dict[str, Any]]) -> None:
        for e in entries:
            index = e["peer_index"]
            peer = self.peers[index] if index < len(self.peers) else (None, f"peer-index-{index}")
            path = _path(e["path_attributes"], two_byte=False)
            originated = float(next(iter(e["originated_time"])))
            self.sink.announce(self.name, "rib", _sane(originated, when), peer, prefix,
                               e.get("path_id"), path, when)

    def _message(self, when: float, subtype: int, d: dict[str, Any]) -> None:
        msg = d["bgp_message"]
        if next(iter(msg["type"])) != BGP_UPDATE:
            return
        peer = (int(d["peer_as"]), d["peer_ip"])
        sink = self.sink
        for w in msg.get("withdrawn_routes", ()):
            sink.withdraw(self.name, when, peer, f"{w['prefix']}/{w['length']}", w.get("path_id"))
        attrs = msg.get("path_attributes", ())
        announced = list(msg.get("nlri", ()))
        for a in attrs:
            kind = next(iter(a["type"]))
            value = a.get("value")
            if kind == ATTR_MP_UNREACH and _unicast(value):
                for w in value.get("withdrawn_routes", ()):
                    sink.withdraw(self.name, when, peer, f"{w['prefix']}/{w['length']}", w.get("path_id"))
            elif kind == ATTR_MP_REACH and _unicast(value):
                announced.extend(value.get("nlri", ()))
        if not announced:
            return
        path = _path(attrs, two_byte=MESSAGE[subtype] == 2)
        for n in announced:
            sink.announce(self.name, "update", when, peer, f"{n['prefix']}/{n['length']}",
                          n.get("path_id"), path, when)


def _unicast(value: Any) -> bool:
    if not isinstance(value, dict) or "safi" not in value:
        return False
    return next(iter(value["safi"])) == SAFI_UNICAST and next(iter(value["afi"])) in (AFI_IPV4, AFI_IPV6)


def _path(attrs: Iterable[dict[str, Any]], two_byte: bool) -> aspath.Path:
    as_path: aspath.Path = ()
    as4_path: aspath.Path = ()
    for a in attrs:
        kind = next(iter(a["type"]))
        if kind == ATTR_AS_PATH:
            as_path = aspath.from_segments(a["value"])
        elif kind == ATTR_AS4_PATH and two_byte:
            as4_path = aspath.from_segments(a["value"])
    return aspath.merge_as4(as_path, as4_path) if two_byte else as_path


def _sane(originated: float, dumped: float) -> float:
    """A RIB entry's originated time, unless the collector wrote none (0) or one after the dump."""
    return originated if 0 < originated <= dumped else dumped


def _peek_bgp4mp(rest: bytes, as_size: int) -> tuple[Peer, bytes | None]:
    """(peer, BGP message bytes) of a BGP4MP message without decoding it."""
    try:
        peer_as = int.from_bytes(rest[:as_size], "big")
        at = 2 * as_size + 2  # peer AS, local AS, interface index
        afi = _U16.unpack_from(rest, at)[0]
        at += 2
        size = 4 if afi == AFI_IPV4 else 16 if afi == AFI_IPV6 else 0
        if not size or len(rest) < at + 2 * size:
            return (peer_as, ""), None
        family = socket.AF_INET if size == 4 else socket.AF_INET6
        return (peer_as, socket.inet_ntop(family, rest[at:at + size])), rest[at + 2 * size:]
    except (struct.error, ValueError):
        return (None, ""), None


def prefix_key(prefix: str) -> bytes:
    """A prefix as its NLRI bytes, tagged with the family: what :func:`touched_prefixes` lists."""
    addr, _, length = prefix.partition("/")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    n = int(length)
    return bytes((AFI_IPV6 if family == socket.AF_INET6 else AFI_IPV4, n)) + \
        socket.inet_pton(family, addr)[:(n + 7) // 8]


def touched_prefixes(message: bytes, addpath: bool) -> list[bytes] | None:
    """:func:`prefix_key` of every prefix a BGP UPDATE withdraws or announces (NLRI, withdrawn
    routes, MP_REACH_NLRI, MP_UNREACH_NLRI); None if the message does not hold together."""
    try:
        end = _U16.unpack_from(message, 16)[0]
        if end > len(message):
            return None
        keys: list[bytes] = []
        at = 19
        wlen = _U16.unpack_from(message, at)[0]
        at += 2
        _nlri(message, at, at + wlen, AFI_IPV4, addpath, keys)
        at += wlen
        attrs_end = at + 2 + _U16.unpack_from(message, at)[0]
        at += 2
        while at < attrs_end:
            flags, kind = message[at], message[at + 1]
            if flags & 0x10:
                alen, at = _U16.unpack_from(message, at + 2)[0], at + 4
            else:
                alen, at = message[at + 2], at + 3
            if kind in (ATTR_MP_REACH, ATTR_MP_UNREACH):
                afi = _U16.unpack_from(message, at)[0]
                if afi != AFI_IPV4 and afi != AFI_IPV6:  # no IP prefixes: none can be live
                    at += alen
                    continue
                # MP_REACH: AFI, SAFI, next hop length, next hop, reserved; MP_UNREACH: AFI, SAFI
                start = at + 4 + message[at + 3] + 1 if kind == ATTR_MP_REACH else at + 3
                _nlri(message, start, at + alen, afi, addpath, keys)
            at += alen
        _nlri(message, attrs_end, end, AFI_IPV4, addpath, keys)
        return keys
    except (struct.error, IndexError):
        return None


def _nlri(message: bytes, at: int, end: int, afi: int, addpath: bool, keys: list[bytes]) -> None:
    if end > len(message):
        raise IndexError("NLRI runs past the message")
    while at < end:
        if addpath:
            at += 4
        n = message[at]
        size = (n + 7) // 8
        if at + 1 + size > end:
            raise IndexError("a prefix runs past its field")
        keys.append(bytes((afi, n)) + message[at + 1:at + 1 + size])
        at += 1 + size
