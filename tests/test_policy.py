"""Policy data (signatures/policy/*.toml) and the engine that evaluates it (classifier/policy.py).

The fact tests load the shipped files and check the statuses one second either side of every
boundary the facts name, in both views. The validation tests write broken copies of the shipped
files to a temporary directory and expect a one-line SignatureError naming file and entry.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from classifier.errors import SignatureError, UserError
from classifier.policy import (
    RULE_ATTRIBUTED,
    RULE_EFFECTIVE,
    RULE_NOT_ATTRIBUTED,
    RULE_UNENFORCED,
    VIEWS,
    Policy,
    describe,
    shipped_policy_dir,
)
from classifier.timeutil import format_instant, parse_instant

POLICY_DIR = Path(__file__).resolve().parents[1] / "signatures" / "policy"

WECHAT_2020 = (
    "wechat-2020-app-store",
    "wechat-2020-cdn",
    "wechat-2020-code-use",
    "wechat-2020-hosting",
    "wechat-2020-payments",
    "wechat-2020-transit-peering",
)
TIKTOK_2020_NOV = (
    "tiktok-2020-cdn",
    "tiktok-2020-code-use",
    "tiktok-2020-hosting",
    "tiktok-2020-transit-peering",
)
TIKTOK_2020 = ("tiktok-2020-app-store", *TIKTOK_2020_NOV)
PAFACA = ("tiktok-pafaca-app-store", "tiktok-pafaca-hosting")

# The non-enforcement windows as the facts give them, in the readings README.md documents:
# start of the signing day, end of the last named day (US Eastern), half-open.
WINDOWS = {
    "eo-14166-2025-01-20": ("2025-01-20T05:00:00Z", "2025-04-06T04:00:00Z"),
    "eo-14258-2025-04-04": ("2025-04-04T04:00:00Z", "2025-06-20T04:00:00Z"),
    "eo-14310-2025-06-19": ("2025-06-19T04:00:00Z", "2025-09-18T04:00:00Z"),
    "eo-14350-2025-09-16": ("2025-09-16T04:00:00Z", "2025-12-17T05:00:00Z"),
    "eo-14352-2025-09-25": ("2025-09-25T04:00:00Z", "2026-01-24T05:00:00Z"),
}
CESSATION = "tiktok-usds-jv-closing-2026-01-22"


def t(text: str) -> float:
    return parse_instant(text)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(POLICY_DIR)


def status_of(policy: Policy, pid: str, when: float, view: str) -> tuple[str, str | None, str | None]:
    st = policy.status(pid, when, view)
    return st.status, st.event, st.unenforced


# --------------------------------------------------------------------------------------------
# Shipped data: shape


def test_shipped_dir_is_the_source_tree_copy():
    assert shipped_policy_dir() == POLICY_DIR


def test_shipped_policy_has_every_provision_and_event(policy):
    assert set(policy.provisions) == {*WECHAT_2020, *TIKTOK_2020, *PAFACA}
    assert set(WINDOWS) | {CESSATION} <= set(policy.events)
    assert policy.apps == ("tiktok", "wechat")
    for prov in policy.provisions.values():
        assert prov.source and prov.date and prov.reading and prov.clock_time
    for ev in policy.events.values():
        assert ev.source and ev.date and ev.reading and ev.note


def test_pafaca_covers_only_tiktok_app_store_and_hosting(policy):
    pafaca = {pid for pid, p in policy.provisions.items() if p.instrument == "pafaca"}
    assert {(policy.provisions[p].app, policy.provisions[p].category) for p in pafaca} == {
        ("tiktok", "app-store"),
        ("tiktok", "hosting"),
    }
    assert policy.provisions_for("tiktok", "hosting") == ("tiktok-2020-hosting", "tiktok-pafaca-hosting")
    assert policy.provisions_for("wechat", "hosting") == ("wechat-2020-hosting",)
    assert policy.provisions_for("wechat", "payments") == ("wechat-2020-payments",)
    assert policy.provisions_for("tiktok", "payments") == ()
    assert policy.provisions_for("qq", "hosting") == ()


def test_event_views_follow_the_kind(policy):
    both = {"schedule-change", "suspension", "rescission", "cessation"}
    for ev in policy.events.values():
        expected = set(VIEWS) if ev.kind in both else {"in-force"}
        assert set(ev.views) == expected, ev.id


def test_glob_affects_expands_to_matching_provisions_only(policy):
    assert policy.events["marland-v-trump-2020-10-30"].affects == ("tiktok-2020-*",)
    assert set(policy.events["marland-v-trump-2020-10-30"].provisions) == set(TIKTOK_2020)
    assert set(policy.events["wechat-users-alliance-v-trump-2020-09-19"].provisions) == set(WECHAT_2020)
    assert set(policy.events["eo-14034-2021-06-09"].provisions) == {*TIKTOK_2020, *WECHAT_2020}
    assert set(policy.events[CESSATION].provisions) == set(PAFACA)
    # The glob reaches every matching provision in behaviour too: each Nov-12 item is ended by it.
    for pid in TIKTOK_2020_NOV:
        assert status_of(policy, pid, t("2020-11-01T00:00:00Z"), "in-force") == (
            "ended",
            "marland-v-trump-2020-10-30",
            None,
        )


# --------------------------------------------------------------------------------------------
# WeChat 2020


def test_wechat_hosting_2020_09_22_blocks_announced_and_logs_in_force(policy):
    when = t("2020-09-22T00:00:00Z")
    ann = policy.decide("wechat", ["hosting"], True, when, "announced")
    assert (ann.action, ann.rule, ann.view) == ("block", RULE_EFFECTIVE, "announced")
    assert "wechat-2020-hosting" in ann.reason
    assert [s.provision for s in ann.provisions] == ["wechat-2020-hosting"]
    assert ann.provisions[0].status == "effective"

    inf = policy.decide("wechat", ["hosting"], True, when, "in-force")
    assert (inf.action, inf.rule) == ("log", RULE_ATTRIBUTED)
    st = inf.provisions[0]
    assert (st.status, st.event) == ("ended", "wechat-users-alliance-v-trump-2020-09-19")
    assert "enjoined" in st.reason and "in-force view" in st.reason


def test_wechat_hosting_2022_announced_is_rescinded(policy):
    d = policy.decide("wechat", ["hosting"], True, t("2022-01-01T00:00:00Z"), "announced")
    assert (d.action, d.rule) == ("log", RULE_ATTRIBUTED)
    assert (d.provisions[0].status, d.provisions[0].event) == ("ended", "commerce-rescission-2021-06")
    assert "rescinded" in d.provisions[0].reason


@pytest.mark.parametrize("pid", WECHAT_2020)
def test_wechat_announced_boundaries(policy, pid):
    start = t("2020-09-21T04:00:00Z")
    assert status_of(policy, pid, start - 1, "announced") == ("not-yet-effective", None, None)
    assert status_of(policy, pid, start, "announced") == ("effective", None, None)
    assert status_of(policy, pid, start + 1, "announced") == ("effective", None, None)
    # The injunction is a court order: the announced view ignores it.
    assert status_of(policy, pid, t("2020-12-31T00:00:00Z"), "announced") == ("effective", None, None)
    end = t("2021-06-16T04:00:00Z")
    assert status_of(policy, pid, end - 1, "announced") == ("effective", None, None)
    assert status_of(policy, pid, end + 1, "announced") == ("ended", "commerce-rescission-2021-06", None)


@pytest.mark.parametrize("pid", WECHAT_2020)
def test_wechat_in_force_enjoined_before_start(policy, pid):
    inj = t("2020-09-19T07:00:00Z")
    assert status_of(policy, pid, inj - 1, "in-force") == ("not-yet-effective", None, None)
    after = ("ended", "wechat-users-alliance-v-trump-2020-09-19", None)
    assert status_of(policy, pid, inj + 1, "in-force") == after
    assert status_of(policy, pid, t("2020-09-21T04:00:01Z"), "in-force") == after
    # The first ending stays the recorded one through revocation and rescission.
    assert status_of(policy, pid, t("2022-01-01T00:00:00Z"), "in-force") == after


# --------------------------------------------------------------------------------------------
# TikTok 2020


def test_tiktok_app_store_announced_delay(policy):
    pid, view = "tiktok-2020-app-store", "announced"
    delay = "commerce-tiktok-app-store-delay-2020-09-19"
    moved = t("2020-09-19T04:00:00Z")
    before = policy.status(pid, moved - 1, view)
    assert (before.status, before.effective, before.event) == (
        "not-yet-effective",
        "2020-09-21T04:00:00Z",
        None,
    )
    after = policy.status(pid, moved + 1, view)
    assert (after.status, after.effective, after.event) == (
        "not-yet-effective",
        "2020-09-28T04:59:00Z",
        delay,
    )
    # The original start passes without effect; 2020-09-21 is not blocked.
    for s in ("2020-09-21T04:00:01Z", "2020-09-21T12:00:00Z", "2020-09-27T12:00:00Z"):
        assert policy.status(pid, t(s), view).status == "not-yet-effective"
    assert policy.decide("tiktok", ["app-store"], True, t("2020-09-21T12:00:00Z"), view).action != "block"
    start = t("2020-09-28T04:59:00Z")
    assert status_of(policy, pid, start - 1, view) == ("not-yet-effective", delay, None)
    assert status_of(policy, pid, start + 1, view) == ("effective", delay, None)
    d = policy.decide("tiktok", ["app-store"], True, start + 1, view)
    assert (d.action, d.rule) == ("block", RULE_EFFECTIVE)
    end = t("2020-11-12T05:00:00Z")
    assert status_of(policy, pid, end - 1, view) == ("effective", delay, None)
    ended = policy.status(pid, end + 1, view)
    assert (ended.status, ended.event, ended.effective) == (
        "ended",
        "commerce-tiktok-notice-2020-11-12",
        "2020-09-28T04:59:00Z",
    )
    assert "suspended" in ended.reason and "after taking effect" in ended.reason


def test_tiktok_app_store_in_force_enjoined_before_delayed_start(policy):
    pid = "tiktok-2020-app-store"
    inj = t("2020-09-27T04:00:00Z")
    assert status_of(policy, pid, inj - 1, "in-force") == (
        "not-yet-effective",
        "commerce-tiktok-app-store-delay-2020-09-19",
        None,
    )
    assert status_of(policy, pid, inj + 1, "in-force") == ("ended", "tiktok-v-trump-2020-09-27", None)
    assert status_of(policy, pid, t("2020-09-28T04:59:01Z"), "in-force")[0] == "ended"


@pytest.mark.parametrize("pid", TIKTOK_2020_NOV)
def test_tiktok_november_items(policy, pid):
    # Announced: the Commerce notice of 2020-11-12 says they will not go into effect.
    notice = t("2020-11-12T05:00:00Z")
    start = t("2020-11-13T04:59:00Z")
    before = policy.status(pid, notice - 1, "announced")
    assert (before.status, before.effective) == ("not-yet-effective", "2020-11-13T04:59:00Z")
    assert status_of(policy, pid, notice + 1, "announced") == (
        "ended",
        "commerce-tiktok-notice-2020-11-12",
        None,
    )
    assert status_of(policy, pid, start + 1, "announced")[0] == "ended"
    # In force: Marland enjoined them first.
    marland = t("2020-10-30T04:00:00Z")
    assert status_of(policy, pid, marland - 1, "in-force") == ("not-yet-effective", None, None)
    assert status_of(policy, pid, marland + 1, "in-force") == ("ended", "marland-v-trump-2020-10-30", None)
    assert status_of(policy, pid, start + 1, "in-force") == ("ended", "marland-v-trump-2020-10-30", None)


def test_tiktok_november_items_never_effective_announced(policy):
    for pid in TIKTOK_2020_NOV:
        assert not any(change == "takes effect" for _, p, change in policy.timeline("announced") if p == pid)


def test_no_2020_item_is_ever_in_force(policy):
    items = (*TIKTOK_2020, *WECHAT_2020)
    instants = {t("2020-09-01T00:00:00Z") + day * 86400 for day in range(0, 900)}
    for ev in policy.events.values():
        for x in (ev.at, ev.until, ev.new_effective):
            if x is not None:
                instants |= {x - 1, x, x + 1}
    for prov in policy.provisions.values():
        instants |= {prov.effective - 1, prov.effective, prov.effective + 1}
    for pid in items:
        for when in instants:
            assert policy.status(pid, when, "in-force").status != "effective", (pid, format_instant(when))
    assert not [e for e in policy.timeline("in-force") if e[1] in items and "takes effect" in e[2]]


# --------------------------------------------------------------------------------------------
# PAFACA


@pytest.mark.parametrize("pid", PAFACA)
def test_pafaca_announced(policy, pid):
    start, end = t("2025-01-19T05:00:00Z"), t("2026-01-22T05:00:00Z")
    assert status_of(policy, pid, start - 1, "announced") == ("not-yet-effective", None, None)
    assert status_of(policy, pid, start + 1, "announced") == ("effective", None, None)
    # Non-enforcement directions are ignored in the announced view.
    assert status_of(policy, pid, t("2025-06-01T00:00:00Z"), "announced") == ("effective", None, None)
    assert status_of(policy, pid, end - 1, "announced") == ("effective", None, None)
    ceased = policy.status(pid, end + 1, "announced")
    assert (ceased.status, ceased.event) == ("ended", CESSATION)
    assert "ceased" in ceased.reason


@pytest.mark.parametrize("pid", PAFACA)
def test_pafaca_in_force_chain_of_windows(policy, pid):
    view = "in-force"
    start = t("2025-01-19T05:00:00Z")
    assert status_of(policy, pid, start - 1, view) == ("not-yet-effective", None, None)
    assert status_of(policy, pid, start + 1, view) == ("effective", None, None)
    first = t(WINDOWS["eo-14166-2025-01-20"][0])
    assert status_of(policy, pid, first - 1, view) == ("effective", None, None)
    assert status_of(policy, pid, first + 1, view) == ("effective", None, "eo-14166-2025-01-20")
    # Overlapping windows: the flag names the earliest-issued window still running, so it moves
    # on at each window's end to the next one.
    ids = list(WINDOWS)
    for cur, nxt in itertools.pairwise(ids):
        until = t(WINDOWS[cur][1])
        assert status_of(policy, pid, until - 1, view) == ("effective", None, cur)
        assert status_of(policy, pid, until + 1, view) == ("effective", None, nxt)
    end = t("2026-01-22T05:00:00Z")
    assert status_of(policy, pid, end - 1, view) == ("effective", None, "eo-14352-2025-09-25")
    assert status_of(policy, pid, end + 1, view) == ("ended", CESSATION, None)


@pytest.mark.parametrize("window", list(WINDOWS))
def test_each_non_enforcement_window_edge(policy, window):
    """Each window alone (the others and the cessation dropped), both edges one second either side."""
    ev = policy.events[window]
    assert (ev.kind, format_instant(ev.at), format_instant(ev.until)) == ("non-enforcement", *WINDOWS[window])
    alone = policy.without([w for w in WINDOWS if w != window] + [CESSATION])
    at, until = t(WINDOWS[window][0]), t(WINDOWS[window][1])
    for pid in PAFACA:
        assert status_of(alone, pid, at - 1, "in-force") == ("effective", None, None)
        assert status_of(alone, pid, at + 1, "in-force") == ("effective", None, window)
        assert status_of(alone, pid, until - 1, "in-force") == ("effective", None, window)
        assert status_of(alone, pid, until + 1, "in-force") == ("effective", None, None)
        # The announced view never carries the flag.
        assert status_of(alone, pid, at + 1, "announced") == ("effective", None, None)


def test_eo_14352_window_assumes_start_at_the_order(policy):
    ev = policy.events["eo-14352-2025-09-25"]
    assert "ASSUMED START" in ev.reading and "2025-09-25" in ev.reading
    assert format_instant(ev.alternative) == "2026-04-16T04:00:00Z"


def test_cessation_is_marked_as_our_reading(policy):
    ev = policy.events[CESSATION]
    assert ev.kind == "cessation" and set(ev.views) == set(VIEWS)
    assert "OUR READING" in ev.note and "2(c)" in ev.source


def test_unenforced_blocks_switch(policy):
    when = t("2025-06-01T00:00:00Z")
    default = policy.decide("tiktok", ["hosting"], True, when, "in-force")
    assert (default.action, default.rule) == ("log", RULE_UNENFORCED)
    assert "eo-14258-2025-04-04" in default.reason
    strict = policy.decide("tiktok", ["hosting"], True, when, "in-force", unenforced_blocks=True)
    assert (strict.action, strict.rule) == ("block", RULE_UNENFORCED)
    announced = policy.decide("tiktok", ["hosting"], True, when, "announced")
    assert (announced.action, announced.rule) == ("block", RULE_EFFECTIVE)
    # The day between PAFACA's start and EO 14166: in force and enforceable, so it blocks.
    gap = policy.decide("tiktok", ["app-store"], True, t("2025-01-19T12:00:00Z"), "in-force")
    assert (gap.action, gap.rule) == ("block", RULE_EFFECTIVE)
    # After the joint venture closed nothing covers TikTok any more.
    after = policy.decide("tiktok", ["hosting"], True, t("2026-02-01T00:00:00Z"), "in-force", True)
    assert (after.action, after.rule) == ("log", RULE_ATTRIBUTED)


def test_wechat_not_covered_by_pafaca(policy):
    when = t("2025-06-01T00:00:00Z")
    for view in VIEWS:
        d = policy.decide("wechat", ["hosting", "app-store"], True, when, view, unenforced_blocks=True)
        assert (d.action, d.rule) == ("log", RULE_ATTRIBUTED)
        assert {s.provision for s in d.provisions} == {"wechat-2020-hosting", "wechat-2020-app-store"}
        assert all(s.status == "ended" for s in d.provisions)


# --------------------------------------------------------------------------------------------
# decide: rules and shape


def test_decide_unattributed_and_attributed_without_provision(policy):
    when = t("2020-09-22T00:00:00Z")
    d = policy.decide(None, [], False, when, "announced")
    assert (d.action, d.rule, d.provisions) == ("allow", RULE_NOT_ATTRIBUTED, ())
    d = policy.decide(None, ["hosting"], True, when, "announced")
    assert (d.action, d.rule, d.provisions) == ("log", RULE_ATTRIBUTED, ())
    d = policy.decide("tiktok", ["payments"], True, when, "announced")
    assert (d.action, d.rule, d.provisions) == ("log", RULE_ATTRIBUTED, ())
    d = policy.decide("tiktok", ["hosting"], True, when, "announced")
    assert (d.action, d.rule) == ("log", RULE_ATTRIBUTED)
    assert [s.status for s in d.provisions] == ["not-yet-effective", "not-yet-effective"]


def test_decide_lists_every_covering_provision(policy):
    d = policy.decide("tiktok", ["cdn", "hosting", "cdn"], True, t("2025-06-01T00:00:00Z"), "announced")
    assert [s.provision for s in d.provisions] == [
        "tiktok-2020-cdn",
        "tiktok-2020-hosting",
        "tiktok-pafaca-hosting",
    ]
    assert (d.action, d.rule) == ("block", RULE_EFFECTIVE)
    assert d.reason.startswith("block: tiktok-pafaca-hosting")


def test_decide_at_is_iso_utc(policy):
    d = policy.decide("wechat", ["payments"], True, t("2020-09-22T00:00:00Z") + 0.25, "announced")
    assert d.at == "2020-09-22T00:00:00.250000Z"
    assert policy.decide(None, [], False, t("2020-09-22T00:00:00Z"), "in-force").at == "2020-09-22T00:00:00Z"


def test_unknown_view_and_provision_are_user_errors(policy):
    with pytest.raises(UserError, match="view"):
        policy.decide("wechat", ["hosting"], True, 0.0, "proposed")
    with pytest.raises(UserError, match="nonesuch"):
        policy.status("nonesuch", 0.0, "announced")
    with pytest.raises(UserError, match="nonesuch"):
        policy.without(["nonesuch"])


def test_decide_uses_precomputed_segments(policy, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("slow path called per flow")

    monkeypatch.setattr(Policy, "_evaluate", boom)
    d = policy.decide("wechat", ["hosting"], True, t("2020-09-22T00:00:00Z"), "announced")
    assert d.action == "block"


def test_segments_agree_with_slow_evaluation(policy):
    instants = set()
    for ev in policy.events.values():
        for x in (ev.at, ev.until, ev.new_effective):
            if x is not None:
                instants |= {x - 1, x, x + 1}
    for prov in policy.provisions.values():
        for x in (prov.effective, t("2019-01-01T00:00:00Z"), t("2030-01-01T00:00:00Z")):
            instants |= {x - 1, x, x + 1}
    for view in VIEWS:
        for prov in policy.provisions.values():
            for when in instants:
                assert policy.status(prov.id, when, view) == policy._evaluate(prov, view, when)


# --------------------------------------------------------------------------------------------
# timeline and describe


def test_timeline(policy):
    ann = policy.timeline("announced")
    assert ann == sorted(ann)
    assert ("2020-09-28T04:59:00Z", "tiktok-2020-app-store", "takes effect") in ann
    assert ("2021-06-16T04:00:00Z", "wechat-2020-payments", "rescinded by commerce-rescission-2021-06") in ann
    inf = policy.timeline("in-force")
    assert ("2025-01-20T05:00:00Z", "tiktok-pafaca-hosting", "not enforced under eo-14166-2025-01-20") in inf
    assert not any(p == "tiktok-2020-app-store" and c == "takes effect" for _, p, c in inf)


def test_describe(policy):
    when = t("2020-09-22T00:00:00Z")
    ann = describe(policy, when, "announced")
    inf = describe(policy, when, "in-force")
    assert ann[0] == "policy as of 2020-09-22T00:00:00Z, announced view:"
    assert len(ann) == len(inf) == 1 + len(policy.provisions)
    (line,) = [x for x in ann if "wechat-2020-hosting:" in x]
    assert line.split()[0] == "effective"
    (line,) = [x for x in inf if "wechat-2020-hosting:" in x]
    assert line.split()[0] == "ended" and "enjoined" in line
    (line,) = [
        x for x in describe(policy, t("2025-06-01T00:00:00Z"), "in-force") if "tiktok-pafaca-hosting:" in x
    ]
    assert "(unenforced)" in line


def test_instants_round_trip_and_reject_non_utc():
    assert format_instant(parse_instant("2020-11-13T04:59:00Z", exact=True)) == "2020-11-13T04:59:00Z"
    for bad in ("2020-11-13T04:59:00", "2020-11-13T04:59:00+00:00", "2020-11-13", "2020-13-13T04:59:00Z"):
        with pytest.raises(UserError):
            parse_instant(bad, exact=True)


# --------------------------------------------------------------------------------------------
# Validation of broken copies


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "policy"
    shutil.copytree(POLICY_DIR, dst)
    return dst


def _edit_entry(directory: Path, filename: str, entry_id: str, fn: Callable[[str], str]) -> Path:
    """Apply ``fn`` to the text of one [[...]] block (found by id) in ``filename``."""
    path = directory / filename
    text = path.read_text()
    blocks = re.split(r"(?m)^(?=\[\[)", text)
    hits = [i for i, b in enumerate(blocks) if f'id = "{entry_id}"\n' in b]
    assert len(hits) == 1, entry_id
    new = fn(blocks[hits[0]])
    assert new != blocks[hits[0]], "edit did not change the block"
    blocks[hits[0]] = new
    path.write_text("".join(blocks))
    return path


def _load_error(directory: Path) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        Policy.load(directory)
    err = info.value
    assert isinstance(err, UserError)
    assert "\n" not in str(err)
    return err


def _drop_line(key: str) -> Callable[[str], str]:
    return lambda block: re.sub(rf"(?m)^{key} = .*\n", "", block, count=1)


def _sub(old: str, new: str) -> Callable[[str], str]:
    return lambda block: block.replace(old, new, 1)


BROKEN = [
    # (file, entry, edit, expected words in the message)
    ("provisions.toml", "wechat-2020-cdn", _drop_line("source"), ["source: missing"]),
    ("events.toml", "marland-v-trump-2020-10-30", _drop_line("date"), ["date: missing"]),
    (
        "provisions.toml",
        "tiktok-2020-cdn",
        _sub('app = "tiktok"', 'app = "douyin"'),
        ["unknown app", "douyin"],
    ),
    (
        "provisions.toml",
        "tiktok-2020-cdn",
        _sub('category = "cdn"', 'category = "dns"'),
        ["unknown category", "dns"],
    ),
    (
        "provisions.toml",
        "wechat-2020-hosting",
        _sub('effective = "2020-09-21T04:00:00Z"', 'effective = "2020-09-21T04:00:00"'),
        ["effective", "UTC"],
    ),
    (
        "provisions.toml",
        "wechat-2020-hosting",
        _sub('effective = "2020-09-21T04:00:00Z"', 'effective = "2020-09-21T00:00:00-04:00"'),
        ["effective", "UTC"],
    ),
    (
        "provisions.toml",
        "wechat-2020-hosting",
        _sub('effective = "2020-09-21T04:00:00Z"', "effective = 2020-09-21T04:00:00Z"),
        ["effective", "datetime"],
    ),
    (
        "events.toml",
        "marland-v-trump-2020-10-30",
        _sub('affects = ["tiktok-2020-*"]', 'affects = ["tiktok-2020-*", "tiktok-2020-dns"]'),
        ["unknown provision", "tiktok-2020-dns"],
    ),
    (
        "events.toml",
        "marland-v-trump-2020-10-30",
        _sub('affects = ["tiktok-2020-*"]', 'affects = ["douyin-2020-*"]'),
        ["matches no provision", "douyin-2020-*"],
    ),
    (
        "events.toml",
        "marland-v-trump-2020-10-30",
        _sub('affects = ["tiktok-2020-*"]', 'affects = ["tiktok-*-hosting"]'),
        ["trailing"],
    ),
    (
        "events.toml",
        "eo-14258-2025-04-04",
        _sub('until = "2025-06-20T04:00:00Z"', 'until = "2025-04-01T00:00:00Z"'),
        ["until", "not after at"],
    ),
    ("events.toml", "eo-14258-2025-04-04", _drop_line("until"), ["needs 'until'"]),
    (
        "events.toml",
        "marland-v-trump-2020-10-30",
        _sub('kind = "injunction"', 'kind = "stay"'),
        ["kind: 'stay' is not one of schedule-change"],
    ),
    (
        "events.toml",
        "marland-v-trump-2020-10-30",
        _sub('views = ["in-force"]', 'views = ["announced", "in-force"]'),
        ["injunction applies in views"],
    ),
    (
        "events.toml",
        "commerce-rescission-2021-06",
        _sub('views = ["announced", "in-force"]', 'views = ["announced", "lawful"]'),
        ["views: 'lawful' is not one of announced, in-force"],
    ),
    (
        "events.toml",
        "commerce-tiktok-app-store-delay-2020-09-19",
        _drop_line("new_effective"),
        ["needs 'new_effective'"],
    ),
    (
        "events.toml",
        "marland-v-trump-2020-10-30",
        _sub('reading = "', 'until = "2020-11-30T00:00:00Z"\nreading = "'),
        ["'until' only belongs"],
    ),
    (
        "instruments.toml",
        "pafaca",
        _sub("issued = 2024-04-24", 'issued = "24/04/2024"'),
        ["issued: must be a date like 2020-09-18 (YYYY-MM-DD, quoted or not), got string '24/04/2024'"],
    ),
    (
        "instruments.toml",
        "pafaca",
        _sub("issued = 2024-04-24", "issued = 2024-04-24T00:00:00Z"),
        ["issued: must be a date", "got TOML datetime"],
    ),
    (
        "events.toml",
        "marland-v-trump-2020-10-30",
        _sub("date = 2020-10-30", 'date = "2020-10-30 "'),
        ["date: must be a date"],
    ),
    (
        "instruments.toml",
        "pafaca",
        _sub("date = 2024-04-24", "date = 2024-04-24\nsigned_by = 'x'"),
        ["unknown key 'signed_by'"],
    ),
    (
        "provisions.toml",
        "tiktok-2020-cdn",
        _sub('instrument = "commerce-tiktok-identification-2020"', 'instrument = "eo-99999"'),
        ["unknown instrument", "eo-99999"],
    ),
]


@pytest.mark.parametrize(
    ("filename", "entry", "edit", "words"), BROKEN, ids=[f"{b[1]}-{i}" for i, b in enumerate(BROKEN)]
)
def test_broken_entry_names_file_and_entry(tmp_path, filename, entry, edit, words):
    directory = _copy(tmp_path)
    _edit_entry(directory, filename, entry, edit)
    err = _load_error(directory)
    kind = filename.removesuffix("s.toml")
    assert err.path.endswith(filename)
    assert err.entry == f"{kind} '{entry}'"
    assert f"{filename}: {kind} '{entry}': " in str(err)
    for w in words:
        assert w in str(err)


def test_syntax_error_names_file_line_and_column(tmp_path):
    directory = _copy(tmp_path)
    path = directory / "events.toml"
    text = path.read_text()
    before = len(text.splitlines())
    path.write_text(text + '[[event]]\nid = "broken\n')
    err = _load_error(directory)
    assert err.path.endswith("events.toml")
    m = re.search(r"line (\d+), column (\d+)", str(err))
    assert m, str(err)
    assert int(m.group(1)) == before + 2  # the unterminated string's line


def test_duplicate_id_across_files(tmp_path):
    directory = _copy(tmp_path)
    text = (directory / "provisions.toml").read_text()
    block = re.search(r'(?ms)^\[\[provision\]\]\nid = "wechat-2020-cdn"\n.*?(?=^\[\[|\Z)', text)
    assert block
    (directory / "extra.toml").write_text(block.group(0))
    err = _load_error(directory)
    assert err.entry == "provision 'wechat-2020-cdn'" and "duplicate id" in str(err)
    assert "extra.toml" in str(err) or "provisions.toml" in str(err)


def test_unknown_top_level_table(tmp_path):
    directory = _copy(tmp_path)
    (directory / "extra.toml").write_text('[[rule]]\nid = "x"\n')
    err = _load_error(directory)
    assert err.path.endswith("extra.toml") and err.entry == "rule"


def test_missing_vocabulary_and_empty_directory(tmp_path):
    directory = _copy(tmp_path)
    (directory / "vocabulary.toml").unlink()
    assert "vocabulary" in str(_load_error(directory))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no *.toml" in str(_load_error(empty))
    assert "does not exist" in str(_load_error(tmp_path / "absent"))


def test_dates_quoted_or_not_mean_the_same(tmp_path):
    """One rule for `date` everywhere: a TOML date or the same text quoted, normalised to a date."""
    directory = _copy(tmp_path)
    event = "marland-v-trump-2020-10-30"
    _edit_entry(directory, "events.toml", event, _sub("date = 2020-10-30", 'date = "2020-10-30"'))
    _edit_entry(directory, "instruments.toml", "pafaca", _sub("issued = 2024-04-24", 'issued = "2024-04-24"'))
    quoted = Policy.load(directory)
    shipped = Policy.load(POLICY_DIR)
    assert quoted.events[event].date == shipped.events[event].date == dt.date(2020, 10, 30)
    assert quoted.instruments["pafaca"].issued == shipped.instruments["pafaca"].issued == dt.date(2024, 4, 24)


def test_empty_policy_file_is_blamed_on_itself(tmp_path):
    directory = _copy(tmp_path)
    (directory / "events.toml").write_text("# nothing here any more\n")
    err = _load_error(directory)
    assert err.path.endswith("events.toml") and "is empty" in str(err)


def test_no_provision_at_all_is_an_error(tmp_path):
    directory = _copy(tmp_path)
    for name in ("provisions.toml", "events.toml"):
        (directory / name).unlink()
    err = _load_error(directory)
    assert err.path == str(directory) and "no [[provision]]" in str(err)


def test_vocabulary_only_in_vocabulary_toml(tmp_path):
    directory = _copy(tmp_path)
    (directory / "extra.toml").write_text((directory / "vocabulary.toml").read_text())
    err = _load_error(directory)
    assert err.path.endswith("extra.toml") and err.entry == "vocabulary" and "vocabulary.toml" in err.problem
    (directory / "extra.toml").unlink()
    path = directory / "vocabulary.toml"
    text = path.read_text().replace('apps = ["tiktok", "wechat"]', 'apps = ["tiktok", "wechat", "tiktok"]')
    path.write_text(text)
    err = _load_error(directory)
    assert err.path == str(path) and err.field == "apps" and "tiktok more than once" in err.problem


def test_deeply_nested_value_is_one_line_naming_the_file(tmp_path):
    directory = _copy(tmp_path)
    (directory / "events.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    err = _load_error(directory)
    assert err.path.endswith("events.toml") and "nested too deeply" in err.problem
    (directory / "events.toml").write_text("x = " + "[" * 40 + "]" * 40 + "\n")  # parses, still refused
    err = _load_error(directory)
    assert err.path.endswith("events.toml") and err.entry == "x" and "nested too deeply" in err.problem


def test_a_file_where_the_directory_belongs(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text("")
    assert "is not a directory" in str(_load_error(path))
