#!/usr/bin/env python3
"""Build the tunnel and link-type sample captures (pcaps/tunnel-*.pcap, pcaps/linktype-*.pcap).

Run as root from the repository root:
``.venv/bin/python pcaps/build_tunnels.py [OUTDIR] [NAME.pcap...]`` (default: the directory of this
file, every capture; names choose the tunnel captures to rebuild). Real clients and servers of the
namespace lab (``tests/netlab.py``, direct topology: Python ssl and OpenSSL s_client for TLS,
aioquic for QUIC, an HTTP client and server, dig and Unbound for DNS) talk through each tunnel while
tcpdump captures the underlay:

* VXLAN through the kernel (``ip link add ... type vxlan``: the one tunnel this kernel builds);
* GRE (keyed), IP-in-IP, 6in4, 4in6, Geneve, GTP-U and Teredo through ``pcaps/tunnel_endpoint.py``, a
  userspace endpoint on a TUN device in each namespace that writes the standard wire format (the
  kernel refuses gre, ipip, sit, ip6tnl and geneve devices: no modules);
* NFLOG live as well: ``tcpdump -i nflog:5`` beside an nft ``log group 5`` rule in the client.

Where no live path exists the frames are made from a live plain capture with scapy, following the
standard: ERSPAN type II and III (a mirror session to a collector, GRE + ERSPAN header + the
mirrored Ethernet frame), PPP (RFC 1661/1662, link type 9), PPP in HDLC-like framing (50), PPP with
direction (204) and IEEE 802.11 QoS data frames with LLC/SNAP behind radiotap (127).

Every capture is checked with tshark, which decodes all of these: each TLS/QUIC ClientHello a client
sent must show its SNI. Not byte-identical from run to run (ports, randoms, keys and times are the
stacks' own); pcaps/README.md lists what is stable.
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import netlab  # noqa: E402

ENDPOINT = Path(__file__).resolve().parent / "tunnel_endpoint.py"

# Overlay addresses (documentation ranges, host routes inside the client's /24): the tunnel's
# client and server ends. The servers' own addresses are routed through the tunnel.
OVERLAY = {"client": ("192.0.2.130", "2001:db8:1::130"), "servers": ("192.0.2.131", "2001:db8:1::131")}
UNDERLAY = {"client": (netlab.CLIENT4, netlab.CLIENT6), "servers": (netlab.GW_CLIENT4, netlab.GW_CLIENT6)}
SERVER_NETS = {4: ("198.51.100.0/24", "203.0.113.0/24"), 6: ("2001:db8:2::/64",)}
MTU = 1400  # room for any of the encapsulations on the 1500-byte underlay: no outer fragments
NFLOG_GROUP = 5
VXLAN_LINK_LOCAL = "fe80::131"  # the servers' end of the VXLAN: the IPv6 next hop (link-local)


@dataclasses.dataclass(frozen=True)
class Tunnel:
    name: str  # capture file name
    kind: str  # vxlan (kernel) or a tunnel_endpoint.py kind
    families: tuple[int, ...]  # inner IP versions carried
    outer: int = 4  # outer IP version
    bpf: str = ""
    options: tuple[str, ...] = ()  # tunnel_endpoint.py options for both ends
    client_options: tuple[str, ...] = ()
    server_options: tuple[str, ...] = ()


TUNNELS = [
    Tunnel("tunnel-vxlan.pcap", "vxlan", (4, 6), bpf="udp port 4789"),
    Tunnel("tunnel-gre.pcap", "gre", (4, 6), bpf="ip proto 47", options=("--key", "4660")),
    Tunnel("tunnel-ipip.pcap", "ipip", (4,), bpf="ip proto 4"),
    Tunnel("tunnel-6in4.pcap", "6in4", (6,), bpf="ip proto 41"),
    Tunnel("tunnel-4in6.pcap", "4in6", (4,), outer=6, bpf="ip6 proto 4"),
    Tunnel("tunnel-geneve.pcap", "geneve", (4, 6), bpf="udp port 6081", options=("--vni", "6081")),
    Tunnel(
        "tunnel-gtpu.pcap",
        "gtpu",
        (4, 6),
        bpf="udp port 2152",
        client_options=("--teid-out", "4097", "--pdu-session"),
        server_options=("--teid-out", "8194"),
    ),
    # Teredo: the client's end authenticates what it sends, the relay's end adds an origin
    # indication, so both optional headers of RFC 4380 5.1.1 precede the IPv6 packets.
    Tunnel(
        "tunnel-teredo.pcap",
        "teredo",
        (6,),
        bpf="udp port 3544",
        client_options=("--teredo-auth",),
        server_options=("--teredo-origin",),
    ),
]

# What every capture must show: (family, client, server role, SNI or name)
TRAFFIC = {
    4: [
        ("tls", "tiktok", "www.tiktok.com"),
        ("s_client", "wechat", "web.wechat.com"),
        ("quic", "tiktok", "m.tiktok.com"),
        ("http", "tencent", "www.qq.com"),
        ("dns", "resolver", "www.tiktok.com"),
    ],
    6: [
        ("tls", "wechat", "short.weixin.qq.com"),
        ("quic", "wechat", "web.wechat.com"),
        ("dns", "resolver", "web.wechat.com"),
    ],
}


def talk(lab: netlab.Lab, families: tuple[int, ...]) -> list[str]:
    """Run every client of TRAFFIC for these families; the SNIs a capture must show."""
    snis = []
    for family in families:
        for client, role, name in TRAFFIC[family]:
            addr = lab.addr(role, family)
            if client == "tls":
                res = lab.tls_get("client", addr, name, timeout=10)
            elif client == "s_client":
                res = lab.s_client("client", addr, name, timeout=10)
            elif client == "quic":
                res = lab.quic_get("client", addr, name, timeout=10)
            elif client == "http":
                res = lab.http_get("client", addr, name, timeout=10)
            else:
                res = lab.dig("client", addr, name, "A" if family == 4 else "AAAA", timeout=3)
            if not res.ok:
                raise netlab.LabError(f"{client} to {addr} ({name}) through the tunnel failed: {res}")
            if client in ("tls", "s_client", "quic"):
                snis.append(name)
            time.sleep(0.2)
    return snis


def setup(lab: netlab.Lab, tunnel: Tunnel) -> str:
    """Make the tunnel between client and servers and route the servers' addresses into it; the
    device name."""
    for ns in ("client", "servers"):
        lab._sysctl(ns, net__ipv4__conf__all__rp_filter="0", net__ipv4__conf__default__rp_filter="0")
    dev = "vx0" if tunnel.kind == "vxlan" else "tun0"
    for ns, peer in (("client", "servers"), ("servers", "client")):
        local, remote = UNDERLAY[ns][tunnel.outer == 6], UNDERLAY[peer][tunnel.outer == 6]
        if tunnel.kind == "vxlan":
            lower = lab.client_if if ns == "client" else lab.server_if
            lab._ip(
                "link",
                "add",
                dev,
                "type",
                "vxlan",
                "id",
                "4242",
                "local",
                local,
                "remote",
                remote,
                "dstport",
                "4789",
                "dev",
                lower,
                ns=ns,
            )
        else:
            extra = tunnel.client_options if ns == "client" else tunnel.server_options
            proc = lab.popen(
                ns,
                [
                    netlab.PYTHON,
                    ENDPOINT,
                    "--kind",
                    tunnel.kind,
                    "--dev",
                    dev,
                    "--local",
                    local,
                    "--remote",
                    remote,
                    *tunnel.options,
                    *extra,
                ],
                log=f"endpoint-{tunnel.kind}-{ns}.log",
            )
            lab._wait_for(proc, "READY", 10, what=f"{tunnel.kind} endpoint in {ns}")
        lab._ip("link", "set", dev, "mtu", str(MTU), "up", ns=ns)
    for ns, peer in (("client", "servers"), ("servers", "client")):
        for family in tunnel.families:
            mine, theirs = OVERLAY[ns][family == 6], OVERLAY[peer][family == 6]
            v = "-6" if family == 6 else "-4"
            lab._ip(
                v,
                "addr",
                "add",
                f"{mine}/{128 if family == 6 else 32}",
                "dev",
                dev,
                *(("nodad",) if family == 6 else ()),
                ns=ns,
            )
            if ns == "servers":
                if tunnel.kind == "vxlan" and family == 6:
                    lab._ip("-6", "addr", "add", f"{VXLAN_LINK_LOCAL}/64", "dev", dev, "nodad", ns=ns)
                lab._ip(v, "route", "add", theirs, "dev", dev, ns=ns)
                continue
            for net in SERVER_NETS[family]:
                if tunnel.kind == "vxlan":  # an Ethernet tunnel: the next hop is the far end
                    hop = theirs if family == 4 else VXLAN_LINK_LOCAL
                    lab._ip(v, "route", "add", net, "via", hop, "dev", dev, "onlink", "src", mine, ns=ns)
                else:
                    lab._ip(v, "route", "add", net, "dev", dev, "src", mine, ns=ns)
    return dev


def teardown(lab: netlab.Lab, dev: str) -> None:
    """Remove the tunnel devices and routes (and stop the endpoints), so the next tunnel starts clean."""
    for ns in ("client", "servers"):
        subprocess.run(["ip", "-n", lab.ns(ns), "link", "del", dev], capture_output=True)
    for proc in list(lab._procs):
        if "tunnel_endpoint.py" in " ".join(map(str, proc.args)):
            lab.stop(proc)


def capture_tunnel(lab: netlab.Lab, tunnel: Tunnel, out: Path) -> list[str]:
    """Build one tunnel, talk through it while tcpdump captures the underlay; the SNIs sent."""
    dev = setup(lab, tunnel)
    try:
        with lab.capture("client", lab.client_if, out, tunnel.bpf):
            snis = talk(lab, tunnel.families)
    finally:
        teardown(lab, dev)
    return snis


def capture_plain(lab: netlab.Lab, out: Path) -> list[str]:
    """Ethernet on the client's link, no tunnel: the frames the scapy-made captures carry."""
    with lab.capture("client", lab.client_if, out, "tcp port 443 or udp port 443"):
        return talk(lab, (4,))[:3]


