"""The gateway's record log: the ``scan`` JSON-lines schema, one flushed line per flow.

Each record is written and flushed on its own (to the kernel, so a ``kill -9`` loses nothing that
was written); ``reopen`` starts a new file at the same path after logrotate moved the old one
(SIGHUP). ``-`` is standard output.
"""

from __future__ import annotations

import sys
from typing import IO

from classifier.errors import UserError
from classifier.record import JsonLinesWriter


class RecordLog:
    """A line-buffered JSON-lines writer that can be reopened."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.writer = JsonLinesWriter(self._open(), line_buffered=True)

    def _open(self) -> IO[str]:
        if self.path == "-":
            return sys.stdout
        try:
            self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (kept open)
        except OSError as err:
            raise UserError(f"cannot write the record log {self.path}: {err.strerror or err}") from None
        return self._file

    def write(self, record: dict) -> None:
        self.writer.write(record)

    def write_line(self, line: str) -> None:
        """A record a queue worker already encoded (one line, with its newline), flushed."""
        out = self.writer.out
        out.write(line)
        out.flush()

    def reopen(self) -> None:
        """Close and open the path again (log rotation)."""
        if self.path == "-":
            return
        old = self._file
        self.writer = JsonLinesWriter(self._open(), line_buffered=True)
        if old is not None:
            old.close()

    def close(self) -> None:
        self.writer.close()
        if self._file is not None:
            self._file.close()
            self._file = None
