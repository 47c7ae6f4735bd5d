"""Decode a captured frame to the flow-relevant fields, from raw bytes.

One function, no objects: this runs for every packet, so it slices and indexes the frame directly
instead of building dpkt objects (a dpkt Ethernet/IP/TCP parse costs several times the whole
budget of a packet here). The result is a plain tuple (``Decoded``); anything that is not TCP or UDP
over IP returns ``None`` and ``skip_reason`` says why, off the fast path.

Supported link types (``linktypes.SUPPORTED``): Ethernet (802.1Q, 802.1ad/QinQ, MPLS, PPPoE
session), Linux cooked SLL and SLL2, raw IPv4/IPv6 (101, 228, 229 and the DLT_RAW aliases 12 and
14), BSD null (0) and loop (108), PPP (9, 204 with direction, 50 in HDLC framing or Cisco HDLC,
104), IEEE 802.11 data frames with LLC/SNAP (105, and 127 behind radiotap) and Linux NFLOG (239).
IPv4 options are skipped by IHL; IPv6 extension headers are walked. For IPv4/IPv6 fragments the
first fragment's transport header is used and later fragments are reported with ports of -1 and a
fragment key the flow table can use to count them to their flow. Every fragment of a datagram that
may be a tunnel's (IP protocol 4, 41, 47; UDP to a tunnel port) is reported like a later fragment:
the tunnel is opened once the pipeline has the whole datagram (``tunnel_datagram``).

Tunnels (``tunnels``: GRE, ERSPAN, PPTP, VXLAN, Geneve, GTP-U, Teredo, IP-in-IP, 6in4, 4in6) are looked
through, up to ``tunnels.MAX_DEPTH`` deep: the result is the innermost TCP/UDP packet, with the
layers it came through in ``tunnel`` (outermost first; None when there were none).
"""

from __future__ import annotations

from struct import Struct
from typing import Final

from . import linktypes
from .errors import MalformedError
from .linklayer import ETH_IPV4, ETH_IPV6, ieee80211_header, locate_ip
from .linktypes import (
    LINKTYPE_C_HDLC,
    LINKTYPE_ETHERNET,
    LINKTYPE_IEEE802_11,
    LINKTYPE_IEEE802_11_RADIOTAP,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NFLOG,
    LINKTYPE_NULL,
    LINKTYPE_PPP,
    LINKTYPE_PPP_HDLC,
    LINKTYPE_PPP_WITH_DIR,
    LINKTYPE_RAW,
    LINKTYPE_RAW_BSD12,
    LINKTYPE_RAW_BSD14,
)
from .tunnels import IP_PROTOS, MAX_DEPTH, UDP_PORTS, UDP_TEREDO, Inner, Tunnel, open_ip, open_udp

__all__ = [
    "ETH_IP4_TCP",
    "ETH_IP4_UDP",
    "LINKTYPE_C_HDLC",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IEEE802_11",
    "LINKTYPE_IEEE802_11_RADIOTAP",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NFLOG",
    "LINKTYPE_NULL",
    "LINKTYPE_PPP",
    "LINKTYPE_PPP_HDLC",
    "LINKTYPE_PPP_WITH_DIR",
    "LINKTYPE_RAW",
    "LINKTYPE_RAW_BSD12",
    "LINKTYPE_RAW_BSD14",
    "Decoded",
    "Tunnel",
    "decode",
    "fragment",
    "locate_ip",
    "rebuilt_ip",
    "skip_reason",
    "transport",
    "tunnel_datagram",
]

PROTO_TCP = 6
PROTO_UDP = 17

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

# IPv6 extension headers that may precede the transport header (walked by their length field).
_IPV6_EXT = frozenset((0, 43, 60, 135, 139, 140))
_IPV6_FRAGMENT = 44
_IPV6_AH = 51

# UDP destination ports that may carry a tunnel (Teredo's also as a source port: relays send from it)
_TUNNEL_DPORTS = UDP_PORTS | {UDP_TEREDO}
assert UDP_TEREDO == 3544, "decode's fast path compares the source port with the literal"

