"""The per-packet loop: decode, find the flow, inspect until decided, then only count.

``Scanner.feed`` is the whole per-packet path. For a flow that is already decided it is a decode,
one dict probe and a few counter updates; inspection, attribution and the policy run once per
flow. Flows leave the table through ``FlowTable`` (timeout, close, eviction, end of input) and are
handed to ``on_record`` exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .attribute import Attributor
from .blockfloor import BlockFloor
from .capture import COMPILED_WHOLE_PCAP_RECORDS, DROPPED, CaptureReader, RunBatch, run_records
from .compiled import compiled_function, compiled_status
from .decode import (
    ETH_IP4_TCP,
    ETH_IP4_UDP,
    FLAGS,
    PAYLOAD,
    PROTO,
    SEQ,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Decoded,
    decode,
    fragment,
    rebuilt_ip,
    skip_reason,
    transport,
    tunnel_datagram,
)
from .defrag import Defragmenter
from .dnscache import DnsCache
from .errors import MalformedError
from .flows import DECIDED, Flow, FlowConfig, FlowTable
from .inspect.driver import DNS_PORT, Inspection
from .linklayer import vlan_ids
from .linktypes import LINKTYPE_RAW
from .policy import Policy
from .report import InputStats
from .signatures import Signatures
from .tunnels import UDP_PORTS, UDP_TEREDO, Tunnel, client_scope, oriented, tunnel_key

_MAX_EXAMPLES = 3
_MAX_FRAGMENT_KEYS = 4096
_MAX_ENDPOINTS = 4096
_REMEMBERED_SOURCES = frozenset(("sni", "http-host"))  # names a client sent itself: name memory
_FIN_OR_RST = TCP_FIN | TCP_RST
_TUNNEL_PORTS = UDP_PORTS | {UDP_TEREDO}  # Teredo at either end: decode's rule


# The compiled twin of ``feed_batches``' in-place loop, and its ``decode`` (it decodes in C what
# the in-place loop reads and hands every other frame to decode.py): both, or neither.
COMPILED_FEED: Callable[[Scanner, Iterable[RunBatch]], None] | None = compiled_function(
    "_batchcount", "feed_batches", "decode"
)
COMPILED_DECODE: Callable[[int, bytes], Decoded | None] | None = compiled_function(
    "_batchcount", "decode", "feed_batches"
)
_DECODE = COMPILED_DECODE or decode


def per_packet_loop() -> str:
    """Which per-packet loop runs, for ``classifier --version``: a user can tell whether they
    got the compiled speed."""
    parts = {"in-place counting": COMPILED_FEED, "pcap record scan": COMPILED_WHOLE_PCAP_RECORDS}
    return compiled_status(parts)


_VLAN_TAGS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))  # linklayer's: one a tag, as decode reads them
_RAW_IP = frozenset((101, 228, 229, 12, 14))
_VLAN_TYPE_HIGH = frozenset((0x81, 0x88, 0x91, 0x92))  # first byte of a VLAN tag's EtherType


def _in_place(
    buf: bytes, start: int, size: int, linktype: int
) -> tuple[int, bytes, int, bytes, int, int, int] | None:
    """(proto, src, sport, dst, dport, flags, ip_len) of a packet ``decode`` takes in one piece, an
    untunnelled TCP or UDP packet over IPv4 without options or fragments or IPv6 without extension
    headers, behind Ethernet (up to two VLAN tags), Linux cooked (SLL, SLL2) or raw IP; None for any
    other (``feed`` then decides, and says what is wrong). The untagged Ethernet IPv4 case is
    inline in ``feed_batches``; ``_in_place`` in ``_batchcount.pyx`` is the compiled twin."""
    p = start
    if linktype == 1:
        if size < 14:
            return None
        etype = (buf[p + 12] << 8) | buf[p + 13]
        off = 14
        for _ in range(2):
            if etype not in _VLAN_TAGS:
                break
            if size < off + 4:
                return None
            etype = (buf[p + off + 2] << 8) | buf[p + off + 3]
            off += 4
    elif linktype == 113:
        if size < 16:
            return None
        etype, off = (buf[p + 14] << 8) | buf[p + 15], 16
    elif linktype == 276:
        if size < 20:
            return None
        etype, off = (buf[p] << 8) | buf[p + 1], 20
    elif linktype in _RAW_IP:
        if size < 1:
            return None
        version = buf[p] >> 4
        etype, off = (0x0800 if version == 4 else 0x86DD if version == 6 else 0), 0
    else:
        return None
    ip = p + off
    if etype == 0x0800:
        if off + 20 > size or buf[ip] != 0x45 or buf[ip + 6] & 0x3F or buf[ip + 7]:
            return None
        ip_len = (buf[ip + 2] << 8) | buf[ip + 3]
        if ip_len < 20:
            return None
        end = min(off + ip_len, size)
        proto = buf[ip + 9]
        src, dst = buf[ip + 12 : ip + 16], buf[ip + 16 : ip + 20]
        l4 = off + 20
    elif etype == 0x86DD:
        if off + 40 > size or buf[ip] >> 4 != 6:
            return None
        plen = (buf[ip + 4] << 8) | buf[ip + 5]
        proto = buf[ip + 6]
        end = min(off + 40 + plen, size) if plen else size
        src, dst = buf[ip + 8 : ip + 24], buf[ip + 24 : ip + 40]
        ip_len = plen + 40
        l4 = off + 40
    else:
        return None
    t = p + l4
    if proto == 6:
        hlen = (buf[t + 12] >> 4) * 4 if l4 + 20 <= end else 0
        if hlen < 20 or l4 + hlen > end:
            return None
        flags = buf[t + 13]
    elif proto == 17:
        if l4 + 8 > end:
            return None
        flags = 0
    else:
        return None
    sport = (buf[t] << 8) | buf[t + 1]
    dport = (buf[t + 2] << 8) | buf[t + 3]
    if proto == 17 and (dport in _TUNNEL_PORTS or sport == UDP_TEREDO):
        return None
    return proto, src, sport, dst, dport, flags, ip_len


def _lookup_in_place(entries: dict[tuple, Flow], buf: bytes, start: int, size: int, linktype: int) -> tuple:
    """``_in_place``'s fields with the flow they belong to in front, ``(flow, proto, src, sport,
    dst, dport, flags, ip_len)``; the flow is None when the packet is not read in place or starts
    a flow (the pure loop's path for what is not untagged Ethernet and IPv4)."""
    found = _in_place(buf, start, size, linktype)
    if found is None:
        return _NOT_IN_PLACE
    proto, src, sport, dst, dport = found[:5]
    if sport > dport or (sport == dport and src >= dst):
        return (entries.get((src, sport, dst, dport, proto)), *found)
    return (entries.get((dst, dport, src, sport, proto)), *found)


_NOT_IN_PLACE = (None, 0, b"", 0, b"", 0, 0, 0)


@dataclass
class ScanOptions:
    """How a scan decides and records: the view, instants, flow limits and the block floor."""

    view: str = "announced"
    as_of: float | None = None  # decide every flow at this instant instead of its first packet
    unenforced_blocks: bool = False
    flows: FlowConfig = field(default_factory=FlowConfig)
    # How long a name a client sent to an address (SNI, Host) may name that client's later
    # nameless flows to the same address (never on CDN addresses), in seconds of packet time.
    name_memory: float = 600.0
    # What a block needs beyond the policy: confidence and evidence kinds (blockfloor).
    floor: BlockFloor = field(default_factory=BlockFloor)
    # Read a decided TLS flow's ServerHello for its JA4S (bounded; ``scan --ja4s``, and the
    # gateway). Off by default in scans: it keeps every decided TLS flow reassembling up to 8 server
    # segments, a per-packet cost most scans do not want.
    server_hello: bool = False
    # Seed of the records' Community ID (``--community-id-seed``): sites that seed theirs use one.
    community_id_seed: int = 0


class Scanner:
    """One scan over one or more inputs that share a flow table and a DNS cache."""

    def __init__(
        self,
        sigs: Signatures,
        policy: Policy,
        options: ScanOptions,
        on_record: Callable[[Flow], None],
        dnscache: DnsCache | None = None,
        seen_names: DnsCache | None = None,
    ) -> None:
        """``dnscache`` and ``seen_names`` may be given when several scanners share what they learn
        (the gateway's queue workers); by default each scanner has its own."""
        self.sigs = sigs
        self.policy = policy
        self.options = options
        self.on_record = on_record
        self.dnscache = dnscache if dnscache is not None else DnsCache()  # answers bound to their query
        self.unbound_dns = DnsCache()  # answers bound to no query: low-confidence names, never shared
        self.seen_names = seen_names if seen_names is not None else DnsCache()
        self.inspection = Inspection(options.flows, self.dnscache, self.unbound_dns)
        memory = self.seen_names if options.name_memory > 0 else None
        self.attributor = Attributor(sigs, self.dnscache, memory, self.unbound_dns)
        self.table = FlowTable(options.flows, self._ended)
        self.packets = 0
        self.skipped: Counter[str] = Counter()  # non-IP, other IP protocols: counted, not errors
        self.malformed: Counter[str] = Counter()
        self.malformed_examples: dict[str, list[str]] = {}
        self.fragments = 0
        self.records = 0
        self.current_file: str | None = None
        self.interfaces: list = []  # the reader's Interface list (it grows as pcapng IDBs arrive)
        self._fragments: dict[tuple, Flow] = {}  # fragment key -> flow of the first fragment
        self.defrag = Defragmenter()
        self._early_fragments: dict[tuple, tuple[int, int]] = {}  # key -> (fragments, bytes) before the first
        self._endpoints: dict = {}  # address or server port -> the one object flows share for it
        self._next_id = 0
        self._file_start = 0  # value of self.packets when the current input started

    # -- the per-packet path -------------------------------------------------------------------

    def feed(self, ts: float, linktype: int, frame: bytes, iface: int = 0) -> Flow | None:
        """Process one captured frame; returns its flow (None if it belongs to no flow)."""
        self.packets += 1
        try:
            d = _DECODE(linktype, frame)  # decode.decode, or its compiled front (_batchcount.pyx)
        except MalformedError as err:
            self._count_malformed(err)
            return None
        if d is None:
            try:
                self.skipped[skip_reason(linktype, frame)] += 1
            except (IndexError, MalformedError):
                self.skipped["non-ip:short"] += 1
            return None
        proto, src, sport, dst, dport, flags, seq, payload, ip_len, frag_key, tunnel = d
        if frag_key is not None:
            whole = self._fragment(linktype, frame, ts, frag_key)
            if sport < 0:
                return self._later_fragment(ts, frag_key, src, ip_len, whole, iface)
            # A first fragment: its transport header makes the flow; its payload is only a part
            # of the datagram, so inspection waits for the reassembled whole.
            payload = whole[PAYLOAD] if isinstance(whole, tuple) else b""

        table = self.table
        # flows.flow_key, inline: this is the per-packet path
        key: tuple  # the 5-tuple, plus the tunnel identity for tunnelled packets
        if sport > dport or (sport == dport and src >= dst):
            key = (src, sport, dst, dport, proto)
        else:
            key = (dst, dport, src, sport, proto)
        if tunnel is not None:  # the same inner addresses in another tunnel are another flow
            key = (*key, tunnel_key(tunnel))
        flow = table.entries.get(key)
        if flow is None:
            flow = self._new_flow(ts, linktype, frame, iface, proto, src, sport, dst, dport, flags, tunnel)
        elif flow.fin and proto == 6 and flags & TCP_SYN and not flags & TCP_ACK and flow.closed:
            table.end(flow, "closed")  # port reuse: a new connection on a closed 5-tuple
            flow = self._new_flow(ts, linktype, frame, iface, proto, src, sport, dst, dport, flags, tunnel)
        # From the client: its port, and when both ports are equal, its address.
        from_client = sport == flow.client_port and (sport != dport or src == flow.client)
        if ts > flow.last_ts:
            flow.last_ts = ts
        if from_client:  # inline rather than flow.add_packets: this is the per-packet path
            flow.c2s_pkts += 1
            flow.c2s_bytes += ip_len
        else:
            flow.s2c_pkts += 1
            flow.s2c_bytes += ip_len
        if proto == 6 and flags & _FIN_OR_RST:
            self._fin_or_rst(flow, flags, from_client, ts)
        if flow.inspecting:
            self._inspect(flow, from_client, proto, seq, flags, payload)
        if frag_key is not None:
            self._remember_fragment(frag_key, flow)
            early = self._early_fragments.pop(frag_key, None)
            if early is not None:  # later fragments that arrived before this first one
                flow.add_packets(from_client, *early)
        if ts >= table.next_sweep:
            table.sweep(ts)
        return flow

    def feed_batches(
        self, batches: Iterable[RunBatch], each: Callable[[float, int, bytes, int], object] | None = None
    ) -> None:
        """``feed`` every record of a capture's ``batches()`` (or ``runs()``), and tell
        ``malformed_packet`` of the packets the reader dropped, in packet order. With ``each`` (a
        wrapper of ``feed`` that must see every packet: ``scan --write-pcap``), every packet goes to
        it as its own bytes.

        Most packets belong to flows no longer inspected; for those that ``decode`` would take in
        one piece (``_in_place``: IPv4 without options or fragments or IPv6 without extension
        headers, TCP or UDP not to a tunnel port, behind Ethernet with up to two VLAN tags, SLL,
        SLL2 or raw IP), the fields are read in place and the flow's counters (and FIN/RST state)
        updated here: no frame, payload or decoded tuple is made. Every other packet goes to
        ``feed`` (so does a SYN on a flow that saw a FIN or RST: it may open a new connection),
        so the result is exactly ``feed``'s: the counting below is the end of ``feed`` for such a
        packet. The compiled twin (_batchcount.pyx) also walks a ``PcapRun`` itself, so a packet
        it counts never becomes a record tuple.
        """
        if each is not None:
            for buf, records, dropped in batches:
                if isinstance(records, tuple):  # a run of whole pcap records (reader.runs())
                    records = run_records(buf, records)
                k = 0
                for ts, linktype, start, end, iface in records:
                    if linktype == DROPPED:
                        self.malformed_packet(dropped[k])
                        k += 1
                    else:
                        each(ts, linktype, buf[start:end], iface)
            return
        if COMPILED_FEED is not None:
            COMPILED_FEED(self, batches)  # the same loop as below, compiled (_batchcount.pyx)
            return
        feed = self.feed
        table = self.table
        entries = table.entries
        tcp4 = ETH_IP4_TCP.unpack_from
        udp4 = ETH_IP4_UDP.unpack_from
        tunnel_ports = _TUNNEL_PORTS
        # Kept in locals, written back before anything else could read or change them: packets
        # counted here and not yet in self.packets, and the table's next sweep instant.
        counted = 0
        next_sweep = table.next_sweep
        for buf, records, dropped in batches:
            if isinstance(records, tuple):  # a run of whole pcap records (reader.runs())
                records = run_records(buf, records)
            k = 0
            for ts, linktype, start, end, iface in records:
                size = end - start
                if linktype == 1 and size >= 42:
                    # untagged Ethernet and IPv4, the common case, inline
                    proto = buf[start + 23]
                    flow = None
                    if proto == 6:
                        if size >= 54:
                            etype, vihl, total, frag, _, src, dst, sport, dport, _, doff, flags = tcp4(
                                buf, start
                            )
                            l7 = 34 + (doff >> 4) * 4  # where the payload starts
                            if (
                                etype == 0x0800
                                and vihl == 0x45
                                and not frag & 0x3FFF
                                and total >= 28
                                and 54 <= l7 <= 14 + total
                                and l7 <= size
                            ):
                                if sport > dport or (sport == dport and src >= dst):
                                    flow = entries.get((src, sport, dst, dport, 6))
                                else:
                                    flow = entries.get((dst, dport, src, sport, 6))
                    elif proto == 17:
                        etype, vihl, total, frag, _, src, dst, sport, dport, _ = udp4(buf, start)
                        flags = 0
                        if (
                            etype == 0x0800
                            and vihl == 0x45
                            and not frag & 0x3FFF
                            and total >= 28
                            and dport not in tunnel_ports
                            and sport != UDP_TEREDO
                        ):
                            if sport > dport or (sport == dport and src >= dst):
                                flow = entries.get((src, sport, dst, dport, 17))
                            else:
                                flow = entries.get((dst, dport, src, sport, 17))
                    if flow is None and (buf[start + 12] != 8 or buf[start + 13] != 0):
                        flow, proto, src, sport, dst, dport, flags, total = _lookup_in_place(
                            entries, buf, start, size, linktype
                        )
                elif linktype != 1 and linktype != DROPPED:  # (an Ethernet frame under 42 bytes: feed)
                    flow, proto, src, sport, dst, dport, flags, total = _lookup_in_place(
                        entries, buf, start, size, linktype
                    )
                else:
                    flow = None
                if flow is not None and not flow.inspecting and not (flow.fin and flags & TCP_SYN):
                    counted += 1
                    if ts > flow.last_ts:
                        flow.last_ts = ts
                    if sport == flow.client_port and (sport != dport or src == flow.client):
                        flow.c2s_pkts += 1
                        flow.c2s_bytes += total
                        if flags & _FIN_OR_RST:
                            self._fin_or_rst(flow, flags, True, ts)
                            next_sweep = table.next_sweep
                    else:
                        flow.s2c_pkts += 1
                        flow.s2c_bytes += total
                        if flags & _FIN_OR_RST:
                            self._fin_or_rst(flow, flags, False, ts)
                            next_sweep = table.next_sweep
                    if ts >= next_sweep:
                        self.packets += counted
                        counted = 0
                        table.sweep(ts)
                        next_sweep = table.next_sweep
                    continue
                self.packets += counted
                counted = 0
                if linktype == DROPPED:
                    self.malformed_packet(dropped[k])
                    k += 1
                else:
                    feed(ts, linktype, buf[start:end], iface)
                    next_sweep = table.next_sweep
        self.packets += counted

    def batches_of(self, reader: CaptureReader) -> Iterator[RunBatch]:
        """What ``feed_batches`` reads best from ``reader``: its runs of whole pcap records for the
        compiled loop (which walks them without a tuple each), its batches for the pure one."""
        return reader.runs() if COMPILED_FEED is not None else reader.batches()

    def _fin_or_rst(self, flow: Flow, flags: int, from_client: bool, ts: float) -> None:
        """A FIN or RST: the side that closed, and the short timeout once the flow is closed."""
        was_closed = flow.closed
        flow.fin |= 4 if flags & TCP_RST else (1 if from_client else 2)
        if flow.closed and not was_closed:
            self.table.schedule(flow, ts + self.table.config.closed_tcp)

    def _inspect(
        self, flow: Flow, from_client: bool, proto: int, seq: int, flags: int, payload: bytes
    ) -> None:
        if proto == 6:
            ready = self.inspection.tcp(flow, from_client, seq, flags, payload)
        else:
            ready = self.inspection.udp(flow, from_client, payload)
        if ready and flow.stage != DECIDED:
            self.decide(flow)

    # -- fragments (slow path) -----------------------------------------------------------------

    def _fragment(self, linktype: int, frame: bytes, ts: float, key: tuple) -> Decoded | bytes | None:
        """Add a fragment to reassembly; once the datagram is complete, the decoded whole, or for a
        tunnel packet the rebuilt unfragmented packet, to be fed again (raw IP)."""
        self.fragments += 1
        piece = fragment(linktype, frame)
        if piece is None:
            return None
        offset, more, data = piece
        defrag = self.defrag
        conflicts, oversized = defrag.conflicts, defrag.oversized
        segment = defrag.add(key, ts, offset, more, data)
        if segment is None:
            if defrag.conflicts != conflicts:
                self._count_malformed(
                    MalformedError("ip", "fragment_overlap", "fragments overlap with different bytes")
                )
            elif defrag.oversized != oversized:
                self._count_malformed(
                    MalformedError("ip", "fragment_offset", "a fragment ends past 65535 bytes")
                )
            return None
        src, dst, proto = key[0], key[1], key[2]  # (src, dst, proto, ident[, tunnel])
        if tunnel_datagram(proto, segment):
            if len(key) > 4:  # a fragmented tunnel packet inside another tunnel: not followed
                self.skipped[f"fragmented-tunnel:nested:ip-proto:{proto}"] += 1
                return b""  # consumed: its fragments are counted here, once
            return rebuilt_ip(src, dst, proto, segment)
        try:
            return transport(proto, src, dst, segment, len(segment))
        except MalformedError as err:
            self._count_malformed(err)
            return None

    def _later_fragment(
        self, ts: float, key: tuple, src: bytes, ip_len: int, whole: Decoded | bytes | None, iface: int
    ) -> Flow | None:
        """Count a non-first fragment to the flow of its first fragment; inspect a completed whole.
        A tunnel packet's fragments belong to no flow: the whole packet is fed again, counted as
        the packet that completed it, and its inner flow is this packet's flow."""
        if isinstance(whole, bytes):
            self._early_fragments.pop(key, None)
            if not whole:
                return None
            self.packets -= 1  # the same captured packet, not another one
            return self.feed(ts, LINKTYPE_RAW, whole, iface)
        flow = self._fragments.get(key)
        if flow is None or flow.ended:
            # Its first fragment has not come (yet): hold the counts for the flow it will find.
            n, size = self._early_fragments.pop(key, (0, 0))
            self._early_fragments[key] = (n + 1, size + ip_len)
            if len(self._early_fragments) > _MAX_FRAGMENT_KEYS:
                old = next(iter(self._early_fragments))
                self.skipped["fragment-without-first"] += self._early_fragments.pop(old)[0]
            return None
        from_client = src == flow.client
        flow.add_packets(from_client, 1, ip_len)
        if ts > flow.last_ts:
            flow.last_ts = ts
        if isinstance(whole, tuple) and flow.inspecting:
            self._inspect(flow, from_client, whole[PROTO], whole[SEQ], whole[FLAGS], whole[PAYLOAD])
        return flow

    # -- flows ---------------------------------------------------------------------------------

    def _new_flow(
        self,
        ts: float,
        linktype: int,
        frame: bytes,
        iface: int,
        proto: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        flags: int,
        tunnel: tuple[Tunnel, ...] | None = None,
    ) -> Flow:
        table = self.table
        if table.live >= table.config.max_flows:
            table.make_room(ts)
        # The client sends the SYN; a SYN-ACK comes from the server.
        if proto == 6 and flags & TCP_SYN:
            sent_by_client = not flags & TCP_ACK
        else:
            # No SYN to go by: the first sender, except a DNS server caught answering first.
            sent_by_client = not (sport == DNS_PORT and dport != DNS_PORT)
        if not sent_by_client:
            src, sport, dst, dport = dst, dport, src, sport
            if tunnel is not None:
                tunnel = oriented(tunnel)
        # Flows share the objects of the addresses and server ports they have in common.
        shared = self._endpoints
        if len(shared) >= _MAX_ENDPOINTS:
            shared.clear()
        src = shared.setdefault(src, src)
        dst = shared.setdefault(dst, dst)
        dport = shared.setdefault(dport, dport)
        self._next_id += 1
        flow = Flow(self._next_id, proto, src, sport, dst, dport, ts)
        flow.file = self.current_file
        flow.first_packet = self.packets - self._file_start
        flow.tunnel = tunnel
        if iface < len(self.interfaces):
            flow.iface = self.interfaces[iface].name
        if linktype == 1:
            # The next hop toward the server: destination MAC of client packets, source of the rest.
            mac = frame[0:6] if sent_by_client else frame[6:12]
            neighbour = _MACS.get(mac)
            flow.neighbour = neighbour if neighbour is not None else mac_text(mac)
            if frame[12] in _VLAN_TYPE_HIGH:
                flow.vlan = vlan_ids(linktype, frame)
        elif linktype == 113 or linktype == 276:
            flow.vlan = vlan_ids(linktype, frame)
        if sport == DNS_PORT or dport == DNS_PORT:  # inspect.driver.is_dns_port, inline
            flow.dns_client = True
            flow.set_app_proto("dns")
        # flows.flow_key, inline
        if sport > dport or (sport == dport and src >= dst):
            key: tuple = (src, sport, dst, dport, proto)
        else:
            key = (dst, dport, src, sport, proto)
        table.add(flow, key if tunnel is None else (*key, tunnel_key(tunnel)))
        return flow

    def decide(self, flow: Flow) -> None:
        """Attribute the flow and apply the policy; from now on its packets are only counted."""
        flow.stage = DECIDED
        options = self.options
        attribution = self.attributor.attribute(flow)
        flow.attribution = attribution
        hostname = attribution.hostname
        if (
            hostname is not None
            and attribution.hostname_source in _REMEMBERED_SOURCES
            and options.name_memory > 0
        ):
            self.seen_names.remember(
                flow.server,
                hostname,
                flow.first_ts,
                flow.client,
                options.name_memory,
                None if flow.tunnel is None else client_scope(flow.tunnel),
            )
        app = attribution.app
        decision = self.policy.decide(
            app,
            attribution.categories,
            app is not None or attribution.operator is not None,  # attribution.attributed, inline
            options.as_of if options.as_of is not None else flow.first_ts,
            options.view,
            options.unenforced_blocks,
        )
        flow.decision = decision if decision.action != "block" else options.floor.apply(decision, attribution)
        # Only now, with the decision made: DNS flows keep feeding the cache after it; TLS flows
        # read the ServerHello (JA4S), which can then add a fact but never change the verdict.
        if flow.dns_client or (options.server_hello and self.inspection.awaits_server_hello(flow)):
            flow.inspecting = True
        else:
            flow.inspecting = False
            flow.streams = None  # up to inspect_bytes per direction that nothing reads any more

    def reuse_caches(self, earlier: Scanner) -> None:
        """Take over the pure caches of a scanner of earlier, unrelated inputs (``--workers`` by
        files: a new scanner per file, as the file's statistics and flow numbers start afresh):
        the attributor's memories and the endpoint objects flows share. Nothing ``forget_names``
        or ``forget_fragments`` forgets is among them, so results are those of one scanner."""
        self.attributor.reuse_caches(earlier.attributor)
        self._endpoints = earlier._endpoints

    def forget_names(self) -> None:
        """A new, unrelated input starts: no name, answer or pending query carries over."""
        self.dnscache.clear()
        self.unbound_dns.clear()
        self.seen_names.clear()
        self.inspection.queries.clear()

    def forget_fragments(self) -> None:
        """A new, unrelated input starts: no IP fragment of the earlier ones completes a datagram
        in it (so each file scans alike alone, in one process or split by files across workers)."""
        self.defrag = Defragmenter()
        self._fragments.clear()

    def close(self, flow: Flow, now: float) -> None:
        """The flow was reset by someone the capture does not show (a gateway's own RSTs): treat it
        as closed by a RST, so it ends after the short closed timeout."""
        if not flow.closed:
            flow.fin |= 4
            self.table.schedule(flow, now + self.table.config.closed_tcp)

    def touch(self, flow: Flow, now: float, counts: tuple[int, int, int, int] | None = None) -> None:
        """Traffic the scanner did not see (offloaded to the kernel) kept the flow alive; add the
        packets and bytes counted elsewhere as (c2s packets, c2s bytes, s2c packets, s2c bytes)."""
        if now > flow.last_ts and not flow.closed:
            flow.last_ts = now
        if counts is not None:
            flow.add_packets(True, counts[0], counts[1])
            flow.add_packets(False, counts[2], counts[3])

    def _ended(self, flow: Flow) -> None:
        if flow.stage != DECIDED:
            self.decide(flow)
        self.records += 1
        self.on_record(flow)

    def _remember_fragment(self, key: tuple, flow: Flow) -> None:
        frags = self._fragments
        if key not in frags and len(frags) >= _MAX_FRAGMENT_KEYS:
            for old in list(frags)[: _MAX_FRAGMENT_KEYS // 2]:
                del frags[old]
        frags[key] = flow

    def _count_malformed(self, err: MalformedError) -> None:
        reason = err.reason
        self.malformed[reason] += 1
        examples = self.malformed_examples.setdefault(reason, [])
        if len(examples) < _MAX_EXAMPLES:
            where = f"{self.current_file}: " if self.current_file else ""
            examples.append(f"{where}packet {self.packets - self._file_start}: {err}")

    # -- inputs --------------------------------------------------------------------------------

    def start_input(self, name: str, interfaces: list | None = None, carry_over: bool = True) -> None:
        """The next packets come from input ``name``.

        Without ``carry_over`` the inputs are unrelated (each file on its own): the flows of the
        earlier ones end here and the names learnt from them are forgotten, so no flow or DNS
        answer spans two captures.
        """
        if not carry_over:
            self.finish()
            self.forget_names()
            self.forget_fragments()
        self.current_file = name
        self.interfaces = interfaces if interfaces is not None else []  # the reader's own list: it grows
        self._file_start = self.packets

    def malformed_packet(self, err: MalformedError) -> None:
        """A packet its source could not deliver (e.g. a timestamp out of range): it is a packet
        of the input, counted as malformed by reason, so packet numbers stay those of the file."""
        self.packets += 1
        self._count_malformed(err)

    def finish(self) -> None:
        """End of input: every live flow is reported."""
        self.table.flush()
        for n, _ in self._early_fragments.values():
            self.skipped["fragment-without-first"] += n
        self._early_fragments.clear()

    def fill_stats(self, stats: InputStats) -> None:
        """Copy what this scan counted (packets, flows, skipped and malformed by reason...) into
        ``stats``, the run's report."""
        stats.packets = self.packets
        stats.flows = self.records
        stats.skipped = self.skipped
        stats.malformed = self.malformed
        stats.malformed_examples = self.malformed_examples
        stats.inspect_errors = self.inspection.errors
        stats.inspect_examples = self.inspection.error_examples
        stats.evicted = self.table.evicted
        stats.fragments = self.fragments
        stats.dns_answers = self.dnscache.answers
        stats.dns_dropped = self.dnscache.dropped + self.dnscache.dropped_public_names
        stats.dns_queries = self.inspection.queries.queries
        stats.dns_binding = self.inspection.queries.counts


_MACS: dict[bytes, str] = {}  # raw MAC -> its text (_new_flow reads it inline)


def mac_text(raw: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff``; one string per address (a link has few next hops, and every flow
    keeps one)."""
    text = _MACS.get(raw)
    if text is None:
        if len(_MACS) >= 4096:
            _MACS.clear()
        text = _MACS[raw] = raw.hex(":")
    return text
