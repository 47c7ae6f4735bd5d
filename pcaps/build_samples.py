#!/usr/bin/env python3
"""Build the project's own sample captures and the per-flow expectations beside them.

Run ``.venv/bin/python pcaps/build_samples.py [OUTDIR] [--refresh-client-hellos]`` (default OUTDIR: the
directory of this file). It writes ``demo.pcap``, ``linktypes.pcapng``, ``linktypes-ns-be.pcap``,
``malformed.pcap``, ``hidden.pcap`` and ``expected/<capture stem>.json``.

Output is byte-identical on every run and on every machine: timestamps, TCP ISNs, IP ids, ports and
every "random" byte are derived from fixed labels with SHA-256. TLS ClientHellos are real ones made by
Python's ssl module, kept as data in ``client_hellos.json`` beside this script (one per SNI, with the
random, legacy session id and key_share bytes zeroed); each flow fills those bytes from its label. So
the build does not depend on the OpenSSL of the machine it runs on. ``--refresh-client-hellos`` makes
them anew from this Python's OpenSSL (written to OUTDIR/client_hellos.json, with that OpenSSL's
version) and builds with them: review the difference before committing it.

IP and transport layers are built with scapy; link layers, pcap and pcapng framing are written
with ``struct`` so that every byte is under this script's control.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import logging
import ssl
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.dns import DNS, DNSQR, DNSRR  # noqa: E402
from scapy.layers.inet import IP, TCP, UDP, IPOption  # noqa: E402
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, PadN  # noqa: E402
from scapy.layers.l2 import ARP  # noqa: E402
from scapy.packet import Raw  # noqa: E402

NS = 1_000_000_000
MS = 1_000_000

# Link-layer type numbers (tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL2 = 276

CLIENT_MAC = bytes.fromhex("02005e100001")
GATEWAY_MAC = bytes.fromhex("02005e1000fe")

RESOLVER = "198.51.100.53"
PROXY = "198.51.100.8"


# --------------------------------------------------------------------------- deterministic bytes


def det(label: str, n: int) -> bytes:
    """``n`` bytes derived from ``label`` alone (SHA-256 in counter mode)."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}#{i}".encode()).digest()
        i += 1
    return out[:n]


def det_int(label: str, bits: int) -> int:
    return int.from_bytes(det(label, 8), "big") >> (64 - bits)


def ts(text: str) -> int:
    """ISO 8601 UTC (``...Z``, up to microseconds) to integer nanoseconds since the epoch."""
    d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(d.replace(microsecond=0).timestamp()) * NS + d.microsecond * 1000


def iso(t_ns: int) -> str:
    """Integer nanoseconds to ISO 8601 UTC with ``Z``; fraction only when non-zero."""
    sec, frac = divmod(t_ns, NS)
    base = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    if frac % 1000 == 0:
        return f"{base}.{frac // 1000:06d}Z"
    return f"{base}.{frac:09d}Z"


# --------------------------------------------------------------------------- TLS messages


HELLO_FILE = "client_hellos.json"
HELLO_SOURCE = Path(__file__).resolve().with_name(HELLO_FILE)


def rewrite_variable_bytes(record: bytes, fill: Callable[[str, int], bytes]) -> bytes:
    """The ClientHello record with its per-connection bytes (random, legacy session id, key_share
    keys) replaced by ``fill(name, length)``: zeros for the stored form, label-derived for a flow."""
    rec = bytearray(record)
    p = 9 + 2  # record header, handshake header, legacy_version
    rec[p : p + 32] = fill("random", 32)
    p += 32
    sid_len = rec[p]
    rec[p + 1 : p + 1 + sid_len] = fill("session_id", sid_len)
    p += 1 + sid_len
    p += 2 + struct.unpack("!H", rec[p : p + 2])[0]  # cipher suites
    p += 1 + rec[p]  # compression methods
    end = p + 2 + struct.unpack("!H", rec[p : p + 2])[0]
    p += 2
    while p < end:
        etype, elen = struct.unpack("!HH", rec[p : p + 4])
        if etype == 0x0033:  # key_share: client_shares<2..2^16-1>
            q = p + 6
            while q < p + 4 + elen:
                group, klen = struct.unpack("!HH", rec[q : q + 4])
                rec[q + 4 : q + 4 + klen] = fill(f"key_share/{group}", klen)
                q += 4 + klen
        p += 4 + elen
    return bytes(rec)


