"""Command line: ``classifier scan``, ``classifier policy``, ``classifier signatures``, ``classifier schema``.

This module builds the parser and turns errors into exit statuses (``classifier.exitcodes``); the
commands themselves live in ``classifier.commands`` and in the packages that register theirs
(``PLUGINS``). It imports nothing heavy: every run loads it, and each command's modules are
imported only when that command runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from . import __version__, classcode
from .cliargs import (
    add_community_id_argument,
    add_floor_arguments,
    add_output_arguments,
    add_policy_arguments,
    instant_arg,
    positive,
)
from .datafile import save_documents
from .errors import OutputError, UserError
from .exitcodes import Exit, epilog
from .flows import DEFAULT_MAX_FLOWS
from .startup import command_done, loading

DESCRIPTION = (
    "Classify WeChat/TikTok infrastructure traffic in captures, on a live gateway and in BGP "
    "routes, and decide block or log per the dated US orders; every verdict says why."
)

# Modules with register(subparsers, signature_subparsers) adding their own commands.
PLUGINS: tuple[str, ...] = ("classifier.gateway.cli", "classifier.bgp.cli")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that leaves what only shown help needs until help is shown: a command's
    ``Exit status`` epilog (``exit_statuses``; textwrap) and the terminal's width (``shutil``, and
    with it lzma), which ``add_argument`` asks for on every argument only to check its metavar.
    Together about 2 ms of each run's start-up; the help and error messages are unchanged."""

    exit_statuses = False  # True: the help ends with exitcodes.epilog()
    _checking = False  # inside add_argument

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        self._checking = True
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._checking = False

    def _get_formatter(self) -> argparse.HelpFormatter:
        if self._checking:  # the metavar check: any width does
            formatter: Any = self.formatter_class
            return formatter(prog=self.prog, width=80)
        return super()._get_formatter()

    def format_help(self) -> str:
        if self.exit_statuses and self.epilog is None:
            self.epilog = epilog()
        return super().format_help()


if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[_Parser]  # what add_subparsers returns

# Core commands none of the PLUGINS adds to (they add to ``signatures``): a run of one of them
# builds no plugin parser, imports no plugin module.
_CORE_ONLY = frozenset(("scan", "policy", "schema", "report"))


def _compiled_parsers() -> str:
    """Which parsers run compiled, for ``classifier --version`` (as the per-packet loop's line):
    the parsers import their twins at import, so they are imported only when asked."""
    from .compiled import compiled_status
    from .inspect import dns, quic, tls

    parts = {
        "DNS messages": dns.COMPILED_PARSE_MESSAGE,
        "TLS ClientHello": tls.COMPILED_PARSE_CLIENT_HELLO_MESSAGE,
        "QUIC Initial frames": quic.COMPILED_IETF_FRAMES,
        "QUIC Initial keys": quic.COMPILED_INITIAL_KEYS,
    }
    return compiled_status(parts, name_them=True)


class _Version(argparse.Action):
    """``--version``: also which per-packet loop and parsers run (compiled or pure Python), found
    only when asked, so a run's start-up imports nothing for it."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from .pipeline import per_packet_loop

        print(f"classifier {__version__}")
        print(f"per-packet loop: {per_packet_loop()}\nparsers: {_compiled_parsers()}")
        parser.exit()


def build_parser(plugins: bool = True, only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; without ``plugins``, of the core commands only; with ``only``
    (a core command that the arguments name first), of that command alone: the others' arguments
    would never be read, and building them cost about a millisecond of each run's start-up."""
    p = _Parser(
        prog="classifier", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--version",
        action=_Version,
        help="show the version and which per-packet loop and parsers run (compiled or not), and exit",
    )
    # prog: what argparse would format from this parser's usage without its options, given here
    # so that no formatter (and no terminal width) is made for it
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, prog=p.prog)

    if only in (None, "scan"):
        _add_scan(sub)
    if only in (None, "policy"):
        _add_policy(sub)
    sigsub = _add_signatures(sub) if only in (None, "signatures") else None
    if only in (None, "schema"):
        _add_schema(sub)
    if only in (None, "report"):
        _add_report(sub)

    # Commands that live in their own packages register themselves here. Their register()
    # functions must stay import-light: heavy imports belong in the function they set as func.
    for name in PLUGINS if plugins else ():
        module = importlib.import_module(name)
        module.register(sub, sigsub)
    return p


