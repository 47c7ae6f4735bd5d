"""JA4 and JA4S fingerprints (FoxIO, github.com/FoxIO-LLC/ja4, technical_details/JA4.md and JA4S.md).

A fingerprint names the TLS stack a client (JA4) or server (JA4S) runs, not where it goes: the
same browser gives the same JA4 to every site. It is one more piece of evidence, never a name.
Both are computed once per flow from facts the TLS parsers already keep; GREASE values are
already gone from those facts, as the specification asks.
"""

from __future__ import annotations

from hashlib import sha256

from classifier.inspect.serverhello import ServerHello
from classifier.inspect.tls import EXT_ALPN, EXT_SERVER_NAME, ClientHello

__all__ = ["ja4", "ja4s"]

_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
_EMPTY_HASH = "000000000000"
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _hash12(text: str) -> str:
    return sha256(text.encode("ascii")).hexdigest()[:12]


def _hex_list(values: tuple[int, ...] | list[int]) -> str:
    return ",".join(f"{v:04x}" for v in values)


def _alpn_chars(alpn: bytes) -> str:
    """First and last character of the first ALPN value; hex ends when either is not alphanumeric."""
    if not alpn:
        return "00"
    if alpn[0] in _ALNUM and alpn[-1] in _ALNUM:
        return chr(alpn[0]) + chr(alpn[-1])
    text = alpn.hex()
    return text[0] + text[-1]


def _count(n: int) -> str:
    return f"{min(n, 99):02d}"


# JA4s already computed, by everything they depend on: clients of one TLS stack send the same
# ClientHello shape, so most flows of a capture find theirs here instead of formatting and hashing.
_MEMO: dict[tuple, str] = {}
_MEMO_MAX = 4096


def ja4(hello: ClientHello, quic: bool = False) -> str:
    """The JA4 of a ClientHello sent over TCP (``t``) or in QUIC Initials (``q``)."""
    key = (
        quic,
        hello.versions,
        hello.legacy_version,
        hello.extensions,
        hello.cipher_bytes,
        hello.signature_algorithm_bytes,
        hello.alpn_first,
    )
    found = _MEMO.get(key)
    if found is None:
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        found = _MEMO[key] = _ja4(hello, quic)
    return found


def _ja4(hello: ClientHello, quic: bool) -> str:
    version = max(hello.versions) if hello.versions else hello.legacy_version
    exts = hello.extensions
    a = "".join(
        (
            "q" if quic else "t",
            _VERSIONS.get(version, "00"),
            "d" if EXT_SERVER_NAME in exts else "i",
            _count(hello.cipher_suites),
            _count(len(exts)),
            _alpn_chars(hello.alpn_first),
        )
    )
    ciphers = hello.cipher_list
    b = _hash12(_hex_list(sorted(ciphers))) if ciphers else _EMPTY_HASH
    kept = sorted(e for e in exts if e not in (EXT_SERVER_NAME, EXT_ALPN))
    if kept:
        text = _hex_list(kept)
        signature_algorithms = hello.signature_algorithms
        if signature_algorithms:
            text += "_" + _hex_list(signature_algorithms)
        c = _hash12(text)
    else:
        c = _EMPTY_HASH
    return f"{a}_{b}_{c}"


def ja4s(hello: ServerHello, quic: bool = False) -> str:
    """The JA4S of a ServerHello: version, extension count, ALPN, cipher, extensions in order."""
    a = "".join(
        (
            "q" if quic else "t",
            _VERSIONS.get(hello.version, "00"),
            _count(len(hello.extensions)),
            _alpn_chars(hello.alpn),
        )
    )
    c = _hash12(_hex_list(hello.extensions)) if hello.extensions else _EMPTY_HASH
    return f"{a}_{hello.cipher_suite:04x}_{c}"
