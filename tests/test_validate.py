"""The shared validation layer (classifier.validate) and data file reader (classifier.datafile)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from classifier import datafile
from classifier.errors import DataError, SignatureError
from classifier.validate import (
    DATE,
    HOSTNAME,
    TEXT,
    Field,
    Invalid,
    Schema,
    choice,
    describe,
    list_of,
    optional,
    parse_prefix,
)

SCHEMA = Schema(
    "rule",
    (Field("id", TEXT), optional("suffix", HOSTNAME), optional("host", HOSTNAME), Field("date", DATE)),
    exactly_one=(("suffix", "host"),),
)


def check(raw, index=0):
    return SCHEMA.check(raw, "f.toml", index, SignatureError)


@pytest.mark.parametrize("value", [dt.date(2020, 9, 18), "2020-09-18"])
def test_a_date_is_a_toml_date_or_the_same_text_quoted(value):
    assert DATE.convert(value) == dt.date(2020, 9, 18)


@pytest.mark.parametrize(
    "value",
    [
        "18/09/2020",
        "2020-9-18",
        "20200918",
        "2020-W38-5",
        "2020-02-30",
        " 2020-09-18",
        20200918,
        dt.datetime(2020, 9, 18, tzinfo=dt.UTC),
    ],
)
def test_anything_else_is_not_a_date(value):
    with pytest.raises(Invalid, match=r"must be a date like 2020-09-18 \(YYYY-MM-DD, quoted or not\), got "):
        DATE.convert(value)


def test_error_format_is_file_entry_field_problem():
    with pytest.raises(SignatureError) as info:
        check({"id": "a.b", "suffix": "b", "date": "yesterday"})
    err = info.value
    assert (err.path, err.entry, err.field) == ("f.toml", "rule 'a.b'", "date")
    assert str(err) == f"f.toml: rule 'a.b': date: {err.problem}"
    assert err.problem.endswith("got string 'yesterday'")


def test_order_unknown_then_exactly_one_then_missing_then_kinds():
    with pytest.raises(SignatureError, match=r"^f.toml: rule #3: unknown key 'sufix' \(allowed: id, suffix"):
        check({"sufix": 1}, 2)
    with pytest.raises(SignatureError, match=r"^f.toml: rule 'x': needs exactly one of 'suffix' or 'host'$"):
        check({"id": "x", "suffix": "a", "host": "b", "date": "2020-01-01"})
    with pytest.raises(SignatureError, match=r"^f.toml: rule 'x': date: missing$"):
        check({"id": "x", "host": "b"})
    with pytest.raises(SignatureError, match=r"^f.toml: rule 'x': host: 'B' is not a lowercase host name"):
        check({"id": "x", "host": "B", "date": "2020-01-01"})
    entry = check({"id": "x", "host": "b", "date": "2020-01-01"})
    assert (entry["suffix"], entry["host"], entry["date"]) == (None, "b", dt.date(2020, 1, 1))


def test_messages_stay_one_short_line_whatever_the_value():
    huge = {"id": "x\ny" * 1000, "host": ["a" * 10_000] * 50, "date": "2020-01-01"}
    with pytest.raises(SignatureError) as info:
        check(huge)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400
    with pytest.raises(Invalid) as bad:
        list_of(choice(("a", "b"))).convert(["a", "c" * 10_000])
    assert len(str(bad.value)) < 200


def test_describe_names_the_toml_type():
    assert describe(True) == "boolean True"
    assert describe(dt.datetime(2020, 1, 1, tzinfo=dt.UTC)) == "TOML datetime 2020-01-01T00:00:00+00:00"
    assert describe([1, 2]).startswith("array [")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10.0.0.0/33", "prefix length 33 exceeds 32"),
        ("10.0.0.1/8", "host bits set (the network is 10.0.0.0/8)"),
        ("10.0.0/8", "bad IPv4 address"),
        ("10.0.0.0", "not address/length"),
        ("::/0129", "not address/length"),
    ],
)
def test_parse_prefix(text, problem):
    with pytest.raises(Invalid, match=re.escape(problem)):
        parse_prefix(text)
    assert parse_prefix("2001:DB8::/32")[1:] == (32, "2001:db8::/32")


def test_datafile_faults_are_one_line_naming_the_file(tmp_path):
    path = tmp_path / "x.toml"
    with pytest.raises(DataError, match=r"x.toml: does not exist$"):
        datafile.read_toml(path)
    with pytest.raises(DataError, match=r": is a directory, not a file$"):
        datafile.read_toml(tmp_path)
    path.write_bytes(b'a = "\xff"\n')
    with pytest.raises(DataError, match=r"x.toml: not UTF-8 \(byte offset 5\)$"):
        datafile.read_toml(path)
    path.write_text('a = "unterminated\n')
    with pytest.raises(DataError, match=r"x.toml: line 1, column \d+: TOML syntax error: "):
        datafile.read_toml(path)
    path.write_text("a = " + "{b = " * 2000 + "1" + "}" * 2000 + "\n")
    with pytest.raises(DataError, match=r"x.toml: values nested too deeply"):
        datafile.read_toml(path)
    path.write_text("# only a comment\n")
    with pytest.raises(DataError, match=r"x.toml: is empty"):
        datafile.read_toml(path)
    assert datafile.read_toml(path, allow_empty=True) == {}


def test_datafile_size_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.toml"
    path.write_text("a = 1\n" * 100)
    monkeypatch.setattr(datafile, "MAX_BYTES", 100)
    with pytest.raises(DataError, match=r"big.toml: is 600 bytes: too large for a data file \(limit 100\)"):
        datafile.read_toml(path)
