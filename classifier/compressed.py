"""Damage-tolerant input: plain, gzip or bzip2 (detected by content), decompressed incrementally.

Captures and MRT dumps arrive compressed, cut short by a failed download or damaged on disk. The
standard readers lose good data then: ``gzip.GzipFile`` discards everything decompressed in the
read call that meets the corruption (up to 128 KiB), and ``bz2.BZ2File`` does the same and, worse,
passes on the output of a bzip2 block before that block's CRC has been checked, so the damaged
block's garbage reaches the parser first. Here:

* gzip is decoded with ``zlib`` (gzip framing, multi-member, zero padding after a member, CRC
  checked). The decompressor state is snapshotted per 64 KiB of compressed input, so on corruption
  the longest prefix of that piece that still decodes is found and its output kept: everything up
  to the bad byte comes through. (gzip checks its CRC only at the end of a member, so what a
  corrupt deflate stream decodes to before zlib notices is passed on: the reader that meets such
  garbage asks :meth:`Input.damage_after` whether compression damage explains it.)
* bzip2 is decoded with ``bz2.BZ2Decompressor`` (multi-stream). Output is held back until the
  decompressor has nothing more to give without input, which is only after it has checked the CRC
  of every block it wrote out: garbage from a damaged block is never passed on. When the stream
  turns out to be damaged, the output held back for the last 64 KiB piece went down with the
  exception (the decompressor cannot be copied to undo a step), so the stream is decoded again
  from its start (read again from a file; from a pipe, the first 32 MiB of a stream are kept for
  this) and that piece fed one byte at a time: every block before the damage comes through.
* Output is bounded per step (1 MiB, or what one piece of bzip2 input expands to, at most
  64 MiB), never the whole file. Input is only read forwards, so pipes work.

A damaged or truncated stream ends like a normal one (``read()`` returns ``b""``) and ``damage``
says where: the decompressed bytes passed on before it (all good) and the byte of the compressed
input at which the damage was found (where zlib or libbz2 refused it; a bzip2 block's CRC is
checked at its end).
"""

from __future__ import annotations

import os
import stat
import sys
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:  # bz2 (with _compression) is imported where a bzip2 stream starts, not by every scan
    import bz2

__all__ = [
    "BZIP2_MAGIC",
    "CHUNK",
    "GZIP_MAGIC",
    "Bzip2Source",
    "Damage",
    "GzipSource",
    "Input",
    "InputError",
    "PlainSource",
    "RawInput",
    "Source",
    "one_line",
    "open_input",
    "read_head",
    "source_for",
]

CHUNK = 1 << 18  # bytes per read (decompressed bytes per step for gzip); 3 of them at most live at once
_PIECE = 1 << 16  # compressed bytes fed per step: bounds the work redone on corruption
_HELD_MAX = 64 << 20  # bzip2 output held back for its CRC check beyond this is passed on unchecked
_KEPT_MAX = 32 << 20  # compressed bytes of a bzip2 stream kept from a pipe, to decode it again

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"


