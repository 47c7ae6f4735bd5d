"""classifier.compressed: plain, gzip and bzip2 input, and everything before damage kept.

The oracles are independent of the module: a fresh decompressor given the compressed bytes up to
the damage yields exactly the output that is known good (for bzip2, the blocks that end before it).
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import random
import struct
import sys
import threading
import zlib
from pathlib import Path

import pytest

from classifier import compressed
from classifier.compressed import Damage, open_input

BLOCK_MAGIC = 0x314159265359  # starts every bzip2 block, at any bit offset


def sample(size: int, seed: int = 1) -> bytes:
    """Data that compresses a little but has no long runs (bzip2 blocks stay near 100 kB at level 1)."""
    rnd = random.Random(seed)
    words = [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(3, 12))) for _ in range(4000)]
    out = bytearray()
    while len(out) < size:
        out += rnd.choice(words)
    return bytes(out[:size])


def bzip2_blocks(packed: bytes) -> list[int]:
    """Bit offsets where the bzip2 blocks of ``packed`` start."""
    bits = bin(int.from_bytes(packed, "big"))[2:].zfill(len(packed) * 8)
    magic = bin(BLOCK_MAGIC)[2:].zfill(48)
    found = []
    at = bits.find(magic)
    while at >= 0:
        found.append(at)
        at = bits.find(magic, at + 1)
    return found


def good_bzip2_prefix(packed: bytes, damaged_byte: int) -> bytes:
    """What the blocks that end before ``damaged_byte`` decompress to."""
    return bz2.BZ2Decompressor().decompress(packed[:damaged_byte])


def read_all(path: str) -> tuple[bytes, Damage | None, str]:
    with open_input(path) as source:
        out = b"".join(iter(source.source.read, b""))
        return out, source.source.damage, source.compression


def read_pipe(payload: bytes) -> tuple[bytes, Damage | None]:
    """Read ``payload`` through a pipe (which cannot be read again), as standard input."""
    rfd, wfd = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(wfd, "wb", buffering=0) as w:
                for i in range(0, len(payload), 4096):
                    w.write(payload[i : i + 4096])
        except BrokenPipeError:  # the reader stopped at the damage
            pass

    t = threading.Thread(target=feed)
    t.start()

    class Stdin:
        buffer = os.fdopen(rfd, "rb")

    old, sys.stdin = sys.stdin, Stdin()  # type: ignore[assignment]
    try:
        source = open_input("-")
        out = b"".join(iter(source.source.read, b""))
        damage = source.source.damage
        source.close()
        assert not Stdin.buffer.closed  # standard input is not the reader's to close
    finally:
        sys.stdin = old
        Stdin.buffer.close()
    t.join()
    return out, damage


@pytest.fixture(scope="module")
def bz_data() -> tuple[bytes, bytes, list[int]]:
    data = sample(600_000)
    packed = bz2.compress(data, 1)
    blocks = bzip2_blocks(packed)
    assert len(blocks) >= 5
    return data, packed, blocks


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# --- detection ------------------------------------------------------------------------------


def test_compression_from_content_not_name(tmp_path: Path) -> None:
    data = sample(5000)
    for name, payload, kind in [
        ("a.gz", data, "none"),
        ("a.txt", gzip.compress(data), "gzip"),
        ("a", bz2.compress(data), "bzip2"),
        ("empty.bz2", b"", "none"),
    ]:
        out, damage, compression = read_all(write(tmp_path, name, payload))
        assert (compression, damage) == (kind, None)
        assert out == (data if payload else b"")


def test_open_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(compressed.InputError, match=r"^no such file$"):
        open_input(str(tmp_path / "missing"))
    with pytest.raises(compressed.InputError, match=r"^is a directory$"):
        open_input(str(tmp_path))


def test_terminal_stdin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.BytesIO):
        def isatty(self) -> bool:
            return True

    class Stdin:
        buffer = Tty(b"")

    monkeypatch.setattr(sys, "stdin", Stdin())
    with pytest.raises(compressed.InputError, match="terminal"):
        open_input("-")


# --- gzip -----------------------------------------------------------------------------------


def test_gzip_corrupt_stored_block_keeps_everything_before_and_says_where(tmp_path: Path) -> None:
    data = sample(400_000)
    packed = gzip.compress(data, compresslevel=0)  # stored blocks: zlib notices the bad header where it is
    pos, before, starts = 10, 0, []
    while True:
        final, length = packed[pos] & 1, struct.unpack_from("<H", packed, pos + 1)[0]
        starts.append((pos, before))
        pos, before = pos + 5 + length, before + length
        if final:
            break
    at, before = starts[4]
    bad = bytearray(packed)
    bad[at + 3] ^= 0x55  # NLEN no longer the complement of LEN
    out, damage, _ = read_all(write(tmp_path, "c.gz", bytes(bad)))
    assert out == data[:before]
    assert damage is not None and damage.offset == before
    assert at <= damage.compressed <= at + 5
    assert str(damage) == (
        f"gzip stream corrupt after decompressed byte {before} (Error -3 while "
        f"decompressing data: invalid stored block lengths), found at compressed byte "
        f"{damage.compressed}"
    )


@pytest.mark.parametrize("cut", [0.3, 0.999])
def test_gzip_truncated(tmp_path: Path, cut: float) -> None:
    data = sample(300_000)
    packed = gzip.compress(data)
    short = packed[: int(len(packed) * cut)]
    available = zlib.decompressobj(31).decompress(short)
    out, damage, _ = read_all(write(tmp_path, "t.gz", short))
    assert out == available
    assert damage == Damage(
        len(available), len(short), f"gzip stream truncated after decompressed byte {len(available)}"
    )


# --- bzip2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["block magic", "block data", "block CRC"])
@pytest.mark.parametrize("through", ["file", "pipe"])
def test_bzip2_damage_keeps_every_block_before_it(tmp_path: Path, bz_data, where: str, through: str) -> None:
    _, packed, blocks = bz_data
    start, end = blocks[2] // 8, blocks[3] // 8  # the third block
    damaged = {"block magic": start + 2, "block data": (start + end) // 2, "block CRC": start + 7}[where]
    bad = bytearray(packed)
    bad[damaged] ^= 0x10
    good = good_bzip2_prefix(packed, damaged)
    assert len(good) > 150_000  # two blocks
    if through == "file":
        out, damage, _ = read_all(write(tmp_path, "c.bz2", bytes(bad)))
    else:
        out, damage = read_pipe(bytes(bad))
    assert out == good  # all of the first two blocks; nothing of the damaged one, not even garbage
    assert damage is not None and damage.offset == len(good)
    assert damage.message == f"bzip2 stream corrupt after decompressed byte {len(good)} (Invalid data stream)"
    # where libbz2 refused: in the header at once, at the end of the block for its data (CRC)
    assert damaged <= damage.compressed <= (damaged + 6 if where == "block magic" else end + 1)


def test_bzip2_truncated_keeps_every_complete_block(tmp_path: Path, bz_data) -> None:
    data, packed, blocks = bz_data
    cut = (blocks[3] + blocks[4]) // 16
    good = good_bzip2_prefix(packed, cut)
    out, damage, _ = read_all(write(tmp_path, "t.bz2", packed[:cut]))
    assert out == good == data[: len(good)] and len(good) > 250_000
    assert damage == Damage(len(good), cut, f"bzip2 stream truncated after decompressed byte {len(good)}")


def test_bzip2_streams_concatenated_and_trailing_garbage(tmp_path: Path) -> None:
    a, b = sample(70_000, 2), sample(90_000, 3)
    out, damage, _ = read_all(write(tmp_path, "two.bz2", bz2.compress(a) + bz2.compress(b)))
    assert (out, damage) == (a + b, None)
    packed = bz2.compress(a)
    out, damage, _ = read_all(write(tmp_path, "junk.bz2", packed + b"\0junk"))
    assert out == a
    assert damage is not None and damage.offset == len(a) and damage.compressed == len(packed)
    assert damage.message.startswith(f"bzip2 stream corrupt after decompressed byte {len(a)}")


def test_bzip2_from_a_pipe_past_what_is_kept(monkeypatch: pytest.MonkeyPatch, bz_data) -> None:
    # from a pipe only the first _KEPT_MAX compressed bytes of a stream are kept for the recovery;
    # past them the output of the damaged piece is dropped, and the damage says so
    data, packed, blocks = bz_data
    monkeypatch.setattr(compressed, "_KEPT_MAX", 20_000)
    damaged = (blocks[2] + blocks[3]) // 16
    bad = bytearray(packed)
    bad[damaged] ^= 0x10
    out, damage = read_pipe(bytes(bad))
    assert out == data[: len(out)] and len(out) <= len(good_bzip2_prefix(packed, damaged))
    assert damage is not None and damage.offset == len(out)
    assert "is dropped unchecked: the input cannot be read again" in damage.message


def test_bzip2_output_past_the_hold_cap_is_flagged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bz_data
) -> None:
    # a block expanding beyond _HELD_MAX is passed on before its CRC is checked; if the check then
    # fails, the damage says how many of those bytes were passed on unchecked
    data, packed, blocks = bz_data
    monkeypatch.setattr(compressed, "_HELD_MAX", 1000)
    monkeypatch.setattr(compressed, "CHUNK", 4096)
    start = blocks[2] // 8
    bad = bytearray(packed)
    bad[start + 7] ^= 0x10  # the stored CRC of the third block: its data decodes, its check fails
    out, damage, _ = read_all(write(tmp_path, "c.bz2", bytes(bad)))
    good = good_bzip2_prefix(packed, start + 7)
    assert out == data[: len(out)] and len(out) > len(good)
    assert damage is not None and damage.offset == len(out)
    assert damage.message.endswith(
        f"; {len(out) - len(good)} bytes before it were passed on before their block could be checked"
    )


def test_bzip2_damage_never_raises_and_keeps_a_prefix(tmp_path: Path) -> None:
    data = sample(250_000, 7)
    packed = bz2.compress(data, 1)
    rnd = random.Random(3)
    path = tmp_path / "f.bz2"
    for i in range(40):
        bad = bytearray(packed)
        damaged = rnd.randrange(len(bad))
        bad[damaged] ^= 1 << rnd.randrange(8)
        if i % 4 == 3:
            del bad[rnd.randrange(damaged, len(bad)) :]
        path.write_bytes(bytes(bad))
        out, damage, _ = read_all(str(path))
        assert out == data[: len(out)], damaged  # checked output only: never garbage
        assert len(out) >= len(good_bzip2_prefix(packed, damaged)), damaged
        assert damage is not None or out == data
