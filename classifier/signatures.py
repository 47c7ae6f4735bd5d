"""Load and validate the signature data; match host names, CNAME targets and addresses.

Signatures are data (``signatures/*.toml`` plus prefix lists); this module only knows their
format. Everything is validated once at load time and any problem becomes a ``SignatureError``
naming the file and the entry, so a broken edit stops the run with one line instead of a
traceback or, worse, a silently ignored rule. Matching structures are built at load time too:
lookups run once per flow.

Layout of a signature directory (see signatures/README.md):

* ``operators.toml``: ``[[operator]]``, ``[[asn]]`` (with ``operator``) and operator-level
  ``[[rule]]`` host rules (app unknown).
* ``cdn.toml``: ``[[provider]]``, ``[[asn]]`` (with ``provider``) and ``[[cname]]`` suffixes.
* ``apps/<app>.toml``: one ``[app]`` table and the app's ``[[rule]]`` host rules.
* ``app-stores.toml``: ``[[store]]`` and ``[[package]]``.
* prefix files named by the ``[[asn]]`` entries: one prefix a line, ``#`` comments.
* a peering file (optional, per deployment): ``[[neighbour]]``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pathlib
import pickle
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from classifier.errors import SignatureError

ROLES = frozenset({"api", "cdn", "payments", "update", "telemetry", "sdk", "web", "app-store"})
CONFIDENCES = frozenset({"high", "medium"})
PLATFORMS = frozenset({"android", "ios"})

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")
_ANDROID_PKG_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)+")
_TOML_POS_RE = re.compile(r"\s*\(at (line \d+, column \d+)\)$")


# --------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostRule:
    """A host name rule: ``pattern`` is a suffix on label boundaries, or an exact host."""

    id: str
    pattern: str
    exact: bool
    app: str | None
    operator: str | None
    role: str
    confidence: str
    source: str
    date: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class PrefixEntry:
    """One shipped prefix; ``id`` is the ASN entry's id, ``owner`` an operator or CDN id."""

    id: str
    network: str
    asn: int
    owner: str
    kind: str  # "operator" | "cdn"
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class CnameSuffix:
    """A CDN's CNAME target domain (``*.edgekey.net`` means Akamai is serving)."""

    id: str
    suffix: str
    provider: str
    source: str
    date: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class App:
    id: str
    name: str
    operator: str
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class Asn:
    """An ASN entry of an operator or CDN with its prefix files and prefix counts."""

    id: str
    asn: int
    owner: str
    kind: str  # "operator" | "cdn"
    name: str
    ipv4: str
    ipv6: str
    prefixes: int
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    name: str
    apps: tuple[str, ...]
    asns: tuple[int, ...]
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class Cdn:
    id: str
    name: str
    asns: tuple[int, ...]
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class Store:
    id: str
    name: str
    platform: str  # "android" | "ios"
    hosts: tuple[str, ...]
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class StoreRule:
    """An app's identity in one store: a request to a store host naming ``package`` is the app's."""

    id: str
    store: str
    platform: str
    hosts: tuple[str, ...]
    app: str
    package: str
    source: str
    date: str


# --------------------------------------------------------------------------------------------
# Matchers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptedPort:
    """Encrypted DNS recognised by transport and port (DoT on 853/tcp, DoQ on 853/udp)."""

    id: str
    kind: str  # "dot" | "doq"
    proto: int  # 6 | 17
    port: int
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class Resolver:
    """A public DNS resolver: names of its DoH/DoT endpoints and its addresses."""

    id: str
    name: str
    hosts: tuple[str, ...]
    addresses: tuple[str, ...]
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class EchPublicName:
    """A public_name an ECH deployment shows as outer SNI."""

    id: str
    name: str
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class ProtocolRule:
    """A protocol whose framing alone names the app (e.g. WeChat's mmtls)."""

    id: str
    app: str
    role: str
    confidence: str
    source: str
    date: str


def normalize_host(host: str) -> str:
    """Lowercase and drop one trailing dot: the form every rule is written in."""
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


class _SuffixIndex:
    """Label-boundary suffix lookup: ``a.b.c`` is tried as ``a.b.c``, ``b.c``, ``c``."""

    __slots__ = ("_exact", "_suffix")

    def __init__(self, exact: dict[str, Any], suffix: dict[str, Any]) -> None:
        self._exact = exact
        self._suffix = suffix

    def get(self, host: str) -> Any:
        host = normalize_host(host)
        if not host:
            return None
        hit = self._exact.get(host)
        if hit is not None:
            return hit
        suffix = self._suffix
        start = 0
        while True:
            hit = suffix.get(host[start:] if start else host)
            if hit is not None:
                return hit
            dot = host.find(".", start)
            if dot < 0:
                return None
            start = dot + 1


