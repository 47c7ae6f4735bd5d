"""``classifier export suricata --datasets DIR``: dataset files in Suricata's format (string sets,
one base64 value per line) and the dataset:isset rules that load them. Suricata is not in Debian
12, so the rules are parsed with the grammar of tests/test_exports.py and *evaluated* here: a
buffer, cut by pcrexform when the rule has one, is looked up in the loaded set, exactly as
Suricata's dataset keyword does. Every name the per-name rules match must be matched by the
dataset rules, with the same app, category and provision, and nothing else."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
from conftest import run_cli
from test_exports import PAFACA, blocked_names, parse_rule

from classifier.gateway import suricata
from classifier.timeutil import parse_instant

WECHAT_DAY = parse_instant("2020-09-21T05:00:00Z")  # WeChat blocked (announced view)


def _meta(options: dict) -> tuple[str, str, str]:
    meta = dict(item.split(" ", 1) for item in options["metadata"].split(", "))
    return meta["app"], meta["category"], meta["provision"]


def _name_rule_matcher(options: list[tuple[str, str | None]]):
    opts = dict(options)
    content = opts["content"].strip('"')
    keys = [k for k, _ in options]

    def match(value: str) -> bool:
        v = "." + value if "dotprefix" in keys else value
        if "nocase" in keys:
            v, c = v.lower(), content.lower()
        else:
            c = content
        if "startswith" in keys:
            return v == c
        return v.endswith(c)

    return match


def _dataset_rule_matcher(options: list[tuple[str, str | None]], sets: dict[str, set[str]]):
    opts = dict(options)
    regex = opts["pcrexform"].strip('"') if "pcrexform" in opts else None
    args = [a.strip() for a in opts["dataset"].split(",")]
    assert args[0] == "isset" and "type string" in args
    load = next(a.split(" ", 1)[1] for a in args if a.startswith("load "))
    members = sets[load]

    def match(value: str) -> bool:
        v = value
        if regex is not None:
            m = re.search(regex, v)
            if m:
                v = m.group(1)  # pcrexform: the first capture; no match leaves the buffer whole
        return v in members

    return match


def _candidates(names: set[str]) -> set[str]:
    out = {"example.org", "qq.com", "com"}
    for n in names:
        labels = n.split(".")
        out |= {n, "www." + n, "a.b." + n, "x" + n, ".".join(labels[1:]), n + ".example"}
    return {c for c in out if c}


@pytest.mark.parametrize("when", [PAFACA, WECHAT_DAY], ids=["2025-tiktok", "2020-wechat"])
def test_dataset_rules_match_exactly_what_the_per_name_rules_match(sigs, policy, when):
    per_name, names = suricata.build_rules(sigs, policy, when, "announced")
    text, files, dataset_names = suricata.build_datasets(sigs, policy, when, "announced", load_dir="sets")
    assert dataset_names == names == len(blocked_names(sigs, policy, when, "announced")) > 0
    sets = {}
    for name, content in files.items():
        assert content.endswith("\n")
        sets[f"sets/{name}"] = {
            base64.b64decode(line, validate=True).decode() for line in content.splitlines()
        }
    by_buffer: dict[str, list] = {"tls": [], "quic": [], "dns": [], "http": []}
    dataset_rules: dict[str, list] = {"tls": [], "quic": [], "dns": [], "http": []}
    for line in per_name.splitlines():
        if line and not line.startswith("#"):
            _a, proto, options = parse_rule(line)
            by_buffer[proto].append((_name_rule_matcher(options), _meta(dict(options))))
    rules = [parse_rule(line) for line in text.splitlines() if line and not line.startswith("#")]
    assert len(rules) == 4 * len(files) < len(by_buffer["tls"]) * 4  # a few rules, not one per name
    sids = [int(dict(o)["sid"]) for _a, _p, o in rules]
    assert len(set(sids)) == len(sids)
    for _action, proto, options in rules:
        keys = [k for k, _ in options]
        assert keys[1] in suricata.BUFFERS  # the sticky buffer first
        dataset_rules[proto].append((_dataset_rule_matcher(options, sets), _meta(dict(options))))
    candidates = _candidates({n.lower() for n in blocked_names(sigs, policy, when, "announced")})
    matched = 0
    for proto in by_buffer:
        for value in candidates:
            want = {why for match, why in by_buffer[proto] if match(value)}
            got = {why for match, why in dataset_rules[proto] if match(value)}
            assert got == want, (proto, value)
            matched += bool(got)
    assert matched > 100


def test_export_writes_the_sets_and_rules_that_load_them(tmp_path: Path):
    rules = tmp_path / "rules" / "classifier.rules"
    rules.parent.mkdir()
    sets = tmp_path / "data" / "sets"
    proc = run_cli("export", "suricata", "--as-of", "2025-03-01", "--datasets", str(sets), "-o", str(rules))
    assert "datasets under" in proc.stderr.decode()
    loads = re.findall(r"load ([^;]+);", rules.read_text())
    assert loads and all(not Path(p).is_absolute() for p in loads)
    for load in loads:  # Suricata opens load files relative to the rules file
        path = (rules.parent / load).resolve()
        assert path.parent == sets.resolve() and path.is_file()
        assert all(re.fullmatch(r"[A-Za-z0-9+/]+=*", line) for line in path.read_text().splitlines())
    # to standard output the paths are absolute
    out = run_cli(
        "export", "suricata", "--as-of", "2025-03-01", "--datasets", str(sets), "-q"
    ).stdout.decode()
    assert all(os.path.isabs(p) for p in re.findall(r"load ([^;]+);", out))


def test_export_datasets_errors_are_one_line_and_write_nothing(tmp_path: Path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    proc = run_cli("export", "suricata", "--datasets", str(a_file), "-o", str(tmp_path / "r"), check_status=2)
    err = proc.stderr.decode()
    assert f"--datasets {a_file}: not a directory" in err and "Traceback" not in err
    sets = tmp_path / "sets"
    proc = run_cli(
        "export", "suricata", "--datasets", str(sets), "-o", str(tmp_path / "no" / "r"), check_status=4
    )
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    assert not sets.exists()  # the rules could not be written: no set was either
