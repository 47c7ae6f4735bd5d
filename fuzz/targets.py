"""The fuzz targets: what each one feeds to which entry point, and the contract it checks.

The contract everywhere: only the documented error may escape (``MalformedError`` from a parser;
for whole files the reader's reported problems and nothing raised), nothing hangs (the runner
gives every input a time limit) and memory stays bounded (the runner's RSS limit). Where a
cheap oracle exists a target checks more: a parser that accepts a stream must not have rejected
any prefix of it (inspection calls the parsers as bytes arrive), reassembled bytes must be the
bytes that were sent, and the whole scan must report every flow exactly once and lose no packet.

A target is a plain function of ``bytes`` that raises on a finding, so the regression corpus
replays without atheris. Structured targets read their input with :class:`Take`, a small byte
consumer whose encodings libFuzzer's mutations explore well (lengths and counts are bytes).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from fuzz import quic_initial
from fuzz.surface import (
    LINKTYPES,
    MAX_DATAGRAM,
    MAX_TUNNEL_DEPTH,
    UNSUPPORTED_LINKTYPE,
    CaptureError,
    CaptureProblem,
    Defragmenter,
    MalformedError,
    MrtReader,
    Needles,
    PathClassifier,
    RouteTable,
    Signatures,
    Stream,
    cli_main,
    decode,
    dns,
    fragment,
    http,
    ja4,
    mmtls,
    open_capture,
    prelude,
    quic,
    serverhello,
    skip_reason,
    tls,
    transport,
)


class ContractError(AssertionError):
    """A target's contract was broken (not an exception of the code under test)."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ContractError(what)