class HostMatcher:
    """Host name to rule. The most specific rule wins: an exact host, then the longest suffix."""

    __slots__ = ("_index", "rules")

    def __init__(self, rules: Iterable[HostRule]) -> None:
        self.rules = tuple(rules)
        exact = {r.pattern: r for r in self.rules if r.exact}
        suffix = {r.pattern: r for r in self.rules if not r.exact}
        self._index = _SuffixIndex(exact, suffix)

    def match(self, host: str) -> HostRule | None:
        """The rule for ``host`` (any case, trailing dot allowed), or None."""
        return self._index.get(host)

    def __len__(self) -> int:
        return len(self.rules)


class PrefixTable:
    """Longest-prefix match over operator and CDN prefixes, IPv4 and IPv6.

    One dict per prefix length, keyed by the network number shifted right by the host bits;
    a lookup probes the lengths present, longest first. Built once at load time. The dicts hold
    (network text, per-ASN template) pairs rather than 20,000 entry objects, so the cached table
    unpickles fast; the entry is made when a lookup hits (once per flow).
    """

    __slots__ = ("_count", "_tables")

    def __init__(self, entries: Iterable[tuple[bytes, int, PrefixEntry]] = ()) -> None:
        by_len: dict[int, dict[int, dict[int, tuple[str, PrefixEntry]]]] = {4: {}, 16: {}}
        templates: dict[str, PrefixEntry] = {}
        count = 0
        for packed, length, entry in entries:
            bits = len(packed) * 8
            key = int.from_bytes(packed, "big") >> (bits - length)
            template = templates.setdefault(entry.id, entry)
            by_len[len(packed)].setdefault(length, {})[key] = (entry.network, template)
            count += 1
        self._count = count
        # (bits, [(shift, table), ...] longest prefix first) per address size
        self._tables = {
            size: (size * 8, [(size * 8 - n, t[n]) for n in sorted(t, reverse=True)])
            for size, t in by_len.items()
        }

    def lookup(self, addr: bytes) -> PrefixEntry | None:
        """The most specific entry covering ``addr`` (4 or 16 raw bytes), or None."""
        table = self._tables.get(len(addr))
        if table is None:
            return None
        value = int.from_bytes(addr, "big")
        for shift, networks in table[1]:
            hit = networks.get(value >> shift)
            if hit is not None:
                network, t = hit
                if t.network == network:
                    return t
                return PrefixEntry(t.id, network, t.asn, t.owner, t.kind, t.source, t.date)
        return None

    def __len__(self) -> int:
        return self._count


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


class _Entry:
    """One TOML table being validated: typed getters that raise SignatureError naming it."""

    __slots__ = ("data", "name", "path")

    def __init__(self, path: str, kind: str, index: int, data: Any) -> None:
        self.path = path
        if not isinstance(data, dict):
            raise SignatureError(path, f"{kind} #{index + 1}", "must be a table")
        self.data = data
        ident = data.get("id")
        self.name = f"{kind} {ident!r}" if isinstance(ident, str) and ident else f"{kind} #{index + 1}"

    def fail(self, problem: str) -> SignatureError:
        return SignatureError(self.path, self.name, problem)

    def keys(self, required: Iterable[str], optional: Iterable[str] = ()) -> None:
        required = tuple(required)
        allowed = set(required) | set(optional)
        for key in self.data:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in self.data:
                raise self.fail(f"missing {key!r}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or (not value and default is None):
            raise self.fail(f"{key!r} must be a non-empty string")
        return value

    def integer(self, key: str) -> int:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key!r} must be an integer")
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{key!r} must be a list of non-empty strings")
        return tuple(value)

    def date(self) -> str:
        value = self.data.get("date")
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value).isoformat()
            except ValueError:
                pass
        raise self.fail(f"'date' must be a date (YYYY-MM-DD), got {value!r}")

    def sourced(self) -> tuple[str, str]:
        """The entry's (source, date): every signature entry must say where it came from."""
        return self.text("source"), self.date()

    def ident(self) -> str:
        value = self.text("id")
        if not _ID_RE.fullmatch(value):
            raise self.fail(f"'id' {value!r} must be letters, digits and . _ : -")
        return value

    def name_value(self, key: str) -> str:
        value = self.text(key)
        if not _name_ok(value):
            raise self.fail(f"{key} {value!r} is not a lowercase host name "
                            "(no leading or trailing dot, no spaces, no upper case, no wildcard)")
        return value

    def choice(self, key: str, allowed: Iterable[str], default: str | None = None) -> str:
        value = self.text(key, default)
        allowed = sorted(allowed)
        if value not in allowed:
            raise self.fail(f"{key} {value!r} is not one of {', '.join(allowed)}")
        return value


