# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled twin of ``classifier.inspect.dns.parse_message_py`` (``dns.parse_message``).

Every DNS message of a scan is parsed, and in ``scan --workers`` by every worker (each keeps the
same DNS state), so this runs once per message per process. Same checks in the same order, the
same error fields and texts, the same ``Message``/``Question``/``Record`` values; names whose bytes
are all plain ASCII without a dot inside a label are lowercased here, any other goes through the
Python ``normalize_hostname``/``escape_label``. tests/test_inspect_dns.py compares both twins on
every DNS message of the real captures and on damaged ones.

Imported by classifier/inspect/dns.py at its end (through ``compiled_function``), once the
dataclasses and helpers it takes from there are defined.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.object cimport PyObject_GenericSetAttr
from cpython.unicode cimport PyUnicode_DecodeASCII

import _socket  # not socket: the same function, without socket's import (its enums, selectors) at start-up

from classifier.inspect import escape_label, normalize_hostname
from classifier.inspect.dns import (
    CLASS_IN,
    MAX_NAME_LENGTH,
    MAX_POINTER_HOPS,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_DNAME,
    TYPE_NS,
    TYPE_PTR,
    Message,
    Question,
    Record,
    _err,
    parse_message_py,
)

cdef long _A = TYPE_A
cdef long _AAAA = TYPE_AAAA
cdef long _CNAME = TYPE_CNAME
cdef long _NS = TYPE_NS
cdef long _PTR = TYPE_PTR
cdef long _DNAME = TYPE_DNAME
cdef long _IN = CLASS_IN
cdef long _MAXLEN = MAX_NAME_LENGTH
cdef long _MAXHOPS = MAX_POINTER_HOPS
if _MAXLEN > 255:
    raise ImportError("classifier._dnsparse: names longer than its buffer")

_new = object.__new__
_inet_ntop = _socket.inet_ntop
_AF_INET6 = _socket.AF_INET6

cdef str _S_NAME = "name"
cdef str _S_QTYPE = "qtype"
cdef str _S_QCLASS = "qclass"
cdef str _S_RTYPE = "rtype"
cdef str _S_RCLASS = "rclass"
cdef str _S_TTL = "ttl"
cdef str _S_VALUE = "value"
cdef str _S_RDATA = "rdata"
cdef str _S_ID = "id"
cdef str _S_IS_RESPONSE = "is_response"
cdef str _S_OPCODE = "opcode"
cdef str _S_RCODE = "rcode"
cdef str _S_TRUNCATED = "truncated"
cdef str _S_QUESTIONS = "questions"
cdef str _S_ANSWERS = "answers"
cdef str _S_AUTHORITIES = "authorities"
cdef str _S_ADDITIONALS = "additionals"

# The fields set below, per dataclass: a dataclass with any other fields (edited since this was
# built) makes the import fail, and ``compiled_function`` then picks the Python reference.
for _cls, _names in (
    (Question, ("name", "qtype", "qclass")),
    (Record, ("name", "rtype", "rclass", "ttl", "value", "rdata")),
    (Message, ("id", "is_response", "opcode", "rcode", "truncated", "questions", "answers",
               "authorities", "additionals")),
):
    if tuple(_cls.__dataclass_fields__) != _names:
        raise ImportError(f"classifier._dnsparse: {_cls.__name__} has fields it does not set")


cdef inline object _frozen(cls):
    """An instance of a frozen dataclass whose fields the caller sets (as its ``__init__`` would,
    through ``object.__setattr__``), without the Python-level ``__init__``."""
    return _new(cls)


cdef inline void _set(obj, str field, value) except *:
    PyObject_GenericSetAttr(obj, field, value)


