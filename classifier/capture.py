"""Streaming reader for packet captures: the ``source`` stage.

Reads pcap (microsecond and nanosecond, either byte order) and pcapng, plain or gzip-compressed,
from a file or from stdin (``-``), and yields ``(timestamp, linktype, frame, interface_index)`` for
every packet record. The format is found from the magic bytes, never from the file name, and the
input is only ever read forwards, so pipes work.

Why not dpkt's readers: dpkt's pcapng reader applies the first interface's link type to every
packet, ignores Simple Packet Blocks, and both dpkt readers stop silently when a file is truncated,
so a cut-off capture looks complete. Here every complete record before a defect is yielded and the
defect becomes a :class:`CaptureProblem` (file, byte offset, packet number, one-line message) in
``reader.problems``; nothing is dropped without a problem saying so.

Choices worth knowing:

* ``interface_index`` is the index into ``reader.interfaces``, which spans all pcapng sections
  (interface ids restart in every section; the reader maps them to this running index). A pcap
  file has exactly one interface, index 0.
* A Simple Packet Block carries no timestamp; it gets the timestamp of the packet before it
  (0.0 if it is the first packet), so packet time never goes backwards because of it.
* Timestamps: pcap gives ``seconds + fraction / units``, bit-identical to what dpkt and libpcap
  based tools compute. pcapng gives ``ticks / units`` (if_tsresol, power of 10 or of 2), an exact
  integer division rounded once (nanosecond ticks since 1970 do not fit a float's 53 bits, so
  ``float(ticks) / 1e9`` would be off), plus ``if_tsoffset``.
* gzip is decoded with ``zlib`` (gzip framing, multi-member, zero padding after a member, CRC
  checked) rather than the ``gzip`` module, because ``gzip.GzipFile`` discards everything
  decompressed from the chunk in which corruption is found; here the decompressor state is
  snapshotted per chunk so output up to the bad byte is kept. Compressed input is streamed in
  64 KiB pieces with bounded output per step (never the whole file in memory).
* A packet whose timestamp is out of range (before 1970, after 9999-12-31T23:59:59Z, or a pcap
  fraction of a second that is not below one second) is a malformed packet, not a broken file:
  it is not yielded, it is counted in ``reader.malformed`` by reason (``pcap.timestamp``,
  ``pcapng.timestamp``) and handed to ``reader.on_malformed`` if set, and reading goes on. So
  every timestamp yielded formats as ISO 8601 (``classifier.timeutil``); one float comparison
  per packet.
* Packet numbers in problems count every packet record met in the file, yielded or not (so they
  match what other tools number); ``records`` counts the ones yielded.
* When reading stops on a corrupt record inside a gzip file, the rest of the compressed stream
  is decoded (and dropped) to find out whether gzip corruption caused it; that problem is then
  reported too. Regular files only: a pipe may never end.
* Record size limits (so a corrupt length cannot make the reader buffer gigabytes from a pipe):
  a pcap record may be at most ``max(snaplen, 262144)`` bytes, with snaplen clamped to 16 MiB; a
  pcapng block at most 16 MiB. A longer one is corrupt, and reading that file stops there (a
  wrong length leaves no reliable way to find the next record, so no resync is attempted).

Speed: input is read in 1 MiB chunks and record headers are unpacked with precompiled
``struct.Struct.unpack_from`` on the chunk. ``reader.batches()`` hands out each chunk with the
positions of its records (``Batch``), so a consumer that only needs a few header fields of most
packets (``Scanner.feed_batches``) reads them in place and never copies the frame; iterating the
reader yields the usual per-packet tuples, made from the same batches.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from classifier.compiled import compiled_function
from classifier.compressed import GZIP_MAGIC, GzipSource, PlainSource, RawInput, one_line, read_head
from classifier.errors import MalformedError, UserError
from classifier.timeutil import MAX_INSTANT, PACKET_TIME_MIN

__all__ = [
    "Batch",
    "CaptureError",
    "CaptureProblem",
    "CaptureReader",
    "Interface",
    "PcapRun",
    "RunBatch",
    "open_capture",
    "run_records",
]

_MAX_RECORD = 262144  # pcap incl_len is corrupt above max(snaplen, this)
_MAX_BLOCK = 16 << 20  # pcapng block length limit; also the clamp for a pcap snaplen

_PCAP_MAGICS = {  # magic bytes as found in the file -> (byte order, timestamp fraction units)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
_BOM_LE = b"\x4d\x3c\x2b\x1a"
_BOM_BE = b"\x1a\x2b\x3c\x4d"

# pcapng block types
_SHB = 0x0A0D0D0A
_IDB = 1
_PB = 2
_SPB = 3
_EPB = 6
_PACKET_BLOCKS = {_EPB: "enhanced packet block", _SPB: "simple packet block", _PB: "packet block"}

# pcapng IDB options
_OPT_END = 0
_OPT_IF_NAME = 2
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


class _Structs:
    """Precompiled structs for one byte order."""

    __slots__ = ("epb", "epb_fast", "idb", "opt", "pb", "pcap_hdr", "pcap_rec", "q", "u16", "u32", "u32x2")

    def __init__(self, order: str) -> None:
        self.pcap_hdr = struct.Struct(order + "HHiIII")  # version, thiszone, sigfigs, snaplen, network
        self.pcap_rec = struct.Struct(order + "IIII")  # ts_sec, ts_frac, incl_len, orig_len
        self.u32x2 = struct.Struct(order + "II")  # block type, block total length
        self.u32 = struct.Struct(order + "I")
        self.u16 = struct.Struct(order + "H")
        self.epb = struct.Struct(order + "IIII")  # interface id, ts high, ts low, captured length
        self.epb_fast = struct.Struct(order + "IIIIII")  # block type and length, then as epb
        self.pb = struct.Struct(order + "HHIII")  # interface id, drops, ts high, ts low, captured length
        self.idb = struct.Struct(order + "HHI")  # link type, reserved, snaplen
        self.opt = struct.Struct(order + "HH")  # option code, option length
        self.q = struct.Struct(order + "q")


_STRUCTS = {"<": _Structs("<"), ">": _Structs(">")}
_BIG_ENDIAN = _STRUCTS[">"]

# Records of one buffer: ``(buf, records, dropped)``. Each record is ``(timestamp, linktype, start,
# end, interface_index)``, its frame being ``buf[start:end]``; a record whose linktype is
# ``DROPPED`` is a packet not delivered (its timestamp is out of range), and the next error of
# ``dropped`` says why, so a consumer tells ``on_malformed`` in packet order.
Batch = tuple[bytes, list[tuple[float, int, int, int, int]], list[MalformedError]]
DROPPED = -1
_DROPPED_RECORD = (0.0, DROPPED, 0, 0, 0)
_NO_ERRORS: list[MalformedError] = []  # a run's: it drops no packet (never appended to)


def whole_pcap_records(
    buf: bytes,
    pos: int,
    big_endian: bool,
    units: float,
    linktype: int,
    limit: int,
    records: list[tuple[float, int, int, int, int]],
) -> int:
    """Append the pcap records lying whole in ``buf`` from ``pos`` on, up to the first one that does
    not, is longer than ``limit`` or has its fraction out of range; where that one starts (the
    reader deals with it). ``classifier/_pcapscan.pyx`` is its compiled twin."""
    unpack = _STRUCTS[">" if big_endian else "<"].pcap_rec.unpack_from
    add = records.append
    n = len(buf)
    while n - pos >= 16:
        sec, frac, incl, _orig = unpack(buf, pos)
        end = pos + 16 + incl
        if incl > limit or end > n or frac >= units:
            break
        add((sec + frac / units, linktype, pos + 16, end, 0))
        pos = end
    return pos


# A run of whole pcap records in a batch's buffer, in place of its list of records:
# ``(position of the first record header, end of the last record, big-endian, fraction units,
# linktype)``; every record in it is whole, within the limit and its timestamp in range (what
# ``whole_pcap_records`` takes). Only ``CaptureReader.runs()`` yields them, for a consumer that
# walks the records itself (the compiled loop of ``Scanner.feed_batches``); ``run_records`` is
# what a run means.
PcapRun = tuple[int, int, bool, float, int]
RunBatch = tuple[bytes, "list[tuple[float, int, int, int, int]] | PcapRun", list[MalformedError]]


def whole_pcap_run(buf: bytes, pos: int, big_endian: bool, units: float, limit: int) -> tuple[int, int]:
    """(where the records ``whole_pcap_records`` takes from ``pos`` end, how many there are),
    making no record. ``classifier/_pcapscan.pyx`` is its compiled twin."""
    records: list[tuple[float, int, int, int, int]] = []
    return whole_pcap_records(buf, pos, big_endian, units, 0, limit, records), len(records)


def run_records(buf: bytes, run: PcapRun) -> list[tuple[float, int, int, int, int]]:
    """The records of a run, as ``batches()`` would have listed them."""
    pos, end, big_endian, units, linktype = run
    records: list[tuple[float, int, int, int, int]] = []
    stop = whole_pcap_records(buf[:end], pos, big_endian, units, linktype, _MAX_BLOCK, records)
    assert stop == end, "a pcap run holds whole records only"
    return records


# One pcapng interface as the EPB walk needs it: (index in CaptureReader.interfaces, linktype,
# timestamp units per second, timestamp offset in seconds, snaplen).
PcapngInterface = tuple[int, int, int, int, int]


def whole_pcapng_epbs(
    buf: bytes,
    pos: int,
    big_endian: bool,
    ifaces: list[PcapngInterface],
    limit: int,
    records: list[tuple[float, int, int, int, int]],
) -> int:
    """Append the records of the enhanced packet blocks lying whole and well formed in ``buf`` from
    ``pos`` on (known interface, lengths consistent, timestamp in range), up to the first block that
    is anything else; where that one starts (the reader's general path deals with it, and says what
    is wrong). Records as ``_pcapng_batches`` makes them; ``classifier/_pcapscan.pyx`` is its
    compiled twin."""
    st = _STRUCTS[">" if big_endian else "<"]
    fast = st.epb_fast.unpack_from
    u32 = st.u32.unpack_from
    add = records.append
    nif = len(ifaces)
    n = len(buf)
    ts_min = PACKET_TIME_MIN
    ts_max = MAX_INSTANT
    while n - pos >= 24:
        btype, blen, iid, hi, lo, caplen = fast(buf, pos)
        end = pos + blen
        if not (
            btype == _EPB
            and end <= n
            and iid < nif
            and caplen + 32 <= blen <= limit
            and not blen & 3
            and u32(buf, end - 4)[0] == blen
        ):
            break
        gidx, linktype, units, tsoffset, _snap = ifaces[iid]
        ts = ((hi << 32) | lo) / units + tsoffset
        if not ts_min <= ts <= ts_max:
            break
        add((ts, linktype, pos + 28, pos + 28 + caplen, gidx))
        pos = end
    return pos


# The compiled twins (classifier/_pcapscan.pyx); the record scan and the run walk come together.
COMPILED_WHOLE_PCAP_RECORDS: Callable[..., int] | None = compiled_function(
    "_pcapscan", "whole_pcap_records", "whole_pcap_run"
)
WHOLE_PCAP_RECORDS = COMPILED_WHOLE_PCAP_RECORDS or whole_pcap_records
COMPILED_WHOLE_PCAP_RUN: Callable[..., tuple[int, int]] | None = compiled_function(
    "_pcapscan", "whole_pcap_run", "whole_pcap_records"
)
WHOLE_PCAP_RUN = COMPILED_WHOLE_PCAP_RUN or whole_pcap_run


COMPILED_WHOLE_PCAPNG_EPBS: Callable[..., int] | None = compiled_function("_pcapscan", "whole_pcapng_epbs")
WHOLE_PCAPNG_EPBS = COMPILED_WHOLE_PCAPNG_EPBS or whole_pcapng_epbs


@dataclass(frozen=True)
class Interface:
    """One capture interface: pcap has one, pcapng one per Interface Description Block."""

    linktype: int  # LINKTYPE_* number
    name: str | None  # pcapng if_name option, else None
    snaplen: int


@dataclass(frozen=True)
class CaptureProblem:
    """A defect in a capture that was read around (or that ended reading); never raised."""

    path: str
    offset: int | None  # byte offset in the (decompressed) capture where the problem starts
    packet: int | None  # 1-based number of the packet record concerned, if any
    message: str  # one line: what is wrong

    def __str__(self) -> str:
        parts = [self.path]
        if self.packet is not None:
            parts.append(f"packet {self.packet}")
        if self.offset is not None:
            parts.append(f"offset {self.offset}")
        parts.append(self.message)
        return ": ".join(parts)


class CaptureError(UserError):
    """The input cannot be read as a capture at all (missing, unreadable, empty, not a capture)."""


class CaptureReader:
    """Iterate over the packet records of one capture; see the module docstring.

    Problems met while reading are appended to ``problems``; read it after iteration.
    """

    path: str
    format: str
    compressed: bool
    interfaces: list[Interface]
    problems: list[CaptureProblem]
    records: int
    malformed: Counter[str]
    on_malformed: Callable[[MalformedError], None] | None

    def __init__(
        self,
        path: str,
        display: str,
        f: BinaryIO,
        owned: bool,
        raw: RawInput,
        compressed: bool,
        size: int | None,
    ) -> None:
        self.path = path
        self.compressed = compressed
        self.interfaces = []
        self.problems = []
        self.records = 0
        self.malformed = Counter()  # packets not yielded because a field is malformed, by reason
        self.on_malformed = None  # also told of each such packet, in packet order (the scanner)
        self._f = f
        self._owned = owned
        self._raw = raw
        self._size = size
        self._src = GzipSource(raw) if compressed else PlainSource(raw)
        self._base = 0  # offset in the decompressed capture of buffer[0]
        self._runs = False  # runs() was asked for: pcap runs of whole records as PcapRun
        self._eof = False
        try:
            buf = self._more(b"", 0, 4)
            self._start(display, buf)
        except BaseException:
            self.close()
            raise

    def _start(self, display: str, buf: bytes) -> None:
        magic = buf[:4]
        what = "gzip-compressed input" if self.compressed else "file"
        if len(buf) < 4:
            if self.compressed and self._src.damage:
                raise CaptureError(f"{display}: {self._src.damage.message}, before any capture data")
            if not buf:
                raise CaptureError(f"{display}: {what} is empty, not a pcap or pcapng capture")
            raise CaptureError(f"{display}: {what} is too short to be a capture ({len(buf)} bytes)")
        if magic in _PCAP_MAGICS:
            self.format = "pcap"
            order, units = _PCAP_MAGICS[magic]
            if len(buf) < 24:
                buf = self._more(buf, 0, 24)
            if len(buf) < 24:
                self._problem(0, None, f"truncated file header: 24 bytes needed, {len(buf)} present")
                self._batches: Iterator[RunBatch] = iter(())
                return
            _ver_major, _ver_minor, _zone, _sigfigs, snaplen, network = _STRUCTS[order].pcap_hdr.unpack_from(
                buf, 4
            )
            linktype = network & 0x03FFFFFF  # upper bits carry FCS information (as libpcap masks it)
            self.interfaces.append(Interface(linktype, None, snaplen))
            limit = max(min(snaplen, _MAX_BLOCK), _MAX_RECORD)
            self._batches = self._pcap_batches(buf, 24, order, units, linktype, limit)
        elif magic == _SHB_MAGIC:
            self.format = "pcapng"
            self._batches = self._pcapng_batches(buf, 0)
        else:
            hexed = " ".join(f"{b:02x}" for b in magic)
            raise CaptureError(f"{display}: {what} is not a pcap or pcapng capture (starts with {hexed})")

    # -- public surface ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[float, int, bytes, int]]:
        """Yield (timestamp_seconds, linktype, frame_bytes, interface_index) for every packet record."""
        for buf, records, dropped in self._batches:
            if isinstance(records, tuple):  # runs() was asked for, then the reader iterated
                records = run_records(buf, records)
            k = 0
            for ts, linktype, start, end, iface in records:
                if linktype == DROPPED:
                    if self.on_malformed is not None:
                        self.on_malformed(dropped[k])
                    k += 1
                else:
                    yield ts, linktype, buf[start:end], iface

    def batches(self) -> Iterator[Batch]:
        """The records buffer by buffer, without a copy of any frame (see ``Batch``); iterate
        either this or the reader, once. A consumer tells ``on_malformed`` of dropped packets."""
        return cast(Iterator[Batch], self._batches)  # no run unless runs() was asked for

    def runs(self) -> Iterator[RunBatch]:
        """``batches()``, with each run of whole pcap records handed over as a ``PcapRun`` instead
        of a list of records, for a consumer that walks them itself (no object per record)."""
        self._runs = True
        return self._batches

    @property
    def position(self) -> int:
        """Bytes consumed from the underlying file (compressed bytes for gzip), for a progress bar."""
        return self._raw.pos

    @property
    def size(self) -> int | None:
        """Size of the underlying file in bytes; None for stdin and pipes."""
        return self._size

    def close(self) -> None:
        if self._owned:
            self._f.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _problem(self, offset: int | None, packet: int | None, message: str) -> None:
        self.problems.append(CaptureProblem(self.path, offset, packet, message))

    def _bad_timestamp(self, layer: str, detail: str) -> MalformedError:
        """A packet dropped for its timestamp: counted by reason; its consumer tells ``on_malformed``."""
        err = MalformedError(layer, "timestamp", detail)
        self.malformed[err.reason] += 1
        return err

    def _stop(self, offset: int, packet: int | None, message: str) -> None:
        """Record the corruption that ends reading this file.

        In a gzip file, corruption of the compressed stream usually decodes to garbage for a while
        before zlib notices, so the garbage is what the parser trips over. The rest of the stream
        is then decoded (not kept) to report the gzip problem that explains it. Only for regular
        files: a pipe may never end.
        """
        self._problem(offset, packet, message)
        if self.compressed and self._size is not None and not self._eof:
            src = self._src
            while src.read():
                pass
            self._eof = True
            if src.damage:
                self._problem(src.damage.offset, None, src.damage.message)

    def _more(self, buf: bytes, pos: int, need: int) -> bytes:
        """Drop ``buf[:pos]`` and read until ``need`` bytes are buffered (fewer only at the end)."""
        self._base += pos
        rest = buf[pos:] if pos else buf
        if self._eof:
            return rest
        parts = [rest] if rest else []
        have = len(rest)
        src = self._src
        while have < need:
            data = src.read()
            if not data:
                self._eof = True
                if src.damage:
                    self._problem(src.damage.offset, None, src.damage.message)
                break
            parts.append(data)
            have += len(data)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def _pcap_batches(
        self, buf: bytes, pos: int, order: str, units: float, linktype: int, limit: int
    ) -> Iterator[RunBatch]:
        unpack = _STRUCTS[order].pcap_rec.unpack_from
        big_endian = order == ">"
        whole = WHOLE_PCAP_RECORDS
        whole_run = WHOLE_PCAP_RUN
        more = self._more
        n = len(buf)
        dropped = 0  # records not yielded (timestamp out of range): records + dropped = records met
        records: list[tuple[float, int, int, int, int]] = []
        errors: list[MalformedError] = []
        add = records.append
        # ts_sec is unsigned 32-bit (as tshark reads it): never before 1970 nor after 2106, so only
        # the fraction can be out of range.
        while True:
            # The common case, in one call per buffer: every record lying whole in it, in range.
            if self._runs:
                end, count = whole_run(buf, pos, big_endian, units, limit)
                if count:
                    if records:  # records before the run go first
                        yield buf, records, errors
                        records, errors = [], []
                        add = records.append
                    self.records += count
                    yield buf, (pos, end, big_endian, units, linktype), _NO_ERRORS
                    pos = end
            else:
                taken = len(records)
                pos = whole(buf, pos, big_endian, units, linktype, limit, records)
                self.records += len(records) - taken
            # The record at pos, if any, is not whole in the buffer, too long or out of range.
            if n - pos < 16:
                if records:  # the buffer's records go before it is replaced
                    yield buf, records, errors
                    records, errors = [], []
                    add = records.append
                buf = more(buf, pos, 16)
                pos = 0
                n = len(buf)
                if n < 16:
                    if n:
                        self._problem(
                            self._base,
                            self.records + dropped + 1,
                            f"truncated record header: 16 bytes needed, {n} present",
                        )
                    return
            sec, frac, incl, _orig = unpack(buf, pos)
            if incl > limit:
                if records:
                    yield buf, records, errors
                self._stop(
                    self._base + pos,
                    self.records + dropped + 1,
                    f"corrupt record: header says {incl} bytes, more than the limit {limit}",
                )
                return
            end = pos + 16 + incl
            if end > n:
                if records:
                    yield buf, records, errors
                    records, errors = [], []
                    add = records.append
                buf = more(buf, pos, 16 + incl)
                pos = 0
                n = len(buf)
                end = 16 + incl
                if end > n:
                    self._problem(
                        self._base,
                        self.records + dropped + 1,
                        f"truncated record: header says {incl} bytes, {n - 16} present",
                    )
                    return
            if frac < units:
                self.records += 1
                add((sec + frac / units, linktype, pos + 16, end, 0))
            else:
                dropped += 1
                add(_DROPPED_RECORD)
                errors.append(
                    self._bad_timestamp(
                        "pcap",
                        f"fraction {frac} is not below one second "
                        f"({'microseconds' if units == 1e6 else 'nanoseconds'})",
                    )
                )
            pos = end

    def _pcapng_batches(self, buf: bytes, pos: int) -> Iterator[Batch]:
        more = self._more
        problem = self._problem
        n = len(buf)
        skipped = 0  # packet records not yielded: records + skipped = packet records met so far
        last_ts = 0.0
        # this section's interfaces: (index in self.interfaces, linktype, ts units, ts offset, snaplen)
        ifaces: list[PcapngInterface] = []
        nif = 0
        st = _STRUCTS["<"]
        fast = st.epb_fast.unpack_from
        u32 = st.u32.unpack_from
        max_block = _MAX_BLOCK
        ts_min = PACKET_TIME_MIN
        ts_max = MAX_INSTANT
        records: list[tuple[float, int, int, int, int]] = []
        errors: list[MalformedError] = []
        add = records.append
        walk = COMPILED_WHOLE_PCAPNG_EPBS
        while True:
            # Compiled fast path: the whole, well-formed EPBs of known interfaces, in one call.
            if walk is not None and n - pos >= 24:
                had = len(records)
                start = pos
                pos = walk(buf, pos, st is _BIG_ENDIAN, ifaces, max_block, records)
                if pos != start:
                    self.records += len(records) - had
                    last_ts = records[-1][0]
                    continue
            # Fast path: a whole, well-formed EPB of a known interface is in the buffer.
            if n - pos >= 24:
                btype, blen, iid, hi, lo, caplen = fast(buf, pos)
                end = pos + blen
                if (
                    btype == 6
                    and end <= n
                    and iid < nif
                    and caplen + 32 <= blen <= max_block
                    and not blen & 3
                    and u32(buf, end - 4)[0] == blen
                ):
                    gidx, linktype, units, tsoffset, _snap = ifaces[iid]
                    ts = ((hi << 32) | lo) / units + tsoffset
                    if ts_min <= ts <= ts_max:
                        last_ts = ts
                        self.records += 1
                        add((ts, linktype, pos + 28, pos + 28 + caplen, gidx))
                    else:
                        skipped += 1
                        add(_DROPPED_RECORD)
                        errors.append(
                            self._bad_timestamp("pcapng", _range_detail(hi, lo, units, tsoffset, ts))
                        )
                    pos = end
                    continue

            # General path: any block, refills, and every defect.
            if n - pos < 12:
                if records:  # the buffer's records go before it is replaced
                    yield buf, records, errors
                    records, errors = [], []
                    add = records.append
                buf = more(buf, pos, 12)
                pos = 0
                n = len(buf)
                if n < 12:
                    if n:
                        problem(
                            self._base, None, f"truncated block: {n} bytes left, a block needs at least 12"
                        )
                    return
            btype, blen = st.u32x2.unpack_from(buf, pos)
            if btype == _SHB:  # the same number in either byte order; the section sets the order
                bom = buf[pos + 8 : pos + 12]
                if bom == _BOM_LE:
                    st = _STRUCTS["<"]
                elif bom == _BOM_BE:
                    st = _STRUCTS[">"]
                else:
                    if records:
                        yield buf, records, errors
                    self._stop(
                        self._base + pos,
                        None,
                        f"corrupt section header block: byte-order magic is {bom.hex()}",
                    )
                    return
                fast = st.epb_fast.unpack_from
                u32 = st.u32.unpack_from
                (blen,) = u32(buf, pos + 4)
            kind = _PACKET_BLOCKS.get(btype)
            number = self.records + skipped + 1 if kind else None
            if blen < 12 or blen & 3 or blen > max_block:
                why = (
                    "is less than 12"
                    if blen < 12
                    else "is not a multiple of 4"
                    if blen & 3
                    else f"exceeds the {max_block >> 20} MiB limit"
                )
                if records:
                    yield buf, records, errors
                self._stop(self._base + pos, number, f"corrupt block: total length {blen} {why}")
                return
            end = pos + blen
            if end > n:
                if records:
                    yield buf, records, errors
                    records, errors = [], []
                    add = records.append
                buf = more(buf, pos, blen)
                pos = 0
                n = len(buf)
                end = blen
                if end > n:
                    problem(
                        self._base,
                        number,
                        f"truncated {kind or 'block'}: block length says {blen} bytes, {n} present",
                    )
                    return
            (trailer,) = u32(buf, end - 4)
            if trailer != blen:
                if records:
                    yield buf, records, errors
                self._stop(
                    self._base + pos,
                    number,
                    f"corrupt block: trailing length {trailer} differs from leading length {blen}",
                )
                return
            offset = self._base + pos

            if btype == _EPB or btype == _PB:
                if blen < 32:
                    problem(offset, number, f"{kind} too short ({blen} bytes)")
                    skipped += 1
                else:
                    if btype == _EPB:
                        iid, hi, lo, caplen = st.epb.unpack_from(buf, pos + 8)
                    else:  # the obsolete Packet Block: 16-bit interface id, then a drop count
                        iid, _drops, hi, lo, caplen = st.pb.unpack_from(buf, pos + 8)
                    if caplen > blen - 32:
                        problem(
                            offset,
                            number,
                            f"{kind}: captured length {caplen} exceeds the block's {blen - 32} data bytes",
                        )
                        skipped += 1
                    elif iid >= nif:
                        problem(
                            offset,
                            number,
                            f"packet names interface {iid}, but the section has {nif} interface(s)",
                        )
                        skipped += 1
                    else:
                        gidx, linktype, units, tsoffset, _snap = ifaces[iid]
                        ts = ((hi << 32) | lo) / units + tsoffset
                        if ts_min <= ts <= ts_max:
                            last_ts = ts
                            self.records += 1
                            add((ts, linktype, pos + 28, pos + 28 + caplen, gidx))
                        else:
                            skipped += 1
                            add(_DROPPED_RECORD)
                            errors.append(
                                self._bad_timestamp("pcapng", _range_detail(hi, lo, units, tsoffset, ts))
                            )
            elif btype == _SPB:
                if blen < 16:
                    problem(offset, number, f"simple packet block too short ({blen} bytes)")
                    skipped += 1
                elif not nif:
                    problem(
                        offset,
                        number,
                        "simple packet block, but the section has no interface description block",
                    )
                    skipped += 1
                else:
                    gidx, linktype, _units, _tsoffset, snaplen = ifaces[0]
                    (orig,) = u32(buf, pos + 8)
                    caplen = min(orig, blen - 16)
                    if snaplen:
                        caplen = min(caplen, snaplen)
                    self.records += 1
                    add((last_ts, linktype, pos + 12, pos + 12 + caplen, gidx))
            elif btype == _IDB:
                if blen < 20:
                    problem(offset, None, f"interface description block too short ({blen} bytes)")
                else:
                    linktype, _reserved, snaplen = st.idb.unpack_from(buf, pos + 8)
                    name, units, tsoffset, bad = _idb_options(buf, pos + 16, end - 4, st)
                    if bad:
                        problem(
                            offset,
                            None,
                            f"interface description block: malformed options ({bad}); "
                            "interface kept with the options read so far",
                        )
                    ifaces.append((len(self.interfaces), linktype, units, tsoffset, snaplen))
                    nif = len(ifaces)
                    self.interfaces.append(Interface(linktype, name, snaplen))
            elif btype == _SHB:
                if blen < 28:
                    if records:
                        yield buf, records, errors
                    self._stop(offset, None, f"section header block too short ({blen} bytes)")
                    return
                (major,) = st.u16.unpack_from(buf, pos + 12)
                if major != 1:
                    if records:
                        yield buf, records, errors
                    self._stop(offset, None, f"unsupported pcapng major version {major}")
                    return
                ifaces = []  # interface ids restart in every section
                nif = 0
            # NRB, ISB, DSB, custom and unknown blocks carry no packets: skipped
            pos = end


def _range_detail(hi: int, lo: int, units: int, tsoffset: int, ts: float) -> str:
    """What is wrong with a pcapng timestamp, in the file's own terms."""
    offset = f" + if_tsoffset {tsoffset} s" if tsoffset else ""
    return (
        f"{(hi << 32) | lo} ticks of 1/{units} s{offset} = {ts:.0f} s since 1970, outside "
        "1970-01-01..9999-12-31T23:59:59Z"
    )


