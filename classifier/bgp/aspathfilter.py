"""``classifier signatures export-as-path``: AS-path filters on the operators' ASNs, for routers.

Prefix lists (``export-prefixes``) match where a route goes; an AS-path filter matches whom it
passes through, which is what the audit's ``direct``/``transit`` findings are about. One filter
per operator, one entry per ASN, matching the ASN anywhere in the path:

* ``frr``: ``bgp as-path access-list NAME seq N permit _ASN_`` (FRR 8 syntax; ``vtysh -C -f``
  checks it);
* ``bird``: a BIRD 2 ``define NAME = [ ASN, ... ];`` set and a function testing
  ``bgp_path ~ [= * ASN * =]`` for each (``bird -p -c`` checks it);
* ``junos``: ``policy-options as-path-group`` with ``as-path aN ".* ASN .*"`` entries, in the
  bracketed form bgpq4 ``-J`` writes;
* ``iosxr``: an ``as-path-set`` of ``ios-regex '_ASN_'`` lines, as bgpq4 ``-X`` writes.

With ``--neighbour ADDR`` (FRR and BIRD) a policy follows that rejects, from each neighbour, the
routes whose path carries an operator ASN. Routers have no notion of dates, so the snippet says in
its comments from when to when the policy (view and dates of ``signatures/policy/``) blocks the
operator's transit and peering: outside those windows the filter is the engineer's choice, not
the orders'.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from classifier.errors import UserError
from classifier.policy import Policy
from classifier.timeutil import format_instant, parse_instant

FORMATS = ("frr", "bird", "junos", "iosxr")


@dataclass(frozen=True, slots=True)
class OperatorAsns:
    operator: str
    apps: tuple[str, ...]
    asns: tuple[int, ...]
    windows: tuple[str, ...]  # "app: from X until Y (provision)" lines: when the policy blocks


def block_windows(policy: Policy, app: str, category: str, view: str) -> list[tuple[float, float | None]]:
    """The intervals in which ``policy`` blocks a direct relationship for ``app`` in ``view``."""
    ids = set(policy.provisions_for(app, category))
    instants = sorted({parse_instant(at) for at, pid, _ in policy.timeline(view) if pid in ids})
    windows: list[tuple[float, float | None]] = []
    start: float | None = None
    for when in instants:
        blocks = policy.decide(app, [category], True, when, view).action == "block"
        if blocks and start is None:
            start = when
        elif not blocks and start is not None:
            windows.append((start, when))
            start = None
    if start is not None:
        windows.append((start, None))
    return windows


def window_lines(policy: Policy, app: str, category: str, view: str) -> tuple[str, ...]:
    windows = block_windows(policy, app, category, view)
    if not windows:
        return (f"{app}: the policy never blocks {category} in the {view} view",)
    return tuple(
        f"{app}: blocked from {format_instant(a)}"
        + (f" until {format_instant(b)}" if b else "")
        + f" ({view} view)"
        for a, b in windows
    )


def render(
    fmt: str,
    operators: Sequence[OperatorAsns],
    neighbours: Sequence[str],
    local_asn: int | None,
    provenance: str,
) -> str:
    """The text of one export; ``neighbours`` adds the reject policy (FRR and BIRD only)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    for addr in neighbours:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise UserError(f"--neighbour {addr!r}: not an IP address") from None
    if neighbours and fmt not in ("frr", "bird"):
        raise UserError(f"--neighbour: the reject policy is written for frr and bird, not {fmt}")
    if neighbours and fmt == "frr" and local_asn is None:
        raise UserError("--neighbour with --format frr needs --local-asn (the 'router bgp' ASN)")
    head = f"AS-path filters exported by classifier signatures export-as-path; {provenance}"
    render_one = {"frr": _frr, "bird": _bird, "junos": _junos, "iosxr": _iosxr}[fmt]
    return render_one(operators, neighbours, local_asn, head)


def _name(operator: str) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", operator).strip("-").upper() or "OPERATOR"
    return (base if base[0].isalpha() else "OP-" + base) + "-ASNS"


