"""The gateway's nftables and iptables objects: plan them, install them, find them, remove them.

Everything lives in objects whose names say they are ours, so cleanup removes exactly those and
nothing of the operator's:

* one nftables table, ``inet classifier_gw`` (its sets, its chains; deleting it removes all);
* with the iptables backend, one chain ``CLASSIFIER_GW`` in the ``mangle`` table of iptables and
  ip6tables, and the jumps to it from ``FORWARD``, each carrying the comment ``classifier_gw``
  (the rules inside our chain need no tag: the chain is ours); and the nft tables ``ip mangle`` /
  ``ip6 mangle`` when iptables-nft created them for us and they are empty again (xtables.py).

Chains sit at priority mangle - 10 (before the operator's mangle and filter chains): a packet we
let through (an ``accept`` here, or an NFQUEUE accept verdict, which resumes at the next hook
priority) still meets every operator rule after us. The queue rule has ``bypass``, so with no
process on the queue the kernel lets packets through (fail-open).

The native nft ``queue`` statement needs CONFIG_NFT_QUEUE; kernels without it (but with the xt
NFQUEUE target) get the iptables backend: our nft chain marks offloaded packets with one bit,
the jump to the iptables chain skips packets with that bit, the chain queues the rest, and a
later nft chain clears the bit so no operator rule ever sees it.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from classifier.errors import UserError

from . import xtables
from .config import GatewayConfig

TABLE = "classifier_gw"
FAMILY = "inet"
CHAIN = "CLASSIFIER_GW"
TAG = "classifier_gw"
PRIORITY = -160  # mangle (-150) - 10
UNMARK_PRIORITY = -140  # after the iptables mangle chain

_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_IP = {4: "ip", 6: "ip6"}
_KEY = "{ip} saddr . meta l4proto . th sport . {ip} daddr . th dport"


@dataclass
class Plan:
    """What a gateway run installs, as the exact text and commands that install it."""

    mode: str
    backend: str | None  # nft | iptables | None (nothing queued)
    nft_script: str | None
    iptables: list[list[str]] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)  # `ip route` equivalents
    sets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self, enforce: bool) -> str:
        """The plan as shell an operator can read (and run by hand)."""
        lines = [
            f"# classifier gateway: mode {self.mode}"
            + (f", queue backend {self.backend}" if self.backend else "")
            + ("" if enforce else "; dry run: nothing below is installed (use --enforce)")
        ]
        lines += [f"# {n}" for n in self.notes]
        if self.nft_script:
            lines += ["nft -f - <<'EOF'", self.nft_script.rstrip("\n"), "EOF"]
        lines += [shlex.join(argv) for argv in self.iptables]
        lines += self.routes
        if self.sets:
            lines.append(
                "# sets filled at run time (one element per flow direction, removed when the "
                "flow ends, kernel timeout as a safety net):"
            )
            lines += [f"#   {s}" for s in self.sets]
        if not (self.nft_script or self.iptables or self.routes):
            lines.append("# nothing is installed in this mode: capture and records only")
        return "\n".join(lines) + "\n"


def queue_probe_script(queue: int) -> str:
    """A table using the native queue statement, to ask the kernel (never committed) if it has it."""
    return (
        f"table {FAMILY} {TABLE}_probe {{\n\tchain forward {{\n"
        f"\t\ttype filter hook forward priority 0; policy accept;\n"
        f"\t\tmeta l4proto {{ tcp, udp }} queue num {queue} bypass\n\t}}\n}}\n"
    )


def choose_backend(cfg: GatewayConfig, nft) -> str:
    """nft if the kernel has the nft queue statement, else iptables (xt NFQUEUE)."""
    if cfg.backend != "auto":
        return cfg.backend
    if nft is None:
        return "nft"
    return "nft" if nft.works(queue_probe_script(cfg.queue)) else "iptables"


def queue_numbers(cfg: GatewayConfig) -> range:
    """The NFQUEUE numbers of an inline run: ``queue`` and the ``queues - 1`` after it."""
    return range(cfg.queue, cfg.queue + cfg.queues)


def _queue_spec(cfg: GatewayConfig, sep: str) -> str:
    """``7`` or ``7<sep>8``: with several queues the kernel balances by a hash of the packet's two
    addresses (sorted, so both directions of a flow hash alike) and protocol, never by CPU: a
    flow's packets always reach the same worker, and IP fragments (no ports) go with their flow."""
    numbers = queue_numbers(cfg)
    return str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}{sep}{numbers[-1]}"


def _set(name: str, family: int, cfg: GatewayConfig, comment: str) -> str:
    return (
        f"\tset {name} {{\n"
        f"\t\ttype {_TYPE[family]} . inet_proto . inet_service . {_TYPE[family]} . inet_service\n"
        f"\t\tsize {cfg.set_size}\n"
        f"\t\tflags timeout\n"
        f"\t\ttimeout {int(cfg.set_timeout)}s\n"
        f"\t\tcounter\n"
        f'\t\tcomment "{TAG}: {comment}"\n'
        f"\t}}\n"
    )


