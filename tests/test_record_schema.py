"""The record's fields are declared once (record.FIELDS): SCHEMA, the records, the CSV columns and the
README table all follow that declaration, so a new field is one entry."""

from __future__ import annotations

import csv
import io

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from classifier import record
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import FIELDS, RecordField, compile_flow_record

CLIENT, SERVER = "198.51.100.9", "203.0.113.60"


@pytest.fixture
def flow(sigs, policy):
    """One decided, ended HTTP flow."""
    done = []
    sc = Scanner(sigs, policy, ScanOptions(), done.append)
    sc.start_input("schema.pcap")
    head = b"GET /x HTTP/1.1\r\nHost: www.example.org\r\n\r\n"
    pkt = IP(src=CLIENT, dst=SERVER) / TCP(sport=40200, dport=80, flags="PA", seq=1) / head
    sc.feed(1_740_000_000.0, 1, bytes(Ether() / pkt))
    sc.finish()
    return done[0]


def test_every_derived_view_follows_the_declaration(flow):
    names = [f.name for f in FIELDS]
    assert list(record.SCHEMA) == names
    assert list(record.flow_record(flow)) == names
    assert [row.split(" | ")[0] for row in record.schema_markdown().splitlines()[2:]] == [
        f"| `{n}`" for n in names
    ]
    in_csv = [f.name for f in FIELDS if f.csv is not None]
    assert sorted(record.CSV_COLUMNS) == sorted(in_csv) and record.CSV_COLUMNS[-1] == "provisions"
    assert "notes" in record.CSV_COLUMNS and "evidence" in record.CSV_COLUMNS  # every field, in CSV too


def test_a_new_field_is_one_declaration(flow):
    extra = RecordField(
        "client_port_parity",
        "string",
        "even or odd",
        '"even" if flow.client_port % 2 == 0 else "odd"',
        csv=lambda v: v.upper(),
    )
    computed = RecordField(
        "server_hex", "string", "server address in hex", lambda f: f.server.hex(), csv=None
    )
    make = compile_flow_record((*FIELDS, extra, computed))
    rec = make(flow)
    assert list(rec)[-2:] == ["client_port_parity", "server_hex"]
    assert rec["client_port_parity"] == "even" and rec["server_hex"] == "cb00713c"
    assert {k: v for k, v in rec.items() if k not in ("client_port_parity", "server_hex")} == (
        record.flow_record(flow)
    )


def test_csv_cells_come_from_each_fields_rule(flow):
    out = io.StringIO()
    writer = record.CsvWriter(out)
    writer.write(record.flow_record(flow))
    header, row = csv.reader(io.StringIO(out.getvalue()))
    assert header == record.CSV_COLUMNS
    cells = dict(zip(header, row, strict=True))
    assert cells["http_host"] == "www.example.org" and cells["ech"] == "false"
    assert cells["server_asn"] == "" and cells["categories"] == "" and cells["dport"] == "80"
    assert cells["provisions"] == ""  # no app: no provision covers the flow


def test_a_name_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        compile_flow_record((*FIELDS, FIELDS[0]))
