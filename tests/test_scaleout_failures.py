"""Hostile inputs and failing outputs under ``scan --workers 2`` (both splits) and ``--dask local``.

Every case runs the real command line in a subprocess of its own session, as a user would, and
checks what one process does is what the scale-out does: the exit status, the lines on stderr
(what is wrong and where), the records of everything good; and that nothing hangs (a timeout)
and no worker outlives the scan (its process group is empty afterwards). tests/test_workers.py
and tests/test_dask.py check the records on good inputs; tests/test_output_safety.py the outputs
of one process.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, communicate_or_fail, running_with_workers, terminal_signals

from classifier import parallel
from classifier.cli import main
from classifier.exitcodes import Exit

SAMPLES = ROOT / "pcaps"
DEMO = SAMPLES / "demo.pcap"
HAS_DASK = importlib.util.find_spec("dask") is not None and importlib.util.find_spec("pyarrow") is not None

WORKERS = {
    "files": ("--workers", "2"),  # several files on their own: whole files to the workers
    "address": ("--workers", "2", "--continuous"),  # one stream: split by server address
}
DASK = {
    "dask-files": ("--dask", "local", "--workers", "2"),
    "dask-continuous": ("--dask", "local", "--workers", "2", "--continuous"),
}


def _need_dask() -> None:
    """Dask and pyarrow (the extra ``dask``): a failure in CI, where ``make test`` installs them."""
    if not HAS_DASK:
        if os.environ.get("CI"):
            pytest.fail("the optional extra dask is not installed (make test installs it)")
        pytest.skip("the optional extra dask is not installed")


def _mode(name: str) -> tuple[str, ...]:
    if name in DASK:
        _need_dask()
    return {**WORKERS, **DASK}[name]


def _one_process(mode: tuple[str, ...]) -> tuple[str, ...]:
    """The one-process command of a scale-out mode: its options without the workers."""
    return ("--continuous",) if "--continuous" in mode else ()


ALL_MODES = pytest.mark.parametrize("mode", [*WORKERS, *DASK])


def _scan(
    *args: str, timeout: float = 60, limit_file_size: int | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """``classifier scan ARGS`` in a session of its own: killed and failed if it hangs, failed if
    any process of its session (a worker) is left once it has ended."""

    def preexec() -> None:
        if limit_file_size is not None:  # a "disk" that fills up: EFBIG instead of SIGXFSZ
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    proc = subprocess.Popen(
        [sys.executable, "-m", "classifier", "scan", "--no-progress", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=preexec,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"scan {' '.join(args)}: still running after {timeout} s (a hang)")
    _session_ends(proc.pid)
    assert b"Traceback" not in err, err.decode(errors="replace")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _session_ends(sid: int, within: float = 10) -> None:
    """Fail unless every process of session ``sid`` is gone within ``within`` s (a LocalCluster's
    workers take a moment to exit after the client has)."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(sid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(sid, signal.SIGKILL)
            pytest.fail(f"processes of the scan (session {sid}) outlived it")
        time.sleep(0.05)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _record_header_offsets(data: bytes, count: int) -> list[int]:
    """Offsets of the first ``count`` record headers of a little-endian classic pcap."""
    offsets, at = [], 24
    for _ in range(count):
        offsets.append(at)
        at += 16 + int.from_bytes(data[at + 8 : at + 12], "little")
    return offsets