class Take:
    """Consume a fuzz input as fields; past the end every field reads as zero/empty."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return max(0, len(self.data) - self.pos)

    def uint(self, size: int) -> int:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return int.from_bytes(chunk, "big")

    def bytes(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def _parse(fn: Callable, data: bytes):
    """``fn(data)``, with MalformedError (the documented failure) turned into None."""
    try:
        return fn(data)
    except MalformedError as err:
        _check(bool(err.layer and err.field) and "\n" not in str(err), f"unusable MalformedError {err!r}")
        return None


def _cuts(n: int) -> tuple[int, ...]:
    """A few prefix lengths of an n-byte input (deterministic, so findings reproduce)."""
    return tuple(sorted({1, n // 3, n // 2, (2 * n) // 3, n - 1} - {0, n})) if n > 1 else ()


def _prefixes_agree(fn: Callable, data: bytes, whole) -> None:
    """A stream parser that accepts ``data`` must answer None or the same for its prefixes:
    inspection calls it on every prefix as segments arrive and gives up on the first error."""
    for cut in _cuts(len(data)):
        try:
            part = fn(data[:cut])
        except MalformedError as err:
            raise ContractError(f"prefix of {cut} bytes rejected ({err}) but the whole is accepted") from None
        _check(part is None or part == whole, f"prefix of {cut} bytes gives a different answer")


# --- inspectors -----------------------------------------------------------------------------


def fuzz_tls(data: bytes) -> None:
    tls.looks_like_tls(data)
    hello = _parse(tls.parse_client_hello, data)
    if hello is not None:
        _check(hello.sni is None or isinstance(hello.sni, str), "sni is not text")
        _check(all(isinstance(a, str) for a in hello.alpn), "alpn is not text")
        _prefixes_agree(tls.parse_client_hello, data, hello)
        for quic_flag in (False, True):
            _check(len(ja4.ja4(hello, quic_flag).split("_")) == 3, "ja4 is not three parts")
    # The message-level entry point QUIC uses: the body after record and handshake headers.
    _parse(tls.parse_client_hello_message, data[9:])
    # The same bytes as a ServerHello (handshake type 2): a structurally close message for JA4S.
    if len(data) > 5:
        as_server = data[:5] + b"\x02" + data[6:]
        sh = _parse(serverhello.parse_server_hello, as_server)
        if sh is not None:
            _prefixes_agree(serverhello.parse_server_hello, as_server, sh)
            _check(ja4.ja4s(sh).count("_") == 2, "ja4s is not three parts")


# Server greetings the prelude target chooses from with its first byte (none, SMTP/FTP, IMAP, POP3).
PRELUDE_BANNERS = (b"", b"220 mail.example ESMTP\r\n", b"* OK IMAP4rev1 ready\r\n", b"+OK POP3 ready\r\n")


def fuzz_prelude(data: bytes) -> None:
    if not data:
        return
    server = PRELUDE_BANNERS[data[0] % len(PRELUDE_BANNERS)]
    client = data[1:]
    found = prelude.find_tls_start(client, server)
    if found is None or found is prelude.NOT_A_PRELUDE:
        return
    _check(0 < found.tls_offset <= min(len(client), prelude.MAX_PRELUDE_BYTES), "tls_offset out of range")
    _check(found.host is None or (isinstance(found.host, str) and 0 <= found.port < 65536), "bad target")
    for cut in _cuts(len(client)):
        part = prelude.find_tls_start(client[:cut], server)
        _check(part is None or part == found, f"prefix of {cut} bytes gives a different answer")


def fuzz_http(data: bytes) -> None:
    http.looks_like_http_request(data)
    request = _parse(http.parse_http_request, data)
    if request is not None:
        _check(request.host is None or isinstance(request.host, str), "host is not text")
        _prefixes_agree(http.parse_http_request, data, request)


def fuzz_mmtls(data: bytes) -> None:
    mmtls.looks_like_mmtls(data)
    hello = _parse(mmtls.parse_client_hello, data)
    if hello is not None:
        _prefixes_agree(mmtls.parse_client_hello, data, hello)


_SVCB_TYPES = (64, 65)


def fuzz_dns(data: bytes) -> None:
    messages, used = dns.split_tcp_stream(data)  # documented never to raise
    _check(used == sum(len(m) + 2 for m in messages) and used <= len(data), "split_tcp_stream miscounts")
    for raw in [data, *messages[:4]]:
        msg = _parse(dns.parse_message, raw)
        if msg is None:
            continue
        for rr in msg.answers + msg.authorities + msg.additionals:
            if rr.rtype in _SVCB_TYPES:
                _parse(dns.parse_svcb, rr.rdata)
    _parse(dns.parse_svcb, data[12:])  # directly, so the fuzzer steers the SvcParams itself


def fuzz_quic(data: bytes) -> None:
    """Mode 0: a flow's datagrams as [direction][u16 length][bytes]... into one state.
    Mode 1: Initial plaintexts as [u16 length][bytes]..., each protected with real keys for a
    chosen version and DCID, so the frame and handshake parsers behind decryption get fuzzed."""
    t = Take(data)
    mode = t.uint(1) & 1
    state = quic.QuicInitialState()
    datagrams: list[tuple[bytes, bool]] = []
    if mode == 0:
        while t.left() and len(datagrams) <= quic.MAX_DATAGRAMS + 1:
            from_client = not t.uint(1) & 1
            datagrams.append((t.bytes(t.uint(2)), from_client))
    else:
        version = quic_initial.ENCRYPTED_VERSIONS[t.uint(1) % len(quic_initial.ENCRYPTED_VERSIONS)]
        dcid = t.bytes(t.uint(1) % 21)
        pn = 0
        while t.left() and len(datagrams) <= quic.MAX_DATAGRAMS + 1:
            plain = t.bytes(t.uint(2))
            datagrams.append((quic_initial.protect(version, dcid, plain, pn=pn), True))
            pn += 1
    for datagram, from_client in datagrams:
        quic.looks_like_quic(datagram)
        try:
            facts = state.feed(datagram, from_client)
        except MalformedError as err:
            # The inspector's safety net for a missed bound must never be what stops an input.
            _check(err.field != "datagram", f"unguarded parse: {err}")
            continue
        if facts is not None:
            _check(state.done and (facts.sni is None or isinstance(facts.sni, str)), "facts without done")
    _check(len(state.errors) <= quic.MAX_DATAGRAMS + 1, "error list grows without bound")


# --- decoding and reassembly ----------------------------------------------------------------


def fuzz_decode(data: bytes) -> None:
    """[link type selector][frame]: every supported link type and one unsupported one."""
    if not data:
        return
    choices = (*LINKTYPES, UNSUPPORTED_LINKTYPE)
    linktype = choices[data[0] % len(choices)]
    frame = data[1:]
    try:
        d = decode(linktype, frame)
    except MalformedError:
        d = False
    if d is None:  # not TCP/UDP over IP: the scanner asks why (and counts IndexError as "short")
        with contextlib.suppress(MalformedError):
            _check(isinstance(skip_reason(linktype, frame), str), "skip_reason is not text")
    elif d:
        proto, src, sport, dst, dport, _flags, _seq, payload, _ip_len, frag_key, tunnel = d
        # 6 or 17; a fragment of a tunnel packet (held whole before it is opened) may be 4, 41 or 47
        _check(proto in (6, 17) or (proto in (4, 41, 47) and sport == -1), f"decoded protocol {proto}")
        _check(len(src) == len(dst) and len(src) in (4, 16), "address sizes")
        _check(-1 <= sport <= 0xFFFF and -1 <= dport <= 0xFFFF, "port range")
        _check(len(payload) <= len(frame), "payload longer than the frame")
        if tunnel is not None:  # bounded depth, outer addresses of one family per layer
            _check(1 <= len(tunnel) <= MAX_TUNNEL_DEPTH, f"{len(tunnel)} tunnel layers")
            for layer in tunnel:
                _check(len(layer.src) == len(layer.dst) and len(layer.src) in (4, 16), "tunnel address sizes")
                _check(layer.ident is None or 0 <= layer.ident <= 0xFFFFFFFF, "tunnel id range")
        if frag_key is not None:  # decode vouched for the headers: fragment() must not fail
            piece = fragment(linktype, frame)
            _check(piece is None or (piece[0] >= 0 and len(piece[2]) <= len(frame)), "fragment piece")
    # A reassembled transport segment, as the defragmenter hands it over.
    proto = 6 if data[0] & 0x80 else 17
    _parse(lambda s: transport(proto, b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x01", s, len(s)), frame)


def fuzz_defrag(data: bytes) -> None:
    """[max datagrams][ops...], op = [key][ts step][u16 offset][more][u16 length]: the pieces are
    cut from one known datagram per key (or, with the top bit of key, from a conflicting one).
    A completed datagram must be exactly its declared length, each byte sent at that offset."""
    t = Take(data)
    frag = Defragmenter(max_datagrams=1 + t.uint(1) % 8, timeout=30.0)
    ts = 0.0
    sent: dict[int, list[tuple[int, int, bool]]] = {}  # key -> (offset, length, conflicting)
    last_end: dict[int, int] = {}  # per key: where the latest last fragment (more=0) ends
    while t.left():
        k = t.uint(1)
        key = k & 7
        ts += t.uint(1) / 4
        offset = t.uint(2)
        more = bool(t.uint(1) & 1)
        length = t.uint(2) % 2048
        other = bool(k & 0x80)
        at = offset + _OTHER if other else offset
        sent.setdefault(key, []).append((offset, length, other))
        if not more:
            last_end[key] = offset + length
        whole = frag.add(("k", key), ts, offset, more, _PATTERN[at : at + length])
        _check(len(frag._pending) <= frag.max_datagrams, "more pending datagrams than the limit")
        if whole is None:
            continue
        end = last_end.pop(key, None)
        _check(len(whole) == end, f"reassembled {len(whole)} bytes, the last fragment ends at {end}")
        _check(len(whole) <= MAX_DATAGRAM, "datagram over the size limit")
        _check_sent_bytes(whole, sent.pop(key))


def _check_sent_bytes(whole: bytes, pieces: list[tuple[int, int, bool]]) -> None:
    """Every byte of a reassembled datagram is the byte some fragment carried at that offset."""
    n = len(whole)
    plain = _PATTERN[:n]
    covered = [bytearray(n), bytearray(n)]  # by plain fragments, by conflicting ones
    for offset, length, other in pieces:
        stop = min(offset + length, n)
        if stop > offset:
            covered[other][offset:stop] = b"\x01" * (stop - offset)
    if not any(other for _, _, other in pieces):
        _check(whole == plain and all(covered[0]), "reassembled bytes differ from the bytes sent")
        return
    alt = _PATTERN[_OTHER : _OTHER + n]
    for i, (b, p, a, c0, c1) in enumerate(zip(whole, plain, alt, covered[0], covered[1], strict=True)):
        _check((b == p and c0) or (b == a and c1), f"byte {i} of a reassembled datagram was never sent there")


_PERIOD = 65521  # prime: a byte misplaced by any power of two (wrap, window) shows
_ONE_PERIOD = bytes(((i * 2654435761) >> 13) & 0xFF for i in range(_PERIOD))
_PATTERN = _ONE_PERIOD + _ONE_PERIOD[:4096]  # periodic, so any slice of up to 4096 bytes is whole
_OTHER = 7  # conflicting fragments carry the pattern shifted by this much


def _stream_bytes(seq: int, n: int) -> bytes:
    """What the sender sent at sequence numbers seq .. seq+n (mod 2**32), n <= 4096."""
    room = 0x100000000 - seq
    if n > room:  # runs across the wrap of the sequence space
        return _stream_bytes(seq, room) + _stream_bytes(0, n - room)
    start = (seq % 0x100000000) % _PERIOD
    return _PATTERN[start : start + n]


def fuzz_reassembly(data: bytes) -> None:
    """[limit u16][base seq u32][syn][segments...], segment = [u16 offset step (signed)][u16 len]:
    a sender's bytes are a fixed function of the sequence number, so the kept prefix must be
    exactly the bytes from the stream start, never longer than the limit."""
    t = Take(data)
    limit = 1 + t.uint(2) % 4096
    base = t.uint(4)
    st = Stream(limit)
    if t.uint(1) & 1:
        st.syn((base - 1) & 0xFFFFFFFF)
    rel = 0
    while t.left():
        step = t.uint(2)
        rel += step - 0x8000 if step & 0x8000 else step
        size = t.uint(2) % 3000
        seq = (base + rel) & 0xFFFFFFFF
        payload = _stream_bytes(seq, size)
        before = len(st.data)
        grew = st.add(seq, payload)
        _check(grew == (len(st.data) > before), "add() disagrees with whether the prefix grew")
        _check(len(st.data) <= limit, "kept more than the limit")
        _check(not st.full or len(st.data) == limit, "full before the limit")
    start = st.base if st.base is not None else base
    expect = _stream_bytes(start, len(st.data))
    _check(bytes(st.data) == expect, "kept bytes are not the stream's bytes in sequence order")


# --- whole files ----------------------------------------------------------------------------


_TMP: str | None = None


def _scratch(name: str) -> str:
    """A path in this process's scratch directory (in /dev/shm when it exists: no disk writes)."""
    global _TMP
    if _TMP is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _TMP = tempfile.mkdtemp(prefix="classifier-fuzz-", dir=base)
    return os.path.join(_TMP, name)


