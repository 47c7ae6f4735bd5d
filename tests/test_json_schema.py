"""``classifier schema --json``: JSON Schema (draft 2020-12) generated from the record
declarations, validated with the ``jsonschema`` package against real output of scan (every real
capture and sample, both views) and of bgp (route, timeline, session and diff records)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import test_bgp_audit
from conftest import REAL, ROOT, need_shared, run_cli
from test_bgp_mrt import PCH

from classifier.bgp.diff import DIFF_COLUMNS
from classifier.bgp.output import EVENT_COLUMNS, ROUTE_COLUMNS
from classifier.bgp.sessions import SESSION_COLUMNS
from classifier.bgprecord import RECORDS
from classifier.recordschema import record_schemas, value_schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(run_cli("schema", "--json").stdout)
    assert schema == record_schemas()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _lines(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def _invalid(validator, records: list[dict]) -> list[str]:
    out = []
    for i, rec in enumerate(records):
        errors = list(validator.iter_errors(rec))
        if errors:
            out.append(f"record {i}: " + "; ".join(e.message for e in errors[:3]))
    return out[:5]


@pytest.mark.parametrize("view", ["announced", "in-force"])
def test_scan_output_of_every_capture_is_valid(validator, view: str) -> None:
    captures = sorted(str(p) for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))
    captures += sorted(str(p) for p in (ROOT / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
    records = _lines(run_cli("scan", "--view", view, "-q", *captures, check_status=None))
    assert len(records) > 200
    assert not _invalid(validator, records)
    assert any(r["tunnel"] for r in records) and any(r["provisions"] for r in records)


def test_bgp_output_of_every_kind_is_valid(validator, tmp_path: Path) -> None:
    sess = tmp_path / "sessions.mrt"
    sess.write_bytes(test_bgp_audit.sessions_file())
    older = tmp_path / "older.mrt"
    older.write_bytes(
        test_bgp_audit.update(
            test_bgp_audit.BILATERAL,
            "2020-09-01T00:00:00Z",
            test_bgp_audit.plain(64500, 132591),
            ["203.205.160.0/20"],
        )
    )
    pch = str(need_shared(PCH))
    seen: dict[str, int] = {}
    outputs = []
    for mode in ((), ("--timeline",), ("--sessions",)):
        outputs.append(_lines(run_cli("bgp", str(sess), *mode, "-q")))
        outputs.append(_lines(run_cli("bgp", pch, *mode, "-q")))
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    run_cli("bgp", str(older), "-o", str(old), "-q")
    run_cli("bgp", str(sess), "-o", str(new), "-q")
    outputs.append(_lines(run_cli("bgp", "--diff", str(old), str(new), "-q")))
    for records in outputs:
        assert records
        assert not _invalid(validator, records)
        for r in records:
            seen[r["record"]] = seen.get(r["record"], 0) + 1
    assert set(seen) == {"route", "event", "session", "diff"}


def test_bgp_declaration_lists_the_csv_columns_in_order() -> None:
    columns = {
        "route": ROUTE_COLUMNS,
        "event": EVENT_COLUMNS,
        "session": SESSION_COLUMNS,
        "diff": DIFF_COLUMNS,
    }
    for kind, fields in RECORDS.items():
        assert tuple(name for name, _, _ in fields) == columns[kind], kind


def test_the_schema_rejects_what_a_consumer_would_choke_on(validator) -> None:
    good = _lines(run_cli("scan", "-q", str(ROOT / "pcaps" / "demo.pcap")))[0]
    assert validator.is_valid(good)
    for broken in (
        {k: v for k, v in good.items() if k != "community_id"},  # a key missing
        {**good, "first_packet": "1"},  # a wrong type
        {**good, "vlan": [5000]},  # not a VLAN id
        {**good, "unknown": 1},  # a key no declaration has
        {**good, "evidence": [{"kind": "sni"}]},  # an evidence object without value
        {**good, "record": "route"},  # neither a scan record nor a whole route record
    ):
        assert not validator.is_valid(broken)


def test_value_schema_types() -> None:
    assert value_schema("integer|null") == {"type": ["integer", "null"]}
    assert value_schema("array<integer>") == {"type": "array", "items": {"type": "integer"}}
    assert value_schema("array") == {"type": "array", "items": {"type": "string"}}
    with pytest.raises(ValueError, match="unknown type"):
        value_schema("strng")
    with pytest.raises(ValueError, match="unknown type"):
        value_schema("string|none")
