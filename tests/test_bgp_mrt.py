"""``classifier bgp FILE...``: synthetic MRT for ByteDance (written by test_bgp_mrtwriter) and the
real files in ../shared/mrt (PCH 2015 updates with Tencent routes; RIS and RouteViews without)."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import struct
import zlib

import pytest
import test_bgp_mrtwriter as w
from conftest import SHARED, need_shared, run_cli

from classifier.timeutil import parse_instant

MRT = SHARED / "mrt"
PCH = MRT / "pch-as3856_updates.et-header.20151023.gz"


def ts(text: str) -> int:
    return int(parse_instant(text))


def bgp(*args: str, status: int = 0) -> tuple[list[dict], str]:
    proc = run_cli("bgp", *args, check_status=status)
    return [json.loads(line) for line in proc.stdout.decode().splitlines()], proc.stderr.decode()


def by(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def one(rows: list[dict], **match) -> dict:
    found = by(rows, **match)
    assert len(found) == 1, (match, found)
    return found[0]


# --------------------------------------------------------------------------------------------
# Synthetic data

PEER_A = (64500, "198.51.100.1")
PEER_B = (64501, "2001:db8::1")
PEER_C = (4200000001, "198.51.100.3")
DUMP = ts("2025-03-01T00:00:00Z")


def rib_file() -> bytes:
    """A TABLE_DUMP_V2 RIB: IPv4, IPv6 and ADD-PATH records, direct and indirect paths."""
    a = w.rib_attrs
    return b"".join(
        [
            w.peer_index_table(DUMP, [PEER_A[::-1], PEER_B[::-1], PEER_C[::-1]]),
            w.rib(
                DUMP,
                0,
                "71.18.0.0/16",
                [
                    (0, ts("2024-06-01T00:00:00Z"), a(w.seq(64500, 396986)), None),
                    (2, ts("2024-06-02T00:00:00Z"), a(w.seq(PEER_C[0], PEER_C[0], 3356, 396986)), None),
                ],
            ),
            w.rib(
                DUMP,
                1,
                "2605:340::/32",
                [(1, ts("2024-07-01T00:00:00Z"), a(w.seq(64501, 150436), "2001:db8::9"), None)],
            ),
            w.rib(
                DUMP,
                2,
                "71.18.64.0/20",
                [
                    (0, ts("2024-08-01T00:00:00Z"), a(w.seq(64500, 137718)), 1),
                    (0, ts("2024-08-01T00:00:00Z"), a(w.seq(64500, 174, 137718)), 2),
                ],
                addpath=True,
            ),
            w.rib(
                DUMP,
                3,
                "198.51.100.0/24",
                [(0, ts("2024-01-01T00:00:00Z"), a(w.seq(64500, 3356, 64511)), None)],
            ),
            w.rib(
                DUMP,
                4,
                "71.18.128.0/20",
                [
                    (
                        0,
                        ts("2024-09-01T00:00:00Z"),
                        a([(w.AS_SEQUENCE, (64500, 3356)), (w.AS_SET, (11983, 64999))]),
                        None,
                    )
                ],
            ),
            w.rib(
                DUMP,
                5,
                "203.0.113.0/24",
                [(0, ts("2024-10-01T00:00:00Z"), a(w.seq(64500, 138699, 64777)), None)],
            ),
            w.rib(
                DUMP, 6, "1.12.0.0/21", [(2, ts("2019-01-01T00:00:00Z"), a(w.seq(PEER_C[0], 45090)), None)]
            ),
        ]
    )


def _update(peer, when, attrs=b"", announced=(), withdrawn=(), **kw) -> bytes:
    return w.bgp4mp_message(ts(when), peer[0], peer[1], w.bgp_update(withdrawn, attrs, announced), **kw)


def _attrs(*asns: int) -> bytes:
    return w.origin_igp() + w.as_path(w.seq(*asns)) + w.next_hop("192.0.2.9")


def updates_file() -> bytes:
    """BGP4MP updates across the effective dates: see the expectations in the tests below."""
    v6 = w.origin_igp() + w.as_path(w.seq(64501, 138699)) + w.mp_reach("2001:db8::9", ["2605:340::/32"])
    two_byte = (
        w.origin_igp()
        + w.as_path(w.seq(64500, w.AS_TRANS), as4=False)
        + w.as_path(w.seq(64500, 137718), kind=w.AS4_PATH)
        + w.next_hop("192.0.2.9")
    )
    return b"".join(
        [
            w.bgp4mp_state(ts("2020-09-01T00:00:00Z"), *PEER_A, 5, w.ESTABLISHED),
            _update(PEER_A, "2020-10-01T00:00:00Z", _attrs(64500, 3356, 15169), ["192.0.2.0/24"]),
            _update(PEER_A, "2020-10-01T00:00:00Z", _attrs(64500, 132203), ["203.205.128.0/19"]),
            _update(PEER_A, "2020-10-15T12:00:00Z", _attrs(64500, 396986), ["71.18.0.0/20"]),
            _update(PEER_A, "2020-10-20T00:00:00Z", withdrawn=["192.0.2.0/24"]),
            _update(PEER_A, "2020-11-20T00:00:00Z", _attrs(64500, 3356, 396986), ["71.18.0.0/20"]),
            _update(PEER_A, "2021-07-01T00:00:00Z", withdrawn=["203.205.128.0/19"]),
            w.bgp4mp_message(ts("2024-12-01T00:00:00Z"), *PEER_B, w.bgp_update(attrs=v6)),
            w.bgp4mp_message(
                ts("2025-02-01T00:00:00Z"), *PEER_B, w.bgp_update(attrs=w.mp_unreach(["2605:340::/32"]))
            ),
            _update(
                PEER_A, "2026-02-01T00:00:00Z", _attrs(64500, 64500, 150436), ["71.18.16.0/20"], usec=250000
            ),
            _update(PEER_A, "2026-02-02T00:00:00Z", two_byte, ["71.18.32.0/20"], as4=False),
            w.bgp4mp_state(ts("2026-03-01T00:00:00Z"), *PEER_A, w.ESTABLISHED, w.IDLE),
            w.bgp4mp_message(ts("2026-03-02T00:00:00Z"), *PEER_B, w.keepalive()),
        ]
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mrt")
    out = {"rib": d / "rib.mrt", "updates": d / "updates.mrt"}
    out["rib"].write_bytes(rib_file())
    out["updates"].write_bytes(updates_file())
    out["updates.gz"] = d / "updates.mrt.gz"
    out["updates.gz"].write_bytes(gzip.compress(updates_file()))
    out["updates.bz2"] = d / "updates.bz2"  # no telling suffix: detected by content
    out["updates.bz2"].write_bytes(bz2.compress(updates_file()))
    return out


# --------------------------------------------------------------------------------------------
# RIB


def test_rib_direct_indirect_addpath_ipv6_as_set_transit(files):
    rows, err = bgp(str(files["rib"]))
    assert not by(rows, prefix="198.51.100.0/24")  # no operator ASN on its path
    assert {r["file"] for r in rows} == {"rib.mrt"} and {r["source"] for r in rows} == {"rib"}

    direct = one(rows, prefix="71.18.0.0/16", peer_asn=64500)
    assert (direct["as_path"], direct["origin_asn"], direct["operator"], direct["app"]) == (
        "64500 396986",
        396986,
        "bytedance",
        "tiktok",
    )
    assert (direct["neighbour_asn"], direct["relationship"], direct["role"]) == (396986, "direct", "origin")
    assert direct["first_seen"] == "2024-06-01T00:00:00Z" and direct["last_seen"] == "2025-03-01T00:00:00Z"
    # TikTok's transit-peering provision was suspended before it took effect: log, and say so
    assert direct["action"] == "log" and direct["view"] == "announced"
    assert "tiktok-2020-transit-peering: suspended by commerce-tiktok-notice-2020-11-12" in direct["reason"]

    prepended = one(rows, prefix="71.18.0.0/16", peer_asn=PEER_C[0])  # 4-byte peer ASN, prepended
    assert (prepended["neighbour_asn"], prepended["relationship"]) == (3356, "indirect")
    assert prepended["rule"] == "indirect-path" and "indirect path" in prepended["reason"]

    v6 = one(rows, prefix="2605:340::/32")
    assert (v6["peer_ip"], v6["peer_asn"], v6["origin_asn"], v6["relationship"]) == (
        "2001:db8::1",
        64501,
        150436,
        "direct",
    )

    addpath = by(rows, prefix="71.18.64.0/20")
    assert {(r["path_id"], r["as_path"], r["relationship"]) for r in addpath} == {
        (1, "64500 137718", "direct"),
        (2, "64500 174 137718", "indirect"),
    }

    as_set = one(rows, prefix="71.18.128.0/20")
    assert (as_set["origin_asn"], as_set["origin_as_set"], as_set["as_path"]) == (
        None,
        [11983, 64999],
        "64500 3356 {11983,64999}",
    )
    assert as_set["operator"] == "bytedance" and as_set["relationship"] == "indirect"

    transit = one(rows, prefix="203.0.113.0/24")
    assert (transit["role"], transit["transit_asns"], transit["origin_asn"]) == ("transit", [138699], 64777)
    assert transit["relationship"] == "direct" and transit["operator"] == "bytedance"

    tencent = one(rows, prefix="1.12.0.0/21")
    assert (tencent["operator"], tencent["app"], tencent["relationship"]) == ("tencent", "wechat", "direct")
    # live from 2019 to the 2025 dump: the strictest decision over that time is the WeChat item,
    # which took effect on 2020-09-21 in the announced view
    assert tencent["action"] == "block" and tencent["decided_at"] == "2020-09-21T04:00:00Z"
    assert tencent["rule"] == "provision-effective"

    assert "originated by bytedance (tiktok): 4 distinct prefixes" in err
    assert "AS_SET origins 1" in err and "transit through AS138699: 1 prefixes" in err


def test_rib_in_force_view_and_as_of(files):
    rows, _ = bgp(str(files["rib"]), "--view", "in-force")
    tencent = one(rows, prefix="1.12.0.0/21")
    # never in force: every instant logs, and the record is decided at its first
    assert tencent["action"] == "log" and tencent["view"] == "in-force"
    assert tencent["decided_at"] == "2019-01-01T00:00:00Z" and "not yet effective" in tencent["reason"]
    rows, _ = bgp(str(files["rib"]), "--as-of", "2021-07-01")
    tencent = one(rows, prefix="1.12.0.0/21")
    assert tencent["decided_at"] == "2021-07-01T00:00:00Z" and tencent["action"] == "log"
    assert "rescinded" in tencent["reason"]


def test_local_asn_strips_prepending_and_names_the_neighbour(files):
    rows, _ = bgp(str(files["rib"]), "--local-asn", "AS64500")
    assert {r["viewpoint_asn"] for r in rows} == {64500}
    assert one(rows, prefix="71.18.0.0/16", peer_asn=64500)["relationship"] == "direct"
    # seen from AS64500, the path received from the 4-byte peer starts with that peer
    other = one(rows, prefix="71.18.0.0/16", peer_asn=PEER_C[0])
    assert (other["neighbour_asn"], other["relationship"]) == (PEER_C[0], "indirect")


def test_table_dump_v1_with_as4_path():
    attrs = (
        w.origin_igp()
        + w.as_path(w.seq(64500, w.AS_TRANS), as4=False)
        + w.as_path(w.seq(64500, 396986), kind=w.AS4_PATH)
        + w.next_hop("192.0.2.9")
    )
    data = w.table_dump_v1(DUMP, "71.18.0.0/16", "198.51.100.1", 64500, attrs, DUMP - 10)
    rows, err = _stdin_bgp(data)
    r = one(rows, prefix="71.18.0.0/16")
    assert (r["as_path"], r["origin_asn"], r["relationship"]) == ("64500 396986", 396986, "direct")
    assert "TABLE_DUMP 1" in err


def _stdin_bgp(data: bytes, *args: str, status: int = 0) -> tuple[list[dict], str]:
    proc = run_cli("bgp", "-", *args, stdin=data, check_status=status)
    return [json.loads(line) for line in proc.stdout.decode().splitlines()], proc.stderr.decode()


# --------------------------------------------------------------------------------------------
# Updates: the timeline


def test_update_routes(files):
    rows, _ = bgp(str(files["updates"]))
    assert not by(rows, prefix="192.0.2.0/24")
    assert {(r["prefix"], r["as_path"], r["relationship"], r["state"]) for r in rows} == {
        ("203.205.128.0/19", "64500 132203", "direct", "withdrawn"),
        ("71.18.0.0/20", "64500 396986", "direct", "replaced"),
        ("71.18.0.0/20", "64500 3356 396986", "indirect", "session-down"),
        ("2605:340::/32", "64501 138699", "direct", "withdrawn"),
        ("71.18.16.0/20", "64500 64500 150436", "direct", "session-down"),
        ("71.18.32.0/20", "64500 137718", "direct", "session-down"),  # AS_TRANS + AS4_PATH merged
    }
    wechat = one(rows, prefix="203.205.128.0/19")
    assert (wechat["first_seen"], wechat["last_seen"]) == ("2020-10-01T00:00:00Z", "2021-07-01T00:00:00Z")
    assert wechat["action"] == "block" and "wechat-2020-transit-peering: effective" in wechat["reason"]
    assert one(rows, prefix="71.18.16.0/20")["first_seen"] == "2026-02-01T00:00:00.250000Z"
    assert {r["action"] for r in rows if r["operator"] == "bytedance"} == {"log"}


def test_update_timeline_decisions_in_both_views(files):
    events, _ = bgp(str(files["updates"]), "--timeline")
    got = [(e["time"], e["event"], e["prefix"]) for e in events]
    assert got == [
        ("2020-10-01T00:00:00Z", "announce", "203.205.128.0/19"),
        ("2020-10-15T12:00:00Z", "announce", "71.18.0.0/20"),
        ("2020-10-30T04:00:00Z", "policy-change", "71.18.0.0/20"),  # in-force: enjoined
        ("2020-11-12T05:00:00Z", "policy-change", "71.18.0.0/20"),  # announced: suspended
        ("2020-11-20T00:00:00Z", "path-change", "71.18.0.0/20"),
        ("2021-06-16T04:00:00Z", "policy-change", "203.205.128.0/19"),  # rescission
        ("2021-07-01T00:00:00Z", "withdraw", "203.205.128.0/19"),
        ("2024-12-01T00:00:00Z", "announce", "2605:340::/32"),
        ("2025-02-01T00:00:00Z", "withdraw", "2605:340::/32"),
        ("2026-02-01T00:00:00.250000Z", "announce", "71.18.16.0/20"),
        ("2026-02-02T00:00:00Z", "announce", "71.18.32.0/20"),
        ("2026-03-01T00:00:00Z", "session-down", "71.18.0.0/20"),
        ("2026-03-01T00:00:00Z", "session-down", "71.18.16.0/20"),
        ("2026-03-01T00:00:00Z", "session-down", "71.18.32.0/20"),
    ]
    e = {(x["time"][:10], x["event"]): x for x in events}

    wechat = e[("2020-10-01", "announce")]
    assert (wechat["action_announced"], wechat["action_in_force"]) == ("block", "log")
    assert "enjoined by wechat-users-alliance-v-trump-2020-09-19" in wechat["reason_in_force"]
    assert e[("2021-06-16", "policy-change")]["action_announced"] == "log"
    assert "rescinded" in e[("2021-07-01", "withdraw")]["reason_announced"]

    tiktok = e[("2020-10-15", "announce")]  # before the Nov 12 notice: not yet effective either way
    assert (tiktok["action_announced"], tiktok["action_in_force"]) == ("log", "log")
    assert "not yet effective" in tiktok["reason_announced"]
    assert "enjoined by marland-v-trump-2020-10-30" in e[("2020-10-30", "policy-change")]["reason_in_force"]
    suspended = e[("2020-11-12", "policy-change")]
    assert "suspended by commerce-tiktok-notice-2020-11-12" in suspended["reason_announced"]
    change = e[("2020-11-20", "path-change")]
    assert (change["previous_as_path"], change["as_path"]) == ("64500 396986", "64500 3356 396986")
    assert (change["previous_relationship"], change["relationship"]) == ("direct", "indirect")
    assert change["rule_announced"] == "indirect-path"

    # a direct ByteDance session live across 2025-01-19: PAFACA names no transit or peering
    for key in (("2024-12-01", "announce"), ("2025-02-01", "withdraw"), ("2026-02-01", "announce")):
        ev = e[key]
        assert (ev["relationship"], ev["action_announced"], ev["action_in_force"]) == ("direct", "log", "log")
        assert "tiktok-2020-transit-peering: suspended" in ev["reason_announced"]
    assert e[("2026-03-01", "session-down")]["detail"] == "session went to Idle"
    assert {x["view"] for x in events} == {"announced"}


def test_compressed_copies_give_the_same_report(files):
    plain, _ = bgp(str(files["updates"]))
    for key in ("updates.gz", "updates.bz2"):
        rows, err = bgp(str(files[key]))
        assert [{**r, "file": None} for r in rows] == [{**r, "file": None} for r in plain]
        assert ("gzip" if key.endswith("gz") else "bzip2") in err


def test_csv_and_table_formats(files, tmp_path):
    out = tmp_path / "routes.csv"
    run_cli("bgp", str(files["updates"]), "--format", "csv", "-o", str(out), "-q")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and rows[0]["record"] == "route"
    for key in (
        "prefix",
        "origin_asn",
        "operator",
        "as_path",
        "peer_asn",
        "relationship",
        "first_seen",
        "last_seen",
        "action",
        "neighbour_asn",
        "app",
        "view",
        "reason",
        "file",
    ):
        assert key in rows[0]
    table = run_cli("bgp", str(files["updates"]), "--format", "table").stdout.decode()
    assert "Prefixes originated by operator ASNs" in table and "Timeline of direct routes" in table
    assert "AS396986" in table and "path-change" in table


# --------------------------------------------------------------------------------------------
# Bad input


def _records(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each MRT record."""
    out, at = [], 0
    while at < len(data):
        length = struct.unpack_from(">I", data, at + 8)[0]
        out.append((at, 12 + length))
        at += 12 + length
    return out


