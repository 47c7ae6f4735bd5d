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
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from ..blockfloor import BlockFloor
from ..capture import CaptureError, CaptureReader, open_capture
from ..errors import UserError
from ..exitcodes import Exit
from ..flows import Flow, FlowConfig
from ..outputs import TextOutput, check_writable, printable, refuse_clobbering, write_text_file
from ..pcapout import PacketSink, feeding, parse_where
from ..pipeline import Scanner, ScanOptions
from ..policy import Policy
from ..record import CsvWriter, JsonLinesWriter, flow_record
from ..report import InputStats, Summary, input_lines
from ..signatures import Signatures, shipped_directory

if TYPE_CHECKING:
    from ..reportdata import ScanAggregate

_PROGRESS_MIN_BYTES = 8 << 20  # a progress bar only for inputs worth watching
_PROGRESS_EVERY = 8192  # packets between progress updates


def run_scan(args: argparse.Namespace) -> int:
    refuse_clobbering([("-o", args.output), ("--stats", args.stats), ("--html", args.html),
                       ("--write-pcap", args.write_pcap)], args.captures, stdout_written=not args.output)
    for extra in (args.stats, args.html, args.write_pcap):
        if extra:
            check_writable(extra)
    sink = _packet_sink(args)
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
    html = _html_aggregate(args)

    with ExitStack() as stack:
        out = stack.enter_context(TextOutput(args.output))
        if args.format == "jsonl":
            writer: JsonLinesWriter | CsvWriter | None = JsonLinesWriter(out)
        elif args.format == "csv":
            writer = CsvWriter(out)
        else:
            writer = None

        def on_record(flow: Flow) -> None:
            rec = flow_record(flow)
            summary.add(rec)
            if writer is not None:
                writer.write(rec)
            if html is not None:
                html.add(rec)
            if sink is not None:
                sink.flow_ended(flow)

        scanner = Scanner(sigs, policy, options, on_record)
        failed = _scan_inputs(args, scanner, stats, sink)
        scanner.finish()
        scanner.fill_stats(stats)
        if sink is not None:
            sink.close()
            if not args.quiet:
                print(sink.summary(), file=sys.stderr)
        if writer is not None:
            writer.close()
        if failed and not stats.files:  # no input could be opened: the problems, not empty tables
            for problem in stats.problems:
                print(f"classifier: error: {problem}", file=sys.stderr)
        elif args.format == "table":
            summary.render(out, stats)
        elif not args.quiet:
            buf = io.StringIO()
            summary.render(buf, stats)
            sys.stderr.write(buf.getvalue())
        elif stats.problems:
            sys.stderr.write(input_lines(stats) + "\n")
    if args.stats:
        write_text_file(args.stats, json.dumps(stats.as_dict(), indent=2) + "\n")
    if html is not None:
        from ..htmlreport import render_html

        write_text_file(args.html, render_html(html, policy, stats.as_dict()))
    return Exit.INPUT if failed or stats.problems else Exit.OK


def _packet_sink(args: argparse.Namespace) -> PacketSink | None:
    """The --write-pcap output, or None (then --write-pcap-where makes no sense)."""
    if not args.write_pcap:
        if args.write_pcap_where:
            raise UserError("--write-pcap-where needs --write-pcap FILE")
        return None
    if args.write_pcap == "-":
        raise UserError("--write-pcap -: give a file name (standard output carries the records)")
    where = parse_where(args.write_pcap_where) if args.write_pcap_where else ()
    return PacketSink(args.write_pcap, list(args.captures), where)


def _html_aggregate(args: argparse.Namespace) -> ScanAggregate | None:
    if not args.html:
        return None
    from ..reportdata import ScanAggregate

    return ScanAggregate()


def _scan_inputs(args: argparse.Namespace, scanner: Scanner, stats: InputStats,
                 sink: PacketSink | None = None) -> bool:
    """Feed every capture to the scanner; True if some input could not be opened."""
    failed = False
    readers: list[tuple[str, CaptureReader]] = []
    try:
        for path in args.captures:
            try:
                readers.append((path, open_capture(path)))
            except CaptureError as err:
                stats.problems.append(printable(str(err)))
                failed = True
        _feed(args, scanner, stats, readers, sink)
    finally:
        for _, reader in readers:
            reader.close()
    return failed


def _feed(args: argparse.Namespace, scanner: Scanner, stats: InputStats,
          readers: list[tuple[str, CaptureReader]], sink: PacketSink | None = None) -> None:
    sizes = [r.size for _, r in readers]
    total = sum(s for s in sizes if s) if all(sizes) else None
    show = (not args.no_progress and sys.stderr.isatty() and total is not None
            and total >= _PROGRESS_MIN_BYTES)
    progress_ctx = _progress(total) if show and total is not None else nullcontext(None)
    with progress_ctx as progress:
        done_bytes = 0
        for path, reader in readers:
            name = printable(Path(path).name) if path != "-" else "-"
            scanner.start_input(name, reader.interfaces, carry_over=args.continuous)
            reader.on_malformed = scanner.malformed_packet
            stats.files += 1
            feed = scanner.feed if sink is None else feeding(scanner.feed, sink)
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
                stats.problems.extend(printable(str(p)) for p in reader.problems)
            done_bytes += reader.size or 0


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
