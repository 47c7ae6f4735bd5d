"""``classifier signatures export-as-path``: AS-path filters checked by the routers' own parsers.

FRR's ``vtysh -C -f`` and BIRD's ``bird -p -c`` parse a configuration without starting a daemon;
CI installs both (tools/debian-packages.txt) and fails here if they are missing.
"""

from __future__ import annotations

import re
import subprocess

from conftest import need_program, run_cli


def export(*args: str, status: int = 0) -> str:
    return run_cli("signatures", "export-as-path", *args, check_status=status).stdout.decode()


def tool(name: str) -> str:
    return need_program(name, "CI must check the exported syntax with it")


def operator_asns() -> dict[str, list[int]]:
    from classifier.signatures import Signatures

    out: dict[str, list[int]] = {}
    for asn, op in Signatures.load().operator_by_asn.items():
        out.setdefault(op, []).append(asn)
    return {op: sorted(a) for op, a in out.items()}


def test_frr_filters_and_policy_pass_vtysh(tmp_path):
    vtysh = tool("vtysh")
    text = export(
        "--format", "frr", "--neighbour", "192.0.2.1", "--neighbour", "2001:db8::1", "--local-asn", "64500"
    )
    for op, asns in operator_asns().items():
        listed = re.findall(rf"bgp as-path access-list {op.upper()}-ASNS seq \d+ permit _(\d+)_", text)
        assert sorted(map(int, listed)) == asns
    assert "route-map CLASSIFIER-REJECT-OPERATORS deny 10\n match as-path BYTEDANCE-ASNS" in text
    assert (
        " address-family ipv4 unicast\n  neighbor 192.0.2.1 route-map CLASSIFIER-REJECT-OPERATORS in" in text
    )
    assert (
        " address-family ipv6 unicast\n  neighbor 2001:db8::1 route-map CLASSIFIER-REJECT-OPERATORS in"
        in text
    )
    # dated by the policy: WeChat transit-peering blocked between the effective date and the rescission
    assert "wechat: blocked from 2020-09-21T04:00:00Z until 2021-06-16T04:00:00Z (announced view)" in text
    assert "tiktok: the policy never blocks transit-peering in the announced view" in text
    conf = tmp_path / "frr.conf"
    conf.write_text(text)
    proc = subprocess.run([vtysh, "-C", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(text.replace("permit _45090_", "permits _45090_"))
    assert subprocess.run([vtysh, "-C", "-f", str(broken)], capture_output=True, timeout=60).returncode != 0


def test_bird_filters_and_policy_pass_bird(tmp_path):
    bird = tool("bird")
    text = export("--format", "bird", "--neighbour", "192.0.2.1", "--view", "in-force")
    assert "define TENCENT_ASNS = [ 45090," in text
    assert "bgp_path ~ [= * 396986 * =]" in text
    assert "if (from = 192.0.2.1) && path_through_tencent_asns() then reject;" in text
    # in force, the WeChat item was enjoined before it took effect: nothing to date
    assert "wechat: the policy never blocks transit-peering in the in-force view" in text
    conf = tmp_path / "bird.conf"
    conf.write_text("router id 192.0.2.1;\nprotocol device {}\n" + text)
    proc = subprocess.run([bird, "-p", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conf.write_text("router id 192.0.2.1;\nprotocol device {}\n" + text.replace("* =]", "*]", 1))
    assert subprocess.run([bird, "-p", "-c", str(conf)], capture_output=True, timeout=60).returncode != 0


def test_junos_and_iosxr_structure():
    junos = export("--format", "junos", "--operator", "tencent")
    assert re.search(
        r'policy-options \{\nreplace:\n as-path-group TENCENT-ASNS \{\n  as-path a0 "\.\* 45090 \.\*";', junos
    )
    assert junos.count("{") == junos.count("}") and "BYTEDANCE" not in junos
    iosxr = export("--format", "iosxr", "--operator", "bytedance")
    block = iosxr.split("as-path-set BYTEDANCE-ASNS\n", 2)[-1].split("end-set")[0]
    entries = block.strip().split(",\n")
    assert [int(e.strip()[len("ios-regex '_") : -2]) for e in entries] == operator_asns()["bytedance"]


def test_usage_errors():
    for args, message in (
        (("--format", "frr", "--neighbour", "192.0.2.1"), "needs --local-asn"),
        (("--format", "junos", "--neighbour", "192.0.2.1"), "written for frr and bird, not junos"),
        (("--format", "bird", "--neighbour", "gw1"), "'gw1': not an IP address"),
        (("--format", "bird", "--operator", "nobody"), "--operator nobody: unknown"),
    ):
        proc = run_cli("signatures", "export-as-path", *args, check_status=2)
        assert message in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()
