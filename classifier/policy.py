"""Policy as data: which US prohibition covered an app's category of service at a given instant.

The orders, their dates and what later happened to them live in ``signatures/policy/*.toml``;
this module only knows the *shape* of that data (instruments, provisions, events) and how to
evaluate it in one of two views:

* ``announced``: the issuer's own schedule with the issuer's own changes (schedule changes,
  suspensions, rescissions, cessations). What a test gateway "blocking per the effective date"
  applies.
* ``in-force``: also applies court injunctions, revocations and non-enforcement directions.
  What an audit of what was lawful needs.

Which event kinds apply in which view is part of each event's data (``views``) and is validated
against the kind, so the data says it explicitly and cannot say it wrongly.

Everything that can be worked out once is worked out in :meth:`Policy.load`: each provision's
status is piecewise constant between the instants named in the data, so every (provision, view)
gets a sorted list of segment starts and one precomputed :class:`ProvisionStatus` per segment.
:meth:`Policy.decide`, called once per flow, is then a dictionary lookup and a bisection per
covering provision.
"""

from __future__ import annotations

import bisect
import math
import os
import re
import sys
from bisect import bisect_right as _bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NamedTuple

from classifier import vocabulary
from classifier.datafile import read_toml
from classifier.errors import SignatureError, UserError
from classifier.timeutil import format_instant, parse_instant
from classifier.validate import (
    DATE,
    TEXT,
    TEXT_LIST,
    Entry,
    Field,
    Schema,
    array_of_tables,
    choice,
    instant,
    list_of,
    matching,
    only_keys,
    optional,
)

VIEWS = ("announced", "in-force")

# Which views each event kind applies in. The data repeats this in every event's ``views`` (so a
# reader of the TOML sees it) and loading checks the two agree.
EVENT_VIEWS: dict[str, tuple[str, ...]] = {
    "schedule-change": VIEWS,
    "suspension": VIEWS,
    "rescission": VIEWS,
    "cessation": VIEWS,
    "injunction": ("in-force",),
    "revocation": ("in-force",),
    "non-enforcement": ("in-force",),
}

# Event kinds that end a provision, and the participle used in reasons.
ENDING_KINDS: dict[str, str] = {
    "suspension": "suspended",
    "injunction": "enjoined",
    "revocation": "revoked",
    "rescission": "rescinded",
    "cessation": "ceased",
}

STATUS_EFFECTIVE = "effective"
STATUS_NOT_YET = "not-yet-effective"
STATUS_ENDED = "ended"

RULE_EFFECTIVE = "provision-effective"
RULE_UNENFORCED = "provision-effective-unenforced"
RULE_ATTRIBUTED = "attributed-no-effective-provision"
RULE_NOT_ATTRIBUTED = "not-attributed"

_MAX_DECISION_INPUTS = 4096  # distinct decide() inputs whose verdicts are kept
_ID_RE = re.compile(r"[a-z0-9][a-z0-9.-]*")


def shipped_policy_dir() -> Path:
    """The policy directory shipped with the project (source tree or installed package data)."""
    here = Path(__file__).resolve().parent
    source_tree = here.parent / "signatures" / "policy"
    if source_tree.is_dir():
        return source_tree
    return here / "_signatures" / "policy"


# --------------------------------------------------------------------------------------------
# Public result types


@dataclass(frozen=True, slots=True)
class ProvisionStatus:
    """Where one provision stood at one instant in one view."""

    provision: str
    app: str
    category: str
    instrument: str
    status: str  # "effective" | "not-yet-effective" | "ended"
    effective: str  # effective instant that applied (after schedule changes), ISO Z
    event: str | None  # event that ended it or changed its start, if any
    unenforced: str | None  # non-enforcement event covering the instant (status "effective" only)
    reason: str


class Decision(NamedTuple):
    """The verdict for one flow, with the provisions and the view that produced it.

    A named tuple, not a frozen dataclass: every flow gets one, and a tuple is built in C (a frozen
    dataclass sets each field through generated Python: 0.86 against 0.18 us).
    """

    action: str  # "block" | "log" | "allow"
    view: str
    when: float  # the instant decided at, epoch seconds (the flow's own first-packet time: no copy)
    rule: str
    provisions: tuple[ProvisionStatus, ...]
    reason: str

    @property
    def at(self) -> str:
        """The instant decided at, ISO 8601 UTC (formatted when read: a live flow keeps no copy)."""
        return format_instant(self.when)


