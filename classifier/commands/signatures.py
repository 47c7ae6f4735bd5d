"""``classifier signatures check``: load and validate a signature directory, print what it holds."""

from __future__ import annotations

import argparse
import json

from ..exitcodes import Exit
from ..outputs import TextOutput
from ..signatures import Signatures


def run_check(args: argparse.Namespace) -> int:
    sigs = Signatures.load(args.directory, peering=args.peering)
    summary = {
        "directory": str(args.directory or "shipped"),
        "host_rules": len(sigs.hosts),
        "prefixes": len(sigs.prefixes),
        "operators": sorted(sigs.operators),
        "cdns": sorted(sigs.cdns),
        "peering_entries": len(sigs.peering),
    }
    with TextOutput(None) as out:
        out.write(json.dumps(summary, indent=2) + "\n")
    return Exit.OK
