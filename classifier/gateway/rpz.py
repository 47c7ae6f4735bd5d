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
import datetime as dt
import ipaddress
import sys
from pathlib import Path

from classifier.attribute import DEFAULT_CATEGORY, ROLE_CATEGORY
from classifier.errors import UserError

PASSTHRU = "rpz-passthru."
NXDOMAIN = "."


def rule_category(role: str) -> str:
    """The category a host rule's role gives, as the attribution stage gives it."""
    return ROLE_CATEGORY.get(role, DEFAULT_CATEGORY)


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


def build_zone(sigs, policy, when: float, view: str, sinkhole: str | None = None,
               unenforced_blocks: bool = False, ttl: int = 60) -> tuple[str, dict[str, int]]:
    """The zone text and counts {"block": n, "passthru": n} of names (owner lines)."""
    from classifier.timeutil import format_instant

    rtype, rdata = _block_rdata(sinkhole)
    # owner -> (blocked, comment); exact-host rules own the name itself, suffix rules the name
    # and its wildcard unless an exact rule already owns the name.
    owners: dict[str, tuple[bool, str]] = {}
    exact_owned: set[str] = set()
    rules = sorted(sigs.hosts.rules, key=lambda r: (r.pattern, not r.exact))
    for rule in rules:
        if rule.app is not None:
            category = rule_category(rule.role)
            d = policy.decide(rule.app, (category,), True, when, view, unenforced_blocks)
            blocked = d.action == "block"
            why = f"{rule.id}: {rule.app} {category} (role {rule.role}): {d.reason}"
        else:
            blocked = False
            why = f"{rule.id}: operator {rule.operator} only (role {rule.role}): log"
        names = [rule.pattern] if rule.exact else [rule.pattern, f"*.{rule.pattern}"]
        for owner in names:
            if rule.exact:
                exact_owned.add(owner)
            elif owner in exact_owned:
                continue
            owners.setdefault(owner, (blocked, why))

    serial = int(when) & 0xFFFFFFFF
    lines = [
        "; Response Policy Zone written by `classifier export rpz`",
        f"; policy instant {format_instant(when)}, {view} view"
        + ("; unenforced prohibitions block" if unenforced_blocks else ""),
        f"; signatures: {sigs.directory}",
        "; blocked names: " + ("NXDOMAIN (CNAME .)" if sinkhole is None else f"{rtype} {rdata} (sinkhole)"),
        "; other app and operator names: rpz-passthru (answered as usual; logged with rpz-log: yes)",
        f"$TTL {ttl}",
        f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {ttl}",
        "@ NS localhost.",
    ]
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
    return "\n".join(lines) + "\n", counts


def run_export_rpz(args: argparse.Namespace) -> int:
    """The ``classifier export rpz`` command."""
    from classifier.policy import Policy
    from classifier.signatures import Signatures, shipped_directory

    sig_dir = Path(args.signatures) if args.signatures else shipped_directory()
    sigs = Signatures.load(sig_dir)
    policy = Policy.load(Path(args.policy) if args.policy else sig_dir / "policy")
    when = args.as_of if args.as_of is not None else dt.datetime.now(dt.UTC).timestamp()
    text, counts = build_zone(sigs, policy, when, args.view, args.sinkhole, args.unenforced_blocks, args.ttl)
    if args.output and args.output != "-":
        out = Path(args.output)
        tmp = out.with_name(out.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(out)  # a resolver reloading mid-write never sees half a zone
        except OSError as err:
            raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    else:
        sys.stdout.write(text)
    if not args.quiet:
        print(f"rpz: {counts['block']} blocked, {counts['passthru']} passed-through names", file=sys.stderr)
    return 0
