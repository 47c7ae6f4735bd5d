"""Where TLS starts after a prelude: SOCKS, STARTTLS, PostgreSQL SSLRequest, RDP X.224.

Proxies and mail, directory and database clients send something else before their ClientHello.
These are pure functions of the first bytes of each direction: given the client's (and, for
protocols whose server speaks first, the server's) bytes, they say which prelude this is, where
in the client stream the TLS records begin, and what destination a SOCKS client asked for. They
never look at ports, and they read at most ``MAX_PRELUDE_BYTES`` of the client stream: a prelude
longer than that is not one we wait for.

The answer is ``None`` while the bytes so far could still become a prelude, ``NOT_A_PRELUDE`` when
they cannot, or a :class:`Prelude`. The caller then parses a ClientHello at ``tls_offset``; if the
bytes there are not TLS, the flow is given up as any other unknown protocol.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from classifier.inspect import normalize_hostname

__all__ = [
    "MAX_PRELUDE_BYTES",
    "NOT_A_PRELUDE",
    "Prelude",
    "find_tls_start",
    "server_may_offer_starttls",
]

MAX_PRELUDE_BYTES = 4096  # client bytes before the ClientHello: real preludes need a few hundred
_MAX_LINES = 16  # client command lines before STARTTLS (SMTP EHLO, IMAP CAPABILITY, ...)

SOCKS4 = "socks4"
SOCKS5 = "socks5"


@dataclass(frozen=True, slots=True)
class Prelude:
    """A recognised prelude: its kind, where TLS begins in the client stream, the SOCKS target."""

    kind: str  # socks4 | socks5 | smtp | imap | pop3 | ftp | xmpp | ldap | postgres | rdp
    tls_offset: int
    host: str | None = None  # SOCKS: the host name or address the client asked for
    port: int | None = None  # SOCKS: the port it asked for

    @property
    def target(self) -> str | None:
        """``host:port`` a proxy client asked for (None for the other preludes)."""
        if self.host is None:
            return None
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


NOT_A_PRELUDE = Prelude("none", -1)

# Server greetings of the line protocols whose client may switch to TLS after a command.
_BANNERS = ((b"220", ("smtp", "ftp")), (b"* OK", ("imap",)), (b"+OK", ("pop3",)))
# The command that switches each line protocol to TLS (RFC 3207, 2595, 4217, 9051).
_STARTTLS_LINE = {
    "smtp": re.compile(rb"(?i)STARTTLS"),
    "imap": re.compile(rb"(?i)\S+ STARTTLS"),
    "pop3": re.compile(rb"(?i)STLS"),
    "ftp": re.compile(rb"(?i)AUTH (TLS|SSL|TLS-C)"),
}
_XMPP_STARTTLS = re.compile(rb"<starttls\b[^>]*?(/>|>\s*</starttls>)")
_LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"  # RFC 4511 4.14.1
_PG_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # length 8, code 80877103
_PG_GSSENC_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x30"


def server_may_offer_starttls(server: bytes) -> bool | None:
    """Whether a server's first bytes are the greeting of a protocol with STARTTLS (None: too few)."""
    if len(server) < 4:
        return None
    return any(server.startswith(tag) for tag, _ in _BANNERS)


def find_tls_start(client: bytes, server: bytes = b"") -> Prelude | None:
    """The prelude in the client's first bytes (``server``: the server's first bytes, if any)."""
    if not client:
        return None
    first = client[0]
    if first == 0x04:
        return _socks4(client)
    if first == 0x05:
        return _socks5(client)
    if first == 0x03:
        return _rdp(client)
    if first == 0x30:
        return _ldap(client)
    if first == 0x00:
        return _postgres(client)
    if first == 0x3C:  # "<"
        return _xmpp(client)
    protos = _line_protocols(server)
    if protos:
        return _starttls_lines(client, protos)
    return NOT_A_PRELUDE


# -- SOCKS -------------------------------------------------------------------------------------


def _cstring(data: bytes, start: int, limit: int = 255) -> int | None:
    """Index of the NUL ending a C string at ``start`` (None: not yet; -1: too long)."""
    end = data.find(b"\x00", start, start + limit + 1)
    if end >= 0:
        return end
    return None if len(data) - start <= limit else -1


def _socks4(data: bytes) -> Prelude | None:
    """SOCKS4/4a CONNECT: ver 4, cmd 1, port, IPv4, user id NUL, (4a: host NUL when IP is 0.0.0.x)."""
    if len(data) < 2:
        return None
    if data[1] != 1:  # only CONNECT carries a TLS stream from the client
        return NOT_A_PRELUDE
    if len(data) < 9:
        return None
    port = (data[2] << 8) | data[3]
    addr = data[4:8]
    end = _cstring(data, 8)
    if end is None:
        return None
    if end < 0:
        return NOT_A_PRELUDE
    if addr[:3] == b"\x00\x00\x00" and addr[3] != 0:  # SOCKS4a: the name follows the user id
        name_end = _cstring(data, end + 1)
        if name_end is None:
            return None
        if name_end <= end + 1:
            return NOT_A_PRELUDE
        host = normalize_hostname(data[end + 1 : name_end])
        return Prelude(SOCKS4, name_end + 1, host, port)
    return Prelude(SOCKS4, end + 1, str(ipaddress.IPv4Address(addr)), port)


