#!/usr/bin/env python3
"""CPU time per packet of the capture reader (pcap and pcapng) beside dpkt's readers, in one run.

The source stage alone: iterate ``open_capture`` over the scan benchmark's corpus and over the same
packets written as pcapng (one Enhanced Packet Block each), and beside each the bare dpkt reader
loop over the same file. Every contender runs in its own process, several times, and the least
CPU time (user + system of the child) counts, so a busy machine disturbs the figures less. The
baseline is in the same run on the same file: compare the ratio across machines and versions.
``--tree`` measures the reader of another checkout (e.g. the commit before a change), run with
``python -S`` so that checkout, not the installed package, is imported (the reader needs only the
standard library).

    python benchmarks/capture_read.py [--copies 8] [--repeat 5] [--tree DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scan_throughput import WORK, build_corpus  # noqa: E402

CLASSIFIER = r"""
import sys
from classifier.capture import open_capture
n = 0
with open_capture(sys.argv[1]) as reader:
    for _ in reader:
        n += 1
print(n)
"""

DPKT = r"""
import sys, dpkt
n = 0
with open(sys.argv[1], "rb") as f:
    reader = dpkt.pcapng.Reader(f) if sys.argv[1].endswith(".pcapng") else dpkt.pcap.Reader(f)
    for ts, buf in reader:
        n += 1
print(n)
"""


def as_pcapng(pcap: Path) -> Path:
    """The pcap's packets as a pcapng file (microsecond ticks), built once."""
    out = pcap.with_suffix(".pcapng")
    if out.exists():
        return out
    data = pcap.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack_from(order + "I", data, 20)

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    parts = [
        block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
        block(1, struct.pack("<HHI", linktype, 0, 0)),
    ]
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(order + "IIII", data, pos)
        ticks = sec * 1_000_000 + (frac // 1000 if nano else frac)
        frame = data[pos + 16 : pos + 16 + incl]
        parts.append(block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, incl, orig) + frame))
        pos += 16 + incl
    out.write_bytes(b"".join(parts))
    return out


def cpu_seconds(code: str, path: Path, repeat: int, tree: Path | None = None) -> tuple[float, int]:
    """Least user+system CPU time of ``code`` run on ``path`` in a child, and its packet count.

    With ``tree``, the child imports ``classifier`` from that directory only (``-S``).
    """
    best, count = None, 0
    cmd = [sys.executable, "-c", code, str(path)]
    env = None
    if tree is not None:
        cmd.insert(1, "-S")
        env = {**os.environ, "PYTHONPATH": str(tree)}
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, check=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        count = int(out.stdout.split()[0])
        best = cpu if best is None else min(best, cpu)
    assert best is not None
    return best, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tree", type=Path, default=HERE.parent, help="checkout whose reader to measure")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    pcap = build_corpus(args.copies)
    files = {"pcap": pcap, "pcapng": as_pcapng(pcap)}
    # start-up (interpreter and imports) of each contender, subtracted from its figures
    start_base, _ = cpu_seconds("import dpkt; print(0)", pcap, args.repeat)
    start_ours, _ = cpu_seconds("import classifier.capture; print(0)", pcap, args.repeat, args.tree)
    print(
        f"capture reader of {args.tree}; best CPU time of {args.repeat}, start-up subtracted "
        f"(dpkt {start_base:.3f} s, reader {start_ours:.3f} s)"
    )
    print(f"{'format':8}{'packets':>10}{'dpkt s':>9}{'reader s':>10}{'reader ns/pkt':>15}{'reader/dpkt':>13}")
    results = {}
    for name, path in files.items():
        base, n_base = cpu_seconds(DPKT, path, args.repeat)
        ours, n_ours = cpu_seconds(CLASSIFIER, path, args.repeat, args.tree)
        if n_base != n_ours:
            sys.exit(f"{name}: the reader yielded {n_ours} packets, dpkt {n_base}")
        base, ours = max(base - start_base, 1e-9), max(ours - start_ours, 1e-9)
        ratio = ours / base
        print(f"{name:8}{n_ours:10}{base:9.3f}{ours:10.3f}{ours / n_ours * 1e9:15.0f}{ratio:13.3f}")
        results[name] = {"packets": n_ours, "dpkt_cpu_s": base, "reader_cpu_s": ours, "ratio": ratio}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
