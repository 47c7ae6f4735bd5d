"""``classifier scan --dask local``: the same records as ``classifier scan``, on a 2-worker LocalCluster.

Files on their own (one task per file) and ``--continuous`` (one task per partition of server
addresses, every task reading every file) must give byte-identical records and statistics;
directories and globs of rotated, partly gzipped files are read in tcpdump's order; Parquet parts
carry the record schema and read back as the same records. Without the extra, one line says how
to get it. ``make test`` installs the extra; CI fails if it is missing rather than skipping.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import sys
from pathlib import Path

import dpkt
import pytest
from conftest import REAL, ROOT, need_shared, run_cli

from classifier import dasking, inputpaths
from classifier.cli import main
from classifier.record import SCHEMA

if importlib.util.find_spec("dask") is None or importlib.util.find_spec("pyarrow") is None:
    if os.environ.get("CI"):
        pytest.fail("the optional extra dask is not installed (make test installs it)", pytrace=False)
    pytest.skip("the optional extra dask is not installed", allow_module_level=True)

DASK = ("--dask", "local", "--workers", "2")  # a LocalCluster of 2 worker processes


def _real(names: tuple[str, ...] = ()) -> list[str]:
    found = sorted(str(p) for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))
    return [p for p in found if not names or Path(p).name in names]


def _scan(tmp_path: Path, label: str, *args: str) -> tuple[bytes, bytes]:
    out, stats = tmp_path / f"{label}.out", tmp_path / f"{label}.stats.json"
    proc = run_cli("scan", "-q", "-o", str(out), "--stats", str(stats), *args, check_status=None)
    assert proc.returncode in (0, 3), proc.stderr.decode(errors="replace")
    return out.read_bytes(), stats.read_bytes()


@pytest.mark.real
def test_files_on_their_own_give_the_records_of_one_process(tmp_path: Path) -> None:
    captures = [*_real(), str(ROOT / "pcaps" / "malformed.pcap")]
    one = _scan(tmp_path, "one", *captures)
    many = _scan(tmp_path, "dask", *DASK, *captures)
    assert many[1] == one[1]
    assert many[0] == one[0]  # flows numbered on across files, as one process does


@pytest.mark.real
def test_continuous_gives_the_records_of_one_process(tmp_path: Path) -> None:
    captures = _real()
    one = _scan(tmp_path, "one", "--continuous", *captures)
    many = _scan(tmp_path, "dask", *DASK, "--continuous", *captures)
    assert many == one


def _rotate(source: Path, directory: Path, pieces: int) -> list[Path]:
    """Split a capture into tcpdump -C style files (x, x1, ..., x10, ...); every third one gzipped."""
    with source.open("rb") as f:
        packets = list(dpkt.pcap.Reader(f))
    directory.mkdir()
    size = -(-len(packets) // pieces)
    files = []
    for i in range(pieces):
        path = directory / (f"rot.pcap{i}" if i else "rot.pcap")
        with path.open("wb") as f:
            w = dpkt.pcap.Writer(f, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
            for ts, buf in packets[i * size : (i + 1) * size]:
                w.writepkt(buf, ts=ts)
        if i % 3 == 2:
            path.write_bytes(gzip.compress(path.read_bytes()))
        files.append(path)
    return files


@pytest.mark.real
def test_rotated_files_by_directory_and_glob(tmp_path: Path) -> None:
    files = _rotate(Path(_real(("wechat.pcap",))[0]), tmp_path / "rot", 12)
    one = _scan(tmp_path, "one", "--continuous", *map(str, files))
    assert one[0].count(b"\n") > 20
    by_dir = _scan(tmp_path, "dir", *DASK, "--continuous", str(tmp_path / "rot"))
    by_glob = _scan(tmp_path, "glob", *DASK, "--continuous", str(tmp_path / "rot" / "rot.pcap*"))
    assert by_dir == one
    assert by_glob == one
    # Read in lexical order (rot.pcap, rot.pcap1, rot.pcap10, ...) the stream would be scrambled.
    assert inputpaths.expand_inputs([str(tmp_path / "rot")]) == [str(f) for f in files]


def _normalise(rec: dict) -> dict:
    rec = dict(rec)
    del rec["flow"]
    rec["evidence"] = [{k: v for k, v in e.items() if v is not None} for e in rec["evidence"]]
    return rec


@pytest.mark.real
def test_parquet_parts_have_the_record_schema_and_the_records(tmp_path: Path) -> None:
    import pyarrow.dataset as ds

    captures = _real(("wechat.pcap", "sites.pcapng", "dns.pcap", "quic.pcap"))
    records = [json.loads(line) for line in _scan(tmp_path, "one", *captures)[0].splitlines()]
    out = tmp_path / "parts"
    proc = run_cli("scan", "-q", *DASK, "--format", "parquet", "-o", str(out), *captures)
    assert proc.returncode == 0, proc.stderr
    parts = sorted(p.name for p in out.iterdir())
    assert parts == [f"part-{i:05d}.parquet" for i in range(len(captures))]  # one part per task
    table = ds.dataset(str(out), format="parquet").to_table()
    assert table.schema.names == list(SCHEMA)
    assert str(table.schema.field("alpn").type) == "list<element: string>"
    assert str(table.schema.field("evidence").type).startswith("list<element: struct<kind: string")
    got = sorted((_normalise(r) for r in table.to_pylist()), key=lambda r: json.dumps(r, sort_keys=True))
    want = sorted((_normalise(r) for r in records), key=lambda r: json.dumps(r, sort_keys=True))
    assert got == want
    # An existing set of parts is never overwritten.
    again = run_cli("scan", "-q", *DASK, "--format", "parquet", "-o", str(out), *captures, check_status=2)
    assert b"refusing to overwrite" in again.stderr


def test_parquet_without_dask_writes_one_part(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    demo = str(ROOT / "pcaps" / "demo.pcap")
    records = [json.loads(line) for line in _scan(tmp_path, "one", demo)[0].splitlines()]
    run_cli("scan", "-q", "--format", "parquet", "-o", str(tmp_path / "p"), demo)
    table = pq.read_table(tmp_path / "p" / "part-00000.parquet")
    assert [r["flow"] for r in table.to_pylist()] == [r["flow"] for r in records]
    assert run_cli("scan", "--format", "parquet", demo, check_status=2).stderr.count(b"\n") == 1


def test_table_summary_is_the_same(tmp_path: Path) -> None:
    captures = [str(p) for p in sorted((ROOT / "pcaps").glob("*.pcap"))]
    one = run_cli("scan", "--format", "table", *captures, check_status=None)
    many = run_cli("scan", "--format", "table", *DASK, *captures, check_status=None)
    assert many.returncode == one.returncode
    assert many.stdout == one.stdout
    assert b"dask: 1/" in many.stderr  # progress while it runs


def test_without_the_extra_one_line_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("dask", "dask.distributed", "pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    demo = str(ROOT / "pcaps" / "demo.pcap")
    assert main(["scan", "--dask", "local", demo]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'classifier[dask]'" in err
    assert main(["scan", "--format", "parquet", "-o", str(tmp_path / "parts"), demo]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pyarrow" in err and "pip install" in err
    assert not (tmp_path / "parts").exists()  # nothing created before the refusal


def test_an_unreachable_scheduler_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dasking, "CONNECT_TIMEOUT", "2s")
    demo = str(ROOT / "pcaps" / "demo.pcap")
    assert main(["scan", "-q", "--dask", "tcp://127.0.0.1:9", demo]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the scheduler" in err


def test_a_glob_that_matches_nothing_is_refused(tmp_path: Path) -> None:
    proc = run_cli("scan", "--dask", "local", str(tmp_path / "*.pcap"), check_status=2)
    assert b"no file matches" in proc.stderr
