"""Inline mode: forwarded packets come to us on an NFQUEUE and leave with a per-flow verdict.

Packets pass until their flow is decided (the scanner decides a TLS flow on its ClientHello, an
HTTP flow on its request...). Then:

* block: the deciding packet and every later one are dropped; both ends get a TCP reset; the
  flow's tuples go into the ``block`` set so the kernel drops (and resets) them without us;
* log / allow: the flow's tuples go into the ``allow`` set, whose rule accepts them before the
  queue, so a long flow costs the queue a handful of packets (SYN, FIN and RST still come, so the
  flow table sees it open and close).

The queue rule has ``bypass``: with no process bound, packets pass. We also ask the kernel for
fail-open when the queue is full, so a slow gateway degrades to "unclassified" instead of an
outage. Any exception while handling a packet accepts the packet.

A busy queue is never drained, so nothing may wait for the read loop to return: set elements are
sent to the kernel in batches, but never later than ``FLUSH_AFTER_PACKETS`` packets after the first
of a batch was queued (a batch that waited for the loop to drain let a sustained flow run through
Python long after its offload was decided); and every ``HOUSEKEEPING_PACKETS`` packets the loop's
other duties run between two packets (counter reads, ticks, log reopening, a stop request).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from typing import TYPE_CHECKING

from classifier.flows import DECIDED

from .engine import Engine

if TYPE_CHECKING:
    from netfilterqueue import NetfilterQueue

_NLM_F_REQUEST = 1
_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_CONFIG = 2
_NFQA_CFG_MASK = 4
_NFQA_CFG_FLAGS = 5
_NFQA_CFG_F_FAIL_OPEN = 1
_LINKTYPE_RAW = 101
# Packets (of any flow) the queue hands us after a set element is queued, at most, before the
# batch goes to the kernel. One nft transaction costs about two packets' time at 10k packets/s, and
# a flow reaches offload only after ``offload_after`` queued packets, so this bounds both the
# packets a decided flow still sends through Python and the share of time spent on transactions.
FLUSH_AFTER_PACKETS = 8
# Queued packets an allowed TLS flow may send beyond ``offload_after`` while its ServerHello is still
# being read (for the record's ``ja4s``, as ``scan --ja4s`` reads it): offloaded sooner, the
# ServerHello would bypass the queue whenever the elements beat it to the kernel. The reading gives
# up after 8 server segments; pure ACKs count here too, so this bounds the wait in packets.
SERVER_HELLO_PACKETS = 16
# Packets between two looks at the clock for housekeeping (a few milliseconds at full speed).
HOUSEKEEPING_PACKETS = 256
_NEVER = float("inf")


def _nla(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def set_fail_open(fd: int, queue: int) -> None:
    """Ask the kernel to accept packets instead of dropping them when our queue is full.

    The NFQUEUE bindings do not expose NFQA_CFG_F_FAIL_OPEN, so this sends the config message
    itself on the queue's netlink socket.
    """
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue))
    body += _nla(_NFQA_CFG_FLAGS, struct.pack("!I", _NFQA_CFG_F_FAIL_OPEN))
    body += _nla(_NFQA_CFG_MASK, struct.pack("!I", _NFQA_CFG_F_FAIL_OPEN))
    header = struct.pack(
        "=IHHII",
        16 + len(body),
        (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_CONFIG,
        _NLM_F_REQUEST,
        int(time.time()) & 0xFFFFFFFF,
        0,
    )
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.send(header + body)
    finally:
        sock.close()


class InlineEngine(Engine):
    """NFQUEUE loop with per-flow verdicts and kernel offload of decided flows."""

    mode = "inline"

    def __init__(self, *args, resetter=None, queue_num: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resetter = resetter
        self.queue_num = self.cfg.queue if queue_num is None else queue_num
        self.queue: NetfilterQueue | None = None
        self._fd = -1
        self._flush_at: float = _NEVER  # stats.packets value at which queued set elements are sent
        self._chores_at = HOUSEKEEPING_PACKETS  # stats.packets value of the next housekeeping look
        self._due: float = HOUSEKEEPING_PACKETS  # the nearer of the two: one comparison per packet
        # flow id -> packets still to pass through the queue before the flow is offloaded: a short
        # flow costs less on the queue than two nft transactions
        self._offload_wait: dict[int, int] = {}

    def bind(self) -> None:
        """Bind our queue (the kernel starts handing us packets at once if the rules are in)."""
        from netfilterqueue import NetfilterQueue

        q = NetfilterQueue()
        try:
            q.bind(self.queue_num, self._on_packet, max_len=self.cfg.queue_maxlen)
        except OSError as err:
            from classifier.errors import UserError

            raise UserError(
                f"cannot bind NFQUEUE {self.queue_num}: {err} (is another process bound "
                "to it? choose another with --queue)"
            ) from None
        self.queue = q
        self._fd = q.get_fd()
        if self.cfg.fail_open:
            try:
                set_fail_open(self._fd, self.queue_num)
            except OSError as err:
                self.error("fail-open", err)

    def fds(self) -> list[int]:
        return [self._fd]

    def readable(self, fd: int) -> None:
        if self.queue is None:  # unbound between two packets: stopping
            return
        self.queue.run(block=False)
        if self.sets is not None and self.sets.pending:
            self._flush_sets()  # after the verdicts at hand: nft calls never delay a waiting packet

    def _on_packet(self, pkt) -> None:
        """Per packet: feed the scanner, then the flow's verdict. Never raises."""
        try:
            self._verdict(pkt)
        except Exception as err:
            self.error("packet", err)
            with contextlib.suppress(Exception):  # a verdict was already given
                pkt.accept()
        if self.stats.packets >= self._due:
            self._between_packets()  # the queue may never drain: do not wait for it

    def _between_packets(self) -> None:
        """Due work between two packets: pending set elements, then (every HOUSEKEEPING_PACKETS)
        what the read loop does when the queue drains. A stop request unbinds the queue, which
        lets the read loop return (the bypass passes traffic from here on)."""
        packets = self.stats.packets
        if packets >= self._flush_at:
            self._flush_sets()
        if packets >= self._chores_at:
            self._chores_at = packets + HOUSEKEEPING_PACKETS
            if self.stop_requested:
                self.close()
                return
            try:
                self.housekeeping(time.time())
                self.chores()
            except Exception as err:  # housekeeping must never cost a packet its verdict
                self.error("housekeeping", err)
        self._due = min(self._flush_at, self._chores_at)

    def chores(self) -> None:
        """More work between packets under sustained load (the queue workers read their channel)."""

    def _queued(self) -> None:
        """A set element was queued: it goes to the kernel within FLUSH_AFTER_PACKETS packets."""
        if self._flush_at == _NEVER:
            self._flush_at = self.stats.packets + FLUSH_AFTER_PACKETS
            self._due = min(self._flush_at, self._chores_at)

    def _flush_sets(self) -> None:
        self._flush_at = _NEVER
        self._due = self._chores_at
        if self.sets is None:  # elements are queued only where there are sets
            return
        try:
            self.sets.flush()
        except Exception as err:  # nft trouble must never stop the packets: count, carry on
            self.error("nft-set", err)

    def _verdict(self, pkt) -> None:
        stats = self.stats
        stats.packets += 1
        data = pkt.get_payload()
        indev = pkt.indev
        pos = self._iface_pos.get(indev)
        if pos is None:
            try:
                name = socket.if_indextoname(indev) if indev else None
            except OSError:
                name = None
            pos = self.iface_index(indev, name)
        self._work_began = now = time.time()
        flow = self.scanner.feed(now, _LINKTYPE_RAW, data, pos)
        if flow is None or flow.stage != DECIDED:
            pkt.accept()
            return
        action = self.actions.get(flow.id)
        if action is None:
            action = self.decided(flow, data)
        if action == "block":
            pkt.drop()
            stats.dropped += 1
            return
        pkt.accept()
        wait = self._offload_wait.get(flow.id)
        if wait is not None:
            if wait > 1 or (flow.inspecting and wait > 1 - SERVER_HELLO_PACKETS):
                self._offload_wait[flow.id] = wait - 1
            else:
                del self._offload_wait[flow.id]
                self._offload(flow, now)

    def act(self, flow, action: str, packet: bytes | None) -> None:
        sets = self.sets
        now = time.time()
        if action == "block":
            if self.resetter is not None and flow.proto == 6 and packet is not None and self.cfg.resets:
                sent = self.resetter.reset(packet, forwarded=False)
                self.stats.resets += sent
                if sent:
                    self.reset_sent(flow, now)
            if sets is not None:
                sets.add(flow, "block", now)
                self.stats.offloaded += 1
                self._queued()
        elif sets is not None and self.cfg.offload and not flow.dns_client:
            # DNS flows stay on the queue: their answers name later flows.
            if self.cfg.offload_after > 0:
                self._offload_wait[flow.id] = self.cfg.offload_after
            else:
                self._offload(flow, now)

    def _offload(self, flow, now: float) -> None:
        if not flow.ended and self.sets is not None:
            self.sets.add(flow, "allow", now)
            self.stats.offloaded += 1
            self._queued()

    def _ended(self, flow) -> None:
        self._offload_wait.pop(flow.id, None)
        super()._ended(flow)

    def close(self) -> None:
        if self.queue is not None:
            try:
                self.queue.unbind()
            except Exception as err:
                self.error("unbind", err)
            self.queue = None
