"""Helpers for the gateway tests: a test signature set and policy, and a gateway run in the lab.

The lab itself (namespaces, servers, clients) is ``tests/netlab.py``; this module adds what is
specific to the gateway: signatures that map the lab's documentation addresses to the operators
and to a CDN, policy directories with test provisions, starting/stopping ``classifier gateway``
inside the gateway namespace, reading its records, and checking that nothing of ours is left.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import netlab
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lab addresses -> the operator or CDN that "owns" them in the test signature set.
# (AS entry id in the shipped signatures, IPv4 prefix, IPv6 prefix)
TEST_PREFIXES = {
    "bytedance": ("AS396986", "198.51.100.0/28", "2001:db8:2::10/128"),  # the lab's "tiktok" server
    "tencent": ("AS45090", "198.51.100.16/28", "2001:db8:2::20/127"),  # "wechat" and "tencent"
    "akamai": ("AS20940", "203.0.113.80/28", "2001:db8:2::80/128"),  # the lab's shared CDN address
}
ROUTE_PROTOCOL = 241

#: A wrapper that runs a command as an ordinary user (uid/gid 65534, no groups) holding no capability
#: but CAP_DAC_READ_SEARCH, so it can still read the checkout wherever it is (a fresh clone in /root,
#: mode 0700). `unshare --user` fails with EPERM in a chroot or container; setpriv works everywhere.
UNPRIVILEGED = (
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+dac_read_search",
    "--ambient-caps=-all,+dac_read_search",
)
MANGLE_TABLES = ("ip mangle", "ip6 mangle")  # what iptables-nft creates for `iptables -t mangle`


def make_signatures(tmp: Path) -> Path:
    """A copy of the shipped signatures with the lab's addresses appended to operator/CDN prefix lists."""
    from classifier.signatures import Signatures, shipped_directory

    dest = tmp / "signatures"
    shutil.copytree(shipped_directory(), dest, ignore=shutil.ignore_patterns("__pycache__", "build"))
    sigs = Signatures.load(dest)
    by_id = {a.id: a for a in sigs.asns.values()}
    for asn_id, v4, v6 in TEST_PREFIXES.values():
        entry = by_id[asn_id]
        for rel, prefix in ((entry.ipv4, v4), (entry.ipv6, v6)):
            path = dest / rel
            text = path.read_text()
            path.write_text(
                text
                + ("" if text.endswith("\n") else "\n")
                + f"# test only: a documentation prefix of the gateway lab\n{prefix}\n"
            )
    Signatures.load(dest)  # still valid
    return dest


def instant(ts: float) -> str:
    """Epoch seconds as the policy files' UTC instant (whole seconds)."""
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_policy(tmp: Path, provisions: list[tuple[str, str, str, float]], name: str = "policy") -> Path:
    """A copy of the shipped policy plus test provisions (id, app, category, effective epoch)."""
    from classifier.policy import Policy
    from classifier.signatures import shipped_directory

    dest = tmp / name
    shutil.copytree(shipped_directory() / "policy", dest)
    lines = [
        "[[instrument]]",
        'id = "gateway-test-instrument"',
        'title = "Gateway test instrument"',
        'citation = "none: test data"',
        "issued = 2026-01-01",
        'source = "tests/gateway_helpers.py"',
        "date = 2026-01-01",
        "",
    ]
    for pid, app, category, effective in provisions:
        lines += [
            "[[provision]]",
            f'id = "{pid}"',
            'instrument = "gateway-test-instrument"',
            f'app = "{app}"',
            f'category = "{category}"',
            'summary = "test provision"',
            f'effective = "{instant(effective)}"',
            'clock_time = "test"',
            'reading = "test"',
            'source = "tests/gateway_helpers.py"',
            "date = 2026-01-01",
            "",
        ]
    (dest / "zz-gateway-test.toml").write_text("\n".join(lines))
    Policy.load(dest)
    return dest


