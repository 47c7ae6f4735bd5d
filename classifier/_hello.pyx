# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled ClientHello parse and QUIC Initial frame walk (twins of classifier/inspect/tls.py
``parse_client_hello_message`` and classifier/inspect/quic.py ``_ietf_frames``).

Both run once per TLS flow or QUIC Initial and were ~80 % interpreter overhead: a byte-by-byte walk
of a few hundred bytes. Here each read is a C load behind the same bound checks, in the same
order, so every input (hostile ones too) gives the same facts, or the same ``MalformedError``
(field and detail), as the pure-Python reference; tests/test_hello_twins.py compares them on real,
fuzzed, truncated and mutated inputs. Python objects (hostnames, ALPN names, error details) are
made by the same Python calls the reference makes.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject_GenericSetAttr
from libc.string cimport memcpy

from .errors import MalformedError
from .inspect import normalize_hostname

cdef object _ClientHello = None  # classifier.inspect.tls.ClientHello, imported on first use
cdef tuple _FIELDS = ()  # its field names, in order

cdef enum:
    EXT_SERVER_NAME = 0
    EXT_SIGNATURE_ALGORITHMS = 13
    EXT_ALPN = 16
    EXT_SUPPORTED_VERSIONS = 43
    EXT_ECH = 0xFE0D

cdef enum:
    _MAX_CRYPTO = 64 * 1024
# quic.py uses ietf_frames only where its MAX_CRYPTO_BYTES is this one.
MAX_CRYPTO_BYTES = _MAX_CRYPTO


