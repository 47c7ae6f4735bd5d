#!/usr/bin/env python3
"""Wall and CPU time of `classifier scan --workers 1` beside `--workers N`, in one run, and the speed-up.

Builds the corpus with the shared script (8 copies of the real captures by default, under /tmp),
then runs each worker count in turn, several times, interleaved (so a burst of load from others
hits both alike), keeping the best wall time and the least CPU time (user + system of the scan and
its workers). The records of every run are compared: a speed-up with different records would be
no speed-up. Start-up (a run on an empty capture) is measured too, and the steady figures are the
corpus minus start-up. The load average before and after is printed: on a shared machine, say it.

    python benchmarks/scan_workers.py [--copies 8] [--repeat 5] [--workers 2] [--capture FILE]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CLASSIFIER_SHARED", ROOT.parent / "shared"))
WORK = Path(tempfile.gettempdir()) / "classifier-bench"


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


def run(capture: Path, workers: int) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the scan and all its workers, SHA-256 of the records)."""
    out = WORK / f"records-{workers}.jsonl"
    cmd = [sys.executable, "-m", "classifier", "scan", str(capture), "-q", "--no-progress",
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, action="append", help="worker counts beside 1 (default 2)")
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
    best: dict[int, list[float]] = {n: [float("inf")] * 4 for n in counts}
    digests: dict[int, set[str]] = {n: set() for n in counts}
    for _ in range(args.repeat):
        for n in counts:  # interleaved: load from others hits every count alike
            wall, cpu, digest = run(capture, n)
            swall, scpu, _ = run(empty, n)
            b = best[n]
            best[n] = [min(b[0], wall), min(b[1], cpu), min(b[2], swall), min(b[3], scpu)]
            digests[n].add(digest)
    print(
        f"{'workers':>8}{'wall s':>9}{'CPU s':>8}{'start-up wall s':>17}{'steady wall s':>15}"
        f"{'speed-up':>10}{'steady speed-up':>17}"
    )
    one = best[1]
    for n in counts:
        wall, cpu, swall, _scpu = best[n]
        steady = wall - swall
        print(
            f"{n:8}{wall:9.2f}{cpu:8.2f}{swall:17.2f}{steady:15.2f}{one[0] / wall:10.2f}"
            f"{(one[0] - one[2]) / max(steady, 1e-9):17.2f}"
        )
    same = len(set().union(*digests.values())) == 1
    print(f"records identical for every worker count: {'yes' if same else 'NO'}")
    print(
        f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; best of {args.repeat}; "
        "CPU = user + system of the scan and its workers"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
