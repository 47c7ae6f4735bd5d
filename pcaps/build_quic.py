#!/usr/bin/env python3
"""Build the QUIC sample captures (pcaps/quic-*.pcap) from real QUIC stacks in network namespaces.

Run as root from the repository root: ``.venv/bin/python pcaps/build_quic.py [OUTDIR]`` (default:
the directory of this file). For every case an aioquic HTTP/3 client (in the lab's ``client``
namespace) fetches ``/`` from the aioquic server (``servers`` namespace, direct topology of
``tests/netlab.py``) while tcpdump captures on the client's interface. Each flow is then trimmed to
its first packets, its timestamps are moved to a documented instant, UDP checksums (left partial by
the veth offload) are recomputed, and the result is checked with tshark when it is installed: every
flow must show exactly the ClientHello SNI and QUIC version the case asked for.

Not byte-identical from run to run: connection IDs, keys, randoms and key shares are random (QUIC
has no way to fix them from outside the stack). What is stable: addresses, ports, the order and
timing (to the microsecond offset within a flow as measured) of flows, SNIs, versions, ALPN, and the
per-flow facts in ``expected/quic.json``, which this script also writes. README-quic.md lists it all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import netlab  # noqa: E402

from classifier.timeutil import format_instant, parse_instant  # noqa: E402

KEEP = 10  # packets kept per flow: the handshake (and a Retry / Version Negotiation round trip)


@dataclass
class Flow:
    sni: str
    role: str  # netlab.SERVERS role of the server address
    version: str  # what the client offers: "1", "2", "draft-29" or a comma list
    sport: int
    family: int = 4
    big: bool = False  # 1200-byte transport parameter: ClientHello spans two Initial packets
    first_version: str = ""  # version of the client's first Initial (default: first offered)
    final_version: str = ""  # version the connection ends up with (default: first offered)
    retry: bool = False  # the server sends Retry first
    why: str = ""

    def __post_init__(self) -> None:
        self.first_version = self.first_version or self.version.split(",")[0]
        self.final_version = self.final_version or self.version.split(",")[0]


@dataclass
class Capture:
    name: str
    start: str  # ISO instant of the first flow; flow i starts i minutes later
    flows: list[Flow]
    retry: bool = False
    server_versions: tuple[str, ...] = ("1", "2", "draft-29")
    about: str = ""
    extra: dict = field(default_factory=dict)


TT, TV, WC, QQ = "www.tiktok.com", "api16-normal-c-useast1a.tiktokv.com", "web.wechat.com", "www.qq.com"
FAKE, FAKE2, GOOGLE = "faketiktok.com", "tiktok.com.example.net", "www.google.com"

CAPTURES = [
    Capture(
        "quic-v1.pcap",
        "2025-03-01T12:00:00Z",
        about="QUIC v1 (RFC 9000): both apps, look-alikes, a shared CDN address, IPv6",
        flows=[
            Flow(TT, "tiktok", "1", 50101),
            Flow(TV, "tiktok", "1", 50102),
            Flow(WC, "wechat", "1", 50103),
            Flow(QQ, "tencent", "1", 50104),
            Flow(FAKE, "lookalike", "1", 50105),
            Flow(FAKE2, "lookalike", "1", 50106),
            Flow(GOOGLE, "unrelated", "1", 50107),
            Flow("v16-webapp.tiktok.com", "cdn", "1", 50108),
            Flow("static.example.com", "cdn", "1", 50109),
            Flow(TT, "tiktok", "1", 50110, family=6),
        ],
    ),
    Capture(
        "quic-v2.pcap",
        "2025-03-01T13:00:00Z",
        about="QUIC v2 (RFC 9369) from the first packet",
        flows=[
            Flow(TT, "tiktok", "2", 50201),
            Flow(TV, "tiktok", "2", 50202),
            Flow(WC, "wechat", "2", 50203),
            Flow(FAKE, "lookalike", "2", 50204),
            Flow(QQ, "tencent", "2", 50205),
            Flow(WC, "wechat", "2", 50206, family=6),
        ],
    ),
    Capture(
        "quic-draft29.pcap",
        "2025-03-01T14:00:00Z",
        about="QUIC draft-29 (0xff00001d), ALPN h3-29",
        flows=[
            Flow(TT, "tiktok", "draft-29", 50291),
            Flow(TV, "tiktok", "draft-29", 50292),
            Flow(WC, "wechat", "draft-29", 50293),
            Flow(FAKE2, "lookalike", "draft-29", 50294),
            Flow(QQ, "tencent", "draft-29", 50295),
        ],
    ),
    Capture(
        "quic-bigch.pcap",
        "2025-03-01T15:00:00Z",
        about="ClientHello over 1200 bytes: its CRYPTO data spans two Initial packets (two datagrams)",
        flows=[
            Flow(TV, "tiktok", "1", 50301, big=True),
            Flow(WC, "wechat", "2", 50302, big=True),
            Flow(FAKE, "lookalike", "1", 50303, big=True),
            Flow(TT, "tiktok", "draft-29", 50304, big=True),
            Flow(TT, "tiktok", "1", 50305, family=6, big=True),
        ],
    ),
    Capture(
        "quic-retry.pcap",
        "2025-03-01T16:00:00Z",
        retry=True,
        about="the server sends Retry; the client's second Initial (new DCID, token) repeats the ClientHello",
        flows=[
            Flow(TT, "tiktok", "1", 50401, retry=True),
            Flow(WC, "wechat", "2", 50402, retry=True),
            Flow(QQ, "tencent", "draft-29", 50403, retry=True),
            Flow(TV, "tiktok", "1", 50404, retry=True, big=True),
        ],
    ),
    Capture(
        "quic-vn.pcap",
        "2025-03-01T17:00:00Z",
        server_versions=("1",),
        about="Version Negotiation: "
        "the server speaks only v1; the client's first Initial is v2 or draft-29, then v1 on the "
        "same ports",
        flows=[
            Flow(TT, "tiktok", "2,1", 50501, final_version="1"),
            Flow(WC, "wechat", "draft-29,1", 50502, final_version="1"),
        ],
    ),
]

# What a correct classifier reports for each name on these (documentation-range, unlisted)
# addresses on 2025-03-01, announced view. Checked against `classifier scan` of TLS-over-TCP
# flows with the same names, addresses and instants (the scanner's settled TLS path).
FACTS: dict[str, tuple[str | None, str | None, str | None, str, str]] = {
    TT: (
        "tiktok",
        "bytedance",
        "hosting",
        "block",
        "TikTok name from an address outside any CDN: hosting; PAFACA in effect from 2025-01-19",
    ),
    TV: (
        "tiktok",
        "bytedance",
        "hosting",
        "block",
        "TikTok API name from an address outside any CDN: hosting; PAFACA in effect from 2025-01-19",
    ),
    "v16-webapp.tiktok.com": (
        "tiktok",
        "bytedance",
        "hosting",
        "block",
        "TikTok name; the SNI alone (no DNS, no CDN prefix here) gives hosting",
    ),
    WC: (
        "wechat",
        "tencent",
        "hosting",
        "log",
        "WeChat name; the 2020 WeChat items were rescinded in June 2021",
    ),
    QQ: (
        None,
        "tencent",
        None,
        "log",
        "look-alike: Tencent's own site, operator-level rule only, not the app",
    ),
    FAKE: (None, None, None, "allow", "look-alike: not on a label boundary of tiktok.com"),
    FAKE2: (None, None, None, "allow", "look-alike: tiktok.com is not the registrable suffix"),
    GOOGLE: (None, None, None, "allow", "unrelated name"),
    "static.example.com": (
        None,
        None,
        None,
        "allow",
        "unrelated name on the same address as the TikTok CDN name",
    ),
}


def run_case(lab: netlab.Lab, cap: Capture, raw: Path) -> list[dict]:
    lab.start_quic(retry=cap.retry, versions=cap.server_versions)
    results = []
    with lab.capture("client", lab.client_if, raw, "udp port 443"):
        for f in cap.flows:
            addr = lab.addr(f.role, f.family)
            res = lab.quic_get(
                "client", addr, f.sni, version=f.version, sport=f.sport, big_client_hello=f.big, timeout=10
            )
            if not res.ok or f"sni={f.sni}\n" not in res.body:
                raise SystemExit(f"{cap.name}: {f.sni} v{f.version} failed: {res}\n{lab.log('quic')}")
            if res.detail.get("version") != f.final_version or res.detail.get("retry") != f.retry:
                raise SystemExit(f"{cap.name}: {f.sni}: unexpected {res.detail}")
            results.append(res.detail)
            time.sleep(0.3)  # the connection closes; flows never interleave
    return results


def rewrite(cap: Capture, raw: Path, out: Path) -> list[dict]:
    """Keep the first KEEP packets of each flow, move flow i to start + i minutes, fix checksums."""
    by_port: dict[int, list[tuple[float, bytes]]] = {}
    with raw.open("rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            udp = ip.data
            sport = udp.sport if udp.dport == 443 else udp.dport
            by_port.setdefault(sport, []).append((ts, buf))
    start = parse_instant(cap.start)
    packets: list[tuple[float, bytes]] = []
    rows = []
    for i, f in enumerate(cap.flows):
        got = by_port.get(f.sport)
        if not got:
            raise SystemExit(f"{cap.name}: no packets for {f.sni} (port {f.sport})")
        t0 = got[0][0]
        for ts, buf in got[:KEEP]:
            packets.append((start + 60 * i + round(ts - t0, 6), fix_checksum(buf)))
        rows.append({"flow": f, "first_ts": start + 60 * i, "packets": min(KEEP, len(got))})
    packets.sort(key=lambda p: p[0])
    with out.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB, snaplen=65535)
        for ts, buf in packets:
            writer.writepkt(buf, ts)
    return rows


def fix_checksum(buf: bytes) -> bytes:
    eth = dpkt.ethernet.Ethernet(buf)
    ip = eth.data
    ip.data.sum = 0
    if isinstance(ip, dpkt.ip.IP):
        ip.sum = 0
    else:  # dpkt does not fill in the UDP checksum over IPv6 by itself
        ip.data.sum = dpkt.in_cksum(ip6_pseudo(ip) + bytes(ip.data))
    return bytes(eth)


def ip6_pseudo(ip6: dpkt.ip6.IP6) -> bytes:
    udp = bytes(ip6.data)
    return ip6.src + ip6.dst + len(udp).to_bytes(4, "big") + b"\x00\x00\x00" + bytes([dpkt.ip.IP_PROTO_UDP])


def tshark_check(path: Path, cap: Capture) -> None:
    """Every flow shows the case's SNI and first version in tshark's decoding (when tshark is here)."""
    if shutil.which("tshark") is None:
        print(f"  tshark not installed: {path.name} not cross-checked")
        return
    proc = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(path),
            "-o",
            "udp.check_checksum:TRUE",
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-e",
            "udp.srcport",
            "-e",
            "quic.version",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "udp.checksum.status",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    seen: dict[int, tuple[str, str]] = {}
    for line in proc.stdout.splitlines():
        sport, versions, sni, status = line.split("\t")
        assert status.split(",")[0] == "1", f"{path.name}: bad UDP checksum: {line}"  # 1: good
        seen.setdefault(int(sport), (versions.split(",")[0], sni.split(",")[0]))
    want = {f.sport: (hex(netlab.QUIC_VERSIONS[f.first_version]), f.sni) for f in cap.flows}
    got = {p: (hex(int(v, 0)), s) for p, (v, s) in seen.items()}
    if got != want:
        raise SystemExit(f"{path.name}: tshark sees {got}, wanted {want}")


def expected_rows(cap: Capture, rows: list[dict]) -> list[dict]:
    out = []
    stem = cap.name.removesuffix(".pcap")
    for i, row in enumerate(rows, 1):
        f: Flow = row["flow"]
        app, operator, category, action, why = FACTS[f.sni]
        note = []
        if f.big:
            note.append("ClientHello spans two Initial packets")
        if f.retry:
            note.append("after a Retry")
        if f.first_version != f.final_version:
            note.append(
                f"Version Negotiation, then a second ClientHello in QUIC {f.final_version} "
                "(quic_version is the first's)"
            )
        out.append(
            {
                "flow": f"{stem}-{i:02d}",
                "capture": cap.name,
                "src": netlab.CLIENT4 if f.family == 4 else netlab.CLIENT6,
                "sport": f.sport,
                "dst": netlab.Lab.addr(f.role, f.family),
                "dport": 443,
                "proto": "udp",
                "first_ts": format_instant(row["first_ts"]),
                "hostname": f.sni,
                "app": app,
                "operator": operator,
                "category": category,
                "evidence_kinds": ["sni"],
                "action_announced": action,
                "quic_version": f.first_version,
                "why": "; ".join([f"QUIC {f.first_version}", *note, why]),
            }
        )
    return out


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    why = netlab.lab_unavailable()
    if why:
        print(f"build_quic: {why}", file=sys.stderr)
        return 2
    (outdir / "expected").mkdir(parents=True, exist_ok=True)
    expected: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="clf-quic-") as tmp, netlab.Lab("direct") as lab:
        for cap in CAPTURES:
            raw = Path(tmp) / cap.name
            run_case(lab, cap, raw)
            out = outdir / cap.name
            rows = rewrite(cap, raw, out)
            tshark_check(out, cap)
            expected += expected_rows(cap, rows)
            print(
                f"{out}: {out.stat().st_size} bytes, {len(rows)} flows, "
                f"{sum(r['packets'] for r in rows)} packets"
            )
    path = outdir / "expected" / "quic.json"
    path.write_text(json.dumps(expected, indent=2) + "\n")
    print(f"{path}: {len(expected)} flows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
