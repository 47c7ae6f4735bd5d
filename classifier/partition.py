"""A scanner that reports only the flows of one partition, yet sees exactly what one process sees.

``classifier scan --workers N`` (and each Dask task of ``--dask --continuous``) runs N of these
over the same packets. Each keeps the *whole* flow table (every flow is created, counted, timed
out, closed and evicted exactly as in one process, with the same flow numbers) and reads every DNS
flow's messages (so the DNS caches, pending queries and ECH public names are the same everywhere;
another partition's DNS flow for those alone, ``Inspection.reports``), but it
inspects, decides and reports only the flows whose server address falls in its partition. Name
memory (SNI/Host names clients used for a server address) is looked up by server address, so all
flows that may share a remembered name are in the same partition. A server address gets its
partition when it is first seen: the one that has been given the fewest flows so far (every
partition sees the same flows in the same order, so all of them assign alike). docs/ARCHITECTURE.md
"Scale-out" gives the whole argument and its limits.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from types import MethodType

from .compiled import compiled_function
from .dnscache import DnsCache
from .errors import MalformedError
from .flows import Flow, FlowConfig, FlowTable
from .inspect.driver import Inspection
from .pipeline import Scanner, ScanOptions
from .policy import Policy
from .report import InputStats
from .signatures import Signatures
from .tunnels import Tunnel

_MAX_EXAMPLES = 3  # malformed-packet examples per reason, as the scanner keeps them
# Server addresses whose partition is remembered (about 100 bytes each, never forgotten: an address
# must keep its partition); those first seen after that many go by ``partition_of`` alone.
MAX_ASSIGNED = 1 << 16


# The compiled first packet of a flow another partition reports (classifier/_partfeed.pyx); without
# it (or refused) ``Scanner.feed`` takes every packet.
COMPILED_FEED: Callable[..., Flow | None] | None = compiled_function("_partfeed", "feed")


def partition_of(server: bytes, parts: int) -> int:
    """The partition of a server address: stable across processes and machines (unlike ``hash``)."""
    return zlib.crc32(server) % parts


class _PartTable(FlowTable):
    """The flow table of a ``PartScanner``: every flow it creates (the same flows, in the same order,
    in every partition) counts toward its server's partition, the load the next new server address
    is given by."""

    def __init__(self, scanner: PartScanner, config: FlowConfig) -> None:
        super().__init__(config, scanner._ended)
        self.scanner = scanner

    def add(self, flow: Flow, key: tuple) -> None:
        scanner = self.scanner
        part = flow.part = scanner.owner(flow.server)  # kept on the flow: read at its end
        scanner.load[part] += 1
        super().add(flow, key)

    def end(self, flow: Flow, reason: str) -> None:
        """``FlowTable.end``; another partition's flow (most of them) ends here without the
        scanner's ``_ended``: it is only counted, which the order of the records needs."""
        scanner = self.scanner
        if flow.part == scanner.part:
            super().end(flow, reason)
        elif self._remove(flow, reason):
            ended = scanner.ended = scanner.ended + 1
            if ended % scanner.tick == 0:
                scanner.report_record(None, ended)


class _PartInspection(Inspection):
    """Counts an inspection error only for the flows its scanner reports, so that the errors of a
    DNS flow (which every partition inspects) are counted once, by the partition that owns it; and
    notes at which packet each reason was first seen, to pick the example one process would keep."""

    def __init__(
        self,
        scanner: PartScanner,
        config: FlowConfig,
        dnscache: DnsCache,
        unbound_dns: DnsCache | None = None,
    ) -> None:
        super().__init__(config, dnscache, unbound_dns)
        self.scanner = scanner
        # reason -> (packet number of the run, flows ended by then) where it was first seen: the
        # flows ended tell apart errors of different flows at one packet (those the end decides)
        self.first_seen: dict[str, tuple[int, int]] = {}

    def reports(self, flow: Flow) -> bool:
        """Only the flows of its partition: the others' DNS messages are read for the caches and
        pending queries alone."""
        return flow.part == self.scanner.part

    def _malformed(self, flow: Flow, err: MalformedError) -> None:
        if not self.scanner.owns(flow):
            flow.add_note(str(err))  # the flow is reported elsewhere, where the error is counted
            return
        if err.reason not in self.error_examples:
            self.first_seen[err.reason] = (self.scanner.packets, self.scanner.ended)
        super()._malformed(flow, err)


