"""The nft tables iptables-nft creates for the iptables backend: record them, remove them when empty.

With the iptables backend, the first ``iptables -t mangle`` command makes iptables-nft (Debian's
default) create the nft table ``ip mangle`` (``ip6 mangle`` for ip6tables) with a ``FORWARD`` base
chain. Removing our chain leaves that table behind, empty. Such a table is shared with the operator,
so the gateway deletes it only when both hold:

* it did not exist before this run's iptables commands (an operator's table is never touched), and
* it is empty again: only base chains at policy accept, no rule, no other chain or object.

The first condition must survive a ``kill -9``, so it is recorded in the kernel beside our other
objects: one named counter per table in our own nft table (``created_ip_mangle``), which
``--cleanup`` reads before it deletes that table. With iptables-legacy no nft table appears, and
there is nothing to record or remove.
"""

from __future__ import annotations

from collections.abc import Iterable

#: the iptables tool, and the nft table (family, name) iptables-nft creates for its mangle table
MANGLE_TABLES: tuple[tuple[str, str, str], ...] = (
    ("iptables", "ip", "mangle"),
    ("ip6tables", "ip6", "mangle"),
)
MARKER_PREFIX = "created_"


def _label(family: str, name: str) -> str:
    return f"{family} {name}"


def marker_name(family: str, name: str) -> str:
    """The counter in our table that says this run's iptables commands created ``family name``."""
    return f"{MARKER_PREFIX}{family}_{name}"


def existing(nft) -> set[tuple[str, str]]:
    """Every nft table now, as (family, name)."""
    return {(t["family"], t["name"]) for o in nft.list_json("tables") if (t := o.get("table"))}


def absent(nft) -> list[str]:
    """The mangle tables (as ``"ip mangle"``) that do not exist now, so iptables would create them."""
    present = existing(nft)
    return [_label(fam, name) for _tool, fam, name in MANGLE_TABLES if (fam, name) not in present]


def marker_objects(created: Iterable[str], tag: str) -> str:
    """nft text, inside our table, recording each table of ``created`` (``"ip mangle"``)."""
    known = {_label(fam, name): (fam, name) for _tool, fam, name in MANGLE_TABLES}
    out = []
    for label in created:
        fam, name = known[label]
        out.append(
            f"\tcounter {marker_name(fam, name)} {{\n"
            f"\t\tcomment \"{tag}: table {label} was created by this gateway's iptables commands; "
            'removed with ours when empty"\n'
            "\t}\n"
        )
    return "".join(out)


def recorded(nft, family: str, table: str) -> list[tuple[str, str]]:
    """The (family, name) tables our table ``family table`` records as created for the gateway."""
    names = {o["counter"]["name"] for o in nft.list_json(f"table {family} {table}") if "counter" in o}
    return [(fam, name) for _tool, fam, name in MANGLE_TABLES if marker_name(fam, name) in names]


def emptiness(nft, family: str, name: str) -> str | None:
    """None when the table holds nothing but base chains at policy accept, else what it holds."""
    for obj in nft.list_json(f"table {family} {name}"):
        kind, body = next(iter(obj.items()))
        if kind == "table":
            continue
        if kind != "chain":
            return f"a {kind}"
        if "hook" not in body:
            return f"chain {body.get('name')}"
        if body.get("policy", "accept") != "accept":
            return f"chain {body.get('name')} with policy {body.get('policy')}"
    return None


def remove_if_empty(nft, tables: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Delete each existing table of ``tables`` that is empty: (removed, kept with the reason).

    Chains are deleted one by one before the table, all in one transaction: if someone added a
    rule since the listing, deleting its chain fails and the whole transaction leaves the table as
    it is.
    """
    from .nftlib import NftError

    removed: list[str] = []
    kept: list[str] = []
    present = existing(nft)
    for fam, name in tables:
        if (fam, name) not in present:
            continue
        label = _label(fam, name)
        holds = emptiness(nft, fam, name)
        if holds is not None:
            kept.append(
                f"nft table {label}: created for the gateway's iptables rules, but it now holds "
                f"{holds} (not ours): left in place"
            )
            continue
        chains = [o["chain"]["name"] for o in nft.list_json(f"table {fam} {name}") if "chain" in o]
        script = "".join(f"delete chain {fam} {name} {chain}\n" for chain in chains)
        try:
            nft.run(script + f"delete table {fam} {name}\n")
        except NftError as err:
            kept.append(f"nft table {label}: could not delete it ({err}): left in place")
            continue
        removed.append(f"nft table {label} (created by iptables for the gateway, empty)")
    return removed, kept
