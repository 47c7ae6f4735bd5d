"""Encapsulations decode() looks through, from raw bytes: where the carried packet starts.

Gateways at ISPs and data centres see subscriber and tenant traffic inside tunnels: GTP-U in mobile
cores, VXLAN and Geneve between hypervisors, GRE, ERSPAN mirrors, IP-in-IP and 6in4. Each opener
here checks one encapsulation header and returns where the inner packet is (``Inner``) with the
tunnel's identity (``Tunnel``), so the flow is classified on the inner 5-tuple and kept apart from
the same inner addresses in another tunnel. A broken header raises MalformedError naming the
layer and field; a tunnel packet that carries no user data (GTP-U echo, Geneve control) returns a
skip reason instead.

Teredo (RFC 4380) is the one encapsulation a port does not prove: UDP 3544 carries Teredo's own
qualification traffic and anything else a host chose to send there, so a payload counts as Teredo
only when, after the optional authentication and origin indication headers, an IPv6 header sits
whose payload length fills the datagram exactly (Wireshark's test). Anything else on the port is
plain UDP; a payload that announces a Teredo header and breaks it is malformed.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import MalformedError
from .linklayer import ETH_IPV4, ETH_IPV6, ETH_TEB, ethernet, ethernet_inner, ppp, raw_ip

MAX_DEPTH = 4  # tunnels inside tunnels followed; a fifth is malformed

IPPROTO_IPIP = 4  # IPv4 inside IP: RFC 2003 (in IPv4), RFC 2473 (4in6)
IPPROTO_IPV6 = 41  # IPv6 inside IP: RFC 4213 (6in4), RFC 2473 (6in6)
IPPROTO_GRE = 47  # RFC 2784, keys and sequence numbers RFC 2890, PPTP's version 1 RFC 2637
IP_PROTOS = frozenset((IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE))

UDP_VXLAN = 4789  # RFC 7348
UDP_GENEVE = 6081  # RFC 8926
UDP_GTPU = 2152  # 3GPP TS 29.281
UDP_TEREDO = 3544  # RFC 4380: the server's port, which relays use too; either end of the datagram
UDP_PORTS = frozenset((UDP_VXLAN, UDP_GENEVE, UDP_GTPU))  # tunnels by destination port

GRE_ERSPAN = 0x88BE  # ERSPAN type II (with a GRE sequence number), type I (without)
GRE_ERSPAN3 = 0x22EB  # ERSPAN type III
GRE_PPP = 0x880B  # PPTP: PPP inside enhanced GRE
_GRE_MPLS = frozenset((0x8847, 0x8848))  # RFC 4023

_GRE_CSUM = 0x8000
_GRE_ROUTING = 0x4000
_GRE_KEY = 0x2000
_GRE_SEQ = 0x1000
_GRE_ACK = 0x0080  # version 1 only

GTPU_GPDU = 255  # TS 29.281 7.3.1: a G-PDU carries a T-PDU, the subscriber's packet
_GTPU_OPTIONAL = 0x07  # E, S, PN: the 4 optional bytes are present when any is set
_GTPU_MAX_EXTENSIONS = 16

_TEREDO_AUTH = 1  # RFC 4380 5.1.1: indicator 0x0001, ID-len, AU-len, id, value, nonce (8), confirmation
_TEREDO_ORIGIN = 0  # indicator 0x0000, obfuscated origin port (2) and IPv4 address (4)
_TEREDO_NO_NEXT_HEADER = 59  # a bubble: an IPv6 header and nothing after it
_IPV6_MAX_NEXT = 0x3A  # Wireshark's sanity bound on the first next header (ICMPv6 is the highest used)


class Tunnel(NamedTuple):
    """One encapsulation layer of a packet: its type, the outer addresses, and its identifier
    (GRE key, PPTP call id, ERSPAN session, VXLAN/Geneve VNI, GTP-U TEID; None if it has none)."""

    kind: str
    src: bytes
    dst: bytes
    ident: int | None


class Inner:
    """Where an encapsulated packet is: ``frame`` holds it, ``etype``/``off`` as locate_ip says.

    A plain class, not a tuple: decode tells its results apart by ``__class__ is tuple``, and a
    tuple subclass here would let the type checker confuse an Inner with a decoded packet."""

    __slots__ = ("etype", "frame", "off", "tunnel")

    def __init__(self, tunnel: Tunnel, frame: bytes, etype: int, off: int) -> None:
        self.tunnel = tunnel
        self.frame = frame
        self.etype = etype
        self.off = off


def tunnel_key(layers: tuple[Tunnel, ...]) -> tuple:
    """The identity of a packet's tunnels, the same in both directions: per layer its type, the
    outer addresses in order, and its identifier. GTP-U TEIDs are chosen by each receiving end
    (TS 29.281), so they differ per direction: a GTP-U layer is identified by its endpoints."""
    return tuple(
        (
            t.kind,
            *((t.src, t.dst) if t.src <= t.dst else (t.dst, t.src)),
            None if t.kind == "gtp-u" else t.ident,
        )
        for t in layers
    )


def client_scope(layers: tuple[Tunnel, ...] | None) -> tuple | None:
    """Whose traffic a flow is, for what DNS answers and remembered names may name: per layer the
    type, the client side's outer address and the identifier, of the layers as the client sends
    them (``Flow.tunnel``). Subscribers in different TEIDs, VNIs or keys may use the same private
    addresses, so a name learnt in one tunnel names flows of that tunnel only; the far end is left
    out, as a client reaches its resolver and its servers through the same tunnel but not always
    toward the same endpoint. None (no tunnel) is a scope of its own."""
    if layers is None:
        return None
    return tuple((t.kind, t.src, t.ident) for t in layers)


def oriented(layers: tuple[Tunnel, ...]) -> tuple[Tunnel, ...]:
    """The layers of a packet the server sent, as seen in the client's direction."""
    return tuple(t._replace(src=t.dst, dst=t.src) for t in layers)