_U32 = Struct("!I")
_PORTS = Struct("!HH")
_TCP = Struct("!HHIIBB")  # sport, dport, seq, ack, data offset byte, flags
_UDP = Struct("!HHH")  # sport, dport, length
# IPv4 header: version/IHL, (tos), total length, (id), flags/fragment offset, (ttl), protocol,
# (checksum), source, destination
_IP4_FAST = Struct("!BxHxxHxBxx4s4s")
# The same common case read in place from a frame's first byte, for the packets of flows no longer
# inspected (``Scanner.feed_batches``): Ethernet type, the IPv4 fields of _IP4_FAST, then TCP as
# _TCP (needs 48 bytes) or UDP as _UDP (42 bytes).
ETH_IP4_TCP: Final = Struct("!12xHBxHxxHxBxx4s4sHHIxxxxBB")
ETH_IP4_UDP: Final = Struct("!12xHBxHxxHxBxx4s4sHHH")
# A rebuilt (reassembled) IPv4 header: version/IHL, total length, TTL, protocol, source, destination
_IP4_REBUILT = Struct("!BxHxxxxBBxx4s4s")
_IP6_REBUILT = Struct("!IHBB16s16s")  # version/class/label, payload length, next header, hops, addresses


# A decoded packet: a plain tuple, read by unpacking into named variables (or by the positions
# below). Not a NamedTuple: building one and unpacking it cost about 120 ns more per packet, 2-5% of
# a scan's CPU time (benchmarks/scan_throughput.py), since only exact tuples get the fast paths.
#   (proto, src, sport, dst, dport, flags, seq, payload, ip_len, frag_key, tunnel)
# proto 6 or 17 (or 4, 41, 47 for a fragment of a tunnel packet, which has sport == dport == -1);
# flags and seq are TCP's (0 for UDP); ip_len is the bytes of the (innermost) IP
# packet as its header says. frag_key is None for unfragmented packets; for a first fragment and
# for later fragments it is (src, dst, proto, ident[, tunnel]); later fragments have
# sport == dport == -1 and an empty payload. tunnel is None, or the encapsulation layers the packet
# came through, outermost first.
Decoded = tuple[
    int, bytes, int, bytes, int, int, int, bytes, int, "tuple | None", "tuple[Tunnel, ...] | None"
]
# Final literals, so the type checker knows which field an index reads.
PROTO: Final = 0
SRC: Final = 1
SPORT: Final = 2
DST: Final = 3
DPORT: Final = 4
FLAGS: Final = 5
SEQ: Final = 6
PAYLOAD: Final = 7
IP_LEN: Final = 8
FRAG_KEY: Final = 9
TUNNEL: Final = 10


def decode(linktype: int, frame: bytes) -> Decoded | None:
    """Decode ``frame`` captured on ``linktype``; None if it is not TCP/UDP over IP.

    Raises MalformedError for frames that claim a protocol and break it.
    """
    # The common case first, in one piece: untagged Ethernet, IPv4 without options or
    # fragmentation, TCP or UDP not to a tunnel port. Anything else (and anything broken) takes
    # the general path, which also produces the errors.
    if linktype == 1 and frame[12:14] == b"\x08\x00" and len(frame) >= 42:
        vihl, total, frag, proto, src, dst = _IP4_FAST.unpack_from(frame, 14)
        if vihl == 0x45 and not frag & 0x3FFF and total >= 28:
            end = 14 + total
            if end > len(frame):
                end = len(frame)
            if proto == 6 and end >= 54:
                sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(frame, 34)
                start = 34 + (doff >> 4) * 4
                if start >= 54 and start <= end:
                    return (6, src, sport, dst, dport, flags, seq, frame[start:end], total, None, None)
            elif proto == 17:
                sport, dport, ulen = _UDP.unpack_from(frame, 34)
                if dport not in _TUNNEL_DPORTS and sport != 3544:  # 3544: UDP_TEREDO, as a constant
                    if ulen >= 8 and 34 + ulen < end:
                        end = 34 + ulen
                    return (17, src, sport, dst, dport, 0, 0, frame[42:end], total, None, None)
    etype, off = locate_ip(linktype, frame)
    if etype == 0x0800:
        found = _ipv4(frame, off)
    elif etype == 0x86DD:
        found = _ipv6(frame, off)
    else:
        return None
    if found.__class__ is tuple:
        return found
    if found.__class__ is Inner:
        inside = _inside(found)
        return inside if inside.__class__ is tuple else None
    return None  # a skip reason


