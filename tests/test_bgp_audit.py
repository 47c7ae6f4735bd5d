"""The peering engineer's audit: route attributes, sessions, RPKI and IRR, diffs, warnings, the table.

Synthetic inputs are written with the tests' MRT writer; the real PCH burst checks the session
view on real data (an iBGP feed of PCH's route reflector).
"""

from __future__ import annotations

import bz2
import gzip
import json
import re
import struct

import pytest
import test_bgp_mrtwriter as w
from conftest import run_cli
from test_bgp_mrt import PCH, bgp, by, need_shared, one, ts

RS = (64510, "198.51.100.10")  # an IXP route server: not in the paths it passes on
BILATERAL = (64500, "198.51.100.1")
LOCAL = 64496  # the recording router (the writer's default local AS)


def _attr(kind: int, value: bytes, flags: int = 0xC0) -> bytes:
    return w.attr(kind, value, flags)


def rich_attrs(*asns: int) -> bytes:
    """A path with every attribute the audit keeps."""
    return b"".join(
        [
            w.origin_igp(),
            w.as_path(w.seq(*asns)),
            w.next_hop("192.0.2.9"),
            _attr(4, struct.pack(">I", 50), 0x80),  # MED
            _attr(5, struct.pack(">I", 200), 0x40),  # LOCAL_PREF
            _attr(7, struct.pack(">I", 132203) + w.ip("192.0.2.7")),  # AGGREGATOR
            _attr(8, struct.pack(">HHHHHH", 65535, 666, 65535, 65281, 64500, 100)),  # COMMUNITY
            _attr(9, w.ip("192.0.2.20"), 0x80),  # ORIGINATOR_ID
            _attr(10, w.ip("192.0.2.21"), 0x80),  # CLUSTER_LIST
            _attr(16, bytes([0x00, 0x02]) + struct.pack(">HI", 64500, 7)),  # EXTENDED_COMMUNITIES: rt
            _attr(32, struct.pack(">III", 64500, 1, 2)),  # LARGE_COMMUNITY
        ]
    )


def plain(*asns: int, nh: str = "192.0.2.9", communities: tuple[tuple[int, int], ...] = ()) -> bytes:
    comm = _attr(8, b"".join(struct.pack(">HH", *c) for c in communities)) if communities else b""
    return w.origin_igp() + w.as_path(w.seq(*asns)) + w.next_hop(nh) + comm


def update(peer, when: str, attrs=b"", announced=(), withdrawn=()) -> bytes:
    return w.bgp4mp_message(ts(when), peer[0], peer[1], w.bgp_update(withdrawn, attrs, announced))


def sessions_file() -> bytes:
    """A bilateral session with Tencent (rich attributes, a withdrawal, then the session drops) and an
    IXP route server passing on a ByteDance route (direct: ByteDance is the first AS) and an
    indirect Tencent one."""
    return b"".join(
        [
            w.bgp4mp_state(ts("2020-09-30T00:00:00Z"), *BILATERAL, w.IDLE, w.ESTABLISHED),
            update(BILATERAL, "2020-10-01T00:00:00Z", rich_attrs(64500, 132203), ["203.205.128.0/19"]),
            update(BILATERAL, "2020-10-01T00:00:00Z", plain(64500, 132203, 45090), ["1.12.0.0/21"]),
            update(BILATERAL, "2020-10-02T00:00:00Z", plain(64500, 3356, 15169), ["192.0.2.0/24"]),
            update(BILATERAL, "2020-10-05T00:00:00Z", withdrawn=["1.12.0.0/21"]),
            update(
                RS,
                "2020-10-06T00:00:00Z",
                plain(396986, nh="198.51.100.20", communities=((64510, 1),)),
                ["71.18.0.0/20"],
            ),
            update(RS, "2020-10-06T00:00:00Z", plain(3491, 45090, nh="198.51.100.21"), ["43.128.0.0/17"]),
            w.bgp4mp_state(ts("2020-10-10T00:00:00Z"), *BILATERAL, w.ESTABLISHED, w.IDLE),
        ]
    )


