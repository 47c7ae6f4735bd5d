"""``classifier signatures build-prefixes``: operator prefix lists from a RIB or an IP-to-ASN MMDB.

The shipped ``prefixes/AS<n>-ipv4.txt`` / ``-ipv6.txt`` files are written again in their own
format (a header with the ASN, source, date and count), so they can be refreshed offline from a
RouteViews/RIS RIB dump or from an MMDB file such as the shared origin-asn database.

* From MRT, a prefix belongs to the ASN that originates it (the last AS of the path); a prefix
  seen with several operator origins goes to the one most peers saw (ties: the lowest ASN), since
  the signature set allows a prefix once. AS_SET origins are ambiguous and left out (counted).
* From an MMDB every network whose ``autonomous_system_number`` is an operator ASN is taken.

Each ASN's networks are collapsed (merged) per family; the date is the dump's (the last record's
day) or the MMDB's build date.
"""

from __future__ import annotations

import io
import ipaddress
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier.compressed import InputError, Source, open_input
from classifier.errors import MalformedError, UserError
from classifier.progress import Progress
from classifier.signatures import Signatures
from classifier.timeutil import format_instant

from .mrt import BGP4MP, BGP4MP_ET, MAX_RECORD, TABLE_DUMP, TABLE_DUMP_V2, MrtReader, Needles
from .prefixes import Network, collapse
from .updates import Peer, SessionState

MMDB_MARKER = b"\xab\xcd\xefMaxMind.com"
MMDB_ASN_KEY = "autonomous_system_number"

Note = tuple[int | None, int | None, str]  # (ASN, family) of the file it belongs in (None: all), text


@dataclass
class Collected:
    """Operator prefixes per ASN with what the header must say about where they came from."""

    prefixes: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    source: str = ""
    date: str = ""
    notes: list[Note] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _OriginVotes:
    """A reader sink that counts, per prefix, the peers seeing each operator origin."""

    def __init__(self, operator_asns: set[int], progress: Progress | None = None) -> None:
        self.operator_asns = operator_asns
        self.progress = progress
        self.votes: dict[str, Counter[int]] = defaultdict(Counter)
        self.as_set_origins: set[str] = set()

    def live_prefixes(self, peer: Peer) -> frozenset[bytes]:
        return frozenset()  # withdrawals do not matter to a list of originated prefixes

    def announce(
        self,
        file: str,
        source: str,
        when: float,
        peer: Peer,
        prefix: str,
        path_id: int | None,
        path: tuple,
        seen: float,
        attributes: Any = None,
        local_asn: int | None = None,
    ) -> None:
        if self.progress is not None:
            self.progress.tick()
        if not path:
            return
        origin = path[-1]
        if isinstance(origin, int):
            if origin in self.operator_asns:
                self.votes[prefix][origin] += 1
        elif not origin.isdisjoint(self.operator_asns):
            self.as_set_origins.add(prefix)

    def withdraw(self, file: str, when: float, peer: Peer, prefix: str, path_id: int | None) -> None:
        return

    def session_down(self, file: str, when: float, peer: Peer, state: str) -> None:
        return

    def session_state(self, file: str, event: SessionState) -> None:
        return

    def seen_until(self, when: float) -> None:
        return


def _read(path: str, limit: int | None = None) -> tuple[bytes, str]:
    """The decompressed content of ``path`` (its first ``limit`` bytes at least, if given) and its
    compression; damage before that is an error."""
    if path == "-":  # the kind of each input is read first, then the input: a pipe cannot be read twice
        raise UserError("-: build-prefixes reads files, not standard input")
    try:
        with open_input(path) as source:
            data = _read_source(source.source, limit)
            damage = source.source.damage
            compression = source.compression
    except InputError as err:
        raise UserError(f"{path}: cannot read: {err}") from None
    if damage is not None and (limit is None or len(data) < limit):
        raise UserError(f"{path}: {damage}")
    return data, compression


def _read_source(source: Source, limit: int | None) -> bytes:
    parts = []
    have = 0
    while limit is None or have < limit:
        data = source.read()
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def is_mrt(path: str) -> bool:
    """Does the (decompressed) file start with a plausible MRT header of a BGP type?"""
    head = _read(path, 12)[0][:12]
    if len(head) < 12:
        return False
    mtype = int.from_bytes(head[4:6], "big")
    length = int.from_bytes(head[8:12], "big")
    return mtype in (TABLE_DUMP, TABLE_DUMP_V2, BGP4MP, BGP4MP_ET) and length <= MAX_RECORD


