"""The pieces of the BGP audit on their own: AS paths, the NLRI walk of the prefilter, the decider,
and the promise that every `classifier` run can import the bgp command cheaply."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import test_bgp_mrtwriter as w
from conftest import ROOT, run_cli
from test_bgp_mrt import PEER_A, _attrs, ts

from classifier.bgp import aspath
from classifier.bgp.mrt import Needles, import_mrtparse
from classifier.bgp.updates import (
    Announcement,
    SessionDown,
    Withdrawal,
    peek_bgp4mp,
    prefix_key,
    session_change,
    touched_prefixes,
    update_events,
)

OPS = {396986: "bytedance", 138699: "bytedance", 45090: "tencent", 132203: "tencent"}


def test_as4_merge_and_text():
    two = (64500, 23456, 23456)
    assert aspath.merge_as4(two, (396986, 138699)) == (64500, 396986, 138699)
    assert aspath.merge_as4(two, (1, 2, 3, 4)) == two  # longer AS4_PATH: ignored (RFC 6793)
    assert aspath.merge_as4(two, ()) == two
    assert aspath.text((64500, frozenset({3, 1}), 7)) == "64500 {1,3} 7"


def test_from_segments_drops_confederations():
    segs = [
        {"type": {3: "AS_CONFED_SEQUENCE"}, "value": ["65001"]},
        {"type": {2: "AS_SEQUENCE"}, "value": ["64500", "132203"]},
        {"type": {1: "AS_SET"}, "value": ["45090", "64999"]},
    ]
    assert aspath.from_segments(segs) == (64500, 132203, frozenset({45090, 64999}))


def test_classify_neighbour_and_roles():
    c = aspath.PathClassifier(OPS)
    assert c.classify((64500, 3356, 15169), 64500) is None
    direct = c.classify((64500, 64500, 132203, 45090), 64500)
    assert (direct.neighbour_asn, direct.relationship, direct.role) == (132203, "direct", "origin")
    assert (direct.operator, direct.transit_asns, direct.origin_asn) == ("tencent", (132203,), 45090)
    assert c.classify((64500, 64500, 132203, 45090), 64500) is direct  # cached
    prepended = c.classify((2914, 4134, 45090, 45090), 3856)  # origin prepending is not transit
    assert (prepended.transit_asns, prepended.origin_asn) == ((), 45090)
    indirect = c.classify((3491, 45090), 3856)  # the peer's ASN is not on the path (route server)
    assert (indirect.neighbour_asn, indirect.relationship) == (3491, "indirect")
    own = c.classify((396986, 396986), 396986)
    assert (own.relationship, own.neighbour_asn, own.operator) == ("own", None, "bytedance")
    cross = c.classify((64500, 132203, 396986), 64500)  # a session with Tencent carrying ByteDance
    assert (cross.operator, cross.origin_operator, cross.relationship) == ("tencent", "bytedance", "direct")
    as_set = c.classify((64500, 3356, frozenset({138699, 64999})), 64500)
    assert (as_set.origin_asn, as_set.origin_set) == (None, (64999, 138699))
    assert as_set.origin_operator == "bytedance"


def test_touched_prefixes_lists_every_nlri():
    v4 = w.bgp_update(["203.0.113.0/24"], _attrs(64500, 3356), ["71.18.0.0/20", "0.0.0.0/0"])
    expected = [prefix_key(p) for p in ("203.0.113.0/24", "71.18.0.0/20", "0.0.0.0/0")]
    assert touched_prefixes(v4, False) == expected
    v6 = w.bgp_update(
        attrs=w.origin_igp()
        + w.mp_unreach(["2605:340::/32"])
        + w.mp_reach("2001:db8::9", ["2001:db8:1::/48"])
    )
    assert touched_prefixes(v6, False) == [prefix_key("2605:340::/32"), prefix_key("2001:db8:1::/48")]
    addpath = w.bgp_update(["71.18.16.0/20"], _attrs(64500, 3356), ["71.18.32.0/20"], path_id=7)
    assert touched_prefixes(addpath, True) == [prefix_key("71.18.16.0/20"), prefix_key("71.18.32.0/20")]
    assert touched_prefixes(v4[:-2], False) is None  # shorter than its header says
    broken = bytearray(v4)
    broken[-1] = 8  # the last NLRI (0.0.0.0/0) now claims /8: one more byte than the message has
    assert touched_prefixes(bytes(broken), False) is None
    assert prefix_key("2605:340::/32") == b"\x02\x20\x26\x05\x03\x40"


def _decoded(record: bytes) -> dict:
    import io

    reader = import_mrtparse().Reader(io.BytesIO(record))
    r = next(reader)
    assert not r.err, r.err_msg
    return r.data


def test_update_walker_yields_typed_events_in_message_order():
    attrs = (
        w.origin_igp()
        + w.as_path(w.seq(64500, 396986))
        + w.next_hop("192.0.2.9")
        + w.mp_unreach(["2605:340::/32"])
        + w.mp_reach("2001:db8::9", ["2605:340:1::/48"])
    )
    record = w.bgp4mp_message(
        100, *PEER_A, w.bgp_update(["203.0.113.0/24"], attrs, ["71.18.0.0/20"]), usec=500000
    )
    events = list(update_events(100.5, w.BGP4MP_MESSAGE_AS4, _decoded(record)))
    path = (64500, 396986)
    assert events == [
        Withdrawal(100.5, PEER_A, "203.0.113.0/24", None),
        Withdrawal(100.5, PEER_A, "2605:340::/32", None),
        Announcement("update", 100.5, PEER_A, "71.18.0.0/20", None, path, 100.5),
        Announcement("update", 100.5, PEER_A, "2605:340:1::/48", None, path, 100.5),
    ]


def test_update_walker_two_byte_sessions_addpath_and_session_changes():
    two_byte = (
        w.origin_igp()
        + w.as_path(w.seq(64500, w.AS_TRANS), as4=False)
        + w.as_path(w.seq(64500, 137718), kind=w.AS4_PATH)
        + w.next_hop("192.0.2.9")
    )
    record = w.bgp4mp_message(
        7, *PEER_A, w.bgp_update(attrs=two_byte, announced=["71.18.32.0/20"]), as4=False
    )
    (event,) = update_events(7.0, w.BGP4MP_MESSAGE, _decoded(record))
    assert event.path == (64500, 137718)  # AS4_PATH completes the 2-byte AS_PATH
    record = w.bgp4mp_message(8, *PEER_A, w.bgp_update(["71.18.16.0/20"], path_id=3), addpath=True)
    assert list(update_events(8.0, w.BGP4MP_MESSAGE_AS4_ADDPATH, _decoded(record))) == [
        Withdrawal(8.0, PEER_A, "71.18.16.0/20", 3)
    ]
    assert (
        list(update_events(9.0, w.BGP4MP_MESSAGE_AS4, _decoded(w.bgp4mp_message(9, *PEER_A, w.keepalive()))))
        == []
    )
    down = _decoded(w.bgp4mp_state(10, *PEER_A, w.ESTABLISHED, w.IDLE))
    assert session_change(10.0, down) == SessionDown(10.0, PEER_A, "Idle")
    up = _decoded(w.bgp4mp_state(11, *PEER_A, w.IDLE, w.ESTABLISHED))
    assert session_change(11.0, up) is None


def test_peek_bgp4mp_finds_peer_and_message_without_decoding():
    message = w.bgp_update(attrs=_attrs(64500, 396986), announced=["71.18.0.0/20"])
    record = w.bgp4mp_message(1, *PEER_A, message, usec=1)  # BGP4MP_ET: the message starts at 16
    peer, at = peek_bgp4mp(record, 16, 4)
    assert (peer, record[at:]) == (PEER_A, message)
    v6 = w.bgp4mp_message(1, 64501, "2001:db8::1", message, as4=False)
    peer, at = peek_bgp4mp(v6, 12, 2)
    assert (peer, v6[at:]) == ((64501, "2001:db8::1"), message)
    assert peek_bgp4mp(record[:20], 16, 4) == ((None, ""), None)  # cut inside the header


def test_needles_cover_both_encodings():
    n = Needles([45090, 396986])
    assert Needles.found(b"..\x00\x00\xb0\x22..", n.four)
    assert not Needles.found(b"..\xb0\x22..", n.four) and Needles.found(b"..\xb0\x22..", n.two_or_four)
    assert Needles.found(b"\x00\x06\x0e\xba", n.two_or_four)
    assert not Needles.found(b"anything", Needles([]).four)


def test_addpath_updates_keep_paths_apart(tmp_path):
    data = b"".join(
        [
            w.bgp4mp_message(
                ts("2026-02-01T00:00:00Z"),
                *PEER_A,
                w.bgp_update(attrs=_attrs(64500, 396986), announced=["71.18.0.0/20"], path_id=1),
                addpath=True,
            ),
            w.bgp4mp_message(
                ts("2026-02-01T00:00:01Z"),
                *PEER_A,
                w.bgp_update(attrs=_attrs(64500, 3356, 396986), announced=["71.18.0.0/20"], path_id=2),
                addpath=True,
            ),
            w.bgp4mp_message(
                ts("2026-02-02T00:00:00Z"),
                *PEER_A,
                w.bgp_update(withdrawn=["71.18.0.0/20"], path_id=1),
                addpath=True,
            ),
        ]
    )
    path = tmp_path / "addpath.mrt"
    path.write_bytes(data)
    rows = [json.loads(x) for x in run_cli("bgp", str(path), "-q").stdout.decode().splitlines()]
    assert {(r["path_id"], r["as_path"], r["state"]) for r in rows} == {
        (1, "64500 396986", "withdrawn"),
        (2, "64500 3356 396986", "live"),
    }


def test_mrtparse_import_keeps_the_sigpipe_handler():
    before = signal.getsignal(signal.SIGPIPE)
    import_mrtparse()
    assert signal.getsignal(signal.SIGPIPE) == before


def test_decider_strictest_over_live_interval(policy):
    from classifier.bgp.decide import Decider

    d = Decider(policy)
    info = aspath.PathClassifier(OPS).classify((64500, 132203), 64500)
    # live from 2019 to 2022: the WeChat item took effect (announced view) on 2020-09-21 at 04:00Z
    v = d.strictest(
        info, "wechat", "1.12.0.0/21", [(ts("2019-01-01T00:00:00Z"), ts("2022-01-01T00:00:00Z"))], "announced"
    )
    assert (v.action, v.at, v.rule) == ("block", "2020-09-21T04:00:00Z", "provision-effective")
    v = d.strictest(
        info, "wechat", "1.12.0.0/21", [(ts("2021-07-01T00:00:00Z"), ts("2022-01-01T00:00:00Z"))], "announced"
    )
    assert (v.action, v.at) == ("log", "2021-07-01T00:00:00Z") and "rescinded" in v.reason
    assert d.changes_within("tiktok", ts("2020-01-01T00:00:00Z"), ts("2030-01-01T00:00:00Z")) == [
        ts("2020-10-30T04:00:00Z"),
        ts("2020-11-12T05:00:00Z"),
    ]


def test_decider_needs_the_category(policy):
    from classifier.bgp.decide import Decider
    from classifier.errors import UserError
    from classifier.policy import Policy

    narrowed = Policy(
        policy.apps,
        tuple(c for c in policy.categories if c != "transit-peering"),
        policy.instruments,
        policy.provisions,
        policy.events,
    )
    with pytest.raises(UserError, match="transit-peering"):
        Decider(narrowed)


def test_cli_module_is_import_light():
    code = (
        "import sys, classifier.cli as c; c.build_parser(); "
        "print([m for m in ('mrtparse', 'pyroute2', 'maxminddb', 'rich', 'classifier.bgp.mrt') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands():
    assert "bgp" in run_cli("--help").stdout.decode()
    sig = run_cli("signatures", "--help").stdout.decode()
    assert "build-prefixes" in sig and "export-prefixes" in sig
    assert "--local-asn" in run_cli("bgp", "--help").stdout.decode()


def _rows(*args: str) -> list[dict]:
    return [json.loads(x) for x in run_cli("bgp", *args, "-q").stdout.decode().splitlines()]


def test_operator_path_replaced_by_a_path_without_operator(tmp_path):
    path = tmp_path / "replaced.mrt"
    path.write_bytes(
        w.bgp4mp_message(
            ts("2026-02-01T00:00:00Z"),
            *PEER_A,
            w.bgp_update(attrs=_attrs(64500, 396986), announced=["71.18.0.0/20"]),
        )
        + w.bgp4mp_message(
            ts("2026-02-03T00:00:00Z"),
            *PEER_A,  # e.g. a hijack or a re-origination
            w.bgp_update(attrs=_attrs(64500, 3356, 64666), announced=["71.18.0.0/20"]),
        )
    )
    (route,) = _rows(str(path))
    assert (route["as_path"], route["state"], route["last_seen"]) == (
        "64500 396986",
        "replaced",
        "2026-02-03T00:00:00Z",
    )
    events = _rows(str(path), "--timeline")
    assert [(e["event"], e["as_path"], e["previous_as_path"]) for e in events] == [
        ("announce", "64500 396986", None),
        ("replaced", "64500 3356 64666", "64500 396986"),
    ]


def test_updates_after_a_rib_continue_its_routes(tmp_path):
    from test_bgp_mrt import rib_file

    rib = tmp_path / "rib.mrt"
    rib.write_bytes(rib_file())
    updates = tmp_path / "updates.mrt"
    updates.write_bytes(
        w.bgp4mp_message(ts("2025-03-02T00:00:00Z"), *PEER_A, w.bgp_update(withdrawn=["71.18.0.0/16"]))
    )
    rows = _rows(str(rib), str(updates))
    route = next(r for r in rows if r["prefix"] == "71.18.0.0/16" and r["peer_asn"] == PEER_A[0])
    assert (route["source"], route["state"]) == ("rib", "withdrawn")
    assert route["last_seen"] == "2025-03-02T00:00:00Z"
    other = next(r for r in rows if r["prefix"] == "2605:340::/32")
    assert (other["state"], other["last_seen"]) == ("live", "2025-03-02T00:00:00Z")
    events = _rows(str(rib), str(updates), "--timeline")
    assert [(e["event"], e["prefix"], e["file"]) for e in events] == [
        ("withdraw", "71.18.0.0/16", "updates.mrt")
    ]
