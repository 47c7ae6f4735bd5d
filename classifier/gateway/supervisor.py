"""Inline mode on several NFQUEUEs: one worker process per queue, one supervisor over them.

The kernel balances packets over the queues by a hash of their two addresses (sorted) and
protocol, so both directions of a flow, and its IP fragments, reach the same worker, which keeps
the whole per-flow state (flow table, verdicts, set elements, kernel counters). The supervisor
owns what must stay single for the run:

* the record log: workers send each record as one message; the supervisor writes it whole, once,
  and reopens the file on SIGHUP (one writer: no interleaved lines, rotation works as before);
* DNS answers and remembered names, relayed from the worker that saw them to the others
  (``dnsshare``), so a verdict never depends on which queue a DNS answer crossed;
* the metrics (the workers' counters, summed, per queue too) and the periodic ticks (routes);
* the workers' lives: started and bound before the rules go in, stopped (SIGTERM: unbind, write
  live flows, exit) before the rules go out; a crashed worker's queue fails open through the
  queue's bypass until a new worker binds it, one second later.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from classifier.errors import UserError

from . import channel
from .channel import WorkerSetup, WorkerStats
from .config import GatewayConfig
from .metrics import Stats
from .netfilter import queue_numbers
from .recordlog import RecordLog

START_TIMEOUT = 60.0  # seconds for every worker to load the signatures and bind its queue
STOP_TIMEOUT = 30.0  # seconds for the workers to write their live flows' records and exit
RESTART_DELAY = 1.0
CRASH_LIMIT = 5  # crashes of one queue's worker within CRASH_WINDOW seconds stop the gateway
CRASH_WINDOW = 300.0
TICK_EVERY = 1.0


def _say(msg: str) -> None:
    print(f"classifier gateway: {msg}", file=sys.stderr, flush=True)


@dataclass
class Slot:
    """One queue and the worker process serving it (the process changes when it is restarted)."""

    index: int
    queue: int
    proc: subprocess.Popen | None = None
    sock: socket.socket | None = None  # our end of the channel
    receiver: channel.Receiver | None = None
    ready: bool = False
    latest: WorkerStats | None = None  # the running worker's last counters
    retired: Stats = field(default_factory=Stats)  # counters of this queue's earlier workers
    max_number: int = 0  # highest record flow number written for this queue
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None  # monotonic time at which a new worker starts
    last_status: int | None = None


class QueueSupervisor:
    """Runs the workers; has the engine's interface as far as ``runner`` uses it."""

    mode = "inline"

    def __init__(self, cfg: GatewayConfig, log: RecordLog, stats: Stats, label: str) -> None:
        self.cfg = cfg
        self.log = log
        self.stats = stats  # the sum over the workers, refreshed as their counters arrive
        self.label = label
        self.slots = [Slot(i, q) for i, q in enumerate(queue_numbers(cfg))]
        self.stop_requested = False
        self.reopen_requested = False
        self.fatal: Exception | None = None
        self.ticks: list[Callable[[float], None]] = []
        self.written = 0
        self.own_errors: Counter = Counter()  # the supervisor's: log, worker crashes, relays
        self._stopping = False
        self._poller = select.poll()
        self._by_fd: dict[int, Slot] = {}

    # -- workers ---------------------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        ours, theirs = channel.pair()
        workers = len(self.slots)
        id_base = -(-slot.max_number // workers) * workers  # above every number already written
        setup = WorkerSetup(self.cfg, slot.index, workers, slot.queue, self.label, id_base)
        try:
            argv = [sys.executable, "-m", "classifier.gateway.worker", str(theirs.fileno())]
            slot.proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        channel.send_obj(ours, channel.SETUP, setup)
        slot.sock, slot.receiver, slot.ready, slot.latest = ours, channel.Receiver(ours), False, None
        self._by_fd[ours.fileno()] = slot
        self._poller.register(ours.fileno(), select.POLLIN)

    def start(self) -> None:
        """Start every worker and wait until each has bound its queue (before the rules go in)."""
        for slot in self.slots:
            self._spawn(slot)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(s.ready for s in self.slots):
            if self.stop_requested:
                raise UserError("stopped while the queue workers were starting")
            if self.fatal is not None:
                raise self.fatal
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is not None and not slot.ready:
                    self._drain(slot)  # its FAILED message says why
                    if self.fatal is not None:
                        raise self.fatal
                    raise UserError(
                        f"the worker for queue {slot.queue} exited with status "
                        f"{slot.proc.returncode} while starting"
                    )
            if time.monotonic() > deadline:
                late = ", ".join(str(s.queue) for s in self.slots if not s.ready)
                raise UserError(f"queue workers not ready after {START_TIMEOUT:g} s (queues {late})")
            for fd, _ev in self._poller.poll(100):
                self._drain(self._by_fd[fd])

    def _drain(self, slot: Slot) -> None:
        """Handle every message waiting from a worker; notice its end."""
        while slot.receiver is not None:
            try:
                msg = slot.receiver.recv()
            except BlockingIOError:
                return
            except OSError:
                msg = None
            if msg is None:
                self._ended(slot)
                return
            self._message(slot, *msg)

    def _message(self, slot: Slot, kind: bytes, payload: bytes) -> None:
        if kind == channel.RECORD:
            number, line = channel.parse_record(payload)
            slot.max_number = max(slot.max_number, number)
            self._write(line)
        elif kind in (channel.DNS, channel.NAME, channel.WITHDRAW):
            self._relay(slot, kind + payload)
        elif kind == channel.STATS:
            try:
                slot.latest = pickle.loads(payload)
            except Exception:  # a bug, but the flows must go on: counted
                self.own_errors["channel"] += 1
            self._sum()
        elif kind == channel.READY:
            slot.ready = True
        elif kind == channel.FAILED:
            if self.fatal is None:
                self.fatal = UserError(payload.decode(errors="replace"))
            self.stop_requested = True

    def _write(self, line: bytes) -> None:
        if self.fatal is not None and self.own_errors["log"]:
            self.own_errors["log"] += 1  # the log already failed: counted, the run is stopping
            return
        try:
            self.log.write_line(line.decode())
        except OSError as err:
            # Records are the point of the gateway: losing them silently is worse than stopping.
            self.own_errors["log"] += 1
            if self.fatal is None:
                self.fatal = UserError(
                    f"cannot write the record log {self.log.path}: {err.strerror or err}; stopping"
                )
            self.stop_requested = True
            return
        self.written += 1

    def _relay(self, source: Slot, message: bytes) -> None:
        """A DNS answer or name one worker learned, to every other running worker. Never blocks: a
        worker too far behind to take it is stalled anyway (its queue fails open); counted."""
        for slot in self.slots:
            if slot is source or slot.sock is None:
                continue
            try:
                channel.send(slot.sock, message[:1], message[1:], block=False)
            except OSError:
                self.own_errors["dns-share"] += 1

    def _ended(self, slot: Slot) -> None:
        """A worker's channel closed: reap it; outside a stop, count the crash and plan a restart."""
        sock = slot.sock
        if sock is None:  # already reaped
            return
        fd = sock.fileno()
        self._poller.unregister(fd)
        del self._by_fd[fd]
        sock.close()
        slot.sock = slot.receiver = None
        status = None
        if slot.proc is not None:
            try:
                status = slot.proc.wait(5)
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                status = slot.proc.wait()
        if slot.latest is not None:
            _add(slot.retired, slot.latest.stats)
            slot.latest = None
        slot.proc = None
        if self._stopping or self.stop_requested:
            return
        # Judged at restart time: a SIGTERM to the whole process group reaches the workers first.
        slot.last_status = status
        slot.restart_at = time.monotonic() + RESTART_DELAY

    def _restart(self, slot: Slot, now: float) -> None:
        """A worker ended outside a stop: count it, say so, start a new one (or give up)."""
        slot.restart_at = None
        slot.crashes = [t for t in slot.crashes if now - t < CRASH_WINDOW] + [now]
        self.own_errors["worker"] += 1
        self._sum()
        if len(slot.crashes) >= CRASH_LIMIT:
            self.fatal = RuntimeError(
                f"the worker for queue {slot.queue} ended {len(slot.crashes)} times "
                f"within {CRASH_WINDOW:g} s (last status {slot.last_status}); stopping"
            )
            self.stop_requested = True
            return
        _say(
            f"the worker for queue {slot.queue} ended (status {slot.last_status}); its queue failed open "
            "(bypass) meanwhile and the flows it held have no records; starting a new one"
        )
        try:
            self._spawn(slot)
        except OSError as err:
            _say(f"cannot start a worker for queue {slot.queue}: {err}; retrying")
            slot.restart_at = now + RESTART_DELAY

    # -- counters --------------------------------------------------------------------------------

    def _sum(self) -> None:
        """The run's counters: every worker's (running and retired), the supervisor's own."""
        total = Stats()
        for slot in self.slots:
            _add(total, slot.retired)
            if slot.latest is not None:
                _add(total, slot.latest.stats)
        total.errors.update(self.own_errors)
        total.records = self.written
        s = self.stats
        s.packets, s.flows, s.records, s.dropped = total.packets, total.flows, total.records, total.dropped
        s.resets, s.offloaded = total.resets, total.offloaded
        s.verdicts, s.errors, s.apps = total.verdicts, total.errors, total.apps
        s.withheld, s.dns_binding = total.withheld, total.dns_binding

    def live_flows(self) -> int:
        return sum(s.latest.live for s in self.slots if s.latest is not None)

    def queue_packets(self) -> dict[int, int]:
        """Packets per queue, all of its workers together (metrics, tests)."""
        return {s.queue: s.retired.packets + (s.latest.stats.packets if s.latest else 0) for s in self.slots}

    # -- the loop --------------------------------------------------------------------------------

    def run(self, wakeup_fd: int | None = None) -> None:
        """Until ``stop_requested``: records, relays, counters; ticks; restarts; log reopening."""
        if wakeup_fd is not None:
            self._poller.register(wakeup_fd, select.POLLIN)
        next_tick = 0.0
        try:
            while not self.stop_requested:
                for fd, _ev in self._poller.poll(250):
                    if fd == wakeup_fd:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wakeup_fd, 512)
                    elif fd in self._by_fd:
                        self._drain(self._by_fd[fd])
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_EVERY
                    self._tick(now)
                if self.reopen_requested:
                    self.reopen_requested = False
                    self.log.reopen()
        finally:
            if wakeup_fd is not None:
                self._poller.unregister(wakeup_fd)

    def _tick(self, now: float) -> None:
        for tick in self.ticks:
            try:
                tick(time.time())
            except Exception as err:  # a failed route update must not stop the flows
                self.own_errors["tick"] += 1
                if os.environ.get("CLASSIFIER_DEBUG"):
                    import traceback

                    traceback.print_exception(err)
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                self._drain(slot)  # its last messages, then its end
                if slot.sock is not None:
                    self._ended(slot)
            if slot.restart_at is not None and now >= slot.restart_at and not self.stop_requested:
                self._restart(slot, now)

    def close(self) -> None:
        """Stop every worker: each unbinds (bypass), sends its live flows' records, exits."""
        self._stopping = True
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._by_fd and time.monotonic() < deadline:
            for fd, _ev in self._poller.poll(250):
                if fd in self._by_fd:
                    self._drain(self._by_fd[fd])
        late = [slot for slot in self.slots if slot.sock is not None]
        for slot in late:
            if slot.proc is not None:
                slot.proc.kill()
            self._drain(slot)
            if slot.sock is not None:
                self._ended(slot)
        if late:
            raise RuntimeError(
                "queue workers did not stop within "
                f"{STOP_TIMEOUT:g} s (queues {', '.join(str(s.queue) for s in late)}); killed"
            )

    def finish(self) -> None:
        """The workers wrote their live flows' records on their way out (``close``)."""


def _add(total: Stats, part: Stats) -> None:
    total.packets += part.packets
    total.flows += part.flows
    total.records += part.records
    total.dropped += part.dropped
    total.resets += part.resets
    total.offloaded += part.offloaded
    total.verdicts.update(part.verdicts)
    total.apps.update(part.apps)
    total.errors.update(part.errors)
    total.withheld.update(part.withheld)
    total.dns_binding.update(part.dns_binding)