def _window_comments(mark: str, operators: Sequence[OperatorAsns]) -> list[str]:
    lines = [
        f"{mark} when the policy blocks direct transit/peering with each operator (routers keep no dates):"
    ]
    for o in operators:
        lines += [f"{mark}   {o.operator} ({', '.join(f'AS{a}' for a in o.asns)}): {w}" for w in o.windows]
    return lines


def _frr(
    operators: Sequence[OperatorAsns], neighbours: Sequence[str], local_asn: int | None, head: str
) -> str:
    lines = [f"! {head}", "! FRR as-path access-lists: each permits a path carrying one of the ASNs"]
    for o in operators:
        name = _name(o.operator)
        lines += [
            f"bgp as-path access-list {name} seq {i * 5} permit _{asn}_" for i, asn in enumerate(o.asns, 1)
        ]
    if neighbours:
        lines += _window_comments("!", operators)
        lines.append("route-map CLASSIFIER-REJECT-OPERATORS deny 10")
        lines += [f" match as-path {_name(o.operator)}" for o in operators[:1]]
        for seq, o in enumerate(operators[1:], 2):
            lines += [
                "exit",
                f"route-map CLASSIFIER-REJECT-OPERATORS deny {seq * 10}",
                f" match as-path {_name(o.operator)}",
            ]
        lines += [
            "exit",
            "route-map CLASSIFIER-REJECT-OPERATORS permit 1000",
            "exit",
            "! the neighbours below must already be configured (neighbor ADDR remote-as ...)",
            f"router bgp {local_asn}",
        ]
        for family, ipv in (("ipv4", 4), ("ipv6", 6)):
            chosen = [n for n in neighbours if ipaddress.ip_address(n).version == ipv]
            if not chosen:
                continue
            lines.append(f" address-family {family} unicast")
            lines += [f"  neighbor {n} route-map CLASSIFIER-REJECT-OPERATORS in" for n in chosen]
            lines.append(" exit-address-family")
        lines.append("exit")
    return "\n".join(lines) + "\n"


def _bird(
    operators: Sequence[OperatorAsns], neighbours: Sequence[str], local_asn: int | None, head: str
) -> str:
    lines = [f"# {head}", "# BIRD 2: ASN sets, and a function true when the path carries one of them"]
    for o in operators:
        name = _name(o.operator).replace("-", "_")
        lines.append(f"define {name} = [ {', '.join(map(str, o.asns))} ];")
        tests = " || ".join(f"bgp_path ~ [= * {asn} * =]" for asn in o.asns)
        lines += [f"function path_through_{name.lower()}()", "{", f"  return {tests};", "}"]
    if neighbours:
        lines += _window_comments("#", operators)
        lines += [
            "# the import filter of the BGP protocols (or wrap your own filter around it)",
            "filter classifier_reject_operators",
            "{",
        ]
        sessions = " || ".join(f"from = {n}" for n in neighbours)
        for o in operators:
            name = _name(o.operator).replace("-", "_").lower()
            lines.append(f"  if ({sessions}) && path_through_{name}() then reject;")
        lines += ["  accept;", "}"]
    return "\n".join(lines) + "\n"


def _junos(
    operators: Sequence[OperatorAsns], neighbours: Sequence[str], local_asn: int | None, head: str
) -> str:
    lines = [f"/* {head} */", "policy-options {"]
    for o in operators:
        lines += ["replace:", f" as-path-group {_name(o.operator)} {{"]
        lines += [f'  as-path a{i} ".* {asn} .*";' for i, asn in enumerate(o.asns)]
        lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _iosxr(
    operators: Sequence[OperatorAsns], neighbours: Sequence[str], local_asn: int | None, head: str
) -> str:
    lines = [f"! {head}"]
    for o in operators:
        entries = [f"  ios-regex '_{asn}_'" for asn in o.asns]
        lines += [
            "no as-path-set " + _name(o.operator),
            "as-path-set " + _name(o.operator),
            ",\n".join(entries),
            "end-set",
            "!",
        ]
    return "\n".join(lines) + "\n"
