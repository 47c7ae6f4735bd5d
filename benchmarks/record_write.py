#!/usr/bin/env python3
"""CPU time per flow of building records (``flow_record``) and writing them (JSON lines, CSV).

Records are a per-flow cost of every scan and of the gateway's log. This scans a capture once
(default: the corpus of benchmarks/scan_throughput.py, 8 copies of the real captures), keeps the
decided flows, then times, over all of them, ``flow_record`` alone and ``flow_record`` + each
writer into memory, best of ``--repeat``, in CPU time. The baseline is ``orjson.dumps`` of the
same records (what encoding costs whatever builds them), measured in the same process.
``--compare-with DIR`` also measures the ``classifier`` of another checkout on the same capture;
the checkouts take turns, each in a process of its own, so a change in the machine's load hits
them alike.

    python benchmarks/record_write.py [--capture FILE] [--repeat 7] [--rounds 3] [--compare-with DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in the measured checkout (its classifier first on sys.path): prints one JSON object.
_CHILD = r"""
import io, json, sys, time
import orjson
from classifier.capture import open_capture
from classifier.pipeline import Scanner, ScanOptions
from classifier.policy import Policy
from classifier.record import CsvWriter, JsonLinesWriter, flow_record
from classifier.signatures import Signatures, shipped_directory

capture, repeat = sys.argv[1], int(sys.argv[2])
flows = []
scanner = Scanner(Signatures.load(), Policy.load(shipped_directory() / "policy"), ScanOptions(),
                  flows.append)
reader = open_capture(capture)
try:
    scanner.start_input(capture, reader.interfaces)
    reader.on_malformed = scanner.malformed_packet
    for packet in reader:
        scanner.feed(*packet)
finally:
    reader.close()
scanner.finish()


def best(work):
    times = []
    for _ in range(repeat):
        t = time.process_time()
        work()
        times.append(time.process_time() - t)
    return min(times)


def build():
    for f in flows:
        flow_record(f)


def write(writer_class):
    def run():
        w = writer_class(io.StringIO())
        for f in flows:
            w.write(flow_record(f))
    return run


records = [flow_record(f) for f in flows]


def encode():
    for r in records:
        orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE)


print(json.dumps({"flows": len(flows), "flow_record": best(build), "jsonl": best(write(JsonLinesWriter)),
                  "csv": best(write(CsvWriter)), "orjson_dumps": best(encode)}))
"""


def measure(checkout: Path, capture: Path, repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(capture), str(repeat)],
        env=env,
        cwd=checkout,
        capture_output=True,
        check=False,
    )
    if res.returncode != 0:
        sys.exit(f"measuring {checkout} failed: {res.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(res.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capture", type=Path, help="capture to take the flows from (default: the corpus)")
    ap.add_argument("--copies", type=int, default=8, help="copies of the real captures in the corpus")
    ap.add_argument("--repeat", type=int, default=7, help="timed passes per measurement (best counts)")
    ap.add_argument("--rounds", type=int, default=3, help="turns each checkout takes (best counts)")
    ap.add_argument(
        "--compare-with",
        metavar="DIR",
        type=Path,
        help="also measure the classifier of this checkout (e.g. a worktree of main)",
    )
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = ap.parse_args()

    if args.capture is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from scan_throughput import build_corpus

        args.capture = build_corpus(args.copies)
    checkouts = {"this checkout": ROOT}
    if args.compare_with:
        checkouts[args.compare_with.name] = args.compare_with.resolve()
    best: dict[str, dict] = {}
    started = time.monotonic()
    for _ in range(args.rounds):
        for name, path in checkouts.items():
            got = measure(path, args.capture, args.repeat)
            old = best.get(name)
            best[name] = got if old is None else {k: min(v, old[k]) for k, v in got.items()}
    flows = next(iter(best.values()))["flows"]
    print(
        f"{args.capture.name}: {flows} flows; CPU microseconds per flow, best of {args.rounds} rounds "
        f"x {args.repeat} passes ({time.monotonic() - started:.0f} s)"
    )
    print(f"{'checkout':20}{'flow_record':>13}{'+ jsonl':>10}{'+ csv':>10}{'orjson.dumps':>14}")
    for name, got in best.items():
        if got["flows"] != flows:
            sys.exit(f"{name} kept {got['flows']} flows, not {flows}")
        per = {k: v / flows * 1e6 for k, v in got.items() if k != "flows"}
        print(
            f"{name:20}{per['flow_record']:13.2f}{per['jsonl']:10.2f}{per['csv']:10.2f}"
            f"{per['orjson_dumps']:14.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(best, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
