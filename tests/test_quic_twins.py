"""The compiled QUIC Initial keys (classifier/_quicinitial.pyx ``InitialKeys``) give what their
pure-Python reference (``quic._Keys``) gives: the same key material, and from ``open`` the same
plaintext, packet number length and packet number, or the same refusal (None: the tag does not
verify), on every client Initial of the real captures and of pcaps/, every shortened Length, seeded
random mutations (forgeries), other packet-number histories and other keys; and whole flows fed
through ``QuicInitialState`` give the same facts and errors with either."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, need_extension
from test_hello_twins import scan_captures
from test_inspect_quic import V1, V2, protect

from classifier.errors import MalformedError
from classifier.inspect import quic

Opening = tuple[Any, bytes, bytes, int, int, int, int]  # schedule, DCID, datagram, start, pn, end, largest


def _twin() -> Callable[..., Any]:
    return need_extension("_quicinitial").InitialKeys


def _outcome(keys: Callable[..., Any], schedule: Any, dcid: bytes, *args: Any) -> tuple[Any, ...]:
    """What ``keys(schedule, dcid).open(*args)`` gives, comparable: its value or its error."""
    try:
        return ("value", keys(schedule, dcid).open(*args))
    except Exception as e:
        return ("error", type(e).__name__, str(e))


def _disagreements(twin: Callable[..., Any], openings: list[Opening]) -> list[str]:
    bad = []
    for schedule, dcid, d, *args in openings:
        got, want = _outcome(twin, schedule, dcid, d, *args), _outcome(quic._Keys, schedule, dcid, d, *args)
        if got != want:
            bad.append(f"{dcid.hex()} {args} {d.hex()}: compiled {got!r}, reference {want!r}")
    return bad


@pytest.fixture(scope="module")
def seen(sigs, policy) -> dict[str, list[Any]]:
    """Every Initial opening a scan of the captures asks for, and every QUIC flow's datagrams."""
    openings: list[Opening] = []
    flows: dict[int, tuple[quic.QuicInitialState, list[tuple[bytes, bool]]]] = {}

    class Recording:
        def __init__(self, schedule: Any, dcid: bytes) -> None:
            self.schedule, self.dcid = schedule, dcid
            self.keys = quic._Keys(schedule, dcid)

        def open(self, d: bytes, *args: int) -> Any:
            openings.append((self.schedule, self.dcid, d, *args))  # type: ignore[arg-type]
            return self.keys.open(d, *args)

    feed = quic.QuicInitialState.feed

    def recording_feed(state: quic.QuicInitialState, datagram: bytes, from_client: bool) -> Any:
        flows.setdefault(id(state), (state, []))[1].append((bytes(datagram), from_client))
        return feed(state, datagram, from_client)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quic, "initial_keys", Recording)
        mp.setattr(quic.QuicInitialState, "feed", recording_feed)
        scan_captures(sigs, policy)
    return {"openings": openings, "flows": [datagrams for _state, datagrams in flows.values()]}


def test_twin_is_chosen_when_built():
    twin = _twin()
    if quic.COMPILED_INITIAL_KEYS is None:  # CLASSIFIER_PURE_PYTHON refuses it
        assert quic.initial_keys is quic._Keys
    else:
        assert quic.initial_keys is twin


def _schedules() -> dict[int, Any]:
    return quic._SCHEDULES


def test_key_material_is_the_reference_one_for_every_version_and_dcid_length():
    twin = _twin()
    rng = random.Random(20)
    assert len(_schedules()) >= 20
    for version, schedule in _schedules().items():
        for length in range(21):
            dcid = rng.randbytes(length)
            assert twin(schedule, dcid).material == quic.initial_key_material(version, dcid), (version, dcid)