def _idb_options(buf: bytes, o: int, stop: int, st: _Structs) -> tuple[str | None, int, int, str]:
    """(if_name, timestamp units per second, if_tsoffset, what was malformed or '') of an IDB."""
    name: str | None = None
    units = 1_000_000
    tsoffset = 0
    while o + 4 <= stop:
        code, olen = st.opt.unpack_from(buf, o)
        o += 4
        if code == _OPT_END:
            break
        if o + olen > stop:
            return name, units, tsoffset, f"option {code} runs past the block"
        if code == _OPT_IF_NAME:
            name = buf[o : o + olen].rstrip(b"\0").decode("utf-8", "replace")
        elif code == _OPT_IF_TSRESOL and olen >= 1:
            r = buf[o]
            units = 2 ** (r & 0x7F) if r & 0x80 else 10**r
        elif code == _OPT_IF_TSOFFSET and olen >= 8:
            (tsoffset,) = st.q.unpack_from(buf, o)
        o += (olen + 3) & ~3
    return name, units, tsoffset, ""


def open_capture(path: str) -> CaptureReader:
    """Open a capture file, or stdin for ``-``; the format is detected from its magic bytes.

    Raises CaptureError (one line, naming the file) when the input cannot be read as a capture.
    """
    if path == "-":
        display = "stdin"
        stdin = sys.stdin
        f = getattr(stdin, "buffer", None) if stdin is not None else None
        if f is None:
            raise CaptureError("stdin: not available for reading")
        isatty = getattr(f, "isatty", None)
        if isatty is not None and isatty():
            raise CaptureError("stdin: is a terminal; pipe a capture in, e.g. tcpdump -w - | ...")
        owned = False
        size = None
    else:
        display = path
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115 - the reader owns and closes it
        except FileNotFoundError:
            raise CaptureError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{path}: is a directory, not a capture file") from None
        except PermissionError:
            raise CaptureError(f"{path}: permission denied") from None
        except OSError as e:
            raise CaptureError(f"{path}: cannot open: {one_line(e)}") from None
        owned = True
        try:
            st = os.fstat(f.fileno())
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            f.close()
            raise CaptureError(f"{path}: is a directory, not a capture file")
        size = st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None
    try:
        head = read_head(f, 4)
    except (OSError, ValueError) as e:
        if owned:
            f.close()
        raise CaptureError(f"{display}: cannot read: {one_line(e)}") from None
    raw = RawInput(f, head)
    return CaptureReader(path, display, f, owned, raw, head[:2] == GZIP_MAGIC, size)
