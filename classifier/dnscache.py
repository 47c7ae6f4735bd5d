"""Addresses seen in DNS answers, mapped back to the name the client asked for.

A flow with no SNI or Host can still be named if the same input showed a DNS answer for its
server address: the cache follows the CNAME chain from the queried name to the A/AAAA records, so
``v16.tiktokcdn.com -> ...edgesuite.net -> a1.akamai.net -> 92.122.95.99`` maps the address back
to ``v16.tiktokcdn.com`` and keeps the chain (which shows the CDN). Entries live for their TTL in
packet time, but at least ``min_ttl`` seconds: a client uses an answer for the connection it
asked for even when the TTL is 0. The cache holds at most ``max_addresses`` addresses and
``max_public_names`` ECH public names (least recently answered dropped first, and counted): a
flood of answers costs bounded memory. Only answers bound to their query (``dnsbind``) go into
the scanner's main cache; the others go into a cache of their own, so they can neither shadow nor
evict a bound answer.

Answers are scoped by tunnel (``tunnels.client_scope``): an answer a client received inside a
tunnel names only flows of that tunnel, since subscribers in different GTP-U TEIDs or VXLAN VNIs may
share private addresses; an answer seen outside any tunnel names only untunnelled flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .errors import MalformedError
from .inspect.dns import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_HTTPS,
    TYPE_SVCB,
    EchConfig,
    Message,
    ServiceBinding,
    parse_svcb,
)

_MAX_CHAIN = 16
_MAX_NAMES_PER_ADDRESS = 8


class DnsAnswer(NamedTuple):
    """One answered address: which name it answered, through which chain, for whom, until when.

    A named tuple: every DNS answer and every flow with a name of its own (remember) makes one, and
    a tuple is built in a third of a frozen dataclass's time.
    """

    name: str  # the queried name
    chain: tuple[str, ...]  # queried name, then each CNAME target in order
    ts: float  # packet time of the answer
    expires: float  # ts + the smallest TTL along the chain (at least the cache's min_ttl)
    client: bytes  # address of the client that received the answer
    unbound: str | None = None  # why the response was bound to no query (dnsbind), if it was not
    scope: tuple | None = None  # the tunnel the client received it in (tunnels.client_scope)


@dataclass(frozen=True, slots=True)
class DnsMatch:
    """The answer chosen for a flow, and how many other live names share the address."""

    answer: DnsAnswer
    same_client: bool
    others: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one answered question resolved to."""

    chain: tuple[str, ...]  # queried name, then each CNAME target in order
    addresses: tuple[tuple[bytes, int], ...]  # (address, ttl) from A/AAAA and SVCB/HTTPS hints
    cname_ttl: int | None  # smallest TTL along the CNAME chain
    ech: tuple[EchConfig, ...]  # ECH configs published for a name of the chain (HTTPS records)


def resolve(msg: Message) -> tuple[list[Resolution], list[MalformedError]]:
    """Per question, the chain and addresses the answer section gives; plus unparsable SVCB rdata."""
    if not msg.questions or not msg.answers:
        return [], []
    cnames: dict[str, tuple[str, int]] = {}
    addrs: dict[str, list[tuple[bytes, int]]] = {}
    bindings: dict[str, list[ServiceBinding]] = {}
    errors: list[MalformedError] = []
    for rr in msg.answers:
        ttl = rr.ttl if rr.ttl < 0x80000000 else 0  # RFC 2181 8: top bit set means zero
        if rr.rtype == TYPE_CNAME and rr.value:
            cnames.setdefault(rr.name, (rr.value, ttl))
        elif (rr.rtype == TYPE_A and len(rr.rdata) == 4) or (rr.rtype == TYPE_AAAA and len(rr.rdata) == 16):
            addrs.setdefault(rr.name, []).append((bytes(rr.rdata), ttl))
        elif rr.rtype == TYPE_HTTPS or rr.rtype == TYPE_SVCB:
            try:
                sb = parse_svcb(rr.rdata)
            except MalformedError as err:
                errors.append(err)
                continue
            bindings.setdefault(rr.name, []).append(sb)
            hints = addrs.setdefault(sb.target or rr.name, [])
            hints.extend((a, ttl) for a in sb.ipv4hint + sb.ipv6hint)
    out = []
    for q in msg.questions:
        chain = [q.name]
        cname_ttl: int | None = None  # the smallest along the chain
        cur = q.name
        while cur in cnames and len(chain) < _MAX_CHAIN:
            cur, t = cnames[cur]
            cname_ttl = t if cname_ttl is None else min(cname_ttl, t)
            if cur in chain:
                break
            chain.append(cur)
        found = tuple(dict.fromkeys(pair for name in reversed(chain) for pair in addrs.get(name, ())))
        ech = tuple(cfg for name in chain for sb in bindings.get(name, ()) for cfg in sb.ech)
        out.append(Resolution(tuple(chain), found, cname_ttl, ech))
    return out, errors


