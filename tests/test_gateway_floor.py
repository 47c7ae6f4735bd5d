"""The gateway's decision path (no root): forged DNS never makes it block; the block floor applies.

An ``InlineEngine`` is fed raw IP packets the way NFQUEUE hands them over (a stand-in packet
object records the verdict); the policy instant is fixed in 2025, when PAFACA covers TikTok
hosting in the announced view.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from test_gateway_units import _args
from test_scanner import client_hello

from classifier.errors import UserError
from classifier.gateway import config as gwconfig
from classifier.gateway.inline import InlineEngine
from classifier.gateway.metrics import Stats
from classifier.gateway.recordlog import RecordLog
from classifier.timeutil import parse_instant

C, R, X = "192.0.2.7", "198.51.100.53", "203.0.113.80"
TIKTOK = "www.tiktok.com"


class Packet:
    """What netfilterqueue hands the engine: payload, input interface, and the verdict calls."""

    def __init__(self, pkt) -> None:
        self.data = bytes(pkt)
        self.indev = 0
        self.verdict: str | None = None

    def get_payload(self) -> bytes:
        return self.data

    def accept(self) -> None:
        self.verdict = "accept"

    def drop(self) -> None:
        self.verdict = "drop"


class Gateway:
    def __init__(self, tmp_path, sigs, policy, **settings) -> None:
        self.cfg = gwconfig.GatewayConfig(
            mode="inline", as_of=parse_instant("2025-03-01"), log=str(tmp_path / "records.jsonl"), **settings
        )
        self.stats = Stats()
        self.engine = InlineEngine(self.cfg, sigs, policy, RecordLog(self.cfg.log), self.stats)

    def send(self, pkt) -> str:
        p = Packet(pkt)
        self.engine._on_packet(p)
        return p.verdict

    def records(self) -> dict[tuple[str, int], dict]:
        self.engine.finish()
        lines = Path(self.cfg.log).read_text(encoding="utf-8").splitlines()
        return {(r["src"], r["sport"]): r for r in map(json.loads, lines)}


def dns(
    gw: Gateway, qname: str, answer_name: str, addr: str, txid: int = 7, cport: int = 40100, ask: bool = True
) -> None:
    if ask:
        assert gw.send(IP(src=C, dst=R) / UDP(sport=cport, dport=53) / DNS(id=txid, qd=DNSQR(qname=qname)))
    an = DNSRR(rrname=answer_name, type="A", rdata=addr, ttl=300)
    gw.send(
        IP(src=R, dst=C) / UDP(sport=53, dport=cport) / DNS(id=txid, qr=1, qd=DNSQR(qname=answer_name), an=an)
    )


def nameless_tls(gw: Gateway, cport: int = 41000) -> list[str]:
    """Verdicts for the SYN, SYN-ACK and the SNI-less ClientHello."""
    return [
        gw.send(IP(src=C, dst=X) / TCP(sport=cport, dport=443, flags="S", seq=1000)),
        gw.send(IP(src=X, dst=C) / TCP(sport=443, dport=cport, flags="SA", seq=5000, ack=1001)),
        gw.send(
            IP(src=C, dst=X)
            / TCP(sport=cport, dport=443, flags="PA", seq=1001, ack=5001)
            / client_hello(None)
        ),
    ]


def test_bound_answer_blocks_the_nameless_flow(tmp_path, sigs, policy):
    gw = Gateway(tmp_path, sigs, policy)
    dns(gw, TIKTOK, TIKTOK, X)
    assert nameless_tls(gw) == ["accept", "accept", "drop"]
    r = gw.records()[(C, 41000)]
    assert (r["hostname_source"], r["confidence"], r["action"]) == ("dns", "medium", "block")
    assert gw.stats.dns_binding["bound"] == 1


@pytest.mark.parametrize(
    ("forgery", "named_by"),
    [
        ("unsolicited", "dns-unsolicited"),  # kept as a low-confidence name
        ("other-client-port", "dns-unsolicited"),
        ("wrong-txid", None),  # contradicts the pending query: names nothing
        ("question-rewritten", None),
    ],
)
def test_forged_answer_never_blocks(tmp_path, sigs, policy, forgery, named_by):
    gw = Gateway(tmp_path, sigs, policy)
    if forgery == "unsolicited":
        dns(gw, TIKTOK, TIKTOK, X, ask=False)
    elif forgery == "wrong-txid":
        gw.send(IP(src=C, dst=R) / UDP(sport=40100, dport=53) / DNS(id=7, qd=DNSQR(qname=TIKTOK)))
        dns(gw, TIKTOK, TIKTOK, X, txid=8, ask=False)
    elif forgery == "question-rewritten":
        gw.send(IP(src=C, dst=R) / UDP(sport=40100, dport=53) / DNS(id=7, qd=DNSQR(qname="www.example.org")))
        dns(gw, TIKTOK, TIKTOK, X, ask=False)
    else:
        gw.send(IP(src=C, dst=R) / UDP(sport=40100, dport=53) / DNS(id=7, qd=DNSQR(qname=TIKTOK)))
        dns(gw, TIKTOK, TIKTOK, X, cport=40101, ask=False)
    assert nameless_tls(gw) == ["accept"] * 3
    r = gw.records()[(C, 41000)]
    assert gw.stats.verdicts["block"] == 0 and gw.stats.dns_binding["bound"] == 0
    assert r["hostname_source"] == named_by
    if named_by is None:
        assert (r["app"], r["action"]) == (None, "allow")
    else:
        assert (r["app"], r["confidence"], r["action"], r["rule"]) == (
            "tiktok",
            "low",
            "log",
            "below-block-confidence",
        )
        assert gw.stats.withheld == {"below-block-confidence": 1}


def name_history(gw: Gateway) -> str:
    """SNI www.tiktok.com to X (blocked), then a nameless UDP flow to X: its first packet's verdict."""
    gw.send(IP(src=C, dst=X) / TCP(sport=40200, dport=443, flags="S", seq=1000))
    gw.send(IP(src=X, dst=C) / TCP(sport=443, dport=40200, flags="SA", seq=5000, ack=1001))
    assert (
        gw.send(
            IP(src=C, dst=X)
            / TCP(sport=40200, dport=443, flags="PA", seq=1001, ack=5001)
            / client_hello(TIKTOK)
        )
        == "drop"
    )
    return gw.send(IP(src=C, dst=X) / UDP(sport=40201, dport=443) / (b"\x00" * 40))


