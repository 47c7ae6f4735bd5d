"""Flow records: the one declaration of their fields, and the JSON-lines and CSV writers.

Every flow becomes exactly one record. ``FIELDS`` declares each key once: its JSON type and
meaning (the README's schema table is generated from them, ``classifier schema``), how it is
filled from the flow, and how it goes into CSV. ``SCHEMA``, ``flow_record`` and ``CSV_COLUMNS``
all derive from it, so adding a field is one entry there.

``fill`` is a Python expression over the decided flow (``flow``), its attribution (``a``), its
decision (``d``), its facts (``facts``), its ClientHello over TLS or QUIC (``hello``), QUIC facts
(``quic``), HTTP request (``req``) and first packet's instant as ISO 8601 text with microseconds
(``first``), or a function of the flow for a value that needs more than an
expression; ``flow_record`` is compiled from them into one function that builds the record dict
inline, as fast as writing it out by hand (records are a per-flow cost of every scan).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from .attribute import flow_ja4, ntop
from .classcode import compiled
from .communityid import port_flow_id
from .flows import Flow
from .outputs import TextSink
from .timeutil import format_micro

_TLS_VERSIONS = {0x0300: "SSL3.0", 0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2", 0x0304: "TLS1.3"}


def csv_value(v: Any) -> Any:
    """A JSON value in one CSV cell: arrays joined with ';', null empty, booleans true/false."""
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def json_text(v: Any) -> str:
    """A value as compact JSON in one CSV cell: arrays of objects and free text keep every part."""
    return orjson.dumps(v).decode() if v else ""


def _csv_provisions(v: list[dict[str, Any]]) -> str:
    return ";".join(f"{p['id']}:{p['status']}" for p in v)


_VERSION_NAMES: dict[tuple[int, ...], tuple[str, ...]] = {}  # a ClientHello's versions -> names
_VERSION_NAMES_MAX = 1024  # (clients offer a few dozen lists; the memory starts over when full)


def tls_version_names(versions: tuple[int, ...]) -> list[str]:
    """The ``tls_versions`` value: names of the versions offered, remembered per list."""
    names = _VERSION_NAMES.get(versions)
    if names is None:
        if len(_VERSION_NAMES) >= _VERSION_NAMES_MAX:
            _VERSION_NAMES.clear()
        names = _VERSION_NAMES[versions] = tuple(_TLS_VERSIONS.get(v, f"0x{v:04x}") for v in versions)
    return list(names)


def tunnel_field(flow: Flow) -> list[dict] | None:
    """The ``tunnel`` value of a flow's record."""
    if flow.tunnel is None:
        return None
    return [{"type": t.kind, "src": ntop(t.src), "dst": ntop(t.dst), "id": t.ident} for t in flow.tunnel]


def tunnel_text(layers: list[dict] | None) -> str:
    """The ``tunnel`` value as one CSV cell: ``type:src>dst#id`` per layer, joined with ';'."""
    return ";".join(
        f"{t['type']}:{t['src']}>{t['dst']}" + (f"#{t['id']}" if t["id"] is not None else "")
        for t in layers or ()
    )


@dataclass(frozen=True, slots=True)
class RecordField:
    """One key of every flow record."""

    name: str
    json_type: str  # "string", "integer|null", "array"... as the README table shows it
    meaning: str
    fill: str | Callable[[Flow], Any]  # expression giving the value (module docstring), or function
    csv: Callable[[Any], Any] | None = csv_value  # the value as one CSV cell; None: not in CSV
    csv_last: bool = False  # column after every other one (where CSV readers have found it so far)


