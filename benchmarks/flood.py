#!/usr/bin/env python3
"""Peak RSS of `classifier scan` on floods of distinct flows, at several --max-flows caps.

Writes two captures into benchmarks/work/ (with struct, a few seconds each): ``--packets`` TCP SYNs
and ``--packets`` UDP datagrams (16 bytes of payload that is neither QUIC nor DNS), every packet a
new flow from 198.51.100.0/24 to 203.0.113.10, one microsecond apart, so nothing idles out during
the flood. Each capture is scanned in its own process at every cap of ``--caps`` with the default
timeouts, and once with expiry switched off (idle timeouts of 10^9 s and a cap above the flow
count, so every flow stays live to the end of input). Peak RSS and CPU time come from wait4() of
that process; the base is the same command on an empty capture (imports, signatures).

The target of each row: peak RSS at most base + live x ``--per-flow`` bytes, where live is the
cap (or every flow, with expiry off). The table prints (peak - base) / live, the bytes one live
flow costs, beside it.

    python benchmarks/flood.py [--packets 1000000] [--caps 10000,100000,1000000] [--kinds syn,udp]
                               [--per-flow 1024] [--json OUT]

Exit status 1 if a row misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"

CLIENT_NET = bytes((198, 51, 100))  # documentation addresses only (RFC 5737)
SERVER = bytes((203, 0, 113, 10))
T0 = 1_600_000_000
NO_EXPIRY = "1e9"  # idle timeouts, seconds: longer than any capture

_PCAP_HEADER = struct.pack("!IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # big-endian, Ethernet
_ETHER = bytes.fromhex("0200000000010200000000020800")
# pcap record header, Ethernet, IPv4 (no options, DF), then the transport header.
_SYN = struct.Struct("!IIII14sBBHHHBBH4s4sHHIIBBHHH")
_UDP = struct.Struct("!IIII14sBBHHHBBH4s4sHHHH16s")
_UDP_PAYLOAD = b"\x01flood-datagram\x00"  # first byte: no QUIC long header, no gQUIC flags


def _fold(total: int) -> int:
    """Ones' complement checksum of a sum of 16-bit words."""
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _words(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _client(i: int) -> tuple[bytes, int, int]:
    """Client address, its low 16 bits (for checksums) and port of flow ``i``: 256 x 64512 distinct."""
    host = i & 0xFF
    return CLIENT_NET + bytes((host,)), (CLIENT_NET[2] << 8) | host, 1024 + (i >> 8) % 64512


def build(kind: str, packets: int) -> Path:
    """The flood capture of ``kind`` (syn or udp) with ``packets`` packets; reused if present."""
    path = WORK / f"flood-{kind}-{packets}.pcap"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    tcp = kind == "syn"
    rec = _SYN if tcp else _UDP
    ip_len = rec.size - 16 - 14
    proto = 6 if tcp else 17
    # Constant parts of the checksums: the IPv4 header without the client address's low word, and
    # the TCP/UDP pseudo-header and header without client address, port and sequence number.
    ip_const = _words(
        struct.pack("!BBHHHBBH2s4s", 0x45, 0, ip_len, 0, 0x4000, 64, proto, 0, CLIENT_NET[:2], SERVER)
    )
    seg_len = ip_len - 20
    if tcp:
        seg_const = _words(
            CLIENT_NET[:2]
            + SERVER
            + struct.pack("!HH", proto, seg_len)
            + struct.pack("!HIIBBHHH", 443, 0, 0, 0x50, 0x02, 64240, 0, 0)
        )
    else:
        seg_const = _words(
            CLIENT_NET[:2]
            + SERVER
            + struct.pack("!HH", proto, seg_len)
            + struct.pack("!HHH", 4433, seg_len, 0)
            + _UDP_PAYLOAD
        )
    buf = bytearray(rec.size * packets)
    pack = rec.pack_into
    size = rec.size
    ip_head = (size - 16, size - 16, _ETHER, 0x45, 0, ip_len, 0, 0x4000, 64, proto)  # caplen, len, ...
    for i in range(packets):
        addr, low, port = _client(i)
        when = (T0 + i // 1_000_000, i % 1_000_000)  # one microsecond apart
        ip = (_fold(ip_const + low), addr, SERVER, port)
        if tcp:
            seq = (i * 2654435761) & 0xFFFFFFFF
            tcp_sum = _fold(seg_const + low + port + (seq >> 16) + (seq & 0xFFFF))
            pack(buf, i * size, *when, *ip_head, *ip, 443, seq, 0, 0x50, 0x02, 64240, tcp_sum, 0)
        else:
            udp_sum = _fold(seg_const + low + port) or 0xFFFF
            pack(buf, i * size, *when, *ip_head, *ip, 4433, seg_len, udp_sum, _UDP_PAYLOAD)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(_PCAP_HEADER)
        f.write(buf)
    tmp.replace(path)
    return path


def empty_capture() -> Path:
    path = WORK / "empty.pcap"
    WORK.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_PCAP_HEADER)
    return path


# Runs the command and reports its rusage. A process of its own, small and started before any
# capture is built: a child's peak RSS includes what it inherited at fork time.
_WRAPPER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.buffer.write(err)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)
"""


def scan(capture: Path, extra: list[str]) -> tuple[int, float, dict]:
    """Run `classifier scan` on ``capture``: (peak RSS bytes, CPU seconds, its --stats)."""
    stats = WORK / "flood-stats.json"
    stats.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "classifier",
        "scan",
        str(capture),
        "-o",
        os.devnull,
        "-q",
        "--no-progress",
        "--stats",
        str(stats),
        *extra,
    ]
    res = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, check=True)
    status, rss, cpu = res.stdout.split()
    if int(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed with status {status}: {res.stderr.decode(errors='replace')}")
    return int(rss), float(cpu), json.loads(stats.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="flows per flood (default 1000000)")
    ap.add_argument(
        "--caps",
        default="10000,100000,1000000",
        help="comma-separated --max-flows values (default 10000,100000,1000000)",
    )
    ap.add_argument("--kinds", default="syn,udp", help="floods to run: syn, udp (default both)")
    ap.add_argument("--per-flow", type=int, default=1024, help="target bytes per live flow (default 1024)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()

    caps = [int(c) for c in args.caps.split(",") if c]
    kinds = [k for k in args.kinds.split(",") if k]
    for kind in kinds:
        if kind not in ("syn", "udp"):
            sys.exit(f"--kinds: unknown flood {kind!r} (syn, udp)")
    runs = [(str(c), ["--max-flows", str(c)], c) for c in caps]
    runs.append(
        (
            "no expiry",
            ["--max-flows", str(args.packets + 1), "--idle-tcp", NO_EXPIRY, "--idle-udp", NO_EXPIRY],
            None,
        )
    )
    empty = empty_capture()
    scan(empty, [])  # once to warm up: byte-compiled modules and the signature cache are written
    base_rss, base_cpu, _ = scan(empty, [])
    print(
        f"base (empty capture): peak RSS {base_rss / 2**20:.1f} MiB, CPU {base_cpu:.2f} s; "
        f"target: peak <= base + live flows x {args.per_flow} B"
    )
    head = (
        f"{'flood':6}{'cap':>10}{'flows':>10}{'live':>10}{'evicted':>10}{'peak MiB':>10}"
        f"{'base MiB':>10}{'B/flow':>8}{'target':>8}{'CPU s':>8}  result"
    )
    print(head)
    rows = []
    failed = False
    for kind in kinds:
        capture = build(kind, args.packets)
        for label, extra, cap in runs:
            rss, cpu, stats = scan(capture, extra)
            live = min(cap, stats["flows"]) if cap is not None else stats["flows"]
            per_flow = (rss - base_rss) / max(live, 1)
            ok = per_flow <= args.per_flow
            failed |= not ok
            print(
                f"{kind:6}{label:>10}{stats['flows']:>10}{live:>10}{stats['evicted']:>10}"
                f"{rss / 2**20:>10.1f}{base_rss / 2**20:>10.1f}{per_flow:>8.0f}{args.per_flow:>8}"
                f"{cpu:>8.2f}  {'pass' if ok else 'FAIL'}"
            )
            rows.append(
                {
                    "flood": kind,
                    "cap": label,
                    "flows": stats["flows"],
                    "live": live,
                    "evicted": stats["evicted"],
                    "peak_rss": rss,
                    "base_rss": base_rss,
                    "bytes_per_flow": per_flow,
                    "target": args.per_flow,
                    "cpu_s": cpu,
                    "pass": ok,
                }
            )
    print("live = the cap (every flow with expiry off); B/flow = (peak - base) / live")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