# What decide() remembers per segment: action, rule, provisions, reason (or, when the reason names
# the instant, its text before the instant) and the reason's text after the instant (else None).
_Verdict = tuple[str, str, tuple[ProvisionStatus, ...], str, str | None]
_Timeline = tuple[list[float], list[ProvisionStatus]]  # segment starts, and the status of each
_Inputs = tuple[str | None, tuple[str, ...], bool, str, bool]  # decide()'s, but for the instant
_Known = tuple[tuple[_Timeline, ...], dict[tuple[int, ...], _Verdict]]  # timelines, verdicts met


# --------------------------------------------------------------------------------------------
# Loaded entries (read-only; exposed for reports and docs)


@dataclass(frozen=True, slots=True)
class Instrument:
    """An order or law the policy cites, as issued: provisions name it."""

    id: str
    title: str
    citation: str
    issued: date
    source: str
    date: date
    url: str | None
    note: str | None
    path: str


@dataclass(frozen=True, slots=True)
class Provision:
    """One dated provision of an instrument: what it does to an app's category, from when."""

    id: str
    instrument: str
    app: str
    category: str
    summary: str
    effective: float
    clock_time: str
    reading: str
    alternative: float | None
    source: str
    date: date
    url: str | None
    note: str | None
    path: str


@dataclass(frozen=True, slots=True)
class Event:
    """A dated change to provisions (a schedule change, an injunction, a rescission...) and its views."""

    id: str
    kind: str
    at: float
    until: float | None
    new_effective: float | None
    affects: tuple[str, ...]  # as written (may hold trailing-* globs)
    provisions: tuple[str, ...]  # resolved provision ids
    views: tuple[str, ...]
    clock_time: str | None
    reading: str
    alternative: float | None
    source: str
    date: date
    url: str | None
    note: str
    path: str


# --------------------------------------------------------------------------------------------
# Schemas (the shared validation layer, classifier.validate). A `date` is a TOML date or the
# same text quoted; an instant is a quoted UTC string (parse_instant says why another is not).

_POLICY_ID = matching(_ID_RE, "must be lowercase letters, digits, '-' or '.'", 200)


def _exact_instant(text: str) -> float:
    return parse_instant(text, exact=True)


_INSTANT = instant(_exact_instant, "2020-09-20T04:00:00Z")
_SOURCED = (Field("source", TEXT), Field("date", DATE), optional("url", TEXT))

_SCHEMAS = {
    "instrument": Schema(
        "instrument",
        (
            Field("id", _POLICY_ID),
            Field("title", TEXT),
            Field("citation", TEXT),
            Field("issued", DATE),
            *_SOURCED,
            optional("note", TEXT),
        ),
    ),
    "provision": Schema(
        "provision",
        (
            Field("id", _POLICY_ID),
            Field("instrument", TEXT),
            Field("app", TEXT),
            Field("category", TEXT),
            Field("summary", TEXT),
            Field("effective", _INSTANT),
            Field("clock_time", TEXT),
            Field("reading", TEXT),
            optional("alternative", _INSTANT),
            *_SOURCED,
            optional("note", TEXT),
        ),
    ),
    "event": Schema(
        "event",
        (
            Field("id", _POLICY_ID),
            Field("kind", choice(tuple(EVENT_VIEWS))),
            Field("at", _INSTANT),
            optional("until", _INSTANT),
            optional("new_effective", _INSTANT),
            Field("affects", TEXT_LIST),
            Field("views", list_of(choice(VIEWS))),
            optional("clock_time", TEXT),
            Field("reading", TEXT),
            optional("alternative", _INSTANT),
            *_SOURCED,
            Field("note", TEXT),
        ),
    ),
}


def _read_entries(root: Path, skip: Path) -> dict[str, list[Entry]]:
    """Every [[instrument]], [[provision]] and [[event]] under ``root``, checked; ids unique."""
    entries: dict[str, list[Entry]] = {kind: [] for kind in _SCHEMAS}
    seen_ids: dict[str, str] = {}
    for file in sorted(p for p in root.rglob("*.toml") if p.is_file() and p != skip):
        spath = str(file)
        doc = read_toml(file, SignatureError, cached=True)  # an empty policy file is an error
        if "vocabulary" in doc:
            raise SignatureError(spath, "vocabulary", f"belongs in {skip} only, the one vocabulary")
        only_keys(doc, _SCHEMAS, spath, SignatureError)
        for kind, schema in _SCHEMAS.items():
            for i, raw in enumerate(array_of_tables(doc, kind, spath, SignatureError)):
                entry = schema.check(raw, spath, i, SignatureError)
                if entry["id"] in seen_ids:
                    raise entry.fail(f"duplicate id (first defined in {seen_ids[entry['id']]})")
                seen_ids[entry["id"]] = spath
                entries[kind].append(entry)
    return entries


