"""The compiled per-packet loop (classifier/_batchcount.pyx) and its pure-Python reference
(``Scanner.feed_batches`` in classifier/pipeline.py) give byte-identical records and statistics on
every capture; the install builds it (CI fails without it), the pure loop is chosen when it is
absent or refused, and ``classifier --version`` says which one runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL, ROOT, need_shared

from classifier import pipeline
from classifier.capture import open_capture
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import flow_record
from classifier.report import InputStats

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".gz")


def _compiled():
    """The compiled loop; CI fails without it (the install must build it), elsewhere skips."""
    if pipeline.COMPILED_FEED is None:
        if os.environ.get("CI"):
            pytest.fail(f"the compiled loop is not built or refused: {pipeline.per_packet_loop()}")
        pytest.skip(f"the compiled loop is not in use: {pipeline.per_packet_loop()}")
    return pipeline.COMPILED_FEED


def test_extension_is_built_and_chosen():
    compiled = _compiled()
    module = sys.modules[compiled.__module__]
    assert Path(module.__file__).suffix == ".so", module.__file__
    assert pipeline.per_packet_loop() == "compiled (Cython)"


def _scan(sigs, policy, path: Path) -> tuple[bytes, str, int]:
    """(records as JSON lines, statistics as JSON, packets) of one capture through feed_batches."""
    lines: list[bytes] = []
    scanner = Scanner(
        sigs, policy, ScanOptions(), lambda flow: lines.append(json.dumps(flow_record(flow)).encode())
    )
    with open_capture(str(path)) as reader:
        scanner.start_input(path.name, reader.interfaces)
        reader.on_malformed = scanner.malformed_packet
        scanner.feed_batches(reader.batches())
    scanner.finish()
    stats = InputStats()
    scanner.fill_stats(stats)
    everything = {**stats.as_dict(), "examples": stats.malformed_examples, "binding": stats.dns_binding}
    return b"\n".join(lines), json.dumps(everything, sort_keys=True, default=repr), scanner.packets


def _captures() -> list[Path]:
    real = need_shared(REAL)
    paths = [*sorted(real.iterdir()), *sorted((ROOT / "pcaps").iterdir())]
    return [p for p in paths if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)]


@pytest.mark.real
def test_compiled_and_pure_loops_give_identical_records_and_stats(sigs, policy, monkeypatch):
    compiled = _compiled()
    captures = _captures()
    assert len(captures) >= 20, captures
    counted = 0
    for path in captures:
        monkeypatch.setattr(pipeline, "COMPILED_FEED", compiled)
        got = _scan(sigs, policy, path)
        monkeypatch.setattr(pipeline, "COMPILED_FEED", None)
        want = _scan(sigs, policy, path)
        assert got[0] == want[0], f"{path.name}: records differ"
        assert got[1] == want[1], f"{path.name}: statistics differ"
        assert got[2] == want[2], path.name
        counted += got[2]
    assert counted > 10_000


def _classifier(*args: str, env: dict[str, str] | None = None, pre: str = "") -> str:
    code = f"{pre}import sys; from classifier.cli import main; sys.argv[0] = 'classifier'; main()"
    res = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_version_says_which_loop_runs():
    _compiled()
    assert "per-packet loop: compiled (Cython)" in _classifier(
        "--version", env={"CLASSIFIER_PURE_PYTHON": ""}
    )
    forced = _classifier("--version", env={"CLASSIFIER_PURE_PYTHON": "1"})
    assert "per-packet loop: pure Python (CLASSIFIER_PURE_PYTHON is set)" in forced


def test_without_the_extension_the_pure_loop_runs_and_says_so():
    """An install without a compiler has no ``_batchcount``: the import falls back, the scan works."""
    absent = "import sys; sys.modules['classifier._batchcount'] = None; "
    out = _classifier("--version", env={"CLASSIFIER_PURE_PYTHON": ""}, pre=absent)
    assert "per-packet loop: pure Python (the compiled loop is not built" in out
    scan = _classifier(
        "scan",
        str(ROOT / "pcaps" / "demo.pcap"),
        "-q",
        env={"CLASSIFIER_PURE_PYTHON": ""},
        pre=absent,
    )
    assert scan.count("\n") >= 5, scan


# The tests that pin the per-packet path, run again on the pure loop when the compiled one is in
# use (the default run covers the compiled loop).
PURE_RERUN = (
    "tests/test_record_digest.py",
    "tests/test_fastpath.py",
    "tests/test_hostile_values.py",
    "tests/test_bad_timestamps.py",
    "tests/test_fuzz.py",
)


def test_per_packet_tests_pass_on_the_pure_loop_too():
    _compiled()
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not campaign", *PURE_RERUN],
        capture_output=True,
        text=True,
        env={**os.environ, "CLASSIFIER_PURE_PYTHON": "1"},
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert " passed" in res.stdout.splitlines()[-1], res.stdout[-500:]
