"""``classifier report`` and ``scan --html``: one self-contained HTML file, checked by structure
(html.parser) and rendered in a real headless Chromium (no console errors, the plots there)."""

from __future__ import annotations

import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import ROOT, need_program, run_cli

from classifier.reportdata import MAX_BUCKETS, Buckets, Grouped

DEMO = str(ROOT / "pcaps" / "demo.pcap")


class Page(HTMLParser):
    """Tags, SVG ids, rects per SVG, table rows and external references of a document."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.svgs: dict[str, int] = {}
        self.rows: list[list[str]] = []
        self.external: list[str] = []
        self._svg: str | None = None
        self._row: list[str] | None = None
        self._cell = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href"):
            if a.get(name) and not a[name].startswith("#"):
                self.external.append(a[name])
        if tag == "svg":
            self._svg = a.get("id") or "?"
            self.svgs[self._svg] = 0
        elif tag == "rect" and self._svg is not None:
            self.svgs[self._svg] += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("")
            self._cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag in ("td", "th"):
            self._cell = False

    def handle_data(self, data: str) -> None:
        if self._cell and self._row is not None:
            self._row[-1] += data


@pytest.fixture(scope="module")
def demo_records(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "demo.jsonl"
    run_cli("scan", DEMO, "-q", "-o", str(path))
    return path


def records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scan_report_has_totals_plots_policy_and_every_block(demo_records, tmp_path):
    out = tmp_path / "r.html"
    run_cli("report", str(demo_records), "-o", str(out), "-q")
    page = Page(out.read_text())
    assert "script" not in page.tags and page.external == []  # nothing runs, nothing fetched
    for plot in ("plot-totals", "plot-actions", "plot-evidence", "plot-confidence", "plot-policy"):
        assert page.svgs.get(plot, 0) > 0, plot
    records = records_of(demo_records)
    # The totals table: one row per app x category x action, flows summing to the records.
    totals = [r for r in page.rows if len(r) == 5 and r[2] in ("block", "log", "allow")]
    assert sum(int(r[3]) for r in totals) == len(records)
    blocked = [r for r in records if r["action"] == "block"]
    block_rows = [r for r in page.rows if len(r) == 7 and r[0] != "app"]
    assert sum(int(r[3]) for r in block_rows) == len(blocked) > 0
    assert {r["reason"] for r in blocked} == {r[6] for r in block_rows}
    # The policy timeline lists the provisions that covered the flows, in the records' view.
    covered = {p["id"] for r in records for p in r["provisions"]}
    text = out.read_text()
    assert all(pid in text for pid in covered)
    assert "(announced view)" in text


def test_wire_text_is_escaped(tmp_path, demo_records):
    rec = records_of(demo_records)[0]
    rec["hostname"] = "<img src=x onerror=alert(1)>.example"
    rec["action"] = "block"
    rec["reason"] = "<script>alert(1)</script>"
    path = tmp_path / "evil.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    out = tmp_path / "evil.html"
    run_cli("report", str(path), "-o", str(out), "-q")
    page = Page(out.read_text())
    assert "script" not in page.tags and "img" not in page.tags
    assert "&lt;script&gt;" in out.read_text()


def bgp_lines() -> list[dict]:
    base = {
        "file": "u.mrt",
        "source": "update",
        "origin_asn": 64500,
        "origin_as_set": None,
        "operator": "bytedance",
        "viewpoint_asn": 64496,
        "app": "tiktok",
        "peer_asn": 64496,
        "peer_ip": "192.0.2.1",
        "path_id": None,
        "view": "announced",
        "provisions": [],
        "decided_at": "2021-01-01T00:00:00Z",
        "rule": "r",
        "reason": "why",
        "extra_new_field": 1,
    }
    routes = [
        {
            **base,
            "record": "route",
            "prefix": f"198.51.100.{i * 16}/28",
            "as_path": "64497 64500",
            "neighbour_asn": 64497 if i % 2 else 64500,
            "relationship": "indirect" if i % 2 else "direct",
            "neighbour_operator": None if i % 2 else "bytedance",
            "first_seen": "2021-01-01T00:00:00Z",
            "last_seen": "2021-01-01T01:00:00Z",
            "announcements": 2,
            "withdrawals": 1,
            "action": "log" if i % 2 else "block",
        }
        for i in range(6)
    ]
    events = [
        {
            **base,
            "record": "event",
            "prefix": "198.51.100.0/28",
            "time": f"2021-01-01T00:{m:02d}:00Z",
            "event": "announce" if m % 3 else "withdraw",
            "neighbour_asn": 64500,
            "relationship": "direct",
            "action": "block",
            "as_path": "64500",
        }
        for m in range(0, 60, 5)
    ]
    return routes + events


def test_bgp_report_has_neighbour_table_and_announcement_timeline(tmp_path):
    path = tmp_path / "bgp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bgp_lines()))
    out = tmp_path / "bgp.html"
    run_cli("report", str(path), "-o", str(out), "-q")
    page = Page(out.read_text())
    assert page.svgs.get("plot-announcements", 0) > 0 and page.svgs.get("plot-relationship", 0) > 0
    neighbours = {r[0]: r for r in page.rows if len(r) == 9 and r[0].startswith("AS")}
    assert neighbours["AS64500"][2] == "direct" and neighbours["AS64500"][5] == "3"  # routes
    assert neighbours["AS64497"][7] == "6" and neighbours["AS64497"][8] == "3"  # ann., withdrawals
    changes = [r for r in page.rows if len(r) == 8 and r[0] in ("announce", "withdraw")]
    assert sum(int(r[3]) for r in changes) == 12


def test_bad_lines_are_named_and_the_rest_reported(tmp_path, demo_records):
    path = tmp_path / "mixed.jsonl"
    lines = demo_records.read_text().splitlines()
    odd = {**json.loads(lines[0]), "bytes_c2s": "many", "evidence": "x"}
    path.write_text("\n".join([lines[0], "{not json", '{"a": 1}', json.dumps(odd), *lines[1:]]) + "\n")
    out = tmp_path / "r.html"
    proc = run_cli("report", str(path), "-o", str(out), "-q", check_status=3)
    err = proc.stderr.decode()
    assert "mixed.jsonl: line 2: not JSON" in err and "mixed.jsonl: line 3: neither" in err
    assert "mixed.jsonl: line 4: a field is not of its schema type" in err
    assert "Traceback" not in err
    totals = [r for r in Page(out.read_text()).rows if len(r) == 5 and r[2] in ("block", "log", "allow")]
    assert sum(int(r[3]) for r in totals) == len(lines)


def test_mixed_kinds_and_clobbering_are_refused(tmp_path, demo_records):
    bgp = tmp_path / "bgp.jsonl"
    bgp.write_text(json.dumps(bgp_lines()[0]) + "\n")
    proc = run_cli("report", str(demo_records), str(bgp), "-o", str(tmp_path / "x.html"), check_status=2)
    assert "mix scan and bgp records" in proc.stderr.decode()
    before = demo_records.read_bytes()
    proc = run_cli("report", str(demo_records), "-o", str(demo_records), check_status=2)
    assert "refusing to overwrite an input" in proc.stderr.decode()
    assert demo_records.read_bytes() == before


def test_time_buckets_and_groups_stay_bounded():
    b = Buckets()
    for t in range(0, 10_000_000, 997):
        b.add(float(t), "block" if t % 2 else "log")
    assert len(b.counts) <= MAX_BUCKETS
    assert sum(sum(c.values()) for c in b.counts.values()) == len(range(0, 10_000_000, 997))
    g = Grouped(limit=10)
    for i in range(1000):
        g.add((i % 300,), float(i))
    assert len(g.rows) <= 20 and len(g.top()) == 10
    assert sum(v[0] for _, v in g.top()) + g.hidden() == 1000


def test_scan_html_in_the_same_run(tmp_path, demo_records):
    out = tmp_path / "scan.html"
    run_cli("scan", DEMO, "-q", "-o", str(tmp_path / "r.jsonl"), "--html", str(out))
    page = Page(out.read_text())
    assert page.svgs.get("plot-actions", 0) > 0
    totals = [r for r in page.rows if len(r) == 5 and r[2] in ("block", "log", "allow")]
    assert sum(int(r[3]) for r in totals) == len(records_of(demo_records))
    assert "264 packets" in out.read_text()  # the run's input statistics are in it
    proc = run_cli("scan", DEMO, "-q", "--html", DEMO, check_status=2)
    assert "--html" in proc.stderr.decode()


# -- a real browser ------------------------------------------------------------------------------


def need_chromium() -> str:
    return need_program("chromium", "CI must render the report")


def chromium(page: Path, tmp_path: Path, *extra: str) -> tuple[str, str]:
    """(DOM after load, console messages) of ``page`` in headless Chromium."""
    argv = [
        need_chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        page.as_uri(),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = "\n".join(line for line in proc.stderr.splitlines() if ":CONSOLE" in line)
    return proc.stdout, console


def test_chromium_sees_console_errors_at_all(tmp_path):
    """The detector itself: a page that logs an error is caught (else the next test proves nothing)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><script>console.error("boom")</script></body></html>')
    _dom, console = chromium(bad, tmp_path, "--dump-dom")
    assert "boom" in console