def _file_bytes(mode: int, body: bytes) -> bytes:
    """The bytes of a file holding ``body``: as is, gzip, or gzip in two members with padding."""
    if mode == 1:
        return gzip.compress(body, mtime=0)
    if mode == 2:
        half = len(body) // 2
        return gzip.compress(body[:half], mtime=0) + gzip.compress(body[half:], mtime=0) + b"\0\0"
    return body


@contextlib.contextmanager
def _stdin_bytes(data: bytes):
    """Serve ``data`` as standard input: the reader's pipe path (no size, never seeks)."""

    class _Stdin:
        buffer = io.BufferedReader(io.BytesIO(data))

    saved = sys.stdin
    sys.stdin = _Stdin()  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdin = saved


def fuzz_capture(data: bytes) -> None:
    """[mode][file]: mode 0-2 a file (plain, gzip, two gzip members), 3 the same bytes on stdin."""
    if not data:
        return
    mode = data[0] % 4
    content = _file_bytes(mode % 3, data[1:])
    if mode == 3:
        with _stdin_bytes(data[1:]):
            _read_capture("-")
        return
    path = _scratch("capture")
    with open(path, "wb") as f:
        f.write(content)
    _read_capture(path)


def _read_capture(path: str) -> None:
    try:
        reader = open_capture(path)
    except CaptureError as err:
        _check("\n" not in str(err) and str(err), f"CaptureError is not one line: {err!r}")
        return
    with reader:
        n = 0
        for ts, linktype, frame, iface in reader:
            n += 1
            _check(isinstance(ts, float) and isinstance(frame, bytes), "record types")
            _check(linktype >= 0 and 0 <= iface < len(reader.interfaces), f"interface {iface} not described")
        _check(n == reader.records, f"yielded {n} records, counted {reader.records}")
        for p in reader.problems:
            _check(isinstance(p, CaptureProblem) and "\n" not in str(p), f"problem is not one line: {p!r}")


