"""One queue worker of a multi-queue inline gateway: ``python -m classifier.gateway.worker FD``.

The supervisor (``supervisor.py``) starts one per NFQUEUE. A worker is an ordinary inline engine
on its own queue, with its own flow table, nft handle and reset socket; what it shares goes
through its channel (``FD``, a SOCK_SEQPACKET socket) to the supervisor: records (written there,
to the one log), counters for the metrics, and DNS answers and remembered names (relayed to the
other workers). Beyond one core, processes: each worker has its own interpreter.

SIGTERM stops it the way the single-process gateway stops: unbind (the queue's bypass lets traffic
pass), write every live flow's record, exit. SIGINT and SIGHUP are the supervisor's business.
When the supervisor is gone (end of file on the channel) the worker stops too.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import sys

import orjson

from classifier.errors import UserError

from . import channel
from .channel import WorkerSetup, WorkerStats
from .dnsshare import SharedDnsCache
from .inline import InlineEngine
from .metrics import Stats


class ChannelLog:
    """The record log of a worker: each record goes to the supervisor as one message."""

    path = "through the gateway supervisor"  # in the one-line error when the channel fails

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, record: dict) -> None:
        channel.send_record(self.sock, record["flow"], orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def reopen(self) -> None:
        """Rotation is the supervisor's (it owns the file)."""

    def close(self) -> None:
        """The channel is closed by the worker's exit."""


class QueueWorker(InlineEngine):
    """The inline engine, plus the channel: relayed DNS answers in, counters out once a second."""

    def __init__(
        self, *args, sock: socket.socket, caches: tuple[SharedDnsCache, SharedDnsCache], **kwargs
    ) -> None:
        """``caches``: the scanner's DNS cache and name memory, which take in what others learned."""
        super().__init__(*args, caches=caches, **kwargs)
        self.shared_caches = caches
        self.sock = sock
        self.receiver = channel.Receiver(sock)
        self.ticks.append(lambda _now: self.send_stats())

    def fds(self) -> list[int]:
        return [*super().fds(), self.sock.fileno()]

    def readable(self, fd: int) -> None:
        if fd != self.sock.fileno():
            super().readable(fd)
            return
        self.chores()

    def chores(self) -> None:
        """Relayed DNS answers and names (also between packets while the queue never drains)."""
        while True:
            try:
                msg = self.receiver.recv()
            except BlockingIOError:
                return
            except OSError:
                msg = None
            if msg is None:  # the supervisor is gone: nobody writes our records any more
                self.stop_requested = True
                return
            kind, payload = msg
            if kind in (channel.DNS, channel.NAME, channel.WITHDRAW):
                dns, names = self.shared_caches
                cache = names if kind == channel.NAME else dns
                try:
                    cache.learn(kind, pickle.loads(payload))
                except Exception as err:
                    self.error("dns-share", err)

    def publish(self, kind: bytes, args: tuple) -> None:
        """Send what a cache learned to the supervisor, for the other workers."""
        try:
            channel.send_obj(self.sock, kind, args)
        except OSError as err:
            self.error("dns-share", err)

    def send_stats(self) -> None:
        channel.send_obj(self.sock, channel.STATS, WorkerStats(self.stats, self.scanner.table.live))


def run(setup: WorkerSetup, sock: socket.socket) -> int:
    """Bind the queue, say ready, run until SIGTERM (or the supervisor is gone), then report all."""
    from .flowsets import FlowSets
    from .nftlib import Nft
    from .resets import Resetter
    from .runner import load_signatures

    cfg = setup.cfg
    sigs, policy = load_signatures(cfg)
    stats = Stats()
    sets = FlowSets(Nft(), cfg.set_timeout)
    resetter = Resetter() if cfg.resets else None
    holder: list[QueueWorker] = []

    def publish(kind: bytes, args: tuple) -> None:
        holder[0].publish(kind, args)

    engine = QueueWorker(
        cfg,
        sigs,
        policy,
        ChannelLog(sock),
        stats,
        sets=sets,
        label=setup.label,
        resetter=resetter,
        queue_num=setup.queue,
        sock=sock,
        caches=(SharedDnsCache(publish), SharedDnsCache(publish)),
        flow_number=setup.flow_number,
    )
    holder.append(engine)

    def stop(_signum, _frame) -> None:
        engine.stop_requested = True

    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGTERM, stop)
    try:
        engine.bind()
        channel.send(sock, channel.READY)
        engine.run(rfd)
    finally:
        problems = []
        for what, fn in (("queue", engine.close), ("records", engine.finish)):
            try:
                fn()
            except Exception as err:
                problems.append(f"{what}: {err}")
        if resetter is not None:
            with contextlib.suppress(Exception):
                resetter.close()
        with contextlib.suppress(OSError):
            engine.send_stats()
        if problems:
            print(
                f"classifier gateway: queue {setup.queue}: cleanup problems: {'; '.join(problems)}",
                file=sys.stderr,
                flush=True,
            )
    if engine.fatal is not None:
        raise engine.fatal
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if len(args) != 1 or not args[0].isdigit():
        print(
            "usage: python -m classifier.gateway.worker FD (started by classifier gateway --queues N)",
            file=sys.stderr,
        )
        return 2
    sock = socket.socket(fileno=int(args[0]))
    queue = "?"
    try:
        msg = channel.Receiver(sock).recv(block=True)
        if msg is None or msg[0] != channel.SETUP:
            return 2
        setup: WorkerSetup = pickle.loads(msg[1])
        queue = str(setup.queue)
        return run(setup, sock)
    except UserError as err:
        _failed(sock, str(err))
        return 2
    except Exception as err:
        if os.environ.get("CLASSIFIER_DEBUG"):
            import traceback

            traceback.print_exception(err)
        _failed(sock, f"worker for queue {queue}: internal error: {type(err).__name__}: {err}")
        return 1


def _failed(sock: socket.socket, message: str) -> None:
    with contextlib.suppress(OSError):
        channel.send(sock, channel.FAILED, message.encode())


if __name__ == "__main__":
    sys.exit(main())
