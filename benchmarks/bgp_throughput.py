#!/usr/bin/env python3
"""Prefixes/s and peak RSS of `classifier bgp` reading a RIB, beside a bare mrtparse loop, in one run.

Builds a synthetic TABLE_DUMP_V2 RIB with the tests' MRT writer (tests/test_bgp_mrtwriter.py):
``--prefixes`` IPv4 /24s, each seen by ``--peers`` peers with 2-6 hop paths and a community, and a
small share (``--operator-share``) of prefixes originated or transited by operator ASNs, as in a
full table. ``--compress gzip`` or ``bzip2`` measures the same RIB compressed (as collectors
publish it). Each contender runs in its own process pinned to one CPU; the best wall time and the
least CPU time (user + system) of ``--repeat`` runs and the peak RSS of the process are reported.
CPU time is what to compare on a shared machine. ``--input FILE`` times a given MRT file instead
(e.g. the PCH update burst in ../shared/mrt) with the same contenders. The baseline (a bare
``for r in mrtparse.Reader(file)`` loop) runs on the same file in the same run, so the ratio is
what to compare across machines. ``--compare-with DIR`` also runs the ``classifier`` of another
checkout (e.g. the main branch) on the same file; the contenders take turns, so a change in the
machine's load hits them alike.

    python benchmarks/bgp_throughput.py [--prefixes 300000] [--peers 8] [--repeat 1]
                                        [--compress none|gzip|bzip2] [--no-baseline]
                                        [--compare-with DIR] [--input FILE]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"
sys.path.insert(0, str(ROOT / "tests"))

BASELINE = r"""
import sys, mrtparse
n = 0
for r in mrtparse.Reader(sys.argv[1]):
    n += 1
