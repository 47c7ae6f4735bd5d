"""Messages between the multi-queue supervisor and its queue workers.

One ``SOCK_SEQPACKET`` socket pair per worker: a message arrives whole or not at all, so a record
line is never split or interleaved with another worker's, and end-of-file says the other side is
gone (a crashed worker, or a supervisor killed with -9). Each message is one kind byte and a
payload; pickle is used only between our own processes.
"""

from __future__ import annotations

import pickle
import socket
import struct
from dataclasses import dataclass

from .config import GatewayConfig
from .metrics import Stats

SETUP = b"C"  # supervisor -> worker: the pickled WorkerSetup, first message
READY = b"Y"  # worker -> supervisor: the queue is bound
FAILED = b"F"  # worker -> supervisor: a one-line error (UTF-8); the worker then exits
RECORD = b"R"  # worker -> supervisor: 8-byte flow number, then one JSON line (UTF-8, with newline)
STATS = b"S"  # worker -> supervisor: pickled WorkerStats
# DNS, NAME and WITHDRAW carry every argument of the call, the tunnel scope (tunnels.client_scope)
# last: an answer learnt inside a tunnel names only that tunnel's flows in every worker.
DNS = b"D"  # both ways: pickled arguments of DnsCache.add_resolutions (shared DNS answers)
NAME = b"N"  # both ways: pickled arguments of DnsCache.remember (shared name memory)
WITHDRAW = b"W"  # both ways: pickled arguments of DnsCache.withdraw (a shared answer turned contested)

# Largest message accepted. A Unix seqpacket message must also fit the sender's socket buffer
# (net.core.wmem_default, 212992 bytes on most systems): records, counters and DNS answers are a
# few kilobytes at most.
MAX_MESSAGE = 1 << 20
_NUMBER = struct.Struct("!Q")


@dataclass(frozen=True)
class WorkerSetup:
    """What the supervisor tells a worker before it starts."""

    cfg: GatewayConfig
    index: int  # 0 .. workers-1
    workers: int
    queue: int  # the NFQUEUE this worker binds
    label: str  # the records' ``file``
    id_base: int  # a multiple of ``workers``: record flow numbers start above it (restarts)

    def flow_number(self, flow_id: int) -> int:
        """Record flow numbers, unique across the workers of a run: worker i numbers i+1, i+1+N..."""
        return self.id_base + (flow_id - 1) * self.workers + self.index + 1


@dataclass
class WorkerStats:
    """A worker's counters as it sends them (whole, not increments: a lost message loses nothing)."""

    stats: Stats
    live: int  # flows in its table


def pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor end, worker end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, kind: bytes, payload: bytes = b"", *, block: bool = True) -> None:
    """Send one message; OSError (BlockingIOError when ``block`` is false and the peer lags)."""
    sock.send(kind + payload, 0 if block else socket.MSG_DONTWAIT)


def send_obj(sock: socket.socket, kind: bytes, obj: object, *, block: bool = True) -> None:
    send(sock, kind, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), block=block)


def send_record(sock: socket.socket, number: int, line: bytes) -> None:
    send(sock, RECORD, _NUMBER.pack(number) + line)


def parse_record(payload: bytes) -> tuple[int, bytes]:
    """(flow number, JSON line) of a RECORD payload."""
    return _NUMBER.unpack_from(payload)[0], payload[_NUMBER.size :]


class Receiver:
    """Reads messages from one socket into a reused buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray(MAX_MESSAGE)

    def recv(self, *, block: bool = False) -> tuple[bytes, bytes] | None:
        """(kind, payload); None at end of file; BlockingIOError when nothing waits (not ``block``)."""
        n = self.sock.recv_into(self._buf, MAX_MESSAGE, 0 if block else socket.MSG_DONTWAIT)
        if n == 0:
            return None
        return bytes(self._buf[:1]), bytes(self._buf[1:n])
