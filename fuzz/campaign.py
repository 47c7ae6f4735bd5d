"""Fuzz every target in turn for a given time (``make fuzz``) and report inputs and findings.

    python -m fuzz.campaign [--seconds 60] [--runs N] [--targets tls,dns] [--seed 1] [--out fuzz-out]

Per target: seeds are extracted from the captures into ``OUT/seeds/<target>``, then the target
runs in its own process (``python -m fuzz.run``, niced) until its time or input budget is spent;
the corpus it grows is kept in ``OUT/<target>/corpus`` for the next campaign, findings and their
tracebacks land in ``OUT/<target>/findings``. A run ended by a hang or a memory blow-up is
restarted for the time left (at most ``MAX_RESTARTS`` times). At the end a table gives inputs,
inputs/s, corpus size and findings per target; ``OUT/summary.json`` has the same. Exit status 1
if there is any finding, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_RESTARTS = 5
_ARTIFACT = re.compile(r"^(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+$")
_FINAL = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_PULSE = re.compile(r"^#(\d+)\s", re.M)


@dataclass
class Result:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    corpus: int = 0
    seeds: int = 0
    peak_rss_mb: int = 0
    restarts: int = 0
    findings: list[dict] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def _executed(log: str) -> tuple[int, int]:
    """(inputs executed, peak RSS MB) from a libFuzzer log: its final stats, or its last status
    line when the process died before printing them."""
    stats = {k: int(v) for k, v in _FINAL.findall(log)}
    if "number_of_executed_units" in stats:
        return stats["number_of_executed_units"], stats.get("peak_rss_mb", 0)
    pulses = _PULSE.findall(log)
    return (int(pulses[-1]) if pulses else 0), 0


def _describe_artifacts(findings: Path, target: str, log: str) -> None:
    """libFuzzer's own reproducers (hang, memory, an escaped BaseException) get a .txt like ours."""
    for p in findings.iterdir():
        if _ARTIFACT.match(p.name) and not p.with_name(p.name + ".txt").exists():
            kind = p.name.split("-")[0]
            tail = "\n".join(log.splitlines()[-40:])
            p.with_name(p.name + ".txt").write_text(f"{kind} (libFuzzer)\n{target}\n{tail}\n")


def _findings(findings: Path) -> list[dict]:
    out = []
    for txt in sorted(findings.glob("*.txt")):
        lines = txt.read_text(errors="replace").splitlines()
        out.append({"file": str(txt.with_suffix("")), "signature": lines[0] if lines else "?"})
    return out


def run_target(
    name: str,
    out: Path,
    seeds_dir: Path,
    seconds: float,
    runs: int | None,
    seed: int,
    timeout: int,
    rss_mb: int,
    nice: int,
) -> Result:
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    corpus = out / name / "corpus"
    findings = out / name / "findings"
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    result = Result(name, seeds=len(list(seeds_dir.glob("*"))) if seeds_dir.is_dir() else 0)
    log_path = out / name / "libfuzzer.log"
    started = time.monotonic()
    # libFuzzer writes its progress here as it goes (tail -f it); read back after each run.
    with open(log_path, "w+", encoding="utf-8", errors="replace") as log_file:
        while True:
            left = seconds - (time.monotonic() - started)
            runs_left = None if runs is None else runs - result.inputs
            if left < 1 or (runs_left is not None and runs_left <= 0) or result.restarts > MAX_RESTARTS:
                break
            cmd = ["nice", "-n", str(nice)] if nice else []
            cmd += [
                sys.executable,
                "-m",
                "fuzz.run",
                name,
                str(findings),
                f"-max_total_time={int(left)}",
                f"-seed={seed + result.restarts}",
                f"-timeout={timeout}",
                f"-rss_limit_mb={rss_mb}",
                f"-max_len={target.max_len}",
                f"-artifact_prefix={findings}/",
                "-print_final_stats=1",
                str(corpus),
            ]
            if runs_left is not None:
                cmd.append(f"-runs={runs_left}")
            if seeds_dir.is_dir():
                cmd.append(str(seeds_dir))
            start = log_file.tell()
            proc = subprocess.run(
                cmd,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                check=False,
            )
            log_file.seek(start)
            log = log_file.read()
            inputs, rss = _executed(log)
            result.inputs += inputs
            result.peak_rss_mb = max(result.peak_rss_mb, rss)
            _describe_artifacts(findings, name, log)
            if proc.returncode == 0:
                break
            if inputs == 0 and not any(_ARTIFACT.match(p.name) for p in findings.iterdir()):
                # Died without fuzzing and without a reproducer: a broken harness, not a finding.
                raise SystemExit(f"fuzz target {name} failed to start (exit {proc.returncode}): {log_path}")
            result.restarts += 1
    result.seconds = time.monotonic() - started
    result.corpus = len(list(corpus.iterdir()))
    result.findings = _findings(findings)
    return result


def main(argv: list[str] | None = None) -> int:
    from fuzz import seeds
    from fuzz.targets import TARGETS

    p = argparse.ArgumentParser(prog="python -m fuzz.campaign", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="time per target (default 60)")
    p.add_argument("--runs", type=int, help="stop a target after this many inputs (default: time only)")
    listed = ",".join(name for name, t in TARGETS.items() if t.listed)
    p.add_argument("--targets", default=listed, help=f"comma-separated (default: {listed})")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer random seed (default 1)")
    p.add_argument("--out", default=str(ROOT / "fuzz-out"), help="work directory (default fuzz-out/)")
    p.add_argument("--timeout", type=int, default=10, help="per-input time limit in seconds (default 10)")
    p.add_argument("--rss-limit-mb", type=int, default=1024, help="memory limit per target process")
    p.add_argument("--nice", type=int, default=10, help="niceness of the fuzzing processes (default 10)")
    p.add_argument("--fresh", action="store_true", help="forget earlier corpora and findings in --out")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    seed_root = out / "seeds"
    if seed_root.exists():
        shutil.rmtree(seed_root)
    counts = seeds.collect(seed_root)
    print(f"seeds: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}", flush=True)

    results = []
    for name in names:
        r = run_target(
            name,
            out,
            seed_root / name,
            args.seconds,
            args.runs,
            args.seed,
            args.timeout,
            args.rss_limit_mb,
            args.nice,
        )
        results.append(r)
        print(
            f"{name:<11} {r.inputs:>10} inputs {r.seconds:7.1f} s {r.rate:9.0f}/s "
            f"corpus {r.corpus:>5} findings {len(r.findings)}",
            flush=True,
        )

    print()
    head = ("target", "inputs", "seconds", "inputs/s", "corpus", "rss MB")
    print("{:<11} {:>11} {:>8} {:>9} {:>7} {:>7} findings".format(*head))
    for r in results:
        print(
            f"{r.target:<11} {r.inputs:>11} {r.seconds:>8.0f} {r.rate:>9.0f} {r.corpus:>7} "
            f"{r.peak_rss_mb:>7} {len(r.findings)}"
        )
    found = [f for r in results for f in r.findings]
    for f in found:
        print(f"FINDING {f['signature']}: {f['file']}")
    summary = {
        "seconds_per_target": args.seconds,
        "runs_per_target": args.runs,
        "seed": args.seed,
        "targets": [{**asdict(r), "inputs_per_s": round(r.rate)} for r in results],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{len(found)} finding(s); summary in {out / 'summary.json'}")
    return 1 if found else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
