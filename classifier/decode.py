"""Decode a captured frame to the flow-relevant fields, from raw bytes.

One function, no objects: this runs for every packet, so it slices and indexes the frame directly
instead of building dpkt objects (a dpkt Ethernet/IP/TCP parse costs several times the whole
budget of a packet here). The result is a plain tuple; anything that is not TCP or UDP over IP
returns ``None`` and ``skip_reason`` says why, off the fast path.

Supported link types: Ethernet (802.1Q, 802.1ad/QinQ, MPLS, PPPoE session), Linux cooked SLL and
SLL2, raw IPv4/IPv6 (101, 228, 229 and the DLT_RAW aliases 12 and 14), BSD null (0) and loop (108).
IPv4 options are skipped by IHL; IPv6 extension headers are walked. For IPv4/IPv6 fragments the
first fragment's transport header is used and later fragments are reported with ports of -1 and a
fragment key the flow table can use to count them to their flow.
"""

from __future__ import annotations

from struct import Struct

from .errors import MalformedError

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_BSD12 = 12
LINKTYPE_RAW_BSD14 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

PROTO_TCP = 6
PROTO_UDP = 17

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_ETH_MPLS = frozenset((0x8847, 0x8848))
_ETH_PPPOE_SESSION = 0x8864

# BSD address-family values for IPv6 differ per OS; IPv4 is 2 everywhere.
_AF_INET = 2
_AF_INET6 = frozenset((10, 24, 28, 30))

# IPv6 extension headers that may precede the transport header (walked by their length field).
_IPV6_EXT = frozenset((0, 43, 60, 135, 139, 140))
_IPV6_FRAGMENT = 44
_IPV6_AH = 51

_U16 = Struct("!H")
_U32 = Struct("!I")
_PORTS = Struct("!HH")
_TCP = Struct("!HHIIBB")  # sport, dport, seq, ack, data offset byte, flags
_UDP = Struct("!HHH")  # sport, dport, length
# IPv4 header: version/IHL, (tos), total length, (id), flags/fragment offset, (ttl), protocol,
# (checksum), source, destination
_IP4_FAST = Struct("!BxHxxHxBxx4s4s")

# A decoded packet: (proto, src, sport, dst, dport, tcp_flags, seq, payload, ip_len, frag_key).
# ``frag_key`` is None for unfragmented packets; for a first fragment and for later fragments it
# is (src, dst, proto, ident). Later fragments have sport == dport == -1 and an empty payload.
Decoded = tuple


def decode(linktype: int, frame: bytes) -> Decoded | None:
    """Decode ``frame`` captured on ``linktype``; None if it is not TCP/UDP over IP.

    Raises MalformedError for frames that claim a protocol and break it.
    """
    # The common case first, in one piece: untagged Ethernet, IPv4 without options or
    # fragmentation, TCP or UDP. Anything else (and anything broken) takes the general path,
    # which also produces the errors.
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
                    return (6, src, sport, dst, dport, flags, seq, frame[start:end], total, None)
            elif proto == 17:
                sport, dport, ulen = _UDP.unpack_from(frame, 34)
                if ulen >= 8 and 34 + ulen < end:
                    end = 34 + ulen
                return (17, src, sport, dst, dport, 0, 0, frame[42:end], total, None)
        return _ipv4(frame, 14)
    etype, off = locate_ip(linktype, frame)
    if etype == 0x0800:
        return _ipv4(frame, off)
    if etype == 0x86DD:
        return _ipv6(frame, off)
    return None