def _add_scan(sub: _Commands) -> None:
    s = sub.add_parser(
        "scan",
        help="classify the flows of pcap/pcapng captures",
        description="Classify every flow of the captures; one record per flow.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.exit_statuses = True
    s.add_argument(
        "captures",
        nargs="+",
        metavar="CAPTURE",
        help="pcap or pcapng file, optionally gzip-compressed; a directory (every file under it) or "
        "a quoted glob, in natural order; '-' reads standard input",
    )
    add_output_arguments(
        s,
        "jsonl: one JSON object per flow (default); csv: one row per flow; "
        "table: summary of app x category x action and top hostnames; parquet: "
        "-o names a directory of part-NNNNN.parquet files (one per Dask task) with "
        "the record schema (needs the extra dask); eve: one Suricata EVE flow event per "
        "flow, for Elastic, Splunk and Suricata dashboards (docs/eve.md)",
        formats=("jsonl", "table", "csv", "parquet", "eve"),
    )
    add_policy_arguments(s, "decide every flow at this instant instead of its first packet's time")
    add_floor_arguments(s, defaults=True)
    s.add_argument("--peering", metavar="FILE", help="peering map: neighbour MAC/interface -> ASN (TOML)")
    s.add_argument(
        "--continuous",
        action="store_true",
        help="treat the captures as one stream (rotated files of one link): flows and DNS "
        "answers carry over between files. Default: each file on its own",
    )
    s.add_argument(
        "--idle-tcp",
        type=positive(float),
        default=300.0,
        metavar="SECONDS",
        help="TCP idle timeout in packet time (default 300)",
    )
    s.add_argument(
        "--idle-udp",
        type=positive(float),
        default=60.0,
        metavar="SECONDS",
        help="UDP idle timeout in packet time (default 60)",
    )
    s.add_argument(
        "--max-flows",
        type=positive(int),
        default=DEFAULT_MAX_FLOWS,
        metavar="N",
        help="hard cap on live flows; beyond it the least recently active are evicted "
        "(and reported). Memory follows it: a bare live flow costs under 1 KiB, real "
        f"traffic about 1.6 KiB per flow, so the default {DEFAULT_MAX_FLOWS} bounds "
        "the flow table near 0.5 GiB for a flood and 0.8 GiB for real traffic",
    )
    s.add_argument(
        "--workers",
        type=positive(int),
        default=1,
        metavar="N",
        help="scan with N processes (default 1: one process; at most 8 per core). The records, "
        "their order, flow numbers and the statistics are exactly those of one process; "
        "the workers open the captures themselves (files only: not '-' or a FIFO) and "
        "split them by whole files or by server address (docs/ARCHITECTURE.md, Scale-out)",
    )
    s.add_argument(
        "--dask",
        metavar="SCHEDULER",
        help="run the scan as Dask tasks: 'local' (a cluster of --workers processes on this "
        "machine, default one per core) or a scheduler address such as tcp://host:8786 "
        "(the workers read the captures from the same paths: docs/scale-out.md). "
        "CAPTURE may then also be a directory or a quoted glob. Needs the extra: "
        "pip install 'classifier[dask]'",
    )
    s.add_argument(
        "--ja4s",
        action="store_true",
        help="also read each TLS flow's ServerHello after its decision (at most 8 more "
        "segments) for the record field ja4s; off by default, as it costs CPU on every "
        "TLS flow. The verdict never waits for it",
    )
    add_community_id_argument(s)
    s.add_argument("--stats", metavar="FILE", help="also write the input statistics as JSON here")
    s.add_argument(
        "--html",
        metavar="FILE",
        help="also write the HTML report of this run here (as `classifier report` would)",
    )
    s.add_argument(
        "--write-pcap",
        metavar="FILE",
        help="also write every packet of every attributed flow (app or operator) here, as "
        "pcap, in input order (README: 'Back to packets')",
    )
    s.add_argument(
        "--write-pcap-where",
        metavar="FIELD=VALUE[,...]",
        help="only flows whose record has these values, e.g. action=block,app=wechat "
        "(alternatives with '|': app=wechat|tiktok)",
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    s.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    s.set_defaults(func=_scan)


def _add_policy(sub: _Commands) -> None:
    pol = sub.add_parser("policy", help="show each provision's status at an instant")
    pol.add_argument("--as-of", metavar="INSTANT", type=instant_arg, help="default: now")
    pol.add_argument("--view", choices=("announced", "in-force"), default="announced")
    pol.add_argument("--policy", metavar="DIR", help="policy directory (default: the shipped one)")
    pol.add_argument("--timeline", action="store_true", help="list every change in the view, in order")
    pol.set_defaults(func=_policy)


def _add_signatures(sub: _Commands) -> _Commands:
    """The ``signatures`` command; returns its subparsers, to which the plugins add theirs."""
    sig = sub.add_parser("signatures", help="signature tools")
    sigsub = sig.add_subparsers(dest="sig_command", metavar="COMMAND", required=True)
    chk = sigsub.add_parser("check", help="load and validate a signature directory")
    chk.add_argument("directory", nargs="?", help="default: the shipped set")
    chk.add_argument("--peering", metavar="FILE")
    chk.set_defaults(func=_signatures)
    return sigsub


def _add_schema(sub: _Commands) -> None:
    sch = sub.add_parser(
        "schema",
        help="print the flow record schema (Markdown), or JSON Schema of every record (--json)",
        description="The flow record schema as the README's Markdown table; with --json, JSON Schema "
        "(draft 2020-12) of the records of scan and of bgp (route, event, session, diff).",
    )
    sch.add_argument(
        "--json",
        action="store_true",
        help="JSON Schema of scan and bgp records: one document, a line of output is valid if it is "
        "one of the record kinds ($defs scan, bgp-route, bgp-event, bgp-session, bgp-diff)",
    )
    sch.set_defaults(func=_schema)


def _add_report(sub: _Commands) -> None:
    rep = sub.add_parser(
        "report",
        help="one self-contained HTML report of scan or bgp records",
        description="Aggregate JSON-lines records of `classifier scan` or `classifier bgp` "
        "(routes and --timeline) into one HTML file: tables and SVG plots, "
        "no script, nothing fetched when it is viewed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.exit_statuses = True
    rep.add_argument(
        "records",
        nargs="+",
        metavar="RECORDS",
        help="JSON-lines file of scan or bgp records ('-': standard input)",
    )
    rep.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    rep.add_argument(
        "--policy", metavar="DIR", help="policy directory for the policy timeline (default: the shipped one)"
    )
    rep.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    rep.set_defaults(func=_report)


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    finally:
        classcode.finish()
        save_documents()
        command_done()


def _run(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    with loading():
        core = words[0] if words and words[0] in _CORE_ONLY else None
        parser = build_parser(plugins=core is None, only=core)
        args = parser.parse_args(argv)
    warn_ignored_options(args)
    try:
        return int(args.func(args))
    except OutputError as err:
        print(f"classifier: error: {err}", file=sys.stderr)
        return Exit.OUTPUT
    except UserError as err:
        print(f"classifier: error: {err}", file=sys.stderr)
        return Exit.USAGE
    except KeyboardInterrupt:
        print("classifier: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:
        # The reader of our standard output went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return Exit.OK
    except Exception as err:  # a bug: say so in one line; CLASSIFIER_DEBUG=1 shows the traceback
        if os.environ.get("CLASSIFIER_DEBUG"):
            raise
        print(
            f"classifier: internal error: {type(err).__name__}: {err} "
            "(please report it; rerun with CLASSIFIER_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return Exit.INTERNAL


def warn_ignored_options(args: argparse.Namespace) -> None:
    """Say so when a flag given can have no effect, rather than ignore it silently."""
    if getattr(args, "unenforced_blocks", None) and getattr(args, "view", None) == "announced":
        print(
            "classifier: warning: --unenforced-blocks applies to the in-force view only (non-enforcement "
            "windows are a legal status); it changes nothing in the announced view",
            file=sys.stderr,
        )


def _scan(args: argparse.Namespace) -> int:
    with loading():
        from .commands.scan import run_scan

    return run_scan(args)


def _schema(args: argparse.Namespace) -> int:
    from .commands.schema import run_schema

    return run_schema(args)


def _report(args: argparse.Namespace) -> int:
    from .commands.report import run_report

    return run_report(args)


def _policy(args: argparse.Namespace) -> int:
    from .commands.policy import run_policy

    return run_policy(args)


def _signatures(args: argparse.Namespace) -> int:
    from .commands.signatures import run_check

    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
