"""Shared fixtures: the shipped signatures and policy, a scan helper, and the shared data location."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLASSIFIER_SHARED", ROOT.parent / "shared"))
REAL = SHARED / "pcaps" / "real"


def need_shared(path: Path) -> Path:
    """The shared material must be there in CI; elsewhere its absence skips the test."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing, and CI must run this test")
        pytest.skip(f"{path} is not present")
    return path


def need_program(name: str, why: str = "CI must run this test") -> str:
    """The path of an external program the test needs; without it, CI fails (the package belongs in
    tools/debian-packages.txt) and elsewhere the test is skipped."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed, and {why} (tools/debian-packages.txt)")
        pytest.skip(f"{name} is not installed")
    return path


def need_extension(name: str) -> Any:
    """A compiled extension of the package (``_batchcount``...), imported: CI must have built it
    (setup.py, `make test`), so there its absence fails; elsewhere the test is skipped."""
    try:
        return importlib.import_module(f"classifier.{name}")
    except ImportError as err:
        if os.environ.get("CI"):
            pytest.fail(f"classifier.{name} is not built ({err}), and CI must run this test")
        pytest.skip(f"classifier.{name} is not built")


@pytest.fixture(scope="session")
def sigs():
    from classifier.signatures import Signatures

    return Signatures.load()


@pytest.fixture(scope="session")
def policy():
    from classifier.policy import Policy
    from classifier.signatures import shipped_directory

    return Policy.load(shipped_directory() / "policy")


def run_cli(
    *args: str, stdin: bytes | None = None, check_status: int | None = 0
) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (as a user would), return the completed process."""
    proc = subprocess.run(
        [sys.executable, "-m", "classifier", *args], input=stdin, capture_output=True, cwd=ROOT, timeout=300
    )
    if check_status is not None:
        assert proc.returncode == check_status, (proc.returncode, proc.stderr.decode(errors="replace"))
    return proc


def scan_records(*args: str, check_status: int | None = 0) -> list[dict]:
    proc = run_cli("scan", *args, "-q", check_status=check_status)
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]
