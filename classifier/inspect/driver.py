"""Run the inspectors over a flow's first bytes until the flow can be decided.

The inspectors themselves (``classifier.inspect``) are pure functions of bytes. This module feeds
them: it keeps the first bytes of each TCP direction in sequence order, picks the protocol from
the client's first bytes (never from the port, except DNS: TLS, HTTP, then the protocols of
``registry``, which it knows only through that table), and records the facts on the flow.
It answers one question per packet: is there now enough to decide the flow?
"""

from __future__ import annotations

from collections import Counter

from .. import dnsbind
from ..decode import TCP_SYN
from ..dnscache import DnsCache, resolve
from ..errors import MalformedError
from ..flows import DECIDED, MAX_NOTES, Flow, FlowConfig
from ..reassembly import Stream
from ..tunnels import client_scope
from . import dns as dnsp
from . import http as httpp
from . import ja4 as ja4p
from . import prelude as preludep
from . import quic as quicp
from . import registry
from . import serverhello as shp
from . import tls as tlsp

DNS_PORT = 53
_MAX_QUERY_NAMES = 8
# After the decision, server segments (and client segments) read while waiting for the ServerHello.
_SERVER_HELLO_SEGMENTS = 8


# Unbound responses still worth a low-confidence name: they may be genuine answers whose query the
# capture missed (or that came after the client gave up). Mismatched ones contradict a query.
_WEAK_OUTCOMES = (dnsbind.UNSOLICITED, dnsbind.LATE, dnsbind.CONFLICTING)