def _name_ok(value: str) -> bool:
    return len(value) <= 253 and _NAME_RE.fullmatch(value) is not None


def _read_toml(path: pathlib.Path) -> dict[str, Any]:
    import tomllib  # only on a cache miss

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SignatureError(str(path), None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SignatureError(str(path), None, f"not UTF-8: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        pos = _TOML_POS_RE.search(message)
        where = pos.group(1) if pos else None
        raise SignatureError(str(path), where, f"TOML syntax error: {_TOML_POS_RE.sub('', message)}") from exc


def _tables(path: str, doc: dict[str, Any], key: str, kind: str) -> Iterator[_Entry]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise SignatureError(path, key, f"must be an array of tables ([[{key}]])")
    for i, item in enumerate(value):
        yield _Entry(path, kind, i, item)


def _only_keys(path: str, doc: dict[str, Any], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for key in doc:
        if key not in allowed:
            raise SignatureError(path, key, f"unknown top-level key (allowed: {', '.join(sorted(allowed))})")


def _parse_prefix(text: str) -> tuple[bytes, int, str]:
    """(packed network, length, canonical text) or ValueError with the reason."""
    addr, slash, length_text = text.partition("/")
    if not slash or not length_text.isdigit():
        raise ValueError("not address/length")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        packed = socket.inet_pton(family, addr)
    except OSError:
        raise ValueError(f"bad IPv{6 if family == socket.AF_INET6 else 4} address") from None
    bits = len(packed) * 8
    length = int(length_text)
    if length > bits:
        raise ValueError(f"prefix length {length} exceeds {bits}")
    value = int.from_bytes(packed, "big")
    host_bits = value & ((1 << (bits - length)) - 1)
    if host_bits:
        network = (value - host_bits).to_bytes(len(packed), "big")
        raise ValueError(f"host bits set (the network is {socket.inet_ntop(family, network)}/{length})")
    return packed, length, f"{socket.inet_ntop(family, packed)}/{length}"


def _read_prefixes(path: pathlib.Path, family: int) -> Iterator[tuple[bytes, int, str, int]]:
    """(packed, length, canonical, line number) for each prefix line of a prefix file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(str(path), None, f"cannot read prefix file: {exc}") from exc
    size = 4 if family == 4 else 16
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            packed, length, canonical = _parse_prefix(text)
        except ValueError as exc:
            raise SignatureError(str(path), f"line {number}: {text!r}", str(exc)) from None
        if len(packed) != size:
            raise SignatureError(str(path), f"line {number}: {text!r}", f"not an IPv{family} prefix")
        yield packed, length, canonical, number


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _Loader:
    """Holds cross-file state while a directory is read: ids seen, patterns seen."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.dir = directory
        self.ids: dict[str, str] = {}  # id -> file that defined it
        self.patterns: dict[tuple[str, bool], tuple[str, str]] = {}  # (pattern, exact) -> (file, id)

    def claim(self, entry: _Entry, ident: str) -> None:
        """Ids are unique across the whole directory, so evidence can cite one unambiguously."""
        if ident in self.ids:
            first = self.ids[ident]
            where = "earlier in this file" if first == entry.path else f"in {first}"
            raise entry.fail(f"duplicate id (also {where})")
        self.ids[ident] = entry.path

    def host_rule(self, e: _Entry, app: str | None, operator: str | None) -> HostRule:
        ident = e.ident()
        self.claim(e, ident)
        if ("suffix" in e.data) == ("host" in e.data):
            raise e.fail("needs exactly one of 'suffix' or 'host'")
        exact = "host" in e.data
        pattern = e.name_value("host" if exact else "suffix")
        role = e.choice("role", ROLES)
        confidence = e.choice("confidence", CONFIDENCES)
        source, date = e.sourced()
        note = e.text("note", "")
        first = self.patterns.setdefault((pattern, exact), (e.path, ident))
        if first[1] != ident:
            kind = "host" if exact else "suffix"
            raise e.fail(f"{kind} {pattern!r} duplicates rule {first[1]!r} in {first[0]}")
        return HostRule(ident, pattern, exact, app, operator, role, confidence, source, date, note)

    def asn_entry(self, e: _Entry, kind: str, owner_key: str, owners: set[str],
                  prefixes: list[tuple[bytes, int, PrefixEntry]]) -> Asn:
        e.keys(("id", "asn", owner_key, "name", "ipv4", "ipv6", "source", "date"), ("note",))
        ident = e.ident()
        self.claim(e, ident)
        number = e.integer("asn")
        if not 0 < number < 2**32:
            raise e.fail(f"asn {number} out of range")
        owner = e.text(owner_key)
        if owner not in owners:
            raise e.fail(f"unknown {owner_key} {owner!r}")
        source, date = e.sourced()
        count = 0
        for family in (4, 6):
            rel = e.text(f"ipv{family}")
            path = (self.dir / rel).resolve()
            if not path.is_relative_to(self.dir.resolve()):
                raise e.fail(f"ipv{family} file {rel!r} is outside the signature directory")
            if not path.is_file():
                raise e.fail(f"ipv{family} file {rel!r} does not exist")
            for packed, length, canonical, _ in _read_prefixes(path, family):
                entry = PrefixEntry(ident, canonical, number, owner, kind, source, date)
                prefixes.append((packed, length, entry))
                count += 1
        name, ipv4, ipv6 = e.text("name"), e.text("ipv4"), e.text("ipv6")
        return Asn(ident, number, owner, kind, name, ipv4, ipv6, count, source, date)


def _check_prefix_duplicates(prefixes: list[tuple[bytes, int, PrefixEntry]], asns: dict[int, Asn],
                             directory: pathlib.Path) -> None:
    """A network listed twice would make lookups depend on load order: refuse it."""
    seen: dict[tuple[bytes, int], PrefixEntry] = {}
    for packed, length, entry in prefixes:
        first = seen.setdefault((packed, length), entry)
        if first is not entry:
            files = asns[entry.asn]
            path = directory / (files.ipv6 if len(packed) == 16 else files.ipv4)
            raise SignatureError(str(path), repr(entry.network),
                                 f"prefix is also listed under {first.id} ({first.owner})")


class Signatures:
    """Everything the attribution stage needs, validated and indexed.

    ``apps``, ``operators``, ``cdns``: definitions by id. ``asns``: every operator and CDN ASN.
    ``hosts``: app and operator host rules. ``prefixes``: operator and CDN prefixes.
    ``cname_suffixes``: CDN CNAME target domains. ``stores`` / ``store_rules``: app-store data.
    ``peering``: neighbour key (``aa:bb:cc:dd:ee:ff`` or ``if:<name>``) to neighbour ASN.
    """

    def __init__(self, *, directory: pathlib.Path, apps: dict[str, App], operators: dict[str, Operator],
                 cdns: dict[str, Cdn], asns: dict[int, Asn], hosts: HostMatcher, prefixes: PrefixTable,
                 cname_suffixes: tuple[CnameSuffix, ...], stores: dict[str, Store],
                 store_rules: tuple[StoreRule, ...], peering: dict[str, int],
                 encrypted_ports: tuple[EncryptedPort, ...] = (), resolvers: tuple[Resolver, ...] = (),
                 resolver_suffixes: frozenset[str] = frozenset(),
                 ech_public_names: tuple[EchPublicName, ...] = (),
                 protocols: tuple[ProtocolRule, ...] = (),
                 prefix_texts: dict[int, tuple[str, ...]] | None = None) -> None:
        self.directory = directory
        self.apps = apps
        self.operators = operators
        self.cdns = cdns
        self.asns = asns
        self.hosts = hosts
        self.prefixes = prefixes
        self.cname_suffixes = cname_suffixes
        self.stores = stores
        self.store_rules = store_rules
        self.peering = peering
        self.operator_by_asn = {n: a.owner for n, a in asns.items() if a.kind == "operator"}
        self.cdn_by_asn = {n: a.owner for n, a in asns.items() if a.kind == "cdn"}
        self._cnames = _SuffixIndex({}, {c.suffix: c for c in cname_suffixes})
        self._prefix_texts = prefix_texts or {}
        self.encrypted_ports = {(p.proto, p.port): p for p in encrypted_ports}
        self.resolvers = resolvers
        exact = {h: r for r in resolvers for h in r.hosts if h not in resolver_suffixes}
        suffix = {h: r for r in resolvers for h in r.hosts if h in resolver_suffixes}
        self._resolver_names = _SuffixIndex(exact, suffix)
        self.resolver_addresses = {
            socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a): r
            for r in resolvers for a in r.addresses
        }
        self.ech_public_names = {e.name: e for e in ech_public_names}
        self.protocols = {p.id: p for p in protocols}
        self._stores_by_host: dict[str, list[tuple[StoreRule, re.Pattern[str]]]] = {}
        for rule in store_rules:
            pattern = _package_pattern(rule.platform, rule.package)
            for host in rule.hosts:
                self._stores_by_host.setdefault(host, []).append((rule, pattern))

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None,
             peering: str | os.PathLike[str] | None = None) -> Signatures:
        """Read and validate a signature directory (default: the shipped one) and a peering file.

        Loading ~20,000 prefixes costs more than a short scan, so the validated result is kept in
        a cache keyed by the digest of every signature file, the peering file and this module's
        own source: any change to any of them means a fresh, validated load.
        """
        root = pathlib.Path(directory) if directory is not None else shipped_directory()
        if not root.is_dir():
            raise SignatureError(str(root), None, "signature directory does not exist")
        cache = _cache_path(root, peering)
        if cache is not None:
            try:
                with open(cache, "rb") as f:
                    sigs = pickle.load(f)
                if isinstance(sigs, cls):
                    return sigs
            except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError):
                pass  # no usable cache: load and validate
        sigs = cls._load(root, peering)
        if cache is not None:
            _cache_store(cache, sigs)
        return sigs

    @classmethod
    def _load(cls, root: pathlib.Path, peering: str | os.PathLike[str] | None) -> Signatures:
        ld = _Loader(root)
        rules: list[HostRule] = []
        prefixes: list[tuple[bytes, int, PrefixEntry]] = []
        asns: dict[int, Asn] = {}

        # operators.toml: operators first, since app files and ASNs refer to them
        op_path = root / "operators.toml"
        op_doc = _read_toml(op_path)
        _only_keys(str(op_path), op_doc, ("operator", "asn", "rule"))
        op_raw: dict[str, tuple[str, tuple[str, ...], str, str]] = {}
        for e in _tables(str(op_path), op_doc, "operator", "operator"):
            e.keys(("id", "name", "apps", "source", "date"), ("note",))
            ident = e.ident()
            ld.claim(e, ident)
            op_raw[ident] = (e.text("name"), e.str_list("apps"), *e.sourced())

        # apps/*.toml
        apps: dict[str, App] = {}
        app_dir = root / "apps"
        for path in sorted(app_dir.glob("*.toml")) if app_dir.is_dir() else []:
            doc = _read_toml(path)
            _only_keys(str(path), doc, ("app", "rule"))
            head = _Entry(str(path), "app", 0, doc.get("app"))
            head.keys(("id", "name", "operator", "source", "date"), ("note",))
            app_id = head.ident()
            ld.claim(head, app_id)
            if app_id != path.stem:
                raise head.fail(f"app id must match the file name ({path.stem!r})")
            operator = head.text("operator")
            if operator not in op_raw:
                raise head.fail(f"unknown operator {operator!r}")
            if app_id not in op_raw[operator][1]:
                raise head.fail(f"operator {operator!r} in {op_path} does not list app {app_id!r}")
            apps[app_id] = App(app_id, head.text("name"), operator, *head.sourced())
            for e in _tables(str(path), doc, "rule", "rule"):
                e.keys(("id", "role", "confidence", "source", "date"), ("suffix", "host", "note"))
                rules.append(ld.host_rule(e, app_id, operator))
        for ident, (_, op_apps, _, _) in op_raw.items():
            for app in op_apps:
                if app not in apps:
                    raise SignatureError(str(op_path), f"operator {ident!r}",
                                         f"unknown app {app!r} (no apps/{app}.toml)")

        for e in _tables(str(op_path), op_doc, "asn", "asn"):
            a = ld.asn_entry(e, "operator", "operator", set(op_raw), prefixes)
            if a.asn in asns:
                raise e.fail(f"AS{a.asn} is defined twice")
            asns[a.asn] = a
        for e in _tables(str(op_path), op_doc, "rule", "rule"):
            e.keys(("id", "operator", "role", "confidence", "source", "date"), ("suffix", "host", "note"))
            operator = e.text("operator")
            if operator not in op_raw:
                raise e.fail(f"unknown operator {operator!r}")
            rules.append(ld.host_rule(e, None, operator))
        operators = {
            ident: Operator(ident, name, op_apps, _asns_of(asns, ident), source, date)
            for ident, (name, op_apps, source, date) in op_raw.items()
        }

        # cdn.toml
        cdn_path = root / "cdn.toml"
        cdn_doc = _read_toml(cdn_path)
        _only_keys(str(cdn_path), cdn_doc, ("provider", "asn", "cname"))
        cdn_raw: dict[str, tuple[str, str, str]] = {}
        for e in _tables(str(cdn_path), cdn_doc, "provider", "provider"):
            e.keys(("id", "name", "source", "date"), ("note",))
            ident = e.ident()
            ld.claim(e, ident)
            cdn_raw[ident] = (e.text("name"), *e.sourced())
        for e in _tables(str(cdn_path), cdn_doc, "asn", "asn"):
            a = ld.asn_entry(e, "cdn", "provider", set(cdn_raw), prefixes)
            if a.asn in asns:
                raise e.fail(f"AS{a.asn} is defined twice")
            asns[a.asn] = a
        cnames: list[CnameSuffix] = []
        cname_seen: dict[str, str] = {}
        for e in _tables(str(cdn_path), cdn_doc, "cname", "cname"):
            e.keys(("id", "suffix", "provider", "source", "date"), ("note",))
            ident = e.ident()
            ld.claim(e, ident)
            suffix = e.name_value("suffix")
            provider = e.text("provider")
            if provider not in cdn_raw:
                raise e.fail(f"unknown provider {provider!r}")
            if cname_seen.setdefault(suffix, ident) != ident:
                raise e.fail(f"suffix {suffix!r} duplicates {cname_seen[suffix]!r}")
            cnames.append(CnameSuffix(ident, suffix, provider, *e.sourced(), e.text("note", "")))
        cdns = {
            ident: Cdn(ident, name, _asns_of(asns, ident), source, date)
            for ident, (name, source, date) in cdn_raw.items()
        }
        _check_prefix_duplicates(prefixes, asns, root)

        stores, store_rules = _load_stores(ld, root / "app-stores.toml", apps)
        peers = _load_peering(pathlib.Path(peering)) if peering is not None else {}
        ports, resolvers, suffixes, ech_names = _load_encrypted(ld, root / "encrypted.toml")
        protocols = _load_protocols(ld, root / "protocols.toml", apps)
        return cls(directory=root, apps=apps, operators=operators, cdns=cdns, asns=asns,
                   hosts=HostMatcher(rules), prefixes=PrefixTable(prefixes), cname_suffixes=tuple(cnames),
                   stores=stores, store_rules=store_rules, peering=peers, encrypted_ports=ports,
                   resolvers=resolvers, resolver_suffixes=suffixes, ech_public_names=ech_names,
                   protocols=protocols, prefix_texts=_texts_by_asn(prefixes))

    def cname_provider(self, host: str) -> CnameSuffix | None:
        """The CDN whose CNAME domain ``host`` is under (longest suffix), or None."""
        return self._cnames.get(host)

    def prefixes_of(self, asn: int) -> tuple[str, ...]:
        """The prefixes (canonical text, IPv4 then IPv6) the signatures give ``asn``."""
        return self._prefix_texts.get(asn, ())

    def resolver_for(self, host: str) -> Resolver | None:
        """The public resolver whose DoH/DoT endpoint ``host`` is, or None."""
        return self._resolver_names.get(host)

    def store_match(self, host: str, target: str) -> StoreRule | None:
        """The app whose store identity appears in a request for ``target`` on store ``host``."""
        for rule, pattern in self._stores_by_host.get(normalize_host(host), ()):
            if pattern.search(target):
                return rule
        return None


