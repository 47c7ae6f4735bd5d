"""Records and reports of the MRT audit: route and timeline records, JSON lines, CSV, a rich table.

A route record is one path of one route (peer, prefix, ADD-PATH id) for one app of the operator
it concerns; a timeline record is one change of such a route (or a policy change while it was
live) with the decision in both views. The summary counts distinct prefixes per origin ASN,
per transit ASN and per neighbour.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

from classifier.policy import VIEWS
from classifier.timeutil import format_instant

from .aspath import DIRECT, PathInfo
from .attributes import FIELDS as ATTRIBUTE_FIELDS
from .decide import Decider, Verdict
from .irr import RouteObjects
from .mrt import FileStats
from .routes import POLICY_CHANGE, Event, RouteRecord, RouteTable
from .rpki import VrpSet


class Writable(Protocol):
    """Where records and tables go: a text file or :class:`classifier.outputs.TextOutput`."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> None: ...


ROUTE_COLUMNS: tuple[str, ...] = (
    "record",
    "file",
    "source",
    "prefix",
    "origin_asn",
    "origin_as_set",
    "operator",
    "origin_operator",
    "app",
    "role",
    "operator_asns",
    "transit_asns",
    "as_path",
    "peer_asn",
    "peer_ip",
    "path_id",
    "viewpoint_asn",
    "neighbour_asn",
    "neighbour_operator",
    "relationship",
    "first_seen",
    "last_seen",
    "state",
    "announcements",
    "withdrawals",
    "action",
    "view",
    "decided_at",
    "rule",
    "reason",
    "provisions",
    *ATTRIBUTE_FIELDS,
    "rpki",
    "rpki_vrps",
    "irr",
    "irr_objects",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "record",
    "time",
    "event",
    "file",
    "prefix",
    "origin_asn",
    "origin_as_set",
    "operator",
    "app",
    "as_path",
    "previous_as_path",
    "peer_asn",
    "peer_ip",
    "path_id",
    "viewpoint_asn",
    "neighbour_asn",
    "relationship",
    "previous_relationship",
    "first_seen",
    "last_seen",
    "detail",
    "action",
    "view",
    "decided_at",
    "rule",
    "reason",
    "action_announced",
    "rule_announced",
    "reason_announced",
    "provisions_announced",
    "action_in_force",
    "rule_in_force",
    "reason_in_force",
    "provisions_in_force",
)


def _path_fields(info: PathInfo) -> dict[str, Any]:
    return {
        "origin_asn": info.origin_asn,
        "origin_as_set": list(info.origin_set) if info.origin_set is not None else None,
        "operator": info.operator,
        "as_path": info.as_path,
        "viewpoint_asn": info.viewpoint,
        "neighbour_asn": info.neighbour_asn,
        "relationship": info.relationship,
    }


def _verdict_fields(v: Verdict) -> dict[str, Any]:
    return {"action": v.action, "view": v.view, "decided_at": v.at, "rule": v.rule, "reason": v.reason}