def open_ip(frame: bytes, l4: int, end: int, proto: int, src: bytes, dst: bytes) -> Inner | str:
    """The packet inside IP protocol 4, 41 or 47."""
    if proto == IPPROTO_GRE:
        return _gre(frame[l4:end], src, dst)
    inner = frame[l4:end]
    outer = "4" if len(src) == 4 else "6"
    if proto == IPPROTO_IPIP:
        kind = "ipip" if outer == "4" else "4in6"
        etype = ETH_IPV4
    else:
        kind = "6in4" if outer == "4" else "6in6"
        etype = ETH_IPV6
    if not inner:
        raise MalformedError(kind, "payload", "no inner IP packet")
    if inner[0] >> 4 != (4 if etype == ETH_IPV4 else 6):
        raise MalformedError(kind, "version", f"IP version {inner[0] >> 4} inside protocol {proto}")
    return Inner(Tunnel(kind, src, dst, None), inner, etype, 0)


def open_udp(frame: bytes, start: int, end: int, dport: int, src: bytes, dst: bytes) -> Inner | str | None:
    """The packet inside a UDP payload ``frame[start:end]`` sent to a tunnel port, or from or to
    Teredo's; None when a Teredo port carries no Teredo (plain UDP, then)."""
    data = frame[start:end]
    if dport not in UDP_PORTS:  # the Teredo port at either end
        reported = ((frame[start - 4] << 8) | frame[start - 3]) - 8  # the UDP header's payload length
        return teredo(data, reported, src, dst)
    if dport == UDP_VXLAN:
        return _vxlan(data, src, dst)
    if dport == UDP_GENEVE:
        return _geneve(data, src, dst)
    return _gtpu(data, src, dst)


