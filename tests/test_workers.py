"""``classifier scan --workers N`` writes exactly what one process writes.

Files on their own are split by whole files when that keeps every worker busy; otherwise every
worker keeps the whole flow table and inspects every DNS
flow, but reports only the flows of its share of server addresses (classifier/partition.py); the
parent merges the records back into one-process order. Both splits are checked. So the records
(bytes, order and flow numbers included) and the statistics must be identical to ``--workers 1``,
on the real captures (each on its own and as one stream), the samples, a multi-copy corpus whose
copies reach the same servers from different clients (name memory and DNS answers across
clients), at the flow cap and with short timeouts.
"""

from __future__ import annotations

import marshal
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REAL, ROOT, SHARED, communicate_or_fail, need_shared, run_cli, running_with_workers

from classifier import parallel, workerproc
from classifier.cli import main
from classifier.partition import partition_of


def _need_compiled_feed() -> None:
    """The compiled first packet (classifier/_partfeed.pyx) in use by partitions: CI builds it
    (`make test`), so there its absence (or refusal) fails; elsewhere the test is skipped."""
    from classifier import partition

    if partition.COMPILED_FEED is None:
        if os.environ.get("CI"):
            pytest.fail("classifier._partfeed is not built or refused")
        pytest.skip("classifier._partfeed is not in use")


def _real() -> list[str]:
    return sorted(str(p) for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))


def _samples() -> list[str]:
    return sorted(str(p) for p in (ROOT / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))


def _scan(tmp_path: Path, label: str, captures: list[str], *options: str) -> tuple[bytes, bytes]:
    """(records, stats) of one scan, as files."""
    out, stats = tmp_path / f"{label}.jsonl", tmp_path / f"{label}.stats.json"
    proc = run_cli(
        "scan", "-q", "-o", str(out), "--stats", str(stats), *options, *captures, check_status=None
    )
    assert proc.returncode in (0, 3), proc.stderr.decode(errors="replace")
    return out.read_bytes(), stats.read_bytes()


def _assert_same_as_one_process(
    tmp_path: Path, captures: list[str], *options: str, workers: tuple[int, ...] = (2, 3)
) -> bytes:
    one = _scan(tmp_path, "w1", captures, *options)
    assert one[0].count(b"\n") > 0
    for n in workers:
        many = _scan(tmp_path, f"w{n}", captures, "--workers", str(n), *options)
        assert many[1] == one[1], f"--workers {n}: statistics differ"
        assert many[0] == one[0], f"--workers {n}: records differ"
    return one[0]


@pytest.mark.real
def test_real_captures_each_on_its_own(tmp_path: Path) -> None:
    _assert_same_as_one_process(tmp_path, _real())


@pytest.mark.real
def test_real_captures_as_one_stream_in_both_views(tmp_path: Path) -> None:
    _assert_same_as_one_process(tmp_path, _real(), "--continuous")
    _assert_same_as_one_process(tmp_path, _real(), "--continuous", "--view", "in-force", workers=(2,))