def test_truncated_file_keeps_what_was_read(tmp_path):
    data = updates_file()
    at, size = _records(data)[3]  # cut inside the 4th record (announces 71.18.0.0/20)
    path = tmp_path / "cut.mrt"
    path.write_bytes(data[: at + size - 5])
    rows, err = bgp(str(path), status=3)
    assert [r["prefix"] for r in rows] == ["203.205.128.0/19"]  # read before the cut
    assert (
        f"cut.mrt: record 4: offset {at}: truncated record: header says {size - 12} bytes, "
        f"{size - 17} present" in err
    )
    assert "Traceback" not in err


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    data = b"".join(updates_file() for _ in range(1))
    packed = gzip.compress(data)
    path = tmp_path / "cut.mrt.gz"
    path.write_bytes(packed[: len(packed) - 12])  # the trailer and some data are gone
    rows, err = bgp(str(path), status=3)
    assert "cut.mrt.gz: record" in err and ("ends early" in err or "truncated" in err)
    assert by(rows, prefix="203.205.128.0/19")  # the first records were still reported


def test_corrupt_record_is_reported_and_skipped(tmp_path):
    good = _update(PEER_A, "2026-02-01T00:00:00Z", _attrs(64500, 150436), ["71.18.16.0/20"])
    bad = bytearray(_update(PEER_A, "2026-02-01T00:00:01Z", _attrs(64500, 396986), ["71.18.0.0/20"]))
    # the AS_PATH attribute (flags 0x40, type 2, 10 bytes) claims 200 bytes: it cannot be decoded
    at = bad.index(b"\x40\x02\x0a")
    bad[at + 2] = 200
    later = _update(PEER_A, "2026-02-01T00:00:02Z", _attrs(64500, 137718), ["71.18.32.0/20"])
    path = tmp_path / "corrupt.mrt"
    path.write_bytes(good + bytes(bad) + later)
    rows, err = bgp(str(path), status=3)
    assert [r["prefix"] for r in rows] == ["71.18.16.0/20", "71.18.32.0/20"]
    assert f"corrupt.mrt: record 2: offset {len(good)}: corrupt record skipped" in err
    assert "Traceback" not in err


