"""Memory follows the live flows, not the flows seen: ended flows are released at once, a live
flow costs under 1 KiB, and every per-run table (defragmenter, DNS cache, summary) has a bound."""

from __future__ import annotations

import gc
import struct
import tracemalloc
import weakref
from contextlib import contextmanager

import pytest

from classifier.defrag import MAX_DATAGRAM, Defragmenter
from classifier.dnscache import DnsCache, Resolution
from classifier.facts import FlowFacts
from classifier.flows import NO_FACTS, Flow, FlowConfig, FlowTable, flow_key
from classifier.inspect.dns import EchConfig
from classifier.pipeline import Scanner, ScanOptions
from classifier.report import TopCounter

T0 = 1_740_000_000.0
SERVER = bytes((203, 0, 113, 10))
_ETHER = bytes.fromhex("0200000000010200000000020800")


def client(i: int) -> tuple[bytes, int]:
    return bytes((198, 51, 100, i & 0xFF)), 1024 + (i >> 8)


def ipv4(src: bytes, dst: bytes, proto: int, transport: bytes) -> bytes:
    return (
        _ETHER
        + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), 0, 0x4000, 64, proto, 0, src, dst)
        + transport
    )


def tcp(src: bytes, sport: int, dst: bytes, dport: int, flags: int, seq: int = 0, data: bytes = b"") -> bytes:
    return ipv4(src, dst, 6, struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 64240, 0, 0) + data)


def udp(src: bytes, sport: int, dst: bytes, dport: int, data: bytes) -> bytes:
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)


def syn(i: int) -> bytes:
    addr, port = client(i)
    return tcp(addr, port, SERVER, 443, 0x02, seq=i * 7919)


def datagram(i: int) -> bytes:
    addr, port = client(i)
    return udp(addr, port, SERVER, 4433, b"\x01not quic, not dns")  # decided on its first packet


class TrackedFlow(Flow):
    """A Flow a test can hold a weak reference to (the real one has no slot for it: 8 bytes each)."""

    __slots__ = ("__weakref__",)


