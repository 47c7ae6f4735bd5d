#!/usr/bin/env python3
"""A DNS-heavy capture for measuring the DNS path (query binding, answer caches), deterministic.

Many clients resolve many names through one resolver; most answers are followed by a short
nameless TCP connection to the answered address (named from DNS); a few responses are stray
(unsolicited, wrong id, duplicates). Measure it beside the dpkt baseline with:

    python benchmarks/dns_corpus.py benchmarks/work/dns.pcap [--lookups 50000]
    python benchmarks/scan_throughput.py --capture benchmarks/work/dns.pcap
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
from pathlib import Path

RESOLVER = socket.inet_aton("198.51.100.53")
_MAC = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _ip(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return _MAC + hdr + payload


def _udp(src: bytes, sport: int, dst: bytes, dport: int, data: bytes) -> bytes:
    return _ip(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)


def _tcp(src: bytes, sport: int, dst: bytes, dport: int, flags: int, seq: int, data: bytes = b"") -> bytes:
    return _ip(src, dst, 6, struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 65535, 0, 0) + data)


def _qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def _query(txid: int, name: str) -> bytes:
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + _qname(name) + b"\0\x01\0\x01"


def _response(txid: int, name: str, addr: bytes) -> bytes:
    head = struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + _qname(name) + b"\0\x01\0\x01"
    return head + b"\xc0\x0c\0\x01\0\x01" + struct.pack("!IH", 300, 4) + addr


def build(path: Path, lookups: int, seed: int = 8) -> int:
    rnd = random.Random(seed)
    names = [f"host{i}.example{i % 97}.org" for i in range(2000)] + ["www.tiktok.com", "web.wechat.com"]
    frames: list[tuple[float, bytes]] = []
    t = 1_740_000_000.0
    for i in range(lookups):
        client = socket.inet_aton(f"192.0.2.{1 + i % 200}")
        cport = 20000 + i % 40000
        txid = rnd.getrandbits(16)
        name = rnd.choice(names)
        addr = socket.inet_aton(f"203.0.113.{rnd.randrange(1, 255)}")
        t += 0.002
        frames.append((t, _udp(client, cport, RESOLVER, 53, _query(txid, name))))
        kind = i % 50
        if kind == 0:  # wrong id
            frames.append((t + 0.001, _udp(RESOLVER, 53, client, cport, _response(txid ^ 1, name, addr))))
        frames.append((t + 0.01, _udp(RESOLVER, 53, client, cport, _response(txid, name, addr))))
        if kind == 1:  # duplicate
            frames.append((t + 0.011, _udp(RESOLVER, 53, client, cport, _response(txid, name, addr))))
        elif kind == 2:  # unsolicited, to another port
            frames.append((t + 0.012, _udp(RESOLVER, 53, client, cport + 1, _response(txid, name, addr))))
        if i % 4 == 0:  # a nameless connection to the answer
            sport = 40000 + i % 20000
            frames.append((t + 0.02, _tcp(client, sport, addr, 443, 0x02, 1000)))
            frames.append((t + 0.03, _tcp(addr, 443, client, sport, 0x12, 5000)))
            frames.append(
                (t + 0.04, _tcp(client, sport, addr, 443, 0x18, 1001, b"\x16\x03\x01\x00\x05hello"))
            )
            frames.append((t + 0.05, _tcp(client, sport, addr, 443, 0x11, 1016)))
    frames.sort(key=lambda f: f[0])
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in frames:
            sec = int(ts)
            out.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
    return len(frames)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output")
    ap.add_argument("--lookups", type=int, default=50_000)
    args = ap.parse_args()
    n = build(Path(args.output), args.lookups)
    print(f"{args.output}: {n} packets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
