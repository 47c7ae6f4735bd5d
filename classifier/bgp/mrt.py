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
  touches are listed by walking its NLRI fields (:mod:`.updates`), much cheaper than decoding it.
* PEER_INDEX_TABLE and BGP4MP state changes always (they are small and change the state).

Decoded RIB entries become announcements here; decoded BGP4MP records go through the walker in
:mod:`.updates`. Every resulting route event goes to the sink. Nothing is kept between records
except what the sink keeps, so memory does not grow with the file.

Input is plain, gzip or bzip2, read by :mod:`classifier.compressed`: a damaged compressed stream
gives up every record before the damage. Framing problems (a truncated record, a damaged
compressed stream, bytes that are not MRT) stop the file with a problem naming the record number
and byte offset (of the decompressed stream) and, for compression damage, the byte of the
compressed file where it was found; a record mrtparse cannot decode is reported the same way and
skipped.
"""

from __future__ import annotations

import contextlib
import re
import signal
import struct
from collections import Counter
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from classifier.compressed import Input, InputError, open_input

from . import aspath
from .updates import (
    ADDPATH_MESSAGES,
    AFI_IPV4,
    AFI_IPV6,
    MESSAGE,
    SAFI_UNICAST,
    STATE_CHANGE,
    Announcement,
    Peer,
    RouteEvent,
    SessionState,
    Withdrawal,
    is_update,
    peek_bgp4mp,
    session_change,
    state_change,
    touches_any,
    update_events,
)

_HEADER = struct.Struct(">IHHI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

# RFC 6396 types and subtypes (protocol constants, not audit data)
TABLE_DUMP = 12
TABLE_DUMP_V2 = 13
BGP4MP = 16
BGP4MP_ET = 17
TYPE_NAMES = {
    0: "NULL",
    1: "START",
    2: "DIE",
    3: "I_AM_DEAD",
    4: "PEER_DOWN",
    5: "BGP",
    6: "RIP",
    7: "IDRP",
    8: "RIPNG",
    9: "BGP4PLUS",
    10: "BGP4PLUS_01",
    11: "OSPFv2",
    12: "TABLE_DUMP",
    13: "TABLE_DUMP_V2",
    16: "BGP4MP",
    17: "BGP4MP_ET",
    32: "ISIS",
    33: "ISIS_ET",
    48: "OSPFv3",
    49: "OSPFv3_ET",
}
PEER_INDEX_TABLE = 1
RIB_UNICAST = {2: 4, 4: 16, 8: 4, 10: 16}  # subtype -> address size (IPv4/IPv6 unicast, add-path)
RIB_GENERIC = {6, 12}

MAX_RECORD = 16 << 20  # far above any real record; a larger length means the framing is lost


class Sink(Protocol):
    """What the reader reports to; see :class:`classifier.bgp.routes.RouteTable`."""

    def live_prefixes(self, peer: Peer) -> Container[bytes]:
        """:func:`.updates.prefix_key` of every prefix the peer has an operator route for."""
        ...

    def announce(
        self,
        file: str,
        source: str,
        when: float,
        peer: Peer,
        prefix: str,
        path_id: int | None,
        path: aspath.Path,
        seen: float,
        attributes: Any = None,
        local_asn: int | None = None,
    ) -> None: ...

    def withdraw(self, file: str, when: float, peer: Peer, prefix: str, path_id: int | None) -> None: ...

    def session_down(self, file: str, when: float, peer: Peer, state: str) -> None: ...

    def session_state(self, file: str, event: SessionState) -> None:
        """Every BGP4MP state change (after :meth:`session_down` for one that leaves Established)."""
        ...

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
    # per peer: [first seen, last seen, BGP4MP messages and state changes] (RIB peers: the dump time)
    peers: dict[Peer, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "compression": self.compression,
            "records": self.records,
            "bytes": self.bytes,
            "decoded": self.decoded,
            "by_type": dict(self.by_type),
            "skipped": dict(self.skipped),
            "rib_prefixes": self.rib_prefixes,
            "rib_entries": self.rib_entries,
            "updates": self.updates,
            "state_changes": self.state_changes,
            "problems": list(self.problems),
            "complete": self.complete,
        }


class MrtError(Exception):
    """The file cannot be read on from here; the message names record and offset."""


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
    def found(data: bytes, pattern: re.Pattern[bytes], start: int = 0) -> bool:
        return pattern.search(data, start) is not None


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
        chunk = self.buf[self.pos : end]
        self.pos += len(chunk)
        return chunk


class MrtReader:
    """Read one MRT file into a :class:`Sink`; ``stats`` holds the counts and problems."""

    def __init__(
        self,
        path: str,
        name: str,
        needles: Needles,
        sink: Sink,
        decode_all: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.decode_all = decode_all  # no prefilter: every record through mrtparse (tests, baseline)
        self.progress = progress  # called with the size of each decompressed chunk read
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
            source = open_input(self.path)
        except InputError as err:
            st.problems.append(f"{self.name}: cannot open: {err}")
            return st
        st.compression = source.compression
        with source:
            try:
                self._frame(source)
            except MrtError as err:
                st.problems.append(str(err))
                damage = source.damage_after()  # garbage from a damaged compressed stream?
                if damage is not None:
                    st.problems.append(f"{self.name}: {damage}")
        if st.last_ts is not None:
            self.sink.seen_until(st.last_ts)
        return st

    def _where(self, number: int, offset: int) -> str:
        return f"{self.name}: record {number}: offset {offset}"

    def _frame(self, source: Input) -> None:
        """Cut the decompressed stream into records; stop at its end, or where it stops making sense."""
        st = self.stats
        read = source.source.read
        if self.progress is not None:
            read = _counted(read, self.progress)
        unpack = _HEADER.unpack_from
        buf = b""
        pos = 0
        base = 0  # offset of buf[0] in the decompressed stream
        number = 0
        while True:
            number += 1
            if len(buf) - pos < 12:
                base += pos
                buf, pos = _refill(buf[pos:], 12, read), 0
                if len(buf) < 12:
                    self._ended(source, number, base, len(buf), None)
                    return
            ts, mtype, subtype, length = unpack(buf, pos)
            if mtype not in TYPE_NAMES:
                raise MrtError(
                    f"{self._where(number, base + pos)}: not an MRT record (type {mtype}); "
                    "stopped reading this file"
                )
            if length > MAX_RECORD:
                raise MrtError(
                    f"{self._where(number, base + pos)}: record length {length} is not "
                    "plausible; stopped reading this file"
                )
            end = pos + 12 + length
            if end > len(buf):
                base += pos
                buf, pos = _refill(buf[pos:], 12 + length, read), 0
                end = 12 + length
                if end > len(buf):
                    self._ended(source, number, base, len(buf), length)
                    return
            st.records += 1
            st.bytes += 12 + length
            self._record(number, base + pos, ts, mtype, subtype, buf[pos:end])
            pos = end

    def _ended(self, source: Input, number: int, offset: int, have: int, length: int | None) -> None:
        """The data ran out ``have`` bytes into record ``number`` (``length``: its header's, if read)."""
        st = self.stats
        damage = source.source.damage
        where = self._where(number, offset)
        if length is None and have:
            cut = f"truncated record header: {have} of 12 bytes"
        elif length is not None:
            cut = f"truncated record: header says {length} bytes, {have - 12} present"
        else:
            cut = ""
        if damage is not None:
            st.problems.append(f"{where}: {damage}" + (f"; {cut}" if cut else ""))
        elif cut:
            st.problems.append(f"{where}: {cut}")
        else:
            st.complete = True

    # -- prefilter ---------------------------------------------------------------------------

    def _record(self, number: int, offset: int, ts: int, mtype: int, subtype: int, record: bytes) -> None:
        """Count the record and decode it if it can concern an operator (the record includes its
        12-byte header; its body starts at 12)."""
        st = self.stats
        st.by_type[TYPE_NAMES[mtype]] += 1
        when = ts + _U32.unpack_from(record, 12)[0] / 1e6 if mtype == BGP4MP_ET and len(record) >= 16 else ts
        if st.first_ts is None or when < st.first_ts:
            st.first_ts = when
        if st.last_ts is None or when > st.last_ts:
            st.last_ts = when
        if mtype == TABLE_DUMP_V2:
            if subtype == PEER_INDEX_TABLE:
                self._decode(number, offset, record)
            elif subtype in RIB_UNICAST:
                size = RIB_UNICAST[subtype]
                st.rib_prefixes += 1
                plen_at = 16  # sequence number (4) after the header
                if len(record) > plen_at:
                    count_at = plen_at + 1 + (record[plen_at] + 7) // 8
                    if len(record) >= count_at + 2 and record[plen_at] <= size * 8:
                        st.rib_entries += _U16.unpack_from(record, count_at)[0]
                if self.decode_all or Needles.found(record, self.needles.four, 12):
                    self._decode(number, offset, record)
            elif subtype in RIB_GENERIC:
                st.rib_prefixes += 1
                if self.decode_all or Needles.found(record, self.needles.four, 12):
                    self._decode(number, offset, record)
            else:
                st.skipped["TABLE_DUMP_V2 multicast/other subtype"] += 1
        elif mtype == TABLE_DUMP:
            st.rib_entries += 1  # one record per prefix and peer: distinct prefixes are not counted
            if self.decode_all or Needles.found(record, self.needles.two_or_four, 12):
                self._decode(number, offset, record)
        elif mtype in (BGP4MP, BGP4MP_ET):
            rest = 16 if mtype == BGP4MP_ET else 12  # where the BGP4MP message starts
            if subtype in STATE_CHANGE:
                st.state_changes += 1
                self._saw_peer(peek_bgp4mp(record, rest, STATE_CHANGE[subtype])[0], when)
                self._decode(number, offset, record)
            elif subtype in MESSAGE:
                as_size = MESSAGE[subtype]
                peer, message_at = peek_bgp4mp(record, rest, as_size)
                span = st.peers.get(peer)
                if span is None:
                    st.peers[peer] = [when, when, 1]
                else:
                    span[1] = when
                    span[2] += 1
                if message_at is None:  # not even the BGP4MP header parses: let mrtparse say why
                    self._decode(number, offset, record)
                    return
                if not is_update(record, message_at):
                    return  # OPEN, KEEPALIVE, NOTIFICATION: state changes say what happened
                st.updates += 1
                needles = self.needles.four if as_size == 4 else self.needles.two_or_four
                if self.decode_all or Needles.found(record, needles, rest):
                    self._decode(number, offset, record)
                    return
                live = self.sink.live_prefixes(peer)
                if live and touches_any(record[message_at:], subtype in ADDPATH_MESSAGES, live):
                    self._decode(number, offset, record)
            else:
                st.skipped[f"{TYPE_NAMES[mtype]} subtype {subtype}"] += 1
        else:
            st.skipped[TYPE_NAMES[mtype]] += 1

    def _saw_peer(self, peer: Peer, when: float, messages: int = 1) -> None:
        span = self.stats.peers.get(peer)
        if span is None:
            self.stats.peers[peer] = [when, when, messages]
        else:
            span[0] = min(span[0], when)
            span[1] = max(span[1], when)
            span[2] += messages

    # -- decoding ----------------------------------------------------------------------------

    def _decode(self, number: int, offset: int, record: bytes) -> None:
        self._feed.load(record)
        reader = self._reader
        reader.err = None
        try:
            next(reader)
            if reader.err:
                raise ValueError(reader.err_msg or "undecodable record")
        except Exception as err:  # mrtparse raises whatever its lookups raise on bad bytes
            self.stats.problems.append(
                f"{self._where(number, offset)}: corrupt record skipped: {type(err).__name__}: {err}"
            )
            return
        self.stats.decoded += 1
        try:
            for event in self._events(reader.data):
                self._emit(event)
        except (KeyError, IndexError, TypeError, ValueError) as err:  # a structure mrtparse left out
            self.stats.problems.append(
                f"{self._where(number, offset)}: undecodable record skipped: {type(err).__name__}: {err}"
            )

    def _events(self, d: dict[str, Any]) -> Iterable[RouteEvent]:
        """The route events of a decoded record (PEER_INDEX_TABLE only updates the peer list)."""
        mtype = next(iter(d["type"]))
        subtype = next(iter(d["subtype"]))
        when = float(next(iter(d["timestamp"])))
        if "microsecond_timestamp" in d:
            when += d["microsecond_timestamp"] / 1e6
        if mtype == TABLE_DUMP_V2:
            if subtype == PEER_INDEX_TABLE:
                self.peers = [(int(e["peer_as"]), e["peer_ip"]) for e in d["peer_entries"]]
                for peer in self.peers:
                    self._saw_peer(peer, when, messages=0)  # a RIB peer: seen at the dump, no messages
                return ()
            if subtype in RIB_UNICAST:
                return list(self._rib(when, f"{d['prefix']}/{d['length']}", d["rib_entries"]))
            if d["safi"][0] != SAFI_UNICAST or d["afi"][0] not in (AFI_IPV4, AFI_IPV6):
                return ()
            return [
                e
                for n in d["nlri"]
                for e in self._rib(when, f"{n['prefix']}/{n['length']}", d["rib_entries"])
            ]
        if mtype == TABLE_DUMP:
            path = aspath.from_attributes(d["path_attributes"], two_byte=True)
            originated = float(next(iter(d["originated_time"])))
            return [
                Announcement(
                    "rib",
                    _sane(originated, when),
                    (int(d["peer_as"]), d["peer_ip"]),
                    f"{d['prefix']}/{d['length']}",
                    None,
                    path,
                    when,
                    d["path_attributes"],
                )
            ]
        if subtype in STATE_CHANGE:
            down = session_change(when, d)
            change = state_change(when, d)
            return [down, change] if down is not None else [change]
        return list(update_events(when, subtype, d))

    def _rib(self, when: float, prefix: str, entries: list[dict[str, Any]]) -> Iterable[Announcement]:
        for e in entries:
            index = e["peer_index"]
            peer = self.peers[index] if index < len(self.peers) else (None, f"peer-index-{index}")
            path = aspath.from_attributes(e["path_attributes"], two_byte=False)
            originated = float(next(iter(e["originated_time"])))
            yield Announcement(
                "rib",
                _sane(originated, when),
                peer,
                prefix,
                e.get("path_id"),
                path,
                when,
                e["path_attributes"],
            )

    def _emit(self, event: RouteEvent) -> None:
        sink = self.sink
        if isinstance(event, Announcement):
            sink.announce(
                self.name,
                event.source,
                event.when,
                event.peer,
                event.prefix,
                event.path_id,
                event.path,
                event.seen,
                event.attributes,
                event.local_asn,
            )
        elif isinstance(event, Withdrawal):
            sink.withdraw(self.name, event.when, event.peer, event.prefix, event.path_id)
        elif isinstance(event, SessionState):
            sink.session_state(self.name, event)
        else:
            sink.session_down(self.name, event.when, event.peer, event.state)


def _counted(read: Callable[[], bytes], tick: Callable[[int], None]) -> Callable[[], bytes]:
    """``read`` that also tells ``tick`` how many bytes each chunk had (per chunk, not per record)."""

    def counted() -> bytes:
        data = read()
        tick(len(data))
        return data

    return counted


def _refill(rest: bytes, need: int, read: Callable[[], bytes]) -> bytes:
    """``rest`` followed by chunks of the stream until ``need`` bytes are there (fewer at its end)."""
    parts = [rest]
    have = len(rest)
    while have < need:
        data = read()
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts) if len(parts) > 1 else rest


def _sane(originated: float, dumped: float) -> float:
    """A RIB entry's originated time, unless the collector wrote none (0) or one after the dump."""
    return originated if 0 < originated <= dumped else dumped
