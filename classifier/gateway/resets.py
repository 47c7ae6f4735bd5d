"""TCP resets toward both ends of a blocked connection.

Dropping a blocked flow's packets leaves both ends waiting for a timeout; an app retrying a
half-dead connection looks like an outage rather than a refusal. So, from the packet that got
the flow blocked, we build one RST for each end with the sequence number that end expects
(RFC 5961: exactly the next expected sequence number resets, anything else only draws a
challenge ACK, which then meets our ``reject with tcp reset`` rule). The RSTs are sent from the
gateway itself through raw sockets, so they never cross our own forward chain.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """The header fields of one TCP segment a reset is computed from."""

    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload_len: int


def parse_tcp(packet: bytes) -> TcpSegment | None:
    """The TCP fields of a raw IPv4/IPv6 packet (None if it is not a plain TCP segment)."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if len(packet) < ihl + 20 or packet[9] != 6 or struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
            return None
        total = struct.unpack_from("!H", packet, 2)[0]
        src, dst, off = packet[12:16], packet[16:20], ihl
    elif version == 6:
        if len(packet) < 60 or packet[6] != 6:
            return None  # extension headers: leave it to the reject rule
        total = 40 + struct.unpack_from("!H", packet, 4)[0]
        src, dst, off = packet[8:24], packet[24:40], 40
    else:
        return None
    sport, dport, seq, ack, data_off, flags = struct.unpack_from("!HHIIBB", packet, off)
    header = (data_off >> 4) * 4
    payload_len = max(0, min(total, len(packet)) - off - header)
    return TcpSegment(src, dst, sport, dport, seq, ack, flags, payload_len)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_rst(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int) -> bytes:
    """A complete IPv4 or IPv6 packet carrying one RST+ACK segment."""
    tcp = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, _RST | _ACK, 0, 0, 0
    )
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        return ip + tcp
    pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, src, dst)
    return ip + tcp


def resets_for(seg: TcpSegment, forwarded: bool) -> list[bytes]:
    """The RSTs for both ends of ``seg``'s connection.

    ``forwarded``: the segment went on to its receiver (reactive mode), so the receiver now
    expects the sequence number after it; otherwise (inline, dropped) it still expects ``seq``.
    """
    out: list[bytes] = []
    next_seq = seg.seq
    if forwarded:
        next_seq += seg.payload_len + (1 if seg.flags & _SYN else 0) + (1 if seg.flags & _FIN else 0)
    if seg.flags & _RST:
        return out
    # To the receiver, as if from the sender.
    out.append(build_rst(seg.src, seg.dst, seg.sport, seg.dport, next_seq, seg.ack))
    if seg.flags & _ACK:
        # To the sender, as if from the receiver: the sender's ACK says what it expects next.
        out.append(build_rst(seg.dst, seg.src, seg.dport, seg.sport, seg.ack, next_seq))
    return out


class Resetter:
    """Raw sockets that send the RSTs; created once (needs CAP_NET_RAW)."""

    def __init__(self) -> None:
        self._socks: dict[int, socket.socket] = {}
        self.sent = 0
        self.errors = 0

    def _sock(self, family: int) -> socket.socket:
        s = self._socks.get(family)
        if s is None:
            s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self._socks[family] = s
        return s

    def reset(self, packet: bytes, forwarded: bool) -> int:
        """Send the RSTs for the connection of a raw IP packet; the number sent."""
        seg = parse_tcp(packet)
        if seg is None:
            return 0
        sent = 0
        for rst in resets_for(seg, forwarded):
            family = socket.AF_INET if rst[0] >> 4 == 4 else socket.AF_INET6
            dst = socket.inet_ntop(family, rst[16:20] if family == socket.AF_INET else rst[24:40])
            try:
                self._sock(family).sendto(rst, (dst, 0))
                sent += 1
            except OSError:
                self.errors += 1
        self.sent += sent
        return sent

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()
