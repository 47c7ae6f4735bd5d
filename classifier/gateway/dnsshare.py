"""DNS answers and remembered names, shared between the queue workers of one gateway.

The kernel spreads packets over the queues by their addresses, so a client's DNS exchange with
its resolver and its later connection to the answered address usually reach different workers.
The connection may carry no name of its own (no SNI, no Host): then the DNS answer is what names
it, and a verdict must not depend on which queue the answer happened to cross. Each worker
therefore publishes what its caches learn, and the supervisor relays it to the other workers.

Only answers bound to their query (``classifier.dnsbind``) are shared: a response bound to no
query stays in its worker's cache of low-confidence names. A DNS exchange crosses one worker
(query and response have the same address pair, hence the same queue), so the binding is decided
there; when a second, different response to the same query withdraws a believed answer, the
withdrawal is shared too, so no worker keeps naming flows with a contested answer. Every message
carries the tunnel the answer was seen in (``tunnels.client_scope``), so a worker names only flows
of that tunnel with it.
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

    def add_resolutions(
        self,
        resolutions: list[Resolution] | tuple[Resolution, ...],
        ts: float,
        client: bytes,
        unbound: str | None = None,
        scope: tuple | None = None,
    ) -> int:
        recorded = super().add_resolutions(resolutions, ts, client, unbound, scope)
        if resolutions:
            self._publish(channel.DNS, (resolutions, ts, client, unbound, scope))
        return recorded

    def withdraw(self, resolutions: tuple[Resolution, ...], client: bytes, scope: tuple | None = None) -> int:
        removed = super().withdraw(resolutions, client, scope)
        self._publish(channel.WITHDRAW, (resolutions, client, scope))
        return removed

    def remember(
        self, addr: bytes, name: str, ts: float, client: bytes, lifetime: float, scope: tuple | None = None
    ) -> None:
        super().remember(addr, name, ts, client, lifetime, scope)
        self._publish(channel.NAME, (addr, name, ts, client, lifetime, scope))

    def learn(self, kind: bytes, args: tuple) -> None:
        """What another worker published (the arguments of the call it made)."""
        if kind == channel.DNS:
            super().add_resolutions(*args)
        elif kind == channel.NAME:
            super().remember(*args)
        elif kind == channel.WITHDRAW:
            super().withdraw(*args)
