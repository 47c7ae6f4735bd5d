"""End to end: ``classifier gateway`` between real clients and real servers in network namespaces.

The lab (tests/netlab.py) runs a TLS server, an HTTP server, Unbound and an aioquic HTTP/3 server
behind a gateway namespace; the gateway under test runs there. The signatures are the shipped
ones plus the lab's documentation prefixes (gateway_helpers.TEST_PREFIXES): the "tiktok" server
sits in a ByteDance prefix, the "wechat"/"tencent" servers in a Tencent prefix, the shared "cdn"
address in an Akamai prefix. Which provisions are effective when comes from the shipped policy
(`classifier policy --timeline --view announced`): PAFACA TikTok hosting from 2025-01-19T05:00Z,
WeChat 2020 items from 2020-09-21T04:00Z until the 2021 rescission.

Needs root; skipped without it unless CI is set (then it fails). Every test stops its gateway and
checks that no table, chain, rule, set or route of ours is left, also when the test failed.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import sys
import time

import gateway_helpers as gh
import netlab
import pytest

from classifier.record import SCHEMA

pytestmark = pytest.mark.root

BEFORE = "2020-09-01"  # before every provision
TIKTOK_ON = "2025-03-01"  # PAFACA TikTok hosting effective
WECHAT_ON = "2020-10-01"  # WeChat 2020 items effective (announced view)

A = netlab.Lab.addr  # role -> IPv4 address


lab, sig_dir, clean_gateway = gh.lab, gh.sig_dir, gh.clean_gateway  # the shared lab fixtures


def base_args(sig_dir, *extra: str) -> tuple[str, ...]:
    return (
        "-i",
        "gw-cli",
        "-i",
        "gw-srv",
        "--signatures",
        str(sig_dir),
        "--closed-tcp",
        "1",
        "--idle-udp",
        "4",
        "--sync-interval",
        "1",
        *extra,
    )


def by_host(records: list[dict], host: str, proto: str | None = None) -> list[dict]:
    return [r for r in records if r["hostname"] == host and (proto is None or r["proto"] == proto)]


def test_before_the_effective_date_tiktok_and_wechat_work_and_are_logged(lab, sig_dir, tmp_path):
    args = base_args(sig_dir, "--mode", "inline", "--enforce", "--as-of", BEFORE)
    wire_pcap = tmp_path / "gw-cli.pcap"
    with gh.running(lab, tmp_path, *args) as gw, lab.capture("gateway", lab.gw_client_if, wire_pcap):
        assert lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok
        assert lab.curl(
            "client", "https://web.wechat.com/", "--resolve", f"web.wechat.com:443:{A('wechat')}"
        ).ok
        assert lab.quic_get("client", A("tiktok"), "www.tiktok.com").ok
        assert lab.http_get("client", A("wechat"), "short.weixin.qq.com").ok
        tiktok = gw.wait_records(
            lambda r: r["hostname"] == "www.tiktok.com" and r["proto"] == "udp", what="QUIC TikTok record"
        )
        gw.wait_records(lambda r: r["hostname"] == "short.weixin.qq.com", what="WeChat HTTP record")
    recs = gw.records()
    for host, app in (
        ("www.tiktok.com", "tiktok"),
        ("web.wechat.com", "wechat"),
        ("short.weixin.qq.com", "wechat"),
    ):
        found = by_host(recs, host)
        assert found, f"no record for {host}"
        for r in found:
            assert (r["app"], r["action"], r["rule"]) == (app, "log", "attributed-no-effective-provision")
            assert r["decided_at"].startswith(BEFORE)
    assert tiktok[0]["app_proto"] == "quic"
    for r in recs:
        assert set(r) == set(SCHEMA)  # the `scan` schema, exactly
    # whole-flow counters although the flow was offloaded after its first packets: every packet and
    # byte that crossed the gateway (its own capture on the client side), both ways
    tls = by_host(recs, "www.tiktok.com", "tcp")[0]
    assert gh.counts_of(tls) == gh.wire_counts(wire_pcap)[gh.flow_of(tls)]
    assert tls["packets_c2s"] >= 5 and tls["packets_s2c"] >= 4 and tls["end_reason"] == "closed"
    # and one process scanning the gateway's capture says of every flow what the gateway said
    gh.assert_same_offline(recs, gh.scan_capture(lab, wire_pcap, sig_dir, "--as-of", BEFORE))


@pytest.mark.parametrize("mode", ["inline", "reactive"])
def test_after_the_effective_date_tiktok_fails_and_lookalikes_work(lab, sig_dir, tmp_path, mode):
    args = base_args(sig_dir, "--mode", mode, "--enforce", "--as-of", TIKTOK_ON)
    wire_pcap = tmp_path / "gw-cli.pcap"
    with gh.running(lab, tmp_path, *args) as gw, lab.capture("gateway", lab.gw_client_if, wire_pcap):
        if mode == "inline":
            # Inline: the packet that decides the flow is itself dropped, so nothing gets through.
            # TLS by SNI: on the operator's address, and on an unrelated address (the name decides)
            assert not lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok
            assert not lab.tls_get("client", A("unrelated"), "www.tiktok.com").ok
            assert not lab.tls_get("client", netlab.Lab.addr("tiktok", 6), "www.tiktok.com").ok  # IPv6
            assert not lab.curl(
                "client", "https://m.tiktok.com/", "--resolve", f"m.tiktok.com:443:{A('tiktok')}"
            ).ok
            assert not lab.s_client("client", A("unrelated"), "api16-normal-c-useast1a.tiktokv.com").ok
            assert not lab.http_get("client", A("unrelated"), "www.tiktok.com").ok
            # QUIC by SNI, on an unrelated address
            assert not lab.quic_get("client", A("unrelated"), "www.tiktok.com", timeout=3).ok
        else:
            # Reactive acts after the deciding packet has passed (by design: it only watches), so
            # a handshake may finish; what the flow sends after the decision must not get through.
            assert not gh.tls_get_after_pause(lab, A("tiktok"), "www.tiktok.com")
            assert not gh.tls_get_after_pause(lab, A("unrelated"), "www.tiktok.com")
            assert not gh.tls_get_after_pause(lab, netlab.Lab.addr("tiktok", 6), "www.tiktok.com")
            lab.curl("client", "https://m.tiktok.com/", "--resolve", f"m.tiktok.com:443:{A('tiktok')}")
            lab.s_client("client", A("unrelated"), "api16-normal-c-useast1a.tiktokv.com")
            lab.quic_get("client", A("unrelated"), "www.tiktok.com", timeout=3)
            assert gh.tls_get_after_pause(lab, A("unrelated"), "www.google.com")  # look-alikes live on
        assert lab.tls_get("client", netlab.Lab.addr("unrelated", 6), "www.google.com").ok
        # look-alikes and the operator's other sites
        for role, name in (
            ("unrelated", "www.google.com"),
            ("lookalike", "faketiktok.com"),
            ("lookalike", "tiktok.com.example.net"),
            ("tencent", "www.qq.com"),
        ):
            res = lab.tls_get("client", A(role), name)
            assert res.ok, (name, res.error)
            assert f"sni={name}" in res.body
        assert lab.curl(
            "client", "https://www.google.com/", "--resolve", f"www.google.com:443:{A('unrelated')}"
        ).ok
        assert lab.quic_get("client", A("unrelated"), "www.google.com").ok
        assert lab.quic_get("client", A("lookalike"), "faketiktok.com").ok
        gw.wait_records(
            lambda r: r["hostname"] == "www.tiktok.com" and r["proto"] == "udp", what="QUIC TikTok record"
        )
    recs = gw.records()
    blocked = [r for r in recs if r["action"] == "block"]
    assert {r["hostname"] for r in blocked} == {
        "www.tiktok.com",
        "m.tiktok.com",
        "api16-normal-c-useast1a.tiktokv.com",
    }
    assert {r["proto"] for r in by_host(blocked, "www.tiktok.com")} == {"tcp", "udp"}
    for r in blocked:
        assert r["rule"] == "provision-effective" and r["app"] == "tiktok"
        assert any(p["id"] == "tiktok-pafaca-hosting" and p["status"] == "effective" for p in r["provisions"])
    for name in ("www.google.com", "faketiktok.com", "tiktok.com.example.net", "www.qq.com"):
        assert by_host(recs, name) and all(r["action"] != "block" for r in by_host(recs, name))
    assert by_host(recs, "www.qq.com")[0]["operator"] == "tencent"
    assert by_host(recs, "www.qq.com")[0]["app"] is None
    # what passed, one process scanning the gateway's capture says of it what the gateway said
    allowed = [r for r in recs if r["action"] != "block"]
    gh.assert_same_offline(allowed, gh.scan_capture(lab, wire_pcap, sig_dir, "--as-of", TIKTOK_ON))


def test_after_the_effective_date_wechat_fails_and_qq_works(lab, sig_dir, tmp_path):
    args = base_args(sig_dir, "--mode", "inline", "--enforce", "--as-of", WECHAT_ON)
    with gh.running(lab, tmp_path, *args) as gw:
        assert not lab.tls_get("client", A("wechat"), "web.wechat.com").ok
        assert not lab.tls_get("client", A("wechat"), "short.weixin.qq.com").ok
        assert not lab.quic_get("client", A("wechat"), "short.weixin.qq.com", timeout=3).ok
        # www.qq.com is served from the same Tencent prefix: the operator is not the app
        assert lab.tls_get("client", A("tencent"), "www.qq.com").ok
        assert lab.http_get("client", A("tencent"), "www.qq.com").ok
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
        # TikTok's 2020 items never took effect
        assert lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok
    recs = gw.records()
    assert {r["action"] for r in by_host(recs, "web.wechat.com")} == {"block"}
    assert any(p["id"] == "wechat-2020-hosting" for p in by_host(recs, "web.wechat.com")[0]["provisions"])
    assert {r["action"] for r in by_host(recs, "www.qq.com")} == {"log"}


def test_dns_blocked_by_rpz_in_unbound(lab, sig_dir, tmp_path):
    def zone(as_of: str) -> str:
        path = tmp_path / f"{as_of}.rpz"
        proc = gh.run_cli_in(
            lab, "gateway", "export", "rpz", "--as-of", as_of, "--signatures", str(sig_dir), "-o", str(path)
        )
        assert proc.returncode == 0, proc.stderr
        return str(path)

    resolver = netlab.RESOLVER4
    try:
        with gh.running(
            lab, tmp_path, *base_args(sig_dir, "--mode", "inline", "--enforce", "--as-of", TIKTOK_ON)
        ) as gw:
            lab.start_unbound(rpz=zone(BEFORE))
            assert lab.dig("client", resolver, "www.tiktok.com").detail["addresses"] == [A("tiktok")]
            assert "rpz-passthru" in lab.log("unbound")  # looked up, logged, answered

            lab.start_unbound(rpz=zone(TIKTOK_ON))
            for name in ("www.tiktok.com", "m.tiktok.com", "api16-normal-c-useast1a.tiktokv.com"):
                assert lab.dig("client", resolver, name).status == "NXDOMAIN", name
                assert lab.dig("client", resolver, name, "AAAA").status == "NXDOMAIN", name
            for name, role in (
                ("www.qq.com", "tencent"),
                ("faketiktok.com", "lookalike"),
                ("www.google.com", "unrelated"),
                ("tiktok.com.example.net", "lookalike"),
            ):
                res = lab.dig("client", resolver, name)
                assert res.status == "NOERROR" and res.detail["addresses"] == [A(role)], (name, res)
            gw.wait_records(
                lambda r: r["app_proto"] == "dns" and "www.google.com" in r["dns_queries"], what="DNS record"
            )

            lab.start_unbound(rpz=zone(WECHAT_ON))
            assert lab.dig("client", resolver, "short.weixin.qq.com").status == "NXDOMAIN"
            assert lab.dig("client", resolver, "web.wechat.com").status == "NXDOMAIN"
            assert lab.dig("client", resolver, "www.qq.com").status == "NOERROR"
            assert lab.dig("client", resolver, "www.tiktok.com").status == "NOERROR"
    finally:
        lab.start_unbound()
    dns = [r for r in gw.records() if r["app_proto"] == "dns"]
    tiktok_dns = [r for r in dns if "www.tiktok.com" in r["dns_queries"]]
    assert tiktok_dns and all(r["app"] == "tiktok" and r["action"] == "log" for r in tiktok_dns)


def test_dns_sinkhole_answer_in_unbound(lab, sig_dir, tmp_path):
    path = tmp_path / "sinkhole.rpz"
    proc = gh.run_cli_in(
        lab,
        "gateway",
        "export",
        "rpz",
        "--as-of",
        TIKTOK_ON,
        "--signatures",
        str(sig_dir),
        "--sinkhole",
        "192.0.2.99",
        "-o",
        str(path),
    )
    assert proc.returncode == 0, proc.stderr
    try:
        lab.start_unbound(rpz=path)
        res = lab.dig("client", netlab.RESOLVER4, "www.tiktok.com")
        assert res.status == "NOERROR" and res.detail["addresses"] == ["192.0.2.99"]
        assert lab.dig("client", netlab.RESOLVER4, "faketiktok.com").detail["addresses"] == [A("lookalike")]
    finally:
        lab.start_unbound()


def test_shared_cdn_address_only_the_app_flow_is_blocked_wechat(lab, sig_dir, tmp_path):
    """Real policy: WeChat CDN services were prohibited in 2020; one Akamai address serves both names."""
    args = base_args(sig_dir, "--mode", "inline", "--enforce", "--as-of", WECHAT_ON)
    with gh.running(lab, tmp_path, *args) as gw:
        assert not lab.tls_get("client", A("cdn"), "web.wechat.com").ok
        res = lab.tls_get("client", A("cdn"), "static.example.com")
        assert res.ok and f"server={A('cdn')}" in res.body
        assert lab.quic_get("client", A("cdn"), "static.example.com").ok
    recs = gw.records()
    wechat = by_host(recs, "web.wechat.com")[0]
    assert (wechat["action"], wechat["category"], wechat["server_owner"]) == ("block", "cdn", "akamai")
    other = by_host(recs, "static.example.com")
    assert other and all(r["action"] == "allow" and r["server_owner"] == "akamai" for r in other)


def test_shared_cdn_address_only_tiktok_blocked_and_routes_spare_the_cdn(lab, sig_dir, tmp_path):
    """A test provision prohibits TikTok CDN services; hosting routes blackhole ByteDance prefixes only."""
    policy = gh.make_policy(tmp_path, [("test-tiktok-cdn", "tiktok", "cdn", 946684800)])  # 2000-01-01
    bytedance_asn = 396986
    args = base_args(
        sig_dir,
        "--mode",
        "inline",
        "--enforce",
        "--as-of",
        TIKTOK_ON,
        "--policy",
        str(policy),
        "--blackhole-routes",
        "--route-asn",
        str(bytedance_asn),
    )
    with gh.running(lab, tmp_path, *args) as gw:
        routes = lab.run("gateway", ["ip", "route", "show", "proto", str(gh.ROUTE_PROTOCOL)]).stdout
        assert "blackhole 198.51.100.0/28" in routes
        assert "203.0.113" not in routes  # the shared CDN address (and everything else) keeps its route
        assert not lab.tls_get("client", A("cdn"), "v16-webapp.tiktok.com").ok
        assert lab.tls_get("client", A("cdn"), "static.example.com").ok
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
        # the operator's hosting prefix is routed into a blackhole: no name needed
        assert not lab.http_get("client", A("tiktok"), "anything.example", timeout=2).ok
        assert "routes: " in gw.stderr() and "blackhole routes added" in gw.stderr()
    recs = gw.records()
    tiktok = by_host(recs, "v16-webapp.tiktok.com")[0]
    assert (tiktok["action"], tiktok["category"]) == ("block", "cdn")
    assert any(p["id"] == "test-tiktok-cdn" for p in tiktok["provisions"])
    assert all(r["action"] == "allow" for r in by_host(recs, "static.example.com"))


def test_blackhole_routes_refuse_cdn_asns(lab, sig_dir, tmp_path):
    proc = gh.run_cli_in(
        lab,
        "gateway",
        "gateway",
        *base_args(sig_dir, "--mode", "inline", "--enforce", "--blackhole-routes", "--route-asn", "20940"),
    )
    assert proc.returncode == 2
    assert "belongs to CDN provider 'akamai'" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_provision_taking_effect_applies_without_restart(lab, sig_dir, tmp_path):
    """Wall clock: flows starting after the instant are decided under the new rule."""
    effective = time.time() + 12
    policy = gh.make_policy(tmp_path, [("test-tiktok-hosting-soon", "tiktok", "hosting", effective)])
    with gh.running(
        lab, tmp_path, *base_args(sig_dir, "--mode", "inline", "--enforce", "--policy", str(policy))
    ) as gw:
        assert time.time() < effective - 2, "the gateway took too long to start for this test"
        assert lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
        time.sleep(max(0.0, int(effective) + 1.5 - time.time()))
        assert not lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
    tiktok = sorted(by_host(gw.records(), "www.tiktok.com"), key=lambda r: r["first_ts"])
    assert [r["action"] for r in tiktok] == ["log", "block"]
    assert tiktok[1]["rule"] == "provision-effective"
    assert tiktok[0]["decided_at"] < gh.instant(effective) <= tiktok[1]["decided_at"]


def test_kill9_inline_fails_open_and_cleanup_restores(lab, sig_dir, tmp_path):
    args = base_args(
        sig_dir,
        "--mode",
        "inline",
        "--enforce",
        "--as-of",
        TIKTOK_ON,
        "--blackhole-routes",
        "--route-asn",
        "396986",
    )
    gw = gh.Gateway(lab, tmp_path, *args).start()
    try:
        assert not lab.tls_get("client", A("unrelated"), "www.tiktok.com").ok
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
        gw.wait_records(lambda r: r["hostname"] == "www.google.com", what="a written record")
    finally:
        gw.kill9()
    left = gh.our_objects(lab)
    assert any("classifier_gw" in item for item in left) and any("routes" in item for item in left)
    # fail-open: nobody on the queue, the bypass lets new flows through, TikTok included
    assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
    assert lab.tls_get("client", A("unrelated"), "www.tiktok.com").ok
    assert lab.quic_get("client", A("unrelated"), "www.google.com").ok
    # everything written before the kill is whole JSON lines
    lines = gw.log.read_text().splitlines()
    assert lines and all(json.loads(line)["action"] for line in lines)

    # a new run refuses to start over the leftovers ...
    proc = gh.run_cli_in(lab, "gateway", "gateway", *args)
    assert proc.returncode == 2 and "still installed" in proc.stderr and "--cleanup" in proc.stderr
    # ... --cleanup removes them, and only them
    lab.run("gateway", ["nft", "add", "table", "inet", "operator_own"], check=True)
    lab.run("gateway", ["ip", "route", "add", "blackhole", "192.0.2.128/25"], check=True)
    try:
        proc = gh.run_cli_in(lab, "gateway", "gateway", "--cleanup")
        assert proc.returncode == 0, proc.stderr
        assert "removed nft table inet classifier_gw" in proc.stdout
        assert not gh.our_objects(lab)
        assert "operator_own" in lab.run("gateway", ["nft", "list", "tables"]).stdout
        assert "192.0.2.128/25" in lab.run("gateway", ["ip", "route"]).stdout
        proc = gh.run_cli_in(lab, "gateway", "gateway", "--cleanup")
        assert proc.returncode == 0 and "nothing to clean up" in proc.stdout
    finally:
        lab.run("gateway", ["nft", "delete", "table", "inet", "operator_own"])
        lab.run("gateway", ["ip", "route", "del", "blackhole", "192.0.2.128/25"])


def _mangle_markers(lab) -> set[str]:
    listing = json.loads(
        lab.run("gateway", ["nft", "-j", "list", "table", "inet", "classifier_gw"], check=True).stdout
    )
    return {o["counter"]["name"] for o in listing["nftables"] if "counter" in o}


def test_iptables_backend_removes_the_mangle_tables_it_created(lab, sig_dir, tmp_path):
    """iptables-nft creates `ip mangle` / `ip6 mangle`: a normal stop, and kill -9 + --cleanup,
    remove them again when the gateway created them."""
    args = base_args(sig_dir, "--mode", "inline", "--backend", "iptables", "--enforce", "--as-of", TIKTOK_ON)
    gh.drop_mangle_tables(lab)
    with gh.running(lab, tmp_path, *args):
        assert gh.mangle_tables(lab) == {"ip mangle", "ip6 mangle"}  # made by the iptables commands
        assert _mangle_markers(lab) == {"created_ip_mangle", "created_ip6_mangle"}
        assert not lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok  # the xt NFQUEUE path works
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
    assert gh.mangle_tables(lab) == set(), "a normal stop left the mangle tables iptables created"

    gh.Gateway(lab, tmp_path, *args, log_name="killed.jsonl").start().kill9()
    assert gh.mangle_tables(lab) == {"ip mangle", "ip6 mangle"}
    assert (
        "nft table ip mangle (created by iptables for the gateway; removed once empty)"
        in gh.run_cli_in(lab, "gateway", "gateway", *args).stderr
    )  # listed among the leftovers
    proc = gh.run_cli_in(lab, "gateway", "gateway", "--cleanup")
    assert proc.returncode == 0, proc.stderr
    for table in ("ip mangle", "ip6 mangle"):
        assert f"removed nft table {table} (created by iptables for the gateway, empty)" in proc.stdout
    assert "removed iptables -t mangle chain CLASSIFIER_GW" in proc.stdout
    assert gh.mangle_tables(lab) == set() and not gh.our_objects(lab)
    proc = gh.run_cli_in(lab, "gateway", "gateway", "--cleanup")
    assert proc.returncode == 0 and "nothing to clean up" in proc.stdout


def test_iptables_backend_leaves_mangle_tables_that_existed(lab, sig_dir, tmp_path):
    """An operator's `ip mangle` (even an empty one) survives a stop and a --cleanup; the `ip6 mangle`
    the gateway created goes, unless someone put a rule in it meanwhile."""
    args = base_args(sig_dir, "--mode", "inline", "--backend", "iptables", "--enforce", "--as-of", TIKTOK_ON)
    gh.drop_mangle_tables(lab)
    lab.run("gateway", ["nft", "add", "table", "ip", "mangle"], check=True)
    try:
        with gh.running(lab, tmp_path, *args):
            assert _mangle_markers(lab) == {"created_ip6_mangle"}
        assert gh.mangle_tables(lab) == {"ip mangle"}

        gh.Gateway(lab, tmp_path, *args, log_name="killed.jsonl").start().kill9()
        # after the crash, someone adds a rule to the table the gateway created
        lab.run(
            "gateway", ["ip6tables", "-w", "-t", "mangle", "-A", "PREROUTING", "-j", "ACCEPT"], check=True
        )
        proc = gh.run_cli_in(lab, "gateway", "gateway", "--cleanup")
        assert proc.returncode == 0, proc.stderr
        assert "removed nft table inet classifier_gw" in proc.stdout
        assert "removed nft table ip mangle" not in proc.stdout
        kept = "kept nft table ip6 mangle: created for the gateway's iptables rules, but it now holds a rule"
        assert kept in proc.stdout
        assert gh.mangle_tables(lab) == {"ip mangle", "ip6 mangle"} and not gh.our_objects(lab)
    finally:
        gh.drop_mangle_tables(lab)


def test_cleanup_first_replaces_leftovers(lab, sig_dir, tmp_path):
    args = base_args(sig_dir, "--mode", "inline", "--enforce", "--as-of", TIKTOK_ON)
    gh.Gateway(lab, tmp_path, *args, log_name="first.jsonl").start().kill9()
    assert gh.our_objects(lab)
    with gh.running(lab, tmp_path, *args, "--cleanup-first", log_name="second.jsonl"):
        assert not lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok


def test_sigint_stops_cleanly_with_status_130(lab, sig_dir, tmp_path):
    gw = gh.Gateway(
        lab, tmp_path, *base_args(sig_dir, "--mode", "reactive", "--enforce", "--as-of", TIKTOK_ON)
    ).start()
    # Reactive mode acts after the deciding packet has passed, so only what the client sends after
    # the verdict can be stopped: a client that sends its request at once can win the race (it did,
    # 3 times in 100 in the lab, with or without JA4S), hence the pause.
    assert not gh.tls_get_after_pause(lab, A("tiktok"), "www.tiktok.com")
    assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
    assert gw.stop(signal.SIGINT) == 130
    assert not gh.our_objects(lab)
    assert "stopped:" in gw.stderr()
    # the live flows were written at exit: the blocked one (whose ServerHello may or may not have
    # left the server before our reset reached it), and the allowed one with its ServerHello's JA4S
    (blocked,) = by_host(gw.records(), "www.tiktok.com")
    assert blocked["action"] == "block"
    (allowed,) = by_host(gw.records(), "www.google.com")
    assert allowed["action"] != "block" and allowed["ja4s"] is not None and allowed["ja4s"].startswith("t13")


def test_dry_run_changes_nothing_and_records_what_it_would_do(lab, sig_dir, tmp_path):
    args = base_args(sig_dir, "--mode", "inline", "--as-of", TIKTOK_ON)  # no --enforce
    wire_pcap = tmp_path / "gw-cli.pcap"
    with gh.running(lab, tmp_path, *args) as gw, lab.capture("gateway", lab.gw_client_if, wire_pcap):
        assert not gh.our_objects(lab)
        assert lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok  # not enforced
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
        gw.wait_records(lambda r: r["hostname"] == "www.tiktok.com", what="TikTok record")
    out = gw.stderr()
    assert "dry run: nothing below is installed" in out and "nft -f - <<'EOF'" in out
    rec = by_host(gw.records(), "www.tiktok.com")[0]
    assert rec["action"] == "block"  # what an enforcing run would have done
    assert rec["packets_c2s"] >= 5  # seen once per packet (incoming copies only)
    assert rec["file"].startswith("inline (dry run)")
    # nothing was dropped: every record, the would-be block too, is what a scan of the traffic says
    gh.assert_same_offline(gw.records(), gh.scan_capture(lab, wire_pcap, sig_dir, "--as-of", TIKTOK_ON))


def test_printed_plan_is_what_gets_installed(lab, sig_dir, tmp_path):
    args = base_args(sig_dir, "--mode", "inline", "--as-of", TIKTOK_ON)
    proc = gh.run_cli_in(lab, "gateway", "gateway", *args, "--print-only")
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout
    script = printed.split("nft -f - <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert not gh.our_objects(lab)
    check = lab.run("gateway", ["nft", "-c", "-f", "-"], input=script)
    assert check.returncode == 0, check.stderr
    with gh.running(lab, tmp_path, *args, "--enforce"):
        listing = lab.run("gateway", ["nft", "-j", "list", "table", "inet", "classifier_gw"]).stdout
        listed = json.loads(listing)
        names = {(k, v["name"]) for o in listed["nftables"] for k, v in o.items() if k in ("set", "chain")}
        for kind, name in re.findall(r"^\t(set|chain) (\w+) \{", script, re.M):
            assert (kind, name) in names
        for line in printed.splitlines():
            if line.startswith(("iptables ", "ip6tables ")) and (" -A " in line or " -I " in line):
                tool = line.split()[0]
                rule = " ".join(shlex.split(line)).split(" -t mangle ", 1)[1]
                rule = rule.replace("-I FORWARD 1 ", "-A FORWARD ")
                assert rule in lab.run("gateway", [tool, "-w", "-t", "mangle", "-S"]).stdout, line


def test_setup_errors_are_one_line_with_status_2(lab, sig_dir):
    cases = [
        (
            (),
            ("--mode", "inline", "--enforce", "-i", "gw-cli", "-i", "nosuch0"),
            "interface 'nosuch0' does not exist",
        ),
        (gh.UNPRIVILEGED, ("--mode", "monitor", "-i", "gw-cli"), "must run as root"),
        (
            ("setpriv", "--bounding-set=-net_admin"),
            ("--mode", "inline", "--enforce", "-i", "gw-cli"),
            "CAP_NET_ADMIN is missing",
        ),
        ((), ("--mode", "inline", "--metrics", "0.0.0.0:1"), "not a loopback address"),
    ]
    for prefix, args, message in cases:
        proc = gh.run_cli_in(lab, "gateway", "gateway", "--signatures", str(sig_dir), *args, prefix=prefix)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not gh.our_objects(lab)


def test_sighup_reopens_the_log_and_metrics_on_loopback(lab, sig_dir, tmp_path):
    args = base_args(sig_dir, "--mode", "inline", "--enforce", "--as-of", TIKTOK_ON)
    with gh.running(lab, tmp_path, *args) as gw:
        assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
        gw.wait_records(lambda r: r["hostname"] == "www.google.com", what="first record")
        rotated = gw.log.with_name("records.jsonl.1")
        gw.log.rename(rotated)
        gw.send(signal.SIGHUP)
        time.sleep(0.5)
        assert not lab.tls_get("client", A("tiktok"), "www.tiktok.com").ok
        gw.wait_records(lambda r: r["hostname"] == "www.tiktok.com", what="record after SIGHUP")
        metrics = lab.run(
            "gateway", ["curl", "-s", "--max-time", "3", "http://127.0.0.1:9597/metrics"]
        ).stdout
        assert 'classifier_gateway_verdicts_total{action="block",mode="inline"} 1.0' in metrics
        assert re.search(r'classifier_gateway_packets_total\{mode="inline"\} [1-9]', metrics)
        assert 'classifier_gateway_queue_drops_total{queue="7",reason="queue"} 0.0' in metrics
        # loopback only: not reachable on the gateway's own addresses
        assert not lab.curl("client", f"http://{netlab.GW_CLIENT4}:9597/metrics", timeout=2).ok
    before = [json.loads(x) for x in rotated.read_text().splitlines()]
    assert {r["hostname"] for r in before} == {"www.google.com"}, before
    after = gw.records()
    # the whole records on failure: a hostless record here was seen once (stop 17), not reproduced
    assert {r["hostname"] for r in after} == {"www.tiktok.com"}, after


def test_a_stalled_gateway_is_not_an_outage(lab, sig_dir, tmp_path):
    """SIGSTOP: the queue fills, then the kernel lets packets through (fail-open), classified or not."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text("[inline]\nqueue_maxlen = 4\n")
    args = base_args(sig_dir, "-c", str(cfg), "--mode", "inline", "--enforce", "--as-of", TIKTOK_ON)
    with gh.running(lab, tmp_path, *args) as gw:
        gw.send(signal.SIGSTOP)
        try:
            # fill the queue with a few datagrams nobody answers
            lab.run(
                "client",
                [
                    sys.executable,
                    "-c",
                    "import socket\ns=socket.socket(2,2)\n"
                    f"[s.sendto(b'x', ('{A('unrelated')}', 9)) for _ in range(20)]",
                ],
            )
            res = lab.tls_get("client", A("unrelated"), "www.google.com", timeout=5)
            assert res.ok, res.error
        finally:
            gw.send(signal.SIGCONT)
        drops = lab.run("gateway", ["cat", "/proc/net/netfilter/nfnetlink_queue"]).stdout.split()
        assert int(drops[5]) == 0  # fail-open: nothing counted as dropped


