"""The command line as a user meets it: formats, views, stdin, exit status, one-line errors."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, scan_records

from classifier.record import CSV_COLUMNS, SCHEMA

DEMO = str(ROOT / "pcaps" / "demo.pcap")
MALFORMED = str(ROOT / "pcaps" / "malformed.pcap")


def by_host(records):
    out = {}
    for r in records:
        out.setdefault(r["hostname"], []).append(r)
    return out


def test_jsonl_to_file_and_stats(tmp_path):
    out, stats = tmp_path / "o.jsonl", tmp_path / "s.json"
    proc = run_cli("scan", DEMO, "-o", str(out), "--stats", str(stats))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 34 and all(list(r) == list(SCHEMA) for r in records)
    assert sorted(r["flow"] for r in records) == list(range(1, 35))  # each flow exactly once
    s = json.loads(stats.read_text())
    assert s["packets"] == 264 and s["flows"] == 34 and s["problems"] == []
    assert b"Flows by app, category and action" in proc.stderr  # summary on stderr by default


def test_dash_output_is_standard_output(tmp_path):
    """``-o -`` writes the records to standard output, as tcpdump -w - does, not a file named "-"
    (two sessions left such a file behind); ``./-`` still names that file."""
    cmd = [sys.executable, "-m", "classifier", "scan", DEMO, "-q"]
    proc = subprocess.run([*cmd, "-o", "-"], capture_output=True, cwd=tmp_path, timeout=300, check=True)
    assert len(proc.stdout.splitlines()) == 34 and not (tmp_path / "-").exists()
    proc = subprocess.run([*cmd, "-o", "./-"], capture_output=True, cwd=tmp_path, timeout=300, check=True)
    assert proc.stdout == b"" and len((tmp_path / "-").read_bytes().splitlines()) == 34


def test_table_format_summarises_app_category_action():
    text = run_cli("scan", DEMO, "--format", "table").stdout.decode()
    assert "Flows by app, category and action" in text and "Top 15 hostnames" in text
    row = next(line for line in text.splitlines() if "wechat" in line and "payments" in line)
    assert "block" in row and row.split("│")[4].strip() == "1"


def test_csv_format():
    text = run_cli("scan", DEMO, "--format", "csv", "-q").stdout.decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == CSV_COLUMNS and CSV_COLUMNS[-1] == "provisions"
    assert len(rows) == 35
    hosts = {row[CSV_COLUMNS.index("hostname")]: row for row in rows[1:]}
    pay = hosts["pay.weixin.qq.com"]
    assert pay[CSV_COLUMNS.index("action")] == "block"
    assert "wechat-2020-payments:effective" in pay[-1]


def test_view_and_as_of_change_the_verdicts():
    announced = by_host(scan_records(DEMO, "--as-of", "2020-09-22"))
    in_force = by_host(scan_records(DEMO, "--as-of", "2020-09-22", "--view", "in-force"))
    later = by_host(scan_records(DEMO, "--as-of", "2022-01-01T00:00:00Z"))
    web = "web.wechat.com"
    assert {r["action"] for r in announced[web]} == {"block"}
    assert {r["action"] for r in in_force[web]} == {"log"}  # enjoined before it took effect
    assert {r["action"] for r in later[web]} == {"log"}  # rescinded
    assert all(r["view"] == "in-force" for r in in_force[web])
    assert "enjoin" in in_force[web][0]["reason"]
    assert {r["action"] for r in announced["faketiktok.com"]} == {"allow"}


def test_stdin_and_gzip(tmp_path):
    data = (ROOT / "pcaps" / "demo.pcap").read_bytes()
    plain = run_cli("scan", "-", "-q", stdin=data).stdout
    zipped = run_cli("scan", "-", "-q", stdin=gzip.compress(data)).stdout
    gz = tmp_path / "demo.pcap.gz"
    gz.write_bytes(gzip.compress(data))
    from_file = run_cli("scan", str(gz), "-q").stdout
    strip = [{k: v for k, v in json.loads(line).items() if k != "file"} for line in plain.splitlines()]
    assert len(strip) == 34

    def records(out):
        return [{k: v for k, v in json.loads(line).items() if k != "file"} for line in out.splitlines()]

    assert strip == records(zipped)
    assert strip == records(from_file)


def test_truncated_input_keeps_records_and_exits_3():
    proc = run_cli("scan", MALFORMED, check_status=3)
    records = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(records) == 4
    err = proc.stderr.decode()
    assert "offset 4239" in err and "truncated record" in err and "packet 30" in err
    assert "ipv4.ihl 1" in err and "Traceback" not in err


def test_unreadable_input_among_good_ones(tmp_path):
    missing = tmp_path / "nope.pcap"
    proc = run_cli("scan", str(missing), DEMO, "-q", check_status=3)
    assert len(proc.stdout.decode().splitlines()) == 34
    assert "nope.pcap" in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()


def split_capture(tmp_path, at: int):
    """demo.pcap cut in two files at packet ``at`` (as tcpdump -C would rotate it)."""
    import dpkt

    with open(DEMO, "rb") as f:
        packets = list(dpkt.pcap.Reader(f))
    paths = []
    for i, part in enumerate((packets[:at], packets[at:])):
        path = tmp_path / f"part{i}.pcap"
        with open(path, "wb") as f:
            w = dpkt.pcap.Writer(f, linktype=1)
            for ts, buf in part:
                w.writepkt(buf, ts=ts)
        paths.append(str(path))
    return paths


def test_each_file_alone_unless_continuous(tmp_path):
    """A flow cut by file rotation is one flow with --continuous, two pieces without."""
    whole = scan_records(DEMO)
    first, second = split_capture(tmp_path, 100)  # packet 100 is inside a flow
    alone = scan_records(first, second)
    merged = scan_records("--continuous", first, second)

    def strip(rs):
        return sorted(
            (
                r["src"],
                r["sport"],
                r["dst"],
                r["dport"],
                r["hostname"],
                r["action"],
                r["packets_c2s"],
                r["packets_s2c"],
            )
            for r in rs
        )

    assert strip(merged) == strip(whole)
    assert len(alone) == len(whole) + 1
    assert {r["file"] for r in alone} == {str(first), str(second)}  # the paths as given


@pytest.mark.parametrize(
    "damage,entry",
    [
        (
            lambda d: (d / "apps" / "wechat.toml").write_text(
                (d / "apps" / "wechat.toml").read_text().replace('role = "payments"', 'role = "banking"', 1)
            ),
            "wechat",
        ),
        (
            lambda d: (d / "policy" / "provisions.toml").write_text(
                (d / "policy" / "provisions.toml").read_text() + "\n[[provision]\n"
            ),
            "provisions.toml",
        ),
        (
            lambda d: (d / "prefixes" / "AS45090-ipv4.txt").write_text(
                (d / "prefixes" / "AS45090-ipv4.txt").read_text() + "10.0.0.0/33\n"
            ),
            "AS45090-ipv4.txt",
        ),
    ],
)
def test_broken_signature_file_is_one_line_error(tmp_path, damage, entry):
    from classifier.signatures import shipped_directory

    d = tmp_path / "sigs"
    shutil.copytree(shipped_directory(), d)
    damage(d)
    proc = run_cli("scan", DEMO, "--signatures", str(d), check_status=2)
    err = proc.stderr.decode().strip()
    assert "\n" not in err and err.startswith("classifier: error: ")
    assert entry in err and "Traceback" not in err
    assert proc.stdout == b""


def test_bad_arguments_exit_2():
    err = run_cli("scan", DEMO, "--as-of", "yesterday", check_status=2).stderr.decode()
    assert "error: argument --as-of: 'yesterday' is not an ISO 8601" in err and "Traceback" not in err
    run_cli("scan", DEMO, "--max-flows", "0", check_status=2)
    run_cli("scan", DEMO, "--view", "maybe", check_status=2)


def test_tiny_flow_cap_evicts_and_still_reports_every_flow(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    packets = []
    for i in range(40):  # 20 concurrent UDP flows, each seen twice
        p = Ether() / IP(src="192.0.2.1", dst="203.0.113.5") / UDP(sport=10000 + i % 20, dport=9999)
        p = p / b"x"
        p.time = 1_600_000_000 + i
        packets.append(p)
    cap = tmp_path / "many.pcap"
    wrpcap(str(cap), packets)
    stats = tmp_path / "s.json"
    records = scan_records(str(cap), "--max-flows", "5", "--stats", str(stats))
    s = json.loads(stats.read_text())
    assert s["evicted"] > 0
    assert sum(r["packets_c2s"] + r["packets_s2c"] for r in records) == 40  # no packet lost
    assert sum(r["end_reason"] == "evicted" for r in records) == s["evicted"]
    # every eviction is a record, and the 5 flows live at the end are reported too
    assert len(records) == s["evicted"] + 5 and len(records) > 20


def test_policy_and_schema_commands():
    text = run_cli("policy", "--as-of", "2020-09-22", "--view", "announced").stdout.decode()
    assert "wechat-2020-hosting" in text and "effective" in text
    timeline = run_cli("policy", "--timeline", "--view", "in-force").stdout.decode()
    assert "tiktok-pafaca-hosting" in timeline
    schema = run_cli("schema").stdout.decode()
    assert all(f"`{k}`" in schema for k in SCHEMA)


def test_signatures_check_command():
    info = json.loads(run_cli("signatures", "check").stdout)
    assert info["prefixes"] > 10000 and set(info["operators"]) == {"bytedance", "tencent"}


def test_non_editable_install_finds_the_shipped_data(tmp_path):
    """`pip install .` (not editable) must carry signatures and policy inside the package."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    code = (
        "import classifier.signatures as s, classifier.policy as p; "
        "import classifier.bgp.run, classifier.gateway.runner, classifier.inspect.quic; "
        "d = s.shipped_directory(); sig = s.Signatures.load(); pol = p.Policy.load(d / 'policy'); "
        "print(d); print(len(sig.prefixes))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    where, count = proc.stdout.decode().split()
    assert where.startswith(str(target)) and int(count) > 10000
    # Every module and every shipped data file is in the install (a subpackage missing from
    # pyproject's list works in the editable install the other tests use, and nowhere else).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "classifier").rglob("*.py")}
    installed = {p.relative_to(target).as_posix() for p in (target / "classifier").rglob("*.py")}
    assert modules - installed == set()
    data = {
        p.relative_to(ROOT / "signatures").as_posix()
        for p in (ROOT / "signatures").rglob("*")
        if p.is_file() and p.suffix in {".toml", ".txt", ".md"}
    }
    shipped = {p.relative_to(target / "classifier/_signatures").as_posix() for p in Path(where).rglob("*")}
    assert data - shipped == set()
    scan = subprocess.run(
        [sys.executable, "-m", "classifier", "scan", str(ROOT / "pcaps/demo.pcap"), "-q"],
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert scan.returncode == 0, scan.stderr.decode()
    assert scan.stdout.count(b"\n") > 10


def test_readme_schema_table_matches_the_code():
    from classifier.record import schema_markdown

    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- schema:start -->\n", 1)[1].split("\n<!-- schema:end -->", 1)[0]
    assert table == schema_markdown()


def test_readme_and_help_list_every_exit_status():
    from classifier.exitcodes import Exit

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit status\n", 1)[1].split("\n### ", 1)[0]
    documented = {
        int(line.split("|")[1])
        for line in section.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip().isdigit()
    }
    assert documented == {int(s) for s in Exit}
    help_text = run_cli("scan", "--help").stdout.decode()
    assert all(f"\n  {int(s):<4}" in help_text for s in Exit)


def test_peering_map_gives_transit_peering(tmp_path):
    """Next hop 02:00:5e:10:00:fe (the demo's router) mapped to a ByteDance ASN."""
    peering = tmp_path / "peering.toml"
    peering.write_text(
        '[[neighbour]]\nmac = "02:00:5E:10:00:FE"\nasn = 396986\nname = "test PNI"\n'
        'source = "test"\ndate = "2026-01-01"\n'
    )
    records = scan_records(DEMO, "--peering", str(peering))
    by = by_host(records)
    tiktok = by["api16-normal-c-useast1a.tiktokv.com"][0]
    assert "transit-peering" in tiktok["categories"]
    assert any(e["kind"] == "peering" and "AS396986" in e["value"] for e in tiktok["evidence"])
    google = by["www.google.com"][0]  # same next hop, no app: operator only, never blocked
    assert google["operator"] == "bytedance" and google["app"] is None
    assert google["category"] == "transit-peering" and google["action"] == "log"
    without = by_host(scan_records(DEMO))["www.google.com"][0]
    assert without["category"] is None and without["action"] == "allow"
