"""Policy decisions for routes: the transit-peering provisions, applied to direct relationships only.

The orders name "directly contracted or arranged internet transit or peering"; a route reached
through a session with an operator ASN (``direct``) is that service and is decided by the shared
engine (``Policy.decide(app, ["transit-peering"], True, when, view)``) for each app of the
operator. A route reached through third parties (``indirect``), or originated by the viewpoint AS
itself (``own``), is logged with a reason that says so: no provision names it.

A route is live over intervals; its record carries the strictest decision over them (a provision
that took effect while the route was live blocks it), decided at the first instant that gives it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from classifier.errors import UserError
from classifier.policy import RULE_UNENFORCED, VIEWS, Policy
from classifier.timeutil import format_instant, parse_instant

from .aspath import DIRECT, OWN, UNKNOWN, PathInfo

CATEGORY = "transit-peering"
RULE_INDIRECT = "indirect-path"
RULE_OWN = "operator-network"
RULE_NEXT_HOP_UNKNOWN = "next-hop-unknown"
RULE_VIEWPOINT = "viewpoint-mismatch"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One decision: what, at which instant, in which view, why, and the provisions' status."""

    action: str
    view: str
    at: str
    rule: str
    reason: str
    provisions: tuple[str, ...]  # "id:status" (":unenforced" appended when flagged)

    @property
    def strictness(self) -> int:
        """block, then an unenforced prohibition, then any other log."""
        if self.action == "block":
            return 3
        return 2 if self.rule == RULE_UNENFORCED else 1


class Decider:
    """Decides routes and kernel next hops against the policy, per app of the operator."""

    def __init__(self, policy: Policy, unenforced_blocks: bool = False) -> None:
        if CATEGORY not in policy.categories:
            raise UserError(
                f"the policy vocabulary has no category {CATEGORY!r}: cannot decide transit or peering"
            )
        self.policy = policy
        self.unenforced_blocks = unenforced_blocks
        self._changes: dict[str, list[float]] = {}

    def change_instants(self, app: str) -> list[float]:
        """Every instant, in either view, at which a transit-peering provision for ``app`` changes."""
        hit = self._changes.get(app)
        if hit is None:
            ids = set(self.policy.provisions_for(app, CATEGORY))
            instants = {
                parse_instant(at) for view in VIEWS for at, pid, _ in self.policy.timeline(view) if pid in ids
            }
            hit = self._changes[app] = sorted(instants)
        return hit

    def changes_within(self, app: str, start: float, end: float) -> list[float]:
        """Policy change instants strictly after ``start`` and not after ``end``."""
        instants = self.change_instants(app)
        return instants[bisect_right(instants, start) : bisect_right(instants, end)]

    def decide(self, info: PathInfo, app: str, prefix: str, when: float, view: str) -> Verdict:
        """The decision for one route of ``info`` at ``when``."""
        if info.relationship == DIRECT:
            d = self.policy.decide(app, [CATEGORY], True, when, view, self.unenforced_blocks)
            return Verdict(
                d.action,
                d.view,
                d.at,
                d.rule,
                f"{d.reason} [direct: AS{info.viewpoint} reaches {prefix} through "
                f"AS{info.neighbour_asn} ({info.neighbour_operator})]",
                _provisions(d.provisions),
            )
        at = format_instant(when)
        if info.relationship == OWN:
            return Verdict(
                "log",
                view,
                at,
                RULE_OWN,
                f"log: AS{info.viewpoint} is itself an ASN of {info.operator} and originates "
                f"{prefix}: no neighbour, so no transit or peering to decide ({view} view)",
                (),
            )
        if info.relationship == UNKNOWN:
            return Verdict(
                "log",
                view,
                at,
                RULE_VIEWPOINT,
                f"log: AS{info.viewpoint} (--local-asn) did not record this path and it does not "
                f"start with AS{info.viewpoint}: a collector's session, not AS{info.viewpoint}'s; "
                f"no neighbour of AS{info.viewpoint} can be named for {prefix} ({view} view)",
                (),
            )
        via = f"AS{info.neighbour_asn}" if info.neighbour_asn is not None else "an AS_SET"
        return Verdict(
            "log",
            view,
            at,
            RULE_INDIRECT,
            f"log: indirect path: AS{info.viewpoint} reaches {prefix} through {via}, not "
            f"through a session with {info.operator}; the orders name only directly "
            f"contracted or arranged transit or peering ({view} view)",
            (),
        )

    def decide_next_hop(
        self,
        app: str,
        operator: str,
        neighbour_asn: int | None,
        neighbour_is_operator: bool,
        prefix: str,
        when: float,
        view: str,
    ) -> Verdict:
        """A kernel route: direct only when the peering map names the next hop an operator ASN."""
        if neighbour_asn is not None and neighbour_is_operator:
            d = self.policy.decide(app, [CATEGORY], True, when, view, self.unenforced_blocks)
            return Verdict(
                d.action,
                d.view,
                d.at,
                d.rule,
                f"{d.reason} [direct: the next hop for {prefix} is AS{neighbour_asn} per the peering map]",
                _provisions(d.provisions),
            )
        at = format_instant(when)
        if neighbour_asn is not None:
            return Verdict(
                "log",
                view,
                at,
                RULE_INDIRECT,
                f"log: indirect: {prefix} ({operator} address space) is reached through "
                f"AS{neighbour_asn} per the peering map, not through a session with {operator}; "
                f"the orders name only directly contracted or arranged transit or peering "
                f"({view} view)",
                (),
            )
        return Verdict(
            "log",
            view,
            at,
            RULE_NEXT_HOP_UNKNOWN,
            f"log: route to {operator} address space ({prefix}); the routing table does not "
            "say whether the next hop is the operator (name it in the peering map) "
            f"({view} view)",
            (),
        )

    def strictest(
        self, info: PathInfo, app: str, prefix: str, intervals: Iterable[tuple[float, float]], view: str
    ) -> Verdict:
        """The strictest decision over the live intervals, at the earliest instant giving it."""
        best: Verdict | None = None
        for start, end in intervals:
            for when in (start, *self.changes_within(app, start, end)):
                v = self.decide(info, app, prefix, when, view)
                if best is None or v.strictness > best.strictness:
                    best = v
        if best is None:
            raise ValueError("a route record without a live interval")
        return best


def _provisions(statuses: Iterable) -> tuple[str, ...]:
    return tuple(f"{s.provision}:{s.status}" + (":unenforced" if s.unenforced else "") for s in statuses)
