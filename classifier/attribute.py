"""Facts + signatures -> app, operator, categories and the evidence behind them.

The rules (also in the README):

* A **name** the flow shows (TLS or QUIC SNI, HTTP proxy target or Host, the question of a DNS
  flow) that matches an app rule gives the app; a name matching an operator-only rule (shared
  Tencent or ByteDance domains) gives the operator, not an app. An SNI that is the public name of
  an ECH deployment is not the flow's name: the real one is encrypted.
* A flow without a name of its own is named by a DNS answer for its server address seen earlier
  in the input (bound to its query, ``dnsbind``), else by a name the same client used for the same
  (non-CDN) address shortly before, else by an answer bound to no query (``dns-unsolicited``).
* A protocol whose framing is an app's own (WeChat's **mmtls**: a protocol of
  ``classifier.inspect.registry`` with an entry in protocols.toml) names the app even without any
  name.
* The **server address** is looked up in the operator and CDN prefix tables (longest prefix). An
  operator prefix alone gives the operator only: an operator's ASN is not the app (Tencent Cloud
  hosts unrelated customers).
* **Categories**: the name rule's role ``payments`` -> payments; a store request for the app's
  package -> app-store; role ``sdk`` -> code-use; role ``cdn``, a CDN prefix, or a CNAME chain
  into a CDN domain -> cdn; an operator prefix, or an app name served from anywhere else ->
  hosting; a next hop (peering map) whose ASN is an operator's -> transit-peering. The first of
  that list that applies is the primary ``category``; all of them are in ``categories``.
* A DNS flow whose query names an app is attributed to the app (it is the client looking the app
  up) but gets no category: a lookup is none of the services the orders name.
* ``confidence``: high for a name from the flow itself (SNI, Host, store request), medium for a
  name from a bound DNS answer, a medium-confidence rule or such a protocol alone (its entry's
  confidence), low for a name from history or from an unbound DNS answer (a guess about this
  flow, or possibly forged) and for address or next-hop only; the protocol on the app's
  operator's address is high.
* ``basis``: the evidence kinds that gave or confirmed the app (or, without one, the operator):
  what ``blockfloor`` weighs before a block.
* Encrypted DNS (DoT, DoQ, DoH to a known resolver) and ECH are reported as what they are: flows
  whose names this input cannot show.
"""

from __future__ import annotations

from _socket import AF_INET, AF_INET6, inet_ntop

from .dnsbind import EXPLAIN
from .dnscache import DnsCache, DnsMatch
from .evidence import Attribution, Evidence
from .flows import Flow
from .inspect import registry
from .inspect.ja4 import ja4
from .inspect.tls import ClientHello
from .sigmodel import PrefixEntry, ProtocolRule
from .signatures import Signatures
from .timeutil import format_instant
from .tunnels import client_scope

CATEGORY_ORDER = ("payments", "app-store", "code-use", "cdn", "hosting", "transit-peering")
# The category a host rule's role gives; other roles (api, update, telemetry, web) mean hosting.
ROLE_CATEGORY = {"payments": "payments", "sdk": "code-use", "cdn": "cdn", "app-store": "app-store"}
DEFAULT_CATEGORY = "hosting"
_FLOW_NAMES = ("sni", "http-host", "http-proxy", "socks")
_WEAK_NAMES = ("name-history", "dns-unsolicited")  # names guessed for this flow, not shown by it
_DOH_PORTS = (443,)
_MAX_SHARED = 4096  # distinct attributions kept for sharing
_MAX_SERVERS = 4096  # server addresses whose prefix entry and evidence are kept
_MAX_KNOWN = 4096  # attribution inputs (names, DNS match, facts, server...) whose result is kept
_MAX_KNOWN_TARGET = 512  # a request target longer than this is worked out, not kept (bounds a key)


_ADDRESS_TEXTS: dict[bytes, str] = {}  # address -> its text: every record writes two, flows repeat them
_MAX_ADDRESS_TEXTS = 4096


def ntop(addr: bytes) -> str:
    """An address (4 or 16 bytes) as text, remembered (bounded: the memory starts over when full)."""
    text = _ADDRESS_TEXTS.get(addr)
    if text is None:
        text = inet_ntop(AF_INET if len(addr) == 4 else AF_INET6, addr)
        if len(_ADDRESS_TEXTS) >= _MAX_ADDRESS_TEXTS:
            _ADDRESS_TEXTS.clear()
        _ADDRESS_TEXTS[addr] = text
    return text