F = RecordField
FIELDS: tuple[RecordField, ...] = (
    F(
        "file",
        "string|null",
        "input the flow came from, the path exactly as given on the command line ('-': standard "
        "input; null in the gateway)",
        "flow.file",
    ),
    F("flow", "integer", "flow number within the run, in order of first packet", "flow.id"),
    F(
        "first_packet",
        "integer",
        "number of the flow's first packet in its input file, from 1 (Wireshark's frame.number; "
        "per file with several inputs or --continuous; since start in the gateway)",
        "flow.first_packet",
    ),
    F("first_ts", "string", "first packet, ISO 8601 UTC", "first"),
    F(
        "last_ts",
        "string",
        "last packet, ISO 8601 UTC",
        "first if flow.last_ts == flow.first_ts else format_micro(flow.last_ts)",
    ),
    F(
        "duration",
        "number",
        "seconds from first to last packet (microseconds)",
        "round(flow.last_ts - flow.first_ts, 6) if flow.last_ts != flow.first_ts else 0.0",
    ),
    F("proto", "string", "tcp or udp", '"tcp" if flow.proto == 6 else "udp"'),
    F("src", "string", "client address (sender of the SYN, else of the first packet)", "ntop(flow.client)"),
    F("sport", "integer", "client port", "flow.client_port"),
    F("dst", "string", "server address", "ntop(flow.server)"),
    F("dport", "integer", "server port", "flow.server_port"),
    F(
        "community_id",
        "string",
        "Community ID v1 of the flow (seed 0 unless --community-id-seed), as Zeek, Suricata, "
        "Arkime and Elastic compute it: the key to the same connection in their logs",
        "flow_id(flow.proto, flow.client, flow.server, flow.client_port, flow.server_port)",
    ),
    F(
        "vlan",
        "array|null",
        "802.1Q/802.1ad VLAN ids of the flow's first packet, outermost first; null if untagged",
        "list(flow.vlan) if flow.vlan else None",
    ),
    F("iface", "string|null", "capture interface name (pcapng if_name), if known", "flow.iface"),
    F(
        "app_proto",
        "string|null",
        "tls, quic, http, dns, mmtls or unknown: what the client's first bytes were",
        "facts.app_proto",
    ),
    F(
        "hostname",
        "string|null",
        "best name: SNI, else SOCKS or HTTP proxy target or Host, else DNS-derived, else DNS query",
        "a.hostname",
    ),
    F(
        "hostname_source",
        "string|null",
        "sni, socks, http-proxy, http-host, dns (answer bound to its query, for the server "
        "address), name-history, dns-unsolicited (answer bound to no query) or dns-query",
        "a.hostname_source",
    ),
    F(
        "sni",
        "string|null",
        "server_name of the ClientHello (over TLS, or in QUIC Initials)",
        "hello.sni if hello else (quic.sni if quic else None)",
    ),
    F(
        "alpn",
        "array",
        "ALPN protocols offered",
        "list(hello.alpn) if hello else list(quic.alpn) if quic else []",
    ),
    F(
        "tls_versions",
        "array",
        "TLS versions offered (supported_versions, else the legacy version)",
        "tls_version_names(hello.versions) if hello else []",
    ),
    F(
        "quic_version",
        "string|null",
        "QUIC version of the Initial: 1, 2, draft-29, Q050...",
        "quic.version_name if quic else None",
    ),
    F(
        "ech",
        "boolean",
        "encrypted_client_hello extension present (real ECH or GREASE)",
        "bool(hello and hello.ech)",
    ),
    F(
        "ech_public_name",
        "string|null",
        "the outer SNI when it is an ECH public name: the real name is hidden",
        "a.ech_public_name",
    ),
    F(
        "encrypted_dns",
        "string|null",
        "dot, doq or doh: the flow carries DNS this input cannot read",
        "a.encrypted_dns",
    ),
    F("http_method", "string|null", "HTTP request method", "req.method if req else None"),
    F("http_host", "string|null", "HTTP Host header", "req.host if req else None"),
    F("dns_queries", "array", "names asked on a DNS flow", "list(facts.dns_queries or ())"),
    F("app", "string|null", "tiktok, wechat or null", "a.app"),
    F("operator", "string|null", "bytedance, tencent or null", "a.operator"),
    F(
        "category",
        "string|null",
        "primary category: payments, app-store, code-use, cdn, hosting, transit-peering",
        "a.category",
    ),
    F("categories", "array", "every category that applies, primary first", "list(a.categories)"),
    F(
        "confidence",
        "string|null",
        "high (name from the flow), medium (name from a bound DNS answer), "
        "low (name history, unbound DNS answer, or address only)",
        "a.confidence",
    ),
    F(
        "server_asn",
        "integer|null",
        "ASN of the operator/CDN prefix holding the server address",
        "a.server_asn",
    ),
    F("server_owner", "string|null", "operator or CDN provider holding the server address", "a.server_owner"),
    F("action", "string", "block, log or allow", "d.action"),
    F("view", "string", "announced or in-force: the policy view that decided", "d.view"),
    F(
        "decided_at",
        "string",
        "the instant the policy was evaluated at (first packet, or --as-of)",
        # d.at formatted again, unless it is the first packet's instant: its text without zero
        # microseconds, as format_instant writes it
        "(first if first[-8:] != '.000000Z' else first[:-8] + 'Z') if d.when == flow.first_ts else d.at",
    ),
    F(
        "rule",
        "string",
        "the decision rule: provision-effective, provision-effective-unenforced, "
        "attributed-no-effective-provision, not-attributed; below-block-confidence or "
        "evidence-cannot-block when the policy said block but the evidence was too weak "
        "(logged instead)",
        "d.rule",
    ),
    F(
        "reason",
        "string",
        "one sentence: which provision, event and view decided (and the block floor "
        "and weak evidence, when it withheld a block)",
        "d.reason",
    ),
    F(
        "provisions",
        "array",
        "every provision covering the app and categories, with its status then",
        '[{"id": p.provision, "category": p.category, "status": p.status, "effective": p.effective, '
        '"event": p.event, "unenforced": p.unenforced, "reason": p.reason} for p in d.provisions] '
        "if d.provisions else []",  # (a comprehension costs a call, also over nothing)
        csv=_csv_provisions,
        csv_last=True,
    ),
    F(
        "evidence",
        "array",
        "objects with kind, value, and signature/source where a signature matched",
        "[e.as_dict() for e in a.evidence] if a.evidence else []",
        csv=json_text,
    ),
    F("packets_c2s", "integer", "packets client to server", "flow.c2s_pkts"),
    F("packets_s2c", "integer", "packets server to client", "flow.s2c_pkts"),
    F("bytes_c2s", "integer", "IP bytes client to server", "flow.c2s_bytes"),
    F("bytes_s2c", "integer", "IP bytes server to client", "flow.s2c_bytes"),
    F("end_reason", "string", "closed, idle, evicted or end-of-input", "flow.end_reason"),
    F(
        "notes",
        "array",
        "problems met while inspecting this flow (malformed TLS/HTTP/DNS, DNS responses "
        "bound to no query...)",
        "list(flow.notes)",
        csv=json_text,
    ),
    F(
        "tunnel",
        "array|null",
        "null, or the tunnels the flow was carried in, outermost first: objects with type (gre, erspan1, "
        "erspan2, erspan3, pptp, vxlan, geneve, gtp-u, teredo, ipip, 6in4, 4in6, 6in6), src and dst (outer "
        "addresses, src on the client side) and id (GRE key, PPTP call id, ERSPAN session, VNI, GTP-U TEID "
        "of the flow's first packet; null if the type has none)",
        "tunnel_field(flow) if flow.tunnel is not None else None",
        csv=tunnel_text,
    ),
    F(
        "prelude",
        "string|null",
        "what came before the ClientHello: socks4, socks5 (target in evidence "
        "'socks'), smtp, imap, pop3, ftp, xmpp (STARTTLS), ldap (StartTLS), "
        "postgres (SSLRequest) or rdp (X.224)",
        "facts.prelude.kind if facts.prelude is not None else None",
    ),
    F(
        "ja4",
        "string|null",
        "JA4 fingerprint of the ClientHello (TLS or QUIC), FoxIO specification",
        # computed once, by flow_ja4, for a flow with a ClientHello
        "flow_ja4(flow) if hello is not None and facts.ja4 is None else facts.ja4",
    ),
    F(
        "ja4s",
        "string|null",
        "JA4S fingerprint of the ServerHello, when it was read (scan --ja4s; the gateway always)",
        "facts.ja4s",
    ),
)
del F

