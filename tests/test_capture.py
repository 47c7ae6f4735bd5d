"""Tests for classifier.capture: pcap / pcapng / gzip / stdin records, and every defect reported."""

from __future__ import annotations

import gzip
import io
import math
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import zlib
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the package is not installed in the venv; import it from the tree
    sys.path.insert(0, str(ROOT))

from classifier import capture  # noqa: E402
from classifier.capture import (  # noqa: E402
    CaptureError,
    CaptureProblem,
    Interface,
    open_capture,
)
from classifier.errors import UserError  # noqa: E402

REAL = ROOT.parent / "shared" / "pcaps" / "real"

# --- builders -------------------------------------------------------------------------------

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101


def pcap_bytes(
    records: list[tuple[int, int, bytes]],
    order: str = "<",
    nano: bool = False,
    snaplen: int = 65535,
    network: int = LINKTYPE_ETHERNET,
) -> bytes:
    """A pcap file: records are (ts_sec, ts_frac, data)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, network)]
    for sec, frac, data in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(data), len(data) + 100) + data)
    return b"".join(out)


def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def block(order: str, btype: int, body: bytes) -> bytes:
    body = pad4(body)
    blen = 12 + len(body)
    return struct.pack(order + "II", btype, blen) + body + struct.pack(order + "I", blen)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + pad4(value)


def idb(
    order: str,
    linktype: int,
    snaplen: int = 0,
    name: str | None = None,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    opts = b""
    if name is not None:
        opts += option(order, 2, name.encode())
    if tsresol is not None:
        opts += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += option(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += option(order, 0, b"")
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order: str, iid: int, ts: int, data: bytes, orig: int | None = None) -> bytes:
    head = struct.pack(
        order + "IIIII", iid, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data) if orig is None else orig
    )
    return block(order, 6, head + pad4(data) + option(order, 1, b"a comment") + option(order, 0, b""))


def spb(order: str, data: bytes, orig: int | None = None) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data) if orig is None else orig) + data)


def pb(order: str, iid: int, ts: int, data: bytes) -> bytes:
    head = struct.pack(order + "HHIIII", iid, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
    return block(order, 2, head + data)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def read_all(path: str) -> tuple[list[tuple[float, int, bytes, int]], capture.CaptureReader]:
    r = open_capture(path)
    try:
        recs = list(r)
    finally:
        r.close()
    assert r.records == len(recs)
    return recs, r


def frames(n: int, seed: int = 1, lo: int = 1, hi: int = 1600) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(rnd.randint(lo, hi)) for _ in range(n)]


# --- pcap -----------------------------------------------------------------------------------

PCAP_TS = [(0, 1), (1600000000, 0), (1600000000, 1), (1700000001, 999999), (4294967295, 123456)]
PCAPNS_TS = [(0, 1), (1600000000, 0), (1600000000, 1), (1700000001, 999999999), (1234567890, 123456789)]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, order: str, nano: bool) -> None:
    ts = PCAPNS_TS if nano else PCAP_TS
    data = frames(len(ts))
    raw = pcap_bytes(
        [(s, f, d) for (s, f), d in zip(ts, data, strict=True)], order, nano, network=LINKTYPE_RAW
    )
    path = write(tmp_path, "x.cap", raw)
    recs, r = read_all(path)
    units = 10**9 if nano else 10**6
    assert [rec[0] for rec in recs] == [s + f / units for s, f in ts]
    assert recs[0][0] == 1 / units  # the divisor is the file's resolution
    for (s, f), rec in zip(ts, recs, strict=True):  # and the float is the nearest one, give or take an ulp
        exact = Fraction(s) + Fraction(f, units)
        assert abs(Fraction(rec[0]) - exact) <= Fraction(math.ulp(float(exact)))
    assert [rec[2] for rec in recs] == data
    assert {(rec[1], rec[3]) for rec in recs} == {(LINKTYPE_RAW, 0)}
    assert r.format == "pcap" and not r.compressed and r.path == path
    assert r.interfaces == [Interface(LINKTYPE_RAW, None, 65535)]
    assert r.problems == []
    assert r.position == r.size == len(raw)


def test_pcap_linktype_ignores_fcs_bits(tmp_path: Path) -> None:
    raw = pcap_bytes([(1, 2, b"abc")], network=0x14000000 | LINKTYPE_ETHERNET)
    recs, r = read_all(write(tmp_path, "fcs.pcap", raw))
    assert recs[0][1] == LINKTYPE_ETHERNET and r.interfaces[0].linktype == LINKTYPE_ETHERNET


def test_pcap_records_across_chunk_boundaries(tmp_path: Path) -> None:
    data = frames(3000, seed=7, lo=60, hi=1500)  # ~2.3 MB: several 1 MiB reads
    data.append(os.urandom(1_500_000))  # one record larger than a read chunk
    data.append(b"tail")
    raw = pcap_bytes([(i, i, d) for i, d in enumerate(data)], snaplen=2_000_000)
    recs, r = read_all(write(tmp_path, "big.pcap", raw))
    assert [rec[2] for rec in recs] == data
    assert [rec[0] for rec in recs] == [i + i / 1e6 for i in range(len(data))]
    assert r.problems == []


def test_format_from_magic_not_name(tmp_path: Path) -> None:
    recs, r = read_all(write(tmp_path, "really-pcap.pcapng.gz", pcap_bytes([(1, 0, b"x")])))
    assert (r.format, r.compressed, len(recs)) == ("pcap", False, 1)
    ng = shb("<") + idb("<", 1) + epb("<", 0, 5, b"y")
    recs, r = read_all(write(tmp_path, "really-pcapng.pcap", ng))
    assert (r.format, r.compressed, len(recs)) == ("pcapng", False, 1)


# --- pcapng ---------------------------------------------------------------------------------


def multi_section_pcapng() -> tuple[bytes, list[tuple[float, int, bytes, int]], dict[str, int]]:
    """Two sections (little- then big-endian), three interfaces, every packet block kind.

    Returns the file, the records it must yield and the offsets of interesting blocks.
    """
    le, be = "<", ">"
    blocks: list[tuple[str, bytes]] = [
        ("shb1", shb(le)),
        ("idb_eth", idb(le, LINKTYPE_ETHERNET, 0, name="eth0")),  # default resolution: microseconds
        ("idb_raw", idb(le, LINKTYPE_RAW, 65535, name="tun0", tsresol=9)),
        ("epb1", epb(le, 0, 1_600_000_000_123_456, b"\x01" * 5, orig=60)),  # 5 bytes, padded to 8
        ("nrb", block(le, 4, b"\x01\x00\x04\x00\x0a\x00\x00\x01host\x00\x00\x00\x00")),
        ("epb2", epb(le, 1, 1_600_000_001_987_654_321, b"\x45" + b"\x02" * 19)),
        ("spb1", spb(le, b"\x03" * 7)),  # interface 0, timestamp of the packet before
        ("epb_bad_iface", epb(le, 5, 99, b"lost")),
        ("isb", block(le, 5, struct.pack(le + "III", 0, 0, 0))),
        ("custom", block(le, 0x00000BAD, b"custom block payload")),
        ("unknown", block(le, 0x12345678, b"")),
        ("epb3", epb(le, 0, 1_600_000_002_000_001, b"\x04" * 60)),
        ("shb2", shb(be)),  # ids restart: interface 0 of this section is the third interface
        ("idb_raw2", idb(be, LINKTYPE_RAW, 6, name="ppp0", tsresol=0x80 | 20, tsoffset=1000)),
        ("epb4", epb(be, 0, 5 * 2**20 + 2**19, b"\x45\x05\x05")),
        ("spb2", spb(be, b"\x06" * 6, orig=1500)),  # snaplen 6: 6 of 1500 bytes, then 2 padding bytes
        ("pb", pb(be, 0, 7 * 2**20 + 2**18, b"\x45\x07")),
    ]
    offsets: dict[str, int] = {}
    pos = 0
    for name, b in blocks:
        offsets[name] = pos
        pos += len(b)
    # pcapng time is ticks / units, rounded once; if_tsoffset is added in seconds
    t1 = 1_600_000_000_123_456 / 10**6
    t2 = 1_600_000_001_987_654_321 / 10**9
    want = [
        (t1, LINKTYPE_ETHERNET, b"\x01" * 5, 0),
        (t2, LINKTYPE_RAW, b"\x45" + b"\x02" * 19, 1),
        (t2, LINKTYPE_ETHERNET, b"\x03" * 7, 0),  # SPB: the previous packet's time
        (1_600_000_002_000_001 / 10**6, LINKTYPE_ETHERNET, b"\x04" * 60, 0),
        (5.5 + 1000, LINKTYPE_RAW, b"\x45\x05\x05", 2),
        (5.5 + 1000, LINKTYPE_RAW, b"\x06" * 6, 2),
        (7.25 + 1000, LINKTYPE_RAW, b"\x45\x07", 2),
    ]
    # the nearest float to the exact time; float(ticks) / 1e9 would not be
    assert t2 == float(Fraction(1_600_000_001_987_654_321, 10**9))
    assert t2 != float(1_600_000_001_987_654_321) / 1e9
    return b"".join(b for _, b in blocks), want, offsets


def test_pcapng_sections_interfaces_and_block_kinds(tmp_path: Path) -> None:
    raw, want, offsets = multi_section_pcapng()
    recs, r = read_all(write(tmp_path, "multi.pcapng", raw))
    assert recs == want
    assert r.format == "pcapng"
    assert r.interfaces == [
        Interface(LINKTYPE_ETHERNET, "eth0", 0),
        Interface(LINKTYPE_RAW, "tun0", 65535),
        Interface(LINKTYPE_RAW, "ppp0", 6),
    ]
    # the EPB naming interface 5 is the 4th packet record; it is skipped, reading goes on
    assert r.problems == [
        CaptureProblem(
            r.path,
            offsets["epb_bad_iface"],
            4,
            "packet names interface 5, but the section has 2 interface(s)",
        )
    ]
    assert r.position == r.size == len(raw)


def test_pcapng_spb_before_any_packet_has_time_zero(tmp_path: Path) -> None:
    raw = shb("<") + idb("<", LINKTYPE_RAW) + spb("<", b"\x45abc") + epb("<", 0, 3_000_000, b"\x45")
    recs, r = read_all(write(tmp_path, "spb.pcapng", raw))
    assert recs == [(0.0, LINKTYPE_RAW, b"\x45abc", 0), (3.0, LINKTYPE_RAW, b"\x45", 0)]
    assert r.problems == []


def test_pcapng_packet_before_interface(tmp_path: Path) -> None:
    raw = shb("<") + spb("<", b"zz") + idb("<", 1) + epb("<", 0, 1, b"ok")
    recs, r = read_all(write(tmp_path, "noidb.pcapng", raw))
    assert [rec[2] for rec in recs] == [b"ok"]
    assert len(r.problems) == 1 and r.problems[0].packet == 1 and r.problems[0].offset == 28
    assert "no interface" in r.problems[0].message


def test_pcapng_captured_length_beyond_block(tmp_path: Path) -> None:
    good = epb("<", 0, 1, b"abcd")
    bad = bytearray(good)
    struct.pack_into("<I", bad, 20, 4000)  # captured length far beyond the block
    raw = shb("<") + idb("<", 1) + bytes(bad) + good
    recs, r = read_all(write(tmp_path, "caplen.pcapng", raw))
    assert [rec[2] for rec in recs] == [b"abcd"]
    assert [(p.packet, p.offset) for p in r.problems] == [(1, 28 + 20)]
    assert "captured length 4000" in r.problems[0].message


@pytest.mark.parametrize(
    "field,value,why",
    [
        ("lead", 30, "not a multiple of 4"),
        ("lead", 8, "less than 12"),
        ("lead", 0x7FFFFFFC, "limit"),
        ("trail", 36, "trailing length 36"),
    ],
)
def test_pcapng_corrupt_block_length_stops(tmp_path: Path, field: str, value: int, why: str) -> None:
    head = shb("<") + idb("<", 1) + epb("<", 0, 1, b"first")
    bad = bytearray(epb("<", 0, 2, b"second"))
    struct.pack_into("<I", bad, 4 if field == "lead" else len(bad) - 4, value)
    raw = head + bytes(bad) + epb("<", 0, 3, b"third")
    recs, r = read_all(write(tmp_path, "blen.pcapng", raw))
    assert [rec[2] for rec in recs] == [b"first"]  # no resync: "third" is not read
    assert len(r.problems) == 1
    p = r.problems[0]
    assert (p.offset, p.packet) == (len(head), 2)
    assert "corrupt block" in p.message and why in p.message


def test_pcapng_bad_byte_order_magic(tmp_path: Path) -> None:
    raw = bytearray(shb("<") + idb("<", 1) + epb("<", 0, 1, b"x"))
    raw[8:12] = b"\x00\x11\x22\x33"
    recs, r = read_all(write(tmp_path, "bom.pcapng", bytes(raw)))
    assert recs == [] and len(r.problems) == 1 and r.problems[0].offset == 0
    assert "byte-order magic" in r.problems[0].message


# --- gzip -----------------------------------------------------------------------------------


def capture_variants() -> dict[str, bytes]:
    data = frames(50, seed=3)
    return {
        "pcap-le-usec": pcap_bytes([(1_600_000_000 + i, i * 7, d) for i, d in enumerate(data)]),
        "pcap-be-nsec": pcap_bytes([(1_600_000_000 + i, i * 7, d) for i, d in enumerate(data)], ">", True),
        "pcapng-multi": multi_section_pcapng()[0],
    }


@pytest.mark.parametrize("name", list(capture_variants()))
def test_gzip_same_records_as_plain(tmp_path: Path, name: str) -> None:
    raw = capture_variants()[name]
    plain, rp = read_all(write(tmp_path, "plain", raw))
    gz = gzip.compress(raw)
    recs, r = read_all(write(tmp_path, "c.gz", gz))
    assert recs == plain and len(recs) > 0
    assert r.compressed and not rp.compressed and r.format == rp.format
    assert [(p.offset, p.packet, p.message) for p in r.problems] == [
        (p.offset, p.packet, p.message) for p in rp.problems
    ]
    assert r.position == r.size == len(gz)  # compressed bytes: what a progress bar divides by size


def test_gzip_multi_member_and_zero_padding(tmp_path: Path) -> None:
    raw = capture_variants()["pcap-le-usec"]
    gz = gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]) + b"\0" * 64
    recs, r = read_all(write(tmp_path, "multi.gz", gz))
    assert recs == read_all(write(tmp_path, "plain", raw))[0]
    assert r.problems == []


def complete_pcap_records(decompressed: bytes) -> int:
    """How many whole records a pcap prefix holds (an independent count for the gzip tests)."""
    pos, n = 24, 0
    while pos + 16 <= len(decompressed):
        incl = struct.unpack_from("<I", decompressed, pos + 8)[0]
        if pos + 16 + incl > len(decompressed):
            break
        pos += 16 + incl
        n += 1
    return n


@pytest.mark.parametrize("cut", [0.3, 0.77, 0.999])
def test_gzip_truncated_keeps_every_complete_record(tmp_path: Path, cut: float) -> None:
    raw = capture_variants()["pcap-le-usec"]
    gz = gzip.compress(raw)
    short = gz[: int(len(gz) * cut)]
    available = zlib.decompressobj(31).decompress(short)  # all that can be decompressed
    recs, r = read_all(write(tmp_path, "t.gz", short))
    want = read_all(write(tmp_path, "plain", raw))[0]
    assert len(recs) == complete_pcap_records(available) > 0
    assert recs == want[: len(recs)]
    msgs = [p.message for p in r.problems]
    assert f"gzip stream truncated after decompressed byte {len(available)}" in msgs
    assert r.problems[0].offset == len(available)


def test_gzip_missing_only_trailer(tmp_path: Path) -> None:
    raw = capture_variants()["pcap-le-usec"]
    recs, r = read_all(write(tmp_path, "t.gz", gzip.compress(raw)[:-8]))
    assert len(recs) == 50
    assert [p.message for p in r.problems] == [f"gzip stream truncated after decompressed byte {len(raw)}"]


def stored_block_starts(gz: bytes) -> list[tuple[int, int]]:
    """(offset in gz, decompressed bytes before it) of each stored deflate block (level 0)."""
    out, pos, before = [], 10, 0
    while True:
        final, length = gz[pos] & 1, struct.unpack_from("<H", gz, pos + 1)[0]
        out.append((pos, before))
        pos, before = pos + 5 + length, before + length
        if final:
            return out


def test_gzip_corrupt_mid_stream_keeps_output_up_to_the_bad_byte(tmp_path: Path) -> None:
    # stored blocks: zlib notices a bad block header exactly where it is, so everything before
    # it is known-good output that must all come through (gzip.GzipFile loses the output of the
    # whole read chunk in which the error is found)
    data = frames(600, seed=11)
    raw = pcap_bytes([(i, 0, d) for i, d in enumerate(data)])
    gz = gzip.compress(raw, compresslevel=0)
    starts = stored_block_starts(gz)
    assert len(starts) >= 5
    for at, before in starts[1:]:
        bad = bytearray(gz)
        bad[at + 3] ^= 0x55  # NLEN no longer the complement of LEN
        recs, r = read_all(write(tmp_path, "c.gz", bytes(bad)))
        n = complete_pcap_records(raw[:before])
        assert [rec[2] for rec in recs] == data[:n]
        assert r.problems[0] == CaptureProblem(
            r.path,
            before,
            None,
            f"gzip stream corrupt after decompressed byte {before} (Error -3 while decompressing data: "
            "invalid stored block lengths)",
        )
        # the record cut off by the corruption is reported too
        assert [p.packet for p in r.problems[1:]] == [n + 1]


def test_gzip_corrupt_deflate_is_reported_even_when_garbage_comes_first(tmp_path: Path) -> None:
    # a flipped bit in Huffman-coded data usually decodes to garbage for a while before zlib
    # objects; the parser stops on the garbage, and the gzip problem must still be reported
    data = [bytes([i % 251]) * (200 + i % 50) for i in range(3000)]
    raw = pcap_bytes([(i, 0, d) for i, d in enumerate(data)])
    gz = gzip.compress(raw)
    rnd = random.Random(5)
    for _ in range(20):
        bad = bytearray(gz)
        bad[rnd.randrange(100, len(gz) - 20)] ^= 0xFF
        _, r = read_all(write(tmp_path, "c.gz", bytes(bad)))
        assert any(p.message.startswith("gzip stream corrupt") for p in r.problems), r.problems


def test_gzip_crc_error_and_trailing_garbage(tmp_path: Path) -> None:
    raw = capture_variants()["pcap-be-nsec"]
    gz = bytearray(gzip.compress(raw))
    gz[-8] ^= 1  # CRC32
    recs, r = read_all(write(tmp_path, "crc.gz", bytes(gz)))
    assert len(recs) == 50
    assert len(r.problems) == 1 and "gzip stream corrupt" in r.problems[0].message
    recs, r = read_all(write(tmp_path, "garbage.gz", gzip.compress(raw) + b"garbage!"))
    assert len(recs) == 50
    assert [p.offset for p in r.problems] == [len(raw)]
    assert "gzip stream corrupt after decompressed byte" in r.problems[0].message


# --- stdin ----------------------------------------------------------------------------------


class FakeStdin:
    def __init__(self, buffer: io.BufferedReader) -> None:
        self.buffer = buffer


@pytest.mark.parametrize("compressed", [False, True])
def test_stdin_pipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compressed: bool) -> None:
    raw = capture_variants()["pcapng-multi"]
    payload = gzip.compress(raw) if compressed else raw
    rfd, wfd = os.pipe()

    def feed() -> None:  # dribble the bytes in so reads come back short
        with os.fdopen(wfd, "wb", buffering=0) as w:
            for i in range(0, len(payload), 97):
                w.write(payload[i : i + 97])

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(rfd, "rb") as rf:
        monkeypatch.setattr(sys, "stdin", FakeStdin(rf))
        r = open_capture("-")
        recs = list(r)
        r.close()
        assert not rf.closed  # stdin is not ours to close
    t.join()
    assert recs == multi_section_pcapng()[1]
    assert r.path == "-" and r.size is None and r.compressed == compressed
    assert r.position == len(payload)
    assert [p.packet for p in r.problems] == [4]


def test_stdin_terminal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.BytesIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", FakeStdin(Tty(pcap_bytes([]))))  # type: ignore[arg-type]
    with pytest.raises(CaptureError, match=r"^stdin: is a terminal"):
        open_capture("-")


def test_stdin_subprocess_truncated(tmp_path: Path) -> None:
    raw = capture_variants()["pcap-le-usec"]
    last = len(pcap_bytes([(1, 1, d) for d in frames(50, seed=3)[:49]]))  # where record 50 starts
    code = (
        "from classifier.capture import open_capture\n"
        "r = open_capture('-')\n"
        "print(sum(1 for _ in r), r.format, r.compressed, r.size)\n"
        "print(*r.problems, sep='\\n')\n"
    )
    for payload, compressed in [(raw[:-10], False), (gzip.compress(raw[:-10]), True)]:
        out = (
            subprocess.run(
                [sys.executable, "-c", code],
                input=payload,
                cwd=ROOT,
                capture_output=True,
                check=True,
                timeout=60,
            )
            .stdout.decode()
            .splitlines()
        )
        assert out[0] == f"49 pcap {compressed} None"
        assert out[1:] == [
            f"-: packet 50: offset {last}: truncated record: header says "
            f"{len(raw) - last - 16} bytes, {len(raw) - last - 26} present"
        ]


# --- truncation -----------------------------------------------------------------------------


def test_pcap_truncation_points(tmp_path: Path) -> None:
    data = [b"a" * 10, b"b" * 20, b"c" * 30]
    raw = pcap_bytes([(1, 1, d) for d in data])
    rec2, rec3 = 24 + 16 + 10, 24 + 16 + 10 + 16 + 20
    cases = [
        # cut, records yielded, problem offset, packet, message start
        (10, 0, 0, None, "truncated file header: 24 bytes needed, 10 present"),
        (24, 0, None, None, None),  # header only: nothing wrong
        (rec2, 1, None, None, None),  # ends exactly after a record
        (rec2 + 5, 1, rec2, 2, "truncated record header: 16 bytes needed, 5 present"),
        (rec2 + 16, 1, rec2, 2, "truncated record: header says 20 bytes, 0 present"),
        (rec3 + 16 + 29, 2, rec3, 3, "truncated record: header says 30 bytes, 29 present"),
    ]
    for cut, n, offset, packet, message in cases:
        recs, r = read_all(write(tmp_path, f"cut{cut}.pcap", raw[:cut]))
        assert [rec[2] for rec in recs] == data[:n], cut
        if message is None:
            assert r.problems == [], cut
        else:
            assert r.problems == [CaptureProblem(r.path, offset, packet, message)], cut
    p = CaptureProblem("x.pcap", rec3, 3, "truncated record: header says 30 bytes, 29 present")
    assert str(p) == f"x.pcap: packet 3: offset {rec3}: truncated record: header says 30 bytes, 29 present"
    assert str(CaptureProblem("y", None, None, "m")) == "y: m"


def test_pcap_trailing_garbage(tmp_path: Path) -> None:
    raw = pcap_bytes([(1, 1, b"abc")])
    recs, r = read_all(write(tmp_path, "g.pcap", raw + b"junk"))
    assert len(recs) == 1
    assert [(p.offset, p.packet) for p in r.problems] == [(len(raw), 2)]


def test_pcap_oversized_record_is_corrupt_and_stops(tmp_path: Path) -> None:
    first = pcap_bytes([(1, 1, b"ok")], snaplen=65535)
    bad = struct.pack("<IIII", 2, 2, 300000, 300000) + b"x" * 300000
    last = struct.pack("<IIII", 3, 3, 4, 4) + b"late"
    recs, r = read_all(write(tmp_path, "big.pcap", first + bad + last))
    assert [rec[2] for rec in recs] == [b"ok"]
    message = "corrupt record: header says 300000 bytes, more than the limit 262144"
    assert r.problems == [CaptureProblem(r.path, len(first), 2, message)]
    # with a large snaplen the same record is legal
    recs, r = read_all(write(tmp_path, "big2.pcap", pcap_bytes([(1, 1, b"ok")], snaplen=400000) + bad + last))
    assert len(recs) == 3 and r.problems == []


def test_pcapng_truncation_points(tmp_path: Path) -> None:
    head = shb(">") + idb(">", LINKTYPE_RAW)
    e1, e2 = epb(">", 0, 1, b"one"), epb(">", 0, 2, b"two" * 10)
    raw = head + e1 + e2
    cases = [
        (10, 0, 0, None, "truncated block: 10 bytes left, a block needs at least 12"),
        (20, 0, 0, None, "truncated block: block length says 28 bytes, 20 present"),
        (len(head), 0, None, None, None),
        (len(head) + 4, 0, len(head), None, "truncated block: 4 bytes left, a block needs at least 12"),
        (
            len(head) + len(e1) + 30,
            1,
            len(head) + len(e1),
            2,
            f"truncated enhanced packet block: block length says {len(e2)} bytes, 30 present",
        ),
        (
            len(raw) - 1,
            1,
            len(head) + len(e1),
            2,
            f"truncated enhanced packet block: block length says {len(e2)} bytes, {len(e2) - 1} present",
        ),
    ]
    for cut, n, offset, packet, message in cases:
        recs, r = read_all(write(tmp_path, f"cut{cut}.pcapng", raw[:cut]))
        assert len(recs) == n, cut
        if message is None:
            assert r.problems == [], cut
        else:
            assert r.problems == [CaptureProblem(r.path, offset, packet, message)], cut


# --- inputs that cannot be read at all ------------------------------------------------------


def assert_capture_error(path: str, *fragments: str) -> None:
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(path + ":"), text
    for fragment in fragments:
        assert fragment in text, text
    assert isinstance(info.value, UserError)


def test_unreadable_inputs(tmp_path: Path) -> None:
    assert_capture_error(str(tmp_path / "missing.pcap"), "no such file")
    assert_capture_error(str(tmp_path), "directory")
    assert_capture_error(write(tmp_path, "empty.pcap", b""), "empty")
    assert_capture_error(
        write(tmp_path, "page.pcap", b"<html><body>hello</body></html>"),
        "not a pcap or pcapng capture",
        "3c 68 74 6d",
    )
    assert_capture_error(write(tmp_path, "tiny.pcap", b"\xd4\xc3"), "too short")
    assert_capture_error(write(tmp_path, "empty.gz", gzip.compress(b"")), "gzip", "empty")
    assert_capture_error(
        write(tmp_path, "text.gz", gzip.compress(b"hello world")), "gzip", "not a pcap or pcapng capture"
    )
    assert_capture_error(write(tmp_path, "cut.gz", gzip.compress(b"x" * 1000)[:10]), "gzip stream truncated")


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "secret.pcap", pcap_bytes([(1, 1, b"x")]))
    if os.geteuid() == 0:  # root reads anything: make open() refuse as it would for a user

        def refuse(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", path)

        monkeypatch.setattr(capture, "open", refuse, raising=False)
    else:
        os.chmod(path, 0)
    assert_capture_error(path, "permission denied")


def test_header_only_files(tmp_path: Path) -> None:
    for name, raw, fmt in [
        ("h.pcap", pcap_bytes([]), "pcap"),
        ("h.pcapng", shb("<"), "pcapng"),
        ("h.pcap.gz", gzip.compress(pcap_bytes([], ">", True)), "pcap"),
    ]:
        recs, r = read_all(write(tmp_path, name, raw))
        assert (recs, r.problems, r.format) == ([], [], fmt)


# --- fuzz -----------------------------------------------------------------------------------


def check_invariants(path: str) -> None:
    try:
        r = open_capture(path)
    except CaptureError:
        return
    n = 0
    for ts, linktype, frame, iface in r:
        assert type(ts) is float and type(frame) is bytes
        assert 0 <= iface < len(r.interfaces) and r.interfaces[iface].linktype == linktype
        n += 1
    r.close()
    assert n == r.records
    for p in r.problems:
        assert p.path == path and "\n" not in p.message and p.message


def test_fuzz_truncations_and_flips_never_raise(tmp_path: Path) -> None:
    rnd = random.Random(20240601)
    seeds = dict(capture_variants())
    seeds["pcapng-gz"] = gzip.compress(seeds["pcapng-multi"])
    seeds["pcap-gz"] = gzip.compress(seeds["pcap-le-usec"])
    path = str(tmp_path / "fuzz")
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("capture reader hung"))
    signal.alarm(120)
    try:
        for _name, raw in seeds.items():
            for i in range(250):
                b = bytearray(raw)
                if i % 3 != 1:
                    for _ in range(rnd.randint(1, 4)):
                        b[rnd.randrange(len(b))] = rnd.randrange(256)
                if i % 3 != 0:
                    del b[rnd.randrange(len(b)) :]
                Path(path).write_bytes(bytes(b))
                check_invariants(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def record_ends(raw: bytes) -> tuple[set[int], list[int]]:
    """Offsets where a record or block ends, and where each record that must be yielded ends."""
    if raw[:4] != b"\x0a\x0d\x0d\x0a":
        order = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        ends, pos = [24], 24
        while pos < len(raw):
            pos += 16 + struct.unpack_from(order + "I", raw, pos + 8)[0]
            ends.append(pos)
        return set(ends), ends[1:]
    bounds, yields, pos, order, nifaces = set(), [], 0, "<", 0
    while pos < len(raw):
        if raw[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if raw[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            nifaces = 0
        btype, blen = struct.unpack_from(order + "II", raw, pos)
        iid = struct.unpack_from(order + ("H" if btype == 2 else "I"), raw, pos + 8)[0]
        pos += blen
        bounds.add(pos)
        nifaces += btype == 1
        if (btype in (2, 6) and iid < nifaces) or (btype == 3 and nifaces):
            yields.append(pos)
    return bounds, yields


def test_fuzz_truncation_yields_every_complete_record(tmp_path: Path) -> None:
    rnd = random.Random(99)
    for raw in capture_variants().values():
        full = read_all(write(tmp_path, "full", raw))[0]
        bounds, yields = record_ends(raw)
        assert len(yields) == len(full)
        for cut in [*rnd.sample(range(len(raw)), 80), *rnd.sample(sorted(bounds), 5)]:
            path = write(tmp_path, "cut", raw[:cut])
            if cut < 4:
                with pytest.raises(CaptureError):
                    open_capture(path)
                continue
            recs, r = read_all(path)
            assert recs == full[: sum(end <= cut for end in yields)], cut
            # a cut inside a record loses it, and exactly one problem says so
            truncs = [p for p in r.problems if p.message.startswith("truncated")]
            assert len(truncs) == (0 if cut in bounds else 1), cut


# --- real captures --------------------------------------------------------------------------


def real_captures() -> list[Path]:
    if not REAL.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{REAL} is missing and CI is set")
        pytest.skip(f"{REAL} not present")
    files = sorted(p for p in REAL.iterdir() if p.suffix in (".pcap", ".pcapng"))
    assert files
    return files


@pytest.mark.real
def test_real_captures_match_dpkt() -> None:
    import dpkt

    for path in real_captures():
        recs, r = read_all(str(path))
        assert r.problems == [], path
        assert r.position == r.size == path.stat().st_size
        with path.open("rb") as f:
            if r.format == "pcap":
                ref = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
                assert [(rec[0], rec[2]) for rec in recs] == ref, path
            else:  # dpkt mis-times multi-interface files: compare frames only
                ref = [(ts, bytes(buf)) for ts, buf in dpkt.pcapng.Reader(f)]
                assert [rec[2] for rec in recs] == [b for _, b in ref], path
        assert len(recs) == len(ref) > 0, path
        assert {rec[1] for rec in recs} == {i.linktype for i in r.interfaces}, path