def test_samples_and_an_input_that_cannot_be_opened(tmp_path: Path) -> None:
    # malformed.pcap is truncated and has malformed packets: problems and examples merge too.
    _assert_same_as_one_process(tmp_path, [*_samples(), str(tmp_path / "missing.pcap")])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three copies of the real captures, each copy's clients shifted: the same servers reached
    by different clients, so names learnt from one client's DNS answers and SNIs name another's
    flows (the cross-flow evidence a naive 5-tuple sharding loses)."""
    out = tmp_path_factory.mktemp("corpus") / "corpus-3.pcap"
    subprocess.run(
        [sys.executable, str(need_shared(SHARED / "bench") / "make_corpus.py"), str(out), "3", *_real()],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return str(out)


@pytest.mark.real
def test_corpus_with_cross_client_names(tmp_path: Path, corpus: str) -> None:
    records = _assert_same_as_one_process(tmp_path, [corpus])
    # The corpus does exercise what a partition could lose: names from DNS answers and from
    # another flow's SNI (name history).
    assert b'"hostname_source":"dns"' in records
    assert b'"hostname_source":"name-history"' in records


@pytest.mark.real
def test_corpus_at_the_flow_cap_and_with_short_timeouts(tmp_path: Path, corpus: str) -> None:
    records = _assert_same_as_one_process(
        tmp_path, [corpus], "--max-flows", "40", "--idle-udp", "0.5", "--idle-tcp", "2"
    )
    assert b'"end_reason":"evicted"' in records
    assert b'"end_reason":"idle"' in records


def test_partition_is_stable_and_spreads() -> None:
    # crc32, not hash(): the same in every process and on every machine.
    assert partition_of(bytes([192, 0, 2, 1]), 7) == partition_of(bytes([192, 0, 2, 1]), 7)
    parts = {partition_of(bytes([198, 51, 100, i]), 4) for i in range(64)}
    assert parts == {0, 1, 2, 3}


def test_standard_input_is_refused_with_one_line() -> None:
    sample = (ROOT / "pcaps" / "demo.pcap").read_bytes()
    proc = run_cli("scan", "--workers", "2", "-", stdin=sample, check_status=2)
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "standard input" in err and "--workers" in err


# One capture (split by server address) and two even files (split by whole files).
_SPLITS = pytest.mark.parametrize("copies", [1, 2], ids=["by-address", "by-files"])


@_SPLITS
def test_a_failing_worker_is_one_line_and_no_hang(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], copies: int
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(parallel, "run_part", boom)  # the forked workers inherit it
    monkeypatch.setattr(parallel, "scan_file", boom)  # (by files)
    status = main(["scan", "-q", "--workers", "2", *[str(ROOT / "pcaps" / "demo.pcap")] * copies])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and "scan worker" in err and "RuntimeError: boom" in err


@_SPLITS
def test_a_worker_that_dies_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], copies: int
) -> None:
    import os

    def die(*args: object, **kwargs: object) -> None:
        os._exit(9)  # as if killed (the OOM killer)

    monkeypatch.setattr(parallel, "run_part", die)
    monkeypatch.setattr(parallel, "scan_file", die)
    status = main(["scan", "-q", "--workers", "2", *[str(ROOT / "pcaps" / "demo.pcap")] * copies])
    err = capsys.readouterr().err
    assert status == 1
    assert "died (exit status 9)" in err


@pytest.mark.parametrize("fmt", ["csv", "table"])
def test_csv_and_table_are_the_same(fmt: str) -> None:
    captures = _samples()
    one = run_cli("scan", "-q", "--format", fmt, *captures, check_status=None)
    many = run_cli("scan", "-q", "--format", fmt, "--workers", "2", *captures, check_status=None)
    assert one.returncode == many.returncode == 3  # malformed.pcap is truncated
    assert one.stdout.count(b"\n") > 10
    assert many.stdout == one.stdout


def _scan_in_process(tmp_path: Path, label: str, *args: str) -> tuple[bytes, bytes]:
    out, stats = tmp_path / f"{label}.jsonl", tmp_path / f"{label}.stats.json"
    assert main(["scan", "-q", "-o", str(out), "--stats", str(stats), *args]) in (0, 3)
    return out.read_bytes(), stats.read_bytes()


def test_files_on_their_own_split_either_way_give_one_process_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captures = [*_samples(), str(tmp_path / "missing.pcap")]
    assert parallel.split_by_files(captures, False, 2)  # so the CLI tests above split by files
    one = _scan_in_process(tmp_path, "one", *captures)
    by_files = _scan_in_process(tmp_path, "files", "--workers", "3", *captures)
    monkeypatch.setattr(parallel, "split_by_files", lambda *args: False)  # the forks inherit it
    by_partitions = _scan_in_process(tmp_path, "parts", "--workers", "2", *captures)
    assert one[0].count(b"\n") > 10
    assert by_files == one
    assert by_partitions == one


def test_split_by_files_only_when_no_file_dominates(tmp_path: Path) -> None:
    sizes = {"a": 1000, "b": 1000, "c": 1000, "d": 1000, "big": 100_000}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"\0" * size)
    even = [str(tmp_path / n) for n in "abcd"]
    assert parallel.split_by_files(even, False, 2)
    assert parallel.split_by_files(even, False, 4)
    assert not parallel.split_by_files(even, True, 2)  # one stream: its DNS and flows carry over
    assert not parallel.split_by_files(even[:1], False, 2)
    # One file holds nearly everything: partitions divide it, whole files cannot.
    assert not parallel.split_by_files([*even, str(tmp_path / "big")], False, 2)


def test_a_datagram_is_not_completed_across_files_on_their_own(tmp_path: Path) -> None:
    """Its later fragments in one file and its first in the next: files on their own share
    nothing, so one process must not reassemble it either (a split by files cannot)."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    query = IP(src="192.0.2.1", dst="198.51.100.53", id=7) / UDP(sport=40000, dport=53)
    query = query / DNS(rd=1, qd=DNSQR(qname="www.example.com"))
    pieces = [Ether() / piece for piece in fragment(query, fragsize=16)]
    for n, piece in enumerate(pieces):
        piece.time = 1_700_000_000 + n / 10
    first, later = tmp_path / "b-first.pcap", tmp_path / "a-later.pcap"
    wrpcap(str(later), pieces[1:])
    wrpcap(str(first), pieces[:1])
    both = _scan_in_process(tmp_path, "both", str(later), str(first))
    alone = _scan_in_process(tmp_path, "alone", str(first))
    assert b"www.example.com" not in both[0]  # the first fragment alone: no query to read
    assert both[0] == alone[0]  # the later fragments, without their first, make no flow


