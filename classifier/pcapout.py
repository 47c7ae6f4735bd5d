"""``scan --write-pcap``: the packets of attributed flows, back out as a pcap Wireshark reads.

A flow's attribution is known only once it is decided, a few packets in (or at its end), so
packets wait in one FIFO in input order; the head is written (or dropped, if its flow is not
wanted) as soon as its flow is decided. What "input order" guarantees:

* Packets are written in the order they were read, across all flows, as long as the FIFO stays
  within its bounds (``max_packets`` / ``max_bytes``).
* Beyond a bound, the flow at the head (undecided, holding everything behind it) is *detached*:
  its packets move to a buffer of its own and are written together when it is decided, in their
  own order; everything behind it moves on. So a detached flow's packets are in order among
  themselves but appear where the flow was decided, not where they were read.
* Detached buffers share the same bounds; beyond them a detached flow's further packets are not
  written, and the run says how many packets of how many flows (``dropped_packets``).

A pcap holds one link type: packets of another link type go to a second file named
``STEM.linktype-N.pcap`` next to the first (reported in ``files``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from .errors import OutputError, UserError
from .flows import DECIDED, Flow
from .outputs import refuse_clobbering
from .record import SCHEMA, record_function

DEFAULT_MAX_PACKETS = 200_000
DEFAULT_MAX_BYTES = 128 << 20

# Record fields fixed once a flow is decided (counters and end reason are not: a filter on them
# would be judged on a flow still in progress).
WHERE_FIELDS = (
    "file",
    "first_packet",
    "community_id",  # fixed by the first packet: the ID a Zeek or Suricata log gives the flow
    "proto",
    "src",
    "sport",
    "dst",
    "dport",
    "iface",
    "app_proto",
    "hostname",
    "hostname_source",
    "sni",
    "http_host",
    "app",
    "operator",
    "category",
    "categories",
    "confidence",
    "server_asn",
    "server_owner",
    "action",
    "view",
    "rule",
    "encrypted_dns",
    "ech",
)

Where = tuple[tuple[str, frozenset[str]], ...]


def parse_where(text: str) -> Where:
    """``field=value[|value...][,field=value...]``: every clause must hold, any value of a clause."""
    clauses = []
    for part in text.split(","):
        name, sep, values = part.strip().partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise UserError(f"--write-pcap-where: {part.strip()!r} is not field=value")
        if name not in WHERE_FIELDS:
            hint = " (it changes until the flow ends)" if name in SCHEMA else ""
            raise UserError(
                f"--write-pcap-where: unknown or unusable field {name!r}{hint}; "
                f"usable: {', '.join(WHERE_FIELDS)}"
            )
        clauses.append((name, frozenset(v.strip().lower() for v in values.split("|"))))
    return tuple(clauses)


def _text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def matches(record: dict, where: Where) -> bool:
    """Does the record satisfy every clause? An array field matches if any element does."""
    for name, wanted in where:
        value = record[name]
        if isinstance(value, list):
            if not any(_text(v) in wanted for v in value):
                return False
        elif _text(value) not in wanted:
            return False
    return True


def attributed(flow: Flow) -> bool:
    a = flow.attribution
    return a is not None and (a.app is not None or a.operator is not None)


class _PacketWriter(Protocol):
    """What is used of a ``dpkt.pcap.Writer`` (dpkt has no type information)."""

    def writepkt(self, pkt: bytes, ts: float | None = None) -> None: ...


class _Writers:
    """One dpkt pcap writer per link type, opened on its first packet."""

    def __init__(self, path: str, inputs: list[str]) -> None:
        self.path = Path(path)
        self.inputs = inputs
        self.files: list[str] = []
        self._open: dict[int, tuple[BinaryIO, _PacketWriter, str]] = {}

    def write(self, linktype: int, ts: float, frame: bytes) -> None:
        entry = self._open.get(linktype)
        if entry is None:
            entry = self._start(linktype)
        _f, writer, name = entry
        try:
            writer.writepkt(frame, ts=ts)
        except OSError as err:
            raise OutputError(f"cannot write {name}: {err.strerror or err}") from None

    def _start(self, linktype: int) -> tuple[BinaryIO, _PacketWriter, str]:
        import dpkt

        if self._open:
            name = str(self.path.with_name(f"{self.path.stem}.linktype-{linktype}{self.path.suffix}"))
            refuse_clobbering([("--write-pcap", name)], self.inputs, stdout_written=False)
        else:
            name = str(self.path)
        try:
            f = open(name, "wb")  # noqa: SIM115 - closed by close()
            writer = dpkt.pcap.Writer(f, snaplen=262144, linktype=linktype, nano=True)
        except OSError as err:
            raise OutputError(f"cannot write {name}: {err.strerror or err}") from None
        self._open[linktype] = (f, writer, name)
        self.files.append(name)
        return self._open[linktype]

    def close(self) -> None:
        if not self._open:  # nothing matched: still leave an empty, valid capture
            import dpkt

            try:
                with open(self.path, "wb") as empty:
                    dpkt.pcap.Writer(empty, snaplen=262144, linktype=1, nano=True)
            except OSError as err:
                raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
            self.files.append(str(self.path))
            return
        for f, _w, name in self._open.values():
            try:
                f.close()
            except OSError as err:
                raise OutputError(f"cannot write {name}: {err.strerror or err}") from None


class PacketSink:
    """Takes every packet with the flow it fed (``packet``) and writes those of wanted flows."""

    def __init__(
        self,
        path: str,
        inputs: list[str],
        where: Where = (),
        max_packets: int = DEFAULT_MAX_PACKETS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        community_id_seed: int = 0,
    ) -> None:
        self.writers = _Writers(path, inputs)
        self.where = where
        # The filter reads the flow's record as the scan writes it (``community_id=`` included).
        self.flow_record = record_function(community_id_seed)
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self.fifo: deque[tuple[Flow, float, int, bytes]] = deque()
        self.held_packets = 0  # in the FIFO and the detached buffers together
        self.held_bytes = 0
        self.detached: dict[Flow, list[tuple[float, int, bytes]]] = {}
        self.wanted: dict[Flow, bool] = {}  # decided flows still live: write their packets?
        self.in_fifo: dict[Flow, int] = {}  # packets each flow has in the FIFO
        self.written = 0
        self.dropped_packets = 0
        self.dropped_flows: set[int] = set()

    def packet(self, flow: Flow | None, ts: float, linktype: int, frame: bytes) -> None:
        """One packet as read; ``flow`` is what the scanner fed it to (None: no flow)."""
        if flow is None:
            return
        buf = self.detached.get(flow) if self.detached else None
        if buf is None and flow.stage == DECIDED and not self.fifo:
            if self._wanted(flow):
                self.writers.write(linktype, ts, frame)
                self.written += 1
            return
        if buf is not None:
            if flow.stage == DECIDED:
                self._release_detached(flow)
                if self._wanted(flow):
                    self.writers.write(linktype, ts, frame)
                    self.written += 1
            else:
                self._hold(flow, buf, ts, linktype, frame)
            return
        self.fifo.append((flow, ts, linktype, frame))
        self.in_fifo[flow] = self.in_fifo.get(flow, 0) + 1
        self.held_packets += 1
        self.held_bytes += len(frame)
        self._drain()
        while self.fifo and (self.held_packets > self.max_packets or self.held_bytes > self.max_bytes):
            self._detach_head()
            self._drain()

    def flow_ended(self, flow: Flow) -> None:
        """The flow's record is out (it is decided for good): let its packets go."""
        if flow in self.detached:
            self._release_detached(flow)
        self._drain()
        if flow not in self.in_fifo:
            self.wanted.pop(flow, None)

    def close(self) -> list[str]:
        """Write what is left (every flow has ended by now) and close; the files written."""
        for flow in list(self.detached):
            self._release_detached(flow)
        self._drain()
        self.writers.close()
        return self.writers.files

    # -- internals -----------------------------------------------------------------------------

    def _wanted(self, flow: Flow) -> bool:
        w = self.wanted.get(flow)
        if w is None:
            w = attributed(flow) and (not self.where or matches(self.flow_record(flow), self.where))
            self.wanted[flow] = w
        return w

    def _drain(self) -> None:
        fifo = self.fifo
        in_fifo = self.in_fifo
        while fifo:
            flow = fifo[0][0]
            if flow.stage != DECIDED:
                return
            _f, ts, lt, frame = fifo.popleft()
            self.held_packets -= 1
            self.held_bytes -= len(frame)
            if self._wanted(flow):
                self.writers.write(lt, ts, frame)
                self.written += 1
            left = in_fifo[flow] - 1
            if left:
                in_fifo[flow] = left
            else:
                del in_fifo[flow]
                if flow.ended:
                    self.wanted.pop(flow, None)

    def _detach_head(self) -> None:
        """Move the head's flow, all its packets in the FIFO, to a buffer of its own (rare: O(FIFO))."""
        flow = self.fifo[0][0]
        self.detached[flow] = [(ts, lt, frame) for f, ts, lt, frame in self.fifo if f is flow]
        self.fifo = deque(p for p in self.fifo if p[0] is not flow)
        del self.in_fifo[flow]

    def _hold(self, flow: Flow, buf: list, ts: float, lt: int, frame: bytes) -> None:
        if self.held_packets >= self.max_packets or self.held_bytes + len(frame) > self.max_bytes:
            self.dropped_packets += 1
            self.dropped_flows.add(flow.id)
            return
        buf.append((ts, lt, frame))
        self.held_packets += 1
        self.held_bytes += len(frame)

    def _release_detached(self, flow: Flow) -> None:
        buf = self.detached.pop(flow)
        wanted = self._wanted(flow)
        for ts, lt, frame in buf:
            self.held_packets -= 1
            self.held_bytes -= len(frame)
            if wanted:
                self.writers.write(lt, ts, frame)
                self.written += 1

    def summary(self) -> str:
        """One line for stderr."""
        line = f"--write-pcap: {self.written} packets to {', '.join(self.writers.files)}"
        if self.dropped_packets:
            line += (
                f"; {self.dropped_packets} packets of {len(self.dropped_flows)} flows not written "
                f"(undecided beyond the buffer of {self.max_packets} packets / "
                f"{self.max_bytes >> 20} MiB)"
            )
        return line


def feeding(feed: Callable[..., Flow | None], sink: PacketSink) -> Callable[..., None]:
    """A replacement for ``Scanner.feed`` that also hands each packet and its flow to ``sink``."""

    def feed_and_keep(ts: float, linktype: int, frame: bytes, iface: int = 0) -> None:
        sink.packet(feed(ts, linktype, frame, iface), ts, linktype, frame)

    return feed_and_keep
