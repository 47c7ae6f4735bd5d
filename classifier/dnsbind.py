"""Bind each DNS response to the query it answers, so a forged or stray answer names nothing.

A response is believed only when it answers a query this input showed: the query's 5-tuple
reversed (client address and port, resolver address and port) in the same tunnel (subscribers of
different tunnels may share addresses: ``tunnels.client_scope``), the same transaction id and the
same question (the name compared case-insensitively, as DNS 0x20 allows; names are lowercased by
the parser), and only once. Anything else is counted by reason and never becomes a
medium-confidence name:

* ``dns-unsolicited``: no query is pending on that 5-tuple: none was sent, the response came
  before it, from another host or port, or to another client or client port;
* ``dns-txid-mismatch``: a query is pending on the 5-tuple, but with another transaction id;
* ``dns-question-mismatch``: a query with this id is pending on the 5-tuple, for another question;
* ``dns-duplicate-response``: the query was already answered, and this response resolves the
  same names to the same addresses (TTLs and order may differ);
* ``dns-conflicting-response``: the query was already answered, with other addresses (one of the
  two was forged, and the capture cannot tell which): the first answer is withdrawn as well;
* ``dns-late-response``: the query had timed out unanswered.

Pending queries time out after ``timeout`` seconds of packet time (``dns-query-unanswered``) and
at most ``max_pending`` are kept, oldest dropped first (``dns-query-evicted``); answered and
timed-out queries are remembered for as long again, so duplicates and late answers are told apart.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass

from .dnscache import Resolution
from .inspect.dns import Message

BOUND = "bound"
UNSOLICITED = "dns-unsolicited"
TXID_MISMATCH = "dns-txid-mismatch"
QUESTION_MISMATCH = "dns-question-mismatch"
DUPLICATE = "dns-duplicate-response"
CONFLICTING = "dns-conflicting-response"
LATE = "dns-late-response"
UNANSWERED = "dns-query-unanswered"
EVICTED = "dns-query-evicted"

# Why a response was not bound, in words, for notes and evidence.
EXPLAIN = {
    UNSOLICITED: "no query was pending on its 5-tuple",
    TXID_MISMATCH: "the query pending on its 5-tuple has another transaction id",
    QUESTION_MISMATCH: "the query with its id asked another question",
    DUPLICATE: "its query was already answered",
    CONFLICTING: "its query was already answered differently",
    LATE: "its query had timed out",
}

# client address, client port, resolver address, port, tunnel scope (None: no tunnel)
Endpoints = tuple[bytes, int, bytes, int, tuple | None]
_ENDS = 5  # key[:_ENDS] are the endpoints, key[:_TXID] the endpoints and the transaction id
_TXID = 6
# Endpoints + (transaction id,) + (name, qtype) of each question: flat, so the garbage collector
# stops tracking the (tens of thousands of) keys alive at once.
_Key = tuple


@dataclass(frozen=True, slots=True)
class Contested:
    """The earlier answer to a query that then got a different one: to be withdrawn."""

    ts: float
    resolutions: tuple[Resolution, ...]


# A closed query: (when it closed, True if answered (False: timed out), *what the answer resolved,
# flattened by _flatten). Flat tuples of atomic values on purpose: tens of thousands live at once,
# and the garbage collector stops tracking such tuples.
_Closed = tuple


def _key(ends: Endpoints, msg: Message) -> _Key:
    """What a response must share with its query (the question name is lowercased by the parser)."""
    if len(msg.questions) == 1:
        q = msg.questions[0]
        return (*ends, msg.id, q.name, q.qtype)
    return (*ends, msg.id, *[x for q in msg.questions for x in (q.name, q.qtype)])


def _flatten(resolutions: list[Resolution]) -> tuple:
    """(queried name, number of addresses, address, lifetime, address, lifetime...) per question."""
    flat: list = []
    for r in resolutions:
        flat += (r.chain[0], len(r.addresses))
        for addr, ttl in r.addresses:
            flat += (addr, ttl if r.cname_ttl is None else min(ttl, r.cname_ttl))
    return tuple(flat)


def _unflatten(flat: tuple) -> tuple[Resolution, ...]:
    """The resolutions ``_flatten`` kept (the CNAME chain is reduced to the queried name)."""
    out = []
    i = 0
    while i < len(flat):
        name, n = flat[i], flat[i + 1]
        pairs = flat[i + 2 : i + 2 + 2 * n]
        out.append(Resolution((name,), tuple(zip(pairs[::2], pairs[1::2], strict=True)), None, ()))
        i += 2 + 2 * n
    return tuple(out)


def _resolved(flat: tuple) -> frozenset:
    """What an answer resolved, without lifetimes and order: two copies of one answer compare equal."""
    return frozenset((r.chain[0], addr) for r in _unflatten(flat) for addr, _life in r.addresses)


class QueryTable:
    """Queries waiting for their response, and the recently closed ones; counts every outcome.

    Each table keeps a queue of (time, key) in arrival order beside it, so expiry and eviction
    take the oldest entries in constant time (an entry whose key was answered or forgotten since is
    skipped). Expiry runs at most once per second of packet time.
    """

    def __init__(self, timeout: float = 30.0, max_pending: int = 65536) -> None:
        # 30 s: a stub resolver has given up by then (glibc: 5 s x 2 attempts x up to 3 servers).
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[_Key, float] = {}
        self._pending_order: deque[tuple] = deque()  # (time, *key)
        # pending queries per endpoints, and per (*endpoints, transaction id)
        self._per_endpoints: dict[Endpoints, int] = {}
        self._per_txid: dict[tuple, int] = {}
        self._closed: dict[_Key, _Closed] = {}
        self._closed_order: deque[tuple] = deque()  # (time, *key)
        self._next_expiry = -math.inf
        self.counts: Counter[str] = Counter()
        self.queries = 0

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        """Forget every query (a new, unrelated input starts); the counts stay."""
        for table in (
            self._pending,
            self._pending_order,
            self._per_endpoints,
            self._per_txid,
            self._closed,
            self._closed_order,
        ):
            table.clear()
        self._next_expiry = -math.inf

    def query(self, ends: Endpoints, msg: Message, ts: float) -> None:
        """A client sent ``msg``: its response is now expected.

        A retransmission does not renew the wait: the client gives up ``timeout`` after its first try.
        """
        if not msg.questions:
            return  # nothing a response could be checked against
        if ts >= self._next_expiry:
            self._expire(ts)
        self.queries += 1
        key = _key(ends, msg)
        pending = self._pending
        if key in pending:
            return
        if len(pending) >= self.max_pending:
            self._evict_oldest()
        per, txid = self._per_endpoints, key[:_TXID]
        per[ends] = per.get(ends, 0) + 1
        self._per_txid[txid] = self._per_txid.get(txid, 0) + 1
        pending[key] = ts
        self._queue(self._pending_order, pending, ts, key)
        self._closed.pop(key, None)

    def answer(
        self, ends: Endpoints, msg: Message, ts: float, resolutions: list[Resolution]
    ) -> tuple[str, Contested | None]:
        """Bind a response: (``bound`` or the reason it is not, the earlier answer to withdraw).

        ``resolutions`` are what this response resolved: kept with its query, so that a second,
        different answer to the same query can withdraw them (returned once, with ``conflicting``).
        """
        if ts >= self._next_expiry:
            self._expire(ts)
        key = _key(ends, msg)
        if key in self._pending:
            self._drop(key)
            self._close(key, (ts, True, *_flatten(resolutions)))
            self.counts[BOUND] += 1
            return BOUND, None
        closed = self._closed.get(key)
        if closed is not None:
            closed_ts, answered = closed[0], closed[1]
            if not answered:
                return self._count(LATE), None
            if _resolved(closed[2:]) == _resolved(_flatten(resolutions)):
                return self._count(DUPLICATE), None
            self._closed[key] = (closed_ts, True)  # withdrawn once
            earlier = _unflatten(closed[2:])
            return self._count(CONFLICTING), Contested(closed_ts, earlier) if earlier else None
        if key[:_TXID] in self._per_txid:
            return self._count(QUESTION_MISMATCH), None
        if ends in self._per_endpoints:
            return self._count(TXID_MISMATCH), None
        return self._count(UNSOLICITED), None

    def _count(self, outcome: str) -> str:
        self.counts[outcome] += 1
        return outcome

    def _drop(self, key: _Key) -> None:
        del self._pending[key]
        per, ends = self._per_endpoints, key[:_ENDS]
        n = per[ends]
        if n > 1:
            per[ends] = n - 1
        else:
            del per[ends]
        per, txid = self._per_txid, key[:_TXID]
        n = per[txid]
        if n > 1:
            per[txid] = n - 1
        else:
            del per[txid]

    def _evict_oldest(self) -> None:
        pending, order = self._pending, self._pending_order
        while order:
            entry = order.popleft()
            key = entry[1:]
            if pending.get(key) == entry[0]:
                self._drop(key)
                self.counts[EVICTED] += 1
                return

    def _expire(self, now: float) -> None:
        """Time out queries (and forget closed ones) older than ``timeout``, oldest first."""
        self._next_expiry = now + 1.0
        limit = now - self.timeout
        pending, order = self._pending, self._pending_order
        while order and order[0][0] < limit:
            entry = order.popleft()
            ts, key = entry[0], entry[1:]
            if pending.get(key) == ts:  # not answered since
                self._drop(key)
                self.counts[UNANSWERED] += 1
                self._close(key, (ts + self.timeout, False))
        closed, order = self._closed, self._closed_order
        while order and order[0][0] < limit:
            entry = order.popleft()
            key = entry[1:]
            found = closed.get(key)
            if found is not None and found[0] == entry[0]:
                del closed[key]

    def _close(self, key: _Key, entry: _Closed) -> None:
        closed, order = self._closed, self._closed_order
        while len(closed) >= self.max_pending and order:
            oldest = order.popleft()
            old = oldest[1:]
            if (found := closed.get(old)) is not None and found[0] == oldest[0]:
                del closed[old]
        closed[key] = entry
        self._queue(order, closed, entry[0], key)

    def _queue(self, order: deque, table: dict, ts: float, key: _Key) -> None:
        """Append to an arrival-order queue; rebuild it from its table when stale entries (keys
        answered or forgotten since) make up most of it, so it stays bounded like the table."""
        order.append((ts, *key))
        if len(order) > 2 * self.max_pending and len(order) > 2 * len(table):
            live = [(v[0] if isinstance(v, tuple) else v, *k) for k, v in table.items()]
            order.clear()
            order.extend(sorted(live, key=lambda e: e[0]))