def from_mrt(paths: list[str], sigs: Signatures, progress: bool = True) -> Collected:
    asns = set(sigs.operator_by_asn)
    needles = Needles(asns)
    out = Collected()
    last: float | None = None
    entries = 0
    names = ", ".join(Path(p).name for p in paths)
    with Progress(f"reading {names}", "operator routes", progress) as shown:
        sink = _OriginVotes(asns, shown)
        for path in paths:
            st = MrtReader(path, Path(path).name, needles, sink).run()
            out.problems.extend(st.problems)
            entries += st.rib_entries
            if st.last_ts is not None:
                last = st.last_ts if last is None else max(last, st.last_ts)
    if last is None:
        raise UserError(f"{', '.join(paths)}: no MRT record read")
    for prefix, votes in sink.votes.items():
        best = max(sorted(votes), key=lambda a: votes[a])  # most peers; ties: lowest ASN
        out.prefixes[best].add(prefix)
        others = sorted(a for a in votes if a != best)
        if others:
            family = ipaddress.ip_network(prefix).version
            out.notes.append(
                (
                    best,
                    family,
                    f"{prefix} also originated by "
                    f"{', '.join(f'AS{a}' for a in others)}; kept here (seen by "
                    f"{votes[best]} peers)",
                )
            )
    if sink.as_set_origins:
        out.notes.append(
            (
                None,
                None,
                f"{len(sink.as_set_origins)} prefixes with an AS_SET origin "
                "holding an operator ASN left out (ambiguous)",
            )
        )
    names = ", ".join(Path(p).name for p in paths)
    out.source = (
        f"MRT {names} ({entries} RIB entries): origin = last AS of the AS_PATH, "
        "via classifier signatures build-prefixes"
    )
    out.date = format_instant(last)[:10]  # an MRT time is 32 bits: always in range
    return out


def from_mmdb(path: str, sigs: Signatures, progress: bool = True) -> Collected:
    import maxminddb

    data, compression = _read(path)  # plain, gzip or bzip2, as for MRT
    if MMDB_MARKER not in data[-128 * 1024 :]:
        raise UserError(f"{path}: neither MRT nor an MMDB file (no MaxMind metadata marker)")
    try:
        reader = maxminddb.open_database(io.BytesIO(data), maxminddb.MODE_FD)
    except (maxminddb.InvalidDatabaseError, ValueError) as err:
        raise UserError(f"{path}: not a readable MMDB file: {err}") from None
    asns = set(sigs.operator_by_asn)
    out = Collected()
    with reader, Progress(f"reading {Path(path).name}", "networks", progress) as shown:
        meta = reader.metadata()
        for network, record in reader:
            shown.tick()
            asn = record.get(MMDB_ASN_KEY) if isinstance(record, dict) else None
            if asn in asns:
                out.prefixes[asn].add(str(network))
    epoch = meta.build_epoch
    try:
        built = format_instant(epoch)[:10] if isinstance(epoch, int) else None
    except MalformedError:
        built = None
    if built is None:
        raise UserError(f"{path}: MMDB metadata build_epoch {epoch!r} is not a time (seconds since 1970)")
    name = Path(path).name
    packed = f", {compression}" if compression != "none" else ""
    out.source = (
        f"MMDB {name} ({meta.database_type}, build {built}{packed}): networks whose "
        f"{MMDB_ASN_KEY} is the ASN, via classifier signatures build-prefixes"
    )
    out.date = built
    return out


def settle(prefixes: dict[int, set[str]]) -> tuple[dict[int, list[Network]], list[Note]]:
    """Collapse each ASN's networks; a network that ends up under two ASNs stays with the ASN
    that listed more prefixes (the signature set refuses duplicates)."""
    collapsed = {asn: collapse(nets) for asn, nets in prefixes.items()}
    owner: dict[Network, int] = {}
    notes: list[Note] = []
    for asn in sorted(collapsed, key=lambda a: (-len(prefixes[a]), a)):
        kept = []
        for net in collapsed[asn]:
            first = owner.setdefault(net, asn)
            if first == asn:
                kept.append(net)
            else:
                notes.append((asn, net.version, f"dropped {net}: also under AS{first}, kept there"))
        collapsed[asn] = kept
    return collapsed, notes


def write_lists(collected: Collected, sigs: Signatures, out_dir: Path) -> list[str]:
    """Write AS<n>-ipv4.txt / -ipv6.txt for every operator ASN; returns one line per file.

    An input holding no operator prefix at all writes nothing (UserError): empty lists would
    replace good ones and make every operator address unknown."""
    if not any(collected.prefixes.values()):
        asns = ", ".join(f"AS{n}" for n, a in sorted(sigs.asns.items()) if a.kind == "operator")
        raise UserError(
            f"build-prefixes: {collected.source or 'the input'}: no prefix originated by an "
            f"operator ASN ({asns}); nothing written to {out_dir}"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {out_dir}: {err.strerror}") from None
    networks, notes = settle(collected.prefixes)
    lines = []
    for number, asn in sorted(sigs.asns.items()):
        if asn.kind != "operator":
            continue
        mine = networks.get(number, [])
        for family in (4, 6):
            nets = sorted(
                (n for n in mine if n.version == family), key=lambda n: (int(n.network_address), n.prefixlen)
            )
            header = [
                f"# AS{number} {asn.name}: IPv{family} prefixes, owner {asn.owner}",
                f"# source: {collected.source}",
                f"# date: {collected.date}",
                f"# prefixes: {len(nets)}",
                *(
                    f"# note: {text}"
                    for a, f, text in collected.notes + notes
                    if a in (None, number) and f in (None, family)
                ),
                *(f"# input problem: {p}" for p in collected.problems),
            ]
            path = out_dir / f"AS{number}-ipv{family}.txt"
            try:
                path.write_text("\n".join([*header, *map(str, nets)]) + "\n", encoding="utf-8")
            except OSError as err:
                raise UserError(f"cannot write {path}: {err.strerror}") from None
            lines.append(f"{path}: {len(nets)} prefixes")
    return lines
