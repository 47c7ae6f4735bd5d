"""``scan --write-pcap``: the packets of attributed flows, in input order, as a pcap tshark reads."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import dpkt
from conftest import ROOT, need_program, run_cli

from classifier.flows import DECIDED, Flow
from classifier.pcapout import PacketSink, matches, parse_where

DEMO = str(ROOT / "pcaps" / "demo.pcap")


def need_tshark() -> str:
    return need_program("tshark", "CI must read the written pcap with it")


def tshark_tuples(path: Path) -> Counter:
    """Packets per unordered (address, port, address, port), as tshark reads the file."""
    proc = subprocess.run(
        [
            need_tshark(),
            "-n",
            "-r",
            str(path),
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.srcport",
            "-e",
            "udp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "udp.dstport",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out: Counter = Counter()
    for line in proc.stdout.splitlines():
        s4, s6, d4, d6, ts, us, td, ud = line.split(",")
        a, b = (s4 or s6, int(ts or us)), (d4 or d6, int(td or ud))
        out[tuple(sorted([a, b]))] += 1
    return out


def record_tuples(records: list[dict]) -> Counter:
    out: Counter = Counter()
    for r in records:
        out[tuple(sorted([(r["src"], r["sport"]), (r["dst"], r["dport"])]))] += (
            r["packets_c2s"] + r["packets_s2c"]
        )
    return out


def frames(path: str | Path) -> list[bytes]:
    with open(path, "rb") as f:
        return [buf for _ts, buf in dpkt.pcap.Reader(f)]


def is_subsequence(small: list[bytes], big: list[bytes]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def scan(tmp_path: Path, *extra: str) -> tuple[list[dict], Path, subprocess.CompletedProcess]:
    out = tmp_path / "out.pcap"
    rec = tmp_path / "r.jsonl"
    proc = run_cli("scan", DEMO, "-o", str(rec), "--write-pcap", str(out), *extra)
    return [json.loads(line) for line in rec.read_text().splitlines()], out, proc


def test_every_packet_of_every_attributed_flow_in_input_order(tmp_path):
    records, out, proc = scan(tmp_path)
    attributed = [r for r in records if r["app"] or r["operator"]]
    assert 0 < len(attributed) < len(records)  # the demo has both: the filter is exercised
    assert tshark_tuples(out) == record_tuples(attributed)
    written = frames(out)
    assert len(written) == sum(r["packets_c2s"] + r["packets_s2c"] for r in attributed)
    assert is_subsequence(written, frames(DEMO))  # in input order
    assert f"{len(written)} packets to {out}" in proc.stderr.decode()


def test_where_narrows_to_the_flows_asked_for(tmp_path):
    records, out, _ = scan(tmp_path, "--write-pcap-where", "action=block,app=wechat")
    wanted = [r for r in records if r["action"] == "block" and r["app"] == "wechat"]
    assert wanted and len(wanted) < len([r for r in records if r["app"]])
    assert tshark_tuples(out) == record_tuples(wanted)
    records, out, _ = scan(tmp_path, "--write-pcap-where", "app=wechat|tiktok,categories=hosting")
    wanted = [r for r in records if r["app"] in ("wechat", "tiktok") and "hosting" in r["categories"]]
    assert tshark_tuples(out) == record_tuples(wanted)


def test_where_reads_the_community_id_of_the_seed_in_use(tmp_path):
    """``--write-pcap-where community_id=...`` names the flow by the ID its record carries."""
    records, _, _ = scan(tmp_path, "--community-id-seed", "4242")
    target = next(r for r in records if r["app"])
    records, out, _ = scan(
        tmp_path,
        "--community-id-seed",
        "4242",
        "--write-pcap-where",
        f"community_id={target['community_id']}",
    )
    assert tshark_tuples(out) == record_tuples([target])


def test_bad_where_and_clobbering_are_refused_before_anything_is_written(tmp_path):
    before = Path(DEMO).read_bytes()
    for args, message in [
        (("--write-pcap", DEMO), "refusing to overwrite an input"),
        (("--write-pcap-where", "app=wechat"), "--write-pcap-where needs --write-pcap"),
        (
            ("--write-pcap", str(tmp_path / "x.pcap"), "--write-pcap-where", "packets_c2s=3"),
            "it changes until the flow ends",
        ),
        (("--write-pcap", str(tmp_path / "x.pcap"), "--write-pcap-where", "app"), "is not field=value"),
        (("--write-pcap", "-"), "give a file name"),
    ]:
        proc = run_cli("scan", DEMO, "-q", "-o", os.devnull, *args, check_status=2)
        err = proc.stderr.decode()
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert Path(DEMO).read_bytes() == before


def test_where_matching():
    rec = {"app": "wechat", "categories": ["hosting", "cdn"], "ech": False, "server_asn": None}
    assert matches(rec, parse_where("app=WeChat,categories=cdn"))
    assert matches(rec, parse_where("ech=false,server_asn=null"))
    assert not matches(rec, parse_where("app=tiktok"))
    assert not matches(rec, parse_where("categories=payments|app-store"))


def fake_flow(fid: int) -> Flow:
    flow = Flow(fid, 6, b"\xc0\x00\x02\x01", 1000 + fid, b"\xc6\x33\x64\x01", 443, 0.0)
    return flow


def decide(flow: Flow, app: str | None) -> None:
    flow.stage = DECIDED
    flow.attribution = SimpleNamespace(app=app, operator=None)


def test_an_undecided_flow_beyond_the_buffer_is_detached_not_lost(tmp_path):
    out = tmp_path / "o.pcap"
    sink = PacketSink(str(out), [], max_packets=3)
    slow, fast, other = fake_flow(1), fake_flow(2), fake_flow(3)
    decide(fast, "tiktok")
    decide(other, None)
    sequence = [(slow, b"s1"), (fast, b"f1"), (other, b"o1"), (slow, b"s2"), (fast, b"f2"), (fast, b"f3")]
    for ts, (flow, data) in enumerate(sequence):
        sink.packet(flow, float(ts), 1, data)
    # The FIFO went past 3 packets with the slow flow undecided at its head: the slow flow was
    # detached and the decided packets behind it written.
    assert frames_of(out, sink) == [b"f1", b"f2", b"f3"]
    decide(slow, "wechat")
    sink.packet(slow, 9.0, 1, b"s3")
    sink.flow_ended(slow)
    files = sink.close()
    assert files == [str(out)]
    assert frames(out) == [b"f1", b"f2", b"f3", b"s1", b"s2", b"s3"]
    assert sink.dropped_packets == 0


def frames_of(out: Path, sink: PacketSink) -> list[bytes]:
    for f, _w, _name in sink.writers._open.values():
        f.flush()
    return frames(out)


def test_beyond_the_bounds_packets_are_counted_not_written(tmp_path):
    out = tmp_path / "o.pcap"
    sink = PacketSink(str(out), [], max_packets=2)
    slow, nothing = fake_flow(1), fake_flow(2)
    decide(nothing, None)
    for ts in range(6):
        sink.packet(slow, float(ts), 1, b"s%d" % ts)
        sink.packet(nothing, float(ts), 1, b"n")
    decide(slow, "wechat")
    sink.flow_ended(slow)
    sink.close()
    kept = frames(out)
    assert kept == [b"s%d" % i for i in range(len(kept))] and 0 < len(kept) < 6
    assert sink.dropped_packets == 6 - len(kept) and sink.dropped_flows == {1}
    assert "not written (undecided beyond the buffer" in sink.summary()


def test_another_link_type_goes_to_its_own_file(tmp_path):
    out = tmp_path / "o.pcap"
    sink = PacketSink(str(out), [])
    a, b = fake_flow(1), fake_flow(2)
    decide(a, "wechat")
    decide(b, "wechat")
    sink.packet(a, 1.0, 1, b"ether")
    sink.packet(b, 2.0, 101, b"raw")
    files = sink.close()
    assert files == [str(out), str(tmp_path / "o.linktype-101.pcap")]
    with open(files[1], "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == 101 and [buf for _, buf in reader] == [b"raw"]
