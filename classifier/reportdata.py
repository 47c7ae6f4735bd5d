"""What ``classifier report`` shows, aggregated from records as they stream past.

Memory is bounded whatever the input size: counts per cell, per time bucket (the bucket width
doubles when there are too many), per name in ``TopCounter``s, and grouped rows (blocked flows,
direct BGP events) capped with a count of what did not fit. Scan records and BGP records
(``classifier bgp``, route and timeline records) are told apart by their keys; unknown extra keys
are ignored, so newer records still render.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .errors import MalformedError, UserError
from .report import TopCounter, action_label
from .timeutil import parse_instant

MAX_BUCKETS = 240  # time buckets per plot; beyond, buckets merge two by two
MAX_ROWS = 500  # grouped rows kept for a table (the most frequent)
MAX_PROBLEMS = 20
MAX_PREFIXES = 20_000  # distinct prefixes counted per neighbour row


class Buckets:
    """Counts per (time bucket, series); the bucket width grows so there are at most MAX_BUCKETS."""

    def __init__(self, width: float = 1.0) -> None:
        self.width = width
        self.counts: dict[int, Counter[str]] = {}

    def add(self, ts: float, series: str, n: int = 1) -> None:
        slot = int(ts // self.width)
        bucket = self.counts.get(slot)
        if bucket is None:
            while self.counts and self._span_with(slot) > MAX_BUCKETS:
                self._coarsen()
                slot = int(ts // self.width)
            bucket = self.counts.setdefault(slot, Counter())
        bucket[series] += n

    def _span_with(self, slot: int) -> int:
        return max(max(self.counts), slot) - min(min(self.counts), slot) + 1

    def _coarsen(self) -> None:
        self.width *= 2
        merged: dict[int, Counter[str]] = {}
        for slot, c in self.counts.items():
            merged.setdefault(slot // 2, Counter()).update(c)
        self.counts = merged

    def series(self) -> list[str]:
        names: set[str] = set()
        for c in self.counts.values():
            names.update(c)
        return sorted(names)


@dataclass
class Grouped:
    """Rows grouped by a key, counting flows and keeping first and last time; at most ``limit``
    groups (the most frequent); ``dropped`` counts what fell out."""

    limit: int = MAX_ROWS
    rows: dict[tuple, list] = field(default_factory=dict)  # key -> [count, first, last]
    dropped: int = 0

    def add(self, key: tuple, ts: float) -> None:
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= 2 * self.limit:
                ordered = self._ordered()
                self.dropped += sum(v[0] for _, v in ordered[self.limit :])
                self.rows = dict(ordered[: self.limit])
            self.rows[key] = [1, ts, ts]
            return
        row[0] += 1
        row[1] = min(row[1], ts)
        row[2] = max(row[2], ts)

    def _ordered(self) -> list[tuple[tuple, list]]:
        return sorted(self.rows.items(), key=lambda kv: (-kv[1][0], kv[1][1]))

    def top(self) -> list[tuple[tuple, list]]:
        return self._ordered()[: self.limit]

    def hidden(self) -> int:
        """Flows in groups not shown."""
        return self.dropped + sum(v[0] for _, v in self._ordered()[self.limit :])


class ScanAggregate:
    """Everything the report shows about scan (flow) records."""

    kind = "scan"

    def __init__(self) -> None:
        self.records = 0
        self.packets = 0
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.files: Counter[str] = Counter()
        self.views: Counter[str] = Counter()
        self.cells: Counter[tuple[str, str, str]] = Counter()
        self.cell_bytes: Counter[tuple[str, str, str]] = Counter()
        self.actions = Buckets()
        self.hostnames: dict[str, TopCounter] = {}
        self.asns: dict[str, TopCounter] = {}
        self.evidence: Counter[str] = Counter()
        self.confidence: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.blind: Counter[str] = Counter()
        self.blind_servers: dict[str, TopCounter] = {}
        self.provisions: Counter[str] = Counter()  # provision -> flows it covered
        self.deciding: Counter[str] = Counter()  # provision -> flows it blocked
        self.blocked = Grouped()

    def add(self, r: dict) -> None:
        self.records += 1
        ts = parse_instant(r["first_ts"])
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)
        self.packets += r.get("packets_c2s", 0) + r.get("packets_s2c", 0)
        size = r.get("bytes_c2s", 0) + r.get("bytes_s2c", 0)
        self.bytes += size
        name = r.get("file") or "-"
        if name in self.files or len(self.files) < MAX_ROWS:  # beyond: counted in no file's row
            self.files[name] += 1
        self.views[r.get("view") or "-"] += 1
        app = r.get("app") or "-"
        action = r.get("action") or "-"
        key = (app, r.get("category") or "-", action_label(r) if "rule" in r else action)
        self.cells[key] += 1
        self.cell_bytes[key] += size
        self.actions.add(ts, action)
        self.rules[r.get("rule") or "-"] += 1
        owner = app if app != "-" else (r.get("operator") or "-")
        if r.get("hostname"):
            self.hostnames.setdefault(owner, TopCounter()).add(r["hostname"])
        if r.get("server_asn") is not None:
            self.asns.setdefault(owner, TopCounter()).add(r["server_asn"])
        if r.get("app") or r.get("operator"):
            self.confidence[r.get("confidence") or "-"] += 1
            for kind in {e.get("kind", "-") for e in r.get("evidence") or ()}:
                self.evidence[kind] += 1
        blind = r.get("encrypted_dns") or ("ech" if r.get("ech_public_name") else None)
        if blind:
            self.blind[blind] += 1
            self.blind_servers.setdefault(blind, TopCounter()).add(r.get("sni") or r.get("dst") or "-")
        for p in r.get("provisions") or ():
            self.provisions[p.get("id", "-")] += 1
        if action == "block":
            for p in r.get("provisions") or ():
                if p.get("status") == "effective":
                    self.deciding[p.get("id", "-")] += 1
            self.blocked.add(
                (
                    app,
                    r.get("category") or "-",
                    r.get("hostname") or r.get("dst") or "-",
                    r.get("reason") or "-",
                ),
                ts,
            )


class BgpAggregate:
    """Everything the report shows about ``classifier bgp`` route and timeline records."""

    kind = "bgp"

    def __init__(self) -> None:
        self.records = 0
        self.routes = 0
        self.events = 0
        self.first: float | None = None
        self.last: float | None = None
        self.views: Counter[str] = Counter()
        # (neighbour ASN, neighbour operator, relationship, app, action) -> [routes, ann, wd]
        self.neighbours: dict[tuple, list[int]] = {}
        self.neighbour_prefixes: dict[tuple, set[str]] = {}
        self.timeline = Buckets()
        self.direct_events = Grouped()
        self.provisions: Counter[str] = Counter()

    def add(self, r: dict) -> None:
        self.records += 1
        self.views[r.get("view") or "-"] += 1
        for p in r.get("provisions") or ():
            self.provisions[p if isinstance(p, str) else str(p.get("id", "-"))] += 1
        if r.get("record") == "event":
            self.events += 1
            ts = parse_instant(r["time"])
            self._span(ts)
            self.timeline.add(ts, r.get("event") or "-")
            if r.get("relationship") == "direct" or r.get("action") == "block":
                self.direct_events.add(
                    (
                        r.get("event") or "-",
                        r.get("prefix") or "-",
                        r.get("neighbour_asn"),
                        r.get("action") or "-",
                        r.get("reason") or "-",
                    ),
                    ts,
                )
            return
        self.routes += 1
        self._span(parse_instant(r["first_seen"]))
        key = (
            r.get("neighbour_asn"),
            r.get("neighbour_operator") or "-",
            r.get("relationship") or "-",
            r.get("app") or "-",
            r.get("action") or "-",
        )
        row = self.neighbours.get(key)
        if row is None:
            if len(self.neighbours) >= MAX_ROWS:
                key = ("other", "-", "-", "-", "-")
            row = self.neighbours.setdefault(key, [0, 0, 0])
        row[0] += 1
        row[1] += r.get("announcements") or 0
        row[2] += r.get("withdrawals") or 0
        prefixes = self.neighbour_prefixes.setdefault(key, set())
        if len(prefixes) < MAX_PREFIXES:  # beyond: the table says "at least"
            prefixes.add(r.get("prefix") or "-")

    def _span(self, ts: float) -> None:
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)


Aggregate = ScanAggregate | BgpAggregate


def record_kind(r: dict) -> str | None:
    """ "scan", "bgp" or None (neither) for one record."""
    if r.get("record") in ("route", "event") and "prefix" in r:
        return "bgp"
    if "flow" in r and "first_ts" in r and "action" in r:
        return "scan"
    return None


def read_records(paths: Iterable[str], problems: list[str]) -> Iterator[tuple[str, dict, str]]:
    """(kind, record, "file: line n") for every usable line of the JSON-lines files; each unusable
    line adds one problem naming file and line (the first MAX_PROBLEMS; then a count)."""
    bad = 0
    for path in paths:
        name = "-" if path == "-" else Path(path).name
        try:
            f = open(0 if path == "-" else path, "rb", closefd=path != "-")  # noqa: SIM115
        except OSError as err:
            raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
        with f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parsed = _parse_line(line)
                if isinstance(parsed, str):
                    bad += 1
                    if bad <= MAX_PROBLEMS:
                        problems.append(f"{name}: line {n}: {parsed}")
                    continue
                kind, r = parsed
                yield kind, r, f"{name}: line {n}"
    if bad > MAX_PROBLEMS:
        problems.append(f"... and {bad - MAX_PROBLEMS} more unusable lines")


def _parse_line(line: bytes) -> tuple[str, dict] | str:
    """(kind, record) of one JSON line, or why the line is unusable."""
    try:
        r = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        return f"not JSON ({err.msg})"
    kind = record_kind(r) if isinstance(r, dict) else None
    if kind is None:
        return "neither a scan nor a bgp record"
    try:
        _check_times(r, kind)
    except (MalformedError, UserError, TypeError) as err:
        return str(err)
    return kind, r


def _check_times(r: dict, kind: str) -> None:
    field_name = "first_ts" if kind == "scan" else ("time" if r.get("record") == "event" else "first_seen")
    value = r.get(field_name)
    if not isinstance(value, str):
        raise UserError(f"{field_name}: missing or not a string")
    try:
        parse_instant(value)
    except (MalformedError, UserError) as err:
        raise UserError(f"{field_name}: {err}") from None


def aggregate(paths: Iterable[str], problems: list[str]) -> Aggregate:
    """One aggregate of every record; UserError if the files mix scan and BGP records or hold none."""
    agg: Aggregate | None = None
    for kind, r, where in read_records(paths, problems):
        if agg is None:
            agg = ScanAggregate() if kind == "scan" else BgpAggregate()
        elif agg.kind != kind:
            raise UserError(f"the inputs mix {agg.kind} and {kind} records: make one report of each")
        try:
            agg.add(r)
        except (TypeError, AttributeError, ValueError, KeyError) as err:
            # A record whose fields have other types than the schema's: named, the rest goes on
            # (counted in no total; counts it added before the bad field stay).
            agg.records -= 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(f"{where}: a field is not of its schema type ({type(err).__name__}: {err})")
    if agg is None:
        more = f" ({problems[0]})" if problems else ""
        raise UserError(f"no scan or bgp records in {', '.join(paths)}{more}")
    return agg