@pytest.fixture(scope="module")
def sess(tmp_path_factory):
    path = tmp_path_factory.mktemp("sessions") / "sessions.mrt"
    path.write_bytes(sessions_file())
    return path


# --------------------------------------------------------------------------------------------
# Attributes


def test_route_records_keep_the_attributes_and_name_well_known_communities(sess):
    rows, _ = bgp(str(sess))
    r = one(rows, prefix="203.205.128.0/19")
    assert r["next_hops"] == ["192.0.2.9"] and r["origin_attr"] == "IGP"
    assert (r["med"], r["local_pref"], r["aggregator"]) == (50, 200, "AS132203 192.0.2.7")
    assert r["communities"] == ["65535:666", "65535:65281", "64500:100"]
    assert r["well_known_communities"] == ["BLACKHOLE", "NO_EXPORT"]
    assert r["extended_communities"] == ["rt 64500:7"]
    assert r["large_communities"] == ["64500:1:2"]
    assert (r["originator_id"], r["cluster_list"]) == ("192.0.2.20", ["192.0.2.21"])
    other = one(rows, prefix="1.12.0.0/21")
    assert (other["communities"], other["med"], other["local_pref"], other["aggregator"]) == (
        [],
        None,
        None,
        None,
    )


def test_attribute_units():
    from classifier.bgp.attributes import extended_community, from_mrtparse

    assert extended_community(0x0002_FBF4_0000_0007) == "rt 64500:7"
    assert extended_community(0x0103_C000_0201_0009) == "soo 192.0.2.1:9"
    assert extended_community(0x0202_0002_0469_0001) == "rt 132201:1"
    assert extended_community(0x0300_0000_0000_0001) == "0x0300:000000000001"
    # a 2-byte AGGREGATOR naming AS_TRANS is completed by AS4_AGGREGATOR (RFC 6793)
    attrs = [
        {"type": {7: "AGGREGATOR"}, "value": {"as": "23456", "id": "192.0.2.1"}},
        {"type": {18: "AS4_AGGREGATOR"}, "value": {"as": "396986", "id": "192.0.2.1"}},
    ]
    assert from_mrtparse(attrs).aggregator == "AS396986 192.0.2.1"


# --------------------------------------------------------------------------------------------
# Sessions


def test_sessions_bilateral_and_route_server(sess):
    rows, _ = bgp(str(sess), "--sessions")
    assert {r["record"] for r in rows} == {"session"}
    bilateral = one(rows, peer_ip=BILATERAL[1], operator="tencent")
    assert (bilateral["session_type"], bilateral["local_asn"]) == ("bilateral", LOCAL)
    assert (bilateral["announced"], bilateral["withdrawn"], bilateral["live"]) == (2, 1, 0)  # session dropped
    assert (bilateral["relationship"], bilateral["neighbour_asns"], bilateral["direct_prefixes"]) == (
        "direct",
        [132203],
        2,
    )
    assert bilateral["state"] == "Idle"
    assert bilateral["state_changes"] == [
        "2020-09-30T00:00:00Z Idle->Established",
        "2020-10-10T00:00:00Z Established->Idle",
    ]
    # WeChat transit-peering was effective (announced view) while the direct routes were live
    assert (bilateral["action"], bilateral["decided_at"]) == ("block", "2020-10-01T00:00:00Z")
    assert (
        bilateral["first_seen"] == "2020-09-30T00:00:00Z" and bilateral["last_seen"] == "2020-10-10T00:00:00Z"
    )
    assert bilateral["messages"] == 6

    bytedance = one(rows, peer_ip=RS[1], operator="bytedance")
    assert bytedance["session_type"] == "route-server"
    assert "AS64510 starts none of 2 paths" in bytedance["session_evidence"]
    assert "1 carry a community of AS64510" in bytedance["session_evidence"]
    assert (bytedance["relationship"], bytedance["neighbour_asns"], bytedance["live"]) == (
        "direct",
        [396986],
        1,
    )
    assert bytedance["next_hops"] == ["198.51.100.20", "198.51.100.21"]
    tencent = one(rows, peer_ip=RS[1], operator="tencent")
    assert (tencent["relationship"], tencent["direct_prefixes"], tencent["action"]) == ("indirect", 0, "log")


