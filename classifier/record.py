"""Flow records: the declared schema, and the JSON-lines and CSV writers.

Every flow becomes exactly one record. ``SCHEMA`` declares each key with its type and meaning; the
README's schema table is generated from it (``classifier schema``), and a test checks that every
record has exactly these keys.
"""

from __future__ import annotations

import csv
from typing import IO

import orjson

from .attribute import client_hello, ntop
from .flows import Flow
from .timeutil import format_instant

_TLS_VERSIONS = {0x0300: "SSL3.0", 0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2", 0x0304: "TLS1.3"}

# key -> (JSON type, meaning)
SCHEMA: dict[str, tuple[str, str]] = {
    "file": ("string|null", "input the flow came from"),
    "flow": ("integer", "flow number within the run, in order of first packet"),
    "first_ts": ("string", "first packet, ISO 8601 UTC"),
    "last_ts": ("string", "last packet, ISO 8601 UTC"),
    "proto": ("string", "tcp or udp"),
    "src": ("string", "client address (sender of the SYN, else of the first packet)"),
    "sport": ("integer", "client port"),
    "dst": ("string", "server address"),
    "dport": ("integer", "server port"),
    "iface": ("string|null", "capture interface name (pcapng if_name), if known"),
    "app_proto": ("string|null",
                  "tls, quic, http, dns, mmtls or unknown: what the client's first bytes were"),
    "hostname": ("string|null",
                 "best name: SNI, else SOCKS or HTTP proxy target or Host, else DNS-derived, else DNS query"),
    "hostname_source": ("string|null",
                        "sni, socks, http-proxy, http-host, dns (answer bound to its query, for the server "
                        "address), name-history, dns-unsolicited (answer bound to no query) or dns-query"),
    "sni": ("string|null", "server_name of the ClientHello (over TLS, or in QUIC Initials)"),
    "alpn": ("array", "ALPN protocols offered"),
    "tls_versions": ("array", "TLS versions offered (supported_versions, else the legacy version)"),
    "quic_version": ("string|null", "QUIC version of the Initial: 1, 2, draft-29, Q050..."),
    "ech": ("boolean", "encrypted_client_hello extension present (real ECH or GREASE)"),
    "ech_public_name": ("string|null",
                        "the outer SNI when it is an ECH public name: the real name is hidden"),
    "encrypted_dns": ("string|null", "dot, doq or doh: the flow carries DNS this input cannot read"),
    "http_method": ("string|null", "HTTP request method"),
    "http_host": ("string|null", "HTTP Host header"),
    "dns_queries": ("array", "names asked on a DNS flow"),
    "app": ("string|null", "tiktok, wechat or null"),
    "operator": ("string|null", "bytedance, tencent or null"),
    "category": ("string|null",
                 "primary category: payments, app-store, code-use, cdn, hosting, transit-peering"),
    "categories": ("array", "every category that applies, primary first"),
    "confidence": ("string|null", "high (name from the flow), medium (name from a bound DNS answer), "
                                  "low (name history, unbound DNS answer, or address only)"),
    "server_asn": ("integer|null", "ASN of the operator/CDN prefix holding the server address"),
    "server_owner": ("string|null", "operator or CDN provider holding the server address"),
    "action": ("string", "block, log or allow"),
    "view": ("string", "announced or in-force: the policy view that decided"),
    "decided_at": ("string", "the instant the policy was evaluated at (first packet, or --as-of)"),
    "rule": ("string", "the decision rule: provision-effective, provision-effective-unenforced, "
                       "attributed-no-effective-provision, not-attributed; below-block-confidence or "
                       "evidence-cannot-block when the policy said block but the evidence was too weak "
                       "(logged instead)"),
    "reason": ("string", "one sentence: which provision, event and view decided (and the block floor "
                         "and weak evidence, when it withheld a block)"),
    "provisions": ("array", "every provision covering the app and categories, with its status then"),
    "evidence": ("array", "objects with kind, value, and signature/source where a signature matched"),
    "packets_c2s": ("integer", "packets client to server"),
    "packets_s2c": ("integer", "packets server to client"),
    "bytes_c2s": ("integer", "IP bytes client to server"),
    "bytes_s2c": ("integer", "IP bytes server to client"),
    "end_reason": ("string", "closed, idle, evicted or end-of-input"),
    "notes": ("array", "problems met while inspecting this flow (malformed TLS/HTTP/DNS, DNS responses "
                       "bound to no query...)"),
    "prelude": ("string|null", "what came before the ClientHello: socks4, socks5 (target in evidence "
                               "'socks'), smtp, imap, pop3, ftp, xmpp (STARTTLS), ldap (StartTLS), "
                               "postgres (SSLRequest) or rdp (X.224)"),
    "ja4": ("string|null", "JA4 fingerprint of the ClientHello (TLS or QUIC), FoxIO specification"),
    "ja4s": ("string|null", "JA4S fingerprint of the ServerHello, when the server's answer was seen"),
}


def flow_record(flow: Flow) -> dict:
    """The record of one decided flow, with exactly the keys of SCHEMA."""
    a = flow.attribution
    d = flow.decision
    facts = flow.facts
    hello = client_hello(flow)
    quic = facts.get("quic")
    req = facts.get("http")
    prelude = facts.get("prelude")
    return {
        "file": flow.file,
        "flow": flow.id,
        "first_ts": format_instant(flow.first_ts, True),
        "last_ts": format_instant(flow.last_ts, True),
        "proto": "tcp" if flow.proto == 6 else "udp",
        "src": ntop(flow.client),
        "sport": flow.client_port,
        "dst": ntop(flow.server),
        "dport": flow.server_port,
        "iface": flow.iface,
        "app_proto": facts.get("app_proto"),
        "hostname": a.hostname,
        "hostname_source": a.hostname_source,
        "sni": hello.sni if hello else (quic.sni if quic else None),
        "alpn": list(hello.alpn) if hello else list(quic.alpn) if quic else [],
        "tls_versions": [_TLS_VERSIONS.get(v, f"0x{v:04x}") for v in hello.versions] if hello else [],
        "quic_version": quic.version_name if quic else None,
        "ech": bool(hello and hello.ech),
        "ech_public_name": a.ech_public_name,
        "encrypted_dns": a.encrypted_dns,
        "http_method": req.method if req else None,
        "http_host": req.host if req else None,
        "dns_queries": list(facts.get("dns_queries", ())),
        "app": a.app,
        "operator": a.operator,
        "category": a.category,
        "categories": list(a.categories),
        "confidence": a.confidence,
        "server_asn": a.server_asn,
        "server_owner": a.server_owner,
        "action": d.action,
        "view": d.view,
        "decided_at": d.at,
        "rule": d.rule,
        "reason": d.reason,
        "provisions": [
            {"id": p.provision, "category": p.category, "status": p.status, "effective": p.effective,
             "event": p.event, "unenforced": p.unenforced, "reason": p.reason}
            for p in d.provisions
        ],
        "evidence": [e.as_dict() for e in a.evidence],
        "packets_c2s": flow.c2s_pkts,
        "packets_s2c": flow.s2c_pkts,
        "bytes_c2s": flow.c2s_bytes,
        "bytes_s2c": flow.s2c_bytes,
        "end_reason": flow.end_reason,
        "notes": list(flow.notes),
        "prelude": prelude.kind if prelude is not None else None,
        "ja4": facts.get("ja4"),
        "ja4s": facts.get("ja4s"),
    }


class JsonLinesWriter:
    """One JSON object per line, flushed per line when ``line_buffered`` (gateway logs).

    orjson, not the json module: encoding is a per-flow cost, and orjson does it ten times faster.
    """

    def __init__(self, out: IO[str], line_buffered: bool = False) -> None:
        self.out = out
        self.line_buffered = line_buffered

    def write(self, record: dict) -> None:
        self.out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE).decode())
        if self.line_buffered:
            self.out.flush()

    def close(self) -> None:
        self.out.flush()


CSV_COLUMNS = [k for k in SCHEMA if k not in ("provisions", "notes")]


class CsvWriter:
    """Flat CSV: arrays joined with ';', evidence as 'kind=value', provisions as 'id:status'."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._w = csv.writer(out)
        self._w.writerow([*CSV_COLUMNS, "provisions"])

    def write(self, record: dict) -> None:
        row = []
        for k in CSV_COLUMNS:
            v = record[k]
            if k == "evidence":
                v = ";".join(f"{e['kind']}={e['value']}" for e in v)
            elif isinstance(v, list):
                v = ";".join(str(x) for x in v)
            elif v is None:
                v = ""
            elif isinstance(v, bool):
                v = "true" if v else "false"
            row.append(v)
        row.append(";".join(f"{p['id']}:{p['status']}" for p in record["provisions"]))
        self._w.writerow(row)

    def close(self) -> None:
        self.out.flush()


def schema_markdown() -> str:
    """The schema as a Markdown table, for the README."""
    lines = ["| key | type | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {t.replace('|', chr(92) + '|')} | {m} |" for k, (t, m) in SCHEMA.items()]
    return "\n".join(lines)
