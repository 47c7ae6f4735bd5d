"""IP fragment reassembly, just enough to inspect what fragmented datagrams carry.

Large DNS answers over UDP arrive as IP fragments; only the reassembled datagram parses. The
flow table counts every fragment to its flow as it arrives; this module keeps the pieces of each
datagram (bounded in number, size and time) and returns the whole transport segment once every
byte from offset 0 to the end of the last fragment is present.
"""

from __future__ import annotations

MAX_DATAGRAM = 65535


class Defragmenter:
    """Pieces of incomplete datagrams, keyed by (src, dst, proto, ident)."""

    def __init__(self, max_datagrams: int = 1024, timeout: float = 30.0) -> None:
        self.max_datagrams = max_datagrams
        self.timeout = timeout
        self._pending: dict[tuple, tuple[float, dict[int, bytes], list[int | None]]] = {}
        self.reassembled = 0
        self.abandoned = 0  # dropped incomplete: too old, too many, or over-size

    def add(self, key: tuple, ts: float, offset: int, more: bool, data: bytes) -> bytes | None:
        """Add one fragment's payload; the whole transport segment when it is complete."""
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.max_datagrams:
                self._expire(ts)
                if len(self._pending) >= self.max_datagrams:
                    del self._pending[next(iter(self._pending))]
                    self.abandoned += 1
            entry = (ts, {}, [None])
            self._pending[key] = entry
        _, pieces, total = entry
        if offset + len(data) > MAX_DATAGRAM:
            del self._pending[key]
            self.abandoned += 1
            return None
        if offset not in pieces or len(pieces[offset]) < len(data):
            pieces[offset] = data
        if not more:
            total[0] = offset + len(data)
        if total[0] is None:
            return None
        have = 0
        for off in sorted(pieces):
            if off > have:
                return None  # a hole
            have = max(have, off + len(pieces[off]))
        if have < total[0]:
            return None
        buf = bytearray(total[0])
        for off in sorted(pieces):
            if off >= total[0]:
                break  # past the end the last fragment set: not part of this datagram
            piece = pieces[off][: total[0] - off]
            buf[off:off + len(piece)] = piece
        del self._pending[key]
        self.reassembled += 1
        return bytes(buf)

    def _expire(self, now: float) -> None:
        old = [k for k, (t, _, _) in self._pending.items() if now - t > self.timeout]
        for k in old:
            del self._pending[k]
        self.abandoned += len(old)