def _package_pattern(platform: str, package: str) -> re.Pattern[str]:
    """Android package names end at a character that cannot continue them (so
    ``com.zhiliaoapp.musically`` does not match ``com.zhiliaoapp.musically.go``); Apple ids are
    numbers not embedded in longer numbers."""
    if platform == "android":
        return re.compile(r"(?<![A-Za-z0-9_.])" + re.escape(package) + r"(?![A-Za-z0-9_.])")
    return re.compile(r"(?<![0-9])" + re.escape(package) + r"(?![0-9])")


def _texts_by_asn(prefixes: list[tuple[bytes, int, PrefixEntry]]) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    for _, _, entry in sorted(prefixes, key=lambda p: (len(p[0]), p[0], p[1])):
        out.setdefault(entry.asn, []).append(entry.network)
    return {asn: tuple(texts) for asn, texts in out.items()}


def _asns_of(asns: dict[int, Asn], owner: str) -> tuple[int, ...]:
    return tuple(sorted(n for n, a in asns.items() if a.owner == owner))


def _load_stores(ld: _Loader, path: pathlib.Path,
                 apps: dict[str, App]) -> tuple[dict[str, Store], tuple[StoreRule, ...]]:
    doc = _read_toml(path)
    _only_keys(str(path), doc, ("store", "package"))
    stores: dict[str, Store] = {}
    for e in _tables(str(path), doc, "store", "store"):
        e.keys(("id", "name", "platform", "hosts", "source", "date"), ("note",))
        ident = e.ident()
        ld.claim(e, ident)
        hosts = e.str_list("hosts")
        for host in hosts:
            if not _name_ok(host):
                raise e.fail(f"host {host!r} is not a lowercase host name")
        stores[ident] = Store(ident, e.text("name"), e.choice("platform", PLATFORMS), hosts, *e.sourced())
    rules: list[StoreRule] = []
    for e in _tables(str(path), doc, "package", "package"):
        e.keys(("id", "app", "store", "package", "source", "date"), ("note",))
        ident = e.ident()
        ld.claim(e, ident)
        app = e.text("app")
        if app not in apps:
            raise e.fail(f"unknown app {app!r}")
        store_id = e.text("store")
        if store_id not in stores:
            raise e.fail(f"unknown store {store_id!r}")
        store = stores[store_id]
        package = e.text("package")
        ok = _ANDROID_PKG_RE.fullmatch(package) if store.platform == "android" else package.isdigit()
        if not ok:
            raise e.fail(f"package {package!r} is not a valid {store.platform} store identity")
        rules.append(StoreRule(ident, store_id, store.platform, store.hosts, app, package, *e.sourced()))
    return stores, tuple(rules)


