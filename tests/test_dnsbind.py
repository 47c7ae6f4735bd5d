"""QueryTable on its own: outcomes, bounds and the queues behind expiry."""

from __future__ import annotations

import socket

from scapy.layers.dns import DNS, DNSQR, DNSRR

from classifier.dnsbind import QueryTable
from classifier.dnscache import resolve
from classifier.inspect.dns import parse_message

C, R = socket.inet_aton("192.0.2.7"), socket.inet_aton("198.51.100.53")


def query(name: str, txid: int = 1):
    return parse_message(bytes(DNS(id=txid, qd=DNSQR(qname=name))))


def answer(name: str, addr: str, txid: int = 1):
    msg = parse_message(bytes(DNS(id=txid, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata=addr))))
    return msg, resolve(msg)[0]


def test_retransmitted_query_is_one_pending_query_and_keeps_its_first_time():
    table = QueryTable(timeout=30)
    ends = (C, 40000, R, 53, None)
    for t in (0.0, 5.0, 10.0, 25.0):  # the client's retries
        table.query(ends, query("a.example"), t)
    assert len(table) == 1 and len(table._pending_order) == 1
    msg, res = answer("a.example", "203.0.113.1")
    assert table.answer(ends, msg, 31.0, res)[0] == "dns-late-response"  # 31 s after the first try
    assert table.counts == {"dns-query-unanswered": 1, "dns-late-response": 1}


def test_answered_queries_leave_no_unbounded_queue():
    table = QueryTable(timeout=30, max_pending=8)
    msg, res = answer("a.example", "203.0.113.1")
    for i in range(1000):  # all within one timeout: nothing expires, answered keys go stale
        ends = (C, 20000 + i, R, 53, None)
        table.query(ends, query("a.example"), i * 0.001)
        assert table.answer(ends, msg, i * 0.001, res)[0] == "bound"
    assert len(table._pending_order) <= 2 * 8 + 1 and len(table._closed_order) <= 2 * 8 + 1
    assert len(table._closed) <= 8 and table.counts == {"bound": 1000}


def test_clear_forgets_queries_but_keeps_counts():
    table = QueryTable()
    ends = (C, 40000, R, 53, None)
    table.query(ends, query("a.example"), 1.0)
    table.clear()
    msg, res = answer("a.example", "203.0.113.1")
    assert table.answer(ends, msg, 2.0, res)[0] == "dns-unsolicited"
    assert table.queries == 1 and len(table) == 0


def test_conflicting_answer_returns_the_first_one_once():
    table = QueryTable()
    ends = (C, 40000, R, 53, None)
    table.query(ends, query("a.example"), 1.0)
    first, first_res = answer("a.example", "203.0.113.1")
    second, second_res = answer("a.example", "203.0.113.2")
    assert table.answer(ends, first, 1.1, first_res) == ("bound", None)
    outcome, earlier = table.answer(ends, second, 1.2, second_res)
    assert outcome == "dns-conflicting-response" and earlier.ts == 1.1
    assert [(r.chain, r.addresses) for r in earlier.resolutions] == [
        (("a.example",), ((socket.inet_aton("203.0.113.1"), first_res[0].addresses[0][1]),))
    ]
    assert table.answer(ends, second, 1.3, second_res)[1] is None  # withdrawn once
