"""Which interfaces and next hops of this gateway carry operator prefixes (pyroute2, any netns).

Every routing table is read (main, local, VRF tables and any other), with the protocol that
installed each route (named as ``ip route`` names it), its next hops (all of them for a multipath
route) and their output interfaces. A route carries an operator prefix when

* it lies inside one (``inside``, or ``exact`` when equal): it is matched to the most specific
  operator prefix that contains it, as a lookup would; or
* it covers one and is the longest route of its table that does (``covers``): longest-prefix
  semantics, so a default route counts only for the operator prefixes nothing else routes.

The kernel does not know AS paths; a next hop is an operator's only when the deployment's peering
map (``--peering``: interface or neighbour MAC to ASN) says so, and only then is the route a
direct relationship the policy decides (for the apps of the neighbour's operator, as for MRT
paths); a next hop the map names with another ASN is ``indirect``, one it does not name ``unknown``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from classifier.errors import UserError

from .decide import Decider
from .prefixes import OperatorPrefix, OperatorPrefixes

if TYPE_CHECKING:
    from .output import Writable

# Linux's RTPROT_* values (include/uapi/linux/rtnetlink.h); /etc/iproute2/rt_protos overrides.
KERNEL_PROTOCOLS = {
    0: "unspec",
    1: "redirect",
    2: "kernel",
    3: "boot",
    4: "static",
    8: "gated",
    9: "ra",
    10: "mrt",
    11: "zebra",
    12: "bird",
    13: "dnrouted",
    14: "xorp",
    15: "ntk",
    16: "dhcp",
    17: "mrouted",
    18: "keepalived",
    42: "babel",
    99: "openr",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
    192: "eigrp",
}
KERNEL_TABLES = {0: "unspec", 253: "default", 254: "main", 255: "local"}
FORWARDING_TYPES = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw"}
RELATION_ORDER = ("exact", "inside", "covers")
IPROUTE2_DIRS = (Path("/etc/iproute2"), Path("/usr/lib/iproute2"), Path("/usr/share/iproute2"))
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))

KERNEL_COLUMNS = (
    "record",
    "netns",
    "table",
    "table_name",
    "vrf",
    "family",
    "route",
    "default_route",
    "protocol",
    "type",
    "metric",
    "nexthops",
    "gateways",
    "interfaces",
    "relation",
    "operator_prefixes",
    "operator_asns",
    "operator",
    "app",
    "neighbour_asn",
    "relationship",
    "action",
    "view",
    "decided_at",
    "rule",
    "reason",
)


@dataclass(slots=True)
class NextHop:
    gateway: str | None
    iface: str | None
    weight: int | None = None
    mac: str | None = None

    def text(self) -> str:
        parts = [f"via {self.gateway}" if self.gateway else "direct", f"dev {self.iface or '?'}"]
        if self.weight is not None:
            parts.append(f"weight {self.weight}")
        return " ".join(parts)


@dataclass(slots=True)
class KernelRoute:
    family: int
    start: int
    length: int
    prefix: str
    table: int
    protocol: str
    type: str
    metric: int | None
    nexthops: list[NextHop] = field(default_factory=list)


@dataclass
class Snapshot:
    """The routes of one namespace, with table and VRF names."""

    where: str
    netns: str | None
    routes: list[KernelRoute]
    table_names: dict[int, str]
    vrfs: dict[int, str]

    def tables(self) -> list[int]:
        return sorted({r.table for r in self.routes})

    def table_name(self, table: int) -> str:
        return self.table_names.get(table, str(table))


def _names(filename: str, builtin: dict[int, str]) -> dict[int, str]:
    """iproute2's number-to-name files (``rt_protos``, ``rt_tables`` and their ``.d`` dirs)."""
    names = dict(builtin)
    for base in IPROUTE2_DIRS:
        files = [base / filename, *sorted((base / f"{filename}.d").glob("*.conf"))]
        for path in files:
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and fields[0].isdigit():
                    names[int(fields[0])] = fields[1]
    return names


def _netns_exists(name: str) -> bool:
    return any((d / name).exists() for d in NETNS_DIRS)


