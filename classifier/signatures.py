"""The loaded signature set: what attribution asks about host names, CNAME targets and addresses.

:meth:`Signatures.load` is the one way in: it finds the validated parts in the cache
(``sigcache``) or has the loader read and validate every file (``sigload``), then builds the
lookup indexes (``sigmatch``) once, so each question costs a dictionary probe or two per flow.
The entries themselves are in ``sigmodel``; the words they may use in ``vocabulary``.
"""

from __future__ import annotations

import os
import pathlib
import re
from _socket import AF_INET, AF_INET6, inet_pton

from classifier import vocabulary
from classifier.errors import SignatureError
from classifier.sigcache import Slot
from classifier.sigload import SignatureParts, load_directory
from classifier.sigmatch import HostMatcher, SuffixIndex, normalize_host, package_pattern
from classifier.sigmodel import CnameSuffix, Resolver, StoreRule


class Signatures:
    """Everything the attribution stage needs, validated and indexed.

    ``apps``, ``operators``, ``cdns``: definitions by id. ``asns``: every operator and CDN ASN.
    ``hosts``: app and operator host rules. ``prefixes``: operator and CDN prefixes.
    ``cname_suffixes``: CDN CNAME target domains. ``stores`` / ``store_rules``: app-store data.
    ``peering``: neighbour key (``aa:bb:cc:dd:ee:ff`` or ``if:<name>``) to neighbour ASN.
    """

    def __init__(self, parts: SignatureParts) -> None:
        self.directory = pathlib.Path(parts.directory)
        self.apps = parts.apps
        self.operators = parts.operators
        self.cdns = parts.cdns
        self.asns = parts.asns
        self.hosts = HostMatcher(parts.host_rules)
        self.prefixes = parts.prefixes
        self.cname_suffixes = parts.cname_suffixes
        self.stores = parts.stores
        self.store_rules = parts.store_rules
        self.peering = parts.peering
        self.operator_by_asn = {n: a.owner for n, a in parts.asns.items() if a.kind == "operator"}
        self.cdn_by_asn = {n: a.owner for n, a in parts.asns.items() if a.kind == "cdn"}
        self._cnames = SuffixIndex({}, {c.suffix: c for c in parts.cname_suffixes})
        self._prefix_texts: dict[int, tuple[str, ...]] | None = None
        self.encrypted_ports = {(p.proto, p.port): p for p in parts.encrypted_ports}
        self.resolvers = parts.resolvers
        suffixes = parts.resolver_suffixes
        exact = {h: r for r in parts.resolvers for h in r.hosts if h not in suffixes}
        suffix = {h: r for r in parts.resolvers for h in r.hosts if h in suffixes}
        self._resolver_names = SuffixIndex(exact, suffix)
        self.resolver_addresses = {
            inet_pton(AF_INET6 if ":" in a else AF_INET, a): r for r in parts.resolvers for a in r.addresses
        }
        self.ech_public_names = {e.name: e for e in parts.ech_public_names}
        self.protocols = {p.id: p for p in parts.protocols}
        self.ja4 = {r.ja4: r for r in parts.ja4_rules}
        self._stores_by_host: dict[str, list[tuple[StoreRule, re.Pattern[str]]]] = {}
        for rule in parts.store_rules:
            pattern = package_pattern(rule.platform, rule.package)
            for host in rule.hosts:
                self._stores_by_host.setdefault(host, []).append((rule, pattern))

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str] | None = None,
        peering: str | os.PathLike[str] | None = None,
        vocabulary_file: str | os.PathLike[str] | None = None,
    ) -> Signatures:
        """Read and validate a signature directory (default: the shipped one) and a peering file.

        The vocabulary is ``vocabulary_file``, else the directory's ``policy/vocabulary.toml``,
        else the shipped one. Validating ~20,000 prefixes costs more than a short scan, so the
        result is cached (``sigcache``): any change to any file it depends on means a fresh load.
        """
        root = pathlib.Path(directory) if directory is not None else shipped_directory()
        if not root.is_dir():
            problem = (
                "is not a directory (a signature directory is expected)"
                if root.exists()
                else "signature directory does not exist"
            )
            raise SignatureError(str(root), None, problem)
        peering_path = pathlib.Path(peering) if peering is not None else None
        vocab_path = pathlib.Path(vocabulary_file) if vocabulary_file is not None else _vocabulary_of(root)
        slot = Slot.find(root, [p for p in (peering_path, vocab_path) if p is not None])
        parts = slot.read() if slot is not None else None
        if parts is None:
            parts = load_directory(root, peering_path, vocabulary.load(vocab_path))
            if slot is not None:
                slot.write(parts)
        return cls(parts)

    def cname_provider(self, host: str) -> CnameSuffix | None:
        """The CDN whose CNAME domain ``host`` is under (longest suffix), or None."""
        return self._cnames.get(host)

    def prefixes_of(self, asn: int) -> tuple[str, ...]:
        """The prefixes (canonical text, IPv4 then IPv6, in address order) the signatures give ``asn``."""
        if self._prefix_texts is None:  # built on first use: only route and BGP tools ask
            rows = sorted(self.prefixes.networks(), key=lambda n: n[:3])
            texts: dict[int, list[str]] = {}
            for _, _, _, text, template in rows:
                texts.setdefault(template.asn, []).append(text)
            self._prefix_texts = {n: tuple(t) for n, t in texts.items()}
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


def _vocabulary_of(root: pathlib.Path) -> pathlib.Path:
    own = root / "policy" / vocabulary.FILE_NAME
    return own if own.exists() else shipped_directory() / "policy" / vocabulary.FILE_NAME


def shipped_directory() -> pathlib.Path:
    """The signatures shipped with the package (installed as classifier._signatures) or, in a
    source checkout, the repository's signatures/ directory."""
    here = pathlib.Path(__file__).resolve().parent
    for candidate in (here / "_signatures", here.parent / "signatures"):
        if (candidate / "operators.toml").is_file():
            return candidate
    import importlib.resources  # only for unusual installs: it pulls in zipfile and friends

    try:
        files = importlib.resources.files("classifier._signatures")
    except ModuleNotFoundError:
        files = None
    if isinstance(files, pathlib.Path) and (files / "operators.toml").is_file():
        return files
    return here.parent / "signatures"