def _walk(linktype: int, frame: bytes) -> Decoded | str:
    """What decode() does, with the reason when the frame holds no TCP/UDP (the slow path)."""
    if linktype not in linktypes.SUPPORTED:
        return f"unsupported-linktype:{linktype}:{linktypes.name(linktype)}"
    etype, off = locate_ip(linktype, frame)
    if etype == ETH_IPV4:
        found = _ipv4(frame, off)
    elif etype == ETH_IPV6:
        found = _ipv6(frame, off)
    else:
        return _link_reason(linktype, frame, etype)
    return _inside(found) if isinstance(found, Inner) else found


def _inside(first: Inner) -> Decoded | str:
    """Follow tunnels from the first one to the TCP/UDP packet inside (or a skip reason)."""
    layers: tuple[Tunnel, ...] = ()
    inner = first
    while True:
        layers += (inner.tunnel,)
        if len(layers) > MAX_DEPTH:
            raise MalformedError(inner.tunnel.kind, "depth", f"over {MAX_DEPTH} nested tunnels")
        frame, etype, off = inner.frame, inner.etype, inner.off
        found: Decoded | Inner | str
        if etype == ETH_IPV4:
            found = _ipv4(frame, off)
        elif etype == ETH_IPV6:
            found = _ipv6(frame, off)
        else:
            return f"{layers[-1].kind}:{_non_ip(etype)}"
        if found.__class__ is tuple:
            frag_key = found[FRAG_KEY]
            if frag_key is not None:  # inner fragments of different tunnels are different datagrams
                frag_key = (*frag_key, layers)
            return (*found[:FRAG_KEY], frag_key, layers)
        if found.__class__ is str:
            return f"{layers[-1].kind}:{found}"
        assert found.__class__ is Inner  # _ipv4/_ipv6 return a packet, a reason or a tunnel
        inner = found


def _non_ip(etype: int) -> str:
    if etype == -1:
        return "non-ip"
    return "non-ip:802.3" if ~etype <= 1500 else f"non-ip:0x{~etype:04x}"


def _link_reason(linktype: int, frame: bytes, etype: int) -> str:
    if linktype in (0, 108):
        return "non-ip:address-family"
    if linktype == 105 or linktype == 127:
        why, _ = ieee80211_header(frame, 0 if linktype == 105 else frame[2] | (frame[3] << 8))
        return f"non-ip:{why or '802.11-not-snap'}" if etype == -1 else _non_ip(etype)
    if linktype == 239 and etype == -1:
        return "non-ip:nflog-without-payload"
    return _non_ip(etype)


def _ipv4(frame: bytes, off: int) -> Decoded | Inner | str:
    n = len(frame)
    if off + 20 > n:
        raise MalformedError("ipv4", "header", f"{n - off} bytes left, an IPv4 header needs 20")
    vihl = frame[off]
    if vihl >> 4 != 4:
        raise MalformedError("ipv4", "version", f"version {vihl >> 4} in an IPv4 frame")
    ihl = (vihl & 15) * 4
    if ihl < 20:
        raise MalformedError("ipv4", "ihl", f"header length {ihl} is below 20")
    total = (frame[off + 2] << 8) | frame[off + 3]
    if total < ihl:
        raise MalformedError("ipv4", "total_length", f"total length {total} is below header length {ihl}")
    end = off + total
    if end > n:
        end = n  # cut by the snap length: use what was captured
    l4 = off + ihl
    if l4 > end:
        raise MalformedError("ipv4", "options", "header length runs past the captured packet")
    proto = frame[off + 9]
    src = frame[off + 12 : off + 16]
    dst = frame[off + 16 : off + 20]
    frag = (frame[off + 6] << 8) | frame[off + 7]
    frag_key = None
    if frag & 0x3FFF:  # MF set or offset != 0
        frag_key = (src, dst, proto, (frame[off + 4] << 8) | frame[off + 5])
        if frag & 0x1FFF:
            if proto != 6 and proto != 17 and proto not in IP_PROTOS:
                return f"ip-proto:{proto}"
            return (proto, src, -1, dst, -1, 0, 0, b"", total, frag_key, None)
    return _transport(frame, l4, end, proto, src, dst, total, frag_key)


