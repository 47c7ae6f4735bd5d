"""``classifier signatures export-prefixes``: the operator prefixes in forms routers take.

One list per operator and family, collapsed (merged) so it is as short as it can be and has no
overlaps (an nftables interval set refuses overlapping elements). Router formats match a prefix
and anything more specific, which is what "route into operator space" means:

* ``plain``: one prefix a line, ``#`` comments.
* ``bird``: BIRD 2 ``define NAME = [ a.b.c.d/n+, ... ];`` prefix sets.
* ``frr``: ``ip prefix-list`` / ``ipv6 prefix-list`` lines with ``le 32`` / ``le 128``.
* ``nft``: a ``table inet`` with one ``set`` per operator and family, ``flags interval``
  (``nft -f`` loads it; ``nft -c -f`` checks it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from classifier.errors import UserError

from .prefixes import Network, OperatorPrefixes, collapse

FORMATS = ("plain", "bird", "frr", "nft")
_NFT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def lists(
    prefixes: OperatorPrefixes, operators: Iterable[str], family: int | None
) -> list[tuple[str, int, list[Network]]]:
    """(operator, family, collapsed networks) for each operator and family asked for."""
    out = []
    for op in operators:
        for fam in (4, 6):
            if family is None or fam == family:
                out.append((op, fam, collapse(p.network for p in prefixes.select(op, fam))))
    return out


def render(
    fmt: str,
    sets: list[tuple[str, int, list[Network]]],
    provenance: str,
    nft_table: str = "classifier_operators",
) -> str:
    """The text of one export; ``provenance`` goes into the leading comment."""
    head = f"operator prefixes exported by classifier signatures export-prefixes; {provenance}"
    if fmt == "plain":
        lines = [f"# {head}"]
        for op, fam, nets in sets:
            lines.append(f"# {op} IPv{fam}: {len(nets)} prefixes")
            lines.extend(map(str, nets))
        return "\n".join(lines) + "\n"
    if fmt == "bird":
        lines = [f"# {head}", "# BIRD 2 prefix sets: each matches the prefix and anything more specific"]
        for op, fam, nets in sets:
            name = _name(op, fam).upper()
            if not nets:
                lines.append(f"# {name}: no prefixes")
                continue
            body = ",\n  ".join(f"{n}+" for n in nets)
            lines.append(f"define {name} = [\n  {body}\n];")
        return "\n".join(lines) + "\n"
    if fmt == "frr":
        lines = [f"! {head}", "! FRR prefix-lists: each entry permits the prefix and anything more specific"]
        for op, fam, nets in sets:
            name = _name(op, fam).upper().replace("_", "-")
            keyword = "ip" if fam == 4 else "ipv6"
            bits = 32 if fam == 4 else 128
            if not nets:
                lines.append(f"! {name}: no prefixes")
            for seq, n in enumerate(nets, 1):
                le = f" le {bits}" if n.prefixlen < bits else ""
                lines.append(f"{keyword} prefix-list {name} seq {seq * 5} permit {n}{le}")
        return "\n".join(lines) + "\n"
    if fmt == "nft":
        if not _NFT_NAME.fullmatch(nft_table):
            raise UserError(
                f"--nft-table {nft_table!r}: letters, digits and '_' only, starting with a letter"
            )
        lines = [f"# {head}", f"table inet {nft_table} {{"]
        for op, fam, nets in sets:
            lines += [f"\tset {_name(op, fam)} {{", f"\t\ttype ipv{fam}_addr", "\t\tflags interval"]
            if nets:
                lines.append("\t\telements = {\n\t\t\t" + ",\n\t\t\t".join(map(str, nets)) + "\n\t\t}")
            lines.append("\t}")
        lines.append("}")
        return "\n".join(lines) + "\n"
    raise UserError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")


def _name(operator: str, family: int) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "_", operator).strip("_") or "operator"
    if not base[0].isalpha():
        base = "op_" + base
    return f"{base}_v{family}"