def read_kernel(netns: str | None) -> Snapshot:
    """Dump every route of every table through netlink (pyroute2)."""
    from pyroute2 import IPRoute

    if netns is not None and ("/" in netns or not _netns_exists(netns)):
        raise UserError(f"--netns {netns}: no such network namespace (see `ip netns list`)")
    protocols = _names("rt_protos", KERNEL_PROTOCOLS)
    try:
        ipr = IPRoute(netns=netns) if netns else IPRoute()
    except OSError as err:
        raise UserError(f"cannot open netlink{f' in netns {netns}' if netns else ''}: {err}") from None
    with ipr:
        links = list(ipr.get_links())
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        vrfs: dict[int, str] = {}
        for link in links:
            info = link.get_attr("IFLA_LINKINFO")
            if info and info.get_attr("IFLA_INFO_KIND") == "vrf":
                data = info.get_attr("IFLA_INFO_DATA")
                table = data.get_attr("IFLA_VRF_TABLE") if data else None
                if table is not None:
                    vrfs[table] = link.get_attr("IFLA_IFNAME")
        macs: dict[tuple[int, str], str] = {}
        for n in ipr.get_neighbours():
            dst, mac = n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")
            if dst and mac:
                macs[(n["ifindex"], dst)] = mac.lower()
        routes = [r for msg in ipr.route("dump") if (r := _route(msg, names, macs, protocols))]
    where = f"netns {netns}" if netns else "this network namespace"
    return Snapshot(where, netns, routes, _names("rt_tables", KERNEL_TABLES), vrfs)


def _gateway(attrs: Any) -> str | None:
    gw = attrs.get_attr("RTA_GATEWAY") if hasattr(attrs, "get_attr") else None
    if gw is None:
        via = attrs.get_attr("RTA_VIA") if hasattr(attrs, "get_attr") else None
        if isinstance(via, dict):
            gw = via.get("addr")
    return gw


def _hop_attrs(hop: dict[str, Any]) -> dict[str, Any]:
    return dict(hop.get("attrs", ()))


def _route(
    msg: Any, names: dict[int, str], macs: dict[tuple[int, str], str], protocols: dict[int, str]
) -> KernelRoute | None:
    kind = FORWARDING_TYPES.get(msg["type"])
    family = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(msg["family"])
    if kind is None or family is None:
        return None  # local, broadcast, multicast...: the host's own addresses, not forwarding
    length = msg["dst_len"]
    dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == 4 else "::")
    packed = socket.inet_pton(socket.AF_INET if family == 4 else socket.AF_INET6, dst)
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    hops: list[NextHop] = []
    multipath = msg.get_attr("RTA_MULTIPATH")
    if multipath:
        for hop in multipath:
            attrs = _hop_attrs(hop)
            gw = attrs.get("RTA_GATEWAY")
            if gw is None and isinstance(attrs.get("RTA_VIA"), dict):
                gw = attrs["RTA_VIA"].get("addr")
            oif = hop.get("oif")
            mac = macs.get((oif, gw)) if gw else None
            hops.append(NextHop(gw, names.get(oif), hop.get("hops", 0) + 1, mac))
    elif kind == "unicast":
        gw = _gateway(msg)
        oif = msg.get_attr("RTA_OIF")
        hops.append(NextHop(gw, names.get(oif), None, macs.get((oif, gw)) if gw else None))
    return KernelRoute(
        family,
        int.from_bytes(packed, "big"),
        length,
        f"{dst}/{length}",
        table,
        protocols.get(msg["proto"], str(msg["proto"])),
        kind,
        msg.get_attr("RTA_PRIORITY"),
        hops,
    )


# --------------------------------------------------------------------------------------------
# Matching


class _TableIndex:
    """The routes of one table and family, for longest-prefix lookups of a network."""

    def __init__(self, routes: Iterable[KernelRoute], bits: int) -> None:
        self.bits = bits
        self.by_len: dict[int, dict[int, list[KernelRoute]]] = {}
        for r in routes:
            self.by_len.setdefault(r.length, {}).setdefault(r.start >> (bits - r.length), []).append(r)
        self.lengths = sorted(self.by_len, reverse=True)

    def longest_covering(self, start: int, length: int) -> list[KernelRoute]:
        for n in self.lengths:
            if n <= length:
                hit = self.by_len[n].get(start >> (self.bits - n))
                if hit:
                    return hit
        return []


def carried(snapshot: Snapshot, prefixes: OperatorPrefixes) -> dict[int, dict[OperatorPrefix, str]]:
    """Route (by index in the snapshot) -> operator prefixes it carries, with the relation."""
    out: dict[int, dict[OperatorPrefix, str]] = {}
    position = {id(r): i for i, r in enumerate(snapshot.routes)}
    for i, r in enumerate(snapshot.routes):
        op = prefixes.containing(r.family, r.start, r.length)
        if op is not None:
            out.setdefault(i, {})[op] = "exact" if op.length == r.length else "inside"
    groups: dict[tuple[int, int], list[KernelRoute]] = {}
    for r in snapshot.routes:
        groups.setdefault((r.table, r.family), []).append(r)
    for (_, family), routes in groups.items():
        index = _TableIndex(routes, 32 if family == 4 else 128)
        for p in prefixes.select(family=family):
            for r in index.longest_covering(p.start, p.length):
                relations = out.setdefault(position[id(r)], {})
                relations.setdefault(p, "exact" if r.length == p.length else "covers")
    return out


