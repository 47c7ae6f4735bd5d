"""Protocols that name an app by their framing are one inspector module plus one protocols.toml entry.

A toy protocol registered from this test module, with a signature directory whose protocols.toml
names it, is recognised, parsed, attributed and recorded end to end, without any code of the
driver or of the attribution stage knowing it; the loader refuses entries for protocols nothing
registers, and the block floor lets a new protocol block only when the operator names it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from classifier.blockfloor import BlockFloor, check_evidence
from classifier.errors import MalformedError, SignatureError
from classifier.inspect import registry
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import flow_record
from classifier.signatures import Signatures, shipped_directory

CLIENT, SERVER = "198.51.100.7", "203.0.113.50"  # documentation addresses: no signature covers them
T0 = 1_740_000_000.0  # 2025-02-19: TikTok hosting is covered (announced view)
MAGIC = b"TOY!"


@dataclass(frozen=True, slots=True)
class ToyGreeting:
    version: int
    name: str


def looks_like_toy(data: bytes) -> bool:
    return data.startswith(MAGIC)


def parse_toy(data: bytes) -> ToyGreeting | None:
    """MAGIC, a version byte, a length byte, then that many bytes of name."""
    if len(data) < 6:
        return None
    if data[4] not in (1, 2):
        raise MalformedError("toy", "greeting.version", f"version {data[4]} is not 1 or 2")
    end = 6 + data[5]
    if len(data) < end:
        return None
    return ToyGreeting(data[4], data[6:end].decode("ascii", "replace"))


def describe_toy(greeting: ToyGreeting) -> str:
    return f"toy greeting v{greeting.version} from {greeting.name}"


TOY_ENTRY = """
[[protocol]]
id = "toyproto"
app = "tiktok"
role = "api"
confidence = "medium"
source = "tests/test_protocol_registry.py (a protocol made up for this test)"
date = "2026-12-04"
"""


@pytest.fixture
def toy() -> Iterator[registry.AppProtocol]:
    proto = registry.register(registry.AppProtocol("toyproto", looks_like_toy, parse_toy, describe_toy))
    try:
        yield proto
    finally:
        registry.unregister("toyproto")


def signature_dir(tmp_path: Path, extra: str) -> Path:
    """The shipped signatures with ``extra`` appended to protocols.toml."""
    root = tmp_path / "signatures"
    shutil.copytree(shipped_directory(), root, ignore=shutil.ignore_patterns("__pycache__", "build"))
    with (root / "protocols.toml").open("a", encoding="utf-8") as f:
        f.write(extra)
    return root


def scan_toy_flow(sigs: Signatures, policy, payloads: list[bytes], floor: BlockFloor | None = None):
    """One TCP connection whose client sends ``payloads`` (one segment each); its ended flow."""
    done = []
    opts = ScanOptions() if floor is None else ScanOptions(floor=floor)
    sc = Scanner(sigs, policy, opts, done.append)
    sc.start_input("toy.pcap")
    t = T0

    def send(pkt) -> None:
        nonlocal t
        t += 0.01
        sc.feed(t, 1, bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt))

    send(IP(src=CLIENT, dst=SERVER) / TCP(sport=40100, dport=9000, flags="S", seq=1000))
    send(IP(src=SERVER, dst=CLIENT) / TCP(sport=9000, dport=40100, flags="SA", seq=5000, ack=1001))
    seq = 1001
    for data in payloads:
        send(IP(src=CLIENT, dst=SERVER) / TCP(sport=40100, dport=9000, flags="PA", seq=seq, ack=5001) / data)
        seq += len(data)
    sc.finish()
    (flow,) = done
    return flow


def test_registered_protocol_is_attributed_end_to_end(toy, tmp_path, policy):
    sigs = Signatures.load(signature_dir(tmp_path, TOY_ENTRY))
    # The greeting arrives in two segments: the parser waits for the rest of it.
    flow = scan_toy_flow(sigs, policy, [MAGIC + b"\x02\x0b", b"toy-client1"])
    a = flow.attribution
    assert flow.facts.app_proto == "toyproto" and flow.facts.greeting == ToyGreeting(2, "toy-client1")
    assert a.app == "tiktok" and a.operator == "bytedance" and a.confidence == "medium"
    assert a.basis == ("toyproto",) and a.categories == ("hosting",)
    rec = flow_record(flow)
    assert rec["app_proto"] == "toyproto" and rec["app"] == "tiktok" and rec["hostname"] is None
    assert rec["evidence"] == [
        {
            "kind": "toyproto",
            "value": "toy greeting v2 from toy-client1",
            "signature": "toyproto",
            "source": "tests/test_protocol_registry.py (a protocol made up for this test)",
        }
    ]
    # The policy covers TikTok hosting; the block floor does not know the new evidence kind, so a
    # new recogniser logs until the operator lets it block.
    assert rec["rule"] == "evidence-cannot-block" and rec["action"] == "log"
    assert check_evidence(("sni", "toyproto")) is None
    allowed = BlockFloor(evidence=("sni", "toyproto"))
    blocked = flow_record(scan_toy_flow(sigs, policy, [MAGIC + b"\x01\x01x"], allowed))
    assert blocked["action"] == "block" and blocked["rule"] == "provision-effective"


def test_without_an_entry_the_protocol_is_recognised_but_names_no_app(toy, sigs, policy):
    flow = scan_toy_flow(sigs, policy, [MAGIC + b"\x01\x01x"])
    assert flow.facts.app_proto == "toyproto" and flow.facts.greeting is not None
    assert flow.attribution.app is None and flow.attribution.evidence == ()
    assert flow_record(flow)["action"] == "allow"


def test_malformed_greeting_is_a_note_not_an_attribution(toy, tmp_path, policy):
    sigs = Signatures.load(signature_dir(tmp_path, TOY_ENTRY))
    flow = scan_toy_flow(sigs, policy, [MAGIC + b"\x07\x01x"])
    assert flow.facts.app_proto == "toyproto" and flow.facts.greeting is None
    assert flow.attribution.app is None
    assert flow.notes == ["toy: greeting.version: version 7 is not 1 or 2"]


def test_unregistered_protocol_flows_stay_unknown(sigs, policy):
    flow = scan_toy_flow(sigs, policy, [MAGIC + b"\x01\x01x"])
    assert flow.facts.app_proto == "unknown" and flow.attribution.app is None


def test_entry_for_a_protocol_nothing_registers_is_refused(tmp_path):
    root = signature_dir(tmp_path, TOY_ENTRY)
    with pytest.raises(SignatureError) as exc:
        Signatures.load(root)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(root / "protocols.toml"))
    assert "protocol 'toyproto': id: 'toyproto' is no protocol an inspector registers" in message
    assert "registered: mmtls" in message


def test_unknown_protocol_kind_cannot_be_named_to_block():
    assert "unknown evidence kind 'toyproto'" in (check_evidence(("sni", "toyproto")) or "")


def test_registry_refuses_duplicate_and_reserved_ids(toy):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.AppProtocol("toyproto", looks_like_toy, parse_toy, describe_toy))
    with pytest.raises(ValueError, match="reserved"):
        registry.register(registry.AppProtocol("tls", looks_like_toy, parse_toy, describe_toy))
    assert "tls" not in registry.protocols()


def test_builtin_protocols_are_found_without_being_imported_by_name():
    protocols = registry.protocols()
    assert "mmtls" in protocols and list(protocols) == sorted(protocols)
    assert registry.recognise(bytes.fromhex("16f104016e00")) == "mmtls"
    assert registry.recognise(bytes.fromhex("160301020001")) is None  # TLS is the driver's own
