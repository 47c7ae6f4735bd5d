"""The run summary: app x category x action, top hostnames, and what the input looked like."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from .blockfloor import FLOOR_RULES
from .outputs import TextSink
from .policy import RULE_UNENFORCED


@dataclass
class InputStats:
    """What reading and decoding found, summed over the inputs."""

    files: int = 0
    packets: int = 0
    flows: int = 0
    skipped: Counter = field(default_factory=Counter)
    malformed: Counter = field(default_factory=Counter)
    malformed_examples: dict = field(default_factory=dict)
    inspect_errors: Counter = field(default_factory=Counter)
    inspect_examples: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)  # capture-level problems (truncation...), as strings
    evicted: int = 0
    fragments: int = 0
    dns_answers: int = 0
    dns_dropped: int = 0  # addresses and ECH public names the DNS cache dropped at its bounds
    dns_queries: int = 0
    # DNS responses bound to their query ("bound") or not (by reason), and queries that timed out
    # or were evicted (classifier.dnsbind)
    dns_binding: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "packets": self.packets,
            "flows": self.flows,
            "skipped": dict(self.skipped),
            "malformed": dict(self.malformed),
            "inspect_errors": dict(self.inspect_errors),
            "problems": list(self.problems),
            "evicted": self.evicted,
            "fragments": self.fragments,
            "dns_answers": self.dns_answers,
            "dns_dropped": self.dns_dropped,
            "dns_queries": self.dns_queries,
            "dns_binding": dict(sorted(self.dns_binding.items())),
        }


def action_label(r: dict) -> str:
    """The action as a summary shows it: a prohibition in force but not enforced (in-force view)
    is "log (unenforced)", or "block (unenforced)" with --unenforced-blocks, never a plain one."""
    action = r["action"]
    return f"{action} (unenforced)" if r["rule"] == RULE_UNENFORCED else action


MAX_DISTINCT = 50_000  # distinct hostnames, servers or clients a summary keeps counts for


class TopCounter(Counter):
    """A Counter for a top-N list that keeps at most ``limit`` keys, so a run with millions of
    distinct names costs bounded memory: past the limit, the less frequent half is forgotten
    (``pruned`` says so). Counts stay exact for every key while the limit is never reached, and
    a key frequent enough to matter for a short top list is kept beyond it."""

    def __init__(self, limit: int = MAX_DISTINCT) -> None:
        super().__init__()
        self.limit = limit
        self.pruned = False

    def __reduce__(self) -> tuple:
        # Counter's own pickling would pass the counts as ``limit``: keep limit, flag and counts.
        return self.__class__, (self.limit,), {"pruned": self.pruned}, None, iter(self.items())

    def add(self, key: object) -> None:
        self[key] += 1
        if len(self) > self.limit:
            keep = dict(self.most_common(self.limit // 2))
            self.clear()
            self.update(keep)
            self.pruned = True


class Summary:
    """Accumulates records as they are written; renders a table at the end.

    Memory does not grow with the number of flows: counts are per cell, and the per-name tables
    are ``TopCounter``s.
    """

    # The record fields ``add`` reads: scan workers that write their records' lines themselves send
    # the parent only these (tests/test_workers.py checks that they are enough).
    FIELDS: ClassVar[tuple[str, ...]] = (
        "action",
        "rule",
        "app",
        "category",
        "bytes_c2s",
        "bytes_s2c",
        "view",
        "hostname",
        "hostname_source",
        "encrypted_dns",
        "ech_public_name",
        "src",
        "sni",
        "dst",
    )

    def __init__(self, top: int = 15) -> None:
        self.top = top
        self.cells: Counter[tuple[str, str, str]] = Counter()
        self.bytes: Counter[tuple[str, str, str]] = Counter()
        self.hostnames = TopCounter()
        self.actions: Counter[str] = Counter()
        self.view: str | None = None
        # Blind spots: flows whose names this input cannot show, by kind, with their clients (the
        # first MAX_DISTINCT of them: beyond that, "at least").
        self.blind: Counter[str] = Counter()
        self.blind_clients: dict[str, set[str]] = {}
        self.blind_servers: dict[str, TopCounter] = {}
        # Flows the policy would block that the block floor logged instead, by rule and evidence.
        self.withheld: Counter[tuple[str, str]] = Counter()

    def add(self, r: dict) -> None:
        action = action_label(r)
        key = (r["app"] or "-", r["category"] or "-", action)
        self.cells[key] += 1
        self.bytes[key] += r["bytes_c2s"] + r["bytes_s2c"]
        self.actions[r["action"]] += 1
        self.view = r["view"]
        if r["hostname"]:
            self.hostnames.add((r["hostname"], r["app"] or "-", action))
        if r["rule"] in FLOOR_RULES:
            self.withheld[(r["rule"], r["hostname_source"] or "-")] += 1
        kind = r["encrypted_dns"] or ("ech" if r["ech_public_name"] else None)
        if kind is not None:
            self.blind[kind] += 1
            clients = self.blind_clients.setdefault(kind, set())
            if len(clients) < MAX_DISTINCT:
                clients.add(r["src"])
            servers = self.blind_servers.get(kind)
            if servers is None:
                servers = self.blind_servers[kind] = TopCounter()
            servers.add(r["sni"] or r["dst"])

    def render(self, out: TextSink, stats: InputStats) -> None:
        from rich.table import Table  # only when a summary is printed: rich is slow to import

        from .outputs import rich_console

        console = rich_console(out, 120)
        console.print(
            f"Flows by app, category and action ({self.view or 'announced'} view)",
            highlight=False,
            markup=False,
        )
        t = Table()
        for col in ("app", "category", "action", "flows", "bytes"):
            t.add_column(col, justify="right" if col in ("flows", "bytes") else "left")
        for (app, cat, action), n in sorted(self.cells.items(), key=lambda kv: (kv[0][0] == "-", kv[0])):
            t.add_row(app, cat, action, str(n), str(self.bytes[(app, cat, action)]))
        console.print(t)
        approx = (
            f" (more than {MAX_DISTINCT} distinct names: counts of the rarer ones were dropped, "
            "so these may be low)"
            if self.hostnames.pruned
            else ""
        )
        console.print(f"Top {self.top} hostnames{approx}", highlight=False, markup=False)
        h = Table()
        for col in ("hostname", "app", "action", "flows"):
            h.add_column(col, justify="right" if col == "flows" else "left")
        for (name, app, action), n in self.hostnames.most_common(self.top):
            h.add_row(name, app, action, str(n))
        console.print(h)
        for line in self.blind_lines() + self.withheld_lines():
            console.print(line, highlight=False, markup=False)
        console.print(input_lines(stats), highlight=False, markup=False)

    def blind_lines(self) -> list[str]:
        """What this input cannot show: clients resolving over encrypted DNS, names hidden by ECH."""
        if not self.blind:
            return []
        what = {
            "doh": "DNS over HTTPS",
            "dot": "DNS over TLS",
            "doq": "DNS over QUIC",
            "ech": "ECH (the real server name is encrypted)",
        }
        lines = ["Blind spots: names this input cannot show"]
        for kind, flows in sorted(self.blind.items()):
            clients = len(self.blind_clients[kind])
            many = "at least " if clients >= MAX_DISTINCT else ""
            top = ", ".join(f"{name} ({n})" for name, n in self.blind_servers[kind].most_common(3))
            lines.append(f"  {what[kind]}: {flows} flows from {many}{clients} client(s), to {top}")
        return lines

    def withheld_lines(self) -> list[str]:
        """Flows logged where the policy alone would block: the evidence was too weak (block floor)."""
        if not self.withheld:
            return []
        total = sum(self.withheld.values())
        parts = ", ".join(
            f"{rule} {n} (named by {source})" for (rule, source), n in sorted(self.withheld.items())
        )
        return [
            f"Logged, not blocked, for weak evidence (--block-confidence, --block-evidence): "
            f"{total} flows: {parts}"
        ]


def input_lines(stats: InputStats) -> str:
    """A few plain lines about the input: counts, what was skipped, what was broken."""
    lines = [
        f"{stats.files} input(s), {stats.packets} packets, {stats.flows} flows"
        f"{f', {stats.evicted} evicted at the flow cap' if stats.evicted else ''}"
        f"{f', {stats.fragments} IP fragments' if stats.fragments else ''}",
    ]
    if stats.skipped:
        lines.append(
            "not TCP/UDP (counted, not errors): "
            + ", ".join(f"{k} {v}" for k, v in stats.skipped.most_common())
        )
    if stats.malformed:
        lines.append("malformed packets: " + ", ".join(f"{k} {v}" for k, v in stats.malformed.most_common()))
        for examples in stats.malformed_examples.values():
            lines.extend(f"  e.g. {e}" for e in examples[:1])
    if stats.inspect_errors:
        lines.append(
            "malformed application data: "
            + ", ".join(f"{k} {v}" for k, v in stats.inspect_errors.most_common())
        )
    binding = stats.dns_binding
    if stats.dns_queries or binding:
        line = f"DNS: {stats.dns_queries} queries, {binding['bound']} responses bound to them"
        unbound = sorted((k, v) for k, v in binding.items() if k != "bound")
        if unbound:
            line += "; not bound (low-confidence names at most): " + ", ".join(f"{k} {v}" for k, v in unbound)
        lines.append(line)
    lines.extend(f"input problem: {p}" for p in stats.problems)
    return "\n".join(lines)
