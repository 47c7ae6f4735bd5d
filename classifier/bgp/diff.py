"""``classifier bgp --diff OLD.jsonl NEW.jsonl``: what changed between two audits.

An audit's JSON lines (route records, and session records if it was written with ``--sessions``)
are compared on what a peering engineer acts on, counting only what was live at the end of each
audit: sessions carrying operator routes, direct routes (session, prefix, path id, neighbour) and
prefixes originated by an operator. Each change is one record: ``appeared`` or ``disappeared``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier.errors import UserError

DIFF_COLUMNS: tuple[str, ...] = (
    "record",
    "change",
    "kind",
    "key",
    "peer_asn",
    "peer_ip",
    "prefix",
    "operator",
    "neighbour_asn",
    "as_path",
    "origin_asn",
    "old_file",
    "new_file",
)


@dataclass
class AuditFacts:
    """What an audit says was live at its end, keyed for comparison, with a record for each key."""

    file: str
    sessions: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    direct: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    originated: dict[tuple, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str) -> AuditFacts:
        name = Path(path).name
        facts = cls(name)
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, read line by line
        except OSError as err:
            raise UserError(f"--diff {path}: cannot read: {err.strerror}") from None
        seen = 0
        with handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise UserError(f"--diff {name}: line {line_no}: not JSON: {err}") from None
                if not isinstance(row, dict) or row.get("record") not in ("route", "session", "event"):
                    raise UserError(
                        f"--diff {name}: line {line_no}: not a route or session record of "
                        "classifier bgp (write the audits with --format jsonl)"
                    )
                try:
                    facts._add(row)
                except KeyError as err:
                    raise UserError(f"--diff {name}: line {line_no}: field {err} missing") from None
                seen += 1
        if not seen:
            raise UserError(f"--diff {name}: no records (an empty audit cannot be compared)")
        return facts

    def _add(self, row: dict[str, Any]) -> None:
        kind = row["record"]
        if kind == "event":
            raise KeyError("state (a --timeline file; compare route records)")
        peer = (row["peer_asn"], row["peer_ip"])
        if kind == "session":
            if row["live"]:
                self.sessions[(*peer, row["operator"])] = row
            return
        if row["state"] != "live":
            return
        self.sessions.setdefault((*peer, row["operator"]), row)
        if row["relationship"] == "direct":
            self.direct[(*peer, row["prefix"], row["path_id"], row["neighbour_asn"])] = row
        if row.get("origin_operator"):
            self.originated[(row["prefix"], row["origin_operator"])] = row


def changes(old: AuditFacts, new: AuditFacts) -> Iterator[dict[str, Any]]:
    """The diff records: sessions, then direct routes, then originated prefixes."""
    for kind, a, b in (
        ("session", old.sessions, new.sessions),
        ("direct-route", old.direct, new.direct),
        ("operator-prefix", old.originated, new.originated),
    ):
        for change, keys, rows in (
            ("disappeared", sorted(a.keys() - b.keys(), key=str), a),
            ("appeared", sorted(b.keys() - a.keys(), key=str), b),
        ):
            for key in keys:
                r = rows[key]
                yield {
                    "record": "diff",
                    "change": change,
                    "kind": kind,
                    "key": " ".join(map(str, key)),
                    "peer_asn": r.get("peer_asn") if kind != "operator-prefix" else None,
                    "peer_ip": r.get("peer_ip") if kind != "operator-prefix" else None,
                    "prefix": r.get("prefix") if kind != "session" else None,
                    "operator": r.get("origin_operator") if kind == "operator-prefix" else r.get("operator"),
                    "neighbour_asn": r.get("neighbour_asn") if kind == "direct-route" else None,
                    "as_path": r.get("as_path") if kind != "session" else None,
                    "origin_asn": r.get("origin_asn") if kind == "operator-prefix" else None,
                    "old_file": old.file,
                    "new_file": new.file,
                }
