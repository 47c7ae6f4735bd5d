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
import functools
import math
import os
import re
import sys
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from classifier.errors import SignatureError, UserError

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

_INSTANT_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_ID_RE = re.compile(r"[a-z0-9][a-z0-9.-]*")
_WORD_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


# --------------------------------------------------------------------------------------------
# Instants


def parse_instant(text: str) -> float:
    """``YYYY-MM-DDTHH:MM:SSZ`` to epoch seconds; ValueError otherwise.

    Only UTC with ``Z`` is accepted: a policy instant with an offset or no zone is exactly the
    ambiguity the data must resolve (and document) rather than leave to the reader.
    """
    if not isinstance(text, str) or not _INSTANT_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not an ISO 8601 UTC instant like 2020-09-20T04:00:00Z")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@functools.lru_cache(maxsize=1024)
def _second_text(second: int) -> str:
    # Flows decided within the same second share the formatted date and time.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def format_instant(when: float) -> str:
    """Epoch seconds to ISO 8601 UTC with ``Z`` (microseconds only when there are any)."""
    second = math.floor(when)
    micro = round((when - second) * 1_000_000)
    if micro >= 1_000_000:
        second, micro = second + 1, 0
    if micro:
        return f"{_second_text(second)}.{micro:06d}Z"
    return f"{_second_text(second)}Z"


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


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict for one flow, with the provisions and the view that produced it."""

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


# --------------------------------------------------------------------------------------------
# Loaded entries (read-only; exposed for reports and docs)


@dataclass(frozen=True, slots=True)
class Instrument:
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
# Validation helpers

_REQUIRED = True
_OPTIONAL = False


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _is_date(v: Any) -> bool:
    # datetime is a subclass of date: a TOML datetime where a date belongs is a mistake.
    return type(v) is date


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(_is_text(x) for x in v)


_CHECKS = {
    "text": (_is_text, "a non-empty string"),
    "date": (_is_date, "a TOML date like 2020-09-18 (unquoted)"),
    "instant": (_is_text, "a string like 2020-09-20T04:00:00Z"),
    "list": (_is_str_list, "a non-empty list of strings"),
}

_INSTRUMENT_SPEC: dict[str, tuple[str, bool]] = {
    "id": ("text", _REQUIRED),
    "title": ("text", _REQUIRED),
    "citation": ("text", _REQUIRED),
    "issued": ("date", _REQUIRED),
    "source": ("text", _REQUIRED),
    "date": ("date", _REQUIRED),
    "url": ("text", _OPTIONAL),
    "note": ("text", _OPTIONAL),
}

_PROVISION_SPEC: dict[str, tuple[str, bool]] = {
    "id": ("text", _REQUIRED),
    "instrument": ("text", _REQUIRED),
    "app": ("text", _REQUIRED),
    "category": ("text", _REQUIRED),
    "summary": ("text", _REQUIRED),
    "effective": ("instant", _REQUIRED),
    "clock_time": ("text", _REQUIRED),
    "reading": ("text", _REQUIRED),
    "alternative": ("instant", _OPTIONAL),
    "source": ("text", _REQUIRED),
    "date": ("date", _REQUIRED),
    "url": ("text", _OPTIONAL),
    "note": ("text", _OPTIONAL),
}

_EVENT_SPEC: dict[str, tuple[str, bool]] = {
    "id": ("text", _REQUIRED),
    "kind": ("text", _REQUIRED),
    "at": ("instant", _REQUIRED),
    "until": ("instant", _OPTIONAL),
    "new_effective": ("instant", _OPTIONAL),
    "affects": ("list", _REQUIRED),
    "views": ("list", _REQUIRED),
    "clock_time": ("text", _OPTIONAL),
    "reading": ("text", _REQUIRED),
    "alternative": ("instant", _OPTIONAL),
    "source": ("text", _REQUIRED),
    "date": ("date", _REQUIRED),
    "url": ("text", _OPTIONAL),
    "note": ("text", _REQUIRED),
}

_VOCABULARY_SPEC: dict[str, tuple[str, bool]] = {
    "apps": ("list", _REQUIRED),
    "categories": ("list", _REQUIRED),
    "note": ("text", _OPTIONAL),
}

_TABLE_KINDS = {"instrument": _INSTRUMENT_SPEC, "provision": _PROVISION_SPEC, "event": _EVENT_SPEC}


def _check_fields(path: str, entry: str, raw: Any, spec: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    """Keys present, known and of the right type; instants parsed. Returns a plain dict."""
    if not isinstance(raw, dict):
        raise SignatureError(path, entry, "must be a table")
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise SignatureError(path, entry, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(spec)}")
    out: dict[str, Any] = {}
    for key, (check, required) in spec.items():
        if key not in raw:
            if required:
                raise SignatureError(path, entry, f"missing required key {key!r}")
            out[key] = None
            continue
        value = raw[key]
        ok, what = _CHECKS[check]
        if not ok(value):
            raise SignatureError(path, entry, f"{key} must be {what}, got {type(value).__name__} {value!r}")
        if check == "instant":
            try:
                value = parse_instant(value)
            except ValueError as exc:
                raise SignatureError(path, entry, f"{key}: {exc}") from None
        out[key] = value
    return out


def _entry_name(raw: Any, kind: str, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return raw["id"]
    return f"{kind} #{index + 1}"


def _read_toml(path: Path) -> dict[str, Any]:
    spath = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SignatureError(spath, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError(spath, None, f"not UTF-8 (byte offset {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise SignatureError(spath, None, f"TOML syntax error: {exc}") from None


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
        """Read and validate every ``*.toml`` under ``directory``; SignatureError on any fault."""
        root = Path(directory)
        if not root.is_dir():
            raise SignatureError(str(root), None, "policy directory does not exist")
        files = sorted(p for p in root.rglob("*.toml") if p.is_file())
        if not files:
            raise SignatureError(str(root), None, "no *.toml policy files")

        vocab: tuple[str, dict[str, Any]] | None = None
        raw_entries: dict[str, list[tuple[str, str, dict[str, Any]]]] = {k: [] for k in _TABLE_KINDS}
        seen_ids: dict[str, str] = {}

        for file in files:
            spath = str(file)
            doc = _read_toml(file)
            for top, value in doc.items():
                if top == "vocabulary":
                    if vocab is not None:
                        raise SignatureError(spath, "vocabulary", f"defined again (first in {vocab[0]})")
                    vocab = (spath, _check_fields(spath, "vocabulary", value, _VOCABULARY_SPEC))
                    continue
                spec = _TABLE_KINDS.get(top)
                if spec is None:
                    raise SignatureError(
                        spath,
                        top,
                        "unknown top-level table; allowed: vocabulary, [[instrument]], "
                        "[[provision]], [[event]]",
                    )
                if not isinstance(value, list):
                    raise SignatureError(spath, top, f"must be an array of tables: write [[{top}]]")
                for i, raw in enumerate(value):
                    name = _entry_name(raw, top, i)
                    fields = _check_fields(spath, name, raw, spec)
                    eid = fields["id"]
                    if not _ID_RE.fullmatch(eid):
                        raise SignatureError(spath, name, "id must be lowercase letters, digits, '-' or '.'")
                    if eid in seen_ids:
                        raise SignatureError(spath, eid, f"duplicate id (first defined in {seen_ids[eid]})")
                    seen_ids[eid] = spath
                    raw_entries[top].append((spath, eid, fields))

        if vocab is None:
            raise SignatureError(
                str(root), None, "no [vocabulary] table (apps, categories) in any policy file"
            )
        vpath, vfields = vocab
        apps = cls._vocab_list(vpath, "apps", vfields["apps"])
        categories = cls._vocab_list(vpath, "categories", vfields["categories"])

        instruments: dict[str, Instrument] = {}
        for spath, eid, f in raw_entries["instrument"]:
            instruments[eid] = Instrument(
                id=eid,
                title=f["title"],
                citation=f["citation"],
                issued=f["issued"],
                source=f["source"],
                date=f["date"],
                url=f["url"],
                note=f["note"],
                path=spath,
            )

        provisions: dict[str, Provision] = {}
        for spath, eid, f in raw_entries["provision"]:
            if f["instrument"] not in instruments:
                raise SignatureError(spath, eid, f"unknown instrument {f['instrument']!r}")
            if f["app"] not in apps:
                raise SignatureError(spath, eid, f"unknown app {f['app']!r}; known: {', '.join(apps)}")
            if f["category"] not in categories:
                raise SignatureError(
                    spath, eid, f"unknown category {f['category']!r}; known: {', '.join(categories)}"
                )
            provisions[eid] = Provision(
                id=eid,
                instrument=f["instrument"],
                app=f["app"],
                category=f["category"],
                summary=f["summary"],
                effective=f["effective"],
                clock_time=f["clock_time"],
                reading=f["reading"],
                alternative=f["alternative"],
                source=f["source"],
                date=f["date"],
                url=f["url"],
                note=f["note"],
                path=spath,
            )

        events: dict[str, Event] = {}
        for spath, eid, f in raw_entries["event"]:
            events[eid] = cls._make_event(spath, eid, f, provisions)

        return cls(apps, categories, instruments, provisions, events)

    @staticmethod
    def _vocab_list(path: str, key: str, values: list[str]) -> tuple[str, ...]:
        for v in values:
            if not _WORD_RE.fullmatch(v):
                raise SignatureError(
                    path, "vocabulary", f"{key}: {v!r} must be lowercase letters, digits, '-'"
                )
        if len(set(values)) != len(values):
            raise SignatureError(path, "vocabulary", f"{key}: duplicate values")
        return tuple(values)

    @staticmethod
    def _make_event(path: str, eid: str, f: dict[str, Any], provisions: dict[str, Provision]) -> Event:
        kind = f["kind"]
        if kind not in EVENT_VIEWS:
            raise SignatureError(path, eid, f"unknown event kind {kind!r}; known: {', '.join(EVENT_VIEWS)}")
        views = f["views"]
        for v in views:
            if v not in VIEWS:
                raise SignatureError(path, eid, f"unknown view {v!r}; known: {', '.join(VIEWS)}")
        if len(set(views)) != len(views):
            raise SignatureError(path, eid, "views: duplicate values")
        if set(views) != set(EVENT_VIEWS[kind]):
            raise SignatureError(
                path, eid, f"a {kind} applies in views {list(EVENT_VIEWS[kind])}, not {views}"
            )
        if kind == "non-enforcement":
            if f["until"] is None:
                raise SignatureError(path, eid, "a non-enforcement event needs 'until'")
            if f["until"] <= f["at"]:
                raise SignatureError(
                    path, eid, f"until {format_instant(f['until'])} is not after at {format_instant(f['at'])}"
                )
        elif f["until"] is not None:
            raise SignatureError(path, eid, f"'until' only belongs to non-enforcement events, not {kind}")
        if kind == "schedule-change":
            if f["new_effective"] is None:
                raise SignatureError(path, eid, "a schedule-change event needs 'new_effective'")
        elif f["new_effective"] is not None:
            raise SignatureError(
                path, eid, f"'new_effective' only belongs to schedule-change events, not {kind}"
            )

        resolved: list[str] = []
        for pattern in f["affects"]:
            if pattern.endswith("*") and "*" not in pattern[:-1]:
                prefix = pattern[:-1]
                matched = sorted(p for p in provisions if p.startswith(prefix))
                if not matched:
                    raise SignatureError(path, eid, f"affects {pattern!r} matches no provision")
            elif "*" in pattern:
                raise SignatureError(path, eid, f"affects {pattern!r}: only a trailing '*' is allowed")
            elif pattern in provisions:
                matched = [pattern]
            else:
                raise SignatureError(path, eid, f"affects unknown provision {pattern!r}")
            resolved.extend(m for m in matched if m not in resolved)

        return Event(
            id=eid,
            kind=kind,
            at=f["at"],
            until=f["until"],
            new_effective=f["new_effective"],
            affects=tuple(f["affects"]),
            provisions=tuple(resolved),
            views=tuple(views),
            clock_time=f["clock_time"],
            reading=f["reading"],
            alternative=f["alternative"],
            source=f["source"],
            date=f["date"],
            url=f["url"],
            note=f["note"],
            path=path,
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
        """Block, log or allow one flow at ``when`` in ``view``; see module docstring."""
        table = self._view_table(view)
        statuses = []
        for pid in self._covering(app, categories):
            starts, segs = table[pid]
            statuses.append(segs[bisect.bisect_right(starts, when) - 1])
        found = tuple(statuses)

        # Reasons that do not name the instant are interned: the flows they decide share them.
        unenforced: ProvisionStatus | None = None
        for st in found:
            if st.status == STATUS_EFFECTIVE:
                if st.unenforced is None:
                    reason = sys.intern(f"block: {st.reason}")
                    return Decision("block", view, when, RULE_EFFECTIVE, found, reason)
                if unenforced is None:
                    unenforced = st
        if unenforced is not None:
            if unenforced_blocks:
                return Decision(
                    "block",
                    view,
                    when,
                    RULE_UNENFORCED,
                    found,
                    sys.intern(f"block: {unenforced.reason}; unenforced prohibitions block in this "
                           "deployment"),
                )
            return Decision(
                "log",
                view,
                when,
                RULE_UNENFORCED,
                found,
                sys.intern(f"log: {unenforced.reason}; unenforced prohibitions do not block in this "
                           "deployment"),
            )
        if attributed:
            cats = "/".join(categories) or "no category"
            if found:
                states = "; ".join(s.reason for s in found)
                at = format_instant(when)
                reason = f"log: no provision covering {app} {cats} is effective at {at}: {states}"
            else:
                reason = sys.intern(f"log: no provision covers {app or 'this operator'} {cats} ({view} view)")
            return Decision("log", view, when, RULE_ATTRIBUTED, found, reason)
        return Decision("allow", view, when, RULE_NOT_ATTRIBUTED, found,
                        sys.intern(f"allow: flow not attributed to an app or operator ({view} view)"))

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
