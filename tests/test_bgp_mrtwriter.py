"""An MRT writer for synthetic test data (RFC 6396, RFC 8050, RFC 4271, RFC 4760, RFC 6793).

There is no public MRT capture with ByteDance ASNs, so the BGP tests and the benchmark build their
inputs with these functions, byte by byte with struct. The tests at the bottom check the writer
against mrtparse directly, so a wrong byte here shows up here and not as a puzzling audit result.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence

# MRT types / subtypes
TABLE_DUMP, TABLE_DUMP_V2, BGP4MP, BGP4MP_ET = 12, 13, 16, 17
PEER_INDEX_TABLE = 1
RIB_IPV4_UNICAST, RIB_IPV6_UNICAST = 2, 4
RIB_IPV4_UNICAST_ADDPATH, RIB_IPV6_UNICAST_ADDPATH = 8, 10
BGP4MP_STATE_CHANGE, BGP4MP_MESSAGE, BGP4MP_MESSAGE_AS4, BGP4MP_STATE_CHANGE_AS4 = 0, 1, 4, 5
BGP4MP_MESSAGE_AS4_ADDPATH = 9
# BGP
AS_SET, AS_SEQUENCE = 1, 2
ORIGIN, AS_PATH, NEXT_HOP, MP_REACH, MP_UNREACH, AS4_PATH = 1, 2, 3, 14, 15, 17
IDLE, ESTABLISHED = 1, 6
AS_TRANS = 23456

Segment = tuple[int, Sequence[int]]


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def ip(addr: str) -> bytes:
    return socket.inet_pton(_family(addr), addr)


def nlri(prefix: str, path_id: int | None = None) -> bytes:
    """One NLRI: (path id,) length, the significant bytes of the address."""
    addr, length = prefix.split("/")
    n = int(length)
    return (
        (struct.pack(">I", path_id) if path_id is not None else b"") + bytes([n]) + ip(addr)[: (n + 7) // 8]
    )


def attr(kind: int, value: bytes, flags: int = 0x40) -> bytes:
    if len(value) > 255:
        return struct.pack(">BBH", flags | 0x10, kind, len(value)) + value
    return struct.pack(">BBB", flags, kind, len(value)) + value


def as_path(segments: Iterable[Segment], as4: bool = True, kind: int = AS_PATH) -> bytes:
    fmt = ">I" if as4 else ">H"
    value = b"".join(
        struct.pack(">BB", t, len(asns)) + b"".join(struct.pack(fmt, a) for a in asns) for t, asns in segments
    )
    return attr(kind, value, 0x40 if kind == AS_PATH else 0xC0)


def seq(*asns: int) -> list[Segment]:
    return [(AS_SEQUENCE, asns)]


def origin_igp() -> bytes:
    return attr(ORIGIN, b"\x00")


def next_hop(addr: str) -> bytes:
    return attr(NEXT_HOP, ip(addr))


def mp_reach(
    next_hop_addr: str, prefixes: Iterable[str], path_ids: Iterable[int | None] | None = None
) -> bytes:
    nh = ip(next_hop_addr)
    afi = 2 if len(nh) == 16 else 1
    ids = list(path_ids) if path_ids is not None else None
    body = b"".join(nlri(p, ids[i] if ids else None) for i, p in enumerate(prefixes))
    return attr(MP_REACH, struct.pack(">HBB", afi, 1, len(nh)) + nh + b"\x00" + body, 0x80)


def mp_unreach(prefixes: Iterable[str], afi: int = 2) -> bytes:
    return attr(MP_UNREACH, struct.pack(">HB", afi, 1) + b"".join(nlri(p) for p in prefixes), 0x80)


def rib_mp_next_hop(next_hop_addr: str) -> bytes:
    """MP_REACH_NLRI as RFC 6396 4.3.4 abbreviates it inside RIB entries: next hop only."""
    nh = ip(next_hop_addr)
    return attr(MP_REACH, bytes([len(nh)]) + nh, 0x80)


def record(ts: int, mtype: int, subtype: int, body: bytes, usec: int | None = None) -> bytes:
    if usec is not None:
        body = struct.pack(">I", usec) + body
    return struct.pack(">IHHI", ts, mtype, subtype, len(body)) + body


# -- TABLE_DUMP_V2 ---------------------------------------------------------------------------


def peer_index_table(
    ts: int, peers: Sequence[tuple[str, int]], collector: str = "192.0.2.250", view: str = ""
) -> bytes:
    """PEER_INDEX_TABLE: peers as (address, ASN); every peer gets a 4-byte AS field."""
    body = ip(collector) + struct.pack(">H", len(view)) + view.encode() + struct.pack(">H", len(peers))
    for addr, asn in peers:
        v6 = _family(addr) == socket.AF_INET6
        body += bytes([(0x01 if v6 else 0) | 0x02]) + ip("192.0.2.1") + ip(addr) + struct.pack(">I", asn)
    return record(ts, TABLE_DUMP_V2, PEER_INDEX_TABLE, body)


def rib(
    ts: int,
    seq_no: int,
    prefix: str,
    entries: Sequence[tuple[int, int, bytes, int | None]],
    addpath: bool = False,
) -> bytes:
    """RIB_IPV4/IPV6_UNICAST(_ADDPATH): entries are (peer index, originated, attributes, path id)."""
    v6 = ":" in prefix
    subtype = {
        (False, False): RIB_IPV4_UNICAST,
        (True, False): RIB_IPV6_UNICAST,
        (False, True): RIB_IPV4_UNICAST_ADDPATH,
        (True, True): RIB_IPV6_UNICAST_ADDPATH,
    }[(v6, addpath)]
    body = struct.pack(">I", seq_no) + nlri(prefix) + struct.pack(">H", len(entries))
    for peer_index, originated, attrs, path_id in entries:
        body += struct.pack(">HI", peer_index, originated)
        if addpath:
            body += struct.pack(">I", path_id or 0)
        body += struct.pack(">H", len(attrs)) + attrs
    return record(ts, TABLE_DUMP_V2, subtype, body)


def rib_attrs(path: Iterable[Segment], nh: str = "192.0.2.9") -> bytes:
    if ":" in nh:
        return origin_igp() + as_path(path) + rib_mp_next_hop(nh)
    return origin_igp() + as_path(path) + next_hop(nh)


# -- BGP4MP ----------------------------------------------------------------------------------


def bgp_update(
    withdrawn: Iterable[str] = (),
    attrs: bytes = b"",
    announced: Iterable[str] = (),
    path_id: int | None = None,
) -> bytes:
    """An UPDATE; with ``path_id`` every NLRI carries it (ADD-PATH, RFC 7911)."""
    w = b"".join(nlri(p, path_id) for p in withdrawn)
    n = b"".join(nlri(p, path_id) for p in announced)
    body = struct.pack(">H", len(w)) + w + struct.pack(">H", len(attrs)) + attrs + n
    return b"\xff" * 16 + struct.pack(">HB", 19 + len(body), 2) + body


def keepalive() -> bytes:
    return b"\xff" * 16 + struct.pack(">HB", 19, 4)


def _bgp4mp_head(peer_as: int, local_as: int, peer_ip: str, local_ip: str, as4: bool) -> bytes:
    fmt = ">II" if as4 else ">HH"
    afi = 2 if _family(peer_ip) == socket.AF_INET6 else 1
    return struct.pack(fmt, peer_as, local_as) + struct.pack(">HH", 0, afi) + ip(peer_ip) + ip(local_ip)


def bgp4mp_message(
    ts: int,
    peer_as: int,
    peer_ip: str,
    message: bytes,
    local_as: int = 64496,
    local_ip: str | None = None,
    as4: bool = True,
    usec: int | None = None,
    addpath: bool = False,
) -> bytes:
    local_ip = local_ip or ("2001:db8::fe" if ":" in peer_ip else "192.0.2.254")
    subtype = (BGP4MP_MESSAGE_AS4_ADDPATH if addpath else BGP4MP_MESSAGE_AS4) if as4 else BGP4MP_MESSAGE
    body = _bgp4mp_head(peer_as, local_as, peer_ip, local_ip, as4) + message
    return record(ts, BGP4MP_ET if usec is not None else BGP4MP, subtype, body, usec)


def bgp4mp_state(
    ts: int, peer_as: int, peer_ip: str, old: int, new: int, local_as: int = 64496, as4: bool = True
) -> bytes:
    local_ip = "2001:db8::fe" if ":" in peer_ip else "192.0.2.254"
    body = _bgp4mp_head(peer_as, local_as, peer_ip, local_ip, as4) + struct.pack(">HH", old, new)
    return record(ts, BGP4MP, BGP4MP_STATE_CHANGE_AS4 if as4 else BGP4MP_STATE_CHANGE, body)


def table_dump_v1(ts: int, prefix: str, peer_ip: str, peer_as: int, attrs: bytes, originated: int) -> bytes:
    """TABLE_DUMP (v1) IPv4: 2-byte peer AS and 2-byte AS_PATH."""
    addr, length = prefix.split("/")
    body = struct.pack(">HH", 0, 1) + ip(addr) + struct.pack(">BBI", int(length), 1, originated)
    body += ip(peer_ip) + struct.pack(">HH", peer_as, len(attrs)) + attrs
    return record(ts, TABLE_DUMP, 1, body)


# --------------------------------------------------------------------------------------------
# The writer checked against mrtparse itself


def _parse(data: bytes) -> list[dict]:
    import io

    import mrtparse

    out = []
    for r in mrtparse.Reader(io.BytesIO(data)):
        assert not r.err, r.err_msg
        out.append(r.data)
    return out


def test_rib_records_parse_as_written():
    data = (
        peer_index_table(1_700_000_000, [("198.51.100.1", 64500), ("2001:db8::1", 4200000001)])
        + rib(1_700_000_000, 0, "71.18.0.0/20", [(0, 1_690_000_000, rib_attrs(seq(64500, 396986)), None)])
        + rib(
            1_700_000_000,
            1,
            "2605:340::/32",
            [(1, 1_690_000_000, rib_attrs(seq(4200000001, 150436), "2001:db8::9"), None)],
        )
        + rib(
            1_700_000_000,
            2,
            "71.18.16.0/20",
            [(0, 1, rib_attrs(seq(64500, 137718)), 7), (0, 1, rib_attrs(seq(64500, 174, 137718)), 8)],
            addpath=True,
        )
    )
    peers, v4, v6, addpath = _parse(data)
    assert [(p["peer_ip"], p["peer_as"]) for p in peers["peer_entries"]] == [
        ("198.51.100.1", "64500"),
        ("2001:db8::1", "4200000001"),
    ]
    assert (v4["prefix"], v4["length"]) == ("71.18.0.0", 20)
    path = next(a for a in v4["rib_entries"][0]["path_attributes"] if 2 in a["type"])
    assert path["value"][0]["value"] == ["64500", "396986"]
    assert (v6["prefix"], v6["length"]) == ("2605:340::", 32)
    assert [e["path_id"] for e in addpath["rib_entries"]] == [7, 8]


def test_bgp4mp_records_parse_as_written():
    attrs = origin_igp() + as_path(seq(64500, 138699)) + next_hop("192.0.2.9")
    update = bgp_update(["203.0.113.0/24"], attrs, ["71.18.32.0/20"])
    v6 = bgp_update(
        attrs=origin_igp() + as_path(seq(64500, 150436)) + mp_reach("2001:db8::9", ["2605:340::/32"])
    )
    gone = bgp_update(attrs=mp_unreach(["2605:340::/32"]))
    old = bgp_update(
        attrs=origin_igp()
        + as_path(seq(64500, AS_TRANS), as4=False)
        + as_path(seq(64500, 396986), kind=AS4_PATH)
        + next_hop("192.0.2.9"),
        announced=["71.18.48.0/20"],
    )
    data = (
        bgp4mp_message(1, 64500, "198.51.100.1", update, usec=5)
        + bgp4mp_message(2, 64500, "2001:db8::1", v6)
        + bgp4mp_message(3, 64500, "2001:db8::1", gone)
        + bgp4mp_message(4, 64500, "198.51.100.1", old, as4=False)
        + bgp4mp_state(5, 64500, "198.51.100.1", ESTABLISHED, IDLE)
    )
    a, b, c, d, e = _parse(data)
    assert a["microsecond_timestamp"] == 5
    assert a["bgp_message"]["withdrawn_routes"] == [{"length": 24, "prefix": "203.0.113.0"}]
    assert a["bgp_message"]["nlri"] == [{"length": 20, "prefix": "71.18.32.0"}]
    reach = next(x for x in b["bgp_message"]["path_attributes"] if 14 in x["type"])
    assert reach["value"]["nlri"] == [{"length": 32, "prefix": "2605:340::"}]
    unreach = c["bgp_message"]["path_attributes"][0]
    assert unreach["value"]["withdrawn_routes"] == [{"length": 32, "prefix": "2605:340::"}]
    paths = {
        next(iter(x["type"])): x["value"][0]["value"]
        for x in d["bgp_message"]["path_attributes"]
        if next(iter(x["type"])) in (AS_PATH, AS4_PATH)
    }
    assert paths == {AS_PATH: ["64500", str(AS_TRANS)], AS4_PATH: ["64500", "396986"]}
    assert (next(iter(e["old_state"])), next(iter(e["new_state"]))) == (ESTABLISHED, IDLE)
