"""The fuzz harness in the normal suite: every committed reproducer is replayed, and a bounded,
deterministic campaign over every target fails the suite on any crash, hang or broken contract.

Reproducers of findings that are fixed live in ``tests/fuzz/regressions/<target>/``;
``tests/fuzz/pending/<target>/`` holds those whose fix belongs to another change (not replayed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.targets import TARGETS

REGRESSIONS = ROOT / "tests" / "fuzz" / "regressions"
CI_SECONDS_PER_TARGET = 6  # 11 targets: about 85 s in all, under the 2-minute budget


def _replay(target: str, *paths: Path, timeout: int = 10) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fuzz.replay", target, *map(str, paths), "--timeout", str(timeout)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _regressions() -> list[tuple[str, Path]]:
    return [(d.name, f) for d in sorted(REGRESSIONS.iterdir()) if d.is_dir() for f in sorted(d.iterdir())]


def test_regression_directories_name_targets():
    assert REGRESSIONS.is_dir()
    unknown = [d.name for d in REGRESSIONS.iterdir() if d.name not in TARGETS]
    assert not unknown, f"regression directories for no target: {unknown}"


@pytest.mark.parametrize(
    ("target", "path"), _regressions(), ids=lambda v: v.name if isinstance(v, Path) else v
)
def test_regression_input_passes(target: str, path: Path):
    proc = _replay(target, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok"), proc.stdout


def test_replay_reports_a_planted_crash_and_hang(tmp_path: Path):
    (tmp_path / "crash").write_bytes(b"\x7f")
    (tmp_path / "hang").write_bytes(b"\x7e")
    (tmp_path / "fine").write_bytes(b"\x00")
    proc = _replay("selftest", tmp_path, timeout=1)
    assert proc.returncode == 1
    lines = sorted(line.split(":")[0] for line in proc.stdout.splitlines() if line[:4] in ("ok  ", "FAIL"))
    assert lines == [f"FAIL {tmp_path / 'crash'}", f"FAIL {tmp_path / 'hang'}", f"ok   {tmp_path / 'fine'}"]
    assert "ValueError: planted crash" in proc.stdout and "InputTimeout" in proc.stdout


def _campaign(out: Path, *args: str, timeout: int = 240) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.campaign", "--out", str(out), "--seed", "1", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return proc, summary


@pytest.mark.fuzz
def test_campaign_reports_planted_crash_and_hang_with_reproducers(tmp_path: Path):
    proc, summary = _campaign(
        tmp_path, "--targets", "selftest", "--seconds", "6", "--timeout", "1", timeout=120
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    findings = summary["targets"][0]["findings"]
    signatures = sorted(f["signature"].split(" ")[0] for f in findings)
    assert signatures == ["ValueError", "timeout"], proc.stdout
    for f in findings:
        data = Path(f["file"]).read_bytes()
        assert data[:1] == (b"\x7f" if f["signature"].startswith("ValueError") else b"\x7e")


@pytest.mark.fuzz
def test_bounded_campaign_over_every_target_finds_nothing(tmp_path: Path):
    """The CI pass: every listed target for a few seconds from the captures' seeds, seed 1."""
    listed = [name for name, t in TARGETS.items() if t.listed]
    proc, summary = _campaign(tmp_path, "--seconds", str(CI_SECONDS_PER_TARGET), timeout=300)
    found = [line for line in proc.stdout.splitlines() if line.startswith("FINDING")]
    assert proc.returncode == 0 and not found, "\n".join(found) or proc.stdout + proc.stderr
    ran = {t["target"]: t for t in summary["targets"]}
    assert sorted(ran) == sorted(listed)
    for name, t in ran.items():
        assert t["inputs"] > t["seeds"] > 0, f"{name} ran {t['inputs']} inputs from {t['seeds']} seeds"
