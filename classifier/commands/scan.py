"""``classifier scan``: wire the inputs, the scanner and the writers together.

Order matters for the user's files: outputs are checked against the inputs before anything is
opened (an output naming an input is refused), ``--stats`` is checked for writability before the
scan (not discovered unwritable after an hour), and every write failure is one line naming the
output (``OutputError``, exit status 4), with everything written before it flushed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from contextlib import ExitStack
from pathlib import Path

from ..blockfloor import BlockFloor
from ..errors import UserError
from ..exitcodes import Exit
from ..flows import FlowConfig
from ..outputs import TextOutput, check_writable, refuse_clobbering, write_text_file
from ..pipeline import Scanner, ScanOptions
from ..policy import Policy
from ..record import CsvWriter, JsonLinesWriter, flow_record
from ..report import InputStats, Summary, input_lines
from ..scaninputs import scan_inputs
from ..signatures import Signatures, shipped_directory


def run_scan(args: argparse.Namespace) -> int:
    workers = getattr(args, "workers", 1)
    if workers > 1 and "-" in args.captures:
        raise UserError("--workers: every worker reads the captures itself, so standard input ('-') "
                        "cannot be one: give files, or --workers 1")
    refuse_clobbering([("-o", args.output), ("--stats", args.stats)], args.captures,
                      stdout_written=not args.output)
    if args.stats:
        check_writable(args.stats)
    sig_dir = Path(args.signatures) if args.signatures else shipped_directory()
    sigs = Signatures.load(sig_dir, peering=args.peering)
    policy = Policy.load(Path(args.policy) if args.policy else sig_dir / "policy")
    options = ScanOptions(
        view=args.view, as_of=args.as_of, unenforced_blocks=args.unenforced_blocks,
        flows=FlowConfig(idle_tcp=args.idle_tcp, idle_udp=args.idle_udp, max_flows=args.max_flows),
        floor=BlockFloor(args.block_confidence, args.block_evidence),
    )
    stats = InputStats()
    summary = Summary()

    with ExitStack() as stack:
        out = stack.enter_context(TextOutput(args.output))
        if args.format == "jsonl":
            writer: JsonLinesWriter | CsvWriter | None = JsonLinesWriter(out)
        elif args.format == "csv":
            writer = CsvWriter(out)
        else:
            writer = None

        def on_record(rec: dict) -> None:
            summary.add(rec)
            if writer is not None:
                writer.write(rec)

        progress = not args.no_progress
        if workers > 1:
            from ..parallel import scan_parallel
            stats, failed = scan_parallel(sigs, policy, options, args.captures, args.continuous,
                                          workers, progress, on_record)
        else:
            scanner = Scanner(sigs, policy, options, lambda flow: on_record(flow_record(flow)))
            failed = scan_inputs(args.captures, scanner, stats, args.continuous, progress)
            scanner.finish()
            scanner.fill_stats(stats)
        if writer is not None:
            writer.close()
        if args.format == "table":
            summary.render(out, stats)
        elif not args.quiet:
            buf = io.StringIO()
            summary.render(buf, stats)
            sys.stderr.write(buf.getvalue())
        elif stats.problems:
            sys.stderr.write(input_lines(stats) + "\n")
    if args.stats:
        write_text_file(args.stats, json.dumps(stats.as_dict(), indent=2) + "\n")
    return Exit.INPUT if failed or stats.problems else Exit.OK