def capture_nflog(lab: netlab.Lab, out: Path) -> list[str]:
    """tcpdump -i nflog:GROUP while nft logs every packet the client sends and receives."""
    rules = (
        "table inet clf_nflog {\n"
        f" chain out {{ type filter hook output priority 0; log group {NFLOG_GROUP}; }}\n"
        f" chain in {{ type filter hook input priority 0; log group {NFLOG_GROUP}; }}\n}}\n"
    )
    lab.run("client", ["nft", "-f", "-"], input=rules, check=True)
    try:
        with lab.capture("client", f"nflog:{NFLOG_GROUP}", out):
            return talk(lab, (4,))[:3]
    finally:
        lab.run("client", ["nft", "delete", "table", "inet", "clf_nflog"])


def derive(plain: Path, outdir: Path) -> dict[str, Path]:
    """The scapy-made captures, from the frames of a live plain capture."""
    from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
    from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
    from scapy.layers.inet import GRE, IP
    from scapy.layers.l2 import LLC, SNAP, Ether
    from scapy.utils import rdpcap

    frames = rdpcap(str(plain))
    client_mac = netlab.MACS["cli0"]
    made: dict[str, Path] = {}

    def write(name: str, linktype: int, packets: list[tuple[float, bytes]]) -> None:
        made[name] = write_pcap(outdir / name, linktype, packets)

    def sent(frame) -> bool:
        return frame[Ether].src == client_mac

    # ERSPAN: a switch (192.0.2.250) mirrors the client's port to a collector (192.0.2.251).
    for name, kind, session in (("tunnel-erspan2.pcap", 2, 7), ("tunnel-erspan3.pcap", 3, 8)):
        out = []
        for seq, f in enumerate(frames):
            if kind == 2:
                head = GRE(proto=0x88BE, seqnum_present=1, sequence_number=seq) / ERSPAN_II(
                    session_id=session
                )
            else:
                head = GRE(proto=0x22EB, seqnum_present=1, sequence_number=seq) / ERSPAN_III(
                    session_id=session, timestamp=int(f.time * 1e6) & 0xFFFFFFFF, gra=2
                )
            pkt = (
                Ether(src="02:00:00:00:02:50", dst="02:00:00:00:02:51")
                / IP(src="192.0.2.250", dst="192.0.2.251", id=seq & 0xFFFF)
                / head
                / Ether(bytes(f))
            )
            out.append((float(f.time), bytes(pkt)))
        write(name, 1, out)
    ip_packets = [(float(f.time), bytes(f[Ether].payload), sent(f)) for f in frames]
    write(
        "linktype-ppp.pcap",
        9,
        [(t, (b"\xff\x03\x00\x21" if p[0] >> 4 == 4 else b"\xff\x03\x00\x57") + p) for t, p, _ in ip_packets],
    )
    write(
        "linktype-ppp-hdlc.pcap",
        50,
        [(t, (b"\xff\x03\x00\x21" if p[0] >> 4 == 4 else b"\xff\x03\x00\x57") + p) for t, p, _ in ip_packets],
    )
    write(
        "linktype-ppp-dir.pcap",
        204,
        [(t, (b"\x01" if out else b"\x00") + b"\xff\x03\x00\x21" + p) for t, p, out in ip_packets],
    )
    ap, station = "02:00:00:00:0a:01", client_mac
    radio = []
    for t, p, out in ip_packets:
        if out:  # station to access point: to-DS, addresses BSSID, source, destination
            dot11 = Dot11(type=2, subtype=8, FCfield=1, addr1=ap, addr2=station, addr3=netlab.MACS["srv0"])
        else:
            dot11 = Dot11(type=2, subtype=8, FCfield=2, addr1=station, addr2=ap, addr3=netlab.MACS["srv0"])
        frame = (
            RadioTap(
                present="Flags+Rate+Channel",
                Flags=0,
                Rate=108,
                ChannelFrequency=5180,
                ChannelFlags="OFDM+5GHz",
            )
            / dot11
            / Dot11QoS(TID=0)
            / LLC()
            / SNAP(code=0x0800)
        )
        radio.append((t, bytes(frame) + p))
    write("linktype-radiotap.pcap", 127, radio)
    return made


