"""Values from the input that reach a library call: a file name that is not UTF-8, a server name
that looks like rich markup. Each once ended the scan with "internal error"; now each is printed
as it is, and the scan ends normally."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from classifier.exitcodes import Exit

DEMO = ROOT / "pcaps" / "demo.pcap"


def scan(*args: str | bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "classifier", "scan", *args],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"},
    )


@pytest.fixture
def badly_named(tmp_path) -> bytes:
    path = os.fsencode(tmp_path) + b"/cap\xff\xfe.pcap"  # a name no UTF-8 decoder accepts
    with open(path, "wb") as f:
        f.write(DEMO.read_bytes())
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "file"])
def test_a_file_name_that_is_not_utf8(tmp_path, badly_named, fmt, to_file):
    out = tmp_path / f"out.{fmt}"
    missing = os.fsencode(tmp_path) + b"/missing\xff.pcap"
    proc = scan(badly_named, missing, "--format", fmt, *(["-o", str(out)] if to_file else []))
    assert proc.returncode == Exit.INPUT, proc.stderr  # the missing input, nothing else
    assert b"internal error" not in proc.stderr
    text = out.read_text(encoding="utf-8") if to_file else proc.stdout.decode("utf-8")
    if fmt == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        given = (
            os.fsdecode(badly_named).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        )
        assert given.endswith("/cap\\xff\\xfe.pcap")
        assert len(records) == 34 and {r["file"] for r in records} == {given}  # the path as given
    elif fmt == "csv":
        assert text.count("cap\\xff\\xfe.pcap,") == 34
    else:
        assert "missing\\xff.pcap: no such file" in text


@pytest.fixture
def markup_sni(tmp_path) -> str:
    # web.wechat.com has 14 bytes; the replacement too, so every length field still holds
    data = DEMO.read_bytes()
    assert data.count(b"web.wechat.com") >= 1
    path = tmp_path / "markup.pcap"
    path.write_bytes(data.replace(b"web.wechat.com", b"[/x]:smile:[b]"))
    return str(path)


def test_a_server_name_that_looks_like_markup_is_printed_as_it_is(markup_sni):
    proc = scan(markup_sni, "--format", "table")
    assert proc.returncode == Exit.OK, proc.stderr
    assert "[/x]:smile:[b]" in proc.stdout.decode()


def test_the_summary_on_stderr_prints_it_too(markup_sni):
    proc = scan(markup_sni)
    assert proc.returncode == Exit.OK, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "[/x]:smile:[b]" in {r["sni"] for r in records}
    assert "[/x]:smile:[b]" in proc.stderr.decode()