cdef inline bint _grease(unsigned int v) noexcept:
    """RFC 8701: 0x0a0a, 0x1a1a ... 0xfafa (tls.GREASE)."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


cdef inline unsigned int _u16(const unsigned char *b) noexcept:
    return (b[0] << 8) | b[1]


cdef object _tls_err(str field, str detail):
    return MalformedError("tls", field, detail)


cdef object _client_hello(tuple values):
    """``ClientHello(*values)``: its slots set directly (the frozen dataclass's ``__init__`` makes
    a Python-level ``object.__setattr__`` call per field: two thirds of the parse's time)."""
    global _ClientHello, _FIELDS
    cdef Py_ssize_t i
    if _ClientHello is None:
        from dataclasses import fields

        from .inspect.tls import ClientHello

        names = tuple(f.name for f in fields(ClientHello))
        plain = not hasattr(ClientHello, "__post_init__") and names == ClientHello.__slots__
        _FIELDS = names if plain and len(names) == len(values) else ()
        _ClientHello = ClientHello
    if not _FIELDS:  # a ClientHello this module does not know how to make: its own constructor
        return _ClientHello(*values)
    hello = _ClientHello.__new__(_ClientHello)
    for i in range(len(values)):
        PyObject_GenericSetAttr(hello, _FIELDS[i], values[i])
    return hello


cdef Py_ssize_t _list_body(const unsigned char *b, Py_ssize_t start, Py_ssize_t end, str field, str what) except -1:
    cdef Py_ssize_t list_len, pos
    if end - start < 2:
        raise _tls_err(field, f"missing {what} list length")
    list_len = _u16(b + start)
    pos = start + 2
    if pos + list_len != end:
        raise _tls_err(field, f"list length {list_len} does not fill the extension ({end - pos} bytes)")
    if list_len == 0:
        raise _tls_err(field, f"empty {what} list")
    return pos


cdef object _server_name(const unsigned char *b, Py_ssize_t start, Py_ssize_t end):
    cdef str field = "extension.server_name"
    cdef Py_ssize_t pos = _list_body(b, start, end, field, "server name")
    cdef Py_ssize_t name_len
    cdef unsigned int name_type
    sni = None
    while pos < end:
        if pos + 3 > end:
            raise _tls_err(field, "truncated server name entry")
        name_type = b[pos]
        name_len = _u16(b + pos + 1)
        pos += 3
        if pos + name_len > end:
            raise _tls_err(field, "server name overruns the list")
        if name_type == 0 and sni is None:
            if name_len == 0:
                raise _tls_err(field, "empty host_name")
            sni = normalize_hostname(PyBytes_FromStringAndSize(<const char *>b + pos, name_len)) or None
        pos += name_len
    return sni


cdef tuple _alpn(const unsigned char *b, Py_ssize_t start, Py_ssize_t end):
    cdef str field = "extension.alpn"
    cdef Py_ssize_t pos = _list_body(b, start, end, field, "protocol name")
    cdef Py_ssize_t plen
    cdef list names = []
    while pos < end:
        plen = b[pos]
        pos += 1
        if plen == 0:
            raise _tls_err(field, "empty protocol name")
        if pos + plen > end:
            raise _tls_err(field, "protocol name overruns the list")
        names.append(PyBytes_FromStringAndSize(<const char *>b + pos, plen).decode("ascii", "backslashreplace"))
        pos += plen
    return tuple(names)


cdef bytes _signature_algorithms(const unsigned char *b, Py_ssize_t start, Py_ssize_t end):
    cdef Py_ssize_t stop
    if end - start < 2:
        return b""
    stop = start + 2 + _u16(b + start)
    if end < stop:
        stop = end
    stop -= (stop - start) % 2
    return PyBytes_FromStringAndSize(<const char *>b + start + 2, stop - start - 2)


cdef tuple _supported_versions(const unsigned char *b, Py_ssize_t start, Py_ssize_t end):
    cdef str field = "extension.supported_versions"
    cdef Py_ssize_t vlen, i
    cdef unsigned int v
    cdef list out = []
    if end - start < 1:
        raise _tls_err(field, "missing versions length")
    vlen = b[start]
    if vlen == 0 or vlen % 2 or start + 1 + vlen != end:
        raise _tls_err(field, f"versions length {vlen} is zero, odd, or does not fill the extension")
    i = start + 1
    while i < end:
        v = _u16(b + i)
        if not _grease(v):
            out.append(v)
        i += 2
    return tuple(out)


def parse_client_hello_message(handshake):
    """Facts from a complete ClientHello body: ``tls.parse_client_hello_message`` in C."""
    cdef bytes data = handshake if type(handshake) is bytes else bytes(handshake)
    cdef const unsigned char *b = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos, sid_len, cs_len, comp_len, ext_end, start, end, i
    cdef unsigned int legacy_version, etype, elen, bit, seen = 0
    cdef long cipher_suites
    cdef bint ech = False
    if n < 34:
        raise _tls_err("client_hello.random", f"body of {n} bytes ends before the random")
    if b[0] != 3:
        raise _tls_err("client_hello.legacy_version", f"version major {b[0]}, expected 3")
    legacy_version = _u16(b)
    pos = 34
    if pos >= n:
        raise _tls_err("client_hello.session_id", "body ends before the session id")
    sid_len = b[pos]
    if sid_len > 32:
        raise _tls_err("client_hello.session_id", f"session id length {sid_len} exceeds 32")
    pos += 1 + sid_len
    if pos + 2 > n:
        raise _tls_err("client_hello.session_id", "session id overruns the message")

    cs_len = _u16(b + pos)
    pos += 2
    if cs_len == 0 or cs_len % 2:
        raise _tls_err("client_hello.cipher_suites", f"cipher suites length {cs_len} is zero or odd")
    if pos + cs_len > n:
        raise _tls_err("client_hello.cipher_suites", "cipher suites overrun the message")
    cipher_bytes = PyBytes_FromStringAndSize(<const char *>b + pos, cs_len)
    cipher_suites = cs_len >> 1
    i = pos
    while i < pos + cs_len:
        if _grease(_u16(b + i)):
            cipher_suites -= 1
        i += 2
    pos += cs_len

    if pos >= n:
        raise _tls_err("client_hello.compression_methods", "message ends before compression methods")
    comp_len = b[pos]
    if comp_len == 0:
        raise _tls_err("client_hello.compression_methods", "empty compression methods")
    pos += 1 + comp_len
    if pos > n:
        raise _tls_err("client_hello.compression_methods", "compression methods overrun the message")

    sni = None
    cdef tuple alpn = ()
    cdef bytes alpn_first = b""
    cdef bytes sig_algs = b""
    versions = None
    ech_config_id = None
    cdef list ext_types = []
    if pos < n:  # pre-TLS-1.2 clients may omit the extensions block entirely
        if pos + 2 > n:
            raise _tls_err("client_hello.extensions", "truncated extensions length")
        ext_end = pos + 2 + _u16(b + pos)
        pos += 2
        if ext_end > n:
            raise _tls_err("client_hello.extensions", "extensions overrun the message")
        while pos < ext_end:
            if pos + 4 > ext_end:
                raise _tls_err("extension.header", "truncated extension header")
            etype = _u16(b + pos)
            elen = _u16(b + pos + 2)
            start = pos + 4
            end = start + elen
            if end > ext_end:
                raise _tls_err("extension.length", f"extension {etype:#06x} overruns the extensions block")
            pos = end
            if _grease(etype):
                continue
            ext_types.append(etype)
            if etype == EXT_SERVER_NAME:
                bit = 1
            elif etype == EXT_ALPN:
                bit = 2
            elif etype == EXT_SIGNATURE_ALGORITHMS:
                bit = 4
            elif etype == EXT_SUPPORTED_VERSIONS:
                bit = 8
            elif etype == EXT_ECH:
                bit = 16
            else:
                continue
            if seen & bit:
                continue  # duplicates are forbidden; the first occurrence is the one we report
            seen |= bit
            if bit == 1:
                sni = _server_name(b, start, end)
            elif bit == 2:
                alpn = _alpn(b, start, end)
                alpn_first = PyBytes_FromStringAndSize(<const char *>b + start + 3, b[start + 2])
            elif bit == 4:
                sig_algs = _signature_algorithms(b, start, end)
            elif bit == 8:
                versions = _supported_versions(b, start, end)
            else:
                ech = True
                ech_config_id = b[start + 5] if end - start >= 6 and b[start] == 0 else None
    return _client_hello((
        sni,
        alpn,
        versions if versions is not None else (legacy_version,),
        legacy_version,
        ech,
        cipher_suites,
        tuple(ext_types),
        ech_config_id,
        cipher_bytes,
        sig_algs,
        alpn_first,
    ))


# --- QUIC facts ---------------------------------------------------------------------------------

cdef object _QuicFacts = None  # classifier.inspect.quic.QuicFacts, imported on first use
cdef tuple _QUIC_FIELDS = ()  # its field names, in order, when its slots can be set directly


def quic_facts(tuple values):
    """``QuicFacts(*values)`` (all nine fields): its slots set directly, as ``_client_hello`` sets
    a ClientHello's (the frozen dataclass's ``__init__`` makes a Python-level
    ``object.__setattr__`` call per field: a sixth of a QUIC flow's inspection time)."""
    global _QuicFacts, _QUIC_FIELDS
    cdef Py_ssize_t i
    if _QuicFacts is None:
        from dataclasses import fields

        from .inspect.quic import QuicFacts

        names = tuple(f.name for f in fields(QuicFacts))
        plain = not hasattr(QuicFacts, "__post_init__") and names == QuicFacts.__slots__
        _QUIC_FIELDS = names if plain else ()
        _QuicFacts = QuicFacts
    if len(values) != len(_QUIC_FIELDS):  # a QuicFacts this module does not know how to make
        return _QuicFacts(*values)
    facts = _QuicFacts.__new__(_QuicFacts)
    for i in range(len(values)):
        PyObject_GenericSetAttr(facts, _QUIC_FIELDS[i], values[i])
    return facts


# --- QUIC Initial frames ------------------------------------------------------------------------


cdef object _quic_err(str field, str detail):
    return MalformedError("quic", field, detail)


cdef Py_ssize_t _varint(const unsigned char *b, Py_ssize_t pos, Py_ssize_t end, str field,
                        unsigned long long *value) except -1:
    """RFC 9000 section 16 integer at ``pos`` into ``value``: the position after it."""
    cdef unsigned int first
    cdef Py_ssize_t size, i
    cdef unsigned long long v
    if pos >= end:
        raise _quic_err(field, "truncated variable-length integer")
    first = b[pos]
    size = 1 << (first >> 6)
    if pos + size > end:
        raise _quic_err(field, "truncated variable-length integer")
    v = first & 0x3F
    for i in range(pos + 1, pos + size):
        v = (v << 8) | b[i]
    value[0] = v
    return pos + size


cdef Py_ssize_t _crypto_frame(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, list out) except -1:
    cdef unsigned long long offset, length
    pos = _varint(b, pos, n, "frame.crypto", &offset)
    pos = _varint(b, pos, n, "frame.crypto", &length)
    if length > <unsigned long long>(n - pos):
        raise _quic_err("frame.crypto", f"CRYPTO data of {length} bytes overruns the packet")
    if offset + length > _MAX_CRYPTO:
        raise _quic_err(
            "crypto.offset", f"CRYPTO data up to offset {offset + length} exceeds {_MAX_CRYPTO} bytes"
        )
    out.append((offset, PyBytes_FromStringAndSize(<const char *>b + pos, <Py_ssize_t>length)))
    return pos + <Py_ssize_t>length


cdef enum:
    _FROM_ZERO_MAX = 64  # chunks joined here; a packet with more goes to the reference


def from_zero(list chunks):
    """The chunks joined if they tile one range from offset 0, else None: ``quic._from_zero`` in C.

    A Chrome Initial scatters its ClientHello over a dozen CRYPTO frames: the reference sorts,
    walks and joins them in a dozen Python steps each. Here the offsets are sorted (stably, as
    ``sorted``) in a C array and the data copied once. Chunks that are not (int, bytes) pairs of
    the frame walks, or more than ``_FROM_ZERO_MAX`` of them, are left to the reference.
    """
    cdef Py_ssize_t n = len(chunks)
    cdef Py_ssize_t order[_FROM_ZERO_MAX]
    cdef Py_ssize_t offsets[_FROM_ZERO_MAX]
    cdef Py_ssize_t i, j, k, end, at
    cdef tuple chunk
    cdef bytes data, out
    if n == 0:
        return b""
    if n > _FROM_ZERO_MAX:
        return _reference_from_zero(chunks)
    for i in range(n):
        item = chunks[i]
        if type(item) is not tuple or len(item) != 2 or type(item[0]) is not int or type(item[1]) is not bytes:
            return _reference_from_zero(chunks)
        chunk = <tuple>item
        if not 0 <= chunk[0] <= _MAX_CRYPTO:
            return None  # no tiling from 0 within the bound reaches it
        offsets[i] = chunk[0]
        # insertion after every equal offset: the order sorted() gives
        j = i
        while j > 0 and offsets[order[j - 1]] > offsets[i]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i
    if n == 1:
        data = <bytes>(<tuple>chunks[0])[1]
        return data if offsets[0] == 0 and PyBytes_GET_SIZE(data) <= _MAX_CRYPTO else None
    end = 0
    for k in range(n):
        i = order[k]
        if offsets[i] != end:
            return None
        end += PyBytes_GET_SIZE(<bytes>(<tuple>chunks[i])[1])
        if end > _MAX_CRYPTO:
            return None
    out = PyBytes_FromStringAndSize(NULL, end)
    cdef char *p = PyBytes_AS_STRING(out)
    at = 0
    for k in range(n):
        data = <bytes>(<tuple>chunks[order[k]])[1]
        memcpy(p + at, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        at += PyBytes_GET_SIZE(data)
    return out


cdef object _reference_from_zero(list chunks):
    from .inspect.quic import _from_zero

    return _from_zero(chunks)


def ietf_frames(payload):
    """CRYPTO (offset, data) of a decrypted Initial payload: ``quic._ietf_frames`` in C."""
    cdef bytes data = payload if type(payload) is bytes else bytes(payload)
    cdef const unsigned char *b = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0
    cdef unsigned int ftype
    cdef unsigned long long count, ignored, k
    cdef list out = []
    while pos < n:
        ftype = b[pos]
        if ftype == 0x06:  # CRYPTO
            pos = _crypto_frame(b, pos + 1, n, out)
        elif ftype == 0x00:  # PADDING
            pos += 1
            while pos < n and b[pos] == 0:
                pos += 1
        elif ftype == 0x01:  # PING
            pos += 1
        elif ftype == 0x02 or ftype == 0x03:  # ACK, ACK_ECN
            pos = _varint(b, pos + 1, n, "frame.ack", &ignored)
            pos = _varint(b, pos, n, "frame.ack", &ignored)
            pos = _varint(b, pos, n, "frame.ack", &count)
            pos = _varint(b, pos, n, "frame.ack", &ignored)
            if count > <unsigned long long>(n - pos) // 2:
                raise _quic_err("frame.ack", f"ACK range count {count} overruns the packet")
            for k in range(count * 2):
                pos = _varint(b, pos, n, "frame.ack", &ignored)
            if ftype == 0x03:
                for k in range(3):
                    pos = _varint(b, pos, n, "frame.ack", &ignored)
        elif ftype == 0x1C or ftype == 0x1D:  # CONNECTION_CLOSE: nothing after it matters
            break
        else:
            raise _quic_err("frame.type", f"frame type {ftype:#04x} is not allowed in an Initial packet")
    return out
