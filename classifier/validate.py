"""The one validation layer for data files: declarative schemas of typed fields.

Signatures, policy and gateway config are TOML tables of typed fields. Each table kind is
described once, as a :class:`Schema` of :class:`Field` s (name, :class:`Kind`, required), and
checked the same way everywhere: unknown keys, then missing ones, then each value's kind. A fault
is a ``DataError`` in one format, ``file: entry: field: problem``, with the entry named by its id
(``rule 'tiktok.tiktokv.com'``) or its position (``rule #3``). A kind converts as it checks, so
one rule holds everywhere; for instance a ``date`` may be a TOML date or the same text quoted,
and either way the loaders get a ``datetime.date``.

Kinds never recurse into values and shorten what they quote, so a hostile file cannot make an
error message huge or the check slow.
"""

from __future__ import annotations

import datetime as dt
import re
import reprlib
from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from classifier.errors import DataError, UserError


class Invalid(ValueError):
    """A value is not of its kind; ``str()`` is the problem alone (no file, entry or field)."""


_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlist = 4
_SHORT.maxdict = 4
_SHORT.maxlevel = 2

_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (str, "string"),
    (int, "integer"),
    (float, "float"),
    (dt.datetime, "datetime"),
    (dt.date, "date"),
    (dt.time, "time"),
    (list, "array"),
    (dict, "table"),
)


def describe(value: Any) -> str:
    """A value as the TOML author wrote it: its TOML type and a shortened repr."""
    kind = next((name for t, name in _TOML_TYPES if isinstance(value, t)), type(value).__name__)
    if isinstance(value, dt.date):
        return f"TOML {kind} {value.isoformat()}"
    return f"{kind} {_SHORT.repr(value)}"


@dataclass(frozen=True, slots=True)
class Kind:
    """A value type: ``convert`` returns the canonical value or raises :class:`Invalid`."""

    what: str  # for messages: "must be <what>"
    convert: Callable[[Any], Any]