@contextmanager
def no_cycle_collector():
    """Whatever is released here is released by reference counting, at once."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def scanner(sigs, policy, **flow_options) -> tuple[Scanner, list[int]]:
    ended: list[int] = []
    sc = Scanner(sigs, policy, ScanOptions(flows=FlowConfig(**flow_options)), lambda f: ended.append(f.id))
    sc.start_input("flood")
    return sc, ended


def filed(table: FlowTable) -> int:
    return sum(len(b) for b in table._buckets.values())


def test_evicted_flows_are_released_at_once(sigs, policy, monkeypatch):
    monkeypatch.setattr("classifier.pipeline.Flow", TrackedFlow)
    sc, ended = scanner(sigs, policy, max_flows=100)
    with no_cycle_collector():
        refs = [
            weakref.ref(sc.feed(T0 + i * 1e-6, 1, frame))
            for i, frame in enumerate(syn(i) if i % 2 else datagram(i) for i in range(2000))
        ]
        table = sc.table
        assert table.evicted >= 1900 and len(ended) == table.evicted
        alive = [r() for r in refs if r() is not None]
        assert len(alive) == table.live <= 100
        assert {f.id for f in alive}.isdisjoint(ended)
        # The table's own structures hold the live flows and nothing else.
        assert len(table.entries) == filed(table) == table.live
        assert len(table._heap) <= 2 * len(table._buckets) + 64


def test_flows_ended_by_close_or_timeout_are_released_at_once():
    ended: list[int] = []
    t = FlowTable(FlowConfig(idle_tcp=300, idle_udp=60, closed_tcp=5), lambda f: ended.append(f.id))
    c, s = bytes((198, 51, 100, 1)), SERVER
    with no_cycle_collector():
        flows = []
        for i in range(50):
            f = TrackedFlow(i, 6 if i % 2 else 17, c, 2000 + i, s, 443, T0)
            t.add(f, flow_key(c, 2000 + i, s, 443, f.proto))
            flows.append(weakref.ref(f))
            if f.proto == 6:
                f.fin = 4  # a RST: filed again, earlier, for the closed timeout
                t.schedule(f, T0 + 5)
            del f
        t.sweep(T0 + 6)
        assert sorted(ended) == list(range(1, 50, 2))  # the closed TCP flows, in flow order
        assert [r() is None for r in flows] == [i % 2 == 1 for i in range(50)]
        t.sweep(T0 + 61)
        assert len(ended) == 50 and all(r() is None for r in flows)
        assert t.entries == {} and t._buckets == {} and filed(t) == 0


def test_a_flow_from_a_port_to_itself_has_one_key_and_ends_cleanly(sigs, policy):
    records = []
    sc = Scanner(sigs, policy, ScanOptions(), records.append)
    sc.start_input("land")
    addr = bytes((198, 51, 100, 9))
    sc.feed(T0, 1, tcp(addr, 1234, addr, 1234, 0x02))
    sc.feed(T0 + 0.1, 1, tcp(addr, 1234, addr, 1234, 0x12))
    assert len(sc.table.entries) == 1
    sc.finish()
    assert len(records) == 1 and records[0].c2s_pkts == 2 and sc.table.entries == {}


def traced_bytes_per_flow(sc: Scanner, frames: list[bytes]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, frame in enumerate(frames):
            sc.feed(T0 + i * 1e-6, 1, frame)
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / len(frames)
    finally:
        tracemalloc.stop()


def test_a_live_flow_costs_under_1_kib(sigs, policy):
    n = 10_000
    for build in (syn, datagram):
        frames = [build(i) for i in range(n)]
        sc, ended = scanner(sigs, policy, max_flows=n + 1, idle_tcp=1e9, idle_udp=1e9)
        per_flow = traced_bytes_per_flow(sc, frames)
        assert sc.table.live == n and not ended
        assert per_flow <= 1024, f"{build.__name__}: {per_flow:.0f} bytes per live flow"


def test_streams_come_with_payload_and_go_with_the_decision(sigs, policy):
    sc, _ = scanner(sigs, policy)
    c, cport = client(1)
    flow = sc.feed(T0, 1, tcp(c, cport, SERVER, 8443, 0x02, seq=1000))
    sc.feed(T0 + 0.01, 1, tcp(SERVER, 8443, c, cport, 0x12, seq=5000))
    assert flow.streams is None and (flow.client_isn, flow.server_isn) == (1000, 5000)
    # The second half of a request first: it waits for the bytes the SYN says come before it.
    first, second = b"GET / HTTP/1.1\r\n", b"Host: a.example\r\n\r\n"
    sc.feed(T0 + 0.02, 1, tcp(c, cport, SERVER, 8443, 0x18, seq=1001 + len(first), data=second))
    assert flow.streams is not None and flow.facts is NO_FACTS
    sc.feed(T0 + 0.03, 1, tcp(c, cport, SERVER, 8443, 0x18, seq=1001, data=first))
    assert flow.decision is not None and flow.streams is None
    assert flow.facts.http is not None and flow.facts.http.host == "a.example"


def test_flows_share_facts_and_notes_until_they_have_their_own():
    a = Flow(1, 17, b"\x01" * 4, 1, b"\x02" * 4, 2, T0)
    b = Flow(2, 17, b"\x01" * 4, 3, b"\x02" * 4, 2, T0)
    assert a.facts is b.facts is NO_FACTS and a.notes == ()
    a.set_app_proto("unknown")
    b.set_app_proto("unknown")
    assert a.facts is b.facts and a.facts.app_proto == "unknown"
    with pytest.raises(AttributeError, match="read-only"):
        a.facts.greeting = "x"  # shared: a forgotten own_facts() cannot reach every flow
    with pytest.raises(AttributeError, match="read-only"):
        NO_FACTS.dns_responses += 1
    a.own_facts().greeting = "x"
    assert type(a.facts) is FlowFacts and a.facts.greeting == "x" and a.facts.app_proto == "unknown"
    assert b.facts.greeting is None and b.facts.app_proto == "unknown" and NO_FACTS.app_proto is None
    a.set_app_proto("quic")
    assert a.facts.app_proto == "quic" and a.facts.greeting == "x" and b.facts.app_proto == "unknown"
    for i in range(20):
        a.add_note(f"problem {i}")
    assert len(a.notes) == 8 and b.notes == ()


def test_eviction_is_deterministic_among_equally_recent_flows():
    ended: list[int] = []
    t = FlowTable(FlowConfig(max_flows=200), lambda f: ended.append(f.id))
    c = bytes((198, 51, 100, 1))
    for i in range(200):  # all with the same last packet time
        f = Flow(i, 17, c, 3000 + i, SERVER, 53, T0)
        t.add(f, flow_key(c, 3000 + i, SERVER, 53, 17))
    t.make_room(T0)
    assert ended == [0, 1]


def test_defragmenter_bounds_overlapping_pieces_and_total_bytes():
    d = Defragmenter()
    # Overlapping pieces at many offsets would hold ~8,000 x 32 KB of one datagram.
    for off in range(0, 4000, 8):
        d.add(("k",), 1.0, off, True, b"x" * (MAX_DATAGRAM - off - 8))
    assert d.held <= 2 * MAX_DATAGRAM and d.abandoned >= 1
    d = Defragmenter(max_bytes=100_000)
    for i in range(50):
        d.add((i,), 1.0, 0, True, b"y" * 8000)
    assert d.held <= 100_000 and d.abandoned == 50 - 100_000 // 8000
    assert d.add((49,), 1.0, 8000, False, b"z") == b"y" * 8000 + b"z"
    assert d.held == sum(len(p) for _, pieces, _ in d._pending.values() for p in pieces.values())


def test_dns_cache_is_bounded_in_addresses_and_ech_public_names():
    cache = DnsCache(max_addresses=100, max_public_names=10)
    for i in range(1000):
        addr = bytes.fromhex("20010db8") + bytes(8) + struct.pack("!I", i)
        ech = (EchConfig(0xFE0D, i & 0xFF, f"public{i}.example"),)
        cache.add_resolutions([Resolution((f"n{i}.example",), ((addr, 300),), None, ech)], T0, b"\x01" * 4)
    assert len(cache) == 100 and cache.dropped == 900
    assert len(cache.ech_public_names) == 10 and cache.dropped_public_names == 990
    assert "public999.example" in cache.ech_public_names  # the most recent ones stay


def test_summary_tables_are_bounded():
    top = TopCounter(limit=100)
    for i in range(10_000):
        top.add("popular" if i % 3 == 0 else f"rare{i}")
    assert len(top) <= 100 and top.pruned
    assert top.most_common(1)[0][0] == "popular"
