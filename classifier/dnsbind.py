"""Bind each DNS response to the query it answers, so a forged or stray answer names nothing.

A response is believed only when it answers a query this input showed: the query's 5-tuple
reversed (client address and port, resolver address and port), the same transaction id and the
same question (the name compared case-insensitively, as DNS 0x20 allows; names are lowercased by
the parser), and only once. Anything else is counted by reason and never becomes a
medium-confidence name:

* ``dns-unsolicited``: no query is pending on that 5-tuple: none was sent, the response came
  before it, from another host or port, or to another client or client port;
* ``dns-txid-mismatch``: a query is pending on the 5-tuple, but with another transaction id;
* ``dns-question-mismatch``: a query with this id is pending on the 5-tuple, for another question;
* ``dns-duplicate-response``: the query was already answered, and this response says the same;
* ``dns-conflicting-response``: the query was already answered, differently (one of the two was
  forged, and the capture cannot tell which): the first answer is withdrawn as well;
* ``dns-late-response``: the query had timed out unanswered.

Pending queries time out after ``timeout`` seconds of packet time (``dns-query-unanswered``) and
at most ``max_pending`` are kept, oldest dropped first (``dns-query-evicted``); answered and
timed-out queries are remembered for as long again, so duplicates and late answers are told apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .dnscache import Resolution
from .inspect.dns import TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_HTTPS, TYPE_SVCB, Message

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

# The records whose content two answers to one query must share (TTLs and order may differ).
_ANSWER_TYPES = frozenset({TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_HTTPS, TYPE_SVCB})

Endpoints = tuple[bytes, int, bytes, int]  # client address, client port, resolver address, port
Question = tuple[tuple[str, int], ...]  # (name, qtype) of each question
_Key = tuple[Endpoints, int, Question]


@dataclass(slots=True)
class Closed:
    """A query no longer pending: answered (with what, and what that resolved) or timed out."""

    ts: float  # when it closed: answered, or timed out
    answered: bool
    content: frozenset = frozenset()
    resolutions: tuple[Resolution, ...] = ()


def question(msg: Message) -> Question:
    """The question section as the binding compares it."""
    return tuple((q.name, q.qtype) for q in msg.questions)


def answer_content(msg: Message) -> frozenset:
    """What a response says, without TTLs and order: two copies of one answer compare equal."""
    return frozenset((rr.name, rr.rtype, rr.rdata) for rr in msg.answers if rr.rtype in _ANSWER_TYPES)


class QueryTable:
    """Queries waiting for their response, and the recently closed ones; counts every outcome."""

    def __init__(self, timeout: float = 30.0, max_pending: int = 65536) -> None:
        # 30 s: a stub resolver has given up by then (glibc: 5 s x 2 attempts x up to 3 servers).
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[_Key, float] = {}  # insertion order is (roughly) packet-time order
        self._per_endpoints: Counter[Endpoints] = Counter()
        self._per_txid: Counter[tuple[Endpoints, int]] = Counter()
        self._closed: dict[_Key, Closed] = {}
        self.counts: Counter[str] = Counter()
        self.queries = 0

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        """Forget every query (a new, unrelated input starts); the counts stay."""
        self._pending.clear()
        self._per_endpoints.clear()
        self._per_txid.clear()
        self._closed.clear()

    def query(self, ends: Endpoints, msg: Message, ts: float) -> None:
        """A client sent ``msg``: its response is now expected (a retransmission renews the wait)."""
        if not msg.questions:
            return  # nothing a response could be checked against
        self._expire(ts)
        self.queries += 1
        key = (ends, msg.id, question(msg))
        if self._pending.pop(key, None) is None:
            if len(self._pending) >= self.max_pending:
                self._drop(next(iter(self._pending)))
                self.counts[EVICTED] += 1
            self._per_endpoints[ends] += 1
            self._per_txid[(ends, msg.id)] += 1
        self._closed.pop(key, None)
        self._pending[key] = ts

    def answer(
        self, ends: Endpoints, msg: Message, ts: float, resolutions: list[Resolution]
    ) -> tuple[str, Closed | None]:
        """Bind a response: (``bound`` or the reason it is not, the earlier answer to withdraw).

        ``resolutions`` are what this response resolved: kept with its query, so that a second,
        different answer to the same query can withdraw them (returned once, with ``conflicting``).
        """
        self._expire(ts)
        key = (ends, msg.id, question(msg))
        if key in self._pending:
            self._drop(key)
            self._close(key, Closed(ts, True, answer_content(msg), tuple(resolutions)))
            return self._count(BOUND), None
        closed = self._closed.get(key)
        if closed is not None:
            if not closed.answered:
                return self._count(LATE), None
            if closed.content == answer_content(msg):
                return self._count(DUPLICATE), None
            earlier = Closed(closed.ts, True, closed.content, closed.resolutions)
            closed.resolutions = ()
            return self._count(CONFLICTING), earlier
        if self._per_txid[(ends, msg.id)]:
            return self._count(QUESTION_MISMATCH), None
        if self._per_endpoints[ends]:
            return self._count(TXID_MISMATCH), None
        return self._count(UNSOLICITED), None

    def _count(self, outcome: str) -> str:
        self.counts[outcome] += 1
        return outcome

    def _drop(self, key: _Key) -> None:
        del self._pending[key]
        ends, txid, _q = key
        for counter, k in ((self._per_endpoints, ends), (self._per_txid, (ends, txid))):
            if counter[k] <= 1:
                del counter[k]
            else:
                counter[k] -= 1

    def _expire(self, now: float) -> None:
        """Time out queries (and forget closed ones) older than ``timeout``; lazily, oldest first."""
        limit = now - self.timeout
        pending = self._pending
        while pending:
            key = next(iter(pending))
            ts = pending[key]
            if ts >= limit:
                break
            self._drop(key)
            self.counts[UNANSWERED] += 1
            self._close(key, Closed(ts + self.timeout, False))
        closed = self._closed
        while closed:
            key = next(iter(closed))
            if closed[key].ts >= limit:
                break
            del closed[key]

    def _close(self, key: _Key, closed: Closed) -> None:
        if len(self._closed) >= self.max_pending:
            del self._closed[next(iter(self._closed))]
        self._closed[key] = closed
