"""What an attribution says about a flow, and the evidence behind it.

These are the attribution stage's results (``classifier.attribute`` makes them). They live apart
from it so that a flow can hold its attribution with a real type (``classifier.flows``) while the
attribution stage reads flows: neither module imports the other back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Evidence(NamedTuple):
    """One reason behind an attribution, in the form the records print.

    A named tuple, not a dataclass: attributions are shared between flows through a table keyed
    by their fields, evidence included, so every flow hashes and compares its evidence; a tuple
    does that in C (a frozen dataclass runs generated Python for each), and is built faster.
    """

    kind: str  # sni | http-host | http-proxy | socks | ja4 | dns | name-history | dns-unsolicited |
    #            dns-query | cname | store | ech | encrypted-dns | prefix | peering, or the id of a registered
    #            protocol (mmtls; classifier.inspect.registry)
    value: str
    signature: str | None = None
    source: str | None = None

    def as_dict(self) -> dict[str, str]:
        d = {"kind": self.kind, "value": self.value}
        if self.signature is not None:
            d["signature"] = self.signature
        if self.source is not None:
            d["source"] = self.source
        return d


@dataclass(frozen=True, slots=True)
class Attribution:
    """What a flow was attributed to (app, operator, categories) and the evidence why."""

    hostname: str | None
    hostname_source: str | None  # sni | socks | http-proxy | http-host | dns | name-history |
    #                              dns-unsolicited | dns-query
    app: str | None
    operator: str | None
    category: str | None
    categories: tuple[str, ...]
    confidence: str | None
    evidence: tuple[Evidence, ...]
    server_asn: int | None
    server_owner: str | None  # operator or CDN provider id owning the server prefix
    encrypted_dns: str | None = None  # dot | doq | doh: this flow carries DNS we cannot read
    ech_public_name: str | None = None  # the outer SNI, when it is an ECH public name
    basis: tuple[str, ...] = ()  # evidence kinds that gave or confirmed the app (else the operator)

    @property
    def attributed(self) -> bool:
        return self.app is not None or self.operator is not None
