"""Command line: ``classifier scan``, ``classifier policy``, ``classifier signatures``, ``classifier schema``.

Exit status (also in the README):
  0  every input was read completely
  1  internal error (a bug: the message says so)
  2  usage error, or a broken signature/policy file (one line names file and entry)
  3  the scan finished, but at least one input was unreadable, truncated or corrupt (the records
     of everything readable were still written; the problems are listed on stderr)
  130 interrupted
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import UserError

# Modules with register(subparsers, signature_subparsers) adding their own commands.
PLUGINS: tuple[str, ...] = ("classifier.gateway.cli", "classifier.bgp.cli")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3


def parse_instant(text: str) -> float:
    """ISO 8601 date or date-time; no offset means UTC."""
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--as-of: {text!r} is not an ISO 8601 date or date-time "
                        "(e.g. 2020-09-21 or 2020-09-21T12:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def instant_arg(text: str) -> float:
    try:
        return parse_instant(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--as-of: ")) from None


def positive(kind: type):
    def conv(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return v
    return conv


def evidence_arg(text: str) -> tuple[str, ...]:
    from .blockfloor import parse_evidence
    try:
        return parse_evidence(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_floor_arguments(p: argparse.ArgumentParser, defaults: bool) -> None:
    """--block-confidence and --block-evidence: what a block needs beyond the policy (blockfloor).

    ``defaults`` False leaves them None, so a config file's values stand unless a flag is given.
    """
    from .blockfloor import CONFIDENCE_LEVELS, DEFAULT_CONFIDENCE, DEFAULT_EVIDENCE
    p.add_argument("--block-confidence", choices=CONFIDENCE_LEVELS,
                   default=DEFAULT_CONFIDENCE if defaults else None,
                   help=f"least confidence a block needs; weaker attributions are logged "
                        f"(rule below-block-confidence) (default {DEFAULT_CONFIDENCE})")
    p.add_argument("--block-evidence", type=evidence_arg, metavar="KIND,...",
                   default=DEFAULT_EVIDENCE if defaults else None,
                   help="evidence kinds that can support a block, comma-separated (default: "
                        f"{','.join(DEFAULT_EVIDENCE)}; name-history may be added, dns-unsolicited never)")


def add_output_arguments(p: argparse.ArgumentParser, format_help: str) -> None:
    """-o and --format, as every command that writes records has them."""
    p.add_argument("-o", "--output", metavar="FILE", help="write records here instead of standard output")
    p.add_argument("--format", choices=("jsonl", "table", "csv"), default="jsonl", help=format_help)


def add_policy_arguments(p: argparse.ArgumentParser, as_of_help: str) -> None:
    """The signature and policy options every deciding command shares."""
    p.add_argument("--view", choices=("announced", "in-force"), default="announced",
                   help="policy view: announced (the issuers' schedule; default) or in-force (legal status)")
    p.add_argument("--as-of", metavar="INSTANT", type=instant_arg, help=as_of_help)
    p.add_argument("--unenforced-blocks", action="store_true",
                   help="in-force view: block during non-enforcement windows too (default: log, flagged)")
    p.add_argument("--signatures", metavar="DIR", help="signature directory (default: the shipped set)")
    p.add_argument("--policy", metavar="DIR", help="policy directory (default: <signatures>/policy)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="classifier", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"classifier {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="classify the flows of pcap/pcapng captures",
                       description="Classify every flow of the captures; one record per flow.",
                       epilog=__doc__[__doc__.index("Exit status"):],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("captures", nargs="+", metavar="CAPTURE",
                   help="pcap or pcapng file, optionally gzip-compressed; '-' reads standard input")
    add_output_arguments(s, "jsonl: one JSON object per flow (default); csv: one row per flow; "
                            "table: summary of app x category x action and top hostnames")
    add_policy_arguments(s, "decide every flow at this instant instead of its first packet's time")
    add_floor_arguments(s, defaults=True)
    s.add_argument("--peering", metavar="FILE", help="peering map: neighbour MAC/interface -> ASN (TOML)")
    s.add_argument("--continuous", action="store_true",
                   help="treat the captures as one stream (rotated files of one link): flows and DNS "
                        "answers carry over between files. Default: each file on its own")
    s.add_argument("--idle-tcp", type=positive(float), default=300.0, metavar="SECONDS",
                   help="TCP idle timeout in packet time (default 300)")
    s.add_argument("--idle-udp", type=positive(float), default=60.0, metavar="SECONDS",
                   help="UDP idle timeout in packet time (default 60)")
    s.add_argument("--max-flows", type=positive(int), default=500_000, metavar="N",
                   help="hard cap on live flows; beyond it the least recently active are evicted "
                        "(and reported) (default 500000)")
    s.add_argument("--stats", metavar="FILE", help="also write the input statistics as JSON here")
    s.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    s.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    s.set_defaults(func=_scan)

    pol = sub.add_parser("policy", help="show each provision's status at an instant")
    pol.add_argument("--as-of", metavar="INSTANT", type=instant_arg, help="default: now")
    pol.add_argument("--view", choices=("announced", "in-force"), default="announced")
    pol.add_argument("--policy", metavar="DIR", help="policy directory (default: the shipped one)")
    pol.add_argument("--timeline", action="store_true", help="list every change in the view, in order")
    pol.set_defaults(func=_policy)

    sig = sub.add_parser("signatures", help="signature tools")
    sigsub = sig.add_subparsers(dest="sig_command", required=True)
    chk = sigsub.add_parser("check", help="load and validate a signature directory")
    chk.add_argument("directory", nargs="?", help="default: the shipped set")
    chk.add_argument("--peering", metavar="FILE")
    chk.set_defaults(func=_signatures)

    sub.add_parser("schema", help="print the flow record schema (Markdown)").set_defaults(func=_schema)

    # Commands that live in their own packages register themselves here. Their register()
    # functions must stay import-light: heavy imports belong in the function they set as func.
    for name in PLUGINS:
        module = importlib.import_module(name)
        module.register(sub, sigsub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"classifier: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("classifier: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as err:  # a bug: say so in one line; CLASSIFIER_DEBUG=1 shows the traceback
        if os.environ.get("CLASSIFIER_DEBUG"):
            raise
        print(f"classifier: internal error: {type(err).__name__}: {err} "
              "(please report it; rerun with CLASSIFIER_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _scan(args: argparse.Namespace) -> int:
    from .run import run_scan
    return run_scan(args)


def _schema(args: argparse.Namespace) -> int:
    from .record import schema_markdown
    print(schema_markdown())
    return EXIT_OK


def _policy(args: argparse.Namespace) -> int:
    from .policy import Policy, describe
    from .signatures import shipped_directory
    directory = Path(args.policy) if args.policy else shipped_directory() / "policy"
    policy = Policy.load(directory)
    if args.timeline:
        for instant, provision, change in policy.timeline(args.view):
            print(f"{instant}  {provision}  {change}")
        return EXIT_OK
    when = args.as_of if args.as_of is not None else dt.datetime.now(dt.UTC).timestamp()
    for line in describe(policy, when, args.view):
        print(line)
    return EXIT_OK


def _signatures(args: argparse.Namespace) -> int:
    from .signatures import Signatures
    sigs = Signatures.load(args.directory, peering=args.peering)
    print(json.dumps({
        "directory": str(args.directory or "shipped"),
        "host_rules": len(sigs.hosts),
        "prefixes": len(sigs.prefixes),
        "operators": sorted(sigs.operators),
        "cdns": sorted(sigs.cdns),
        "peering_entries": len(sigs.peering),
    }, indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
