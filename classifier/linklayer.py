"""Find the IP header inside a link-layer frame, for every link type decode() reads.

Shared by decode (the general path), the tunnels that carry Ethernet (VXLAN, Geneve, GRE
transparent bridging, ERSPAN) and the slow paths that re-walk a frame (skip reasons, fragments).
Results are (ethertype, offset): for a frame without IP the ethertype is negative, ``~ethertype``
of the innermost non-IP type where there is one, else -1.
"""

from __future__ import annotations

from struct import Struct

from .errors import MalformedError

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_TEB = 0x6558  # transparent Ethernet bridging (GRE, Geneve): an Ethernet frame follows
_ETH_VLAN = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_ETH_MPLS = frozenset((0x8847, 0x8848))
_ETH_PPPOE_SESSION = 0x8864

# PPP protocol numbers (RFC 1661 / IANA PPP DLL protocol numbers) of the network layers read here.
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
_PPP_MPLS = frozenset((0x0281, 0x0283))

# BSD address-family values for IPv6 differ per OS; IPv4 is 2 everywhere.
_AF_INET = 2
_AF_INET6 = frozenset((10, 24, 28, 30))

# IEEE 802.2 LLC/SNAP header with the RFC 1042 OUI (and 802.1H bridge-tunnel) before an Ethernet type.
_SNAP_RFC1042 = b"\xaa\xaa\x03\x00\x00\x00"
_SNAP_BRIDGE_TUNNEL = b"\xaa\xaa\x03\x00\x00\xf8"

NFULA_PAYLOAD = 9  # linux/netfilter/nfnetlink_log.h: the packet, from the network header on

_U32 = Struct("!I")


def locate_ip(linktype: int, frame: bytes) -> tuple[int, int]:
    """(ethertype, offset) of the IP header inside a frame; ethertype < 0 if there is no IP."""
    if linktype == 1 or linktype == 113 or linktype == 276:
        hlen = 14 if linktype == 1 else 16 if linktype == 113 else 20
        if len(frame) < hlen:
            name = "ethernet" if linktype == 1 else "sll" if linktype == 113 else "sll2"
            raise MalformedError(name, "header", f"frame of {len(frame)} bytes is shorter than {hlen}")
        at = 12 if linktype == 1 else 14 if linktype == 113 else 0
        etype = (frame[at] << 8) | frame[at + 1]
        if etype == ETH_IPV4 or etype == ETH_IPV6:
            return etype, hlen
        return ethernet_inner(frame, etype, hlen)
    if linktype in (101, 228, 229, 12, 14):
        return raw_ip(frame, 0, "raw")
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
            return ETH_IPV4, 4
        if family in _AF_INET6:
            return ETH_IPV6, 4
        return -1, 4
    if linktype == 9:
        return ppp(frame, 0, "ppp")
    if linktype == 204:
        return ppp(frame, 1, "ppp")
    if linktype == 50 or linktype == 104:
        return _hdlc(frame, linktype)
    if linktype == 127:
        return ieee80211(frame, _radiotap_length(frame))
    if linktype == 105:
        return ieee80211(frame, 0)
    if linktype == 239:
        return nflog(frame)
    return -1, 0


def vlan_ids(linktype: int, frame: bytes) -> tuple[int, ...] | None:
    """The VLAN ids of an Ethernet or Linux cooked frame's 802.1Q/802.1ad tags, outermost first;
    None if untagged (once per flow, for its record)."""
    if linktype == 1:
        at = 12
    elif linktype == 113:
        at = 14
    elif linktype == 276:
        at = 0
    else:
        return None
    if len(frame) < at + 2:
        return None
    etype = (frame[at] << 8) | frame[at + 1]
    off = 14 if linktype == 1 else 16 if linktype == 113 else 20
    ids: list[int] = []
    while etype in _ETH_VLAN and off + 4 <= len(frame) and len(ids) < 8:
        ids.append(((frame[off] << 8) | frame[off + 1]) & 0x0FFF)
        etype = (frame[off + 2] << 8) | frame[off + 3]
        off += 4
    return tuple(ids) or None


