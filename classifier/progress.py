"""A one-line progress counter on stderr for long reads whose total is unknown (an MMDB, MRT RIBs).

Only on a terminal (a log file gets no carriage returns) and at most a few redraws a second, so
counting costs the loop one integer addition and a comparison; ``--no-progress`` turns it off.
"""

from __future__ import annotations

import sys
import time
from typing import IO

_EVERY = 4096  # items between clock reads
_REDRAW = 0.25  # seconds between redraws


class Progress:
    """``with Progress("reading x", "networks") as p: ... p.tick()``: "reading x: 120000 networks, 3 s"."""

    def __init__(
        self, label: str, unit: str, enabled: bool = True, out: IO[str] | None = None, divisor: int = 1
    ) -> None:
        self.out = out if out is not None else sys.stderr
        self.label = label
        self.unit = unit
        self.divisor = divisor  # counted items per shown unit (bytes counted, MiB shown: 1 << 20)
        self.count = 0
        self._next = _EVERY
        self._start = time.monotonic()
        self._drawn = 0.0
        self.enabled = enabled and _isatty(self.out)

    def tick(self, n: int = 1) -> None:
        self.count += n
        if self.count >= self._next:
            self._next = self.count + _EVERY
            if self.enabled:
                now = time.monotonic()
                if now - self._drawn >= _REDRAW:
                    self._drawn = now
                    self._draw(now)

    def _draw(self, now: float) -> None:
        shown = self.count // self.divisor
        self.out.write(f"\r{self.label}: {shown} {self.unit}, {now - self._start:.0f} s\x1b[K")
        self.out.flush()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._draw(time.monotonic())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.out.write("\r\x1b[K")  # the line goes away: the command's own output follows
            self.out.flush()


def _isatty(out: IO[str]) -> bool:
    try:
        return out.isatty()
    except (OSError, ValueError, AttributeError):
        return False