def kind(what: str, ok: Callable[[Any], bool], convert: Callable[[Any], Any] = lambda v: v) -> Kind:
    """A kind from a test and a conversion; the message says what was expected and what came."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise Invalid(f"must be {what}, got {describe(value)}")
        return convert(value)

    return Kind(what, check)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


TEXT = kind("a non-empty string", _is_text)
STRING = kind("a string", lambda v: isinstance(v, str))
INTEGER = kind("an integer", _is_int)
BOOLEAN = kind("true or false", lambda v: isinstance(v, bool))
NUMBER = kind("a number", lambda v: _is_int(v) or isinstance(v, float), float)
TEXT_LIST = kind(
    "a non-empty list of non-empty strings",
    lambda v: isinstance(v, list) and len(v) > 0 and all(_is_text(x) for x in v),
    tuple,
)
INTEGER_LIST = kind("a list of integers", lambda v: isinstance(v, list) and all(_is_int(x) for x in v), tuple)


_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date(value: Any) -> dt.date:
    # datetime is a subclass of date: a TOML datetime where a date belongs is a mistake.
    if type(value) is dt.date:
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise Invalid(f"must be a date like 2020-09-18 (YYYY-MM-DD, quoted or not), got {describe(value)}")


DATE = Kind("a date", _date)


def in_range(base: Kind, low: int, high: int, what: str) -> Kind:
    """``base`` (an integer kind) limited to ``low..high``."""

    def check(value: Any) -> Any:
        value = base.convert(value)
        if not low <= value <= high:
            raise Invalid(f"{value} is not {what} ({low}-{high})")
        return value

    return Kind(what, check)


ASN = in_range(INTEGER, 1, 2**32 - 1, "an AS number")
PORT = in_range(INTEGER, 1, 65535, "a port number")


def choice(allowed: Sequence[str]) -> Kind:
    """One of ``allowed`` (listed in the given order in the message)."""
    allowed = tuple(allowed)

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            shown = _SHORT.repr(value) if isinstance(value, str) else describe(value)
            raise Invalid(f"{shown} is not one of {', '.join(allowed)}")
        return value

    return Kind("one of " + ", ".join(allowed), check)


def matching(pattern: str | re.Pattern[str], what: str, max_len: int = 1024) -> Kind:
    """A string that ``pattern`` matches entirely; the message says ``'x' <what>``. A pattern
    given as text is compiled at the first check: most kinds serve only a load that misses the
    signature cache, and compiling them all at import cost every start-up ~0.5 ms."""
    compiled = pattern if isinstance(pattern, re.Pattern) else None

    def check(value: Any) -> str:
        nonlocal compiled
        if not isinstance(value, str):
            raise Invalid(f"must be a string, got {describe(value)}")
        if compiled is None:
            compiled = re.compile(pattern)
        if len(value) > max_len or not compiled.fullmatch(value):
            raise Invalid(f"{_SHORT.repr(value)} {what}")
        return value

    return Kind(what, check)


def list_of(item: Kind, *, allow_empty: bool = False) -> Kind:
    """An array of ``item`` values, as a tuple; each bad element is named by its value."""

    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list) or (not value and not allow_empty):
            size = "a list" if allow_empty else "a non-empty list"
            raise Invalid(f"must be {size} ({item.what} each), got {describe(value)}")
        return tuple(item.convert(v) for v in value)

    return Kind(f"a list of {item.what}", check)


_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
HOSTNAME = matching(
    rf"{_LABEL}(?:\.{_LABEL})*",
    "is not a lowercase host name (no leading or trailing dot, no spaces, no upper case, no wildcard)",
    max_len=253,
)
WORD = matching(r"[a-z0-9][a-z0-9-]*", "must be lowercase letters, digits, '-'", 64)
_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")


def _mac(value: Any) -> str:
    if isinstance(value, str) and _MAC_RE.fullmatch(value.lower()):
        return value.lower().replace("-", ":")
    shown = _SHORT.repr(value) if isinstance(value, str) else describe(value)
    raise Invalid(f"{shown} is not six hex pairs separated by ':' or '-'")


MAC = Kind("a MAC address", _mac)


def _address(value: Any) -> str:
    if isinstance(value, str):
        try:
            inet_pton(AF_INET6 if ":" in value else AF_INET, value)
            return value
        except (OSError, ValueError):
            pass
    raise Invalid(f"{_SHORT.repr(value)} is not an IPv4 or IPv6 address")


ADDRESS = Kind("an IPv4 or IPv6 address", _address)


def parse_prefix(text: str) -> tuple[bytes, int, str]:
    """``address/length`` to (packed network, length, canonical text); Invalid says why not."""
    addr, slash, length_text = text.partition("/")
    if not slash or not length_text.isdigit() or len(length_text) > 3:
        raise Invalid("not address/length")
    family = AF_INET6 if ":" in addr else AF_INET
    try:
        packed = inet_pton(family, addr)
    except (OSError, ValueError):
        raise Invalid(f"bad IPv{6 if family == AF_INET6 else 4} address") from None
    bits = len(packed) * 8
    length = int(length_text)
    if length > bits:
        raise Invalid(f"prefix length {length} exceeds {bits}")
    value = int.from_bytes(packed, "big")
    host_bits = value & ((1 << (bits - length)) - 1)
    if host_bits:
        network = (value - host_bits).to_bytes(len(packed), "big")
        raise Invalid(f"host bits set (the network is {inet_ntop(family, network)}/{length})")
    return packed, length, f"{inet_ntop(family, packed)}/{length}"


def instant(parse: Callable[[str], float], example: str) -> Kind:
    """A quoted instant that ``parse`` accepts (its ValueError or UserError is the problem), as
    epoch seconds."""

    def check(value: Any) -> float:
        if not isinstance(value, str):
            raise Invalid(f"must be a quoted instant like {example}, got {describe(value)}")
        try:
            return parse(value)
        except (ValueError, UserError) as exc:
            raise Invalid(str(exc)) from None

    return Kind(f"an instant like {example}", check)


# --------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a table: its kind, whether it must be there, its value when absent."""

    name: str
    kind: Kind
    required: bool = True
    default: Any = None


