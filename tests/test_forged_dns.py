"""Forged DNS answers decide nothing, and only strong evidence blocks (issue 8 parts 5 and 6a).

Each forged kind is sent before an SNI-less TLS flow to the address the forgery "answered"; in
2025 (PAFACA in the announced schedule) a bound answer for www.tiktok.com makes that flow a
medium-confidence TikTok block. A forgery must not: it names nothing, or names the flow with low
confidence (``dns-unsolicited``) and the flow is logged.
"""

from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from test_scanner import Run, client_hello, tcp, tls_flow

from classifier.blockfloor import DEFAULT_EVIDENCE, BlockFloor

C, C2 = "192.0.2.7", "192.0.2.8"  # the client, and another one
R, R2 = "198.51.100.53", "198.51.100.54"  # the client's resolver, and another host
X = "203.0.113.80"  # the address the forgery claims for www.tiktok.com (in no prefix table)
Y = "203.0.113.81"  # the resolver's real answer
TIKTOK = "www.tiktok.com"
TXID, CPORT = 0x4A1C, 40100


def query(run, name, txid=TXID, client=C, cport=CPORT, resolver=R, rport=53):
    run.send(
        IP(src=client, dst=resolver) / UDP(sport=cport, dport=rport) / DNS(id=txid, qd=DNSQR(qname=name))
    )


def response(run, name, addr, txid=TXID, client=C, cport=CPORT, resolver=R, rport=53, answers=None):
    an = answers if answers is not None else [DNSRR(rrname=name, type="A", rdata=addr, ttl=300)]
    run.send(
        IP(src=resolver, dst=client)
        / UDP(sport=rport, dport=cport)
        / DNS(id=txid, qr=1, qd=DNSQR(qname=name), an=an)
    )


def nameless_flow(run, server=X, client=C, cport=41000):
    """An SNI-less TLS connection a moment later (as a client using the answer would make)."""
    run.send(tcp(client, server, cport, 443, "S", 1000), dt=1)
    run.send(tcp(server, client, 443, cport, "SA", 5000, 1001))
    run.send(tcp(client, server, cport, 443, "PA", 1001, 5001, client_hello(None)))


def flows(run):
    return {(r.client, r.client_port): r for r in run.done()}


def the_tls_flow(records, cport=41000):
    (flow,) = [r for (_c, port), r in records.items() if port == cport]
    return flow


# -- each forged kind of the issue ------------------------------------------------------------------


def no_query(run):
    response(run, TIKTOK, X)


def before_its_query(run):
    response(run, TIKTOK, X)
    query(run, TIKTOK)


def from_another_host(run):
    query(run, TIKTOK)
    response(run, TIKTOK, X, resolver=R2)


def from_another_port(run):
    # A forwarder asking from port 53 (a response from another port to an ephemeral client port
    # is not DNS by port at all, so it is never even parsed as DNS).
    query(run, TIKTOK, cport=53)
    response(run, TIKTOK, X, cport=53, rport=5300)


def to_another_client_port(run):
    query(run, TIKTOK)
    response(run, TIKTOK, X, cport=CPORT + 1)


def to_another_client(run):
    query(run, TIKTOK)
    response(run, TIKTOK, X, client=C2)


# Forgeries whose answer is kept only as a low-confidence name (the capture may have missed a query).
UNSOLICITED = {
    "no-query": no_query,
    "before-its-query": before_its_query,
    "from-another-host": from_another_host,
    "from-another-port": from_another_port,
    "to-another-client-port": to_another_client_port,
    "to-another-client": to_another_client,
}


@pytest.mark.parametrize("kind", sorted(UNSOLICITED))
def test_unsolicited_answer_names_the_flow_only_with_low_confidence_and_never_blocks(sigs, policy, kind):
    run = Run(sigs, policy)
    UNSOLICITED[kind](run)
    nameless_flow(run)
    records = flows(run)
    a, d = the_tls_flow(records).attribution, the_tls_flow(records).decision
    assert (a.hostname, a.hostname_source, a.app, a.confidence) == (
        TIKTOK,
        "dns-unsolicited",
        "tiktok",
        "low",
    )
    assert "bound to no query (dns-unsolicited" in a.evidence[0].value
    assert d.action == "log" and d.rule == "below-block-confidence", d.reason
    assert "dns-unsolicited" in d.reason and "the policy alone: block" in d.reason
    assert run.scanner.inspection.queries.counts["dns-unsolicited"] == 1
    assert run.scanner.dnscache.lookup(b"\xcb\x00\x71\x50", run.t, b"\xc0\x00\x02\x07") is None
    dns_flow_notes = [n for r in records.values() if r.dns_client for n in r.notes]
    assert any("dns-unsolicited" in n for n in dns_flow_notes), dns_flow_notes


