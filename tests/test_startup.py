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

from classifier.startup import loading


def test_loading_pauses_the_collector_and_freezes_what_it_made():
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


def test_a_scan_imports_no_plugin_module(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    code = (
        "import sys; from classifier.cli import main; "
        f"status = main(['scan', {str(empty)!r}, '-o', {os.devnull!r}, '-q']); "
        "plugins = ('classifier.gateway', 'classifier.bgp'); "
        "print(status, sorted(m for m in sys.modules if m.startswith(plugins)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr


def test_other_commands_still_see_the_plugins():
    code = "from classifier.cli import main; main(['signatures', '--help'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "build-prefixes" in out.stdout, out.stdout + out.stderr