# Damaged compressed files: every record before the damage is read and reported (the standard
# gzip/bz2 readers lose the tail before it, or pass on a damaged bzip2 block's garbage)

UPDATE_COUNT = 6000


def many_updates() -> tuple[bytes, list[tuple[int, int, str | None]]]:
    """BGP4MP updates, every 25th with an operator path; and (offset, length, operator prefix or None)
    of each record."""
    out, records, at = [], [], 0
    start = ts("2026-02-01T00:00:00Z")
    for i in range(UPDATE_COUNT):
        prefix = f"10.{i >> 8}.{i & 255}.0/24"
        operator = i % 25 == 7
        path = _attrs(64500, 396986) if operator else _attrs(64500, 3356, 15169)
        rec = w.bgp4mp_message(start + i, *PEER_A, w.bgp_update(attrs=path, announced=[prefix]))
        out.append(rec)
        records.append((at, len(rec), prefix if operator else None))
        at += len(rec)
    return b"".join(out), records


@pytest.fixture(scope="module")
def updates_6000():
    return many_updates()


def bgp_damaged(path, stdin: bytes | None = None) -> tuple[list[dict], dict, str]:
    """Rows, the file's stats and stderr of `classifier bgp` on a damaged input (exit status 3)."""
    stats = path.with_name("stats.json")
    arg = "-" if stdin is not None else str(path)
    proc = run_cli("bgp", arg, "--stats", str(stats), "-q", stdin=stdin, check_status=3)
    err = proc.stderr.decode()
    assert "Traceback" not in err
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    return rows, json.loads(stats.read_text())["files"][0], err


