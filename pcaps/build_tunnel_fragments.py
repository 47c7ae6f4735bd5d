#!/usr/bin/env python3
"""Build the fragmented-tunnel captures (pcaps/tunnel-*-fragments.pcap) from the live tunnel captures.

No root and no lab: each capture takes the frames of a live capture made by ``build_tunnels.py``
(real clients through a real or userspace tunnel) and fragments them as a router in front of a
512-byte MTU link would (488 bytes of IPv4 payload per fragment, a multiple of 8; IPv6 the same, below
its 1280-byte minimum, only so that every ClientHello and QUIC Initial of the live clients arrives
split across fragments):

* ``tunnel-gre-fragments.pcap``, ``tunnel-vxlan-fragments.pcap``: the outer IPv4 datagram of each
  large GRE / VXLAN packet fragmented (the fragments of every other datagram in reverse order);
* ``tunnel-4in6-fragments.pcap``: the outer IPv6 datagram (fragment extension header);
* ``tunnel-gtpu-inner-fragments.pcap``: the subscriber's own IP packet fragmented inside GTP-U,
  each fragment in its own G-PDU (what a UE behind a small MTU sends).

Run from the repository root: ``.venv/bin/python pcaps/build_tunnel_fragments.py [OUTDIR]``. The
output is deterministic for given inputs. ``tests/test_tshark_oracle.py`` then checks, ClientHello
by ClientHello, that tshark (which reassembles IP fragments itself) and the scanner agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.inet import IP, UDP
from scapy.layers.inet import fragment as fragment4
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_tunnels import write_pcap

HERE = Path(__file__).resolve().parent
PATH_MTU = 512
FRAGMENT = (PATH_MTU - 20) // 8 * 8  # IPv4 payload bytes per fragment


def outer4(frames) -> list[tuple[float, bytes]]:
    """Each Ethernet/IPv4 frame longer than the path MTU as IPv4 fragments."""
    out: list[tuple[float, bytes]] = []
    turn = False
    for f in frames:
        ts, eth = float(f.time), f[Ether]
        if IP not in f or len(f[IP]) <= PATH_MTU:
            out.append((ts, bytes(f)))
            continue
        pieces = fragment4(IP(bytes(f[IP])), fragsize=FRAGMENT)
        if turn:
            pieces.reverse()
        turn = not turn
        out += [(ts, bytes(Ether(src=eth.src, dst=eth.dst) / p)) for p in pieces]
    return out


def outer6(frames) -> list[tuple[float, bytes]]:
    """Each Ethernet/IPv6 frame longer than the path MTU as IPv6 fragments (ids counted up)."""
    out: list[tuple[float, bytes]] = []
    ident = 0x100
    for f in frames:
        ts, eth = float(f.time), f[Ether]
        if IPv6 not in f or len(f[IPv6]) <= PATH_MTU:
            out.append((ts, bytes(f)))
            continue
        ident += 1
        pkt = IPv6(bytes(f[IPv6]))
        nh = pkt.nh
        payload = bytes(pkt.payload)
        head = IPv6(src=pkt.src, dst=pkt.dst, hlim=pkt.hlim, nh=44)
        pieces = fragment6(head / IPv6ExtHdrFragment(nh=nh, id=ident) / payload, PATH_MTU)
        out += [(ts, bytes(Ether(src=eth.src, dst=eth.dst) / p)) for p in pieces]
    return out


def inner_gtpu(frames) -> list[tuple[float, bytes]]:
    """Each subscriber packet longer than the path MTU fragmented inside its own GTP-U tunnel (the
    G-PDU header, extension headers included, repeated before each fragment)."""
    out: list[tuple[float, bytes]] = []
    outer_id = 0x2000
    for f in frames:
        ts, eth = float(f.time), f[Ether]
        if GTP_U_Header not in f or IP not in f[GTP_U_Header] or len(f[GTP_U_Header][IP]) <= PATH_MTU:
            out.append((ts, bytes(f)))
            continue
        outer, udp, gtp = f[IP], f[UDP], bytes(f[GTP_U_Header])
        subscriber = bytes(f[GTP_U_Header][IP])
        header = bytearray(gtp[: len(gtp) - len(subscriber)])
        for piece in fragment4(IP(subscriber), fragsize=FRAGMENT):
            outer_id += 1
            header[2:4] = (len(header) - 8 + len(piece)).to_bytes(2, "big")  # GTP-U length field
            pkt = (
                Ether(src=eth.src, dst=eth.dst)
                / IP(src=outer.src, dst=outer.dst, id=outer_id, ttl=outer.ttl)
                / UDP(sport=udp.sport, dport=udp.dport)
                / Raw(bytes(header) + bytes(piece))
            )
            out.append((ts, bytes(pkt)))
    return out


BUILDS = {
    "tunnel-gre-fragments.pcap": ("tunnel-gre.pcap", outer4),
    "tunnel-vxlan-fragments.pcap": ("tunnel-vxlan.pcap", outer4),
    "tunnel-4in6-fragments.pcap": ("tunnel-4in6.pcap", outer6),
    "tunnel-gtpu-inner-fragments.pcap": ("tunnel-gtpu.pcap", inner_gtpu),
}


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else HERE
    for name, (source, build) in BUILDS.items():
        frames = build(rdpcap(str(HERE / source)))
        path = write_pcap(outdir / name, 1, frames)
        print(f"{path}: {len(frames)} frames, from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
