"""Prometheus counters on a loopback-only endpoint.

The packet path only bumps plain integers on ``Stats``; a custom collector turns them into
metrics when Prometheus scrapes, so metrics cost the per-packet path nothing beyond an addition.
Queue drops are the kernel's own counters for our queue (``/proc/net/netfilter/nfnetlink_queue``),
read at scrape time in the gateway's network namespace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from classifier.blockfloor import FLOOR_RULES

NFQUEUE_PROC = Path("/proc/net/netfilter/nfnetlink_queue")


@dataclass
class Stats:
    """The gateway's counters (monotonic, since start)."""

    packets: int = 0
    flows: int = 0  # flows decided
    records: int = 0
    verdicts: Counter = field(default_factory=Counter)  # action -> flows
    apps: Counter = field(default_factory=Counter)  # (app, category, action) -> flows ("none": no app)
    dropped: int = 0  # packets the gateway dropped itself (inline)
    resets: int = 0
    offloaded: int = 0
    errors: Counter = field(default_factory=Counter)  # kind -> count
    withheld: Counter = field(default_factory=Counter)  # block-floor rule -> flows logged, not blocked
    dns_binding: Counter = field(default_factory=Counter)  # DNS responses: bound, or why not (dnsbind)


def queue_drops(queue: int, path: Path = NFQUEUE_PROC) -> tuple[int, int] | None:
    """(kernel drops: queue full, user drops: netlink buffer full) of one queue, if it is bound."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        if len(cols) >= 7 and cols[0] == str(queue):
            return int(cols[5]), int(cols[6])
    return None


# (provision, app, category, status) of every provision at scrape time; status is "effective",
# "unenforced" (in force, not enforced), "not-yet-effective" or "ended".
ProvisionStates = Callable[[], list[tuple[str, str, str, str]]]


def provision_states(policy, view: str, as_of: float | None) -> ProvisionStates:
    """Each provision's state in ``view`` at scrape time (the wall clock, or the fixed ``as_of``)."""
    import time

    def states() -> list[tuple[str, str, str, str]]:
        when = as_of if as_of is not None else time.time()
        out = []
        for pid, p in sorted(policy.provisions.items()):
            st = policy.status(pid, when, view)
            status = "unenforced" if st.status == "effective" and st.unenforced else st.status
            out.append((pid, p.app, p.category, status))
        return out

    return states


class _Collector:
    def __init__(
        self,
        stats: Stats,
        mode: str,
        queues: Sequence[int] | None,
        flows_live,
        queue_packets: Callable[[], dict[int, int]] | None = None,
        provisions: ProvisionStates | None = None,
        view: str = "announced",
    ) -> None:
        self.stats = stats
        self.mode = mode
        self.queues = tuple(queues or ())
        self.flows_live = flows_live
        self.queue_packets = queue_packets
        self.provisions = provisions
        self.view = view

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.stats
        labels = ["mode"]
        m = CounterMetricFamily(
            "classifier_gateway_packets", "Packets the gateway process inspected", labels=labels
        )
        m.add_metric([self.mode], s.packets)
        yield m
        m = CounterMetricFamily("classifier_gateway_flows", "Flows decided", labels=labels)
        m.add_metric([self.mode], s.flows)
        yield m
        m = CounterMetricFamily("classifier_gateway_records", "Flow records written", labels=labels)
        m.add_metric([self.mode], s.records)
        yield m
        m = CounterMetricFamily(
            "classifier_gateway_verdicts", "Flow verdicts by action", labels=["mode", "action"]
        )
        for action in ("block", "log", "allow"):
            m.add_metric([self.mode, action], s.verdicts.get(action, 0))
        yield m
        m = CounterMetricFamily(
            "classifier_gateway_app_verdicts",
            "Flow verdicts by app ('none': no app), category and action",
            labels=["mode", "app", "category", "action"],
        )
        for (app, category, action), n in sorted(s.apps.items()):
            m.add_metric([self.mode, app, category, action], n)
        yield m
        m = CounterMetricFamily(
            "classifier_gateway_block_withheld",
            "Flows the policy would block, logged because the evidence was too weak "
            "(block_confidence, block_evidence)",
            labels=["mode", "rule"],
        )
        for rule in FLOOR_RULES:
            m.add_metric([self.mode, rule], s.withheld.get(rule, 0))
        yield m
        m = CounterMetricFamily(
            "classifier_gateway_dns",
            "DNS responses bound to their query ('bound') "
            "or not (by reason), and queries unanswered or evicted",
            labels=["mode", "outcome"],
        )
        for outcome, n in sorted(s.dns_binding.items()):
            m.add_metric([self.mode, outcome], n)
        yield m
        m = CounterMetricFamily(
            "classifier_gateway_dropped_packets",
            "Packets of blocked flows dropped by the gateway process",
            labels=labels,
        )
        m.add_metric([self.mode], s.dropped)
        yield m
        m = CounterMetricFamily("classifier_gateway_resets", "TCP resets sent", labels=labels)
        m.add_metric([self.mode], s.resets)
        yield m
        m = CounterMetricFamily(
            "classifier_gateway_offloaded_flows",
            "Flows given nft set elements (offloaded or blocked in the kernel)",
            labels=labels,
        )
        m.add_metric([self.mode], s.offloaded)
        yield m
        m = CounterMetricFamily("classifier_gateway_errors", "Errors by kind", labels=["mode", "kind"])
        for kind, n in sorted(s.errors.items()):
            m.add_metric([self.mode, kind], n)
        yield m
        m = CounterMetricFamily(
            "classifier_gateway_queue_drops",
            "Packets the kernel could not queue to the gateway (queue full: "
            "'queue', netlink buffer full: 'socket')",
            labels=["queue", "reason"],
        )
        for queue in self.queues:
            drops = queue_drops(queue)
            if drops is not None:
                m.add_metric([str(queue), "queue"], drops[0])
                m.add_metric([str(queue), "socket"], drops[1])
        yield m
        m = CounterMetricFamily(
            "classifier_gateway_queue_packets",
            "Packets the gateway took from each NFQUEUE (its worker's count)",
            labels=["queue"],
        )
        if self.queue_packets is not None:
            for queue, n in sorted(self.queue_packets().items()):
                m.add_metric([str(queue)], n)
        yield m
        g = GaugeMetricFamily("classifier_gateway_live_flows", "Flows in the flow table", labels=labels)
        g.add_metric([self.mode], self.flows_live())
        yield g
        if self.provisions is not None:
            states = self.provisions()
            g = GaugeMetricFamily(
                "classifier_gateway_provisions_effective",
                "Provisions effective (and enforced) now in the gateway's policy view",
                labels=["view"],
            )
            g.add_metric([self.view], sum(1 for *_p, status in states if status == "effective"))
            yield g
            g = GaugeMetricFamily(
                "classifier_gateway_provision_effective",
                "1 while the provision is effective and enforced now, else 0; status says where it stands",
                labels=["view", "provision", "app", "category", "status"],
            )
            for pid, app, category, status in states:
                g.add_metric([self.view, pid, app, category, status], 1 if status == "effective" else 0)
            yield g


def serve(
    stats: Stats,
    mode: str,
    queues: Sequence[int] | None,
    flows_live,
    host: str,
    port: int,
    queue_packets: Callable[[], dict[int, int]] | None = None,
    provisions: ProvisionStates | None = None,
    view: str = "announced",
) -> tuple[object, int]:
    """Start the endpoint on ``host:port`` (loopback, checked by the config); (server, bound port)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(stats, mode, queues, flows_live, queue_packets, provisions, view))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, server.server_address[1]
