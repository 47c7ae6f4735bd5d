#!/usr/bin/env python3
"""Build pcaps/preludes.pcap and pcaps/tfo.pcap: TLS after a prelude, and in a SYN, from real stacks.

Run as root from the repository root: ``.venv/bin/python pcaps/build_preludes.py [OUTDIR]`` (default:
the directory of this file). The lab of ``tests/netlab.py`` (direct topology) runs the servers of
``tests/preludelab.py``; the clients are curl through SOCKS4/4a/5, ``openssl s_client -starttls``
for SMTP, IMAP, POP3, FTP, LDAP, XMPP and PostgreSQL, a Python RDP client (X.224, then TLS), and
curl with TCP Fast Open (accepted by a TFO listener, and refused by the plain TLS server so the
client sends its ClientHello again after the handshake). tcpdump captures the client's interface;
flow *i* is then moved to start at the capture's base instant + *i* minutes (offsets within a flow
kept), TCP checksums (left partial by the veth) are recomputed, and tshark must show every flow's
SNI. ``expected/preludes.json`` lists each flow with its prelude and SNI. README-preludes.md says it all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import netlab  # noqa: E402
import preludelab  # noqa: E402

from classifier.timeutil import format_instant, parse_instant  # noqa: E402

TT, WC = "www.tiktok.com", "web.wechat.com"
PROXY = netlab.Lab.addr("unrelated")  # the SOCKS proxy's address: names nothing by itself


@dataclass
class Case:
    sni: str
    prelude: str | None  # the record's prelude field
    run: Callable[[netlab.Lab], netlab.Result]
    socks: str | None = None  # the target of the socks evidence
    why: str = ""


def curl_socks(option: str, sni: str, *, resolve: bool) -> Callable[[netlab.Lab], netlab.Result]:
    def run(lab: netlab.Lab) -> netlab.Result:
        args = [option, f"{PROXY}:{preludelab.SOCKS_PORT}"]
        if resolve:  # the client resolves the name itself and sends the proxy an address
            args += ["--resolve", f"{sni}:443:{lab.addr(netlab.NAMES[sni])}"]
        return lab.curl("client", f"https://{sni}/", *args, timeout=8)

    return run


def starttls(proto: str, sni: str) -> Callable[[netlab.Lab], netlab.Result]:
    return lambda lab: preludelab.s_client_starttls(lab, proto, lab.addr(netlab.NAMES[sni]), sni)


def rdp(sni: str) -> Callable[[netlab.Lab], netlab.Result]:
    return lambda lab: preludelab.rdp_client(lab, lab.addr(netlab.NAMES[sni]), sni)


def tfo(sni: str, port: int) -> Callable[[netlab.Lab], netlab.Result]:
    def run(lab: netlab.Lab) -> netlab.Result:
        addr = lab.addr(netlab.NAMES[sni])
        return lab.curl(
            "client",
            f"https://{sni}:{port}/",
            "--tcp-fastopen",
            "--resolve",
            f"{sni}:{port}:{addr}",
            timeout=8,
        )

    return run


PRELUDES = [
    Case(
        TT,
        "socks5",
        curl_socks("--socks5-hostname", TT, resolve=False),
        f"{TT}:443",
        "curl --socks5-hostname: the proxy gets the name",
    ),
    Case(
        WC,
        "socks4",
        curl_socks("--socks4a", WC, resolve=False),
        f"{WC}:443",
        "curl --socks4a: the proxy gets the name",
    ),
    Case(
        TT,
        "socks5",
        curl_socks("--socks5", TT, resolve=True),
        "198.51.100.10:443",
        "curl --socks5: the proxy gets an address",
    ),
    Case(
        WC,
        "socks4",
        curl_socks("--socks4", WC, resolve=True),
        "198.51.100.20:443",
        "curl --socks4: the proxy gets an address",
    ),
    *(
        Case(TT, proto, starttls(proto, TT), why=f"openssl s_client -starttls {proto}")
        for proto in ("smtp", "imap", "pop3", "ftp", "ldap", "xmpp", "postgres")
    ),
    Case(WC, "rdp", rdp(WC), why="X.224 Connection Request (RDP_NEG_REQ: TLS), then TLS"),
]
TFO = [
    Case(
        TT, None, tfo(TT, preludelab.TFO_PORT), why="TCP Fast Open accepted: the ClientHello only in the SYN"
    ),
    Case(WC, None, tfo(WC, 443), why="TCP Fast Open refused: the ClientHello in the SYN, then again"),
]
CAPTURES = {"preludes.pcap": ("2025-03-02T12:00:00Z", PRELUDES), "tfo.pcap": ("2025-03-02T13:00:00Z", TFO)}


def client_port(buf: bytes) -> int | None:
    ip = dpkt.ethernet.Ethernet(buf).data
    if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.tcp.TCP):
        return None
    tcp = ip.data
    return tcp.sport if tcp.sport > tcp.dport else tcp.dport  # the client's port is the ephemeral one


def fix_checksum(buf: bytes) -> bytes:
    """Recompute the TCP checksum the veth left partial (and the IPv4 header's)."""
    eth = dpkt.ethernet.Ethernet(buf)
    ip = eth.data
    ip.data.sum = 0
    if isinstance(ip, dpkt.ip.IP):
        ip.sum = 0
    else:
        seg = bytes(ip.data)
        pseudo = (
            ip.src + ip.dst + len(seg).to_bytes(4, "big") + b"\x00\x00\x00" + bytes([dpkt.ip.IP_PROTO_TCP])
        )
        ip.data.sum = dpkt.in_cksum(pseudo + seg)
    return bytes(eth)


def rewrite(raw: Path, out: Path, start: float) -> list[tuple[int, int]]:
    """Flow i (in order of first packet) starts at start + i minutes; returns (client port, packets)."""
    flows: dict[int, list[tuple[float, bytes]]] = {}
    with raw.open("rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            port = client_port(buf)
            if port is not None:
                flows.setdefault(port, []).append((ts, buf))
    packets = []
    order = sorted(flows, key=lambda p: flows[p][0][0])
    for i, port in enumerate(order):
        t0 = flows[port][0][0]
        packets += [(start + 60 * i + round(ts - t0, 6), fix_checksum(buf)) for ts, buf in flows[port]]
    packets.sort(key=lambda p: p[0])
    with out.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB, snaplen=65535)
        for ts, buf in packets:
            writer.writepkt(buf, ts)
    return [(port, len(flows[port])) for port in order]


def tshark_snis(path: Path) -> dict[int, str]:
    """Client port -> SNI of the first ClientHello tshark decodes (decoded as TLS on any port)."""
    ports = sorted({*preludelab.PORTS.values(), preludelab.TFO_PORT})
    decode = [a for p in ports if p != preludelab.SOCKS_PORT for a in ("-d", f"tcp.port=={p},tls")]
    proc = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(path),
            *decode,
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tls.handshake.extensions_server_name",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    seen: dict[int, str] = {}
    for line in proc.stdout.splitlines():
        port, sni = line.split("\t")
        seen.setdefault(int(port), sni.split(",")[0])
    return seen


def build(lab: netlab.Lab, name: str, start: str, cases: list[Case], outdir: Path, tmp: Path) -> list[dict]:
    raw = tmp / name
    with lab.capture("client", lab.client_if, raw, "tcp"):
        for case in cases:
            res = case.run(lab)
            if not res.ok:
                raise SystemExit(f"{name}: {case.why} failed: {res}\n{lab.log('preludes')}")
            time.sleep(0.3)  # one connection at a time: flows never interleave
    out = outdir / name
    flows = rewrite(raw, out, parse_instant(start))
    if len(flows) != len(cases):
        raise SystemExit(f"{name}: {len(flows)} TCP flows for {len(cases)} cases")
    if shutil.which("tshark"):
        snis = tshark_snis(out)
        got = [snis.get(port) for port, _ in flows]
        if got != [c.sni for c in cases]:
            raise SystemExit(f"{name}: tshark sees SNIs {got}, wanted {[c.sni for c in cases]}")
    print(f"{out}: {out.stat().st_size} bytes, {len(flows)} flows, {sum(n for _, n in flows)} packets")
    rows = []
    for i, (case, (port, packets)) in enumerate(zip(cases, flows, strict=True)):
        rows.append(
            {
                "capture": name,
                "sport": port,
                "first_ts": format_instant(parse_instant(start) + 60 * i),
                "sni": case.sni,
                "prelude": case.prelude,
                "socks": case.socks,
                "packets": packets,
                "why": case.why,
            }
        )
    return rows


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    why = netlab.lab_unavailable()
    if why:
        print(f"build_preludes: {why}", file=sys.stderr)
        return 2
    (outdir / "expected").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="clf-preludes-") as tmp, netlab.Lab("direct") as lab:
        lab.start_tls()
        preludelab.start(lab)
        lab.run("client", ["sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=5"], check=True)  # client, no cookie
        lab.run("servers", ["sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=0x202"], check=True)  # no cookie
        for name, (start, cases) in CAPTURES.items():
            rows += build(lab, name, start, cases, outdir, Path(tmp))
    path = outdir / "expected" / "preludes.json"
    path.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{path}: {len(rows)} flows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
