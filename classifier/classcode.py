"""The code ``dataclasses`` generates for our classes, cached, so a start-up compiles none of it.

Every ``@dataclass`` writes its ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` ... as source text and compiles it: for the ~45 classes a scan imports that was
about a third of the import time. ``start()`` (run by ``classifier/__init__``) lets
``dataclasses`` look each text up in a cache of the code objects ``compile`` made for it before;
``finish()`` (the command line, once its command has imported what it needs) stops that and stores
what was compiled anew. A class built from a cached code object is the one ``exec`` of its text
gives: the text is the key, and ``compile`` runs exactly as ``exec`` would (no inherited flags).

Cached code is run, so the file is trusted as ``classifier.sigcache`` trusts its own: a regular
file of the current user, writable by nobody else, in a directory no one else can write to (or a
sticky one); anything else, a file of another Python version or a corrupt one is ignored (the
classes are then compiled as usual) and replaced.
"""

from __future__ import annotations

import builtins
import marshal
import os
import stat
import sys
import typing
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

MAX_BYTES = 64 << 20
# marshal's format and the bytecode both change with the Python version: one file per version.
_TAG = f"{sys.implementation.cache_tag}-{sys.hexversion:x}"
_FILE_NAME = f"dataclass-code-{_TAG}.marshal"


_cache: dict[str, Any] = {}
_new: dict[str, Any] = {}
_used: set[str] = set()
_active = False


def cache_dir() -> Path | None:
    """Where cache files live (None: turned off by CLASSIFIER_NO_CACHE, or no home directory)."""
    if os.environ.get("CLASSIFIER_NO_CACHE"):
        return None
    base = os.environ.get("CLASSIFIER_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no HOME and no passwd entry (a bare container)
            return None
    return Path(base) / "classifier"


def trusted_dir(st: os.stat_result) -> bool:
    """Ours (or root's), and nobody else can swap files in it unless it is sticky."""
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (os.geteuid(), 0):
        return False
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or bool(st.st_mode & stat.S_ISVTX)


def read_trusted(path: Path) -> bytes | None:
    """The file's bytes if it and its directory pass the ownership and mode checks."""
    try:
        if not trusted_dir(os.stat(path.parent)):
            return None
        # O_NOFOLLOW: not through a symlink; O_NONBLOCK: a planted FIFO cannot hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.geteuid()
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            or st.st_size > MAX_BYTES
        ):
            return None
        try:
            return f.read(MAX_BYTES + 1)
        except OSError:
            return None


def write_private(path: Path, data: bytes) -> bool:
    """Store ``data`` at ``path`` atomically, owner-only, in a directory only we can write to;
    False (nothing written) when that cannot be had. A cache only saves time: never an error."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(directory)
        if st.st_uid == os.geteuid() and not trusted_dir(st):
            # Our own directory, made group/world-writable: close it. Files others put there
            # meanwhile stay refused (not ours); what we write from now on can be trusted.
            os.chmod(directory, stat.S_IMODE(st.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
            st = os.stat(directory)
        if not trusted_dir(st):
            return False
        tmp = directory / f".{path.name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True


def _kept_at_most(used: int) -> int:
    """Entries a cache file may keep when a run used ``used`` of them: other commands' entries
    stay, but once stale ones (of classes since edited) could double the file, only this run's
    are kept: every start-up reads the whole file."""
    return 2 * used + 64


def cache_file() -> Path | None:
    """This Python version's cache file (None: caching is off)."""
    where = cache_dir()
    return None if where is None else where / _FILE_NAME


def _load(path: Path) -> dict[str, Any]:
    """The cached {source text: code object}, or {} for a missing, untrusted or broken file."""
    data = read_trusted(path)
    if data is None:
        return {}
    try:
        doc = marshal.loads(data)
    except Exception:  # truncated or not marshal data: a miss, never an error
        return {}
    if type(doc) is not tuple or len(doc) != 2 or doc[0] != _TAG or type(doc[1]) is not dict:
        return {}
    table: dict[str, Any] = doc[1]
    code_type = type(_load.__code__)
    if not all(type(k) is str and type(v) is code_type for k, v in table.items()):
        return {}
    return table


def _ours(namespace: Any) -> bool:
    """Whether ``namespace`` is that of one of this package's modules."""
    name = namespace.get("__name__") if type(namespace) is dict else None
    return type(name) is str and (name == __package__ or name.startswith(f"{__package__}."))