def client_hello(flow: Flow) -> ClientHello | None:
    """The flow's ClientHello, over TLS or inside QUIC Initials (None if neither)."""
    facts = flow.facts
    hello = facts.tls
    if hello is None:
        quic = facts.quic
        hello = quic.client_hello if quic is not None else None
    return hello


def flow_ja4(flow: Flow) -> str | None:
    """The JA4 of the flow's ClientHello, computed on first use and kept in its facts (only records
    and a non-empty JA4 table ask: the per-packet path never pays for the hash)."""
    facts = flow.facts
    if facts.ja4 is None:
        hello = facts.tls
        quic = facts.quic
        if hello is not None:
            flow.own_facts().ja4 = ja4(hello)
        elif quic is not None and quic.client_hello is not None:
            flow.own_facts().ja4 = ja4(quic.client_hello, quic=True)
        facts = flow.facts
    return facts.ja4


class Attributor:
    """Applies the rules above with one set of signatures and the run's name caches."""

    def __init__(
        self,
        sigs: Signatures,
        dnscache: DnsCache,
        seen_names: DnsCache | None = None,
        unbound_dns: DnsCache | None = None,
    ) -> None:
        self.sigs = sigs
        self.dnscache = dnscache  # answers bound to their query
        self.seen_names = seen_names  # server address -> SNI/Host names its clients used
        self.unbound_dns = unbound_dns  # answers bound to no query: low-confidence names only
        self._app_operator = {app: op_id for op_id, op in sigs.operators.items() for app in op.apps}
        self._protocols = registry.protocols()  # how each protocol describes its greeting
        # Equal attributions share one object: flows to the same server with the same name keep
        # one between them while they live, rather than one each. Keyed by the tuple of the
        # fields, so a flow whose attribution exists already builds no dataclass to find it.
        self._shared: dict[tuple, Attribution] = {}
        # Server address -> its prefix entry and the evidence that says so: what the signatures
        # alone say about an address (never a DNS-derived name), looked up once per address
        # rather than once per flow (thousands of flows go to a few hundred servers).
        self._servers: dict[bytes, tuple[PrefixEntry | None, Evidence | None]] = {}
        # Attribution inputs -> the attribution: the 8-copy corpus's 6,726 flows have a few hundred
        # distinct inputs (the key in ``attribute``). Bounded: it starts over when full.
        self._known: dict[tuple, Attribution] = {}
        self.known_hits = 0  # flows answered from it (benchmarks and tests read this)

    def reuse_caches(self, earlier: Attributor) -> None:
        """Take over the memories of an attributor of earlier, unrelated inputs (a scan worker's
        previous file): what the signatures say of each server address, attributions by their
        inputs and the shared attributions. Each is a function of its key and the signatures,
        never of what an input taught (the DNS caches are not among them), so one process keeps
        them across files too, and a worker that starts them cold spends a sixth more per file."""
        self._servers = earlier._servers
        self._known = earlier._known
        self._shared = earlier._shared

    def ech_public_name(self, sni: str) -> tuple[str, str | None, str | None] | None:
        """(text, signature, source) if ``sni`` is an ECH public name, from signatures or DNS."""
        known = self.sigs.ech_public_names.get(sni)
        if known is not None:
            return f"outer SNI {sni} is an ECH public name", known.id, known.source
        seen = self.dnscache.ech_public_names.get(sni)
        if seen is not None:
            return (
                f"outer SNI {sni} is the ECH public name an HTTPS record for {seen[0]} published",
                None,
                None,
            )
        return None

    def _flow_names(
        self, flow: Flow, evidence: list[Evidence]
    ) -> tuple[list[tuple[str, str, str]], str | None]:
        """(kind, name, evidence text) of the names the flow itself shows, best first; and the
        outer SNI when it is an ECH public name (so not a name of this flow)."""
        facts = flow.facts
        names = []
        hidden = None
        hello = client_hello(flow)
        quic = facts.quic
        sni = hello.sni if hello is not None else (quic.sni if quic is not None else None)
        if sni:
            public = self.ech_public_name(sni) if hello is not None and hello.ech else None
            if public is not None:
                hidden = sni
                evidence.append(Evidence("ech", public[0], public[1], public[2]))
            else:
                text = sni if quic is None else f"{sni} (QUIC {quic.version_name})"
                names.append(("sni", sni, text))
        req = facts.http
        prelude = facts.prelude
        if prelude is not None and prelude.host:  # the destination a SOCKS client asked its proxy for
            names.append(("socks", prelude.host, f"{prelude.kind} CONNECT {prelude.target}"))
        if req is not None:
            if req.proxy_host:
                names.append(("http-proxy", req.proxy_host, f"{req.method} {req.target}"))
            if req.host:
                names.append(("http-host", req.host, req.host))
        for q in (facts.dns_queries or ())[:1]:
            names.append(("dns-query", q, q))
        return names, hidden

    def attribute(self, flow: Flow) -> Attribution:
        sigs = self.sigs
        evidence: list[Evidence] = []
        server = self._servers.get(flow.server)
        if server is None:
            server = self._server(flow.server)
        server_entry, prefix_evidence = server
        names, hidden = self._flow_names(flow, evidence)

        # No name in the flow: a DNS answer for the server address seen earlier names it; failing
        # that, a name this client sent to this address before (never on a shared CDN address);
        # failing that, an answer bound to no query.
        dns_match = None
        if not names and not flow.dns_client:
            scope = client_scope(flow.tunnel)  # names learnt in another tunnel are another's
            dns_match = self.dnscache.lookup(flow.server, flow.first_ts, flow.client, scope)
            if dns_match is not None:
                names.append(("dns", dns_match.answer.name, _answered(flow, dns_match)))
            elif self.seen_names is not None and (server_entry is None or server_entry.kind != "cdn"):
                seen = self.seen_names.lookup(flow.server, flow.first_ts, flow.client, scope)
                if seen is not None and seen.same_client:
                    names.append(
                        (
                            "name-history",
                            seen.answer.name,
                            f"this client named {ntop(flow.server)} {seen.answer.name} "
                            f"since {format_instant(seen.answer.ts)}",
                        )
                    )
            if not names and self.unbound_dns is not None:
                dns_match = self.unbound_dns.lookup(flow.server, flow.first_ts, flow.client, scope)
                if dns_match is not None:
                    names.append(("dns-unsolicited", dns_match.answer.name, _answered(flow, dns_match)))

        # Everything below is a function of these inputs and the signatures alone (the DNS caches,
        # the only state that changes during a run, were read above): flows with equal inputs get
        # the attribution the first of them got, without working it out again.
        facts = flow.facts
        greeting = facts.greeting  # set only for a registered protocol, which app_proto names
        kind = facts.app_proto or ""
        proto_rule = self.sigs.protocols.get(kind) if greeting is not None else None
        described = self._protocols[kind].describe(greeting) if proto_rule is not None else None
        # A JA4 is computed (and kept in the facts) only when the signatures have JA4 rules.
        fingerprint = flow_ja4(flow) if sigs.ja4 else None
        req = facts.http
        chains: tuple[tuple[str, ...], ...]
        if dns_match is not None:
            chains = (dns_match.answer.chain,)
            weak_chain = dns_match.answer.unbound is not None
        else:
            chains = tuple(facts.dns_chains) if facts.dns_chains else ()
            weak_chain = False
        key = (
            flow.server,
            tuple(names),
            hidden,
            tuple(evidence),
            facts.app_proto,
            described,
            fingerprint,
            chains,
            weak_chain,
            None if req is None else (req.proxy_host, req.host, req.target),
            (flow.neighbour, flow.iface) if sigs.peering else None,
            flow.proto,
            flow.server_port,
            flow.dns_client,
            facts.tls is not None or facts.quic is not None,
        )
        known = self._known.get(key)
        if known is not None:
            self.known_hits += 1
            return known
        known = self._attribute(
            flow,
            server_entry,
            prefix_evidence,
            names,
            hidden,
            evidence,
            proto_rule,
            described,
            fingerprint,
            chains,
            weak_chain,
        )
        if req is not None and len(req.target) > _MAX_KNOWN_TARGET:
            return known  # not kept: a key holds no long request target
        known_table = self._known
        if len(known_table) >= _MAX_KNOWN:
            known_table.clear()
        known_table[key] = known
        return known

    def _attribute(
        self,
        flow: Flow,
        server_entry: PrefixEntry | None,
        prefix_evidence: Evidence | None,
        names: list[tuple[str, str, str]],
        hidden: str | None,
        evidence: list[Evidence],
        proto_rule: ProtocolRule | None,
        described: str | None,
        fingerprint: str | None,
        chains: tuple[tuple[str, ...], ...],
        weak_chain: bool,
    ) -> Attribution:
        """The attribution of a flow whose names, DNS match and facts were read by ``attribute``:
        reads of the flow here are of what ``attribute`` keys its memory on."""
        sigs = self.sigs
        hostname, hostname_source = (names[0][1], names[0][0]) if names else (None, None)
        app = operator = rule = None
        categories: set[str] = set()
        confidence = None
        basis: list[str] = []

        # Names, best first: the first that matches a rule decides; every name is evidence.
        for kind, name, text in names:
            r = sigs.hosts.match(name) if rule is None else None
            if r is None:
                evidence.append(Evidence(kind, text))
                continue
            rule = r
            evidence.append(Evidence(kind, text, r.id, r.source))
            app = r.app
            operator = r.operator or (self._app_operator.get(app) if app else None)
            role_cat = ROLE_CATEGORY.get(r.role)
            if role_cat is not None and kind != "dns-query":
                categories.add(role_cat)
            if kind in _WEAK_NAMES:
                confidence = "low"
            else:
                confidence = "high" if kind in _FLOW_NAMES and r.confidence == "high" else "medium"
            basis.append(kind)

        # A protocol whose framing is an app's own (WeChat's mmtls) names the app by itself.
        kind = flow.facts.app_proto or ""
        if proto_rule is not None and described is not None:
            evidence.append(Evidence(kind, described, proto_rule.id, proto_rule.source))
            if app is None:
                app = proto_rule.app
                operator = operator or self._app_operator.get(app)
                confidence = proto_rule.confidence
                role_cat = ROLE_CATEGORY.get(proto_rule.role)
                if role_cat is not None:
                    categories.add(role_cat)
                basis.append(kind)
            elif app == proto_rule.app:
                confidence = "high"
                basis.append(kind)

        # A JA4 fingerprint of an app's own TLS stack: weak (stacks are shared, and a client can
        # copy one), so it names the app only when nothing else does, at low confidence, and the
        # block floor never lets it block alone.
        ja4_rule = sigs.ja4.get(fingerprint) if fingerprint is not None else None
        if ja4_rule is not None:
            evidence.append(Evidence("ja4", ja4_rule.ja4, ja4_rule.id, ja4_rule.source))
            if app is None:
                app = ja4_rule.app
                operator = operator or self._app_operator.get(app)
                confidence = "low"
                basis.append("ja4")

        # A CNAME chain (of the DNS answer that named this flow, or of the answers a DNS flow
        # carried) can reach a CDN, or an app name behind a neutral name.
        for chain in chains:
            for target in chain[1:]:
                cn = sigs.cname_provider(target)
                if cn is not None:
                    evidence.append(Evidence("cname", f"{chain[0]} -> {target}", cn.id, cn.source))
                    if (app or operator) and not flow.dns_client:
                        categories.add("cdn")
                    break
                if app is None:
                    chain_rule = sigs.hosts.match(target)
                    if chain_rule is not None and chain_rule.app:
                        app = chain_rule.app
                        operator = operator or self._app_operator.get(app)
                        confidence = "low" if weak_chain else "medium"
                        basis.append("dns-unsolicited" if weak_chain else "cname")
                        evidence.append(
                            Evidence("cname", f"{chain[0]} -> {target}", chain_rule.id, chain_rule.source)
                        )

        # App-store: a clear-text request to a store host for one of the apps' packages.
        req = flow.facts.http
        if req is not None:
            host = req.proxy_host or req.host or ""
            store = sigs.store_match(host, req.target)
            if store is not None:
                if app != store.app:
                    basis.clear()
                basis.append("store")
                app = store.app
                operator = operator or self._app_operator.get(app)
                categories.add("app-store")
                confidence = "high"
                evidence.append(Evidence("store", f"{host} {req.target}", store.id, store.source))

        # The server address.
        server_asn = server_owner = None
        if server_entry is not None and prefix_evidence is not None:
            server_asn = server_entry.asn
            server_owner = server_entry.owner
            evidence.append(prefix_evidence)
            if server_entry.kind == "operator":
                if operator is None:
                    operator = server_entry.owner
                    confidence = confidence or "low"
                    basis.append("prefix")
                elif proto_rule is not None and app == proto_rule.app and operator == server_entry.owner:
                    confidence = "high"  # the app's own protocol on its operator's address
                categories.add("hosting")
            elif app or operator:
                categories.add("cdn")

        # The next hop: a neighbour whose ASN belongs to an operator.
        if sigs.peering:
            for key in (flow.neighbour, f"if:{flow.iface}" if flow.iface else None):
                asn = sigs.peering.get(key) if key else None
                if asn is None:
                    continue
                peer_op = sigs.operator_by_asn.get(asn)
                if peer_op is not None:
                    evidence.append(Evidence("peering", f"next hop {key} is AS{asn}", f"peering:{key}"))
                    if operator is None:
                        operator = peer_op
                        basis.append("peering")
                    confidence = confidence or "low"
                    categories.add("transit-peering")
                break

        encrypted = self._encrypted_dns(flow, hostname if hostname_source == "sni" else hidden, evidence)

        if (
            app is not None
            and hostname_source != "dns-query"
            and not categories & {"cdn", "payments", "app-store", "code-use"}
        ):
            categories.add("hosting")  # the app's own name served from a non-CDN address
        if app is None and operator is None:
            categories.clear()
        cats = tuple(c for c in CATEGORY_ORDER if c in categories) if categories else ()
        named = bool(app or operator)
        # Attribution's fields, in its order.
        fields = (
            hostname,
            hostname_source,
            app,
            operator,
            cats[0] if cats else None,
            cats,
            confidence if named else None,
            tuple(evidence),
            server_asn,
            server_owner,
            encrypted,
            hidden,
            tuple(dict.fromkeys(basis)) if named else (),
        )
        shared = self._shared.get(fields)
        if shared is None:
            shared = self._share(fields)
        return shared

    def _share(self, fields: tuple) -> Attribution:
        """The attribution of these fields, kept for the next flow that has the same (bounded:
        the table starts over when full, so a flood of distinct names costs bounded memory)."""
        if len(self._shared) >= _MAX_SHARED:
            self._shared.clear()
        attribution = self._shared[fields] = Attribution(*fields)
        return attribution

    def _server(self, addr: bytes) -> tuple[PrefixEntry | None, Evidence | None]:
        """The prefix entry holding ``addr`` and the evidence naming it, remembered (bounded)."""
        entry = self.sigs.prefixes.lookup(addr)
        evidence = None
        if entry is not None:
            evidence = Evidence(
                "prefix", f"{ntop(addr)} in {entry.network} (AS{entry.asn})", entry.id, entry.source
            )
        servers = self._servers
        if len(servers) >= _MAX_SERVERS:
            servers.clear()
        known = servers[addr] = (entry, evidence)
        return known

    def _encrypted_dns(self, flow: Flow, sni: str | None, evidence: list[Evidence]) -> str | None:
        """dot / doq / doh when the flow carries DNS this input cannot read, else None."""
        sigs = self.sigs
        facts = flow.facts
        handshake = facts.tls is not None or facts.quic is not None
        port = sigs.encrypted_ports.get((flow.proto, flow.server_port))
        if port is not None and (handshake or facts.app_proto in (None, "unknown", "quic")):
            evidence.append(
                Evidence("encrypted-dns", f"{port.kind.upper()} on port {port.port}", port.id, port.source)
            )
            return port.kind
        if flow.server_port not in _DOH_PORTS or not handshake:
            return None
        resolver = sigs.resolver_for(sni) if sni else None
        if resolver is not None:
            evidence.append(
                Evidence("encrypted-dns", f"DoH to {sni} ({resolver.name})", resolver.id, resolver.source)
            )
            return "doh"
        resolver = sigs.resolver_addresses.get(flow.server)
        if resolver is not None and not sni:
            evidence.append(
                Evidence(
                    "encrypted-dns",
                    f"HTTPS without SNI to {ntop(flow.server)} ({resolver.name})",
                    resolver.id,
                    resolver.source,
                )
            )
            return "doh"
        return None


def _answered(flow: Flow, match: DnsMatch) -> str:
    """Evidence text of a DNS answer for the flow's server address (and why it is weak, if it is)."""
    a = match.answer
    text = f"{ntop(flow.server)} answered for {a.name}"
    if match.others:
        text += f" (also for {', '.join(match.others[:3])})"
    if a.unbound is not None:
        text += f" in a response bound to no query ({a.unbound}: {EXPLAIN[a.unbound]})"
    return text
