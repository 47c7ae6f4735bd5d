"""``classifier scan --workers N``: N processes over the same captures, records as one process writes them.

Each worker is a ``PartScanner`` (classifier/partition.py) that reads every packet but inspects,
decides and reports only the flows of its partition of server addresses. Each record comes with
its place in the one-process order (how many flows had ended when it did), so the parent merges the
workers' records into exactly that order, with the same flow numbers, as they arrive: it holds at
most a few batches per worker. Workers are forked after the signatures and policy are loaded, so
they start at once and share those pages.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import cast

from .flows import Flow
from .partition import PartScanner, merge_part_stats
from .pipeline import ScanOptions
from .policy import Policy
from .record import record_function
from .report import InputStats
from .scaninputs import scan_inputs
from .signatures import Signatures

BATCH = 256  # records per message from a worker


@dataclass(frozen=True)
class PartJob:
    """What one partition scans: the inputs, how they relate, which partition of how many."""

    captures: tuple[str, ...]
    continuous: bool
    part: int
    parts: int
    progress: bool = False  # a progress bar on stderr (one partition shows it)


@dataclass
class PartResult:
    """What a partition counted, and when each inspection error reason was first seen."""

    stats: InputStats
    first_seen: dict[str, int]
    failed: bool  # some input could not be opened
    created: int = 0  # flows the partition's table created (every partition's)


Batch = list[tuple[int, dict]]


def run_part(
    sigs: Signatures, policy: Policy, options: ScanOptions, job: PartJob, emit: Callable[[Batch, int], None]
) -> PartResult:
    """Scan one partition; ``emit(batch, upto)`` gets its records as (seq, record) in order and
    promises that no record of this partition with seq <= ``upto`` is still to come."""
    batch: Batch = []
    flow_record = record_function(options.community_id_seed)

    def on_record(flow: Flow | None, seq: int) -> None:
        nonlocal batch
        if flow is not None:
            batch.append((seq, flow_record(flow)))
            if len(batch) < BATCH:
                return
        emit(batch, seq)
        batch = []

    scanner = PartScanner(sigs, policy, options, on_record, job.part, job.parts)
    stats = InputStats()
    failed = scan_inputs(list(job.captures), scanner, stats, job.continuous, job.progress)
    scanner.finish()
    scanner.fill_stats(stats)
    emit(batch, scanner.ended)
    first_seen = scanner.inspection.first_seen
    return PartResult(stats, dict(first_seen), failed, scanner.table.created)


def _worker(conn: Connection, sigs: Signatures, policy: Policy, options: ScanOptions, job: PartJob) -> None:
    """Body of a worker process: batches, then ("done", result) or ("error", one line)."""
    try:
        result = run_part(sigs, policy, options, job, lambda b, upto: conn.send(("records", b, upto)))
        conn.send(("done", result))
    except KeyboardInterrupt:
        pass  # the parent was interrupted too and says so
    except BaseException as err:  # a bug: the parent reports it in one line
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


class WorkerFailed(RuntimeError):
    """A worker process died or raised: a bug (or the OOM killer), reported as an internal error."""


def scan_parallel(
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    captures: list[str],
    continuous: bool,
    workers: int,
    progress: bool,
    on_record: Callable[[dict], None],
) -> tuple[InputStats, bool]:
    """Scan with ``workers`` processes; ``on_record`` gets every record in one-process order.

    Returns the merged stats and whether some input could not be opened.
    """
    ctx = multiprocessing.get_context("fork")  # inherit the loaded signatures: no start-up cost
    conns: dict[Connection, int] = {}
    procs = []
    try:
        for part in range(workers):
            mine, theirs = ctx.Pipe(duplex=False)
            job = PartJob(tuple(captures), continuous, part, workers, progress and part == 0)
            proc = ctx.Process(
                target=_worker,
                args=(theirs, sigs, policy, options, job),
                name=f"classifier-scan-{part}",
                daemon=True,
            )
            proc.start()
            theirs.close()
            procs.append(proc)
            conns[mine] = part
        results = _merge(conns, procs, on_record)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        for conn in conns:
            conn.close()
    merged = merge_part_stats([(r.stats, r.first_seen) for r in results])
    return merged, any(r.failed for r in results)


def _merge(conns: dict[Connection, int], procs: list, on_record: Callable[[dict], None]) -> list[PartResult]:
    """Pass records on in seq order as soon as every worker has promised nothing earlier is coming."""
    upto = [0] * len(conns)
    results: list[PartResult | None] = [None] * len(conns)
    pending: list[tuple[int, dict]] = []
    live = list(conns)
    while live:
        # wait() returns only objects of the list it is given, all Connections here; its stub
        # declares every kind it accepts (sockets, file descriptors) instead.
        for conn in cast(list[Connection], wait(live)):
            part = conns[conn]
            try:
                msg = conn.recv()
            except EOFError:
                procs[part].join()
                raise WorkerFailed(f"scan worker {part} died (exit status {procs[part].exitcode})") from None
            if msg[0] == "records":
                for item in msg[1]:
                    heapq.heappush(pending, item)
                upto[part] = msg[2]
            elif msg[0] == "done":
                results[part] = msg[1]
                upto[part] = 1 << 62
                live.remove(conn)
            else:
                raise WorkerFailed(f"scan worker {part} failed: {msg[1]}")
        low = min(upto)
        while pending and pending[0][0] <= low:
            on_record(heapq.heappop(pending)[1])
    return [r for r in results if r is not None]


def default_workers() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0))