def nft_script(cfg: GatewayConfig, mode: str, backend: str | None, created: Sequence[str] = ()) -> str | None:
    """The nftables table of a mode (None for monitor).

    The base chain sends each family to its own chain, where the offload lookup comes first:
    a packet of an offloaded flow (the bulk of the traffic) costs one set lookup. ``created``: the
    mangle tables (``"ip mangle"``) the iptables commands will create, recorded for the clean-up.
    """
    if mode == "monitor":
        return None
    out = [
        f"table {FAMILY} {TABLE} {{\n",
        f'\tcomment "{TAG}: classifier gateway ({mode} mode); remove with: classifier gateway --cleanup"\n',
    ]
    out.append(xtables.marker_objects(created, TAG))
    offload = mode == "inline" and cfg.offload
    for fam in (4, 6):
        out.append(_set(f"block{fam}", fam, cfg, "blocked flows, both directions"))
        if offload:
            out.append(_set(f"allow{fam}", fam, cfg, "decided flows that bypass the queue"))
    out.append(
        "\tchain forward {\n"
        f"\t\ttype filter hook forward priority {PRIORITY}; policy accept;\n"
        f'\t\tcomment "{TAG}"\n'
    )
    if cfg.interfaces:
        names = ", ".join(f'"{n}"' for n in cfg.interfaces)
        out.append(f"\t\tiifname != {{ {names} }} accept\n")
    out.append("\t\tmeta nfproto vmap { ipv4 : jump flows4, ipv6 : jump flows6 }\n")
    if mode == "inline" and backend == "nft":
        out.append(f"\t\tmeta l4proto {{ tcp, udp }} queue num {_queue_spec(cfg, '-')} bypass\n")
    out.append("\t}\n")
    mark = f" meta mark set meta mark | 0x{cfg.mark:08x}" if backend == "iptables" else ""
    for fam in (4, 6):
        key = _KEY.format(ip=_IP[fam])
        out.append(f"\tchain flows{fam} {{\n")
        if offload:
            # SYN, FIN and RST still go to the queue: the flow table sees a connection open and close.
            out.append(f"\t\tmeta l4proto udp {key} @allow{fam}{mark} accept\n")
            out.append(
                f"\t\tmeta l4proto tcp tcp flags & (syn | fin | rst) == 0 {key} @allow{fam}{mark} accept\n"
            )
        out.append(f"\t\tmeta l4proto tcp {key} @block{fam} reject with tcp reset\n")
        out.append(f"\t\tmeta l4proto udp {key} @block{fam} drop\n")
        out.append("\t}\n")
    if mode == "inline" and backend == "iptables" and offload:
        keep = ~cfg.mark & 0xFFFFFFFF
        out.append(
            "\tchain unmark {\n"
            f"\t\ttype filter hook forward priority {UNMARK_PRIORITY}; policy accept;\n"
            f'\t\tcomment "{TAG}: clears our offload bit after the iptables queue chain"\n'
            f"\t\tmeta mark & 0x{cfg.mark:08x} == 0x{cfg.mark:08x} "
            f"meta mark set meta mark & 0x{keep:08x}\n"
            "\t}\n"
        )
    out.append("}\n")
    return "".join(out)


def iptables_commands(cfg: GatewayConfig, mode: str, backend: str | None) -> list[list[str]]:
    """The iptables/ip6tables commands of the iptables backend (none otherwise)."""
    if mode != "inline" or backend != "iptables":
        return []
    cmds: list[list[str]] = []
    # Offloaded packets carry our mark bit and skip the jump; the rest go to our chain and the queue.
    offloaded = ["-m", "mark", "!", "--mark", f"0x{cfg.mark:x}/0x{cfg.mark:x}"] if cfg.offload else []
    for tool in ("iptables", "ip6tables"):
        base = [tool, "-w", "-t", "mangle"]
        cmds.append([*base, "-N", CHAIN])
        for proto in ("tcp", "udp"):
            target = (
                ["--queue-num", str(cfg.queue)]
                if cfg.queues == 1
                else ["--queue-balance", _queue_spec(cfg, ":")]
            )
            cmds.append([*base, "-A", CHAIN, "-p", proto, "-j", "NFQUEUE", *target, "--queue-bypass"])
        for iface in cfg.interfaces or (None,):
            cmds.append(
                [
                    *base,
                    "-I",
                    "FORWARD",
                    "1",
                    *(["-i", iface] if iface else []),
                    *offloaded,
                    "-m",
                    "comment",
                    "--comment",
                    TAG,
                    "-j",
                    CHAIN,
                ]
            )
    return cmds


def set_names(cfg: GatewayConfig, mode: str) -> list[str]:
    """Descriptions of the sets the plan creates, for the dry run."""
    names = []
    if mode in ("inline", "reactive"):
        names += [f"{FAMILY} {TABLE} block4/block6: blocked flow tuples (dropped; TCP reset)"]
    if mode == "inline" and cfg.offload:
        names += [f"{FAMILY} {TABLE} allow4/allow6: decided flows offloaded from the queue"]
    return names


