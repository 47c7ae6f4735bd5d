"""Read and validate a signature directory into the parts of a signature set.

Signatures are data (``*.toml`` plus prefix lists); this module only knows their format, as
schemas of the shared validation layer (``classifier.validate``). Everything is validated here,
once, and any problem becomes a ``SignatureError`` naming the file, the entry and the field, so a
broken edit stops the run with one line instead of a traceback or, worse, a silently ignored rule.

Layout of a signature directory (see signatures/README.md):

* ``operators.toml``: ``[[operator]]``, ``[[asn]]`` (with ``operator``) and operator-level
  ``[[rule]]`` host rules (app unknown).
* ``cdn.toml``: ``[[provider]]``, ``[[asn]]`` (with ``provider``) and ``[[cname]]`` suffixes.
* ``apps/<app>.toml``: one ``[app]`` table and the app's ``[[rule]]`` host rules.
* ``app-stores.toml``: ``[[store]]`` and ``[[package]]``.
* ``encrypted.toml``, ``protocols.toml`` (optional): encrypted-DNS ports and resolvers, ECH
  public names; protocols whose framing names the app.
* ``fingerprints.toml`` (optional): ``[[ja4]]`` TLS client fingerprints of an app's own stack.
* prefix files named by the ``[[asn]]`` entries: one prefix a line, ``#`` comments.
* a peering file (optional, per deployment): ``[[neighbour]]``.

App ids and rule roles must be words of the vocabulary (``classifier.vocabulary``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.datafile import read_text, read_toml
from classifier.errors import SignatureError
from classifier.inspect import registry
from classifier.sigmatch import PrefixTable
from classifier.sigmodel import (
    App,
    Asn,
    Cdn,
    CnameSuffix,
    EchPublicName,
    EncryptedPort,
    HostRule,
    Ja4Rule,
    Operator,
    PrefixEntry,
    ProtocolRule,
    Resolver,
    Store,
    StoreRule,
)
from classifier.validate import (
    ADDRESS,
    ASN,
    BOOLEAN,
    DATE,
    HOSTNAME,
    MAC,
    PORT,
    TEXT,
    Entry,
    Field,
    Invalid,
    Kind,
    Schema,
    array_of_tables,
    choice,
    list_of,
    matching,
    only_keys,
    optional,
    parse_prefix,
)
from classifier.vocabulary import Vocabulary

CONFIDENCES = ("high", "medium")
PLATFORMS = ("android", "ios")

IDENT = matching(r"[A-Za-z0-9][A-Za-z0-9._:-]*", "must be letters, digits and . _ : -", 200)
_ANDROID_PKG_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)+")
_IFNAME = matching(r"\S{1,64}", "is not an interface name (no spaces)", 64)

# Every entry says where it came from and how old that is.
_SOURCED = (Field("source", TEXT), Field("date", DATE), optional("note", TEXT, ""))


@dataclass(slots=True)
class SignatureParts:
    """Everything a signature set is built from: what the loader validated and the cache keeps."""

    directory: str
    apps: dict[str, App]
    operators: dict[str, Operator]
    cdns: dict[str, Cdn]
    asns: dict[int, Asn]
    host_rules: tuple[HostRule, ...]
    prefixes: PrefixTable
    cname_suffixes: tuple[CnameSuffix, ...]
    stores: dict[str, Store]
    store_rules: tuple[StoreRule, ...]
    peering: dict[str, int]
    encrypted_ports: tuple[EncryptedPort, ...]
    resolvers: tuple[Resolver, ...]
    resolver_suffixes: frozenset[str]
    ech_public_names: tuple[EchPublicName, ...]
    protocols: tuple[ProtocolRule, ...]
    ja4_rules: tuple[Ja4Rule, ...] = ()


def _schema(kind: str, *fields: Field, exactly_one: tuple[tuple[str, str], ...] = ()) -> Schema:
    return Schema(kind, (Field("id", IDENT), *fields, *_SOURCED), exactly_one=exactly_one)


def _asn_schema(owner_key: str) -> Schema:
    return _schema(
        "asn",
        Field("asn", ASN),
        Field(owner_key, TEXT),
        Field("name", TEXT),
        Field("ipv4", TEXT),
        Field("ipv6", TEXT),
    )


OPERATOR = _schema("operator", Field("name", TEXT), Field("apps", list_of(IDENT)))
OPERATOR_ASN = _asn_schema("operator")
APP = _schema("app", Field("name", TEXT), Field("operator", TEXT))
PROVIDER = _schema("provider", Field("name", TEXT))
CDN_ASN = _asn_schema("provider")
CNAME = _schema("cname", Field("suffix", HOSTNAME), Field("provider", TEXT))
STORE = _schema(
    "store", Field("name", TEXT), Field("platform", choice(PLATFORMS)), Field("hosts", list_of(HOSTNAME))
)
# JA4 (FoxIO technical_details/JA4.md): protocol, version, SNI, counts, ALPN, two truncated hashes
JA4 = matching(
    r"[tqd](1[0-3]|s[23]|d[1-3]|00)[di][0-9]{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}",
    "is not a JA4 fingerprint (e.g. t13d1516h2_8daaf6152771_e5627efa2ab1)",
    36,
)
JA4_ENTRY = _schema("ja4", Field("ja4", JA4), Field("app", IDENT))
PACKAGE = _schema("package", Field("app", TEXT), Field("store", TEXT), Field("package", TEXT))
PORT_ENTRY = _schema(
    "port", Field("kind", choice(("dot", "doq"))), Field("proto", choice(("tcp", "udp"))), Field("port", PORT)
)
RESOLVER = _schema(
    "resolver",
    Field("name", TEXT),
    Field("hosts", list_of(HOSTNAME)),
    Field("addresses", list_of(ADDRESS, allow_empty=True)),
    optional("suffix", BOOLEAN, False),
)
ECH_NAME = _schema("ech_public_name", Field("name", HOSTNAME))


def _neighbour_name(raw: dict[str, Any]) -> str | None:
    """A neighbour has no id: it is named by its key (the MAC address or ``if:<interface>``)."""
    try:
        if "mac" in raw:
            return MAC.convert(raw["mac"])
        if "interface" in raw:
            return "if:" + _IFNAME.convert(raw["interface"])
    except Invalid:
        pass
    return None


NEIGHBOUR = Schema(
    "neighbour",
    (
        optional("mac", MAC),
        optional("interface", _IFNAME),
        optional("name", TEXT),
        Field("asn", ASN),
        *_SOURCED,
    ),
    exactly_one=(("mac", "interface"),),
    name_of=_neighbour_name,
)


def _rule_schemas(vocabulary: Vocabulary) -> tuple[Schema, Schema]:
    """App rules and operator rules: their roles come from the vocabulary."""
    common = (Field("role", choice(vocabulary.roles)), Field("confidence", choice(CONFIDENCES)))
    names = (optional("suffix", HOSTNAME), optional("host", HOSTNAME))
    one = (("suffix", "host"),)
    return (
        _schema("rule", *names, *common, exactly_one=one),
        _schema("rule", Field("operator", TEXT), *names, *common, exactly_one=one),
    )


def _registered_protocol(known: Iterable[str]) -> Kind:
    """The id of a protocol an inspector registers (classifier.inspect.registry): an entry for a
    protocol nothing recognises would never match, so it is refused rather than ignored."""
    known = tuple(known)
    listed = ", ".join(known) or "none"

    def check(value: Any) -> str:
        ident = IDENT.convert(value)
        if ident not in known:
            raise Invalid(f"{ident!r} is no protocol an inspector registers (registered: {listed})")
        return ident

    return Kind("the id of a registered protocol", check)


def protocol_schema(vocabulary: Vocabulary, known: Iterable[str]) -> Schema:
    """A protocols.toml entry: which app a registered protocol names, with what role and confidence."""
    return Schema(
        "protocol",
        (
            Field("id", _registered_protocol(known)),
            Field("app", TEXT),
            Field("role", choice(vocabulary.roles)),
            Field("confidence", choice(CONFIDENCES)),
            *_SOURCED,
        ),
    )


def _sourced(e: Entry) -> tuple[str, str]:
    """(source, ISO date) as every model entry stores them."""
    return e["source"], e["date"].isoformat()


class _Loader:
    """Holds cross-file state while a directory is read: ids seen, patterns seen."""

    def __init__(self, directory: Path, vocabulary: Vocabulary) -> None:
        self.dir = directory
        self.vocabulary = vocabulary
        self.app_rule, self.operator_rule = _rule_schemas(vocabulary)
        self.ids: dict[str, str] = {}  # id -> file that defined it
        self.patterns: dict[tuple[str, bool], tuple[str, str]] = {}  # (pattern, exact) -> (file, id)

    def read(self, path: Path, allowed: tuple[str, ...]) -> dict[str, Any]:
        doc = read_toml(path, SignatureError)
        only_keys(doc, allowed, str(path), SignatureError)
        return doc

    def entries(self, doc: dict[str, Any], key: str, schema: Schema, path: Path) -> Iterator[Entry]:
        """Each ``[[key]]`` table of ``doc`` checked against ``schema``, its id claimed."""
        for i, raw in enumerate(array_of_tables(doc, key, str(path), SignatureError)):
            e = schema.check(raw, str(path), i, SignatureError)
            if "id" in e.values:
                self.claim(e, e["id"])
            yield e

    def claim(self, entry: Entry, ident: str) -> None:
        """Ids are unique across the whole directory, so evidence can cite one unambiguously."""
        if ident in self.ids:
            first = self.ids[ident]
            where = "earlier in this file" if first == entry.path else f"in {first}"
            raise entry.fail(f"duplicate id (also {where})")
        self.ids[ident] = entry.path

    def host_rule(self, e: Entry, app: str | None, operator: str | None) -> HostRule:
        exact = e["host"] is not None
        pattern = e["host"] if exact else e["suffix"]
        first = self.patterns.setdefault((pattern, exact), (e.path, e["id"]))
        if first[1] != e["id"]:
            kind = "host" if exact else "suffix"
            raise e.fail(f"{pattern!r} duplicates rule {first[1]!r} in {first[0]}", kind)
        return HostRule(
            e["id"], pattern, exact, app, operator, e["role"], e["confidence"], *_sourced(e), e["note"]
        )

    def asn_entry(
        self,
        e: Entry,
        kind: str,
        owner_key: str,
        owners: set[str],
        prefixes: list[tuple[bytes, int, PrefixEntry]],
    ) -> Asn:
        owner = e[owner_key]
        if owner not in owners:
            raise e.fail(f"unknown {owner_key} {owner!r}", owner_key)
        source, date = _sourced(e)
        count = 0
        for family in (4, 6):
            key = f"ipv{family}"
            rel = e[key]
            path = (self.dir / rel).resolve()
            if not path.is_relative_to(self.dir.resolve()):
                raise e.fail(f"file {rel!r} is outside the signature directory", key)
            if not path.is_file():
                raise e.fail(f"file {rel!r} does not exist", key)
            for packed, length, canonical in _read_prefixes(path, family):
                prefixes.append(
                    (packed, length, PrefixEntry(e["id"], canonical, e["asn"], owner, kind, source, date))
                )
                count += 1
        return Asn(e["id"], e["asn"], owner, kind, e["name"], e["ipv4"], e["ipv6"], count, source, date)


def _read_prefixes(path: Path, family: int) -> Iterator[tuple[bytes, int, str]]:
    """(packed, length, canonical) for each prefix line of a prefix file."""
    size = 4 if family == 4 else 16
    for number, raw in enumerate(read_text(path, SignatureError).splitlines(), 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        where = f"line {number}: {text[:60]!r}"
        try:
            packed, length, canonical = parse_prefix(text)
        except Invalid as exc:
            raise SignatureError(str(path), where, str(exc)) from None
        if len(packed) != size:
            raise SignatureError(str(path), where, f"not an IPv{family} prefix")
        yield packed, length, canonical


def load_directory(root: Path, peering: Path | None, vocabulary: Vocabulary) -> SignatureParts:
    """Validate every file of the signature directory ``root`` (and the peering file)."""
    ld = _Loader(root, vocabulary)
    rules: list[HostRule] = []
    prefixes: list[tuple[bytes, int, PrefixEntry]] = []
    asns: dict[int, Asn] = {}

    # operators.toml: operators first, since app files and ASNs refer to them
    op_path = root / "operators.toml"
    op_doc = ld.read(op_path, ("operator", "asn", "rule"))
    op_entries = {e["id"]: e for e in ld.entries(op_doc, "operator", OPERATOR, op_path)}
    if not op_entries:
        raise SignatureError(str(op_path), None, "no [[operator]] entries: every app needs its operator")

    # apps/*.toml
    apps: dict[str, App] = {}
    app_dir = root / "apps"
    for path in sorted(app_dir.glob("*.toml")) if app_dir.is_dir() else []:
        doc = ld.read(path, ("app", "rule"))
        head = APP.check(doc.get("app"), str(path), None, SignatureError)
        app_id = head["id"]
        ld.claim(head, app_id)
        if app_id != path.stem:
            raise head.fail(f"must match the file name ({path.stem!r})", "id")
        if app_id not in vocabulary.apps:
            raise head.fail(f"{app_id!r} is not an app of the vocabulary {vocabulary.path}", "id")
        operator = head["operator"]
        if operator not in op_entries:
            raise head.fail(f"unknown operator {operator!r} (not in {op_path})", "operator")
        if app_id not in op_entries[operator]["apps"]:
            raise head.fail(f"operator {operator!r} in {op_path} does not list app {app_id!r}", "operator")
        apps[app_id] = App(app_id, head["name"], operator, *_sourced(head))
        for e in ld.entries(doc, "rule", ld.app_rule, path):
            rules.append(ld.host_rule(e, app_id, operator))
    for e in op_entries.values():
        for app in e["apps"]:
            if app not in apps:
                raise e.fail(f"unknown app {app!r} (no apps/{app}.toml)", "apps")

    for e in ld.entries(op_doc, "asn", OPERATOR_ASN, op_path):
        a = ld.asn_entry(e, "operator", "operator", set(op_entries), prefixes)
        if a.asn in asns:
            raise e.fail(f"AS{a.asn} is defined twice", "asn")
        asns[a.asn] = a
    for e in ld.entries(op_doc, "rule", ld.operator_rule, op_path):
        if e["operator"] not in op_entries:
            raise e.fail(f"unknown operator {e['operator']!r}", "operator")
        rules.append(ld.host_rule(e, None, e["operator"]))
    operators = {
        ident: Operator(ident, e["name"], e["apps"], _asns_of(asns, ident), *_sourced(e))
        for ident, e in op_entries.items()
    }

    # cdn.toml
    cdn_path = root / "cdn.toml"
    cdn_doc = ld.read(cdn_path, ("provider", "asn", "cname"))
    cdn_entries = {e["id"]: e for e in ld.entries(cdn_doc, "provider", PROVIDER, cdn_path)}
    for e in ld.entries(cdn_doc, "asn", CDN_ASN, cdn_path):
        a = ld.asn_entry(e, "cdn", "provider", set(cdn_entries), prefixes)
        if a.asn in asns:
            raise e.fail(f"AS{a.asn} is defined twice", "asn")
        asns[a.asn] = a
    cnames: list[CnameSuffix] = []
    cname_seen: dict[str, str] = {}
    for e in ld.entries(cdn_doc, "cname", CNAME, cdn_path):
        if e["provider"] not in cdn_entries:
            raise e.fail(f"unknown provider {e['provider']!r}", "provider")
        if cname_seen.setdefault(e["suffix"], e["id"]) != e["id"]:
            raise e.fail(f"{e['suffix']!r} duplicates {cname_seen[e['suffix']]!r}", "suffix")
        cnames.append(CnameSuffix(e["id"], e["suffix"], e["provider"], *_sourced(e), e["note"]))
    cdns = {
        ident: Cdn(ident, e["name"], _asns_of(asns, ident), *_sourced(e)) for ident, e in cdn_entries.items()
    }
    _check_prefix_duplicates(prefixes, asns, root)

    stores, store_rules = _load_stores(ld, root / "app-stores.toml", apps)
    ports, resolvers, suffixes, ech_names = _load_encrypted(ld, root / "encrypted.toml")
    return SignatureParts(
        directory=str(root),
        apps=apps,
        operators=operators,
        cdns=cdns,
        asns=asns,
        host_rules=tuple(rules),
        prefixes=PrefixTable(prefixes),
        cname_suffixes=tuple(cnames),
        stores=stores,
        store_rules=store_rules,
        peering=load_peering(peering) if peering is not None else {},
        encrypted_ports=ports,
        resolvers=resolvers,
        resolver_suffixes=suffixes,
        ech_public_names=ech_names,
        protocols=_load_protocols(ld, root / "protocols.toml", apps),
        ja4_rules=_load_fingerprints(ld, root / "fingerprints.toml", apps),
    )


def _check_prefix_duplicates(
    prefixes: list[tuple[bytes, int, PrefixEntry]], asns: dict[int, Asn], directory: Path
) -> None:
    """A network listed twice would make lookups depend on load order: refuse it."""
    seen: dict[tuple[bytes, int], PrefixEntry] = {}
    for packed, length, entry in prefixes:
        first = seen.setdefault((packed, length), entry)
        if first is not entry:
            files = asns[entry.asn]
            path = directory / (files.ipv6 if len(packed) == 16 else files.ipv4)
            raise SignatureError(
                str(path), repr(entry.network), f"prefix is also listed under {first.id} ({first.owner})"
            )


def _asns_of(asns: dict[int, Asn], owner: str) -> tuple[int, ...]:
    return tuple(sorted(n for n, a in asns.items() if a.owner == owner))


def _load_stores(
    ld: _Loader, path: Path, apps: dict[str, App]
) -> tuple[dict[str, Store], tuple[StoreRule, ...]]:
    doc = ld.read(path, ("store", "package"))
    stores: dict[str, Store] = {}
    for e in ld.entries(doc, "store", STORE, path):
        stores[e["id"]] = Store(e["id"], e["name"], e["platform"], e["hosts"], *_sourced(e))
    rules: list[StoreRule] = []
    for e in ld.entries(doc, "package", PACKAGE, path):
        if e["app"] not in apps:
            raise e.fail(f"unknown app {e['app']!r}", "app")
        store = stores.get(e["store"])
        if store is None:
            raise e.fail(f"unknown store {e['store']!r}", "store")
        package = e["package"]
        ok = _ANDROID_PKG_RE.fullmatch(package) if store.platform == "android" else package.isdigit()
        if not ok:
            raise e.fail(f"{package!r} is not a valid {store.platform} store identity", "package")
        rules.append(
            StoreRule(e["id"], store.id, store.platform, store.hosts, e["app"], package, *_sourced(e))
        )
    return stores, tuple(rules)


def _load_encrypted(
    ld: _Loader, path: Path
) -> tuple[tuple[EncryptedPort, ...], tuple[Resolver, ...], frozenset[str], tuple[EchPublicName, ...]]:
    """encrypted.toml: encrypted-DNS ports and resolvers, ECH public names (file optional)."""
    if not path.exists():
        return (), (), frozenset(), ()
    doc = ld.read(path, ("port", "resolver", "ech_public_name"))
    ports = []
    for e in ld.entries(doc, "port", PORT_ENTRY, path):
        proto = {"tcp": 6, "udp": 17}[e["proto"]]
        ports.append(EncryptedPort(e["id"], e["kind"], proto, e["port"], *_sourced(e)))
    resolvers, suffixes, seen = [], set(), dict[str, str]()
    for e in ld.entries(doc, "resolver", RESOLVER, path):
        for host in e["hosts"]:
            if seen.setdefault(host, e["id"]) != e["id"]:
                raise e.fail(f"{host!r} is already listed by {seen[host]!r}", "hosts")
        if e["suffix"]:
            suffixes.update(e["hosts"])
        resolvers.append(Resolver(e["id"], e["name"], e["hosts"], e["addresses"], *_sourced(e)))
    ech = [
        EchPublicName(e["id"], e["name"], *_sourced(e))
        for e in ld.entries(doc, "ech_public_name", ECH_NAME, path)
    ]
    return tuple(ports), tuple(resolvers), frozenset(suffixes), tuple(ech)


def _load_protocols(ld: _Loader, path: Path, apps: dict[str, App]) -> tuple[ProtocolRule, ...]:
    """protocols.toml: which app each registered protocol names (file optional; a protocol without
    an entry is still recognised, as its flows' app_proto, but names no app)."""
    if not path.exists():
        return ()
    doc = ld.read(path, ("protocol",))
    schema = protocol_schema(ld.vocabulary, registry.protocols())
    out = []
    for e in ld.entries(doc, "protocol", schema, path):
        if e["app"] not in apps:
            raise e.fail(f"unknown app {e['app']!r}", "app")
        out.append(ProtocolRule(e["id"], e["app"], e["role"], e["confidence"], *_sourced(e)))
    return tuple(out)


def _load_fingerprints(ld: _Loader, path: Path, apps: dict[str, App]) -> tuple[Ja4Rule, ...]:
    """fingerprints.toml: JA4 fingerprints of an app's own TLS stack (file optional)."""
    if not path.exists():
        return ()
    doc = ld.read(path, ("ja4",))
    out: list[Ja4Rule] = []
    seen: dict[str, str] = {}
    for e in ld.entries(doc, "ja4", JA4_ENTRY, path):
        if e["app"] not in apps:
            raise e.fail(f"unknown app {e['app']!r}", "app")
        if seen.setdefault(e["ja4"], e["id"]) != e["id"]:
            raise e.fail(f"{e['ja4']} is already listed by {seen[e['ja4']]!r}", "ja4")
        out.append(Ja4Rule(e["id"], e["ja4"], e["app"], *_sourced(e)))
    return tuple(out)


def load_peering(path: Path) -> dict[str, int]:
    """Neighbour MAC address or interface name to neighbour ASN, from a deployment's file."""
    doc = read_toml(path, SignatureError)
    only_keys(doc, ("neighbour",), str(path), SignatureError)
    out: dict[str, int] = {}
    for i, raw in enumerate(array_of_tables(doc, "neighbour", str(path), SignatureError)):
        e = NEIGHBOUR.check(raw, str(path), i, SignatureError)
        key = e["mac"] if e["mac"] is not None else f"if:{e['interface']}"
        if key in out:
            raise e.fail("duplicate neighbour")
        out[key] = e["asn"]
    return out