def optional(name: str, kind_: Kind, default: Any = None) -> Field:
    return Field(name, kind_, required=False, default=default)


class Entry:
    """A checked table: converted values by key, and a name to blame in errors."""

    __slots__ = ("error", "name", "path", "values")

    def __init__(self, path: str, name: str, values: dict[str, Any], error: type[DataError]) -> None:
        self.path = path
        self.name = name
        self.values = values
        self.error = error

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def fail(self, problem: str, field: str | None = None) -> DataError:
        """The error to raise for a problem with this entry (or one of its fields)."""
        return self.error(self.path, self.name, problem, field)


class Schema:
    """The fields of one table kind (``rule``, ``provision``, ``[gateway]``...)."""

    __slots__ = ("exactly_one", "fields", "kind", "name_of")

    def __init__(
        self,
        kind_: str,
        fields: Iterable[Field],
        *,
        exactly_one: Iterable[tuple[str, str]] = (),
        name_of: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        self.kind = kind_
        self.fields = {f.name: f for f in fields}
        self.exactly_one = tuple(exactly_one)
        self.name_of = name_of or _id_of

    def entry_name(self, raw: Any, index: int | None) -> str:
        """``kind 'id'`` when the table has a usable id, else ``kind #n`` (or the bare kind)."""
        ident = self.name_of(raw) if isinstance(raw, dict) else None
        if ident:
            return f"{self.kind} {_SHORT.repr(ident)}"
        return self.kind if index is None else f"{self.kind} #{index + 1}"

    def check(
        self, raw: Any, path: str, index: int | None = None, error: type[DataError] = DataError
    ) -> Entry:
        """Validate one table; the :class:`Entry` holds every field (absent optional: default)."""
        name = self.entry_name(raw, index)
        if not isinstance(raw, dict):
            raise error(path, name, f"must be a table, got {describe(raw)}")
        for key in raw:
            if key not in self.fields:
                allowed = ", ".join(self.fields)
                raise error(path, name, f"unknown key {_SHORT.repr(key)} (allowed: {allowed})")
        for a, b in self.exactly_one:
            if (a in raw) == (b in raw):
                raise error(path, name, f"needs exactly one of {a!r} or {b!r}")
        for f in self.fields.values():
            if f.required and f.name not in raw:
                raise error(path, name, "missing", f.name)
        values: dict[str, Any] = {}
        for f in self.fields.values():
            if f.name not in raw:
                values[f.name] = f.default
                continue
            try:
                values[f.name] = f.kind.convert(raw[f.name])
            except Invalid as exc:
                raise error(path, name, str(exc), f.name) from None
        return Entry(path, name, values, error)


def _id_of(raw: dict[str, Any]) -> str | None:
    ident = raw.get("id")
    return ident if isinstance(ident, str) and ident else None


def array_of_tables(
    doc: dict[str, Any], key: str, path: str, error: type[DataError] = DataError
) -> list[Any]:
    """``doc[key]`` as written with ``[[key]]`` (absent: empty), else an error naming the key."""
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise error(path, key, f"must be an array of tables ([[{key}]]), got {describe(value)}")
    return value


_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def key_text(key: str) -> str:
    """A TOML key as messages show it: as is when plain, else quoted (a key may hold a newline)."""
    return key if _PLAIN_KEY_RE.fullmatch(key) else _SHORT.repr(key)


def only_keys(
    doc: dict[str, Any], allowed: Iterable[str], path: str, error: type[DataError] = DataError
) -> None:
    """Refuse a top-level key this file kind does not have (a typo would hide a whole table)."""
    allowed = tuple(allowed)
    for key in doc:
        if key not in allowed:
            raise error(path, key_text(key), f"unknown top-level table (allowed: {', '.join(allowed)})")
