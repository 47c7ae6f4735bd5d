"""A packet's flow key from fixed offsets, for the packets ``decode`` takes whole on its fast path.

A ``scan --workers`` partition reads every packet, but most belong to flows another partition
reports; for those it only needs the flow key, the TCP flags and the direction, to keep the flow
table's timing, closing and numbering the same as one process (classifier/partition.py). ``peek``
gives exactly that for untagged Ethernet, IPv4 without options or fragmentation, TCP or UDP not
to a tunnel port, and answers only where ``decode`` would return the same packet without an error:
anything else (other link types, VLAN tags, IPv6, fragments, tunnels, short or broken headers) is
None, for the full decode. ``tests/test_peek.py`` holds the two to agreement on every capture and on
mutated frames.
"""

from __future__ import annotations

from struct import Struct

from .tunnels import UDP_PORTS

__all__ = ["Peeked", "peek"]

# IPv4 header: version/IHL, (tos), total length, (id), flags/fragment offset, (ttl), protocol,
# (checksum), source, destination; then the ports, and TCP's data offset byte and flags.
_IP4 = Struct("!BxHxxHxBxx4s4s")
_PORTS = Struct("!HH")
_TCP_TAIL = Struct("!BB")  # data offset byte, flags (at offset 12 of the TCP header)

# (proto, src, sport, dst, dport, tcp flags): the fields the flow table keys, orients and closes on.
Peeked = tuple[int, bytes, int, bytes, int, int]


def peek(linktype: int, frame: bytes) -> Peeked | None:
    """The flow fields of ``frame`` if ``decode`` would return it without tunnel or fragment and
    without an error (it then returns these same fields); None means: decode it in full."""
    if linktype != 1 or frame[12:14] != b"\x08\x00" or len(frame) < 42:
        return None
    vihl, total, frag, proto, src, dst = _IP4.unpack_from(frame, 14)
    if vihl != 0x45 or frag & 0x3FFF or total < 28:
        return None
    sport, dport = _PORTS.unpack_from(frame, 34)
    if proto == 6:
        end = 14 + total
        if end > len(frame):
            end = len(frame)
        if end < 54:
            return None
        doff, flags = _TCP_TAIL.unpack_from(frame, 46)
        start = 34 + (doff >> 4) * 4
        if start < 54 or start > end:
            return None
        return (6, src, sport, dst, dport, flags)
    if proto == 17 and dport not in UDP_PORTS:
        return (17, src, sport, dst, dport, 0)
    return None
