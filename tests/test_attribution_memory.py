"""The attributor's memory of inputs -> attribution answers exactly what working it out gives.

``Attributor.attribute`` keeps the attribution of each distinct set of inputs (the flow's names,
the DNS match, the facts the rules read, the server address and port...): a flow whose inputs were
seen gets the earlier result. Each test compares with an attributor that remembers nothing, so a key
that leaves out something the rules read makes it fail. Names, prefixes and ports come from the
loaded signatures, never from this file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REAL, ROOT, need_shared
from test_flow_cost import app_host, operator_address

from classifier import attribute
from classifier.attribute import Attributor
from classifier.dnscache import DnsCache, Resolution
from classifier.flows import Flow
from classifier.inspect.http import parse_http_request
from classifier.pipeline import Scanner, ScanOptions
from classifier.report import InputStats
from classifier.scaninputs import scan_inputs

T0 = 1_740_000_000.5
CLIENT = bytes((198, 51, 100, 7))


class Forgetful(dict):
    """An attribution memory that never keeps anything: every flow is worked out."""

    def __setitem__(self, key, value) -> None:
        pass


def reference(attributor: Attributor) -> Attributor:
    """An attributor with the same signatures and name caches, remembering no attribution."""
    ref = Attributor(attributor.sigs, attributor.dnscache, attributor.seen_names, attributor.unbound_dns)
    ref._known = Forgetful()
    return ref


def checked(monkeypatch) -> list[int]:
    """Make every Attributor.attribute also work the flow out afresh and compare; returns the count
    of [flows, answers from memory] as the scan goes."""
    seen = [0, 0]
    attribute_ = Attributor.attribute

    def both(self: Attributor, flow: Flow):
        hits = self.known_hits
        got = attribute_(self, flow)
        seen[0] += 1
        seen[1] += self.known_hits - hits
        if not isinstance(self._known, Forgetful):
            want = attribute_(reference(self), flow)
            assert got == want, (flow.id, got, want)
        return got

    monkeypatch.setattr(Attributor, "attribute", both)
    return seen


def captures() -> list[Path]:
    own = sorted(p for p in (ROOT / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
    real = sorted(p for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))
    return own + real


def test_every_flow_of_the_captures_gets_what_working_it_out_gives(sigs, policy, monkeypatch):
    seen = checked(monkeypatch)
    paths = [str(p) for p in captures()]
    # Twice over, as one input stream: the second pass meets the first one's inputs again.
    for _ in range(2):
        scanner = Scanner(sigs, policy, ScanOptions(), lambda flow: None)
        scan_inputs(paths + paths, scanner, InputStats(), True, False)
        scanner.finish()
    assert seen[0] > 1000
    assert seen[1] > seen[0] // 3  # the memory is used


def flow(fid: int, server: bytes, port: int = 80, proto: int = 6, ts: float = T0) -> Flow:
    return Flow(fid, proto, CLIENT, 40000 + fid, server, port, ts)


def same_as_fresh(attributor: Attributor, f: Flow):
    got = attributor.attribute(f)
    assert got == reference(attributor).attribute(f)
    return got


def test_port_protocol_and_server_are_inputs(sigs):
    """Equal names, different server port, protocol or address: each worked out on its own."""
    encrypted = next(iter(sigs.encrypted_ports.values()))
    server = operator_address(sigs)
    attributor = Attributor(sigs, DnsCache())
    plain = same_as_fresh(attributor, flow(1, server, encrypted.port + 1, encrypted.proto))
    dns = same_as_fresh(attributor, flow(2, server, encrypted.port, encrypted.proto))
    assert dns.encrypted_dns == encrypted.kind and plain.encrypted_dns is None
    other = 6 if encrypted.proto != 6 else 17
    on_other = sigs.encrypted_ports.get((other, encrypted.port))
    got = same_as_fresh(attributor, flow(3, server, encrypted.port, other)).encrypted_dns
    assert got == (on_other.kind if on_other is not None else None) != encrypted.kind
    elsewhere = same_as_fresh(attributor, flow(4, bytes((192, 0, 2, 1)), encrypted.port + 1, encrypted.proto))
    assert elsewhere.server_owner is None and plain.server_owner is not None


def test_http_request_and_dns_answers_are_inputs(sigs):
    """A store request differs from another request to the same store host only by its target; a
    DNS answer names a nameless flow only while it lives: neither is answered from an earlier
    flow's result."""
    server = operator_address(sigs)
    cache = DnsCache()
    attributor = Attributor(sigs, cache)
    host, ((rule, _pattern), *_) = next(iter(sigs._stores_by_host.items()))
    target = f"/store/apps/details?id={rule.package}"
    assert sigs.store_match(host, target) is rule
    results = []
    for i, path in enumerate((target, "/", target)):
        f = flow(10 + i, server)
        f.own_facts().http = parse_http_request(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        results.append(same_as_fresh(attributor, f))
    assert "app-store" in results[0].categories and "app-store" not in results[1].categories
    assert results[2] is results[0]
    before = same_as_fresh(attributor, flow(20, server, ts=T0))
    name = app_host(sigs)
    cache.add_resolutions([Resolution((name,), ((server, 60),), None, ())], T0 + 1, CLIENT)
    named = same_as_fresh(attributor, flow(21, server, ts=T0 + 2))
    assert named.hostname == name and before.hostname is None
    after = same_as_fresh(attributor, flow(22, server, ts=T0 + 1000))
    assert after.hostname is None


def test_memory_is_bounded(sigs, monkeypatch):
    monkeypatch.setattr(attribute, "_MAX_KNOWN", 16)
    attributor = Attributor(sigs, DnsCache())
    for i in range(100):
        same_as_fresh(attributor, flow(i, bytes((203, 0, 113, i))))
        assert len(attributor._known) <= 16


@pytest.mark.parametrize("repeat", [1, 3])
def test_equal_inputs_are_answered_from_memory(sigs, repeat):
    server = operator_address(sigs)
    attributor = Attributor(sigs, DnsCache())
    results = []
    for i in range(repeat):
        f = flow(30 + i, server)
        f.own_facts().http = parse_http_request(f"GET / HTTP/1.1\r\nHost: {app_host(sigs)}\r\n\r\n".encode())
        results.append(same_as_fresh(attributor, f))
    assert attributor.known_hits == repeat - 1
    assert all(r is results[0] for r in results)


def test_dns_chains_app_proto_and_dns_client_are_inputs(sigs):
    """Flows equal but for their DNS flow's CNAME chains, what their first bytes were, or whether
    they carry DNS: each worked out on its own."""
    server = operator_address(sigs)
    attributor = Attributor(sigs, DnsCache())
    name = app_host(sigs)
    suffix = next(iter(sigs._cnames._suffix))  # a CDN's CNAME domain
    assert sigs.cname_provider(f"edge.{suffix}") is not None
    chained = []
    for i, chains in enumerate(([(name, f"edge.{suffix}")], None, [(name, f"edge.{suffix}")])):
        f = flow(40 + i, server, 53, 17)
        f.own_facts().dns_queries = [name]
        f.facts.dns_chains = chains
        f.dns_client = i != 2
        chained.append(same_as_fresh(attributor, f))
    assert any(e.kind == "cname" for e in chained[0].evidence)
    assert not any(e.kind == "cname" for e in chained[1].evidence)
    assert "cdn" in chained[2].categories and "cdn" not in chained[0].categories
    encrypted = next(iter(sigs.encrypted_ports.values()))
    kinds = []
    for i, proto in enumerate((None, "http")):
        f = flow(50 + i, server, encrypted.port, encrypted.proto)
        if proto is not None:
            f.set_app_proto(proto)
        kinds.append(same_as_fresh(attributor, f).encrypted_dns)
    assert kinds == [encrypted.kind, None]


def mmtls_hello(mode: str) -> bytes:
    """An mmtls ClientHello record, 1-RTT or 0-RTT (the layout of tests/test_inspect_mmtls.py)."""
    if mode == "1-rtt":
        body = bytes.fromhex("0000016a0103f102c02b00a8") + bytes(354)
        return bytes.fromhex("16f104016e") + body
    return bytes.fromhex("19f10400a1") + bytes.fromhex("0000009d0103f10100a8") + bytes(0xA1 - 10)


def tls_hello() -> object:
    """A ClientHello without SNI, as Python's TLS client writes it."""
    import ssl

    from classifier.inspect.tls import parse_client_hello

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return parse_client_hello(outgoing.read())


def test_greeting_and_handshake_are_inputs(sigs):
    """Flows equal but for their registered protocol's greeting (its evidence text), or for
    whether a handshake was seen (encrypted DNS on its port): each worked out on its own."""
    from classifier.inspect.mmtls import parse_client_hello as parse_mmtls

    assert "mmtls" in sigs.protocols
    server = operator_address(sigs)
    attributor = Attributor(sigs, DnsCache())
    texts = []
    for i, mode in enumerate(("1-rtt", "0-rtt", "1-rtt")):
        f = flow(60 + i, server, 8080)
        f.set_app_proto("mmtls")
        f.own_facts().greeting = parse_mmtls(mmtls_hello(mode))
        texts.append([e.value for e in same_as_fresh(attributor, f).evidence if e.kind == "mmtls"])
    assert texts[0] == texts[2] != texts[1] and all(texts)
    encrypted = next(iter(sigs.encrypted_ports.values()))
    kinds = []
    for i, hello in enumerate((tls_hello(), None)):
        f = flow(70 + i, server, encrypted.port, encrypted.proto)
        f.set_app_proto("tls")
        if hello is not None:
            f.own_facts().tls = hello
        kinds.append(same_as_fresh(attributor, f).encrypted_dns)
    assert kinds == [encrypted.kind, None]


def test_a_long_request_target_is_worked_out_not_kept(sigs):
    """A key holds no long request target: the memory stays small whatever the requests are."""
    server = operator_address(sigs)
    attributor = Attributor(sigs, DnsCache())
    long_target = "/" + "a" * attribute._MAX_KNOWN_TARGET
    for i in range(3):
        f = flow(80 + i, server)
        request = f"GET {long_target} HTTP/1.1\r\nHost: {app_host(sigs)}\r\n\r\n".encode()
        f.own_facts().http = parse_http_request(request)
        assert same_as_fresh(attributor, f).hostname == app_host(sigs)
    assert not attributor._known and attributor.known_hits == 0
