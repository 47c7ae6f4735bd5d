"""Gateway pieces that need no root: config, plan, RPZ, resets, routes plan, metrics, CLI wiring."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.errors import UserError
from classifier.gateway import config as gwconfig
from classifier.gateway import netfilter, preflight, rpz
from classifier.gateway.resets import build_rst, parse_tcp, resets_for

ROOT = Path(__file__).resolve().parents[1]


def _args(**kw) -> argparse.Namespace:
    from classifier.cli import build_parser

    words = ["gateway"]
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            words.append(flag)
        elif isinstance(v, list):
            for item in v:
                words += [flag, str(item)]
        else:
            words += [flag, str(v)]
    return build_parser().parse_args(words)


# -- config ------------------------------------------------------------------------------------


def test_config_file_values_and_flag_overrides(tmp_path):
    cfg_file = tmp_path / "gw.toml"
    cfg_file.write_text(
        '[gateway]\nmode = "reactive"\ninterfaces = ["eth1"]\nlog = "records.jsonl"\n'
        "as_of = 2025-03-01T00:00:00Z\n[flows]\nidle_udp = 30\n[inline]\nqueue = 9\n"
    )
    cfg = gwconfig.resolve(_args(config=cfg_file))
    assert (cfg.mode, cfg.interfaces, cfg.queue, cfg.idle_udp) == ("reactive", ("eth1",), 9, 30.0)
    assert cfg.log == str(tmp_path / "records.jsonl")  # relative to the config file
    assert cfg.as_of == 1740787200.0
    cfg = gwconfig.resolve(_args(config=cfg_file, mode="inline", interface=["a0", "b0"], queue=3))
    assert (cfg.mode, cfg.interfaces, cfg.queue) == ("inline", ("a0", "b0"), 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[gateway]\nmode = "bridge"\n', "[gateway] mode: 'bridge' is not one of monitor, inline, reactive"),
        ("[gateway]\nenforce = true\n", "[gateway] enforce: unknown key"),
        ("[routes]\nblackhole = true\n", "[routes] asns: blackhole routes need the list"),
        ('[metrics]\nlisten = "0.0.0.0:9597"\n', "[metrics] listen: 0.0.0.0 is not a loopback address"),
        ("[inline]\nmark = 3\n", "[inline] mark: must be a single bit"),
        ("[flows]\nidle_tcp = -1\n", "[flows] idle_tcp: must be positive"),
        ("[wat]\nx = 1\n", "[wat]: unknown section"),
        ("[gateway\n", "TOML syntax error"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as exc:
        gwconfig.load(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and expected in msg and "\n" not in msg


def test_community_id_seed_from_the_file_and_the_flag(tmp_path):
    cfg_file = tmp_path / "gw.toml"
    cfg_file.write_text("[gateway]\ncommunity_id_seed = 7\n")
    assert gwconfig.resolve(_args(config=cfg_file)).community_id_seed == 7
    assert gwconfig.resolve(_args(config=cfg_file, community_id_seed=9)).community_id_seed == 9
    assert gwconfig.resolve(_args()).community_id_seed == 0  # no file, no flag: Zeek's default
    cfg_file.write_text("[gateway]\ncommunity_id_seed = 70000\n")
    with pytest.raises(UserError, match=r"\[gateway\] community_id_seed: must be 0\.\.65535"):
        gwconfig.load(cfg_file)


def test_flag_errors_name_the_flag(tmp_path):
    with pytest.raises(UserError, match=r"^--metrics: 192\.0\.2\.1 is not a loopback address"):
        gwconfig.resolve(_args(metrics="192.0.2.1:9597"))
    with pytest.raises(UserError, match=r"^--route-asn: blackhole routes need"):
        gwconfig.resolve(_args(mode="inline", blackhole_routes=True))


def test_example_config_loads():
    cfg = gwconfig.load(ROOT / "examples" / "gateway.toml")
    assert cfg.mode in gwconfig.MODES and cfg.metrics_address[0] == "127.0.0.1"


# -- plan --------------------------------------------------------------------------------------


def test_inline_plan_nft_backend_queues_with_bypass_inside_our_table():
    cfg = gwconfig.GatewayConfig(mode="inline", interfaces=("eth1", "eth2"), queue=5)
    plan = netfilter.build_plan(cfg, "nft")
    script = plan.nft_script
    assert script.startswith("table inet classifier_gw {")
    assert "queue num 5 bypass" in script and not plan.iptables
    assert 'iifname != { "eth1", "eth2" } accept' in script
    forward = script.split("chain forward {", 1)[1].split("\n\t}\n", 1)[0]
    # each family in its own chain, then the queue for whatever no set decided
    assert forward.index("jump flows4") < forward.index("queue num 5 bypass")
    flows4 = script.split("chain flows4 {", 1)[1].split("}", 1)[0]
    # the offload lookup first (the bulk of the packets), then the blocked tuples
    assert flows4.index("@allow4") < flows4.index("@block4 reject with tcp reset")
    assert "tcp flags & (syn | fin | rst) == 0" in script  # opens and closes still reach the flow table
    assert "meta mark" not in script


def test_inline_plan_iptables_backend_tags_every_rule():
    cfg = gwconfig.GatewayConfig(mode="inline", interfaces=("eth1",), queue=5)
    plan = netfilter.build_plan(cfg, "iptables")
    assert "queue num" not in plan.nft_script
    assert "meta mark set meta mark | 0x00100000" in plan.nft_script
    assert "chain unmark" in plan.nft_script  # no operator rule sees our bit
    for argv in plan.iptables:
        assert argv[0] in ("iptables", "ip6tables") and argv[3] == "mangle"
        assert netfilter.CHAIN in argv
    jumps = [a for a in plan.iptables if "FORWARD" in a]
    assert len(jumps) == 2 and all("-i" in a for a in jumps)
    for argv in jumps:  # the only rules outside our chain: tagged, and offloaded packets skip them
        assert argv[argv.index("--comment") + 1] == netfilter.TAG
        assert argv[argv.index("--mark") - 1] == "!"
    queued = [a for a in plan.iptables if "NFQUEUE" in a]
    assert queued and all("--queue-bypass" in a for a in queued)
    text = plan.render(enforce=False)
    assert "dry run: nothing below is installed" in text
    assert "iptables -w -t mangle -N CLASSIFIER_GW" in text


def test_monitor_and_reactive_plans():
    plan = netfilter.build_plan(gwconfig.GatewayConfig(mode="monitor"), None)
    assert plan.nft_script is None and not plan.iptables
    assert "nothing is installed" in plan.render(enforce=False)
    plan = netfilter.build_plan(gwconfig.GatewayConfig(mode="reactive"), "nft")
    assert plan.backend is None and "queue num" not in plan.nft_script and "@allow4" not in plan.nft_script
    assert "@block4 reject with tcp reset" in plan.nft_script


def test_print_only_needs_no_root_and_prints_the_plan():
    # Where we are root, uid 65534 without capabilities (but reading files) stands in for a normal user.
    from gateway_helpers import UNPRIVILEGED

    wrap = list(UNPRIVILEGED) if os.geteuid() == 0 else []
    code = "import os, sys; from classifier.cli import main; print('euid', os.geteuid()); sys.exit(main())"
    proc = subprocess.run(
        [
            *wrap,
            sys.executable,
            "-c",
            code,
            "gateway",
            "--mode",
            "inline",
            "--backend",
            "iptables",
            "-i",
            "eth9",
            "--print-only",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("euid ") and not proc.stdout.startswith("euid 0\n")
    assert "nft -f - <<'EOF'" in proc.stdout and "--queue-bypass" in proc.stdout


def test_not_root_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="must run as root"):
        preflight.require_privileges()


def test_missing_cap_net_admin_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text(f"CapEff:\t{1 << preflight.CAP_NET_RAW:016x}\n")
    with pytest.raises(UserError, match=r"^CAP_NET_ADMIN is missing"):
        preflight.require_privileges(tmp_path)
    (tmp_path / "self" / "status").write_text(f"CapEff:\t{1 << preflight.CAP_NET_ADMIN:016x}\n")
    with pytest.raises(UserError, match=r"^CAP_NET_RAW is missing"):
        preflight.require_privileges(tmp_path)
    preflight.require_privileges(tmp_path, need_raw=False)


def test_cli_stays_import_light():
    code = (
        "import sys, classifier.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('netfilterqueue', 'pyroute2', 'prometheus_client', "
        "'classifier.gateway.runner') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


# -- mangle tables made by iptables-nft ----------------------------------------------------------


class TablesNft:
    """nft as a dict {(family, name): [objects]}: the listings and deletions the clean-up uses."""

    def __init__(self, tables: dict[tuple[str, str], list[dict]]) -> None:
        self.tables = tables
        self.ran: list[str] = []

    def list_json(self, what: str) -> list[dict]:
        if what == "tables":
            return [{"table": {"family": f, "name": n}} for f, n in self.tables]
        _, fam, name = what.split()
        return [{"table": {"family": fam, "name": name}}, *self.tables[(fam, name)]]

    def run(self, text: str) -> str:
        self.ran.append(text)
        for words in (line.split() for line in text.splitlines()):
            if words[:2] == ["delete", "table"]:
                del self.tables[(words[2], words[3])]
        return ""


def _forward(family: str, policy: str = "accept") -> dict:
    return {
        "chain": {
            "family": family,
            "table": "mangle",
            "name": "FORWARD",
            "hook": "forward",
            "prio": -150,
            "policy": policy,
        }
    }


def _marker(family: str) -> dict:
    return {"counter": {"family": "inet", "table": "classifier_gw", "name": f"created_{family}_mangle"}}


def test_plan_records_the_mangle_tables_iptables_will_create():
    cfg = gwconfig.GatewayConfig(mode="inline", interfaces=("eth1",))
    plan = netfilter.build_plan(cfg, "iptables", created=["ip6 mangle"])
    assert "\tcounter created_ip6_mangle {" in plan.nft_script
    assert "created_ip_mangle" not in plan.nft_script
    assert any("ip6 mangle" in note for note in plan.notes)
    # no iptables commands (nft backend, reactive mode): nothing to record
    assert "counter created_" not in netfilter.build_plan(cfg, "nft", created=["ip6 mangle"]).nft_script
    reactive = gwconfig.GatewayConfig(mode="reactive")
    assert "counter created_" not in netfilter.build_plan(reactive, None, created=["ip mangle"]).nft_script


def test_cleanup_removes_the_empty_mangle_tables_it_recorded_and_only_those(monkeypatch):
    monkeypatch.setattr(netfilter, "_has_tool", lambda _tool: False)  # the iptables part is e2e-tested
    nft = TablesNft(
        {
            ("inet", "classifier_gw"): [_marker("ip6")],
            ("ip", "mangle"): [_forward("ip")],  # existed before the run: not recorded
            ("ip6", "mangle"): [_forward("ip6")],
        }
    )
    assert (
        "nft table ip6 mangle (created by iptables for the gateway; removed once empty)"
        in netfilter.leftovers(nft)
    )
    kept: list[str] = []
    removed = netfilter.remove_all(nft, kept)
    assert removed == [
        "nft table ip6 mangle (created by iptables for the gateway, empty)",
        "nft table inet classifier_gw",
    ]
    assert not kept and list(nft.tables) == [("ip", "mangle")]
    # the recorded table goes first, chains before it, in one transaction; our record last
    assert nft.ran == [
        "delete chain ip6 mangle FORWARD\ndelete table ip6 mangle\n",
        "delete table inet classifier_gw",
    ]


@pytest.mark.parametrize(
    ("extra", "holds"),
    [
        ({"rule": {"family": "ip", "table": "mangle", "chain": "FORWARD", "handle": 4}}, "a rule"),
        ({"chain": {"family": "ip", "table": "mangle", "name": "OPERATOR"}}, "chain OPERATOR"),
        (_forward("ip", policy="drop"), "chain FORWARD with policy drop"),
    ],
)
def test_a_recorded_mangle_table_that_holds_something_is_kept(monkeypatch, extra, holds):
    monkeypatch.setattr(netfilter, "_has_tool", lambda _tool: False)
    nft = TablesNft({("inet", "classifier_gw"): [_marker("ip")], ("ip", "mangle"): [_forward("ip"), extra]})
    kept: list[str] = []
    assert netfilter.remove_all(nft, kept) == ["nft table inet classifier_gw"]
    assert ("ip", "mangle") in nft.tables
    assert len(kept) == 1 and kept[0].startswith("nft table ip mangle") and holds in kept[0], kept


# -- preflight ---------------------------------------------------------------------------------


def test_preflight_missing_nfqueue(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight.shutil, "which", lambda _tool: None)  # no modprobe to try
    (tmp_path / "net" / "netfilter").mkdir(parents=True)
    with pytest.raises(UserError, match="no NFQUEUE support"):
        preflight.require_nfqueue(tmp_path)
    (tmp_path / "net" / "netfilter" / "nfnetlink_queue").write_text("")
    preflight.require_nfqueue(tmp_path)


def test_preflight_missing_nf_tables():
    from classifier.gateway.nftlib import NftError

    class NoNft:
        def run(self, text):
            raise NftError("nft: Protocol not supported (command: list tables)")

    with pytest.raises(UserError, match="no usable nf_tables support"):
        preflight.require_nf_tables(NoNft())


def test_preflight_capabilities_read_from_status(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("Name:\tx\nCapEff:\t0000000000003000\n")
    assert preflight.effective_caps(tmp_path) == 0x3000
    assert preflight.effective_caps(tmp_path / "nowhere") == 0


def test_preflight_unknown_interface():
    with pytest.raises(UserError, match="interface 'nosuch0' does not exist"):
        preflight.require_interfaces(("lo", "nosuch0"))
    assert preflight.require_interfaces(("lo",))["lo"] == socket.if_nametoindex("lo")


# -- resets ------------------------------------------------------------------------------------


def test_resets_carry_the_sequence_numbers_each_end_expects():
    from scapy.layers.inet import IP, TCP

    hello = bytes(
        IP(src="192.0.2.10", dst="198.51.100.10")
        / TCP(sport=40000, dport=443, seq=1000, ack=5000, flags="PA")
        / (b"x" * 300)
    )
    seg = parse_tcp(hello)
    assert (seg.seq, seg.ack, seg.payload_len) == (1000, 5000, 300)
    to_server, to_client = (IP(p) for p in resets_for(seg, forwarded=False))
    assert (to_server.src, to_server.dst, to_server[TCP].seq) == ("192.0.2.10", "198.51.100.10", 1000)
    assert (to_client.src, to_client.dst, to_client[TCP].seq) == ("198.51.100.10", "192.0.2.10", 5000)
    assert to_client[TCP].flags & 0x04 and to_server[TCP].flags & 0x04
    # reactive: the hello went through, the server now expects the byte after it
    assert IP(resets_for(seg, forwarded=True)[0])[TCP].seq == 1300
    # checksums as scapy computes them
    for pkt in (to_server, to_client):
        raw = bytes(pkt)
        pkt2 = IP(raw)
        del pkt2.chksum
        del pkt2[TCP].chksum
        assert bytes(IP(bytes(pkt2))) == raw


def test_resets_ipv6():
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6

    rst = build_rst(
        socket.inet_pton(socket.AF_INET6, "2001:db8:1::10"),
        socket.inet_pton(socket.AF_INET6, "2001:db8:2::10"),
        40000,
        443,
        7,
        9,
    )
    pkt = IPv6(rst)
    assert pkt.src == "2001:db8:1::10" and pkt[TCP].seq == 7 and pkt[TCP].flags == "RA"
    chk = pkt[TCP].chksum
    del pkt[TCP].chksum
    assert IPv6(bytes(pkt))[TCP].chksum == chk
    assert parse_tcp(rst).seq == 7


# -- routes plan -------------------------------------------------------------------------------


def test_route_plan_only_operator_hosting_prefixes(tmp_path, sigs, policy):
    from classifier.gateway.routes import RoutePlan

    op_asn = next(a for a in sigs.asns.values() if a.kind == "operator" and a.owner == "bytedance")
    cdn_asn = next(a for a in sigs.asns.values() if a.kind == "cdn")
    cfg = gwconfig.GatewayConfig(mode="inline", blackhole_routes=True, route_asns=(op_asn.asn,))
    plan = RoutePlan(cfg, sigs, policy)
    assert plan.candidates and {c.app for c in plan.candidates} == {"tiktok"}
    hosting = [p for p in policy.provisions.values() if p.app == "tiktok" and p.category == "hosting"]
    effective = {c.prefix for c in plan.candidates}
    blocking_at = None
    for p in hosting:
        t = p.effective + 3600
        if policy.decide("tiktok", ("hosting",), True, t, "announced").action == "block":
            blocking_at = t
    assert blocking_at is not None
    assert set(plan.desired(blocking_at)) == effective
    assert plan.desired(min(p.effective for p in hosting) - 86400) == {}
    for prefix in effective:  # never a CDN address
        net = __import__("ipaddress").ip_network(prefix)
        assert sigs.prefixes.lookup(net.network_address.packed).kind == "operator"
    with pytest.raises(UserError, match=r"belongs to CDN provider"):
        RoutePlan(
            gwconfig.GatewayConfig(mode="inline", blackhole_routes=True, route_asns=(cdn_asn.asn,)),
            sigs,
            policy,
        )


def test_route_plan_drops_operator_prefixes_overlapping_a_cdn(tmp_path):
    import gateway_helpers as gh

    from classifier.gateway.routes import RoutePlan
    from classifier.policy import Policy
    from classifier.signatures import Signatures

    sig_dir = gh.make_signatures(tmp_path)
    # a ByteDance prefix that covers the lab's CDN address must never be blackholed
    asn_id, _, _ = gh.TEST_PREFIXES["bytedance"]
    sigs = Signatures.load(sig_dir)
    entry = next(a for a in sigs.asns.values() if a.id == asn_id)
    path = sig_dir / entry.ipv4
    path.write_text(path.read_text() + "203.0.113.0/24\n")
    sigs = Signatures.load(sig_dir)
    plan = RoutePlan(
        gwconfig.GatewayConfig(mode="inline", blackhole_routes=True, route_asns=(entry.asn,)),
        sigs,
        Policy.load(sig_dir / "policy"),
    )
    assert "203.0.113.0/24" in plan.excluded
    assert "203.0.113.0/24" not in {c.prefix for c in plan.candidates}
    assert "198.51.100.0/28" in {c.prefix for c in plan.candidates}


# -- rpz ---------------------------------------------------------------------------------------


def _owners(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith((";", "$", "@")) or not line.strip():
            continue
        owner, rtype, rdata = line.split(None, 2)
        assert owner not in out, f"{owner} twice"
        out[owner] = f"{rtype} {rdata}"
    return out


def test_rpz_blocks_effective_names_passes_the_rest(sigs, policy):
    from classifier.timeutil import parse_instant

    text, counts = rpz.build_zone(sigs, policy, parse_instant("2025-03-01"), "announced")
    owners = _owners(text)
    assert owners["tiktok.com"] == "CNAME ." and owners["*.tiktok.com"] == "CNAME ."  # PAFACA hosting
    assert owners["qq.com"] == "CNAME rpz-passthru."  # operator only: logged, never blocked
    assert owners["weixin.qq.com"] == "CNAME rpz-passthru."  # WeChat 2020 rescinded by then
    assert counts["block"] > 0 and counts["passthru"] > 0
    assert not any(o.endswith("edgesuite.net") and o.count(".") == 1 for o in owners)

    text, _ = rpz.build_zone(sigs, policy, parse_instant("2020-10-01"), "announced", sinkhole="192.0.2.99")
    owners = _owners(text)
    assert owners["weixin.qq.com"] == "A 192.0.2.99" and owners["*.weixin.qq.com"] == "A 192.0.2.99"
    assert owners["qq.com"] == "CNAME rpz-passthru."
    assert owners["tiktok.com"] == "CNAME rpz-passthru."  # 2020 TikTok items never took effect
    # before anything: nothing blocked
    _, counts = rpz.build_zone(sigs, policy, parse_instant("2019-01-01"), "announced")
    assert counts["block"] == 0


def test_rpz_category_follows_the_role(sigs, policy):
    from classifier.timeutil import parse_instant

    # In 2020-10 WeChat payments is effective; the in-force view has it enjoined.
    when = parse_instant("2020-10-01")
    pay = next(r for r in sigs.hosts.rules if r.app == "wechat" and r.role == "payments")
    assert rpz.rule_category(pay.role) == "payments"
    assert rpz.rule_category("web") == "hosting"
    announced = _owners(rpz.build_zone(sigs, policy, when, "announced")[0])
    in_force = _owners(rpz.build_zone(sigs, policy, when, "in-force")[0])
    assert announced[pay.pattern] == "CNAME ." and in_force[pay.pattern] == "CNAME rpz-passthru."


def test_export_rpz_command(tmp_path):
    out = tmp_path / "zone.rpz"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "classifier",
            "export",
            "rpz",
            "--as-of",
            "2025-03-01",
            "--sinkhole",
            "sinkhole.example",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "blocked" in proc.stderr
    assert _owners(out.read_text())["tiktok.com"] == "CNAME sinkhole.example."
    proc = subprocess.run(
        [sys.executable, "-m", "classifier", "export", "rpz", "--sinkhole", "not a name"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "--sinkhole" in proc.stderr


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_collector_and_queue_drops(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from classifier.gateway import metrics

    proc_file = tmp_path / "nfnetlink_queue"
    proc_file.write_text("    7  21500     0 2  4016     3     5       12  1\n")
    assert metrics.queue_drops(7, proc_file) == (3, 5)
    assert metrics.queue_drops(8, proc_file) is None
    stats = metrics.Stats(packets=10, flows=3)
    stats.verdicts.update({"block": 2, "allow": 1})
    stats.errors["packet"] = 1
    reg = CollectorRegistry()
    reg.register(metrics._Collector(stats, "inline", None, lambda: 4))
    text = generate_latest(reg).decode()
    assert 'classifier_gateway_packets_total{mode="inline"} 10.0' in text
    assert 'classifier_gateway_verdicts_total{action="block",mode="inline"} 2.0' in text
    assert 'classifier_gateway_errors_total{kind="packet",mode="inline"} 1.0' in text
    assert 'classifier_gateway_live_flows{mode="inline"} 4.0' in text


def test_record_log_reopens(tmp_path):
    from classifier.gateway.recordlog import RecordLog

    path = tmp_path / "r.jsonl"
    log = RecordLog(str(path))
    log.write({"a": 1})
    assert path.read_text() == '{"a":1}\n'  # flushed per line
    path.rename(tmp_path / "r.jsonl.1")
    log.reopen()
    log.write({"b": 2})
    log.close()
    assert path.read_text() == '{"b":2}\n' and (tmp_path / "r.jsonl.1").read_text() == '{"a":1}\n'
