"""The BGP4MP walker: what update messages and session changes do to routes, as typed route events.

An UPDATE withdraws and announces prefixes for one peer at one instant (IPv4 in its own fields,
IPv6 in MP_REACH_NLRI / MP_UNREACH_NLRI, each with an ADD-PATH id on the ADD-PATH subtypes); a
BGP4MP state change out of Established ends every route of that peer. The walker turns a record
decoded by mrtparse into :class:`Announcement`, :class:`Withdrawal` and :class:`SessionDown`
events, in the order the message gives them; the MRT reader hands them to its sink. RIB entries
become announcements too (``source="rib"``), so whatever an announcement comes to carry (its
communities, next hop) is read in one place for both.

Decoding costs far more than framing, so the reader first looks at the raw bytes: :func:`peek_bgp4mp`
finds the peer and the BGP message, :func:`touched_prefixes` lists every prefix an UPDATE touches
by walking its NLRI fields, and :func:`prefix_key` is the form both use to compare prefixes.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import aspath

_U16 = struct.Struct(">H")

# RFC 6396 4.4 and RFC 8050 BGP4MP subtypes, RFC 4271 / 4760 constants (protocol, not audit data)
STATE_CHANGE = {0: 2, 5: 4}  # subtype -> AS number size
MESSAGE = {1: 2, 4: 4, 6: 2, 7: 4, 8: 2, 9: 4, 10: 2, 11: 4}  # subtype -> AS number size
ADDPATH_MESSAGES = {8, 9, 10, 11}
BGP_UPDATE = 2
ESTABLISHED = 6
AFI_IPV4 = 1
AFI_IPV6 = 2
SAFI_UNICAST = 1
ATTR_MP_REACH = 14
ATTR_MP_UNREACH = 15
_BGP_TYPE_AT = 18  # marker (16 bytes) and length (2) come before the message type

Peer = tuple[int | None, str]  # (peer ASN, peer address)


@dataclass(frozen=True, slots=True)
class Announcement:
    """A peer announces a path for a prefix: in an UPDATE, or as an entry of a RIB dump."""

    source: str  # "update" or "rib"
    when: float  # when the path was announced (a RIB entry's originated time)
    peer: Peer
    prefix: str
    path_id: int | None  # ADD-PATH identifier
    path: aspath.Path
    seen: float  # when the input showed it (the dump time of a RIB entry)
    # mrtparse's path attributes, read (attributes.from_mrtparse) only if the route concerns an operator
    attributes: Any = field(default=None, compare=False)
    local_asn: int | None = field(default=None, compare=False)  # the recording router's (BGP4MP)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A peer withdraws its path (or the ADD-PATH ``path_id`` one) for a prefix."""

    when: float
    peer: Peer
    prefix: str
    path_id: int | None


@dataclass(frozen=True, slots=True)
class SessionDown:
    """A peer's session left Established: every route it announced is gone."""

    when: float
    peer: Peer
    state: str  # the state it went to, as mrtparse names it


@dataclass(frozen=True, slots=True)
class SessionState:
    """A BGP4MP state change of a peer's session (every one: the session view lists them)."""

    when: float
    peer: Peer
    local_asn: int | None
    old: str  # FSM state names as mrtparse gives them ("Established", "Idle", ...)
    new: str


RouteEvent = Announcement | Withdrawal | SessionDown | SessionState


def update_events(when: float, subtype: int, d: dict[str, Any]) -> Iterator[Announcement | Withdrawal]:
    """The withdrawals, then the announcements, of a decoded BGP4MP message (nothing unless it
    is an UPDATE); only unicast IPv4 and IPv6 count."""
    msg = d["bgp_message"]
    if next(iter(msg["type"])) != BGP_UPDATE:
        return
    peer = (int(d["peer_as"]), d["peer_ip"])
    local = int(d["local_as"]) if d.get("local_as") is not None else None
    for w in msg.get("withdrawn_routes", ()):
        yield Withdrawal(when, peer, f"{w['prefix']}/{w['length']}", w.get("path_id"))
    attrs = msg.get("path_attributes", ())
    announced = list(msg.get("nlri", ()))
    for a in attrs:
        kind = next(iter(a["type"]))
        value = a.get("value")
        if kind == ATTR_MP_UNREACH and is_unicast(value):
            for w in value.get("withdrawn_routes", ()):
                yield Withdrawal(when, peer, f"{w['prefix']}/{w['length']}", w.get("path_id"))
        elif kind == ATTR_MP_REACH and is_unicast(value):
            announced.extend(value.get("nlri", ()))
    if not announced:
        return
    path = aspath.from_attributes(attrs, two_byte=MESSAGE[subtype] == 2)
    for n in announced:
        yield Announcement(
            "update", when, peer, f"{n['prefix']}/{n['length']}", n.get("path_id"), path, when, attrs, local
        )


def session_change(when: float, d: dict[str, Any]) -> SessionDown | None:
    """A decoded BGP4MP state change: a :class:`SessionDown` if it leaves Established."""
    old = next(iter(d["old_state"]))
    new = next(iter(d["new_state"]))
    if old == ESTABLISHED and new != ESTABLISHED:
        return SessionDown(when, (int(d["peer_as"]), d["peer_ip"]), next(iter(d["new_state"].values())))
    return None


