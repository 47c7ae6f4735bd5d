"""Bidirectional flows and the table that holds them.

A flow has one dict entry, under its 5-tuple written from the side with the higher port (from
the higher address when both ports are equal), so both directions find it with one integer
comparison and one dict probe; the packet's direction follows from comparing its source port (and
address, when both ports are equal) with the flow's client side. The client is the sender of the
first SYN (the receiver of a SYN-ACK), else of the first packet.

Timeouts run in packet time. Expiry is lazy: each live flow sits in exactly one time bucket, for
the instant it could expire at; a sweep looks only at buckets that are due and re-files flows that
saw traffic since, so a sweep costs in proportion to the flows that are due, not to the table
size. The table has a hard cap on live flows; at the cap the least recently active flows are
evicted (and reported, with ``end_reason`` "evicted").

Memory is bounded by the live flows: a flow that ends leaves its bucket and the dict at once, so
after ``on_end`` returns the table holds no reference to it. What only some flows need (inspection
streams, facts, notes) is allocated when first used, and streams go as soon as the flow is
decided: a live flow costs well under 1 KiB (``benchmarks/flood.py`` measures it).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING

from .facts import NO_FACTS, FlowFacts, proto_only
from .reassembly import Stream
from .tunnels import Tunnel, tunnel_key

if TYPE_CHECKING:  # types only: what a decided flow holds
    from .evidence import Attribution
    from .policy import Decision

# Flow stages.
INSPECTING = 0  # facts still being gathered: packets go through inspection
DECIDED = 1  # verdict taken: packets only update counters (DNS flows still feed the cache)

DEFAULT_MAX_FLOWS = 500_000
MAX_NOTES = 8  # inspection problems kept per flow


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Flow-table settings (seconds of packet time)."""

    idle_tcp: float = 300.0
    idle_udp: float = 60.0
    closed_tcp: float = 10.0  # after both FINs or a RST: time left for stray packets
    max_flows: int = DEFAULT_MAX_FLOWS
    inspect_bytes: int = 16384  # first bytes kept per direction for inspection
    inspect_segments: int = 24  # payload segments per direction before inspection gives up
    sweep_granularity: float = 1.0


class Flow:
    """One bidirectional conversation; counters are per direction (c2s = client to server)."""

    __slots__ = (
        "attribution",
        "bucket",
        "c2s_bytes",
        "c2s_pkts",
        "client",
        "client_isn",
        "client_port",
        "decision",
        "dns_client",
        "end_reason",
        "ended",
        "facts",
        "file",
        "fin",
        "first_packet",
        "first_ts",
        "id",
        "iface",
        "inspecting",
        "key",
        "last_ts",
        "neighbour",
        "notes",
        "part",
        "proto",
        "s2c_bytes",
        "s2c_pkts",
        "server",
        "server_isn",
        "server_port",
        "stage",
        "streams",
        "tunnel",
        "vlan",
    )
    # The partition that reports the flow: set only by a ``scan --workers`` partition's table
    # (partition._PartTable), which reads it at every end and DNS message instead of a dict probe.
    part: int

    def __init__(
        self, fid: int, proto: int, client: bytes, cport: int, server: bytes, sport: int, ts: float
    ) -> None:
        self.id = fid
        self.proto = proto
        self.client = client
        self.client_port = cport
        self.server = server
        self.server_port = sport
        self.first_ts = ts
        self.last_ts = ts
        self.c2s_pkts = 0
        self.s2c_pkts = 0
        self.c2s_bytes = 0
        self.s2c_bytes = 0
        self.fin = 0  # bit 1: client FIN, bit 2: server FIN, bit 4: RST
        self.stage = INSPECTING
        self.inspecting = True  # packets go through inspection: not yet decided, or a DNS flow
        self.streams: list[Stream] | None = None  # made when the first payload arrives
        # Sequence numbers of each side's SYN, kept until payload makes the streams.
        self.client_isn: int | None = None
        self.server_isn: int | None = None
        self.facts: FlowFacts = NO_FACTS  # shared and read-only until own_facts() gives the flow its own
        self.notes: Sequence[str] = ()
        self.attribution: Attribution | None = None  # set once, when the flow is decided
        self.decision: Decision | None = None  # set with the attribution
        self.end_reason: str | None = None
        self.ended = False
        self.file: str | None = None
        self.first_packet = 0  # number of the flow's first packet in its input (from 1)
        self.vlan: tuple[int, ...] | None = None  # VLAN ids of the first packet, outermost first
        self.iface: str | None = None
        self.neighbour: str | None = None  # link-layer next hop seen on the server side (MAC)
        self.dns_client = False  # flow carries DNS: its messages are parsed even after the decision
        self.bucket: _Bucket | None = None  # the timeout bucket the table filed the flow in
        # Encapsulation layers the flow came through (outermost first, outer source on the client
        # side); part of the flow's key. None for most flows.
        self.tunnel: tuple[Tunnel, ...] | None = None
        self.key: tuple | None = None  # its flow_key() in the table that holds it (kept: ending
        # a flow then costs no second key)

    def add_packets(self, from_client: bool, packets: int, size: int) -> None:
        """Count packets to one direction (slow paths; the per-packet path does this inline)."""
        if from_client:
            self.c2s_pkts += packets
            self.c2s_bytes += size
        else:
            self.s2c_pkts += packets
            self.s2c_bytes += size

    def own_facts(self) -> FlowFacts:
        """The flow's facts, which it may change (copied from the shared ones on first use)."""
        facts = self.facts
        if type(facts) is not FlowFacts:
            facts = self.facts = facts.copy()
        return facts

    def set_app_proto(self, kind: str) -> None:
        """Record what the client's first bytes were; a flow with no other facts shares them."""
        facts = self.facts
        if type(facts) is FlowFacts:
            facts.app_proto = kind
        else:  # shared facts hold nothing but app_proto
            self.facts = proto_only(kind)

    def add_note(self, text: str) -> None:
        """Keep a problem met while inspecting (the first MAX_NOTES of them)."""
        notes = self.notes
        if type(notes) is not list:
            notes = self.notes = list(notes)
        if len(notes) < MAX_NOTES:
            notes.append(text)

    @property
    def closed(self) -> bool:
        """Both FINs or a RST seen."""
        return self.fin & 4 != 0 or self.fin & 3 == 3


