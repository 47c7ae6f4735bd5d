#!/usr/bin/env python3
"""CPU microseconds per flow of the once-per-flow stages of ``classifier scan``, beside another tree.

The scan's per-flow work happens once a flow is decided or ends: attribution (signatures, DNS
caches, evidence), the policy decision and the block floor, the record (``flow_record``), its JSON
encoding and the summary; and, for a QUIC flow, before its decision, its client Initials' keys,
decryption and ClientHello (``quic``, per datagram inspected). This runs the real
``classifier scan`` in-process over a capture (default: the 8-copy corpus of
benchmarks/scan_throughput.py) with each stage's function wrapped in a timer, so the figures are
those of a real scan with its real cache hit rates, not of a loop over one flow.
Each tree runs in a process of its own, ``--repeat`` times, taking turns (a change in the machine's
load hits them alike); the least time of each stage is reported. Stages are timed in thread CPU
time, so a neighbour's load on a shared machine does not count; that clock is a system call
(about 0.5 us), so the child first measures what a timed call of nothing costs and takes it off
every stage (per call, and per timed call made inside it): the figures are the stages' own.

    python benchmarks/flow_cost.py [--capture FILE] [--corpus all|quic] [--repeat 3]
                                   [--against DIR ...]

``--against DIR`` also measures the classifier of another source tree (``git archive main | tar -x
-C /tmp/main``) on the same capture.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from scan_throughput import build_corpus  # noqa: E402  (a sibling script, not a package)

# Runs in the measured tree (its classifier first on sys.path): prints one JSON object.
_CHILD = r"""
import json, os, sys, time
from classifier import attribute, blockfloor, cli, flows, pipeline, policy, record, report
from classifier.inspect import quic

clock = time.thread_time  # CPU time: a neighbour's load on a shared machine does not count
spent = {}
calls = {}
nested = {}  # timed calls made inside each stage (their timers' cost is inside its time)
inside = []  # the stages running now, outermost first

def timed(name, function):
    spent[name] = 0.0
    calls[name] = 0
    nested[name] = 0
    def wrapper(*args, **kwargs):
        inside.append(name)
        t = clock()
        try:
            return function(*args, **kwargs)
        finally:
            took = clock() - t
            inside.pop()
            spent[name] += took
            calls[name] += 1
            for outer in inside:
                nested[outer] += 1
            if name == "decide" and "end" in inside:
                spent["decide in end"] += took - overhead * 3.5  # its own and its 3 inner timers
    return wrapper

# What one timed call of nothing costs (the clock is a system call): taken off every stage, in full
# per timed call inside it, and half (the clock read inside its own window) per call of its own.
noop = timed("noop", lambda: None)
overhead = float("inf")
for _ in range(5):
    t = time.thread_time()
    for _ in range(2000):
        noop()
    overhead = min(overhead, (time.thread_time() - t) / 2000)
del spent["noop"], calls["noop"], nested["noop"]
spent["decide in end"] = 0.0
attribute.Attributor.attribute = timed("attribute", attribute.Attributor.attribute)
policy.Policy.decide = timed("policy", policy.Policy.decide)
blockfloor.BlockFloor.apply = timed("floor", blockfloor.BlockFloor.apply)
pipeline.Scanner.decide = timed("decide", pipeline.Scanner.decide)
pipeline.Scanner._new_flow = timed("new", pipeline.Scanner._new_flow)
flows.FlowTable.end = timed("end", flows.FlowTable.end)
# The scan asks record_function() for its run's record function (the Community ID seed's twin of
# flow_record): time what it returns. Set before commands.scan imports it.
_record_function = record.record_function
_timed_records = {}
def record_function(seed=0):
    if seed not in _timed_records:
        _timed_records[seed] = timed("record", _record_function(seed))
    return _timed_records[seed]
record.record_function = record_function
record.JsonLinesWriter.write = timed("encode", record.JsonLinesWriter.write)
report.Summary.add = timed("summary", report.Summary.add)
# A QUIC flow's Initial work (keys, decryption, frames, the ClientHello) happens as its datagrams
# come, before the decision: timed per datagram fed (the corpus's QUIC flows need one each).
quic.QuicInitialState.feed = timed("quic", quic.QuicInitialState.feed)
capture = sys.argv[1]
t = time.process_time()
status = cli.main(["scan", capture, "-o", os.devnull, "-q"])
total = time.process_time() - t
for name in calls:
    spent[name] = max(0.0, spent[name] - overhead * (calls[name] / 2 + nested[name]))
print(json.dumps({"status": status, "total": total, "spent": spent, "calls": calls, "overhead": overhead}))
"""

# "new" (Scanner._new_flow: the Flow, its shared endpoints and next hop, the table's entry and
# timeout bucket) runs once per flow at its first packet, outside the others. Stages inside "decide"
# (Scanner.decide: attribution, the policy, the floor, the name memory) and inside "end"
# (FlowTable.end: the decision if the flow ended undecided, the record, its encoding, the summary,
# the table's own work), and "quic" (QuicInitialState.feed, per QUIC datagram inspected: outside
# both, before the decision). Each column is per call of its stage; the per-flow total is new +
# decide + end, without counting twice a decision made as its flow ended.
STAGES = ("new", "attribute", "policy", "floor", "decide", "record", "encode", "summary", "end", "quic")


def run(tree: Path, capture: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, "-P", "-c", _CHILD, str(capture)], env=env, capture_output=True, check=True
    )
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capture", help="measure this capture instead of the corpus")
    ap.add_argument("--corpus", choices=("all", "quic"), default="all")
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--against", action="append", default=[], metavar="DIR")
    args = ap.parse_args()
    capture = Path(args.capture) if args.capture else build_corpus(args.copies, args.corpus)
    trees = {"this tree": ROOT, **{Path(t).name: Path(t).resolve() for t in args.against}}
    for name, tree in trees.items():
        if not (tree / "classifier" / "__main__.py").is_file():
            sys.exit(f"{name}: no classifier/__main__.py under {tree}")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for name, tree in trees.items():
            result = run(tree, capture)
            if result["status"] not in (0, 3):
                sys.exit(f"{name}: classifier scan exited with status {result['status']}")
            old = best.get(name)
            if old is None:
                best[name] = result
                continue
            old["total"] = min(old["total"], result["total"])
            for stage in (*STAGES, "decide in end"):
                old["spent"][stage] = min(old["spent"][stage], result["spent"][stage])
    flows = next(iter(best.values()))["calls"]["attribute"]
    print(f"{capture.name}: {flows} flows; us per flow, least of {args.repeat} runs")
    print(f"{'tree':14}" + "".join(f"{s:>10}" for s in STAGES) + f"{'per-flow':>11}{'scan CPU s':>12}")
    for name, result in best.items():
        spent = result["spent"]
        per = [spent[s] / max(1, result["calls"][s]) * 1e6 for s in STAGES]
        total = (spent["new"] + spent["decide"] + spent["end"] - spent["decide in end"]) / flows * 1e6
        cells = "".join(f"{p:10.2f}" for p in per)
        print(f"{name[:13]:14}{cells}{total:11.2f}{result['total']:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
