"""Lookups over validated signatures: host names by label suffix, addresses by longest prefix.

Built once per signature set; each lookup runs once per flow. The prefix table can also be
exported as plain lists of numbers and strings and restored from them without re-parsing 20,000
prefixes, which is what makes a cached start-up fast (``sigcache``).
"""

from __future__ import annotations

import re
from _socket import AF_INET, AF_INET6, inet_ntop
from collections.abc import Iterable, Iterator
from dataclasses import astuple
from typing import Any

from classifier.sigmodel import HostRule, PrefixEntry


def normalize_host(host: str) -> str:
    """Lowercase and drop one trailing dot: the form every rule is written in."""
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


_MISS = object()  # a remembered "no rule" (None would read as "not looked up yet")
_MAX_REMEMBERED = 1024  # names whose answer an index keeps (up to 255 bytes each)


class SuffixIndex:
    """Label-boundary suffix lookup: ``a.b.c`` is tried as ``a.b.c``, ``b.c``, ``c``.

    Answers are remembered per name as given (bounded: the memory starts over when full), since
    flows repeat a few names: a repeat costs one dict probe instead of a probe per label.
    """

    __slots__ = ("_exact", "_remembered", "_suffix")

    def __init__(self, exact: dict[str, Any], suffix: dict[str, Any]) -> None:
        self._exact = exact
        self._suffix = suffix
        self._remembered: dict[str, Any] = {}

    def get(self, host: str) -> Any:
        hit = self._remembered.get(host, _MISS)
        if hit is not _MISS:
            return hit
        hit = self._find(host)
        remembered = self._remembered
        if len(remembered) >= _MAX_REMEMBERED:
            remembered.clear()
        remembered[host] = hit
        return hit

    def _find(self, host: str) -> Any:
        host = normalize_host(host)
        if not host:
            return None
        hit = self._exact.get(host)
        if hit is not None:
            return hit
        suffix = self._suffix
        start = 0
        while True:
            hit = suffix.get(host[start:] if start else host)
            if hit is not None:
                return hit
            dot = host.find(".", start)
            if dot < 0:
                return None
            start = dot + 1


class HostMatcher:
    """Host name to rule. The most specific rule wins: an exact host, then the longest suffix."""

    __slots__ = ("_index", "rules")

    def __init__(self, rules: Iterable[HostRule]) -> None:
        self.rules = tuple(rules)
        exact = {r.pattern: r for r in self.rules if r.exact}
        suffix = {r.pattern: r for r in self.rules if not r.exact}
        self._index = SuffixIndex(exact, suffix)

    def match(self, host: str) -> HostRule | None:
        """The rule for ``host`` (any case, trailing dot allowed), or None."""
        return self._index.get(host)

    def __len__(self) -> int:
        return len(self.rules)


# A prefix table's lengths at or below this export their keys as JSON integers; longer IPv6
# prefixes (keys up to 2**128) export them as hex text, which every JSON reader keeps exact.
_INT_KEY_BITS = 63
_FAMILY = {4: AF_INET, 16: AF_INET6}


def _network_text(size: int, key: int, length: int) -> str:
    """The canonical text of the network ``key`` (the network number shifted right by the host
    bits): what ``validate.parse_prefix`` made of the prefix as written, by the same inet_ntop."""
    packed = (key << (size * 8 - length)).to_bytes(size, "big")
    return f"{inet_ntop(_FAMILY[size], packed)}/{length}"