def write_pcap(path: Path, linktype: int, packets: list[tuple[float, bytes]]) -> Path:
    """A classic little-endian microsecond pcap of (time, frame) records."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for ts, raw in packets:
            usec = round(ts * 1e6)
            f.write(struct.pack("<IIII", usec // 1000000, usec % 1000000, len(raw), len(raw)) + raw)
    return path


def tshark_snis(path: Path) -> list[str]:
    """The SNI of every ClientHello tshark decodes (TLS and QUIC)."""
    proc = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(path),
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "fields",
            "-e",
            "tls.handshake.extensions_server_name",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted({s for line in proc.stdout.split() for s in line.split(",") if s})


def check(path: Path, want: list[str]) -> None:
    if shutil.which("tshark") is None:
        print(f"{path}: tshark is not installed, not checked", file=sys.stderr)
        return
    got = tshark_snis(path)
    if got != sorted(set(want)):
        raise SystemExit(f"{path}: tshark shows ClientHellos for {got}, the clients sent {sorted(set(want))}")


def main(argv: list[str]) -> int:
    names = [a for a in argv[1:] if a.endswith(".pcap")]
    dirs = [a for a in argv[1:] if not a.endswith(".pcap")]
    outdir = Path(dirs[0]) if dirs else Path(__file__).resolve().parent
    unknown = set(names) - {t.name for t in TUNNELS}
    if unknown:
        print(f"build_tunnels: no tunnel capture named {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    why = netlab.lab_unavailable()
    if why:
        print(f"build_tunnels: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="clf-tunnels-") as tmp, netlab.Lab("direct") as lab:
        lab.start_all()
        for tunnel in TUNNELS:
            if names and tunnel.name not in names:
                continue
            out = outdir / tunnel.name
            snis = capture_tunnel(lab, tunnel, out)
            check(out, snis)
            print(f"{out}: {out.stat().st_size} bytes, ClientHellos for {', '.join(snis)}")
        if names:
            return 0
        out = outdir / "linktype-nflog.pcap"
        snis = capture_nflog(lab, out)
        check(out, snis)
        print(f"{out}: {out.stat().st_size} bytes, ClientHellos for {', '.join(snis)}")
        plain = Path(tmp) / "plain.pcap"
        snis = capture_plain(lab, plain)
        for path in derive(plain, outdir).values():
            check(path, snis)
            print(f"{path}: {path.stat().st_size} bytes (scapy, from a live capture)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
