"""The routes that concern an operator, their live intervals, and the timeline of their changes.

Only routes whose AS_PATH carries an operator ASN are kept (plus the set of peers that have one,
which the reader asks to know whether a plain update can touch them): a full table costs memory in
proportion to the operator routes in it, not to its size.

A route is keyed by (peer, prefix, ADD-PATH id). One :class:`RouteRecord` exists per key and
AS_PATH: announcing the same path again extends it, a different path closes it and opens another
(a path change), a withdrawal or the peer's session leaving Established closes it. RIB entries open
records too (from their originated time, seen until the dump), without timeline events: a RIB is a
snapshot, not a change. Inputs share one state, so a RIB followed by the updates after it, or a
day of update files, gives one timeline; give them in time order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .aspath import PathClassifier, PathInfo, text
from .attributes import NO_ATTRIBUTES, RouteAttributes, from_mrtparse
from .updates import Peer, SessionState, prefix_key

ANNOUNCE = "announce"
PATH_CHANGE = "path-change"
REPLACED = "replaced"  # the operator path was replaced by one without any operator ASN
WITHDRAW = "withdraw"
SESSION_DOWN = "session-down"
POLICY_CHANGE = "policy-change"

RouteKey = tuple[int | None, str, str, int | None]  # peer ASN, peer address, prefix, path id


@dataclass(slots=True)
class RouteRecord:
    """One path of one route: when it was live and how often it was announced."""

    file: str
    source: str  # "rib" or "update"
    prefix: str
    peer_asn: int | None
    peer_ip: str
    path_id: int | None
    info: PathInfo
    first_seen: float
    last_seen: float
    intervals: list[list[float | None]] = field(default_factory=list)  # [start, end or None]
    announcements: int = 1
    withdrawals: int = 0
    end: str = "live"  # live, withdrawn, replaced, session-down
    attributes: RouteAttributes = NO_ATTRIBUTES  # of the latest announcement of this path


@dataclass(slots=True)
class Event:
    """A change of an operator route. ``record`` is the route it concerns (the new path for an
    announcement or path change, the ended one otherwise); ``previous`` the path it replaced."""

    time: float
    kind: str
    file: str
    record: RouteRecord
    previous: RouteRecord | None = None
    as_path: str | None = None  # the new path of a REPLACED event
    detail: str = ""
    app: str | None = None  # a POLICY_CHANGE concerns one app's provisions


class RouteTable:
    """Receives announcements, withdrawals and session changes; keeps operator routes only."""

    def __init__(self, classifier: PathClassifier, local_asn: int | None = None) -> None:
        self.classifier = classifier
        self.local_asn = local_asn
        # sessions: the BGP4MP state changes and the recording router's ASN, per peer
        self.state_changes: dict[Peer, list[SessionState]] = {}
        self.session_local: dict[Peer, int | None] = {}
        # --local-asn on sessions another AS recorded: operator routes per (peer, recording ASN)
        self.foreign: Counter[tuple[Peer, int]] = Counter()
        self.live: dict[RouteKey, RouteRecord] = {}
        self.records: list[RouteRecord] = []
        self.events: list[Event] = []
        self._peer_prefixes: dict[Peer, Counter[bytes]] = {}
        self._by_path: dict[tuple[RouteKey, PathInfo], RouteRecord] = {}
        self.data_end: float | None = None

    # -- the reader's interface ---------------------------------------------------------------

    def live_prefixes(self, peer: Peer) -> Counter[bytes]:
        return self._peer_prefixes.get(peer) or Counter()

    def announce(
        self,
        file: str,
        source: str,
        when: float,
        peer: Peer,
        prefix: str,
        path_id: int | None,
        path: tuple,
        seen: float,
        attributes: Any = None,
        local_asn: int | None = None,
    ) -> None:
        self._saw(seen)
        key = (peer[0], peer[1], prefix, path_id)
        current = self.live.get(key)
        if current is None and not self.classifier.concerns(path):
            return
        if local_asn is not None:
            self.session_local[peer] = local_asn
        viewpoint = self.local_asn if self.local_asn is not None else peer[0]
        # a session another AS recorded whose path does not start with --local-asn: not its view
        foreign = (
            self.local_asn is not None
            and local_asn is not None
            and local_asn != self.local_asn
            and peer[0] != self.local_asn
            and (not path or path[0] != self.local_asn)
        )
        info = self.classifier.classify(path, viewpoint, foreign)
        if info is not None and foreign and local_asn is not None:
            self.foreign[(peer, local_asn)] += 1
        if current is not None:
            if info is not None and current.info is info:
                current.announcements += 1
                current.last_seen = max(current.last_seen, seen)
                if attributes is not None:
                    current.attributes = from_mrtparse(attributes)
                return
            self._close(current, when, "replaced")
            if info is None:
                self._event(when, REPLACED, file, current, as_path=text(path), emit=source == "update")
                return
            record = self._open(key, file, source, when, seen, info, attributes)
            self._event(when, PATH_CHANGE, file, record, previous=current, emit=source == "update")
            return
        if info is None:
            return
        record = self._open(key, file, source, when, seen, info, attributes)
        self._event(when, ANNOUNCE, file, record, emit=source == "update")

    def seen_until(self, when: float) -> None:
        self._saw(when)

    def withdraw(self, file: str, when: float, peer: Peer, prefix: str, path_id: int | None) -> None:
        self._saw(when)
        current = self.live.get((peer[0], peer[1], prefix, path_id))
        if current is None:
            return
        current.withdrawals += 1
        self._close(current, when, "withdrawn")
        self._event(when, WITHDRAW, file, current)

    def session_down(self, file: str, when: float, peer: Peer, state: str) -> None:
        self._saw(when)
        if not self.live_prefixes(peer):
            return
        for key in [k for k in self.live if (k[0], k[1]) == peer]:
            current = self.live[key]
            self._close(current, when, "session-down")
            self._event(when, SESSION_DOWN, file, current, detail=f"session went to {state}")

    def session_state(self, file: str, event: SessionState) -> None:
        self._saw(event.when)
        self.state_changes.setdefault(event.peer, []).append(event)
        if event.local_asn is not None:
            self.session_local[event.peer] = event.local_asn

    # -- results ------------------------------------------------------------------------------

    def finish(self) -> None:
        """Routes still live were live until the last instant of the data."""
        if self.data_end is None:
            return
        for record in self.live.values():
            record.last_seen = max(record.last_seen, self.data_end)
        self.events.sort(key=lambda e: e.time)

    def intervals(self, record: RouteRecord) -> Iterator[tuple[float, float]]:
        """The record's live intervals with open ends closed at the end of the data."""
        end_of_data = self.data_end if self.data_end is not None else record.last_seen
        for start, end in record.intervals:
            assert start is not None
            yield start, end if end is not None else max(end_of_data, start)

    # -- internals ----------------------------------------------------------------------------

    def _saw(self, when: float) -> None:
        if self.data_end is None or when > self.data_end:
            self.data_end = when

    def _open(
        self, key: RouteKey, file: str, source: str, when: float, seen: float, info: PathInfo, attributes: Any
    ) -> RouteRecord:
        # a path that comes back (announce, withdraw, announce again) continues its record
        record = self._by_path.get((key, info))
        if record is None:
            record = RouteRecord(file, source, key[2], key[0], key[1], key[3], info, when, max(when, seen))
            self.records.append(record)
            self._by_path[(key, info)] = record
        else:
            record.announcements += 1
            record.last_seen = max(record.last_seen, seen)
        if attributes is not None:
            record.attributes = from_mrtparse(attributes)
        record.intervals.append([when, None])
        record.end = "live"
        self.live[key] = record
        self._peer_prefixes.setdefault((key[0], key[1]), Counter())[prefix_key(key[2])] += 1
        return record

    def _close(self, record: RouteRecord, when: float, end: str) -> None:
        key = (record.peer_asn, record.peer_ip, record.prefix, record.path_id)
        del self.live[key]
        live = self._peer_prefixes[(key[0], key[1])]
        live[prefix_key(key[2])] -= 1
        if not live[prefix_key(key[2])]:
            del live[prefix_key(key[2])]
        record.intervals[-1][1] = when
        record.last_seen = max(record.last_seen, when)
        record.end = end

    def _event(
        self,
        when: float,
        kind: str,
        file: str,
        record: RouteRecord,
        previous: RouteRecord | None = None,
        as_path: str | None = None,
        detail: str = "",
        emit: bool = True,
    ) -> None:
        if emit:
            self.events.append(Event(when, kind, file, record, previous, as_path, detail))
