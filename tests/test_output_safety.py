"""Outputs never destroy inputs, and a failed write is one line, a documented status, nothing lost.

Every case runs the real command line in a subprocess, as a user would: symlinks and hard links to
the capture, /dev/full, a directory, a missing directory, a file-size limit, and a reader that goes
away (``| head -1``) through a real pipe.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from classifier.exitcodes import Exit

DEMO = ROOT / "pcaps" / "demo.pcap"


def classifier(
    *args: str, stdin=None, stdout=subprocess.PIPE, preexec_fn=None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "classifier", *args],
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        timeout=300,
        preexec_fn=preexec_fn,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("classifier: error: "), lines
    assert "Traceback" not in lines[0] and "internal error" not in lines[0]
    return lines[0]


@pytest.fixture
def capture(tmp_path) -> Path:
    path = tmp_path / "x.pcap"
    shutil.copyfile(DEMO, path)
    return path


@pytest.mark.parametrize("option", ["-o", "--stats"])
@pytest.mark.parametrize("how", ["same-path", "symlink", "hard-link", "relative-path"])
def test_an_output_naming_an_input_is_refused_before_anything_is_opened(tmp_path, capture, option, how):
    original = capture.read_bytes()
    target = {
        "same-path": str(capture),
        "symlink": str(tmp_path / "link.pcap"),
        "hard-link": str(tmp_path / "hard.pcap"),
        "relative-path": os.path.relpath(capture, ROOT),
    }[how]
    if how == "symlink":
        os.symlink(capture, target)
    elif how == "hard-link":
        os.link(capture, target)
    proc = classifier("scan", str(DEMO), str(capture), option, target, "-q")
    assert proc.returncode == Exit.USAGE
    line = one_error_line(proc)
    assert f"{option} {target} is the input {capture}" in line and "refusing to overwrite" in line
    assert capture.read_bytes() == original
    assert proc.stdout == b""  # nothing was scanned


def test_standard_input_file_is_an_input_too(tmp_path, capture):
    original = capture.read_bytes()
    with open(capture, "rb") as stdin:
        proc = classifier("scan", "-", "-o", str(capture), "-q", stdin=stdin)
    assert proc.returncode == Exit.USAGE
    assert "is the input standard input" in one_error_line(proc)
    assert capture.read_bytes() == original


def test_standard_output_appending_to_the_input_is_refused(capture):
    original = capture.read_bytes()
    with open(capture, "ab") as out:
        proc = classifier("scan", str(capture), "-q", stdout=out)
    assert proc.returncode == Exit.USAGE
    assert f"standard output is the input {capture}" in one_error_line(proc)
    assert capture.read_bytes() == original


def test_output_and_stats_in_one_file_is_refused(tmp_path):
    out = tmp_path / "o.json"
    proc = classifier("scan", str(DEMO), "-o", str(out), "--stats", str(tmp_path / "." / "o.json"), "-q")
    assert proc.returncode == Exit.USAGE
    assert "are the same file" in one_error_line(proc)
    assert not out.exists()


def test_a_full_device_is_an_output_error_naming_the_path():
    proc = classifier("scan", str(DEMO), "-o", "/dev/full", "-q")
    assert proc.returncode == Exit.OUTPUT
    assert one_error_line(proc) == "classifier: error: cannot write /dev/full: No space left on device"


def test_standard_output_on_a_full_device():
    with open("/dev/full", "w") as full:
        proc = classifier("scan", str(DEMO), "-q", stdout=full)
    assert proc.returncode == Exit.OUTPUT
    assert one_error_line(proc) == "classifier: error: cannot write standard output: No space left on device"


@pytest.mark.parametrize("command", [["schema"], ["policy"], ["signatures", "check"]])
def test_other_commands_on_a_full_device(command):
    with open("/dev/full", "w") as full:
        proc = classifier(*command, stdout=full)
    assert proc.returncode == Exit.OUTPUT
    assert one_error_line(proc) == "classifier: error: cannot write standard output: No space left on device"


def test_an_unwritable_proc_file():
    proc = classifier("scan", str(DEMO), "-o", "/proc/version", "-q")
    assert proc.returncode == Exit.OUTPUT
    assert one_error_line(proc).startswith("classifier: error: cannot write /proc/version: ")


@pytest.mark.parametrize(
    ("where", "strerror"),
    [("dir", "Is a directory"), ("missing/stats.json", "No such file or directory")],
)
def test_stats_that_cannot_be_written_fail_before_the_scan(tmp_path, where, strerror):
    (tmp_path / "dir").mkdir()
    stats = tmp_path / where
    out = tmp_path / "o.jsonl"
    proc = classifier("scan", str(DEMO), "-o", str(out), "--stats", str(stats), "-q")
    assert proc.returncode == Exit.OUTPUT
    assert one_error_line(proc) == f"classifier: error: cannot write {stats}: {strerror}"
    assert not out.exists()  # found before anything was opened, not after the scan


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_everything_before_a_failed_write_is_flushed(tmp_path):
    full = classifier("scan", str(DEMO), str(DEMO), "-q").stdout
    out = tmp_path / "o.jsonl"
    limit = 20_000  # a "disk" that fills up in the middle of the records
    assert len(full) > 2 * limit
    proc = classifier("scan", str(DEMO), str(DEMO), "-o", str(out), "-q", preexec_fn=_limit_file_size(limit))
    assert proc.returncode == Exit.OUTPUT
    assert one_error_line(proc) == f"classifier: error: cannot write {out}: File too large"
    assert out.read_bytes() == full[:limit]  # every byte up to the failure reached the file


def test_stats_written_after_complete_records(tmp_path):
    # the records are closed (complete) before the statistics are written at the end
    out, stats = tmp_path / "o.jsonl", tmp_path / "s.json"
    proc = classifier("scan", str(DEMO), "-o", str(out), "--stats", str(stats), "-q")
    assert proc.returncode == Exit.OK
    assert len(out.read_text().splitlines()) == json.loads(stats.read_text())["flows"] == 34


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_reader_going_away_ends_quietly(fmt):
    # `classifier scan ... | head -1`: head exits after one line; the scan must end with status 0
    # and nothing on stderr, whatever the format
    many = [str(DEMO)] * 40  # more output than a pipe holds, so writing goes on after head left
    scan = subprocess.Popen(
        [sys.executable, "-m", "classifier", "scan", *many, "--format", fmt, "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    head = subprocess.run(["head", "-1"], stdin=scan.stdout, capture_output=True, timeout=300)
    scan.stdout.close()
    stderr = scan.stderr.read()
    assert scan.wait(timeout=300) == Exit.OK, stderr
    assert stderr == b""
    assert head.stdout.count(b"\n") == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_reader_gone_before_the_first_write_ends_quietly(fmt):
    scan = subprocess.Popen(
        [sys.executable, "-m", "classifier", "scan", str(DEMO), "--format", fmt, "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    scan.stdout.close()  # the pipe has no reader: the first write fails with EPIPE
    stderr = scan.stderr.read()
    assert scan.wait(timeout=300) == Exit.OK, stderr
    assert stderr == b""


def test_bgp_refuses_an_output_naming_its_mrt_input(tmp_path):
    from conftest import SHARED, need_shared

    mrt = tmp_path / "rib.mrt"
    shutil.copyfile(need_shared(SHARED / "mrt" / "mrtparse-sample_quagga_rib.mrt"), mrt)
    original = mrt.read_bytes()
    link = tmp_path / "link.mrt"
    os.symlink(mrt, link)
    proc = classifier("bgp", str(mrt), "-o", str(link), "-q")
    assert proc.returncode == Exit.USAGE
    assert f"-o {link} is the input {mrt}" in one_error_line(proc)
    assert mrt.read_bytes() == original


def test_export_prefixes_on_a_full_device():
    with open("/dev/full", "w") as full:
        proc = classifier("signatures", "export-prefixes", stdout=full)
    assert proc.returncode == Exit.OUTPUT
    assert one_error_line(proc) == "classifier: error: cannot write standard output: No space left on device"


def test_devices_hold_nothing_to_overwrite():
    # /dev/null for both outputs (as the benchmarks do) is not "the same file" to refuse
    proc = classifier("scan", str(DEMO), "-o", os.devnull, "--stats", os.devnull, "-q")
    assert proc.returncode == Exit.OK, proc.stderr
    assert proc.stderr == b""