class PartScanner(Scanner):
    """``Scanner`` for partition ``part`` of ``parts``: ``on_record(flow, seq)`` gets only the flows
    it owns, with ``seq``, the number of flows (of every partition) that had ended by then, which
    orders the records of all partitions exactly as one process writes them. Every ``tick`` flows
    it calls ``on_record(None, seq)``: nothing more of this partition ended up to ``seq``, so a
    merger need not wait for it."""

    inspection: _PartInspection  # set in __init__, in place of the Scanner's

    def __init__(
        self,
        sigs: Signatures,
        policy: Policy,
        options: ScanOptions,
        on_record: Callable[[Flow | None, int], None],
        part: int,
        parts: int,
        tick: int = 4096,
    ) -> None:
        super().__init__(sigs, policy, options, self._report)
        self.inspection = _PartInspection(self, options.flows, self.dnscache, self.unbound_dns)
        self.part = part
        self.parts = parts
        self.report_record = on_record
        self.ended = 0  # flows of every partition that have ended
        self.tick = tick
        self._parts: dict[bytes, int] = {}  # server address -> partition, kept: it must not change
        self.load = [0] * parts  # flows created so far, per partition of their server
        self.table = _PartTable(self, options.flows)
        if COMPILED_FEED is not None and parts > 1:
            # The scanner's ``feed`` is the compiled function itself: every packet the compiled
            # loop leaves comes this way, and a Python frame in between is most of what the short
            # cut would cost the others. Without it, ``Scanner.feed`` takes every packet.
            self.feed = MethodType(COMPILED_FEED, self)  # type: ignore[method-assign]

    def owner(self, server: bytes) -> int:
        """The partition that reports the flows to ``server``.

        A new server address goes to the partition given the fewest flows so far (the lowest such
        one): crc32 alone leaves partitions uneven where a few servers carry most flows. Every
        partition calls this for a new address at the same point (a flow made, or about to be),
        never while inspecting, so they all assign alike; the answer never changes afterwards."""
        part = self._parts.get(server)
        if part is None:
            if len(self._parts) >= MAX_ASSIGNED:
                return partition_of(server, self.parts)
            load = self.load
            part = self._parts[server] = load.index(min(load))
        return part

    def owns(self, flow: Flow) -> bool:
        """True if this partition reports ``flow`` (one the table holds or held)."""
        return flow.part == self.part

    def _new_flow(
        self,
        ts: float,
        linktype: int,
        frame: bytes,
        iface: int,
        proto: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        flags: int,
        tunnel: tuple[Tunnel, ...] | None = None,
    ) -> Flow:
        flow = super()._new_flow(ts, linktype, frame, iface, proto, src, sport, dst, dport, flags, tunnel)
        if not flow.dns_client and not self.owns(flow):
            flow.inspecting = False  # counted and timed like any flow, never inspected here
        return flow

    def _ended(self, flow: Flow) -> None:
        """A flow of this partition ended (``_PartTable.end`` counts the others' itself, never
        deciding them, a DNS flow included: a decision records for later flows only a name the
        client sent (SNI, Host), which a DNS flow never has, so skipping it changes nothing another
        flow sees)."""
        self.ended += 1
        super()._ended(flow)  # decides if need be, counts it, calls _report

    def _report(self, flow: Flow) -> None:
        self.report_record(flow, self.ended)


def merge_part_stats(parts: list[tuple[InputStats, dict[str, tuple[int, int]]]]) -> InputStats:
    """One process's stats from the partitions' (stats, where each inspection error was first seen).

    Everything counted before a flow's partition matters (packets, decode errors, skipped
    packets, fragments, evictions, DNS answers and bindings, capture problems) is the same in every
    partition: it is taken from the first. Records and inspection errors are per partition: summed,
    each reason's example is the one seen first, and the reasons are listed in the order one
    process first met them (the order its statistics show).
    """
    first = parts[0][0]
    merged = InputStats(
        files=first.files,
        packets=first.packets,
        skipped=first.skipped,
        malformed=first.malformed,
        malformed_examples=first.malformed_examples,
        problems=first.problems,
        evicted=first.evicted,
        fragments=first.fragments,
        dns_answers=first.dns_answers,
        dns_dropped=first.dns_dropped,
        dns_queries=first.dns_queries,
        dns_binding=first.dns_binding,
    )
    seen_at: dict[str, tuple[int, int]] = {}
    examples: dict[str, str] = {}
    counts: dict[str, int] = {}
    for stats, first_seen in parts:
        merged.flows += stats.flows
        for reason, n in stats.inspect_errors.items():
            counts[reason] = counts.get(reason, 0) + n
            at = first_seen.get(reason, (0, 0))
            if reason not in seen_at or at < seen_at[reason]:
                seen_at[reason] = at
                if reason in stats.inspect_examples:
                    examples[reason] = stats.inspect_examples[reason]
    # A stable sort: reasons first met at the same point come from one partition, in its order.
    for reason in sorted(counts, key=seen_at.__getitem__):
        merged.inspect_errors[reason] = counts[reason]
        if reason in examples:
            merged.inspect_examples[reason] = examples[reason]
    return merged


def merge_input_stats(results: list[tuple[InputStats, bool]]) -> InputStats:
    """One process's stats from those of files scanned on their own: (stats, could not be opened)
    of each, in input order."""
    out = InputStats()
    # One process lists the inputs it could not open first, then what reading the others found.
    for s, failed in results:
        if failed:
            out.problems.extend(s.problems)
    for s, failed in results:
        out.files += s.files
        out.packets += s.packets
        out.flows += s.flows
        out.skipped.update(s.skipped)
        out.malformed.update(s.malformed)
        for reason, examples in s.malformed_examples.items():
            kept = out.malformed_examples.setdefault(reason, [])
            kept.extend(examples[: _MAX_EXAMPLES - len(kept)])
        out.inspect_errors.update(s.inspect_errors)
        for reason, example in s.inspect_examples.items():
            out.inspect_examples.setdefault(reason, example)
        if not failed:
            out.problems.extend(s.problems)
        out.evicted += s.evicted
        out.fragments += s.fragments
        out.dns_answers += s.dns_answers
        out.dns_dropped += s.dns_dropped
        out.dns_queries += s.dns_queries
        out.dns_binding.update(s.dns_binding)
    return out