def _load_encrypted(ld: _Loader, path: pathlib.Path) -> tuple[
        tuple[EncryptedPort, ...], tuple[Resolver, ...], frozenset[str], tuple[EchPublicName, ...]]:
    """encrypted.toml: encrypted-DNS ports and resolvers, ECH public names (file optional)."""
    if not path.is_file():
        return (), (), frozenset(), ()
    doc = _read_toml(path)
    _only_keys(str(path), doc, ("port", "resolver", "ech_public_name"))
    ports = []
    for e in _tables(str(path), doc, "port", "port"):
        e.keys(("id", "kind", "proto", "port", "source", "date"), ("note",))
        ident = e.ident()
        ld.claim(e, ident)
        proto = {"tcp": 6, "udp": 17}.get(e.choice("proto", ("tcp", "udp")))
        port = e.integer("port")
        if not 0 < port < 65536:
            raise e.fail(f"port {port} out of range")
        ports.append(EncryptedPort(ident, e.choice("kind", ("dot", "doq")), proto, port, *e.sourced()))
    resolvers, suffixes, seen = [], set(), {}
    for e in _tables(str(path), doc, "resolver", "resolver"):
        e.keys(("id", "name", "hosts", "addresses", "source", "date"), ("suffix", "note"))
        ident = e.ident()
        ld.claim(e, ident)
        hosts = e.str_list("hosts")
        for host in hosts:
            if not _name_ok(host):
                raise e.fail(f"host {host!r} is not a lowercase host name")
            if seen.setdefault(host, ident) != ident:
                raise e.fail(f"host {host!r} is already listed by {seen[host]!r}")
        raw = e.data.get("addresses")
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise e.fail("'addresses' must be a list of strings (may be empty)")
        for addr in raw:
            try:
                socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
            except OSError:
                raise e.fail(f"address {addr!r} is not an IPv4 or IPv6 address") from None
        flag = e.data.get("suffix", False)
        if not isinstance(flag, bool):
            raise e.fail("'suffix' must be true or false")
        if flag:
            suffixes.update(hosts)
        resolvers.append(Resolver(ident, e.text("name"), hosts, tuple(raw), *e.sourced()))
    ech = []
    for e in _tables(str(path), doc, "ech_public_name", "ech_public_name"):
        e.keys(("id", "name", "source", "date"), ("note",))
        ident = e.ident()
        ld.claim(e, ident)
        ech.append(EchPublicName(ident, e.name_value("name"), *e.sourced()))
    return tuple(ports), tuple(resolvers), frozenset(suffixes), tuple(ech)