def test_key_material_of_the_rfc_vectors():
    """RFC 9001 A.1 and RFC 9369 A.1: the client key, iv and hp of DCID 8394c8f03e515708."""
    twin = _twin()
    dcid = bytes.fromhex("8394c8f03e515708")
    assert [m.hex() for m in twin(_schedules()[V1], dcid).material] == [
        "1f369613dd76d5467730efcbe3b1a22d",
        "fa044b2f42a3fd3b46fb255c",
        "9f50449e04a0e810283a1e9933adedd2",
    ]
    assert [m.hex() for m in twin(_schedules()[V2], dcid).material] == [
        "8b1a0bc121284290a29e0971b5cd045d",
        "91f73e2351d8fa91660e909f",
        "45b95e15235d6f45a6b19cbcb0294ba9",
    ]


@pytest.mark.real
def test_open_twins_agree_on_every_real_initial(seen):
    twin = _twin()
    openings = seen["openings"]
    opened = [o for o in openings if quic._Keys(o[0], o[1]).open(o[2], *o[3:]) is not None]
    assert len(openings) > 150 and len(opened) > 150, (len(openings), len(opened))
    assert not _disagreements(twin, openings)


@pytest.mark.real
def test_open_twins_agree_on_shortened_lengths_and_other_packet_number_histories(seen):
    twin = _twin()
    inputs: list[Opening] = []
    for schedule, dcid, d, start, pn_offset, end, largest in seen["openings"][::3]:
        for cut in (*range(pn_offset + 20, pn_offset + 40), *range(end - 20, end)):
            inputs.append((schedule, dcid, d, start, pn_offset, cut, largest))
        for other in (0, 1, 200, 255, 256, 65535, 65536, 2**31, 2**32 - 1, 2**40, 2**62 - 2**20, 2**62 - 1):
            inputs.append((schedule, dcid, d, start, pn_offset, end, other))
    assert not _disagreements(twin, inputs)


@pytest.mark.real
def test_open_twins_agree_on_forgeries(seen):
    """A bit of a real Initial changed (header, packet number, sample, payload or tag), or another
    DCID's keys: neither twin opens it."""
    twin = _twin()
    rng = random.Random(21)
    openings = seen["openings"]
    inputs: list[Opening] = []
    for schedule, dcid, d, start, pn_offset, end, largest in openings:
        for _ in range(12):
            b = bytearray(d)
            i = rng.choice((start, rng.randrange(start, pn_offset + 4), rng.randrange(start, end), end - 1))
            b[i] ^= 1 << rng.randrange(8)
            inputs.append((schedule, dcid, bytes(b), start, pn_offset, end, largest))
        other = rng.choice(openings)[1]
        other = other + b"\x00" if other == dcid else other
        inputs.append((schedule, other, d, start, pn_offset, end, largest))
    # A bit changed anywhere between the first byte and the tag, or another key: nothing opens.
    assert {_outcome(quic._Keys, *o) for o in inputs} == {("value", None)}
    assert not _disagreements(twin, inputs)


