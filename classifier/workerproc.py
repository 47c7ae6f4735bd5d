"""Worker processes for ``scan --workers``: forked with ``os.fork``, and their pipes.

A worker is forked after the signatures and policy are loaded (it inherits them, no start-up of
its own) and talks to the parent over pipes: length-prefixed messages, as
``multiprocessing.Connection`` frames them, encoded with ``marshal`` when they hold only plain
values (records do). ``multiprocessing`` with its connection module, ``socket`` and ``pickle``
cost about 15 ms of every ``--workers`` start-up (docs/ARCHITECTURE.md "Scale-out"); what a
worker needs of them is the fork, a pipe and the exit status, which this module gives.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import select
import signal
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Any

PIPE_BYTES = 1 << 20  # a worker's pipe: several batches of records


def widen(fd: int) -> None:
    """Let a pipe hold ``PIPE_BYTES`` (Linux's default pipe is 64 KiB, a quarter of one batch): a
    worker then goes on scanning while the parent reads the other workers' batches, instead of
    waiting for it. Where the system refuses (above fs.pipe-max-size), the default stays."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class Channel:
    """A worker's end or the parent's end of its pipes: length-prefixed messages over raw file
    descriptors."""

    def __init__(self, rfd: int | None, wfd: int | None) -> None:
        self.rfd = rfd  # read from (None: this end only writes)
        self.wfd = wfd  # written to (None: this end only reads)

    def fileno(self) -> int:
        """The descriptor read from (what ``waiting`` polls)."""
        assert self.rfd is not None
        return self.rfd

    def send_bytes(self, data: bytes) -> None:
        """One message: its length, then its bytes (a batch of records is copied once, by the kernel)."""
        assert self.wfd is not None
        header = _LENGTH.pack(len(data))
        sent = os.writev(self.wfd, [header, data])
        if sent < len(header) + len(data):  # cut short (a signal): the rest, copied once
            rest = memoryview(header + data)[sent:]
            while rest:
                rest = rest[os.write(self.wfd, rest) :]

    def recv_bytes(self) -> bytes:
        """The next message; EOFError when the other end closed (a worker that died)."""
        return self._read(_LENGTH.unpack(self._read(_LENGTH.size))[0])

    def _read(self, size: int) -> bytes:
        assert self.rfd is not None
        data = os.read(self.rfd, size)
        if len(data) == size:
            return data
        buf = bytearray(data)
        while data and len(buf) < size:
            data = os.read(self.rfd, size - len(buf))
            buf += data
        if len(buf) < size:
            raise EOFError
        return bytes(buf)

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            if fd is not None:
                os.close(fd)
        self.rfd = self.wfd = None


_LENGTH = struct.Struct("!i")  # a message's length, as multiprocessing.Connection writes it


def channels(duplex: bool = False) -> tuple[Channel, Channel]:
    """(the parent's end, the worker's end) of new pipes: the worker's messages to the parent (the
    pipe widened, ``widen``); with ``duplex``, also the parent's to the worker."""
    up_r, up_w = os.pipe()
    widen(up_w)
    if not duplex:
        return Channel(up_r, None), Channel(None, up_w)
    down_r, down_w = os.pipe()
    return Channel(up_r, down_w), Channel(down_r, up_w)


def send_message(conn: Channel, msg: tuple) -> None:
    """Send a worker's message: with ``marshal`` when it holds only plain values (records and
    packed results do), which costs about half of pickling them, the parent's share of the work;
    else pickled."""
    try:
        data = b"m" + marshal.dumps(msg)
    except ValueError:  # some value marshal does not know
        import pickle  # here: what workers send is plain, and every start-up would import it

        data = b"p" + pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    conn.send_bytes(data)


def recv_message(conn: Channel) -> tuple:
    """A message sent by ``send_message``."""
    data = conn.recv_bytes()
    body = memoryview(data)[1:]  # not a copy of a whole batch
    if data[:1] == b"m":
        return marshal.loads(body)
    import pickle

    return pickle.loads(body)


class Worker:
    """A forked worker process running ``target(*args)``, then leaving at once (``os._exit``: no
    clean-up of the parent's state it shares, no output the parent had buffered written twice)."""

    def __init__(
        self, target: Callable[..., None], args: tuple, close: list[Channel], started: list[Worker]
    ) -> None:
        """``close``: the parent's ends of every worker's pipes, which this one must not hold;
        ``started``: the parent's list of its workers (the ones it stops), which this one joins
        before any signal can interrupt the parent.

        Ctrl-C, ``kill`` and a hang-up are held back across the fork: one arriving just after it
        would otherwise raise in the new process before it is in its ``try`` (which then ran on
        in the parent's code, with the parent's output and workers), or in the parent before the
        worker is in ``started`` (which then never stopped it). Held back, it is taken in the
        worker inside its ``try`` and in the parent once the worker is listed."""
        for stream in (sys.stdout, sys.stderr):  # nothing buffered before the fork is written twice
            if stream is not None:
                stream.flush()
        self.exitcode: int | None = None
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        try:
            self.pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        if self.pid == 0:  # the worker
            code = 1
            try:
                try:
                    for signum in ENDING_SIGNALS:  # ended by them at once, as before ``workers_end_too``
                        if signal.getsignal(signum) is not signal.SIG_IGN:  # ignored (nohup): it stays so
                            signal.signal(signum, signal.SIG_DFL)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                for conn in close:
                    conn.close()
                target(*args)
                code = 0
            finally:
                try:
                    sys.stderr.flush()  # a progress bar's last lines
                finally:
                    os._exit(code)
        started.append(self)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def poll(self) -> int | None:
        """Its exit status (-N: killed by signal N) if it has ended, else None."""
        if self.exitcode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)
        return self.exitcode

    def join(self) -> int:
        """Wait for it to end; its exit status."""
        if self.exitcode is None:
            self.exitcode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.exitcode

    def stop(self) -> None:
        """End it now (SIGTERM) if it still runs, and reap it."""
        if self.poll() is None:
            os.kill(self.pid, 15)
        self.join()


