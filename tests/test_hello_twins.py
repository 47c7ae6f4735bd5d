"""The compiled ClientHello parse and QUIC Initial frame walk (classifier/_hello.pyx) give what their
pure-Python references (``tls.parse_client_hello_message_py``, ``quic._ietf_frames``) give: the same
facts, or the same error (type, layer, field, detail), on every ClientHello and decrypted Initial of
the real captures and of pcaps/, every truncation of them, seeded random mutations and hand-made
hostile frames."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REAL, ROOT, need_extension, need_shared

from classifier.capture import open_capture
from classifier.errors import MalformedError
from classifier.inspect import quic, tls
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import flow_record

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".gz")


def _outcome(fn: Callable[[bytes], Any], data: bytes) -> tuple[Any, ...]:
    """What ``fn(data)`` gives, comparable: its value, or its exception's type and content."""
    try:
        return ("value", fn(data))
    except MalformedError as e:
        return ("malformed", e.layer, e.field, e.detail)
    except Exception as e:  # any other error must be the same one too
        return ("error", type(e).__name__, str(e))


def _disagreements(twin: Callable, reference: Callable, inputs: list[bytes]) -> list[str]:
    bad = []
    for data in inputs:
        got, want = _outcome(twin, data), _outcome(reference, data)
        if got != want:
            bad.append(f"{data.hex()}: compiled {got!r}, reference {want!r}")
    return bad


def _reason(fn: Callable[[bytes], Any], data: bytes) -> tuple[Any, ...]:
    """The kind of outcome: a value, or which error."""
    got = _outcome(fn, data)
    return got[:1] if got[0] == "value" else got[:3]


def _truncations(data: bytes) -> list[bytes]:
    return [data[:i] for i in range(len(data) + 1)]


