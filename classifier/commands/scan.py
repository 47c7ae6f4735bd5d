"""``classifier scan``: wire the inputs, the scanner and the writers together.

Order matters for the user's files: outputs are checked against the inputs before anything is
opened (an output naming an input is refused), ``--stats`` is checked for writability before the
scan (not discovered unwritable after an hour), and every write failure is one line naming the
output (``OutputError``, exit status 4), with everything written before it flushed.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..blockfloor import BlockFloor
from ..errors import UserError
from ..exitcodes import Exit
from ..flows import Flow, FlowConfig
from ..inputpaths import expand_inputs
from ..outputs import TextOutput, check_writable, printable, refuse_clobbering, write_text_file
from ..pipeline import Scanner, ScanOptions
from ..policy import Policy
from ..record import CsvWriter, JsonLinesWriter, record_function
from ..report import InputStats, Summary, input_lines
from ..scaninputs import scan_inputs
from ..signatures import Signatures, shipped_directory
from ..startup import first_command, loading

if TYPE_CHECKING:
    from ..eve import EveWriter
    from ..parquetout import ParquetPartWriter
    from ..pcapout import PacketSink
    from ..reportdata import ScanAggregate

    RecordWriter = JsonLinesWriter | CsvWriter | ParquetPartWriter | EveWriter


def run_scan(args: argparse.Namespace) -> int:
    workers = getattr(args, "workers", 1)
    scheduler = getattr(args, "dask", None)
    parquet = args.format == "parquet"
    if scheduler is not None:
        from ..dasking import import_dask

        import_dask()  # without the extra: one line saying how to get it, before any work
    captures = expand_inputs(args.captures)
    if workers > 1 and scheduler in (None, "local"):
        from ..parallel import check_workers

        check_workers(workers)  # before a single fork
    if workers > 1 or scheduler is not None:
        _refuse_streams(captures)
    if parquet and not args.output:
        raise UserError("--format parquet writes a directory of parts: name it with -o DIR")
    if args.html and scheduler is not None:
        raise UserError(
            "--html with --dask: the tasks aggregate apart; write records (-o) and run "
            "classifier report on them"
        )
    if args.write_pcap and (workers > 1 or scheduler is not None):
        raise UserError(
            "--write-pcap keeps packets in input order in one process: use it without --workers/--dask"
        )
    refuse_clobbering(
        [
            ("-o", None if parquet else args.output),
            ("--stats", args.stats),
            ("--html", args.html),
            ("--write-pcap", args.write_pcap),
        ],
        captures,
        stdout_written=not args.output,
    )
    for extra in (args.stats, args.html, args.write_pcap):
        if extra:
            check_writable(extra)
    sink = _packet_sink(args, captures)
    if parquet:
        from ..parquetout import check_directory, require_pyarrow

        require_pyarrow()
        check_directory(args.output)
    sig_dir = Path(args.signatures) if args.signatures else shipped_directory()
    with loading():
        sigs = Signatures.load(sig_dir, peering=args.peering)
        policy = Policy.load(Path(args.policy) if args.policy else sig_dir / "policy")
    options = ScanOptions(
        view=args.view,
        as_of=args.as_of,
        unenforced_blocks=args.unenforced_blocks,
        flows=FlowConfig(idle_tcp=args.idle_tcp, idle_udp=args.idle_udp, max_flows=args.max_flows),
        floor=BlockFloor(args.block_confidence, args.block_evidence),
        server_hello=args.ja4s,
        community_id_seed=args.community_id_seed,
    )
    stats = InputStats()
    summary = Summary()
    html = _html_aggregate(args)

    with ExitStack() as stack:
        stack.enter_context(_rare_collections())
        out = stack.enter_context(TextOutput(None if parquet else args.output))
        writer = _writer(args, out, scheduler is not None)

        # The summary is shown unless -q (or it is the output): a quiet scan does not count it.
        summarize = args.format == "table" or not args.quiet

        def on_record(rec: dict, flow: Flow | None = None) -> None:
            if summarize:
                summary.add(rec)
            if writer is not None:
                writer.write(rec)
            if html is not None:
                html.add(rec)
            if sink is not None and flow is not None:
                sink.flow_ended(flow)

        progress = not args.no_progress
        if scheduler is not None:
            from ..dasking import scan_dask

            stats, failed = scan_dask(
                scheduler,
                sigs,
                policy,
                options,
                captures,
                args.continuous,
                workers,
                args.output if parquet else None,
                writer,
                summary,
                not (args.quiet or args.no_progress),
            )
        elif workers > 1:
            from ..parallel import scan_parallel

            # JSON lines: the workers encode the records, the parent only joins them (and keeps
            # the summary); other formats get whole records.
            jsonl = writer if isinstance(writer, JsonLinesWriter) and html is None and sink is None else None
            stats, failed = scan_parallel(
                sigs,
                policy,
                options,
                captures,
                args.continuous,
                workers,
                progress,
                (summary.add if summarize else None) if jsonl is not None else on_record,
                None if jsonl is None else jsonl.write_lines,
            )
        else:
            flow_record = record_function(options.community_id_seed)
            if writer is not None and not summarize and html is None and sink is None:
                write = writer.write  # records only go to the writer: one call per flow less
                scanner = Scanner(sigs, policy, options, lambda flow: write(flow_record(flow)))
            else:
                scanner = Scanner(sigs, policy, options, lambda flow: on_record(flow_record(flow), flow))
            wrap = None if sink is None else _feeding_into(sink)
            failed = scan_inputs(captures, scanner, stats, args.continuous, progress, wrap)
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


# Allocations (less deallocations) of container objects between young collections while a scan runs.
# A scan makes tens of thousands of objects that live until their flow ends and almost no cyclic
# garbage (tests/test_scanner.py checks a malformed packet leaves none), so the default (700) only
# spends CPU traversing live flows again and again. Memory stays bounded: cycles are still
# collected, after at most this many allocations.
SCAN_GC_THRESHOLD = 50_000


@contextmanager
def _rare_collections() -> Iterator[None]:
    """Young collections every ``SCAN_GC_THRESHOLD`` allocations for the scan (and the workers it
    forks), the thresholds as they were afterwards, whatever happens inside.

    Restoring 700 would at once collect the young generation: the scan's whole state, live until
    ``run_scan`` returns. In a process's first command (it ends the process, as start-up's freeze
    assumes) what exists is frozen instead, which also spares the collection at exit."""
    saved = gc.get_threshold()
    gc.set_threshold(max(saved[0], SCAN_GC_THRESHOLD), *saved[1:])
    try:
        yield
    finally:
        if first_command():
            gc.freeze()
        gc.set_threshold(*saved)


def _writer(args: argparse.Namespace, out: TextOutput, dask: bool) -> RecordWriter | None:
    """The record writer of ``--format`` (None for the table; with --dask and parquet the tasks
    write their own parts)."""
    if args.format == "jsonl":
        return JsonLinesWriter(out)
    if args.format == "csv":
        return CsvWriter(out)
    if args.format == "eve":
        from ..eve import EveWriter

        return EveWriter(out)
    if args.format == "parquet" and not dask:
        from ..parquetout import ParquetPartWriter, part_name

        return ParquetPartWriter(str(Path(args.output) / part_name(0)))
    return None


def _refuse_streams(captures: list[str]) -> None:
    """UserError for an input that can be read only once (standard input, a FIFO, a socket):
    every worker opens the captures itself, so two would share its bytes and each see
    a part (flows lost without a word), or wait for a writer that comes once. Missing files and
    directories are left to the reader, which reports them as one process does."""
    for path in captures:
        if path == "-":
            raise UserError(
                "--workers/--dask: every worker reads the captures itself, so standard input "
                "('-') cannot be one: give files"
            )
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            continue
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else None
        if kind is not None:
            raise UserError(
                f"--workers/--dask: every worker reads the captures itself, so {printable(path)} "
                f"({kind}, readable once) cannot be one: give files"
            )


def _packet_sink(args: argparse.Namespace, captures: list[str]) -> PacketSink | None:
    """The --write-pcap output, or None (then --write-pcap-where makes no sense). ``pcapout`` is
    imported only for --write-pcap: a scan without it does not pay for loading it."""
    if not args.write_pcap:
        if args.write_pcap_where:
            raise UserError("--write-pcap-where needs --write-pcap FILE")
        return None
    if args.write_pcap == "-":
        raise UserError("--write-pcap -: give a file name (standard output carries the records)")
    from ..pcapout import PacketSink, parse_where

    where = parse_where(args.write_pcap_where) if args.write_pcap_where else ()
    return PacketSink(args.write_pcap, captures, where, community_id_seed=args.community_id_seed)


def _feeding_into(sink: PacketSink) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """What replaces ``Scanner.feed`` so that every packet also reaches the --write-pcap output."""
    from ..pcapout import feeding

    return lambda feed: feeding(feed, sink)


def _html_aggregate(args: argparse.Namespace) -> ScanAggregate | None:
    if not args.html:
        return None
    from ..reportdata import ScanAggregate

    return ScanAggregate()