cdef object _text(list labels):
    """The text of a name's own labels, as the Python ``_decode`` makes it."""
    cdef unsigned char buf[256]
    cdef Py_ssize_t i, out = 0, lab, k
    cdef unsigned char c
    cdef bint plain = True
    for lab in range(len(labels)):
        label = <bytes>labels[lab]
        k = len(label)
        if lab:
            buf[out] = 0x2E
            out += 1
        for i in range(k):
            c = (<const unsigned char *>label)[i]
            if c < 0x21 or c > 0x7E or c == 0x5C or c == 0x2E:
                plain = False
                break
            if 0x41 <= c <= 0x5A:
                c += 0x20
            buf[out] = c
            out += 1
        if not plain:
            break
    if plain:
        return PyUnicode_DecodeASCII(<const char *>buf, out, NULL)
    raw = b".".join(labels)
    if raw.count(b".") == len(labels) - 1 or not labels:
        return normalize_hostname(raw)
    return ".".join([escape_label(label) for label in labels])


cdef tuple _decode(bytes data, Py_ssize_t offset, dict cache):
    """(name, offset after it) at ``offset``: ``dns._decode`` with a cache."""
    cdef const unsigned char *p = <const unsigned char *>data
    cdef Py_ssize_t n = len(data)
    cdef Py_ssize_t pos, seq_start, after = -1, stop, target
    cdef long wire = 1, hops = 0, length, kind, s_wire, s_hops
    cdef list labels = []
    suffix = None
    if offset < 0 or offset >= n:
        raise _err("name.offset", f"name starts at {offset}, outside the {n}-byte message")
    pos = seq_start = offset
    while True:
        if pos >= n:
            raise _err("name.label", "name runs past the end of the message")
        length = p[pos]
        if length == 0:
            if after < 0:
                after = pos + 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise _err("name.pointer", "truncated compression pointer")
            target = ((length & 0x3F) << 8) | p[pos + 1]
            if target >= seq_start:
                raise _err("name.pointer", f"pointer at {pos} to {target} does not point backwards")
            if after < 0:
                after = pos + 2
            hops += 1
            if hops > _MAXHOPS:
                raise _err("name.pointer", "too many compression pointers")
            hit = cache.get(target)
            if hit is not None:
                suffix = (<tuple>hit)[0]
                s_wire = (<tuple>hit)[1]
                s_hops = (<tuple>hit)[2]
                wire += s_wire - 1
                hops += s_hops
                if wire > _MAXLEN:
                    raise _err("name.length", f"name longer than {MAX_NAME_LENGTH} bytes")
                if hops > _MAXHOPS:
                    raise _err("name.pointer", "too many compression pointers")
                break
            pos = seq_start = target
            continue
        if kind:
            raise _err("name.label", f"label type {kind:#04x} is not supported")
        pos += 1
        stop = pos + length
        if stop > n:
            raise _err("name.label", "label runs past the end of the message")
        wire += length + 1
        if wire > _MAXLEN:
            raise _err("name.length", f"name longer than {MAX_NAME_LENGTH} bytes")
        labels.append(PyBytes_FromStringAndSize(<const char *>p + pos, length))
        pos = stop
    text = _text(labels)
    if suffix is not None:
        text = f"{text}.{suffix}" if text and suffix else text or suffix
    cache[offset] = (text, wire, hops)
    return text, after


cdef inline long _u16(const unsigned char *b) noexcept:
    return (b[0] << 8) | b[1]


cdef object _ipv4(const unsigned char *b):
    return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"


