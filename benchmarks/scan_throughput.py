#!/usr/bin/env python3
"""Packets/s, CPU time and peak RSS of `classifier scan` beside a bare dpkt read loop (and
ndpiReader, nDPI's C classifier, when it is installed: `apt-get install libndpi-bin`), in one run.

Builds the corpus with the shared script (8 copies of the real captures by default), then runs
each contender in its own process pinned to one CPU, several times, and reports the best wall
time of each (the least disturbed run), the least CPU time (user + system; the figure to compare
on a busy machine) and the peak RSS. The baseline is measured in the same run on the same file,
so the ratio is what to compare across machines. The package is byte-compiled first, as an
installed copy is (``compile_bytecode``).

    python benchmarks/scan_throughput.py [--copies 8] [--repeat 3] [--capture FILE] [--json OUT]
                                         [--scan-args '--write-pcap /tmp/out.pcap'] [--against DIR]

``--against DIR`` also measures the classifier of another source tree (e.g. ``git archive main |
tar -x -C /tmp/main``) on the same file in the same run, interleaved with this one, so a change's
cost is a ratio of two figures taken under the same load.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CLASSIFIER_SHARED", ROOT.parent / "shared"))
WORK = ROOT / "benchmarks" / "work"
START_UP_TARGET = 0.1  # issue 10: start-up CPU (an empty capture, caches warm) at most this

BASELINE = r"""
import sys, dpkt
n = 0
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcap.UniversalReader(f):  # pcap or pcapng, by the file's magic
        n += 1
print(n)
"""


# Corpora: "all" is the corpus (every real capture); "quic" the captures that carry QUIC
# (named so, plus sites.pcapng, a browser session with QUIC), so the once-per-flow Initial
# decryption shows in the figures.
CORPORA = {
    "all": ("*.pcap*",),
    "quic": ("quic*.pcap*", "*_quic.pcap*", "sites.pcapng"),
}
# "pcapng": the "all" corpus written again as pcapng (one section, one interface, enhanced packet
# blocks in microseconds: what dumpcap and Wireshark write), by dpkt's pcapng writer.
PCAPNG_OF = {"pcapng": "all"}


def build_corpus(copies: int, corpus: str = "all") -> Path:
    """The corpus file, built once per set of captures (its name carries a digest of their names,
    so a changed list is never answered by an old file)."""
    if corpus in PCAPNG_OF:
        return as_pcapng(build_corpus(copies, PCAPNG_OF[corpus]))
    real = SHARED / "pcaps" / "real"
    captures = sorted({p for pattern in CORPORA[corpus] for p in glob.glob(str(real / pattern))})
    if not captures:
        sys.exit(f"no captures under {real}")
    tag = hashlib.sha256("\n".join(Path(c).name for c in captures).encode()).hexdigest()[:8]
    out = WORK / f"corpus-{corpus}-{copies}-{tag}.pcap"
    if out.exists():
        return out
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(out), str(copies), *captures],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return out


def as_pcapng(pcap: Path) -> Path:
    """The same packets, timestamps and link type as pcapng (built once, next to the pcap)."""
    out = pcap.with_suffix(".pcapng")
    if out.exists():
        return out
    import dpkt

    part = out.with_suffix(".part")
    with open(pcap, "rb") as src, open(part, "wb") as dst:
        reader = dpkt.pcap.Reader(src)
        writer = dpkt.pcapng.Writer(dst, snaplen=262144, linktype=reader.datalink())
        for ts, frame in reader:
            writer.writepkt(frame, ts=ts)
    part.rename(out)
    return out


def measure(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> tuple[float, int, str, float]:
    """(best wall seconds, peak RSS KiB, output, least CPU seconds) over ``repeat`` runs."""
    best = None
    for _ in range(repeat):
        wall, rss, out, cpu = _child(cmd, env)
        if best is None:
            best = (wall, rss, out, cpu)
        else:
            best = (min(wall, best[0]), max(rss, best[1]), out, min(cpu, best[3]))
    return best


def measure_start_ups(
    cmds: dict[str, tuple[list[str], dict[str, str]]], repeat: int
) -> dict[str, tuple[float, float]]:
    """(best wall, least CPU seconds) of each command, run in turn ``repeat`` times (one of each
    per round, after one run each that warms its caches): a change of load hits all alike."""
    best = {name: (float("inf"), float("inf")) for name in cmds}
    for round_ in range(repeat + 1):
        for name, (cmd, env) in cmds.items():
            wall, _, _, cpu = _child(cmd, env)
            if round_:
                best[name] = (min(wall, best[name][0]), min(cpu, best[name][1]))
    return best


def cache_env(tree: str | None) -> dict[str, str]:
    """A signature and class-code cache of the tree's own (warm after its first run), so that
    trees measured in one run neither share nor evict each other's entries."""
    name = "this" if tree is None else hashlib.sha256(str(Path(tree).resolve()).encode()).hexdigest()[:12]
    return {"CLASSIFIER_CACHE_DIR": str(WORK / "cache" / name)}


