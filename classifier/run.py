"""``classifier scan``: wire the inputs, the scanner and the writers together."""

from __future__ import annotations

import argparse
import io
import json
import sys
from contextlib import ExitStack, nullcontext
from pathlib import Path

from .blockfloor import BlockFloor
from .capture import CaptureError, open_capture
from .flows import Flow, FlowConfig
from .policy import Policy
from .record import CsvWriter, JsonLinesWriter, flow_record
from .report import InputStats, Summary, input_lines
from .scan import Scanner, ScanOptions
from .signatures import Signatures, shipped_directory

_PROGRESS_MIN_BYTES = 8 << 20  # a progress bar only for inputs worth watching
_PROGRESS_EVERY = 8192  # packets between progress updates


def run_scan(args: argparse.Namespace) -> int:
    from .cli import EXIT_INPUT, EXIT_OK

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
        if args.output:
            try:
                out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
            except OSError as err:
                from .errors import UserError
                raise UserError(f"cannot write {args.output}: {err.strerror}") from None
        else:
            out = sys.stdout
        if args.format == "jsonl":
            writer = JsonLinesWriter(out)
        elif args.format == "csv":
            writer = CsvWriter(out)
        else:
            writer = None

        def on_record(flow: Flow) -> None:
            rec = flow_record(flow)
            summary.add(rec)
            if writer is not None:
                writer.write(rec)

        scanner = Scanner(sigs, policy, options, on_record)
        failed = _scan_inputs(args, scanner, stats)
        scanner.finish()
        _collect(scanner, stats)
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
        Path(args.stats).write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")
    return EXIT_INPUT if failed or stats.problems else EXIT_OK


def _scan_inputs(args: argparse.Namespace, scanner: Scanner, stats: InputStats) -> bool:
    """Feed every capture to the scanner; True if some input could not be opened."""
    failed = False
    readers = []
    for path in args.captures:
        try:
            readers.append((path, open_capture(path)))
        except CaptureError as err:
            stats.problems.append(str(err))
            failed = True
    sizes = [r.size for _, r in readers]
    total = sum(s for s in sizes if s) if all(sizes) else None
    show = (not args.no_progress and sys.stderr.isatty() and total is not None
            and total >= _PROGRESS_MIN_BYTES)
    progress_ctx = _progress(total) if show else nullcontext(None)
    with progress_ctx as progress:
        done_bytes = 0
        for i, (path, reader) in enumerate(readers):
            if i and not args.continuous:
                scanner.finish()  # each file on its own: flows and names do not carry over
                scanner.forget_names()
            scanner.start_input(Path(path).name if path != "-" else "-", reader.interfaces)
            stats.files += 1
            feed = scanner.feed
            try:
                if progress is None:
                    for record in reader:
                        feed(*record)
                else:
                    for n, record in enumerate(reader, 1):
                        feed(*record)
                        if n % _PROGRESS_EVERY == 0:
                            progress[0].update(progress[1], completed=done_bytes + reader.position)
            finally:
                stats.problems.extend(str(p) for p in reader.problems)
                reader.close()
            done_bytes += reader.size or 0
    return failed


class _progress:
    """A rich progress bar on stderr, as a context manager yielding (progress, task)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
        self._p = Progress("scanning", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                           console=Console(file=sys.stderr), transient=True)
        self._total = total

    def __enter__(self):
        self._p.__enter__()
        return self._p, self._p.add_task("scan", total=self._total)

    def __exit__(self, *exc):
        return self._p.__exit__(*exc)


def _collect(scanner: Scanner, stats: InputStats) -> None:
    stats.packets = scanner.packets
    stats.flows = scanner.records
    stats.skipped = scanner.skipped
    stats.malformed = scanner.malformed
    stats.malformed_examples = scanner.malformed_examples
    stats.inspect_errors = scanner.inspection.errors
    stats.inspect_examples = scanner.inspection.error_examples
    stats.evicted = scanner.table.evicted
    stats.fragments = scanner.fragments
    stats.dns_answers = scanner.dnscache.answers
    stats.dns_queries = scanner.inspection.queries.queries
    stats.dns_binding = scanner.inspection.queries.counts
