"""``classifier scan --dask SCHEDULER``: the scan as Dask tasks, on this machine or on a cluster.

The tasks are the units ``--workers`` already proves exact:

* files on their own (the default): one task per file. Each file starts with an empty flow table
  and forgets every name (as one process does at each new file), so a file's records do not
  depend on the others; the client renumbers flows as one process would and writes the files'
  records in input order.
* ``--continuous`` (rotated files of one stream): one task per partition of server addresses
  (``classifier/partition.py``), each reading *all* the files in order. Nothing is carried
  between tasks: each task sees every packet, so the DNS answers and the flows that cross a file
  boundary are in every task's own state, exactly as in one process; the client merges the
  records into one-process order.

The signatures and the policy are loaded once by the client and sent to every worker (so every
task judges with the same set); the captures are read by the workers, from the same path (shared
storage on a cluster: docs/scale-out.md). Dask and pyarrow are the optional extra ``dask``.
"""

from __future__ import annotations

import heapq
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import UserError
from .parallel import Batch, PartJob, PartResult, WorkerFailed, default_workers, run_part
from .parquetout import NEEDS_EXTRA, ParquetPartWriter, part_name
from .partition import merge_input_stats, merge_part_stats
from .pipeline import ScanOptions
from .policy import Policy
from .report import MAX_DISTINCT, InputStats, Summary
from .signatures import Signatures

CONNECT_TIMEOUT = "30s"  # how long to try reaching a remote scheduler


def import_dask() -> Any:
    """``dask.distributed``, or one line saying how to install it."""
    try:
        import dask.distributed as dd
    except ImportError:
        raise UserError(f"--dask needs Dask, from the optional extra: {NEEDS_EXTRA}") from None
    return dd


# -- tasks -------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    """What one task sends back: its counts and summary, and its records unless it wrote Parquet."""

    result: PartResult | None
    summary: Summary
    records: Batch | None
    error: UserError | None = None  # what stopped the task (a part that could not be written)


def run_task(
    sigs: Signatures, policy: Policy, options: ScanOptions, job: PartJob, parquet_path: str | None
) -> TaskResult:
    """One Dask task: scan ``job``; write its records to ``parquet_path`` or return them.

    A user's error (a full disk under the part) is returned, not raised: the client says it in
    one line, where a raised one is also a failed task the workers log with its traceback."""
    summary = Summary()
    records: Batch = []
    try:
        writer = ParquetPartWriter(parquet_path) if parquet_path else None

        def emit(batch: Batch, _upto: int) -> None:
            for seq, rec in batch:
                summary.add(rec)
                if writer is not None:
                    writer.write(rec)
                else:
                    records.append((seq, rec))

        result = run_part(sigs, policy, options, job, emit)
        if writer is not None:
            writer.close()
    except UserError as err:
        return TaskResult(None, summary, None, err)
    return TaskResult(result, summary, None if writer is not None else records)


def plan(captures: list[str], continuous: bool, parts: int) -> list[PartJob]:
    """The tasks: one per file, or (``continuous``) one per partition over every file."""
    if continuous:
        return [PartJob(tuple(captures), True, k, parts) for k in range(parts)]
    return [PartJob((c,), False, 0, 1) for c in captures]


# -- the client --------------------------------------------------------------------------------