def test_wrong_transaction_id_is_ignored(sigs, policy):
    run = Run(sigs, policy)
    query(run, TIKTOK)
    response(run, TIKTOK, X, txid=TXID ^ 0x0101)
    nameless_flow(run)
    flow = the_tls_flow(flows(run))
    assert flow.attribution.hostname is None and flow.attribution.app is None
    assert flow.decision.action == "allow"
    assert run.scanner.inspection.queries.counts == {"dns-txid-mismatch": 1}


def test_question_rewritten_to_the_tiktok_name_is_ignored(sigs, policy):
    run = Run(sigs, policy)
    query(run, "www.example.org")
    response(run, TIKTOK, X)  # right 5-tuple and id, the question rewritten
    nameless_flow(run)
    records = flows(run)
    flow = the_tls_flow(records)
    assert flow.attribution.app is None and flow.decision.action == "allow"
    assert run.scanner.inspection.queries.counts == {"dns-question-mismatch": 1}
    (dns_flow,) = [r for r in records.values() if r.dns_client]
    assert dns_flow.facts.dns_queries == ["www.example.org"]  # the forged question names nothing


def test_answer_record_for_a_name_not_asked_is_ignored(sigs, policy):
    run = Run(sigs, policy)
    query(run, "www.example.org")
    response(run, "www.example.org", None, answers=[DNSRR(rrname=TIKTOK, type="A", rdata=X, ttl=300)])
    nameless_flow(run)
    flow = the_tls_flow(flows(run))
    assert flow.attribution.app is None and flow.decision.action == "allow"
    assert run.scanner.inspection.queries.counts == {"bound": 1}


def test_cname_from_the_tiktok_name_to_the_asked_name_is_ignored(sigs, policy):
    run = Run(sigs, policy)
    query(run, "www.example.org")
    response(
        run,
        "www.example.org",
        None,
        answers=[
            DNSRR(rrname=TIKTOK, type="CNAME", rdata="www.example.org", ttl=300),
            DNSRR(rrname="www.example.org", type="A", rdata=X, ttl=300),
        ],
    )
    nameless_flow(run)
    flow = the_tls_flow(flows(run))
    assert flow.attribution.hostname == "www.example.org" and flow.attribution.app is None
    assert flow.decision.action == "allow"


# -- what a bound answer still does -------------------------------------------------------------------


def test_properly_answered_query_attributes_as_before(sigs, policy):
    run = Run(sigs, policy)
    query(run, "WwW.TikTok.com")  # DNS 0x20: mixed case in the query ...
    response(run, "www.TIKTOK.com", X)  # ... and in the echoed question
    nameless_flow(run)
    flow = the_tls_flow(flows(run))
    a = flow.attribution
    assert (a.hostname, a.hostname_source, a.app, a.confidence) == (TIKTOK, "dns", "tiktok", "medium")
    assert a.basis == ("dns",)
    assert flow.decision.action == "block" and flow.decision.rule == "provision-effective"
    assert run.scanner.inspection.queries.counts == {"bound": 1}


def test_duplicate_response_counted_and_the_first_answer_stands(sigs, policy):
    run = Run(sigs, policy)
    query(run, TIKTOK)
    response(run, TIKTOK, X)
    response(run, TIKTOK, X)
    nameless_flow(run)
    assert the_tls_flow(flows(run)).decision.action == "block"
    assert run.scanner.inspection.queries.counts == {"bound": 1, "dns-duplicate-response": 1}


def test_conflicting_answers_to_one_query_are_both_demoted(sigs, policy):
    """A forger racing the resolver is bound first; the resolver's different answer exposes it."""
    run = Run(sigs, policy)
    query(run, TIKTOK)
    response(run, TIKTOK, X)  # the forgery, first
    response(run, TIKTOK, Y)  # the resolver
    nameless_flow(run, X, cport=41000)
    nameless_flow(run, Y, cport=41001)
    records = flows(run)
    for port in (41000, 41001):
        flow = the_tls_flow(records, port)
        assert flow.attribution.hostname_source == "dns-unsolicited" and flow.attribution.confidence == "low"
        assert flow.decision.action == "log"
        assert "dns-conflicting-response" in flow.attribution.evidence[0].value
    assert run.scanner.inspection.queries.counts == {"bound": 1, "dns-conflicting-response": 1}