def openssl_client_hello(sni: str | None) -> bytes:
    """A ClientHello record from this Python's OpenSSL (ALPN h2, http/1.1), per-connection bytes zeroed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        obj.do_handshake()
    rec = outgoing.read()
    if rec[0] != 0x16 or rec[5] != 0x01 or struct.unpack("!H", rec[3:5])[0] != len(rec) - 5:
        raise RuntimeError("OpenSSL did not produce a single ClientHello record")
    if sni is not None and sni.encode() not in rec:
        raise RuntimeError(f"SNI {sni} missing from ClientHello")
    return rewrite_variable_bytes(rec, lambda _name, n: bytes(n))


class ClientHellos:
    """The stored ClientHellos by SNI; with ``refresh``, made by this OpenSSL instead (and recorded)."""

    def __init__(self, refresh: bool = False, source: Path = HELLO_SOURCE) -> None:
        self.refresh = refresh
        self.source = source
        self.by_sni: dict[str, bytes] = {}
        if not refresh:
            try:
                stored = json.loads(source.read_text())["hellos"]
                self.by_sni = {sni: bytes.fromhex(hexa) for sni, hexa in stored.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise SystemExit(
                    f"build_samples: {source}: cannot read the stored ClientHellos ({err}); "
                    "rebuild them with --refresh-client-hellos"
                ) from None

    def template(self, sni: str | None) -> bytes:
        key = sni or ""
        if self.refresh and key not in self.by_sni:
            self.by_sni[key] = openssl_client_hello(sni)
        if key not in self.by_sni:
            raise SystemExit(
                f"build_samples: {self.source}: no stored ClientHello for SNI {key!r}; "
                "add it with --refresh-client-hellos"
            )
        return self.by_sni[key]

    def document(self) -> str:
        """The JSON text of client_hellos.json for the hellos used so far."""
        about = (
            "ClientHello records made by Python's ssl module (ALPN h2, http/1.1), keyed by SNI ('' = "
            "none), random, legacy session id and key_share bytes zeroed; pcaps/build_samples.py fills "
            "those per flow. Remake with `build_samples.py --refresh-client-hellos`."
        )
        doc = {
            "about": about,
            "openssl": ssl.OPENSSL_VERSION,
            "python": sys.version.split()[0],
            "hellos": {sni: self.by_sni[sni].hex() for sni in sorted(self.by_sni)},
        }
        return json.dumps(doc, indent=1) + "\n"


_hellos: ClientHellos | None = None  # main() sets it; else the stored ones, loaded on first use


def client_hello(sni: str | None, label: str) -> bytes:
    """A real ClientHello record (stored, from OpenSSL) made unique and deterministic per ``label``."""
    global _hellos
    if _hellos is None:
        _hellos = ClientHellos()
    return rewrite_variable_bytes(_hellos.template(sni), lambda name, n: det(f"{label}/{name}", n))


def session_id_of(hello: bytes) -> bytes:
    return hello[44 : 44 + hello[43]]


def server_flight(hello: bytes, label: str) -> bytes:
    """A TLS 1.3 ServerHello (echoing the client's session id), a ChangeCipherSpec and an opaque
    application-data record: what the first server segment of a TLS 1.3 connection looks like."""
    sid = session_id_of(hello)
    exts = struct.pack("!HHH", 0x002B, 2, 0x0304)
    exts += struct.pack("!HHHH", 0x0033, 36, 0x001D, 32) + det(f"{label}/sh_key", 32)
    body = (
        b"\x03\x03"
        + det(f"{label}/sh_random", 32)
        + bytes([len(sid)])
        + sid
        + b"\x13\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    out = b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs
    out += b"\x14\x03\x03\x00\x01\x01"
    app = det(f"{label}/encrypted", 120)
    return out + b"\x17\x03\x03" + struct.pack("!H", len(app)) + app


# --------------------------------------------------------------------------- IP / transport


def is_v6(addr: str) -> bool:
    return ":" in addr


def ip_packet(
    src: str,
    dst: str,
    l4,
    *,
    ipid: int = 0,
    ttl: int = 64,
    df: bool = True,
    ip_options: bytes = b"",
    v6_ext: bool = False,
) -> bytes:
    """IPv4 or IPv6 around a scapy transport layer, as bytes (checksums filled in by scapy)."""
    if is_v6(src):
        pkt = IPv6(src=src, dst=dst, hlim=ttl)
        if v6_ext:
            pkt = (
                pkt
                / IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00" * 4)])
                / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 4)])
            )
        return bytes(pkt / l4)
    opts = {"options": IPOption(ip_options)} if ip_options else {}
    return bytes(IP(src=src, dst=dst, id=ipid, ttl=ttl, flags="DF" if df else 0, **opts) / l4)


@dataclass
class Pkt:
    """One IP packet of a conversation; the capture writer adds the link layer."""

    t: int
    from_client: bool
    ip: bytes


@dataclass
class Conv:
    """A bidirectional conversation built packet by packet with consistent seq/ack numbers."""

    label: str
    t0: int
    cli: str
    cport: int
    srv: str
    sport: int
    proto: str = "tcp"
    ip_options: bytes = b""  # client-side IPv4 options
    v6_ext: bool = False
    pkts: list[Pkt] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t = self.t0
        self.c_next = det_int(f"{self.label}/c_isn", 32)
        self.s_next = det_int(f"{self.label}/s_isn", 32)
        self.c_ipid = det_int(f"{self.label}/c_ipid", 16)
        self.s_ipid = det_int(f"{self.label}/s_ipid", 16)

    # -- low level
    def emit(self, from_client: bool, l4, dt_ms: float, *, df: bool = True) -> None:
        self.t += int(dt_ms * MS)
        if from_client:
            src, dst, ipid, ttl = self.cli, self.srv, self.c_ipid, 64
            self.c_ipid = (self.c_ipid + 1) & 0xFFFF
        else:
            src, dst, ipid, ttl = self.srv, self.cli, self.s_ipid, 54
            self.s_ipid = (self.s_ipid + 1) & 0xFFFF
        raw = ip_packet(
            src,
            dst,
            l4,
            ipid=ipid,
            ttl=ttl,
            df=df,
            ip_options=self.ip_options if from_client else b"",
            v6_ext=self.v6_ext,
        )
        self.pkts.append(Pkt(self.t, from_client, raw))

    def tcp(
        self,
        from_client: bool,
        flags: str,
        data: bytes = b"",
        *,
        seq: int | None = None,
        dt_ms: float = 10,
        options=None,
    ) -> None:
        ports = (self.cport, self.sport) if from_client else (self.sport, self.cport)
        mine, theirs = (self.c_next, self.s_next) if from_client else (self.s_next, self.c_next)
        l4 = TCP(
            sport=ports[0],
            dport=ports[1],
            seq=(mine if seq is None else seq) & 0xFFFFFFFF,
            ack=theirs & 0xFFFFFFFF if "A" in flags else 0,
            flags=flags,
            window=64240 if from_client else 65160,
            options=options or [],
        )
        self.emit(from_client, l4 / Raw(data) if data else l4, dt_ms)

    # -- TCP conversation steps
    def handshake(self) -> None:
        opts = [("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]
        self.tcp(True, "S", options=opts, dt_ms=0)
        self.c_next += 1
        self.tcp(False, "SA", options=opts, dt_ms=24)
        self.s_next += 1
        self.tcp(True, "A", dt_ms=24)

    def send(self, from_client: bool, data: bytes, dt_ms: float = 1) -> None:
        for i in range(0, len(data), 1448):
            chunk = data[i : i + 1448]
            self.tcp(from_client, "PA", chunk, dt_ms=dt_ms if i == 0 else 0.1)
            if from_client:
                self.c_next += len(chunk)
            else:
                self.s_next += len(chunk)

    def close(self) -> None:
        self.tcp(True, "FA", dt_ms=30)
        self.c_next += 1
        self.tcp(False, "FA", dt_ms=24)
        self.s_next += 1
        self.tcp(True, "A", dt_ms=24)

    def exchange(self, request: bytes, response: bytes) -> Conv:
        """The whole short conversation: handshake, one request, one response, FINs both ways."""
        self.handshake()
        self.send(True, request)
        self.send(False, response, dt_ms=30)
        self.close()
        return self

    # -- UDP
    def udp(self, from_client: bool, data: bytes, dt_ms: float = 0, *, df: bool = True) -> None:
        ports = (self.cport, self.sport) if from_client else (self.sport, self.cport)
        self.emit(from_client, UDP(sport=ports[0], dport=ports[1]) / Raw(data), dt_ms, df=df)


def tls_conv(label: str, t: str, cli: str, cport: int, srv: str, sni: str | None, **kw) -> Conv:
    hello = client_hello(sni, label)
    return Conv(label, ts(t), cli, cport, srv, 443, **kw).exchange(hello, server_flight(hello, label))


def http_response(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    return head.encode() + body


def dns_query(qid: int, name: str, qtype: str = "A") -> bytes:
    return bytes(DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def dns_response(qid: int, name: str, answers: list[tuple[str, str, str]], ttl: int = 300) -> bytes:
    """A compressed DNS response; ``answers`` are (owner, type, rdata)."""
    an = [DNSRR(rrname=o, type=ty, ttl=ttl, rdata=rd) for o, ty, rd in answers]
    msg = DNS(id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype="A"), an=an)
    return bytes(msg.compress())


def dns_conv(
    label: str, t: str, cli: str, cport: int, name: str, answers: list[tuple[str, str, str]]
) -> Conv:
    qid = det_int(f"{label}/qid", 16)
    c = Conv(label, ts(t), cli, cport, RESOLVER, 53, proto="udp")
    c.udp(True, dns_query(qid, name))
    c.udp(False, dns_response(qid, name, answers), dt_ms=18)
    return c


# --------------------------------------------------------------------------- expectations


def expect(
    c: Conv, hostname: str | None, who: str, evidence: str, action: str, why: str, flow_id: str
) -> dict:
    """One row of ``expected/<capture>.json``. ``who`` is ``app/operator/category`` with ``-`` for
    none; ``evidence`` is space-separated evidence kinds."""
    app, operator, category = (None if x == "-" else x for x in who.split("/"))
    return {
        "flow": flow_id,
        "src": str(ipaddress.ip_address(c.cli)),
        "sport": c.cport,
        "dst": str(ipaddress.ip_address(c.srv)),
        "dport": c.sport,
        "proto": c.proto,
        "first_ts": iso(c.t0),
        "hostname": hostname,
        "app": app,
        "operator": operator,
        "category": category,
        "evidence_kinds": evidence.split(),
        "action_announced": action,
        "why": why,
    }


# --------------------------------------------------------------------------- link layers


def ethernet(ip: bytes, from_client: bool, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    """Ethernet II (optionally VLAN-tagged: (TPID, TCI) outermost first). Frames arriving from
    the wire (server to client) are padded to the 60-byte minimum, as real captures show them."""
    dst, src = (GATEWAY_MAC, CLIENT_MAC) if from_client else (CLIENT_MAC, GATEWAY_MAC)
    ethertype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    head = dst + src + b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in tags)
    frame = head + struct.pack("!H", ethertype) + ip
    if not from_client and len(frame) < 60:
        frame += b"\x00" * (60 - len(frame))
    return frame


def sll(ip: bytes, from_client: bool) -> bytes:
    """Linux cooked v1: packet type, ARPHRD, address length, address (8), protocol."""
    mac = CLIENT_MAC if from_client else GATEWAY_MAC
    head = struct.pack("!HHH", 4 if from_client else 0, 1, 6) + mac + b"\x00\x00"
    return head + struct.pack("!H", 0x0800) + ip


def sll2(ip: bytes, from_client: bool) -> bytes:
    """Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address."""
    mac = CLIENT_MAC if from_client else GATEWAY_MAC
    return struct.pack("!HHIHBB", 0x0800, 0, 2, 1, 4 if from_client else 0, 6) + mac + b"\x00\x00" + ip


def null_le(ip: bytes, from_client: bool) -> bytes:
    """BSD loopback (DLT_NULL): AF_INET in the capturing host's byte order, here little-endian."""
    return struct.pack("<I", 2) + ip


def loop_be(ip: bytes, from_client: bool) -> bytes:
    """OpenBSD loopback (DLT_LOOP): AF_INET in network byte order."""
    return struct.pack("!I", 2) + ip


def raw_ip(ip: bytes, from_client: bool) -> bytes:
    return ip


def frames(c: Conv, wrap: Callable[[bytes, bool], bytes] = ethernet) -> list[tuple[int, bytes]]:
    return [(p.t, wrap(p.ip, p.from_client)) for p in c.pkts]


# --------------------------------------------------------------------------- file writers


def pcap_bytes(
    records: list[tuple[int, bytes]],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """Classic pcap. ``records`` are (timestamp ns, frame) and are written in the order given."""
    e = ">" if big_endian else "<"
    out = struct.pack(e + "IHHiIII", 0xA1B23C4D if nanosecond else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)
    for t, frame in records:
        sec, frac = divmod(t, NS)
        if not nanosecond:
            if frac % 1000:
                raise ValueError("microsecond pcap cannot hold this timestamp")
            frac //= 1000
        out += struct.pack(e + "IIII", sec, frac, len(frame), len(frame)) + frame
    return out


def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def _opts(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    return b"".join(struct.pack("<HH", code, len(v)) + _pad4(v) for code, v in opts) + b"\x00" * 4


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


@dataclass
class Iface:
    linktype: int
    name: str
    description: str
    tsresol: int = 6  # if_tsresol: negative power of ten


def pcapng_bytes(ifaces: list[Iface], blocks: list[tuple]) -> bytes:
    """Little-endian pcapng: one SHB, all IDBs, then blocks in the order given.

    ``blocks`` holds ``("epb", iface, t_ns, frame, comment)`` or ``("spb", frame)``.
    """
    snaplen = 262144
    out = _block(
        0x0A0D0D0A,
        struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _opts([(4, b"pcaps/build_samples.py")]),
    )
    for itf in ifaces:
        opts = [(2, itf.name.encode()), (3, itf.description.encode()), (9, bytes([itf.tsresol]))]
        out += _block(1, struct.pack("<HHI", itf.linktype, 0, snaplen) + _opts(opts))
    for b in blocks:
        if b[0] == "spb":
            frame = b[1]
            out += _block(3, struct.pack("<I", len(frame)) + _pad4(frame))
            continue
        _, idx, t, frame, comment = b
        unit = 10 ** (9 - ifaces[idx].tsresol)
        if t % unit:
            raise ValueError("timestamp finer than the interface resolution")
        tv = t // unit
        body = struct.pack("<IIIII", idx, tv >> 32, tv & 0xFFFFFFFF, len(frame), len(frame))
        body += _pad4(frame) + _opts([(1, comment.encode())] if comment else [])
        out += _block(6, body)
    return out


# --------------------------------------------------------------------------- capture 1: demo


def build_demo() -> tuple[bytes, list[dict]]:
    c4, c6 = "192.0.2.10", "2001:db8:1::10"
    flows: list[tuple[Conv, dict]] = []
    port = iter(range(49152, 49400))

    def add(c: Conv, *exp) -> None:
        flows.append((c, expect(c, *exp, f"demo-{len(flows) + 1:02d}")))

    wechat_before = "WeChat 2020 items announced effective 2020-09-20 (no clock time; any reading is later)"
    wechat_on = "WeChat 2020 items in the announced schedule from 2020-09-20 until the June 2021 rescission"

    # ---- 2020-09-19, the day before the WeChat items
    c = tls_conv("demo-01", "2020-09-19T12:00:00Z", c4, next(port), "203.205.147.171", "web.wechat.com")
    add(
        c,
        "web.wechat.com",
        "wechat/tencent/hosting",
        "sni prefix",
        "log",
        f"WeChat name on an AS132203 address, but before the start: {wechat_before}",
    )

    # ---- 2020-09-21, WeChat items in the announced schedule
    c = tls_conv("demo-02", "2020-09-21T12:00:00Z", c4, next(port), "203.205.147.171", "web.wechat.com")
    add(
        c,
        "web.wechat.com",
        "wechat/tencent/hosting",
        "sni prefix",
        "block",
        f"WeChat web client on Tencent AS132203: hosting; {wechat_on}",
    )

    c = tls_conv("demo-03", "2020-09-21T12:01:00Z", c4, next(port), "203.205.147.172", "pay.weixin.qq.com")
    add(
        c,
        "pay.weixin.qq.com",
        "wechat/tencent/payments",
        "sni prefix",
        "block",
        "WeChat Pay endpoint: payments item (hosting also applies: AS132203); " + wechat_on,
    )

    req = (
        b"GET /cgi-bin/micromsg-bin/newgetdns?uin=0&clientversion=0x28000a3b&scene=0&net=1 HTTP/1.1\r\n"
        b"Host: hkminorshort.weixin.qq.com\r\nUser-Agent: MicroMessenger Client\r\nAccept: */*\r\n"
        b"Connection: close\r\n\r\n"
    )
    resp = http_response(det("demo-04/body", 64), extra="Content-Type: application/octet-stream\r\n")
    c = Conv("demo-04", ts("2020-09-21T12:02:00Z"), c4, next(port), "203.205.147.180", 80).exchange(req, resp)
    add(
        c,
        "hkminorshort.weixin.qq.com",
        "wechat/tencent/hosting",
        "http-host prefix",
        "block",
        "plain-HTTP WeChat backend (Host header, MicroMessenger UA) on AS132203; " + wechat_on,
    )

    answer = [("short.weixin.qq.com", "A", "203.205.147.215")]
    c = dns_conv("demo-05", "2020-09-21T12:03:00Z", c4, 53001, "short.weixin.qq.com", answer)
    add(
        c,
        "short.weixin.qq.com",
        "wechat/tencent/-",
        "dns-query",
        "log",
        "DNS lookup of a WeChat name through a third-party resolver: names the app, the resolver is no "
        "WeChat service, so no category (unsure: a classifier may also call this allow)",
    )

    c = tls_conv("demo-06", "2020-09-21T12:03:01Z", c4, next(port), "203.205.147.215", None)
    add(
        c,
        "short.weixin.qq.com",
        "wechat/tencent/hosting",
        "dns prefix",
        "block",
        "ClientHello without SNI; the address was answered for short.weixin.qq.com one second earlier "
        "(demo-05, TTL 300); AS132203; " + wechat_on,
    )

    c = tls_conv("demo-07", "2020-09-21T12:04:00Z", c4, next(port), "203.205.146.20", "www.qq.com")
    add(
        c,
        "www.qq.com",
        "-/tencent/hosting",
        "sni prefix",
        "log",
        "QQ portal, not WeChat: qq.com is shared, only host-level rules name WeChat; operator prefix only",
    )

    c = tls_conv("demo-08", "2020-09-21T12:04:30Z", c4, next(port), "203.205.146.21", "vv.video.qq.com")
    add(
        c,
        "vv.video.qq.com",
        "-/tencent/hosting",
        "sni prefix",
        "log",
        "Tencent Video, not WeChat (the real 1kxun.pcap trap); operator prefix only",
    )

    c = tls_conv("demo-09", "2020-09-21T12:05:00Z", c4, next(port), "43.137.0.10", "game.example.com")
    add(
        c,
        "game.example.com",
        "-/tencent/hosting",
        "sni prefix",
        "log",
        "unrelated customer on Tencent Cloud (AS45090 43.136.0.0/13): an operator's ASN is not the app",
    )

    c = tls_conv("demo-10", "2020-09-21T12:06:00Z", c4, next(port), "92.122.95.100", "res.wx.qq.com")
    add(
        c,
        "res.wx.qq.com",
        "wechat/tencent/cdn",
        "sni prefix",
        "block",
        "WeChat static name served from an Akamai (AS20940) edge: cdn item; "
        + wechat_on
        + " (synthetic: placement on Akamai is made up for the test)",
    )

    body = det("demo-11/body", 16)
    req = (
        b"POST http://hkextshort.weixin.qq.com/cgi-bin/micromsg-bin/rtkvreport HTTP/1.1\r\n"
        b"Host: hkextshort.weixin.qq.com\r\nUser-Agent: MicroMessenger Client\r\n"
        b"Proxy-Connection: Keep-Alive\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 16\r\n\r\n" + body
    )
    c = Conv("demo-11", ts("2020-09-21T12:07:00Z"), c4, next(port), PROXY, 8080).exchange(
        req, http_response(b"", extra="Via: 1.1 proxy.example\r\n")
    )
    add(
        c,
        "hkextshort.weixin.qq.com",
        "wechat/tencent/hosting",
        "http-proxy http-host",
        "block",
        "absolute-URI request through a forward proxy to a WeChat backend; category hosting assumed for "
        "the proxied target (unsure: the proxy itself is no WeChat server); " + wechat_on,
    )

    c = tls_conv("demo-12", "2020-09-21T12:08:00Z", c4, next(port), "203.205.147.190", "api.weixin.qq.com")
    add(
        c,
        "api.weixin.qq.com",
        "wechat/tencent/hosting",
        "sni prefix",
        "block",
        "WeChat API host on AS132203: the signatures give api.weixin.qq.com the role api, so hosting "
        "(calls from third-party servers would be code-use, which the path does not show); " + wechat_on,
    )

    c = tls_conv("demo-13", "2020-09-21T12:09:00Z", c4, next(port), "203.0.113.22", "mywechat.com")
    add(
        c,
        "mywechat.com",
        "-/-/-",
        "sni",
        "allow",
        "look-alike: mywechat.com is not wechat.com nor a subdomain of it; documentation-range server",
    )

    c = tls_conv(
        "demo-14", "2020-09-21T12:10:00Z", c6, next(port), "240d:c000:2000:8::15", "webpush.web.wechat.com"
    )
    add(
        c,
        "webpush.web.wechat.com",
        "wechat/tencent/hosting",
        "sni prefix",
        "block",
        "IPv6: WeChat web push on Tencent AS132203 240d:c000:2000::/35; " + wechat_on,
    )

    # ---- 2020-10-15: TikTok app-store item in the announced schedule, hosting not yet
    tiktok_2020_hosting = (
        "TikTok 2020 hosting items were announced for 2020-11-12 23:59 EST and withdrawn that day "
        "(never took effect); PAFACA not yet in force"
    )
    c = tls_conv("demo-15", "2020-10-15T12:00:00Z", c4, next(port), "71.18.1.11", "www.tiktok.com")
    add(
        c,
        "www.tiktok.com",
        "tiktok/bytedance/hosting",
        "sni prefix",
        "log",
        "TikTok on ByteDance AS396986; " + tiktok_2020_hosting,
    )

    store_req = (
        b"GET /store/apps/details?id=com.zhiliaoapp.musically&hl=en_US HTTP/1.1\r\nHost: play.google.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
        b"Accept: text/html\r\nConnection: close\r\n\r\n"
    )
    store_resp = http_response(
        b"",
        "301 Moved Permanently",
        "Location: https://play.google.com/store/apps/details?id=com.zhiliaoapp.musically&hl=en_US\r\n",
    )
    c = Conv("demo-16", ts("2020-10-15T12:01:00Z"), c4, next(port), "142.250.72.14", 80).exchange(
        store_req, store_resp
    )
    add(
        c,
        "play.google.com",
        "tiktok/bytedance/app-store",
        "http-host store",
        "block",
        "store page for TikTok's Android package; 2020 TikTok app-store item announced from 2020-09-27 "
        "23:59 EST (2020-09-28T04:59Z) until the 2020-11-12 notice",
    )

    c = tls_conv("demo-17", "2020-10-15T12:02:00Z", c4, next(port), "71.18.1.14", "open-api.tiktok.com")
    add(
        c,
        "open-api.tiktok.com",
        "tiktok/bytedance/code-use",
        "sni prefix",
        "log",
        "TikTok developer API (code-use; unsure: may be tagged hosting); neither took effect: "
        + tiktok_2020_hosting,
    )

    # ---- 2022-01-01: after the rescission
    c = tls_conv("demo-18", "2022-01-01T12:00:00Z", c4, next(port), "203.205.147.171", "web.wechat.com")
    add(
        c,
        "web.wechat.com",
        "wechat/tencent/hosting",
        "sni prefix",
        "log",
        "WeChat identification rescinded June 2021 (EO 14034, Commerce rescission); WeChat not under PAFACA",
    )

    # ---- 2025-03-01: PAFACA in force (announced view ignores the non-enforcement EOs)
    pafaca = "PAFACA app-store+hosting for TikTok from 2025-01-19 until the 2026-01-22 divestiture"
    nonenf = " (in-force view: in force but unenforced under EO 14166 until 2025-04-05)"
    cdn_2025 = (
        "PAFACA covers app-store and hosting only; the 2020 cdn item never took effect and was rescinded"
    )

    c = tls_conv(
        "demo-19", "2025-03-01T15:00:00Z", c4, next(port), "71.18.1.10", "api16-normal-c-useast1a.tiktokv.com"
    )
    add(
        c,
        "api16-normal-c-useast1a.tiktokv.com",
        "tiktok/bytedance/hosting",
        "sni prefix",
        "block",
        "TikTok app API on ByteDance AS396986: hosting; " + pafaca + nonenf,
    )

    c = tls_conv(
        "demo-20", "2025-03-01T15:01:00Z", c4, next(port), "71.18.6.20", "api16-normal-useast5.us.tiktokv.com"
    )
    add(
        c,
        "api16-normal-useast5.us.tiktokv.com",
        "tiktok/bytedance/hosting",
        "sni prefix",
        "block",
        "71.18.6.0/24 is an AS11983 (TikTok U.S. Data Security) more-specific inside AS396986's "
        "71.18.0.0/20: longest match must still say ByteDance/TikTok; " + pafaca,
    )

    c = tls_conv("demo-21", "2025-03-01T15:02:00Z", c4, next(port), "92.122.95.99", "vcs-va.tiktokv.com")
    add(
        c,
        "vcs-va.tiktokv.com",
        "tiktok/bytedance/cdn",
        "sni prefix",
        "log",
        "TikTok name on an Akamai AS20940 edge (as in the real sites.pcapng): cdn; "
        + cdn_2025
        + " (unsure if PAFACA 'internet hosting' reaches CDNs)",
    )

    chain = [
        ("v16-webapp.tiktok.com", "CNAME", "v16-webapp.tiktok.com.edgesuite.net"),
        ("v16-webapp.tiktok.com.edgesuite.net", "CNAME", "a1234.dscd.akamai.net"),
        ("a1234.dscd.akamai.net", "A", "92.122.95.120"),
    ]
    c = dns_conv("demo-22", "2025-03-01T15:03:00Z", c4, 53002, "v16-webapp.tiktok.com", chain)
    add(
        c,
        "v16-webapp.tiktok.com",
        "tiktok/bytedance/-",
        "dns-query cname",
        "log",
        "DNS lookup of a TikTok name through a third-party resolver, answered with a CNAME chain into "
        "Akamai; no category for the lookup itself (unsure: may also be allow)",
    )

    c = tls_conv("demo-23", "2025-03-01T15:03:01Z", c4, next(port), "92.122.95.120", None)
    add(
        c,
        "v16-webapp.tiktok.com",
        "tiktok/bytedance/cdn",
        "dns cname prefix",
        "log",
        "no SNI; address answered (demo-22) at the end of v16-webapp.tiktok.com -> *.edgesuite.net -> "
        "*.akamai.net: cdn; " + cdn_2025,
    )

    c = tls_conv(
        "demo-24", "2025-03-01T15:04:00Z", c4, next(port), "151.101.1.223", "p16-sign-va.tiktokcdn.com"
    )
    add(
        c,
        "p16-sign-va.tiktokcdn.com",
        "tiktok/bytedance/cdn",
        "sni prefix",
        "log",
        "TikTok media name on a Fastly AS54113 address: cdn; " + cdn_2025,
    )

    c = tls_conv("demo-25", "2025-03-01T15:05:00Z", c4, next(port), "151.101.65.100", "pypi.org")
    add(
        c,
        "pypi.org",
        "-/-/-",
        "sni prefix",
        "allow",
        "unrelated site on the same Fastly /16 as demo-24: CDN address alone is never the app",
    )

    c = tls_conv("demo-26", "2025-03-01T15:06:00Z", c4, next(port), "203.0.113.20", "faketiktok.com")
    add(
        c,
        "faketiktok.com",
        "-/-/-",
        "sni",
        "allow",
        "look-alike: faketiktok.com is not tiktok.com nor a subdomain of it",
    )

    c = tls_conv("demo-27", "2025-03-01T15:06:30Z", c4, next(port), "203.0.113.21", "tiktok.com.example.net")
    add(
        c,
        "tiktok.com.example.net",
        "-/-/-",
        "sni",
        "allow",
        "look-alike: tiktok.com appears as a label prefix, the name is under example.net",
    )

    c = tls_conv("demo-28", "2025-03-01T15:07:00Z", c4, next(port), "142.250.72.4", "www.google.com")
    add(c, "www.google.com", "-/-/-", "sni", "allow", "unrelated")

    hello = client_hello("www.tiktok.com", "demo-29")
    c = Conv("demo-29", ts("2025-03-01T15:08:00Z"), c4, next(port), PROXY, 3128)
    c.handshake()
    c.send(
        True,
        b"CONNECT www.tiktok.com:443 HTTP/1.1\r\nHost: www.tiktok.com:443\r\n"
        b"User-Agent: curl/8.5.0\r\nProxy-Connection: Keep-Alive\r\n\r\n",
    )
    c.send(False, b"HTTP/1.1 200 Connection established\r\n\r\n", dt_ms=30)
    c.send(True, hello)
    c.send(False, server_flight(hello, "demo-29"), dt_ms=60)
    c.close()
    add(
        c,
        "www.tiktok.com",
        "tiktok/bytedance/hosting",
        "http-proxy http-host sni",
        "block",
        "CONNECT tunnel to www.tiktok.com:443, the tunnelled ClientHello repeats the name; category hosting "
        "assumed for the proxied target (unsure); " + pafaca,
    )

    c = tls_conv(
        "demo-30", "2025-03-01T15:09:00Z", c6, next(port), "2605:340:cd51:4900::3d", "www.tiktok.com"
    )
    add(
        c,
        "www.tiktok.com",
        "tiktok/bytedance/hosting",
        "sni prefix",
        "block",
        "IPv6: ByteDance AS396986 2605:340:c000::/35; " + pafaca,
    )

    c = Conv("demo-31", ts("2025-03-01T15:10:00Z"), c4, next(port), "71.18.1.12", 443, proto="udp")
    for i, (from_client, n, dt_ms) in enumerate(
        [(True, 1200, 0), (False, 1200, 30), (True, 60, 1), (False, 300, 25), (True, 40, 5)]
    ):
        c.udp(from_client, bytes([0x40 | det_int(f"demo-31/{i}/b0", 6)]) + det(f"demo-31/{i}", n - 1), dt_ms)
    add(
        c,
        None,
        "-/bytedance/hosting",
        "prefix",
        "log",
        "opaque UDP/443 (QUIC short-header-like bytes, no Initial, no name) to ByteDance AS396986: "
        "operator only, app unknown",
    )

    label = "demo-32"
    hello = client_hello("m.tiktok.com", label)
    cut = hello.index(b"m.tiktok.com") + 5  # mid-SNI
    c = Conv(label, ts("2025-03-01T15:11:00Z"), c4, next(port), "71.18.1.13", 443)
    c.handshake()
    base = c.c_next
    c.tcp(True, "PA", hello[cut:], seq=base + cut, dt_ms=1)  # second half first
    c.tcp(False, "A", dt_ms=24)  # duplicate ACK: still waiting for `base`
    c.tcp(True, "A", hello[:cut], seq=base, dt_ms=2)  # first half
    c.c_next += len(hello)
    c.tcp(False, "A", dt_ms=24)  # now everything is acknowledged
    c.tcp(True, "PA", hello[cut:], seq=base + cut, dt_ms=200)  # spurious retransmission
    c.tcp(False, "A", dt_ms=24)
    c.send(False, server_flight(hello, label), dt_ms=5)
    c.close()
    add(
        c,
        "m.tiktok.com",
        "tiktok/bytedance/hosting",
        "sni prefix",
        "block",
        f"ClientHello split at byte {cut} (inside the SNI), second part sent first, then the first, then "
        "the second again (retransmission): reassembly must still give the SNI; " + pafaca,
    )

    c = Conv("demo-33", ts("2025-03-01T15:12:00Z"), c4, next(port), "142.250.72.14", 80).exchange(
        store_req, store_resp
    )
    add(
        c,
        "play.google.com",
        "tiktok/bytedance/app-store",
        "http-host store",
        "block",
        "store page for com.zhiliaoapp.musically: app-store; " + pafaca + nonenf,
    )

    # ---- 2026-03-01: after the qualified divestiture
    c = tls_conv("demo-34", "2026-03-01T12:00:00Z", c4, next(port), "71.18.1.10", "www.tiktok.com")
    add(
        c,
        "www.tiktok.com",
        "tiktok/bytedance/hosting",
        "sni prefix",
        "log",
        "after the 2026-01-22 qualified divestiture (TikTok USDS Joint Venture) PAFACA no longer prohibits",
    )

    records = sorted((r for c, _ in flows for r in frames(c)), key=lambda r: r[0])
    return pcap_bytes(records), [e for _, e in flows]


# --------------------------------------------------------------------------- capture 2: link types


def fragment_v4(
    label: str, cli: str, srv: str, sport: int, dport: int, payload: bytes, first_len: int
) -> list[bytes]:
    """One UDP datagram as two IPv4 fragments; the first carries the UDP header."""
    udp = bytes(IP(src=srv, dst=cli) / UDP(sport=sport, dport=dport) / Raw(payload))[20:]
    ipid = det_int(f"{label}/frag_id", 16)
    assert first_len % 8 == 0 and 8 < first_len < len(udp)
    one = IP(src=srv, dst=cli, id=ipid, ttl=54, flags="MF", frag=0, proto=17) / Raw(udp[:first_len])
    two = IP(src=srv, dst=cli, id=ipid, ttl=54, flags=0, frag=first_len // 8, proto=17) / Raw(udp[first_len:])
    return [bytes(one), bytes(two)]


def build_linktypes() -> tuple[bytes, list[dict]]:
    ifaces = [
        Iface(
            LINKTYPE_ETHERNET,
            "eth0",
            "Ethernet II (also ARP, LLDP, IPv4 options, IPv6 ext headers, fragments)",
        ),
        Iface(LINKTYPE_ETHERNET, "eth0.100", "Ethernet with one 802.1Q tag (VLAN 100)"),
        Iface(
            LINKTYPE_ETHERNET,
            "eth1.qinq",
            "Ethernet QinQ: 802.1ad outer tag (S-VLAN 200), 802.1Q inner (C-VLAN 300)",
        ),
        Iface(LINKTYPE_LINUX_SLL, "any", "Linux cooked v1 (SLL)"),
        Iface(LINKTYPE_LINUX_SLL2, "any2", "Linux cooked v2 (SLL2)"),
        Iface(LINKTYPE_RAW, "tun0", "raw IP"),
        Iface(LINKTYPE_NULL, "lo0", "BSD loopback DLT_NULL, AF_INET little-endian"),
        Iface(
            LINKTYPE_LOOP, "lo1", "OpenBSD DLT_LOOP, AF_INET network order; nanosecond timestamps", tsresol=9
        ),
    ]
    c4 = "192.0.2.20"
    t = ts("2025-03-01T16:00:00Z")
    blocks: list[tuple] = []  # (t, order, block)
    expected: list[dict] = []

    def add_conv(c: Conv, iface: int, wrap, exp: tuple, comment: str) -> None:
        for i, (tt, frame) in enumerate(frames(c, wrap)):
            blocks.append((tt, len(blocks), ("epb", iface, tt, frame, comment if i == 0 else "")))
        expected.append(expect(c, *exp, f"linktypes-{len(expected) + 1:02d}"))

    def vlan(ip: bytes, from_client: bool) -> bytes:
        return ethernet(ip, from_client, ((0x8100, 100),))

    def qinq(ip: bytes, from_client: bool) -> bytes:
        return ethernet(ip, from_client, ((0x88A8, 200), (0x8100, 300)))

    plain = [
        (0, ethernet, "a.example.org", "203.0.113.31", "Ethernet"),
        (1, vlan, "b.example.org", "203.0.113.32", "802.1Q VLAN 100"),
        (2, qinq, "c.example.org", "203.0.113.33", "QinQ 0x88a8/0x8100"),
        (3, sll, "d.example.org", "203.0.113.34", "Linux SLL"),
        (4, sll2, "www.tiktok.com", "71.18.1.10", "Linux SLL2"),
        (5, raw_ip, "e.example.org", "203.0.113.35", "raw IP"),
        (6, null_le, "f.example.org", "203.0.113.36", "DLT_NULL little-endian"),
        (7, loop_be, "g.example.org", "203.0.113.37", "DLT_LOOP, ns timestamps"),
    ]
    for n, (iface, wrap, sni, srv, what) in enumerate(plain):
        label = f"linktypes-{n + 1:02d}"
        c = tls_conv(label, iso(t + n * 10 * NS), c4, 50001 + n, srv, sni)
        if sni == "www.tiktok.com":
            why = f"{what}: TikTok on ByteDance AS396986; PAFACA hosting from 2025-01-19 until 2026-01-22"
            exp = (sni, "tiktok/bytedance/hosting", "sni prefix", "block", why)
        else:
            exp = (sni, "-/-/-", "sni", "allow", f"{what}: unrelated name on a documentation-range server")
        add_conv(c, iface, wrap, exp, f"{label}: TLS over {what}")

    # IPv4 with options (Router Alert + 3 NOP + EOL: IHL 7) on every client packet.
    label = "linktypes-09"
    options = b"\x94\x04\x00\x00\x01\x01\x01\x00"
    c = tls_conv(label, iso(t + 80 * NS), c4, 50009, "203.0.113.38", "h.example.org", ip_options=options)
    why = "client packets carry 8 bytes of IPv4 options (IHL 7); unrelated"
    add_conv(c, 0, ethernet, ("h.example.org", "-/-/-", "sni", "allow", why), f"{label}: IPv4 options")

    label = "linktypes-10"
    c = tls_conv(
        label, iso(t + 90 * NS), "2001:db8:1::20", 50010, "2001:db8:ffff::39", "i.example.org", v6_ext=True
    )
    why = "every packet has hop-by-hop + destination-options headers before TCP; unrelated"
    add_conv(c, 0, ethernet, ("i.example.org", "-/-/-", "sni", "allow", why), f"{label}: IPv6 ext headers")

    # DNS response in two IPv4 fragments, then a TLS flow without SNI to one of its answers.
    label = "linktypes-11"
    qid = det_int(f"{label}/qid", 16)
    name = "frag.example.org"
    answers = [(name, "A", f"203.0.113.{40 + i}") for i in range(24)]
    c = Conv(label, t + 100 * NS, c4, 53010, RESOLVER, 53, proto="udp")
    c.udp(True, dns_query(qid, name))
    response = dns_response(qid, name, answers)
    pieces = fragment_v4(label, c4, RESOLVER, 53, 53010, response, 200)
    c.t += 20 * MS
    c.pkts += [Pkt(c.t, False, pieces[0]), Pkt(c.t + 50_000, False, pieces[1])]
    why = (
        f"the response ({len(response)} B, 24 A records) arrives as two IPv4 fragments; the first "
        "carries the UDP header; unrelated"
    )
    add_conv(c, 0, ethernet, (name, "-/-/-", "dns-query", "allow", why), f"{label}: fragmented DNS response")

    label = "linktypes-12"
    c = tls_conv(label, iso(t + 101 * NS), c4, 50012, "203.0.113.40", None)
    why = "no SNI; the name comes only from the fragmented DNS answer (linktypes-11): proves reassembly"
    add_conv(c, 0, ethernet, (name, "-/-/-", "dns", "allow", why), f"{label}: TLS without SNI")

    # Non-IP frames: ARP request (EPB), ARP reply and LLDP (Simple Packet Blocks, interface 0).
    arp_req = (
        b"\xff" * 6
        + CLIENT_MAC
        + b"\x08\x06"
        + bytes(ARP(op=1, hwsrc="02:00:5e:10:00:01", psrc=c4, pdst="192.0.2.1"))
    )
    arp_rep = (
        CLIENT_MAC
        + GATEWAY_MAC
        + b"\x08\x06"
        + bytes(ARP(op=2, hwsrc="02:00:5e:10:00:fe", psrc="192.0.2.1", hwdst="02:00:5e:10:00:01", pdst=c4))
    )
    arp_req += b"\x00" * (60 - len(arp_req))
    arp_rep += b"\x00" * (60 - len(arp_rep))

    def tlv(tp: int, value: bytes) -> bytes:
        return struct.pack("!H", (tp << 9) | len(value)) + value

    lldp = (
        bytes.fromhex("0180c200000e")
        + GATEWAY_MAC
        + b"\x88\xcc"
        + (
            tlv(1, b"\x04" + GATEWAY_MAC)
            + tlv(2, b"\x05ge-0/0/1")
            + tlv(3, b"\x00\x78")
            + tlv(5, b"gw.example.net")
            + tlv(0, b"")
        )
    )
    blocks.append((t - 2 * NS, len(blocks), ("epb", 0, t - 2 * NS, arp_req, "ARP request (non-IP)")))
    blocks.append((t - 2 * NS + MS, len(blocks), ("spb", arp_rep)))
    blocks.append((t - 1 * NS, len(blocks), ("spb", lldp)))

    blocks.sort(key=lambda b: (b[0], b[1]))
    return pcapng_bytes(ifaces, [b[2] for b in blocks]), expected


def build_ns_be() -> tuple[bytes, list[dict]]:
    c4 = "192.0.2.40"
    a = tls_conv("ns-be-01", "2020-09-21T13:00:00.5Z", c4, 51001, "203.205.147.171", "web.wechat.com")
    b = tls_conv("ns-be-02", "2020-09-21T13:00:30.25Z", c4, 51002, "203.0.113.50", "n.example.org")
    # Sub-microsecond part on every packet so a reader that treats ns as us is visibly wrong.
    records = sorted(((tt + 789, f) for c in (a, b) for tt, f in frames(c)), key=lambda r: r[0])
    exp = [
        expect(
            a,
            "web.wechat.com",
            "wechat/tencent/hosting",
            "sni prefix",
            "block",
            "WeChat on AS132203 during the announced WeChat schedule (2020-09-20 until June 2021)",
            "ns-be-01",
        ),
        expect(b, "n.example.org", "-/-/-", "sni", "allow", "unrelated", "ns-be-02"),
    ]
    for e, c in zip(exp, (a, b), strict=True):
        e["first_ts"] = iso(c.t0 + 789)
    return pcap_bytes(records, nanosecond=True, big_endian=True), exp


# --------------------------------------------------------------------------- capture 3: malformed


def dns_pointer_loop(qid: int, name: str) -> bytes:
    """A response whose answer owner name is a label followed by a pointer back to that label."""
    head = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    question = qname + struct.pack("!HH", 1, 1)
    at = len(head) + len(question)
    owner = b"\x04loop" + struct.pack("!H", 0xC000 | at)
    rr = owner + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([203, 0, 113, 62])
    return head + question + rr


def build_malformed() -> tuple[bytes, list[dict], dict]:
    c4 = "192.0.2.30"
    t = ts("2025-03-01T18:00:00Z")
    records: list[tuple[int, bytes]] = []
    expected: list[dict] = []

    good1 = tls_conv("malformed-01", iso(t), c4, 52001, "71.18.1.10", "www.tiktok.com")
    records += frames(good1)
    why = "good flow before the malformed packets; PAFACA hosting"
    expected.append(
        expect(
            good1, "www.tiktok.com", "tiktok/bytedance/hosting", "sni prefix", "block", why, "malformed-01"
        )
    )

    tcp_bytes = bytes(TCP(sport=52002, dport=443, seq=1, flags="S", window=64240))
    # (a) IPv4 IHL 3 (< 5)
    ihl3 = bytearray(ip_packet(c4, "203.0.113.60", TCP(sport=52002, dport=443, flags="S"), ipid=1))
    ihl3[0] = 0x43
    # (b) TCP data offset 15 (60 bytes) in a packet holding 20 bytes of TCP
    doff = ip_packet(c4, "203.0.113.60", TCP(sport=52003, dport=443, flags="S", dataofs=15), ipid=2)
    # (c) IPv4 total length 12, smaller than its own 20-byte header
    short_len = bytes(IP(src=c4, dst="203.0.113.60", id=3, len=12, proto=6) / Raw(tcp_bytes))
    singles = [ethernet(bytes(ihl3), True), ethernet(doff, True), ethernet(short_len, True)]
    # (d) Ethernet frame cut to 10 bytes
    singles.append(ethernet(ip_packet(c4, "203.0.113.60", TCP(sport=52004, dport=443, flags="S")), True)[:10])
    for i, frame in enumerate(singles):
        records.append((t + (10 + i) * NS, frame))

    # (e) TLS record with an impossible length (0xffff > 2^14) in an otherwise fine TCP flow
    label = "malformed-02"
    hello = bytearray(client_hello("broken.example.org", label))
    hello[3:5] = b"\xff\xff"
    alert = b"\x15\x03\x03\x00\x02\x02\x16"  # fatal record_overflow
    bad_tls = Conv(label, t + 20 * NS, c4, 52005, "203.0.113.61", 443).exchange(bytes(hello), alert)
    records += frames(bad_tls)
    why = (
        "TLS record length 0xffff (> 2^14): malformed TLS counted, no SNI taken from it (the name "
        "inside is broken.example.org); the TCP flow itself is fine"
    )
    expected.append(expect(bad_tls, None, "-/-/-", "", "allow", why, label))

    # (f) DNS response whose answer name loops through a compression pointer
    label = "malformed-03"
    qid = det_int(f"{label}/qid", 16)
    dns = Conv(label, t + 30 * NS, c4, 53020, RESOLVER, 53, proto="udp")
    dns.udp(True, dns_query(qid, "loop.example.org"))
    dns.udp(False, dns_pointer_loop(qid, "loop.example.org"), dt_ms=15)
    records += frames(dns)
    why = (
        "the query is fine; the response's answer owner is '\\x04loop' + a pointer back to itself: "
        "malformed DNS counted, nothing cached for 203.0.113.62"
    )
    expected.append(expect(dns, "loop.example.org", "-/-/-", "dns-query", "allow", why, label))

    good2 = tls_conv("malformed-04", iso(t + 60 * NS), c4, 52006, "203.205.147.171", "web.wechat.com")
    records += frames(good2)
    why = (
        "good flow after the malformed packets, its last packet cut by the file's truncation; 2025: "
        "WeChat 2020 items rescinded, WeChat not under PAFACA"
    )
    expected.append(
        expect(good2, "web.wechat.com", "wechat/tencent/hosting", "sni prefix", "log", why, "malformed-04")
    )

    records.sort(key=lambda r: r[0])
    data = pcap_bytes(records)
    last = records[-1][1]
    last_record_at = len(data) - 16 - len(last)
    keep = 20  # bytes of the last frame that survive
    info = {
        "records_written": len(records),
        "complete_records": len(records) - 1,
        "last_record_offset": last_record_at,
        "truncated_at": last_record_at + 16 + keep,
        "full_length": len(data),
    }
    return data[: info["truncated_at"]], expected, info


# --------------------------------------------------------------------------- main


# --------------------------------------------------------------------------- hidden names


def with_extension(record: bytes, ext_type: int, data: bytes) -> bytes:
    """A ClientHello record with one more extension appended (all lengths fixed up)."""
    body = record[9:]
    p = 2 + 32
    p += 1 + body[p]
    p += 2 + struct.unpack("!H", body[p : p + 2])[0]
    p += 1 + body[p]
    ext_len = struct.unpack("!H", body[p : p + 2])[0]
    ext = struct.pack("!HH", ext_type, len(data)) + data
    body = body[:p] + struct.pack("!H", ext_len + len(ext)) + body[p + 2 :] + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return record[:3] + struct.pack("!H", len(hs)) + hs


def ech_outer(label: str) -> bytes:
    """An outer encrypted_client_hello extension body (RFC 9849 5): type 0, HPKE suite, config id 7,
    32-byte enc, opaque payload. Real ECH and GREASE ECH look alike on the wire."""
    enc, payload = det(f"{label}/enc", 32), det(f"{label}/payload", 144)
    return b"\x00\x00\x01\x00\x01\x07\x00\x20" + enc + b"\x00\x90" + payload


def https_record(public_name: bytes, hint: str) -> bytes:
    """HTTPS (type 65) rdata: priority 1, target ".", alpn h2, ipv4hint, ech with one ECHConfig."""
    contents = (
        b"\x07\x00\x20\x00\x20"
        + det("ech-key", 32)
        + b"\x00\x04\x00\x01\x00\x01\x00"
        + bytes([len(public_name)])
        + public_name
        + b"\x00\x00"
    )
    cfg = b"\xfe\x0d" + struct.pack("!H", len(contents)) + contents
    ech = struct.pack("!H", len(cfg)) + cfg
    v4 = bytes(int(x) for x in hint.split("."))
    return (
        b"\x00\x01\x00"
        + struct.pack("!HH", 1, 3)
        + b"\x02h2"
        + struct.pack("!HH", 4, 4)
        + v4
        + struct.pack("!HH", 5, len(ech))
        + ech
    )


def mmtls_hello(label: str) -> bytes:
    """A 1-RTT mmtls ClientHello record as Citizen Lab documented it (random parts deterministic)."""
    body = bytes.fromhex("0000016a0103f102c02b00a8") + det(f"{label}/mmtls", 0x16E - 8)
    return bytes.fromhex("16f104016e") + body


def build_hidden() -> tuple[bytes, list[dict]]:
    """Names this input cannot show, or shows another way: mmtls, ECH, encrypted DNS, history."""
    c4 = "192.0.2.11"
    flows: list[tuple[Conv, dict]] = []
    port = iter(range(50100, 50300))

    def add(c: Conv, *exp, **extra) -> None:
        row = expect(c, *exp, f"hidden-{len(flows) + 1:02d}")
        row.update(extra)
        flows.append((c, row))

    wechat_on = "WeChat 2020 items in the announced schedule from 2020-09-20 until the June 2021 rescission"
    pafaca = "PAFACA hosting for TikTok from 2025-01-19 until the 2026-01-22 divestiture"

    c = Conv("hidden-01", ts("2020-09-21T13:00:00Z"), c4, next(port), "203.205.147.171", 8080)
    c.exchange(mmtls_hello("hidden-01"), det("hidden-01/resp", 200))
    add(
        c,
        None,
        "wechat/tencent/hosting",
        "mmtls prefix",
        "block",
        "WeChat long connection in mmtls (no SNI) on Tencent AS132203: framing + address; " + wechat_on,
    )

    c = Conv("hidden-02", ts("2020-09-21T13:01:00Z"), c4, next(port), "203.0.113.70", 443)
    c.exchange(mmtls_hello("hidden-02"), det("hidden-02/resp", 200))
    add(
        c,
        None,
        "wechat/tencent/hosting",
        "mmtls",
        "block",
        "mmtls framing alone (medium confidence) on an address no signature knows; " + wechat_on,
    )

    body = mmtls_hello("hidden-03")
    req = (
        b"POST /mmtls/1c2f3a4b HTTP/1.1\r\nHost: hkextshort.weixin.qq.com\r\n"
        b"User-Agent: MicroMessenger Client\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    c = Conv("hidden-03", ts("2020-09-21T13:02:00Z"), c4, next(port), "203.205.147.180", 80)
    c.exchange(req, http_response(b""))
    add(
        c,
        "hkextshort.weixin.qq.com",
        "wechat/tencent/hosting",
        "http-host prefix",
        "block",
        "WeChat short link: mmtls inside an HTTP POST to /mmtls/, named by Host; " + wechat_on,
    )

    c = tls_conv("hidden-04", "2020-09-21T13:03:00Z", c4, next(port), "203.205.147.171", "web.wechat.com")
    add(c, "web.wechat.com", "wechat/tencent/hosting", "sni prefix", "block", "named by SNI; " + wechat_on)
    hello = client_hello(None, "hidden-05")
    c = Conv("hidden-05", ts("2020-09-21T13:04:00Z"), c4, next(port), "203.205.147.171", 443)
    c.exchange(hello, server_flight(hello, "hidden-05"))
    add(
        c,
        "web.wechat.com",
        "wechat/tencent/hosting",
        "name-history prefix",
        "log",
        "ClientHello without SNI a minute after this client sent SNI web.wechat.com to the same "
        "address (hidden-04): name-history, low confidence; the policy would block ("
        + wechat_on
        + ") but name history cannot block by default (rule below-block-confidence)",
    )

    qid = det_int("hidden-06/qid", 16)
    c = Conv("hidden-06", ts("2025-03-01T16:00:00Z"), c4, next(port), RESOLVER, 53, proto="udp")
    c.udp(True, dns_query(qid, "www.tiktok.com", "HTTPS"))
    rdata = https_record(b"ech.example.net", "203.0.113.71")
    an = [DNSRR(rrname="www.tiktok.com", type=65, ttl=300, rdata=rdata)]
    c.udp(
        False,
        bytes(DNS(id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname="www.tiktok.com", qtype="HTTPS"), an=an)),
        dt_ms=15,
    )
    add(
        c,
        "www.tiktok.com",
        "tiktok/bytedance/-",
        "dns-query",
        "log",
        "HTTPS record lookup: alpn h2, ipv4hint 203.0.113.71, ECH config with public name ech.example.net",
    )
    hello = with_extension(client_hello("ech.example.net", "hidden-07"), 0xFE0D, ech_outer("hidden-07"))
    c = Conv("hidden-07", ts("2025-03-01T16:00:01Z"), c4, next(port), "203.0.113.71", 443)
    c.exchange(hello, server_flight(hello, "hidden-07"))
    add(
        c,
        "www.tiktok.com",
        "tiktok/bytedance/hosting",
        "ech dns",
        "block",
        "ECH: outer SNI ech.example.net is the public name hidden-06 published; the address came from "
        "the HTTPS record's ipv4hint for www.tiktok.com; " + pafaca,
        ech_public_name="ech.example.net",
    )

    hello = with_extension(client_hello("cloudflare-ech.com", "hidden-08"), 0xFE0D, ech_outer("hidden-08"))
    c = Conv("hidden-08", ts("2025-03-01T16:01:00Z"), c4, next(port), "203.0.113.72", 443)
    c.exchange(hello, server_flight(hello, "hidden-08"))
    add(
        c,
        None,
        "-/-/-",
        "ech",
        "allow",
        "ECH with Cloudflare's public name and no DNS answer for the address: name hidden, nothing "
        "to attribute (a blind spot)",
        ech_public_name="cloudflare-ech.com",
    )

    hello = with_extension(client_hello("www.tiktok.com", "hidden-09"), 0xFE0D, ech_outer("hidden-09"))
    c = Conv("hidden-09", ts("2025-03-01T16:02:00Z"), c4, next(port), "71.18.1.10", 443)
    c.exchange(hello, server_flight(hello, "hidden-09"))
    add(
        c,
        "www.tiktok.com",
        "tiktok/bytedance/hosting",
        "sni prefix",
        "block",
        "ECH extension with the real name as SNI (ECH GREASE): the SNI is the name; " + pafaca,
    )

    c = tls_conv("hidden-10", "2025-03-01T16:03:00Z", c4, next(port), "8.8.8.8", "dns.google")
    add(
        c,
        "dns.google",
        "-/-/-",
        "sni encrypted-dns",
        "allow",
        "DNS over HTTPS to Google Public DNS: this client's lookups are not in the input",
        encrypted_dns="doh",
    )
    hello = client_hello("one.one.one.one", "hidden-11")
    c = Conv("hidden-11", ts("2025-03-01T16:04:00Z"), c4, next(port), "1.1.1.1", 853)
    c.exchange(hello, server_flight(hello, "hidden-11"))
    add(
        c,
        "one.one.one.one",
        "-/-/-",
        "sni encrypted-dns prefix",
        "allow",
        "DNS over TLS on port 853 (1.1.1.1 is in Cloudflare's AS13335, a CDN prefix: evidence, no owner)",
        encrypted_dns="dot",
    )
    c = Conv("hidden-12", ts("2025-03-01T16:05:00Z"), c4, next(port), "203.0.113.73", 853, proto="udp")
    c.udp(True, b"\xc0\x00\x00\x00\x01" + det("hidden-12/quic", 1195))
    c.udp(False, b"\xc0\x00\x00\x00\x01" + det("hidden-12/quic-s", 300), dt_ms=20)
    add(
        c,
        None,
        "-/-/-",
        "encrypted-dns",
        "allow",
        "DNS over QUIC on UDP 853 (opaque datagrams)",
        encrypted_dns="doq",
    )

    flows.sort(key=lambda f: f[0].t0)
    return pcap_bytes([(p.t, ethernet(p.ip, p.from_client)) for c, _ in flows for p in c.pkts]), [
        e for _, e in flows
    ]


def main(argv: list[str]) -> int:
    global _hellos
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "outdir",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="where to write (default: the directory of this script)",
    )
    parser.add_argument(
        "--refresh-client-hellos",
        action="store_true",
        help=f"make the ClientHellos with this OpenSSL and write OUTDIR/{HELLO_FILE}",
    )
    args = parser.parse_args(argv[1:])
    out: Path = args.outdir
    _hellos = ClientHellos(refresh=args.refresh_client_hellos)
    (out / "expected").mkdir(parents=True, exist_ok=True)
    demo, demo_exp = build_demo()
    linktypes, linktypes_exp = build_linktypes()
    ns_be, ns_be_exp = build_ns_be()
    malformed, malformed_exp, info = build_malformed()
    hidden, hidden_exp = build_hidden()
    for name, data, exp in [
        ("hidden.pcap", hidden, hidden_exp),
        ("demo.pcap", demo, demo_exp),
        ("linktypes.pcapng", linktypes, linktypes_exp),
        ("linktypes-ns-be.pcap", ns_be, ns_be_exp),
        ("malformed.pcap", malformed, malformed_exp),
    ]:
        (out / name).write_bytes(data)
        (out / "expected" / f"{Path(name).stem}.json").write_text(json.dumps(exp, indent=2) + "\n")
        print(f"{name}: {len(data)} bytes, {len(exp)} flows")
    print("malformed.pcap:", json.dumps(info))
    if args.refresh_client_hellos:
        (out / HELLO_FILE).write_text(_hellos.document())
        print(f"{HELLO_FILE}: {len(_hellos.by_sni)} ClientHellos from {ssl.OPENSSL_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