def assert_kept_until(name: str, rows, st, records, good: int, damage: str) -> None:
    """Every record that ends by decompressed byte ``good`` was read, and only those; the problem
    names the first record not read, its offset, and the damage."""
    kept = sum(1 for at, size, _ in records if at + size <= good)
    assert st["records"] == kept and 0 < kept < len(records)
    assert sorted(r["prefix"] for r in rows) == sorted(p for _, _, p in records[:kept] if p)
    at, size, _ = records[kept]
    have = good - at
    cut = (
        ""
        if not have
        else f"; truncated record header: {have} of 12 bytes"
        if have < 12
        else f"; truncated record: header says {size - 12} bytes, {have - 12} present"
    )
    (problem,) = st["problems"]
    head, sep, tail = problem.partition(", found at compressed byte ")
    assert head == f"{name}: record {kept + 1}: offset {at}: {damage}" and sep
    assert tail.endswith(cut) and tail[: len(tail) - len(cut)].isdigit()


def test_corrupt_gzip_keeps_every_record_before_the_damage(tmp_path, updates_6000):
    # stored blocks: zlib sees the damage where it is, so what comes before is known good; with
    # gzip.GzipFile, the record before the damage is lost at some of these block boundaries
    data, records = updates_6000
    packed = gzip.compress(data, compresslevel=0)
    pos, before, blocks = 10, 0, []
    while not packed[pos] & 1:
        length = struct.unpack_from("<H", packed, pos + 1)[0]
        blocks.append((pos, before))
        pos, before = pos + 5 + length, before + length
    assert len(blocks) >= 5
    for at, good in blocks[1:]:
        bad = bytearray(packed)
        bad[at + 3] ^= 0x55  # the block's NLEN no longer matches its LEN
        path = tmp_path / "damaged.mrt.gz"
        path.write_bytes(bytes(bad))
        rows, st, err = bgp_damaged(path)
        assert_kept_until(
            "damaged.mrt.gz",
            rows,
            st,
            records,
            good,
            f"gzip stream corrupt after decompressed byte {good} (Error -3 while "
            "decompressing data: invalid stored block lengths)",
        )
        assert f"input problem: {st['problems'][0]}" in err