def test_report_renders_in_chromium_without_console_errors(tmp_path, demo_records):
    out = tmp_path / "r.html"
    run_cli("report", str(demo_records), "-o", str(out), "-q")
    dom, console = chromium(out, tmp_path, "--dump-dom")
    assert console == ""
    page = Page(dom)
    for plot in ("plot-actions", "plot-policy", "plot-totals"):
        assert page.svgs.get(plot, 0) > 0, plot
    shot = tmp_path / "r.png"
    chromium(out, tmp_path, f"--screenshot={shot}", "--window-size=1200,2000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_large_inputs_are_aggregated_not_listed(tmp_path, demo_records):
    from classifier.reportdata import MAX_ROWS

    rec = next(r for r in records_of(demo_records) if r["action"] == "block")
    path = tmp_path / "many.jsonl"
    with path.open("w") as f:
        for i in range(3 * MAX_ROWS):
            f.write(
                json.dumps(
                    {
                        **rec,
                        "flow": i,
                        "hostname": f"h{i}.tiktok.com",
                        "first_ts": f"2025-03-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                    }
                )
                + "\n"
            )
    out = tmp_path / "many.html"
    run_cli("report", str(path), "-o", str(out), "-q")
    page = Page(out.read_text())
    block_rows = [r for r in page.rows if len(r) == 7 and r[0] != "app"]
    assert len(block_rows) == MAX_ROWS
    assert f"{3 * MAX_ROWS - MAX_ROWS} more blocked flows in smaller groups not shown" in out.read_text()
    assert page.svgs["plot-actions"] <= 240 + 3  # bars per bucket, at most 240 buckets (+ legend)
