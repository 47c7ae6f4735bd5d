"""Read a data file (TOML, or one item a line) so that any fault is one line naming the file.

Signatures, policy and gateway config are edited by hand and may come from anywhere, so reading
them must survive anything: a missing or unreadable file, bytes that are not UTF-8, a syntax
error (reported with its line and column), values nested deep enough to exhaust the TOML
parser's recursion, a file too large to be a data file, or one that is empty (a truncated copy,
which would otherwise silently mean "no rules"). Every such fault becomes the caller's error type
(a ``DataError``), never a traceback.

Files read at every start-up (the policy and its vocabulary) are parsed once per edit: their
documents are kept, with the stat that identifies the file (size, mtime, ctime, inode, device:
an edit always moves ctime), in a cache file trusted as the signature cache is
(``classifier.classcode``); ``save_documents()`` stores what a run parsed anew. A document
served from it passed every check below when it was parsed; the caller validates it as usual.
"""

from __future__ import annotations

import datetime as dt
import marshal
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from classifier import classcode
from classifier.errors import DataError

MAX_BYTES = 32 << 20  # far above any real data file (the largest prefix list is ~100 KB)
MAX_DEPTH = 16  # tables and arrays inside each other; real files use at most 4

_TOML_POS_RE = re.compile(r"\s*\(at (line \d+, column \d+)\)$")

# The document cache: absolute path -> (stat key, document with dates as tagged tuples; TOML has
# no tuples, so a tuple is always a tag). None until first used.
_DOCS_FILE = f"toml-documents-{sys.hexversion:x}.marshal"
_docs: dict[str, tuple[tuple[int, ...], Any]] | None = None
_docs_used: set[str] = set()
_docs_new = False


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


def read_toml(
    path: Path, error: type[DataError] = DataError, *, allow_empty: bool = False, cached: bool = False
) -> dict[str, Any]:
    """The parsed document. An empty document is an error unless ``allow_empty`` (a config file
    that only holds comments is fine; a signature or policy file that holds nothing is not).
    ``cached``: served from, and kept in, the document cache (files every start-up reads)."""
    key = None
    if cached:
        key = _stat_key(path)
        if key is not None:
            doc = _cached_document(path, key)
            if doc is not None:
                return doc
    import tomllib  # here, not at the top: a start-up served from the caches parses no TOML

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
    if key is not None:
        _keep_document(path, key, doc)
    return doc


def _stat_key(path: Path) -> tuple[int, ...] | None:
    """What identifies this version of a regular file, taken before it is read (None: not one)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _documents() -> dict[str, tuple[tuple[int, ...], Any]]:
    global _docs
    if _docs is None:
        _docs = {}
        where = classcode.cache_dir()
        data = None if where is None else classcode.read_trusted(where / _DOCS_FILE)
        if data is not None:
            try:
                table = marshal.loads(data)
            except Exception:  # truncated or not marshal data: a miss, never an error
                table = None
            if type(table) is dict:
                _docs = table
    return _docs


def _cached_document(path: Path, key: tuple[int, ...]) -> dict[str, Any] | None:
    name = os.path.abspath(path)
    entry = _documents().get(name)
    if type(entry) is not tuple or len(entry) != 2 or entry[0] != key:
        return None
    try:
        doc = _untag(entry[1])
    except Exception:  # not a document this module stored: parse the file instead
        return None
    if type(doc) is not dict:
        return None
    _docs_used.add(name)
    return doc


def _keep_document(path: Path, key: tuple[int, ...], doc: dict[str, Any]) -> None:
    global _docs_new
    name = os.path.abspath(path)
    _documents()[name] = (key, _tag(doc))
    _docs_used.add(name)
    _docs_new = True


def save_documents() -> None:
    """Store the documents parsed anew since the cache was read (nothing if none were)."""
    global _docs, _docs_new
    where = classcode.cache_dir()
    if _docs_new and _docs is not None and where is not None:
        # other directories' documents stay, unless they could double what every start-up reads
        small = len(_docs) <= 2 * len(_docs_used) + 8
        keep = _docs if small else {k: _docs[k] for k in _docs_used if k in _docs}
        classcode.write_private(where / _DOCS_FILE, marshal.dumps(keep))
    _docs, _docs_new = None, False
    _docs_used.clear()


# TOML's dates and times are not marshal types: each becomes (kind, ISO text).
_TIME_KINDS: dict[type, str] = {dt.datetime: "datetime", dt.date: "date", dt.time: "time"}
_FROM_ISO = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
}


def _tag(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tag(v) for v in value]
    kind = _TIME_KINDS.get(type(value))
    return (kind, value.isoformat()) if kind is not None else value


def _untag(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _untag(v) for k, v in value.items()}
    if kind is list:
        return [_untag(v) for v in value]
    if kind is tuple:
        name, text = value
        return _FROM_ISO[name](text)
    if kind in (str, int, float, bool):
        return value
    raise TypeError(f"not a TOML value: {kind.__name__}")


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