class _Bucket(set["Flow"]):
    """Flows to look at once packet time reaches bucket ``at``."""

    __slots__ = ("at",)
    at: int


def flow_key(
    src: bytes, sport: int, dst: bytes, dport: int, proto: int, tunnel: tuple[Tunnel, ...] | None = None
) -> tuple:
    """The one key of a flow, the same for both directions (``Scanner.feed`` inlines this); a
    tunnelled flow's key ends with its tunnels' identity."""
    if sport > dport or (sport == dport and src >= dst):
        key = (src, sport, dst, dport, proto)
    else:
        key = (dst, dport, src, sport, proto)
    return key if tunnel is None else (*key, tunnel_key(tunnel))


_ID = attrgetter("id")
_FIRST_TS = attrgetter("first_ts")
_LAST_TS = attrgetter("last_ts")


class FlowTable:
    """Live flows with lazy expiry and a hard cap; ended flows go to ``on_end``."""

    def __init__(self, config: FlowConfig, on_end: Callable[[Flow], None]) -> None:
        self.config = config
        self.on_end = on_end
        self.entries: dict[tuple, Flow] = {}  # flow_key() -> live flow
        self.live = 0
        self.created = 0
        self.evicted = 0
        self.expired = 0
        self._buckets: dict[int, _Bucket] = {}  # bucket number -> flows; every live flow in one
        self._heap: list[int] = []  # bucket numbers (some of buckets already emptied and gone)
        self._gran = config.sweep_granularity
        self.next_sweep = float("inf")  # packet time of the earliest bucket that is due

    def __len__(self) -> int:
        return self.live

    def timeout(self, flow: Flow) -> float:
        c = self.config
        if flow.proto == 6:
            return c.closed_tcp if flow.closed else c.idle_tcp
        return c.idle_udp

    def add(self, flow: Flow, key: tuple) -> None:
        """Insert a new flow under its ``flow_key`` (the caller checked the cap)."""
        self.entries[key] = flow
        flow.key = key
        self.live += 1
        self.created += 1
        c = self.config  # self.timeout(flow), inline: once per flow
        if flow.proto == 6:
            timeout = c.closed_tcp if flow.fin & 4 or flow.fin & 3 == 3 else c.idle_tcp
        else:
            timeout = c.idle_udp
        self.schedule(flow, flow.first_ts + timeout)

    def schedule(self, flow: Flow, deadline: float) -> None:
        """Make sure the flow is looked at by ``deadline`` (a look at an earlier instant re-files
        it then, so a flow already filed earlier stays where it is)."""
        if flow.ended:
            return
        b = int(deadline // self._gran) + 1
        current = flow.bucket
        if current is not None:
            if current.at <= b:
                return
            self._unfile(flow, current)
        bucket = self._buckets.get(b)
        if bucket is None:
            bucket = self._buckets[b] = _Bucket()
            bucket.at = b
            heap = self._heap
            if len(heap) > 2 * len(self._buckets) + 64:
                heap[:] = sorted(self._buckets)  # drop the numbers of emptied buckets
            else:
                heapq.heappush(heap, b)
            self.next_sweep = heap[0] * self._gran
        bucket.add(flow)
        flow.bucket = bucket

    def _unfile(self, flow: Flow, bucket: _Bucket) -> None:
        bucket.discard(flow)
        flow.bucket = None
        if not bucket:
            del self._buckets[bucket.at]

    def end(self, flow: Flow, reason: str) -> None:
        """Remove a flow now and report it; afterwards the table holds no reference to it."""
        if self._remove(flow, reason):
            self.on_end(flow)

    def _remove(self, flow: Flow, reason: str) -> bool:
        """Take a live flow out of the table, ended for ``reason``; False if it had ended already."""
        if flow.ended:
            return False
        flow.ended = True
        flow.end_reason = reason
        bucket = flow.bucket
        if bucket is not None:
            self._unfile(flow, bucket)
        key = flow.key
        if key is not None and self.entries.get(key) is flow:
            del self.entries[key]
        self.live -= 1
        return True

    def sweep(self, now: float) -> None:
        """End flows idle past their timeout as of ``now``; re-file the others."""
        heap = self._heap
        buckets = self._buckets
        gran = self._gran
        limit = int(now // gran)
        c = self.config
        idle_tcp, idle_udp, closed_tcp = c.idle_tcp, c.idle_udp, c.closed_tcp
        while heap and heap[0] <= limit:
            b = heapq.heappop(heap)
            due = buckets.pop(b, None)
            if due is None:
                continue
            flows = sorted(due, key=_ID)  # in order of flow number, whatever the set's order
            due.clear()
            for flow in flows:
                flow.bucket = None
            flows.reverse()
            while flows:
                flow = flows.pop()
                if flow.ended:  # ended by an earlier flow's on_end
                    continue
                # self.timeout(flow), inline: every live flow comes here at least once
                fin = flow.fin
                closed = fin & 4 or fin & 3 == 3  # flow.closed, inline
                if flow.proto != 6:
                    deadline = flow.last_ts + idle_udp
                elif closed:
                    deadline = flow.last_ts + closed_tcp
                else:
                    deadline = flow.last_ts + idle_tcp
                if deadline <= now:
                    self.expired += 1
                    self.end(flow, "closed" if closed else "idle")
                else:
                    self.schedule(flow, deadline)
        self.next_sweep = heap[0] * gran if heap else float("inf")

    def make_room(self, now: float) -> None:
        """At the cap: expire what is due, then evict the least recently active flows (1% of the
        cap at a time; among equally recent ones, the lowest flow numbers)."""
        self.sweep(now)
        if self.live < self.config.max_flows:
            return
        count = max(1, self.config.max_flows // 100)
        victims = heapq.nsmallest(count + 1, self._flows(), key=_LAST_TS)
        if len(victims) > count:
            edge = victims[count - 1].last_ts
            if victims[count].last_ts == edge:
                # Equally recent flows straddle the cut: the lowest flow numbers go, whatever
                # order the buckets hold them in.
                victims = [f for f in victims if f.last_ts < edge]
                tied = sorted((f for f in self._flows() if f.last_ts == edge), key=_ID)
                victims += tied[: count - len(victims)]
                del tied
            else:
                del victims[count]
        victims.sort(key=_ID)
        victims.sort(key=_LAST_TS)
        victims.reverse()
        while victims:
            self.evicted += 1
            self.end(victims.pop(), "evicted")

    def flush(self, reason: str = "end-of-input") -> None:
        """End every live flow, in order of first packet (each released as soon as it is reported)."""
        flows = sorted(self._flows(), key=_ID)
        flows.sort(key=_FIRST_TS)  # stable: by first packet, then flow number
        flows.reverse()
        while flows:
            self.end(flows.pop(), reason)
        self._buckets.clear()
        self._heap.clear()
        self.next_sweep = float("inf")

    def _flows(self) -> Iterator[Flow]:
        return chain.from_iterable(self._buckets.values())

    def __iter__(self) -> Iterator[Flow]:
        """Every live flow, in no particular order."""
        return self._flows()
