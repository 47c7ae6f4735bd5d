"""JSON Schema (draft 2020-12) of every record the tools write: ``classifier schema --json``.

Generated from the declarations, never written by hand: the flow record's ``record.FIELDS`` and
the BGP audit's ``bgprecord.RECORDS``. A pipeline that ingests records (Elastic, a data lake, a
SIEM parser) can validate them, and ``tests/test_json_schema.py`` validates real output against it.
"""

from __future__ import annotations

from typing import Any

from .bgprecord import RECORDS as BGP_RECORDS
from .record import FIELDS

DRAFT = "https://json-schema.org/draft/2020-12/schema"

_OPTIONAL_STRING: dict[str, Any] = {"type": ["string", "null"]}
# Items of the flow record's arrays that are not strings.
_SCAN_ITEMS: dict[str, dict[str, Any]] = {
    "provisions": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "category": {"type": "string"},
            "status": {"enum": ["effective", "not-yet-effective", "ended"]},
            "effective": {"type": "string"},
            "event": _OPTIONAL_STRING,
            "unenforced": _OPTIONAL_STRING,
            "reason": {"type": "string"},
        },
        "required": ["id", "category", "status", "effective", "event", "unenforced", "reason"],
        "additionalProperties": False,
    },
    "evidence": {
        "type": "object",
        "properties": {
            "kind": {"type": "string"},
            "value": {"type": "string"},
            "signature": {"type": "string"},
            "source": {"type": "string"},
        },
        "required": ["kind", "value"],
        "dependentRequired": {"signature": ["source"], "source": ["signature"]},
        "additionalProperties": False,
    },
    "tunnel": {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "src": {"type": "string"},
            "dst": {"type": "string"},
            "id": {"type": ["integer", "null"]},
        },
        "required": ["type", "src", "dst", "id"],
        "additionalProperties": False,
    },
    "vlan": {"type": "integer", "minimum": 0, "maximum": 4095},
}


def value_schema(json_type: str, items: dict[str, Any] | None = None) -> dict[str, Any]:
    """The schema of one declared type: ``string``, ``integer|null``, ``array``,
    ``array<integer>|null``... (arrays hold strings unless ``<type>`` or ``items`` say otherwise)."""
    base, _, null = json_type.partition("|")
    if null not in ("", "null"):
        raise ValueError(f"record schema: unknown type {json_type!r}")
    if base.startswith("array"):
        inner = base[len("array") :]
        item = items or {"type": inner[1:-1] if inner.startswith("<") else "string"}
        schema: dict[str, Any] = {"type": "array", "items": item}
    elif base in ("string", "integer", "number", "boolean"):
        schema = {"type": base}
    else:
        raise ValueError(f"record schema: unknown type {json_type!r}")
    if null:
        schema["type"] = [schema["type"], "null"]
    return schema


def _object(title: str, fields: list[tuple[str, str, str]], items: dict[str, dict[str, Any]]) -> dict:
    properties = {}
    for name, json_type, meaning in fields:
        prop = value_schema(json_type, items.get(name))
        prop["description"] = meaning
        properties[name] = prop
    return {
        "title": title,
        "type": "object",
        "properties": properties,
        "required": [name for name, _, _ in fields],
        "additionalProperties": False,
    }


def scan_record_schema() -> dict[str, Any]:
    """The flow record of ``classifier scan`` (and of the gateway's record log)."""
    fields = [(f.name, f.json_type, f.meaning) for f in FIELDS]
    return _object("flow record (classifier scan)", fields, _SCAN_ITEMS)


def bgp_record_schema(kind: str) -> dict[str, Any]:
    """One kind of ``classifier bgp`` record; its ``record`` key is the kind."""
    schema = _object(f"BGP {kind} record (classifier bgp)", list(BGP_RECORDS[kind]), {})
    schema["properties"]["record"] = {"const": kind, "description": "the kind of BGP record"}
    return schema


def record_schemas() -> dict[str, Any]:
    """One document: a line of scan or bgp output is valid if it is one of the record kinds."""
    defs = {"scan": scan_record_schema()}
    defs.update({f"bgp-{kind}": bgp_record_schema(kind) for kind in BGP_RECORDS})
    return {
        "$schema": DRAFT,
        "$id": "urn:classifier:records",
        "title": "classifier records: one JSON object per line of scan or bgp output",
        "$defs": defs,
        "oneOf": [{"$ref": f"#/$defs/{name}"} for name in defs],
    }