@pytest.mark.parametrize("version", [V1, V2])
@pytest.mark.parametrize("pn_len", [1, 2, 3, 4])
def test_open_twins_decode_packet_numbers_alike(version, pn_len):
    """Initials with large packet numbers, truncated on the wire, opened with the largest packet
    number seen before them near every window edge (RFC 9000 A.3): same number, same plaintext."""
    twin = _twin()
    dcid = bytes.fromhex("0011223344556677")
    schedule = _schedules()[version]
    win = 1 << (8 * pn_len)
    inputs: list[Opening] = []
    for pn in (0, 1, win - 1, win, win + 1, 3 * win // 2, 5 * win + 7, 2**40 + 3, 2**62 - win - 1):
        packet = protect(version, dcid, b"\x01" + bytes(40), pn=pn, pn_len=pn_len)
        pn_offset = len(packet) - 16 - 41 - pn_len
        half = win // 2
        for largest in {-1, pn - 1, pn - half, pn - half - 1, pn + half - 1, pn + half, pn + 3}:
            if largest >= -1:
                inputs.append((schedule, dcid, packet, 0, pn_offset, len(packet), largest))
    opened = [_outcome(quic._Keys, *o) for o in inputs]
    assert sum(1 for o in opened if o[0] == "value" and o[1] is not None and o[1][2] > win) >= 5
    assert not _disagreements(twin, inputs)


def test_open_refuses_bounds_outside_the_datagram():
    """The caller checks the packet's extent; the twin checks it again rather than read past it."""
    keys = _twin()(_schedules()[V1], b"\x01" * 8)
    d = bytes(100)
    for args in ((0, 10, 29, 0), (0, 10, 101, 0), (10, 10, 50, 0), (-1, 10, 50, 0), (0, 90, 100, 0)):
        with pytest.raises(ValueError):
            keys.open(d, *args)


@pytest.mark.real
def test_whole_flows_give_the_same_facts_and_errors(seen, monkeypatch):
    """Every QUIC flow of the captures, and seeded mutations of its datagrams, fed through
    QuicInitialState with each key twin: the same facts, the same errors, the same state."""
    twin = _twin()
    rng = random.Random(22)
    flows = seen["flows"]
    assert len(flows) > 100
    mutated = []
    for datagrams in flows:
        for _ in range(4):
            copy = []
            for d, from_client in datagrams:
                b = bytearray(d)
                if b and rng.random() < 0.7:
                    b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
                copy.append((bytes(b), from_client))
            mutated.append(copy)

    def run(keys: Callable[..., Any], datagrams: list[tuple[bytes, bool]]) -> list[Any]:
        monkeypatch.setattr(quic, "initial_keys", keys)
        state = quic.QuicInitialState()
        out: list[Any] = []
        for d, from_client in datagrams:
            try:
                out.append(state.feed(d, from_client))
            except MalformedError as e:
                out.append((e.layer, e.field, e.detail))
        return [*out, state.packets, state.done, state._largest_pn, state._key_dcid]

    bad = [d for d in (*flows, *mutated) if run(twin, d) != run(quic._Keys, d)]
    assert not bad, bad[:3]
    facts = [r for d in flows for r in run(twin, d) if isinstance(r, quic.QuicFacts)]
    assert len(facts) > 100


def test_a_twin_that_differs_is_caught():
    """The comparison can fail: keys that open one packet to a different plaintext are reported."""
    schedule = _schedules()[V1]
    dcid = bytes.fromhex("0011223344556677")
    packet = protect(V1, dcid, b"\x01" + bytes(40), pn=7)

    class Broken(quic._Keys):
        def open(self, d: bytes, *args: int) -> Any:
            opened = super().open(d, *args)
            return opened if opened is None else (opened[0][:-1] + b"\x01", *opened[1:])

    openings: list[Opening] = [(schedule, dcid, packet, 0, len(packet) - 16 - 41 - 2, len(packet), -1)]
    assert quic._Keys(schedule, dcid).open(packet, *openings[0][3:]) is not None
    assert not _disagreements(quic._Keys, openings)
    assert _disagreements(Broken, openings)


def _scan_in_child(capture: Path, pre: str) -> tuple[str, bool]:
    """(records, whether cryptography was imported) of a scan in a fresh interpreter."""
    code = (
        f"{pre}import os, sys; from classifier.cli import main; "
        f"main(['scan', {str(capture)!r}, '-q']); "
        "sys.stderr.write(str('cryptography' in sys.modules))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "CLASSIFIER_PURE_PYTHON": ""},
        cwd=ROOT,
    )
    assert res.returncode in (0, 3), res.stderr
    return res.stdout, res.stderr.strip().endswith("True")


def test_a_scan_with_the_twin_imports_no_cryptography_and_writes_the_same_records():
    """Where the twin is built a QUIC scan never imports ``cryptography`` (a start-up cost the size
    of a small capture's scan); its records are those of the reference keys."""
    _twin()
    capture = ROOT / "pcaps" / "quic-v1.pcap"
    compiled, imported = _scan_in_child(capture, "")
    reference, imported_by_reference = _scan_in_child(
        capture, "import sys; sys.modules['classifier._quicinitial'] = None; "
    )
    assert '"hostname_source":"sni"' in compiled
    assert compiled == reference
    assert not imported and imported_by_reference
