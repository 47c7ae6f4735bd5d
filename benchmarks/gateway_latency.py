"""Packets/s and added latency through the gateway namespace: plain forwarding vs inline mode.

Not a test: it prints figures. Needs root (network namespaces). One run measures, between the
lab's client and servers namespaces (tests/netlab.py):

* plain forwarding (no gateway process, no rules);
* ``classifier gateway --mode inline --enforce`` with offload (the default);
* the same with ``--no-offload`` (every packet of every flow through the NFQUEUE and Python).

Measures: HTTP request latency on a new TCP connection each time (connect + request + response:
the first packets of a flow are the ones the gateway inspects), UDP echo round trip on one
long flow (offloaded after its first packet) and on a new flow each time, and UDP throughput
(a Python sender blasting datagrams at a sink; packets/s received).

    sudo .venv/bin/python benchmarks/gateway_latency.py [--requests 300] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    proc = lab.run("client", [sys.executable, "-c", CLIENT_SCRIPT, SERVER, ECHO_PORT, SINK_PORT, 80,
                              requests, seconds], timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"client failed: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_gateway(lab: netlab.Lab, tmp: Path, *extra: str):
    argv = [sys.executable, "-m", "classifier", "gateway", "--mode", "inline", "--enforce", "-i", "gw-cli",
            "-i", "gw-srv", "--log", str(tmp / "records.jsonl"), "--metrics", "off", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    err = tmp / f"gateway{len(extra)}.err"
    with open(err, "wb") as fh:
        proc = lab.popen("gateway", argv, stdout=fh, stderr=fh, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while "running:" not in err.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"gateway did not start:\n{err.read_text()}")
        time.sleep(0.05)
    time.sleep(0.5)
    return proc


def summary(name: str, m: dict) -> dict:
    def med(key: str) -> float:
        return statistics.median(m[key])

    def p95(key: str) -> float:
        return statistics.quantiles(m[key], n=20)[18]

    return {"setup": name, "http_med": med("http_ms"), "http_p95": p95("http_ms"),
            "udp1_med": med("udp_one_flow_ms"), "udpnew_med": med("udp_new_flow_ms"),
            "udpnew_p95": p95("udp_new_flow_ms"), "pps": m["udp_pps"],
            "loss": 1 - m["udp_received"] / max(1, m["udp_sent"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="requests per latency measurement")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of the UDP blast")
    args = ap.parse_args()
    why = netlab.lab_unavailable()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    rows = []
    with netlab.Lab() as lab, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        lab.start_http()
        bench = lab.popen("servers", [sys.executable, "-c", SERVERS_SCRIPT], log="bench.log")
        deadline = time.monotonic() + 20
        while "READY" not in (lab.dir / "bench.log").read_text():
            if bench.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the benchmark's UDP servers did not start")
            time.sleep(0.05)
        rows.append(summary("plain forwarding", measure(lab, args.requests, args.seconds)))
        for label, extra in (("inline, offload", ()), ("inline, no offload", ("--no-offload",))):
            gw = start_gateway(lab, tmp, *extra)
            try:
                rows.append(summary(label, measure(lab, args.requests, args.seconds)))
            finally:
                lab.stop(gw)
        records = len((tmp / "records.jsonl").read_text().splitlines())
    base = rows[0]
    print(f"gateway latency benchmark: {args.requests} requests per latency figure, "
          f"{args.seconds:g} s UDP blast, {os.cpu_count()} CPUs, {records} flow records written")
    head = (f"{'setup':<20} {'HTTP new conn ms':>17} {'p95':>7} {'UDP 1 flow ms':>14} "
            f"{'UDP new flow ms':>16} {'p95':>7} {'UDP pkts/s':>11} {'loss':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['setup']:<20} {r['http_med']:>17.3f} {r['http_p95']:>7.3f} {r['udp1_med']:>14.3f} "
              f"{r['udpnew_med']:>16.3f} {r['udpnew_p95']:>7.3f} {r['pps']:>11,.0f} {r['loss']:>6.1%}")
    print("added latency (median) vs plain forwarding:")
    for r in rows[1:]:
        print(f"  {r['setup']:<18} HTTP new connection {r['http_med'] - base['http_med']:+.3f} ms, "
              f"UDP one flow {r['udp1_med'] - base['udp1_med']:+.3f} ms, "
              f"UDP new flow {r['udpnew_med'] - base['udpnew_med']:+.3f} ms, "
              f"UDP throughput {r['pps'] / base['pps']:.0%} of plain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
