"""Defragmenter: whole datagram only when every byte is present; bounded."""

from classifier.defrag import Defragmenter

DATA = bytes(range(256)) * 10


def pieces(size):
    return [(off, off + size < len(DATA), DATA[off : off + size]) for off in range(0, len(DATA), size)]


def test_in_order_and_out_of_order():
    for order in (lambda p: p, lambda p: list(reversed(p)), lambda p: p[1::2] + p[0::2]):
        d = Defragmenter()
        parts = order(pieces(1480 // 8 * 8))
        results = [d.add(("k",), 1.0, off, more, data) for off, more, data in parts]
        assert results[:-1] == [None] * (len(parts) - 1)
        assert results[-1] == DATA and d.reassembled == 1


def test_hole_means_no_datagram_and_duplicates_are_harmless():
    d = Defragmenter()
    p = pieces(512)
    for off, more, data in p[:2] + p[3:] + p[:1]:
        assert d.add(("k",), 1.0, off, more, data) is None
    assert d.add(("k",), 1.0, *p[2]) == DATA


def test_bounded_by_count_time_and_size():
    d = Defragmenter(max_datagrams=2, timeout=5.0)
    d.add(("a",), 0.0, 0, True, b"x" * 8)
    d.add(("b",), 1.0, 0, True, b"x" * 8)
    d.add(("c",), 10.0, 0, True, b"x" * 8)  # a and b are older than the timeout
    assert d.abandoned == 2
    assert d.add(("c",), 10.0, 8, False, b"y") == b"x" * 8 + b"y"
    assert d.add(("big",), 10.0, 65528, False, b"z" * 16) is None and d.abandoned == 3