def test_late_response_and_unanswered_query(sigs, policy):
    run = Run(sigs, policy)
    query(run, TIKTOK)
    query(run, "www.example.org", txid=7, cport=CPORT + 5)
    run.t += 31  # the stub resolver gave up
    response(run, TIKTOK, X)
    nameless_flow(run)
    flow = the_tls_flow(flows(run))
    assert flow.attribution.hostname_source == "dns-unsolicited" and flow.decision.action == "log"
    assert run.scanner.inspection.queries.counts == {"dns-query-unanswered": 2, "dns-late-response": 1}


def test_pending_queries_are_bounded(sigs, policy):
    run = Run(sigs, policy)
    table = run.scanner.inspection.queries
    table.max_pending = 4
    for i in range(6):
        query(run, f"n{i}.example.org", txid=i, cport=CPORT + i)
    assert len(table) == 4 and table.counts["dns-query-evicted"] == 2
    response(run, "n0.example.org", "198.51.100.80", txid=0, cport=CPORT)  # its query was evicted
    response(run, "n5.example.org", "198.51.100.85", txid=5, cport=CPORT + 5)
    assert table.counts["dns-unsolicited"] == 1 and table.counts["bound"] == 1


def test_forged_response_inside_a_dns_over_tcp_stream(sigs, policy):
    import struct

    def framed(*msgs):
        return b"".join(struct.pack("!H", len(m)) + m for m in map(bytes, msgs))

    run = Run(sigs, policy)
    run.send(tcp(C, R, CPORT, 53, "S", 1))
    run.send(tcp(R, C, 53, CPORT, "SA", 9, 2))
    q = framed(DNS(id=TXID, qd=DNSQR(qname=TIKTOK)))
    run.send(tcp(C, R, CPORT, 53, "PA", 2, 10, q))
    forged = DNS(id=TXID + 1, qr=1, qd=DNSQR(qname=TIKTOK), an=[DNSRR(rrname=TIKTOK, rdata=X, ttl=300)])
    real = DNS(id=TXID, qr=1, qd=DNSQR(qname=TIKTOK), an=[DNSRR(rrname=TIKTOK, rdata=Y, ttl=300)])
    run.send(tcp(R, C, 53, CPORT, "PA", 10, 2 + len(q), framed(forged, real)))
    nameless_flow(run, X, cport=41000)
    nameless_flow(run, Y, cport=41001)
    records = flows(run)
    assert the_tls_flow(records, 41000).attribution.app is None
    assert the_tls_flow(records, 41001).decision.action == "block"
    assert run.scanner.inspection.queries.counts == {"dns-txid-mismatch": 1, "bound": 1}


# -- the block floor ----------------------------------------------------------------------------------


def name_history(run):
    """A client names an address by SNI, then sends a nameless UDP flow to it (not DNS, not QUIC)."""
    tls_flow(run, X, 443, client_hello(TIKTOK), 40200)
    run.send(IP(src=C, dst=X) / UDP(sport=40201, dport=443) / (b"\x00" * 40), dt=5)


@pytest.mark.parametrize(
    ("confidence", "evidence", "action", "rule"),
    [
        ("medium", DEFAULT_EVIDENCE, "log", "below-block-confidence"),  # the defaults
        ("low", DEFAULT_EVIDENCE, "log", "evidence-cannot-block"),
        ("medium", (*DEFAULT_EVIDENCE, "name-history"), "log", "below-block-confidence"),
        ("low", (*DEFAULT_EVIDENCE, "name-history"), "block", "provision-effective"),
    ],
)
def test_name_history_blocks_only_when_the_floor_allows_it(sigs, policy, confidence, evidence, action, rule):
    from classifier.pipeline import ScanOptions

    run = Run(sigs, policy, floor=BlockFloor(confidence, evidence))
    assert isinstance(run.scanner.options, ScanOptions)
    name_history(run)
    recs = {r.client_port: r for r in run.done()}
    assert recs[40200].decision.action == "block"  # the SNI flow itself: high confidence
    a, d = recs[40201].attribution, recs[40201].decision
    assert (a.hostname_source, a.app, a.confidence, a.basis) == (
        "name-history",
        "tiktok",
        "low",
        ("name-history",),
    )
    assert (d.action, d.rule) == (action, rule)
    if action == "log":
        assert f"confidence {confidence} or higher" in d.reason and "name-history" in d.reason


