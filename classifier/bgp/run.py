"""``classifier bgp``: wire signatures, policy, the MRT reader or the kernel reader, and the writers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from classifier.exitcodes import Exit
from classifier.outputs import TextOutput, check_writable, printable, refuse_clobbering, write_text_file
from classifier.policy import Policy
from classifier.progress import Progress as LiveCounter
from classifier.signatures import Signatures, shipped_directory

from .decide import Decider


def load(args: argparse.Namespace) -> tuple[Signatures, Decider]:
    """The signatures (operator ASNs and apps, peering map) and the policy, as for ``scan``."""
    sig_dir = Path(args.signatures) if args.signatures else shipped_directory()
    sigs = Signatures.load(sig_dir, peering=getattr(args, "peering", None))
    policy = Policy.load(Path(args.policy) if args.policy else sig_dir / "policy")
    return sigs, Decider(policy, unenforced_blocks=args.unenforced_blocks)


def operator_apps(sigs: Signatures) -> dict[str, tuple[str, ...]]:
    return {op: o.apps for op, o in sigs.operators.items()}


def run_mrt(args: argparse.Namespace) -> int:
    """Read every MRT input into one route table, then write the records and the summary."""
    from .aspath import PathClassifier
    from .mrt import MrtReader, Needles
    from .output import EVENT_COLUMNS, ROUTE_COLUMNS, Records, Summary, input_lines, render_table, writer_for
    from .routes import RouteTable
    from .sessions import SESSION_COLUMNS, session_rows

    _check_outputs(args, [*args.files, *(f for f in (args.vrps, args.irr) if f)])
    sigs, decider = load(args)
    vrps, irr = _origin_data(args)
    apps = operator_apps(sigs)
    table = RouteTable(PathClassifier(sigs.operator_by_asn), local_asn=args.local_asn)
    needles = Needles(sigs.operator_by_asn)
    stats = []
    quiet = args.quiet or args.no_progress
    progress = Progress(len(args.files), enabled=not quiet and (args.progress or len(args.files) > 1))
    for path in args.files:
        name = "-" if path == "-" else printable(Path(path).name)
        progress.start(name)
        # A live counter while a long input is read (on a terminal only), then the input's line.
        label = f"[{progress.index}/{progress.total}] reading {name}"
        with LiveCounter(label, "MiB", enabled=not quiet, divisor=1 << 20) as live:
            stats.append(MrtReader(path, name, needles, table, progress=live.tick).run())
        progress.done(stats[-1])
    table.finish()
    records = Records(table, decider, apps, args.view, args.as_of, vrps, irr)
    summary = Summary.of(table.records)
    warnings = order_warnings(stats) + viewpoint_warnings(table, args.local_asn)

    with TextOutput(args.output) as out:
        if args.format == "table":
            routes = list(records.routes())
            render_table(
                out,
                routes,
                records.events(),
                summary,
                stats,
                apps,
                args.view,
                session_rows(table, routes, stats, apps, args.view),
                warnings,
            )
        else:
            if args.sessions:
                columns, rows = (
                    SESSION_COLUMNS,
                    iter(session_rows(table, records.routes(), stats, apps, args.view)),
                )
            elif args.timeline:
                columns, rows = EVENT_COLUMNS, iter(records.events())
            else:
                columns, rows = ROUTE_COLUMNS, records.routes()
            writer = writer_for(args.format, out, columns)
            for row in rows:
                writer.write(row)
            writer.close()
            lines = warnings + summary.lines(apps) + input_lines(stats)
            if not args.quiet:
                sys.stderr.write("\n".join(lines) + "\n")
            else:
                problems = [line for line in lines if line.startswith(("input problem:", "warning:"))]
                if problems:
                    sys.stderr.write("\n".join(problems) + "\n")
    if args.stats:
        _write_json(
            args.stats, {"files": [s.as_dict() for s in stats], **summary.as_dict(), "warnings": warnings}
        )
    return Exit.INPUT if any(s.problems for s in stats) else Exit.OK


def run_diff(args: argparse.Namespace) -> int:
    """Compare two audits' JSON lines: sessions, direct routes and operator prefixes."""
    from .diff import DIFF_COLUMNS, AuditFacts, changes
    from .output import render_diff, writer_for

    _check_outputs(args, args.diff)
    old, new = (AuditFacts.read(path) for path in args.diff)
    rows = list(changes(old, new))
    with TextOutput(args.output) as out:
        if args.format == "table":
            render_diff(out, rows, old.file, new.file)
        else:
            writer = writer_for(args.format, out, DIFF_COLUMNS)
            for row in rows:
                writer.write(row)
            writer.close()
    if not args.quiet:
        sys.stderr.write(f"{len(rows)} changes between {old.file} and {new.file}\n")
    return Exit.OK