def _gre(data: bytes, src: bytes, dst: bytes) -> Inner | str:
    n = len(data)
    if n < 4:
        raise MalformedError("gre", "header", f"{n} bytes, a GRE header needs 4")
    flags = (data[0] << 8) | data[1]
    ptype = (data[2] << 8) | data[3]
    version = flags & 7
    off = 4
    ident = None
    if flags & _GRE_ROUTING:
        raise MalformedError("gre", "flags", "source routing (RFC 1701) present")
    if version == 0:
        if flags & _GRE_CSUM:
            off += 4
        if flags & _GRE_KEY:
            if off + 4 > n:
                raise MalformedError("gre", "key", "packet ends inside the key")
            ident = int.from_bytes(data[off : off + 4], "big")
            off += 4
        if flags & _GRE_SEQ:
            off += 4
    elif version == 1:
        if ptype != GRE_PPP or not flags & _GRE_KEY:
            raise MalformedError("gre", "version", "version 1 (PPTP) without PPP and key")
        if n < 8:
            raise MalformedError("gre", "key", "packet ends inside the key")
        ident = (data[6] << 8) | data[7]  # the peer's call id
        off = 8 + (4 if flags & _GRE_SEQ else 0) + (4 if flags & _GRE_ACK else 0)
    else:
        raise MalformedError("gre", "version", f"version {version}")
    if off > n:
        raise MalformedError("gre", "header", f"optional fields need {off} bytes, {n} present")
    if ptype == ETH_IPV4 or ptype == ETH_IPV6:
        return Inner(Tunnel("gre", src, dst, ident), data, ptype, off)
    if ptype == ETH_TEB:
        return Inner(Tunnel("gre", src, dst, ident), data, *ethernet(data, off, "gre"))
    if ptype == GRE_ERSPAN:
        if not flags & _GRE_SEQ:  # type I: the mirrored frame follows the GRE header directly
            return Inner(Tunnel("erspan1", src, dst, None), data, *ethernet(data, off, "erspan1"))
        return _erspan(data, off, 1, 8, "erspan2", src, dst)
    if ptype == GRE_ERSPAN3:
        return _erspan(data, off, 2, 12, "erspan3", src, dst)
    if ptype == GRE_PPP:
        return Inner(Tunnel("pptp", src, dst, ident), data, *ppp(data, off, "pptp"))
    if ptype in _GRE_MPLS:
        return Inner(Tunnel("gre", src, dst, ident), data, *ethernet_inner(data, ptype, off))
    return f"gre:non-ip:0x{ptype:04x}"


def _erspan(data: bytes, off: int, version: int, hlen: int, kind: str, src: bytes, dst: bytes) -> Inner:
    """ERSPAN type II (8-byte header) or III (12 bytes, plus 8 when the O flag is set): the
    mirrored Ethernet frame, identified by the session id."""
    if off + hlen > len(data):
        raise MalformedError(kind, "header", f"{len(data) - off} bytes left, the header needs {hlen}")
    if data[off] >> 4 != version:
        raise MalformedError(kind, "version", f"version {data[off] >> 4}, expected {version}")
    session = ((data[off + 2] & 3) << 8) | data[off + 3]
    if version == 2 and data[off + 11] & 1:  # platform-specific subheader
        hlen += 8
    return Inner(Tunnel(kind, src, dst, session), data, *ethernet(data, off + hlen, kind))


def _vxlan(data: bytes, src: bytes, dst: bytes) -> Inner:
    if len(data) < 8:
        raise MalformedError("vxlan", "header", f"{len(data)} bytes, a VXLAN header needs 8")
    if not data[0] & 0x08:
        raise MalformedError("vxlan", "flags", f"flags 0x{data[0]:02x} without the VNI flag")
    vni = int.from_bytes(data[4:7], "big")
    return Inner(Tunnel("vxlan", src, dst, vni), data, *ethernet(data, 8, "vxlan"))


def _geneve(data: bytes, src: bytes, dst: bytes) -> Inner | str:
    if len(data) < 8:
        raise MalformedError("geneve", "header", f"{len(data)} bytes, a Geneve header needs 8")
    if data[0] >> 6:
        raise MalformedError("geneve", "version", f"version {data[0] >> 6}")
    off = 8 + (data[0] & 0x3F) * 4
    if off > len(data):
        raise MalformedError("geneve", "options", f"options run to byte {off} of {len(data)}")
    if data[1] & 0x80:
        return "geneve:control"
    ptype = (data[2] << 8) | data[3]
    tunnel = Tunnel("geneve", src, dst, int.from_bytes(data[4:7], "big"))
    if ptype == ETH_TEB:
        return Inner(tunnel, data, *ethernet(data, off, "geneve"))
    if ptype == ETH_IPV4 or ptype == ETH_IPV6:
        return Inner(tunnel, data, ptype, off)
    return f"geneve:non-ip:0x{ptype:04x}"


