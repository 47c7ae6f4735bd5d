"""Protocols that name an app by their framing alone, as WeChat's mmtls does: one table.

An inspector module declares its protocol here with :func:`register` (an id, a recogniser of
the client's first bytes, a parser of the client's greeting, and a describer that puts a parsed
greeting into one line of evidence). ``signatures/protocols.toml`` says which app each protocol id
names, with what role, confidence and source; the loader refuses an entry whose id no inspector
registers. The inspection driver and the attribution stage only ever go through this table, so
a new protocol is one inspector module plus one entry in ``protocols.toml``.

The built-in protocols are found by importing every module of ``classifier.inspect`` once (their
``register`` calls run at import); a plug-in or a test registers its own the same way. The
recognisers are tried in order of id (whatever the order of imports) after TLS and HTTP, and only
on the first bytes of a client that is neither: they must be cheap and mutually exclusive.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Modules of this package that are no inspectors: the driver imports the registry (and through it
# the flow table); importing them from here would tie the two together.
_NOT_INSPECTORS = frozenset({"driver", "registry"})


@dataclass(frozen=True, slots=True)
class AppProtocol:
    """How to recognise one protocol, read its client's greeting and say what the greeting showed."""

    id: str  # also the flow's app_proto and the evidence kind of its attribution
    recognise: Callable[[bytes], bool]  # first client bytes (>= 4) that may be this protocol
    # The greeting's facts once its bytes are all there, None until then; raises MalformedError.
    parse_greeting: Callable[[bytes], Any]
    describe: Callable[[Any], str]  # the evidence text of a parsed greeting


# app_proto values the driver gives without the table: they can never be a registered id.
RESERVED = frozenset({"tls", "http", "quic", "dns", "unknown"})

_PROTOCOLS: dict[str, AppProtocol] = {}  # by id, sorted
_builtin_loaded = False


def register(protocol: AppProtocol) -> AppProtocol:
    """Add a protocol to the table (at import of its inspector module); an id is taken once."""
    if protocol.id in _PROTOCOLS:
        raise ValueError(f"protocol {protocol.id!r} is already registered")
    if protocol.id in RESERVED:
        raise ValueError(f"protocol id {protocol.id!r} is reserved for a built-in kind of flow")
    table = {**_PROTOCOLS, protocol.id: protocol}
    _PROTOCOLS.clear()
    _PROTOCOLS.update(sorted(table.items()))
    return protocol


def unregister(protocol_id: str) -> None:
    """Remove a protocol (a test's, or an unloaded plug-in's); unknown ids are ignored."""
    _PROTOCOLS.pop(protocol_id, None)


def protocols() -> dict[str, AppProtocol]:
    """Every registered protocol by id (sorted: the order their recognisers are tried in)."""
    if not _builtin_loaded:
        _load_builtin()
    return _PROTOCOLS


def recognise(data: bytes) -> str | None:
    """The id of the first protocol whose recogniser accepts ``data`` (None if none does)."""
    for proto in protocols().values():
        if proto.recognise(data):
            return proto.id
    return None


def _load_builtin() -> None:
    """Import every inspector module of this package once, so their registrations have run."""
    global _builtin_loaded
    _builtin_loaded = True
    package = importlib.import_module(__package__ or "classifier.inspect")
    for name in sorted(_module_names(package.__path__)):
        if name not in _NOT_INSPECTORS:
            importlib.import_module(f"{package.__name__}.{name}")


def _module_names(directories: Iterable[str]) -> set[str]:
    """The modules and subpackages in ``directories``, as ``pkgutil.iter_modules`` names them
    there: that function calls ``inspect.getmodulename``, and importing ``inspect`` (ast, dis,
    tokenize...) cost every scan about 7 ms of its start-up (``classcode.defer_inspect``)."""
    suffixes = importlib.machinery.all_suffixes()
    names: set[str] = set()
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir():
                if "." not in entry.name and any(
                    os.path.isfile(os.path.join(entry.path, f"__init__{s}")) for s in suffixes
                ):
                    names.add(entry.name)
                continue
            for suffix in suffixes:
                stem = entry.name[: -len(suffix)]
                if entry.name.endswith(suffix) and stem and "." not in stem and stem != "__init__":
                    names.add(stem)
    return names
