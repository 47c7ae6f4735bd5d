"""Starting inputs for every target, cut out of the captures at run time.

The project's own reader, decoder and stream reassembly walk ``pcaps/`` and the real captures
in ``../shared/pcaps/real`` (nothing of those is copied into the repository) and keep, per
target, the inputs a mutation should start from: ClientHellos, HTTP heads, mmtls greetings, DNS
messages and DNS-over-TCP streams, the datagrams of QUIC flows (and the decrypted plaintext of
their Initials), frames of every link type and shape, the geometry of TCP segments and IP
fragments, and small whole captures. MRT seeds are record windows of ``../shared/mrt`` plus
records made with the test suite's MRT writer. Each seed is stored in the target's encoding.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from fuzz import quic_initial
from fuzz.surface import (
    DPORT,
    FRAG_KEY,
    LINKTYPES,
    PAYLOAD,
    PROTO,
    SPORT,
    SRC,
    TUNNEL,
    UNSUPPORTED_LINKTYPE,
    CaptureError,
    MalformedError,
    Signatures,
    Stream,
    decode,
    fragment,
    http,
    mmtls,
    open_capture,
    prelude,
    quic,
    tls,
)
from fuzz.targets import PRELUDE_BANNERS

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CLASSIFIER_SHARED", ROOT.parent / "shared"))

MAX_RECORDS_PER_CAPTURE = 4000  # enough to meet every kind of flow a capture has
MAX_FILE_SEED = 60000  # whole-file seeds stay under the targets' 64 KiB max_len
PER_TARGET = {"capture": 48, "pipeline": 32, "mrt": 40}
DEFAULT_PER_TARGET = 400
_STREAM_BYTES = 8192
_SEGMENTS_PER_FLOW = 32
_DATAGRAMS_PER_FLOW = 12
_DNS_PORT = 53


def capture_paths() -> list[Path]:
    """The project's sample captures, then the real ones when ../shared is there."""
    own = sorted(p for p in (ROOT / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
    real_dir = SHARED / "pcaps" / "real"
    if not real_dir.is_dir():
        return own
    return own + sorted(p for p in real_dir.iterdir() if p.suffix in (".pcap", ".pcapng"))


def mrt_paths() -> list[Path]:
    d = SHARED / "mrt"
    return sorted(p for p in d.iterdir() if ".mrt" in p.name or p.suffix == ".gz") if d.is_dir() else []


class Seeds:
    """Seeds per target, deduplicated, at most a fixed number each."""

    def __init__(self) -> None:
        self.by_target: dict[str, dict[str, bytes]] = defaultdict(dict)

    def add(self, target: str, data: bytes) -> None:
        kept = self.by_target[target]
        if len(kept) < PER_TARGET.get(target, DEFAULT_PER_TARGET) and data:
            kept.setdefault(hashlib.sha1(data).hexdigest(), data)

    def write(self, out: Path) -> dict[str, int]:
        counts = {}
        for target, kept in sorted(self.by_target.items()):
            d = out / target
            d.mkdir(parents=True, exist_ok=True)
            for name, data in kept.items():
                (d / name).write_bytes(data)
            counts[target] = len(kept)
        return counts


# --- captures -------------------------------------------------------------------------------


def _pcap(linktype: int, records: Iterable[tuple[float, bytes]]) -> bytes:
    """A classic little-endian microsecond pcap of ``records``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for ts, frame in records:
        sec = int(ts)
        usec = round((ts - sec) * 1e6) % 1_000_000
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


class _Flow:
    __slots__ = ("client", "datagrams", "dns", "segments", "stream")

    def __init__(self, client: tuple) -> None:
        self.client = client  # (address, port) of the side that spoke first / sent the SYN
        self.stream = Stream(_STREAM_BYTES)
        self.segments: list[tuple[int, int, bool]] = []  # client (seq, length, syn) in arrival order
        self.datagrams: list[tuple[bytes, bool]] = []  # UDP payloads, from_client
        self.dns = False


def _from_capture(path: Path, seeds: Seeds) -> None:
    try:
        reader = open_capture(str(path))
    except CaptureError:
        return
    flows: dict[tuple, _Flow] = {}
    fragments: dict[tuple, list[tuple[int, bool, int]]] = defaultdict(list)
    shapes: set[tuple] = set()
    kept: list[tuple[float, int, bytes]] = []
    size = 24
    choices = (*LINKTYPES, UNSUPPORTED_LINKTYPE)
    with reader:
        for n, (ts, linktype, frame, _iface) in enumerate(reader):
            if n >= MAX_RECORDS_PER_CAPTURE:
                break
            if size + 16 + len(frame) <= MAX_FILE_SEED and (not kept or kept[0][1] == linktype):
                kept.append((ts, linktype, frame))
                size += 16 + len(frame)
            try:
                d = decode(linktype, frame)
            except MalformedError as err:
                d = None
                shape: tuple = (linktype, err.reason)
            else:
                shape = (
                    (linktype, None)
                    if d is None
                    else (
                        linktype,
                        d[PROTO],
                        len(d[SRC]),
                        d[FRAG_KEY] is not None,
                        bool(d[PAYLOAD]),
                        min(d[SPORT], d[DPORT]) < 1024,
                        tuple(t.kind for t in d[TUNNEL] or ()),
                    )
                )
            if shape not in shapes and linktype in choices:
                shapes.add(shape)
                seeds.add("decode", bytes([choices.index(linktype)]) + frame)
            if d is None:
                continue
            proto, src, sport, dst, dport, flags, seq, payload, _ip_len, frag_key, _tunnel = d
            if frag_key is not None:
                piece = fragment(linktype, frame)
                if piece is not None:
                    fragments[frag_key].append((piece[0], piece[1], len(piece[2])))
                if sport < 0:
                    continue
            key = (proto, *sorted(((src, sport), (dst, dport))))
            flow = flows.get(key)
            if flow is None:
                # A SYN-ACK, or a DNS answer, comes from the server: the other side is the client.
                synack = proto == 6 and flags & 0x12 == 0x12
                answer = proto == 17 and sport == _DNS_PORT and dport != _DNS_PORT
                client = (dst, dport) if synack or answer else (src, sport)
                flow = flows[key] = _Flow(client)
                flow.dns = _DNS_PORT in (sport, dport)
            from_client = (src, sport) == flow.client
            if proto == 17:
                if len(flow.datagrams) < _DATAGRAMS_PER_FLOW:
                    flow.datagrams.append((payload, from_client))
                continue
            if from_client:
                if flags & 0x02:
                    flow.stream.syn(seq)
                if len(flow.segments) < _SEGMENTS_PER_FLOW and (payload or flags & 0x02):
                    flow.segments.append((seq, len(payload), bool(flags & 0x02)))
                if payload:
                    flow.stream.add(seq, payload)
    if kept:
        whole = path.read_bytes() if path.stat().st_size <= MAX_FILE_SEED else None
        small = _pcap(kept[0][1], ((ts, frame) for ts, _lt, frame in kept))
        for body in filter(None, (whole, small)):
            seeds.add("capture", b"\x00" + body)
            seeds.add("pipeline", b"\x00" + body)
        seeds.add("capture", b"\x01" + small)  # read through gzip
        seeds.add("pipeline", b"\x03" + small)  # gzip, tiny flow table
    for flow in flows.values():
        _flow_seeds(flow, seeds)
    for pieces in fragments.values():
        ops = b"".join(struct.pack(">BBHBH", 0, 1, off, int(more), n % 2048) for off, more, n in pieces)
        seeds.add("defrag", b"\x04" + ops)


def _prelude_seed(data: bytes, seeds: Seeds) -> None:
    """A client stream that starts with a prelude, with the server greeting that lets it count."""
    for index, banner in enumerate(PRELUDE_BANNERS):
        found = prelude.find_tls_start(data, banner)
        if found is not None and found is not prelude.NOT_A_PRELUDE:
            seeds.add("prelude", bytes([index]) + data[: prelude.MAX_PRELUDE_BYTES])
            return


def _flow_seeds(flow: _Flow, seeds: Seeds) -> None:
    data = bytes(flow.stream.data)
    if flow.dns:
        if data:
            seeds.add("dns", data)  # DNS over TCP: length-prefixed messages
        for payload, _ in flow.datagrams:
            seeds.add("dns", payload)
    elif data:
        if tls.looks_like_tls(data):
            seeds.add("tls", data)
        elif http.looks_like_http_request(data[:8]):
            seeds.add("http", data)
        elif mmtls.looks_like_mmtls(data[:3]):
            seeds.add("mmtls", data)
        else:
            _prelude_seed(data, seeds)
    if flow.segments:
        first_seq = flow.segments[0][0]
        syn = flow.segments[0][2]
        base = (first_seq + 1) & 0xFFFFFFFF if syn else first_seq
        ops = bytearray()
        prev = 0
        for seq, length, is_syn in flow.segments:
            if is_syn:
                continue
            rel = (seq - base + 0x80000000) % 0x100000000 - 0x80000000
            step = rel - prev
            prev = rel
            if -0x8000 < step < 0x8000 and length:
                ops += struct.pack(">HH", step & 0xFFFF, length)
        if ops:
            seeds.add("reassembly", struct.pack(">HIB", 1024, base, int(syn)) + bytes(ops))
    if flow.datagrams and quic.looks_like_quic(flow.datagrams[0][0]):
        seeds.add(
            "quic",
            b"\x00"
            + b"".join(
                bytes([0 if c else 1]) + struct.pack(">H", len(d)) + d
                for d, c in flow.datagrams
                if len(d) < 0x10000
            ),
        )
        plains = [quic_initial.unprotect(d) for d, c in flow.datagrams if c]
        plains = [p for p in plains if p is not None]
        if plains:
            version, dcid, _ = plains[0]
            index = (
                quic_initial.ENCRYPTED_VERSIONS.index(version)
                if version in quic_initial.ENCRYPTED_VERSIONS
                else 0
            )
            body = b"".join(struct.pack(">H", len(p)) + p for v, c, p in plains if v == version and c == dcid)
            seeds.add("quic", bytes([1, index, len(dcid)]) + dcid + body)


# --- MRT ------------------------------------------------------------------------------------


def _mrt_records(data: bytes, limit: int) -> list[bytes]:
    out = []
    pos = 0
    while pos + 12 <= len(data) and len(out) < limit:
        (length,) = struct.unpack_from(">I", data, pos + 8)
        out.append(data[pos : pos + 12 + length])
        pos += 12 + length
    return out


def _from_mrt(path: Path, seeds: Seeds) -> None:
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as f:
            data = f.read(4 << 20)
    except (OSError, EOFError):
        return
    records = _mrt_records(data, 20000)
    if not records:
        return
    # A RIB needs its PEER_INDEX_TABLE first; updates stand alone.
    first = records[0] if struct.unpack_from(">HH", records[0], 4) == (13, 1) else b""
    for start in (0, 1, len(records) // 3, len(records) // 2, len(records) - 40):
        window = b""
        for rec in records[max(start, 0) :]:
            if len(first) + len(window) + len(rec) > 16000 - 1:
                break
            window += rec
        body = (first if start else b"") + window
        seeds.add("mrt", b"\x00" + body)
        seeds.add("mrt", b"\x04" + body)


def _writer_seeds(seeds: Seeds) -> None:
    """Records of every kind, from the test suite's MRT writer, on the shipped operator ASNs."""
    spec = importlib.util.spec_from_file_location("_mrtwriter", ROOT / "tests" / "test_bgp_mrtwriter.py")
    if spec is None or spec.loader is None:
        return
    w = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(w)
    operators = sorted(Signatures.load().operator_by_asn)
    if not operators:
        return
    op = operators[0]
    attrs = w.rib_attrs(w.seq(64500, op))
    rib = (
        w.peer_index_table(1, [("192.0.2.1", 64500), ("2001:db8::1", 64501)])
        + w.rib(1, 0, "203.0.113.0/24", [(0, 1, attrs, None), (1, 1, attrs, None)])
        + w.rib(1, 1, "2001:db8:1::/48", [(1, 1, w.rib_attrs(w.seq(64501, op), "2001:db8::9"), None)])
        + w.rib(1, 2, "198.51.100.0/24", [(0, 1, attrs, 7)], addpath=True)
    )
    update = w.bgp_update(
        ["198.51.100.0/24"],
        w.origin_igp() + w.as_path(w.seq(64500, op)) + w.next_hop("192.0.2.9"),
        ["203.0.113.0/24"],
    )
    mp = w.bgp_update(
        (),
        w.origin_igp()
        + w.as_path(w.seq(64500, op))
        + w.mp_reach("2001:db8::9", ["2001:db8:2::/48"])
        + w.mp_unreach(["2001:db8:3::/48"]),
    )
    updates = (
        w.bgp4mp_message(2, 64500, "192.0.2.1", update)
        + w.bgp4mp_message(3, 64500, "2001:db8::1", mp, usec=5)
        + w.bgp4mp_message(4, 64500, "192.0.2.1", update, as4=False)
        + w.bgp4mp_message(5, 64500, "192.0.2.1", update, addpath=False)
        + w.bgp4mp_message(6, 64500, "192.0.2.1", w.keepalive())
        + w.bgp4mp_state(7, 64500, "192.0.2.1", w.ESTABLISHED, w.IDLE)
    )
    v1 = w.table_dump_v1(
        8,
        "203.0.113.0/24",
        "192.0.2.1",
        64500,
        w.origin_igp() + w.as_path(w.seq(64500, op & 0xFFFF), as4=False),
        1,
    )
    for body in (rib, updates, v1, rib + updates + v1):
        seeds.add("mrt", b"\x00" + body)
        seeds.add("mrt", b"\x04" + body)


def collect(out: Path) -> dict[str, int]:
    """Extract every target's seeds into ``out/<target>/``; returns the count per target."""
    seeds = Seeds()
    for path in capture_paths():
        _from_capture(path, seeds)
    for path in mrt_paths():
        _from_mrt(path, seeds)
    _writer_seeds(seeds)
    # The structured targets need no capture to start from: one plain input each.
    op = struct.Struct(">BBHBH")
    seeds.add("defrag", b"\x04" + op.pack(0, 1, 0, 1, 16) + op.pack(0, 1, 16, 0, 8))
    seeds.add("reassembly", struct.pack(">HIB", 64, 0xFFFFFFF0, 1) + struct.pack(">HHHH", 0, 20, 20, 30))
    return seeds.write(out)
