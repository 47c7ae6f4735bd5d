"""The compiled per-packet loop (classifier/_batchcount.pyx) and its pure-Python reference
(``Scanner.feed_batches`` in classifier/pipeline.py) give byte-identical records and statistics on
every capture; the install builds it (CI fails without it), the pure loop is chosen when it is
absent or refused, and ``classifier --version`` says which one runs."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL, ROOT, need_shared

from classifier import capture, pipeline
from classifier.capture import open_capture
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import flow_record
from classifier.report import InputStats

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".gz")


def _compiled():
    """The compiled loop; CI fails without it (the install must build it), elsewhere skips."""
    if pipeline.COMPILED_FEED is None or capture.COMPILED_WHOLE_PCAP_RECORDS is None:
        if os.environ.get("CI"):
            pytest.fail(f"the compiled loop is not built or refused: {pipeline.per_packet_loop()}")
        pytest.skip(f"the compiled loop is not in use: {pipeline.per_packet_loop()}")
    return pipeline.COMPILED_FEED


def test_extension_is_built_and_chosen():
    _compiled()
    assert capture.COMPILED_WHOLE_PCAPNG_EPBS is not None, "built from a _pcapscan.pyx without the EPB walk"
    for compiled in (
        pipeline.COMPILED_FEED,
        capture.COMPILED_WHOLE_PCAP_RECORDS,
        capture.COMPILED_WHOLE_PCAPNG_EPBS,
    ):
        built = Path(sys.modules[compiled.__module__].__file__)
        assert built.suffix == ".so", built
        # An editable install does not rebuild by itself: a .pyx edited since is not what runs.
        source = ROOT / "classifier" / (compiled.__module__.rpartition(".")[2] + ".pyx")
        if built.parent == source.parent:
            stale = f"{built.name} is older than {source.name}: rebuild (pip install -c constraints.txt -e .)"
            assert built.stat().st_mtime >= source.stat().st_mtime, stale
    assert capture.WHOLE_PCAP_RECORDS is capture.COMPILED_WHOLE_PCAP_RECORDS
    assert pipeline.per_packet_loop() == "compiled (Cython)"


def test_a_twin_is_found_only_when_built_whole_and_not_refused(monkeypatch):
    _compiled()
    from classifier.compiled import compiled_function

    assert compiled_function("_pcapscan", "whole_pcap_run") is capture.COMPILED_WHOLE_PCAP_RUN
    assert compiled_function("_no_such_extension", "f") is None  # not built
    # built from an older .pyx: a function its callers need is missing
    assert compiled_function("_pcapscan", "whole_pcap_run", "not_in_this_build") is None
    assert compiled_function("_pcapscan", "not_in_this_build") is None
    monkeypatch.setenv("CLASSIFIER_PURE_PYTHON", "1")
    assert compiled_function("_pcapscan", "whole_pcap_run") is None  # refused


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
    walk = capture.COMPILED_WHOLE_PCAPNG_EPBS
    captures = _captures()
    assert len(captures) >= 20, captures
    counted = 0
    for path in captures:
        monkeypatch.setattr(pipeline, "COMPILED_FEED", compiled)
        monkeypatch.setattr(capture, "WHOLE_PCAP_RECORDS", capture.COMPILED_WHOLE_PCAP_RECORDS)
        monkeypatch.setattr(capture, "COMPILED_WHOLE_PCAPNG_EPBS", walk)
        got = _scan(sigs, policy, path)
        monkeypatch.setattr(pipeline, "COMPILED_FEED", None)
        monkeypatch.setattr(capture, "WHOLE_PCAP_RECORDS", capture.whole_pcap_records)
        monkeypatch.setattr(capture, "COMPILED_WHOLE_PCAPNG_EPBS", None)
        want = _scan(sigs, policy, path)
        assert got[0] == want[0], f"{path.name}: records differ"
        assert got[1] == want[1], f"{path.name}: statistics differ"
        assert got[2] == want[2], path.name
        counted += got[2]
    assert counted > 10_000
    assert any(p.name.endswith((".pcapng", ".pcapng.gz")) for p in captures)  # the EPB walk ran


def _epb(
    order: str, iid: int, count: int, data: bytes, *, blen_delta: int = 0, trailer_delta: int = 0
) -> bytes:
    """An enhanced packet block (timestamp ``count`` in its interface's units)."""
    pad = b"\0" * (-len(data) % 4)
    blen = 32 + len(data) + len(pad)
    head = struct.pack(
        order + "IIIIIII", 6, blen + blen_delta, iid, count >> 32, count & 0xFFFFFFFF, len(data), len(data)
    )
    return head + data + pad + struct.pack(order + "I", blen + trailer_delta)


_SECOND = 1_764_806_400  # 2025-12-04 in seconds since 1970
# (index, linktype, units, offset, snaplen): microseconds; nanoseconds (counts past 2**53);
# 2**-60 s units (past 2**53 themselves); an offset of one day
_IFACES = [(0, 1, 10**6, 0, 0), (1, 113, 10**9, 0, 0), (2, 1, 1 << 60, 0, 0), (3, 1, 10**6, 86_400, 0)]


def _epb_stream(order: str) -> tuple[bytes, list[int]]:
    """EPBs every walk must take whole, then after each mark a block it must stop at."""
    good = [
        _epb(order, 0, _SECOND * 10**6 + 123_457, b"a" * 60),
        _epb(order, 1, _SECOND * 10**9 + 987_654_321, b"b" * 61),
        _epb(order, 2, (15 << 60) + 12345, b"c" * 62),
        _epb(order, 3, _SECOND * 10**6 + 1, b""),
        _epb(order, 1, (1 << 53) + 1, b"d" * 3),
    ]
    stops = [
        _epb(order, 4, _SECOND * 10**6, b"x"),  # unknown interface
        _epb(order, 0, 0xFFFF_FFFF_FFFF_FFFF, b"x"),  # timestamp out of range
        _epb(order, 0, _SECOND * 10**6, b"x" * 8, blen_delta=4),  # block length past the data
        _epb(order, 0, _SECOND * 10**6, b"x" * 8, trailer_delta=4),  # trailer differs
        _epb(order, 0, _SECOND * 10**6, b"x" * 8, blen_delta=-4),  # captured length > data
        struct.pack(order + "III", 5, 12, 12),  # an interface statistics block: not a packet
        _epb(order, 0, _SECOND * 10**6, b"x" * 8)[:-1],  # cut
    ]
    out = b"".join(good)
    marks = []  # (where a bad block starts, where the good ones after it start)
    for stop in stops:
        marks.append((len(out), len(out) + len(stop)))
        out += stop + b"".join(good)
    return out, marks


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_epb_walk_twins_agree_bit_for_bit(order):
    _compiled()
    walk = capture.COMPILED_WHOLE_PCAPNG_EPBS
    buf, marks = _epb_stream(order)
    pos = 0
    stopped = []
    while pos < len(buf):
        got: list = []
        want: list = []
        end = walk(buf, pos, order == ">", _IFACES, 1 << 24, got)
        assert end == capture.whole_pcapng_epbs(buf, pos, order == ">", _IFACES, 1 << 24, want)
        # timestamps equal to the last bit (the nanosecond and 2**-60 ones are Python's division)
        assert [(repr(r[0]), *r[1:]) for r in got] == [(repr(r[0]), *r[1:]) for r in want]
        assert [r[0] for r in want[:5]] == [
            _SECOND + 123_457 / 10**6,
            (_SECOND * 10**9 + 987_654_321) / 10**9,
            ((15 << 60) + 12345) / (1 << 60),
            (_SECOND * 10**6 + 1) / 10**6 + 86_400,
            ((1 << 53) + 1) / 10**9,
        ][: len(want[:5])]
        if end == pos:  # stopped at once: step over the block the reader's general path would take
            stopped.append(pos)
            pos = dict(marks)[pos]
        else:
            pos = end
    assert stopped == [start for start, _resume in marks]  # every bad block stops both walks, there
    # a limit below a block's length stops the walk too
    assert (
        walk(buf, 0, order == ">", _IFACES, 64, [])
        == capture.whole_pcapng_epbs(buf, 0, order == ">", _IFACES, 64, [])
        == 0
    )


def _pcap_records(order: str, records: list[tuple[int, int, int]]) -> bytes:
    """pcap record headers (ts_sec, ts_frac, captured length) each followed by its bytes."""
    out = b""
    for sec, frac, incl in records:
        out += struct.pack(order + "IIII", sec, frac, incl, incl) + bytes(range(incl % 256)) * (
            incl // 256 or 1
        )
    return out


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("units", [1e6, 1e9])
@pytest.mark.parametrize(
    "stop",
    [
        [],  # all whole: the scan ends where the buffer does
        [(7, 999_999, 4)],  # a fraction out of range for microseconds (in range for nanoseconds)
        [(7, 4_000_000_000, 4)],  # out of range for both
        [(7, 0, 300)],  # longer than the limit
        [(7, 0, 100)],  # runs past the buffer (cut below)
    ],
)
def test_pcap_record_scan_twins_agree_on_where_they_stop(order, units, stop):
    _compiled()
    lead = [(1_600_000_000 + i, i * 123_457 % 1_000_000, 60 + i) for i in range(5)]
    buf = b"xx" + _pcap_records(order, lead + stop + lead)
    if stop and stop[0][2] == 100:
        buf = buf[: len(buf) - len(_pcap_records(order, lead)) - 50]
    for limit in (200, 0xFFFF):
        got: list = []
        want: list = []
        end = capture.COMPILED_WHOLE_PCAP_RECORDS(buf, 2, order == ">", units, 1, limit, got)
        assert end == capture.whole_pcap_records(buf, 2, order == ">", units, 1, limit, want)
        assert got == want
        assert [repr(r[0]) for r in got] == [repr(r[0]) for r in want]  # the same floats, bit for bit
        assert len(got) >= 5
    # and from a position with fewer than 16 bytes left: nothing taken
    assert capture.COMPILED_WHOLE_PCAP_RECORDS(buf, len(buf) - 15, False, units, 1, 99, []) == len(buf) - 15


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
    assert "parsers: compiled (Cython): DNS messages, TLS ClientHello, QUIC Initial frames" in _classifier(
        "--version", env={"CLASSIFIER_PURE_PYTHON": ""}
    )
    forced = _classifier("--version", env={"CLASSIFIER_PURE_PYTHON": "1"})
    assert "per-packet loop: pure Python (CLASSIFIER_PURE_PYTHON is set)" in forced
    assert "parsers: pure Python (CLASSIFIER_PURE_PYTHON is set)" in forced


def test_without_the_extension_the_pure_loop_runs_and_says_so():
    """An install without a compiler has no ``_batchcount``: the import falls back, the scan works."""
    absent = (
        "import sys; sys.modules['classifier._batchcount'] = sys.modules['classifier._pcapscan'] = None; "
    )
    out = _classifier("--version", env={"CLASSIFIER_PURE_PYTHON": ""}, pre=absent)
    assert "per-packet loop: pure Python (not built: in-place counting, pcap record scan;" in out
    one = "import sys; sys.modules['classifier._pcapscan'] = None; "
    out = _classifier("--version", env={"CLASSIFIER_PURE_PYTHON": ""}, pre=one)
    assert "per-packet loop: partly compiled (not built: pcap record scan;" in out
    # The parsers' twins: each missing one named, the others still compiled.
    parsers = "import sys; sys.modules['classifier._hello'] = None; "
    out = _classifier("--version", env={"CLASSIFIER_PURE_PYTHON": ""}, pre=parsers)
    assert "parsers: partly compiled (not built: TLS ClientHello, QUIC Initial frames;" in out
    assert "per-packet loop: compiled (Cython)" in out
    # Without OpenSSL's headers only the QUIC Initial keys are missing: cryptography does them.
    keys = "import sys; sys.modules['classifier._quicinitial'] = None; "
    out = _classifier("--version", env={"CLASSIFIER_PURE_PYTHON": ""}, pre=keys)
    assert "parsers: partly compiled (not built: QUIC Initial keys;" in out
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
