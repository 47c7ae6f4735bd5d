"""``classifier bgp --kernel``: the routing table of a network namespace the test builds.

The namespace holds a veth pair with documentation addresses (192.0.2.0/24, 2001:db8::/32) and
routes of every kind the audit names: BGP, static and zebra (multipath) routes into operator
space, a VRF table, a blackhole, and routes that concern no operator.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import run_cli

pytestmark = pytest.mark.root


def _need_root() -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "needs root for network namespaces"
    elif shutil.which("ip") is None:
        problem = "needs iproute2 (ip)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}, and CI must run this test")
        pytest.skip(problem)


def _ip(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def netns():
    _need_root()
    name = f"clf-bgp-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        _ip(name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        for dev in ("lo", "veth0", "veth1"):
            _ip(name, "link", "set", dev, "up")
        _ip(name, "addr", "add", "192.0.2.1/24", "dev", "veth0")
        _ip(name, "-6", "addr", "add", "2001:db8::1/64", "dev", "veth0", "nodad")
        # a VRF device bound to table 100 where the kernel has VRF support; the table either way
        vrf = _ip(name, "link", "add", "vrf-blue", "type", "vrf", "table", "100", check=False).returncode == 0
        if vrf:
            _ip(name, "link", "set", "vrf-blue", "up")
            _ip(name, "link", "set", "veth1", "master", "vrf-blue")
        _ip(name, "route", "add", "71.18.0.0/20", "via", "192.0.2.2", "proto", "bgp")
        _ip(name, "route", "add", "1.12.0.0/21", "via", "192.0.2.3", "proto", "static")
        _ip(
            name,
            "route",
            "add",
            "43.128.0.0/12",
            "proto",
            "zebra",
            "nexthop",
            "via",
            "192.0.2.2",
            "weight",
            "1",
            "nexthop",
            "via",
            "192.0.2.3",
            "weight",
            "2",
        )
        _ip(name, "route", "add", "blackhole", "71.18.1.0/24", "proto", "static")
        _ip(name, "-6", "route", "add", "2605:340::/32", "dev", "veth1", "table", "100", "proto", "bgp")
        _ip(name, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "proto", "static")
        _ip(name, "route", "add", "10.0.0.0/8", "via", "192.0.2.3", "proto", "bgp")
        yield name, vrf
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def kernel(netns: str, *args: str, status: int = 0) -> list[dict]:
    proc = run_cli("bgp", "--kernel", "--netns", netns, *args, check_status=status)
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def route(rows: list[dict], prefix: str) -> dict:
    found = [r for r in rows if r["route"] == prefix]
    assert len(found) == 1, (prefix, [r["route"] for r in rows])
    return found[0]


def ops(row: dict) -> list[str]:
    """The route's operator prefixes (objects) as "prefix ASn relation" lines."""
    assert all(set(p) == {"prefix", "asn", "relation"} for p in row["operator_prefixes"])
    return [f"{p['prefix']} AS{p['asn']} {p['relation']}" for p in row["operator_prefixes"]]


