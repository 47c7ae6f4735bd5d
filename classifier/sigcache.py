"""The validated signature set, cached as plain JSON so a start-up skips 20,000 prefix parses.

The gateway runs as root, so the cache must not be a way in:

* The format is JSON: reading it builds lists, strings and numbers and never runs code (a pickle
  would run whatever a planted file told it to).
* A file is used only if it is a regular file owned by the current user and writable by nobody
  else, in a directory owned by that user (or root) that others cannot write to (or that is
  sticky, like /tmp). Anything else is ignored, silently, and replaced when the directory allows:
  the cache only saves time, the load it replaces is the truth. A cache file could otherwise
  forge signatures, and forged signatures could make the gateway block.
* The key covers what the cached data depends on: every source file of the classifier package,
  every signature file, the peering and vocabulary files (path, size, mtime, plus ctime and inode
  for data: neither can be set back by hand), the signature directory itself and this format's
  version. Stat, not content: hashing the ~1 MB of signature files cost more than the cache saved.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import astuple
from pathlib import Path
from typing import Any

import orjson

from classifier.classcode import cache_dir, write_private
from classifier.classcode import read_trusted as _read_trusted
from classifier.sigload import SignatureParts
from classifier.sigmatch import PrefixTable
from classifier.sigmodel import (
    App,
    Asn,
    Cdn,
    CnameSuffix,
    EchPublicName,
    EncryptedPort,
    HostRule,
    Ja4Rule,
    Operator,
    ProtocolRule,
    Resolver,
    Store,
    StoreRule,
)

FORMAT = 3  # bump when the encoding below changes (3: prefix rows without their texts)
KEEP = 8  # cache files kept, newest first; older ones are removed when a new one is written
_PACKAGE = Path(__file__).resolve().parent
_SUFFIXES = (".toml", ".txt")


class Slot:
    """The cache file for one signature directory with its peering and vocabulary files."""

    __slots__ = ("key", "path")

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key

    @classmethod
    def find(cls, root: Path, files: Iterable[Path]) -> Slot | None:
        """The slot for ``root`` and the extra ``files``; None when caching is off or a file
        cannot be looked at (the load itself will then say what is wrong)."""
        where = cache_dir()
        if where is None:
            return None
        try:
            key = _key(root, files)
        except OSError:
            return None
        return cls(where / f"signatures-{key[:32]}.json", key)

    def read(self) -> SignatureParts | None:
        """The cached parts, or None if there is no trustworthy, intact file for this key."""
        data = _read_trusted(self.path)
        if data is None:
            return None
        try:
            return _decode(data, self.key)
        except Exception:  # corrupt or from another version: a miss, never an error
            return None

    def write(self, parts: SignatureParts) -> None:
        """Store atomically (owner-only mode), then prune old files; failures only cost the cache."""
        if write_private(self.path, _encode(parts, self.key)):
            with suppress(OSError):
                _prune(self.path.parent, self.path)


def _key(root: Path, files: Iterable[Path]) -> str:
    h = hashlib.sha256(f"format {FORMAT}\0{root.resolve()}\0".encode())
    for name, st in _tree(str(_PACKAGE), (".py",)):
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for name, st in _tree(str(root), _SUFFIXES):
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    for path in files:
        h.update(_stat_line(path, path.resolve()))
    return h.hexdigest()


def _tree(top: str, suffixes: tuple[str, ...]) -> list[tuple[str, os.stat_result]]:
    """(path relative to ``top``, stat) of every file below it with one of ``suffixes``, in the
    order (and with the names) ``sorted(Path(top).rglob(...))`` gives; symlinked directories are
    not entered, as rglob does not. os.scandir, not pathlib: this runs at every start-up, over
    some 200 files, and Path objects cost more than the stats."""
    found: list[tuple[str, os.stat_result]] = []
    todo = [("", top)]
    while todo:
        prefix, directory = todo.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                # __pycache__ holds no source: not entered (the package's has ~110 .pyc files)
                if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                    todo.append((prefix + entry.name + "/", entry.path))
                if entry.name.endswith(suffixes) and os.path.splitext(entry.name)[1] in suffixes:
                    found.append((prefix + entry.name, entry.stat()))
    found.sort(key=lambda item: item[0].split("/"))
    return found


def _stat_line(path: Path, name: Path) -> bytes:
    st = path.stat()
    return f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode()


def _prune(directory: Path, keep: Path) -> None:
    """Keep the KEEP newest cache files of ours; remove older ones and pickles of old versions."""
    mine = []
    for path in directory.glob("signatures-*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
            continue
        if path.suffix == ".pickle":
            path.unlink(missing_ok=True)
        elif path.suffix == ".json" and path != keep:
            mine.append((st.st_mtime_ns, path))
    for _, path in sorted(mine, reverse=True)[KEEP - 1 :]:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Encoding: every entry is a flat dataclass of strings, numbers, booleans and tuples of them.


def _rows(items: Iterable[Any]) -> list[tuple[Any, ...]]:
    return [astuple(item) for item in items]


def _make(cls: type, rows: list[list[Any]]) -> list[Any]:
    return [cls(*[tuple(v) if isinstance(v, list) else v for v in row]) for row in rows]


def _encode(parts: SignatureParts, key: str) -> bytes:
    return orjson.dumps(
        {
            "format": FORMAT,
            "key": key,
            "directory": parts.directory,
            "apps": _rows(parts.apps.values()),
            "operators": _rows(parts.operators.values()),
            "cdns": _rows(parts.cdns.values()),
            "asns": _rows(parts.asns.values()),
            "host_rules": _rows(parts.host_rules),
            "prefixes": parts.prefixes.export(),
            "cname_suffixes": _rows(parts.cname_suffixes),
            "stores": _rows(parts.stores.values()),
            "store_rules": _rows(parts.store_rules),
            "peering": parts.peering,
            "encrypted_ports": _rows(parts.encrypted_ports),
            "resolvers": _rows(parts.resolvers),
            "resolver_suffixes": sorted(parts.resolver_suffixes),
            "ech_public_names": _rows(parts.ech_public_names),
            "protocols": _rows(parts.protocols),
            "ja4_rules": _rows(parts.ja4_rules),
        }
    )


def _decode(data: bytes, key: str) -> SignatureParts | None:
    doc = orjson.loads(data)
    if doc.get("format") != FORMAT or doc.get("key") != key:
        return None
    peering = doc["peering"]
    if not all(isinstance(k, str) and type(v) is int for k, v in peering.items()):
        return None
    return SignatureParts(
        directory=str(doc["directory"]),
        apps={a.id: a for a in _make(App, doc["apps"])},
        operators={o.id: o for o in _make(Operator, doc["operators"])},
        cdns={c.id: c for c in _make(Cdn, doc["cdns"])},
        asns={a.asn: a for a in _make(Asn, doc["asns"])},
        host_rules=tuple(_make(HostRule, doc["host_rules"])),
        prefixes=PrefixTable.restore(doc["prefixes"]),
        cname_suffixes=tuple(_make(CnameSuffix, doc["cname_suffixes"])),
        stores={s.id: s for s in _make(Store, doc["stores"])},
        store_rules=tuple(_make(StoreRule, doc["store_rules"])),
        peering=peering,
        encrypted_ports=tuple(_make(EncryptedPort, doc["encrypted_ports"])),
        resolvers=tuple(_make(Resolver, doc["resolvers"])),
        resolver_suffixes=frozenset(doc["resolver_suffixes"]),
        ech_public_names=tuple(_make(EchPublicName, doc["ech_public_names"])),
        protocols=tuple(_make(ProtocolRule, doc["protocols"])),
        ja4_rules=tuple(_make(Ja4Rule, doc["ja4_rules"])),
    )
