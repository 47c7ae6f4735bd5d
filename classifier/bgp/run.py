"""``classifier bgp``: wire signatures, policy, the MRT reader or the kernel reader, and the writers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from classifier.exitcodes import Exit
from classifier.outputs import TextOutput, check_writable, printable, refuse_clobbering, write_text_file
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


def run_mrt(args: argparse.Namespace) -> int:
    """Read every MRT input into one route table, then write the records and the summary."""
    from .aspath import PathClassifier
    from .mrt import MrtReader, Needles
    from .output import EVENT_COLUMNS, ROUTE_COLUMNS, Records, Summary, input_lines, render_table, writer_for
    from .routes import RouteTable

    _check_outputs(args, args.files)
    sigs, decider = load(args)
    apps = operator_apps(sigs)
    table = RouteTable(PathClassifier(sigs.operator_by_asn), local_asn=args.local_asn)
    needles = Needles(sigs.operator_by_asn)
    stats = []
    for path in args.files:
        name = "-" if path == "-" else printable(Path(path).name)
        stats.append(MrtReader(path, name, needles, table).run())
    table.finish()
    records = Records(table, decider, apps, args.view, args.as_of)
    summary = Summary.of(table.records)

    with TextOutput(args.output) as out:
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
    return Exit.INPUT if any(s.problems for s in stats) else Exit.OK


def run_kernel(args: argparse.Namespace) -> int:
    """Audit the live routing table of this (or another) network namespace."""
    import time

    from .kernel import KERNEL_COLUMNS, audit_routes, read_kernel, render_kernel
    from .output import writer_for
    from .prefixes import OperatorPrefixes

    _check_outputs(args, ())
    sigs, decider = load(args)
    snapshot = read_kernel(args.netns)
    when = args.as_of if args.as_of is not None else time.time()
    rows = audit_routes(snapshot, OperatorPrefixes.from_signatures(sigs), sigs, decider, when, args.view)
    with TextOutput(args.output) as out:
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
    return Exit.OK


def _check_outputs(args: argparse.Namespace, inputs: Any) -> None:
    """Before anything is opened: no output over an input or over the other output, and a
    ``--stats`` path that can be written at the end."""
    refuse_clobbering([("-o", args.output), ("--stats", args.stats)], inputs, stdout_written=not args.output)
    if args.stats:
        check_writable(args.stats)


def _write_json(path: str, data: Any) -> None:
    write_text_file(path, json.dumps(data, indent=2) + "\n")
