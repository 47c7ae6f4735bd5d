"""The audit per BGP session: which session carries operator routes, what kind of session it is,
and what the policy says about it; what a peering engineer changes is a session's filter.

A session is a (peer ASN, peer address) of the input: a collector's peer, or a neighbour of the
router that wrote the dump. Its kind is read from the routes it carried:

* ``ibgp``: the peer's ASN is the recording router's own (a route reflector when the routes carry
  ORIGINATOR_ID / CLUSTER_LIST);
* ``route-server``: eBGP, and no path starts with the peer's ASN (an IXP route server does not
  put itself in the path; its communities usually name its ASN);
* ``bilateral``: every path starts with the peer's ASN; ``mixed`` when some do and some do not.

Per session and operator the record counts distinct prefixes announced, withdrawn and live at the
end of the data, and is ``direct`` when any of its routes reaches the operator through a session
with it (through a route server: the operator's ASN is the first of the path); its decision is the
strictest of those routes' decisions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from classifier.timeutil import format_instant

from .aspath import DIRECT, INDIRECT, OWN, UNKNOWN
from .decide import RULE_INDIRECT, RULE_OWN, RULE_VIEWPOINT
from .mrt import FileStats
from .routes import RouteRecord, RouteTable
from .updates import Peer

SESSION_COLUMNS: tuple[str, ...] = (
    "record",
    "peer_asn",
    "peer_ip",
    "local_asn",
    "session_type",
    "session_evidence",
    "next_hops",
    "first_seen",
    "last_seen",
    "messages",
    "state",
    "state_changes",
    "last_state_change",
    "operator",
    "apps",
    "relationship",
    "neighbour_asns",
    "announced",
    "withdrawn",
    "live",
    "direct_prefixes",
    "action",
    "view",
    "decided_at",
    "rule",
    "reason",
    "provisions",
)
_ORDER = {DIRECT: 0, UNKNOWN: 1, INDIRECT: 2, OWN: 3}
_RULES = {INDIRECT: RULE_INDIRECT, OWN: RULE_OWN, UNKNOWN: RULE_VIEWPOINT}


@dataclass
class _Session:
    records: list[RouteRecord] = field(default_factory=list)
    first: float | None = None
    last: float | None = None
    messages: int = 0


def session_kind(
    peer_asn: int | None, local_asn: int | None, records: Iterable[RouteRecord]
) -> tuple[str, str]:
    """(kind, evidence) of a session from the routes it carried (see the module docstring)."""
    records = list(records)
    if peer_asn is not None and local_asn is not None and peer_asn == local_asn:
        reflected = sum(1 for r in records if r.attributes.cluster_list or r.attributes.originator_id)
        reflection = f"; {reflected} routes reflected (ORIGINATOR_ID/CLUSTER_LIST)" if reflected else ""
        return "ibgp", f"peer AS{peer_asn} is the recording router's AS{reflection}"
    starting = sum(1 for r in records if r.info.path and r.info.path[0] == peer_asn)
    if not records or peer_asn is None:
        return "unknown", "no operator route to judge by"
    tagged = sum(
        1 for r in records if any(c.split(":", 1)[0] == str(peer_asn) for c in r.attributes.communities)
    )
    tags = f"; {tagged} carry a community of AS{peer_asn}" if tagged else ""
    if starting == 0:
        return "route-server", f"AS{peer_asn} starts none of {len(records)} paths{tags}"
    if starting == len(records):
        return "bilateral", f"AS{peer_asn} starts all {len(records)} paths{tags}"
    return "mixed", f"AS{peer_asn} starts {starting} of {len(records)} paths{tags}"


def _strictest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    from classifier.policy import RULE_UNENFORCED

    def rank(r: dict[str, Any]) -> tuple[int, str]:
        level = 3 if r["action"] == "block" else 2 if r["rule"] == RULE_UNENFORCED else 1
        return (-level, r["decided_at"])

    return min(rows, key=rank) if rows else None


def session_rows(
    table: RouteTable,
    route_rows: Iterable[dict[str, Any]],
    stats: Iterable[FileStats],
    apps: Mapping[str, tuple[str, ...]],
    view: str,
) -> list[dict[str, Any]]:
    """One record per session and operator concerned, sorted by peer ASN, then address."""
    sessions: dict[Peer, _Session] = defaultdict(_Session)
    for st in stats:
        for peer, (first, last, count) in st.peers.items():
            s = sessions[peer]
            s.first = first if s.first is None else min(s.first, first)
            s.last = last if s.last is None else max(s.last, last)
            s.messages += int(count)
    for r in table.records:
        sessions[(r.peer_asn, r.peer_ip)].records.append(r)
    decided: dict[tuple[Any, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in route_rows:
        if row["relationship"] == DIRECT:
            decided[(row["peer_asn"], row["peer_ip"], row["operator"])].append(row)

    out = []
    for peer in sorted((p for p, s in sessions.items() if s.records), key=lambda p: (p[0] or 0, p[1])):
        s = sessions[peer]
        local = table.session_local.get(peer)
        kind, evidence = session_kind(peer[0], local, s.records)
        changes = table.state_changes.get(peer, [])
        hops = sorted({h for r in s.records for h in r.attributes.next_hops})
        first = min([r.first_seen for r in s.records] + ([s.first] if s.first is not None else []))
        last = max([r.last_seen for r in s.records] + ([s.last] if s.last is not None else []))
        by_operator: dict[str, list[RouteRecord]] = defaultdict(list)
        for r in s.records:
            by_operator[r.info.operator].append(r)
        for op in sorted(by_operator):
            records = by_operator[op]
            relationship = min((r.info.relationship for r in records), key=lambda x: _ORDER.get(x, 9))
            direct = [r for r in records if r.info.relationship == DIRECT]
            verdict = _strictest(decided.get((peer[0], peer[1], op), []))
            out.append(
                {
                    "record": "session",
                    "peer_asn": peer[0],
                    "peer_ip": peer[1],
                    "local_asn": local,
                    "session_type": kind,
                    "session_evidence": evidence,
                    "next_hops": hops,
                    "first_seen": format_instant(first),
                    "last_seen": format_instant(last),
                    "messages": s.messages,
                    "state": changes[-1].new if changes else None,
                    "state_changes": [f"{format_instant(c.when)} {c.old}->{c.new}" for c in changes],
                    "last_state_change": format_instant(changes[-1].when) if changes else None,
                    "operator": op,
                    "apps": list(apps.get(op, ())),
                    "relationship": relationship,
                    "neighbour_asns": sorted(
                        {r.info.neighbour_asn for r in direct if r.info.neighbour_asn is not None}
                    ),
                    "announced": len({r.prefix for r in records}),
                    "withdrawn": len({r.prefix for r in records if r.withdrawals or r.end == "withdrawn"}),
                    "live": len({r.prefix for r in records if r.end == "live"}),
                    "direct_prefixes": len({r.prefix for r in direct}),
                    "action": verdict["action"] if verdict else "log",
                    "view": view,
                    "decided_at": verdict["decided_at"] if verdict else None,
                    "rule": verdict["rule"] if verdict else _RULES.get(relationship),
                    "provisions": verdict["provisions"] if verdict else [],
                    "reason": verdict["reason"] if verdict else _no_direct(op, relationship),
                }
            )
    return out


def _no_direct(operator: str, relationship: str) -> str:
    return f"log: no route of this session reaches {operator} through a session with it ({relationship})"
