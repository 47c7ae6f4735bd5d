"""Tests for classifier.inspect.http: request heads, possibly split across segments."""

from __future__ import annotations

import random

import pytest

from classifier.errors import MalformedError
from classifier.inspect.http import (
    MAX_HEADER_BYTES,
    METHODS,
    HttpRequest,
    looks_like_http_request,
    parse_http_request,
)

GET = (
    b"GET /video/list?id=1 HTTP/1.1\r\n"
    b"Host: WWW.TikTok.com:8080\r\n"
    b"User-Agent:   com.zhiliaoapp.musically/2021 (Linux; Android 11)  \r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)


def malformed(data: bytes) -> MalformedError:
    with pytest.raises(MalformedError) as info:
        parse_http_request(data)
    assert info.value.layer == "http"
    return info.value


def test_get_with_host_and_port():
    req = parse_http_request(GET)
    assert req == HttpRequest(
        method="GET",
        target="/video/list?id=1",
        version="HTTP/1.1",
        host="www.tiktok.com",
        proxy_host=None,
        user_agent="com.zhiliaoapp.musically/2021 (Linux; Android 11)",
    )


def test_facts_are_frozen():
    req = parse_http_request(GET)
    assert req is not None
    with pytest.raises(AttributeError):
        req.host = "x"  # type: ignore[misc]


def test_connect_authority_form():
    req = parse_http_request(b"CONNECT api.tiktokv.com:443 HTTP/1.1\r\nHost: api.tiktokv.com:443\r\n\r\n")
    assert req is not None
    assert req.method == "CONNECT"
    assert req.target == "api.tiktokv.com:443"
    assert req.proxy_host == "api.tiktokv.com"
    assert req.host == "api.tiktokv.com"


def test_absolute_uri_proxy_request():
    data = (
        b"GET http://hkminorshort.weixin.qq.com/cgi-bin/micromsg-bin/newsync HTTP/1.1\r\n"
        b"Host: hkminorshort.weixin.qq.com\r\n"
        b"User-Agent: MicroMessenger Client\r\n\r\n"
    )
    req = parse_http_request(data)
    assert req is not None
    assert req.target == "http://hkminorshort.weixin.qq.com/cgi-bin/micromsg-bin/newsync"
    assert req.proxy_host == "hkminorshort.weixin.qq.com"
    assert req.host == "hkminorshort.weixin.qq.com"
    assert req.user_agent == "MicroMessenger Client"


def test_absolute_uri_with_port_userinfo_and_query():
    req = parse_http_request(b"GET HTTP://user:pw@Proxy.Example:3128?x=1 HTTP/1.1\r\n\r\n")
    assert req is not None and req.proxy_host == "proxy.example"
    assert req.host is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"[2001:db8::1]:8080", "2001:db8::1"),
        (b"[2001:DB8::1]", "2001:db8::1"),
        (b"2001:db8::1", "2001:db8::1"),  # unbracketed: no port can be split off
        (b"192.0.2.1:80", "192.0.2.1"),
        (b"example.com.", "example.com"),
        (b"  example.com  ", "example.com"),
        (b"", None),
        (b"caf\xc3\xa9.example", "caf\\xc3\\xa9.example"),
    ],
)
def test_host_forms(host, expected):
    req = parse_http_request(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert req is not None and req.host == expected


def test_connect_ipv6_literal():
    req = parse_http_request(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n")
    assert req is not None and req.proxy_host == "2001:db8::1"


def test_header_names_case_insensitive_first_host_wins():
    data = b"GET / HTTP/1.1\r\nhOsT: First.example\r\nHOST: second.example\r\nuser-AGENT: ua\r\n\r\n"
    req = parse_http_request(data)
    assert req is not None
    assert req.host == "first.example"
    assert req.user_agent == "ua"


def test_headers_without_colon_and_folding_are_tolerated():
    data = b"GET / HTTP/1.1\r\nnonsense line\r\n continued\r\nHost:\tx.example\t\r\n\r\n"
    req = parse_http_request(data)
    assert req is not None and req.host == "x.example"


def test_request_split_mid_header():
    for cut in range(len(GET)):
        assert parse_http_request(GET[:cut]) is None, cut
    assert parse_http_request(GET[:40] + GET[40:]) == parse_http_request(GET)


def test_lf_only_line_endings():
    data = b"POST /upload HTTP/1.1\nHost: lf.example\nUser-Agent: curl/8\n\nbody"
    req = parse_http_request(data)
    assert req is not None
    assert (req.method, req.host, req.user_agent) == ("POST", "lf.example", "curl/8")
    assert parse_http_request(data[: data.index(b"\n\n") + 1]) is None


def test_mixed_line_endings():
    req = parse_http_request(b"GET / HTTP/1.1\r\nHost: m.example\n\r\n")
    assert req is not None and req.host == "m.example"


def test_http10_without_host():
    req = parse_http_request(b"GET /index.html HTTP/1.0\r\n\r\n")
    assert req is not None
    assert req.version == "HTTP/1.0"
    assert req.host is None and req.proxy_host is None and req.user_agent is None


def test_body_is_not_inspected():
    req = parse_http_request(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nHost: b.example\r\n\r\n")
    assert req is not None and req.host == "a.example"


def test_garbage_fails_early():
    assert malformed(b"\x16\x03\x01\x02\x00").field == "request_line.method"
    assert malformed(b"hello world").field == "request_line.method"
    assert malformed(b"FOO / HTTP/1.1\r\n\r\n").field == "request_line.method"


def test_bad_request_line_fails_once_complete():
    # incomplete first line that could still be a request: need more
    assert parse_http_request(b"GET /a-long-path") is None
    assert malformed(b"GET /\r\n").field == "request_line"  # HTTP/0.9 style, no version
    assert malformed(b"GET / HTTP/1.1 extra\r\n").field == "request_line"
    assert malformed(b"GET / HTTX/1.1\r\nHost: a\r\n\r\n").field == "request_line.version"
    assert malformed(b"GET / HTTP/1.1x\r\n").field == "request_line.version"
    assert malformed(b"\r\nGET / HTTP/1.1\r\n\r\n").field in {"request_line", "request_line.method"}


def test_no_end_of_headers_within_16k():
    head = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * (MAX_HEADER_BYTES + 100) + b"\r\n"
    assert parse_http_request(head[: MAX_HEADER_BYTES - 1]) is None
    assert malformed(head).field == "headers"
    assert malformed(head + b"\r\n").field == "headers"  # end too late


def test_non_ascii_target_and_user_agent_escaped():
    req = parse_http_request(b"GET /\xff\xfe HTTP/1.1\r\nUser-Agent: \xe4\xb8\xad\r\n\r\n")
    assert req is not None
    assert req.target == "/\\xff\\xfe"
    assert req.user_agent == "\\xe4\\xb8\\xad"


def test_looks_like_http_request():
    for method in METHODS:
        assert looks_like_http_request(method + b" /")
        assert looks_like_http_request(method[:2])
        assert looks_like_http_request(method)
    assert looks_like_http_request(b"GE")
    assert looks_like_http_request(b"GET ")
    assert not looks_like_http_request(b"")
    assert not looks_like_http_request(b"GETX")
    assert not looks_like_http_request(b"get / HTTP/1.1")
    assert not looks_like_http_request(b"\x16\x03\x01")
    assert not looks_like_http_request(b"GX")
    assert {
        b"GET",
        b"POST",
        b"HEAD",
        b"PUT",
        b"DELETE",
        b"OPTIONS",
        b"PATCH",
        b"CONNECT",
        b"TRACE",
    } <= METHODS


def _fuzz_one(data: bytes) -> None:
    try:
        result = parse_http_request(data)
    except MalformedError as exc:
        assert exc.layer == "http" and exc.field
        return
    assert result is None or isinstance(result, HttpRequest)


def test_fuzz_random_bytes_and_mutations():
    rng = random.Random(7)
    alphabet = b"GET /:[]@\r\n\t Host" + bytes(range(0, 256, 17))
    for _ in range(3000):
        _fuzz_one(rng.randbytes(rng.randrange(0, 200)))
        _fuzz_one(b"GET " + bytes(rng.choice(alphabet) for _ in range(rng.randrange(60))))
    seeds = [GET, b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n", b"GET http://[::1/ HTTP/1.1\nHost: [x\n\n"]
    for seed in seeds:
        for _ in range(2000):
            data = bytearray(seed)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            _fuzz_one(bytes(data[: rng.randrange(len(data) + 1)]))
