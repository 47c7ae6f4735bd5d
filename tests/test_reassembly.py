"""Stream: first bytes in sequence order despite loss of order, duplicates and wraparound."""

import itertools
import random

from classifier.reassembly import Stream

DATA = bytes(range(256)) * 8  # 2048 bytes


def segments(data, sizes, isn):
    off = 0
    out = []
    for size in itertools.cycle(sizes):
        if off >= len(data):
            return out
        out.append(((isn + 1 + off) & 0xFFFFFFFF, data[off : off + size]))
        off += size


def test_in_order_after_syn():
    st = Stream(4096)
    st.syn(1000)
    for seq, seg in segments(DATA, [100, 300, 7], 1000):
        st.add(seq, seg)
    assert bytes(st.data) == DATA


def test_out_of_order_and_retransmissions():
    rng = random.Random(7)
    segs = segments(DATA, [90, 200, 33], 5000)
    shuffled = segs + rng.sample(segs, 5)  # duplicates too
    rng.shuffle(shuffled)
    st = Stream(4096)
    st.syn(5000)
    for seq, seg in shuffled:
        st.add(seq, seg)
    assert bytes(st.data) == DATA


def test_overlapping_retransmission_with_new_bytes():
    st = Stream(4096)
    st.syn(0)
    st.add(1, DATA[:100])
    assert st.add(51, DATA[50:200]) is True
    assert bytes(st.data) == DATA[:200]
    assert st.add(1, DATA[:150]) is False  # nothing new


def test_sequence_wraparound():
    st = Stream(4096)
    isn = 0xFFFFFF00
    st.syn(isn)
    for seq, seg in reversed(segments(DATA[:1000], [128], isn)):
        st.add(seq, seg)
    assert bytes(st.data) == DATA[:1000]


def test_limit_keeps_only_first_bytes():
    st = Stream(1000)
    st.syn(0)
    for seq, seg in segments(DATA, [300], 0):
        st.add(seq, seg)
    assert st.full and bytes(st.data) == DATA[:1000]
    assert st.add(2000, b"late") is False


def test_without_syn_first_segment_is_start_and_old_bytes_trimmed():
    st = Stream(4096)
    st.add(500, DATA[10:20])
    assert bytes(st.data) == DATA[10:20]
    # a segment that starts before the first one seen contributes only what lies after it
    assert st.add(495, DATA[5:25]) is True
    assert bytes(st.data) == DATA[10:25]