def waiting(conns: list[Channel]) -> list[Channel]:
    """Those of ``conns`` with a message to read or closed by the worker (blocks until one is)."""
    poller = select.poll()
    by_fd = {}
    for conn in conns:
        by_fd[conn.fileno()] = conn
        poller.register(conn.fileno(), select.POLLIN)
    return [by_fd[fd] for fd, _events in poller.poll()]


# Signals that end a process where it stands (``kill``, ``timeout``, a closed terminal): the parent
# would leave its workers scanning until their next message met a closed pipe, which on a capture of
# few long flows is the rest of the scan.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_HELD = {signal.SIGINT, *ENDING_SIGNALS}  # held back across a fork (``Worker``)


class _Ended(BaseException):
    """An ending signal, raised in the parent so that what stops the workers runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def workers_end_too() -> Iterator[None]:
    """While workers run: an ending signal stops and reaps them (the ``finally`` that stops them
    runs), then ends this process by that same signal, as it ends one process (same status, no
    message). A second one meanwhile is ignored: the workers are being stopped already."""
    ending: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if not ending:
            ending.append(signum)
            raise _Ended(signum)

    saved: dict[int, Any] = {}
    with contextlib.suppress(ValueError):  # only the main thread may set handlers (and gets signals)
        for signum in ENDING_SIGNALS:
            # Only where the signal would end the process: one ignored (``nohup``) stays ignored,
            # here and in the workers; a handler of a program that calls us is its own business.
            if signal.getsignal(signum) is signal.SIG_DFL:
                saved[signum] = signal.signal(signum, handler)
    try:
        yield
    except _Ended as ended:
        signal.signal(ended.signum, signal.SIG_DFL)
        os.kill(os.getpid(), ended.signum)
        raise  # not reached unless the signal is blocked
    finally:
        for number, previous in saved.items():
            signal.signal(number, previous)
