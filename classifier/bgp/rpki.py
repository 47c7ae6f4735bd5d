"""Route origin validation (RFC 6811) of operator routes against an offline VRP set.

A VRP (validated ROA payload: prefix, max length, ASN) set is what a relying party writes after
validating the RPKI: rpki-client ``-j`` (``/var/db/rpki-client/json``) and Routinator ``vrps
--format json|jsonext|csv|csvext``. The file is read once; operator routes are few, so a lookup
walks the covering prefix lengths of one table per family.

A route is ``valid`` when a covering VRP has its origin ASN and a max length at least its prefix
length; ``invalid`` when VRPs cover it but none matches (``invalid-asn`` when no covering VRP has
the origin ASN, ``invalid-length`` when one has but its max length is shorter); ``not-found``
when no VRP covers it. An AS_SET origin matches no VRP (RFC 6811 2: its origin is NONE).
"""

from __future__ import annotations

import csv
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.errors import UserError

VALID = "valid"
INVALID_ASN = "invalid-asn"
INVALID_LENGTH = "invalid-length"
NOT_FOUND = "not-found"


@dataclass(frozen=True, slots=True)
class Vrp:
    """One validated ROA payload and the trust anchor that vouched for it."""

    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    max_length: int
    asn: int
    ta: str

    def __str__(self) -> str:
        return f"{self.prefix}-{self.max_length} AS{self.asn}" + (f" ({self.ta})" if self.ta else "")


@dataclass(frozen=True, slots=True)
class Validation:
    state: str
    vrps: tuple[Vrp, ...]  # the covering VRPs (the matching ones first)


class VrpSet:
    """VRPs indexed by family and prefix length, for covering-prefix lookups."""

    def __init__(self, vrps: list[Vrp], source: str) -> None:
        self.source = source
        self.count = len(vrps)
        self._by_length: dict[tuple[int, int], dict[int, list[Vrp]]] = {}
        for v in vrps:
            key = (v.prefix.version, v.prefix.prefixlen)
            self._by_length.setdefault(key, {}).setdefault(int(v.prefix.network_address), []).append(v)
        self._lengths = {fam: sorted(n for f, n in self._by_length if f == fam) for fam in (4, 6)}

    @classmethod
    def load(cls, path: str) -> VrpSet:
        """Read rpki-client / Routinator JSON (``roas``) or CSV; a bad entry is a one-line error."""
        name = Path(path).name
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"--vrps {path}: cannot read: {err}") from None
        stripped = text.lstrip()
        rows = _json_rows(name, stripped) if stripped.startswith("{") else _csv_rows(name, text)
        vrps = []
        for where, asn, prefix, max_length, ta in rows:
            vrps.append(_vrp(f"{name}: {where}", asn, prefix, max_length, ta))
        if not vrps:
            raise UserError(f"--vrps {path}: no VRP in the file (rpki-client or Routinator JSON or CSV)")
        return cls(vrps, name)

    def covering(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Iterator[Vrp]:
        addr = int(network.network_address)
        bits = network.max_prefixlen
        for length in self._lengths[network.version]:
            if length > network.prefixlen:
                break
            start = addr & ~((1 << (bits - length)) - 1) if length else 0
            yield from self._by_length[(network.version, length)].get(start, ())

    def validate(self, prefix: str, origin_asn: int | None) -> Validation:
        network = ipaddress.ip_network(prefix, strict=False)
        covering = list(self.covering(network))
        if not covering:
            return Validation(NOT_FOUND, ())
        matching = [v for v in covering if origin_asn is not None and v.asn == origin_asn]
        valid = [v for v in matching if network.prefixlen <= v.max_length]
        state = VALID if valid else INVALID_LENGTH if matching else INVALID_ASN
        ordered = valid + [v for v in matching if v not in valid] + [v for v in covering if v not in matching]
        return Validation(state, tuple(ordered))


Row = tuple[str, Any, Any, Any, str]  # where, asn, prefix, max length, trust anchor


def _json_rows(name: str, text: str) -> list[Row]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--vrps {name}: not JSON: line {err.lineno}: {err.msg}") from None
    roas = data.get("roas") if isinstance(data, dict) else None
    if not isinstance(roas, list):
        raise UserError(f"--vrps {name}: no 'roas' list (rpki-client -j or Routinator json/jsonext)")
    rows = []
    for i, roa in enumerate(roas):
        if not isinstance(roa, dict):
            raise UserError(f"--vrps {name}: roas[{i}]: not an object")
        ta = roa.get("ta") or roa.get("tal") or ""
        if not ta and isinstance(roa.get("source"), list) and roa["source"]:  # Routinator jsonext
            first = roa["source"][0]
            ta = first.get("tal", "") if isinstance(first, dict) else ""
        rows.append((f"roas[{i}]", roa.get("asn"), roa.get("prefix"), roa.get("maxLength"), str(ta)))
    return rows


def _csv_rows(name: str, text: str) -> list[Row]:
    reader = csv.reader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    header = [h.strip().lower() for h in next(reader, [])]
    columns = {"asn": None, "ip prefix": None, "max length": None}
    for col in columns:
        if col not in header:
            raise UserError(
                f"--vrps {name}: line 1: CSV header lacks {col!r} (Routinator/rpki-client csv: "
                "ASN,IP Prefix,Max Length,Trust Anchor)"
            )
    at = {col: header.index(col) for col in columns}
    ta_at = header.index("trust anchor") if "trust anchor" in header else None
    rows = []
    for line_no, row in enumerate(reader, 2):
        if len(row) < len(header):
            raise UserError(f"--vrps {name}: line {line_no}: {len(row)} fields, the header has {len(header)}")
        rows.append(
            (
                f"line {line_no}",
                row[at["asn"]],
                row[at["ip prefix"]],
                row[at["max length"]],
                row[ta_at].strip() if ta_at is not None else "",
            )
        )
    return rows


def _vrp(where: str, asn: Any, prefix: Any, max_length: Any, ta: str) -> Vrp:
    try:
        number = int(str(asn).strip().upper().removeprefix("AS"))
        if not 0 <= number < 2**32:
            raise ValueError
    except ValueError:
        raise UserError(f"--vrps {where}: asn: {asn!r} is not an AS number") from None
    try:
        network = ipaddress.ip_network(str(prefix).strip())
    except ValueError as err:
        raise UserError(f"--vrps {where}: prefix: {err}") from None
    try:
        length = int(str(max_length).strip()) if max_length not in (None, "") else network.prefixlen
    except ValueError:
        raise UserError(f"--vrps {where}: maxLength: {max_length!r} is not a number") from None
    if not network.prefixlen <= length <= network.max_prefixlen:
        raise UserError(
            f"--vrps {where}: maxLength: {length} is outside {network.prefixlen}.."
            f"{network.max_prefixlen} for {network}"
        )
    return Vrp(network, length, number, ta)
