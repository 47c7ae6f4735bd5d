#!/usr/bin/env python3
"""CPU time per frame of ``decode.decode`` beside a bare loop over the same frames, in one run.

The decode stage alone, on the repository's small captures (tunnels, link types, the demo) or the
files given: a change to the decoder's types or its tunnel path shows here before it drowns in a
whole scan. Each contender runs in its own process, several times, and the least CPU time counts.
``--tree`` also measures the decoder of another checkout (e.g. ``git archive`` of the commit before
a change), so old and new are compared in the same run on the same frames.

    python benchmarks/decode_frames.py [--loops 50] [--repeat 7] [--tree DIR] [CAPTURE ...]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CAPTURES = ("tunnel-*.pcap", "linktype*.pcap", "demo.pcap")

CHILD = r"""
import json, sys, time
import dpkt
loops, repeat, bare = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "bare"
frames = []
for path in sys.argv[4:]:
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        linktype = reader.datalink()
        frames += [(linktype, bytes(buf)) for _ts, buf in reader]
if bare:
    def decode(linktype, frame):
        return None
else:
    from classifier.decode import decode
    from classifier.errors import MalformedError
best = float("inf")
for _ in range(repeat):
    start = time.process_time()
    for _ in range(loops):
        for linktype, frame in frames:
            try:
                decode(linktype, frame)
            except (MalformedError, IndexError):
                pass
    best = min(best, time.process_time() - start)
print(json.dumps({"frames": len(frames), "ns_per_frame": best * 1e9 / (len(frames) * loops)}))
"""


def _run(tree: Path | None, captures: list[str], loops: int, repeat: int) -> dict:
    """One contender in its own process: ``tree`` None is the bare loop."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    mode = "bare" if tree is None else "decode"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(loops), str(repeat), mode, *captures],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="*", help="pcap files (default: the repository's pcaps/)")
    parser.add_argument("--loops", type=int, default=50, help="passes over the frames per measurement")
    parser.add_argument("--repeat", type=int, default=7, help="measurements; the least CPU time counts")
    parser.add_argument("--tree", type=Path, help="another checkout whose decoder to measure as well")
    args = parser.parse_args()
    captures = args.captures or sorted(
        path for pattern in DEFAULT_CAPTURES for path in glob.glob(str(ROOT / "pcaps" / pattern))
    )
    contenders: list[tuple[str, Path | None]] = [("bare loop", None), ("decode (this tree)", ROOT)]
    if args.tree is not None:
        contenders.append((f"decode ({args.tree})", args.tree.resolve()))
    base = None
    for name, tree in contenders:
        result = _run(tree, captures, args.loops, args.repeat)
        ns = result["ns_per_frame"]
        base = ns if base is None else base
        print(f"{name:40} {result['frames']:6} frames  {ns:8.1f} ns/frame  x{ns / base:.2f} of the bare loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