class DaskRun:
    """A Dask client on ``scheduler`` ("local": an embedded LocalCluster of ``workers`` processes)."""

    def __init__(self, scheduler: str, workers: int | None) -> None:
        dd = import_dask()
        self._dd = dd
        self.cluster = None
        try:
            if scheduler == "local":
                import logging

                self.cluster = dd.LocalCluster(
                    n_workers=workers or default_workers(),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    # Every failure of a task reaches the client, which says it in one line:
                    # the workers' own log of it (a traceback) would only repeat it.
                    silence_logs=logging.CRITICAL,
                )
                self.client = dd.Client(self.cluster)
            else:
                self.client = dd.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except OSError as err:
            self.close()
            raise UserError(f"--dask {scheduler}: cannot reach the scheduler: {err}") from None

    def slots(self) -> int:
        """Tasks the cluster runs at once (its worker threads)."""
        return max(1, sum(self.client.nthreads().values()))

    def run(
        self,
        sigs: Signatures,
        policy: Policy,
        options: ScanOptions,
        jobs: list[PartJob],
        parquet_dir: str | None,
        progress: Callable[[int, int], None],
    ) -> Iterator[TaskResult]:
        """The tasks' results in task order, each as soon as it and all before it are done."""
        sigs_f, policy_f = self.client.scatter([sigs, policy], broadcast=True)
        futures = [
            self.client.submit(
                run_task,
                sigs_f,
                policy_f,
                options,
                job,
                os.path.join(parquet_dir, part_name(i)) if parquet_dir else None,
                key=f"classifier-scan-{os.getpid()}-{i}",
                pure=False,
            )
            for i, job in enumerate(jobs)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        done: dict[int, TaskResult] = {}
        nxt = 0
        for finished, fut in enumerate(self._dd.as_completed(futures), 1):
            try:
                task = fut.result()
            except UserError:  # never a bug, whoever raised it (OutputError: exit 4)
                raise
            except Exception as err:  # a bug in a task (input problems are results, not errors)
                what = f"{type(err).__name__}: {err}"
                raise WorkerFailed(f"Dask task {index[fut.key]} failed: {what}") from None
            if task.error is not None:
                raise task.error  # e.g. a part that could not be written (OutputError, exit 4)
            done[index[fut.key]] = task
            progress(finished, len(futures))
            while nxt in done:
                yield done.pop(nxt)
                nxt += 1

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.cluster is not None:
            self.cluster.close()


# -- merging -----------------------------------------------------------------------------------


def merge_stats(results: list[PartResult], continuous: bool) -> InputStats:
    if continuous:
        return merge_part_stats([(r.stats, r.first_seen) for r in results])
    return merge_input_stats([(r.stats, r.failed) for r in results])


def merge_summary(into: Summary, part: Summary) -> None:
    """Add a task's summary to the run's."""
    into.cells.update(part.cells)
    into.bytes.update(part.bytes)
    into.actions.update(part.actions)
    into.withheld.update(part.withheld)
    into.blind.update(part.blind)
    into.view = part.view or into.view
    for key, n in part.hostnames.items():
        into.hostnames[key] += n - 1
        into.hostnames.add(key)  # keeps the bound on distinct names
    into.hostnames.pruned |= part.hostnames.pruned
    for kind, clients in part.blind_clients.items():
        mine = into.blind_clients.setdefault(kind, set())
        mine.update(list(clients)[: max(0, MAX_DISTINCT - len(mine))])
    for kind, servers in part.blind_servers.items():
        into.blind_servers.setdefault(kind, type(servers)()).update(servers)


def merged_records(tasks: list[TaskResult]) -> Iterator[dict]:
    """The partitions' records in the order one process writes them (the order flows ended)."""
    streams = [t.records or [] for t in tasks]
    for _seq, rec in heapq.merge(*streams, key=lambda item: item[0]):
        yield rec


def scan_dask(
    scheduler: str,
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    captures: list[str],
    continuous: bool,
    workers: int,
    parquet_dir: str | None,
    writer: Any,
    summary: Summary,
    show_progress: bool,
) -> tuple[InputStats, bool]:
    """Run the scan as Dask tasks; records go to ``writer`` (unless the tasks wrote Parquet parts
    under ``parquet_dir``). Returns the merged stats and whether some input could not be opened."""
    run = DaskRun(scheduler, workers if workers > 1 else None)
    try:
        jobs = plan(captures, continuous, workers if workers > 1 else run.slots())
        results: list[PartResult] = []
        held: list[TaskResult] = []
        offset = 0  # flows of the files before: one process numbers flows on across files
        for task in run.run(sigs, policy, options, jobs, parquet_dir, progress_printer(not show_progress)):
            assert task.result is not None  # a task that failed raised its error
            results.append(task.result)
            merge_summary(summary, task.summary)
            if writer is None:
                continue
            if continuous:
                held.append(task)  # merged once every partition is in
                continue
            for _seq, rec in task.records or []:
                rec["flow"] += offset
                writer.write(rec)
            offset += task.result.created
        if writer is not None and continuous:
            for rec in merged_records(held):
                writer.write(rec)
    finally:
        run.close()
    return merge_stats(results, continuous), any(r.failed for r in results)


def progress_printer(quiet: bool) -> Callable[[int, int], None]:
    """Progress on stderr: one line per finished task (none with -q/--no-progress)."""

    def show(done: int, total: int) -> None:
        if not quiet:
            sys.stderr.write(f"dask: {done}/{total} tasks done\n")
            sys.stderr.flush()

    return show
