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
