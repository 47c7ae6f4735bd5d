"""``classifier export zeek-intel``: the names the policy blocks at an instant, as a Zeek Intel file.

The Intel framework reads a tab-separated file with a ``#fields`` header (``Intel::read_files``).
Each blocked host rule becomes an ``Intel::DOMAIN`` indicator; ``meta.source`` names the signature
and its sources, ``meta.desc`` the app, category, provision, view and instant. Zeek matches a
DOMAIN indicator against the exact name only (DNS queries, SNI, Host), so a suffix rule's
subdomains are not matched by it: ``meta.desc`` says "suffix" for those. With
``--operator-prefixes`` the operators' prefixes are added as ``Intel::SUBNET`` indicators (logged,
never blocked: the orders name apps, and an address alone does not name one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .blocklist import instant, name_verdicts, write_export

FIELDS = ("indicator", "indicator_type", "meta.source", "meta.desc")


def _field(text: str) -> str:
    """A value Zeek's reader takes: no tab or newline, never empty."""
    cleaned = " ".join(text.split())
    return cleaned or "-"


def build_intel(
    sigs, policy, when: float, view: str, unenforced_blocks: bool = False, operator_prefixes: bool = False
) -> tuple[str, dict[str, int]]:
    """The file's text and counts by indicator type."""
    from classifier.timeutil import format_instant

    at = format_instant(when)
    lines = [
        f"# Zeek Intel file written by `classifier export zeek-intel`: names blocked at {at}, {view} view"
        + ("; unenforced prohibitions block" if unenforced_blocks else ""),
        f"# signatures: {sigs.directory}",
        "#fields\t" + "\t".join(FIELDS),
    ]
    counts = {"Intel::DOMAIN": 0, "Intel::SUBNET": 0}
    seen: set[str] = set()
    for v in name_verdicts(sigs, policy, when, view, unenforced_blocks):
        rule = v.rule
        if not v.blocked or rule.pattern in seen:
            continue
        seen.add(rule.pattern)
        kind = "exact name" if rule.exact else "suffix (subdomains not matched by Zeek)"
        desc = (
            f"app {rule.app}; category {v.category}; provision {v.provision}; signature {rule.id}; "
            f"{kind}; blocked at {at} ({view} view)"
        )
        source = f"classifier signature {rule.id} ({rule.date}): {rule.source}"
        lines.append("\t".join((_field(rule.pattern), "Intel::DOMAIN", _field(source), _field(desc))))
        counts["Intel::DOMAIN"] += 1
    if operator_prefixes:
        rows = sorted(
            (e.owner, size, number, length, text, e)
            for size, number, length, text, e in sigs.prefixes.networks()
            if e.kind == "operator"
        )
        for *_key, text, e in rows:
            desc = (
                f"operator {e.owner}; AS{e.asn}; signature {e.id}; logged, not blocked "
                "(an address alone names no app)"
            )
            source = f"classifier signature {e.id} ({e.date}): {e.source}"
            lines.append("\t".join((text, "Intel::SUBNET", _field(source), _field(desc))))
            counts["Intel::SUBNET"] += 1
    return "\n".join(lines) + "\n", counts


def run_export_zeek(args: argparse.Namespace) -> int:
    """The ``classifier export zeek-intel`` command."""
    from classifier.policy import Policy
    from classifier.signatures import Signatures, shipped_directory

    sig_dir = Path(args.signatures) if args.signatures else shipped_directory()
    sigs = Signatures.load(sig_dir)
    policy = Policy.load(Path(args.policy) if args.policy else sig_dir / "policy")
    text, counts = build_intel(
        sigs, policy, instant(args.as_of), args.view, args.unenforced_blocks, args.operator_prefixes
    )
    write_export(args.output, text)
    if not args.quiet:
        print(
            f"zeek-intel: {counts['Intel::DOMAIN']} blocked names, {counts['Intel::SUBNET']} operator "
            "subnets",
            file=sys.stderr,
        )
    return 0
