"""JA4S in the gateway: the ServerHello is read after the verdict, never instead of it.

The verdict is acted on at the packet that decided the flow; reading the ServerHello afterwards can
add the record's ``ja4s`` but never change or delay the action, and a blocked flow's later packets
(a ServerHello that raced the verdict, retransmissions) are all dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP
from test_gateway_floor import TIKTOK, Packet
from test_ja4 import server_hello
from test_scanner import client_hello

from classifier.gateway import config as gwconfig
from classifier.gateway.inline import InlineEngine
from classifier.gateway.metrics import Stats
from classifier.gateway.recordlog import RecordLog
from classifier.timeutil import parse_instant

C, S = "192.0.2.7", "203.0.113.80"
HELLO = server_hello(0x1301, [(0x002B, b"\x03\x04")])


class CountingEngine(InlineEngine):
    """An inline engine that remembers each verdict it acted on, with the packet it acted at."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.acted: list[tuple[str, bytes | None]] = []

    def act(self, flow, action: str, packet: bytes | None) -> None:
        self.acted.append((action, packet))
        super().act(flow, action, packet)


def engine(tmp_path: Path, sigs, policy) -> CountingEngine:
    cfg = gwconfig.GatewayConfig(
        mode="inline", as_of=parse_instant("2025-03-01"), log=str(tmp_path / "r.jsonl")
    )
    return CountingEngine(cfg, sigs, policy, RecordLog(cfg.log), Stats())


def exchange(sni: str, cport: int) -> list[bytes]:
    """SYN, SYN-ACK, ClientHello, the ServerHello, and the client's next record."""
    return [
        bytes(IP(src=C, dst=S) / TCP(sport=cport, dport=443, flags="S", seq=1000)),
        bytes(IP(src=S, dst=C) / TCP(sport=443, dport=cport, flags="SA", seq=5000, ack=1001)),
        bytes(
            IP(src=C, dst=S) / TCP(sport=cport, dport=443, flags="PA", seq=1001, ack=5001) / client_hello(sni)
        ),
        bytes(IP(src=S, dst=C) / TCP(sport=443, dport=cport, flags="PA", seq=5001, ack=1501) / HELLO),
        bytes(
            IP(src=C, dst=S)
            / TCP(sport=cport, dport=443, flags="PA", seq=1501, ack=5100)
            / b"\x17\x03\x03\x00\x01\x00"
        ),
    ]


def run(gw: CountingEngine, packets: list[bytes]) -> list[str]:
    out = []
    for raw in packets:
        p = Packet(raw)
        gw._on_packet(p)
        out.append(p.verdict)
    return out


def records(gw: CountingEngine) -> dict[int, dict]:
    gw.finish()
    return {r["sport"]: r for r in map(json.loads, Path(gw.log.path).read_text().splitlines())}


def test_an_allowed_flow_gets_its_ja4s(tmp_path, sigs, policy):
    gw = engine(tmp_path, sigs, policy)
    assert run(gw, exchange("www.example.com", 41000)) == ["accept"] * 5
    rec = records(gw)[41000]
    assert rec["action"] != "block" and rec["ja4s"] is not None and rec["ja4s"].startswith("t130100_1301_")


def test_a_blocked_flow_is_acted_on_at_its_client_hello_and_stays_blocked(tmp_path, sigs, policy):
    gw = engine(tmp_path, sigs, policy)
    packets = exchange(TIKTOK, 41001)
    # the ServerHello and the client's next record raced the verdict: both still dropped
    assert run(gw, packets) == ["accept", "accept", "drop", "drop", "drop"]
    assert gw.acted == [("block", packets[2])]  # once, at the packet that decided the flow
    rec = records(gw)[41001]
    assert rec["action"] == "block" and rec["ja4s"] is not None  # read after the verdict
