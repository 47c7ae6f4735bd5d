#!/usr/bin/env python3
"""CPU time of start-up: loading the shipped signatures (cache hit and cold) and the policy.

Every figure is the best of --repeat fresh child processes pinned to one CPU, measured with
``time.process_time()`` inside the child, beside a baseline measured in the same run: the child's
own imports (interpreter start-up is the same for all and left out). The cache lives in a private
temporary directory, so the run neither reads nor disturbs the user's cache.

    python benchmarks/startup.py [--repeat 7] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys, time
t0 = time.process_time()
import classifier.policy, classifier.signatures
t1 = time.process_time()
what = sys.argv[1]
if what == "policy":
    classifier.policy.Policy.load(classifier.signatures.shipped_directory() / "policy")
elif what != "imports":
    classifier.signatures.Signatures.load()
t2 = time.process_time()
print(t1 - t0 if what == "imports" else t2 - t1)
try:  # store what the run cached anew, as the command line does at its end
    from classifier.classcode import finish
    from classifier.datafile import save_documents
except ImportError:  # a tree from before these caches
    pass
else:
    finish()
    save_documents()
"""

CASES = {
    "imports": "baseline: import classifier.signatures and classifier.policy",
    "warm": "Signatures.load(), cache hit",
    "cold": "Signatures.load(), no cache (read and validate every file)",
    "policy": "Policy.load() of the shipped policy",
}


def run(case: str, cache: Path) -> float:
    env = dict(os.environ, CLASSIFIER_CACHE_DIR=str(cache))
    env.pop("CLASSIFIER_NO_CACHE", None)
    if case == "cold":
        env["CLASSIFIER_NO_CACHE"] = "1"
    cpu = sorted(os.sched_getaffinity(0))[0]
    cmd = [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\n{CHILD}", case]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", help="also write the figures (seconds) here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="classifier-startup-") as tmp:
        cache = Path(tmp)
        run("warm", cache)  # fills the caches
        run("policy", cache)
        best = {case: min(run(case, cache) for _ in range(args.repeat)) for case in CASES}
    print(f"CPU seconds, best of {args.repeat}, one CPU:")
    for case, label in CASES.items():
        print(f"  {best[case] * 1000:8.1f} ms  {label}")
    print(f"  cache hit / baseline imports: {best['warm'] / best['imports']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(best, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
