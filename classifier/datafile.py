"""Read a data file (TOML, or one item a line) so that any fault is one line naming the file.

Signatures, policy and gateway config are edited by hand and may come from anywhere, so reading
them must survive anything: a missing or unreadable file, bytes that are not UTF-8, a syntax
error (reported with its line and column), values nested deep enough to exhaust the TOML
parser's recursion, a file too large to be a data file, or one that is empty (a truncated copy,
which would otherwise silently mean "no rules"). Every such fault becomes the caller's error type
(a ``DataError``), never a traceback.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

from classifier.errors import DataError

MAX_BYTES = 32 << 20  # far above any real data file (the largest prefix list is ~100 KB)
MAX_DEPTH = 16  # tables and arrays inside each other; real files use at most 4

_TOML_POS_RE = re.compile(r"\s*\(at (line \d+, column \d+)\)$")


def read_text(path: Path, error: type[DataError] = DataError) -> str:
    """The file's text; ``error`` naming the file if it is missing, not a file, huge or not UTF-8."""
    spath = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(spath, None, "does not exist") from None
    except OSError as exc:
        raise error(spath, None, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(spath, None, "is a directory, not a file")
    if st.st_size > MAX_BYTES:
        raise error(spath, None, f"is {st.st_size} bytes: too large for a data file (limit {MAX_BYTES})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(spath, None, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:  # not a regular file (a pipe, a device): the size came late
        raise error(spath, None, f"too large for a data file (limit {MAX_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(spath, None, f"not UTF-8 (byte offset {exc.start})") from None


def read_toml(path: Path, error: type[DataError] = DataError, *, allow_empty: bool = False) -> dict[str, Any]:
    """The parsed document. An empty document is an error unless ``allow_empty`` (a config file
    that only holds comments is fine; a signature or policy file that holds nothing is not)."""
    import tomllib  # here, not at the top: a start-up served from the signature cache parses no TOML

    spath = str(path)
    text = read_text(path, error)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        pos = _TOML_POS_RE.search(message)
        where = pos.group(1) if pos else None
        raise error(spath, where, f"TOML syntax error: {_TOML_POS_RE.sub('', message)}") from None
    except RecursionError:
        raise error(spath, None, f"values nested too deeply (limit {MAX_DEPTH} levels)") from None
    except Exception as exc:  # the parser failing on hostile input is still this file's fault
        raise error(spath, None, f"cannot be parsed as TOML ({type(exc).__name__}: {exc})") from None
    where = _too_deep(doc)
    if where is not None:
        raise error(spath, where, f"values nested too deeply (limit {MAX_DEPTH} levels)")
    if not doc and not allow_empty:
        raise error(spath, None, "is empty (no tables or keys)")
    return doc


def _too_deep(doc: dict[str, Any]) -> str | None:
    """The top-level key under which nesting exceeds MAX_DEPTH, or None. Iterative: the check
    itself must not recurse."""
    for key, value in doc.items():
        stack = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > MAX_DEPTH:
                return str(key)
            if isinstance(item, dict):
                stack.extend((v, depth + 1) for v in item.values())
            elif isinstance(item, list):
                stack.extend((v, depth + 1) for v in item)
    return None
