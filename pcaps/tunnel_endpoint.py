#!/usr/bin/env python3
"""A userspace tunnel endpoint on a TUN device: GRE, IP-in-IP, 6in4, 4in6, Geneve, GTP-U and Teredo.

The lab's kernel refuses ``ip link add`` for gre, ipip, sit, ip6tnl and geneve (no modules), so
this small endpoint does what the kernel would: every IP packet the kernel routes into the TUN
device is wrapped in the standard encapsulation and sent to the peer (a raw IP socket for GRE and
IP-in-IP, so the kernel writes the outer IP header; a UDP socket for Geneve, GTP-U and Teredo), and every
encapsulated packet from the peer is unwrapped and written to the TUN device. Real TLS, QUIC, HTTP
and DNS clients and servers then talk through it, and tcpdump on the underlay sees the wire format.

Standard library only, independent of the classifier (it is a build tool, like the lab):

    tunnel_endpoint.py --kind gre --dev tun0 --local 192.0.2.10 --remote 192.0.2.1 [--key 4660]

Formats: GRE RFC 2784 with the RFC 2890 key, IP-in-IP RFC 2003, 6in4 RFC 4213, 4in6 RFC 2473,
Geneve RFC 8926 (protocol type 0x0800/0x86DD, one option TLV), GTP-U 3GPP TS 29.281 (G-PDU, with a
PDU Session Container extension header, TS 38.415, on what this end sends when ``--pdu-session``),
Teredo RFC 4380 (IPv6 in UDP/IPv4 port 3544; ``--teredo-auth`` puts an authentication header, 5.1.1,
before what this end sends, ``--teredo-origin`` an origin indication naming this end).
Prints READY once the device exists; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import selectors
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

IPPROTO = {"gre": 47, "ipip": 4, "4in6": 4, "6in4": 41}
UDP_PORT = {"geneve": 6081, "gtpu": 2152, "teredo": 3544}
GTPU_GPDU = 255
GTPU_PDU_SESSION_CONTAINER = 0x85
GENEVE_OPTION = struct.pack("!HBB", 0x0103, 0x01, 1) + b"\x00\x00\x00\x2a"  # class, type, length 1 word


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def ethertype(packet: bytes) -> int:
    return 0x86DD if packet[0] >> 4 == 6 else 0x0800


def encapsulate(args: argparse.Namespace, packet: bytes) -> bytes:
    """The bytes after the outer IP (and UDP) header."""
    if args.kind == "gre":
        if args.key is None:
            return struct.pack("!HH", 0, ethertype(packet)) + packet
        return struct.pack("!HHI", 0x2000, ethertype(packet), args.key) + packet
    if args.kind == "geneve":
        header = struct.pack("!BBHI", len(GENEVE_OPTION) // 4, 0, ethertype(packet), args.vni << 8)
        return header + GENEVE_OPTION + packet
    if args.kind == "gtpu":
        if args.pdu_session:
            # E flag; sequence number, N-PDU number, next extension type; PDU Session Container
            # (1 word: length, UL PDU session information with the QFI, next type 0)
            ext = struct.pack("!HBB", 0, 0, GTPU_PDU_SESSION_CONTAINER) + bytes([1, 0x10, args.qfi & 0x3F, 0])
            return struct.pack("!BBHI", 0x34, GTPU_GPDU, len(ext) + len(packet), args.teid_out) + ext + packet
        return struct.pack("!BBHI", 0x30, GTPU_GPDU, len(packet), args.teid_out) + packet
    if args.kind == "teredo":
        head = b""
        if args.teredo_auth:  # indicator, ID-len, AU-len, client id, (no value), nonce, confirmation
            client_id = b"clf-lab"
            head += struct.pack("!HBB", 1, len(client_id), 0) + client_id + os.urandom(8) + b"\x00"
        if args.teredo_origin:  # indicator, then this end's port and address, each bit-inverted
            port, addr = UDP_PORT["teredo"], ipaddress.ip_address(args.local).packed
            head += struct.pack("!HH", 0, port ^ 0xFFFF) + bytes(b ^ 0xFF for b in addr)
        return head + packet
    return packet  # IP-in-IP, 6in4, 4in6: the packet is the payload


def decapsulate(args: argparse.Namespace, data: bytes) -> bytes | None:
    """The inner packet of what the peer sent (None if it is not one this endpoint sends)."""
    if args.kind == "gre":
        flags, _ = struct.unpack_from("!HH", data)
        off = 4 + (4 if flags & 0x8000 else 0) + (4 if flags & 0x2000 else 0) + (4 if flags & 0x1000 else 0)
        return data[off:]
    if args.kind == "geneve":
        return data[8 + (data[0] & 0x3F) * 4 :]
    if args.kind == "gtpu":
        flags, mtype, length = struct.unpack_from("!BBH", data)
        if mtype != GTPU_GPDU:
            return None
        end = 8 + length
        off = 8
        if flags & 0x07:
            nxt = data[11]
            off = 12
            while nxt:
                size = data[off] * 4
                nxt = data[off + size - 1]
                off += size
        return data[off:end]
    if args.kind == "teredo":
        off = 0
        if data[:2] == b"\x00\x01":
            off = 13 + data[2] + data[3]
        if data[off : off + 2] == b"\x00\x00":
            off += 8
        return data[off:]
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", required=True, choices=sorted({*IPPROTO, *UDP_PORT}))
    ap.add_argument("--dev", required=True)
    ap.add_argument("--local", required=True)
    ap.add_argument("--remote", required=True)
    ap.add_argument("--key", type=int, help="GRE key (RFC 2890)")
    ap.add_argument("--vni", type=int, default=0, help="Geneve VNI")
    ap.add_argument("--teid-out", type=int, default=0, help="GTP-U TEID of what this end sends")
    ap.add_argument("--pdu-session", action="store_true", help="GTP-U: add a PDU Session Container")
    ap.add_argument("--qfi", type=int, default=9)
    ap.add_argument(
        "--teredo-auth", action="store_true", help="Teredo: authentication header on what this end sends"
    )
    ap.add_argument(
        "--teredo-origin", action="store_true", help="Teredo: origin indication on what this end sends"
    )
    args = ap.parse_args()

    family = socket.AF_INET6 if ipaddress.ip_address(args.local).version == 6 else socket.AF_INET
    if args.kind in UDP_PORT:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.local, UDP_PORT[args.kind]))
        peer = (args.remote, UDP_PORT[args.kind])
    else:
        sock = socket.socket(family, socket.SOCK_RAW, IPPROTO[args.kind])
        sock.bind((args.local, 0))
        peer = (args.remote, 0)
    tun = open_tun(args.dev)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sel = selectors.DefaultSelector()
    sel.register(tun, selectors.EVENT_READ, "tun")
    sel.register(sock, selectors.EVENT_READ, "sock")
    print("READY", flush=True)
    remote = ipaddress.ip_address(args.remote).packed
    while running:
        for key, _ in sel.select(0.5):
            if key.data == "tun":
                packet = os.read(tun, 65535)
                if packet and packet[0] >> 4 in (4, 6):
                    sock.sendto(encapsulate(args, packet), peer)
                continue
            data, addr = sock.recvfrom(65535)
            if family == socket.AF_INET and args.kind not in UDP_PORT:
                if data[12:16] != remote:
                    continue
                data = data[(data[0] & 15) * 4 :]  # IPv4 raw sockets deliver the IP header
            elif ipaddress.ip_address(addr[0]).packed != remote:
                continue
            inner = decapsulate(args, data)
            if inner:
                os.write(tun, inner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
