"""Shared fixtures: the shipped signatures and policy, a scan helper, and the shared data location."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def terminal_signals() -> None:
    """For a child about to exec: SIGINT and SIGQUIT as a terminal's foreground command has them.
    A test run started in the background by a script (``pytest &``) ignores both, its children
    inherit that, and the scan keeps an ignored signal ignored (as ``nohup`` needs): a test that
    sends Ctrl-C would then see it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@contextlib.contextmanager
def running_with_workers(
    argv: list[str], workers: int = 2, preexec_fn: Callable[[], None] | None = None
) -> Iterator[tuple[subprocess.Popen, list[int]]]:
    """``argv`` (a command that forks ``workers`` worker processes) started in a session of its
    own, with a terminal's signals (``terminal_signals``, then ``preexec_fn``), once all its
    workers run: (the process, the workers' pids); a failure if it ends before. Leaving the block
    kills whatever of the session still runs (a test that failed midway), so a test looks for
    leftover processes inside the block."""

    def preexec() -> None:
        terminal_signals()
        if preexec_fn is not None:
            preexec_fn()

    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
    )
    try:
        deadline = time.monotonic() + 60
        while len(children(proc.pid)) < workers and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        found = children(proc.pid)
        assert len(found) == workers and proc.poll() is None, "the command ended before its workers all ran"
        yield proc, found
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def session_state(sid: int) -> str:
    """What each live process of session ``sid`` is doing (state, kernel wait channel, command):
    what a test prints when the session did not end in time."""
    rows = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:
                continue
            wchan = (entry / "wchan").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:120].decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        rows.append(f"pid {entry.name} ppid {fields[1]} state {fields[0]} wchan {wchan or '-'}: {cmd}")
    return "; ".join(rows) or "no process left"


def communicate_or_fail(proc: subprocess.Popen, timeout: float, what: str) -> tuple[bytes, bytes]:
    """``proc.communicate(timeout)``; if it does not end by then, a failure that says what every
    process of its session was doing (and what it had written to stderr), not a bare timeout."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        state = session_state(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate()
        pytest.fail(f"{what}: not ended after {timeout} s; its session: {state}; stderr: {err[-2000:]!r}")