def raw_ip(frame: bytes, off: int, layer: str) -> tuple[int, int]:
    """A bare IP packet at ``off``: its version says which."""
    if off >= len(frame):
        raise MalformedError(layer, "header", "no IP packet after the header")
    version = frame[off] >> 4
    if version == 4:
        return ETH_IPV4, off
    if version == 6:
        return ETH_IPV6, off
    raise MalformedError(layer, "version", f"IP version {version}")


def ethernet(frame: bytes, off: int, layer: str) -> tuple[int, int]:
    """An Ethernet frame at ``off`` (inside a tunnel named ``layer``)."""
    if off + 14 > len(frame):
        raise MalformedError(layer, "ethernet", f"{len(frame) - off} bytes left, an Ethernet header needs 14")
    return ethernet_inner(frame, (frame[off + 12] << 8) | frame[off + 13], off + 14)


def ethernet_inner(frame: bytes, etype: int, off: int) -> tuple[int, int]:
    """Walk VLAN tags, MPLS labels and PPPoE to the IP header."""
    n = len(frame)
    for _ in range(8):  # bounded: a frame cannot stack more tags than this sensibly
        if etype == ETH_IPV4 or etype == ETH_IPV6:
            return etype, off
        if etype in _ETH_VLAN:
            if off + 4 > n:
                raise MalformedError("vlan", "tag", "frame ends inside an 802.1Q tag")
            etype = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
        elif etype in _ETH_MPLS:
            return _mpls(frame, off, etype)
        elif etype == _ETH_PPPOE_SESSION:
            if off + 8 > n:
                raise MalformedError("pppoe", "header", "frame ends inside the PPPoE header")
            proto = (frame[off + 6] << 8) | frame[off + 7]
            off += 8
            if proto != PPP_IPV4 and proto != PPP_IPV6:
                return ~etype, off
            etype = ETH_IPV4 if proto == PPP_IPV4 else ETH_IPV6
        else:
            return ~etype, off
    return ~etype, off


def _mpls(frame: bytes, off: int, etype: int) -> tuple[int, int]:
    n = len(frame)
    while True:
        if off + 4 > n:
            raise MalformedError("mpls", "label", "frame ends inside the MPLS label stack")
        bottom = frame[off + 2] & 0x01
        off += 4
        if bottom:
            break
    version = frame[off] >> 4 if off < n else 0
    return (ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else ~etype), off


def ppp(frame: bytes, off: int, layer: str) -> tuple[int, int]:
    """PPP (RFC 1661) at ``off``, with or without RFC 1662 address and control (ff 03), protocol
    field compressed (one odd byte) or not."""
    n = len(frame)
    if frame[off : off + 2] == b"\xff\x03":
        off += 2
    if off >= n:
        raise MalformedError(layer, "protocol", "frame ends before the PPP protocol field")
    if frame[off] & 1:  # protocol-field compression: a one-byte protocol number is odd
        proto = frame[off]
        off += 1
    else:
        if off + 2 > n:
            raise MalformedError(layer, "protocol", "frame ends inside the PPP protocol field")
        proto = (frame[off] << 8) | frame[off + 1]
        off += 2
    if proto == PPP_IPV4:
        return ETH_IPV4, off
    if proto == PPP_IPV6:
        return ETH_IPV6, off
    if proto in _PPP_MPLS:
        return _mpls(frame, off, 0x8847)
    return ~proto, off


def _hdlc(frame: bytes, linktype: int) -> tuple[int, int]:
    """PPP in HDLC-like framing (first byte ff) or Cisco HDLC (0f or 8f, then an Ethernet type)."""
    if len(frame) < 4:
        raise MalformedError("hdlc", "header", f"frame of {len(frame)} bytes is shorter than 4")
    if frame[0] == 0xFF and linktype == 50:
        return ppp(frame, 0, "ppp")
    if frame[0] == 0x0F or frame[0] == 0x8F:
        return ethernet_inner(frame, (frame[2] << 8) | frame[3], 4)
    raise MalformedError("hdlc", "address", f"address byte 0x{frame[0]:02x} is neither PPP nor Cisco HDLC")