print(n)
"""


def build_rib(path: Path, prefixes: int, peers: int, operator_share: float, seed: int = 1) -> None:
    """Write the RIB record by record (a few distinct attribute blobs, reused)."""
    import test_bgp_mrtwriter as w

    from classifier.signatures import Signatures

    rng = random.Random(seed)
    operator_asns = sorted(Signatures.load().operator_by_asn)
    dump = 1_740_787_200
    peer_list = [(f"198.51.{100 + i // 250}.{1 + i % 250}", 64500 + i) for i in range(peers)]
    transit = [174, 1299, 2914, 3257, 3356, 3491, 6453, 6762, 6939, 9002]

    def attrs(peer_as: int, origin: int, hops: int) -> bytes:
        path_asns = [peer_as, *rng.sample(transit, hops), origin]
        community = w.attr(8, struct.pack(">HH", peer_as & 0xFFFF, rng.randrange(1000)), 0xC0)
        return w.rib_attrs(w.seq(*path_asns)) + community

    plain_pool = [
        [attrs(peer_as, 65000 + rng.randrange(400), rng.randrange(1, 5)) for _ in range(64)]
        for _, peer_as in peer_list
    ]
    with path.open("wb") as f:
        f.write(w.peer_index_table(dump, peer_list))
        for i in range(prefixes):
            prefix = f"{11 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"
            operator = rng.random() < operator_share
            entries = []
            for p, (_, peer_as) in enumerate(peer_list):
                if operator:
                    blob = attrs(peer_as, rng.choice(operator_asns), rng.randrange(0, 4))
                else:
                    blob = plain_pool[p][rng.randrange(64)]
                entries.append((p, dump - rng.randrange(86400 * 30), blob, None))
            f.write(w.rib(dump, i, prefix, entries))


def compressed_copy(rib: Path, compress: str) -> Path:
    """``rib`` compressed with ``compress`` (built once, beside it); ``rib`` itself for "none"."""
    if compress == "none":
        return rib
    out = rib.with_name(rib.name + (".gz" if compress == "gzip" else ".bz2"))
    if not out.exists():
        part = out.with_name(out.name + ".part")
        opener = gzip.open if compress == "gzip" else bz2.open
        with rib.open("rb") as src, opener(part, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        part.rename(out)
    return out


@dataclass
class Contender:
    """One command to time, and its best figures so far."""

    cmd: list[str]
    cwd: Path | None = None  # where it runs: a checkout's directory puts its classifier first
    wall: float = float("inf")  # best wall time (s)
    cpu: float = float("inf")  # least CPU time, user + system (s)
    rss: int = 0  # peak RSS (KiB) of the best run
    out: str = ""


def run(contenders: list[Contender], repeat: int) -> None:
    """Run every contender ``repeat`` times on one CPU, taking turns; keep the best figures."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    for _ in range(repeat):
        for c in contenders:
            start = time.perf_counter()
            proc = subprocess.Popen(
                c.cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=c.cwd,
                preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
            )
            out = proc.stdout.read().decode() if proc.stdout else ""
            _, status, usage = os.wait4(proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - start
            if code not in (0, 3):
                sys.exit(f"{' '.join(c.cmd[:4])} failed with status {code}")
            c.cpu = min(c.cpu, usage.ru_utime + usage.ru_stime)
            if wall < c.wall:
                c.wall, c.rss, c.out = wall, usage.ru_maxrss, out


def _contenders(args: argparse.Namespace, source: Path) -> dict[str, tuple[Contender, Path | None]]:
    """`classifier bgp` on ``source`` (and on the --compare-with checkout), and the bare mrtparse
    loop unless --no-baseline: name -> (contender, the stats file it writes)."""

    def classifier(cwd: Path | None, stats: Path) -> Contender:
        argv = [
            sys.executable,
            "-m",
            "classifier",
            "bgp",
            str(source),
            "-o",
            os.devnull,
            "-q",
            "--stats",
            str(stats),
        ]
        return Contender(argv, cwd)

    contenders = {"classifier bgp": (classifier(ROOT, WORK / "bgp-stats.json"), WORK / "bgp-stats.json")}
    if args.compare_with:
        other = WORK / "bgp-stats-compared.json"
        contenders[f"{args.compare_with.name} bgp"] = (classifier(args.compare_with.resolve(), other), other)
    if not args.no_baseline:
        contenders["bare mrtparse loop"] = (Contender([sys.executable, "-c", BASELINE, str(source)]), None)
    return contenders


def time_file(args: argparse.Namespace) -> None:
    """The contenders on a given file: CPU seconds and records/s (the baseline counts records too)."""
    source = args.input.resolve()

    contenders = _contenders(args, source)
    run([c for c, _ in contenders.values()], args.repeat)
    records = None
    routes = {}
    for name, (_, stats) in contenders.items():
        if stats is not None:
            found = json.loads(stats.read_text())
            records = found["files"][0]["records"]
            routes[name] = found["routes"]
    if len(set(routes.values())) > 1:
        sys.exit(f"the contenders disagree on the operator routes: {routes}")
    print(
        f"{source.name}: {records} records, {source.stat().st_size / 1e6:.1f} MB, "
        f"{next(iter(routes.values()))} operator routes"
    )
    print(f"{'contender':<20} {'seconds':>9} {'CPU s':>8} {'records/s':>12} {'peak RSS MiB':>13}")
    for name, (c, _) in contenders.items():
        rate = (records or 0) / c.wall
        print(f"{name:<20} {c.wall:>9.2f} {c.cpu:>8.2f} {rate:>12,.0f} {c.rss / 1024:>13.1f}")
    first = contenders["classifier bgp"][0]
    for name, (c, _) in contenders.items():
        if name != "classifier bgp":
            print(f"{name} CPU time / classifier bgp CPU time: {c.cpu / first.cpu:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefixes", type=int, default=300_000)
    ap.add_argument("--peers", type=int, default=8)
    ap.add_argument("--operator-share", type=float, default=0.001)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument(
        "--compress",
        choices=("none", "gzip", "bzip2"),
        default="none",
        help="read the RIB compressed this way",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the (slow) bare mrtparse loop")
    ap.add_argument(
        "--compare-with",
        metavar="DIR",
        type=Path,
        help="also time the classifier of this checkout (e.g. a worktree of main)",
    )
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    ap.add_argument(
        "--input",
        metavar="FILE",
        type=Path,
        help="time this MRT file (any type, any compression) instead of a synthetic RIB",
    )
    args = ap.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    if args.input:
        time_file(args)
        return
    rib = WORK / f"rib-{args.prefixes}x{args.peers}.mrt"
    if not rib.exists():
        t = time.perf_counter()
        build_rib(rib, args.prefixes, args.peers, args.operator_share)
        print(
            f"built {rib.name}: {rib.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
    source = compressed_copy(rib, args.compress)
    entries = args.prefixes * args.peers

    contenders = _contenders(args, source)
    run([c for c, _ in contenders.values()], args.repeat)

    results = {}
    for name, (c, stats) in contenders.items():
        figures = {
            "seconds": c.wall,
            "cpu_seconds": c.cpu,
            "prefixes_per_s": args.prefixes / c.wall,
            "entries_per_s": entries / c.wall,
            "peak_rss_mib": c.rss / 1024,
        }
        if stats is None:
            assert int(c.out.split()[0]) == args.prefixes + 1
        else:
            found = json.loads(stats.read_text())
            assert found["files"][0]["rib_prefixes"] == args.prefixes, found["files"][0]
            assert not found["files"][0]["problems"], found["files"][0]["problems"]
            figures["operator_routes"] = found["routes"]
        results[name] = figures

    print(
        f"RIB: {args.prefixes} prefixes x {args.peers} peers = {entries} entries, "
        f"{rib.stat().st_size / 1e6:.1f} MB, read as {source.name} ({source.stat().st_size / 1e6:.1f} MB), "
        f"operator share {args.operator_share}"
    )
    print(
        f"{'contender':<20} {'seconds':>9} {'CPU s':>8} {'prefixes/s':>12} {'entries/s':>12} "
        f"{'peak RSS MiB':>13}"
    )
    for name, r in results.items():
        print(
            f"{name:<20} {r['seconds']:>9.2f} {r['cpu_seconds']:>8.2f} {r['prefixes_per_s']:>12,.0f} "
            f"{r['entries_per_s']:>12,.0f} {r['peak_rss_mib']:>13.1f}"
        )
    for name in results:
        if name != "classifier bgp":
            ratio = results[name]["cpu_seconds"] / results["classifier bgp"]["cpu_seconds"]
            print(f"{name} CPU time / classifier bgp CPU time: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