def test_name_history_is_logged_by_default(tmp_path, sigs, policy):
    gw = Gateway(tmp_path, sigs, policy)
    assert name_history(gw) == "accept"
    r = gw.records()[(C, 40201)]
    assert (r["hostname_source"], r["action"], r["rule"]) == ("name-history", "log", "below-block-confidence")
    assert "a block needs confidence medium or higher" in r["reason"]
    assert gw.stats.withheld == {"below-block-confidence": 1}


def test_name_history_blocks_when_the_config_allows_it(tmp_path, sigs, policy):
    cfg_file = tmp_path / "gw.toml"
    kinds = ", ".join(f'"{k}"' for k in ("sni", "dns", "name-history"))
    cfg_file.write_text(f'[gateway]\nblock_confidence = "low"\nblock_evidence = [{kinds}]\n')
    cfg = gwconfig.load(cfg_file)
    gw = Gateway(
        tmp_path, sigs, policy, block_confidence=cfg.block_confidence, block_evidence=cfg.block_evidence
    )
    assert name_history(gw) == "drop"
    assert gw.records()[(C, 40201)]["rule"] == "provision-effective"


def test_config_and_flags_refuse_unsolicited_dns_as_block_evidence(tmp_path):
    cfg_file = tmp_path / "gw.toml"
    cfg_file.write_text('[gateway]\nblock_evidence = ["sni", "dns-unsolicited"]\n')
    with pytest.raises(UserError, match=r"\[gateway\] block_evidence: dns-unsolicited can never support"):
        gwconfig.load(cfg_file)
    cfg_file.write_text('[gateway]\nblock_confidence = "certain"\n')
    with pytest.raises(UserError, match=r"\[gateway\] block_confidence: 'certain' is not one of low"):
        gwconfig.load(cfg_file)
    with pytest.raises(SystemExit):
        _args(block_evidence="sni,dns-unsolicited")
    cfg_file.write_text('[gateway]\nblock_confidence = "high"\n')
    cfg = gwconfig.resolve(_args(config=cfg_file))
    assert cfg.block_confidence == "high" and "name-history" not in cfg.block_evidence
    cfg = gwconfig.resolve(_args(config=cfg_file, block_confidence="low", block_evidence="sni,name-history"))
    assert (cfg.block_confidence, cfg.block_evidence) == ("low", ("sni", "name-history"))


def test_metrics_count_withheld_blocks_and_dns_outcomes(tmp_path, sigs, policy):
    from prometheus_client import CollectorRegistry, generate_latest

    from classifier.gateway.metrics import _Collector

    gw = Gateway(tmp_path, sigs, policy)
    dns(gw, TIKTOK, TIKTOK, X, ask=False)
    nameless_tls(gw)
    gw.records()
    reg = CollectorRegistry()
    reg.register(_Collector(gw.stats, "inline", None, lambda: 0))
    text = generate_latest(reg).decode()
    assert 'classifier_gateway_dns_total{mode="inline",outcome="dns-unsolicited"} 1.0' in text
    assert 'classifier_gateway_block_withheld_total{mode="inline",rule="below-block-confidence"} 1.0' in text


def test_records_carry_the_configured_community_id_seed(tmp_path, sigs, policy):
    from communityid import CommunityID, FlowTuple

    ids = {}
    for seed in (0, 4242):
        (tmp_path / str(seed)).mkdir()
        gw = Gateway(tmp_path / str(seed), sigs, policy, community_id_seed=seed)
        dns(gw, TIKTOK, TIKTOK, X)
        nameless_tls(gw)
        r = gw.records()[(C, 41000)]
        tup = FlowTuple.make_tcp(r["src"], r["dst"], r["sport"], r["dport"])
        assert r["community_id"] == CommunityID(seed=seed).calc(tup)  # the reference implementation
        ids[seed] = r["community_id"]
    assert ids[0] != ids[4242]
