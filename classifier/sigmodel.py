"""The entries of a signature set: one frozen record per rule, prefix, ASN, app, store...

Plain data only (strings, integers, tuples), so a validated set can be cached as JSON and
rebuilt without running any code. Every entry carries ``source`` and ``date`` (ISO
``YYYY-MM-DD``): evidence cites them. Loading is in ``sigload``, lookups in ``sigmatch``.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """An app the signatures name, with the source that says it is one."""

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
    """A company that runs apps and networks, with its apps and ASNs and the source."""

    id: str
    name: str
    apps: tuple[str, ...]
    asns: tuple[int, ...]
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class Cdn:
    """A CDN or cloud named by its ASNs: its addresses serve many customers, not one app."""

    id: str
    name: str
    asns: tuple[int, ...]
    source: str
    date: str


@dataclass(frozen=True, slots=True)
class Store:
    """An app store, whose request targets name the app being fetched (StoreRule)."""

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


@dataclass(frozen=True, slots=True)
class Ja4Rule:
    """A JA4 fingerprint seen from an app's own TLS stack: weak evidence, never a block by itself."""

    id: str
    ja4: str
    app: str
    source: str
    date: str