class PrefixTable:
    """Longest-prefix match over operator and CDN prefixes, IPv4 and IPv6.

    One dict per prefix length, keyed by the network number shifted right by the host bits;
    a lookup probes the lengths present, longest first. The dicts hold the per-ASN template
    entries rather than 20,000 entry objects; the entry of a network that is not its template's
    is made when a lookup hits (once per flow), with the network's text made from its key then:
    keeping 20,000 texts cost a cached start-up about 4 ms (reading them, and the pairs).
    """

    __slots__ = ("_count", "_tables")

    def __init__(self, entries: Iterable[tuple[bytes, int, PrefixEntry]] = ()) -> None:
        by_len: dict[int, dict[int, dict[int, PrefixEntry]]] = {4: {}, 16: {}}
        templates: dict[str, PrefixEntry] = {}
        count = 0
        for packed, length, entry in entries:
            bits = len(packed) * 8
            key = int.from_bytes(packed, "big") >> (bits - length)
            if entry.network != _network_text(len(packed), key, length):  # parse_prefix's, always
                raise ValueError(f"prefix {entry.network!r} is not in canonical form")
            template = templates.setdefault(entry.id, entry)
            by_len[len(packed)].setdefault(length, {})[key] = template
            count += 1
        self._set(by_len, count)

    def _set(self, by_len: dict[int, dict[int, dict[int, PrefixEntry]]], count: int) -> None:
        self._count = count
        # (bits, [(shift, length, table), ...] longest prefix first) per address size
        self._tables = {
            size: (size * 8, [(size * 8 - n, n, t[n]) for n in sorted(t, reverse=True)])
            for size, t in by_len.items()
        }

    def lookup(self, addr: bytes) -> PrefixEntry | None:
        """The most specific entry covering ``addr`` (4 or 16 raw bytes), or None."""
        size = len(addr)
        table = self._tables.get(size)
        if table is None:
            return None
        value = int.from_bytes(addr, "big")
        for shift, length, networks in table[1]:
            key = value >> shift
            t = networks.get(key)
            if t is not None:
                network = _network_text(size, key, length)
                if t.network == network:
                    return t
                return PrefixEntry(t.id, network, t.asn, t.owner, t.kind, t.source, t.date)
        return None

    def __len__(self) -> int:
        return self._count

    def networks(self) -> Iterator[tuple[int, int, int, str, PrefixEntry]]:
        """Every prefix as (address size, network number, length, text, template entry)."""
        for size, (_, tables) in self._tables.items():
            for shift, length, networks in tables:
                for key, template in networks.items():
                    yield size, key << shift, length, _network_text(size, key, length), template

    def export(self) -> dict[str, Any]:
        """The table as plain lists of numbers (and strings) for the cache; see :meth:`restore`."""
        index: dict[str, int] = {}
        templates: list[list[Any]] = []
        rows: list[list[Any]] = []
        for size, (_, tables) in self._tables.items():
            for _, length, networks in tables:
                ids = []
                for template in networks.values():
                    i = index.get(template.id)
                    if i is None:
                        i = index[template.id] = len(templates)
                        templates.append(list(astuple(template)))
                    ids.append(i)
                keys: list[Any] = list(networks)
                if length > _INT_KEY_BITS:
                    keys = [format(k, "x") for k in keys]
                rows.append([size, length, keys, ids])
        return {"count": self._count, "templates": templates, "rows": rows}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> PrefixTable:
        """The table :meth:`export` described; TypeError/ValueError/KeyError if it is not one."""
        templates = [PrefixEntry(*row) for row in data["templates"]]
        by_len: dict[int, dict[int, dict[int, PrefixEntry]]] = {4: {}, 16: {}}
        count = 0
        for size, length, keys, ids in data["rows"]:
            if size not in by_len or not 0 <= length <= size * 8 or len(keys) != len(ids):
                raise ValueError("malformed prefix table row")
            if length > _INT_KEY_BITS:
                keys = [int(k, 16) for k in keys]
            by_len[size][length] = dict(zip(keys, map(templates.__getitem__, ids), strict=True))
            count += len(keys)
        if count != data["count"]:
            raise ValueError("prefix table count does not match its rows")
        table = cls.__new__(cls)
        table._set(by_len, count)
        return table


def package_pattern(platform: str, package: str) -> re.Pattern[str]:
    """Android package names end at a character that cannot continue them (so
    ``com.zhiliaoapp.musically`` does not match ``com.zhiliaoapp.musically.go``); Apple ids are
    numbers not embedded in longer numbers."""
    if platform == "android":
        return re.compile(r"(?<![A-Za-z0-9_.])" + re.escape(package) + r"(?![A-Za-z0-9_.])")
    return re.compile(r"(?<![0-9])" + re.escape(package) + r"(?![0-9])")
