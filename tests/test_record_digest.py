"""Records are byte-identical on every sample and real capture, in both policy views.

A refactoring (typed facts, a protocol registry, one record schema, a new pipeline shape) must not
change one byte of what a scan writes. This test scans every capture in ``pcaps/`` and
``../shared/pcaps/real`` and compares the SHA-256 of each file's JSON lines (and of the run's
``--stats``) with ``tests/data/record_digests.json``.

A change that is *meant* to change records (new signatures, a new field, a fixed attribution)
regenerates the digests on purpose, and says why in its commit:

    CLASSIFIER_UPDATE_DIGESTS=1 .venv/bin/python -m pytest -q tests/test_record_digest.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import REAL, ROOT, need_shared, run_cli

DIGESTS = ROOT / "tests" / "data" / "record_digests.json"
VIEWS = ("announced", "in-force")
UPDATE = os.environ.get("CLASSIFIER_UPDATE_DIGESTS") == "1"


def _captures() -> list[Path]:
    own = sorted(p for p in (ROOT / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
    real = sorted(p for p in need_shared(REAL).iterdir() if p.suffix in (".pcap", ".pcapng"))
    return own + real


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _digests(view: str, captures: list[Path], tmp_path: Path) -> dict[str, str]:
    """SHA-256 of each capture's records (one scan of all of them, files unrelated) and of the
    statistics, in ``view``."""
    stats = tmp_path / f"stats-{view}.json"
    # Paths relative to the project (the command runs there): the records and the statistics quote
    # them as given, and the digest must not depend on where the checkout is.
    relative = [os.path.relpath(p, ROOT) for p in captures]
    args = ("scan", "--view", view, "--stats", str(stats), "-q", *relative)
    proc = run_cli(*args, check_status=None)
    assert proc.returncode in (0, 3), proc.stderr.decode(errors="replace")
    lines: dict[str, list[bytes]] = {name: [] for name in relative}
    for line in proc.stdout.splitlines(keepends=True):
        lines[json.loads(line)["file"]].append(line)
    out = {
        _label(p): hashlib.sha256(b"".join(lines[r])).hexdigest()
        for p, r in zip(captures, relative, strict=True)
    }
    out["stats"] = hashlib.sha256(stats.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("view", VIEWS)
def test_records_are_unchanged(view: str, tmp_path: Path) -> None:
    captures = _captures()
    got = _digests(view, captures, tmp_path)
    assert all(got[_label(p)] != hashlib.sha256(b"").hexdigest() for p in ROOT.glob("pcaps/demo.pcap")), (
        "the demo capture produced no records"
    )
    if UPDATE:
        table = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
        table[view] = got
        DIGESTS.parent.mkdir(exist_ok=True)
        DIGESTS.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        return
    want = json.loads(DIGESTS.read_text())[view]
    changed = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    assert not changed, (
        f"records changed in the {view} view for: {', '.join(changed)} "
        "(if intended: CLASSIFIER_UPDATE_DIGESTS=1, and say why in the commit)"
    )
