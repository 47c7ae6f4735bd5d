"""Packets/s and added latency through the gateway namespace: plain forwarding vs inline mode.

Not a test: it prints figures, each beside its target. Needs root (network namespaces). One run
measures, between the lab's client and servers namespaces (tests/netlab.py):

* latency: plain forwarding (no gateway process, no rules), ``classifier gateway --mode inline
  --enforce`` with offload (the default), and the same with ``--no-offload`` (every packet of every
  flow through the NFQUEUE and Python): HTTP request latency on a new TCP connection each time
  (connect + request + response: the first packets of a flow are the ones the gateway inspects),
  UDP echo round trip on one long flow and on a new flow each time, and UDP throughput (a Python
  sender blasting datagrams at a sink; packets/s received);
* packets/s through inline mode at 1 and N queues (``--no-offload``: every packet through Python;
  the sender spreads its datagrams over 32 server addresses, so the kernel's address hash spreads
  them over the queues), with the gateway's CPU time per packet;
* new flows/s decided at 1 and N queues (one datagram per flow, a new source port each);
* a sustained 10k packets/s UDP flow (60,000 packets): loss at the receiver without the gateway and
  through it at 1 and N queues, and the packets that still went through Python after the flow was
  decided (offload promptness).

    sudo .venv/bin/python benchmarks/gateway_latency.py [--queues 2] [--requests 300] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import netlab  # noqa: E402

SERVER = netlab.Lab.addr("unrelated")  # a neutral address: nothing is blocked, every flow is decided
ECHO_PORT, SINK_PORT = 7007, 7009
# extra documentation addresses of the servers namespace: many address pairs for the queue hash
SPREAD = [f"203.0.113.{n}" for n in range(100, 132)]
METRICS = "127.0.0.1:9597"
OFFLOAD_AFTER = 16  # the default [inline] offload_after
QUEUE_MAXLEN = 4096  # the default [inline] queue_maxlen

# Targets. Loss: what the network loses without the gateway. Python packets after the decision:
# offload_after plus one set-element batch (FLUSH_AFTER_PACKETS), the bound the gateway keeps when
# its queue holds no backlog. Scaling: N workers on N otherwise idle cores.
SCALE_TARGET = 0.8  # N queues: packets/s at least 0.8 x N x one queue
NEW_FLOWS_TARGET = 2000  # new flows/s decided with one queue

SERVERS_SCRIPT = f"""
import socket, threading, time, json
def echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", {ECHO_PORT}))
    while True:
        data, addr = s.recvfrom(2048); s.sendto(data, addr)
def sink():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", {SINK_PORT}))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    count = 0; first = last = None
    while True:
        data, addr = s.recvfrom(2048)
        if data == b"report":
            s.sendto(json.dumps({{"count": count, "span": (last - first) if first else 0}}).encode(), addr)
            count = 0; first = last = None
            continue
        now = time.monotonic(); count += 1; first = first or now; last = now
threading.Thread(target=echo, daemon=True).start()
threading.Thread(target=sink, daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
"""

TRAFFIC_SCRIPT = """
import json, socket, sys, time
mode, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
addrs = sys.argv[4].split(",")
out = {}
payload = b"y" * 100
if mode == "spread":  # one flow per address, round robin, as fast as possible
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in addrs]
    sent = 0; end = time.monotonic() + seconds
    while time.monotonic() < end:
        for s, a in zip(socks, addrs):
            try:
                s.sendto(payload, (a, port)); sent += 1
            except OSError:
                pass
    out["sent"] = sent
elif mode in ("newflows", "background"):  # one datagram per flow, a new source port each
    sent = 0; end = time.monotonic() + seconds; i = 0
    while time.monotonic() < end:
        for _ in range(64):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.sendto(payload, (addrs[i % len(addrs)], port)); sent += 1
                except OSError:
                    pass
            i += 1
    out["sent"] = sent
elif mode == "paced":  # one flow at `pps` packets/s until `count` packets
    pps, count = float(sys.argv[5]), int(sys.argv[6])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sent = 0; start = time.monotonic()
    while sent < count:
        due = min(count, int((time.monotonic() - start) * pps) + 1)
        while sent < due:
            try:
                s.sendto(payload, (addrs[0], port)); sent += 1
            except OSError:
                time.sleep(0.0001)
        time.sleep(0.0002)
    out["sent"] = sent; out["seconds"] = time.monotonic() - start; out["sport"] = s.getsockname()[1]
