"""``classifier bgp``: wire signatures, policy, the MRT reader or the kernel reader, and the writers."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from classifier.errors import UserError
from classifier.policy import Policy
from classifier.signatures import Signatures, shipped_directory

from .decide import Decider


def load(args: argparse.Namespace) -> tuple[Signatures, Decider]:
    """The signatures (operator ASNs and apps, peering map) and the policy, as for ``scan``."""
    sig_dir = Path(args.signatures) if args.signatures else shipped_directory()
    sigs = Signatures.load(sig_dir, peering=getattr(args, "peering", None))
    policy = Policy.load(Path(args.policy) if args.policy else sig_dir / "policy")
    return sigs, Decider(policy, unenforced_blocks=args.unenforced_blocks)


def operator_apps(sigs: Signatures) -> dict[str, tuple[str, ...]]:
    return {op: o.apps for op, o in sigs.operators.items()}


def open_output(stack: ExitStack, path: str | None) -> IO[str]:
    if not path:
        return sys.stdout
    try:
        return stack.enter_context(open(path, "w", encoding="utf-8", newline=""))
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None


def run_mrt(args: argparse.Namespace) -> int:
    """Read every MRT input into one route table, then write the records and the summary."""
    from classifier.cli import EXIT_INPUT, EXIT_OK

    from .aspath import PathClassifier
    from .mrt import MrtReader, Needles
    from .output import EVENT_COLUMNS, ROUTE_COLUMNS, Records, Summary, input_lines, render_table, writer_for
    from .routes import RouteTable

    sigs, decider = load(args)
    apps = operator_apps(sigs)
    table = RouteTable(PathClassifier(sigs.operator_by_asn), local_asn=args.local_asn)
    needles = Needles(sigs.operator_by_asn)
    stats = []
    for path in args.files:
        name = "-" if path == "-" else Path(path).name
        stats.append(MrtReader(path, name, needles, table).run())
    table.finish()
    records = Records(table, decider, apps, args.view, args.as_of)
    summary = Summary.of(table.records)

    with ExitStack() as stack:
        out = open_output(stack, args.output)
        if args.format == "table":
            render_table(out, list(records.routes()), records.events(), summary, stats, apps, args.view)
        else:
            columns = EVENT_COLUMNS if args.timeline else ROUTE_COLUMNS
            writer = writer_for(args.format, out, columns)
            for row in (records.events() if args.timeline else records.routes()):
                writer.write(row)
            writer.close()
            lines = summary.lines(apps) + input_lines(stats)
            if not args.quiet:
                sys.stderr.write("\n".join(lines) + "\n")
            else:
                problems = [line for line in lines if line.startswith("input problem:")]
                if problems:
                    sys.stderr.write("\n".join(problems) + "\n")
    if args.stats:
        _write_json(args.stats, {"files": [s.as_dict() for s in stats], **summary.as_dict()})
    return EXIT_INPUT if any(s.problems for s in stats) else EXIT_OK


def run_kernel(args: argparse.Namespace) -> int:
    """Audit the live routing table of this (or another) network namespace."""
    import time

    from classifier.cli import EXIT_OK

    from .kernel import KERNEL_COLUMNS, audit_routes, read_kernel, render_kernel
    from .output import writer_for
    from .prefixes import OperatorPrefixes

    sigs, decider = load(args)
    snapshot = read_kernel(args.netns)
    when = args.as_of if args.as_of is not None else time.time()
    rows = audit_routes(snapshot, OperatorPrefixes.from_signatures(sigs), sigs, decider, when, args.view)
    with ExitStack() as stack:
        out = open_output(stack, args.output)
        if args.format == "table":
            render_kernel(out, rows, snapshot, args.view)
        else:
            writer = writer_for(args.format, out, KERNEL_COLUMNS)
            for row in rows:
                writer.write(row)
            writer.close()
            if not args.quiet:
                carried = {r["route"] for r in rows}
                sys.stderr.write(f"{snapshot.where}: {len(snapshot.routes)} routes in "
                                 f"{len(snapshot.tables())} tables, {len(carried)} carry operator "
                                 "prefixes\n")
    if args.stats:
        _write_json(args.stats, {"netns": args.netns, "routes": len(snapshot.routes), "records": len(rows)})
    return EXIT_OK


def _write_json(path: str, data: Any) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None
