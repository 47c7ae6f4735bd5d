"""Feed a list of captures to a scanner: the part of ``classifier scan`` every worker repeats.

One process, each ``--workers`` partition and each Dask task run the same loop over the same
inputs, so the packets a scanner sees, their numbers in each file and the problems of each
capture are the same wherever it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

from .capture import CaptureError, CaptureReader, RunBatch, open_capture
from .outputs import printable
from .pipeline import Scanner
from .report import InputStats

_PROGRESS_MIN_BYTES = 8 << 20  # a progress bar only for inputs worth watching


def scan_inputs(
    captures: list[str],
    scanner: Scanner,
    stats: InputStats,
    continuous: bool,
    progress: bool,
    wrap_feed: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
) -> bool:
    """Feed every capture to the scanner; True if some input could not be opened.

    ``continuous``: the captures are one stream (flows and DNS answers carry over between them);
    ``progress``: a progress bar on stderr if it is a terminal and the inputs are worth watching;
    ``wrap_feed``: replaces ``Scanner.feed`` by what it returns for it (``--write-pcap`` keeps
    each packet and its flow).
    """
    failed = False
    readers: list[tuple[str, CaptureReader]] = []
    try:
        for path in captures:
            try:
                readers.append((path, open_capture(path)))
            except CaptureError as err:
                stats.problems.append(printable(str(err)))
                failed = True
        _feed(scanner, stats, readers, continuous, progress, wrap_feed)
    finally:
        for _, reader in readers:
            reader.close()
    return failed


def _feed(
    scanner: Scanner,
    stats: InputStats,
    readers: list[tuple[str, CaptureReader]],
    continuous: bool,
    progress_wanted: bool,
    wrap_feed: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
) -> None:
    sizes = [r.size for _, r in readers]
    total = sum(s for s in sizes if s) if all(sizes) else None
    with progress_bar(total, progress_wanted) as progress:
        done_bytes = 0
        for path, reader in readers:
            name = printable(path)  # as given: x.pcap in two directories stays two inputs
            scanner.start_input(name, reader.interfaces, carry_over=continuous)
            reader.on_malformed = scanner.malformed_packet
            stats.files += 1
            batches = scanner.batches_of(reader) if wrap_feed is None else reader.batches()
            if progress is not None:
                batches = _reporting(reader, batches, progress, done_bytes)
            try:
                scanner.feed_batches(batches, None if wrap_feed is None else wrap_feed(scanner.feed))
            finally:
                stats.problems.extend(printable(str(p)) for p in reader.problems)
            done_bytes += reader.size or 0


def progress_bar(total: int | None, wanted: bool) -> Any:
    """A context yielding (progress, task) of a bar over ``total`` bytes on stderr, or None: only
    if wanted, stderr is a terminal and the inputs (of known size) are worth watching."""
    if wanted and total is not None and total >= _PROGRESS_MIN_BYTES and sys.stderr.isatty():
        return _progress(total)
    return nullcontext(None)


def _reporting(
    reader: CaptureReader, batches: Iterator[RunBatch], progress: tuple[Any, Any], done_bytes: int
) -> Iterator[RunBatch]:
    """The reader's batches, moving the progress bar after each one."""
    bar, task = progress
    for batch in batches:
        yield batch
        bar.update(task, completed=done_bytes + reader.position)


class _progress:
    """A rich progress bar on stderr, as a context manager yielding (progress, task)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        self._p = Progress(
            "scanning",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self._total = total

    def __enter__(self):
        self._p.__enter__()
        return self._p, self._p.add_task("scan", total=self._total)

    def __exit__(self, *exc):
        return self._p.__exit__(*exc)