def uses_iptables(cfg: GatewayConfig, backend: str | None) -> bool:
    """Whether a run runs iptables commands (inline mode with the iptables backend)."""
    return cfg.mode == "inline" and backend == "iptables"


def build_plan(
    cfg: GatewayConfig, backend: str | None, routes: Iterable[str] = (), created: Sequence[str] = ()
) -> Plan:
    """Everything a run would install, in the order it is installed.

    ``created``: the mangle tables iptables will create (``xtables.absent`` before the run).
    """
    mode = cfg.mode
    queue_backend = backend if mode == "inline" else None
    iptables = iptables_commands(cfg, mode, queue_backend)
    created = list(created) if iptables else []
    notes = []
    if mode == "inline":
        notes.append(
            f"NFQUEUE {_queue_spec(cfg, '-')} with bypass (fail-open when no process listens)"
            + ("; fail-open when the queue is full" if cfg.fail_open else "")
        )
        if cfg.queues > 1:
            notes.append(
                f"{cfg.queues} queues, one worker process each, balanced by a hash of each "
                "packet's addresses and protocol (both directions of a flow: one worker)"
            )
    if created:
        notes.append(f"iptables creates the nft tables {' and '.join(created)}; removed on exit when empty")
    return Plan(
        mode,
        queue_backend,
        nft_script(cfg, mode, queue_backend, created),
        iptables,
        list(routes),
        set_names(cfg, mode),
        notes,
    )


# -- install / find / remove ------------------------------------------------------------------


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def install(plan: Plan, nft) -> None:
    """Install the plan's nft table, then its iptables rules; raises UserError on the first failure
    (the caller removes whatever got installed)."""
    if plan.nft_script:
        nft.run(plan.nft_script)
    for argv in plan.iptables:
        proc = _run(argv)
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["failed"])[0]
            raise UserError(f"{shlex.join(argv)}: {msg}")


def _iptables_ours(tool: str) -> tuple[list[str], bool]:
    """Our rules in the FORWARD chain of the mangle table (as -S lines), and whether our chain exists."""
    proc = _run([tool, "-w", "-t", "mangle", "-S"])
    if proc.returncode != 0:
        return [], False
    rules, chain = [], False
    for line in proc.stdout.splitlines():
        if line == f"-N {CHAIN}":
            chain = True
        elif line.startswith("-A FORWARD ") and f"--comment {TAG} " in line and line.endswith(f"-j {CHAIN}"):
            rules.append(line)
    return rules, chain


def _has_tool(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


def _our_table_exists(nft) -> bool:
    return any(
        o.get("table", {}).get("name") == TABLE and o["table"].get("family") == FAMILY
        for o in nft.list_json("tables")
    )


def leftovers(nft) -> list[str]:
    """Descriptions of every object of ours present now (nft table, iptables chains and jumps, and
    the mangle tables iptables created for us)."""
    found = []
    if _our_table_exists(nft):
        found.append(f"nft table {FAMILY} {TABLE}")
        present = xtables.existing(nft)
        found += [
            f"nft table {fam} {name} (created by iptables for the gateway; removed once empty)"
            for fam, name in xtables.recorded(nft, FAMILY, TABLE)
            if (fam, name) in present
        ]
    for tool in ("iptables", "ip6tables"):
        if not _has_tool(tool):
            continue
        rules, chain = _iptables_ours(tool)
        found += [f"{tool} -t mangle {r}" for r in rules]
        if chain:
            found.append(f"{tool} -t mangle chain {CHAIN}")
    return found


def remove_all(nft, notes: list[str] | None = None) -> list[str]:
    """Remove every object of ours; returns what was removed. Safe to run when there is none.

    Order: iptables jumps and chain, then the mangle tables our table records as created for us
    (if empty), then our table (the record goes last, so an interrupted clean-up can be rerun).
    ``notes`` gets the tables that were left in place, with the reason.
    """
    removed = []
    ours = _our_table_exists(nft)
    created = xtables.recorded(nft, FAMILY, TABLE) if ours else []
    for tool in ("iptables", "ip6tables"):
        if not _has_tool(tool):
            continue
        rules, chain = _iptables_ours(tool)
        for rule in rules:
            argv = [tool, "-w", "-t", "mangle", *shlex.split("-D" + rule[2:])]
            if _run(argv).returncode == 0:
                removed.append(f"{tool} -t mangle {rule}")
        if chain:
            _run([tool, "-w", "-t", "mangle", "-F", CHAIN])
            if _run([tool, "-w", "-t", "mangle", "-X", CHAIN]).returncode == 0:
                removed.append(f"{tool} -t mangle chain {CHAIN}")
    if created:
        gone, kept = xtables.remove_if_empty(nft, created)
        removed += gone
        if notes is not None:
            notes += kept
    if ours:
        nft.run(f"delete table {FAMILY} {TABLE}")
        removed.append(f"nft table {FAMILY} {TABLE}")
    return removed