def test_an_unwritable_log_stops_the_gateway_cleanly(lab, sig_dir, tmp_path):
    """Records must not vanish silently: a full disk stops the gateway, which still cleans up."""
    gw = gh.Gateway(lab, tmp_path, *base_args(sig_dir, "--mode", "inline", "--enforce", "--as-of", TIKTOK_ON))
    gw.log = tmp_path / "unused"
    gw.args = (*gw.args, "--log", "/dev/full")
    gw.start()
    assert lab.tls_get("client", A("unrelated"), "www.google.com").ok
    gw.proc.wait(20)
    assert gw.proc.returncode == 2
    assert "cannot write the record log /dev/full: No space left on device" in gw.stderr()
    assert not gh.our_objects(lab)
    assert lab.tls_get("client", A("unrelated"), "www.google.com").ok


def test_offloaded_flows_bypass_the_queue_and_keep_whole_counts(lab, sig_dir, tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text("[inline]\noffload_after = 1\n")
    args = base_args(sig_dir, "-c", str(cfg), "--mode", "inline", "--enforce", "--as-of", BEFORE)
    wire_pcap = tmp_path / "gw-cli.pcap"
    with gh.running(lab, tmp_path, *args) as gw, lab.capture("gateway", lab.gw_client_if, wire_pcap, "udp"):
        res = lab.quic_get("client", A("unrelated"), "www.google.com")
        assert res.ok
        rec = gw.wait_records(lambda r: r["hostname"] == "www.google.com", what="QUIC record")[0]
        metrics = lab.run(
            "gateway", ["curl", "-s", "--max-time", "3", "http://127.0.0.1:9597/metrics"]
        ).stdout

    def metric(name: str) -> float:
        return float(re.search(rf'classifier_gateway_{name}\{{mode="inline"\}} (\S+)', metrics)[1])

    queued = metric("packets_total")
    assert metric("offloaded_flows_total") == 1
    total = rec["packets_c2s"] + rec["packets_s2c"]
    assert queued >= 1 and total >= queued + 4  # the kernel counted the packets the queue never saw
    assert gh.counts_of(rec) == gh.wire_counts(wire_pcap)[gh.flow_of(rec)]  # and nothing was lost
    assert rec["bytes_c2s"] > 1200 and rec["end_reason"] == "idle"