def _load_protocols(ld: _Loader, path: pathlib.Path, apps: dict[str, App]) -> tuple[ProtocolRule, ...]:
    """protocols.toml: protocols whose framing names the app (file optional)."""
    if not path.is_file():
        return ()
    doc = _read_toml(path)
    _only_keys(str(path), doc, ("protocol",))
    out = []
    for e in _tables(str(path), doc, "protocol", "protocol"):
        e.keys(("id", "app", "role", "confidence", "source", "date"), ("note",))
        ident = e.ident()
        ld.claim(e, ident)
        app = e.text("app")
        if app not in apps:
            raise e.fail(f"unknown app {app!r}")
        out.append(ProtocolRule(ident, app, e.choice("role", ROLES), e.choice("confidence", CONFIDENCES),
                                *e.sourced()))
    return tuple(out)


def _load_peering(path: pathlib.Path) -> dict[str, int]:
    """Neighbour MAC address or interface name to neighbour ASN, from a deployment's file."""
    doc = _read_toml(path)
    _only_keys(str(path), doc, ("neighbour",))
    out: dict[str, int] = {}
    required, optional = ("asn", "source", "date"), ("mac", "interface", "name", "note")
    for e in _tables(str(path), doc, "neighbour", "neighbour"):
        e.keys((), required + optional)
        if ("mac" in e.data) == ("interface" in e.data):
            raise e.fail("needs exactly one of 'mac' or 'interface'")
        if "mac" in e.data:
            mac = e.text("mac").lower()
            if not _MAC_RE.fullmatch(mac):
                raise e.fail(f"mac {mac!r} is not six hex pairs separated by ':' or '-'")
            key = mac.replace("-", ":")
        else:
            interface = e.text("interface")
            if any(c.isspace() for c in interface):
                raise e.fail(f"interface {interface!r} contains spaces")
            key = f"if:{interface}"
        e.name = f"neighbour {key!r}"  # a neighbour has no id: name it by its key
        e.keys(required, optional)
        asn = e.integer("asn")
        if not 0 < asn < 2**32:
            raise e.fail(f"asn {asn} out of range")
        e.sourced()
        if key in out:
            raise e.fail("duplicate neighbour")
        out[key] = asn
    return out