def test_worker_messages_keep_every_value() -> None:
    """Records and packed results go by marshal (plain values), anything else pickled: all arrive
    as sent, a result as the dataclass it was (its Counters Counters again)."""
    from collections import Counter

    mine, theirs = workerproc.channels()
    record = {"flow": 3, "ts": 1.5, "names": ["a", "b"], "tunnel": None, "ok": True, "pair": (1, 2)}
    stats = parallel.InputStats(packets=7, skipped=Counter({"arp": 2, "non-ip": 1}), problems=["cut"])
    result = parallel.PartResult(stats, {"tls.record": (2, 1)}, False, 5)
    big = ("records", [(n, record) for n in range(20_000)], 1)  # more than the pipe holds at once
    for msg in (("records", [(1, record)], 1), ("done", result), ("done", parallel.pack_result(result))):
        workerproc.send_message(theirs, msg)
        assert workerproc.recv_message(mine) == msg
    pid = os.fork()
    if pid == 0:  # a writer that blocks until the reader has taken the first part
        try:
            workerproc.send_message(theirs, big)
        finally:
            os._exit(0)
    assert workerproc.recv_message(mine) == big
    os.waitpid(pid, 0)
    workerproc.send_message(theirs, ("records", [(1, record)], 1))
    assert mine.recv_bytes()[:1] == b"m"  # the cheap way for records
    workerproc.send_message(theirs, ("done", parallel.pack_result(result)))
    data = mine.recv_bytes()
    assert data[:1] == b"m"  # and for results, packed
    back = parallel.unpack_result(marshal.loads(data[1:])[1])
    assert back == result and type(back.stats.skipped) is Counter
    theirs.close()
    with pytest.raises(EOFError):  # the worker's end closed: a worker that died
        mine.recv_bytes()
    mine.close()


def test_the_summary_fields_are_all_the_summary_reads() -> None:
    """Workers that write JSON lines send the parent only ``Summary.FIELDS`` of each record: a
    summary of those must be the summary of the whole records."""
    from classifier.pipeline import Scanner, ScanOptions
    from classifier.policy import Policy
    from classifier.record import flow_record
    from classifier.report import Summary
    from classifier.scaninputs import scan_inputs
    from classifier.signatures import Signatures, shipped_directory

    records: list[dict] = []
    sigs = Signatures.load(shipped_directory())
    scanner = Scanner(
        sigs,
        Policy.load(shipped_directory() / "policy"),
        ScanOptions(),
        lambda f: records.append(flow_record(f)),
    )
    scan_inputs(_samples(), scanner, parallel.InputStats(), False, False)
    scanner.finish()
    whole, slim = Summary(), Summary()
    for rec in records:
        whole.add(rec)
        slim.add({name: rec[name] for name in Summary.FIELDS})
    assert len(records) > 10 and whole.hostnames and whole.blind
    assert vars(slim) == vars(whole)