class Gateway:
    """``classifier gateway`` running in the lab's gateway namespace."""

    def __init__(self, lab: netlab.Lab, tmp: Path, *args: str, log_name: str = "records.jsonl") -> None:
        self.lab = lab
        self.log = tmp / log_name
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.stderr_path = tmp / f"gateway-{os.getpid()}-{time.monotonic_ns()}.err"

    def start(self, ready: str = "running:", timeout: float = 30) -> Gateway:
        argv = [sys.executable, "-m", "classifier", "gateway", "--log", str(self.log), *self.args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.stderr_path, "wb") as err:
            self.proc = self.lab.popen("gateway", argv, stdout=err, stderr=err, env=env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.stderr()
            if ready in text:
                time.sleep(0.3)
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode} before it was ready:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"gateway not ready after {timeout} s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def send(self, sig: int) -> None:
        assert self.proc is not None
        # The gateway is the python process: the child of `ip netns exec` (which execs it).
        os.kill(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop with ``sig`` and return the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.send(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.lab.stop(self.proc)
                raise AssertionError(f"gateway did not stop within {timeout} s:\n{self.stderr()}") from None
        self.lab.stop(self.proc)  # already exited: only forgets it
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.lab.stop(self.proc)

    def records(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_records(self, pred, timeout: float = 20, what: str = "records") -> list[dict]:
        """Records matching ``pred`` once at least one is written (flows end after closed_tcp)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.records() if pred(r)]
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(
            f"no {what} after {timeout} s; records: "
            f"{[(r['hostname'], r['action']) for r in self.records()]}\n{self.stderr()}"
        )


def run_cli_in(
    lab: netlab.Lab, ns: str, *args: str, timeout: float = 60, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """``classifier ARGS`` inside a namespace (optionally under a wrapper like setpriv)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [*prefix, sys.executable, "-m", "classifier", *args]
    return lab.run(ns, argv, timeout=timeout, env=env)


Flow = tuple[str, str, int, str, int]  # proto, client, client port, server, server port
Counts = tuple[int, int, int, int]  # packets and bytes client to server, packets and bytes back


def wire_counts(pcap: Path) -> dict[Flow, Counts]:
    """TCP and UDP packets and IP bytes per flow in an Ethernet capture, as a record counts them;
    the client is the sender of a TCP flow's SYN, or of a UDP flow's first packet."""
    import socket
    from collections import Counter

    import dpkt

    packets: Counter = Counter()
    octets: Counter = Counter()
    clients: dict[tuple, tuple[str, int]] = {}
    with open(pcap, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP):
                fam, size = socket.AF_INET, ip.len
            elif isinstance(ip, dpkt.ip6.IP6):
                fam, size = socket.AF_INET6, 40 + ip.plen
            else:
                continue
            l4 = ip.data
            if not isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP):
                continue
            proto = "tcp" if isinstance(l4, dpkt.tcp.TCP) else "udp"
            src, dst = (socket.inet_ntop(fam, ip.src), l4.sport), (socket.inet_ntop(fam, ip.dst), l4.dport)
            ends = (proto, frozenset((src, dst)))
            if proto == "tcp":
                if l4.flags & dpkt.tcp.TH_SYN and not l4.flags & dpkt.tcp.TH_ACK:
                    clients[ends] = src
            else:
                clients.setdefault(ends, src)
            packets[(proto, src, dst)] += 1
            octets[(proto, src, dst)] += size
    out: dict[Flow, Counts] = {}
    for (proto, pair), client in clients.items():
        (server,) = pair - {client}
        up, down = (proto, client, server), (proto, server, client)
        out[(proto, *client, *server)] = (packets[up], octets[up], packets[down], octets[down])
    return out


def flow_of(record: dict) -> Flow:
    """A record's flow, as ``wire_counts`` keys it."""
    return (record["proto"], record["src"], record["sport"], record["dst"], record["dport"])


def scan_capture(lab: netlab.Lab, pcap: Path, sig_dir: Path, *args: str) -> dict[Flow, dict]:
    """``classifier scan`` of a capture with these signatures (one process), its records by flow;
    with ``--ja4s``, as the gateway always reads a decided TLS flow's ServerHello."""
    scan = run_cli_in(lab, "gateway", "scan", str(pcap), "-q", "--ja4s", "--signatures", str(sig_dir), *args)
    assert scan.returncode == 0, scan.stderr
    return {flow_of(r): r for r in map(json.loads, scan.stdout.splitlines())}


# What `classifier scan` of a capture taken on the gateway says of a flow exactly as the gateway
# did. Not: times, flow numbers, the file, the interface index, and end_reason (the scan's closed
# flows wait out closed_tcp in packet time, which the capture ends before: "end-of-input").
SAME_OFFLINE = ("proto", "src", "sport", "dst", "dport", "community_id", "app_proto", "hostname",
                "hostname_source", "sni", "alpn", "tls_versions", "ech", "app", "operator", "category",
                "categories", "confidence", "server_asn", "server_owner", "action", "view", "rule",
                "reason", "provisions", "evidence", "packets_c2s", "packets_s2c", "bytes_c2s",
                "bytes_s2c", "ja4", "ja4s")  # fmt: skip


def assert_same_offline(live: list[dict], offline: dict[Flow, dict]) -> None:
    """Each live record says what the offline scan's record of its flow says (``SAME_OFFLINE``)."""
    for r in live:
        o = offline.get(flow_of(r))
        differ = {k: (r[k], o[k]) for k in SAME_OFFLINE if r[k] != o[k]} if o is not None else None
        assert differ == {}, f"live {flow_of(r)}: " + (
            "no offline record" if o is None else f"(live, offline) {differ}"
        )


def counts_of(record: dict) -> Counts:
    return (record["packets_c2s"], record["bytes_c2s"], record["packets_s2c"], record["bytes_s2c"])


def our_objects(lab: netlab.Lab) -> list[str]:
    """Every table, chain, rule, set or route of ours in the gateway namespace (independent check)."""
    found = []
    ruleset = lab.run("gateway", ["nft", "list", "ruleset"]).stdout
    if re.search(r"\btable \w+ classifier_gw", ruleset):
        found.append("nft table classifier_gw")
    if "classifier_gw" in ruleset or "CLASSIFIER_GW" in ruleset:
        found.append("nft object tagged classifier_gw")
    for tool in ("iptables", "ip6tables"):
        for table in ("mangle", "filter"):
            out = lab.run("gateway", [tool, "-w", "-t", table, "-S"]).stdout
            if "CLASSIFIER_GW" in out or "classifier_gw" in out:
                found.append(f"{tool} -t {table}: {out.strip()}")
    for fam in ("-4", "-6"):
        out = lab.run("gateway", ["ip", fam, "route", "show", "table", "all", "proto", str(ROUTE_PROTOCOL)])
        if out.stdout.strip():
            found.append(f"routes: {out.stdout.strip()}")
    return found


def mangle_tables(lab: netlab.Lab) -> set[str]:
    """The nft tables ``ip mangle`` / ``ip6 mangle`` present in the gateway namespace."""
    listing = json.loads(lab.run("gateway", ["nft", "-j", "list", "tables"], check=True).stdout)
    present = {f"{o['table']['family']} {o['table']['name']}" for o in listing["nftables"] if "table" in o}
    return present & set(MANGLE_TABLES)


def drop_mangle_tables(lab: netlab.Lab) -> None:
    """Delete ``ip mangle`` and ``ip6 mangle`` in the gateway namespace (a test's own set-up)."""
    for table in mangle_tables(lab):
        lab.run("gateway", ["nft", "delete", "table", *table.split()], check=True)


@contextlib.contextmanager
def running(lab: netlab.Lab, tmp: Path, *args: str, **kwargs):
    """A gateway for the duration of a block; stopped (SIGTERM) and checked clean afterwards."""
    gw = Gateway(lab, tmp, *args, **kwargs).start()
    try:
        yield gw
    finally:
        status = gw.stop()
        left = our_objects(lab)
        assert status == 0, f"gateway exited {status}:\n{gw.stderr()}"
        assert not left, f"left behind after exit: {left}"


def _slow_tls_get(addr: str, sni: str, pause: float, timeout: float) -> bool:
    """Runs inside the client namespace: TLS handshake, a pause, then one request; True if the
    response came back. The pause is what a reactive gateway needs: it acts after the packet that
    decided the flow has passed, so only what the flow sends later can be stopped."""
    import socket
    import ssl
    import time

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((addr, 443), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            time.sleep(pause)
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            data = tls.recv(4096)
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def tls_get_after_pause(lab: netlab.Lab, addr: str, sni: str, pause: float = 1.0, timeout: float = 5) -> bool:
    """A TLS client that waits ``pause`` seconds between the handshake and its request."""
    return lab.ns_exec("client", _slow_tls_get, addr, sni, pause, timeout, timeout=timeout + pause + 10)


# -- fixtures the gateway end-to-end test modules share (each binds them to its own names) --------


@pytest.fixture(scope="module")
def lab():
    """One namespace lab per test module, with its servers running."""
    netlab.require_lab()
    with netlab.Lab() as lab:
        lab.start_all()
        yield lab


@pytest.fixture(scope="module")
def sig_dir(tmp_path_factory):
    return make_signatures(tmp_path_factory.mktemp("gateway-sigs"))


@pytest.fixture(autouse=True)
def clean_gateway(request):
    """No leftovers before a test; after it, remove whatever a failed test left (and say so)."""
    if "lab" not in request.fixturenames:
        yield
        return
    lab = request.getfixturevalue("lab")
    assert not our_objects(lab), "a previous test left objects behind"
    before = lab.running()
    yield
    # A failed test's gateway and traffic are stopped first (SIGTERM: the gateway removes its own
    # objects), so the next test starts clean; a gateway left running is a defect even so.
    gateways = [p for p in lab.stop_started_after(before) if "gateway" in map(str, p.args)]
    left = our_objects(lab)
    if left:
        run_cli_in(lab, "gateway", "gateway", "--cleanup")
        pytest.fail(f"objects left behind: {left}")
    if gateways:
        pytest.fail(f"{len(gateways)} gateway process(es) left running (stopped now)")
