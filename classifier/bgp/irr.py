"""Route objects from an IRR dump: is an operator prefix registered for the origin that announces it?

An RPSL dump (RADB ``radb.db.gz``, the APNIC split file ``apnic.db.route.gz`` / ``.route6.gz``,
RIPE's ``ripe.db.route.gz``) holds objects separated by blank lines; an attribute is ``name:
value`` with continuation lines starting with a space, a tab or ``+``; ``#`` and ``%`` lines are
comments. Only ``route``/``route6`` objects and their ``origin`` and ``source`` are read; other
objects are skipped. Plain or gzip/bzip2 (read by :mod:`classifier.compressed`).

A route is ``registered`` when a route object has exactly its prefix and origin;
``other-origin`` when objects exist for the prefix but name other origins; ``covered`` when only
a less specific object with its origin exists (many filters built from the IRR accept that with
``le``); otherwise ``not-registered``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from classifier.compressed import InputError, open_input
from classifier.errors import UserError

REGISTERED = "registered"
OTHER_ORIGIN = "other-origin"
COVERED = "covered"
NOT_REGISTERED = "not-registered"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RouteObject:
    prefix: Network
    origin: int
    source: str

    def __str__(self) -> str:
        return f"{self.prefix} AS{self.origin}" + (f" {self.source}" if self.source else "")


@dataclass(frozen=True, slots=True)
class Registration:
    state: str
    objects: tuple[RouteObject, ...]


class RouteObjects:
    """route/route6 objects by prefix, for exact and covering lookups."""

    def __init__(self, objects: list[RouteObject], source: str, skipped: int) -> None:
        self.source = source
        self.count = len(objects)
        self.skipped = skipped  # route objects whose prefix or origin did not parse
        self._by_prefix: dict[Network, list[RouteObject]] = {}
        for o in objects:
            self._by_prefix.setdefault(o.prefix, []).append(o)

    @classmethod
    def load(cls, path: str) -> RouteObjects:
        name = Path(path).name
        try:
            source = open_input(path)
        except InputError as err:
            raise UserError(f"--irr {path}: cannot open: {err}") from None
        with source:
            data = b"".join(iter(source.source.read, b""))
            if source.source.damage is not None:
                raise UserError(f"--irr {name}: {source.source.damage}")
        objects: list[RouteObject] = []
        skipped = 0
        for _, attrs in _objects(data.decode("utf-8", "replace")):
            kind = "route" if "route" in attrs else "route6" if "route6" in attrs else None
            if kind is None:
                continue
            try:
                prefix = ipaddress.ip_network(attrs[kind].split()[0])
                origin = int(attrs.get("origin", "").split()[0].upper().removeprefix("AS"))
            except (ValueError, IndexError):
                skipped += 1
                continue
            objects.append(RouteObject(prefix, origin, " ".join(attrs.get("source", "").split()[:1])))
        if not objects:
            raise UserError(
                f"--irr {name}: no route or route6 object (an RPSL dump, e.g. radb.db or apnic.db.route)"
            )
        return cls(objects, name, skipped)

    def check(self, prefix: str, origin_asn: int | None) -> Registration:
        network = ipaddress.ip_network(prefix, strict=False)
        exact = self._by_prefix.get(network, [])
        mine = [o for o in exact if o.origin == origin_asn]
        if mine:
            return Registration(REGISTERED, tuple(mine))
        if exact:
            return Registration(OTHER_ORIGIN, tuple(exact))
        covering = []
        for length in range(network.prefixlen - 1, -1, -1):
            for o in self._by_prefix.get(network.supernet(new_prefix=length), ()):
                if o.origin == origin_asn:
                    covering.append(o)
        if covering:
            return Registration(COVERED, tuple(covering))
        return Registration(NOT_REGISTERED, ())


def _objects(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line number, {attribute: value}) of every RPSL object; the first value of a
    repeated attribute is kept, continuation lines are joined to it."""
    attrs: dict[str, str] = {}
    start = 0
    last: str | None = None
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if attrs:
                yield start, attrs
            attrs, last = {}, None
            continue
        if line[0] in "#%":
            continue
        if line[0] in " \t+" and last is not None:
            if last in attrs:
                attrs[last] += " " + line[1:].split("#", 1)[0].strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if not attrs:
            start = line_no
        last = name.strip().lower()
        attrs.setdefault(last, value.split("#", 1)[0].strip())
    if attrs:
        yield start, attrs