def _ipv6(frame: bytes, off: int) -> Decoded | Inner | str:
    n = len(frame)
    if off + 40 > n:
        raise MalformedError("ipv6", "header", f"{n - off} bytes left, an IPv6 header needs 40")
    if frame[off] >> 4 != 6:
        raise MalformedError("ipv6", "version", f"version {frame[off] >> 4} in an IPv6 frame")
    plen = (frame[off + 4] << 8) | frame[off + 5]
    nxt = frame[off + 6]
    src = frame[off + 8 : off + 24]
    dst = frame[off + 24 : off + 40]
    end = off + 40 + plen if plen else n  # payload length 0: jumbogram, runs to the end
    if end > n:
        end = n
    l4 = off + 40
    frag_key = None
    for _ in range(16):
        if nxt == 6 or nxt == 17:
            break
        if nxt in _IPV6_EXT or nxt == _IPV6_AH:
            if l4 + 8 > end:
                raise MalformedError("ipv6", "extension", f"extension header {nxt} runs past the packet")
            hlen = (frame[l4 + 1] + 2) * 4 if nxt == _IPV6_AH else (frame[l4 + 1] + 1) * 8
            nxt = frame[l4]
            l4 += hlen
        elif nxt == _IPV6_FRAGMENT:
            if l4 + 8 > end:
                raise MalformedError("ipv6", "fragment", "fragment header runs past the packet")
            offset_flags = (frame[l4 + 2] << 8) | frame[l4 + 3]
            ident = _U32.unpack_from(frame, l4 + 4)[0]
            nxt = frame[l4]
            l4 += 8
            frag_key = (src, dst, nxt, ident)
            if offset_flags & 0xFFF8:
                if nxt != 6 and nxt != 17 and nxt not in IP_PROTOS:
                    return f"ip-proto:{nxt}"
                return (nxt, src, -1, dst, -1, 0, 0, b"", plen + 40, frag_key, None)
        elif nxt in IP_PROTOS:
            break
        else:
            return f"ip-proto:{nxt}"
    else:
        raise MalformedError("ipv6", "extension", "more than 16 extension headers")
    if l4 > end:
        raise MalformedError("ipv6", "extension", "extension headers run past the packet")
    return _transport(frame, l4, end, nxt, src, dst, plen + 40, frag_key)


def _transport(
    frame: bytes,
    l4: int,
    end: int,
    proto: int,
    src: bytes,
    dst: bytes,
    ip_len: int,
    frag_key: tuple | None,
    tunnels: bool = True,
) -> Decoded | Inner | str:
    if proto == 6:
        if l4 + 20 > end:
            raise MalformedError("tcp", "header", f"{end - l4} bytes left, a TCP header needs 20")
        sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(frame, l4)
        hlen = (doff >> 4) * 4
        if hlen < 20:
            raise MalformedError("tcp", "data_offset", f"header length {hlen} is below 20")
        if l4 + hlen > end:
            raise MalformedError("tcp", "data_offset", f"header length {hlen} runs past the packet")
        return (6, src, sport, dst, dport, flags, seq, frame[l4 + hlen : end], ip_len, frag_key, None)
    if proto == 17:
        if l4 + 8 > end:
            raise MalformedError("udp", "header", f"{end - l4} bytes left, a UDP header needs 8")
        sport, dport = _PORTS.unpack_from(frame, l4)
        ulen = (frame[l4 + 4] << 8) | frame[l4 + 5]
        if ulen >= 8 and l4 + ulen < end and frag_key is None:
            end = l4 + ulen
        if (dport in _TUNNEL_DPORTS or sport == UDP_TEREDO) and tunnels:
            if frag_key is not None:  # the first fragment of a tunnel packet: wait for the whole
                return (17, src, -1, dst, -1, 0, 0, b"", ip_len, frag_key, None)
            inner = open_udp(frame, l4 + 8, end, dport, src, dst)
            if inner is not None:
                return inner
        return (17, src, sport, dst, dport, 0, 0, frame[l4 + 8 : end], ip_len, frag_key, None)
    if proto in IP_PROTOS and tunnels:
        if frag_key is not None:  # the first fragment of a tunnel packet: wait for the whole
            return (proto, src, -1, dst, -1, 0, 0, b"", ip_len, frag_key, None)
        return open_ip(frame, l4, end, proto, src, dst)
    return f"ip-proto:{proto}"


