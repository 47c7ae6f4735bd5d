"""``classifier report``: the HTML report of scan or BGP records (JSON lines), in one file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..exitcodes import Exit
from ..htmlreport import render_html
from ..outputs import check_writable, refuse_clobbering, write_text_file
from ..policy import Policy
from ..reportdata import aggregate
from ..signatures import shipped_directory


def run_report(args: argparse.Namespace) -> int:
    refuse_clobbering([("-o", args.output)], args.records, stdout_written=False)
    check_writable(args.output)  # now, not after reading millions of records
    policy_dir = Path(args.policy) if args.policy else shipped_directory() / "policy"
    policy = Policy.load(policy_dir)
    problems: list[str] = []
    agg = aggregate(args.records, problems)
    write_text_file(args.output, render_html(agg, policy))
    for problem in problems:
        print(f"input problem: {problem}", file=sys.stderr)
    if not args.quiet:
        print(f"report: {agg.records} {agg.kind} records to {args.output}", file=sys.stderr)
    return Exit.INPUT if problems else Exit.OK
