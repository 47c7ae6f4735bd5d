"""Instants: epoch seconds to and from ISO 8601 UTC text, the one place that converts them.

Records, policy reasons, the policy files, ``--as-of`` and the gateway's config all go through
here, so an instant reads the same everywhere and a value out of range is one clear error, never
an ``OverflowError``/``ValueError``/``OSError`` from ``datetime`` or ``time``.

The range is what ISO 8601 with a four-digit year can write: 0001-01-01T00:00:00Z to
9999-12-31T23:59:59Z. Packet time must also not be before 1970 (``PACKET_TIME_MIN``): capture
readers drop and count a packet outside ``[PACKET_TIME_MIN, MAX_INSTANT]``, so every timestamp
that reaches a record formats.
"""

from __future__ import annotations

import datetime as dt
import re

from .errors import MalformedError, UserError

MIN_INSTANT = -62135596800.0  # 0001-01-01T00:00:00Z
MAX_INSTANT = 253402300799.0  # 9999-12-31T23:59:59Z
PACKET_TIME_MIN = 0.0  # capture formats count from 1970; nothing earlier is a real capture time

_EPOCH = dt.datetime(1970, 1, 1)  # naive: isoformat() then has no offset to strip
_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_SECONDS: dict[int, str] = {}  # whole second -> "YYYY-MM-DDTHH:MM:SS"; flows share their seconds
_SECONDS_MAX = 4096
_INSTANTS: dict[float, str] = {}  # instant -> its text with microseconds; a record asks twice
_INSTANTS_MAX = 256  # enough for the two asks of a record; formatted seconds are kept apart


def format_instant(ts: float, micro: bool = False) -> str:
    """Epoch seconds as ISO 8601 UTC with ``Z``: ``2020-09-21T04:00:00Z``.

    Microseconds are written when there are any, or always with ``micro`` (records, so that the
    column has one width). Raises ``MalformedError`` (reason ``instant.range``) outside
    ``MIN_INSTANT``..``MAX_INSTANT``. Every record formats its first packet's instant twice (the
    record's and the decision's) and records come in bursts from the same second, so the last
    instants and every formatted second are remembered (bounded).
    """
    text = _INSTANTS.get(ts)  # NaN and out-of-range values are never stored, so never found
    if text is None:
        text = _instant_text(ts)
    if micro or not text.endswith(".000000Z"):
        return text
    return text[:-8] + "Z"


def _instant_text(ts: float) -> str:
    """``ts`` with microseconds, remembered."""
    text = format_micro(ts)
    if len(_INSTANTS) >= _INSTANTS_MAX:
        _INSTANTS.clear()
    _INSTANTS[ts] = text
    return text


def format_micro(ts: float) -> str:
    """``format_instant(ts, True)`` without remembering the instant: records format each flow's
    first and last packet once, and those instants seldom come back (their seconds do, and are
    remembered)."""
    if not MIN_INSTANT <= ts < MAX_INSTANT + 1:  # also false for NaN
        raise _out_of_range(ts)
    us = round(ts * 1_000_000)
    sec = us // 1_000_000
    text = _SECONDS.get(sec)
    if text is None:
        text = _second_text(sec, ts)
    return "%s.%06dZ" % (text, us - sec * 1_000_000)  # noqa: UP031 (twice as fast as an f-string)


def _second_text(sec: int, ts: float) -> str:
    if not MIN_INSTANT <= sec <= MAX_INSTANT:  # rounding the microseconds can step over the end
        raise _out_of_range(ts)
    if len(_SECONDS) >= _SECONDS_MAX:
        _SECONDS.clear()
    text = _SECONDS[sec] = (_EPOCH + dt.timedelta(seconds=sec)).isoformat()
    return text


def _out_of_range(ts: float) -> MalformedError:
    return MalformedError(
        "instant", "range", f"{ts!r} seconds since 1970 is outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z"
    )


def parse_instant(text: str, exact: bool = False) -> float:
    """ISO 8601 date or date-time to epoch seconds; no offset means UTC.

    ``exact`` accepts only ``YYYY-MM-DDTHH:MM:SSZ``: the policy files use it, because an instant
    with an offset or no zone is the ambiguity that data must resolve rather than leave to the
    reader. Raises ``UserError`` (what is wrong, without the option or file: the caller names
    those) for anything else, including instants outside the writable range.
    """
    if not isinstance(text, str) or not (text.isascii() and text.isprintable()):
        # (datetime's parser stops at a NUL and accepts what came before it)
        raise UserError(f"{text!r} is not an ISO 8601 date or date-time")
    if exact and not _CANONICAL.fullmatch(text):
        raise UserError(f"{text!r} is not an ISO 8601 UTC instant like 2020-09-20T04:00:00Z")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"{text!r} is not an ISO 8601 date or date-time (e.g. 2020-09-21 or 2020-09-21T12:00:00Z)"
        ) from None
    return instant_of(when, text)


def instant_of(value: str | dt.date | dt.datetime, shown: object = None) -> float:
    """Epoch seconds of a string (as ``parse_instant``), a date (its midnight UTC) or a date-time
    (UTC if it has no offset), e.g. a TOML value; ``UserError`` outside the writable range."""
    if isinstance(value, str):
        return parse_instant(value)
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    else:
        raise UserError(f"{value!r} is not an ISO 8601 date or date-time")
    ts = when.timestamp()  # arithmetic on an aware value: cannot overflow
    if not MIN_INSTANT <= ts <= MAX_INSTANT:
        raise UserError(
            f"{shown if shown is not None else value!r} is outside "
            "0001-01-01T00:00:00Z..9999-12-31T23:59:59Z once converted to UTC"
        )
    return ts
