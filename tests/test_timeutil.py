"""classifier.timeutil: one formatter and one parser of instants, and the range they share.

Out-of-range values are one clear error (MalformedError when formatting, UserError when parsing),
never an OverflowError/ValueError/OSError from datetime or time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math

import pytest
from conftest import ROOT, run_cli

from classifier.cliargs import instant_arg, positive
from classifier.errors import MalformedError, UserError
from classifier.exitcodes import Exit
from classifier.timeutil import MAX_INSTANT, MIN_INSTANT, format_instant, instant_of, parse_instant

DEMO = str(ROOT / "pcaps" / "demo.pcap")


@pytest.mark.parametrize(
    ("ts", "micro", "text"),
    [
        (1600660800.0, False, "2020-09-21T04:00:00Z"),
        (1600660800.0, True, "2020-09-21T04:00:00.000000Z"),
        (1600660800.157, False, "2020-09-21T04:00:00.157000Z"),
        (1600660800.9999996, False, "2020-09-21T04:00:01Z"),  # rounds into the next second
        (0.0, True, "1970-01-01T00:00:00.000000Z"),
        (-1.5, False, "1969-12-31T23:59:58.500000Z"),
        (MIN_INSTANT, False, "0001-01-01T00:00:00Z"),  # four-digit year, as ISO 8601 wants
        (MAX_INSTANT, False, "9999-12-31T23:59:59Z"),
    ],
)
def test_format_instant(ts, micro, text):
    assert format_instant(ts, micro) == text
    assert format_instant(ts, micro) == text  # the cached second gives the same text


@pytest.mark.parametrize(
    "ts",
    [MAX_INSTANT + 1, MAX_INSTANT + 0.9999999, MIN_INSTANT - 1, 1e300, -1e300, math.inf, -math.inf, math.nan],
)
def test_format_out_of_range_is_a_malformed_value(ts):
    with pytest.raises(MalformedError) as err:
        format_instant(ts)
    assert err.value.reason == "instant.range"


@pytest.mark.parametrize(
    ("text", "ts"),
    [
        ("2020-09-21", 1600646400.0),
        ("2020-09-21T04:00:00Z", 1600660800.0),
        ("2020-09-21T04:00:00", 1600660800.0),  # no offset: UTC
        ("2020-09-21T00:00:00-04:00", 1600660800.0),
        ("0001-01-01T00:00:00Z", MIN_INSTANT),
        ("9999-12-31T23:59:59Z", MAX_INSTANT),
    ],
)
def test_parse_instant(text, ts):
    assert parse_instant(text) == ts


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2020-13-01",
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        "2020-09-21T04:00:00\0",
    ],
)
def test_parse_rejects_with_a_user_error(text):
    with pytest.raises(UserError):
        parse_instant(text)
    with pytest.raises(argparse.ArgumentTypeError):
        instant_arg(text)


@pytest.mark.parametrize(
    "text", ["2020-09-21", "2020-09-21T04:00:00", "2020-09-21T04:00:00+00:00", "٢٠٢٠-09-21T04:00:00Z"]
)
def test_exact_form_is_only_utc_with_z(text):
    with pytest.raises(UserError):
        parse_instant(text, exact=True)
    assert parse_instant("2020-09-21T04:00:00Z", exact=True) == 1600660800.0


def test_toml_values():
    assert instant_of(dt.date(2020, 9, 21)) == 1600646400.0
    assert instant_of(dt.datetime(2020, 9, 21, 4)) == 1600660800.0
    assert instant_of(dt.datetime(2020, 9, 21, tzinfo=dt.timezone(dt.timedelta(hours=-4)))) == 1600660800.0
    with pytest.raises(UserError):
        instant_of(dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5))))
    with pytest.raises(UserError):
        instant_of(12)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["0", "-1", "inf", "nan", "1e999", "x"])
def test_positive_numbers_are_finite(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive(float)(text)


@pytest.mark.parametrize(
    "args",
    [("--idle-tcp", "inf"), ("--idle-udp", "nan"), ("--as-of", "9999-12-31T23:59:59-01:00")],
)
def test_command_line_refuses_them_in_one_line(args):
    proc = run_cli("scan", DEMO, "-q", *args, check_status=Exit.USAGE)
    assert proc.stderr.decode().splitlines()[-1].startswith(f"classifier scan: error: argument {args[0]}: ")