_MRT_CONTEXT: tuple[Signatures, Needles] | None = None


def _mrt_context() -> tuple[Signatures, Needles]:
    global _MRT_CONTEXT
    if _MRT_CONTEXT is None:
        sigs = Signatures.load()
        _MRT_CONTEXT = sigs, Needles(sigs.operator_by_asn)
    return _MRT_CONTEXT


def fuzz_mrt(data: bytes) -> None:
    """[mode][file]: bits 0-1 plain/gzip/bzip2, bit 2 decode every record (no prefilter), into
    the real route table with the shipped operator ASNs."""
    if not data:
        return
    mode = data[0]
    body = data[1:]
    compression = mode & 3  # 0 and 3 plain: compressing costs more than reading, keep it to half
    if compression == 1:
        body = gzip.compress(body, compresslevel=1, mtime=0)
    elif compression == 2:
        body = bz2.compress(body, compresslevel=1)
    path = _scratch("mrt")
    with open(path, "wb") as f:
        f.write(body)
    sigs, needles = _mrt_context()
    table = RouteTable(PathClassifier(sigs.operator_by_asn))
    stats = MrtReader(path, "fuzz.mrt", needles, table, decode_all=bool(mode & 4)).run()
    table.finish()
    _check(all("\n" not in p for p in stats.problems), "an MRT problem is not one line")
    _check(stats.complete or bool(stats.problems), "reading stopped early without a problem saying why")