def _mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Byte flips, small and extreme values, insertions and deletions, a few at a time."""
    out = []
    for _ in range(count):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if not b:
                b.append(rng.randrange(256))
                continue
            i = rng.randrange(len(b))
            kind = rng.randrange(5)
            if kind == 0:
                b[i] ^= 1 << rng.randrange(8)
            elif kind == 1:
                b[i] = rng.choice((0, 1, 2, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFE, 0xFF, 0x0A, 0x1A))
            elif kind == 2:
                b.insert(i, rng.randrange(256))
            elif kind == 3:
                del b[i : i + rng.randint(1, 8)]
            else:
                b[i] = rng.randrange(256)
        out.append(bytes(b))
    return out


def _captures() -> list[Path]:
    real = need_shared(REAL)
    paths = [*sorted(real.iterdir()), *sorted((ROOT / "pcaps").iterdir())]
    return [p for p in paths if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)]


def scan_captures(sigs, policy) -> None:
    """Scan every capture (the real ones and ours) as ``classifier scan`` does, records discarded:
    the fixtures record what the parsers were asked on the way."""
    for path in _captures():
        scanner = Scanner(sigs, policy, ScanOptions(), lambda flow: json.dumps(flow_record(flow)))
        with open_capture(str(path)) as reader:
            scanner.start_input(path.name, reader.interfaces)
            reader.on_malformed = scanner.malformed_packet
            scanner.feed_batches(reader.batches())
        scanner.finish()


@pytest.fixture(scope="module")
def seen(sigs, policy) -> dict[str, list[bytes]]:
    """Every ClientHello body and decrypted IETF Initial payload a scan of the captures parses."""
    hellos: list[bytes] = []
    payloads: list[bytes] = []

    def hello(data: bytes) -> tls.ClientHello:
        hellos.append(bytes(data))
        return tls.parse_client_hello_message_py(data)

    def frames(data: bytes) -> list[tuple[int, bytes]]:
        payloads.append(bytes(data))
        return quic._ietf_frames(data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tls, "parse_client_hello_message", hello)
        mp.setattr(quic, "parse_client_hello_message", hello)
        mp.setattr(quic, "ietf_frames", frames)
        scan_captures(sigs, policy)
    return {"hellos": list(dict.fromkeys(hellos)), "payloads": list(dict.fromkeys(payloads))}


def _hello_twin() -> Callable[[bytes], tls.ClientHello]:
    twin = need_extension("_hello").parse_client_hello_message
    assert tls.COMPILED_PARSE_CLIENT_HELLO_MESSAGE is twin or tls.COMPILED_PARSE_CLIENT_HELLO_MESSAGE is None
    return twin


def _frames_twin() -> Callable[[bytes], list[tuple[int, bytes]]]:
    module = need_extension("_hello")
    assert module.MAX_CRYPTO_BYTES == quic.MAX_CRYPTO_BYTES
    return module.ietf_frames


def test_twins_are_chosen_when_built():
    hello, frames = _hello_twin(), _frames_twin()
    if tls.COMPILED_PARSE_CLIENT_HELLO_MESSAGE is None:  # CLASSIFIER_PURE_PYTHON refuses them
        assert tls.parse_client_hello_message is tls.parse_client_hello_message_py
        assert quic.ietf_frames is quic._ietf_frames
    else:
        assert tls.parse_client_hello_message is hello
        assert quic.parse_client_hello_message is hello
        assert quic.ietf_frames is frames


@pytest.mark.real
def test_client_hello_twins_agree_on_every_real_hello_and_its_truncations(seen):
    twin = _hello_twin()
    hellos = seen["hellos"]
    assert len(hellos) > 300, len(hellos)
    assert not _disagreements(twin, tls.parse_client_hello_message_py, hellos)
    inputs = [cut for data in hellos for cut in _truncations(data)]
    assert not _disagreements(twin, tls.parse_client_hello_message_py, inputs)


@pytest.mark.real
def test_client_hello_twins_agree_on_mutations(seen):
    twin = _hello_twin()
    rng = random.Random(10)
    inputs = [m for data in seen["hellos"] for m in _mutations(data, rng, 60)]
    outcomes = {_reason(tls.parse_client_hello_message_py, d) for d in inputs}
    assert len(outcomes) > 9, outcomes  # the mutations reach many different errors
    assert not _disagreements(twin, tls.parse_client_hello_message_py, inputs)


@pytest.mark.real
def test_frame_twins_agree_on_every_real_initial_and_its_truncations_and_mutations(seen):
    twin = _frames_twin()
    payloads = seen["payloads"]
    assert len(payloads) > 50, len(payloads)
    assert not _disagreements(twin, quic._ietf_frames, payloads)
    inputs = [cut for data in payloads for cut in _truncations(data)]
    rng = random.Random(11)
    inputs += [m for data in payloads for m in _mutations(data, rng, 30)]
    assert not _disagreements(twin, quic._ietf_frames, inputs)


def _v(value: int, size: int) -> bytes:
    """A QUIC varint of ``size`` bytes (1, 2, 4, 8)."""
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    return (value | (prefix << (8 * size - 2))).to_bytes(size, "big")


HOSTILE_FRAMES = [
    b"",
    b"\x00",
    b"\x01\x01\x00\x00\x00",
    b"\x06",
    b"\x06" + _v(0, 1),
    b"\x06" + _v(0, 8) + _v(3, 4) + b"abc",
    b"\x06" + _v(2**62 - 1, 8) + _v(1, 1) + b"x",
    b"\x06" + _v(65535, 4) + _v(1, 1) + b"x",
    b"\x06" + _v(65536, 4) + _v(0, 1),
    b"\x06" + _v(0, 1) + _v(2**62 - 1, 8) + b"abc",
    b"\x06" + _v(5, 2) + _v(3, 2) + b"abc" + b"\x06" + _v(0, 1) + _v(5, 1) + b"hello" + b"\x00" * 40,
    b"\x02" + _v(7, 1) + _v(0, 2) + _v(2, 1) + _v(0, 1) + _v(1, 1) * 4,
    b"\x02" + _v(7, 1) + _v(0, 2) + _v(2**61, 8) + _v(0, 1),
    b"\x02" + _v(7, 1) + _v(0, 2) + _v(3, 1) + _v(0, 1) + _v(1, 1) * 5,
    b"\x03" + _v(7, 1) + _v(0, 2) + _v(0, 1) + _v(0, 1) + _v(1, 1) * 3 + b"\x01",
    b"\x03" + _v(7, 1) + _v(0, 2) + _v(0, 1) + _v(0, 1) + _v(1, 1) * 2,
    b"\x1c\xff\xff",
    b"\x1d",
    b"\x07\x00",
    b"\x08" + b"\x00" * 10,
    b"\x06\x40",
    b"\x06\x00\x80\x00",
]


def test_frame_twins_agree_on_hostile_frames():
    twin = _frames_twin()
    inputs = [cut for data in HOSTILE_FRAMES for cut in _truncations(data)]
    assert not _disagreements(twin, quic._ietf_frames, inputs)
    reasons = {_reason(quic._ietf_frames, d) for d in HOSTILE_FRAMES}
    assert ("malformed", "quic", "crypto.offset") in reasons and ("malformed", "quic", "frame.ack") in reasons


def _hello(*extensions: tuple[int, bytes], ciphers: bytes = b"\x13\x01\x0a\x0a") -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + len(ciphers).to_bytes(2, "big") + ciphers + b"\x01\x00"
    ext = b"".join(t.to_bytes(2, "big") + len(d).to_bytes(2, "big") + d for t, d in extensions)
    return body + len(ext).to_bytes(2, "big") + ext


HOSTILE_HELLOS = [
    _hello(),
    _hello(ciphers=b"\x0a\x0a\xfa\xfa"),
    _hello((0, b"\x00\x08\x00\x00\x05Ex\xc3MP"), (0, b"\x00\x05\x00\x00\x02ab")),
    _hello((0, b"\x00\x08\x00\x00\x05Ex\xc3MP\x00\x00\x00")),
    _hello((0, b"\x00\x06\x01\x00\x01x\x00\x00")),
    _hello((0, b"\x00\x03\x00\x00\x00")),
    _hello((0, b"\x00\x05\x00\x00\x02a.")),
    _hello((16, b"\x00\x06\x02h2\x02\xff\x5c")),
    _hello((16, b"\x00\x03\x00h2")),
    _hello((16, b"\x00\x00")),
    _hello((13, b"\x00\x05\x04\x03\x08\x04\x0a")),
    _hello((13, b"\xff\xff\x04\x03")),
    _hello((13, b"\x00")),
    _hello((43, b"\x06\x0a\x0a\x03\x04\x03\x03")),
    _hello((43, b"\x03\x03\x04\x03")),
    _hello((43, b"")),
    _hello((0xFE0D, b"\x00\x00\x01\x00\x01\x7f")),
    _hello((0xFE0D, b"\x01")),
    _hello((0x0A0A, b""), (0xFAFA, b"\x00"), (0x0A0A, b"")),
    _hello((43, b"\x02\x03\x04"), (43, b"")),
    b"\x03\x03" + bytes(32) + b"\x21",
    b"\x02\x00" + bytes(40),
    b"\x03\x03" + bytes(32) + b"\x00\x00\x03abc\x01\x00",
]


def test_client_hello_twins_agree_on_hostile_hellos():
    twin = _hello_twin()
    inputs = [cut for data in HOSTILE_HELLOS for cut in _truncations(data)]
    inputs += [bytearray(data) for data in HOSTILE_HELLOS]  # type: ignore[misc]  # bytes-like too
    assert not _disagreements(twin, tls.parse_client_hello_message_py, inputs)
    assert len({_reason(tls.parse_client_hello_message_py, d) for d in inputs}) >= 10


def test_a_twin_that_differs_is_caught():
    """The comparison can fail: a twin off by one field on one input is reported."""

    def broken(data: bytes) -> tls.ClientHello:
        hello = tls.parse_client_hello_message_py(data)
        return hello if hello.sni != "ex\\xc3mp" else tls.ClientHello(**{**_fields(hello), "sni": "exmp"})

    assert _disagreements(broken, tls.parse_client_hello_message_py, HOSTILE_HELLOS)


def _fields(hello: tls.ClientHello) -> dict[str, Any]:
    return {name: getattr(hello, name) for name in hello.__slots__}


def _from_zero_twin() -> Callable[[list[tuple[int, bytes]]], bytes | None]:
    module = need_extension("_hello")
    assert quic.from_zero is module.from_zero or quic.COMPILED_FROM_ZERO is None
    return module.from_zero


def _chunk_lists(payloads: list[bytes], rng: random.Random) -> list[list[tuple[int, bytes]]]:
    """The CRYPTO chunks of each payload, reordered, with one left out, one doubled, one shifted
    or emptied, and split into many: lists that tile from 0 and lists that do not."""
    out = []
    for payload in payloads:
        try:
            chunks = quic._ietf_frames(payload)
        except MalformedError:
            continue
        out.append(chunks)
        if not chunks:
            continue
        out.append(chunks[::-1])
        out.append(rng.sample(chunks, len(chunks)))
        i = rng.randrange(len(chunks))
        offset, data = chunks[i]
        out.append(chunks[:i] + chunks[i + 1 :])
        out.append([*chunks, chunks[i]])
        out.append([*chunks[:i], (offset + rng.choice((-1, 1)), data), *chunks[i + 1 :]])
        out.append([*chunks[:i], (offset, b""), *chunks[i + 1 :]])
        out.append([*chunks[:i], (offset, b""), (offset, data), *chunks[i + 1 :]])
        joined = quic._from_zero(sorted(chunks))
        if joined:
            for pieces in (len(joined), 63, 64, 65, 200):  # around the twin's own limit
                size = max(1, -(-len(joined) // pieces))
                split = [(a, joined[a : a + size]) for a in range(0, len(joined), size)]
                out.append(rng.sample(split, len(split)))
    return out


@pytest.mark.real
def test_from_zero_twins_agree_on_every_real_initial_and_reorderings(seen):
    twin = _from_zero_twin()
    lists = _chunk_lists(seen["payloads"], random.Random(12))
    assert len(lists) > 400, len(lists)
    joined = [quic._from_zero(chunks) for chunks in lists]
    assert sum(j is None for j in joined) > 100 and sum(bool(j) for j in joined) > 100
    bad = [c for c in lists if _outcome(twin, c) != _outcome(quic._from_zero, c)]  # type: ignore[arg-type]
    assert not bad, bad[:2]


HOSTILE_CHUNKS: list[list[Any]] = [
    [],
    [(0, b"")],
    [(1, b"")],
    [(0, b"ab"), (0, b"")],
    [(0, b""), (0, b"ab")],
    [(0, b"ab"), (2, b""), (2, b"cd")],
    [(-1, b"x"), (0, b"a")],
    [(2**70, b"x"), (0, b"")],
    [(0, bytes(quic.MAX_CRYPTO_BYTES))],
    [(0, bytes(quic.MAX_CRYPTO_BYTES + 1))],
    [(0, bytes(quic.MAX_CRYPTO_BYTES)), (quic.MAX_CRYPTO_BYTES, b"")],
    [(0, bytes(quic.MAX_CRYPTO_BYTES)), (quic.MAX_CRYPTO_BYTES, b"x")],
    [(0, bytearray(b"ab")), (2, b"cd")],
    [(0, bytearray(b"ab"))],
    [(True, b"x"), (0, b"a")],
    [(0, b"a"), (1, b"b"), [2, b"c"]],
    [(i, b"x") for i in range(64)],
    [(i, b"x") for i in range(65)],
    [(i, b"x") for i in reversed(range(64))],
]


def test_from_zero_twins_agree_on_hostile_chunks():
    twin = _from_zero_twin()
    bad = [c for c in HOSTILE_CHUNKS if _outcome(twin, c) != _outcome(quic._from_zero, c)]  # type: ignore[arg-type]
    assert not bad, bad


@pytest.mark.real
def test_quic_facts_twins_make_equal_facts(seen):
    """The compiled QuicFacts builder makes the object the dataclass makes: equal, same type,
    same repr and hash, still frozen; a tuple without every field goes to the constructor."""
    twin = need_extension("_hello").quic_facts
    assert quic.quic_facts is twin or quic.quic_facts is quic._quic_facts
    rng = random.Random(13)
    values: list[tuple[Any, ...]] = []
    for data in seen["hellos"]:
        try:
            hello = tls.parse_client_hello_message_py(data)
        except MalformedError:
            continue
        version = rng.choice((1, 0x6B3343CF, 0xFF00001D, int.from_bytes(b"Q050", "big")))
        dcid, retry, packets = rng.randbytes(rng.randrange(21)), rng.random() < 0.5, rng.randrange(1, 17)
        values.append(
            (version, quic.version_name(version), dcid, hello, hello.sni, hello.alpn, retry, packets, None)
        )
        values.append((version, "Q050", dcid, None, hello.sni, (), retry, packets, "Chrome/1"))
    assert len(values) > 300
    for v in (*values, values[0][:8]):
        got, want = twin(v), quic._quic_facts(v)
        assert got == want and type(got) is type(want) and repr(got) == repr(want) and hash(got) == hash(want)
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        got.sni = "x"  # type: ignore[misc]