def audit_routes(
    snapshot: Snapshot, prefixes: OperatorPrefixes, sigs: Any, decider: Decider, when: float, view: str
) -> list[dict[str, Any]]:
    """One record per route, operator and app for every route that carries operator prefixes."""
    rows = []
    for i, relations in sorted(carried(snapshot, prefixes).items()):
        r = snapshot.routes[i]
        neighbour = _neighbour(r.nexthops, sigs.peering)
        by_operator: dict[str, list[tuple[OperatorPrefix, str]]] = {}
        for p, relation in sorted(relations.items(), key=lambda kv: (kv[0].start, kv[0].length)):
            by_operator.setdefault(p.operator, []).append((p, relation))
        n_op = sigs.operator_by_asn.get(neighbour) if neighbour is not None else None
        relationship = "unknown" if neighbour is None else "direct" if n_op is not None else "indirect"
        for owner, items in sorted(by_operator.items()):
            relation = min((rel for _, rel in items), key=RELATION_ORDER.index)
            operator = n_op or owner  # a session with an operator concerns that operator, as for MRT
            for app in sigs.operators[operator].apps:
                v = decider.decide_next_hop(app, operator, neighbour, n_op is not None, r.prefix, when, view)
                rows.append(
                    {
                        "record": "kernel-route",
                        "netns": snapshot.netns,
                        "table": r.table,
                        "table_name": snapshot.table_name(r.table),
                        "vrf": snapshot.vrfs.get(r.table),
                        "family": r.family,
                        "route": r.prefix,
                        "default_route": r.length == 0,
                        "protocol": r.protocol,
                        "type": r.type,
                        "metric": r.metric,
                        "nexthops": [h.text() for h in r.nexthops],
                        "gateways": sorted({h.gateway for h in r.nexthops if h.gateway}),
                        "interfaces": sorted({h.iface for h in r.nexthops if h.iface}),
                        "relation": relation,
                        "operator_prefixes": [
                            {"prefix": str(p.network), "asn": p.asn, "relation": rel} for p, rel in items
                        ],
                        "operator_asns": sorted({p.asn for p, _ in items}),
                        "operator": operator,
                        "app": app,
                        "neighbour_asn": neighbour,
                        "relationship": relationship,
                        "action": v.action,
                        "view": v.view,
                        "decided_at": v.at,
                        "rule": v.rule,
                        "reason": v.reason,
                    }
                )
    return rows


def _neighbour(hops: Iterable[NextHop], peering: dict[str, int]) -> int | None:
    """The ASN the peering map gives a next hop (by neighbour MAC, else interface), if any."""
    found = None
    for h in hops:
        for key in (h.mac, f"if:{h.iface}" if h.iface else None):
            if key and key in peering:
                found = peering[key] if found is None else found
    return found


def render_kernel(out: Writable, rows: list[dict[str, Any]], snapshot: Snapshot, view: str) -> None:
    """Routes carrying operator prefixes, per table; then which interfaces and next hops carry them."""
    from rich.table import Table

    from classifier.outputs import rich_console

    console = rich_console(cast(IO[str], out), 160)
    carrying = len({(r["table"], r["route"]) for r in rows})
    console.print(
        f"Routes carrying operator prefixes in {snapshot.where} ({view} view): {carrying} of "
        f"{len(snapshot.routes)} routes, {len(rows)} rows (one per route, operator and app)",
        highlight=False,
        markup=False,
    )
    t = Table()
    for col in (
        "table",
        "route",
        "protocol",
        "next hops",
        "relation",
        "operator prefixes",
        "operator",
        "relationship",
        "action",
    ):
        t.add_column(col)
    for r in rows:
        table = r["table_name"] + (f" (vrf {r['vrf']})" if r["vrf"] else "")
        ops = [f"{p['prefix']} AS{p['asn']} {p['relation']}" for p in r["operator_prefixes"]]
        shown = ", ".join(ops[:3]) + (f" (+{len(ops) - 3} more)" if len(ops) > 3 else "")
        t.add_row(
            table,
            r["route"],
            r["protocol"],
            "; ".join(r["nexthops"]) or r["type"],
            r["relation"],
            shown,
            f"{r['operator']}/{r['app']}",
            r["relationship"],
            r["action"],
        )
    console.print(t)
    per_hop: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        for hop in r["nexthops"] or [r["type"]]:
            nets = per_hop.setdefault((hop.split(" weight ")[0], r["operator"]), set())
            nets.update(p["prefix"] for p in r["operator_prefixes"])
    h = Table(title="Next hops and interfaces carrying operator prefixes", title_justify="left")
    for col in ("next hop", "operator", "operator prefixes"):
        h.add_column(col, justify="right" if col == "operator prefixes" else "left")
    for (hop, operator), nets in sorted(per_hop.items()):
        h.add_row(hop, operator, str(len(nets)))
    console.print(h)
