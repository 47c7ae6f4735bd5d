"""Self-test of tests/netlab.py: every server answers every client through a plain-forwarding gateway,
and nothing (namespace, veth, process, temp file) is left behind, also after a failure or a crash.

Needs root and network namespaces: skipped without them outside CI, failed in CI (netlab.require_lab).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from pathlib import Path

import dpkt
import netlab
import pytest

pytestmark = pytest.mark.root

CASES = [  # (name, role) served by the lab; every name has A and AAAA records
    ("www.tiktok.com", "tiktok"),
    ("api16-normal-c-useast1a.tiktokv.com", "tiktok"),
    ("web.wechat.com", "wechat"),
    ("www.qq.com", "tencent"),
    ("faketiktok.com", "lookalike"),
    ("www.google.com", "unrelated"),
]


@pytest.fixture(scope="module")
def lab():
    netlab.require_lab()
    with netlab.Lab() as lab:
        lab.start_all()
        yield lab


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def processes_mentioning(text: str) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text.encode() in (p / "cmdline").read_bytes():
                    found.append(int(p.name))
            except OSError:
                continue
    return found


def udp_datagrams(path: Path) -> list[tuple[str, int, int]]:
    """(source address, source port, UDP payload length) of every datagram in a capture."""
    out = []
    with path.open("rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.udp.UDP):
                out.append((str(ipaddress.ip_address(ip.src)), ip.data.sport, len(ip.data.data)))
    return out


# --- servers answer clients through the gateway ---------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize(("name", "role"), CASES)
def test_tls_server_names_the_sni(lab, name, role, family):
    res = lab.tls_get("client", lab.addr(role, family), name)
    assert res.ok, res
    assert f"sni={name}\n" in res.body and f"server={lab.addr(role, family)}\n" in res.body


def test_tls_without_sni_and_with_verification(lab):
    res = lab.tls_get("client", lab.addr("cdn"), None)
    assert res.ok and "sni=None" in res.body
    verified = lab.tls_get("client", lab.addr("cdn"), "v16-webapp.tiktok.com", verify=True)
    assert verified.ok, verified  # the lab certificate carries every test name


@pytest.mark.parametrize("family", [4, 6])
def test_http_server_echoes_host(lab, family):
    res = lab.http_get("client", lab.addr("wechat", family), "short.weixin.qq.com")
    assert res.ok and "host=short.weixin.qq.com\n" in res.body, res


@pytest.mark.parametrize("resolver", [netlab.RESOLVER4, netlab.RESOLVER6])
def test_unbound_serves_the_test_names(lab, resolver):
    for name, role in CASES:
        assert lab.dig("client", resolver, name, "A").detail["addresses"] == [lab.addr(role, 4)]
        assert lab.dig("client", resolver, name, "AAAA").detail["addresses"] == [lab.addr(role, 6)]
    chain = lab.dig("client", resolver, "v16-webapp.tiktok.com")
    assert chain.detail["answers"] == [
        ("v16-webapp.tiktok.com", "CNAME", "v16-webapp.tiktok.com.edgesuite.net"),
        ("v16-webapp.tiktok.com.edgesuite.net", "A", lab.addr("cdn")),
    ]
    # an unrelated name on the very same CDN address
    assert lab.dig("client", resolver, "static.example.com").detail["addresses"] == [lab.addr("cdn")]
    assert lab.dig("client", resolver, "no-such-name.example").status == "NXDOMAIN"
    assert lab.dig("client", resolver, "www.tiktok.com", tcp=True).ok


def test_unbound_loads_an_rpz(lab, tmp_path):
    rpz = tmp_path / "block.rpz"
    rpz.write_text(
        "$TTL 60\n$ORIGIN rpz.test.\n"
        "@ IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n@ IN NS localhost.\n"
        "tiktok.com CNAME .\n*.tiktok.com CNAME .\n"
        "web.wechat.com A 192.0.2.99\n"
    )
    try:
        lab.start_unbound(rpz=rpz)
        assert lab.dig("client", netlab.RESOLVER4, "www.tiktok.com").status == "NXDOMAIN"
        assert lab.dig("client", netlab.RESOLVER4, "v16-webapp.tiktok.com").status == "NXDOMAIN"
        assert lab.dig("client", netlab.RESOLVER4, "web.wechat.com").detail["addresses"] == ["192.0.2.99"]
        for name, role in [
            ("faketiktok.com", "lookalike"),
            ("www.qq.com", "tencent"),
            ("www.google.com", "unrelated"),
        ]:
            assert lab.dig("client", netlab.RESOLVER4, name).detail["addresses"] == [lab.addr(role)]
        assert "rpz: applied" in lab.log("unbound")
    finally:
        lab.start_unbound()
    assert lab.dig("client", netlab.RESOLVER4, "www.tiktok.com").detail["addresses"] == [lab.addr("tiktok")]


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("version", ["1", "2", "draft-29"])
def test_quic_server_answers_each_version(lab, version, family):
    res = lab.quic_get("client", lab.addr("tiktok", family), "www.tiktok.com", version=version)
    assert res.ok, res
    assert res.detail["version"] == version and not res.detail["retry"]
    assert f"sni=www.tiktok.com\nversion={version}\nserver={lab.addr('tiktok', family)}\n" in res.body


def test_quic_big_client_hello_spans_two_initials(lab, tmp_path):
    pcap = tmp_path / "big.pcap"
    with lab.capture("gateway", lab.gw_client_if, pcap, "udp port 443"):
        res = lab.quic_get(
            "client", lab.addr("wechat"), "web.wechat.com", version="2", sport=40443, big_client_hello=True
        )
    assert res.ok, res
    grams = udp_datagrams(pcap)
    client = [n for src, _, n in grams if src == netlab.CLIENT4]
    # the server's first flight (ServerHello...) needs the whole ClientHello: two full client
    # Initial datagrams come before it (the server may ACK the first one in between)
    server_hello = next(i for i, (src, _, n) in enumerate(grams) if src != netlab.CLIENT4 and n > 300)
    assert client[0] >= 1200 and client[1] >= 1200
    assert sum(1 for src, _, _ in grams[:server_hello] if src == netlab.CLIENT4) >= 2
    assert all(port == 40443 for src, port, _ in grams if src == netlab.CLIENT4)


def test_quic_retry_and_version_negotiation(lab, tmp_path):
    try:
        lab.start_quic(retry=True)
        for version in ("1", "2", "draft-29"):
            res = lab.quic_get("client", lab.addr("tencent"), "www.qq.com", version=version)
            assert res.ok and res.detail["retry"] and res.detail["version"] == version, res
        lab.start_quic(versions=("1",))
        res = lab.quic_get("client", lab.addr("tiktok"), "www.tiktok.com", version="2,1")
        assert res.ok and res.detail["version"] == "1", res  # after Version Negotiation
        assert not lab.quic_get("client", lab.addr("tiktok"), "www.tiktok.com", version="2", timeout=2).ok
    finally:
        lab.start_quic()


def test_curl_and_openssl_clients(lab):
    tiktok = lab.addr("tiktok")
    res = lab.curl("client", "https://www.tiktok.com/", "--resolve", f"www.tiktok.com:443:{tiktok}")
    assert res.ok and "sni=www.tiktok.com" in res.body, res
    res = lab.curl("client", f"http://[{lab.addr('cdn', 6)}]/", "-H", "Host: static.example.com")
    assert res.ok and "host=static.example.com" in res.body, res
    res = lab.s_client("client", lab.addr("wechat", 6), "web.wechat.com")
    assert res.ok and "sni=web.wechat.com" in res.body, res


def test_traffic_crosses_the_gateway(lab, tmp_path):
    pcap = tmp_path / "gw.pcap"
    with lab.capture("gateway", lab.gw_server_if, pcap, "tcp port 443") as info:
        assert lab.tls_get("client", lab.addr("cdn"), "v16-webapp.tiktok.com").ok
    assert info["captured"] and info["captured"] >= 6
    routes = lab.run("client", ["ip", "route"], check=True).stdout
    assert f"default via {netlab.GW_CLIENT4}" in routes
    lab.run("gateway", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"], check=True)
    try:
        assert not lab.tls_get("client", lab.addr("cdn"), "v16-webapp.tiktok.com", timeout=1.5).ok
    finally:
        lab.run("gateway", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True)
    assert lab.tls_get("client", lab.addr("cdn"), "v16-webapp.tiktok.com").ok


def test_ns_exec_runs_a_callable_inside(lab):
    def interfaces() -> list[str]:
        return sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:])

    assert lab.ns_exec("client", interfaces) == ["cli0", "lo"]
    assert lab.ns_exec("gateway", interfaces) == ["gw-cli", "gw-srv", "lo"]
    with pytest.raises(netlab.LabError, match="ZeroDivisionError"):
        lab.ns_exec("client", divmod, 1, 0)


# --- clean-up -------------------------------------------------------------------------------------


def test_direct_topology_and_teardown_leave_nothing():
    netlab.require_lab()
    with netlab.Lab("direct") as lab:
        lab.start_all()
        assert "gateway" not in lab.namespaces
        assert lab.tls_get("client", lab.addr("tiktok"), "www.tiktok.com").ok
        assert lab.quic_get("client", lab.addr("tiktok", 6), "www.tiktok.com", version="draft-29").ok
        names, directory = list(lab.namespaces.values()), lab.dir
        pids = [p.pid for p in lab._procs]
        capture = lab.capture("client", lab.client_if, directory / "c.pcap")
        capture.__enter__()  # a capture still running at exit is stopped too
        pids.append(lab._procs[-1].pid)
    time.sleep(0.1)
    assert not set(names) & set(netlab.lab_namespaces())
    assert not [p for p in pids if alive(p)]
    assert not processes_mentioning(str(directory))
    assert not directory.exists()
    assert not {"cli0", "srv0", "gw-cli", "gw-srv"} & root_links()


def test_teardown_after_a_failing_body():
    netlab.require_lab()
    with pytest.raises(RuntimeError, match="boom"), netlab.Lab() as lab:
        lab.start_tls()
        lab.popen("client", ["sleep", "300"])
        names, pids = list(lab.namespaces.values()), [p.pid for p in lab._procs]
        raise RuntimeError("boom")
    assert not set(names) & set(netlab.lab_namespaces())
    assert not [p for p in pids if alive(p)]


def test_sweep_removes_only_stale_namespaces():
    netlab.require_lab()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = f"clf-{dead.pid}-0-client", f"clf-{os.getpid()}-9999-client"
    for ns in (stale, live):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "300"], start_new_session=True)
    try:
        time.sleep(0.2)
        removed = netlab.sweep_stale()
        assert stale in removed and live not in removed
        assert orphan.wait(5) is not None  # the crashed run's process is gone too
        assert stale not in netlab.lab_namespaces() and live in netlab.lab_namespaces()
    finally:
        orphan.kill()
        for ns in (stale, live):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
