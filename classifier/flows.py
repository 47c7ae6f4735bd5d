"""Bidirectional flows and the table that holds them.

A flow is keyed by its 5-tuple in both directions (two dict entries point at the same flow, each
with the packet's direction), so the per-packet lookup is one dict probe with no normalisation.
The client is the sender of the first SYN (the receiver of a SYN-ACK), else of the first packet.

Timeouts run in packet time. Expiry is lazy: each flow sits in a time bucket for the instant it
could expire at; a sweep looks only at buckets that are due and re-files flows that saw traffic
since, so a sweep costs in proportion to the flows that are due, not to the table size. The table
has a hard cap on live flows; at the cap the least recently active flows are evicted (and
reported, with ``end_reason`` "evicted").
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .reassembly import Stream

# Flow stages.
INSPECTING = 0  # facts still being gathered: packets go through inspection
DECIDED = 1  # verdict taken: packets only update counters (DNS flows still feed the cache)


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Flow-table settings (seconds of packet time)."""

    idle_tcp: float = 300.0
    idle_udp: float = 60.0
    closed_tcp: float = 10.0  # after both FINs or a RST: time left for stray packets
    max_flows: int = 500_000
    inspect_bytes: int = 16384  # first bytes kept per direction for inspection
    inspect_segments: int = 24  # payload segments per direction before inspection gives up
    sweep_granularity: float = 1.0


class Flow:
    """One bidirectional conversation; counters are per direction (c2s = client to server)."""

    __slots__ = (
        "attribution",
        "c2s_bytes",
        "c2s_pkts",
        "client",
        "client_port",
        "decision",
        "dns_client",
        "end_reason",
        "ended",
        "facts",
        "file",
        "fin",
        "first_ts",
        "id",
        "iface",
        "inspecting",
        "last_ts",
        "neighbour",
        "notes",
        "proto",
        "s2c_bytes",
        "s2c_pkts",
        "server",
        "server_port",
        "stage",
        "streams",
    )

    def __init__(self, fid: int, proto: int, client: bytes, cport: int, server: bytes, sport: int,
                 ts: float) -> None:
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
        self.streams: list[Stream] | None = None
        self.facts: dict = {}
        self.notes: list[str] = []
        self.attribution = None
        self.decision = None
        self.end_reason: str | None = None
        self.ended = False
        self.file: str | None = None
        self.iface: str | None = None
        self.neighbour: str | None = None  # link-layer next hop seen on the server side (MAC)
        self.dns_client = False  # flow carries DNS: its messages are parsed even after the decision

    def add_packets(self, from_client: bool, packets: int, size: int) -> None:
        """Count packets to one direction (slow paths; the per-packet path does this inline)."""
        if from_client:
            self.c2s_pkts += packets
            self.c2s_bytes += size
        else:
            self.s2c_pkts += packets
            self.s2c_bytes += size

    @property
    def closed(self) -> bool:
        """Both FINs or a RST seen."""
        return self.fin & 4 != 0 or self.fin & 3 == 3


class FlowTable:
    """Live flows with lazy expiry and a hard cap; ended flows go to ``on_end``."""

    def __init__(self, config: FlowConfig, on_end: Callable[[Flow], None]) -> None:
        self.config = config
        self.on_end = on_end
        self.entries: dict[tuple, tuple[Flow, bool]] = {}
        self.live = 0
        self.created = 0
        self.evicted = 0
        self.expired = 0
        self._buckets: dict[int, list[Flow]] = {}
        self._heap: list[int] = []
        self._gran = config.sweep_granularity
        self.next_sweep = float("inf")  # packet time of the earliest bucket that is due

    def __len__(self) -> int:
        return self.live

    def timeout(self, flow: Flow) -> float:
        c = self.config
        if flow.proto == 6:
            return c.closed_tcp if flow.closed else c.idle_tcp
        return c.idle_udp

    def add(self, flow: Flow, key: tuple, reverse: tuple) -> None:
        """Insert a new flow under both directional keys (the caller checked the cap)."""
        self.entries[key] = (flow, True)
        self.entries[reverse] = (flow, False)
        self.live += 1
        self.created += 1
        self.schedule(flow, flow.first_ts + self.timeout(flow))

    def schedule(self, flow: Flow, deadline: float) -> None:
        """File the flow for a look at ``deadline`` (a flow may be filed more than once)."""
        b = int(deadline // self._gran) + 1
        lst = self._buckets.get(b)
        if lst is None:
            self._buckets[b] = [flow]
            heapq.heappush(self._heap, b)
            self.next_sweep = self._heap[0] * self._gran
        else:
            lst.append(flow)

    def end(self, flow: Flow, reason: str) -> None:
        """Remove a flow now and report it."""
        if flow.ended:
            return
        flow.ended = True
        flow.end_reason = reason
        key = (flow.client, flow.client_port, flow.server, flow.server_port, flow.proto)
        entry = self.entries.get(key)
        if entry is not None and entry[0] is flow:
            del self.entries[key]
            del self.entries[(flow.server, flow.server_port, flow.client, flow.client_port, flow.proto)]
        self.live -= 1
        self.on_end(flow)

    def sweep(self, now: float) -> None:
        """End flows idle past their timeout as of ``now``; re-file the others."""
        heap = self._heap
        buckets = self._buckets
        gran = self._gran
        limit = int(now // gran)
        while heap and heap[0] <= limit:
            b = heapq.heappop(heap)
            for flow in buckets.pop(b, ()):
                if flow.ended:
                    continue
                deadline = flow.last_ts + self.timeout(flow)
                if deadline <= now:
                    self.expired += 1
                    self.end(flow, "closed" if flow.closed else "idle")
                else:
                    self.schedule(flow, deadline)
        self.next_sweep = heap[0] * gran if heap else float("inf")

    def make_room(self, now: float) -> None:
        """At the cap: expire what is due, then evict the least recently active flows."""
        self.sweep(now)
        if self.live < self.config.max_flows:
            return
        count = max(1, self.config.max_flows // 100)
        flows = [f for f, is_client in self.entries.values() if is_client]
        for flow in heapq.nsmallest(count, flows, key=lambda f: f.last_ts):
            self.evicted += 1
            self.end(flow, "evicted")

    def flush(self, reason: str = "end-of-input") -> None:
        """End every live flow, in order of first packet."""
        flows = sorted((f for f, is_client in self.entries.values() if is_client),
                       key=lambda f: (f.first_ts, f.id))
        for flow in flows:
            self.end(flow, reason)
        self._buckets.clear()
        self._heap.clear()
        self.next_sweep = float("inf")

    def __iter__(self) -> Iterator[Flow]:
        return (f for f, is_client in self.entries.values() if is_client)