_EXIT_OK, _EXIT_INPUT = 0, 3


def fuzz_pipeline(data: bytes) -> None:
    """``classifier scan`` in-process on a mutated capture: [mode][file], bit 0 gzip, bit 1 tiny
    flow table and timeouts (eviction). Exit status 0 or 3 only; every flow reported exactly
    once (flow ids 1..N, N = the flow count in the statistics); every packet counted somewhere."""
    if not data:
        return
    mode = data[0]
    path, out, stats_path = _scratch("scan-in"), _scratch("scan.jsonl"), _scratch("scan-stats.json")
    with open(path, "wb") as f:
        f.write(_file_bytes(mode & 1, data[1:]))
    args = ["scan", path, "-o", out, "-q", "--no-progress", "--stats", stats_path]
    if mode & 2:
        args += ["--max-flows", "3", "--idle-udp", "1", "--idle-tcp", "2"]
    for stale in (out, stats_path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    err = io.StringIO()
    saved = os.environ.get("CLASSIFIER_DEBUG")
    os.environ["CLASSIFIER_DEBUG"] = "1"  # an internal error raises here instead of exit status 1
    try:
        with contextlib.redirect_stderr(err):
            status = cli_main(args)
    finally:
        if saved is None:
            os.environ.pop("CLASSIFIER_DEBUG", None)
        else:
            os.environ["CLASSIFIER_DEBUG"] = saved
    _check(status in (_EXIT_OK, _EXIT_INPUT), f"exit status {status}: {err.getvalue().strip()}")
    with open(stats_path, encoding="utf-8") as f:
        stats = json.load(f)
    with open(out, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    ids = sorted(r["flow"] for r in records)
    _check(ids == list(range(1, len(ids) + 1)), "flow ids are not each reported exactly once")
    _check(len(records) == stats["flows"], f"{len(records)} records, statistics say {stats['flows']} flows")
    in_flows = sum(r["packets_c2s"] + r["packets_s2c"] for r in records)
    skipped = sum(stats["skipped"].values())
    malformed = sum(stats["malformed"].values())
    _check(in_flows + skipped <= stats["packets"], "packets counted twice")
    _check(in_flows + skipped + malformed >= stats["packets"], "packets lost: in no flow, not counted")
    _check((status == _EXIT_INPUT) == bool(stats["problems"]), "exit status disagrees with the problems")


def fuzz_selftest(data: bytes) -> None:
    """Not a parser: a planted crash (first byte 0x7f) and a planted hang (0x7e), so a test can
    show that the harness reports both, with reproducers, and fails the run."""
    if data[:1] == b"\x7f":
        raise ValueError("planted crash")
    if data[:1] == b"\x7e":
        time.sleep(60)


# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    max_len: int  # libFuzzer -max_len: the largest input it makes
    parser: bool  # a parser (the long run gives it at least a million inputs), or the whole scan
    listed: bool = True  # run by default (the self-test target only when named)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("tls", fuzz_tls, 8192, True),
        Target("http", fuzz_http, 8192, True),
        Target("dns", fuzz_dns, 4096, True),
        Target("quic", fuzz_quic, 8192, True),
        Target("mmtls", fuzz_mmtls, 2048, True),
        Target("prelude", fuzz_prelude, 4096, True),
        Target("decode", fuzz_decode, 4096, True),
        Target("defrag", fuzz_defrag, 2048, True),
        Target("reassembly", fuzz_reassembly, 2048, True),
        Target("capture", fuzz_capture, 65536, True),
        Target("mrt", fuzz_mrt, 16384, True),
        Target("pipeline", fuzz_pipeline, 65536, False),
        Target("selftest", fuzz_selftest, 64, False, listed=False),
    )
}