def test_truncated_gzip_keeps_every_record_before_the_cut(tmp_path, updates_6000):
    data, records = updates_6000
    packed = gzip.compress(data)
    short = packed[: len(packed) * 3 // 5]
    good = len(zlib.decompressobj(31).decompress(short))  # all that the bytes left decode to
    path = tmp_path / "cut.mrt.gz"
    path.write_bytes(short)
    rows, st, _ = bgp_damaged(path)
    assert_kept_until(
        "cut.mrt.gz", rows, st, records, good, f"gzip stream truncated after decompressed byte {good}"
    )


def test_corrupt_deflate_data_is_reported_as_gzip_damage(tmp_path, updates_6000):
    # a flipped byte inside Huffman-coded data decodes to garbage for a while before zlib notices:
    # the garbage stops the framing, and the rest of the file is decoded to say why
    data, records = updates_6000
    packed = bytearray(gzip.compress(data))
    packed[len(packed) // 2] ^= 0xFF
    path = tmp_path / "garbled.mrt.gz"
    path.write_bytes(bytes(packed))
    rows, st, _ = bgp_damaged(path)
    assert any(
        p.startswith("garbled.mrt.gz: ") and "gzip stream corrupt after decompressed byte" in p
        for p in st["problems"]
    ), st["problems"]
    assert {r["prefix"] for r in rows} <= {p for _, _, p in records if p}


def _bzip2_block_starts(packed: bytes) -> list[int]:
    from test_compressed import bzip2_blocks

    return [bit // 8 for bit in bzip2_blocks(packed)]


@pytest.mark.parametrize("where", ["block header", "block data"])
def test_corrupt_bzip2_keeps_every_record_before_the_damaged_block(tmp_path, updates_6000, where):
    data, records = updates_6000
    packed = bz2.compress(data, 1)  # 100 kB blocks
    blocks = _bzip2_block_starts(packed)
    assert len(blocks) >= 4
    damaged = blocks[2] + 2 if where == "block header" else (blocks[2] + blocks[3]) // 2
    bad = bytearray(packed)
    bad[damaged] ^= 0x10
    good = len(bz2.BZ2Decompressor().decompress(bytes(packed[:damaged])))  # the blocks before
    path = tmp_path / "damaged.mrt.bz2"
    path.write_bytes(bytes(bad))
    rows, st, _ = bgp_damaged(path)
    # nothing of the damaged block reaches the framing: the one problem is the bzip2 damage
    assert_kept_until(
        "damaged.mrt.bz2",
        rows,
        st,
        records,
        good,
        f"bzip2 stream corrupt after decompressed byte {good} (Invalid data stream)",
    )


def test_corrupt_bzip2_on_standard_input(tmp_path, updates_6000):
    data, records = updates_6000
    packed = bz2.compress(data, 1)
    damaged = _bzip2_block_starts(packed)[2] + 2
    bad = bytearray(packed)
    bad[damaged] ^= 0x10
    good = len(bz2.BZ2Decompressor().decompress(bytes(packed[:damaged])))
    rows, st, _ = bgp_damaged(tmp_path / "unused", stdin=bytes(bad))
    assert st["compression"] == "bzip2"
    assert_kept_until(
        "-",
        rows,
        st,
        records,
        good,
        f"bzip2 stream corrupt after decompressed byte {good} (Invalid data stream)",
    )


def test_truncated_bzip2_keeps_every_complete_block(tmp_path, updates_6000):
    data, records = updates_6000
    packed = bz2.compress(data, 1)
    blocks = _bzip2_block_starts(packed)
    cut = (blocks[2] + blocks[3]) // 2
    good = len(bz2.BZ2Decompressor().decompress(packed[:cut]))
    path = tmp_path / "cut.mrt.bz2"
    path.write_bytes(packed[:cut])
    rows, st, _ = bgp_damaged(path)
    assert_kept_until(
        "cut.mrt.bz2", rows, st, records, good, f"bzip2 stream truncated after decompressed byte {good}"
    )


def test_not_mrt_and_missing_file(tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not MRT\n" * 4)
    rows, err = bgp(str(junk), str(tmp_path / "missing.mrt"), status=3)
    assert rows == []
    assert "junk.txt: record 1: offset 0: not an MRT record" in err
    assert "missing.mrt: cannot open" in err


def test_usage_errors():
    proc = run_cli("bgp", check_status=2)
    assert "give one or more MRT files, or --kernel" in proc.stderr.decode()
    proc = run_cli("bgp", "x.mrt", "--kernel", check_status=2)
    assert "not both" in proc.stderr.decode()
    proc = run_cli("bgp", "--local-asn", "ASX", "x.mrt", check_status=2)
    assert "not an AS number" in proc.stderr.decode()


# --------------------------------------------------------------------------------------------
# The prefilter decides nothing: decoding every record gives the same routes and timeline


def _audit(path, decode_all: bool):
    from classifier.bgp.aspath import PathClassifier
    from classifier.bgp.mrt import MrtReader, Needles
    from classifier.bgp.routes import RouteTable
    from classifier.signatures import Signatures

    sigs = Signatures.load()
    table = RouteTable(PathClassifier(sigs.operator_by_asn))
    stats = MrtReader(str(path), path.name, Needles(sigs.operator_by_asn), table, decode_all=decode_all).run()
    table.finish()
    routes = sorted(
        (r.prefix, r.peer_asn, r.path_id, r.info.as_path, r.first_seen, r.last_seen, r.end, r.announcements)
        for r in table.records
    )
    events = [(e.time, e.kind, e.record.prefix, e.record.info.as_path) for e in table.events]
    return routes, events, stats


@pytest.mark.parametrize("name", ["rib", "updates"])
def test_prefilter_equals_full_decode_synthetic(files, name):
    fast = _audit(files[name], False)
    full = _audit(files[name], True)
    assert fast[:2] == full[:2] and fast[0]
    assert fast[2].decoded < full[2].decoded


@pytest.mark.real
def test_prefilter_equals_full_decode_pch():
    fast = _audit(need_shared(PCH), False)
    full = _audit(PCH, True)
    assert fast[:2] == full[:2]
    assert len(fast[0]) == 518 and fast[2].decoded < 100 < full[2].decoded


# --------------------------------------------------------------------------------------------
# Real files


@pytest.fixture(scope="module")
def pch():
    rows, err = bgp(str(need_shared(PCH)))
    return rows, err


@pytest.mark.real
def test_pch_tencent_origins(pch):
    rows, err = pch
    origins: dict[int, set[str]] = {}
    for r in rows:
        if r["role"] == "origin":
            origins.setdefault(r["origin_asn"], set()).add(r["prefix"])
    assert {a: len(p) for a, p in origins.items()} == {45090: 423, 133478: 50, 132203: 23, 132591: 18}
    assert len(set().union(*origins.values())) == 514
    assert {r["operator"] for r in rows} == {"tencent"} and {r["app"] for r in rows} == {"wechat"}
    assert (
        "originated by tencent (wechat): 514 distinct prefixes "
        "(AS45090 423, AS133478 50, AS132203 23, AS132591 18)"
    ) in err
    # 518 route records: 514 prefixes originated by Tencent, 4 DNSPod prefixes transiting AS132203
    assert len(rows) == 518 and len({r["prefix"] for r in rows}) == 518
    # transit: only AS132203 (5 x "132203 45090", 4 x "132203 40000"); "... 45090 45090" is the
    # origin prepending itself, not transit
    transit = [line for line in err.splitlines() if line.startswith("transit through")]
    assert transit == ["transit through AS132203: 9 prefixes, 2 paths"]


@pytest.mark.real
def test_pch_paths_and_relationships(pch):
    rows, _ = pch
    paths = {r["as_path"] for r in rows}
    assert {"132203 45090", "3491 133478"} <= paths
    via_tencent = by(rows, as_path="132203 45090")
    assert len(via_tencent) == 5
    for r in via_tencent:
        assert (r["peer_asn"], r["neighbour_asn"], r["relationship"]) == (3856, 132203, "direct")
        assert r["transit_asns"] == [132203] and r["origin_asn"] == 45090
    indirect = by(rows, as_path="3491 133478")
    assert len(indirect) == 49
    assert {(r["neighbour_asn"], r["relationship"]) for r in indirect} == {(3491, "indirect")}
    dnspod = by(rows, as_path="132203 40000")
    assert {r["prefix"] for r in dnspod} >= {"119.29.29.0/24", "182.254.116.0/24"}
    assert {r["role"] for r in dnspod} == {"transit"}
    # 2015 is before every order: log, not yet effective
    assert {r["action"] for r in rows} == {"log"}
    assert "not yet effective" in by(rows, relationship="direct")[0]["reason"]


@pytest.mark.real
@pytest.mark.parametrize(
    "name", ["ris_updates.20160811.1600.gz", "routeviews_rib.20140523.0600_first9073records.mrt.gz"]
)
def test_real_files_without_operator_routes(name):
    rows, err = bgp(str(need_shared(MRT / name)))
    assert rows == []
    assert "no route concerns an operator ASN" in err
    assert "input problem" not in err


@pytest.mark.real
def test_routeviews_counts_and_quagga_sample():
    _, err = bgp(str(need_shared(MRT / "routeviews_rib.20140523.0600_first9073records.mrt.gz")))
    assert "9073 records (TABLE_DUMP_V2 9073), 9072 RIB prefixes, 270005 RIB entries" in err
    rows, err = bgp(str(need_shared(MRT / "mrtparse-sample_quagga_rib.mrt")))
    assert rows == [] and "7 records (TABLE_DUMP_V2 7)" in err and "input problem" not in err


def test_stats_file(files, tmp_path):
    out = tmp_path / "stats.json"
    run_cli("bgp", str(files["rib"]), "--stats", str(out), "-q")
    stats = json.loads(out.read_text())
    assert stats["files"][0]["rib_prefixes"] == 7 and stats["files"][0]["complete"] is True
    assert stats["originated"]["bytedance"]["prefixes"] == 4
    assert stats["originated"]["bytedance"]["as_set_origins"] == 1
    assert stats["originated"]["tencent"]["by_asn"] == {"45090": 1}
