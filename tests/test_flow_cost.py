"""The once-per-flow caches: each answers exactly what the uncached lookup would, holds only what
cannot change during a run (signatures, policy, formatting), is bounded, and is actually used.

Names, prefixes and instants come from the loaded signatures and policy, never from this file.
"""

from __future__ import annotations

import math

import pytest

from classifier import attribute, sigmatch, timeutil
from classifier import policy as policy_module
from classifier.attribute import Attributor, ntop
from classifier.dnscache import DnsCache, Resolution
from classifier.errors import MalformedError
from classifier.flows import Flow
from classifier.inspect.http import parse_http_request
from classifier.policy import VIEWS, Policy
from classifier.signatures import shipped_directory

T0 = 1_740_000_000.5
CLIENT = bytes((198, 51, 100, 7))


class CountingPrefixes:
    """The signatures' prefix table, counting its lookups."""

    def __init__(self, table) -> None:
        self.table = table
        self.lookups = 0

    def lookup(self, addr: bytes):
        self.lookups += 1
        return self.table.lookup(addr)


def operator_address(sigs) -> bytes:
    """An address inside the first IPv4 operator prefix of the signatures."""
    for size, network, length, _text, entry in sigs.prefixes.networks():
        if size == 4 and entry.kind == "operator" and length <= 30:
            return (network + 1).to_bytes(4, "big")
    raise AssertionError("the signatures have no IPv4 operator prefix")


def app_host(sigs) -> str:
    """A host name an app rule matches (a suffix rule gets a label in front)."""
    rule = next(r for r in sigs.hosts.rules if r.app is not None)
    return rule.pattern if rule.exact else f"www.{rule.pattern}"


