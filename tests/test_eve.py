"""``--format eve``: one Suricata EVE flow event per record, with Suricata's field names and types
(checked against the types of Suricata's own EVE schema, etc/schema.json in its source), the same
flows as the JSON records, and the same events whatever the way of scanning."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from conftest import REAL, ROOT, need_shared, run_cli, scan_records

from classifier.eve import eve_event, flow_id, suricata_time

DEMO = ROOT / "pcaps" / "demo.pcap"
_S, _I = {"type": "string"}, {"type": "integer"}
# The keys we write, with the types Suricata's etc/schema.json gives them (its top level and its
# flow, tls, quic, http and dns objects refuse unknown keys; ours adds only "classifier").
SURICATA_SHAPE = {
    "type": "object",
    "properties": {
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+[+\-]\d+$"},
        "flow_id": _I,
        "in_iface": _S,
        "event_type": {"const": "flow"},
        "vlan": {"type": "array", "items": {"type": "number"}},
        "src_ip": _S,
        "src_port": _I,
        "dest_ip": _S,
        "dest_port": _I,
        "proto": {"enum": ["TCP", "UDP"]},
        "app_proto": {"enum": ["tls", "http", "dns", "quic"]},
        "community_id": _S,
        "flow": {
            "type": "object",
            "properties": {
                "pkts_toserver": _I,
                "pkts_toclient": _I,
                "bytes_toserver": _I,
                "bytes_toclient": _I,
                "start": _S,
                "end": _S,
                "age": _I,
                "state": {"enum": ["new", "established", "closed"]},
                "reason": {"enum": ["timeout", "forced", "shutdown"]},
                "alerted": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "tls": {"type": "object", "properties": {"sni": _S}, "additionalProperties": False},
        "quic": {"type": "object", "properties": {"sni": _S}, "additionalProperties": False},
        "http": {
            "type": "object",
            "properties": {"hostname": _S, "http_method": _S},
            "additionalProperties": False,
        },
        "dns": {"type": "object", "properties": {"type": _S, "rrname": _S}, "additionalProperties": False},
        "classifier": {"type": "object", "required": ["action", "rule", "reason", "app", "evidence"]},
    },
    "required": [
        "timestamp",
        "flow_id",
        "event_type",
        "src_ip",
        "src_port",
        "dest_ip",
        "dest_port",
        "proto",
        "community_id",
        "flow",
        "classifier",
    ],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def real_runs() -> tuple[list[dict], list[dict]]:
    captures = sorted(str(p) for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))
    captures += [str(DEMO), str(ROOT / "pcaps" / "quic-v1.pcap"), str(ROOT / "pcaps" / "tunnel-gtpu.pcap")]
    records = scan_records(*captures, check_status=None)
    events = [
        json.loads(line)
        for line in run_cli("scan", "--format", "eve", "-q", *captures, check_status=None).stdout.splitlines()
    ]
    return records, events


def test_every_event_has_suricatas_names_and_types(real_runs) -> None:
    records, events = real_runs
    assert len(events) == len(records) > 200
    validator = jsonschema.Draft202012Validator(SURICATA_SHAPE)
    bad = [f"{i}: {e.message}" for i, ev in enumerate(events) for e in validator.iter_errors(ev)]
    assert not bad, bad[:5]
    assert {"tls", "quic", "http", "dns"} <= {k for ev in events for k in ev}


def test_events_carry_the_records_values(real_runs) -> None:
    records, events = real_runs
    for rec, ev in zip(records, events, strict=True):
        assert ev == eve_event(rec)
        assert (ev["src_ip"], ev["src_port"], ev["dest_ip"], ev["dest_port"]) == (
            rec["src"],
            rec["sport"],
            rec["dst"],
            rec["dport"],
        )
        assert ev["proto"] == rec["proto"].upper() and ev["community_id"] == rec["community_id"]
        assert ev["timestamp"] == ev["flow"]["start"] == rec["first_ts"][:-1] + "+0000"
        assert (
            ev["flow"]["pkts_toserver"] + ev["flow"]["pkts_toclient"]
            == rec["packets_c2s"] + rec["packets_s2c"]
        )
        assert ev["classifier"]["action"] == rec["action"] and ev["classifier"]["reason"] == rec["reason"]
        if rec["sni"] is not None:
            assert ev["quic" if rec["app_proto"] == "quic" else "tls"]["sni"] == rec["sni"]
        if rec["http_host"] is not None:
            assert ev["http"]["hostname"] == rec["http_host"]
        if rec["dns_queries"]:
            assert ev["dns"]["rrname"] == rec["dns_queries"][0]
    ids = [ev["flow_id"] for ev in events]
    assert len(set(ids)) == len(ids) and all(0 <= i < 1 << 48 for i in ids)


def test_flow_id_is_stable_and_tells_flows_apart() -> None:
    rec = {"community_id": "1:abc=", "first_ts": "2020-01-01T00:00:00.000000Z", "file": "a.pcap", "flow": 1}
    assert flow_id(rec) == flow_id(dict(rec))
    assert flow_id(rec) != flow_id({**rec, "flow": 2}) != flow_id({**rec, "file": "b.pcap"})
    assert suricata_time("2020-09-19T12:00:00.157000Z") == "2020-09-19T12:00:00.157000+0000"
    assert re.fullmatch(SURICATA_SHAPE["properties"]["timestamp"]["pattern"], suricata_time(rec["first_ts"]))


def test_workers_write_the_same_events() -> None:
    one = run_cli("scan", "--format", "eve", "-q", str(DEMO), str(DEMO)).stdout
    assert run_cli("scan", "--format", "eve", "--workers", "2", "-q", str(DEMO), str(DEMO)).stdout == one


def test_tagged_flows_carry_their_vlan(tmp_path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.utils import wrpcap

    path = tmp_path / "vlan.pcap"
    wrpcap(str(path), [Ether() / Dot1Q(vlan=12) / IP(src="198.51.100.1", dst="203.0.113.1") / TCP(dport=80)])
    (event,) = (
        json.loads(line) for line in run_cli("scan", "--format", "eve", "-q", str(path)).stdout.splitlines()
    )
    assert event["vlan"] == [12] and event["flow"]["state"] == "new"
