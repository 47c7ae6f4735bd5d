#!/usr/bin/env python3
"""Wall and CPU time of `classifier scan --workers 1` beside `--workers N`, in one run, and the speed-up.

Builds the corpus with the shared script (8 copies of the real captures by default, under /tmp),
then runs each worker count in turn, several times, interleaved (so a burst of load from others
hits both alike), keeping the best wall time and the least CPU time (user + system of the scan and
its workers). The records of every run are compared: a speed-up with different records would be
no speed-up. Start-up (a run on an empty capture) is measured too, and the steady figures are the
corpus minus start-up. The load average before and after is printed: on a shared machine, say it.

Two inputs are measured: the corpus as one capture (split by server address across the workers)
and, with ``--split K`` (default 8), the same packets cut into K files scanned on their own (split
by whole files). Each table prints the wall speed-up (whole run and steady) and the CPU ratio
(CPU of N workers over one: the work the split adds) and the ceiling (one process's start-up kept
serial, its scan cut in N with nothing repeated or added: no split can do better) beside the
target, whole run and steady. Then the partition model:
in this process, the CPU time of one process and of each partition of the corpus, the share of
the work every partition repeats, and the speed-up that predicts for 2, 16 and 64 cores (free of
other engineers' load, unlike the wall times), with and without the serial start-up.

With ``--big K`` (default 32; 0: none) a larger corpus of K copies is measured too, as one capture
and cut into ``--split`` files, where the start-up no longer dominates the run; its partition model
is printed beside the first one's.

    python benchmarks/scan_workers.py [--copies 8] [--big 32] [--repeat 5] [--workers 2] [--split 8]
        [--capture FILE]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CLASSIFIER_SHARED", ROOT.parent / "shared"))
WORK = Path(tempfile.gettempdir()) / "classifier-bench"
TARGET = 1.7  # issue 10: wall speed-up of --workers 2 over --workers 1 on 2 cores


def build_corpus(copies: int) -> Path:
    out = WORK / f"corpus-{copies}.pcap"
    if out.exists():
        return out
    WORK.mkdir(parents=True, exist_ok=True)
    captures = sorted(glob.glob(str(SHARED / "pcaps" / "real" / "*.pcap*")))
    if not captures:
        sys.exit(f"no captures under {SHARED / 'pcaps' / 'real'}")
    subprocess.run(
        [sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(out), str(copies), *captures],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return out


def split_capture(capture: Path, parts: int) -> list[Path]:
    """The packets of a (little-endian, microsecond) pcap cut into ``parts`` files of about equal
    packet counts, at record boundaries."""
    data = capture.read_bytes()
    if data[:4] != b"\xd4\xc3\xb2\xa1":
        sys.exit(f"--split needs a little-endian microsecond pcap: {capture}")
    starts = []
    pos = 24
    while pos + 16 <= len(data):
        starts.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    starts.append(pos)
    out = []
    for k in range(parts):
        path = WORK / f"{capture.stem}-part{k:02d}of{parts}.pcap"
        lo = starts[len(starts) * k // parts]
        hi = starts[min(len(starts) - 1, len(starts) * (k + 1) // parts)]
        if not path.exists():
            path.write_bytes(data[:24] + data[lo:hi])
        out.append(path)
    return out


def run(captures: list[Path], workers: int) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the scan and all its workers, SHA-256 of the records)."""
    out = WORK / f"records-{workers}.jsonl"
    cmd = [sys.executable, "-m", "classifier", "scan", *map(str, captures), "-q", "--no-progress",
           "--workers", str(workers), "-o", str(out)]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 3):
        sys.exit(f"--workers {workers} failed ({proc.returncode}): {proc.stderr.decode().strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    return wall, cpu, digest


def _met(speed: float) -> str:
    return "met" if speed >= TARGET else "NOT met"


def measure(
    label: str, captures: list[Path], empty: Path, counts: list[int], repeat: int
) -> tuple[bool, float]:
    """Print the table of one input; (every worker count wrote the same records, start-up wall s
    of one process)."""
    best: dict[int, list[float]] = {n: [float("inf")] * 4 for n in counts}
    digests: dict[int, set[str]] = {n: set() for n in counts}
    for _ in range(repeat):
        for n in counts:  # interleaved: load from others hits every count alike
            wall, cpu, digest = run(captures, n)
            swall, scpu, _ = run([empty], n)
            b = best[n]
            best[n] = [min(b[0], wall), min(b[1], cpu), min(b[2], swall), min(b[3], scpu)]
            digests[n].add(digest)
    size = sum(c.stat().st_size for c in captures) / 1e6
    print(f"\n{label}: {len(captures)} file(s), {size:.1f} MB")
    print(
        f"{'workers':>8}{'wall s':>9}{'CPU s':>8}{'start-up wall s':>17}{'steady wall s':>15}"
        f"{'speed-up':>10}{'steady speed-up':>17}{'CPU ratio':>11}{'ceiling':>9}   target {TARGET}x"
    )
    one = best[1]
    for n in counts:
        wall, cpu, swall, _scpu = best[n]
        steady = wall - swall
        speed, steady_speed = one[0] / wall, (one[0] - one[2]) / max(steady, 1e-9)
        # What a perfect split would give: one process's start-up serial, its scan cut in n with
        # nothing repeated and nothing added. A target above it is out of reach for any design.
        ceiling = one[0] / (one[2] + (one[0] - one[2]) / n)
        verdict = "" if n == 1 else f"whole {_met(speed)}, steady {_met(steady_speed)}"
        if n > 1 and ceiling < TARGET:
            verdict += f" (ceiling {ceiling:.2f} < {TARGET})"
        print(
            f"{n:8}{wall:9.2f}{cpu:8.2f}{swall:17.2f}{steady:15.2f}{speed:10.2f}"
            f"{steady_speed:17.2f}{cpu / one[1]:11.2f}{'' if n == 1 else f'{ceiling:.2f}':>9}   {verdict}"
        )
    same = len(set().union(*digests.values())) == 1
    print(f"records identical for every worker count: {'yes' if same else 'NO'}")
    return same, one[2]


def partition_model(capture: Path, parts: int, repeat: int, startup: float) -> None:
    """CPU of one process and of each of ``parts`` partitions, in this process; what that predicts."""
    sys.path.insert(0, str(ROOT))
    from classifier.parallel import PartJob, run_part
    from classifier.pipeline import ScanOptions
    from classifier.policy import Policy
    from classifier.signatures import Signatures, shipped_directory

    sigs = Signatures.load(shipped_directory())
    policy = Policy.load(shipped_directory() / "policy")

    def cpu(part: int, of: int) -> float:
        t = time.process_time()
        job = PartJob((str(capture),), False, part, of)
        run_part(sigs, policy, ScanOptions(), job, lambda b, u: None, ())  # JSON lines, as `-q -o`
        return time.process_time() - t

    one, each, none = float("inf"), [float("inf")] * parts, float("inf")
    for _ in range(repeat):
        one = min(one, cpu(0, 1))
        each = [min(e, cpu(k, parts)) for k, e in enumerate(each)]
        none = min(none, cpu(parts, parts))  # a partition that reports nothing: only what all repeat
    repeated = (sum(each) - one) / (parts - 1) / one  # the share every partition does again
    print(f"\npartition model ({capture.name}, CPU s in this process, best of {repeat}):")
    print(f"  one process {one:.3f}; partitions of {parts}: " + " ".join(f"{e:.3f}" for e in each))
    print(f"  critical path (slowest partition) speed-up: {one / max(each):.2f}")
    print(f"  a partition that reports nothing: {none:.3f} (r = {none / one:.2f} of one process)")
    print(f"  repeated share r = {repeated:.2f}; predicted speed-up 1/(r + (1-r)/N) at an even split:")
    print("  " + "  ".join(f"N={n}: {1 / (repeated + (1 - repeated) / n):.2f}" for n in (2, 16, 64)))
    # The whole run: the start-up (an empty capture's wall time with one worker) stays serial.
    whole = [(startup + one) / (startup + one * (repeated + (1 - repeated) / n)) for n in (2, 16, 64)]
    print(
        f"  whole run with the {startup:.3f} s start-up serial: "
        + "  ".join(f"N={n}: {w:.2f}" for n, w in zip((2, 16, 64), whole, strict=True))
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--big", type=int, default=32, help="also a corpus of this many copies (0: no)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, action="append", help="worker counts beside 1 (default 2)")
    ap.add_argument("--split", type=int, default=8, help="also the corpus cut into this many files (0: no)")
    ap.add_argument("--capture", help="measure this capture instead of the corpus")
    args = ap.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    capture = Path(args.capture) if args.capture else build_corpus(args.copies)
    empty = WORK / "empty.pcap"
    empty.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    counts = [1, *(args.workers or [2])]
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{len(os.sched_getaffinity(0))} CPUs; {capture} ({capture.stat().st_size / 1e6:.1f} MB)"
    )
    inputs = [capture]
    if args.big and not args.capture:
        inputs.append(build_corpus(args.big))
    models = []
    all_same = True
    for corpus in inputs:
        same, startup = measure(
            f"{corpus.name} as one capture (split by server address)", [corpus], empty, counts, args.repeat
        )
        if args.split > 1:
            files = split_capture(corpus, args.split)
            label = f"{corpus.name} as {args.split} files on their own (split by whole files)"
            same &= measure(label, files, empty, counts, args.repeat)[0]
        all_same &= same
        models.append((corpus, startup))
    for corpus, startup in models:
        partition_model(corpus, max(counts), args.repeat, startup)
    print(
        f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; best of {args.repeat}; "
        "CPU = user + system of the scan and its workers; steady = minus the start-up (an empty capture)"
    )
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