def flow(fid: int, server: bytes, ts: float = T0, host: str | None = None, client: bytes = CLIENT) -> Flow:
    f = Flow(fid, 6, client, 40000 + fid, server, 80, ts)
    if host is not None:
        f.own_facts().http = parse_http_request(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        f.set_app_proto("http")
    return f


def test_prefix_looked_up_once_per_server_address(sigs, monkeypatch):
    server = operator_address(sigs)
    counting = CountingPrefixes(sigs.prefixes)
    monkeypatch.setattr(sigs, "prefixes", counting)
    attributor = Attributor(sigs, DnsCache())
    results = [attributor.attribute(flow(i, server, client=bytes((198, 51, 100, i)))) for i in range(1, 20)]
    assert counting.lookups == 1
    # The remembered entry says what a lookup says: the operator, and the prefix as evidence.
    entry = counting.table.lookup(server)
    assert all(a.server_owner == entry.owner and a.server_asn == entry.asn for a in results)
    prefix = [e for e in results[0].evidence if e.kind == "prefix"]
    assert prefix and prefix[0].value == f"{ntop(server)} in {entry.network} (AS{entry.asn})"
    # Equal attributions are one object.
    assert all(a is results[0] for a in results)


def test_server_memory_is_bounded(sigs, monkeypatch):
    monkeypatch.setattr(attribute, "_MAX_SERVERS", 64)
    attributor = Attributor(sigs, DnsCache())
    for i in range(200):
        attributor.attribute(flow(i, bytes((203, 0, 113, i))))
        assert len(attributor._servers) <= 64


def test_dns_names_are_never_remembered_per_address(sigs):
    """The prefix is per address; the DNS answer naming the address is looked up for every flow."""
    server = operator_address(sigs)
    name = app_host(sigs)
    cache = DnsCache()
    attributor = Attributor(sigs, cache)
    before = attributor.attribute(flow(1, server, T0))
    assert before.hostname is None
    cache.add_resolutions([Resolution((name,), ((server, 60),), None, ())], T0 + 1, CLIENT)
    named = attributor.attribute(flow(2, server, T0 + 2))
    assert (named.hostname, named.hostname_source) == (name, "dns")
    assert named.app is not None
    # The answer expired: the next flow to the same address has no name again.
    after = attributor.attribute(flow(3, server, T0 + 1000))
    assert after.hostname is None and after.app is None
    assert after is before


def test_name_matches_remembered_exactly_and_bounded(sigs, monkeypatch):
    monkeypatch.setattr(sigmatch, "_MAX_REMEMBERED", 32)
    rule = next(r for r in sigs.hosts.rules if not r.exact)
    index = sigmatch.SuffixIndex({}, {rule.pattern: rule})
    calls = []
    find = sigmatch.SuffixIndex._find
    monkeypatch.setattr(
        sigmatch.SuffixIndex, "_find", lambda self, host: calls.append(host) or find(self, host)
    )
    for host in (f"A.{rule.pattern.upper()}.", f"a.{rule.pattern}", "unrelated.invalid", "", "."):
        for _ in range(3):
            assert index.get(host) is find(index, host)
    assert index.get(f"a.{rule.pattern}") is rule
    assert calls == [f"A.{rule.pattern.upper()}.", f"a.{rule.pattern}", "unrelated.invalid", "", "."]
    for i in range(100):
        assert index.get(f"host{i}.invalid") is None
        assert len(index._remembered) <= 32


def test_remembered_match_is_the_rule_a_fresh_index_gives(sigs):
    hosts = [app_host(sigs), app_host(sigs).upper() + ".", "nothing.invalid"]
    fresh = sigmatch.HostMatcher(sigs.hosts.rules)
    for host in hosts * 2:
        assert sigs.hosts.match(host) is fresh.match(host)


@pytest.fixture(scope="module")
def fresh_policy():
    """Loaded once per call of decide(): a policy that has remembered nothing."""
    directory = shipped_directory() / "policy"
    return lambda: Policy.load(directory)


def boundary_instants(pol: Policy) -> list[float]:
    """Every instant a provision's status changes, with the instants either side of it."""
    points = set()
    for view in VIEWS:
        for starts, _ in pol._segments[view].values():
            for t in starts:
                if math.isfinite(t):
                    points.update((t - 1, t, t + 0.5))
    return sorted(points)


def test_decisions_equal_a_policy_that_remembers_nothing(policy, fresh_policy):
    pol = fresh_policy()
    reference = fresh_policy()
    cases = [(p.app, (p.category,)) for p in pol.provisions.values()] + [(None, ()), ("nobody", ("hosting",))]
    instants = boundary_instants(pol)
    assert instants
    for view in VIEWS:
        for app, cats in cases:
            for attributed in (True, False):
                for unenforced in (True, False):
                    for when in instants:
                        got = pol.decide(app, cats, attributed, when, view, unenforced)
                        # A new Policy per call: nothing remembered from an earlier instant or view.
                        want = reference.decide(app, list(cats), attributed, when, view, unenforced)
                        reference._decisions.clear()
                        assert got == want, (view, app, cats, attributed, unenforced, when)
                        assert got.when == when


def test_verdict_worked_out_once_per_input_and_segment(policy, fresh_policy, monkeypatch):
    pol = fresh_policy()
    worked = []
    verdict = Policy._verdict
    monkeypatch.setattr(Policy, "_verdict", staticmethod(lambda *a: worked.append(a) or verdict(*a)))
    prov = next(iter(pol.provisions.values()))
    starts = pol._segments[VIEWS[0]][prov.id][0]
    inside = [t for t in starts if math.isfinite(t)]
    assert inside
    for when in (inside[0] + 1, inside[0] + 2, inside[0] + 3):
        pol.decide(prov.app, (prov.category,), True, when, VIEWS[0])
    assert len(worked) == 1
    pol.decide(prov.app, (prov.category,), True, inside[0] - 1, VIEWS[0])  # the segment before
    pol.decide(prov.app, (prov.category,), True, inside[0] + 1, VIEWS[-1])  # another view
    pol.decide(prov.app, [prov.category], True, inside[0] + 1, VIEWS[0], True)  # unenforced blocks
    assert len(worked) == 4


def test_a_reason_that_names_the_instant_names_each_flows_own(policy):
    """Attributed, covered, nothing effective yet: the reason gives the instant, so it is per flow."""
    prov = next(iter(policy.provisions.values()))
    first = policy.decide(prov.app, (prov.category,), True, 0.0, VIEWS[0])
    second = policy.decide(prov.app, (prov.category,), True, 1.0, VIEWS[0])
    assert first.rule == second.rule == policy_module.RULE_ATTRIBUTED and first.provisions
    assert "1970-01-01T00:00:00Z" in first.reason and "1970-01-01T00:00:00Z" not in second.reason
    assert second.reason == first.reason.replace("1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z")


def test_decision_inputs_are_bounded(fresh_policy, monkeypatch):
    monkeypatch.setattr(policy_module, "_MAX_DECISION_INPUTS", 16)
    pol = fresh_policy()
    for i in range(100):
        pol.decide(f"app{i}", ("hosting",), True, T0, VIEWS[0])
        assert len(pol._decisions) <= 16


def test_unknown_view_is_still_an_error_after_a_decision(fresh_policy):
    pol = fresh_policy()
    pol.decide(None, (), False, T0, VIEWS[0])
    with pytest.raises(Exception, match="unknown policy view"):
        pol.decide(None, (), False, T0, "nonsense")


@pytest.mark.parametrize(
    "ts",
    [0.0, -0.0, 1.0, 1.5, 1_600_000_000.0, 1_600_000_000.000001, 1_600_000_000.9999996, T0, 253402300799.0],
)
def test_instants_remembered_exactly(ts):
    timeutil._INSTANTS.clear()
    plain = timeutil.format_instant(ts)
    micro = timeutil.format_instant(ts, True)
    # In the other order, from the memory, and from a fresh computation: the same texts.
    timeutil._INSTANTS.clear()
    assert timeutil.format_instant(ts, True) == micro
    assert timeutil.format_instant(ts) == plain
    assert timeutil.format_instant(ts) == plain
    assert micro.endswith("Z") and len(micro) == len("2020-09-21T04:00:00.000000Z")
    assert plain == (micro[:-8] + "Z" if micro.endswith(".000000Z") else micro)


@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, 253402300800.0, -62135596801.0])
def test_out_of_range_instants_raise_every_time(ts):
    for micro in (False, True, False):
        with pytest.raises(MalformedError):
            timeutil.format_instant(ts, micro)
    assert ts not in timeutil._INSTANTS


