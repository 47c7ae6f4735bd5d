"""Monitor mode: capture on interfaces with AF_PACKET, classify, write records; enforce nothing.

On a router each forwarded packet crosses two interfaces, so only packets *arriving* on an
interface are taken (outgoing copies are ignored): every packet is seen once. Frames keep their
link-layer header, so the next hop's MAC address is known for the peering map.
"""

from __future__ import annotations

import contextlib
import socket
import time

from classifier.errors import UserError
from classifier.flows import DECIDED

from .engine import Engine

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
RCVBUF = 8 << 20
SNAPLEN = 262144

# ARPHRD (hardware type) -> pcap link type of the frames AF_PACKET delivers.
_LINKTYPES = {1: 1, 772: 1, 65534: 101, 512: 101, 776: 101, 768: 101}


class Capture:
    """One non-blocking AF_PACKET socket per interface (or one for all when none is named)."""

    def __init__(self, interfaces: tuple[str, ...]) -> None:
        self.socks: dict[int, socket.socket] = {}
        for name in interfaces or ("",):
            try:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            except PermissionError:
                raise UserError("cannot open an AF_PACKET socket: CAP_NET_RAW is needed") from None
            with contextlib.suppress(OSError):  # older kernels: outgoing copies skipped by type
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            if name:
                s.bind((name, 0))
            s.setblocking(False)
            self.socks[s.fileno()] = s
        self.skipped = 0

    def fds(self) -> list[int]:
        return list(self.socks)

    def read(self, fd: int, limit: int = 256):
        """Up to ``limit`` waiting frames of one socket: (frame, ifname, linktype)."""
        s = self.socks[fd]
        for _ in range(limit):
            try:
                frame, addr = s.recvfrom(SNAPLEN)
            except (BlockingIOError, InterruptedError):
                return
            ifname, _proto, pkttype, hatype = addr[0], addr[1], addr[2], addr[3]
            if pkttype == PACKET_OUTGOING:
                continue
            linktype = _LINKTYPES.get(hatype)
            if linktype is None:
                self.skipped += 1
                continue
            yield frame, ifname, linktype

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()


def ip_packet(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a captured frame (Ethernet with VLAN tags, or raw)."""
    if linktype == 101:
        return frame
    off = 12
    while off + 2 <= len(frame):
        ethertype = int.from_bytes(frame[off : off + 2], "big")
        if ethertype in (0x8100, 0x88A8, 0x9100):
            off += 4
            continue
        if ethertype in (0x0800, 0x86DD):
            return frame[off + 2 :]
        return None
    return None


class MonitorEngine(Engine):
    """Capture loop; decisions are recorded, not enforced."""

    mode = "monitor"

    def __init__(self, *args, interfaces: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.capture = Capture(interfaces)

    def fds(self) -> list[int]:
        return self.capture.fds()

    def readable(self, fd: int) -> None:
        feed = self.scanner.feed
        stats = self.stats
        actions = self.actions
        for frame, ifname, linktype in self.capture.read(fd):
            stats.packets += 1
            pos = self._iface_pos.get(ifname)
            if pos is None:
                pos = self.iface_index(ifname, ifname)
            self._work_began = now = time.time()
            try:
                flow = feed(now, linktype, frame, pos)
                if flow is not None and flow.stage == DECIDED and flow.id not in actions:
                    self.decided(flow, ip_packet(linktype, frame) if flow.proto == 6 else None)
            except Exception as err:  # a bug on one packet must not stop the capture
                self.error("packet", err)

    def close(self) -> None:
        self.capture.close()