class DnsCache:
    """address bytes -> recent answers for that address."""

    def __init__(
        self, max_addresses: int = 200_000, min_ttl: float = 10.0, max_public_names: int = 10_000
    ) -> None:
        self.max_addresses = max_addresses
        self.max_public_names = max_public_names
        self.min_ttl = min_ttl
        self._by_addr: dict[bytes, list[DnsAnswer]] = {}
        self.answers = 0
        self.dropped = 0  # addresses dropped at max_addresses
        self.dropped_public_names = 0  # ECH public names dropped at max_public_names
        # ECH public name -> (a name that published it, config_id): an outer SNI equal to one of
        # these is a public name, not the name the client is after.
        self.ech_public_names: dict[str, tuple[str, int]] = {}

    def __len__(self) -> int:
        return len(self._by_addr)

    def clear(self) -> None:
        """Forget every answer (a new, unrelated input starts)."""
        self._by_addr.clear()
        self.ech_public_names.clear()

    def add(self, msg: Message, ts: float, client: bytes, scope: tuple | None = None) -> int:
        """Record the addresses a response answered and the ECH public names it published."""
        if not msg.is_response:
            return 0
        return self.add_resolutions(resolve(msg)[0], ts, client, None, scope)

    def add_resolutions(
        self,
        resolutions: list[Resolution] | tuple[Resolution, ...],
        ts: float,
        client: bytes,
        unbound: str | None = None,
        scope: tuple | None = None,
    ) -> int:
        """Record what ``resolve`` found; returns how many addresses were recorded."""
        recorded = 0
        for r in resolutions:
            for addr, t in r.addresses:
                life = max(self.min_ttl, t if r.cname_ttl is None else min(r.cname_ttl, t))
                self._put(addr, r.chain[0], r.chain, ts, ts + life, client, unbound, scope)
                recorded += 1
            for cfg in r.ech:
                self._put_public_name(cfg.public_name, (r.chain[0], cfg.config_id))
        self.answers += recorded
        return recorded

    def _put_public_name(self, public_name: str, published: tuple[str, int]) -> None:
        names = self.ech_public_names
        if names.pop(public_name, None) is None and len(names) >= self.max_public_names:
            del names[next(iter(names))]
            self.dropped_public_names += 1
        names[public_name] = published  # re-inserted: the dict stays in least-recent order

    def withdraw(self, resolutions: tuple[Resolution, ...], client: bytes, scope: tuple | None = None) -> int:
        """Forget what an earlier response recorded for ``client`` in ``scope`` (it turned out to
        be contested)."""
        removed = 0
        for r in resolutions:
            name = r.chain[0]
            for addr, _t in r.addresses:
                lst = self._by_addr.get(addr)
                if not lst:
                    continue
                kept = [a for a in lst if a.name != name or a.client != client or a.scope != scope]
                removed += len(lst) - len(kept)
                if kept:
                    self._by_addr[addr] = kept
                else:
                    del self._by_addr[addr]
            for public, (published_for, _config_id) in list(self.ech_public_names.items()):
                if published_for == name:
                    del self.ech_public_names[public]
        return removed

    def remember(
        self, addr: bytes, name: str, ts: float, client: bytes, lifetime: float, scope: tuple | None = None
    ) -> None:
        """Record that ``client`` reached ``addr`` under ``name`` (from SNI or Host, not DNS)."""
        self._put(addr, name, (name,), ts, ts + lifetime, client, None, scope)

    def _put(
        self,
        addr: bytes,
        name: str,
        chain: tuple[str, ...],
        ts: float,
        expires: float,
        client: bytes,
        unbound: str | None,
        scope: tuple | None,
    ) -> None:
        """Record one answer (its fields: every flow with a name of its own remembers one, so the
        answer is built once, already merged with the one it extends)."""
        lst = self._by_addr.pop(addr, None)  # re-insert: keeps the dict in least-recent order
        if lst is None:
            lst = []
            if len(self._by_addr) >= self.max_addresses:
                oldest = next(iter(self._by_addr))
                del self._by_addr[oldest]
                self.dropped += 1
        elif lst:
            # The same name again for the same client extends the earlier entry, so a flow that
            # started under the earlier answer (and is decided late) still finds it.
            last = lst[-1]
            if last.name == name and last.client == client and last.scope == scope:
                # The usual case, the entry filed last: this is the only insert and it drops any
                # earlier entry of (name, client, scope), so no other one matches, and replacing
                # it in place keeps the order the general path below gives.
                del lst[: max(0, len(lst) - _MAX_NAMES_PER_ADDRESS)]
                lst[-1] = DnsAnswer(name, chain, last.ts, max(last.expires, expires), client, unbound, scope)
                self._by_addr[addr] = lst
                return
            extended = False
            for a in lst:
                if a.name == name and a.client == client and a.scope == scope:
                    ts = a.ts
                    expires = max(a.expires, expires)
                    extended = True
            if extended:
                lst = [a for a in lst if a.name != name or a.client != client or a.scope != scope]
            del lst[: max(0, len(lst) - _MAX_NAMES_PER_ADDRESS + 1)]
        lst.append(DnsAnswer(name, chain, ts, expires, client, unbound, scope))
        self._by_addr[addr] = lst

    def lookup(self, addr: bytes, ts: float, client: bytes, scope: tuple | None = None) -> DnsMatch | None:
        """The answer that best explains a flow to ``addr`` starting at ``ts`` from ``client`` in
        the tunnel ``scope``.

        Only answers seen in the same scope, at or before ``ts`` and still within their TTL count.
        An answer to the same client wins over another client's; among equals the most recent wins.
        """
        lst = self._by_addr.get(addr)
        if not lst:
            return None
        live = [a for a in lst if a.ts <= ts <= a.expires and a.scope == scope]
        if not live:
            return None
        mine = [a for a in live if a.client == client]
        pool = mine or live
        best = max(pool, key=lambda a: a.ts)
        others = tuple(sorted({a.name for a in live if a.name != best.name}))
        return DnsMatch(best, bool(mine), others)