def locate_ip(linktype: int, frame: bytes) -> tuple[int, int]:
    """(ethertype, offset) of the IP header inside a frame; ethertype < 0 if there is no IP.

    For a frame without IP the first value is negative: ``~ethertype`` of the innermost
    non-IP type where there is one (``skip_reason`` reports it), else -1.
    """
    if linktype == 1 or linktype == 113 or linktype == 276:
        hlen = 14 if linktype == 1 else 16 if linktype == 113 else 20
        if len(frame) < hlen:
            name = "ethernet" if linktype == 1 else "sll" if linktype == 113 else "sll2"
            raise MalformedError(name, "header", f"frame of {len(frame)} bytes is shorter than {hlen}")
        at = 12 if linktype == 1 else 14 if linktype == 113 else 0
        etype = (frame[at] << 8) | frame[at + 1]
        if etype == 0x0800 or etype == 0x86DD:
            return etype, hlen
        return _ethernet_inner(frame, etype, hlen)
    if linktype in (101, 228, 229, 12, 14):
        if not frame:
            raise MalformedError("raw", "header", "empty frame")
        version = frame[0] >> 4
        if version == 4:
            return 0x0800, 0
        if version == 6:
            return 0x86DD, 0
        raise MalformedError("raw", "version", f"IP version {version}")
    if linktype == 0 or linktype == 108:
        if len(frame) < 4:
            raise MalformedError("null", "header", f"frame of {len(frame)} bytes is shorter than 4")
        if linktype == 108:
            family = _U32.unpack_from(frame, 0)[0]
        else:
            family = int.from_bytes(frame[:4], "little")
            if family > 0xFFFF:
                family = int.from_bytes(frame[:4], "big")
        if family == _AF_INET:
            return 0x0800, 4
        if family in _AF_INET6:
            return 0x86DD, 4
        return -1, 4
    return -1, 0


def _ethernet_inner(frame: bytes, etype: int, off: int) -> tuple[int, int]:
    """Walk VLAN tags, MPLS labels and PPPoE to the IP header.

    Returns (ethertype, offset of the IP header); when there is no IP inside, the first value is
    ``~ethertype`` of the innermost non-IP type (negative), for ``skip_reason``.
    """
    n = len(frame)
    for _ in range(8):  # bounded: a frame cannot stack more tags than this sensibly
        if etype == _ETH_IPV4 or etype == _ETH_IPV6:
            return etype, off
        if etype in _ETH_VLAN:
            if off + 4 > n:
                raise MalformedError("vlan", "tag", "frame ends inside an 802.1Q tag")
            etype = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
        elif etype in _ETH_MPLS:
            while True:
                if off + 4 > n:
                    raise MalformedError("mpls", "label", "frame ends inside the MPLS label stack")
                bottom = frame[off + 2] & 0x01
                off += 4
                if bottom:
                    break
            version = frame[off] >> 4 if off < n else 0
            return (_ETH_IPV4 if version == 4 else _ETH_IPV6 if version == 6 else ~etype), off
        elif etype == _ETH_PPPOE_SESSION:
            if off + 8 > n:
                raise MalformedError("pppoe", "header", "frame ends inside the PPPoE header")
            ppp = (frame[off + 6] << 8) | frame[off + 7]
            off += 8
            if ppp != 0x0021 and ppp != 0x0057:
                return ~etype, off
            etype = _ETH_IPV4 if ppp == 0x0021 else _ETH_IPV6
        else:
            return ~etype, off
    return ~etype, off


def _ipv4(frame: bytes, off: int) -> Decoded | None:
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
    src = frame[off + 12:off + 16]
    dst = frame[off + 16:off + 20]
    frag = (frame[off + 6] << 8) | frame[off + 7]
    frag_key = None
    if frag & 0x3FFF:  # MF set or offset != 0
        frag_key = (src, dst, proto, (frame[off + 4] << 8) | frame[off + 5])
        if frag & 0x1FFF:
            if proto != 6 and proto != 17:
                return None
            return (proto, src, -1, dst, -1, 0, 0, b"", total, frag_key)
    return _transport(frame, l4, end, proto, src, dst, total, frag_key)


def _ipv6(frame: bytes, off: int) -> Decoded | None:
    n = len(frame)
    if off + 40 > n:
        raise MalformedError("ipv6", "header", f"{n - off} bytes left, an IPv6 header needs 40")
    if frame[off] >> 4 != 6:
        raise MalformedError("ipv6", "version", f"version {frame[off] >> 4} in an IPv6 frame")
    plen = (frame[off + 4] << 8) | frame[off + 5]
    nxt = frame[off + 6]
    src = frame[off + 8:off + 24]
    dst = frame[off + 24:off + 40]
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
                if nxt != 6 and nxt != 17:
                    return None
                return (nxt, src, -1, dst, -1, 0, 0, b"", plen + 40, frag_key)
        else:
            return None
    else:
        raise MalformedError("ipv6", "extension", "more than 16 extension headers")
    if l4 > end:
        raise MalformedError("ipv6", "extension", "extension headers run past the packet")
    return _transport(frame, l4, end, nxt, src, dst, plen + 40, frag_key)


