"""The operators' prefixes as networks: for kernel-route matching and for router prefix lists.

``Signatures.prefixes`` answers "which entry holds this address"; the audit also needs "which
operator prefixes lie inside this route" and the lists per operator, so the operator ASNs' prefix
files are read again here through the same validated reader (they loaded once already, so they
cannot fail now).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from classifier.signatures import Signatures

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class OperatorPrefix:
    """One shipped operator prefix: ``start`` is the network as an integer, ``family`` 4 or 6."""

    family: int
    start: int
    length: int
    asn: int
    operator: str
    network: str

    @property
    def bits(self) -> int:
        return 32 if self.family == 4 else 128


class OperatorPrefixes:
    """Operator prefixes with a longest-prefix lookup for a network (not just an address)."""

    def __init__(self, prefixes: Iterable[OperatorPrefix]) -> None:
        self.prefixes = sorted(prefixes, key=lambda p: (p.family, p.start, p.length))
        self._by_len: dict[int, dict[int, dict[int, OperatorPrefix]]] = {4: {}, 6: {}}
        for p in self.prefixes:
            self._by_len[p.family].setdefault(p.length, {})[p.start >> (p.bits - p.length)] = p
        self._lengths = {f: sorted(t, reverse=True) for f, t in self._by_len.items()}

    @classmethod
    def from_signatures(cls, sigs: Signatures) -> OperatorPrefixes:
        out = []
        for asn in sigs.asns.values():
            if asn.kind != "operator":
                continue
            for canonical in sigs.prefixes_of(asn.asn):
                addr, _, length = canonical.partition("/")
                family = 6 if ":" in addr else 4
                packed = socket.inet_pton(socket.AF_INET6 if family == 6 else socket.AF_INET, addr)
                out.append(
                    OperatorPrefix(
                        family, int.from_bytes(packed, "big"), int(length), asn.asn, asn.owner, canonical
                    )
                )
        return cls(out)

    def containing(self, family: int, start: int, length: int) -> OperatorPrefix | None:
        """The most specific operator prefix that contains the network ``start/length``."""
        bits = 32 if family == 4 else 128
        tables = self._by_len[family]
        for n in self._lengths[family]:
            if n <= length:
                hit = tables[n].get(start >> (bits - n))
                if hit is not None:
                    return hit
        return None

    def select(self, operator: str | None = None, family: int | None = None) -> list[OperatorPrefix]:
        return [
            p
            for p in self.prefixes
            if (operator is None or p.operator == operator) and (family is None or p.family == family)
        ]


def collapse(networks: Iterable[str]) -> list[Network]:
    """Canonical, merged, sorted networks (IPv4 first): the smallest list covering the same space."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for text in networks:
        net = ipaddress.ip_network(text, strict=False)
        (v4 if net.version == 4 else v6).append(net)  # type: ignore[arg-type]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
