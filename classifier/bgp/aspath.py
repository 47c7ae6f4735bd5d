"""AS paths and what an audit reads from them: origin, operator ASNs on the path, the neighbour.

A path is a tuple of elements: an ``int`` for each AS of an AS_SEQUENCE and a ``frozenset`` for an
AS_SET (it counts as one hop, RFC 4271 9.1.2.2). Confederation segments are dropped: they are
internal to the receiving confederation and say nothing about who the neighbour or origin is.

The neighbour is the first AS after the leading copies of the viewpoint's own ASN (the local AS,
or the collector's peer), so prepending does not hide it; when that AS belongs to an operator the
route is reached through a session with the operator: ``direct``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Element = int | frozenset[int]
Path = tuple[Element, ...]

# RFC 4271 / RFC 5065 segment types
AS_SET = 1
AS_SEQUENCE = 2
# RFC 4271 / RFC 6793 path attribute type codes
ATTR_AS_PATH = 2
ATTR_AS4_PATH = 17

DIRECT = "direct"
INDIRECT = "indirect"
OWN = "own"  # the viewpoint AS itself originates the route: there is no neighbour
UNKNOWN = "unknown"  # recorded by another AS than the viewpoint: no neighbour can be named


def from_segments(segments: Iterable[Mapping[str, Any]]) -> Path:
    """mrtparse AS_PATH / AS4_PATH segments (``{'type': {2: ...}, 'value': ['65000', ...]}``)."""
    out: list[Element] = []
    for seg in segments:
        kind = next(iter(seg["type"]))
        asns = [int(a) for a in seg["value"]]
        if kind == AS_SEQUENCE:
            out.extend(asns)
        elif kind == AS_SET and asns:
            out.append(frozenset(asns))
    return tuple(out)


def from_attributes(attrs: Iterable[Mapping[str, Any]], two_byte: bool) -> Path:
    """The path of mrtparse path attributes: AS_PATH, completed by AS4_PATH when the AS numbers in
    AS_PATH are 2 bytes long (AS4_PATH is meaningless otherwise, RFC 6793 4.1)."""
    as_path: Path = ()
    as4_path: Path = ()
    for a in attrs:
        kind = next(iter(a["type"]))
        if kind == ATTR_AS_PATH:
            as_path = from_segments(a["value"])
        elif kind == ATTR_AS4_PATH and two_byte:
            as4_path = from_segments(a["value"])
    return merge_as4(as_path, as4_path) if two_byte else as_path


def merge_as4(as_path: Path, as4_path: Path) -> Path:
    """RFC 6793 4.2.3: a 2-byte AS_PATH (AS_TRANS for big ASNs) completed by AS4_PATH.

    AS4_PATH replaces the tail of AS_PATH; when it is longer than AS_PATH it is ignored, as the
    RFC says (an old speaker aggregated or the attribute is bogus).
    """
    if not as4_path or len(as4_path) > len(as_path):
        return as_path
    return as_path[: len(as_path) - len(as4_path)] + as4_path


def asns(path: Path) -> Iterator[int]:
    """Every AS number on the path, set members included."""
    for el in path:
        if isinstance(el, int):
            yield el
        else:
            yield from sorted(el)


def text(path: Path) -> str:
    """``3491 133478``; a set is written ``{64512,64513}`` as bgpdump does."""
    return " ".join(
        str(el) if isinstance(el, int) else "{" + ",".join(map(str, sorted(el))) + "}" for el in path
    )


def strip_viewpoint(path: Path, viewpoint: int | None) -> Path:
    """The path without its leading copies of the viewpoint's ASN (prepending)."""
    i = 0
    if viewpoint is not None:
        while i < len(path) and path[i] == viewpoint:
            i += 1
    return path[i:]


@dataclass(frozen=True, slots=True)
class PathInfo:
    """The audit's facts about one path seen from one viewpoint ASN.

    ``operator`` is the operator the route concerns: the neighbour's when the route is direct
    (the session is with that operator), else the origin's, else the first operator ASN on the
    path. ``origin_asn`` is None when the origin is an AS_SET; ``origin_set`` then lists it.
    """

    path: Path
    as_path: str
    viewpoint: int | None
    origin_asn: int | None
    origin_set: tuple[int, ...] | None
    origin_operator: str | None
    operator_asns: tuple[int, ...]
    transit_asns: tuple[int, ...]
    neighbour_asn: int | None
    neighbour_operator: str | None
    relationship: str
    operator: str

    @property
    def role(self) -> str:
        """``origin`` when an operator ASN originates the prefix, else ``transit``."""
        return "origin" if self.origin_operator is not None else "transit"


class PathClassifier:
    """Path + viewpoint to :class:`PathInfo`, or None when no operator ASN is on the path.

    Results are cached: a RIB repeats the same few operator paths for many prefixes and peers.
    Only operator paths are cached, so the cache stays as small as the operator data.
    """

    def __init__(self, operator_by_asn: Mapping[int, str]) -> None:
        self.operator_by_asn = dict(operator_by_asn)
        self._cache: dict[tuple[Path, int | None, bool], PathInfo] = {}

    def concerns(self, path: Sequence[Element]) -> bool:
        """True if an operator ASN appears anywhere on the path."""
        ops = self.operator_by_asn
        for el in path:
            if isinstance(el, int):
                if el in ops:
                    return True
            elif not el.isdisjoint(ops):
                return True
        return False

    def classify(self, path: Path, viewpoint: int | None, foreign: bool = False) -> PathInfo | None:
        """``foreign``: the path was recorded by another AS than ``viewpoint`` (a collector's
        session), so the viewpoint's neighbour cannot be read from it: relationship ``unknown``."""
        key = (path, viewpoint, foreign)
        hit = self._cache.get(key)
        if hit is not None or not self.concerns(path):
            return hit
        info = self._build(path, viewpoint, foreign)
        self._cache[key] = info
        return info

    def _build(self, path: Path, viewpoint: int | None, foreign: bool = False) -> PathInfo:
        ops = self.operator_by_asn
        last = path[-1] if path else None
        origin_asn: int | None = None
        origin_set: tuple[int, ...] | None = None
        origin_operator: str | None = None
        if isinstance(last, int):
            origin_asn = last
            origin_operator = ops.get(last)
        elif last is not None:
            origin_set = tuple(sorted(last))
            members = [a for a in origin_set if a in ops]
            if members:
                origin_operator = ops[members[0]]
        operator_asns = tuple(dict.fromkeys(a for a in asns(path) if a in ops))
        body = list(path)
        while len(body) > 1 and body[-2] == last:  # the origin prepending itself is not transit
            body.pop()
        transit_asns = tuple(dict.fromkeys(a for a in asns(tuple(body[:-1])) if a in ops))
        rest = strip_viewpoint(path, viewpoint)
        neighbour_asn: int | None = None
        neighbour_operator: str | None = None
        if foreign:
            relationship = UNKNOWN
        elif not rest:
            relationship = OWN
        else:
            first = rest[0]
            if isinstance(first, int):
                neighbour_asn = first
                neighbour_operator = ops.get(first)
            relationship = DIRECT if neighbour_operator is not None else INDIRECT
        operator = neighbour_operator or origin_operator or ops[operator_asns[0]]
        return PathInfo(
            path,
            text(path),
            viewpoint,
            origin_asn,
            origin_set,
            origin_operator,
            operator_asns,
            transit_asns,
            neighbour_asn,
            neighbour_operator,
            relationship,
            operator,
        )
