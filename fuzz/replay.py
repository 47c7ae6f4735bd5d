"""Replay saved inputs through a target, without atheris: reproduce a finding, check a fix.

    python -m fuzz.replay TARGET FILE_OR_DIRECTORY... [--timeout 10] [--memory-mb 2048]

Each input runs under the limits of a campaign: a per-input time limit and a peak-RSS limit (with
an address-space limit twice that as a backstop, so a blow-up cannot take the machine), so the
reproducer of a hang or of a memory blow-up fails here too, even where the code swallows the
``MemoryError``.
Prints one line per input and the traceback of each failure; exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
import traceback
from pathlib import Path

from fuzz.targets import TARGETS


class InputTimeout(BaseException):
    """The input ran past the per-input time limit: a hang. A BaseException, so that no
    ``except Exception`` in the code under test can swallow it."""


def _alarm(_signum: int, _frame: object) -> None:
    raise InputTimeout("per-input time limit exceeded")


def inputs(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix != ".txt")
        else:
            out.append(p)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz.replay", description=__doc__.split("\n")[0])
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIRECTORY")
    p.add_argument("--timeout", type=int, default=10, help="seconds per input (default 10)")
    p.add_argument("--rss-limit-mb", type=int, default=1024, help="peak RSS limit (default 1024)")
    args = p.parse_args(argv)
    backstop = 2 * args.rss_limit_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (backstop, backstop))
    signal.signal(signal.SIGALRM, _alarm)
    run = TARGETS[args.target].run
    failed = 0
    for path in inputs(args.paths):
        signal.alarm(args.timeout)
        try:
            run(path.read_bytes())
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            if rss_mb > args.rss_limit_mb:
                raise MemoryError(f"peak RSS {rss_mb} MB exceeds {args.rss_limit_mb} MB")
        except (Exception, InputTimeout) as err:
            failed += 1
            print(f"FAIL {path}: {type(err).__name__}: {err}")
            traceback.print_exception(err, file=sys.stdout)
        else:
            print(f"ok   {path}")
        finally:
            signal.alarm(0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
