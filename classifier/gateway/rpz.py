"""``classifier export rpz``: a Response Policy Zone from the signatures and the policy at an instant.

For each host rule, the category is the one its role gives (as attribution does: payments,
code-use, cdn, app-store; any other role serves the app itself, i.e. hosting). If a provision
covering the rule's app and that category is effective at the instant, the name is blocked
(NXDOMAIN, or an answer pointing at a sinkhole); otherwise it is passed through, so a resolver
with ``rpz-log`` still logs the lookup. Operator-level rules (no app) are passed through. Suffix
rules cover the name and everything under it (``name`` plus ``*.name``); RPZ's "most specific
trigger wins" matches the classifier's "most specific rule wins", so ``www.qq.com`` can pass while
``weixin.qq.com`` is blocked. CDN CNAME domains never appear: they are shared by everyone.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import sys
from pathlib import Path

from classifier.errors import UserError

from .blocklist import instant, name_verdicts, rule_category, write_export

__all__ = ["build_zone", "rule_category", "run_export_rpz"]

PASSTHRU = "rpz-passthru."
NXDOMAIN = "."


def _block_rdata(sinkhole: str | None) -> tuple[str, str]:
    """(type, data) of a blocked name's answer."""
    if sinkhole is None:
        return "CNAME", NXDOMAIN
    try:
        addr = ipaddress.ip_address(sinkhole)
    except ValueError:
        name = sinkhole.rstrip(".")
        if not name or " " in name:
            raise UserError(f"--sinkhole: {sinkhole!r} is neither an address nor a host name") from None
        return "CNAME", name + "."
    return ("A" if addr.version == 4 else "AAAA"), str(addr)


def build_zone(
    sigs,
    policy,
    when: float,
    view: str,
    sinkhole: str | None = None,
    unenforced_blocks: bool = False,
    ttl: int = 60,
) -> tuple[str, dict[str, int]]:
    """The zone text and counts {"block": n, "passthru": n} of names (owner lines)."""
    from classifier.timeutil import format_instant

    rtype, rdata = _block_rdata(sinkhole)
    # owner -> (blocked, comment); exact-host rules own the name itself, suffix rules the name
    # and its wildcard unless an exact rule already owns the name.
    owners: dict[str, tuple[bool, str]] = {}
    exact_owned: set[str] = set()
    for v in name_verdicts(sigs, policy, when, view, unenforced_blocks):
        rule = v.rule
        if v.category is not None:
            why = f"{rule.id}: {rule.app} {v.category} (role {rule.role}): {v.reason}"
        else:
            why = f"{rule.id}: operator {rule.operator} only (role {rule.role}): log"
        names = [rule.pattern] if rule.exact else [rule.pattern, f"*.{rule.pattern}"]
        for owner in names:
            if rule.exact:
                exact_owned.add(owner)
            elif owner in exact_owned:
                continue
            owners.setdefault(owner, (v.blocked, why))

    head = [
        "; Response Policy Zone written by `classifier export rpz`",
        f"; policy instant {format_instant(when)}, {view} view"
        + ("; unenforced prohibitions block" if unenforced_blocks else ""),
        f"; signatures: {sigs.directory}",
        "; blocked names: " + ("NXDOMAIN (CNAME .)" if sinkhole is None else f"{rtype} {rdata} (sinkhole)"),
        "; other app and operator names: rpz-passthru (answered as usual; logged with rpz-log: yes)",
        f"$TTL {ttl}",
    ]
    lines: list[str] = []
    counts = {"block": 0, "passthru": 0}
    last_comment = None
    for owner in sorted(owners, key=lambda o: (o.removeprefix("*.").split(".")[::-1], o.startswith("*."))):
        blocked, why = owners[owner]
        if why != last_comment:
            lines.append(f"; {why}")
            last_comment = why
        if blocked:
            lines.append(f"{owner} {rtype} {rdata}")
            counts["block"] += 1
        else:
            lines.append(f"{owner} CNAME {PASSTHRU}")
            counts["passthru"] += 1
    # The serial is a digest of everything the zone says: it changes whenever the content does
    # (signatures changed at the same instant included) and never otherwise. It does not grow
    # monotonically: a resolver reading the file (Unbound, BIND's file zones) only compares it
    # for equality; a secondary fed by zone transfer should be given the file, not an AXFR.
    digest = hashlib.sha256("\n".join([f"$TTL {ttl}", *lines]).encode()).digest()
    serial = int.from_bytes(digest[:4], "big") or 1
    soa = [f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {ttl}", "@ NS localhost."]
    return "\n".join([*head, *soa, *lines]) + "\n", counts


def run_export_rpz(args: argparse.Namespace) -> int:
    """The ``classifier export rpz`` command."""
    from classifier.policy import Policy
    from classifier.signatures import Signatures, shipped_directory

    sig_dir = Path(args.signatures) if args.signatures else shipped_directory()
    sigs = Signatures.load(sig_dir)
    policy = Policy.load(Path(args.policy) if args.policy else sig_dir / "policy")
    when = instant(args.as_of)
    text, counts = build_zone(sigs, policy, when, args.view, args.sinkhole, args.unenforced_blocks, args.ttl)
    write_export(args.output, text)
    if not args.quiet:
        print(f"rpz: {counts['block']} blocked, {counts['passthru']} passed-through names", file=sys.stderr)
    return 0