def test_session_kind_units():
    from classifier.bgp.aspath import PathClassifier
    from classifier.bgp.attributes import RouteAttributes
    from classifier.bgp.routes import RouteRecord
    from classifier.bgp.sessions import session_kind

    pc = PathClassifier({45090: "tencent"})

    def rec(path, **attrs):
        return RouteRecord(
            "f",
            "update",
            "1.12.0.0/21",
            64500,
            "192.0.2.1",
            None,
            pc.classify(path, 64500),
            0.0,
            0.0,
            attributes=RouteAttributes(**attrs),
        )

    assert session_kind(64500, 64500, [rec((45090,), cluster_list=("192.0.2.1",))]) == (
        "ibgp",
        "peer AS64500 is the recording router's AS; 1 routes reflected (ORIGINATOR_ID/CLUSTER_LIST)",
    )
    assert session_kind(64500, 64496, [rec((64500, 45090)), rec((3356, 45090))])[0] == "mixed"
    assert session_kind(64500, 64496, [rec((64500, 45090))])[0] == "bilateral"
    assert session_kind(64500, None, [rec((45090,))])[0] == "route-server"


@pytest.mark.real
def test_pch_session_is_an_ibgp_feed_with_direct_tencent_routes():
    rows, _ = bgp(str(need_shared(PCH)), "--sessions")
    (s,) = rows
    assert (s["peer_asn"], s["peer_ip"], s["local_asn"], s["session_type"]) == (
        3856,
        "206.220.231.55",
        3856,
        "ibgp",
    )
    assert "518 routes reflected" in s["session_evidence"]
    assert (s["announced"], s["live"], s["direct_prefixes"], s["neighbour_asns"]) == (
        518,
        518,
        44,
        [132203, 132591],
    )
    assert s["messages"] == 89686 and s["state"] == "Established" and len(s["state_changes"]) == 4
    assert s["action"] == "log" and "not yet effective" in s["reason"]


# --------------------------------------------------------------------------------------------
# RPKI and IRR


VRPS_RPKI_CLIENT = {
    "metadata": {"buildtime": "2026-09-16T06:00:00Z", "vrps": 4},
    "roas": [
        {"asn": 132203, "prefix": "203.205.128.0/19", "maxLength": 24, "ta": "apnic", "expires": 1790000000},
        {"asn": 45090, "prefix": "1.12.0.0/14", "maxLength": 20, "ta": "apnic", "expires": 1790000000},
        {"asn": 13335, "prefix": "43.128.0.0/14", "maxLength": 24, "ta": "apnic", "expires": 1790000000},
    ],
}


def test_rpki_states_for_each_vrp_format(sess, tmp_path):
    client = tmp_path / "rpki-client.json"
    client.write_text(json.dumps(VRPS_RPKI_CLIENT))
    jsonext = tmp_path / "routinator.jsonext"
    jsonext.write_text(
        json.dumps(
            {
                "metadata": {"generated": 1790000000},
                "roas": [
                    {
                        "asn": f"AS{r['asn']}",
                        "prefix": r["prefix"],
                        "maxLength": r["maxLength"],
                        "source": [
                            {
                                "type": "roa",
                                "uri": "rsync://rpki.apnic.net/x.roa",
                                "tal": "apnic",
                                "validity": {
                                    "notBefore": "2026-01-01T00:00:00Z",
                                    "notAfter": "2027-01-01T00:00:00Z",
                                },
                            }
                        ],
                    }
                    for r in VRPS_RPKI_CLIENT["roas"]
                ],
            }
        )
    )
    csv_file = tmp_path / "routinator.csv"
    csv_file.write_text(
        "ASN,IP Prefix,Max Length,Trust Anchor\n"
        + "".join(f"AS{r['asn']},{r['prefix']},{r['maxLength']},apnic\n" for r in VRPS_RPKI_CLIENT["roas"])
    )
    for vrps in (client, jsonext, csv_file):
        rows, _ = bgp(str(sess), "--vrps", str(vrps), "-q")
        assert one(rows, prefix="203.205.128.0/19")["rpki"] == "valid"
        assert one(rows, prefix="203.205.128.0/19")["rpki_vrps"] == ["203.205.128.0/19-24 AS132203 (apnic)"]
        assert one(rows, prefix="1.12.0.0/21")["rpki"] == "invalid-length"  # /21 beyond maxLength 20
        assert one(rows, prefix="43.128.0.0/17")["rpki"] == "invalid-asn"  # covered, for AS13335 only
        assert one(rows, prefix="43.128.0.0/17")["rpki_vrps"] == ["43.128.0.0/14-24 AS13335 (apnic)"]
        assert (
            one(rows, prefix="71.18.0.0/20")["rpki"] == "not-found"
            and one(rows, prefix="71.18.0.0/20")["rpki_vrps"] == []
        )
    rows, _ = bgp(str(sess), "-q")
    assert {r["rpki"] for r in rows} == {None}