def _transport(frame: bytes, l4: int, end: int, proto: int, src: bytes, dst: bytes,
               ip_len: int, frag_key: tuple | None) -> Decoded | None:
    if proto == 6:
        if l4 + 20 > end:
            raise MalformedError("tcp", "header", f"{end - l4} bytes left, a TCP header needs 20")
        sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(frame, l4)
        hlen = (doff >> 4) * 4
        if hlen < 20:
            raise MalformedError("tcp", "data_offset", f"header length {hlen} is below 20")
        if l4 + hlen > end:
            raise MalformedError("tcp", "data_offset", f"header length {hlen} runs past the packet")
        return (6, src, sport, dst, dport, flags, seq, frame[l4 + hlen:end], ip_len, frag_key)
    if proto == 17:
        if l4 + 8 > end:
            raise MalformedError("udp", "header", f"{end - l4} bytes left, a UDP header needs 8")
        sport, dport = _PORTS.unpack_from(frame, l4)
        ulen = (frame[l4 + 4] << 8) | frame[l4 + 5]
        if ulen >= 8 and l4 + ulen < end and frag_key is None:
            end = l4 + ulen
        return (17, src, sport, dst, dport, 0, 0, frame[l4 + 8:end], ip_len, frag_key)
    return None


def skip_reason(linktype: int, frame: bytes) -> str:
    """Why ``decode`` returned None for this frame: a stable counter key (slow path)."""
    if linktype not in (0, 1, 12, 14, 101, 108, 113, 228, 229, 276):
        return f"unsupported-linktype:{linktype}"
    etype, off = locate_ip(linktype, frame)
    if etype < 0:
        if linktype in (0, 108):
            return "non-ip:address-family"
        if etype == -1:
            return "non-ip"
        return "non-ip:802.3" if ~etype <= 1500 else f"non-ip:0x{~etype:04x}"
    if etype == _ETH_IPV4:
        return f"ip-proto:{frame[off + 9]}"
    nxt = frame[off + 6]
    l4 = off + 40
    for _ in range(16):
        if nxt in _IPV6_EXT or nxt == _IPV6_AH or nxt == _IPV6_FRAGMENT:
            if l4 + 8 > len(frame):
                break
            hlen = (
                (frame[l4 + 1] + 2) * 4 if nxt == _IPV6_AH
                else 8 if nxt == _IPV6_FRAGMENT else (frame[l4 + 1] + 1) * 8
            )
            nxt = frame[l4]
            l4 += hlen
        else:
            break
    return f"ip-proto:{nxt}"


def fragment(linktype: int, frame: bytes) -> tuple[int, bool, bytes] | None:
    """(offset in bytes, more-fragments flag, IP payload bytes) of a fragment; slow path.

    Only called for frames ``decode`` reported with a fragment key, so the headers are known good.
    """
    etype, off = locate_ip(linktype, frame)
    if etype == _ETH_IPV4:
        ihl = (frame[off] & 15) * 4
        total = (frame[off + 2] << 8) | frame[off + 3]
        flags = (frame[off + 6] << 8) | frame[off + 7]
        return (flags & 0x1FFF) * 8, bool(flags & 0x2000), frame[off + ihl:off + total]
    if etype != _ETH_IPV6:
        return None
    plen = (frame[off + 4] << 8) | frame[off + 5]
    end = off + 40 + plen
    nxt = frame[off + 6]
    l4 = off + 40
    for _ in range(16):
        if nxt == _IPV6_FRAGMENT:
            offset_flags = (frame[l4 + 2] << 8) | frame[l4 + 3]
            return offset_flags & 0xFFF8, bool(offset_flags & 1), frame[l4 + 8:end]
        if nxt in _IPV6_EXT or nxt == _IPV6_AH:
            hlen = (frame[l4 + 1] + 2) * 4 if nxt == _IPV6_AH else (frame[l4 + 1] + 1) * 8
            nxt = frame[l4]
            l4 += hlen
        else:
            return None
    return None


def transport(proto: int, src: bytes, dst: bytes, segment: bytes, ip_len: int) -> Decoded | None:
    """Decode a reassembled transport segment (header included) as ``decode`` would."""
    return _transport(segment, 0, len(segment), proto, src, dst, ip_len, None)
