"""Reactive mode: monitor, plus an nft set of blocked flow tuples.

Nothing waits for us: packets are forwarded while we look at copies. When a flow is decided
block, its tuples go into the ``block`` set at once (the kernel then drops it, resetting TCP) and
both ends get a TCP reset computed from the packet that decided it. The packets before the
decision have passed; that is the price of never being in the forwarding path.
"""

from __future__ import annotations

import time

from .monitor import MonitorEngine


class ReactiveEngine(MonitorEngine):
    """Monitor loop that blocks decided flows through the kernel's block set."""

    mode = "reactive"
    counts_from_kernel = False  # the capture sees blocked packets before the kernel drops them

    def __init__(self, *args, resetter=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resetter = resetter

    def act(self, flow, action: str, packet: bytes | None) -> None:
        if action != "block" or self.sets is None:
            return
        self.sets.add(flow, "block", time.time(), immediate=True)
        self.stats.offloaded += 1
        if self.resetter is not None and flow.proto == 6 and packet is not None and self.cfg.resets:
            sent = self.resetter.reset(packet, forwarded=True)
            self.stats.resets += sent
            if sent:
                self.reset_sent(flow, time.time())
