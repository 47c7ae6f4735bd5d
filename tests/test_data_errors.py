"""Broken data files through the real command line: one line naming the right file, exit 2.

Each case damages a copy of the shipped signatures (policy included) and runs `scan`,
`signatures check` or `policy` on it in a subprocess, as a user would.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from classifier.signatures import shipped_directory

DEMO = str(ROOT / "pcaps" / "demo.pcap")
DEEP = "x = " + "[" * 3000 + "]" * 3000 + "\n"  # exhausts tomllib's recursion


def _write(rel: str, text: str) -> Callable[[Path], Path]:
    def damage(d: Path) -> Path:
        (d / rel).write_text(text)
        return d / rel

    return damage


def _edit(rel: str, old: str, new: str) -> Callable[[Path], Path]:
    def damage(d: Path) -> Path:
        path = d / rel
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
        return path

    return damage


def _one_line_error(proc, blamed: Path, *words: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("classifier: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert f"error: {blamed}: " in err, (str(blamed), err)
    for word in words:
        assert word in err, (word, err)
    assert proc.stdout == b""
    return err


@pytest.fixture
def sigdir(tmp_path: Path) -> Path:
    d = tmp_path / "sigs"
    shutil.copytree(shipped_directory(), d, ignore=shutil.ignore_patterns("__pycache__"))
    return d


CASES = [
    # (damage, words in the message)
    (_write("apps/wechat.toml", DEEP), ["nested too deeply"]),
    (_write("operators.toml", ""), ["is empty"]),
    (_write("operators.toml", "# all rules moved elsewhere\n"), ["is empty"]),
    (_edit("operators.toml", "[[operator]]", "[[operators]]"), ["unknown top-level table"]),
    (_write("cdn.toml", "provider = 3\n"), ["provider: must be an array of tables"]),
    (_edit("apps/tiktok.toml", 'date = "2026-08-19"', "date = 2026-08-19T00:00:00Z"), ["got TOML datetime"]),
    (_edit("apps/tiktok.toml", 'role = "api"', 'role = "hosting"'), ["role: 'hosting' is not one of"]),
]


@pytest.mark.parametrize(("damage", "words"), CASES)
@pytest.mark.parametrize("command", ["scan", "signatures check"])
def test_broken_signature_file(sigdir, damage, words, command):
    blamed = damage(sigdir)
    if command == "scan":
        proc = run_cli("scan", DEMO, "--signatures", str(sigdir), "-q", check_status=None)
    else:
        proc = run_cli("signatures", "check", str(sigdir), check_status=None)
    _one_line_error(proc, blamed, *words)


def test_prefix_file_not_utf8(sigdir):
    path = sigdir / "prefixes" / "AS45090-ipv4.txt"
    path.write_bytes(path.read_bytes() + b"\xff\xfe 10.0.0.0/8\n")
    proc = run_cli("signatures", "check", str(sigdir), check_status=None)
    _one_line_error(proc, path, "not UTF-8 (byte offset")


def test_empty_operators_without_operator_table(sigdir):
    """An operators.toml that lost its [[operator]] tables is blamed, not apps/tiktok.toml."""
    path = sigdir / "operators.toml"
    text = re.sub(r"(?ms)^\[\[operator\]\]\n.*?(?=^\[\[|\Z)", "", path.read_text())
    assert "[[operator]]" not in text and "[[asn]]" in text
    path.write_text(text)
    proc = run_cli("signatures", "check", str(sigdir), check_status=None)
    _one_line_error(proc, path, "no [[operator]] entries")


@pytest.mark.parametrize("command", ["scan", "signatures check", "policy"])
def test_directory_option_given_a_file(tmp_path, command):
    file = tmp_path / "signatures.toml"
    file.write_text("")
    if command == "scan":
        proc = run_cli("scan", DEMO, "--signatures", str(file), check_status=None)
    elif command == "signatures check":
        proc = run_cli("signatures", "check", str(file), check_status=None)
    else:
        proc = run_cli("policy", "--policy", str(file), check_status=None)
    err = _one_line_error(proc, file, "is not a directory")
    assert "does not exist" not in err


POLICY_CASES = [
    (_write("policy/events.toml", DEEP), "policy/events.toml", ["nested too deeply"]),
    (_write("policy/provisions.toml", ""), "policy/provisions.toml", ["is empty"]),
    (_write("policy/vocabulary.toml", ""), "policy/vocabulary.toml", ["is empty"]),
    (
        _edit("policy/instruments.toml", "issued = 2024-04-24", 'issued = "2024-4-24"'),
        "policy/instruments.toml",
        ["instrument 'pafaca': issued: must be a date"],
    ),
]


@pytest.mark.parametrize(("damage", "rel", "words"), POLICY_CASES)
@pytest.mark.parametrize("command", ["scan", "policy"])
def test_broken_policy_file(sigdir, damage, rel, words, command):
    damage(sigdir)
    if command == "scan":
        proc = run_cli("scan", DEMO, "--signatures", str(sigdir), "-q", check_status=None)
    else:
        proc = run_cli(
            "policy", "--policy", str(sigdir / "policy"), "--as-of", "2025-01-01", check_status=None
        )
    _one_line_error(proc, sigdir / rel, *words)


def test_quoted_and_unquoted_dates_load_alike(sigdir):
    """The one date rule: signatures (quoted today) and policy (unquoted today) accept both."""
    _edit("apps/tiktok.toml", 'date = "2026-08-19"', "date = 2026-08-19")(sigdir)
    _edit("policy/instruments.toml", "issued = 2024-04-24", 'issued = "2024-04-24"')(sigdir)
    run_cli("signatures", "check", str(sigdir))
    run_cli("policy", "--policy", str(sigdir / "policy"), "--as-of", "2025-01-01")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (DEEP, ["nested too deeply"]),
        ("[gateway]\nmode = " + "[" * 20 + "]" * 20 + "\n", [": gateway: values nested too deeply"]),
        ('[inline]\nqueue = "7"\n', ["[inline] queue: must be an integer, got string '7'"]),
        ('[flows]\nidle_tcp = "5m"\n', ["[flows] idle_tcp: must be a number"]),
        ('[gateway]\ninterfaces = ["eth0", 3]\n', ["[gateway] interfaces: must be a non-empty string"]),
        ('["a\\nb"]\nx = 1\n', ["unknown section"]),
    ],
)
def test_gateway_config_errors_are_one_line(tmp_path, text, words):
    from classifier.errors import DataError
    from classifier.gateway import config

    path = tmp_path / "gw.toml"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        config.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    for word in words:
        assert word in msg


def test_gateway_config_of_comments_only_is_the_defaults(tmp_path):
    from classifier.gateway import config

    path = tmp_path / "gw.toml"
    path.write_text("# everything commented out\n")
    assert config.load(path) == config.GatewayConfig(source=str(path))
