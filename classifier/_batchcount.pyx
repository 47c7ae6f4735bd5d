# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled twin of the in-place loop of ``Scanner.feed_batches`` (classifier/pipeline.py).

The same packets are counted in place as by the pure-Python loop there, which stays the reference
and the fallback (no compiler, or CLASSIFIER_PURE_PYTHON set): the header fields are read from the
buffer as C bytes (``_in_place`` is ``pipeline._in_place``), and the record fields are C numbers.
One thing is added: a small table of the flows found lately, keyed by the packet's raw addresses,
ports and protocol, so a packet of one of them costs no key bytes, tuple or dict probe at all, and
its counts wait in C until Python code could look (before any call into Python: ``feed``,
``sweep``, a FIN or RST, the end). An entry found again after such a call is checked again (the
flow has not ended, is not inspected, its FIN state): a live flow stays under its key until it
ends. tests/test_compiled.py checks that both give byte-identical records and stats.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItemWithError
from cpython.ref cimport PyObject, Py_XDECREF, Py_INCREF
from libc.string cimport memcmp, memcpy

from .capture import DROPPED
from .decode import TCP_FIN, TCP_RST, TCP_SYN
from .decode import decode as _decode
from .tunnels import UDP_PORTS, UDP_TEREDO

cdef long _SYN = TCP_SYN
cdef long _FIN_OR_RST = TCP_FIN | TCP_RST
cdef long _RST = TCP_RST
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

cdef enum:
    _SLOTS = 512  # entries of the table of flows found lately (a power of two)


cdef inline bint _tunnel_port(long port) noexcept:
    cdef int i
    for i in range(_NTUNNEL):
        if _TUNNEL[i] == port:
            return True
    return False


cdef inline long _u16(const unsigned char *b) noexcept:
    return (b[0] << 8) | b[1]