class Inspection:
    """Per-run inspection state: the DNS caches, pending queries, what failed to parse."""

    def __init__(self, config: FlowConfig, dnscache: DnsCache, unbound_dns: DnsCache | None = None) -> None:
        self.config = config
        self.dnscache = dnscache  # answers bound to their query
        self.unbound_dns = unbound_dns if unbound_dns is not None else DnsCache()  # the others
        self.queries = dnsbind.QueryTable()
        self.errors: Counter[str] = Counter()
        self.error_examples: dict[str, str] = {}
        self.dns_messages = 0
        self.protocols = registry.protocols()  # protocols recognised by their greeting

    # -- errors ------------------------------------------------------------------------------

    def _malformed(self, flow: Flow, err: MalformedError) -> None:
        # The error may be kept (QUIC state keeps its errors): its traceback's frames hold that
        # state and the flow, a reference cycle only the cyclic collector would free. Unneeded.
        err.__traceback__ = None
        reason = err.reason
        self.errors[reason] += 1
        self.error_examples.setdefault(reason, str(err))
        flow.add_note(str(err))

    # -- TCP ---------------------------------------------------------------------------------

    def tcp(self, flow: Flow, from_client: bool, seq: int, flags: int, payload: bytes) -> bool:
        """Feed one TCP segment; True when the flow has what it needs to be decided."""
        if flow.stage == DECIDED and not flow.dns_client:
            return self._server_hello(flow, from_client, seq, flags, payload)
        streams = flow.streams
        if streams is None:
            # No payload yet: a SYN only fixes where a stream will start (most flows of a scan
            # or a flood never carry any, and streams are most of what a live flow would cost).
            if flags & TCP_SYN:
                if from_client:
                    flow.client_isn = seq
                else:
                    flow.server_isn = seq
            if not payload:
                return False
            limit = self.config.inspect_bytes
            streams = flow.streams = [Stream(limit), Stream(limit)]
            if flow.client_isn is not None:
                streams[0].syn(flow.client_isn)
            if flow.server_isn is not None:
                streams[1].syn(flow.server_isn)
        st = streams[0 if from_client else 1]
        if flags & TCP_SYN:
            st.syn(seq)
            seq = (seq + 1) & 0xFFFFFFFF  # data in a SYN (TCP Fast Open) starts after the SYN
        if not payload:
            return False
        grew = st.add(seq, payload)
        if flow.dns_client:
            if grew:
                self._dns_tcp(flow, st, from_client)
            return flow.facts.dns_responses > 0
        if not from_client:
            # A server that speaks first means there is no client greeting to wait for, unless its
            # greeting is one of a protocol whose client may switch to TLS (STARTTLS); otherwise
            # server bytes change nothing.
            if streams[0].data:
                return False
            if not preludep.server_may_offer_starttls(bytes(st.data)):
                return True
            return st.full or st.segments >= self.config.inspect_segments
        if grew:
            done = self._client_bytes(flow, st)
            if done:
                return True
        return st.full or st.segments >= self.config.inspect_segments

    def _client_bytes(self, flow: Flow, st: Stream) -> bool:
        data = bytes(st.data)
        found = flow.facts.prelude
        if found is not None:
            return self._after_prelude(flow, st, data, found)
        kind = flow.facts.app_proto
        if kind is None:
            if len(data) < 4:
                return False  # too few bytes to tell the protocol yet
            if tlsp.looks_like_tls(data):
                kind = "tls"
            elif httpp.looks_like_http_request(data):
                kind = "http"
            else:
                kind = registry.recognise(data)
                if kind is None:
                    return self._prelude(flow, st, data)
            flow.set_app_proto(kind)
        try:
            if kind == "tls":
                hello = tlsp.parse_client_hello(data)
                if hello is None:
                    return st.full
                flow.own_facts().tls = hello
                return True
            if kind == "http":
                req = flow.facts.http or httpp.parse_http_request(data)
                if req is None:
                    return st.full
                flow.own_facts().http = req
                if req.method != "CONNECT":
                    return True
                return self._tunnel(flow, st, data)
            proto = self.protocols.get(kind)
            if proto is not None:  # a protocol whose greeting is all we need
                greeting = proto.parse_greeting(data)
                if greeting is None:
                    return st.full
                flow.own_facts().greeting = greeting
                return True
        except MalformedError as err:
            self._malformed(flow, err)
            return True
        return True

    def _prelude(self, flow: Flow, st: Stream, data: bytes) -> bool:
        """Client bytes that are no greeting we know: a prelude before TLS, or an unknown protocol."""
        streams = flow.streams
        server = bytes(streams[1].data) if streams is not None else b""
        found = preludep.find_tls_start(data, server)
        if found is None and (st.full or len(data) >= preludep.MAX_PRELUDE_BYTES):
            found = preludep.NOT_A_PRELUDE  # still undecided after as much as a prelude may take
        if found is None:
            return False
        if found is preludep.NOT_A_PRELUDE:
            flow.set_app_proto("unknown")
            return True
        flow.own_facts().prelude = found
        return self._after_prelude(flow, st, data, found)

    def _after_prelude(self, flow: Flow, st: Stream, data: bytes, found: preludep.Prelude) -> bool:
        """The client's bytes after a prelude: the ClientHello it led to, or an unknown protocol."""
        tls = data[found.tls_offset :]
        if not tls:
            return st.full  # the client waits for the server's go-ahead
        facts = flow.own_facts()
        if not tlsp.looks_like_tls(tls):
            facts.app_proto = "unknown"
            return True
        facts.app_proto = "tls"
        try:
            hello = tlsp.parse_client_hello(tls)
        except MalformedError as err:
            self._malformed(flow, err)
            return True
        if hello is None:
            return st.full
        facts.tls = hello
        return True

    def _tunnel(self, flow: Flow, st: Stream, data: bytes) -> bool:
        """After a CONNECT, the client's next bytes are the tunnelled protocol: read its ClientHello."""
        end = data.find(b"\r\n\r\n")
        end = end + 4 if end >= 0 else data.find(b"\n\n") + 2
        tunnel = data[end:]
        if len(tunnel) < 4:
            return st.full  # wait for the proxy's answer and the client's first tunnelled bytes
        if not tlsp.looks_like_tls(tunnel):
            return True
        hello = tlsp.parse_client_hello(tunnel)
        if hello is None:
            return st.full
        flow.own_facts().tls = hello
        return True

    # -- the ServerHello, after the decision (JA4S) -------------------------------------------

    def awaits_server_hello(self, flow: Flow) -> bool:
        """At the decision: should the flow's server bytes still be read, for its ServerHello?

        Only a TCP flow whose ClientHello was read, and only until the ServerHello, a bad one, or
        ``_SERVER_HELLO_SEGMENTS`` segments: the verdict never waits for it.
        """
        streams = flow.streams
        if streams is None or flow.facts.tls is None or flow.proto != 6:
            return False
        if self._read_server_hello(flow, streams[1]):
            return False
        client = streams[0]  # only its segment count matters from now on: its bytes go
        del client.data[:]
        client.pending.clear()
        return True

    def _server_hello(self, flow: Flow, from_client: bool, seq: int, flags: int, payload: bytes) -> bool:
        streams = flow.streams
        if streams is None:
            return False
        st = streams[0 if from_client else 1]
        if flags & TCP_SYN:
            st.syn(seq)
            seq = (seq + 1) & 0xFFFFFFFF
        if not payload:
            return False
        if from_client:
            st.segments += 1
            done = st.segments > streams[1].segments + _SERVER_HELLO_SEGMENTS  # no answer coming
        else:
            done = (st.add(seq, payload) and self._read_server_hello(flow, st)) or st.full
            done = done or st.segments >= _SERVER_HELLO_SEGMENTS
        if done:
            flow.inspecting = False
            flow.streams = None
        return False

    def _read_server_hello(self, flow: Flow, st: Stream) -> bool:
        """True when the server's bytes so far settle the JA4S (found, or never to be found)."""
        data = bytes(st.data)
        start = 0
        if flow.facts.prelude is not None or flow.facts.http is not None:
            # After a prelude or a CONNECT, the proxy's or server's own answer comes first.
            start = data.find(b"\x16\x03")
            while start >= 0 and len(data) > start + 5 and data[start + 5] != shp.HANDSHAKE_SERVER_HELLO:
                start = data.find(b"\x16\x03", start + 1)
            if start < 0:
                return False
        try:
            hello = shp.parse_server_hello(data[start:])
        except MalformedError:
            return True  # an alert or another protocol: no JA4S, and nothing wrong with the flow

        if hello is None:
            return False
        flow.own_facts().ja4s = ja4p.ja4s(hello)
        return True

    def _dns_tcp(self, flow: Flow, st: Stream, from_client: bool) -> None:
        try:
            messages, used = dnsp.split_tcp_stream(bytes(st.data[st.consumed :]))
        except MalformedError as err:
            self._malformed(flow, err)
            st.consumed = len(st.data)
            return
        st.consumed += used
        for raw in messages:
            self._dns_message(flow, raw, from_client)

    # -- UDP ---------------------------------------------------------------------------------

    def udp(self, flow: Flow, from_client: bool, payload: bytes) -> bool:
        """Feed one UDP datagram; True when the flow has what it needs to be decided."""
        if flow.dns_client:
            # A DNS flow is decided on its first response (which shows the CNAME chain), or at
            # its end if no response comes.
            if payload:
                self._dns_message(flow, payload, from_client)
            return flow.facts.dns_responses > 0
        if not payload:
            return False
        state = flow.facts.quic_state
        if state is None:
            if not (from_client and quicp.looks_like_quic(payload)):
                if from_client and flow.facts.app_proto is None:
                    flow.set_app_proto("unknown")
                return from_client
            facts = flow.own_facts()
            state = facts.quic_state = quicp.QuicInitialState()
            facts.app_proto = "quic"
        facts = flow.own_facts()
        found: quicp.QuicFacts | None
        try:
            found = state.feed(payload, from_client)
        except MalformedError as err:
            self._malformed(flow, err)
            found = None
        if found is not None:
            facts.quic = found
        if found is not None or state.done:
            facts.quic_state = None  # once per flow: the state (keys, CRYPTO data) goes
            return True
        return False

    # -- DNS ---------------------------------------------------------------------------------

    def reports(self, flow: Flow) -> bool:
        """Is ``flow``'s record written by this run? Always here; a ``scan --workers`` partition
        reads the DNS flows it does not report only for what they teach the others (the caches,
        pending queries), not for their own facts and notes."""
        return True

    def _dns_message(self, flow: Flow, raw: bytes, from_client: bool) -> None:
        try:
            msg = dnsp.parse_message(raw)
        except MalformedError as err:
            self._malformed(flow, err)
            return
        self.dns_messages += 1
        reported = self.reports(flow)
        # (sender address, port, receiver address, port, tunnel): a query's sender is the client, a
        # response's receiver is; a query and its response cross the same tunnel.
        scope = client_scope(flow.tunnel)
        if from_client:
            ends = (flow.client, flow.client_port, flow.server, flow.server_port, scope)
        else:
            ends = (flow.server, flow.server_port, flow.client, flow.client_port, scope)
        ts = flow.last_ts
        if not msg.is_response:
            self.queries.query(ends, msg, ts)
            if reported:
                self._dns_names(flow, msg)
            return
        client_ends = (ends[2], ends[3], ends[0], ends[1], scope)
        client = client_ends[0]
        resolutions, errors = resolve(msg)
        for problem in errors:
            self._malformed(flow, problem)
        outcome, earlier = self.queries.answer(client_ends, msg, ts, resolutions)
        if outcome == dnsbind.BOUND:  # its question is the query's: the flow has its names already
            if not reported:
                self.dnscache.add_resolutions(resolutions, ts, client, None, scope)
                return
            facts = flow.own_facts()
            facts.dns_responses += 1
            chains = facts.dns_chains
            if chains is None:
                chains = facts.dns_chains = []
            for r in resolutions:
                if len(r.chain) > 1 and r.chain not in chains and len(chains) < _MAX_QUERY_NAMES:
                    chains.append(r.chain)
            self.dnscache.add_resolutions(resolutions, ts, client, None, scope)
            return
        if reported and len(flow.notes) < MAX_NOTES:  # (a flood of forged responses formats nothing more)
            asked = ", ".join(q.name for q in msg.questions) or "no question"
            flow.add_note(
                f"DNS response id {msg.id:#06x} ({asked}) bound to no query: {outcome}: "
                f"{dnsbind.EXPLAIN[outcome]}"
            )
        if earlier is not None:  # two different answers to one query: neither is believed
            self.dnscache.withdraw(earlier.resolutions, client, scope)
            self.unbound_dns.add_resolutions(earlier.resolutions, earlier.ts, client, outcome, scope)
        if outcome in _WEAK_OUTCOMES:
            self.unbound_dns.add_resolutions(resolutions, ts, client, outcome, scope)

    def _dns_names(self, flow: Flow, msg: dnsp.Message) -> None:
        """The names a query asked, for the DNS flow's record."""
        facts = flow.own_facts()
        names = facts.dns_queries
        if names is None:
            names = facts.dns_queries = []
        for q in msg.questions:
            if q.name not in names and len(names) < _MAX_QUERY_NAMES:
                names.append(q.name)


def is_dns_port(sport: int, dport: int) -> bool:
    """DNS is the one protocol recognised by port: port 53 on either side."""
    return sport == DNS_PORT or dport == DNS_PORT
