"""``--format eve``: each flow record as one Suricata EVE ``flow`` event (docs/eve.md).

Elastic's Suricata module, Splunk's Suricata add-on and Suricata's own dashboards read EVE JSON
by its field names and types, so the event uses Suricata's: ``flow_id`` an integer, ``proto``
"TCP"/"UDP", timestamps as Suricata writes them (``2020-09-19T12:00:00.000000+0000``), the
protocol fields under ``tls``, ``quic``, ``http`` and ``dns``, counters under ``flow``. Our
verdict and its reasons go under one key, ``classifier``, that no Suricata field uses. The event
is made from the record (not from the flow), so every way of scanning (one process, workers,
Dask) writes the same events.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from .outputs import TextSink

# Record keys that the event carries in Suricata's own fields; the rest go under "classifier".
_SURICATA_KEYS = frozenset(
    ("first_ts", "src", "sport", "dst", "dport", "proto", "iface", "community_id", "vlan")
)
# Suricata's flow.state / flow.reason for our end reasons (state "established" needs both directions).
_REASONS = {"closed": "timeout", "idle": "timeout", "evicted": "forced", "end-of-input": "shutdown"}
# Our app_proto values that are Suricata app-layer names too; others (mmtls, unknown) are not set.
_APP_PROTOS = {"tls": "tls", "http": "http", "dns": "dns", "quic": "quic"}


def suricata_time(iso: str) -> str:
    """A record instant (``...000000Z``) as Suricata writes it (``...000000+0000``)."""
    return iso[:-1] + "+0000" if iso.endswith("Z") else iso


def flow_id(record: dict[str, Any]) -> int:
    """A 48-bit integer naming the flow, as Suricata's flow_id is: the same record always gives
    the same id, and two flows of a run (or of two runs over other files) practically never share
    one (a hash of the Community ID, first packet instant, file and flow number)."""
    key = f"{record['community_id']}|{record['first_ts']}|{record['file']}|{record['flow']}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=6).digest(), "big")


def eve_event(record: dict[str, Any]) -> dict[str, Any]:
    """The EVE ``flow`` event of one flow record."""
    start = suricata_time(record["first_ts"])
    event: dict[str, Any] = {"timestamp": start, "flow_id": flow_id(record)}
    if record["iface"] is not None:
        event["in_iface"] = record["iface"]
    event["event_type"] = "flow"
    if record["vlan"]:
        event["vlan"] = record["vlan"]
    event.update(
        src_ip=record["src"],
        src_port=record["sport"],
        dest_ip=record["dst"],
        dest_port=record["dport"],
        proto=record["proto"].upper(),
    )
    app_proto = _APP_PROTOS.get(record["app_proto"] or "")
    if app_proto is not None:
        event["app_proto"] = app_proto
    event["community_id"] = record["community_id"]
    two_way = record["packets_c2s"] > 0 and record["packets_s2c"] > 0
    event["flow"] = {
        "pkts_toserver": record["packets_c2s"],
        "pkts_toclient": record["packets_s2c"],
        "bytes_toserver": record["bytes_c2s"],
        "bytes_toclient": record["bytes_s2c"],
        "start": start,
        "end": suricata_time(record["last_ts"]),
        "age": int(record["duration"]),
        "state": "closed" if record["end_reason"] == "closed" else "established" if two_way else "new",
        "reason": _REASONS.get(record["end_reason"], "shutdown"),
        "alerted": False,
    }
    if record["sni"] is not None:  # Suricata's QUIC logger names it quic.sni
        event["quic" if record["app_proto"] == "quic" else "tls"] = {"sni": record["sni"]}
    if record["http_host"] is not None or record["http_method"] is not None:
        http: dict[str, Any] = {}
        if record["http_host"] is not None:
            http["hostname"] = record["http_host"]
        if record["http_method"] is not None:
            http["http_method"] = record["http_method"]
        event["http"] = http
    if record["dns_queries"]:
        event["dns"] = {"type": "query", "rrname": record["dns_queries"][0]}
    event["classifier"] = {k: v for k, v in record.items() if k not in _SURICATA_KEYS}
    return event


class EveWriter:
    """One EVE event per line (JSON lines, as Suricata's eve.json)."""

    def __init__(self, out: TextSink) -> None:
        self.out = out

    def write(self, record: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(eve_event(record), option=orjson.OPT_APPEND_NEWLINE).decode())

    def close(self) -> None:
        self.out.flush()