cdef tuple _records(bytes data, Py_ssize_t pos, long count, str section, dict cache):
    """(records, offset after them): ``dns._records``."""
    cdef const unsigned char *p = <const unsigned char *>data
    cdef Py_ssize_t n = len(data), start, i
    cdef long rtype, rclass, rdlength
    cdef unsigned long ttl
    cdef list out = []
    for i in range(count):
        if pos >= n:
            raise _err(f"{section}.count", f"header says {count} records, message holds {i}")
        name, after = _decode(data, pos, cache)
        pos = after
        if pos + 10 > n:
            raise _err(f"{section}.fixed", "message ends inside type/class/ttl/rdlength")
        rtype = _u16(p + pos)
        rclass = _u16(p + pos + 2)
        ttl = (<unsigned long>p[pos + 4] << 24) | (<unsigned long>p[pos + 5] << 16) | (<unsigned long>p[pos + 6] << 8) | p[pos + 7]
        rdlength = _u16(p + pos + 8)
        start = pos + 10
        pos = start + rdlength
        if pos > n:
            raise _err(f"{section}.rdlength", f"rdata of {rdlength} bytes overruns the message")
        rdata = PyBytes_FromStringAndSize(<const char *>p + start, rdlength)
        value = None
        if rtype == _A and rclass & 0x7FFF == _IN:  # low 15 bits: mDNS sets the top one
            if rdlength != 4:
                raise _err(f"{section}.rdlength", f"A record with rdlength {rdlength}")
            value = _ipv4(p + start)
        elif rtype == _AAAA and rclass & 0x7FFF == _IN:
            if rdlength != 16:
                raise _err(f"{section}.rdlength", f"AAAA record with rdlength {rdlength}")
            value = _inet_ntop(_AF_INET6, rdata)
        elif rtype == _CNAME or rtype == _NS or rtype == _PTR or rtype == _DNAME:
            if rdlength == 0:
                raise _err(f"{section}.rdata", "empty rdata where a name is expected")
            value, end = _decode(data, start, cache)
            if end > pos:
                raise _err(f"{section}.rdata", "name runs past the end of its rdata")
        rec = _frozen(Record)
        _set(rec, _S_NAME, name)
        _set(rec, _S_RTYPE, rtype)
        _set(rec, _S_RCLASS, rclass)
        _set(rec, _S_TTL, ttl)
        _set(rec, _S_VALUE, value)
        _set(rec, _S_RDATA, rdata)
        out.append(rec)
    return tuple(out), pos


def parse_message(data):
    """``dns.parse_message_py``, compiled: one DNS message, or ``MalformedError``."""
    cdef bytes b
    cdef const unsigned char *p
    cdef Py_ssize_t n, pos, i
    cdef long flags, qdcount
    cdef dict cache = {}
    if type(data) is not bytes:  # (a memoryview's slices would be kept as they are)
        return parse_message_py(data)
    b = data
    p = <const unsigned char *>b
    n = len(b)
    if n < 12:
        raise _err("header.length", f"{n} bytes, a header needs 12")
    flags = _u16(p + 2)
    qdcount = _u16(p + 4)
    pos = 12
    questions = []
    for i in range(qdcount):
        if pos >= n:
            raise _err("question.count", f"header says {qdcount} questions, message holds {i}")
        name, after = _decode(b, pos, cache)
        pos = after
        if pos + 4 > n:
            raise _err("question.fixed", "message ends inside qtype/qclass")
        q = _frozen(Question)
        _set(q, _S_NAME, name)
        _set(q, _S_QTYPE, _u16(p + pos))
        _set(q, _S_QCLASS, _u16(p + pos + 2))
        pos += 4
        questions.append(q)
    answers, pos = _records(b, pos, _u16(p + 6), "answer", cache)
    authorities, pos = _records(b, pos, _u16(p + 8), "authority", cache)
    additionals, pos = _records(b, pos, _u16(p + 10), "additional", cache)
    msg = _frozen(Message)
    _set(msg, _S_ID, _u16(p))
    _set(msg, _S_IS_RESPONSE, bool(flags & 0x8000))
    _set(msg, _S_OPCODE, (flags >> 11) & 0xF)
    _set(msg, _S_RCODE, flags & 0xF)
    _set(msg, _S_TRUNCATED, bool(flags & 0x0200))
    _set(msg, _S_QUESTIONS, tuple(questions))
    _set(msg, _S_ANSWERS, answers)
    _set(msg, _S_AUTHORITIES, authorities)
    _set(msg, _S_ADDITIONALS, additionals)
    return msg
