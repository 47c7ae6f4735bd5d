"""The capture paths a scan is given, as the files to read: directories and quoted globs expanded.

A week of rotated captures (``tcpdump -C``/``-G``) lives in one directory or under one pattern,
often more files than a command line holds; every scan mode (one process, ``--workers``,
``--dask``) takes the same list, so they read the same files in the same order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UserError

# What glob.has_magic looks for; glob itself is imported only for an input that has it (a scan's
# start-up does not pay for it).
_GLOB_CHARS = re.compile(r"[*?[]")


def natural_key(path: str) -> list[int | str]:
    """Sort key: numbers by value, so tcpdump -C's file, file1, file2, ... file10 stay in order."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def expand_inputs(items: list[str]) -> list[str]:
    """Files as given; a directory as the files in it (recursively, hidden ones left out), a glob
    as its matches, each in natural order. A directory holding no file or a glob matching nothing
    is an error; a missing file is left for the reader to report (one line, like any unreadable
    input). ``-`` (standard input) stays as it is."""
    out: list[str] = []
    for item in items:
        if item != "-" and os.path.isdir(item):
            found = [
                str(p)
                for p in Path(item).rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(item).parts)
            ]
            if not found:
                raise UserError(f"{item}: directory holds no file")
            out.extend(sorted(found, key=natural_key))
        elif _GLOB_CHARS.search(item) and not os.path.exists(item):
            import glob

            found = [p for p in glob.glob(item, recursive=True) if os.path.isfile(p)]
            if not found:
                raise UserError(f"{item}: no file matches")
            out.extend(sorted(found, key=natural_key))
        else:
            out.append(item)
    return out
