"""Blackhole routes for operator-owned hosting prefixes while a hosting provision is effective.

A route drops everything to a prefix, so it is only ever used where every address is the
operator's own hosting: prefixes of the operator ASNs the operator listed in the config
(``routes.asns``), never a CDN ASN, and never an operator prefix that overlaps any CDN prefix.
CDN-served app traffic is blocked per flow, by name, by the packet loops.

Every route carries our routing protocol number (``routes.protocol``, default 241), which is how
cleanup finds exactly ours (``ip route show table all proto 241``). Routes follow the policy:
they appear when the provision takes effect and go when it ends, without a restart.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from dataclasses import dataclass

from classifier.errors import UserError

from .config import GatewayConfig

HOSTING = "hosting"


@dataclass(frozen=True)
class Candidate:
    """An operator prefix that may be blackholed while ``app``'s hosting provision is effective."""

    prefix: str
    app: str
    asn: int


class _Intervals:
    """Address ranges of one family; ``overlaps`` answers in O(log n) with running maxima of ends."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        ranges.sort()
        self.starts = [s for s, _ in ranges]
        self.max_end = []
        top = -1
        for _, e in ranges:
            top = max(top, e)
            self.max_end.append(top)

    def overlaps(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self.starts, hi)  # ranges starting at or before hi
        return i > 0 and self.max_end[i - 1] >= lo


def _intervals(prefixes: list[str]) -> dict[int, _Intervals]:
    by_family: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for p in prefixes:
        net = ipaddress.ip_network(p)
        by_family[net.version].append((int(net.network_address), int(net.broadcast_address)))
    return {fam: _Intervals(lst) for fam, lst in by_family.items()}


class RoutePlan:
    """Which prefixes to blackhole at an instant, from the signatures, the policy and the config."""

    def __init__(self, cfg: GatewayConfig, sigs, policy) -> None:
        self.cfg = cfg
        self.policy = policy
        self.candidates: list[Candidate] = []
        self.excluded: list[str] = []  # operator prefixes left out because a CDN prefix overlaps
        self._cache: tuple[frozenset, dict[str, Candidate]] | None = None
        if not cfg.blackhole_routes:
            return
        cdn_prefixes: list[str] = []
        for a in sigs.asns.values():
            if a.kind == "cdn":
                cdn_prefixes += sigs.prefixes_of(a.asn)
        cdn = _intervals(cdn_prefixes)
        hosting_apps = {p.app for p in policy.provisions.values() if p.category == HOSTING}
        for asn in cfg.route_asns:
            a = sigs.asns.get(asn)
            where = cfg.route_asns_named or f"{cfg.source}: [routes] asns"
            if a is None:
                raise UserError(f"{where}: AS{asn} is not in the signatures")
            if a.kind != "operator":
                raise UserError(
                    f"{where}: AS{asn} belongs to CDN provider {a.owner!r}: blackhole "
                    "routes are only for operator-owned hosting prefixes"
                )
            apps = [
                app for app, info in sigs.apps.items() if info.operator == a.owner and app in hosting_apps
            ]
            if not apps:
                raise UserError(f"{where}: AS{asn} ({a.owner}) runs no app with a hosting provision")
            for text in sigs.prefixes_of(asn):
                net = ipaddress.ip_network(text)
                if cdn[net.version].overlaps(int(net.network_address), int(net.broadcast_address)):
                    self.excluded.append(text)
                    continue
                for app in apps:
                    self.candidates.append(Candidate(text, app, asn))

    def desired(self, when: float) -> dict[str, Candidate]:
        """Prefix -> candidate for every prefix whose app's hosting provision blocks at ``when``.

        Called every second while the gateway runs: the per-app policy answer is a bisection, and
        the prefix list is rebuilt only when the set of blocking apps changes.
        """
        cfg = self.cfg
        apps = {c.app for c in self.candidates}
        blocking = frozenset(
            app
            for app in apps
            if self.policy.decide(app, (HOSTING,), True, when, cfg.view, cfg.unenforced_blocks).action
            == "block"
        )
        cached = self._cache
        if cached is not None and cached[0] == blocking:
            return cached[1]
        out: dict[str, Candidate] = {}
        for c in self.candidates:
            if c.app in blocking and c.prefix not in out:
                out[c.prefix] = c
        self._cache = (blocking, out)
        return out


def route_command(prefix: str, protocol: int) -> str:
    """The `ip route` equivalent of one of our routes (for the dry run)."""
    six = "-6 " if ":" in prefix else ""
    return f"ip {six}route add blackhole {prefix} proto {protocol}"


class Routes:
    """Our blackhole routes in the kernel (pyroute2), tagged with our protocol number."""

    def __init__(self, protocol: int) -> None:
        from pyroute2 import IPRoute

        self.protocol = protocol
        self.ipr = IPRoute()
        self.installed: set[str] = set()
        self.errors = 0

    def ours(self) -> list[tuple[str, int, int]]:
        """(prefix, table, family) of every route with our protocol number, in every table."""
        found: list[tuple[str, int, int]] = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in self.ipr.route("dump", family=fam):
                if r.get("proto") != self.protocol:
                    continue
                dst = r.get("dst") or ("0.0.0.0" if fam == socket.AF_INET else "::")
                found.append((f"{dst}/{r['dst_len']}", r.get("table"), fam))
        return found

    def apply(self, desired: dict[str, Candidate]) -> tuple[list[str], list[str]]:
        """Make our routes exactly ``desired``; (added, removed)."""
        want = set(desired)
        added, removed = [], []
        for prefix in sorted(want - self.installed):
            fam = socket.AF_INET6 if ":" in prefix else socket.AF_INET
            try:
                self.ipr.route("add", dst=prefix, type="blackhole", proto=self.protocol, family=fam)
            except Exception:
                self.errors += 1
                continue
            self.installed.add(prefix)
            added.append(prefix)
        for prefix in sorted(self.installed - want):
            self._delete(prefix, None)
            self.installed.discard(prefix)
            removed.append(prefix)
        return added, removed

    def _delete(self, prefix: str, table: int | None) -> bool:
        fam = socket.AF_INET6 if ":" in prefix else socket.AF_INET
        kwargs = {"table": table} if table else {}
        try:
            self.ipr.route("del", dst=prefix, type="blackhole", proto=self.protocol, family=fam, **kwargs)
        except Exception:
            return False
        return True

    def remove_all(self) -> list[str]:
        """Delete every route with our protocol number (ours by construction); what was removed."""
        removed = []
        for prefix, table, fam in self.ours():
            kwargs = {"table": table}
            try:
                self.ipr.route("del", dst=prefix, proto=self.protocol, family=fam, **kwargs)
                removed.append(f"route {prefix} table {table} proto {self.protocol}")
            except Exception:
                self.errors += 1
        self.installed.clear()
        return removed

    def close(self) -> None:
        self.ipr.close()
