"""``classifier bgp`` and ``classifier signatures build-prefixes`` / ``export-prefixes``.

Every ``classifier`` run imports this module to build its parser, so it imports nothing heavy:
mrtparse, pyroute2, maxminddb and the audit modules are imported by the command functions.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _asn(text: str) -> int:
    try:
        value = int(text.upper().removeprefix("AS"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an AS number") from None
    if not 0 < value < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (1..4294967295)")
    return value


def register(subparsers: Any, signature_subparsers: Any) -> None:
    """Add ``bgp`` to the commands and ``build-prefixes``/``export-prefixes`` to ``signatures``."""
    from classifier.cliargs import add_output_arguments, add_policy_arguments, output_file
    from classifier.exitcodes import epilog

    b = subparsers.add_parser(
        "bgp",
        help="audit transit and peering with the operators from MRT files or kernel routes",
        description="Report the routes that concern the operators' ASNs: prefixes they originate, paths "
        "through them, and the neighbour each is reached through (direct: a session with the "
        "operator, the orders' 'directly contracted or arranged transit or peering'; "
        "indirect: third parties), decided per the policy; for update files, a timeline.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="MRT file (TABLE_DUMP, TABLE_DUMP_V2, BGP4MP/_ET), plain, gzip or bzip2; '-' reads "
        "standard input. Several files share one routing state: give them in time order",
    )
    b.add_argument("--kernel", action="store_true", help="audit the live routing table instead (pyroute2)")
    b.add_argument("--netns", metavar="NAME", help="with --kernel: read this network namespace")
    b.add_argument(
        "--local-asn",
        type=_asn,
        metavar="N",
        help="your ASN: the neighbour is the first AS after its leading copies; default: per "
        "path, the collector's peer ASN",
    )
    b.add_argument(
        "--timeline",
        action="store_true",
        help="write the timeline (one record per change, both views) instead of route records",
    )
    b.add_argument(
        "--sessions",
        action="store_true",
        help="write one record per BGP session and operator (kind, next hops, state changes, "
        "prefixes announced/withdrawn/live, decision) instead of route records",
    )
    b.add_argument(
        "--vrps",
        metavar="FILE",
        help="RPKI origin validation of every operator route against this VRP file "
        "(rpki-client json, Routinator json/jsonext/csv)",
    )
    b.add_argument(
        "--irr",
        metavar="FILE",
        help="IRR dump (RPSL route/route6 objects, plain or compressed): is each operator "
        "prefix registered for its origin",
    )
    b.add_argument(
        "--diff",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="compare two audits (JSON lines of this command): sessions, direct routes and "
        "operator prefixes that appeared or disappeared",
    )
    b.add_argument(
        "--progress",
        action="store_true",
        help="one line per input on stderr (on by default with several inputs; -q silences it)",
    )
    b.add_argument(
        "--no-progress",
        action="store_true",
        help="neither the live counter of the input being read (shown on a terminal only) nor the "
        "line per input",
    )
    add_output_arguments(b, "jsonl (default), csv, or table: the auditor's summary")
    add_policy_arguments(b, "decide at this instant instead of the route's own time")
    b.add_argument(
        "--peering",
        metavar="FILE",
        help="with --kernel: peering map (interface or neighbour MAC -> ASN) naming next hops",
    )
    b.add_argument("--stats", metavar="FILE", help="also write the input statistics and counts as JSON here")
    b.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    b.set_defaults(func=_bgp)

    bp = signature_subparsers.add_parser(
        "build-prefixes",
        help="write operator prefix lists from a RIB (MRT) or an IP-to-ASN MMDB",
        description="Write AS<n>-ipv4.txt and AS<n>-ipv6.txt for every operator ASN of the signatures, in "
        "the format of signatures/prefixes/ (header with source and date), from MRT RIB "
        "dumps (origin = last AS of the path) or from an MMDB IP-to-ASN file (gzip allowed).",
    )
    bp.add_argument("sources", nargs="+", metavar="SOURCE", help="MRT file(s), or one MMDB file")
    bp.add_argument("-o", "--out", required=True, metavar="DIR", help="directory to write the lists into")
    bp.add_argument("--signatures", metavar="DIR", help="signature directory naming the operator ASNs")
    bp.add_argument("--no-progress", action="store_true", help="no progress line even on a terminal")
    bp.set_defaults(func=_build)

    ep = signature_subparsers.add_parser(
        "export-prefixes",
        help="export operator prefix lists for routers (plain, BIRD, FRR, nftables)",
        description="Operator prefixes, collapsed per operator and family, as plain lines, BIRD 2 "
        "'define' prefix sets, FRR prefix-lists or an nftables interval set.",
    )
    ep.add_argument("--format", choices=("plain", "bird", "frr", "nft"), default="plain")
    ep.add_argument("--operator", action="append", metavar="ID", help="only this operator (repeatable)")
    ep.add_argument("--family", type=int, choices=(4, 6), help="only IPv4 or IPv6")
    ep.add_argument(
        "--nft-table",
        default="classifier_operators",
        metavar="NAME",
        help="nftables table name (inet family)",
    )
    ep.add_argument(
        "-o", "--output", metavar="FILE", type=output_file, help="write here instead of standard output (-)"
    )
    ep.add_argument("--signatures", metavar="DIR", help="signature directory (default: the shipped set)")
    ep.set_defaults(func=_export)

    ap = signature_subparsers.add_parser(
        "export-as-path",
        help="export AS-path filters on the operator ASNs (FRR, BIRD, Junos, IOS-XR)",
        description="Per operator, an AS-path filter matching any path that carries one of its ASNs: FRR "
        "'bgp as-path access-list', BIRD 'bgp_path ~ [= * ASN * =]', Junos as-path-group, "
        "IOS-XR as-path-set. With --neighbour (FRR, BIRD): a policy rejecting those paths from "
        "the neighbour, with the dates from which the policy blocks them in its comments.",
    )
    ap.add_argument("--format", choices=("frr", "bird", "junos", "iosxr"), required=True)
    ap.add_argument("--operator", action="append", metavar="ID", help="only this operator (repeatable)")
    ap.add_argument(
        "--neighbour",
        action="append",
        default=[],
        metavar="ADDR",
        help="write a policy rejecting operator paths from this neighbour (repeatable)",
    )
    ap.add_argument("--local-asn", type=_asn, metavar="N", help="your ASN ('router bgp N' in the FRR policy)")
    ap.add_argument(
        "--view",
        choices=("announced", "in-force"),
        default="announced",
        help="which view's dates the policy comments give (default: announced)",
    )
    ap.add_argument(
        "-o", "--output", metavar="FILE", type=output_file, help="write here instead of standard output (-)"
    )
    ap.add_argument("--signatures", metavar="DIR", help="signature directory (default: the shipped set)")
    ap.add_argument("--policy", metavar="DIR", help="policy directory (default: the signatures' policy/)")
    ap.set_defaults(func=_export_as_path)


def _bgp(args: argparse.Namespace) -> int:
    from classifier.errors import UserError

    given = (
        ("--local-asn", args.local_asn is not None),
        ("--timeline", args.timeline),
        ("--sessions", args.sessions),
        ("--vrps", args.vrps),
        ("--irr", args.irr),
        ("--progress", args.progress),
    )
    mrt_only = [opt for opt, present in given if present]
    if args.diff:
        if args.files or args.kernel or mrt_only:
            raise UserError(
                f"bgp --diff compares two audits: no MRT files, --kernel or "
                f"{', '.join(mrt_only) or 'MRT options'} with it"
            )
        from .run import run_diff

        return run_diff(args)
    if args.timeline and args.sessions:
        raise UserError("bgp: --timeline or --sessions, not both")
    if args.kernel:
        if args.files:
            raise UserError("bgp: give MRT files or --kernel, not both")
        if mrt_only:
            raise UserError(f"bgp --kernel: {', '.join(mrt_only)} apply to MRT input only")
        from .run import run_kernel

        return run_kernel(args)
    if not args.files:
        raise UserError("bgp: give one or more MRT files, or --kernel")
    if args.netns:
        raise UserError("bgp: --netns needs --kernel")
    from .run import run_mrt

    return run_mrt(args)


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from classifier.errors import UserError
    from classifier.exitcodes import Exit
    from classifier.signatures import Signatures

    from .build import from_mmdb, from_mrt, is_mrt, write_lists

    sigs = Signatures.load(args.signatures)
    kinds = {path: is_mrt(path) for path in args.sources}
    if all(kinds.values()):
        collected = from_mrt(args.sources, sigs, not args.no_progress)
    elif len(args.sources) == 1:
        collected = from_mmdb(args.sources[0], sigs, not args.no_progress)
    else:
        raise UserError("build-prefixes: give MRT files, or exactly one MMDB file")
    for line in write_lists(collected, sigs, Path(args.out)):
        print(line)
    for problem in collected.problems:
        print(f"input problem: {problem}", file=sys.stderr)
    return Exit.INPUT if collected.problems else Exit.OK


def _export(args: argparse.Namespace) -> int:

    from classifier.errors import UserError
    from classifier.exitcodes import Exit
    from classifier.outputs import TextOutput
    from classifier.signatures import Signatures

    from .export import lists, render
    from .prefixes import OperatorPrefixes

    sigs = Signatures.load(args.signatures)
    operators = args.operator or sorted(sigs.operators)
    unknown = [op for op in operators if op not in sigs.operators]
    if unknown:
        raise UserError(
            f"--operator {', '.join(unknown)}: unknown; known: {', '.join(sorted(sigs.operators))}"
        )
    sets = lists(OperatorPrefixes.from_signatures(sigs), operators, args.family)
    dates = sorted({a.date for a in sigs.asns.values() if a.owner in operators})
    text = render(
        args.format,
        sets,
        f"signatures {sigs.directory} (prefix data dated {', '.join(dates)})",
        args.nft_table,
    )
    with TextOutput(args.output) as out:
        out.write(text)
    return Exit.OK


def _export_as_path(args: argparse.Namespace) -> int:
    from pathlib import Path

    from classifier.errors import UserError
    from classifier.exitcodes import Exit
    from classifier.outputs import TextOutput
    from classifier.policy import Policy
    from classifier.signatures import Signatures

    from .aspathfilter import OperatorAsns, render, window_lines
    from .decide import CATEGORY

    sigs = Signatures.load(args.signatures)
    policy = Policy.load(Path(args.policy) if args.policy else sigs.directory / "policy")
    operators = args.operator or sorted(sigs.operators)
    unknown = [op for op in operators if op not in sigs.operators]
    if unknown:
        raise UserError(
            f"--operator {', '.join(unknown)}: unknown; known: {', '.join(sorted(sigs.operators))}"
        )
    chosen = []
    for op in operators:
        o = sigs.operators[op]
        asns = tuple(sorted(a for a, owner in sigs.operator_by_asn.items() if owner == op))
        windows = tuple(line for app in o.apps for line in window_lines(policy, app, CATEGORY, args.view))
        chosen.append(OperatorAsns(op, o.apps, asns, windows))
    dates = sorted({a.date for a in sigs.asns.values() if a.owner in operators})
    provenance = (
        f"signatures {sigs.directory} (ASN data dated {', '.join(dates)}), policy {policy_name(args)}"
    )
    text = render(args.format, chosen, args.neighbour, args.local_asn, provenance)
    with TextOutput(args.output) as out:
        out.write(text)
    return Exit.OK


def policy_name(args: argparse.Namespace) -> str:
    return args.policy or "of the signatures"