def _exec(source: Any, globals: Any = None, locals: Any = None) -> None:
    """``exec`` for ``dataclasses``: a source text is compiled once per cache, not once per run.
    Only for our own classes (``dataclasses`` passes the class's module namespace as ``globals``):
    another package's classes, made while the hook is in place, are compiled as usual."""
    if type(source) is str and _ours(globals):
        code = _cache.get(source)
        _used.add(source)
        if code is None:
            # dont_inherit: compile as exec of the text does, without this module's __future__ flags
            code = _new[source] = _cache[source] = compile(source, "<string>", "exec", dont_inherit=True)
        source = code
    builtins.exec(source, globals, locals)


def _compile(source: Any, filename: Any, mode: Any, *args: Any, **kwargs: Any) -> Any:
    """``compile`` for ``typing``: a ``NamedTuple``'s field annotations are strings here (``from
    __future__ import annotations``) and ``typing.ForwardRef`` compiles each one to check it (21
    for a scan, the first call of the compiler in the process: about 1.5 ms), served from the cache
    like the classes' code. ``typing`` calls it as ``compile(text, "<string>", "eval")`` and has
    no ``__future__`` flags to pass on, so ``dont_inherit`` compiles exactly what it would."""
    if type(source) is not str or filename != "<string>" or mode != "eval" or args or kwargs:
        return builtins.compile(source, filename, mode, *args, **kwargs)
    key = f"<eval>\0{source}"
    code = _cache.get(key)
    _used.add(key)
    if code is None:
        code = _new[key] = _cache[key] = builtins.compile(source, filename, mode, dont_inherit=True)
    return code


def compiled(source: str, filename: str) -> CodeType:
    """``compile(source, filename, "exec")`` of code this package generates at import (the record
    function), served from the cache like the classes' code while it is active."""
    if not _active:
        return compile(source, filename, "exec", dont_inherit=True)
    key = f"{filename}\0{source}"
    code = _cache.get(key)
    _used.add(key)
    if code is None:
        code = _new[key] = _cache[key] = compile(source, filename, "exec", dont_inherit=True)
    return code


class _OnFirstUse(ModuleType):
    """A module found but not run yet: the first attribute it lacks runs it, in place (it stays the
    object ``sys.modules`` and every importer hold), and from then on it is a plain module.

    ``importlib.util.LazyLoader`` does not do here: on Python 3.11 an ``import`` statement of a
    module already in ``sys.modules`` reads its ``__spec__``, which loads a LazyLoader module
    (every access does); this one has its attributes of a found module and waits for a real one.
    """

    def __getattr__(self, name: str) -> Any:
        self.__class__ = ModuleType  # type: ignore[assignment]  # once: a failed run is not retried
        spec = self.__spec__
        assert spec is not None and spec.loader is not None  # defer_inspect checked both
        spec.loader.exec_module(self)
        return getattr(self, name)


def defer_inspect() -> None:
    """Leave ``inspect`` unrun (``_OnFirstUse``) until something uses it, if nothing loaded it yet.

    ``dataclasses`` imports it (with ast, dis, tokenize: about 7 ms of every start-up) for one
    thing only: the ``__doc__`` of a class written without a docstring. Ours all have one, so a
    scan never runs it; anything that does use it gets the whole module, as imported normally.
    """
    if "inspect" in sys.modules:
        return
    import importlib.util

    spec = importlib.util.find_spec("inspect")
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _OnFirstUse
    sys.modules["inspect"] = module


def start() -> None:
    """Serve the classes created from now on from the cache (a no-op when caching is off)."""
    global _active
    defer_inspect()
    import dataclasses

    if _active or getattr(dataclasses, "exec", builtins.exec) is not builtins.exec:
        return
    path = cache_file()
    if path is None:
        return
    _cache.update(_load(path))
    dataclasses.exec = _exec  # type: ignore[attr-defined]
    if "compile" not in vars(typing):
        typing.compile = _compile  # type: ignore[attr-defined]
    _active = True


def finish() -> None:
    """Stop serving classes from the cache, and store the code compiled anew since ``start``."""
    global _active
    if not _active:
        return
    import dataclasses

    if getattr(dataclasses, "exec", None) is _exec:
        del dataclasses.exec  # type: ignore[attr-defined]
    if vars(typing).get("compile") is _compile:
        del typing.compile  # type: ignore[attr-defined]
    _active = False
    path = cache_file()
    if _new and path is not None:
        keep = _cache if len(_cache) <= _kept_at_most(len(_used)) else {k: _cache[k] for k in _used}
        write_private(path, marshal.dumps((_TAG, keep)))
    _new.clear()
    _cache.clear()
    _used.clear()