def _gtpu(data: bytes, src: bytes, dst: bytes) -> Inner | str:
    """TS 29.281 5.1: flags (version 1, PT 1), message type, length, TEID; then sequence number,
    N-PDU number and extension headers when E, S or PN is set; then the T-PDU."""
    n = len(data)
    if n < 8:
        raise MalformedError("gtp-u", "header", f"{n} bytes, a GTP-U header needs 8")
    flags = data[0]
    if flags >> 5 != 1 or not flags & 0x10:
        raise MalformedError("gtp-u", "version", f"flags 0x{flags:02x}: not GTPv1 (version 1, PT 1)")
    end = 8 + ((data[2] << 8) | data[3])
    if end > n:
        end = n  # cut by the snap length: use what was captured
    teid = int.from_bytes(data[4:8], "big")
    off = 8
    if flags & _GTPU_OPTIONAL:
        if end < 12:
            raise MalformedError("gtp-u", "header", "packet ends inside the optional fields")
        nxt = data[11]
        off = 12
        for _ in range(_GTPU_MAX_EXTENSIONS):
            if not nxt:
                break
            if off >= end or not data[off]:
                raise MalformedError("gtp-u", "extension", f"extension header 0x{nxt:02x} has no length")
            length = data[off] * 4
            if off + length > end:
                raise MalformedError(
                    "gtp-u", "extension", f"extension header 0x{nxt:02x} runs past the packet"
                )
            nxt = data[off + length - 1]
            off += length
        else:
            raise MalformedError("gtp-u", "extension", f"more than {_GTPU_MAX_EXTENSIONS} extension headers")
    if data[1] != GTPU_GPDU:
        return f"gtp-u:message-type:{data[1]}"
    inner = data[off:end]
    return Inner(Tunnel("gtp-u", src, dst, teid), inner, *raw_ip(inner, 0, "gtp-u"))


def teredo(data: bytes, reported: int, src: bytes, dst: bytes) -> Inner | str | None:
    """RFC 4380 5.1.1: the IPv6 packet after the optional authentication and origin indication
    headers. ``reported`` is the UDP payload length its header states (``data`` may be cut short
    by the snap length). None when the payload is not Teredo at all."""
    n = len(data)
    if n < 2:
        return None
    off = 0
    headers = False
    if data[0] == 0 and data[1] == _TEREDO_AUTH:
        if n < 4:
            raise MalformedError("teredo", "auth", f"{n} bytes, the authentication header needs 13")
        off = 13 + data[2] + data[3]
        if off > n:
            raise MalformedError("teredo", "auth", f"authentication header of {off} bytes, {n} present")
        headers = True
    if off + 2 <= n and data[off] == 0 and data[off + 1] == _TEREDO_ORIGIN:
        if off + 8 > n:
            raise MalformedError("teredo", "origin", f"origin indication ends past byte {n}")
        off += 8
        headers = True
    nxt = data[off + 6] if off + 40 <= n else 0
    if off + 40 > n or data[off] >> 4 != 6 or (nxt > _IPV6_MAX_NEXT and nxt != _TEREDO_NO_NEXT_HEADER):
        if headers:
            raise MalformedError("teredo", "ipv6", "no IPv6 header after the Teredo headers")
        return None
    plen = (data[off + 4] << 8) | data[off + 5]
    if off + 40 + plen != reported:
        if headers:
            raise MalformedError(
                "teredo",
                "payload_length",
                f"IPv6 payload length {plen}, the datagram holds {reported - off - 40}",
            )
        return None
    return Inner(Tunnel("teredo", src, dst, None), data, ETH_IPV6, off)