def _socks5(data: bytes) -> Prelude | None:
    """SOCKS5 (RFC 1928): greeting, optional username/password (RFC 1929), CONNECT request."""
    n = len(data)
    if n < 2:
        return None
    nmethods = data[1]
    if nmethods == 0:
        return NOT_A_PRELUDE
    pos = 2 + nmethods
    if n < pos + 1:
        return None
    if data[pos] == 0x01:  # username/password sub-negotiation, version 1
        if n < pos + 2:
            return None
        pos += 2 + data[pos + 1]
        if n < pos + 1:
            return None
        pos += 1 + data[pos]
        if n < pos + 1:
            return None
    if data[pos] != 0x05:
        return NOT_A_PRELUDE
    head = data[pos + 1 : pos + 3]
    if head != b"\x01\x00"[: len(head)]:  # CONNECT, reserved byte zero
        return NOT_A_PRELUDE
    if n < pos + 5:
        return None
    atyp = data[pos + 3]
    start = pos + 4
    if atyp == 0x01:
        end = start + 4
        host = str(ipaddress.IPv4Address(data[start:end])) if n >= end else ""
    elif atyp == 0x04:
        end = start + 16
        host = str(ipaddress.IPv6Address(data[start:end])) if n >= end else ""
    elif atyp == 0x03:
        length = data[start]
        if length == 0:
            return NOT_A_PRELUDE
        end = start + 1 + length
        host = normalize_hostname(data[start + 1 : end]) if n >= end else ""
    else:
        return NOT_A_PRELUDE
    if n < end + 2:
        return None
    port = (data[end] << 8) | data[end + 1]
    return Prelude(SOCKS5, end + 2, host, port)


# -- binary preludes ---------------------------------------------------------------------------


def _postgres(data: bytes) -> Prelude | None:
    """PostgreSQL SSLRequest (its reply is one byte, 'S'); a GSSENCRequest is not TLS."""
    probe = data[:8]
    if _PG_SSL_REQUEST.startswith(probe):
        return Prelude("postgres", 8) if len(probe) == 8 else None
    return NOT_A_PRELUDE


def _rdp(data: bytes) -> Prelude | None:
    """RDP: a TPKT (RFC 1006) holding an X.224 Connection Request, then TLS (MS-RDPBCGR 1.3.1.1)."""
    if len(data) < 7:
        return None if data[:2] in (b"\x03", b"\x03\x00") else NOT_A_PRELUDE
    length = (data[2] << 8) | data[3]
    if data[1] != 0 or length < 11 or length > 512 or data[5] & 0xF0 != 0xE0 or data[4] + 5 != length:
        return NOT_A_PRELUDE
    return Prelude("rdp", length) if len(data) >= length else None


def _ber_length(data: bytes, pos: int) -> tuple[int, int] | None:
    """(content length, content start) of a BER definite length at ``pos`` (None: not yet; -1 bad)."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0 or count > 2:
        return -1, 0
    if pos + 1 + count > len(data):
        return None
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def _ldap(data: bytes) -> Prelude | None:
    """LDAP StartTLS: an LDAPMessage whose protocolOp is an ExtendedRequest naming the StartTLS OID."""
    got = _ber_length(data, 1)
    if got is None:
        return None
    length, start = got
    if length < 0 or length > 256:
        return NOT_A_PRELUDE
    end = start + length
    if len(data) < end:
        return None
    message = data[start:end]
    # messageID INTEGER, then [APPLICATION 23] ExtendedRequest with requestName [0] (the OID text)
    if len(message) < 3 or message[0] != 0x02 or 2 + message[1] >= len(message):
        return NOT_A_PRELUDE
    op = 2 + message[1]
    if message[op] != 0x77:
        return NOT_A_PRELUDE
    body = _ber_length(message, op + 1)
    if body is None or body[0] < 0:
        return NOT_A_PRELUDE
    name = _ber_length(message, body[1] + 1)
    if message[body[1] : body[1] + 1] != b"\x80" or name is None or name[0] < 0:
        return NOT_A_PRELUDE
    if message[name[1] : name[1] + name[0]] != _LDAP_STARTTLS_OID:
        return NOT_A_PRELUDE
    return Prelude("ldap", end)


# -- line protocols ----------------------------------------------------------------------------


def _line_protocols(server: bytes) -> tuple[str, ...]:
    for tag, protos in _BANNERS:
        if server.startswith(tag):
            return protos
    return ()


def _starttls_lines(data: bytes, protos: tuple[str, ...]) -> Prelude | None:
    """Client command lines up to the one that switches to TLS (after a greeting that allows it)."""
    pos = 0
    for _ in range(_MAX_LINES):
        end = data.find(b"\n", pos, MAX_PRELUDE_BYTES)
        if end < 0:
            if len(data) - pos > 1024 or len(data) >= MAX_PRELUDE_BYTES:
                return NOT_A_PRELUDE
            return None
        line = data[pos:end].rstrip(b"\r")
        if not line.isascii():
            return NOT_A_PRELUDE
        pos = end + 1
        for proto in protos:
            if _STARTTLS_LINE[proto].fullmatch(line):
                return Prelude(proto, pos)
    return NOT_A_PRELUDE


def _xmpp(data: bytes) -> Prelude | None:
    """XMPP (RFC 6120 5.4): stream header, then <starttls/>; TLS starts after that element."""
    window = data[:MAX_PRELUDE_BYTES]
    if not (window.startswith(b"<?xml") or window.startswith(b"<stream:stream")):
        if b"<?xml".startswith(window) or b"<stream:stream".startswith(window):
            return None  # too few bytes to tell yet
        return NOT_A_PRELUDE
    match = _XMPP_STARTTLS.search(window)
    if match is None:
        return NOT_A_PRELUDE if len(data) >= MAX_PRELUDE_BYTES else None
    return Prelude("xmpp", match.end())