def test_instant_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(timeutil, "_INSTANTS_MAX", 8)
    for i in range(50):
        timeutil.format_instant(T0 + i / 1000, True)
        assert len(timeutil._INSTANTS) <= 8


def test_address_texts_remembered_exactly_and_bounded(monkeypatch):
    monkeypatch.setattr(attribute, "_MAX_ADDRESS_TEXTS", 8)
    v6 = bytes.fromhex("20010db8000000000000000000000001")
    for _ in range(2):
        assert ntop(bytes((192, 0, 2, 1))) == "192.0.2.1"
        assert ntop(v6) == "2001:db8::1"
    for i in range(50):
        assert ntop(bytes((203, 0, 113, i))) == f"203.0.113.{i}"
        assert len(attribute._ADDRESS_TEXTS) <= 8


def test_evidence_and_dns_answers_hash_and_compare_as_tuples():
    """Every flow's attribution is looked up in the shared table by its fields, evidence included,
    and every named flow files a DNS answer: both hash and compare in C (a frozen dataclass runs
    generated Python per call), with the same values, records and pickles (workers) as before."""
    import pickle

    from classifier.dnscache import DnsAnswer
    from classifier.evidence import Evidence

    for cls in (Evidence, DnsAnswer):
        assert cls.__hash__ is tuple.__hash__ and cls.__eq__ is tuple.__eq__
    e = Evidence("sni", "x.example", "sig-1", "https://example.org/source")
    assert pickle.loads(pickle.dumps(e)) == e and hash(e) == hash(Evidence(*e))
    assert Evidence("sni", "x.example") != e and Evidence("sni", "x.example").signature is None
    assert e.as_dict() == {"kind": "sni", "value": "x.example", "signature": "sig-1", "source": e.source}
    assert Evidence("dns", "y").as_dict() == {"kind": "dns", "value": "y"}
    a = DnsAnswer("n.example", ("n.example",), 1.0, 2.0, CLIENT)
    assert (a.unbound, a.scope) == (None, None) and pickle.loads(pickle.dumps(a)) == a