def state_change(when: float, d: dict[str, Any]) -> SessionState:
    """Any decoded BGP4MP state change, for the session view."""
    local = int(d["local_as"]) if d.get("local_as") is not None else None
    return SessionState(
        when,
        (int(d["peer_as"]), d["peer_ip"]),
        local,
        next(iter(d["old_state"].values())),
        next(iter(d["new_state"].values())),
    )


def is_unicast(value: Any) -> bool:
    """Is this decoded MP_REACH / MP_UNREACH / RIB_GENERIC value for IPv4 or IPv6 unicast?"""
    if not isinstance(value, dict) or "safi" not in value:
        return False
    return next(iter(value["safi"])) == SAFI_UNICAST and next(iter(value["afi"])) in (AFI_IPV4, AFI_IPV6)


def peek_bgp4mp(record: bytes, at: int, as_size: int) -> tuple[Peer, int | None]:
    """(peer, offset of the BGP message) of the BGP4MP message starting at ``record[at]``, without
    decoding it; the offset is None if the BGP4MP header does not hold together."""
    try:
        peer_as = int.from_bytes(record[at : at + as_size], "big")
        at += 2 * as_size + 2  # peer AS, local AS, interface index
        afi = _U16.unpack_from(record, at)[0]
        at += 2
        size = 4 if afi == AFI_IPV4 else 16 if afi == AFI_IPV6 else 0
        if not size or len(record) < at + 2 * size:
            return (peer_as, ""), None
        family = socket.AF_INET if size == 4 else socket.AF_INET6
        return (peer_as, socket.inet_ntop(family, record[at : at + size])), at + 2 * size
    except (struct.error, ValueError):
        return (None, ""), None


def is_update(record: bytes, message_at: int) -> bool:
    """Is the BGP message at ``record[message_at]`` an UPDATE (not OPEN, KEEPALIVE, NOTIFICATION)?"""
    at = message_at + _BGP_TYPE_AT
    return at < len(record) and record[at] == BGP_UPDATE


def touches_any(message: bytes, addpath: bool, keys: Container[bytes]) -> bool:
    """Does the UPDATE withdraw or announce a prefix in ``keys``? True too if it does not hold
    together: then only decoding can tell."""
    touched = touched_prefixes(message, addpath)
    return touched is None or any(k in keys for k in touched)


def prefix_key(prefix: str) -> bytes:
    """A prefix as its NLRI bytes, tagged with the family: what :func:`touched_prefixes` lists."""
    addr, _, length = prefix.partition("/")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    n = int(length)
    return (
        bytes((AFI_IPV6 if family == socket.AF_INET6 else AFI_IPV4, n))
        + socket.inet_pton(family, addr)[: (n + 7) // 8]
    )


def touched_prefixes(message: bytes, addpath: bool) -> list[bytes] | None:
    """:func:`prefix_key` of every prefix a BGP UPDATE withdraws or announces (NLRI, withdrawn
    routes, MP_REACH_NLRI, MP_UNREACH_NLRI); None if the message does not hold together."""
    try:
        end = _U16.unpack_from(message, 16)[0]
        if end > len(message):
            return None
        keys: list[bytes] = []
        at = 19
        wlen = _U16.unpack_from(message, at)[0]
        at += 2
        _nlri(message, at, at + wlen, AFI_IPV4, addpath, keys)
        at += wlen
        attrs_end = at + 2 + _U16.unpack_from(message, at)[0]
        at += 2
        while at < attrs_end:
            flags, kind = message[at], message[at + 1]
            if flags & 0x10:
                alen, at = _U16.unpack_from(message, at + 2)[0], at + 4
            else:
                alen, at = message[at + 2], at + 3
            if kind in (ATTR_MP_REACH, ATTR_MP_UNREACH):
                afi = _U16.unpack_from(message, at)[0]
                if afi != AFI_IPV4 and afi != AFI_IPV6:  # no IP prefixes: none can be live
                    at += alen
                    continue
                # MP_REACH: AFI, SAFI, next hop length, next hop, reserved; MP_UNREACH: AFI, SAFI
                start = at + 4 + message[at + 3] + 1 if kind == ATTR_MP_REACH else at + 3
                _nlri(message, start, at + alen, afi, addpath, keys)
            at += alen
        _nlri(message, attrs_end, end, AFI_IPV4, addpath, keys)
        return keys
    except (struct.error, IndexError):
        return None


def _nlri(message: bytes, at: int, end: int, afi: int, addpath: bool, keys: list[bytes]) -> None:
    if end > len(message):
        raise IndexError("NLRI runs past the message")
    while at < end:
        if addpath:
            at += 4
        n = message[at]
        size = (n + 7) // 8
        if at + 1 + size > end:
            raise IndexError("a prefix runs past its field")
        keys.append(bytes((afi, n)) + message[at + 1 : at + 1 + size])
        at += 1 + size