def test_high_floor_logs_a_dns_named_flow(sigs, policy):
    run = Run(sigs, policy, floor=BlockFloor("high"))
    query(run, TIKTOK)
    response(run, TIKTOK, X)
    nameless_flow(run)
    tls_flow(run, Y, 443, client_hello(TIKTOK), 40300)
    records = flows(run)
    assert the_tls_flow(records).decision.rule == "below-block-confidence"
    assert the_tls_flow(records, 40300).decision.action == "block"  # SNI: high confidence


def test_unsolicited_dns_can_never_support_a_block():
    with pytest.raises(ValueError, match="dns-unsolicited can never support a block"):
        BlockFloor("low", (*DEFAULT_EVIDENCE, "dns-unsolicited"))
    with pytest.raises(ValueError, match="unknown evidence kind"):
        BlockFloor("medium", ("sni", "dns-answers"))
    with pytest.raises(ValueError, match="not one of"):
        BlockFloor("certain")


def test_unsolicited_answer_still_logged_with_the_lowest_floor(sigs, policy):
    run = Run(sigs, policy, floor=BlockFloor("low", (*DEFAULT_EVIDENCE, "name-history")))
    no_query(run)
    nameless_flow(run)
    d = the_tls_flow(flows(run)).decision
    assert (d.action, d.rule) == ("log", "evidence-cannot-block")


# -- the command line: --stats, the summary, the floor options ----------------------------------------


def test_scan_command_counts_binding_and_withheld_blocks(tmp_path):
    from conftest import run_cli, scan_records
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    packets = []
    t = 1_740_000_000.0  # 2025-02-19

    def add(pkt, dt=0.01):
        nonlocal t
        t += dt
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt
        frame.time = t
        packets.append(frame)

    def tls(server, cport, name):
        add(tcp(C, server, cport, 443, "S", 1000), dt=1)
        add(tcp(server, C, 443, cport, "SA", 5000, 1001))
        add(tcp(C, server, cport, 443, "PA", 1001, 5001, client_hello(name)))

    add(IP(src=C, dst=R) / UDP(sport=CPORT, dport=53) / DNS(id=TXID, qd=DNSQR(qname=TIKTOK)))
    add(
        IP(src=R, dst=C)
        / UDP(sport=53, dport=CPORT)
        / DNS(id=TXID, qr=1, qd=DNSQR(qname=TIKTOK), an=DNSRR(rrname=TIKTOK, rdata=Y, ttl=300))
    )
    add(
        IP(src=R, dst=C)
        / UDP(sport=53, dport=CPORT + 1)
        / DNS(id=TXID, qr=1, qd=DNSQR(qname=TIKTOK), an=DNSRR(rrname=TIKTOK, rdata=X, ttl=300))
    )
    tls(Y, 41001, None)  # named by the bound answer: block
    tls(X, 41002, None)  # named by the unsolicited answer: log
    tls("203.0.113.90", 41003, TIKTOK)  # SNI: block ...
    add(IP(src=C, dst="203.0.113.90") / UDP(sport=41004, dport=443) / (b"\x00" * 40))  # ... name history
    pcap = tmp_path / "forged.pcap"
    wrpcap(str(pcap), packets)

    stats_path = tmp_path / "stats.json"
    records = {r["sport"]: r for r in scan_records(str(pcap), "--stats", str(stats_path))}
    assert [records[p]["action"] for p in (41001, 41002, 41003, 41004)] == ["block", "log", "block", "log"]
    assert records[41002]["rule"] == records[41004]["rule"] == "below-block-confidence"
    stats = __import__("json").loads(stats_path.read_text())
    assert stats["dns_queries"] == 1 and stats["dns_binding"] == {"bound": 1, "dns-unsolicited": 1}
    summary = " ".join(run_cli("scan", str(pcap), "-o", str(tmp_path / "out.jsonl")).stderr.decode().split())
    assert (
        "DNS: 1 queries, 1 responses bound to them; not bound (low-confidence names at most): "
        "dns-unsolicited 1" in summary
    )
    assert (
        "2 flows: below-block-confidence 1 (named by dns-unsolicited), below-block-confidence 1 "
        "(named by name-history)" in summary
    )

    evidence = ",".join((*DEFAULT_EVIDENCE, "name-history"))
    loose = {
        r["sport"]: r
        for r in scan_records(str(pcap), "--block-confidence", "low", "--block-evidence", evidence)
    }
    assert loose[41004]["action"] == "block" and loose[41002]["rule"] == "evidence-cannot-block"
    refused = run_cli("scan", str(pcap), "--block-evidence", f"{evidence},dns-unsolicited", check_status=2)
    assert b"dns-unsolicited can never support a block" in refused.stderr
