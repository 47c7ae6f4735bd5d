"""FlowTable: both directions find one flow, timeouts in packet time, close handling, the cap."""

from classifier.flows import Flow, FlowConfig, FlowTable, flow_key

C = b"\xc0\x00\x02\x01"
S = b"\xcb\x00\x71\x09"


def make(table, fid, ts, proto=6, cport=40000):
    f = Flow(fid, proto, C, cport, S, 443, ts)
    table.add(f, flow_key(C, cport, S, 443, proto))
    return f


def touch(table, flow, ts):
    flow.last_ts = ts
    if ts >= table.next_sweep:
        table.sweep(ts)


def test_both_directions_find_the_flow_under_one_key():
    ended = []
    t = FlowTable(FlowConfig(), ended.append)
    f = make(t, 1, 0.0)
    assert flow_key(C, 40000, S, 443, 6) == flow_key(S, 443, C, 40000, 6)
    assert t.entries[flow_key(S, 443, C, 40000, 6)] is f
    assert len(t.entries) == 1 and len(t) == 1


def test_idle_timeouts_per_protocol():
    ended = []
    t = FlowTable(FlowConfig(idle_tcp=100, idle_udp=10), ended.append)
    tcp = make(t, 1, 0.0, proto=6)
    udp = make(t, 2, 0.0, proto=17, cport=5000)
    t.sweep(9.0)
    assert ended == []
    t.sweep(11.5)
    assert ended == [udp] and udp.end_reason == "idle"
    touch(t, tcp, 50.0)  # activity pushes the TCP deadline to 150
    t.sweep(120.0)
    assert tcp not in ended
    t.sweep(151.5)
    assert ended[-1] is tcp and len(t) == 0
    assert t.entries == {}


def test_closed_tcp_ends_after_short_grace():
    ended = []
    t = FlowTable(FlowConfig(idle_tcp=300, closed_tcp=5), ended.append)
    f = make(t, 1, 0.0)
    f.fin = 3
    t.schedule(f, 1.0 + 5)
    f.last_ts = 1.0
    t.sweep(4.0)
    assert ended == []
    t.sweep(7.0)
    assert ended == [f] and f.end_reason == "closed"


def test_cap_evicts_least_recently_active_and_reports_each_once():
    ended = []
    t = FlowTable(FlowConfig(max_flows=100), ended.append)
    flows = [make(t, i, float(i), cport=1000 + i) for i in range(100)]
    flows[0].last_ts = 99.5  # recently active: must survive
    t.make_room(100.0)
    assert len(t) == 99 and t.evicted == 1
    assert ended == [flows[1]] and flows[1].end_reason == "evicted"
    t.flush()
    assert len(ended) == 100 and len({id(f) for f in ended}) == 100
    assert [f.end_reason for f in ended[1:]] == ["end-of-input"] * 99


def test_end_is_idempotent():
    ended = []
    t = FlowTable(FlowConfig(), ended.append)
    f = make(t, 1, 0.0)
    t.end(f, "closed")
    t.end(f, "idle")
    t.flush()
    assert ended == [f] and f.end_reason == "closed"


def test_end_removes_the_entry_under_the_key_it_was_filed_with():
    """The table keeps each flow's key: ending it removes exactly that entry, and ending a flow
    the table never held leaves another flow's entry of the same addresses alone."""
    ended = []
    t = FlowTable(FlowConfig(), ended.append)
    tunnelled_key = (*flow_key(C, 40000, S, 443, 6), ("gre", 7))  # as a tunnel layer extends it
    f = Flow(1, 6, C, 40000, S, 443, 0.0)
    t.add(f, tunnelled_key)
    plain = make(t, 2, 0.0)
    assert f.key == tunnelled_key and len(t.entries) == 2
    t.end(f, "closed")
    assert tunnelled_key not in t.entries and t.entries[flow_key(C, 40000, S, 443, 6)] is plain
    stray = Flow(3, 6, C, 40000, S, 443, 0.0)  # same addresses, never filed
    t.live += 1  # as if counted, so that the table's count stays consistent
    t.end(stray, "evicted")
    assert t.entries[flow_key(C, 40000, S, 443, 6)] is plain and ended == [f, stray]
    t.end(plain, "closed")
    assert t.entries == {} and t.live == 0
