"""The path attributes a peering engineer reads beside the AS path, kept on operator routes only.

mrtparse has already decoded them when a record reaches the walker (only records that can concern
an operator are decoded), so reading them costs a dict walk per operator route and nothing on the
rest of the table. Communities keep the text form routers show (``65535:666``, ``rt 64500:1``,
``64500:1:2``); the well-known ones are named (IANA "BGP Well-known Communities" registry, RFC
1997, RFC 7999, RFC 8326, RFC 8642): they change what a route does, so an auditor must see them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# RFC 4271, 4456, 4360, 8092, 4760 path attribute type codes (protocol constants)
ORIGIN = 1
NEXT_HOP = 3
MED = 4
LOCAL_PREF = 5
ATOMIC_AGGREGATE = 6
AGGREGATOR = 7
COMMUNITY = 8
ORIGINATOR_ID = 9
CLUSTER_LIST = 10
MP_REACH = 14
EXT_COMMUNITIES = 16
AS4_AGGREGATOR = 18
LARGE_COMMUNITY = 32

ORIGIN_NAMES = {0: "IGP", 1: "EGP", 2: "INCOMPLETE"}

# IANA well-known communities (protocol constants, not audit data)
WELL_KNOWN = {
    "65535:0": "GRACEFUL_SHUTDOWN",  # RFC 8326
    "65535:1": "ACCEPT_OWN",  # RFC 7611
    "65535:2": "ROUTE_FILTER_TRANSLATED_v4",
    "65535:3": "ROUTE_FILTER_v4",
    "65535:4": "ROUTE_FILTER_TRANSLATED_v6",
    "65535:5": "ROUTE_FILTER_v6",
    "65535:6": "LLGR_STALE",
    "65535:7": "NO_LLGR",
    "65535:8": "accept-own-nexthop",
    "65535:666": "BLACKHOLE",  # RFC 7999
    "65535:65281": "NO_EXPORT",  # RFC 1997
    "65535:65282": "NO_ADVERTISE",
    "65535:65283": "NO_EXPORT_SUBCONFED",
    "65535:65284": "NOPEER",  # RFC 3765
}

# RFC 4360 / RFC 5668 / RFC 7153 extended community types and subtypes worth a name
_EXT_FORMS = {0x00: "as2", 0x40: "as2", 0x01: "ipv4", 0x41: "ipv4", 0x02: "as4", 0x42: "as4"}
_EXT_SUBTYPES = {0x02: "rt", 0x03: "soo"}


@dataclass(frozen=True, slots=True)
class RouteAttributes:
    """What a route carries besides its AS path; None / () when the update had no such attribute."""

    origin: str | None = None
    next_hops: tuple[str, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    aggregator: str | None = None  # "AS<n> <router id>"
    communities: tuple[str, ...] = ()
    extended_communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()

    @property
    def well_known(self) -> tuple[str, ...]:
        """The names of the well-known communities among ``communities``."""
        return tuple(WELL_KNOWN[c] for c in self.communities if c in WELL_KNOWN)

    def as_fields(self) -> dict[str, Any]:
        """The record fields (``attr_*`` avoids clashing with the audit's own field names)."""
        return {
            "next_hops": list(self.next_hops),
            "origin_attr": self.origin,
            "med": self.med,
            "local_pref": self.local_pref,
            "atomic_aggregate": self.atomic_aggregate,
            "aggregator": self.aggregator,
            "communities": list(self.communities),
            "well_known_communities": list(self.well_known),
            "extended_communities": list(self.extended_communities),
            "large_communities": list(self.large_communities),
            "originator_id": self.originator_id,
            "cluster_list": list(self.cluster_list),
        }


NO_ATTRIBUTES = RouteAttributes()
FIELDS = tuple(NO_ATTRIBUTES.as_fields())


def from_mrtparse(attrs: Iterable[Mapping[str, Any]] | None) -> RouteAttributes:
    """The attributes of mrtparse ``path_attributes`` (of an UPDATE or a RIB entry)."""
    if not attrs:
        return NO_ATTRIBUTES
    found: dict[str, Any] = {}
    next_hops: list[str] = []
    aggregator = as4_aggregator = None
    for a in attrs:
        kind = next(iter(a["type"]))
        value: Any = a.get("value")
        if kind == ORIGIN and isinstance(value, dict):
            found["origin"] = ORIGIN_NAMES.get(next(iter(value)), str(next(iter(value))))
        elif kind == NEXT_HOP and isinstance(value, str):
            next_hops.append(value)
        elif kind == MP_REACH and isinstance(value, dict):
            hops = value.get("next_hop")
            next_hops.extend([hops] if isinstance(hops, str) else hops or ())
        elif kind == MED:
            found["med"] = int(value)
        elif kind == LOCAL_PREF:
            found["local_pref"] = int(value)
        elif kind == ATOMIC_AGGREGATE:
            found["atomic_aggregate"] = True
        elif kind == AGGREGATOR and isinstance(value, dict):
            aggregator = f"AS{value['as']} {value['id']}"
        elif kind == AS4_AGGREGATOR and isinstance(value, dict):
            as4_aggregator = f"AS{value['as']} {value['id']}"
        elif kind == COMMUNITY:
            found["communities"] = tuple(value)
        elif kind == EXT_COMMUNITIES:
            found["extended_communities"] = tuple(extended_community(int(v)) for v in value)
        elif kind == LARGE_COMMUNITY:
            found["large_communities"] = tuple(value)
        elif kind == ORIGINATOR_ID:
            found["originator_id"] = value
        elif kind == CLUSTER_LIST:
            found["cluster_list"] = tuple(value)
    if aggregator is not None and aggregator.startswith("AS23456 ") and as4_aggregator is not None:
        aggregator = as4_aggregator  # RFC 6793 4.2.3: AS_TRANS completed by AS4_AGGREGATOR
    if aggregator is not None:
        found["aggregator"] = aggregator
    # link-local IPv6 next hops are a second copy of the global one: keep both, in wire order
    return RouteAttributes(next_hops=tuple(dict.fromkeys(next_hops)), **found)


def extended_community(value: int) -> str:
    """An 8-byte extended community as routers write it: ``rt 64500:100``, ``soo 192.0.2.1:7``,
    otherwise ``0xTTSS:<6 bytes hex>``."""
    kind, subtype = value >> 56, (value >> 48) & 0xFF
    form = _EXT_FORMS.get(kind)
    name = _EXT_SUBTYPES.get(subtype)
    if form is not None and name is not None:
        if form == "as2":
            return f"{name} {(value >> 32) & 0xFFFF}:{value & 0xFFFFFFFF}"
        if form == "as4":
            return f"{name} {(value >> 16) & 0xFFFFFFFF}:{value & 0xFFFF}"
        ip = (value >> 16) & 0xFFFFFFFF
        return f"{name} {ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}:{value & 0xFFFF}"
    return f"0x{kind:02x}{subtype:02x}:{value & 0xFFFFFFFFFFFF:012x}"
