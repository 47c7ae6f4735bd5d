"""Community ID flow hash, version 1: the flow identifier Zeek, Suricata, Arkime and Elastic share.

A record carries it so an analyst can find the same connection in those tools' logs. The
specification (corelight/community-id-spec) hashes, with SHA-1, a 2-byte seed, both addresses,
the IP protocol, a zero pad byte and (for TCP, UDP, SCTP, ICMP and ICMPv6) both ports, ordered so
that both directions of a flow give the same value; the result is ``1:`` and the base64 digest.
ICMP and ICMPv6 use the message type as the source "port" and, for a request/response type, the
counterpart type as the destination "port" (Zeek's mapping), else the code: such one-way messages
are hashed in the direction they were sent. Computed once per flow, at record time.
"""

from __future__ import annotations

from binascii import b2a_base64
from collections.abc import Callable
from hashlib import sha1
from struct import Struct
from typing import Any

PROTO_ICMP = 1
PROTO_ICMP6 = 58
# Protocols hashed with their ports (or ICMP's type/code in their place).
PORT_PROTOS = frozenset((1, 6, 17, 58, 132))

# Request/response message types and their counterparts, as Zeek pairs them.
_ICMP_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {
    128: 129,
    129: 128,
    130: 131,
    131: 130,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}

_SEED = Struct("!H")
_TAIL = Struct("!BxHH")  # proto, pad, sport, dport
_TAIL_NO_PORTS = Struct("!Bx")


def check_seed(seed: int) -> int:
    """The seed, if it fits the specification's 16 bits; ValueError otherwise."""
    if not 0 <= seed <= 0xFFFF:
        raise ValueError(f"Community ID seed {seed} is outside 0..65535")
    return seed


def community_id(
    proto: int, src: bytes, dst: bytes, sport: int | None = None, dport: int | None = None, seed: int = 0
) -> str:
    """The Community ID v1 of a flow, given as it was first seen (``src`` sent the first packet).

    ``src``/``dst`` are packed addresses (4 or 16 bytes); for ICMP/ICMPv6 ``sport`` is the type and
    ``dport`` the code. Ports are ignored for protocols that have none in the specification.
    """
    if (proto == 6 or proto == 17) and sport is not None and dport is not None:  # a record's own
        if src > dst or (src == dst and sport > dport):
            src, dst, sport, dport = dst, src, dport, sport
        return _render(seed, src + dst + _TAIL.pack(proto, sport, dport))
    one_way = False
    if proto in PORT_PROTOS:
        if sport is None or dport is None:
            raise ValueError(f"Community ID of IP protocol {proto} needs both ports")
        if proto == PROTO_ICMP or proto == PROTO_ICMP6:
            pairs = _ICMP_PAIRS if proto == PROTO_ICMP else _ICMP6_PAIRS
            counterpart = pairs.get(sport)
            if counterpart is None:
                one_way = True  # not a request or response: hashed as sent
            else:
                dport = counterpart
        if not one_way and (src > dst or (src == dst and sport > dport)):
            src, dst, sport, dport = dst, src, dport, sport
        return _render(seed, src + dst + _TAIL.pack(proto, sport, dport))
    if src > dst:
        src, dst = dst, src
    return _render(seed, src + dst + _TAIL_NO_PORTS.pack(proto))


def port_flow_id(seed: int = 0) -> Callable[[int, bytes, bytes, int, int], str]:
    """``community_id`` of a TCP or UDP flow (proto, src, dst, sport, dport) with one seed, as one
    call: records compute it once per flow, so the generic path's tests and calls are worth
    skipping. Not for ICMP (its types pair up) nor for protocols without ports."""
    seeded = sha1(_SEED.pack(check_seed(seed)), usedforsecurity=False)
    pack = _TAIL.pack

    def flow_id(proto: int, src: bytes, dst: bytes, sport: int, dport: int) -> str:
        if src > dst or (src == dst and sport > dport):
            src, dst, sport, dport = dst, src, dport, sport
        h = seeded.copy()
        h.update(src + dst + pack(proto, sport, dport))
        return "1:" + b2a_base64(h.digest(), newline=False).decode("ascii")

    return flow_id


def _render(seed: int, tuple_bytes: bytes) -> str:
    """``1:`` and the base64 SHA-1 of the seed and the ordered tuple."""
    seeded = _SEEDED.get(seed)
    if seeded is None:
        seeded = _SEEDED[seed] = sha1(_SEED.pack(seed), usedforsecurity=False)
    h = seeded.copy()  # a third cheaper than a new SHA-1 object (OpenSSL's set-up per hash)
    h.update(tuple_bytes)
    return "1:" + b2a_base64(h.digest(), newline=False).decode("ascii")


# seed -> SHA-1 state after hashing it (a run uses one seed; at most 65,536 in all)
_SEEDED: dict[int, Any] = {}