def one_line(e: BaseException) -> str:
    """An exception as one line of text (``strerror`` when there is one)."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())


@dataclass(frozen=True, slots=True)
class Damage:
    """Why a stream ended before its end: a corrupt or truncated compressed stream, or a read error."""

    offset: int  # decompressed bytes passed on before the damage; all of them good
    compressed: int | None  # byte of the compressed input at which it was noticed (None: plain input)
    message: str  # one line, e.g. "gzip stream corrupt after decompressed byte 1234 (...)"

    def __str__(self) -> str:
        if self.compressed is None:
            return self.message
        return f"{self.message}, found at compressed byte {self.compressed}"


class RawInput:
    """The underlying byte stream, replaying the bytes read to sniff the magic first.

    ``pos`` counts bytes taken from the file: the progress position, and the compressed offset.
    """

    __slots__ = ("_file", "_origin", "_prefix", "_read", "pos")

    def __init__(self, f: BinaryIO, prefix: bytes) -> None:
        # read1 returns what a pipe has instead of waiting for a full chunk (live captures);
        # an unbuffered FileIO's read() already behaves that way.
        self._read = getattr(f, "read1", f.read)
        self._file = f
        self._prefix = prefix
        self.pos = len(prefix)
        try:  # where the input starts, if it can be read again (a regular file, not a pipe)
            self._origin: int | None = f.tell() - len(prefix) if f.seekable() else None
        except (OSError, ValueError, AttributeError):
            self._origin = None

    def read(self, n: int) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        data = self._read(n)
        self.pos += len(data)
        return data

    @property
    def rereadable(self) -> bool:
        return self._origin is not None

    def reread(self, offset: int, size: int) -> bytes | None:
        """``size`` bytes from ``offset`` read again (fewer at the end); None if that is not possible."""
        if self._origin is None:
            return None
        f = self._file
        parts = []
        try:
            here = f.tell()
            f.seek(self._origin + offset)
            while size > 0:
                data = f.read(min(size, CHUNK))
                if not data:
                    break
                parts.append(data)
                size -= len(data)
            f.seek(here)
        except (OSError, ValueError):
            return None
        return b"".join(parts)


class Source(Protocol):
    """Decompressed input in chunks: ``read()`` returns ``b""`` at the end, normal or not."""

    compression: str  # "none", "gzip" or "bzip2"
    raw: RawInput
    delivered: int  # decompressed bytes returned so far
    damage: Damage | None  # set when the stream ended early

    def read(self) -> bytes: ...


class PlainSource:
    """Uncompressed input."""

    __slots__ = ("damage", "delivered", "raw")

    compression = "none"

    def __init__(self, raw: RawInput) -> None:
        self.raw = raw
        self.delivered = 0
        self.damage: Damage | None = None

    def read(self) -> bytes:
        if self.damage:
            return b""
        try:
            data = self.raw.read(CHUNK)
        except (OSError, ValueError) as e:
            self.damage = Damage(
                self.delivered, None, f"read error after byte {self.delivered}: {one_line(e)}"
            )
            return b""
        self.delivered += len(data)
        return data


class GzipSource:
    """gzip input decoded incrementally; output up to a corrupt or missing part is kept."""

    __slots__ = ("_d", "_done", "_in", "_members", "damage", "delivered", "raw")

    compression = "gzip"

    def __init__(self, raw: RawInput) -> None:
        self.raw = raw
        self.delivered = 0
        self.damage: Damage | None = None
        self._d: zlib._Decompress | None = None  # decompressor of the member being read
        self._in = b""  # compressed bytes not yet given to zlib: always a suffix of the last read
        self._done = False
        self._members = 0

    def _fail(self, what: str, compressed: int, detail: str = "") -> None:
        self._done = True
        self.damage = Damage(
            self.delivered, compressed, f"gzip stream {what} after decompressed byte {self.delivered}{detail}"
        )

    def read(self) -> bytes:
        while not self._done:
            if not self._in:
                try:
                    data = self.raw.read(_PIECE)
                except (OSError, ValueError) as e:
                    self._done = True
                    self.damage = Damage(
                        self.delivered,
                        self.raw.pos,
                        f"read error after decompressed byte {self.delivered}: {one_line(e)}",
                    )
                    return b""
                if not data:
                    return self._end_of_input()
                self._in = data
            d = self._d
            if d is None:
                # Between members: zero padding is allowed (as the gzip module allows it).
                data = self._in.lstrip(b"\0") if self._members else self._in
                if not data:
                    self._in = b""
                    continue
                self._in = data
                d = self._d = zlib.decompressobj(31)
                self._members += 1
            data = self._in
            saved = d.copy()
            try:
                out = d.decompress(data, CHUNK)
            except zlib.error as e:
                out, good = _salvage(saved, data)
                self.delivered += len(out)
                self._fail("corrupt", self.raw.pos - len(data) + good, f" ({one_line(e)})")
                return out
            if d.eof:
                self._in = d.unused_data
                self._d = None
            else:
                self._in = d.unconsumed_tail
            if out:
                self.delivered += len(out)
                return out
        return b""

    def _end_of_input(self) -> bytes:
        out = b""
        if self._d is not None:  # the file ended inside a member
            try:
                out = self._d.flush()
            except zlib.error:
                out = b""
            self.delivered += len(out)
            self._fail("truncated", self.raw.pos)
        self._done = True
        return out


def _salvage(saved: zlib._Decompress, data: bytes) -> tuple[bytes, int]:
    """Output of ``saved`` for the longest prefix of ``data`` that decodes without error, and its length."""
    lo, hi = 0, len(data)  # a prefix of lo bytes decodes; hi bytes raise
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            saved.copy().decompress(data[:mid], CHUNK)
        except zlib.error:
            hi = mid
        else:
            lo = mid
    try:
        return saved.copy().decompress(data[:lo], CHUNK), lo
    except zlib.error:  # pragma: no cover - lo decoded above
        return b"", 0


def _checked_output(d: bz2.BZ2Decompressor, data: bytes) -> tuple[bytes, bool]:
    """Feed ``data`` and take output until a call yields nothing: the decompressor then waits for
    input, which it does only once it has checked the CRC of every block it wrote out (``needs_input``
    is no such sign: it turns true as soon as the input is used up, with output still pending).
    Returns the output and whether it is all checked (False: stopped at the cap). Raises on damage."""
    out = d.decompress(data, CHUNK)
    parts = [out]
    held = len(out)
    while out and not d.eof:
        if held > _HELD_MAX:
            return b"".join(parts), False
        out = d.decompress(b"", CHUNK)
        parts.append(out)
        held += len(out)
    return b"".join(parts), True


class Bzip2Source:
    """bzip2 input decoded incrementally; only output whose block CRC was checked is passed on."""

    __slots__ = (
        "_d",
        "_done",
        "_in",
        "_kept",
        "_piece",
        "_piece_at",
        "_piece_out",
        "_stream_at",
        "_stream_out",
        "_unchecked",
        "damage",
        "delivered",
        "raw",
    )

    compression = "bzip2"

    def __init__(self, raw: RawInput) -> None:
        self.raw = raw
        self.delivered = 0
        self.damage: Damage | None = None
        self._d: bz2.BZ2Decompressor | None = None  # decompressor of the stream being read
        self._in = b""  # compressed bytes not yet given to it: always a suffix of the last read
        self._stream_at = 0  # compressed offset where the stream starts, bytes delivered before it
        self._stream_out = 0
        self._piece = b""  # the compressed bytes fed last, where they start, bytes delivered before
        self._piece_at = 0
        self._piece_out = 0
        # From a pipe, the stream's pieces before the last one, to decode it again after damage
        # (None once they pass _KEPT_MAX); a file is read again instead.
        self._kept: list[bytes] | None = []
        self._unchecked = False  # output of the last piece is still to come (held output hit the cap)
        self._done = False

    def read(self) -> bytes:
        while not self._done:
            if not self._unchecked and not self._in:
                try:
                    data = self.raw.read(_PIECE)
                except (OSError, ValueError) as e:
                    self._done = True
                    self.damage = Damage(
                        self.delivered,
                        self.raw.pos,
                        f"read error after decompressed byte {self.delivered}: {one_line(e)}",
                    )
                    return b""
                if not data:
                    return self._end_of_input()
                self._in = data
            d = self._d
            if d is None:  # a stream starts
                from bz2 import BZ2Decompressor

                d = self._d = BZ2Decompressor()
                self._stream_at, self._stream_out = self.raw.pos - len(self._in), self.delivered
                self._piece = b""
                self._kept = []
            if self._unchecked:
                data = b""
            else:
                # at most one piece at a time (the sniffed head can be longer): held output and
                # the byte-by-byte recovery stay small
                data, self._in = self._in[:_PIECE], self._in[_PIECE:]
                self._next_piece(data, self.raw.pos - len(data) - len(self._in))
            try:
                out, checked = _checked_output(d, data)
            except (OSError, EOFError, ValueError) as e:
                return self._recover(one_line(e))
            self._unchecked = not checked
            if d.eof:
                self._in = d.unused_data + self._in  # the next stream starts where this one ends
                self._d = None
            if out:
                self.delivered += len(out)
                return out
        return b""

    def _next_piece(self, data: bytes, at: int) -> None:
        if self._piece and self._kept is not None and not self.raw.rereadable:
            self._kept.append(self._piece)
            if self._piece_at + len(self._piece) - self._stream_at > _KEPT_MAX:
                self._kept = None
        self._piece, self._piece_at, self._piece_out = data, at, self.delivered

    def _end_of_input(self) -> bytes:
        self._done = True
        if self._d is not None:
            self.damage = Damage(
                self.delivered,
                self.raw.pos,
                f"bzip2 stream truncated after decompressed byte {self.delivered}",
            )
        return b""

    def _recover(self, why: str) -> bytes:
        """The output held back for the last piece went down with the exception: decode the stream
        again up to that piece, then feed the piece one byte at a time, keeping what each byte
        yields until the byte at which the damage shows."""
        self._done = True
        from bz2 import BZ2Decompressor

        d = BZ2Decompressor()
        if self._redecode(d) != self._piece_out - self._stream_out:
            return self._unrecovered(why)
        piece = self._piece
        out: list[bytes] = []
        for i in range(len(piece)):
            yielded = []  # all of it, past the cap too: one byte completes at most one block
            try:
                data, checked = _checked_output(d, piece[i : i + 1])
                yielded.append(data)
                while not checked:
                    data, checked = _checked_output(d, b"")
                    yielded.append(data)
            except (OSError, EOFError, ValueError):
                return self._recovered(b"".join(out), why, self._piece_at + i)
            out.extend(yielded)
        return self._unrecovered(why)  # the bytes read again decode cleanly: the file changed

    def _redecode(self, d: bz2.BZ2Decompressor) -> int | None:
        """Feed the stream's compressed bytes before the last piece to ``d`` again (read again from
        a file, the kept pieces from a pipe); how many bytes they yield, None if they cannot be had."""
        at, end = self._stream_at, self._piece_at
        kept = iter(self._kept or ())
        size = 0
        try:
            while at < end:
                if self.raw.rereadable:
                    data = self.raw.reread(at, min(CHUNK, end - at))
                else:
                    data = next(kept, None) if self._kept is not None else None
                if not data:
                    return None
                at += len(data)
                checked = False
                while not checked:
                    out, checked = _checked_output(d, data)
                    size += len(out)
                    data = b""
        except (OSError, EOFError, ValueError):
            return None
        return size if at == end else None

    def _recovered(self, out: bytes, why: str, at: int) -> bytes:
        """Pass on what the piece yields before the damage, less what the cap already passed on."""
        already = self.delivered - self._piece_out
        note = (
            ""
            if len(out) >= already
            else (
                f"; {already - len(out)} bytes before it were passed on before their block could be checked"
            )
        )
        out = out[already:]
        self.delivered += len(out)
        self.damage = Damage(
            self.delivered, at, f"bzip2 stream corrupt after decompressed byte {self.delivered} ({why}){note}"
        )
        return out

    def _unrecovered(self, why: str) -> bytes:
        start, end = self._piece_at, self._piece_at + len(self._piece)
        cause = "it did not read the same again" if self.raw.rereadable else "the input cannot be read again"
        self.damage = Damage(
            self.delivered,
            end,
            f"bzip2 stream corrupt after decompressed byte {self.delivered} ({why}); what "
            f"compressed bytes {start}-{end} decode to is dropped unchecked: {cause}",
        )
        return b""


def source_for(raw: RawInput, head: bytes) -> Source:
    """The decoder the first bytes of the input call for (magic bytes, never the file name)."""
    if head.startswith(GZIP_MAGIC):
        return GzipSource(raw)
    if head.startswith(BZIP2_MAGIC):
        return Bzip2Source(raw)
    return PlainSource(raw)


def read_head(f: BinaryIO, n: int) -> bytes:
    """At least ``n`` bytes from the start of ``f`` (fewer only if it ends), without seeking."""
    read = getattr(f, "read1", f.read)
    parts: list[bytes] = []
    have = 0
    while have < n:
        data = read(CHUNK)
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts)


class InputError(Exception):
    """The input cannot be opened; ``str()`` is one line without the file name (the caller adds it)."""


class Input:
    """An opened file or standard input and the decompressed stream read from it."""

    def __init__(self, f: BinaryIO, owned: bool, source: Source, size: int | None) -> None:
        self.file = f
        self.owned = owned
        self.source = source
        self.size = size  # of a regular file; None for pipes

    @property
    def compression(self) -> str:
        return self.source.compression

    def damage_after(self) -> Damage | None:
        """Decode (and drop) the rest of a gzip regular file, for the damage that explains a problem
        met in its data: a corrupt deflate stream often decodes to garbage before zlib notices.
        (bzip2 output is checked before it is passed on; a pipe may never end.)"""
        src = self.source
        if src.compression != "gzip" or self.size is None:
            return src.damage
        while src.read():
            pass
        return src.damage

    def close(self) -> None:
        if self.owned:
            self.file.close()

    def __enter__(self) -> Input:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(path: str) -> Input:
    """Open ``path``, or standard input for ``-``, and pick its decoder from the first bytes."""
    if path == "-":
        stdin = sys.stdin
        f = getattr(stdin, "buffer", None) if stdin is not None else None
        if f is None:
            raise InputError("standard input is not available for reading")
        if f.isatty():
            raise InputError("standard input is a terminal: pipe the data in")
        owned = False
        size = None
    else:
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115 - Input owns and closes it
        except FileNotFoundError:
            raise InputError("no such file") from None
        except IsADirectoryError:
            raise InputError("is a directory") from None
        except PermissionError:
            raise InputError("permission denied") from None
        except OSError as e:
            raise InputError(one_line(e)) from None
        owned = True
        try:
            st = os.fstat(f.fileno())
        except OSError:
            st = None
        size = st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None
    try:
        head = read_head(f, 4)
    except (OSError, ValueError) as e:
        if owned:
            f.close()
        raise InputError(f"cannot read: {one_line(e)}") from None
    raw = RawInput(f, head)
    return Input(f, owned, source_for(raw, head), size)