# key -> (JSON type, meaning)
SCHEMA: dict[str, tuple[str, str]] = {f.name: (f.json_type, f.meaning) for f in FIELDS}

_CSV_FIELDS = tuple(f for f in FIELDS if f.csv is not None and not f.csv_last) + tuple(
    f for f in FIELDS if f.csv is not None and f.csv_last
)
CSV_COLUMNS: list[str] = [f.name for f in _CSV_FIELDS]  # the CSV header, in column order
_CSV_CELLS: tuple[tuple[str, Callable[[Any], Any]], ...] = tuple(
    (f.name, f.csv) for f in _CSV_FIELDS if f.csv is not None
)


def compile_flow_record(
    fields: tuple[RecordField, ...], community_id_seed: int = 0
) -> Callable[[Flow], dict[str, Any]]:
    """A record function from the ``fill`` expressions: one dict, no call per field."""
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ValueError("record fields: a name is declared twice")
    scope: dict[str, Any] = {
        "flow_ja4": flow_ja4,
        "tunnel_field": tunnel_field,
        "ntop": ntop,
        "format_micro": format_micro,
        "_TLS_VERSIONS": _TLS_VERSIONS,
        "flow_id": port_flow_id(community_id_seed),  # records are TCP or UDP flows
        "tls_version_names": tls_version_names,
    }
    values = []
    for i, f in enumerate(fields):
        if isinstance(f.fill, str):
            values.append(f.fill)
        else:
            scope[f"_fill_{i}"] = f.fill
            values.append(f"_fill_{i}(flow)")
    # A copy of a dict holding the keys, then one store per key: a third fewer instructions than
    # a dict display of this size (which CPython builds in chunks and merges, resizing as it goes).
    scope["_KEYS"] = dict.fromkeys(names)
    stores = "".join(f"    record[{f.name!r}] = {value}\n" for f, value in zip(fields, values, strict=True))
    source = (
        "def flow_record(flow):\n"
        "    a = flow.attribution\n"
        "    d = flow.decision\n"
        "    facts = flow.facts\n"
        "    quic = facts.quic\n"
        "    hello = facts.tls\n"  # client_hello(flow), without its call
        "    if hello is None and quic is not None:\n"
        "        hello = quic.client_hello\n"
        "    req = facts.http\n"
        "    first = format_micro(flow.first_ts)\n"
        "    record = _KEYS.copy()\n"
        f"{stores}"
        "    return record\n"
    )
    exec(compiled(source, f"<record fields of {__name__}>"), scope)
    function: Callable[[Flow], dict[str, Any]] = scope["flow_record"]
    function.__doc__ = "The record of one decided flow, with exactly the keys of SCHEMA, in its order."
    function.__module__ = __name__
    return function


