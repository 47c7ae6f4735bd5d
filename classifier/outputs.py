"""Where a command writes: never over one of its inputs, and a failed write is one line naming it.

``refuse_clobbering`` runs before anything is opened: ``-o`` or ``--stats`` naming an input (the
same file by device and inode, through symlinks and hard links), or naming each other, is a usage
error, so ``scan x.pcap -o x.pcap`` can never truncate the capture it was about to read.

``TextOutput`` is a file or standard output whose write, flush and close failures become
``OutputError`` ("cannot write PATH: No space left on device"), except a broken pipe on
standard output, which stays ``BrokenPipeError``: the reader went away (``| head``), and the
command line ends quietly.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any, Protocol, TextIO, cast

from .errors import OutputError, UserError

STDOUT = "standard output"


class TextSink(Protocol):
    """What record writers and tables need of where they write: an open text file, a StringIO or a
    ``TextOutput`` (whose failures name the output) all qualify."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def refuse_clobbering(
    outputs: Sequence[tuple[str, str | None]], inputs: Iterable[str], stdout_written: bool
) -> None:
    """UserError if an output is one of the inputs or two outputs are one file.

    ``outputs`` are (option, path or None) pairs; an input ``-`` is standard input. With
    ``stdout_written``, standard output is checked as well when it is a regular file (``>> x.pcap``
    would otherwise append records to the capture being read). Character devices (``/dev/null``,
    ``/dev/full``, a terminal) hold nothing to overwrite and may be named more than once.
    """
    seen: list[tuple[str, str, tuple[int, int] | None, str]] = []  # option, path, identity, real path
    for option, path in outputs:
        if not path:
            continue
        st = _stat(path)
        if st is not None and stat.S_ISCHR(st.st_mode):
            continue
        ident = (st.st_dev, st.st_ino) if st is not None else None
        real = os.path.realpath(path)  # for outputs that do not exist yet
        for other_option, other_path, other_ident, other_real in seen:
            if (ident is not None and ident == other_ident) or real == other_real:
                raise UserError(
                    f"{option} {path} and {other_option} {other_path} are the same file; "
                    "give each output its own"
                )
        seen.append((option, path, ident, real))
    if stdout_written:
        st = _fstat(1)
        if st is not None and stat.S_ISREG(st.st_mode):  # pipes and terminals never hold an input
            seen.append(("standard output", "", (st.st_dev, st.st_ino), ""))
    watched = [(option, path, ident) for option, path, ident, _ in seen if ident is not None]
    if not watched:
        return
    for source in inputs:
        st = _fstat(0) if source == "-" else _stat(source)
        if st is None or stat.S_ISCHR(st.st_mode):
            continue
        for option, path, ident in watched:
            if (st.st_dev, st.st_ino) == ident:
                what = f"{option} {path}" if path else option
                shown = "standard input" if source == "-" else source
                raise UserError(f"{what} is the input {shown} (same file): refusing to overwrite an input")


def _stat(path: str) -> os.stat_result | None:
    """The file a path names, following symlinks; None if there is none (yet)."""
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _fstat(fd: int) -> os.stat_result | None:
    try:
        return os.fstat(fd)
    except OSError:
        return None


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (``surrogateescape``, as Python gives
    them in argv) written as ``\\xNN``: a name that can go into JSON, CSV or a UTF-8 terminal
    (orjson and strict UTF-8 refuse lone surrogates)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_writable(path: str) -> None:
    """OutputError now, before a long run, if ``path`` clearly cannot be written at its end.

    Nothing is created or truncated: an existing file is left as it is until the run writes it.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(parent):
            raise _error(path, OSError(errno.ENOENT, os.strerror(errno.ENOENT))) from None
        if not os.access(parent, os.W_OK):
            raise _error(path, OSError(errno.EACCES, os.strerror(errno.EACCES))) from None
        return
    except OSError as err:
        raise _error(path, err) from None
    if stat.S_ISDIR(st.st_mode):
        raise _error(path, OSError(errno.EISDIR, os.strerror(errno.EISDIR)))
    if not os.access(path, os.W_OK):
        raise _error(path, OSError(errno.EACCES, os.strerror(errno.EACCES)))


def write_text_file(path: str, text: str) -> None:
    """Write a whole small file (``--stats``); OutputError naming it on failure."""
    out = TextOutput(path)
    try:
        out.write(text)
    finally:
        out.close()


def rich_console(out: TextSink, width: int) -> Any:
    """A rich Console writing to ``out`` that prints text literally and lets a broken pipe propagate.

    rich's own answer to a broken pipe is to exit with status 1; the command line instead ends
    quietly with status 0 when the reader of standard output went away (``| head``), for the
    table as for JSON lines and CSV.
    """
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    # Text from the wire (hostnames, SNI) is printed as it is: "[/x]" would otherwise be rich
    # markup (an exception, or a styled and altered name) and ":smile:" an emoji.
    # rich asks a file for write and flush, and for isatty and encoding where it has them.
    file = cast(IO[str], out)
    return PipeConsole(file=file, width=width, soft_wrap=False, markup=False, emoji=False)


def _error(name: str, err: OSError) -> OutputError:
    reason = err.strerror or str(err) or type(err).__name__
    return OutputError(f"cannot write {name}: {' '.join(reason.split())}")


class TextOutput:
    """A text file opened for writing (``path``), or standard output (``path`` None)."""

    def __init__(self, path: str | None) -> None:
        self.name = path or STDOUT
        self._stdout = path is None
        self._failed = False
        if path is None:
            self._f: TextIO = sys.stdout
            return
        try:
            self._f = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()
        except OSError as err:
            raise _error(path, err) from None

    @property
    def encoding(self) -> str:
        return self._f.encoding or "utf-8"

    def isatty(self) -> bool:
        try:
            return self._f.isatty()
        except (OSError, ValueError):
            return False

    def write(self, text: str) -> int:
        try:
            return self._f.write(text)
        except OSError as err:
            raise self._fail(err) from None

    def write_bytes(self, data: bytes) -> None:
        """UTF-8 text already encoded (JSON lines the scan workers made): to the file's binary
        layer as it is, after what was written as text (flushed first, so the order stays), when
        the file's encoding is UTF-8; otherwise decoded and written as text, as ``write`` would."""
        try:
            buffer = getattr(self._f, "buffer", None)
            if buffer is None or codecs.lookup(self.encoding).name != "utf-8":
                self._f.write(data.decode())
                return
            self._f.flush()
            buffer.write(data)
        except OSError as err:
            raise self._fail(err) from None

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as err:
            raise self._fail(err) from None

    def close(self) -> None:
        """Flush and (for a file) close; a failure here is reported like one in ``write``."""
        if self._failed:
            return
        try:
            if self._stdout:
                self._f.flush()
            else:
                self._f.close()
        except OSError as err:
            raise self._fail(err) from None

    def __enter__(self) -> TextOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abandon()

    def abandon(self) -> None:
        """Close after another failure: write what can be written, raise nothing."""
        if self._failed:
            return
        with contextlib.suppress(OutputError, BrokenPipeError):
            self.close()

    def _fail(self, err: OSError) -> BaseException:
        """Mark the output dead (later closes raise nothing) and say what went wrong."""
        self._failed = True
        if self._stdout:
            # What Python still holds for standard output can never be written: send it to
            # /dev/null, or the interpreter reports the same failure again at exit.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError, AttributeError):
                pass
            if isinstance(err, BrokenPipeError):
                return err
        else:
            with contextlib.suppress(OSError):
                self._f.close()
        return _error(self.name, err)
