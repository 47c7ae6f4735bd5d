"""The inline gateway on tunnelled flows: the per-packet verdict drops the tunnel packets of a
blocked inner flow, and nothing keyed on the inner 5-tuple (nft set elements, RSTs) is made, since
it would hit untunnelled traffic that shares the 5-tuple, never the tunnel."""

from __future__ import annotations

from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.inet import IP, TCP, UDP
from test_gateway_floor import TIKTOK, Packet
from test_scanner import client_hello

from classifier.gateway import config as gwconfig
from classifier.gateway.inline import InlineEngine
from classifier.gateway.metrics import Stats
from classifier.gateway.recordlog import RecordLog
from classifier.timeutil import parse_instant

C, S = "192.0.2.7", "71.18.1.10"  # subscriber; a ByteDance (AS396986) server
ENB, CORE = "198.51.100.1", "198.51.100.2"


class RecordingSets:
    """Stands in for the nft sets: remembers what the engine asked to add."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []

    def add(self, flow, action: str, now: float, immediate: bool = False) -> None:
        self.added.append((f"{flow.client_port}", action))


def gtpu(inner):
    return IP(src=ENB, dst=CORE) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=7) / inner


def tls_flow(wrap, cport: int) -> list:
    return [
        wrap(IP(src=C, dst=S) / TCP(sport=cport, dport=443, flags="S", seq=1000)),
        wrap(IP(src=S, dst=C) / TCP(sport=443, dport=cport, flags="SA", seq=5000, ack=1001)),
        wrap(
            IP(src=C, dst=S)
            / TCP(sport=cport, dport=443, flags="PA", seq=1001, ack=5001)
            / client_hello(TIKTOK)
        ),
    ]


def test_tunnelled_block_is_a_packet_verdict_only(tmp_path, sigs, policy):
    cfg = gwconfig.GatewayConfig(
        mode="inline", as_of=parse_instant("2025-03-01"), log=str(tmp_path / "r.jsonl")
    )
    sets = RecordingSets()
    engine = InlineEngine(cfg, sigs, policy, RecordLog(cfg.log), Stats(), sets)
    verdicts = {}
    for name, wrap, cport in (("tunnelled", gtpu, 41000), ("plain", lambda p: p, 41001)):
        out = []
        for pkt in tls_flow(wrap, cport):
            p = Packet(pkt)
            engine._on_packet(p)
            out.append(p.verdict)
        verdicts[name] = out
    assert verdicts == {"tunnelled": ["accept", "accept", "drop"], "plain": ["accept", "accept", "drop"]}
    assert sets.added == [("41001", "block")]  # the plain flow only


def test_a_fragmented_tunnel_packet_is_judged_when_its_last_fragment_arrives(tmp_path, sigs, policy):
    """GRE at MTU 1500 fragments the tunnel packet carrying a ClientHello: the fragments pass until
    the one that completes the datagram, which gets the inner flow's verdict (drop for TikTok), so
    the far end can never reassemble it."""
    from scapy.layers.inet import GRE
    from scapy.layers.inet import fragment as fragment4

    cfg = gwconfig.GatewayConfig(
        mode="inline", as_of=parse_instant("2025-03-01"), log=str(tmp_path / "r.jsonl")
    )
    sets = RecordingSets()
    engine = InlineEngine(cfg, sigs, policy, RecordLog(cfg.log), Stats(), sets)

    def gre(inner):
        return IP(src=ENB, dst=CORE, id=0x77) / GRE(proto=0x0800) / inner

    syn, synack, hello = tls_flow(gre, 41002)
    pieces = fragment4(IP(bytes(hello)), fragsize=200)
    verdicts = []
    for pkt in [syn, synack, *pieces]:
        p = Packet(pkt)
        engine._on_packet(p)
        verdicts.append(p.verdict)
    assert verdicts == ["accept", "accept"] + ["accept"] * (len(pieces) - 1) + ["drop"]
    assert sets.added == []  # a tunnelled flow: the packet verdict only
