# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled twin of ``whole_pcap_records`` (classifier/capture.py): the pcap records lying whole
in a buffer, read as C numbers instead of through a ``struct`` tuple each. The pure-Python function
stays the reference and the fallback; tests/test_compiled.py checks both give the same records.
"""


cdef inline unsigned long long _u32(const unsigned char *p, bint big_endian) noexcept:
    if big_endian:
        return (<unsigned long long>p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]
    return (<unsigned long long>p[3] << 24) | (p[2] << 16) | (p[1] << 8) | p[0]


def whole_pcap_records(
    buf, Py_ssize_t pos, bint big_endian, double units, linktype, long long limit, list records
):
    """See ``classifier.capture.whole_pcap_records``."""
    cdef const unsigned char[::1] view = buf
    cdef Py_ssize_t n = view.shape[0]
    cdef Py_ssize_t end
    cdef const unsigned char *p
    cdef unsigned long long sec, frac, incl
    while n - pos >= 16:
        p = &view[pos]
        sec = _u32(p, big_endian)
        frac = _u32(p + 4, big_endian)
        incl = _u32(p + 8, big_endian)
        end = pos + 16 + <Py_ssize_t>incl
        if <long long>incl > limit or end > n or <double>frac >= units:
            break
        records.append((<double>sec + <double>frac / units, linktype, pos + 16, end, 0))
        pos = end
    return pos


def whole_pcap_run(buf, Py_ssize_t pos, bint big_endian, double units, long long limit):
    """See ``classifier.capture.whole_pcap_run``: the same walk, making nothing."""
    cdef const unsigned char[::1] view = buf
    cdef Py_ssize_t n = view.shape[0]
    cdef Py_ssize_t end
    cdef Py_ssize_t count = 0
    cdef const unsigned char *p
    cdef unsigned long long frac, incl
    while n - pos >= 16:
        p = &view[pos]
        frac = _u32(p + 4, big_endian)
        incl = _u32(p + 8, big_endian)
        end = pos + 16 + <Py_ssize_t>incl
        if <long long>incl > limit or end > n or <double>frac >= units:
            break
        count += 1
        pos = end
    return pos, count


from classifier.timeutil import MAX_INSTANT, PACKET_TIME_MIN

cdef unsigned long long _EXACT = 1ULL << 53  # integers below this convert to a double exactly
cdef double _TS_MIN = PACKET_TIME_MIN
cdef double _TS_MAX = MAX_INSTANT


def whole_pcapng_epbs(buf, Py_ssize_t pos, bint big_endian, list ifaces, long long limit, list records):
    """See ``classifier.capture.whole_pcapng_epbs``.

    The timestamp is Python's ``count / units + tsoffset`` to the bit: a C division of doubles is
    that exactly when both integers convert exactly (below 2**53: microsecond counts, and units of
    10**k); otherwise (nanosecond counts since 1970) the division is Python's own."""
    cdef const unsigned char[::1] view = buf
    cdef Py_ssize_t n = view.shape[0]
    cdef Py_ssize_t nif = len(ifaces)
    cdef Py_ssize_t end
    cdef const unsigned char *p
    cdef unsigned long long btype, blen, iid, caplen, count
    cdef Py_ssize_t cur = -1  # the interface whose values are in the variables below
    cdef double units_d = 1.0, offset_d = 0.0, ts
    cdef bint units_exact = False
    units = 1
    gidx = 0
    linktype = 0
    while n - pos >= 24:
        p = &view[pos]
        btype = _u32(p, big_endian)
        blen = _u32(p + 4, big_endian)
        iid = _u32(p + 8, big_endian)
        caplen = _u32(p + 20, big_endian)
        end = pos + <Py_ssize_t>blen
        if (
            btype != 6
            or end > n
            or iid >= <unsigned long long>nif
            or caplen + 32 > blen
            or <long long>blen > limit
            or blen & 3
            or _u32(&view[end - 4], big_endian) != blen
        ):
            break
        if <Py_ssize_t>iid != cur:
            gidx, linktype, units, tsoffset, _snap = ifaces[iid]
            units_exact = 0 < units < _EXACT
            units_d = <double>units if units_exact else 1.0
            offset_d = <double>tsoffset  # Python's float + int converts the int the same way
            cur = <Py_ssize_t>iid
        count = (_u32(p + 12, big_endian) << 32) | _u32(p + 16, big_endian)
        if units_exact and count < _EXACT:
            ts = <double>count / units_d
        else:
            ts = count / units
        ts = ts + offset_d
        if not (_TS_MIN <= ts <= _TS_MAX):
            break
        records.append((ts, linktype, pos + 28, pos + 28 + <Py_ssize_t>caplen, gidx))
        pos = end
    return pos
