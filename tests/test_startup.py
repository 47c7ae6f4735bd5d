"""Start-up cost levers keep their promises: the collector paused and restored around the loading
bursts, and a core command's run builds no plugin parser and imports no plugin module."""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import sys

import pytest
from conftest import ROOT

from classifier import startup
from classifier.startup import loading


def test_loading_pauses_the_collector_and_freezes_what_it_made(monkeypatch):
    monkeypatch.setattr(startup, "_freeze", True)  # as in a process whose first command runs
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with loading():
            assert not gc.isenabled()
            made = [[i] for i in range(100)]  # containers the collector tracks
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(made)
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def test_loading_turns_the_collector_back_on_after_an_error_but_not_if_it_was_off():
    try:
        with pytest.raises(ValueError), loading():
            raise ValueError("while loading")
        assert gc.isenabled()
        gc.disable()
        with loading():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def _empty_capture(tmp_path) -> str:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return str(empty)


def test_only_the_first_command_of_a_process_freezes(tmp_path):
    # a process that runs main() again and again (the fuzz harness) must not freeze, each time,
    # the garbage the previous runs left
    args = [_empty_capture(tmp_path), "-o", os.devnull, "-q"]
    code = (
        "import gc; from classifier.cli import main; "
        f"main(['scan', *{args!r}]); first = gc.get_freeze_count(); "
        "[main(['scan', *" + repr(args) + "]) for _ in range(3)]; "
        "print(first > 1000, gc.get_freeze_count() <= first, gc.isenabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "True True True", out.stdout + out.stderr


@pytest.mark.parametrize("files", [1, 3], ids=["split-by-address", "split-by-files"])
def test_workers_leave_the_first_commands_freeze_and_thaw_later_ones(tmp_path, files):
    # the first command's workers must not thaw the start-up freeze (the collector would walk it
    # all again at exit), and later commands in the same process thaw what they froze
    args = [_empty_capture(tmp_path)] * files + ["--workers", "2", "-o", os.devnull, "-q"]
    code = (
        "import gc; from classifier.cli import main; "
        f"main(['scan', *{args!r}]); first = gc.get_freeze_count(); "
        f"main(['scan', *{args!r}]); later = gc.get_freeze_count(); "
        "print(first > 1000, later == 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "True True", out.stdout + out.stderr


def test_a_scan_imports_no_plugin_module(tmp_path):
    empty = _empty_capture(tmp_path)
    code = (
        "import sys; from classifier.cli import main; "
        f"status = main(['scan', {empty!r}, '-o', {os.devnull!r}, '-q']); "
        "plugins = ('classifier.gateway', 'classifier.bgp'); "
        "print(status, sorted(m for m in sys.modules if m.startswith(plugins)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr


def test_other_commands_still_see_the_plugins():
    code = "from classifier.cli import main; main(['signatures', '--help'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "build-prefixes" in out.stdout, out.stdout + out.stderr


def test_a_scan_collects_rarely_and_restores_the_thresholds(tmp_path):
    # during the scan young collections are rare (the flows it keeps are no garbage); afterwards
    # the thresholds are as before, and only the first command freezes what the scan left
    args = [_empty_capture(tmp_path), "-o", os.devnull, "-q"]
    # An object each scan makes (``made``): frozen after the first command (gc.get_objects does not
    # list the permanent generation), still collectable after the second. (The freeze count is no
    # measure: a scan of an empty capture may free more frozen start-up objects than it leaves.)
    code = (
        "import gc; from classifier.cli import main; import classifier.commands.scan as s; "
        "seen = []; made = []; inner = s.scan_inputs; "
        "s.scan_inputs = lambda *a: "
        "(seen.append(gc.get_threshold()[0]), made.append([]), inner(*a))[2]; "
        "listed = lambda o: any(x is o for x in gc.get_objects()); "
        "before = gc.get_threshold(); "
        f"main(['scan', *{args!r}]); first = (gc.get_threshold(), listed(made[0])); "
        f"main(['scan', *{args!r}]); later = (gc.get_threshold(), listed(made[1])); "
        "print(seen == [s.SCAN_GC_THRESHOLD] * 2, first[0] == later[0] == before, "
        "not first[1], later[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "True True True True", out.stdout + out.stderr


def test_a_scan_never_runs_inspect_and_it_still_works_when_used(tmp_path):
    # dataclasses imports inspect (ast, dis, tokenize: ~7 ms) only for classes without a
    # docstring; classcode.defer_inspect leaves it unrun until used, and then it is the module
    empty = _empty_capture(tmp_path)
    code = (
        "import sys; from classifier.cli import main; "
        f"status = main(['scan', {empty!r}, '-o', {os.devnull!r}, '-q']); "
        "lazy = type(sys.modules['inspect']).__name__; loaded = 'ast' in sys.modules; "
        "import inspect, dataclasses; from inspect import isclass; "
        "print(status, lazy, loaded, isclass(int), inspect is sys.modules['inspect'] is dataclasses.inspect, "
        "type(inspect).__name__); print(inspect.signature(main))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.splitlines() == [
        "0 _OnFirstUse False True True module",
        "(argv: 'list[str] | None' = None) -> 'int'",
    ], out.stdout + out.stderr


def test_a_core_command_builds_only_its_own_parser():
    from classifier.cli import build_parser

    sub = next(a for a in build_parser(plugins=False, only="scan")._actions if a.dest == "command")
    assert list(sub.choices) == ["scan"]
    sub = next(a for a in build_parser(plugins=False)._actions if a.dest == "command")
    assert list(sub.choices) == ["scan", "policy", "signatures", "schema", "report"]


def test_a_scan_imports_no_help_only_or_bzip2_module(tmp_path):
    # textwrap (the Exit status epilog), shutil and lzma (argparse's terminal width) serve only
    # shown help; bz2 only a bzip2 capture (cli._Parser, compressed.Bzip2Source)
    empty = _empty_capture(tmp_path)
    code = (
        "import sys; from classifier.cli import main; "
        f"status = main(['scan', {empty!r}, '-o', {os.devnull!r}, '-q']); "
        "print(status, sorted({'textwrap', 'shutil', 'lzma', 'bz2'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr


def test_the_help_still_ends_with_the_exit_statuses():
    out = subprocess.run(
        [sys.executable, "-m", "classifier", "scan", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "Exit status:" in out.stdout and "130 interrupted" in out.stdout, out.stdout


def test_importing_the_package_and_the_command_line_collects_nothing(tmp_path):
    # classifier/__init__ pauses the collector around the class-code cache (and turns it back
    # on); python -m classifier imports the command line inside loading(): no collection runs
    # before the first loading() block is entered (without the pauses, 8 and 16 more ran)
    empty = _empty_capture(tmp_path)
    code = f"""
import gc, runpy, sys
runs = []
gc.callbacks.append(lambda phase, info: runs.append(phase))
import classifier
on, package = gc.isenabled(), len(runs)
import classifier.startup as s
inner, seen = s.loading, []
s.loading = lambda: (seen.append(len(runs)), inner())[1]
sys.argv = ["classifier", "scan", {empty!r}, "-o", {os.devnull!r}, "-q"]
before = len(runs)
try:
    runpy.run_module("classifier", run_name="__main__")
except SystemExit as e:
    print(e.code, on, package, seen[0] - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    status, on, package, command_line = out.stdout.split()
    # a few run while the import system finds and reads the package, before its code runs (18
    # without the pause)
    assert (status, on, command_line) == ("0", "True", "0") and int(package) < 8, out.stdout + out.stderr