def _cache_dir() -> pathlib.Path | None:
    if os.environ.get("CLASSIFIER_NO_CACHE"):
        return None
    base = os.environ.get("CLASSIFIER_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    return pathlib.Path(base or pathlib.Path.home() / ".cache") / "classifier"


def _cache_path(root: pathlib.Path, peering: str | os.PathLike[str] | None) -> pathlib.Path | None:
    """Where the validated signatures for exactly these files would be cached (None: no cache)."""
    where = _cache_dir()
    if where is None:
        return None
    # The directory itself is part of the key: a loaded set remembers where it came from.
    h = hashlib.sha256(pathlib.Path(__file__).read_bytes() + str(root.resolve()).encode())
    try:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".toml", ".txt")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        if peering is not None:
            h.update(b"peering\0" + pathlib.Path(peering).read_bytes())
    except OSError:
        return None  # the load itself will say what is wrong
    return where / f"signatures-{h.hexdigest()[:32]}.pickle"


def _cache_store(path: pathlib.Path, sigs: Signatures) -> None:
    """Write the cache atomically; a cache that cannot be written is simply not used."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(sigs, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError:
        pass


def shipped_directory() -> pathlib.Path:
    """The signatures shipped with the package (installed as classifier._signatures) or, in a
    source checkout, the repository's signatures/ directory."""
    import importlib.resources  # only here: it pulls in zipfile and friends

    try:
        files = importlib.resources.files("classifier._signatures")
    except ModuleNotFoundError:
        files = None
    if isinstance(files, pathlib.Path) and (files / "operators.toml").is_file():
        return files
    return pathlib.Path(__file__).resolve().parent.parent / "signatures"
