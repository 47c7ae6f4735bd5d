"""Progress of ``classifier bgp``: a live counter of the input being read, on a terminal only
(per decompressed chunk, never per record), then one line per input; ``--no-progress`` silences
both."""

from __future__ import annotations

import gzip
import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import test_bgp_audit
from conftest import ROOT, run_cli

from classifier.bgp.aspath import PathClassifier
from classifier.bgp.mrt import MrtReader, Needles
from classifier.bgp.routes import RouteTable
from classifier.progress import Progress


def _sessions(tmp_path: Path, name: str = "sessions.mrt") -> Path:
    path = tmp_path / name
    path.write_bytes(test_bgp_audit.sessions_file())
    return path


def test_the_reader_reports_every_decompressed_byte_once(tmp_path: Path, sigs) -> None:
    plain = _sessions(tmp_path)
    packed = tmp_path / "sessions.mrt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        seen: list[int] = []
        table = RouteTable(PathClassifier(sigs.operator_by_asn))
        st = MrtReader(str(path), path.name, Needles(sigs.operator_by_asn), table, progress=seen.append).run()
        assert st.complete and st.records == 8
        assert sum(seen) == st.bytes == plain.stat().st_size
        assert len(seen) < st.records  # per chunk, not per record


def test_the_counter_shows_mebibytes_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    with Progress("[1/1] reading x.mrt", "MiB", out=out, divisor=1 << 20) as live:
        live.tick(3 << 20)
        live._draw(0.0)
    text = out.getvalue()
    assert "\r[1/1] reading x.mrt: 0 MiB" in text and "\r[1/1] reading x.mrt: 3 MiB" in text
    assert text.endswith("\r\x1b[K")  # the line goes away before the input's own line
    quiet = io.StringIO()  # not a terminal: nothing
    with Progress("x", "MiB", out=quiet, divisor=1 << 20) as live:
        live.tick(5 << 20)
    assert quiet.getvalue() == ""


def _bgp_on_a_terminal(*args: str) -> str:
    """stderr of `classifier bgp ARGS` when stderr is a terminal (a pty)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "classifier", "bgp", *args],
            stdout=subprocess.DEVNULL,
            stderr=follower,
            cwd=ROOT,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=300) == 0
    finally:
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_bgp_shows_the_counter_on_a_terminal_and_not_with_no_progress(tmp_path: Path) -> None:
    path = _sessions(tmp_path)
    shown = _bgp_on_a_terminal(str(path), "--progress")
    assert "\r[1/1] reading sessions.mrt: 0 MiB" in shown and "[1/1] sessions.mrt: 8 records" in shown
    silent = _bgp_on_a_terminal(str(path), "--progress", "--no-progress")
    assert "reading sessions.mrt" not in silent and "[1/1]" not in silent
    # not a terminal: the per-input lines, never a carriage return
    other = _sessions(tmp_path, "other.mrt")
    err = run_cli("bgp", str(path), str(other)).stderr.decode()
    assert "[1/2] sessions.mrt: 8 records" in err and "\r" not in err
    err = run_cli("bgp", str(path), str(other), "--no-progress").stderr.decode()
    assert "[1/2]" not in err and "[2/2]" not in err
