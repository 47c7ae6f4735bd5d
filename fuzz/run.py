"""Run one target under atheris (libFuzzer) in this process; ``campaign`` starts one per target.

    python -m fuzz.run TARGET FINDINGS_DIR [libFuzzer options and corpus directories]

The classifier (and mrtparse, which the MRT reader drives) is instrumented for coverage as it is
imported. An input that breaks the target's contract is a finding: its bytes are saved as
``FINDINGS_DIR/crash-<sha1>`` with the traceback beside it (``.txt``), once per distinct place
(exception type and innermost classifier frame), and fuzzing goes on; hangs and memory blow-ups
end the process through libFuzzer's -timeout and -rss_limit_mb, which write their own
``timeout-*``/``oom-*`` reproducers there (the campaign restarts the target after them).
"""

from __future__ import annotations

import hashlib
import sys
import traceback
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["classifier", "mrtparse"]):
    from fuzz.targets import TARGETS


def signature(err: BaseException) -> str:
    """Where a finding happens: exception type and the innermost frame in the classifier
    (else the innermost frame), so one bug met by many inputs is reported once."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "/classifier/" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(err).__name__} at {where}"


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz.run {{{','.join(TARGETS)}}} FINDINGS_DIR [libFuzzer args]")
    target = TARGETS[argv[1]]
    findings = Path(argv[2])
    findings.mkdir(parents=True, exist_ok=True)
    seen = {p.read_text().splitlines()[0] for p in findings.glob("crash-*.txt")}

    def one_input(data: bytes) -> None:
        try:
            target.run(data)
        except Exception as err:
            key = signature(err)
            if key in seen:
                return
            seen.add(key)
            name = f"crash-{hashlib.sha1(data).hexdigest()}"
            (findings / name).write_bytes(data)
            text = "".join(traceback.format_exception(err))
            (findings / f"{name}.txt").write_text(f"{key}\n{target.name}\n{text}")
            sys.stderr.write(f"\nFINDING {target.name}: {key}: {findings / name}\n{text}\n")

    atheris.Setup([argv[0], *argv[3:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