def _child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str, float]:
    """Peak RSS per child: run through a tiny wrapper that reports its child's ru_maxrss."""
    wrapper = (
        "import os,resource,subprocess,sys,time\n"
        "os.sched_setaffinity(0,{int(sys.argv[1])})\n"
        "t=time.perf_counter();p=subprocess.run(sys.argv[2:],stdout=subprocess.PIPE)\n"
        "w=time.perf_counter()-t\n"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "c=u.ru_utime+u.ru_stime\n"
        "sys.stdout.write(f'{w} {u.ru_maxrss} {p.returncode} {c}\\n'+p.stdout.decode())\n"
    )
    cpu = sorted(os.sched_getaffinity(0))[0]
    res = subprocess.run(
        [sys.executable, "-c", wrapper, str(cpu), *cmd],
        capture_output=True,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    head, _, rest = res.stdout.decode().partition("\n")
    wall, rss, rc, cpu = head.split()
    if int(rc) not in (0, 3):
        sys.exit(f"{' '.join(cmd[:3])} failed with status {rc}")
    return float(wall), int(rss), rest, float(cpu)


def compile_bytecode(tree: Path) -> None:
    """Byte-compile a tree's package, as ``pip install`` does (dpkt, the baseline, was installed
    so): with PYTHONDONTWRITEBYTECODE set, or an unwritable tree, every run would otherwise
    compile each module from source again, a start-up cost no installed copy pays. Stale files
    are rewritten; Python checks each against its source's mtime and size anyway."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "classifier")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def empty_capture() -> Path:
    """A pcap with only a header: running on it measures start-up (imports, signature load)."""
    path = WORK / "empty.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--corpus",
        choices=sorted([*CORPORA, *PCAPNG_OF]),
        action="append",
        help="corpus to measure (repeatable; default: all and quic; pcapng: all as pcapng)",
    )
    ap.add_argument("--capture", help="measure this capture instead of building corpora")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument(
        "--scan-args",
        default="",
        metavar="'OPTIONS'",
        help="extra options for classifier scan, e.g. '--write-pcap /tmp/out.pcap' or "
        "'--html /tmp/r.html': what they cost, beside the same baseline",
    )
    ap.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="DIR",
        help="also measure the classifier package of this source tree (repeatable)",
    )
    args = ap.parse_args()
    for tree in args.against:
        if not (Path(tree) / "classifier" / "__main__.py").is_file():
            sys.exit(f"--against {tree}: no classifier/__main__.py there")
    for tree in (ROOT, *args.against):
        compile_bytecode(Path(tree))
    extra = shlex.split(args.scan_args)

    WORK.mkdir(parents=True, exist_ok=True)
    if args.capture:
        captures = {"capture": Path(args.capture)}
    else:
        captures = {c: build_corpus(args.copies, c) for c in (args.corpus or ["all", "quic"])}
    empty = empty_capture()
    ndpi = shutil.which("ndpiReader")
    contenders = {
        "dpkt loop": (baseline(empty), {}),
        "classifier": (classifier(empty, extra), cache_env(None)),
    }
    for tree in args.against:
        contenders[f"scan {Path(tree).name}"] = (classifier(empty, extra, tree), cache_env(tree))
    if ndpi:
        contenders["ndpiReader"] = (ndpi_reader(ndpi, empty), {})
    start_ups = measure_start_ups(contenders, args.repeat)
    b_start, b_start_cpu = start_ups["dpkt loop"]
    c_start, c_start_cpu = start_ups["classifier"]
    n_start, n_start_cpu = start_ups.get("ndpiReader", (0.0, 0.0))
    print(
        f"one CPU, best of {args.repeat}, in turn; start-up (a run on an empty capture; issue 10's "
        f"target for classifier: {START_UP_TARGET} s CPU): "
        + ", ".join(f"{who} {wall:.2f} s ({cpu:.3f} s CPU)" for who, (wall, cpu) in start_ups.items())
        + ("" if ndpi else "; ndpiReader not installed (apt-get install libndpi-bin adds it)")
    )
    print(
        f"{'corpus':8}{'':22}{'packets/s':>12}{'steady pkt/s':>14}{'seconds':>9}{'CPU s':>8}"
        f"{'steady CPU s':>14}{'peak RSS MiB':>14}"
    )
    results = {}
    for name, capture in captures.items():
        b_wall, b_rss, b_out, b_cpu = measure(baseline(capture), args.repeat)
        packets = int(b_out.split()[0])
        c_wall, c_rss, _, c_cpu = measure(classifier(capture, extra), args.repeat, cache_env(None))
        stats = json.loads((WORK / "stats.json").read_text())
        if stats["packets"] != packets:
            sys.exit(f"classifier saw {stats['packets']} packets, dpkt {packets}")
        figures = {
            "capture": str(capture),
            "bytes": capture.stat().st_size,
            "packets": packets,
            "flows": stats["flows"],
        }
        rows = [
            ("bare dpkt read loop", b_wall, b_start, b_rss, b_cpu, b_start_cpu),
            ("classifier scan", c_wall, c_start, c_rss, c_cpu, c_start_cpu),
        ]
        for tree in args.against:
            a_start, a_start_cpu = start_ups[f"scan {Path(tree).name}"]
            a_wall, a_rss, _, a_cpu = measure(classifier(capture, extra, tree), args.repeat, cache_env(tree))
            rows.append((f"scan {Path(tree).name}"[:21], a_wall, a_start, a_rss, a_cpu, a_start_cpu))
        if ndpi:
            n_wall, n_rss, _, n_cpu = measure(ndpi_reader(ndpi, capture), args.repeat)
            rows.append(("ndpiReader", n_wall, n_start, n_rss, n_cpu, n_start_cpu))
        for who, wall, start, rss, cpu, start_cpu in rows:
            steady_cpu = cpu - start_cpu
            # A run shorter than its own start-up (timer noise) has no steady rate: say so.
            steady = f"{packets / (wall - start):14,.0f}" if wall - start > 0.01 else f"{'n/a':>14}"
            print(
                f"{name:8}{who:22}{packets / wall:12,.0f}{steady}{wall:9.2f}{cpu:8.2f}"
                f"{steady_cpu:14.2f}{rss / 1024:14.1f}"
            )
            figures[who] = {
                "pps": packets / wall,
                "seconds": wall,
                "cpu_seconds": cpu,
                "steady_cpu_seconds": steady_cpu,
                "peak_rss_kib": rss,
            }
        ours = figures["classifier scan"]
        others = [r[0] for r in rows[2:] if r[0] != "ndpiReader"]
        for other in ("bare dpkt read loop", "ndpiReader", *others):
            if other in figures:
                whole = _ratio(ours["cpu_seconds"], figures[other]["cpu_seconds"])
                steady = _ratio(ours["steady_cpu_seconds"], figures[other]["steady_cpu_seconds"])
                print(
                    f"{name:8}CPU time classifier / {other}: {whole} (whole process), {steady} "
                    "(start-up subtracted)"
                )
        print(
            f"{name:8}{capture.name}: {capture.stat().st_size / 1e6:.1f} MB, {packets} packets, "
            f"{stats['flows']} flows"
        )
        results[name] = figures
    print(
        "packets/s = packets / wall time of the whole process; steady = start-up subtracted; "
        "CPU s = least user + system time; compare CPU time on a shared machine"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs > 0.01 else "n/a (the other's steady CPU time is below 0.01 s)"


def ndpi_reader(program: str, path: Path) -> list[str]:
    """nDPI's reference classifier on the same file, quiet, no output files."""
    return [program, "-q", "-i", str(path)]


def classifier(path: Path, extra: list[str] | None = None, tree: str | None = None) -> list[str]:
    """``classifier scan`` of this checkout, or of the source tree ``tree`` (-P: the working
    directory must not shadow it)."""
    args = ["scan", str(path), "-o", os.devnull, "-q", "--stats", str(WORK / "stats.json"), *(extra or ())]
    if tree is None:
        return [sys.executable, "-m", "classifier", *args]
    run = (
        "import runpy,sys;sys.path.insert(0,sys.argv.pop(1));"
        "runpy.run_module('classifier',run_name='__main__')"
    )
    return [sys.executable, "-P", "-c", run, str(Path(tree).resolve()), *args]


def baseline(path: Path) -> list[str]:
    return [sys.executable, "-c", BASELINE, str(path)]


if __name__ == "__main__":
    sys.exit(main())
