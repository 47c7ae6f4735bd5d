"""DNS answers and remembered names, shared between the queue workers of one gateway.

The kernel spreads packets over the queues by their addresses, so a client's DNS exchange with
its resolver and its later connection to the answered address usually reach different workers.
The connection may carry no name of its own (no SNI, no Host): then the DNS answer is what names
it, and a verdict must not depend on which queue the answer happened to cross. Each worker
therefore publishes what its caches learn, and the supervisor relays it to the other workers.
"""

from __future__ import annotations

from collections.abc import Callable

from classifier.dnscache import DnsCache, Resolution

from . import channel


class SharedDnsCache(DnsCache):
    """A DnsCache that publishes each answer (``channel.DNS``) or name (``channel.NAME``) it learns
    first-hand, and takes in the ones other workers learned without publishing them again."""

    def __init__(self, publish: Callable[[bytes, tuple], None]) -> None:
        super().__init__()
        self._publish = publish

    def add_resolutions(self, resolutions: list[Resolution], ts: float, client: bytes) -> int:
        recorded = super().add_resolutions(resolutions, ts, client)
        if resolutions:
            self._publish(channel.DNS, (resolutions, ts, client))
        return recorded

    def remember(self, addr: bytes, name: str, ts: float, client: bytes, lifetime: float) -> None:
        super().remember(addr, name, ts, client, lifetime)
        self._publish(channel.NAME, (addr, name, ts, client, lifetime))

    def learn(self, kind: bytes, args: tuple) -> None:
        """What another worker published (the arguments of the call it made)."""
        if kind == channel.DNS:
            super().add_resolutions(*args)
        elif kind == channel.NAME:
            super().remember(*args)