class Progress:
    """One stderr line per input read (long update sets: a day of 5-minute files is 288 inputs)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.index = 0
        self._t = 0.0

    def start(self, name: str) -> None:
        import time

        self.index += 1
        self._t = time.monotonic()

    def done(self, st: Any) -> None:
        import time

        if self.enabled:
            sys.stderr.write(
                f"[{self.index}/{self.total}] {st.file}: {st.records} records, "
                f"{st.decoded} decoded, {time.monotonic() - self._t:.1f} s\n"
            )
            sys.stderr.flush()


def order_warnings(stats: list[Any]) -> list[str]:
    """Inputs share one routing state, so a file that starts before the previous one ended
    replays old updates over newer ones: say which."""
    from classifier.timeutil import format_instant

    out = []
    latest = None
    for st in stats:
        if st.first_ts is None:
            continue
        if latest is not None and st.first_ts < latest[0]:
            out.append(
                f"warning: {st.file} starts at {format_instant(st.first_ts)}, before {latest[1]} "
                f"ends ({format_instant(latest[0])}): inputs out of time order; give them oldest "
                "first or routes may be replayed out of order"
            )
        if st.last_ts is not None and (latest is None or st.last_ts > latest[0]):
            latest = (st.last_ts, st.file)
    return out


def viewpoint_warnings(table: Any, local_asn: int | None) -> list[str]:
    """``--local-asn`` on sessions another AS recorded (collector data): not that AS's routes."""
    out = []
    by_local: dict[int, list[int]] = {}
    for (_peer, local), n in table.foreign.items():
        by_local.setdefault(local, []).append(n)
    for local, counts in sorted(by_local.items()):
        out.append(
            f"warning: --local-asn AS{local_asn}: {sum(counts)} operator route announcements on "
            f"{len(counts)} session(s) recorded by AS{local} have paths that do not start with "
            f"AS{local_asn}: collector data, not AS{local_asn}'s view; their relationship is "
            "'unknown', not direct"
        )
    return out


def _origin_data(args: argparse.Namespace) -> tuple[Any, Any]:
    from .irr import RouteObjects
    from .rpki import VrpSet

    vrps = VrpSet.load(args.vrps) if args.vrps else None
    irr = RouteObjects.load(args.irr) if args.irr else None
    return vrps, irr


def run_kernel(args: argparse.Namespace) -> int:
    """Audit the live routing table of this (or another) network namespace."""
    import time

    from .kernel import KERNEL_COLUMNS, audit_routes, read_kernel, render_kernel
    from .output import writer_for
    from .prefixes import OperatorPrefixes

    _check_outputs(args, ())
    sigs, decider = load(args)
    snapshot = read_kernel(args.netns)
    when = args.as_of if args.as_of is not None else time.time()
    rows = audit_routes(snapshot, OperatorPrefixes.from_signatures(sigs), sigs, decider, when, args.view)
    with TextOutput(args.output) as out:
        if args.format == "table":
            render_kernel(out, rows, snapshot, args.view)
        else:
            writer = writer_for(args.format, out, KERNEL_COLUMNS)
            for row in rows:
                writer.write(row)
            writer.close()
            if not args.quiet:
                carried = {r["route"] for r in rows}
                sys.stderr.write(
                    f"{snapshot.where}: {len(snapshot.routes)} routes in "
                    f"{len(snapshot.tables())} tables, {len(carried)} carry operator "
                    "prefixes\n"
                )
    if args.stats:
        _write_json(args.stats, {"netns": args.netns, "routes": len(snapshot.routes), "records": len(rows)})
    return Exit.OK


def _check_outputs(args: argparse.Namespace, inputs: Any) -> None:
    """Before anything is opened: no output over an input or over the other output, and a
    ``--stats`` path that can be written at the end."""
    refuse_clobbering([("-o", args.output), ("--stats", args.stats)], inputs, stdout_written=not args.output)
    if args.stats:
        check_writable(args.stats)


def _write_json(path: str, data: Any) -> None:
    write_text_file(path, json.dumps(data, indent=2) + "\n")
