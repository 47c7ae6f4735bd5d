"""IP fragment reassembly, just enough to inspect what fragmented datagrams carry.

Large DNS answers over UDP arrive as IP fragments; only the reassembled datagram parses. The
flow table counts every fragment to its flow as it arrives; this module keeps the pieces of each
datagram (bounded in number, size and time) and returns the whole transport segment once every
byte from offset 0 to the end of the last fragment is present.

Fragments that overlap with different bytes are how IDS evasion works (the receiver keeps one
version, the inspector another), so such a datagram is dropped whole, as RFC 5722 requires for
IPv6, and counted (``conflicts``): nothing decided from it, nothing blocked on it. Tunnel packets
whose outer IP was fragmented are reassembled here too, then looked into (the pipeline feeds the
rebuilt packet again); fragments inside a tunnel are keyed with the tunnel, so two subscribers'
datagrams with equal addresses and IP ids never mix.
"""

from __future__ import annotations

MAX_DATAGRAM = 65535


class Defragmenter:
    """Pieces of incomplete datagrams, keyed by (src, dst, proto, ident).

    Bounded in datagrams, in time, and in bytes: overlapping pieces at many offsets could
    otherwise hold far more than a datagram's size, so a datagram whose pieces hold more than
    twice the largest datagram is dropped, and all pieces together stay within ``max_bytes``
    (oldest datagrams dropped first).
    """

    def __init__(self, max_datagrams: int = 1024, timeout: float = 30.0, max_bytes: int = 16 << 20) -> None:
        self.max_datagrams = max_datagrams
        self.timeout = timeout
        self.max_bytes = max_bytes
        # key -> (first piece's time, offset -> piece, [total length or None, bytes held])
        self._pending: dict[tuple, tuple[float, dict[int, bytes], list]] = {}
        self.held = 0  # bytes of all pieces held
        self.reassembled = 0
        self.abandoned = 0  # dropped incomplete: too old, too many, too large or overlapping
        self.conflicts = 0  # dropped: a fragment overlapped another with different bytes
        self.oversized = 0  # dropped: a fragment ends past the largest datagram

    def add(self, key: tuple, ts: float, offset: int, more: bool, data: bytes) -> bytes | None:
        """Add one fragment's payload; the whole transport segment when it is complete."""
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.max_datagrams:
                self._expire(ts)
                if len(self._pending) >= self.max_datagrams:
                    self._drop(next(iter(self._pending)))
            entry = (ts, {}, [None, 0])
            self._pending[key] = entry
        _, pieces, state = entry
        if offset + len(data) > MAX_DATAGRAM:
            self.oversized += 1
            self._drop(key)
            return None
        end = offset + len(data)
        for off, piece in pieces.items():
            lo, hi = max(off, offset), min(off + len(piece), end)
            if lo < hi and piece[lo - off : hi - off] != data[lo - offset : hi - offset]:
                self.conflicts += 1
                self._drop(key)
                return None
        old = pieces.get(offset)
        if old is None or len(old) < len(data):
            grow = len(data) - (len(old) if old is not None else 0)
            pieces[offset] = data
            state[1] += grow
            self.held += grow
            if state[1] > 2 * MAX_DATAGRAM:
                self._drop(key)
                return None
            while self.held > self.max_bytes:
                self._drop(next(iter(self._pending)))
            if key not in self._pending:
                return None  # this datagram was the oldest
        if not more:
            state[0] = offset + len(data)
        total = state[0]
        if total is None:
            return None
        have = 0
        for off in sorted(pieces):
            if off > have:
                return None  # a hole
            have = max(have, off + len(pieces[off]))
        if have < total:
            return None
        buf = bytearray(total)
        for off in sorted(pieces):
            if off >= total:
                break  # past the end the last fragment set: not part of this datagram
            piece = pieces[off][: total - off]
            buf[off : off + len(piece)] = piece
        del self._pending[key]
        self.held -= state[1]
        self.reassembled += 1
        return bytes(buf)

    def _drop(self, key: tuple) -> None:
        """Abandon one incomplete datagram."""
        self.held -= self._pending.pop(key)[2][1]
        self.abandoned += 1

    def _expire(self, now: float) -> None:
        for k in [k for k, (t, _, _) in self._pending.items() if now - t > self.timeout]:
            self._drop(k)