if mode in ("paced", "background"):  # the caller reads the gateway's counters, then asks for the report
    print(json.dumps(out)); sys.exit(0)
if mode != "report":
    time.sleep(0.5)
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.settimeout(3)
r.sendto(b"report", (addrs[0], port)); rep = json.loads(r.recvfrom(2048)[0])
out["received"] = rep["count"]
print(json.dumps(out))
"""

CLIENT_SCRIPT = """
import json, socket, statistics, sys, time
server = sys.argv[1]
echo_port, sink_port, http_port, requests = map(int, sys.argv[2:6])
seconds = float(sys.argv[6])
out = {}
# HTTP on a new TCP connection each time
lat = []
for _ in range(requests):
    t = time.perf_counter()
    with socket.create_connection((server, http_port), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.1\\r\\nHost: bench.example\\r\\nConnection: close\\r\\n\\r\\n")
        while c.recv(65536):
            pass
    lat.append((time.perf_counter() - t) * 1000)
out["http_ms"] = lat
# UDP echo on one flow
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
rtt = []
for _ in range(requests * 3):
    t = time.perf_counter(); s.sendto(b"x" * 64, (server, echo_port)); s.recvfrom(2048)
    rtt.append((time.perf_counter() - t) * 1000)
out["udp_one_flow_ms"] = rtt[5:]
# UDP echo, a new flow (new source port) each time
rtt = []
for _ in range(requests):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as n:
        n.settimeout(2); t = time.perf_counter(); n.sendto(b"x" * 64, (server, echo_port)); n.recvfrom(2048)
        rtt.append((time.perf_counter() - t) * 1000)
out["udp_new_flow_ms"] = rtt
# UDP throughput: blast for `seconds`, then ask the sink how many arrived
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"y" * 100; sent = 0; end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(256):
        try:
            b.sendto(payload, (server, sink_port)); sent += 1
        except OSError:
            pass
time.sleep(0.5)
b.settimeout(3); b.sendto(b"report", (server, sink_port)); rep = json.loads(b.recvfrom(2048)[0])
out["udp_sent"] = sent; out["udp_received"] = rep["count"]; out["udp_pps"] = rep["count"] / seconds
print(json.dumps(out))
"""


def measure(lab: netlab.Lab, requests: int, seconds: float) -> dict:
    proc = lab.run(
        "client",
        [sys.executable, "-c", CLIENT_SCRIPT, SERVER, ECHO_PORT, SINK_PORT, 80, requests, seconds],
        timeout=300,
    )
    if proc.returncode != 0:
        raise SystemExit(f"client failed: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_gateway(lab: netlab.Lab, tmp: Path, *extra: str):
    log = tmp / f"records-{time.monotonic_ns()}.jsonl"  # one log per gateway: records are found by port
    argv = [
        sys.executable,
        "-m",
        "classifier",
        "gateway",
        "--mode",
        "inline",
        "--enforce",
        "-i",
        "gw-cli",
        "-i",
        "gw-srv",
        "--log",
        str(log),
        "--metrics",
        METRICS,
        "--idle-udp",
        "5",
        "--sync-interval",
        "1",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    err = tmp / f"gateway-{time.monotonic_ns()}.err"
    with open(err, "wb") as fh:
        proc = lab.popen("gateway", argv, stdout=fh, stderr=fh, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while "running:" not in err.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"gateway did not start:\n{err.read_text()}")
        time.sleep(0.05)
    time.sleep(0.5)
    return proc


def traffic(lab: netlab.Lab, mode: str, seconds: float, addrs: list[str], *extra: object) -> dict:
    proc = lab.run("client", traffic_argv(mode, SINK_PORT, seconds, addrs, *extra), timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"traffic ({mode}) failed: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def traffic_argv(mode: str, port: int, seconds: float, addrs: list[str], *extra: object) -> list:
    return [sys.executable, "-c", TRAFFIC_SCRIPT, mode, port, seconds, ",".join(addrs), *extra]


def element_packets(lab: netlab.Lab, sport: int) -> int:
    """Packets the kernel counted on the allow-set elements of our sustained flow (both directions)."""
    out = lab.run("gateway", ["nft", "-j", "list", "set", "inet", "classifier_gw", "allow4"]).stdout
    total = 0
    for obj in json.loads(out or "{}").get("nftables", []):
        for elem in obj.get("set", {}).get("elem", []) or []:
            inner = elem.get("elem", {}) if isinstance(elem, dict) else {}
            key = inner.get("val", {}).get("concat", [])
            if len(key) == 5 and sport in (key[2], key[4]) and SINK_PORT in (key[2], key[4]):
                total += inner.get("counter", {}).get("packets", 0)
    return total


def flow_record(gw: subprocess.Popen, sport: int, timeout: float = 30) -> dict:
    """The record of our sustained flow (written when it ends: idle_udp after its last packet)."""
    deadline = time.monotonic() + timeout
    log = Path(gw.args[gw.args.index("--log") + 1])  # this gateway's own log
    while time.monotonic() < deadline:
        if log.exists():
            for line in reversed(log.read_text().splitlines()):
                if f'"sport":{sport},' not in line:
                    continue
                r = json.loads(line)
                if r["proto"] == "udp" and r["sport"] == sport and r["dport"] == SINK_PORT:
                    return r
        time.sleep(0.2)
    raise SystemExit(f"no record of the sustained flow (source port {sport}) after {timeout:g} s")


def scrape(lab: netlab.Lab) -> dict[str, float]:
    """The gateway's Prometheus samples: 'name{labels}' -> value."""
    text = lab.run("gateway", ["curl", "-s", "--max-time", "3", f"http://{METRICS}/metrics"]).stdout
    out = {}
    for line in text.splitlines():
        m = re.match(r"(classifier_gateway_\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m[1] + (m[2] or "")] = float(m[3])
    return out


def queue_packets(sample: dict[str, float]) -> dict[str, float]:
    pattern = re.compile(r'classifier_gateway_queue_packets_total\{queue="(\d+)"\}')
    return {m[1]: v for k, v in sample.items() if (m := pattern.match(k))}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a gateway: the process and its live children (queue workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            pids += [int(p) for p in fh.read().split()]
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def measure_queues(lab: netlab.Lab, tmp: Path, queues: int, seconds: float) -> dict:
    """Packets/s through Python (no offload), then new flows/s, on one gateway with ``queues``."""
    gw = start_gateway(lab, tmp, "--no-offload", "--queues", str(queues))
    try:
        before, cpu0 = scrape(lab), cpu_seconds(gw.pid)
        spread = traffic(lab, "spread", seconds, SPREAD)
        after, cpu1 = scrape(lab), cpu_seconds(gw.pid)
        key = 'classifier_gateway_packets_total{mode="inline"}'
        through = after.get(key, 0) - before.get(key, 0)
        per_q = {q: n - queue_packets(before).get(q, 0) for q, n in queue_packets(after).items()}
        flows_key = 'classifier_gateway_flows_total{mode="inline"}'
        f0 = scrape(lab).get(flows_key, 0)
        newflows = traffic(lab, "newflows", seconds, SPREAD)
        f1 = scrape(lab).get(flows_key, 0)
    finally:
        lab.stop(gw)
    return {
        "queues": queues,
        "pps": through / seconds,
        "cpu_us": (cpu1 - cpu0) / max(1, through) * 1e6,
        "offered": spread["sent"] / seconds,
        "per_queue": per_q,
        "flows": (f1 - f0) / seconds,
        "flows_offered": newflows["sent"] / seconds,
    }


def measure_sustained(
    lab: netlab.Lab, tmp: Path, queues: int | None, pps: float, count: int, busy: bool = False
) -> dict:
    """One paced UDP flow; with a gateway (``queues``), the packets of it that went through Python
    after its decision: its record's packets minus what the kernel counted on its set elements,
    minus the deciding packet. ``busy``: new flows as fast as the client can make them, to another
    port, all along, so the gateway's read loop never drains."""
    gw = start_gateway(lab, tmp, "--queues", str(queues)) if queues else None
    bg = None
    try:
        if busy:
            bg = lab.popen(
                "client",
                traffic_argv("background", 9, count / pps + 1, SPREAD),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
        run = traffic(lab, "paced", 0, [SERVER], pps, count)
        kernel = element_packets(lab, run["sport"]) if gw else 0
        if bg is not None:
            bg.wait(60)
        run["received"] = traffic(lab, "report", 0, [SERVER])["received"]
        rec = flow_record(gw, run["sport"]) if gw else None
    finally:
        if bg is not None:
            lab.stop(bg)
        if gw is not None:
            lab.stop(gw)
    python = rec["packets_c2s"] + rec["packets_s2c"] - kernel - 1 if rec else None
    setup = "plain forwarding"
    if queues:
        setup = f"inline, {queues} queue{'s' if queues > 1 else ''}{', busy' if busy else ''}"
    return {
        "setup": setup,
        "sent": run["sent"],
        "received": run["received"],
        "rate": run["sent"] / run["seconds"],
        "loss": 1 - run["received"] / max(1, run["sent"]),
        "python": python,
    }


def worst(runs: list[dict]) -> dict:
    """Repeated sustained-flow runs: the worst loss and Python count, with the median and all counts."""
    row = max(runs, key=lambda r: (r["loss"], r["python"] or 0))
    row = {**row, "loss": max(r["loss"] for r in runs), "runs": len(runs)}
    if row["python"] is not None:
        counts = sorted(r["python"] for r in runs)
        row.update(python=counts[-1], python_median=statistics.median(counts), python_all=counts)
    return row


def summary(name: str, m: dict) -> dict:
    def med(key: str) -> float:
        return statistics.median(m[key])

    def p95(key: str) -> float:
        return statistics.quantiles(m[key], n=20)[18]

    return {
        "setup": name,
        "http_med": med("http_ms"),
        "http_p95": p95("http_ms"),
        "udp1_med": med("udp_one_flow_ms"),
        "udpnew_med": med("udp_new_flow_ms"),
        "udpnew_p95": p95("udp_new_flow_ms"),
        "pps": m["udp_pps"],
        "loss": 1 - m["udp_received"] / max(1, m["udp_sent"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="requests per latency measurement")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each UDP blast")
    ap.add_argument("--queues", type=int, default=2, help="N of the multi-queue figures (default 2)")
    ap.add_argument("--flow-pps", type=float, default=10_000, help="rate of the sustained flow")
    ap.add_argument("--flow-packets", type=int, default=60_000, help="length of the sustained flow")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the sustained flow per setup (default 3)")
    ap.add_argument(
        "--only",
        choices=("latency", "queues", "sustained"),
        action="append",
        help="run only these parts (repeatable; default all)",
    )
    args = ap.parse_args()
    parts = set(args.only or ("latency", "queues", "sustained"))
    why = netlab.lab_unavailable()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    from classifier.gateway.inline import FLUSH_AFTER_PACKETS

    rows, qrows, srows = [], [], []
    records = 0
    with netlab.Lab() as lab, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        lab.start_http()
        for addr in SPREAD:
            lab.run("servers", ["ip", "addr", "add", f"{addr}/24", "dev", "srv0"], check=True)
        bench = lab.popen("servers", [sys.executable, "-c", SERVERS_SCRIPT], log="bench.log")
        deadline = time.monotonic() + 20
        while "READY" not in (lab.dir / "bench.log").read_text():
            if bench.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the benchmark's UDP servers did not start")
            time.sleep(0.05)
        if "latency" in parts:
            rows.append(summary("plain forwarding", measure(lab, args.requests, args.seconds)))
            for label, extra in (("inline, offload", ()), ("inline, no offload", ("--no-offload",))):
                gw = start_gateway(lab, tmp, *extra)
                try:
                    rows.append(summary(label, measure(lab, args.requests, args.seconds)))
                finally:
                    lab.stop(gw)
        if "queues" in parts:
            for queues in sorted({1, args.queues}):
                qrows.append(measure_queues(lab, tmp, queues, args.seconds))
        if "sustained" in parts:
            for queues, busy in (
                (None, False),
                (1, False),
                (args.queues, False),
                (1, True),
                (args.queues, True),
            ):
                runs = [
                    measure_sustained(lab, tmp, queues, args.flow_pps, args.flow_packets, busy)
                    for _ in range(args.repeat)
                ]
                srows.append(worst(runs))
        records = sum(len(log.read_text().splitlines()) for log in tmp.glob("records-*.jsonl"))
    print(
        f"gateway benchmark: {os.cpu_count()} CPUs, load average before the run "
        f"{os.getloadavg()[0]:.1f}, {records} flow records written"
    )
    if rows:
        base = rows[0]
        print(f"\nlatency: {args.requests} requests per figure, {args.seconds:g} s UDP blast")
        head = (
            f"{'setup':<20} {'HTTP new conn ms':>17} {'p95':>7} {'UDP 1 flow ms':>14} "
            f"{'UDP new flow ms':>16} {'p95':>7} {'UDP pkts/s':>11} {'loss':>6}"
        )
        print(head)
        print("-" * len(head))
        for r in rows:
            print(
                f"{r['setup']:<20} {r['http_med']:>17.3f} {r['http_p95']:>7.3f} {r['udp1_med']:>14.3f} "
                f"{r['udpnew_med']:>16.3f} {r['udpnew_p95']:>7.3f} {r['pps']:>11,.0f} {r['loss']:>6.1%}"
            )
        print("added latency (median) vs plain forwarding:")
        for r in rows[1:]:
            print(
                f"  {r['setup']:<18} HTTP new connection {r['http_med'] - base['http_med']:+.3f} ms, "
                f"UDP one flow {r['udp1_med'] - base['udp1_med']:+.3f} ms, "
                f"UDP new flow {r['udpnew_med'] - base['udpnew_med']:+.3f} ms, "
                f"UDP throughput {r['pps'] / base['pps']:.0%} of plain"
            )
    if qrows:
        one = qrows[0]
        print(
            f"\ninline, --no-offload: every packet through Python; {len(SPREAD)} UDP flows on "
            f"{len(SPREAD)} server addresses for {args.seconds:g} s"
        )
        head = (
            f"{'queues':>6} {'pkts/s via Python':>18} {'CPU us/pkt':>11} {'offered pkts/s':>15} "
            f"{'new flows/s':>12} {'offered':>9}  per queue"
        )
        print(head)
        print("-" * len(head))
        for r in qrows:
            per = ", ".join(f"{q}: {n:,.0f}" for q, n in sorted(r["per_queue"].items()))
            print(
                f"{r['queues']:>6} {r['pps']:>18,.0f} {r['cpu_us']:>11.1f} {r['offered']:>15,.0f} "
                f"{r['flows']:>12,.0f} {r['flows_offered']:>9,.0f}  {per}"
            )
        for r in qrows[1:]:
            want = SCALE_TARGET * r["queues"]
            print(
                f"  {r['queues']} queues: {r['pps'] / one['pps']:.2f} x one queue (target >= {want:.1f} x, "
                f"with {r['queues']} idle cores: {'met' if r['pps'] / one['pps'] >= want else 'NOT met'}); "
                f"new flows/s {r['flows'] / one['flows']:.2f} x"
            )
        ok = "met" if one["flows"] >= NEW_FLOWS_TARGET else "NOT met"
        print(f"  new flows/s, one queue: {one['flows']:,.0f} (target >= {NEW_FLOWS_TARGET:,}: {ok})")
    if srows:
        bound = OFFLOAD_AFTER + FLUSH_AFTER_PACKETS
        plain = srows[0]["loss"]
        print(
            f"\nsustained UDP flow: {args.flow_packets:,} packets at {args.flow_pps:,.0f}/s, offload_after "
            f"{OFFLOAD_AFTER}, worst of {args.repeat} runs. 'busy': new flows to another port as fast as "
            "the client can, so the queue never drains.\nTargets: loss <= plain forwarding's; packets "
            f"through Python after the decision <= offload_after + {FLUSH_AFTER_PACKETS} = {bound}, plus, "
            f"when busy, what already waited in the queue (at most queue_maxlen = {QUEUE_MAXLEN})"
        )
        head = (
            f"{'setup':<24} {'sent':>8} {'received':>9} {'pkts/s':>8} {'loss':>7}  "
            f"{'via Python after decision (worst; each run)':>44} {'target':>7}"
        )
        print(head)
        print("-" * len(head))
        for r in srows:
            if r["python"] is None:
                via, target, verdict = "-", "", ""
            else:
                limit = bound + (QUEUE_MAXLEN if r["setup"].endswith("busy") else 0)
                via = f"{r['python']:,.0f}; " + ", ".join(f"{n:,.0f}" for n in r["python_all"])
                met = r["python"] <= limit and r["loss"] <= plain + 1e-9
                target, verdict = f"{limit:,}", "  met" if met else "  NOT met"
            print(
                f"{r['setup']:<24} {r['sent']:>8,} {r['received']:>9,} {r['rate']:>8,.0f} "
                f"{r['loss']:>7.2%}  {via:>44} {target:>7}{verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
