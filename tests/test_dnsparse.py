"""The compiled DNS message parser (classifier/_dnsparse.pyx) and its pure-Python reference
(``dns.parse_message_py``) give equal messages, or the same error, on every DNS message of the real
captures, on damaged copies of them and on names with odd bytes; the install builds it (CI fails
without it) and ``dns.parse_message`` is it unless CLASSIFIER_PURE_PYTHON refuses it."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
from conftest import REAL, ROOT, need_extension, need_shared

from classifier.errors import MalformedError
from classifier.inspect import dns as dnsp
from classifier.pipeline import Scanner, ScanOptions
from classifier.report import InputStats
from classifier.scaninputs import scan_inputs


def _compiled():
    """The compiled parser: CI fails without it; skipped where CLASSIFIER_PURE_PYTHON refuses it."""
    if os.environ.get("CLASSIFIER_PURE_PYTHON"):
        pytest.skip("CLASSIFIER_PURE_PYTHON refuses the compiled twins")
    return need_extension("_dnsparse").parse_message


def _outcome(parse, data: bytes) -> tuple:
    """What ``parse`` makes of ``data``: the message (and the types of its TTLs, which ``==`` does
    not tell apart from floats), or the error's fields and text."""
    try:
        msg = parse(data)
    except MalformedError as err:
        return ("error", err.layer, err.field, str(err))
    records = msg.answers + msg.authorities + msg.additionals
    return ("message", msg, [(type(r.ttl), type(r.rdata), type(r.value)) for r in records])


def _real_messages(sigs, policy) -> list[bytes]:
    """Every DNS message a scan of the real captures parses (UDP payloads and TCP-framed ones)."""
    seen: list[bytes] = []
    reference = dnsp.parse_message_py

    def keep(data: bytes) -> dnsp.Message:
        seen.append(data)
        return reference(data)

    captures = sorted(str(p) for p in need_shared(REAL).iterdir() if ".pcap" in p.name)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(dnsp, "parse_message", keep)
        scanner = Scanner(sigs, policy, ScanOptions(), lambda flow: None)
        scan_inputs(captures, scanner, InputStats(), False, False)
        scanner.finish()
    finally:
        mp.undo()
    return seen


def _damaged(messages: list[bytes], rng: random.Random, each: int) -> list[bytes]:
    """Copies with bytes replaced (by pointer, length and odd-name bytes above all), flipped bits
    and cuts: every check of the parser is reached."""
    odd = [0x00, 0x01, 0x2E, 0x3F, 0x40, 0x41, 0x5A, 0x5C, 0x7F, 0x80, 0xC0, 0xC1, 0xFF]
    out = []
    for data in messages:
        for _ in range(each):
            b = bytearray(data)
            kind = rng.randrange(4)
            if kind == 0:
                b = b[: rng.randrange(len(b) + 1)]
            for _ in range(rng.randrange(1, 4) if b and kind else 0):
                at = rng.randrange(len(b))
                if kind == 1:
                    b[at] = rng.randrange(256)
                elif kind == 2:
                    b[at] ^= 1 << rng.randrange(8)
                else:
                    b[at] = rng.choice(odd)
            out.append(bytes(b))
    return out


def _odd_names() -> list[bytes]:
    """Names with upper case, a dot inside a label, a backslash, non-ASCII, the root, a pointer."""
    header = bytes.fromhex("1234 8180 0001 0002 0000 0000")
    out = []
    names = ([b"WWW", b"Example", b"COM"], [b"a.b", b"c"], [b"x\\y"], [b"\xc3\xa9t\xc3\xa9"], [], [b"a b"])
    for labels in names:
        qname = b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
        answer = b"\xc0\x0c" + bytes.fromhex("0005 0001 0000012c 0004") + b"\x01Q\xc0\x0c"  # CNAME Q.<name>
        address = b"\xc0\x0c" + bytes.fromhex("0001 8001 ffffffff 0004 c0000201")
        out.append(header + qname + b"\x00\x01\x00\x01" + answer + address)
    return out


def test_compiled_parser_is_built_and_chosen():
    compiled = _compiled()
    assert dnsp.parse_message is compiled is dnsp.COMPILED_PARSE_MESSAGE
    built = Path(sys.modules[compiled.__module__].__file__ or "")
    assert built.suffix == ".so", built
    source = ROOT / "classifier" / "_dnsparse.pyx"
    if built.parent == source.parent:  # an editable install does not rebuild by itself
        assert built.stat().st_mtime >= source.stat().st_mtime, "rebuild: pip install -c constraints.txt -e ."


def test_twins_agree_on_real_messages_and_damaged_ones(sigs, policy):
    compiled = _compiled()
    real = _real_messages(sigs, policy)
    assert len(real) > 100, len(real)  # the real captures hold DNS
    cases = real + _odd_names() + _damaged(real + _odd_names(), random.Random(53), 12)
    messages = 0
    fields: set[str] = set()
    for data in cases:
        want = _outcome(dnsp.parse_message_py, data)
        assert _outcome(compiled, data) == want, data.hex()
        if want[0] == "message":
            messages += 1
        else:
            fields.add(want[2])
    assert messages > 500 and len(cases) - messages > 1000, (messages, len(cases))  # both paths taken
    assert len(fields) >= 8, fields  # many different checks failed, not one


def test_twins_agree_on_a_memoryview():
    compiled = _compiled()
    data = _odd_names()[0]
    assert _outcome(compiled, memoryview(data)) == _outcome(dnsp.parse_message_py, memoryview(data))
    assert compiled(memoryview(data)) == compiled(data)