# --------------------------------------------------------------------------------------------
# The engine


class Policy:
    """Instruments, provisions and events, evaluated per view and instant."""

    def __init__(
        self,
        apps: tuple[str, ...],
        categories: tuple[str, ...],
        instruments: dict[str, Instrument],
        provisions: dict[str, Provision],
        events: dict[str, Event],
    ) -> None:
        """Build from validated entries; use :meth:`load` rather than calling this directly."""
        self.apps = apps
        self.categories = categories
        self.instruments = instruments
        self.provisions = provisions
        self.events = events
        self._precompute()

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Policy:
        """Read and validate every ``*.toml`` under ``directory``; SignatureError on any fault.

        The apps and categories come from the directory's ``vocabulary.toml``.
        """
        root = Path(directory)
        if not root.is_dir():
            problem = (
                "is not a directory (a policy directory is expected)"
                if root.exists()
                else "policy directory does not exist"
            )
            raise SignatureError(str(root), None, problem)
        if not any(p.is_file() for p in root.rglob("*.toml")):
            raise SignatureError(str(root), None, "no *.toml policy files")
        vocab_path = root / vocabulary.FILE_NAME
        vocab = vocabulary.load(vocab_path)
        apps, categories = vocab.apps, vocab.categories
        entries = _read_entries(root, vocab_path)
        if not entries["provision"]:
            raise SignatureError(str(root), None, "no [[provision]] in any policy file: nothing to decide")

        instruments: dict[str, Instrument] = {}
        for e in entries["instrument"]:
            instruments[e["id"]] = Instrument(
                id=e["id"],
                title=e["title"],
                citation=e["citation"],
                issued=e["issued"],
                source=e["source"],
                date=e["date"],
                url=e["url"],
                note=e["note"],
                path=e.path,
            )

        provisions: dict[str, Provision] = {}
        for e in entries["provision"]:
            if e["instrument"] not in instruments:
                raise e.fail(f"unknown instrument {e['instrument']!r}", "instrument")
            if e["app"] not in apps:
                raise e.fail(f"unknown app {e['app']!r}; known: {', '.join(apps)}", "app")
            if e["category"] not in categories:
                known = ", ".join(categories)
                raise e.fail(f"unknown category {e['category']!r}; known: {known}", "category")
            provisions[e["id"]] = Provision(
                id=e["id"],
                instrument=e["instrument"],
                app=e["app"],
                category=e["category"],
                summary=e["summary"],
                effective=e["effective"],
                clock_time=e["clock_time"],
                reading=e["reading"],
                alternative=e["alternative"],
                source=e["source"],
                date=e["date"],
                url=e["url"],
                note=e["note"],
                path=e.path,
            )

        events = {e["id"]: cls._make_event(e, provisions) for e in entries["event"]}
        return cls(apps, categories, instruments, provisions, events)

    @staticmethod
    def _make_event(e: Entry, provisions: dict[str, Provision]) -> Event:
        kind, views = e["kind"], e["views"]
        if len(set(views)) != len(views):
            raise e.fail("duplicate values", "views")
        if set(views) != set(EVENT_VIEWS[kind]):
            raise e.fail(f"a {kind} applies in views {list(EVENT_VIEWS[kind])}, not {list(views)}", "views")
        if kind == "non-enforcement":
            if e["until"] is None:
                raise e.fail("a non-enforcement event needs 'until'")
            if e["until"] <= e["at"]:
                until, at = format_instant(e["until"]), format_instant(e["at"])
                raise e.fail(f"{until} is not after at {at}", "until")
        elif e["until"] is not None:
            raise e.fail(f"'until' only belongs to non-enforcement events, not {kind}", "until")
        if kind == "schedule-change":
            if e["new_effective"] is None:
                raise e.fail("a schedule-change event needs 'new_effective'")
        elif e["new_effective"] is not None:
            problem = f"'new_effective' only belongs to schedule-change events, not {kind}"
            raise e.fail(problem, "new_effective")

        resolved: list[str] = []
        for pattern in e["affects"]:
            if pattern.endswith("*") and "*" not in pattern[:-1]:
                prefix = pattern[:-1]
                matched = sorted(p for p in provisions if p.startswith(prefix))
                if not matched:
                    raise e.fail(f"{pattern!r} matches no provision", "affects")
            elif "*" in pattern:
                raise e.fail(f"{pattern!r}: only a trailing '*' is allowed", "affects")
            elif pattern in provisions:
                matched = [pattern]
            else:
                raise e.fail(f"unknown provision {pattern!r}", "affects")
            resolved.extend(m for m in matched if m not in resolved)

        return Event(
            id=e["id"],
            kind=kind,
            at=e["at"],
            until=e["until"],
            new_effective=e["new_effective"],
            affects=e["affects"],
            provisions=tuple(resolved),
            views=views,
            clock_time=e["clock_time"],
            reading=e["reading"],
            alternative=e["alternative"],
            source=e["source"],
            date=e["date"],
            url=e["url"],
            note=e["note"],
            path=e.path,
        )

    def without(self, event_ids: Iterable[str]) -> Policy:
        """The same policy with some events dropped: for what-if audits and for tests."""
        drop = set(event_ids)
        unknown = drop - set(self.events)
        if unknown:
            raise UserError(f"unknown policy event(s): {', '.join(sorted(unknown))}")
        kept = {k: v for k, v in self.events.items() if k not in drop}
        return Policy(self.apps, self.categories, self.instruments, self.provisions, kept)

    # -- precomputation ----------------------------------------------------------------------

    def _precompute(self) -> None:
        # Events per (provision, view), sorted by instant then id so evaluation is deterministic.
        per: dict[tuple[str, str], list[Event]] = {(p, v): [] for p in self.provisions for v in VIEWS}
        for ev in self.events.values():
            for pid in ev.provisions:
                for v in ev.views:
                    per[(pid, v)].append(ev)
        for lst in per.values():
            lst.sort(key=lambda e: (e.at, e.id))
        self._events_for = per

        # Segments: starts[i] .. starts[i+1] share statuses[i].
        self._segments: dict[str, dict[str, tuple[list[float], list[ProvisionStatus]]]] = {}
        for view in VIEWS:
            table: dict[str, tuple[list[float], list[ProvisionStatus]]] = {}
            for pid, prov in self.provisions.items():
                evs = per[(pid, view)]
                points = {prov.effective}
                for ev in evs:
                    points.add(ev.at)
                    if ev.until is not None:
                        points.add(ev.until)
                    if ev.new_effective is not None:
                        points.add(ev.new_effective)
                starts: list[float] = []
                statuses: list[ProvisionStatus] = []
                for t in [-math.inf, *sorted(points)]:
                    st = self._evaluate(prov, view, t)
                    if statuses and statuses[-1] == st:
                        continue
                    starts.append(t)
                    statuses.append(st)
                table[pid] = (starts, statuses)
            self._segments[view] = table

        by_pair: dict[tuple[str, str], list[str]] = {}
        for pid in sorted(self.provisions):
            prov = self.provisions[pid]
            by_pair.setdefault((prov.app, prov.category), []).append(pid)
        self._by_pair = {k: tuple(v) for k, v in by_pair.items()}
        self._cover_cache: dict[tuple[str | None, tuple[str, ...]], tuple[str, ...]] = {}
        self._decisions: dict[_Inputs, _Known] = {}  # decide()'s inputs -> timelines, verdicts

    def _evaluate(self, prov: Provision, view: str, when: float) -> ProvisionStatus:
        """The slow, obviously-correct evaluation; run only at load time, once per segment."""
        effective = prov.effective
        moved_by: Event | None = None
        ended_by: Event | None = None
        windows: list[Event] = []
        for ev in self._events_for[(prov.id, view)]:
            if ev.at > when:
                break
            if ev.kind == "non-enforcement":
                windows.append(ev)
            elif ended_by is not None:
                continue  # the first ending event is the one that ended it
            elif ev.kind == "schedule-change":
                assert ev.new_effective is not None
                effective = ev.new_effective
                moved_by = ev
            else:
                ended_by = ev

        pid = prov.id
        eff_s = format_instant(effective)
        tail = f"({view} view)"
        moved = f" (start moved by {moved_by.id})" if moved_by else ""
        if ended_by is not None:
            verb = ENDING_KINDS[ended_by.kind]
            when_ended = format_instant(ended_by.at)
            if ended_by.at < effective:
                rel = f"before it was due to take effect at {format_instant(effective)}"
            else:
                rel = f"after taking effect at {format_instant(effective)}"
            return ProvisionStatus(
                pid,
                prov.app,
                prov.category,
                prov.instrument,
                STATUS_ENDED,
                format_instant(effective),
                ended_by.id,
                None,
                f"{pid}: {verb} by {ended_by.id} on {when_ended}, {rel} {tail}",
            )
        if when >= effective:
            covering = next((w for w in windows if w.until is not None and when < w.until), None)
            if covering is not None:
                assert covering.until is not None
                reason = (
                    f"{pid}: in force since {eff_s}{moved} but not enforced under {covering.id} "
                    f"until {format_instant(covering.until)} {tail}"
                )
                return ProvisionStatus(
                    pid,
                    prov.app,
                    prov.category,
                    prov.instrument,
                    STATUS_EFFECTIVE,
                    eff_s,
                    moved_by.id if moved_by else None,
                    covering.id,
                    reason,
                )
            return ProvisionStatus(
                pid,
                prov.app,
                prov.category,
                prov.instrument,
                STATUS_EFFECTIVE,
                eff_s,
                moved_by.id if moved_by else None,
                None,
                f"{pid}: effective since {eff_s}{moved} {tail}",
            )
        return ProvisionStatus(
            pid,
            prov.app,
            prov.category,
            prov.instrument,
            STATUS_NOT_YET,
            eff_s,
            moved_by.id if moved_by else None,
            None,
            f"{pid}: not yet effective; takes effect {eff_s}{moved} {tail}",
        )

    # -- queries -----------------------------------------------------------------------------

    def _view_table(self, view: str) -> dict[str, tuple[list[float], list[ProvisionStatus]]]:
        table = self._segments.get(view)
        if table is None:
            raise UserError(f"unknown policy view {view!r}; known: {', '.join(VIEWS)}")
        return table

    def status(self, provision_id: str, when: float, view: str) -> ProvisionStatus:
        """Where ``provision_id`` stood at epoch second ``when`` in ``view``."""
        table = self._view_table(view)
        seg = table.get(provision_id)
        if seg is None:
            raise UserError(f"unknown policy provision {provision_id!r}")
        starts, statuses = seg
        return statuses[bisect.bisect_right(starts, when) - 1]

    def provisions_for(self, app: str, category: str) -> tuple[str, ...]:
        """Ids of the provisions covering ``app`` and ``category`` (empty if none or unknown)."""
        return self._by_pair.get((app, category), ())

    def _covering(self, app: str | None, categories: Sequence[str]) -> tuple[str, ...]:
        key = (app, tuple(categories))
        hit = self._cover_cache.get(key)
        if hit is None:
            ids: list[str] = []
            if app is not None:
                for cat in key[1]:
                    for pid in self._by_pair.get((app, cat), ()):
                        if pid not in ids:
                            ids.append(pid)
            hit = tuple(ids)
            if len(self._cover_cache) < 4096:
                self._cover_cache[key] = hit
        return hit

    def decide(
        self,
        app: str | None,
        categories: Sequence[str],
        attributed: bool,
        when: float,
        view: str,
        unenforced_blocks: bool = False,
    ) -> Decision:
        """Block, log or allow one flow at ``when`` in ``view``; see module docstring.

        Every flow asks this, with few distinct inputs: the verdict is remembered per input
        (app, categories, attributed, view, unenforced_blocks) and, within one, per segment of
        each covering provision's timeline that ``when`` falls in, which is all of ``when`` the
        verdict depends on (only a reason that names the instant is written per flow).
        """
        cats = categories if type(categories) is tuple else tuple(categories)
        key = (app, cats, attributed, view, unenforced_blocks)
        known = self._decisions.get(key)
        if known is None:
            known = self._remember_inputs(key)
        timelines, verdicts = known
        if not timelines:  # no provision covers the input (most flows): one verdict for all instants
            segment: tuple[int, ...] = ()
        elif len(timelines) == 1:
            segment = (_bisect_right(timelines[0][0], when) - 1,)
        else:
            segment = tuple([_bisect_right(t[0], when) - 1 for t in timelines])
        verdict = verdicts.get(segment)
        if verdict is None:
            found = tuple(statuses[i] for (_, statuses), i in zip(timelines, segment, strict=True))
            verdict = verdicts[segment] = self._verdict(app, cats, attributed, view, unenforced_blocks, found)
        action, rule, found, reason, at_instant = verdict
        if at_instant is not None:
            reason = f"{reason}{format_instant(when)}{at_instant}"
        return Decision(action, view, when, rule, found, reason)

    def _remember_inputs(self, key: _Inputs) -> _Known:
        """The timelines of the provisions covering one input, and room for its verdicts (bounded:
        the table starts over when full)."""
        app, cats, _, view, _ = key
        table = self._view_table(view)
        known: _Known = (tuple(table[pid] for pid in self._covering(app, cats)), {})
        if len(self._decisions) >= _MAX_DECISION_INPUTS:
            self._decisions.clear()
        self._decisions[key] = known
        return known

    @staticmethod
    def _verdict(
        app: str | None,
        categories: tuple[str, ...],
        attributed: bool,
        view: str,
        unenforced_blocks: bool,
        found: tuple[ProvisionStatus, ...],
    ) -> _Verdict:
        """(action, rule, provisions, reason, None) for statuses ``found``; or, for a reason that
        names the instant, the reason's text before the instant and the text after it last."""
        # Reasons that do not name the instant are interned: the flows they decide share them.
        unenforced: ProvisionStatus | None = None
        for st in found:
            if st.status == STATUS_EFFECTIVE:
                if st.unenforced is None:
                    return ("block", RULE_EFFECTIVE, found, sys.intern(f"block: {st.reason}"), None)
                if unenforced is None:
                    unenforced = st
        if unenforced is not None:
            if unenforced_blocks:
                return (
                    "block",
                    RULE_UNENFORCED,
                    found,
                    sys.intern(
                        f"block: {unenforced.reason}; unenforced prohibitions block in this deployment"
                    ),
                    None,
                )
            return (
                "log",
                RULE_UNENFORCED,
                found,
                sys.intern(
                    f"log: {unenforced.reason}; unenforced prohibitions do not block in this deployment"
                ),
                None,
            )
        if attributed:
            cats = "/".join(categories) or "no category"
            if found:
                states = "; ".join(s.reason for s in found)
                head = f"log: no provision covering {app} {cats} is effective at "
                return ("log", RULE_ATTRIBUTED, found, head, f": {states}")
            reason = sys.intern(f"log: no provision covers {app or 'this operator'} {cats} ({view} view)")
            return ("log", RULE_ATTRIBUTED, found, reason, None)
        return (
            "allow",
            RULE_NOT_ATTRIBUTED,
            found,
            sys.intern(f"allow: flow not attributed to an app or operator ({view} view)"),
            None,
        )

    def timeline(self, view: str) -> list[tuple[str, str, str]]:
        """Every change of every provision's status in ``view``: (instant, provision, change)."""
        table = self._view_table(view)
        out: list[tuple[str, str, str]] = []
        for pid, (starts, statuses) in table.items():
            for i in range(1, len(starts)):
                out.append((format_instant(starts[i]), pid, self._change_text(statuses[i - 1], statuses[i])))
        out.sort()
        return out

    def _change_text(self, prev: ProvisionStatus, cur: ProvisionStatus) -> str:
        if cur.status == STATUS_ENDED:
            assert cur.event is not None
            verb = ENDING_KINDS[self.events[cur.event].kind]
            when = "" if prev.status == STATUS_EFFECTIVE else " before it took effect"
            return f"{verb} by {cur.event}{when}"
        if cur.status == STATUS_EFFECTIVE:
            if prev.status != STATUS_EFFECTIVE:
                extra = f", not enforced under {cur.unenforced}" if cur.unenforced else ""
                return f"takes effect{extra}"
            if cur.unenforced:
                return f"not enforced under {cur.unenforced}"
            return f"enforceable again ({prev.unenforced} ended)"
        return f"start moved to {cur.effective} by {cur.event}"


def describe(policy: Policy, when: float, view: str) -> list[str]:
    """One line per provision (sorted by id) with its status at ``when`` in ``view``, for the CLI."""
    lines = [f"policy as of {format_instant(when)}, {view} view:"]
    for pid in sorted(policy.provisions):
        st = policy.status(pid, when, view)
        flag = " (unenforced)" if st.unenforced else ""
        lines.append(f"  {st.status + flag:<30} {st.reason}")
    return lines