class Records:
    """Turns the route table into records, deciding each with the policy."""

    def __init__(
        self,
        table: RouteTable,
        decider: Decider,
        apps: Mapping[str, tuple[str, ...]],
        view: str,
        as_of: float | None,
        vrps: VrpSet | None = None,
        irr: RouteObjects | None = None,
    ) -> None:
        self.table = table
        self.decider = decider
        self.apps = apps
        self.view = view
        self.as_of = as_of
        self.vrps = vrps
        self.irr = irr

    def _origin_checks(self, prefix: str, origin_asn: int | None) -> dict[str, Any]:
        """RPKI origin validation and IRR registration of (prefix, origin), when files were given."""
        out: dict[str, Any] = {"rpki": None, "rpki_vrps": [], "irr": None, "irr_objects": []}
        if self.vrps is not None:
            v = self.vrps.validate(prefix, origin_asn)
            out["rpki"], out["rpki_vrps"] = v.state, [str(x) for x in v.vrps]
        if self.irr is not None:
            r = self.irr.check(prefix, origin_asn)
            out["irr"], out["irr_objects"] = r.state, [str(x) for x in r.objects]
        return out

    def _verdict(self, record: RouteRecord, app: str, when: float, view: str) -> Verdict:
        return self.decider.decide(
            record.info, app, record.prefix, self.as_of if self.as_of is not None else when, view
        )

    def routes(self) -> Iterator[dict[str, Any]]:
        """One record per route path and app, in order of first sight."""
        for r in self.table.records:
            info = r.info
            checks = self._origin_checks(r.prefix, info.origin_asn)
            attributes = r.attributes.as_fields()
            for app in self.apps.get(info.operator, ()):
                if self.as_of is not None:
                    v = self.decider.decide(info, app, r.prefix, self.as_of, self.view)
                else:
                    v = self.decider.strictest(info, app, r.prefix, self.table.intervals(r), self.view)
                yield {
                    "record": "route",
                    "file": r.file,
                    "source": r.source,
                    "prefix": r.prefix,
                    **_path_fields(info),
                    "origin_operator": info.origin_operator,
                    "app": app,
                    "role": info.role,
                    "operator_asns": list(info.operator_asns),
                    "transit_asns": list(info.transit_asns),
                    "peer_asn": r.peer_asn,
                    "peer_ip": r.peer_ip,
                    "path_id": r.path_id,
                    "neighbour_operator": info.neighbour_operator,
                    "first_seen": format_instant(r.first_seen),
                    "last_seen": format_instant(r.last_seen),
                    "state": r.end,
                    "announcements": r.announcements,
                    "withdrawals": r.withdrawals,
                    **_verdict_fields(v),
                    "provisions": list(v.provisions),
                    **attributes,
                    **checks,
                }

    def events(self) -> list[dict[str, Any]]:
        """The timeline: every change of an operator route from updates, and every policy change
        while a direct route was live, each decided in both views; in time order."""
        events = list(self.table.events)
        for r in self.table.records:
            if r.source != "update" or r.info.relationship != DIRECT:
                continue
            for app in self.apps.get(r.info.operator, ()):
                for start, end in self.table.intervals(r):
                    for when in self.decider.changes_within(app, start, end):
                        events.append(
                            Event(
                                when,
                                POLICY_CHANGE,
                                r.file,
                                r,
                                app=app,
                                detail=f"a {app} transit-peering provision changes status",
                            )
                        )
        events.sort(key=lambda e: e.time)
        out: list[dict[str, Any]] = []
        for e in events:
            r = e.record
            for app in self.apps.get(r.info.operator, ()):
                if e.app is not None and e.app != app:
                    continue
                both = {view: self._verdict(r, app, e.time, view) for view in VIEWS}
                chosen = both[self.view]
                prev = e.previous
                row = {
                    "record": "event",
                    "time": format_instant(e.time),
                    "event": e.kind,
                    "file": e.file,
                    "prefix": r.prefix,
                    **_path_fields(r.info),
                    "app": app,
                    "previous_as_path": prev.info.as_path if prev is not None else None,
                    "peer_asn": r.peer_asn,
                    "peer_ip": r.peer_ip,
                    "path_id": r.path_id,
                    "previous_relationship": prev.info.relationship if prev is not None else None,
                    "first_seen": format_instant(r.first_seen),
                    "last_seen": format_instant(r.last_seen),
                    "detail": e.detail,
                    **_verdict_fields(chosen),
                }
                if e.as_path is not None:  # replaced by a path without operator ASN
                    row["previous_as_path"], row["as_path"] = r.info.as_path, e.as_path
                for view, v in both.items():
                    suffix = view.replace("-", "_")
                    row[f"action_{suffix}"] = v.action
                    row[f"rule_{suffix}"] = v.rule
                    row[f"reason_{suffix}"] = v.reason
                    row[f"provisions_{suffix}"] = list(v.provisions)
                out.append(row)
        return out


