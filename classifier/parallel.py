"""``classifier scan --workers N``: N processes over the captures, records as one process writes them.

Two ways to split the work, chosen by ``split_by_files`` (docs/ARCHITECTURE.md "Scale-out"):

* By files, when the captures are files on their own (not ``--continuous``) and are enough, and
  even enough in size, to keep every worker busy: each worker scans whole files, taken in input
  order as it becomes free; nothing is read twice. The parent writes each file's records as soon
  as every file before it is done, numbering flows on across files as one process does, so it
  holds the records of at most the files scanned ahead of the first unfinished one.
* By server address otherwise: each worker is a ``PartScanner`` (classifier/partition.py) that reads
  every packet but inspects, decides and reports only the flows of its partition. Each record comes
  with its place in the one-process order (how many flows had ended when it did), so the parent
  merges the workers' records into exactly that order, with the same flow numbers, as they arrive:
  it holds at most a few batches per worker.

Workers are forked after the signatures and policy are loaded, so they start at once and share
those pages.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from .errors import UserError
from .flows import Flow
from .partition import PartScanner, merge_input_stats, merge_part_stats
from .pipeline import Scanner, ScanOptions
from .policy import Policy
from .record import json_line, record_function
from .report import InputStats, Summary
from .scaninputs import progress_bar, scan_inputs
from .signatures import Signatures
from .startup import thaw_after_workers
from .workerproc import Channel, Worker, channels, recv_message, send_message, waiting, workers_end_too

BATCH = 256  # records per message from a worker
# The share of a one-process scan's time that every partition repeats when splitting by server
# address (reading and counting every packet, DNS, the flow table): 0.24-0.25 of the CPU time on the
# 8-copy corpus (benchmarks/scan_workers.py, "a partition that reports nothing"), but 0.5-0.6 of
# the wall time measured at 2 workers (uneven partitions, the parent, the forks). docs/ARCHITECTURE.md
# "Scale-out".
REPEATED = 0.5


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
    first_seen: dict[str, tuple[int, int]]  # reason -> (packet, flows ended) where first seen
    failed: bool  # some input could not be opened
    created: int = 0  # flows the partition's table created (every partition's)


# (seq, record) pairs; with ``lines``, the record is (its JSON line, the values of those fields).
Batch = list[tuple[int, Any]]


# The fields of InputStats that are Counters: plain dicts in a packed result.
_COUNTERS = frozenset(f.name for f in fields(InputStats) if f.default_factory is Counter)


def pack_result(result: PartResult) -> tuple:
    """A result as plain values (marshal takes them, not a dataclass or a Counter)."""
    stats = tuple(dict(v) if isinstance(v, Counter) else v for v in vars(result.stats).values())
    return (stats, result.first_seen, result.failed, result.created)


def unpack_result(values: tuple) -> PartResult:
    """The result ``pack_result`` packed."""
    stats = InputStats(*values[0])
    for name in _COUNTERS:
        setattr(stats, name, Counter(getattr(stats, name)))
    return PartResult(stats, values[1], values[2], values[3])


def _encoder(options: ScanOptions, lines: tuple[str, ...] | None) -> Callable[[Flow], Any]:
    """A flow's record as a worker sends it: the record, or with ``lines`` (field names) its JSON
    line and the values of those fields (the few the summary reads, or none)."""
    flow_record = record_function(options.community_id_seed)
    if lines is None:
        return flow_record

    def encode(flow: Flow) -> tuple[bytes, tuple]:
        rec = flow_record(flow)
        return json_line(rec), tuple([rec[f] for f in lines])

    return encode


def run_part(
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    job: PartJob,
    emit: Callable[[Batch, int], None],
    lines: tuple[str, ...] | None = None,
) -> PartResult:
    """Scan one partition; ``emit(batch, upto)`` gets its records as (seq, record) in order and
    promises that no record of this partition with seq <= ``upto`` is still to come. With
    ``lines`` (field names) each record goes as its JSON line and the values of those fields (the
    few the summary reads, or none): encoding is then done here, in parallel, and the parent's
    serial share per record is a fraction of a dict's."""
    batch: Batch = []
    encode = _encoder(options, lines)

    def on_record(flow: Flow | None, seq: int) -> None:
        nonlocal batch
        if flow is not None:
            batch.append((seq, encode(flow)))
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