def test_kernel_routes_carrying_operator_prefixes(netns):
    name, vrf = netns
    rows = kernel(name)
    assert {r["route"] for r in rows} == {
        "71.18.0.0/20",
        "1.12.0.0/21",
        "43.128.0.0/12",
        "71.18.1.0/24",
        "2605:340::/32",
    }  # not 198.51.100.0/24, 10.0.0.0/8, connected

    bgp = route(rows, "71.18.0.0/20")
    assert (bgp["table_name"], bgp["protocol"], bgp["type"]) == ("main", "bgp", "unicast")
    assert (bgp["gateways"], bgp["interfaces"], bgp["relation"]) == (["192.0.2.2"], ["veth0"], "exact")
    assert (bgp["operator"], bgp["app"]) == ("bytedance", "tiktok")
    assert "71.18.0.0/20 AS396986 exact" in ops(bgp)
    # AS11983's more-specifics inside it have no route of their own: this one carries them
    assert "71.18.6.0/24 AS11983 covers" in ops(bgp)
    assert bgp["operator_asns"] == [11983, 396986]

    static = route(rows, "1.12.0.0/21")
    assert (static["protocol"], static["relation"], static["operator"], static["app"]) == (
        "static",
        "exact",
        "tencent",
        "wechat",
    )
    assert ops(static) == ["1.12.0.0/21 AS45090 exact"]

    multipath = route(rows, "43.128.0.0/12")
    assert (multipath["protocol"], multipath["relation"]) == ("zebra", "covers")
    assert multipath["operator"] == "tencent"
    assert multipath["nexthops"] == ["via 192.0.2.2 dev veth0 weight 1", "via 192.0.2.3 dev veth0 weight 2"]
    assert multipath["gateways"] == ["192.0.2.2", "192.0.2.3"]
    assert "43.129.0.0/16 AS132203 covers" in ops(multipath)

    blackhole = route(rows, "71.18.1.0/24")
    assert (blackhole["type"], blackhole["relation"], blackhole["nexthops"]) == ("blackhole", "inside", [])
    assert ops(blackhole) == ["71.18.0.0/20 AS396986 inside"]

    v6 = route(rows, "2605:340::/32")
    assert (v6["table"], v6["family"], v6["interfaces"], v6["relation"]) == (100, 6, ["veth1"], "covers")
    assert v6["vrf"] == ("vrf-blue" if vrf else None)
    assert any(p.startswith("2605:340:") and "AS396986" in p for p in ops(v6))

    # no peering map: the kernel cannot say whose the next hop is
    assert {(r["relationship"], r["action"], r["rule"]) for r in rows} == {
        ("unknown", "log", "next-hop-unknown")
    }
    assert {r["netns"] for r in rows} == {name}


def test_kernel_peering_map_makes_next_hops_direct(netns, tmp_path):
    name, _ = netns
    peering = tmp_path / "peering.toml"
    entry = '[[neighbour]]\ninterface = "{}"\nasn = {}\nsource = "test"\ndate = "2026-01-01"\n'
    peering.write_text(entry.format("veth0", 132203) + entry.format("veth1", 64511))
    rows = kernel(name, "--peering", str(peering), "--as-of", "2020-10-01")
    static = route(rows, "1.12.0.0/21")
    assert (static["neighbour_asn"], static["relationship"], static["action"]) == (132203, "direct", "block")
    assert "wechat-2020-transit-peering: effective" in static["reason"]
    v6 = route(rows, "2605:340::/32")  # through veth1: the map names a non-operator neighbour
    assert (v6["neighbour_asn"], v6["relationship"], v6["action"]) == (64511, "indirect", "log")
    assert route(rows, "71.18.1.0/24")["relationship"] == "unknown"  # a blackhole has no next hop
    rows = kernel(name, "--peering", str(peering), "--as-of", "2020-10-01", "--view", "in-force")
    assert route(rows, "1.12.0.0/21")["action"] == "log"


def test_kernel_table_and_csv(netns):
    name, _ = netns
    table = run_cli("bgp", "--kernel", "--netns", name, "--format", "table").stdout.decode()
    assert "Routes carrying operator prefixes in netns" in table
    rows = kernel(name)
    carrying = len({(r["table"], r["route"]) for r in rows})
    assert f"{carrying} of " in table
    assert f" routes, {len(rows)} rows (one per route, operator and app)" in table
    assert "Next hops and interfaces carrying operator prefixes" in table
    assert "via 192.0.2.2 dev veth0" in table and "71.18.0.0/20" in table and "198.51.100.0/24" not in table
    text = run_cli("bgp", "--kernel", "--netns", name, "--format", "csv", "-q").stdout.decode()
    assert text.splitlines()[0].startswith("record,netns,table,table_name,vrf")
    assert len(text.splitlines()) == 6


def test_kernel_unknown_namespace():
    _need_root()
    proc = run_cli("bgp", "--kernel", "--netns", f"clf-bgp-missing-{os.getpid()}", check_status=2)
    assert "no such network namespace" in proc.stderr.decode()
    proc = run_cli("bgp", "--netns", "x", "f.mrt", check_status=2)
    assert "--netns needs --kernel" in proc.stderr.decode()
