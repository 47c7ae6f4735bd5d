# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled twin of the in-place loop of ``Scanner.feed_batches`` (classifier/pipeline.py).

Statement for statement the pure-Python loop there, which stays the reference and the fallback
(no compiler, or CLASSIFIER_PURE_PYTHON set): the header fields are read from the buffer as C
bytes instead of through ``struct`` tuples, and the record fields are C numbers, so a packet of a
decided flow costs a dict probe and the counter updates. tests/test_compiled.py checks that both
give byte-identical records and stats on every capture.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcmp

from .capture import DROPPED
from .decode import TCP_FIN, TCP_RST, TCP_SYN
from .tunnels import UDP_PORTS, UDP_TEREDO

cdef long _SYN = TCP_SYN
cdef long _FIN_OR_RST = TCP_FIN | TCP_RST
cdef long _TEREDO = UDP_TEREDO
cdef long _DROPPED = DROPPED
# decode's rule: a UDP datagram to a tunnel port, or Teredo at either end, is opened by ``feed``.
cdef long _TUNNEL[8]
cdef int _NTUNNEL = 0
for _port in sorted(UDP_PORTS | {UDP_TEREDO}):
    if _NTUNNEL == 8:
        raise ImportError("classifier._batchcount: more tunnel ports than the compiled loop holds")
    _TUNNEL[_NTUNNEL] = _port
    _NTUNNEL += 1


cdef inline bint _tunnel_port(long port) noexcept:
    cdef int i
    for i in range(_NTUNNEL):
        if _TUNNEL[i] == port:
            return True
    return False


cdef inline long _u16(const unsigned char *b) noexcept:
    return (b[0] << 8) | b[1]


def feed_batches(scanner, batches):
    """``Scanner.feed_batches(batches)`` without ``each``: see there."""
    cdef const unsigned char[::1] view
    cdef const unsigned char *p
    cdef const unsigned char *b
    cdef tuple rec
    cdef Py_ssize_t start, end, size, l7, k
    cdef long linktype, proto, etype, vihl, total, frag, sport, dport, flags, fin
    cdef double ts, next_sweep
    cdef long counted = 0
    cdef bint found, forward
    cdef bytes src, dst
    feed = scanner.feed
    fin_or_rst = scanner._fin_or_rst
    table = scanner.table
    entries = table.entries
    next_sweep = table.next_sweep
    for buf, records, dropped in batches:
        view = buf
        b = &view[0] if view.shape[0] else NULL
        k = 0
        for rec in records:
            linktype = rec[1]
            start = rec[2]
            end = rec[3]
            size = end - start
            p = b + start
            if linktype == 1 and size >= 42:
                proto = p[23]
                found = False
                if proto == 6:
                    if size >= 54:
                        etype = _u16(p + 12)
                        vihl = p[14]
                        total = _u16(p + 16)
                        frag = _u16(p + 20)
                        l7 = 34 + (p[46] >> 4) * 4  # where the payload starts
                        if (
                            etype == 0x0800
                            and vihl == 0x45
                            and not frag & 0x3FFF
                            and total >= 28
                            and 54 <= l7 <= 14 + total
                            and l7 <= size
                        ):
                            found = True
                            flags = p[47]
                elif proto == 17:
                    etype = _u16(p + 12)
                    vihl = p[14]
                    total = _u16(p + 16)
                    frag = _u16(p + 20)
                    flags = 0
                    if etype == 0x0800 and vihl == 0x45 and not frag & 0x3FFF and total >= 28:
                        sport = _u16(p + 34)
                        dport = _u16(p + 36)
                        found = not _tunnel_port(dport) and sport != _TEREDO
                if found:
                    sport = _u16(p + 34)
                    dport = _u16(p + 36)
                    src = PyBytes_FromStringAndSize(<const char *>p + 26, 4)
                    dst = PyBytes_FromStringAndSize(<const char *>p + 30, 4)
                    forward = sport > dport or (
                        sport == dport and memcmp(p + 26, p + 30, 4) >= 0
                    )
                    if forward:
                        flow = entries.get((src, sport, dst, dport, proto))
                    else:
                        flow = entries.get((dst, dport, src, sport, proto))
                    if flow is not None and not flow.inspecting:
                        fin = flow.fin
                        if not (fin and flags & _SYN):
                            counted += 1
                            ts_obj = rec[0]
                            ts = ts_obj
                            if ts > <double>flow.last_ts:
                                flow.last_ts = ts_obj
                            if sport == <long>flow.client_port and (sport != dport or src == flow.client):
                                flow.c2s_pkts += 1
                                flow.c2s_bytes += total
                                if flags & _FIN_OR_RST:
                                    fin_or_rst(flow, flags, True, ts_obj)
                                    next_sweep = table.next_sweep
                            else:
                                flow.s2c_pkts += 1
                                flow.s2c_bytes += total
                                if flags & _FIN_OR_RST:
                                    fin_or_rst(flow, flags, False, ts_obj)
                                    next_sweep = table.next_sweep
                            if ts >= next_sweep:
                                scanner.packets += counted
                                counted = 0
                                table.sweep(ts_obj)
                                next_sweep = table.next_sweep
                            continue
            if counted:
                scanner.packets += counted
                counted = 0
            if linktype == _DROPPED:
                scanner.malformed_packet(dropped[k])
                k += 1
            else:
                feed(rec[0], rec[1], buf[start:end], rec[4])
                next_sweep = table.next_sweep
    if counted:
        scanner.packets += counted