# --------------------------------------------------------------------------------------------
# Summary


@dataclass
class Summary:
    """Distinct prefixes per origin ASN, transit ASN and neighbour; from the route records."""

    origins: dict[str, dict[int, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    origin_sets: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    origin_paths: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    transit: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    transit_paths: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    neighbours: dict[tuple, set[str]] = field(default_factory=lambda: defaultdict(set))
    routes: int = 0
    direct: int = 0

    @classmethod
    def of(cls, records: Iterable[RouteRecord]) -> Summary:
        s = cls()
        for r in records:
            info = r.info
            s.routes += 1
            s.direct += info.relationship == DIRECT
            if info.origin_operator is not None:
                if info.origin_asn is not None:
                    s.origins[info.origin_operator][info.origin_asn].add(r.prefix)
                    s.origin_paths[info.origin_asn].add(info.as_path)
                else:
                    s.origin_sets[info.origin_operator].add(r.prefix)
            for asn in info.transit_asns:
                s.transit[asn].add(r.prefix)
                s.transit_paths[asn].add(info.as_path)
            s.neighbours[(info.viewpoint, info.neighbour_asn, info.relationship, info.operator)].add(r.prefix)
        return s

    def operator_prefixes(self, operator: str) -> set[str]:
        """Distinct prefixes originated by any ASN of ``operator`` (AS_SET origins included)."""
        out = set(self.origin_sets.get(operator, ()))
        for prefixes in self.origins.get(operator, {}).values():
            out |= prefixes
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "originated": {
                op: {
                    "prefixes": len(self.operator_prefixes(op)),
                    "by_asn": {str(a): len(p) for a, p in sorted(asns.items())},
                    "as_set_origins": len(self.origin_sets.get(op, ())),
                }
                for op, asns in sorted(self.origins.items())
            },
            "transit": {
                str(a): {"prefixes": len(p), "paths": len(self.transit_paths[a])}
                for a, p in sorted(self.transit.items())
            },
            "routes": self.routes,
            "direct_routes": self.direct,
        }

    def lines(self, apps: Mapping[str, tuple[str, ...]]) -> list[str]:
        if not self.routes:
            return ["no route concerns an operator ASN"]
        out = []
        for op in sorted(set(self.origins) | set(self.origin_sets)):
            by = ", ".join(
                f"AS{a} {len(p)}"
                for a, p in sorted(self.origins.get(op, {}).items(), key=lambda kv: -len(kv[1]))
            )
            sets = len(self.origin_sets.get(op, ()))
            out.append(
                f"originated by {op} ({'/'.join(apps.get(op, ()))}): "
                f"{len(self.operator_prefixes(op))} distinct prefixes ({by}"
                f"{f', AS_SET origins {sets}' if sets else ''})"
            )
        for asn, prefixes in sorted(self.transit.items()):
            out.append(
                f"transit through AS{asn}: {len(prefixes)} prefixes, {len(self.transit_paths[asn])} paths"
            )
        out.append(f"{self.routes} operator route paths, {self.direct} direct")
        return out


def input_lines(stats: Iterable[FileStats]) -> list[str]:
    """One line per input, then its problems."""
    out = []
    for st in stats:
        kinds = ", ".join(f"{k} {v}" for k, v in st.by_type.most_common())
        out.append(
            f"{st.file}: {st.records} records ({kinds or 'none'}), {st.rib_prefixes} RIB prefixes, "
            f"{st.rib_entries} RIB entries, {st.updates} updates, {st.decoded} decoded"
            f"{'' if st.compression == 'none' else f', {st.compression}'}"
        )
        if st.skipped:
            out.append("  not audited (counted): " + ", ".join(f"{k} {v}" for k, v in st.skipped.items()))
        out.extend(f"input problem: {p}" for p in st.problems)
    return out


# --------------------------------------------------------------------------------------------
# Writers


def _flat(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):  # objects (kernel operator prefixes) as their values, space-separated
        return ";".join(" ".join(map(str, v.values())) if isinstance(v, dict) else str(v) for v in value)
    return value


class CsvRows:
    """A CSV writer with fixed columns; arrays joined with ';'."""

    def __init__(self, out: Writable, columns: tuple[str, ...]) -> None:
        self.out = out
        self.columns = columns
        self._w = csv.writer(out)
        self._w.writerow(columns)

    def write(self, record: dict[str, Any]) -> None:
        self._w.writerow([_flat(record.get(k)) for k in self.columns])

    def close(self) -> None:
        self.out.flush()


def writer_for(fmt: str, out: Writable, columns: tuple[str, ...]) -> Any:
    """JSON lines (the project's writer) or CSV with ``columns``."""
    if fmt == "csv":
        return CsvRows(out, columns)
    from classifier.record import JsonLinesWriter

    return JsonLinesWriter(cast(IO[str], out))


def _short(instant: str) -> str:
    """An ISO instant to the second, for table cells."""
    return instant[:19].replace("T", " ")


def _asn(asn: int | None) -> str:
    return f"AS{asn}" if asn is not None else "-"


def _status(action: str, rule: str, provisions: list[str]) -> str:
    """``log (not-yet-effective)``: the action and what the covering provisions' status was."""
    from .decide import RULE_INDIRECT, RULE_OWN

    if rule in (RULE_INDIRECT, RULE_OWN):
        return f"{action} ({'indirect' if rule == RULE_INDIRECT else 'own network'})"
    states = sorted({p.split(":", 1)[1].replace(":", ", ") for p in provisions})
    return f"{action} ({'; '.join(states) or 'no provision'})"


def _width() -> int:
    """The terminal's width when there is one (at least 100), else 120 columns."""
    import shutil

    return max(100, shutil.get_terminal_size((120, 24)).columns)


def _prefix_order(prefix: str) -> tuple[int, int, int]:
    import ipaddress

    net = ipaddress.ip_network(prefix, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)


class _Tables:
    """Titled tables on one console: the title on its own line (never wrapped into the table's
    width), headers that do not wrap, long cells cut with an ellipsis so a row fits the terminal."""

    def __init__(self, out: Writable) -> None:
        from classifier.outputs import rich_console

        self.console = rich_console(cast(IO[str], out), _width())

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def table(
        self,
        title: str,
        columns: tuple[str, ...],
        rows: list[tuple[str, ...]],
        right: tuple[str, ...] = (),
        wide: tuple[str, ...] = (),
    ) -> None:
        from rich import box
        from rich.table import Table

        if not rows:
            self.say(f"{title}: none")
            return
        self.say(title)
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
        for i, col in enumerate(columns):
            longest = max([len(col)] + [len(row[i]) for row in rows])
            # only the free-form columns may shrink (cut with an ellipsis); the rest keep their width
            t.add_column(
                col,
                justify="right" if col in right else "left",
                no_wrap=True,
                overflow="ellipsis",
                min_width=min(longest, 12) if col in wide else longest,
            )
        for row in rows:
            t.add_row(*row)
        self.console.print(t)


def render_table(
    out: Writable,
    routes: list[dict[str, Any]],
    events: list[dict[str, Any]],
    summary: Summary,
    stats: list[FileStats],
    apps: Mapping[str, tuple[str, ...]],
    view: str,
    sessions: list[dict[str, Any]] | None = None,
    warnings: list[str] | None = None,
    limit: int = 60,
) -> None:
    """The auditor's view: sessions, origins, transit, neighbours, direct routes and their timeline;
    each list once, sorted by neighbour then prefix."""
    tables = _Tables(out)
    say, table = tables.say, tables.table

    say(f"BGP audit of {len(stats)} input(s) ({view} view)")
    for line in warnings or ():
        say(line)
    if not summary.routes:
        say("No route concerns an operator ASN.")
    else:
        sessions = sessions or []
        table(
            "Sessions carrying operator routes (per operator; ann/wdr/live: distinct prefixes)",
            (
                "session",
                "type",
                "operator",
                "relation",
                "via",
                "ann",
                "wdr",
                "live",
                "direct",
                f"{view} decision",
            ),
            [
                (
                    f"AS{s['peer_asn']} {s['peer_ip']}",
                    s["session_type"],
                    s["operator"],
                    s["relationship"],
                    " ".join(f"AS{a}" for a in s["neighbour_asns"]) or "-",
                    str(s["announced"]),
                    str(s["withdrawn"]),
                    str(s["live"]),
                    str(s["direct_prefixes"]),
                    _status(s["action"], s["rule"], s["provisions"]) if s["rule"] else s["action"],
                )
                for s in sessions
            ],
            ("ann", "wdr", "live", "direct"),
            ("via",),
        )
        activity = {(s["peer_asn"], s["peer_ip"]): s for s in sessions}
        table(
            "Session activity",
            ("session", "local AS", "first seen", "last seen", "messages", "state changes"),
            [
                (
                    f"AS{s['peer_asn']} {s['peer_ip']}",
                    _asn(s["local_asn"]),
                    _short(s["first_seen"])[:16],
                    _short(s["last_seen"])[:16],
                    str(s["messages"]),
                    f"{len(s['state_changes'])}; now {s['state']} since {_short(s['last_state_change'])}"
                    if s["state_changes"]
                    else "none",
                )
                for s in activity.values()
            ],
            ("messages",),
            ("state changes",),
        )
        rows: list[tuple[str, ...]] = []
        for op in sorted(set(summary.origins) | set(summary.origin_sets)):
            app = "/".join(apps.get(op, ()))
            for asn, prefixes in sorted(summary.origins.get(op, {}).items(), key=lambda kv: -len(kv[1])):
                rows.append((op, app, f"AS{asn}", str(len(prefixes)), str(len(summary.origin_paths[asn]))))
            if summary.origin_sets.get(op):
                rows.append((op, app, "AS_SET", str(len(summary.origin_sets[op])), ""))
            rows.append((op, app, "all (distinct)", str(len(summary.operator_prefixes(op))), ""))
        table(
            "Prefixes originated by operator ASNs",
            ("operator", "app", "origin ASN", "prefixes", "paths"),
            rows,
            ("prefixes", "paths"),
        )
        table(
            "Paths through an operator ASN (transit)",
            ("transit ASN", "prefixes", "paths"),
            [
                (f"AS{asn}", str(len(p)), str(len(summary.transit_paths[asn])))
                for asn, p in sorted(summary.transit.items())
            ],
            ("prefixes", "paths"),
        )
        neighbours = sorted(summary.neighbours.items(), key=lambda kv: (kv[0][2] != DIRECT, -len(kv[1])))
        table(
            "Neighbours through which operator prefixes are reached",
            ("viewpoint", "neighbour", "relationship", "operator", "prefixes"),
            [(_asn(vp), _asn(nb), rel, op, str(len(p))) for (vp, nb, rel, op), p in neighbours],
            ("prefixes",),
        )

        direct = sorted(
            (r for r in routes if r["relationship"] == DIRECT),
            key=lambda r: (
                r["neighbour_asn"] or 0,
                _prefix_order(r["prefix"]),
                r["peer_asn"] or 0,
                r["peer_ip"],
                r["path_id"] or 0,
                r["app"],
            ),
        )
        checks = any(r["rpki"] is not None or r["irr"] is not None for r in direct)
        columns = (
            "neighbour",
            "prefix",
            "as_path",
            "peer",
            "app",
            "first seen",
            "state",
            *(("rpki", "irr") if checks else ()),
            f"{view} decision",
        )
        table(
            f"Direct routes ({len(direct)}), by neighbour then prefix",
            columns,
            [
                (
                    f"AS{r['neighbour_asn']}",
                    r["prefix"],
                    r["as_path"],
                    _peer(r, sessions),
                    r["app"],
                    _short(r["first_seen"])[:16],
                    r["state"],
                    *((r["rpki"] or "-", r["irr"] or "-") if checks else ()),
                    _status(r["action"], r["rule"], r["provisions"]),
                )
                for r in direct[:limit]
            ],
            (),
            ("as_path", "peer"),
        )
        if len(direct) > limit:
            say(f"... {len(direct) - limit} more direct routes: use --format jsonl or csv")

        shown = [e for e in events if DIRECT in (e["relationship"], e["previous_relationship"])]
        table(
            f"Timeline of direct routes ({len(shown)} of {len(events)} events)",
            ("time", "event", "prefix", "as_path", "peer", "app", "announced", "in-force"),
            [
                (
                    _short(e["time"]),
                    e["event"],
                    e["prefix"],
                    e["as_path"],
                    _peer(e, sessions),
                    e["app"],
                    _status(e["action_announced"], e["rule_announced"], e["provisions_announced"]),
                    _status(e["action_in_force"], e["rule_in_force"], e["provisions_in_force"]),
                )
                for e in shown[:limit]
            ],
            (),
            ("as_path",),
        )
        if len(shown) > limit:
            say(f"... {len(shown) - limit} more: use --timeline --format jsonl or csv")
        if direct:
            # one reason per decision (rule and provisions' status), as given for its first route
            reasons: dict[tuple[str, str, tuple[str, ...]], tuple[str, list[str]]] = {}
            for r in direct:
                key = (r["action"], r["rule"], tuple(r["provisions"]))
                reasons.setdefault(key, (r["reason"].split(" [", 1)[0], []))[1].append(r["prefix"])
            say(f"Why ({view} view; times UTC), once per decision:")
            for reason, nets in reasons.values():
                more = f" and {len(nets) - 2} more" if len(nets) > 2 else ""
                say(f"  {len(nets)} direct routes ({', '.join(nets[:2])}{more}): {reason}")
        say(f"{summary.routes} operator route paths, {summary.direct} direct")
    for line in input_lines(stats):
        say(line)


def _peer(row: dict[str, Any], sessions: list[dict[str, Any]]) -> str:
    """The peer ASN, with its address when several sessions share that ASN."""
    same = {s["peer_ip"] for s in sessions if s["peer_asn"] == row["peer_asn"]}
    return f"AS{row['peer_asn']}" + (f" {row['peer_ip']}" if len(same) > 1 else "")


def render_diff(out: Writable, rows: list[dict[str, Any]], old: str, new: str) -> None:
    """The changes between two audits, by kind."""
    tables = _Tables(out)
    tables.say(f"Changes from {old} to {new}: {len(rows)}")
    for kind, columns in (
        ("session", ("change", "peer", "operator")),
        ("direct-route", ("change", "neighbour", "prefix", "as_path", "peer")),
        ("operator-prefix", ("change", "prefix", "origin", "operator")),
    ):
        chosen = [r for r in rows if r["kind"] == kind]
        cells: list[tuple[str, ...]]
        if kind == "session":
            cells = [(r["change"], f"AS{r['peer_asn']} {r['peer_ip']}", r["operator"]) for r in chosen]
        elif kind == "direct-route":
            chosen.sort(key=lambda r: (r["neighbour_asn"] or 0, _prefix_order(r["prefix"])))
            cells = [
                (
                    r["change"],
                    _asn(r["neighbour_asn"]),
                    r["prefix"],
                    r["as_path"],
                    f"AS{r['peer_asn']} {r['peer_ip']}",
                )
                for r in chosen
            ]
        else:
            chosen.sort(key=lambda r: _prefix_order(r["prefix"]))
            cells = [(r["change"], r["prefix"], _asn(r["origin_asn"]), r["operator"]) for r in chosen]
        tables.table(f"{kind}s", columns, cells, (), ("as_path",))