@cache
def record_function(community_id_seed: int = 0) -> Callable[[Flow], dict[str, Any]]:
    """The record function of a run: ``flow_record``, or its twin with another Community ID seed."""
    return compile_flow_record(FIELDS, community_id_seed)


flow_record = record_function(0)


_dumps = orjson.dumps
_LINE = orjson.OPT_APPEND_NEWLINE


def json_line(record: dict[str, Any]) -> bytes:
    """A record as its JSON line (UTF-8), exactly what ``JsonLinesWriter.write`` writes: scan
    workers encode their records with it and the parent only concatenates them."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


class JsonLinesWriter:
    """One JSON object per line, flushed per line when ``line_buffered`` (gateway logs).

    orjson, not the json module: encoding is a per-flow cost, and orjson does it ten times faster.
    """

    def __init__(self, out: TextSink, line_buffered: bool = False) -> None:
        self.out = out
        self.line_buffered = line_buffered
        self._write = out.write

    def write(self, record: dict[str, Any]) -> None:
        self._write(_dumps(record, option=_LINE).decode())  # json_line, without its call
        if self.line_buffered:
            self.out.flush()

    def write_lines(self, data: bytes) -> None:
        """Lines ``json_line`` made elsewhere (scan workers), in order, as UTF-8: a ``TextOutput``
        writes them as they are (no decoding and encoding again of every record), anything else
        gets them as text."""
        write_bytes = getattr(self.out, "write_bytes", None)
        if write_bytes is not None:
            write_bytes(data)
        else:
            self.out.write(data.decode())
        if self.line_buffered:
            self.out.flush()

    def close(self) -> None:
        self.out.flush()


class CsvWriter:
    """Flat CSV, every field: arrays joined with ';', evidence and notes as JSON text (they hold
    objects and free text), tunnels as 'type:src>dst#id', provisions as 'id:status' (last)."""

    def __init__(self, out: TextSink) -> None:
        import csv  # here: only CSV output needs it, every start-up would import it

        self.out = out
        self._w = csv.writer(out)
        self._w.writerow(CSV_COLUMNS)
        self._cells = _CSV_CELLS

    def write(self, record: dict[str, Any]) -> None:
        row = []
        for name, render in self._cells:
            v = record[name]
            if render is not csv_value:
                v = render(v)
            elif isinstance(v, list):  # csv_value, inline: most cells take this rule
                v = ";".join(str(x) for x in v)
            elif v is None:
                v = ""
            elif isinstance(v, bool):
                v = "true" if v else "false"
            row.append(v)
        self._w.writerow(row)

    def close(self) -> None:
        self.out.flush()


def schema_markdown() -> str:
    """The schema as a Markdown table, for the README."""
    lines = ["| key | type | meaning |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {f.json_type.replace('|', chr(92) + '|')} | {f.meaning} |" for f in FIELDS]
    return "\n".join(lines)
