"""End to end on the project's own captures: every flow as pcaps/expected/*.json says."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, scan_records

from classifier.record import SCHEMA

CAPTURES = {
    "demo.pcap": 0,
    "linktypes.pcapng": 0,
    "linktypes-ns-be.pcap": 0,
    "hidden.pcap": 0,
    "malformed.pcap": 3,  # truncated: exit status 3, records still written
}


def key(r: dict) -> tuple:
    return (r["proto"], r["src"], r["sport"], r["dst"], r["dport"], r["first_ts"][:19])


# The real-stack QUIC captures share one expectations file (pcaps/expected/quic.json).
QUIC_CAPTURES = sorted(p.name for p in (ROOT / "pcaps").glob("quic-*.pcap"))


@pytest.fixture(scope="module", params=sorted(CAPTURES) + QUIC_CAPTURES)
def scanned(request):
    name = request.param
    records = scan_records(str(ROOT / "pcaps" / name), check_status=CAPTURES.get(name, 0))
    if name in QUIC_CAPTURES:
        every = json.loads((ROOT / "pcaps" / "expected" / "quic.json").read_text())
        expected = [e for e in every if e["capture"] == name]
    else:
        expected = json.loads((ROOT / "pcaps" / "expected" / f"{name.split('.')[0]}.json").read_text())
    return name, records, expected


def test_every_expected_flow_exactly_once(scanned):
    name, records, expected = scanned
    got = sorted(key(r) for r in records)
    want = sorted(key(e) for e in expected)
    assert got == want, name


def test_each_flow_as_expected(scanned):
    _, records, expected = scanned
    by_key = {key(r): r for r in records}
    problems = []
    for e in expected:
        r = by_key[key(e)]
        for field in ("hostname", "app", "operator", "category"):
            if r[field] != e[field]:
                problems.append(f"{e['flow']}: {field} {r[field]!r} != {e[field]!r}")
        if r["action"] != e["action_announced"]:
            problems.append(f"{e['flow']}: action {r['action']} != {e['action_announced']} ({e['why']})")
        for field in ("ech_public_name", "encrypted_dns", "quic_version"):
            if field in e and r[field] != e[field]:
                problems.append(f"{e['flow']}: {field} {r[field]!r} != {e[field]!r}")
        kinds = sorted({x["kind"] for x in r["evidence"]})
        if kinds != sorted(set(e["evidence_kinds"])):
            problems.append(f"{e['flow']}: evidence {kinds} != {sorted(e['evidence_kinds'])}")
    assert not problems, "\n".join(problems)


def test_records_follow_the_schema(scanned):
    _, records, _ = scanned
    for r in records:
        assert list(r) == list(SCHEMA)
        assert r["action"] in ("block", "log", "allow")
        assert r["first_ts"].endswith("Z") and r["first_ts"] <= r["last_ts"]
        for ev in r["evidence"]:
            assert ev["kind"] and ev["value"]
        if r["app"] is None and r["operator"] is None:
            assert r["action"] == "allow" and r["category"] is None
        if r["action"] == "block":
            assert r["rule"] == "provision-effective"
            assert any(p["status"] == "effective" for p in r["provisions"])
            assert r["reason"]


def test_every_signature_named_in_evidence_has_a_source(scanned):
    _, records, _ = scanned
    for r in records:
        for ev in r["evidence"]:
            if "signature" in ev and not ev["signature"].startswith("peering:"):
                assert ev.get("source"), ev