@pytest.fixture
def bad_inputs(tmp_path: Path) -> list[str]:
    """Good captures with, among them, one cut in the middle of a record, one whose 6th record
    header claims 2 GiB, one missing and one under a file (ENOTDIR): inputs even enough in size
    to be split by files."""
    data = DEMO.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"  # little-endian classic pcap, as the cut assumes
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 7])
    corrupt = bytearray((SAMPLES / "preludes.pcap").read_bytes())
    at = _record_header_offsets(bytes(corrupt), 6)[-1]
    corrupt[at + 8 : at + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    (tmp_path / "corrupt.pcap").write_bytes(bytes(corrupt))
    good = tmp_path / "good.pcap"
    shutil.copyfile(DEMO, good)
    captures = [
        str(good),
        str(cut),
        str(SAMPLES / "quic-v1.pcap"),
        str(tmp_path / "missing.pcap"),
        str(tmp_path / "corrupt.pcap"),
        str(good / "x"),
        str(SAMPLES / "tunnel-gre.pcap"),
    ]
    assert parallel.split_by_files(captures, False, 2)
    return captures


@ALL_MODES
def test_bad_inputs_among_good_ones_are_reported_as_in_one_process(mode: str, bad_inputs: list[str]) -> None:
    options = _mode(mode)
    one = _scan("-q", *_one_process(options), *bad_inputs)
    assert one.returncode == Exit.INPUT
    err = one.stderr.decode()
    assert "cut.pcap: packet 142: offset 22570: truncated record: header says 571 bytes, 240 present" in err
    assert "corrupt.pcap: packet 6: offset" in err and "corrupt record: header says 2147483647 bytes" in err
    assert "missing.pcap: no such file" in err and "good.pcap/x: cannot open: Not a directory" in err
    assert one.stdout.count(b"\n") > 50
    many = _scan("-q", *options, *bad_inputs)
    assert (many.returncode, many.stderr) == (one.returncode, one.stderr)
    assert many.stdout == one.stdout  # the records of every good file and packet


@pytest.mark.parametrize("mode", ["one", *WORKERS])
def test_a_directory_among_the_inputs_stands_for_the_files_under_it(mode: str, tmp_path: Path) -> None:
    """Every mode reads a directory as the files under it (hidden ones left out), in natural
    order: the records equal those of the files named one by one (the one process's too).
    (--dask does the same: tests/test_dask.py.)"""
    options = () if mode == "one" else _mode(mode)
    rot = tmp_path / "rot"
    (rot / "sub").mkdir(parents=True)
    shutil.copy(SAMPLES / "preludes.pcap", rot / "cap2.pcap")  # lexical order would put it last
    shutil.copy(DEMO, rot / "cap10.pcap")
    shutil.copy(SAMPLES / "preludes.pcap", rot / "sub" / "cap11.pcap")
    (rot / ".notes").write_text("not a capture, and hidden\n")
    (rot / ".hidden").mkdir()
    (rot / ".hidden" / "x.txt").write_text("under a hidden directory\n")
    named = [str(rot / "cap2.pcap"), str(rot / "cap10.pcap"), str(rot / "sub" / "cap11.pcap")]
    one = _scan("-q", *_one_process(options), str(DEMO), *named)
    many = _scan("-q", *options, str(DEMO), str(rot))
    assert one.returncode == Exit.OK and one.stdout.count(b"\n") > 20, one.stderr
    assert (many.returncode, many.stderr, many.stdout) == (one.returncode, one.stderr, one.stdout)


def test_an_output_left_in_an_input_directory_is_an_input_and_never_overwritten(tmp_path: Path) -> None:
    """``scan DIR -o DIR/out.jsonl`` a second time: the first run's records are now a file under
    DIR, so an input; the run is refused before anything is written, the file kept."""
    rot = tmp_path / "rot"
    rot.mkdir()
    shutil.copy(DEMO, rot / "cap1.pcap")
    out, pcap = rot / "out.jsonl", rot / "kept.pcap"
    first = _scan("-q", str(rot), "-o", str(out))
    assert first.returncode == Exit.OK and out.stat().st_size > 0, first.stderr
    before = out.read_bytes()
    again = _scan("-q", str(rot), "-o", str(out))
    assert again.returncode == Exit.USAGE and b"out.jsonl" in again.stderr, again.stderr
    assert out.read_bytes() == before
    shutil.copy(DEMO, pcap)
    third = _scan("-q", str(rot / "*.pcap"), "-o", "/dev/null", "--write-pcap", str(pcap))
    assert third.returncode == Exit.USAGE and b"kept.pcap" in third.stderr, third.stderr
    assert pcap.read_bytes() == DEMO.read_bytes()


@pytest.mark.parametrize("mode", ["one", *WORKERS])
def test_an_empty_directory_or_a_glob_matching_nothing_stops_before_any_work(mode: str, tmp_path) -> None:
    options = () if mode == "one" else _mode(mode)
    (tmp_path / "empty").mkdir()
    for arg, said in (("empty", "directory holds no file"), ("nothing*.pcap", "no file matches")):
        proc = _scan("-q", *options, str(DEMO), str(tmp_path / arg))
        assert proc.returncode == Exit.USAGE and not proc.stdout, proc.stderr
        assert proc.stderr.decode().strip() == f"classifier: error: {tmp_path / arg}: {said}"


@ALL_MODES
def test_a_fifo_is_refused_not_waited_for_or_shared(mode: str, tmp_path: Path) -> None:
    """One process reads a FIFO once, waiting for its writer; workers would each open it and
    share its bytes (flows lost without a word), or wait for ever without a writer: refused
    before anything starts, as standard input is."""
    options = _mode(mode)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    proc = _scan(*options, str(DEMO), str(fifo), "-o", str(out), timeout=30)
    assert proc.returncode == Exit.USAGE
    line = _one_line(proc)
    assert line.startswith("classifier: error: --workers/--dask: ") and f"{fifo} (a FIFO" in line
    assert not out.exists()


def _output_cases(tmp_path: Path) -> dict[str, tuple[str, ...]]:
    capture = tmp_path / "in.pcap"
    shutil.copyfile(DEMO, capture)
    (tmp_path / "file").write_text("")
    return {
        "full": ("-o", "/dev/full", str(capture), str(SAMPLES / "preludes.pcap")),
        "no-directory": ("-o", str(tmp_path / "none" / "x.jsonl"), str(capture), str(DEMO)),
        "an-input": ("-o", str(capture), str(DEMO), str(capture)),
        "parquet-file": ("--format", "parquet", "-o", str(tmp_path / "file"), str(capture), str(DEMO)),
        "parquet-under-a-file": ("--format", "parquet", "-o", str(tmp_path / "file" / "p"), str(DEMO)),
    }


@ALL_MODES
@pytest.mark.parametrize("case", ["full", "no-directory", "an-input", "parquet-file", "parquet-under-a-file"])
def test_an_output_that_fails_is_one_line_as_in_one_process(mode: str, case: str, tmp_path: Path) -> None:
    options = _mode(mode)
    if case.startswith("parquet"):  # --format parquet
        _need_dask()
    args = _output_cases(tmp_path)[case]
    original = DEMO.read_bytes()
    one = _scan(*_one_process(options), *args)
    many = _scan(*options, *args)
    assert one.returncode in (Exit.USAGE, Exit.OUTPUT)
    assert _one_line(one).startswith("classifier: error: ")
    assert (many.returncode, many.stderr) == (one.returncode, one.stderr)
    assert (tmp_path / "in.pcap").read_bytes() == original  # an input is never written


@ALL_MODES
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_disk_that_fills_up_mid_scan_is_one_line_and_keeps_what_was_written(
    mode: str, fmt: str, tmp_path: Path
) -> None:
    """A file-size limit stands for a full disk. JSON lines: the file holds what one process
    wrote before the failure. Parquet: the one line names the part (a Dask worker's own log of
    the failed task, with its traceback, was printed too)."""
    options = _mode(mode)
    if fmt == "parquet":  # --format parquet
        _need_dask()
    captures = [str(DEMO), str(SAMPLES / "preludes.pcap"), str(DEMO)]
    limit = 12_000
    outs = []
    for label, opts in (("one", _one_process(options)), ("many", options)):
        out = tmp_path / label
        proc = _scan(*opts, "-q", "--format", fmt, "-o", str(out), *captures, limit_file_size=limit)
        assert proc.returncode == Exit.OUTPUT, proc.stderr
        line = _one_line(proc)
        assert line.startswith(f"classifier: error: cannot write {out}") and line.endswith(": File too large")
        outs.append(out)
    if fmt == "jsonl":
        assert outs[0].stat().st_size == limit
        assert outs[1].read_bytes() == outs[0].read_bytes()


def test_a_worker_gone_before_it_is_handed_a_file_is_a_failed_worker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file worker that dies right after a file's results: handing it the next file meets a
    closed pipe. That is the worker's failure; as a BrokenPipeError it passed for a reader of
    standard output gone away (``| head``), a quiet exit 0 with the files after it missing."""
    real = parallel.send_message

    def send_then_die(conn: object, msg: tuple) -> None:
        if msg[0] == "done":  # in a worker: its end of the pipe to it closed, then gone
            os.close(conn.rfd)  # type: ignore[attr-defined]
            conn.rfd = None  # type: ignore[attr-defined]
            real(conn, msg)  # type: ignore[arg-type]
            os._exit(9)
        real(conn, msg)  # type: ignore[arg-type]

    monkeypatch.setattr(parallel, "send_message", send_then_die)  # the forked workers inherit it
    status = main(["scan", "-q", "--workers", "2", *[str(DEMO)] * 3])
    err = capsys.readouterr().err
    assert status == Exit.INTERNAL
    assert err.count("\n") == 1 and "WorkerFailed: scan worker" in err and "died (exit status 9)" in err


@pytest.mark.parametrize("mode", ["files", "address"])
def test_a_worker_killed_mid_scan_is_one_line_and_the_other_is_reaped(mode: str, tmp_path: Path) -> None:
    """SIGKILL (what the OOM killer sends) to one worker while both scan."""
    if mode == "files":
        captures = [str(DEMO)] * 400
    else:
        big = tmp_path / "big.pcap"
        data = DEMO.read_bytes()
        big.write_bytes(data + data[24:] * 200)  # one capture: split by server address
        captures = [str(big)]
    cmd = [sys.executable, "-m", "classifier", "scan", "-q", *_mode(mode), "-o", str(tmp_path / "o")]
    with running_with_workers([*cmd, *captures]) as (proc, workers):
        os.kill(workers[1], signal.SIGKILL)
        _out, err = communicate_or_fail(proc, 30, "a scan with a worker killed")
        _session_ends(proc.pid)
    assert proc.returncode == Exit.INTERNAL, err
    line = err.decode().strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("classifier: internal error: WorkerFailed: scan worker 1 was killed by SIGKILL")


@pytest.mark.parametrize("mode", ["files", "address", "dask-files"])
def test_a_reader_that_goes_away_ends_the_scan_quietly_and_every_worker(mode: str) -> None:
    """``classifier scan --workers 2 ... -o - | head -c 100``."""
    options = _mode(mode)
    captures = [str(DEMO)] * 8  # more records than a pipe holds
    scan = subprocess.Popen(
        [sys.executable, "-m", "classifier", "scan", "-q", *options, "-o", "-", *captures],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,
    )
    head = subprocess.run(["head", "-c", "100"], stdin=scan.stdout, capture_output=True, timeout=60)
    assert scan.stdout is not None and scan.stderr is not None
    scan.stdout.close()
    try:
        err = scan.stderr.read()
        assert scan.wait(timeout=60) == Exit.OK, err
    finally:
        if scan.poll() is None:
            os.killpg(scan.pid, signal.SIGKILL)
    assert err == b""
    assert len(head.stdout) == 100
    _session_ends(scan.pid)


@pytest.mark.parametrize("dask", [False, True], ids=["workers", "dask-local"])
def test_more_workers_than_the_machine_can_run_is_a_usage_error(dask: bool, tmp_path: Path) -> None:
    """A number of local processes past ``WORKERS_PER_CORE`` per core is refused before any
    fork (``--workers 100000`` forked until the machine ran out of processes)."""
    if dask:
        _mode("dask-files")
    limit = parallel.WORKERS_PER_CORE * parallel.default_workers()
    out = tmp_path / "o.jsonl"
    dask_options = ("--dask", "local") if dask else ()
    for n in (limit + 1, 100_000):
        args = ("--workers", str(n), "--continuous", "-o", str(out), str(DEMO))
        proc = _scan(*dask_options, *args, timeout=30)
        assert proc.returncode == Exit.USAGE
        assert _one_line(proc) == (
            f"classifier: error: --workers {n}: at most {limit} on this machine "
            f"({parallel.WORKERS_PER_CORE} per core, {parallel.default_workers()} cores): each worker "
            "is a process with its own flow table, and more than the cores only share them"
        )
        assert not out.exists()
    for n in ("0", "-1"):
        proc = _scan("--workers", n, str(DEMO))
        assert proc.returncode == Exit.USAGE
        assert proc.stderr.decode().splitlines()[-1] == (
            f"classifier scan: error: argument --workers: '{n}' must be a positive finite number"
        )


_BUSY_WORKERS = """
import sys, time
from classifier import parallel
from classifier.cli import main

def busy(*args, **kwargs):
    time.sleep(60)  # a worker deep in a capture of few long flows: it sends nothing for a while

parallel.run_part = parallel.scan_file = busy  # the forked workers inherit it
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
@pytest.mark.parametrize("copies", [1, 2], ids=["by-address", "by-files"])
def test_a_scan_ended_by_a_signal_ends_its_workers(signum: int, copies: int) -> None:
    """``kill`` (or ``timeout``, or a closed terminal) of the scan: it ends by that signal as one
    process does, and takes its workers with it; they used to go on scanning until their next
    message met the closed pipe, which on a capture of few long flows is the rest of the scan."""
    argv = [sys.executable, "-c", _BUSY_WORKERS, "scan", "-q", "--workers", "2", *[str(DEMO)] * copies]
    with running_with_workers(argv) as (proc, workers):
        proc.send_signal(signum)
        _out, err = communicate_or_fail(proc, 10, f"a scan sent signal {signum}")
        left = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert proc.returncode == -signum, err
    assert err == b""
    assert left == [], "workers outlived the scan"


_SLOW_WORKERS = """
import sys, time
from classifier import parallel
from classifier.cli import main

def slow(real):
    def run(*args, **kwargs):
        time.sleep(1.5)  # long enough for the test to send its signal while the workers run
        return real(*args, **kwargs)
    return run

parallel.run_part, parallel.scan_file = slow(parallel.run_part), slow(parallel.scan_file)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("copies", [1, 2], ids=["by-address", "by-files"])
def test_a_scan_run_under_nohup_outlives_the_hangup_with_its_workers(copies: int) -> None:
    """``nohup classifier scan --workers 2 ...`` and the terminal closes: SIGHUP reaches the whole
    process group and is ignored by all of it, so the scan ends normally with every record (the
    workers must not put back a default that ends them, nor the parent a handler that stops them)."""
    args = ["scan", "-q", "--no-progress", "--workers", "2", *[str(DEMO)] * copies]
    expected = subprocess.run([sys.executable, "-m", "classifier", "scan", "-q", "--no-progress",
                               *[str(DEMO)] * copies], cwd=ROOT, capture_output=True, check=True)  # fmt: skip

    def nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with running_with_workers([sys.executable, "-c", _SLOW_WORKERS, *args], preexec_fn=nohup) as (proc, _):
        os.killpg(proc.pid, signal.SIGHUP)  # as a closed terminal sends it
        out, err = communicate_or_fail(proc, 60, "a nohup'd scan sent SIGHUP")
    assert (proc.returncode, err) == (0, b"")
    assert out == expected.stdout and out


_CTRL_C_AT_FORK = """
import os, signal, sys
from classifier.cli import main

real_fork = os.fork

def fork():
    pid = real_fork()
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the instant after the fork, in both processes
    return pid

os.fork = fork
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("copies", [1, 2], ids=["by-address", "by-files"])
def test_ctrl_c_just_after_a_fork_ends_the_scan_once(copies: int) -> None:
    """Ctrl-C the instant a worker is forked: the worker ends in its own code and the parent, which
    lists it first, stops it. Taken at once, the new process raised before it was in its ``try``
    and ran on in the parent's code (a second "interrupted", output of its own), and the parent
    could lose track of it."""
    argv = [sys.executable, "-c", _CTRL_C_AT_FORK, "scan", "-q", "--no-progress", "--workers", "2"]
    proc = subprocess.Popen(
        [*argv, *[str(DEMO)] * copies],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=terminal_signals,
    )
    out, err = communicate_or_fail(proc, 60, "a scan interrupted at a fork")
    _session_ends(proc.pid)
    assert (proc.returncode, err.decode(), out) == (130, "classifier: interrupted\n", b"")


def _session(sid: int) -> list[int]:
    """Live processes of session ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def test_a_dask_worker_killed_mid_scan_has_its_task_rerun(tmp_path: Path) -> None:
    """SIGKILL to one of a LocalCluster's workers once the tasks run: Dask reruns what it was
    doing elsewhere, and as tasks only read files the records are one process's
    (docs/scale-out.md), with no hang."""
    options = _mode("dask-files")
    big = tmp_path / "big.pcap"
    data = DEMO.read_bytes()
    big.write_bytes(data + data[24:] * 30)
    captures = [str(big)] * 6
    out = tmp_path / "dask.jsonl"
    one = _scan("-q", *captures)
    proc = subprocess.Popen(
        [sys.executable, "-m", "classifier", "scan", *options, "-o", str(out), *captures],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()  # progress: a task is done, the others run
        assert first.startswith(b"dask: 1/6 tasks done"), first
        workers = [p for p in _session(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == one.returncode == Exit.OK, err
    assert b"Traceback" not in err and b"dask: 6/6 tasks done" in err
    assert out.read_bytes() == one.stdout
    _session_ends(proc.pid)
