"""The first bytes of one TCP direction, in sequence order.

Inspection needs the start of each byte stream (a ClientHello can span several segments that
arrive out of order or twice), never the whole stream, so a stream keeps at most ``limit`` bytes
and drops everything after that. Sequence numbers are compared modulo 2**32.
"""

from __future__ import annotations


class Stream:
    """Contiguous bytes from the start of a TCP direction, plus segments waiting for a gap."""

    __slots__ = ("base", "consumed", "data", "full", "limit", "pending", "segments")

    def __init__(self, limit: int) -> None:
        self.base: int | None = None  # sequence number of the first payload byte
        self.data = bytearray()
        self.pending: dict[int, bytes] = {}  # offset -> segment, for segments beyond a gap
        self.limit = limit
        self.full = False  # limit reached: later bytes are not kept
        self.segments = 0  # payload-carrying segments seen (retransmissions included)
        self.consumed = 0  # bytes a stream parser (DNS over TCP) has already taken

    def syn(self, seq: int) -> None:
        """A SYN fixes the stream start: its payload (if any) begins at seq + 1."""
        if self.base is None or not self.data:
            self.base = (seq + 1) & 0xFFFFFFFF

    def add(self, seq: int, payload: bytes) -> bool:
        """Add a segment; True if the contiguous prefix grew."""
        self.segments += 1
        if self.full:
            return False
        if self.base is None:
            self.base = seq
        off = (seq - self.base) & 0xFFFFFFFF
        if off >= 0x80000000:  # starts before the stream start: keep only the part after it
            cut = 0x100000000 - off
            if cut >= len(payload):
                return False
            payload = payload[cut:]
            off = 0
        have = len(self.data)
        if off > have:
            if off < self.limit and len(self.pending) < 64:
                old = self.pending.get(off)
                if old is None or len(old) < len(payload):
                    self.pending[off] = payload
            return False
        end = off + len(payload)
        if end <= have:
            return False  # retransmission of bytes we already have
        self.data += payload[have - off :]
        if self.pending:
            self._drain()
        if len(self.data) >= self.limit:
            del self.data[self.limit :]
            self.full = True
            self.pending.clear()
        return True

    def _drain(self) -> None:
        """Append pending segments that the new bytes made contiguous."""
        while self.pending:
            have = len(self.data)
            ready = [o for o in self.pending if o <= have]
            if not ready:
                return
            for o in sorted(ready):
                seg = self.pending.pop(o)
                have = len(self.data)
                if o + len(seg) > have:
                    self.data += seg[have - o :]