def test_a_json_line_is_renumbered_at_its_flow_key_only() -> None:
    from classifier.record import json_line

    rec = {"file": 'odd ,"flow":7, name', "flow": 3, "first_packet": 1, "note": ',"flow":9,'}
    line = parallel._renumbered(json_line(rec), 40)
    assert line == json_line({**rec, "flow": 43})


@pytest.mark.parametrize("split", [("--continuous",), ()], ids=["by-address", "by-files"])
def test_json_lines_and_summary_from_workers_are_one_process_s(split: tuple[str, ...]) -> None:
    """JSON lines (the workers encode them, the parent joins them; by files, renumbered) and,
    without -q, the summary on stderr (from the fields the workers send with each line)."""
    captures = _samples()
    assert parallel.split_by_files(captures, bool(split), 2) == (not split)
    one = run_cli("scan", *split, *captures, check_status=None)
    many = run_cli("scan", "--workers", "2", *split, *captures, check_status=None)
    assert one.returncode == many.returncode
    assert one.stdout.count(b"\n") > 10 and b"Flows by app" in one.stderr
    assert many.stdout == one.stdout
    assert many.stderr == one.stderr


def test_worker_pipes_hold_several_batches() -> None:
    """A worker's pipe is widened so that it need not wait while the parent reads another's."""
    import fcntl

    for duplex in (False, True):
        mine, theirs = workerproc.channels(duplex)
        assert fcntl.fcntl(mine.fileno(), fcntl.F_GETPIPE_SZ) == workerproc.PIPE_BYTES
        mine.close()
        theirs.close()