cdef inline unsigned long _u32(const unsigned char *b) noexcept:
    return (<unsigned long>b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


cdef inline bint _vlan(long etype) noexcept:
    return etype == 0x8100 or etype == 0x88A8 or etype == 0x9100 or etype == 0x9200


cdef struct Packet:
    long proto
    long sport
    long dport
    long flags
    long ip_len
    int alen  # 4 or 16
    const unsigned char *src
    const unsigned char *dst
    unsigned long seq  # TCP's; 0 for UDP
    Py_ssize_t payload  # where the payload starts and ends, from the frame's first byte
    Py_ssize_t payload_end


cdef inline bint _in_place(const unsigned char *p, Py_ssize_t size, long linktype, Packet *pk) noexcept:
    """``pipeline._in_place``: is this a packet decode takes in one piece, an untunnelled TCP or
    UDP packet over IPv4 without options or fragments or IPv6 without extension headers, behind
    Ethernet (up to two VLAN tags), Linux cooked (SLL, SLL2) or raw IP? Fills ``pk`` if so."""
    cdef Py_ssize_t off, end, l4, hlen
    cdef long etype, total, plen, proto, ulen
    if linktype == 1:
        if size < 14:
            return False
        etype = _u16(p + 12)
        off = 14
        if _vlan(etype):
            if size < 18:
                return False
            etype = _u16(p + 16)
            off = 18
            if _vlan(etype):
                if size < 22:
                    return False
                etype = _u16(p + 20)
                off = 22
    elif linktype == 113:
        if size < 16:
            return False
        etype = _u16(p + 14)
        off = 16
    elif linktype == 276:
        if size < 20:
            return False
        etype = _u16(p)
        off = 20
    elif linktype == 101 or linktype == 228 or linktype == 229 or linktype == 12 or linktype == 14:
        if size < 1:
            return False
        etype = 0x0800 if p[0] >> 4 == 4 else 0x86DD if p[0] >> 4 == 6 else 0
        off = 0
    else:
        return False
    if etype == 0x0800:
        if off + 20 > size or p[off] != 0x45 or _u16(p + off + 6) & 0x3FFF:
            return False
        total = _u16(p + off + 2)
        if total < 20:
            return False
        end = off + total
        if end > size:
            end = size
        proto = p[off + 9]
        l4 = off + 20
        pk.ip_len = total
        pk.alen = 4
        pk.src = p + off + 12
        pk.dst = p + off + 16
    elif etype == 0x86DD:
        if off + 40 > size or p[off] >> 4 != 6:
            return False
        plen = _u16(p + off + 4)
        proto = p[off + 6]
        end = off + 40 + plen if plen else size
        if end > size:
            end = size
        l4 = off + 40
        pk.ip_len = plen + 40
        pk.alen = 16
        pk.src = p + off + 8
        pk.dst = p + off + 24
    else:
        return False
    if proto == 6:
        if l4 + 20 > end:
            return False
        hlen = (p[l4 + 12] >> 4) * 4
        if hlen < 20 or l4 + hlen > end:
            return False
        pk.flags = p[l4 + 13]
        pk.seq = _u32(p + l4 + 4)
        pk.payload = l4 + hlen
    elif proto == 17:
        if l4 + 8 > end:
            return False
        pk.flags = 0
        pk.seq = 0
        pk.payload = l4 + 8
        ulen = _u16(p + l4 + 4)
        if ulen >= 8 and l4 + ulen < end:
            end = l4 + ulen  # the UDP length, when the IP packet is longer (padding)
    else:
        return False
    pk.payload_end = end
    pk.proto = proto
    pk.sport = _u16(p + l4)
    pk.dport = _u16(p + l4 + 2)
    if proto == 17 and (_tunnel_port(pk.dport) or pk.sport == _TEREDO):
        return False
    return True


cdef struct Slot:
    PyObject *flow  # a strong reference; NULL: empty
    unsigned long long gen  # the run of C-only work it was last checked in
    long proto
    long sport
    long dport
    int alen
    unsigned char addrs[32]  # source then destination, as the packet has them
    bint from_client
    long fin  # flow.fin when checked
    long pkts  # counted here, not yet on the flow
    long long nbytes
    double ts  # the latest of their timestamps
    bint listed  # in the dirty list since the last call into Python


cdef inline Py_ssize_t _slot_of(Packet *pk) noexcept:
    # C arithmetic throughout (the unsigned casts and suffix): a bare literal above 2**31 made
    # Cython do this line with Python ints, three objects and a multiplication per packet.
    cdef unsigned long h = (
        <unsigned long>pk.sport * 40503UL + <unsigned long>pk.dport * 2654435761UL + <unsigned long>pk.proto
    )
    cdef int i
    for i in range(pk.alen - 4, pk.alen):
        h = h * 31 + pk.src[i]
        h = h * 31 + pk.dst[i]
    return <Py_ssize_t>((h ^ (h >> 13)) & (_SLOTS - 1))


cdef inline bint _same_key(Slot *s, Packet *pk) noexcept:
    return (
        s.flow != NULL
        and s.sport == pk.sport
        and s.dport == pk.dport
        and s.proto == pk.proto
        and s.alen == pk.alen
        and memcmp(s.addrs, pk.src, pk.alen) == 0
        and memcmp(s.addrs + pk.alen, pk.dst, pk.alen) == 0
    )


cdef class _Recent:
    """The table of flows found lately, and the counts it holds back."""

    cdef Slot slots[_SLOTS]
    cdef Py_ssize_t dirty[_SLOTS]  # slots holding counts
    cdef Py_ssize_t ndirty
    cdef unsigned long long gen

    def __cinit__(self):
        cdef Py_ssize_t i
        for i in range(_SLOTS):
            self.slots[i].flow = NULL
            self.slots[i].pkts = 0
            self.slots[i].listed = False
        self.ndirty = 0
        self.gen = 1

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(_SLOTS):
            Py_XDECREF(self.slots[i].flow)
            self.slots[i].flow = NULL

    cdef int flush_slot(self, Slot *s) except -1:
        """Put a slot's held counts on its flow: what the pure loop did packet by packet."""
        cdef object flow
        if s.pkts:
            flow = <object>s.flow
            if s.from_client:
                flow.c2s_pkts += s.pkts
                flow.c2s_bytes += s.nbytes
            else:
                flow.s2c_pkts += s.pkts
                flow.s2c_bytes += s.nbytes
            if s.ts > <double>flow.last_ts:
                flow.last_ts = s.ts
            s.pkts = 0
            s.nbytes = 0
        return 0

    cdef int before_python(self) except -1:
        """Python code may run next: every count goes on its flow, and every entry is checked
        again before it is used (the flow may have ended, or changed its FIN state)."""
        cdef Py_ssize_t i
        cdef Slot *s
        for i in range(self.ndirty):
            s = &self.slots[self.dirty[i]]
            self.flush_slot(s)
            s.listed = False
        self.ndirty = 0
        self.gen += 1
        return 0

    cdef int put(self, Slot *s, Packet *pk, object flow, bint from_client, long fin) except -1:
        self.flush_slot(s)
        Py_INCREF(flow)
        Py_XDECREF(s.flow)
        s.flow = <PyObject *>flow
        s.gen = self.gen
        s.proto = pk.proto
        s.sport = pk.sport
        s.dport = pk.dport
        s.alen = pk.alen
        memcpy(s.addrs, pk.src, pk.alen)
        memcpy(s.addrs + pk.alen, pk.dst, pk.alen)
        s.from_client = from_client
        s.fin = fin
        return 0


cdef inline unsigned long _u32_order(const unsigned char *p, bint big_endian) noexcept:
    if big_endian:
        return (<unsigned long>p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]
    return (<unsigned long>p[3] << 24) | (p[2] << 16) | (p[1] << 8) | p[0]


cdef class _Loop:
    """The state of one ``feed_batches``: what the loop keeps in C between packets."""

    cdef object scanner, feed, fin_or_rst, table, closed_tcp
    cdef bint own_fin_or_rst  # the scanner's _fin_or_rst is Scanner's: done here in C
    cdef dict entries  # the table's own dict: probed in C, without a method call (the slot misses)
    cdef _Recent recent
    cdef long counted  # packets counted here and not yet in scanner.packets
    cdef double next_sweep

    def __cinit__(self, scanner):
        self.scanner = scanner
        self.feed = scanner.feed
        self.fin_or_rst = scanner._fin_or_rst
        from .pipeline import Scanner  # loaded by now: it is what loads this module

        self.own_fin_or_rst = type(scanner)._fin_or_rst is Scanner._fin_or_rst
        self.closed_tcp = scanner.table.config.closed_tcp
        self.table = scanner.table
        self.entries = self.table.entries
        self.recent = _Recent()
        self.counted = 0
        self.next_sweep = self.table.next_sweep

    cdef int to_python(self) except -1:
        """Before any call into Python: counts on their flows, the packet count in the scanner."""
        self.recent.before_python()
        if self.counted:
            self.scanner.packets += self.counted
            self.counted = 0
        return 0

    cdef bint counts(self, const unsigned char *p, Py_ssize_t size, long linktype, double ts, object ts_obj) except -1:
        """Count the packet in place if it is one of a flow no longer inspected (see
        ``Scanner.feed_batches``); False if it must go to ``feed``. ``ts_obj`` is ``ts`` as the
        record has it, or None (made when Python needs it)."""
        cdef Packet pk
        cdef Slot *s
        cdef PyObject *found
        cdef bytes src, dst
        cdef bint from_client
        cdef long flags, fin
        cdef bint was_closed
        cdef _Recent recent = self.recent
        if not _in_place(p, size, linktype, &pk):
            return False
        s = &recent.slots[_slot_of(&pk)]
        if _same_key(s, &pk) and s.gen != recent.gen:
            # Python ran since: the flow may have ended (and its key another flow)
            flow = <object>s.flow
            if flow.ended or flow.inspecting:
                recent.flush_slot(s)
                Py_XDECREF(s.flow)
                s.flow = NULL
            else:
                s.fin = flow.fin
                s.gen = recent.gen
        if not _same_key(s, &pk):
            src = PyBytes_FromStringAndSize(<const char *>pk.src, pk.alen)
            dst = PyBytes_FromStringAndSize(<const char *>pk.dst, pk.alen)
            if pk.sport > pk.dport or (pk.sport == pk.dport and memcmp(pk.src, pk.dst, pk.alen) >= 0):
                found = PyDict_GetItemWithError(self.entries, (src, pk.sport, dst, pk.dport, pk.proto))
            else:
                found = PyDict_GetItemWithError(self.entries, (dst, pk.dport, src, pk.sport, pk.proto))
            if found == NULL:  # (an error in the probe is raised: ``except? NULL``)
                return False
            flow = <object>found
            if flow.inspecting:
                return False
            from_client = pk.sport == <long>flow.client_port and (pk.sport != pk.dport or src == flow.client)
            recent.put(s, &pk, flow, from_client, flow.fin)
        if s.fin and pk.flags & _SYN:
            return False  # a SYN on a flow that saw a FIN or RST may open a new connection
        self.counted += 1
        if s.pkts == 0:
            if not s.listed:
                s.listed = True
                recent.dirty[recent.ndirty] = s - &recent.slots[0]
                recent.ndirty += 1
            s.ts = ts
        elif ts > s.ts:
            s.ts = ts
        s.pkts += 1
        s.nbytes += pk.ip_len
        flags = pk.flags
        if flags & _FIN_OR_RST or ts >= self.next_sweep:
            if ts_obj is None:
                ts_obj = ts
            flow = <object>s.flow
            if flags & _FIN_OR_RST:
                if self.own_fin_or_rst:
                    # Scanner._fin_or_rst, inline: most FINs and RSTs reach a flow counted here,
                    # and only the one that closes it needs Python (its short timeout).
                    fin = flow.fin
                    was_closed = fin & 4 or fin & 3 == 3
                    fin |= 4 if flags & _RST else (1 if s.from_client else 2)
                    flow.fin = fin
                    s.fin = fin
                    if not was_closed and (fin & 4 or fin & 3 == 3):
                        recent.before_python()
                        self.table.schedule(flow, ts_obj + self.closed_tcp)
                        self.next_sweep = self.table.next_sweep
                else:
                    recent.before_python()
                    self.fin_or_rst(flow, flags, s.from_client, ts_obj)
                    self.next_sweep = self.table.next_sweep
            if ts >= self.next_sweep:
                self.to_python()
                self.table.sweep(ts_obj)
                self.next_sweep = self.table.next_sweep
        return True

    cdef int records(self, buf, list records, list dropped) except -1:
        """A batch's records as the reader located them."""
        cdef const unsigned char[::1] view = buf
        cdef const unsigned char *b = &view[0] if view.shape[0] else NULL
        cdef tuple rec
        cdef Py_ssize_t start, end, k = 0
        cdef long linktype
        for rec in records:
            linktype = rec[1]
            start = rec[2]
            end = rec[3]
            if self.counts(b + start, end - start, linktype, rec[0], rec[0]):
                continue
            self.to_python()
            if linktype == _DROPPED:
                self.scanner.malformed_packet(dropped[k])
                k += 1
            else:
                self.feed(rec[0], rec[1], buf[start:end], rec[4])
                self.next_sweep = self.table.next_sweep
        return 0

    cdef int run(self, buf, tuple run) except -1:
        """A run of whole pcap records (``capture.PcapRun``), walked here: a packet counted in
        place never becomes a record tuple. Its timestamp is the one ``whole_pcap_records`` makes."""
        cdef const unsigned char[::1] view = buf
        cdef const unsigned char *b = &view[0] if view.shape[0] else NULL
        cdef Py_ssize_t pos = run[0]
        cdef Py_ssize_t stop = run[1]
        cdef bint big_endian = run[2]
        cdef double units = run[3]
        cdef long linktype = run[4]
        cdef Py_ssize_t start, end
        cdef double ts
        if pos < 0 or stop > view.shape[0]:
            raise ValueError("a pcap run outside its buffer")
        lt = linktype
        while stop - pos >= 16:
            ts = <double>_u32_order(b + pos, big_endian) + <double>_u32_order(b + pos + 4, big_endian) / units
            start = pos + 16
            end = start + <Py_ssize_t>_u32_order(b + pos + 8, big_endian)
            if end > stop:
                raise ValueError("a pcap run with a record cut")
            pos = end
            if self.counts(b + start, end - start, linktype, ts, None):
                continue
            self.to_python()
            self.feed(ts, lt, buf[start:end], 0)
            self.next_sweep = self.table.next_sweep
        return 0


def feed_batches(scanner, batches):
    """``Scanner.feed_batches(batches)`` without ``each``: see there."""
    cdef _Loop loop = _Loop(scanner)
    try:
        for buf, records, dropped in batches:
            if type(records) is tuple:
                loop.run(buf, records)
            else:
                loop.records(buf, records, dropped)
    finally:
        loop.to_python()


def in_place(buf, Py_ssize_t start, Py_ssize_t size, long linktype):
    """``_in_place`` as ``pipeline._in_place`` returns it, for tests/test_inplace_links.py to hold
    the two twins to the same answers."""
    cdef const unsigned char[::1] view = buf
    cdef Packet pk
    if start < 0 or size < 0 or start + size > view.shape[0]:
        raise ValueError("the frame lies outside the buffer")
    if size == 0 or not _in_place(&view[start], size, linktype, &pk):
        return None
    return (
        pk.proto,
        PyBytes_FromStringAndSize(<const char *>pk.src, pk.alen),
        pk.sport,
        PyBytes_FromStringAndSize(<const char *>pk.dst, pk.alen),
        pk.dport,
        pk.flags,
        pk.ip_len,
    )


def decode(long linktype, frame):
    """``decode.decode``, with the packets ``_in_place`` reads (most of those ``Scanner.feed`` gets)
    decoded here in C; every other frame, and every error, is decode.py's own."""
    cdef const unsigned char *p
    cdef Packet pk
    if type(frame) is not bytes:
        return _decode(linktype, frame)
    p = <const unsigned char *>PyBytes_AS_STRING(frame)
    if not _in_place(p, PyBytes_GET_SIZE(frame), linktype, &pk):
        return _decode(linktype, frame)
    return (
        pk.proto,
        PyBytes_FromStringAndSize(<const char *>pk.src, pk.alen),
        pk.sport,
        PyBytes_FromStringAndSize(<const char *>pk.dst, pk.alen),
        pk.dport,
        pk.flags,
        pk.seq,
        PyBytes_FromStringAndSize(<const char *>p + pk.payload, pk.payload_end - pk.payload),
        pk.ip_len,
        None,
        None,
    )
