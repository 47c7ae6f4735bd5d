"""What the three packet loops share: the scanner, acting on decisions, records, housekeeping.

The scanner is the one ``classifier scan`` uses, fed with wall-clock timestamps: a flow is
decided at its first packet's time (or ``as_of``), so a provision that takes effect while the
gateway runs applies to every flow that starts after its instant, without a restart.

Offloaded and kernel-blocked flows are no longer seen packet by packet; their set elements' kernel
counters stand in: a periodic read keeps such a flow alive in the flow table while it has traffic,
and the counts are added to the flow when it ends, so its record covers the whole flow.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable
from types import SimpleNamespace

from classifier.blockfloor import FLOOR_RULES, BlockFloor
from classifier.dnscache import DnsCache
from classifier.flows import Flow, FlowConfig
from classifier.pipeline import Scanner, ScanOptions
from classifier.record import record_function

from .config import GatewayConfig
from .flowsets import FlowSets
from .metrics import Stats
from .recordlog import RecordLog

SWEEP_EVERY = 1.0  # seconds between flow-table sweeps when traffic is sparse
# Seconds after a flow's last FIN/RST by which the packets that follow it (the ACK of the last FIN,
# an RTT later) have crossed the kernel: a counter read that late counts them (capped by closed_tcp).
CLOSE_SETTLE = 2.0
# Least seconds between two counter reads made because a flow ended (not the regular ones): each is
# a listing of every set, and flows can end one packet at a time (a port reused right after its
# close, evictions at max_flows). A flow that ends its closed_tcp after its FIN is never that close
# to a read that missed its packets; one ended sooner uses the read made less than this ago.
END_READ_GAP = 0.5


class Engine:
    """Base of the packet loops; subclasses read packets and act on verdicts."""

    mode = "monitor"
    counts_from_kernel = True  # False where the loop sees every packet itself (capture modes)

    def __init__(
        self,
        cfg: GatewayConfig,
        sigs,
        policy,
        log: RecordLog,
        stats: Stats,
        sets: FlowSets | None = None,
        label: str = "gateway",
        caches: tuple[DnsCache, DnsCache] | None = None,
        flow_number: Callable[[int], int] | None = None,
    ) -> None:
        """``caches``: the scanner's DNS cache and name memory (shared between queue workers);
        ``flow_number``: the record's flow number for a scanner flow id (unique across workers)."""
        self.cfg = cfg
        self.log = log
        self.stats = stats
        self.sets = sets
        options = ScanOptions(
            view=cfg.view,
            as_of=cfg.as_of,
            unenforced_blocks=cfg.unenforced_blocks,
            flows=FlowConfig(
                idle_tcp=cfg.idle_tcp,
                idle_udp=cfg.idle_udp,
                closed_tcp=cfg.closed_tcp,
                max_flows=cfg.max_flows,
            ),
            floor=BlockFloor(cfg.block_confidence, cfg.block_evidence),
            # JA4S: the ServerHello is read after the verdict, which is acted on at the packet that
            # decided the flow, before any later packet is read; later packets cannot change it.
            server_hello=True,
            community_id_seed=cfg.community_id_seed,
        )
        self._flow_record = record_function(cfg.community_id_seed)
        dnscache, seen_names = caches if caches is not None else (None, None)
        self.scanner = Scanner(sigs, policy, options, self._ended, dnscache, seen_names)
        stats.dns_binding = self.scanner.inspection.queries.counts  # read by the metrics collector
        self.flow_number = flow_number
        self._ifaces: list[SimpleNamespace] = []
        self._iface_pos: dict[object, int] = {}
        self.scanner.start_input(label, self._ifaces)
        self.actions: dict[int, str] = {}  # flow id -> action the gateway took
        self.stop_requested = False
        self.fatal: Exception | None = None  # why the loop stopped on its own (e.g. the log is unwritable)
        self.reopen_requested = False
        self.ticks: list[Callable[[float], None]] = []  # run once a second (e.g. route updates)
        self._next_sweep = 0.0
        self._next_sync = 0.0
        # Wall-clock time at which the work at hand (a packet, a housekeeping pass) began: a counter
        # read since then is as fresh as the flows that work ends can get.
        self._work_began = float("-inf")

    def live_flows(self) -> int:
        """Flows in the flow table now (the metrics' gauge; the supervisor sums its workers')."""
        return self.scanner.table.live

    # -- interfaces ------------------------------------------------------------------------------

    def iface_index(self, key: object, name: str | None) -> int:
        """The scanner's interface number for an ifindex or name (names appear in records)."""
        pos = self._iface_pos.get(key)
        if pos is None:
            pos = len(self._ifaces)
            self._ifaces.append(SimpleNamespace(name=name))
            self._iface_pos[key] = pos
        return pos

    # -- decisions -------------------------------------------------------------------------------

    def decided(self, flow: Flow, packet: bytes | None) -> str:
        """First packet after the flow's decision: count it and act on it (once per flow)."""
        assert flow.decision is not None, "a flow is acted on once the scanner has decided it"
        action = flow.decision.action
        self.actions[flow.id] = action
        self._count_verdict(flow)
        try:
            # A tunnelled flow's 5-tuple is the inner one: set elements and RSTs made from it would
            # hit untunnelled traffic that happens to share it, never the tunnel. Only the
            # per-packet verdict (inline) acts on a tunnelled flow.
            if flow.tunnel is None:
                self.act(flow, action, packet)
        except Exception as err:  # acting must never stop the loop: count, carry on (fail-open)
            self.error("act", err)
        return action

    def _count_verdict(self, flow: Flow) -> None:
        decision = flow.decision
        assert decision is not None, "a verdict is counted once the scanner has decided the flow"
        stats = self.stats
        stats.flows += 1
        stats.verdicts[decision.action] += 1
        a = flow.attribution
        app, category = (a.app, a.category) if a is not None else (None, None)
        stats.apps[(app or "none", category or "none", decision.action)] += 1
        if decision.rule in FLOOR_RULES:
            stats.withheld[decision.rule] += 1

    def act(self, flow: Flow, action: str, packet: bytes | None) -> None:
        """Carry out a verdict; monitor mode does nothing."""

    def reset_sent(self, flow: Flow, now: float) -> None:
        """We reset both ends: the flow is closed as if a RST had crossed (the flow table does not
        see our own RSTs), so its record comes after ``closed_tcp``, not after the idle timeout."""
        self.scanner.close(flow, now)

    def error(self, kind: str, err: BaseException) -> None:
        self.stats.errors[kind] += 1
        if os.environ.get("CLASSIFIER_DEBUG"):
            import traceback

            traceback.print_exception(err)

    def _ended(self, flow: Flow) -> None:
        """A flow left the flow table: fold in the kernel's counts, drop its elements, write it.

        The counts must come from a read made after the flow's last packets crossed the kernel. A
        flow can end in housekeeping's sweep, in the sweep the flow table makes in the packet path
        (a packet of any flow after the flow's deadline), in an eviction or at the end of the run;
        whichever it is, the counters are read first unless some read came ``CLOSE_SETTLE`` (or
        ``closed_tcp``, if shorter) after its last packet seen here (for a closed flow, its last
        FIN/RST: the ACK of that FIN crosses the kernel an RTT later) or less than
        ``END_READ_GAP`` before the work at hand began (so one read serves all the flows a sweep or
        an eviction ends, and flows ending one packet at a time). With the defaults a regular read
        (``sync_interval``) always came that late for flows that close or idle out.
        """
        sets = self.sets
        if sets is not None and self.counts_from_kernel and flow.id in sets.flows:
            settle = min(self.scanner.table.config.closed_tcp, CLOSE_SETTLE)
            read_at = sets.read_at
            if read_at < flow.last_ts + settle and read_at <= self._work_began - min(settle, END_READ_GAP):
                try:
                    sets.snapshot()
                except Exception as err:  # nft trouble: the counts of the last read, and carry on
                    self.error("nft", err)
        entry = sets.release(flow) if sets is not None else None
        if entry is not None and self.counts_from_kernel:
            self.scanner.touch(flow, flow.last_ts, entry.counts)
        if self.actions.pop(flow.id, None) is None:
            # Decided only now, at its end (e.g. it never carried a name): count the verdict.
            self._count_verdict(flow)
        record = self._flow_record(flow)
        if self.flow_number is not None:
            record["flow"] = self.flow_number(flow.id)
        try:
            self.log.write(record)
        except OSError as err:
            # Records are the point of the gateway: losing them silently is worse than stopping.
            from classifier.errors import UserError

            self.stats.errors["log"] += 1
            if self.fatal is None:
                self.fatal = UserError(
                    f"cannot write the record log {self.log.path}: {err.strerror or err}; stopping"
                )
            self.stop_requested = True
            return
        self.stats.records += 1

    # -- housekeeping ----------------------------------------------------------------------------

    def housekeeping(self, now: float) -> None:
        """Sweep idle flows, read set counters, send pending set elements, reopen the log."""
        sets = self.sets
        self._work_began = now
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            self.scanner.table.sweep(now)  # a flow it ends reads the counters first if need be
            for tick in self.ticks:
                try:
                    tick(now)
                except Exception as err:  # a failed route update must not stop the flows
                    self.error("tick", err)
        if sets is not None:
            if sets.flows and now >= self._next_sync:
                self._next_sync = now + self.cfg.sync_interval
                self._sync(sets, now)
            sets.flush()
            if sets.errors:
                self.stats.errors["nft-set"] = sets.errors
        if self.reopen_requested:
            self.reopen_requested = False
            self.log.reopen()

    def _sync(self, sets: FlowSets, now: float) -> None:
        """Flows whose kernel counters grew are alive; elements that vanished are added again."""
        before = {fid: e.packets for fid, e in sets.flows.items()}
        snap = sets.snapshot()
        for fid, entry in sets.flows.items():
            per = snap.get(entry.set)
            if per is None:
                continue
            if entry.c2s not in per and entry.s2c not in per:
                if now - entry.added_at >= self.cfg.sync_interval and not entry.flow.ended:
                    sets.readd(entry, now)  # timed out in the kernel while the flow lives on
                continue
            # Traffic since the last read keeps the flow alive; its last_ts is then accurate to the
            # sync interval. A closed flow keeps the time of its FIN/RST, which the queue did see.
            flow = entry.flow
            if entry.packets > before.get(fid, 0):
                self.scanner.touch(flow, now)

    # -- the loop --------------------------------------------------------------------------------

    def fds(self) -> list[int]:
        """File descriptors to wait on."""
        return []

    def readable(self, fd: int) -> None:
        """Read what is waiting on ``fd``."""

    def run(self, wakeup_fd: int | None = None) -> None:
        """Until ``stop_requested``: wait for packets, handle them, keep house."""
        poller = select.poll()
        for fd in self.fds():
            poller.register(fd, select.POLLIN)
        if wakeup_fd is not None:
            poller.register(wakeup_fd, select.POLLIN)
        while not self.stop_requested:
            for fd, _ev in poller.poll(250):
                if fd == wakeup_fd:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wakeup_fd, 512)
                else:
                    self.readable(fd)
            self.housekeeping(time.time())

    def finish(self) -> None:
        """Report every live flow (end of run), with the kernel counters read once for all."""
        sets = self.sets
        self._work_began = time.time()
        if sets is not None and sets.flows:
            try:
                sets.flush()
                sets.snapshot()
            except Exception as err:
                self.error("nft", err)
        self.scanner.finish()
        if sets is not None:
            sets.flush()  # our table is removed next anyway; this keeps the element count honest

    def close(self) -> None:
        """Release sockets and queues."""
