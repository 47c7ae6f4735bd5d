# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled first packet of a flow another partition reports (a ``PartScanner``'s ``feed``).

Every ``scan --workers`` partition creates every flow, so that flow numbers, timeouts and evictions
are those of one process (classifier/partition.py). A flow it does not report needs nothing but
what keeps those identical: its number, key, times, counters and FIN/RST state. For the packets
``decode`` takes in one piece (untagged Ethernet, IPv4 without options or fragments, TCP or UDP not
to a tunnel port) or in two short steps (IPv6 with TCP or UDP as the next header, ``_ipv6`` and
``_transport``) and not to or from port 53 (DNS flows are inspected everywhere), the first packet
of such a flow is read here in C and the flow made and filed in its timeout bucket directly
(``_PartTable.add`` inline), instead of ``decode``, ``Scanner.feed`` and ``_new_flow``; fields only a
record shows (interface, next hop, VLAN) are left unset, since no
record of it is written here. Every other packet goes to ``Scanner.feed``. Without this module
(no compiler, or CLASSIFIER_PURE_PYTHON) ``Scanner.feed`` takes every packet: the same records,
tests/test_workers.py checks.
"""

from libc.string cimport memcmp

from .decode import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from .flows import Flow
from .inspect.driver import DNS_PORT
from .pipeline import Scanner
from .tunnels import UDP_PORTS, UDP_TEREDO

cdef long _SYN = TCP_SYN
cdef long _ACK = TCP_ACK
cdef long _FIN_OR_RST = TCP_FIN | TCP_RST
cdef long _TEREDO = UDP_TEREDO
cdef long _DNS = DNS_PORT
# decode's rule: a UDP datagram to a tunnel port, or Teredo at either end, is decoded the long way.
cdef long _TUNNEL[8]
cdef int _NTUNNEL = 0
for _port in sorted(UDP_PORTS | {UDP_TEREDO}):
    if _NTUNNEL == 8:
        raise ImportError("classifier._partfeed: more tunnel ports than it holds")
    _TUNNEL[_NTUNNEL] = _port
    _NTUNNEL += 1

_generic_feed = Scanner.feed


cdef inline bint _tunnel_port(long port) noexcept:
    cdef int i
    for i in range(_NTUNNEL):
        if _TUNNEL[i] == port:
            return True
    return False


cdef inline long _u16(const unsigned char *b) noexcept:
    return (b[0] << 8) | b[1]


def feed(scanner, ts, long linktype, frame, iface=0):
    """``Scanner.feed(ts, linktype, frame, iface)`` for a ``PartScanner``: see above."""
    cdef const unsigned char *p
    cdef Py_ssize_t n, end, l4, l7, a, alen
    cdef long proto, total, sport, dport, client_port, flags = 0
    cdef bint forward, by_client, from_client
    if linktype != 1 or type(frame) is not bytes:
        return _generic_feed(scanner, ts, linktype, frame, iface)
    p = <const unsigned char *><bytes>frame
    n = len(<bytes>frame)
    if n < 42:
        return _generic_feed(scanner, ts, linktype, frame, iface)
    if p[12] == 0x08 and p[13] == 0x00:
        # IPv4 without options or fragments (decode's fast path)
        total = _u16(p + 16)
        proto = p[23]
        if p[14] != 0x45 or _u16(p + 20) & 0x3FFF or total < 28:
            return _generic_feed(scanner, ts, linktype, frame, iface)
        end = 14 + total
        l4 = 34
        a = 26
        alen = 4
    elif p[12] == 0x86 and p[13] == 0xDD:
        # IPv6 whose next header is TCP or UDP (no extension header): decode's _ipv6, _transport
        if n < 62 or p[14] >> 4 != 6:
            return _generic_feed(scanner, ts, linktype, frame, iface)
        proto = p[20]
        if proto != 6 and proto != 17:
            return _generic_feed(scanner, ts, linktype, frame, iface)
        total = _u16(p + 18)
        end = 54 + total if total else n  # payload length 0: a jumbogram, to the end
        total += 40
        l4 = 54
        a = 22
        alen = 16
    else:
        return _generic_feed(scanner, ts, linktype, frame, iface)
    sport = _u16(p + l4)
    dport = _u16(p + l4 + 2)
    if sport == _DNS or dport == _DNS:
        return _generic_feed(scanner, ts, linktype, frame, iface)
    if end > n:
        end = n
    if proto == 6:
        if end < l4 + 20:
            return _generic_feed(scanner, ts, linktype, frame, iface)
        l7 = l4 + (p[l4 + 12] >> 4) * 4
        if l7 < l4 + 20 or l7 > end:
            return _generic_feed(scanner, ts, linktype, frame, iface)
        flags = p[l4 + 13]
    elif proto != 17 or end < l4 + 8 or _tunnel_port(dport) or sport == _TEREDO:
        return _generic_feed(scanner, ts, linktype, frame, iface)
    src = frame[a : a + alen]
    dst = frame[a + alen : a + 2 * alen]
    forward = sport > dport or (sport == dport and memcmp(p + a, p + a + alen, alen) >= 0)
    key = (src, sport, dst, dport, proto) if forward else (dst, dport, src, sport, proto)
    table = scanner.table
    if key in table.entries:
        return _generic_feed(scanner, ts, linktype, frame, iface)
    # The client sends the SYN; a SYN-ACK comes from the server; else the first sender (no DNS here).
    by_client = not (flags & _ACK) if proto == 6 and flags & _SYN else True
    server = dst if by_client else src
    part = scanner._parts.get(server)
    if part is None:
        part = scanner.owner(server)  # a new server address is given its partition
    if part == scanner.part:
        return _generic_feed(scanner, ts, linktype, frame, iface)
    # From here on, Scanner.feed and _new_flow for this case, statement for statement.
    scanner.packets += 1
    if table.live >= table.config.max_flows:
        table.make_room(ts)
    scanner._next_id += 1
    if by_client:
        flow = Flow(scanner._next_id, proto, src, sport, dst, dport, ts)
    else:
        flow = Flow(scanner._next_id, proto, dst, dport, src, sport, ts)
    flow.file = scanner.current_file
    flow.first_packet = scanner.packets - scanner._file_start
    flow.inspecting = False  # counted and timed like any flow, never inspected here
    # _PartTable.add and FlowTable.add, inline (the flow has no FIN yet, so the idle timeout);
    # FlowTable.schedule only when the flow's bucket is not there yet.
    flow.part = part
    scanner.load[part] += 1
    table.entries[key] = flow
    flow.key = key
    table.live += 1
    table.created += 1
    config = table.config
    deadline = ts + (config.idle_tcp if proto == 6 else config.idle_udp)
    bucket = table._buckets.get(int(deadline // table._gran) + 1)
    if bucket is None:
        table.schedule(flow, deadline)
    else:
        bucket.add(flow)
        flow.bucket = bucket
    # From the client: its port, and when both ports are equal, its address.
    client_port = sport if by_client else dport
    from_client = sport == client_port and (sport != dport or src == flow.client)
    if from_client:
        flow.c2s_pkts += 1
        flow.c2s_bytes += total
    else:
        flow.s2c_pkts += 1
        flow.s2c_bytes += total
    if proto == 6 and flags & _FIN_OR_RST:
        scanner._fin_or_rst(flow, flags, from_client, ts)
    if ts >= table.next_sweep:
        table.sweep(ts)
    return flow
