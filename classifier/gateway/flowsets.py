"""The per-flow elements of our nft sets: add and remove (batched), read counters.

A decided flow gets one element per direction (so one lookup matches either direction) in
``allowN`` (offloaded: bypasses the queue) or ``blockN`` (dropped, TCP reset). Elements live as
long as the flow does in the flow table: they are removed when the flow ends, and each has a
kernel timeout only as a safety net for a gateway that died. Each element counts the packets
that matched it; a periodic read of those counters (``snapshot``) is how a flow the queue no
longer sees stays alive in the flow table, and how its record keeps whole-flow counters.

nft commands cost a fraction of a millisecond each, so additions and removals are queued and sent
as one transaction per batch, after the packets at hand got their verdicts.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from classifier.flows import Flow

from .netfilter import FAMILY, TABLE
from .nftlib import NftError

_PROTO = {6: "tcp", 17: "udp"}


def _ntop(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


@dataclass
class Offloaded:
    """A flow with set elements and the kernel's counts for them at the last read."""

    flow: Flow
    kind: str  # "allow" | "block"
    set: str
    c2s: str
    s2c: str
    added_at: float = 0.0
    # c2s packets, bytes, s2c packets, bytes: what the elements in the kernel now had counted at
    # the last read (they start at zero when added again), and what earlier ones had counted
    # before they timed out
    current: tuple[int, int, int, int] = (0, 0, 0, 0)
    earlier: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """The whole flow's, as of the last read."""
        e, c = self.earlier, self.current
        return (e[0] + c[0], e[1] + c[1], e[2] + c[2], e[3] + c[3])

    @property
    def packets(self) -> int:
        return self.counts[0] + self.counts[2]


def element_keys(flow: Flow) -> tuple[str, str, str]:
    """(set suffix 4|6, client->server key, server->client key) in nft element syntax."""
    proto = _PROTO[flow.proto]
    c, s = _ntop(flow.client), _ntop(flow.server)
    fam = "4" if len(flow.client) == 4 else "6"
    return (
        fam,
        f"{c} . {proto} . {flow.client_port} . {s} . {flow.server_port}",
        f"{s} . {proto} . {flow.server_port} . {c} . {flow.client_port}",
    )


def _element(elem) -> tuple[str | None, int, int]:
    """(key, packets, bytes) of one element of an nft JSON listing."""
    counter = None
    if isinstance(elem, dict) and "elem" in elem:
        counter = elem["elem"].get("counter")
        elem = elem["elem"].get("val")
    concat = elem.get("concat") if isinstance(elem, dict) else None
    if not concat or len(concat) != 5:
        return None, 0, 0
    counter = counter or {}
    return " . ".join(str(v) for v in concat), counter.get("packets", 0), counter.get("bytes", 0)


class FlowSets:
    """Set element bookkeeping for the flows the gateway decided."""

    def __init__(self, nft, timeout: float) -> None:
        self.nft = nft
        self.timeout = int(timeout)
        self.flows: dict[int, Offloaded] = {}
        self._adds: list[Offloaded] = []
        self._removes: list[Offloaded] = []
        self.errors = 0
        self.last_error: str | None = None
        # Wall-clock time at which the last counter read began: counts read then cover every
        # packet the kernel matched before it.
        self.read_at = float("-inf")

    def add(self, flow: Flow, kind: str, now: float, immediate: bool = False) -> Offloaded:
        """Give a flow its two elements (batched unless ``immediate``)."""
        fam, c2s, s2c = element_keys(flow)
        entry = Offloaded(flow, kind, f"{kind}{fam}", c2s, s2c, now)
        self.flows[flow.id] = entry
        self._adds.append(entry)
        if immediate:
            self.flush()
        return entry

    def readd(self, entry: Offloaded, now: float) -> None:
        """Add the elements again (their kernel timeout ran out while the flow lives on). The new
        ones count from zero: what the old ones counted up to the last read is kept."""
        entry.added_at = now
        entry.earlier, entry.current = entry.counts, (0, 0, 0, 0)
        self._adds.append(entry)

    def release(self, flow: Flow) -> Offloaded | None:
        """The flow ended: forget it and queue the removal of its elements; its entry (counts)."""
        entry = self.flows.pop(flow.id, None)
        if entry is not None:
            self._removes.append(entry)
        return entry

    @property
    def pending(self) -> int:
        return len(self._adds) + len(self._removes)

    def flush(self) -> None:
        """Send queued removals, then additions, each batch as one transaction."""
        removes, self._removes = self._removes, []
        adds = [e for e in self._adds if e.flow.id in self.flows]
        self._adds = []
        if removes:
            # A removal fails when the element already timed out; then the batch is retried one by one.
            self._send(
                [
                    f"delete element {FAMILY} {TABLE} {e.set} {{ {key} }}"
                    for e in removes
                    for key in (e.c2s, e.s2c)
                ],
                count_errors=False,
            )
        if adds:
            t = self.timeout
            self._send(
                [
                    f"add element {FAMILY} {TABLE} {e.set} {{ {e.c2s} timeout {t}s, {e.s2c} timeout {t}s }}"
                    for e in adds
                ],
                count_errors=True,
            )

    def _send(self, cmds: list[str], count_errors: bool) -> None:
        try:
            self.nft.run("\n".join(cmds) + "\n")
            return
        except NftError:
            pass
        for cmd in cmds:
            try:
                self.nft.run(cmd + "\n")
            except NftError as err:
                if count_errors:
                    self.errors += 1
                    self.last_error = str(err)

    def snapshot(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Read every set in use (one listing each) and store each flow's counts on its entry.

        Returns (packets, bytes) per element key per set.
        """
        self.read_at = time.time()
        totals: dict[str, dict[str, tuple[int, int]]] = {}
        for name in {e.set for e in self.flows.values()}:
            per: dict[str, tuple[int, int]] = {}
            try:
                objs = self.nft.list_json(f"set {FAMILY} {TABLE} {name}")
            except NftError as err:
                self.errors += 1
                self.last_error = str(err)
                continue
            for obj in objs:
                for elem in obj.get("set", {}).get("elem", ()) or ():
                    key, packets, size = _element(elem)
                    if key is not None:
                        per[key] = (packets, size)
            totals[name] = per
        for entry in self.flows.values():
            counts = totals.get(entry.set)
            if counts is None:
                continue
            a, b = counts.get(entry.c2s), counts.get(entry.s2c)
            if a is not None or b is not None:
                # A pair is added and removed together, but a listing can fall between the two
                # expiries: the direction it lacks keeps its last count (a counter never shrinks).
                last = entry.current
                a, b = a or last[:2], b or last[2:]
                entry.current = (a[0], a[1], b[0], b[1])
        return totals
