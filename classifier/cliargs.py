"""Argument types and option groups shared by the commands (scan, bgp, gateway...).

Kept apart from ``classifier.cli`` so a command's parser can use them without importing the
command line itself (which imports every command's parser: a cycle). Import-light: every run
loads this module to build its parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .errors import UserError
from .timeutil import parse_instant


def instant_arg(text: str) -> float:
    """argparse type of ``--as-of``: an ISO 8601 date or date-time, UTC if no offset."""
    try:
        return parse_instant(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """argparse type of a count or a duration: a number above zero (and finite)."""

    def conv(text: str) -> int | float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < v < float("inf"):  # also rejects nan
            raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
        return v

    return conv


def output_file(value: str) -> str | None:
    """An ``-o`` value: ``-`` is standard output, as for tcpdump -w and most Unix tools (a file
    named ``-`` is still reachable as ``./-``)."""
    return None if value == "-" else value


def add_output_arguments(
    p: argparse.ArgumentParser, format_help: str, formats: tuple[str, ...] = ("jsonl", "table", "csv")
) -> None:
    """-o and --format, as every command that writes records has them."""
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=output_file,
        help="write records here instead of standard output (- is standard output)",
    )
    p.add_argument("--format", choices=formats, default="jsonl", help=format_help)


def add_community_id_argument(p: argparse.ArgumentParser, default: int | None = 0) -> None:
    """``--community-id-seed``: the seed of the records' Community ID (Zeek, Suricata and Elastic
    take the same option; sites that change it must change it everywhere)."""

    def seed(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not 0 <= value <= 0xFFFF:
            raise argparse.ArgumentTypeError(f"{text!r} must be 0..65535 (16 bits)")
        return value

    p.add_argument(
        "--community-id-seed",
        type=seed,
        default=default,  # None where a config file may give it (gateway)
        metavar="N",
        help="seed of the records' community_id, 0..65535 (default 0, as Zeek, Suricata and "
        "Elastic use unless configured otherwise)",
    )


def add_policy_arguments(p: argparse.ArgumentParser, as_of_help: str) -> None:
    """The signature and policy options every deciding command shares."""
    p.add_argument(
        "--view",
        choices=("announced", "in-force"),
        default="announced",
        help="policy view: announced (the issuers' schedule; default) or in-force (legal status)",
    )
    p.add_argument("--as-of", metavar="INSTANT", type=instant_arg, help=as_of_help)
    p.add_argument(
        "--unenforced-blocks",
        action="store_true",
        help="in-force view: block during non-enforcement windows too (default: log, flagged)",
    )
    p.add_argument("--signatures", metavar="DIR", help="signature directory (default: the shipped set)")
    p.add_argument("--policy", metavar="DIR", help="policy directory (default: <signatures>/policy)")


def evidence_arg(text: str) -> tuple[str, ...]:
    """argparse type of ``--block-evidence``: comma-separated evidence kinds (blockfloor)."""
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

    p.add_argument(
        "--block-confidence",
        choices=CONFIDENCE_LEVELS,
        default=DEFAULT_CONFIDENCE if defaults else None,
        help=f"least confidence a block needs; weaker attributions are logged "
        f"(rule below-block-confidence) (default {DEFAULT_CONFIDENCE})",
    )
    p.add_argument(
        "--block-evidence",
        type=evidence_arg,
        metavar="KIND,...",
        default=DEFAULT_EVIDENCE if defaults else None,
        help="evidence kinds that can support a block, comma-separated (default: "
        f"{','.join(DEFAULT_EVIDENCE)}; name-history may be added, dns-unsolicited never)",
    )
