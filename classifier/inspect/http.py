"""HTTP/1.x request inspection.

Written by hand rather than with ``dpkt.http`` because the request arrives a TCP segment at a
time: we need a "need more bytes" answer (``None``) until the header block ends, an early
``MalformedError`` naming the bad field as soon as the request line is visibly wrong, and
tolerance of what real clients send (bare LF line ends, odd whitespace, proxy forms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from classifier.errors import MalformedError
from classifier.inspect import normalize_hostname

__all__ = [
    "MAX_HEADER_BYTES",
    "METHODS",
    "HttpRequest",
    "looks_like_http_request",
    "parse_http_request",
]

MAX_HEADER_BYTES = 16 * 1024

METHODS: frozenset[bytes] = frozenset(
    {
        b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
        # WebDAV / CalDAV
        b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"REPORT",
        b"SEARCH", b"MKCALENDAR",
    }
)  # fmt: skip

_TOKENS = tuple(m + b" " for m in METHODS)
_MAX_TOKEN = max(len(t) for t in _TOKENS)
# Every proper prefix of "METHOD ": a first segment this short might still become a request.
_PREFIXES = frozenset(t[:i] for t in _TOKENS for i in range(1, len(t)))
# Every non-empty prefix of a method name, the name itself included.
_METHOD_PREFIXES = frozenset(m[:i] for m in METHODS for i in range(1, len(m) + 1))

_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]\Z")
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The parts of a request head that say where the client is going."""

    method: str
    target: str  # request-target as sent (non-printable bytes escaped)
    version: str  # "HTTP/1.1"
    host: str | None  # Host header host, no port, normalized
    proxy_host: str | None  # host of a CONNECT or absolute-URI target, no port, normalized
    user_agent: str | None


def looks_like_http_request(data: bytes) -> bool:
    """True if ``data`` starts with a known method and a space, or is a prefix of one (``b"GE"``)."""
    if data.startswith(_TOKENS):
        return True
    return len(data) < _MAX_TOKEN and data in _PREFIXES


def _err(field: str, detail: str) -> MalformedError:
    return MalformedError("http", field, detail)


def _header_end(data: bytes) -> tuple[int, int]:
    """(end of the last header line, start of the body), or (-1, -1) if the block is not over.

    The block ends at the first empty line; CRLF and bare LF are both accepted.
    """
    crlf = data.find(b"\n\r\n", 0, MAX_HEADER_BYTES)
    lf = data.find(b"\n\n", 0, MAX_HEADER_BYTES)
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 3
    return -1, -1


def _may_start_request(data: bytes) -> bool:
    """Whether bytes without a line end yet can still begin a request line that
    :func:`_request_line` accepts, with the same whitespace tolerance (blanks before the method,
    any whitespace after it): a stream must not be rejected early that is accepted when whole."""
    head = data.lstrip()[:_MAX_TOKEN]
    words = head.split(None, 1)
    if not words:
        return True
    if len(words) == 2 or head[-1:].isspace():  # the method word is complete
        return words[0] in METHODS
    return words[0] in _METHOD_PREFIXES


def _request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    if line.endswith(b"\r"):
        line = line[:-1]
    parts = line.split()
    if len(parts) != 3:
        if parts and parts[0] not in METHODS:
            raise _err("request_line.method", "not a known HTTP method")
        raise _err("request_line", f"expected 'METHOD target HTTP/x.y', got {len(parts)} words")
    method, target, version = parts
    if method not in METHODS:
        raise _err("request_line.method", "not a known HTTP method")
    if not _VERSION.match(version):
        raise _err("request_line.version", "not HTTP/x.y")
    return method, target, version


def _authority_host(raw: bytes) -> str | None:
    """Host of an authority (``[userinfo@]host[:port]``), port and IPv6 brackets removed."""
    raw = raw.strip(b" \t")
    at = raw.rfind(b"@")
    if at >= 0:
        raw = raw[at + 1 :]
    if raw.startswith(b"["):
        close = raw.find(b"]")
        host = raw[1:close] if close >= 0 else raw[1:]
    elif raw.count(b":") == 1:
        host = raw.partition(b":")[0]
    else:  # no port, or a bare IPv6 address that forgot its brackets
        host = raw
    return normalize_hostname(host) or None


def parse_http_request(data: bytes) -> HttpRequest | None:
    """Facts from the head of an HTTP/1.x request, or ``None`` until the header block has ended.

    Raises ``MalformedError`` as soon as the request line is complete and wrong, when the
    first bytes cannot start a request, or when the head does not end within 16 KiB.
    """
    head_end, _ = _header_end(data)
    if head_end < 0:
        nl = data.find(b"\n", 0, MAX_HEADER_BYTES)
        if nl >= 0:
            _request_line(data[:nl])  # complete and wrong fails now, not 16 KiB later
        elif not _may_start_request(data):
            raise _err("request_line.method", "does not start with a known HTTP method")
        if len(data) >= MAX_HEADER_BYTES:
            raise _err("headers", f"no end of header block within {MAX_HEADER_BYTES} bytes")
        return None

    lines = data[:head_end].split(b"\n")
    method, target, version = _request_line(lines[0])

    host_raw: bytes | None = None
    ua_raw: bytes | None = None
    for line in lines[1:]:
        if not line or line[0] in b" \t":  # obsolete line folding: a continuation, ignore it
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            continue  # not a header; tolerated, it says nothing we need
        name = name.strip(b" \t").lower()
        if name == b"host" and host_raw is None:  # first Host wins
            host_raw = value
        elif name == b"user-agent" and ua_raw is None:
            ua_raw = value
        if host_raw is not None and ua_raw is not None:
            break

    proxy_host: str | None = None
    if method == b"CONNECT":
        proxy_host = _authority_host(target)
    elif not target.startswith(b"/"):
        m = _ABSOLUTE.match(target)
        if m:
            proxy_host = _authority_host(m.group(1))

    user_agent = None
    if ua_raw is not None:
        user_agent = ua_raw.strip(b" \t\r").decode("ascii", "backslashreplace")
    return HttpRequest(
        method=method.decode("ascii"),
        target=target.decode("ascii", "backslashreplace"),
        version=version.decode("ascii"),
        host=_authority_host(host_raw.rstrip(b"\r")) if host_raw is not None else None,
        proxy_host=proxy_host,
        user_agent=user_agent,
    )