def _edge_capture(path: Path) -> None:
    """First packets the compiled short cut must get right, or leave to ``Scanner.feed``: a
    SYN-ACK first, a RST first, a FIN first, both ends the same address and port, TCP options,
    IPv4 options, DNS, a tunnel port, a closed flow's port reused, many short flows (the cap); and
    over IPv6 too."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    a, b = "192.0.2.10", "198.51.100.20"
    pkts = [
        IP(src=b, dst=a) / TCP(sport=443, dport=40000, flags="SA"),
        IP(src=a, dst=b) / TCP(sport=40000, dport=443, flags="A"),
        IP(src=a, dst=b) / TCP(sport=40001, dport=80, flags="R"),
        IP(src=b, dst=a) / TCP(sport=80, dport=40002, flags="FA"),
        IP(src=a, dst=a) / TCP(sport=5000, dport=5000, flags="SA"),
        IP(src=a, dst=a) / TCP(sport=5000, dport=5000, flags="A"),
        IP(src=a, dst=b) / TCP(sport=40003, dport=443, flags="S", options=[("MSS", 1460), ("NOP", None)]),
        IP(src=a, dst=b, options=b"\x01\x01\x01\x01") / TCP(sport=40004, dport=443, flags="S"),
        IP(src=a, dst=b) / UDP(sport=40005, dport=53) / (b"\0" * 12),
        IP(src=a, dst=b) / UDP(sport=4789, dport=4789) / (b"\0" * 8),
        IP(src=a, dst=b) / TCP(sport=40006, dport=443, flags="S"),
        IP(src=a, dst=b) / TCP(sport=40006, dport=443, flags="FA"),
        IP(src=b, dst=a) / TCP(sport=443, dport=40006, flags="FA"),
        IP(src=a, dst=b) / TCP(sport=40006, dport=443, flags="S"),
        IP(src=a, dst=b) / TCP(sport=40001, dport=80, flags="S"),  # a new connection after the RST
        IP(src=b, dst=a) / TCP(sport=80, dport=40002, flags="S"),  # one FIN only: the same one
    ]
    pkts += [IP(src=a, dst=f"203.0.113.{i}") / UDP(sport=41000 + i, dport=123) for i in range(40)]
    # IPv6: the same cases, an extension header, a jumbogram's zero length, a cut TCP header.
    c, d = "2001:db8::10", "2001:db8:1::20"
    mss = [("MSS", 1440), ("NOP", None)]
    pkts += [
        IPv6(src=d, dst=c) / TCP(sport=443, dport=40000, flags="SA"),
        IPv6(src=c, dst=d) / TCP(sport=40000, dport=443, flags="A") / b"data",
        IPv6(src=c, dst=d) / TCP(sport=40001, dport=80, flags="R"),
        IPv6(src=d, dst=c) / TCP(sport=80, dport=40002, flags="FA"),
        IPv6(src=c, dst=c) / TCP(sport=5000, dport=5000, flags="SA"),
        IPv6(src=c, dst=d) / TCP(sport=40003, dport=443, flags="S", options=mss),
        IPv6(src=c, dst=d) / IPv6ExtHdrHopByHop() / TCP(sport=40004, dport=443, flags="S"),
        IPv6(src=c, dst=d) / UDP(sport=40005, dport=53) / (b"\0" * 12),
        IPv6(src=c, dst=d) / UDP(sport=4789, dport=4789) / (b"\0" * 8),
        IPv6(src=c, dst=d, plen=0) / UDP(sport=40007, dport=443) / (b"\0" * 30),
        IPv6(src=c, dst=d, plen=12) / TCP(sport=40008, dport=443, flags="S"),
        IPv6(src=c, dst=d, plen=24) / TCP(sport=40010, dport=443, flags="S", options=mss),  # cut options
        IPv6(src=d, dst=c) / UDP(sport=443, dport=40009) / (b"\0" * 1200),
    ]
    pkts += [IPv6(src=c, dst=f"2001:db8:2::{i:x}") / UDP(sport=42000 + i, dport=443) for i in range(20)]
    frames = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p for p in pkts]
    for n, frame in enumerate(frames):
        frame.time = 1_700_000_000 + n / 2  # 27 s: flows closed by a FIN or RST end after 10
    wrpcap(str(path), frames)


def _parts(
    sigs: object, policy: object, captures: list[str], parts: int, compiled: bool, options: object
) -> list[tuple]:
    """(records, stats, first packets of other partitions' flows made by the short cut) of each
    partition, with the compiled first packet or without."""
    return [_part(sigs, policy, options, captures, part, parts, compiled) for part in range(parts)]


def _part(
    sigs: object, policy: object, options: object, captures: list[str], part: int, parts: int, compiled: bool
) -> tuple:
    from classifier.partition import PartScanner
    from classifier.record import flow_record
    from classifier.scaninputs import scan_inputs

    records: list[tuple] = []
    scanner = PartScanner(
        sigs,  # type: ignore[arg-type]
        policy,  # type: ignore[arg-type]
        options,  # type: ignore[arg-type]
        lambda f, seq: records.append((seq, f and flow_record(f))),
        part,
        parts,
    )
    if not compiled:
        vars(scanner).pop("feed", None)  # Scanner.feed again
    short_cuts = 0
    end = scanner.table.end
    flows: list[tuple] = []  # what the table keeps of every flow, reported here or not

    def count(flow: parallel.Flow, reason: str) -> None:
        nonlocal short_cuts
        if flow.ended:
            return end(flow, reason)
        end(flow, reason)
        # The short cut leaves the next hop unset: only a record shows it.
        short_cuts += flow.neighbour is None and not scanner.owns(flow)
        flows.append(
            (flow.id, flow.key, flow.client, flow.client_port, flow.first_ts, flow.last_ts, flow.fin,
             flow.c2s_pkts, flow.c2s_bytes, flow.s2c_pkts, flow.s2c_bytes, flow.end_reason, flow.first_packet)
        )  # fmt: skip

    scanner.table.end = count  # type: ignore[method-assign]  # sees every flow, its partition's or not
    stats = parallel.InputStats()
    scan_inputs(captures, scanner, stats, False, False)
    scanner.finish()
    scanner.fill_stats(stats)
    return records, stats, dict(scanner.inspection.first_seen), short_cuts, flows


@pytest.mark.parametrize("parts", [2, 3])
def test_the_compiled_first_packet_of_other_partitions_flows_changes_nothing(
    tmp_path: Path, parts: int, sigs: object, policy: object
) -> None:
    from classifier.flows import FlowConfig
    from classifier.pipeline import ScanOptions

    _need_compiled_feed()
    edge = tmp_path / "edge.pcap"
    _edge_capture(edge)
    for captures, options in (
        ([str(edge)], ScanOptions()),
        ([str(edge)], ScanOptions(flows=FlowConfig(max_flows=8, idle_udp=2.0))),
    ):
        with_short_cut = _parts(sigs, policy, captures, parts, True, options)
        without = _parts(sigs, policy, captures, parts, False, options)
        for got, want in zip(with_short_cut, without, strict=True):
            assert got[0] == want[0]
            assert got[1] == want[1] and got[2] == want[2]
            assert got[4] == want[4]  # every flow alike: numbers, keys, ends, times and counters
        # All Ethernet: Scanner.feed sets every flow's next hop, the short cut none.
        assert sum(want[3] for want in without) == 0
        assert sum(got[3] for got in with_short_cut) > 10


@pytest.mark.real
def test_the_compiled_first_packet_changes_nothing_on_the_real_captures(sigs: object, policy: object) -> None:
    """The compiled first packet (flow made, numbered, filed in its bucket in C) against
    ``Scanner.feed`` for every packet, on the real captures: every partition's records, statistics
    and every flow the table ended (reported there or not) alike."""
    from classifier.pipeline import ScanOptions

    _need_compiled_feed()
    captures = _real()
    with_short_cut = _parts(sigs, policy, captures, 2, True, ScanOptions())
    without = _parts(sigs, policy, captures, 2, False, ScanOptions())
    for got, want in zip(with_short_cut, without, strict=True):
        assert got[0] == want[0]
        assert got[1] == want[1] and got[2] == want[2]
        assert got[4] == want[4]
    assert sum(got[3] for got in with_short_cut) > 100


def test_the_partition_short_cut_is_built_fresh_and_refusable() -> None:
    """The install builds classifier._partfeed (CI fails without it); an editable install whose
    .so is older than its .pyx is not what the source says; CLASSIFIER_PURE_PYTHON refuses it, and
    a scan then writes the same."""
    from classifier import partition

    _need_compiled_feed()
    built = Path(sys.modules[partition.COMPILED_FEED.__module__].__file__ or "")
    source = ROOT / "classifier" / "_partfeed.pyx"
    assert built.suffix == ".so", built
    if built.parent == source.parent:
        assert built.stat().st_mtime >= source.stat().st_mtime, f"{built.name} is older than {source.name}"
    captures = [*_samples()]
    compiled = run_cli("scan", "-q", "--continuous", "--workers", "2", *captures, check_status=None)
    code = "import classifier.partition as p; print(p.COMPILED_FEED is None)"
    pure = {**os.environ, "CLASSIFIER_PURE_PYTHON": "1"}
    refused = subprocess.run([sys.executable, "-c", code], env=pure, capture_output=True, text=True, cwd=ROOT)
    assert refused.stdout.strip() == "True"
    one = subprocess.run(
        [sys.executable, "-m", "classifier", "scan", "-q", "--continuous", "--workers", "2", *captures],
        env=pure,
        capture_output=True,
        cwd=ROOT,
    )
    assert compiled.stdout.count(b"\n") > 10
    assert one.stdout == compiled.stdout


@pytest.mark.real
@pytest.mark.parametrize("parts", [2, 3])
def test_partitions_are_given_even_shares_of_the_flows(
    parts: int, corpus: str, sigs: object, policy: object
) -> None:
    # Each new server address goes to the partition given the fewest flows so far: on the corpus
    # (a few servers carry most flows) crc32 alone gave 2,748 and 3,978 of 6,726 records at 2.
    from classifier.pipeline import ScanOptions

    counts = [sum(1 for _seq, rec in _part(sigs, policy, ScanOptions(), [corpus], k, parts, True)[0] if rec)
              for k in range(parts)]  # fmt: skip
    assert max(counts) - min(counts) <= sum(counts) // (20 * parts), counts


def test_a_server_keeps_its_partition_and_new_ones_go_to_the_least_loaded(
    sigs: object, policy: object
) -> None:
    from classifier.partition import PartScanner
    from classifier.pipeline import ScanOptions

    scanner = PartScanner(sigs, policy, ScanOptions(), lambda f, s: None, 0, 3)  # type: ignore[arg-type]
    a, b, c, d = (bytes([198, 51, 100, i]) for i in range(4))
    assert [scanner.owner(x) for x in (a, b)] == [0, 0]  # no flow made yet: the lowest partition
    scanner.load[:] = [5, 1, 3]  # flows made count (by the table), not addresses asked about
    assert scanner.owner(c) == 1
    assert scanner.owner(d) == 1 and scanner.owner(a) == 0  # new: least loaded; known: unchanged
    scanner.load[:] = [0, 9, 9]
    assert scanner.owner(d) == 1


def test_addresses_past_the_remembered_ones_go_by_crc32(
    monkeypatch: pytest.MonkeyPatch, sigs: object, policy: object
) -> None:
    from classifier import partition
    from classifier.pipeline import ScanOptions

    monkeypatch.setattr(partition, "MAX_ASSIGNED", 2)
    scanner = partition.PartScanner(sigs, policy, ScanOptions(), lambda f, s: None, 0, 4)  # type: ignore[arg-type]
    kept = [bytes([198, 51, 100, i]) for i in range(2)]
    assert [scanner.owner(x) for x in kept] == [0, 0]
    scanner.load[:] = [9, 0, 0, 0]
    assert scanner.owner(kept[0]) == 0  # remembered: unchanged by the load
    later = [bytes([203, 0, 113, i]) for i in range(16)]
    assert [scanner.owner(x) for x in later] == [partition.partition_of(x, 4) for x in later]
    assert len(scanner._parts) == 2


def test_lines_from_workers_are_written_as_the_bytes_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent writes the workers' JSON lines to the file's binary layer, after what was written
    as text; a stream in another encoding gets them as text, encoded as one process writes them."""
    import io

    from classifier.outputs import TextOutput

    path = tmp_path / "out.jsonl"
    out = TextOutput(str(path))
    out.write("a\n")
    out.write_bytes("é\n".encode())
    out.write("b\n")
    out.close()
    assert path.read_bytes() == "a\né\nb\n".encode()
    latin = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    monkeypatch.setattr(sys, "stdout", latin)
    out = TextOutput(None)
    out.write("a\n")
    out.write_bytes("é\n".encode())
    out.close()
    assert latin.buffer.getvalue() == "a\né\n".encode("latin-1")


def _repeated_capture(path: Path, source: str, copies: int) -> None:
    """One capture holding ``source``'s packets ``copies`` times, each copy later in time."""
    import dpkt

    with open(source, "rb") as f:
        reader = dpkt.pcap.UniversalReader(f)
        linktype = reader.datalink()
        packets = list(reader)
    span = packets[-1][0] - packets[0][0] + 3600
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=linktype)
        for k in range(copies):
            for ts, buf in packets:
                writer.writepkt(buf, ts=float(ts) + k * span)


@pytest.mark.real
@pytest.mark.parametrize("split", ["files", "partitions"])
def test_ctrl_c_ends_the_scan_and_every_worker(tmp_path: Path, split: str) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) while the workers scan: the scan says it
    was interrupted and exits 130, with no traceback, and no worker outlives it."""
    source = str(need_shared(REAL) / "wechat.pcap")  # 1,672 packets over an hour
    if split == "files":
        captures = [source] * 400  # files on their own: whole files to the workers
    else:
        big = tmp_path / "big.pcap"
        _repeated_capture(big, source, 150)  # one capture: split by server address
        captures = [str(big)]
    cmd = [sys.executable, "-m", "classifier", "scan", "-q", "--no-progress", "--workers", "2"]
    with running_with_workers([*cmd, "-o", str(tmp_path / "out.jsonl"), *captures]) as (proc, workers):
        time.sleep(0.05)  # both at work
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = communicate_or_fail(proc, 30, "a scan sent Ctrl-C")
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # nothing of the scan's process group is left
    assert proc.returncode == 130, err.decode(errors="replace")
    assert err.decode().strip().splitlines()[-1] == "classifier: interrupted", err.decode(errors="replace")
    assert b"Traceback" not in err
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the scan"