def skip_reason(linktype: int, frame: bytes) -> str:
    """Why ``decode`` returned None for this frame: a stable counter key (slow path)."""
    found = _walk(linktype, frame)
    return found if found.__class__ is str else "decoded"


def _innermost_ip(linktype: int, frame: bytes) -> tuple[bytes, int, int]:
    """(frame holding it, ethertype, offset) of the innermost IP header, through tunnels."""
    etype, off = locate_ip(linktype, frame)
    for _ in range(MAX_DEPTH + 1):
        if etype == ETH_IPV4:
            found = _ipv4(frame, off)
        elif etype == ETH_IPV6:
            found = _ipv6(frame, off)
        else:
            break
        if found.__class__ is not Inner:
            break
        frame, etype, off = found.frame, found.etype, found.off
    return frame, etype, off


def fragment(linktype: int, frame: bytes) -> tuple[int, bool, bytes] | None:
    """(offset in bytes, more-fragments flag, IP payload bytes) of a fragment; slow path.

    Only called for frames ``decode`` reported with a fragment key, so the headers are known good.
    """
    frame, etype, off = _innermost_ip(linktype, frame)
    if etype == ETH_IPV4:
        ihl = (frame[off] & 15) * 4
        total = (frame[off + 2] << 8) | frame[off + 3]
        flags = (frame[off + 6] << 8) | frame[off + 7]
        return (flags & 0x1FFF) * 8, bool(flags & 0x2000), frame[off + ihl : off + total]
    if etype != ETH_IPV6:
        return None
    plen = (frame[off + 4] << 8) | frame[off + 5]
    end = off + 40 + plen
    nxt = frame[off + 6]
    l4 = off + 40
    for _ in range(16):
        if nxt == _IPV6_FRAGMENT:
            offset_flags = (frame[l4 + 2] << 8) | frame[l4 + 3]
            return offset_flags & 0xFFF8, bool(offset_flags & 1), frame[l4 + 8 : end]
        if nxt in _IPV6_EXT or nxt == _IPV6_AH:
            hlen = (frame[l4 + 1] + 2) * 4 if nxt == _IPV6_AH else (frame[l4 + 1] + 1) * 8
            nxt = frame[l4]
            l4 += hlen
        else:
            return None
    return None


def tunnel_datagram(proto: int, segment: bytes) -> bool:
    """Is this reassembled transport segment a tunnel packet (to be opened, not a flow of its own)?
    The same test decode() applies to a first fragment."""
    if proto in IP_PROTOS:
        return True
    if proto != 17 or len(segment) < 8:
        return False
    sport, dport = _PORTS.unpack_from(segment, 0)
    return dport in _TUNNEL_DPORTS or sport == UDP_TEREDO


def rebuilt_ip(src: bytes, dst: bytes, proto: int, segment: bytes) -> bytes:
    """An unfragmented IP packet (raw, link type 101) carrying a reassembled segment: what a tunnel
    endpoint hands its decapsulation once it has all the fragments."""
    if len(src) == 4:
        return _IP4_REBUILT.pack(0x45, 20 + len(segment), 64, proto, src, dst) + segment
    return _IP6_REBUILT.pack(0x60000000, len(segment), proto, 64, src, dst) + segment


def transport(proto: int, src: bytes, dst: bytes, segment: bytes, ip_len: int) -> Decoded | None:
    """Decode a reassembled transport segment (header included) as ``decode`` would decode the
    datagram's first fragment: its own ports, even when they are a tunnel's (not opened)."""
    found = _transport(segment, 0, len(segment), proto, src, dst, ip_len, None, False)
    return found if found.__class__ is tuple else None