def _radiotap_length(frame: bytes) -> int:
    """Length of the radiotap header (little-endian it_len) the 802.11 frame follows."""
    if len(frame) < 8:
        raise MalformedError("radiotap", "header", f"frame of {len(frame)} bytes is shorter than 8")
    if frame[0] != 0:
        raise MalformedError("radiotap", "version", f"version {frame[0]}")
    length = frame[2] | (frame[3] << 8)
    if length < 8 or length > len(frame):
        raise MalformedError("radiotap", "length", f"header length {length} in a frame of {len(frame)} bytes")
    return length


def ieee80211_header(frame: bytes, off: int) -> tuple[str | None, int]:
    """(why the frame carries no IP, or None; offset of the frame body) of an 802.11 frame."""
    if off + 24 > len(frame):
        if off + 10 <= len(frame) and (frame[off] >> 2) & 3 == 1:
            return "802.11-control", off  # control frames are shorter than a data header
        raise MalformedError("802.11", "header", f"{len(frame) - off} bytes left, a data header needs 24")
    fc0, fc1 = frame[off], frame[off + 1]
    kind = (fc0 >> 2) & 3
    if kind != 2:
        return (
            "802.11-management" if kind == 0 else "802.11-control" if kind == 1 else "802.11-extension"
        ), off
    subtype = fc0 >> 4
    if subtype & 4:
        return "802.11-null-data", off
    if fc1 & 0x40:
        return "802.11-protected", off
    hlen = 30 if fc1 & 3 == 3 else 24  # to-DS and from-DS: four addresses
    if subtype & 8:  # QoS data: QoS control, and HT control when the order bit is set
        hlen += 6 if fc1 & 0x80 else 2
    return None, off + hlen


def ieee80211(frame: bytes, off: int) -> tuple[int, int]:
    """An 802.11 data frame whose body is LLC/SNAP (RFC 1042) before an Ethernet type."""
    why, body = ieee80211_header(frame, off)
    if why is not None:
        return -1, body
    snap = frame[body : body + 6]
    if snap != _SNAP_RFC1042 and snap != _SNAP_BRIDGE_TUNNEL:
        if len(snap) < 6:
            raise MalformedError("802.11", "llc", "frame ends inside the LLC/SNAP header")
        return -1, body
    if body + 8 > len(frame):
        raise MalformedError("802.11", "llc", "frame ends inside the LLC/SNAP header")
    return ethernet_inner(frame, (frame[body + 6] << 8) | frame[body + 7], body + 8)


def nflog(frame: bytes) -> tuple[int, int]:
    """The NFULA_PAYLOAD TLV of an NFLOG frame: a 4-byte nfgenmsg header, then TLVs of
    (length, type) in the capturing host's byte order (little-endian, unless that cannot be)."""
    n = len(frame)
    if n < 8:
        raise MalformedError("nflog", "header", f"frame of {n} bytes is shorter than 8")
    # The first TLV's type is small: its non-zero byte says which end is the low one.
    little = not (frame[6] & 0x7F == 0 and frame[7] & 0x7F != 0)
    off = 4
    while off + 4 <= n:
        if little:
            tlen, ttype = frame[off] | (frame[off + 1] << 8), frame[off + 2] | (frame[off + 3] << 8)
        else:
            tlen, ttype = (frame[off] << 8) | frame[off + 1], (frame[off + 2] << 8) | frame[off + 3]
        if tlen < 4 or off + tlen > n:
            raise MalformedError("nflog", "tlv", f"TLV at byte {off} has length {tlen}, {n - off} bytes left")
        if ttype & 0x7FFF == NFULA_PAYLOAD:
            return raw_ip(frame, off + 4, "nflog")
        off += (tlen + 3) & ~3
    return -1, off