def test_bad_vrp_files_are_one_line_errors(sess, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ASN,IP Prefix,Max Length,Trust Anchor\nAS45090,1.12.0.0/14,12,apnic\n")
    proc = run_cli("bgp", str(sess), "--vrps", str(bad), check_status=2)
    assert "bad.csv: line 2: maxLength: 12 is outside 14..32 for 1.12.0.0/14" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    bad.write_text('{"roas": [{"asn": "ASx", "prefix": "1.12.0.0/14", "maxLength": 14}]}')
    proc = run_cli("bgp", str(sess), "--vrps", str(bad), check_status=2)
    assert "bad.csv: roas[0]: asn: 'ASx' is not an AS number" in proc.stderr.decode()
    proc = run_cli("bgp", str(sess), "--vrps", str(tmp_path / "missing.json"), check_status=2)
    assert "missing.json: cannot read" in proc.stderr.decode()


RPSL = """\
% APNIC split file excerpt (synthetic)

route:          203.205.128.0/19
descr:          Tencent
origin:         AS132203
mnt-by:         MAINT-CNNIC-AP
source:         APNIC

route:          1.12.0.0/21
origin:         AS4134   # someone else's object
source:         APNIC

route:          71.18.0.0/16
descr:          a less specific object
  continued description
origin:         AS396986
source:         RADB

route6:         2605:340::/32
origin:         AS396986
source:         RADB

aut-num:        AS45090
as-name:        CNNIC-TENCENT-NET-AP
source:         APNIC
"""


def test_irr_route_objects(sess, tmp_path):
    dump = tmp_path / "apnic.db.route.gz"
    dump.write_bytes(gzip.compress(RPSL.encode()))
    rows, _ = bgp(str(sess), "--irr", str(dump), "-q")
    assert one(rows, prefix="203.205.128.0/19")["irr"] == "registered"
    assert one(rows, prefix="203.205.128.0/19")["irr_objects"] == ["203.205.128.0/19 AS132203 APNIC"]
    assert one(rows, prefix="1.12.0.0/21")["irr"] == "other-origin"
    assert one(rows, prefix="1.12.0.0/21")["irr_objects"] == ["1.12.0.0/21 AS4134 APNIC"]
    assert one(rows, prefix="71.18.0.0/20")["irr"] == "covered"
    assert one(rows, prefix="43.128.0.0/17")["irr"] == "not-registered"
    plain_dump = tmp_path / "radb.db.bz2"
    plain_dump.write_bytes(bz2.compress(b"aut-num: AS1\nsource: RADB\n"))
    proc = run_cli("bgp", str(sess), "--irr", str(plain_dump), check_status=2)
    assert "radb.db.bz2: no route or route6 object" in proc.stderr.decode()


# --------------------------------------------------------------------------------------------
# Diff, warnings, the table


def test_diff_between_two_audits(sess, tmp_path):
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    older = tmp_path / "older.mrt"
    older.write_bytes(
        b"".join(
            [
                update(BILATERAL, "2020-09-01T00:00:00Z", plain(64500, 132591), ["203.205.160.0/20"]),
                update(RS, "2020-09-01T00:00:00Z", plain(396986, nh="198.51.100.20"), ["71.18.0.0/20"]),
            ]
        )
    )
    run_cli("bgp", str(older), "-o", str(old), "-q")
    run_cli("bgp", str(sess), "-o", str(new), "-q")
    rows, _ = bgp("--diff", str(old), str(new), "-q")
    changes = {(r["change"], r["kind"], r["prefix"], r["peer_ip"]) for r in rows}
    assert changes == {
        # the bilateral session's routes all ended (session down): it disappeared; the RS stayed
        ("disappeared", "session", None, BILATERAL[1]),
        ("disappeared", "direct-route", "203.205.160.0/20", BILATERAL[1]),
        ("disappeared", "operator-prefix", "203.205.160.0/20", None),
        ("appeared", "session", None, RS[1]),  # its tencent (indirect) routes are new
        ("appeared", "operator-prefix", "43.128.0.0/17", None),
    }
    assert {r["old_file"] for r in rows} == {"old.jsonl"}
    table = run_cli("bgp", "--diff", str(old), str(new), "--format", "table").stdout.decode()
    assert "Changes from old.jsonl to new.jsonl: 5" in table and "203.205.160.0/20" in table
    bad = tmp_path / "bad.jsonl"
    bad.write_text(old.read_text() + "{not json\n")
    proc = run_cli("bgp", "--diff", str(old), str(bad), check_status=2)
    assert re.search(r"--diff bad\.jsonl: line \d+: not JSON", proc.stderr.decode())
    proc = run_cli("bgp", "--diff", str(old), str(new), str(sess), check_status=2)
    assert "no MRT files" in proc.stderr.decode()


def test_inputs_out_of_time_order_and_progress(sess, tmp_path):
    early = tmp_path / "early.mrt"
    early.write_bytes(update(BILATERAL, "2020-09-01T00:00:00Z", plain(64500, 132591), ["203.205.160.0/20"]))
    _, err = bgp(str(early), str(sess))
    assert "warning" not in err
    assert "[1/2] early.mrt: 1 records" in err and "[2/2] sessions.mrt: 8 records" in err
    _, err = bgp(str(sess), str(early))
    assert (
        "warning: early.mrt starts at 2020-09-01T00:00:00Z, before sessions.mrt ends "
        "(2020-10-10T00:00:00Z): inputs out of time order"
    ) in err
    _, err = bgp(str(sess), str(early), "-q")
    assert "warning: early.mrt" in err and "[1/2]" not in err


@pytest.mark.real
def test_local_asn_on_collector_data_is_not_called_direct():
    rows, err = bgp(str(need_shared(PCH)), "--local-asn", "64999")
    assert {r["relationship"] for r in rows} == {"unknown"}
    assert {r["rule"] for r in rows} == {"viewpoint-mismatch"}
    assert (
        "warning: --local-asn AS64999: 518 operator route announcements on 1 session(s) recorded by "
        "AS3856 have paths that do not start with AS64999"
    ) in err
    rows, err = bgp(str(need_shared(PCH)), "--local-asn", "3856")  # the recording AS: its view
    assert len(by(rows, relationship="direct")) == 44 and "warning" not in err


@pytest.mark.real
def test_table_fits_the_terminal_and_lists_direct_routes_by_neighbour_then_prefix():
    import ipaddress
    import os
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run(
        [sys.executable, "-m", "classifier", "bgp", str(need_shared(PCH)), "--format", "table"],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert max(len(line) for line in lines) <= 120
    # titles on one line each; each list once (no summary repeating the origin table)
    assert "Paths through an operator ASN (transit)" in lines
    assert sum("originated by tencent" in line for line in lines) == 0
    assert sum(line.startswith("Prefixes originated by operator ASNs") for line in lines) == 1
    start = lines.index("Direct routes (44), by neighbour then prefix")
    body = [line.split() for line in lines[start + 3 : start + 3 + 44]]
    keys = [(int(cells[0][2:]), ipaddress.ip_network(cells[1])) for cells in body]
    assert keys == sorted(keys, key=lambda k: (k[0], k[1].version, int(k[1].network_address), k[1].prefixlen))
    assert lines[start + 1].split()[:3] == ["neighbour", "prefix", "as_path"]
    session = next(line for line in lines if line.startswith("AS3856 206.220.231.55  ibgp"))
    assert "tencent" in session and "AS132203 AS132591" in session


def test_usage_errors_of_the_new_options(sess):
    for args, message in (
        (("--kernel", "--sessions"), "--sessions apply to MRT input only"),
        ((str(sess), "--timeline", "--sessions"), "--timeline or --sessions, not both"),
    ):
        proc = run_cli("bgp", *args, check_status=2)
        assert message in proc.stderr.decode()


# --------------------------------------------------------------------------------------------
# A 2026 RIB built from the real per-ASN prefix lists (tests/bgp_recent.py says why and how)


@pytest.mark.real
def test_recent_rib_with_bytedance_and_tencent(tmp_path):
    import bgp_recent

    need_shared(bgp_recent.ASN_LISTS)
    path = tmp_path / "recent.mrt"
    path.write_bytes(bgp_recent.build())
    rows, _ = bgp(str(path))
    origins: dict[int, set[str]] = {}
    for r in rows:
        origins.setdefault(r["origin_asn"], set()).add(r["prefix"])
    listed = {a: set(bgp_recent.prefixes(a, 4) + bgp_recent.prefixes(a, 6)) for a in bgp_recent.UPSTREAM}
    assert {a: len(p) for a, p in origins.items()} == {396986: 117, 138699: 10, 45090: 106, 132203: 196}
    for asn, found in origins.items():
        assert found <= listed[asn]
    direct = by(rows, relationship="direct")
    assert {(r["peer_asn"], r["neighbour_asn"]) for r in direct} == {
        (64510, 396986),
        (64510, 132203),
        (64501, 138699),
    }
    # 2026: the TikTok item was suspended in 2020, the WeChat item rescinded in 2021: logged, saying so
    assert {r["action"] for r in rows} == {"log"}
    tiktok = next(r for r in direct if r["app"] == "tiktok")
    assert "suspended by commerce-tiktok-notice-2020-11-12" in tiktok["reason"]
    sessions, _ = bgp(str(path), "--sessions")
    kinds = {
        (s["peer_asn"], s["operator"]): (s["session_type"], s["relationship"], s["live"]) for s in sessions
    }
    assert kinds == {
        (64500, "bytedance"): ("bilateral", "indirect", 127),
        (64500, "tencent"): ("bilateral", "indirect", 302),
        (64501, "bytedance"): ("bilateral", "direct", 1),
        (64510, "bytedance"): ("route-server", "direct", 117),
        (64510, "tencent"): ("route-server", "direct", 196),
    }


def test_vrp_and_rpsl_units(tmp_path):
    from classifier.bgp.irr import RouteObjects
    from classifier.bgp.rpki import VrpSet

    vrps = tmp_path / "vrps.csv"
    vrps.write_text(
        "# a comment line\nASN,IP Prefix,Max Length,Trust Anchor\n"
        "AS138699,2404:9dc0::/32,48,apnic\nAS0,0.0.0.0/0,32,unknown\n"
    )
    vset = VrpSet.load(str(vrps))
    assert vset.validate("2404:9dc0:1::/48", 138699).state == "valid"
    assert vset.validate("2404:9dc0:1:1::/64", 138699).state == "invalid-length"
    assert vset.validate("2404:9dc1::/32", 138699).state == "not-found"
    # an AS0 VRP for the whole space makes every IPv4 route covered: only AS0 "matches", never valid
    assert vset.validate("71.18.0.0/20", 396986).state == "invalid-asn"
    assert vset.validate("71.18.0.0/20", None).state == "invalid-asn"  # AS_SET origin

    rpsl = tmp_path / "ripe.db.route"
    rpsl.write_text(
        "route6: 2605:340::/32\n+\torigin: AS64999\norigin: AS396986 # trailing comment\n"
        "source: RIPE\n\nroute: not-a-prefix\norigin: AS1\n"
    )
    objects = RouteObjects.load(str(rpsl))
    assert (objects.count, objects.skipped) == (1, 1)
    assert objects.check("2605:340::/32", 396986).state == "registered"
    assert objects.check("2605:340:1::/48", 396986).state == "covered"
