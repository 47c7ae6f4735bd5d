"""Multi-queue inline mode and prompt offload, without root: config, plan, flow numbers, the shared
DNS cache, the supervisor's handling of worker messages, and the offload flush bound."""

from __future__ import annotations

import argparse
import json
import pickle
import socket
import struct
import time
from pathlib import Path

import pytest

from classifier.errors import UserError
from classifier.gateway import channel, netfilter
from classifier.gateway import config as gwconfig
from classifier.gateway.channel import WorkerSetup, WorkerStats
from classifier.gateway.dnsshare import SharedDnsCache
from classifier.gateway.metrics import Stats


def _args(*argv: str) -> argparse.Namespace:
    from classifier.cli import build_parser

    return build_parser().parse_args(["gateway", *argv])


# -- config and plan -----------------------------------------------------------------------------


def test_queues_from_file_and_flag(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text("[inline]\nqueue = 10\nqueues = 4\n")
    cfg = gwconfig.load(path)
    assert (cfg.queue, cfg.queues) == (10, 4)
    assert list(netfilter.queue_numbers(cfg)) == [10, 11, 12, 13]
    assert gwconfig.resolve(_args("-c", str(path), "--queues", "2")).queues == 2
    assert gwconfig.GatewayConfig().queues == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[inline]\nqueues = 0\n", "[inline] queues: must be 1-64"),
        ("[inline]\nqueues = 65\n", "[inline] queues: must be 1-64"),
        ("[inline]\nqueue = 65535\nqueues = 2\n", "[inline] queues: queues 65535-65536 go past queue number"),
        ("[inline]\nqueues = 2.5\n", "[inline] queues: must be an integer"),
    ],
)
def test_queues_errors_name_file_and_key(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as exc:
        gwconfig.load(path)
    assert str(exc.value).startswith(f"{path}: ") and expected in str(exc.value)


def test_queues_flag_error_names_the_flag():
    with pytest.raises(UserError, match=r"^--queues: queues 65534-65536 go past"):
        gwconfig.resolve(_args("--queue", "65534", "--queues", "3"))


def test_plan_balances_over_the_queues_by_flow_hash_never_by_cpu():
    cfg = gwconfig.GatewayConfig(mode="inline", queues=3, interfaces=("eth1",))
    plan = netfilter.build_plan(cfg, "iptables")
    queued = [argv for argv in plan.iptables if "NFQUEUE" in argv]
    assert len(queued) == 4  # tcp and udp, iptables and ip6tables
    for argv in queued:
        assert argv[-3:] == ["--queue-balance", "7:9", "--queue-bypass"]
        assert "--queue-cpu-fanout" not in argv and "--queue-num" not in argv
    assert "NFQUEUE 7-9 with bypass" in plan.render(enforce=False)
    assert "3 queues, one worker process each" in plan.render(enforce=False)
    assert "queue num 7-9 bypass" in netfilter.build_plan(cfg, "nft").nft_script
    one = netfilter.build_plan(gwconfig.GatewayConfig(mode="inline"), "iptables")
    assert next(a for a in one.iptables if "NFQUEUE" in a)[-3:] == ["--queue-num", "7", "--queue-bypass"]
    assert (
        "queue num 7 bypass" in netfilter.build_plan(gwconfig.GatewayConfig(mode="inline"), "nft").nft_script
    )


# -- flow numbers --------------------------------------------------------------------------------


def test_flow_numbers_are_unique_across_workers_and_restarts():
    cfg = gwconfig.GatewayConfig(mode="inline", queues=3)
    setups = [WorkerSetup(cfg, i, 3, 7 + i, "inline", 0) for i in range(3)]
    numbers = [s.flow_number(n) for s in setups for n in range(1, 101)]
    assert len(set(numbers)) == len(numbers) and min(numbers) == 1
    # a restarted worker 1 starts above every number already written (here: up to 150)
    restarted = WorkerSetup(cfg, 1, 3, 8, "inline", -(-150 // 3) * 3)
    again = [restarted.flow_number(n) for n in range(1, 101)]
    assert min(again) > 150 and not set(again) & set(numbers[:150])
    assert all(n % 3 == 2 for n in again)  # still worker 1's residue: apart from the others


# -- the shared DNS cache ------------------------------------------------------------------------


def _resolution(name: str, addr: bytes):
    from classifier.dnscache import Resolution

    return Resolution((name,), ((addr, 300),), None, ())


def test_shared_dns_cache_publishes_what_it_learns_first_hand_only():
    published: list[tuple[bytes, tuple]] = []
    seen = SharedDnsCache(lambda kind, args: published.append((kind, args)))
    other = SharedDnsCache(lambda kind, args: pytest.fail("a relayed answer was published again"))
    server, client = bytes([203, 0, 113, 80]), bytes([192, 0, 2, 10])
    seen.add_resolutions([_resolution("v16-webapp.tiktok.com", server)], 100.0, client)
    seen.remember(bytes([203, 0, 113, 10]), "www.google.com", 100.0, client, 600.0)
    assert [k for k, _ in published] == [channel.DNS, channel.NAME]
    assert other.lookup(server, 101.0, client) is None
    for kind, args in published:  # as the supervisor relays them: pickled
        other.learn(kind, pickle.loads(pickle.dumps(args)))
    assert other.lookup(server, 101.0, client).answer.name == "v16-webapp.tiktok.com"
    assert other.lookup(bytes([203, 0, 113, 10]), 101.0, client).answer.name == "www.google.com"
    assert other.lookup(server, 99.0, client) is None  # an answer never names a flow that came before it


def test_a_withdrawn_answer_is_withdrawn_in_every_worker():
    """A second, different response to one query withdraws the believed answer (dnsbind): the
    other workers, which were told the answer, must forget it too."""
    published: list[tuple[bytes, tuple]] = []
    seen = SharedDnsCache(lambda kind, args: published.append((kind, args)))
    other = SharedDnsCache(lambda kind, args: pytest.fail("a relayed change was published again"))
    server, client = bytes([203, 0, 113, 80]), bytes([192, 0, 2, 10])
    answer = (_resolution("v16-webapp.tiktok.com", server),)
    seen.add_resolutions(answer, 100.0, client)
    seen.withdraw(answer, client)
    assert [k for k, _ in published] == [channel.DNS, channel.WITHDRAW]
    assert seen.lookup(server, 101.0, client) is None
    other.learn(*_relayed(published[0]))
    assert other.lookup(server, 101.0, client).answer.name == "v16-webapp.tiktok.com"
    other.learn(*_relayed(published[1]))
    assert other.lookup(server, 101.0, client) is None


def _relayed(message: tuple[bytes, tuple]) -> tuple[bytes, tuple]:
    kind, args = message
    return kind, pickle.loads(pickle.dumps(args))


def test_a_worker_takes_relayed_answers_and_names_into_its_scanners_caches(sigs, policy):
    """What the supervisor relays lands in the caches the worker's scanner consults (answers in the
    DNS cache, names in the name memory), and is not published again."""
    from classifier.gateway.worker import ChannelLog, QueueWorker

    published: list[bytes] = []

    def publish(kind: bytes, _args: tuple) -> None:
        published.append(kind)

    ours, theirs = channel.pair()
    cfg = gwconfig.GatewayConfig(mode="inline", queues=2, as_of=1598918400.0)
    worker = QueueWorker(
        cfg,
        sigs,
        policy,
        ChannelLog(theirs),
        Stats(),
        label="inline",
        queue_num=1,
        sock=theirs,
        caches=(SharedDnsCache(publish), SharedDnsCache(publish)),
    )
    server, named, client = bytes([203, 0, 113, 80]), bytes([203, 0, 113, 10]), bytes([192, 0, 2, 10])
    channel.send_obj(ours, channel.DNS, ([_resolution("v16-webapp.tiktok.com", server)], 100.0, client, None))
    channel.send_obj(ours, channel.NAME, (named, "www.google.com", 100.0, client, 600.0))
    worker.chores()
    assert worker.scanner.dnscache.lookup(server, 101.0, client).answer.name == "v16-webapp.tiktok.com"
    assert worker.scanner.seen_names.lookup(named, 101.0, client).answer.name == "www.google.com"
    assert worker.scanner.dnscache.lookup(named, 101.0, client) is None  # a name is not an answer
    assert published == [] and worker.stats.errors.get("dns-share", 0) == 0
    ours.close()
    theirs.close()


# -- the supervisor, with socket pairs standing in for the workers --------------------------------


@pytest.fixture
def supervisor(tmp_path):
    from classifier.gateway.recordlog import RecordLog
    from classifier.gateway.supervisor import QueueSupervisor

    cfg = gwconfig.GatewayConfig(mode="inline", queues=2, log=str(tmp_path / "r.jsonl"))
    log = RecordLog(cfg.log)
    sup = QueueSupervisor(cfg, log, Stats(), "inline")
    workers = []
    for slot in sup.slots:
        ours, theirs = channel.pair()
        slot.sock, slot.receiver = ours, channel.Receiver(ours)
        sup._by_fd[ours.fileno()] = slot
        sup._poller.register(ours.fileno())
        workers.append(theirs)
    yield sup, workers
    log.close()
    for w in workers:
        w.close()


def test_supervisor_writes_records_whole_and_relays_dns_to_the_other_workers(supervisor):
    sup, workers = supervisor
    channel.send_record(workers[0], 1, b'{"flow":1}\n')
    channel.send_record(workers[1], 2, b'{"flow":2}\n')
    channel.send_obj(
        workers[0], channel.DNS, ([_resolution("a.example", b"\xcb\x00\x71\x50")], 1.0, b"\xc0\x00\x02\x0a")
    )
    for slot in sup.slots:
        sup._drain(slot)
    assert Path(sup.log.path).read_text() == '{"flow":1}\n{"flow":2}\n'
    assert (sup.written, sup.slots[0].max_number, sup.slots[1].max_number) == (2, 1, 2)
    kind, payload = channel.Receiver(workers[1]).recv()
    assert kind == channel.DNS and pickle.loads(payload)[0][0].chain == ("a.example",)
    with pytest.raises(BlockingIOError):  # not echoed to the worker that learned it
        channel.Receiver(workers[0]).recv()


def test_supervisor_sums_the_workers_counters_and_keeps_a_dead_workers(supervisor):
    sup, workers = supervisor
    a, b = Stats(packets=10, flows=2, offloaded=1), Stats(packets=5, flows=1)
    a.verdicts.update({"allow": 2})
    b.verdicts.update({"block": 1})
    channel.send_obj(workers[0], channel.STATS, WorkerStats(a, 3))
    channel.send_obj(workers[1], channel.STATS, WorkerStats(b, 4))
    for slot in sup.slots:
        sup._drain(slot)
    assert (sup.stats.packets, sup.stats.flows, sup.stats.offloaded) == (15, 3, 1)
    assert sup.stats.verdicts == {"allow": 2, "block": 1}
    assert sup.queue_packets() == {7: 10, 8: 5} and sup.live_flows() == 7
    workers[0].close()  # the worker of queue 7 is gone
    sup._drain(sup.slots[0])
    assert sup.slots[0].sock is None and sup.slots[0].restart_at is not None
    assert sup.queue_packets() == {7: 10, 8: 5} and sup.stats.packets == 15  # counters stay monotonic
    sup._restart = lambda slot, now: sup.own_errors.update(["worker"])  # no real process here
    sup._tick(sup.slots[0].restart_at + 0.1)
    sup._sum()
    assert sup.stats.errors["worker"] == 1


def test_supervisor_stops_when_the_log_cannot_be_written(tmp_path):
    from classifier.gateway.recordlog import RecordLog
    from classifier.gateway.supervisor import QueueSupervisor

    cfg = gwconfig.GatewayConfig(mode="inline", queues=2, log="/dev/full")
    sup = QueueSupervisor(cfg, RecordLog("/dev/full"), Stats(), "inline")
    sup._write(b'{"flow":1}\n')
    assert sup.stop_requested and isinstance(sup.fatal, UserError)
    assert "cannot write the record log /dev/full: No space left on device" in str(sup.fatal)


def test_a_worker_failure_message_stops_the_run(supervisor):
    sup, workers = supervisor
    channel.send(workers[1], channel.FAILED, b"cannot bind NFQUEUE 8: Operation not permitted")
    sup._drain(sup.slots[1])
    assert sup.stop_requested and str(sup.fatal) == "cannot bind NFQUEUE 8: Operation not permitted"


# -- prompt offload --------------------------------------------------------------------------------


class _Nft:
    """Records the nft text the flow sets send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def run(self, text: str, **_kw) -> str:
        self.sent.append(text)
        return ""


class _Packet:
    indev = 0

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.verdict = None

    def get_payload(self) -> bytes:
        return self.payload

    def accept(self) -> None:
        self.verdict = "accept"

    def drop(self) -> None:
        self.verdict = "drop"


def _udp(src: bytes, sport: int, dst: bytes, dport: int, payload: bytes) -> bytes:
    length = 28 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 1, 0, 64, 17, 0, src, dst)
    return ip + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def test_a_flow_the_queue_never_stops_sending_is_offloaded_within_a_bounded_number_of_packets(sigs, policy):
    """The read loop never drains (``readable`` is never left): the offload still reaches the
    kernel within offload_after + FLUSH_AFTER_PACKETS packets of the flow's decision."""
    from classifier.gateway.flowsets import FlowSets
    from classifier.gateway.inline import FLUSH_AFTER_PACKETS, InlineEngine

    cfg = gwconfig.GatewayConfig(mode="inline", as_of=1598918400.0, offload_after=16)

    class _Log:
        path = "test"

        def write(self, record: dict) -> None:
            pass

    nft = _Nft()
    stats = Stats()
    engine = InlineEngine(cfg, sigs, policy, _Log(), stats, sets=FlowSets(nft, 3600), label="inline")
    client, server = socket.inet_aton("192.0.2.10"), socket.inet_aton("203.0.113.10")
    offloaded_at = None
    for n in range(1, 201):
        pkt = _Packet(_udp(client, 40000, server, 7009, b"y" * 100))
        engine._on_packet(pkt)
        assert pkt.verdict == "accept"
        if offloaded_at is None and any("add element inet classifier_gw allow4" in t for t in nft.sent):
            offloaded_at = n
    assert offloaded_at is not None, "the offload waited for the queue to drain"
    assert offloaded_at <= cfg.offload_after + FLUSH_AFTER_PACKETS
    assert stats.offloaded == 1 and len(nft.sent) == 1  # one transaction, not one per packet
    assert "192.0.2.10 . udp . 40000 . 203.0.113.10 . 7009" in nft.sent[0]


def test_a_queue_that_never_drains_still_gets_its_housekeeping_and_can_stop(sigs, policy):
    """Counter reads, ticks and a stop request must not wait for the read loop to return."""
    from classifier.gateway.inline import HOUSEKEEPING_PACKETS, InlineEngine

    class _Log:
        path = "test"

        def write(self, record: dict) -> None:
            pass

    class _Queue:
        unbound = False

        def unbind(self) -> None:
            self.unbound = True

    cfg = gwconfig.GatewayConfig(mode="inline", as_of=1598918400.0)
    engine = InlineEngine(cfg, sigs, policy, _Log(), Stats(), label="inline")
    ticks: list[float] = []
    engine.ticks.append(ticks.append)
    engine.queue = queue = _Queue()
    client, server = socket.inet_aton("192.0.2.10"), socket.inet_aton("203.0.113.10")

    def packets(n: int) -> None:
        for _ in range(n):
            engine._on_packet(_Packet(_udp(client, 40000, server, 7009, b"y" * 100)))

    packets(HOUSEKEEPING_PACKETS - 1)
    assert not ticks
    packets(1)
    assert len(ticks) == 1  # housekeeping ran between two packets
    engine.stop_requested = True
    packets(HOUSEKEEPING_PACKETS)
    assert queue.unbound and engine.queue is None  # unbound: the read loop returns, the bypass passes


class _CountingNft(_Nft):
    """An nft whose set listings report the counters the test sets for each element key."""

    def __init__(self) -> None:
        super().__init__()
        self.counters: dict[str, tuple[int, int]] = {}

    def list_json(self, what: str) -> list[dict]:
        elems = [
            {"elem": {"val": {"concat": key.split(" . ")}, "counter": {"packets": p, "bytes": b}}}
            for key, (p, b) in self.counters.items()
        ]
        return [{"set": {"elem": elems}}]


def _inline_engine_with_sets(tmp_path, sigs, policy, **config):
    """An inline engine deciding as of 2020-09-01, with our sets on a ``_CountingNft``
    (``engine.sets.nft``) and its record log in ``tmp_path``; ``config``: GatewayConfig fields."""
    from classifier.gateway.flowsets import FlowSets
    from classifier.gateway.inline import InlineEngine
    from classifier.gateway.recordlog import RecordLog

    cfg = gwconfig.GatewayConfig(mode="inline", as_of=1598918400.0, log=str(tmp_path / "r.jsonl"), **config)
    return InlineEngine(cfg, sigs, policy, RecordLog(cfg.log), Stats(), sets=FlowSets(_CountingNft(), 3600))


def _allowed_tls_flow(engine, port: int) -> None:
    """SYN, SYN-ACK, ClientHello (www.example.com: allowed) and ServerHello on client port ``port``."""
    from test_gateway_floor import Packet
    from test_gateway_ja4s import exchange

    for raw in exchange("www.example.com", port)[:4]:
        engine._on_packet(Packet(raw))


def _both_fins(engine, port: int) -> None:
    """The client's and the server's FIN of the flow on client port ``port``, on the queue."""
    from scapy.layers.inet import IP, TCP
    from test_gateway_floor import Packet
    from test_gateway_ja4s import C, S

    for src, dst, sport, dport in ((C, S, port, 443), (S, C, 443, port)):
        engine._on_packet(Packet(bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="FA"))))


def _offloaded_flow(tmp_path, sigs, policy, closed_tcp: float):
    """An inline engine (sync_interval 1 s, counting nft) whose one TLS flow was allowed at its
    ClientHello and offloaded, its elements sent and read once (nothing counted yet). Returns
    (engine, its entry, the nft, the c2s and s2c element keys, the record log, the time of that
    read)."""
    from classifier.gateway.flowsets import element_keys

    engine = _inline_engine_with_sets(
        tmp_path, sigs, policy, offload_after=0, closed_tcp=closed_tcp, sync_interval=1.0
    )
    nft = engine.sets.nft
    _allowed_tls_flow(engine, 41000)  # decided (allowed) at its ClientHello
    (entry,) = engine.sets.flows.values()
    start = time.time()
    engine.housekeeping(start)  # elements sent, counters read (nothing counted yet)
    assert any("add element" in t and "allow4" in t for t in nft.sent)
    _fam, c2s, s2c = element_keys(entry.flow)
    return engine, entry, nft, c2s, s2c, Path(engine.log.path), start


def _closed_offloaded_flow(tmp_path, sigs, policy, closed_tcp: float):
    """``_offloaded_flow``, then counted (6, 600) one way and (5, 5000) the other by the kernel,
    and closed by both FINs on the queue; the same values."""
    engine, entry, nft, c2s, s2c, log, start = _offloaded_flow(tmp_path, sigs, policy, closed_tcp)
    nft.counters = {c2s: (6, 600), s2c: (5, 5000)}  # what the kernel passed since, off the queue
    _both_fins(engine, 41000)
    assert entry.flow.closed
    return engine, entry, nft, c2s, s2c, log, start


def _record(log: Path) -> dict:
    import json

    (rec,) = (json.loads(line) for line in log.read_text().splitlines())
    return rec


def test_a_closed_offloaded_flow_ends_with_the_packets_its_element_passed_after_the_last_read(
    tmp_path, sigs, policy
):
    """The sweep that ends a closed flow reads the counters first when the flow's FIN came after
    the last read: otherwise the packets the kernel passed in between are missing from its record
    (the sweep ran before the read due in the same pass, with sync_interval = closed_tcp)."""
    engine, _entry, _nft, _c2s, _s2c, log, start = _closed_offloaded_flow(tmp_path, sigs, policy, 1.0)
    engine.housekeeping(start + 3)  # sweep and the regular read both due: the flow ends
    rec = _record(log)
    assert rec["end_reason"] == "closed"
    # the queue saw SYN, ClientHello, FIN one way and SYN-ACK, ServerHello, FIN the other
    assert (rec["packets_c2s"], rec["packets_s2c"]) == (3 + 6, 3 + 5)


def test_a_closed_offloaded_flow_counts_the_ack_of_its_last_fin_read_after_the_regular_read(
    tmp_path, sigs, policy
):
    """The regular counter read can come right after the last FIN is handled (housekeeping runs
    after the packets at hand), before the ACK of that FIN crosses the kernel an RTT later. The
    sweep that ends the flow then reads again: that ACK is in the record (it was missing: the FIN
    came before the last read, so the read looked fresh; the multi-queue e2e test's short counts)."""
    engine, entry, nft, c2s, s2c, log, start = _closed_offloaded_flow(tmp_path, sigs, policy, 2.0)
    engine.housekeeping(start + 1.05)  # the regular read, right after the FINs; the flow is not due
    assert entry.counts == (6, 600, 5, 5000)
    nft.counters = {c2s: (7, 660), s2c: (5, 5000)}  # the client's ACK of the server's FIN, an RTT later
    engine.housekeeping(start + 3)  # the flow ends (closed_tcp after its FIN)
    rec = _record(log)
    assert rec["end_reason"] == "closed"
    assert (rec["packets_c2s"], rec["packets_s2c"]) == (3 + 7, 3 + 5)


def test_a_flow_whose_elements_timed_out_keeps_what_they_counted_after_they_are_added_again(
    tmp_path, sigs, policy
):
    """A flow outliving its elements' kernel timeout (the safety net, 3600 s by default) has them
    added again; the new ones count from zero. Its record still has every packet the old ones
    passed (the next read used to replace them with the new elements' counts: a flow over an hour
    long lost its first hour)."""
    engine, entry, nft, c2s, s2c, log, start = _offloaded_flow(tmp_path, sigs, policy, 10.0)
    nft.counters = {c2s: (100, 10_000), s2c: (200, 200_000)}
    engine.housekeeping(start + 1.5)
    assert entry.counts == (100, 10_000, 200, 200_000)
    nft.counters = {}  # both elements timed out in the kernel
    engine.housekeeping(start + 3)
    assert sum("add element" in t for t in nft.sent) == 2  # added again
    nft.counters = {c2s: (3, 300), s2c: (4, 4000)}  # what the new elements passed
    engine.housekeeping(start + 4.5)
    assert entry.counts == (103, 10_300, 204, 204_000)
    engine.finish()
    rec = _record(log)
    # the queue saw SYN and ClientHello one way, SYN-ACK and ServerHello the other
    assert (rec["packets_c2s"], rec["packets_s2c"]) == (2 + 103, 2 + 204)


def test_a_listing_with_one_element_of_a_pair_keeps_the_other_directions_count(tmp_path, sigs, policy):
    """The two elements of a flow are added and removed together, but a listing can come between
    their expiries: the direction it lacks keeps its last count instead of dropping to zero."""
    engine, entry, nft, c2s, s2c, _log, start = _offloaded_flow(tmp_path, sigs, policy, 10.0)
    nft.counters = {c2s: (100, 10_000), s2c: (200, 200_000)}
    engine.housekeeping(start + 1.5)
    nft.counters = {s2c: (201, 200_100)}
    engine.housekeeping(start + 3)
    assert entry.counts == (100, 10_000, 201, 200_100)


def test_a_closed_offloaded_flow_ended_by_the_next_packet_reads_the_counters_first(
    tmp_path, sigs, policy, monkeypatch
):
    """Between housekeepings the flow table sweeps in the packet path: a packet of another flow
    arriving after a closed flow's ``closed_tcp`` ends it there, not in housekeeping. That end reads
    the counters too (it used to keep those of the last regular read: the multi-queue e2e test's
    records counted (6, 7) packets where the gateway's own capture had (10, 9))."""
    from scapy.layers.inet import IP, UDP
    from test_gateway_floor import Packet
    from test_gateway_ja4s import C, S

    engine, _entry, _nft, _c2s, _s2c, log, start = _closed_offloaded_flow(tmp_path, sigs, policy, 1.0)
    monkeypatch.setattr(time, "time", lambda: start + 3)
    engine._on_packet(Packet(bytes(IP(src=C, dst=S) / UDP(sport=5000, dport=5001) / b"x")))  # another flow
    rec = _record(log)
    assert rec["end_reason"] == "closed"
    assert (rec["packets_c2s"], rec["packets_s2c"]) == (3 + 6, 3 + 5)


def test_offloaded_flows_ending_together_cost_one_counter_read(tmp_path, sigs, policy, monkeypatch):
    """Reading the counters is one listing of each set in use: a sweep that ends several closed
    flows reads once, not once per flow, and so does the end of the run."""
    from scapy.layers.inet import IP, UDP
    from test_gateway_floor import Packet
    from test_gateway_ja4s import C, S

    from classifier.gateway.netfilter import FAMILY, TABLE

    engine, _entry, nft, _c2s, _s2c, log, start = _closed_offloaded_flow(tmp_path, sigs, policy, 1.0)
    for port in (41001, 41002):  # two more flows, offloaded and closed the same way
        _allowed_tls_flow(engine, port)
        _both_fins(engine, port)
    assert len(engine.sets.flows) == 3
    reads: list[str] = []
    listing = nft.list_json
    monkeypatch.setattr(nft, "list_json", lambda what: reads.append(what) or listing(what))
    monkeypatch.setattr(time, "time", lambda: start + 3)
    engine._on_packet(Packet(bytes(IP(src=C, dst=S) / UDP(sport=5000, dport=5001) / b"x")))  # ends all three
    assert len(log.read_text().splitlines()) == 3
    assert reads == [f"set {FAMILY} {TABLE} allow4"]
    assert len(engine.sets.flows) == 1  # the UDP flow, allowed and offloaded at its first packet
    engine.finish()  # one read for every flow still live, then their ends read nothing more
    assert reads == [f"set {FAMILY} {TABLE} allow4"] * 2
    assert len(log.read_text().splitlines()) == 4


def test_an_allowed_tls_flow_is_offloaded_after_its_server_hello_so_its_record_has_the_ja4s(
    tmp_path, sigs, policy
):
    """offload_after 1 offloaded the flow at the packet after its ClientHello, so the ServerHello
    bypassed the queue whenever the elements beat it to the kernel, and the live record lacked the
    ``ja4s`` that ``scan --ja4s`` of the same traffic has (the multi-queue e2e test's offline
    comparison). The offload now waits for the ServerHello, within SERVER_HELLO_PACKETS."""
    from test_gateway_floor import Packet
    from test_gateway_ja4s import exchange

    engine = _inline_engine_with_sets(tmp_path, sigs, policy, offload_after=1)
    packets = exchange("www.example.com", 41000)  # SYN, SYN-ACK, ClientHello, ServerHello, data
    for raw in packets[:3]:
        engine._on_packet(Packet(raw))
    assert not engine.sets.flows  # decided at the ClientHello, its ServerHello still to come
    engine._on_packet(Packet(packets[3]))
    assert len(engine.sets.flows) == 1  # offloaded at the ServerHello, as soon as it was read
    engine.finish()
    (rec,) = map(json.loads, Path(engine.log.path).read_text().splitlines())
    assert rec["action"] == "allow" and rec["ja4s"].startswith("t130100_1301_")


def test_a_tls_flow_whose_server_hello_never_comes_is_still_offloaded_within_a_bound(tmp_path, sigs, policy):
    from scapy.layers.inet import IP, TCP
    from test_gateway_floor import Packet
    from test_gateway_ja4s import C, S, exchange

    from classifier.gateway.inline import SERVER_HELLO_PACKETS

    engine = _inline_engine_with_sets(tmp_path, sigs, policy, offload_after=1)
    for raw in exchange("www.example.com", 41000)[:3]:
        engine._on_packet(Packet(raw))
    ack = bytes(IP(src=C, dst=S) / TCP(sport=41000, dport=443, flags="A", seq=1501, ack=5001))
    sent = 0
    while not engine.sets.flows and sent < 3 * SERVER_HELLO_PACKETS:
        engine._on_packet(Packet(ack))  # pure ACKs: no server bytes ever arrive
        sent += 1
    assert engine.sets.flows and sent == SERVER_HELLO_PACKETS, sent


def test_flows_ended_one_packet_at_a_time_read_the_counters_at_most_every_end_read_gap(
    tmp_path, sigs, policy, monkeypatch
):
    """A port reused right after its close ends the closed flow at the new SYN, one packet at a
    time: each such end would list every set. Within END_READ_GAP of the last read, the read
    made then serves (it counted every flow's elements)."""
    from scapy.layers.inet import IP, TCP
    from test_gateway_floor import Packet
    from test_gateway_ja4s import C, S

    from classifier.gateway.engine import END_READ_GAP
    from classifier.gateway.flowsets import element_keys

    engine, _entry, nft, _c2s, _s2c, log, start = _closed_offloaded_flow(tmp_path, sigs, policy, 10.0)
    _allowed_tls_flow(engine, 41001)  # a second flow, offloaded and closed too
    _both_fins(engine, 41001)
    second = next(e for e in engine.sets.flows.values() if e.flow.client_port == 41001)
    _fam, c2s2, s2c2 = element_keys(second.flow)
    nft.counters.update({c2s2: (4, 400), s2c2: (3, 3000)})
    reads: list[str] = []
    listing = nft.list_json
    monkeypatch.setattr(nft, "list_json", lambda what: reads.append(what) or listing(what))
    clock = [start + 1.2]
    monkeypatch.setattr(time, "time", lambda: clock[0])

    def syn(port: int) -> None:  # the client opens a new connection on the closed flow's ports
        engine._on_packet(Packet(bytes(IP(src=C, dst=S) / TCP(sport=port, dport=443, flags="S", seq=9))))

    syn(41000)
    assert len(reads) == 1
    clock[0] += END_READ_GAP / 2
    syn(41001)
    assert len(reads) == 1  # the read of a moment ago serves
    recs = {r["sport"]: r for r in map(json.loads, log.read_text().splitlines())}
    assert (recs[41000]["packets_c2s"], recs[41000]["packets_s2c"]) == (3 + 6, 3 + 5)
    assert (recs[41001]["packets_c2s"], recs[41001]["packets_s2c"]) == (3 + 4, 3 + 3)