def _worker(
    conn: Channel,
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    job: PartJob,
    lines: tuple[str, ...] | None,
) -> None:
    """Body of a worker process: batches, then ("done", result) or ("error", one line)."""
    try:
        result = run_part(
            sigs,
            policy,
            options,
            job,
            lambda batch, upto: send_message(conn, ("records", batch, upto)),
            lines,
        )
        send_message(conn, ("done", pack_result(result)))
    except KeyboardInterrupt:
        pass  # the parent was interrupted too and says so
    except BaseException as err:  # a bug: the parent reports it in one line
        send_message(conn, ("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


class WorkerFailed(RuntimeError):
    """A worker process died or raised: a bug (or the OOM killer), reported as an internal error."""


def _died(part: int, proc: Worker) -> WorkerFailed:
    """A worker that is gone (its pipe closed): how it ended, in words (the OOM killer's SIGKILL is
    a signal, not the exit status -9)."""
    code = proc.join()
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return WorkerFailed(f"scan worker {part} was killed by {name} (signal {-code})")
    return WorkerFailed(f"scan worker {part} died (exit status {code})")


def _hand(conn: Channel, part: int, proc: Worker, index: int | None) -> None:
    """Give a file worker its next file (None: no more). A worker that died since its last message
    closed its end: that is the worker's failure, not a broken standard output (which a
    BrokenPipeError would be taken for: a quiet exit 0 with records missing)."""
    try:
        send_message(conn, (index,))
    except BrokenPipeError:
        raise _died(part, proc) from None


def split_by_files(captures: list[str], continuous: bool, workers: int) -> bool:
    """True if whole files per worker beat partitions of server addresses for these inputs.

    Files scanned on their own share nothing, so a split by files repeats no work, but it can be no
    faster than the largest file; partitions divide any input, but every one repeats ``REPEATED``
    of the work. The predicted times (in bytes of input, the way a scan's time grows) decide.
    """
    if continuous or len(captures) < 2:
        return False
    sizes = [_size(c) for c in captures]
    total = sum(sizes)
    by_files = max(max(sizes), total / workers)
    by_partitions = total * (REPEATED + (1 - REPEATED) / workers)
    return by_files <= by_partitions


def _before_fork(sigs: Signatures, policy: Policy, options: ScanOptions) -> None:
    """Do once, before forking, what every worker would otherwise do for itself as it starts (each
    on its share of the cores): a scanner's lazy set-up (the protocol registry imports every
    inspector module, a few ms) and the run's record function. Then what exists, the signatures
    and policy above all, is frozen: the garbage collector leaves it alone, where it would
    otherwise write to its pages in every worker and copy them all."""
    Scanner(sigs, policy, options, _no_flow)
    record_function(options.community_id_seed)
    gc.freeze()


@contextlib.contextmanager
def _forked(
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    count: int,
    duplex: bool,
    target: Callable[..., None],
    args: Callable[[int], tuple],
) -> Iterator[tuple[dict[Channel, int], list[Worker]]]:
    """``count`` workers forked after ``_before_fork``, worker ``part`` running ``target(its
    channel, *args(part))`` (``duplex``: the parent writes to it too); yields (the parent's ends
    -> part, the workers). On leaving, however it is left, every worker is stopped and reaped,
    the pipes closed and the start-up freeze thawed."""
    conns: dict[Channel, int] = {}
    procs: list[Worker] = []
    _before_fork(sigs, policy, options)
    try:
        for part in range(count):
            mine, theirs = channels(duplex)
            conns[mine] = part
            Worker(target, (theirs, *args(part)), list(conns), procs)
            theirs.close()
        yield conns, procs
    finally:
        for proc in procs:
            proc.stop()
        for conn in conns:
            conn.close()
        thaw_after_workers()


def _no_flow(_flow: Flow) -> None:
    """The records of a scanner made only for its set-up: it scans nothing."""


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # the worker that opens it reports why it cannot


def scan_parallel(
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    captures: list[str],
    continuous: bool,
    workers: int,
    progress: bool,
    on_record: Callable[[dict], None] | None,
    on_lines: Callable[[bytes], None] | None = None,
) -> tuple[InputStats, bool]:
    """Scan with ``workers`` processes; ``on_record`` gets every record in one-process order.

    With ``on_lines`` the workers encode the records as JSON lines (``record.json_line``), which
    ``on_lines`` gets in order, a batch at a time, as the UTF-8 bytes they are, and ``on_record``
    (if any) gets of each record only the fields ``Summary.add`` reads. Returns the merged stats
    and whether some input could not be opened.
    """
    lines = None if on_lines is None else (Summary.FIELDS if on_record is not None else ())
    with workers_end_too():  # ``kill`` of this process ends them too
        if split_by_files(captures, continuous, workers):
            return _scan_files(sigs, policy, options, captures, workers, progress, on_record, on_lines, lines)
        return _scan_parts(
            sigs, policy, options, captures, continuous, workers, progress, on_record, on_lines, lines
        )


def _scan_parts(
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    captures: list[str],
    continuous: bool,
    workers: int,
    progress: bool,
    on_record: Callable[[dict], None] | None,
    on_lines: Callable[[bytes], None] | None,
    lines: tuple[str, ...] | None,
) -> tuple[InputStats, bool]:
    """``scan_parallel`` by server address: every worker a partition of them."""

    def job(part: int) -> tuple:
        scan = PartJob(tuple(captures), continuous, part, workers, progress and part == 0)
        return (sigs, policy, options, scan, lines)

    with _forked(sigs, policy, options, workers, False, _worker, job) as (conns, procs):
        results = _merge(conns, procs, on_record, on_lines)
    merged = merge_part_stats([(r.stats, r.first_seen) for r in results])
    return merged, any(r.failed for r in results)


def _merge(
    conns: dict[Channel, int],
    procs: list[Worker],
    on_record: Callable[[dict], None] | None,
    on_lines: Callable[[bytes], None] | None,
) -> list[PartResult]:
    """Pass records on in seq order as soon as every worker has promised nothing earlier is coming."""
    take = _taker(on_record, on_lines)
    upto = [0] * len(conns)
    results: list[PartResult | None] = [None] * len(conns)
    pending: list[tuple[int, dict]] = []
    live = list(conns)
    while live:
        for conn in waiting(live):
            part = conns[conn]
            try:
                msg = recv_message(conn)
            except EOFError:
                raise _died(part, procs[part]) from None
            if msg[0] == "records":
                for item in msg[1]:
                    heapq.heappush(pending, item)
                upto[part] = msg[2]
            elif msg[0] == "done":
                results[part] = unpack_result(msg[1])
                upto[part] = 1 << 62
                live.remove(conn)
            else:
                raise WorkerFailed(f"scan worker {part} failed: {msg[1]}")
        low = min(upto)
        ready = []
        while pending and pending[0][0] <= low:
            ready.append(heapq.heappop(pending)[1])
        if ready:
            take(ready)
    return [r for r in results if r is not None]


def _taker(
    on_record: Callable[[dict], None] | None, on_lines: Callable[[bytes], None] | None, offset: int = 0
) -> Callable[[list], None]:
    """What the parent does with records in order: ``on_record`` for each; or, when the workers
    sent lines, ``on_lines`` for all of them and ``on_record`` (if any) for each one's summary
    fields. Flow numbers are raised by ``offset`` (files scanned on their own number from 1)."""
    fields = Summary.FIELDS
    if on_lines is None:
        each = on_record if on_record is not None else _ignore

        def take_records(records: list) -> None:
            for rec in records:
                if offset:
                    rec["flow"] += offset
                each(rec)

        return take_records

    write = on_lines
    summed = on_record

    def take_lines(records: list) -> None:
        if offset:
            text = [_renumbered(line, offset) for line, _values in records]
        else:
            text = [line for line, _values in records]
        if summed is not None:
            for _line, values in records:
                summed(dict(zip(fields, values, strict=True)))
        write(b"".join(text))

    return take_lines


def _ignore(_record: dict) -> None:
    """No one reads the records (a quiet scan with no output): nothing to do."""


_FLOW_KEY = b',"flow":'


def _renumbered(line: bytes, offset: int) -> bytes:
    """A record's JSON line with its flow number raised by ``offset``. ``"flow"`` is the second
    key, after the file name, and no JSON string holds ``,"flow":`` (its quotes would be escaped),
    so the first one is the key."""
    start = line.index(_FLOW_KEY) + len(_FLOW_KEY)
    end = line.index(b",", start)
    return b"%s%d%s" % (line[:start], int(line[start:end]) + offset, line[end:])


def scan_file(
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    capture: str,
    emit: Callable[[list], None],
    lines: tuple[str, ...] | None = None,
    earlier: Scanner | None = None,
) -> tuple[PartResult, Scanner]:
    """Scan one file on its own, as one process scans it among others, with a plain ``Scanner``
    (a whole file has no partition to keep): ``emit`` gets its records in batches (each record as
    in ``run_part``, without a seq: a file's records go in its order), flows numbered from 1. The
    pure caches of ``earlier``, the scanner of the worker's previous file, are kept warm
    (``Scanner.reuse_caches``). Returns the result and the scanner (the next file's ``earlier``)."""
    batch: list = []
    encode = _encoder(options, lines)

    def on_record(flow: Flow) -> None:
        nonlocal batch
        batch.append(encode(flow))
        if len(batch) >= BATCH:
            emit(batch)
            batch = []

    scanner = Scanner(sigs, policy, options, on_record)
    if earlier is not None:
        scanner.reuse_caches(earlier)
    stats = InputStats()
    failed = scan_inputs([capture], scanner, stats, False, False)
    scanner.finish()
    scanner.fill_stats(stats)
    if batch:
        emit(batch)
    return PartResult(stats, {}, failed, scanner.table.created), scanner


def _file_worker(
    conn: Channel,
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    captures: tuple[str, ...],
    lines: tuple[str, ...] | None,
) -> None:
    """Body of a worker that scans whole files: it gets a file's index (None: no more), sends
    ("records", index, batch) messages, then ("done", index, result); or ("error", one line)."""
    try:
        scanner = None
        while (index := recv_message(conn)[0]) is not None:

            def emit(batch: list, index: int = index) -> None:
                send_message(conn, ("records", index, batch))

            result, scanner = scan_file(sigs, policy, options, captures[index], emit, lines, scanner)
            send_message(conn, ("done", index, pack_result(result)))
    except KeyboardInterrupt:
        pass
    except BaseException as err:
        send_message(conn, ("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


def _scan_files(
    sigs: Signatures,
    policy: Policy,
    options: ScanOptions,
    captures: list[str],
    workers: int,
    progress: bool,
    on_record: Callable[[dict], None] | None,
    on_lines: Callable[[bytes], None] | None,
    lines: tuple[str, ...] | None,
) -> tuple[InputStats, bool]:
    """``scan_parallel`` by whole files: each worker takes the next file when it is free; the
    progress bar (if wanted) moves as files are done."""
    files = tuple(captures)

    def job(_part: int) -> tuple:
        return (sigs, policy, options, files, lines)  # every worker: the files, handed out one by one

    with _forked(sigs, policy, options, min(workers, len(files)), True, _file_worker, job) as (conns, procs):
        sizes = [_size(c) for c in captures]
        with progress_bar(sum(sizes), progress) as bar:

            def done(index: int) -> None:
                if bar is not None:
                    bar[0].advance(bar[1], sizes[index])

            results = _merge_files(conns, procs, len(captures), on_record, on_lines, done)
    merged = merge_input_stats([(r.stats, r.failed) for r in results])
    return merged, any(r.failed for r in results)


def _merge_files(
    conns: dict[Channel, int],
    procs: list[Worker],
    files: int,
    on_record: Callable[[dict], None] | None,
    on_lines: Callable[[bytes], None] | None,
    on_done: Callable[[int], None],
) -> list[PartResult]:
    """Hand out the files in order; pass each file's records on once every file before it is done,
    its flows numbered on from theirs (one process numbers flows across files)."""
    results: dict[int, PartResult] = {}
    held: dict[int, list] = {}  # records of files after the one being written
    writing = 0  # the file whose records go straight through
    offset = 0  # flows created by the files before it
    take = _taker(on_record, on_lines)
    handed = 0
    live = list(conns)
    for conn in live:
        _hand(conn, conns[conn], procs[conns[conn]], handed)
        handed += 1
    while live:
        for conn in waiting(live):
            part = conns[conn]
            try:
                msg = recv_message(conn)
            except EOFError:
                raise _died(part, procs[part]) from None
            if msg[0] == "records":
                if msg[1] == writing:
                    take(msg[2])
                else:
                    held.setdefault(msg[1], []).extend(msg[2])
            elif msg[0] == "done":
                results[msg[1]] = unpack_result(msg[2])
                on_done(msg[1])
                if handed < files:
                    _hand(conn, part, procs[part], handed)
                    handed += 1
                else:
                    _hand(conn, part, procs[part], None)
                    live.remove(conn)
                while writing in results and writing < files:
                    offset += results[writing].created
                    writing += 1
                    take = _taker(on_record, on_lines, offset)
                    records = held.pop(writing, None)
                    if records:
                        take(records)
            else:
                raise WorkerFailed(f"scan worker {part} failed: {msg[1]}")
    return [results[i] for i in range(files)]


def default_workers() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0))


# Local worker processes allowed per core: more only adds processes (each holding a flow table, and
# by server address each reading every packet) on the same cores; ``--workers 100000`` would fork
# until the machine runs out of processes or memory.
WORKERS_PER_CORE = 8


def check_workers(workers: int) -> None:
    """UserError if ``workers`` local processes are more than ``WORKERS_PER_CORE`` per core."""
    cores = default_workers()
    if workers > WORKERS_PER_CORE * cores:
        raise UserError(
            f"--workers {workers}: at most {WORKERS_PER_CORE * cores} on this machine "
            f"({WORKERS_PER_CORE} per core, {cores} cores): each worker is a process with its own "
            "flow table, and more than the cores only share them"
        )
