"""Community ID v1 (classifier/communityid.py) against the specification's published vectors
(tests/data/community-id, see SOURCE.md there), the reference implementation (PyPI
``communityid``) and the records of every real capture."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import communityid
import pytest

from classifier.communityid import check_seed, community_id, port_flow_id

DATA = Path(__file__).parent / "data" / "community-id"


def _packed(text: str) -> bytes:
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_pton(family, text)


def _baseline(name: str) -> list[tuple[int, str, str, int | None, int | None, str]]:
    rows = json.loads((DATA / name).read_text())
    return [(r["proto"], r["saddr"], r["daddr"], r["sport"], r["dport"], r["communityid"]) for r in rows]


VECTORS = [
    pytest.param(seed, *row, id=f"{name}-{i}")
    for seed, name, rows in (
        (0, "baseline_deflt", _baseline("baseline_deflt.json")),
        (1, "baseline_seed1", _baseline("baseline_seed1.json")),
        (0, "table_seed0", [tuple(r) for r in json.loads((DATA / "tables.json").read_text())["seed0"]]),
        (1, "table_seed1", [tuple(r) for r in json.loads((DATA / "tables.json").read_text())["seed1"]]),
    )
    for i, row in enumerate(rows)
]


@pytest.mark.parametrize(("seed", "proto", "src", "dst", "sport", "dport", "expected"), VECTORS)
def test_published_vectors(seed, proto, src, dst, sport, dport, expected):
    assert community_id(proto, _packed(src), _packed(dst), sport, dport, seed) == expected


def test_vectors_cover_every_case_of_the_specification():
    protos = {p.values[1] for p in VECTORS}
    assert {1, 6, 17, 46, 58, 132} <= protos  # ICMP, TCP, UDP, port-less, ICMPv6, SCTP
    one_way = [p for p in VECTORS if p.values[1] == 1 and p.values[4] == 11]  # time exceeded
    assert one_way


def test_icmp_one_way_is_hashed_as_sent():
    a, b = _packed("192.0.2.1"), _packed("198.51.100.2")
    # destination unreachable (type 3) has no counterpart: the two directions differ
    assert community_id(1, a, b, 3, 1) != community_id(1, b, a, 3, 1)
    # echo request and reply pair up whatever their code
    assert community_id(1, a, b, 8, 0) == community_id(1, b, a, 0, 5)


def test_missing_ports_and_bad_seed_are_refused():
    a, b = _packed("192.0.2.1"), _packed("198.51.100.2")
    with pytest.raises(ValueError, match="needs both ports"):
        community_id(6, a, b, None, None)
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        check_seed(65536)
    assert check_seed(65535) == 65535


def _reference(proto, src, dst, sport, dport, seed):
    tpl = communityid.FlowTuple(proto, src, dst, sport, dport)
    return communityid.CommunityID(seed).calc(tpl)


@pytest.mark.parametrize("seed", [0, 1, 4242, 65535])
def test_same_as_the_reference_implementation(seed):
    import random

    rng = random.Random(seed)
    for _ in range(400):
        proto = rng.choice((1, 6, 17, 58, 132, 46, 47))
        v6 = proto == 58 or (proto != 1 and rng.random() < 0.4)
        size = 16 if v6 else 4
        src = bytes(rng.randrange(3) for _ in range(size))  # small values: equal addresses happen
        dst = bytes(rng.randrange(3) for _ in range(size))
        if proto in (1, 58):
            sport, dport = rng.randrange(256), rng.randrange(256)
        elif proto in (6, 17, 132):
            sport, dport = rng.choice((53, 443, rng.randrange(65536))), rng.choice((53, 443))
        else:
            sport = dport = None
        got = community_id(proto, src, dst, sport, dport, seed)
        assert got == _reference(proto, src, dst, sport, dport, seed), (proto, src, dst, sport, dport)


@pytest.mark.parametrize("seed", [0, 1, 4242, 65535])
def test_port_flow_id_is_community_id_of_tcp_and_udp(seed):
    """Records hash with port_flow_id: the reference implementation's value on every TCP/UDP
    tuple, including equal addresses (ordered by port) and the published vectors."""
    import random

    rng = random.Random(seed)
    flow_id = port_flow_id(seed)
    for _ in range(400):
        proto = rng.choice((6, 17))
        size = 16 if rng.random() < 0.4 else 4
        src = bytes(rng.randrange(3) for _ in range(size))  # small values: equal addresses happen
        dst = bytes(rng.randrange(3) for _ in range(size))
        sport, dport = rng.choice((53, 443, rng.randrange(65536))), rng.choice((53, 443, 0))
        expected = _reference(proto, src, dst, sport, dport, seed)
        assert flow_id(proto, src, dst, sport, dport) == expected, (proto, src, dst, sport, dport)
    for s, proto, src, dst, sport, dport, expected in (p.values for p in VECTORS):
        if s == seed and proto in (6, 17):
            assert flow_id(proto, _packed(src), _packed(dst), sport, dport) == expected
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        port_flow_id(65536)
