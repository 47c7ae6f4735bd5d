"""Tests for classifier.inspect.prelude: where TLS starts after SOCKS, STARTTLS, SSLRequest, X.224."""

from __future__ import annotations

import struct

import pytest

from classifier.inspect.prelude import (
    MAX_PRELUDE_BYTES,
    NOT_A_PRELUDE,
    find_tls_start,
    server_may_offer_starttls,
)

HELLO = b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"  # the first bytes of a ClientHello record


def socks5_request(atyp: int, addr: bytes, port: int) -> bytes:
    return b"\x05\x01\x00" + bytes([atyp]) + addr + struct.pack(">H", port)


def ldap_starttls(message_id: int = 1) -> bytes:
    oid = b"1.3.6.1.4.1.1466.20037"
    ext = b"\x77" + bytes([len(oid) + 2]) + b"\x80" + bytes([len(oid)]) + oid
    body = b"\x02\x01" + bytes([message_id]) + ext
    return b"\x30" + bytes([len(body)]) + body


def rdp_request(cookie: bytes = b"Cookie: mstshash=user\r\n") -> bytes:
    neg = b"\x01\x00\x08\x00\x03\x00\x00\x00"  # RDP_NEG_REQ: TLS | CredSSP
    x224 = b"\xe0\x00\x00\x00\x00\x00" + cookie + neg
    return b"\x03\x00" + struct.pack(">H", 5 + len(x224)) + bytes([len(x224)]) + x224


CASES = {
    "socks4 address": (b"\x04\x01\x01\xbb\xc0\x00\x02\x07user\x00", b"", "socks4", "192.0.2.7:443"),
    "socks4a name": (
        b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00Www.Example.COM\x00",
        b"",
        "socks4",
        "www.example.com:443",
    ),
    "socks5 name": (
        b"\x05\x01\x00" + socks5_request(3, b"\x0bexample.com", 443),
        b"",
        "socks5",
        "example.com:443",
    ),
    "socks5 ipv4": (
        b"\x05\x02\x00\x02" + socks5_request(1, bytes([203, 0, 113, 9]), 8443),
        b"",
        "socks5",
        "203.0.113.9:8443",
    ),
    "socks5 ipv6 after password": (
        b"\x05\x01\x02"
        + b"\x01\x04user\x04pass"
        + socks5_request(4, bytes.fromhex("20010db8" + "00" * 11 + "01"), 443),
        b"",
        "socks5",
        "[2001:db8::1]:443",
    ),
    "smtp": (
        b"EHLO client.example\r\nSTARTTLS\r\n",
        b"220 mail.example ESMTP\r\n250-STARTTLS\r\n",
        "smtp",
        None,
    ),
    "imap": (b"a001 CAPABILITY\r\na002 starttls\r\n", b"* OK IMAP4rev1 ready\r\n", "imap", None),
    "pop3": (b"CAPA\r\nSTLS\r\n", b"+OK POP3 ready\r\n", "pop3", None),
    "ftp": (b"AUTH TLS\r\n", b"220 FTP ready\r\n", "smtp", None),  # 220 banners: SMTP and FTP alike
    "xmpp": (
        b"<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        b"",
        "xmpp",
        None,
    ),
    "ldap": (ldap_starttls(), b"", "ldap", None),
    "postgres": (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", b"", "postgres", None),
    "rdp": (rdp_request(), b"", "rdp", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_prelude_says_where_tls_starts(case):
    client, server, kind, target = CASES[case]
    found = find_tls_start(client + HELLO, server)
    if case == "ftp":  # the command names the protocol: AUTH TLS is FTP's, whatever the banner said
        kind = "ftp"
    assert found is not None and found is not NOT_A_PRELUDE, case
    assert (found.kind, found.tls_offset, found.target) == (kind, len(client), target)
    assert (client + HELLO)[found.tls_offset :] == HELLO


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_shorter_prefix_asks_for_more(case):
    """Bytes arriving one at a time: never a wrong answer, only 'not yet' until the prelude is whole."""
    client, server, _, _ = CASES[case]
    for n in range(1, len(client)):
        assert find_tls_start(client[:n], server) is None, (case, n)


@pytest.mark.parametrize(
    "data,server",
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", b""),
        (b"\x04\x02\x00\x50\xc0\x00\x02\x07\x00", b""),  # SOCKS4 BIND: no TLS stream from the client
        (b"\x05\x01\x00\x05\x02\x00\x01", b""),  # SOCKS5 UDP ASSOCIATE
        (b"\x00\x00\x00\x08\x04\xd2\x16\x30", b""),  # PostgreSQL GSSENCRequest
        (b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00", b""),  # LDAP bind request
        (b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x00\x08\x00\x00\x00\x00\x00", b""),  # X.224 CC
        (b"EHLO a\r\nMAIL FROM:<a@example.com>\r\n" * 9, b"220 mail ESMTP\r\n"),  # no STARTTLS in 16 lines
        (b"<html>", b""),
        (b"\x16\x03\x01", b""),  # TLS itself is not a prelude
    ],
)
def test_not_a_prelude(data, server):
    assert find_tls_start(data, server) is NOT_A_PRELUDE


def test_line_protocols_need_a_greeting_that_allows_starttls():
    assert find_tls_start(b"STARTTLS\r\n" + HELLO, b"") is NOT_A_PRELUDE  # no banner: not a prelude
    assert find_tls_start(b"STARTTLS\r\n" + HELLO, b"SSH-2.0-x\r\n") is NOT_A_PRELUDE
    assert server_may_offer_starttls(b"220 ") is True
    assert server_may_offer_starttls(b"* OK IMAP") is True
    assert server_may_offer_starttls(b"SSH-2.0-x\r\n") is False
    assert server_may_offer_starttls(b"+OK") is None  # too few bytes to tell


def test_work_is_bounded_by_max_prelude_bytes():
    """A client that never finishes a line, or an XMPP stream without starttls, is given up."""
    assert find_tls_start(b"A" * 2000, b"220 x\r\n") is NOT_A_PRELUDE
    assert find_tls_start(b"<?xml version='1.0'?>" + b" " * MAX_PRELUDE_BYTES, b"") is NOT_A_PRELUDE
    assert find_tls_start(b"\x04\x01\x01\xbb\xc0\x00\x02\x07" + b"u" * 300, b"") is NOT_A_PRELUDE


def test_socks_name_bytes_are_escaped_not_trusted():
    found = find_tls_start(b"\x05\x01\x00" + socks5_request(3, b"\x05a\xffb\\c", 443))
    assert found.host == "a\\xffb\\x5cc" and found.port == 443
