"""Exit statuses of every ``classifier`` command, in one place so each command and the README agree.

Scripts branch on these numbers; a number never changes meaning.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What the exit status of a ``classifier`` run means (``MEANING`` says it in words)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    INPUT = 3
    OUTPUT = 4
    INTERRUPTED = 130


MEANING: dict[Exit, str] = {
    Exit.OK: "every input was read completely and every output written",
    Exit.INTERNAL: "internal error (a bug: the one-line message says so; CLASSIFIER_DEBUG=1 shows "
    "the traceback)",
    Exit.USAGE: "usage error, a broken signature/policy file (one line names file and entry), or an "
    "output that names an input or another output (refused before anything is opened)",
    Exit.INPUT: "the run finished, but an input was unreadable, truncated or corrupt (the records of "
    "everything readable were written; the problems are listed on stderr)",
    Exit.OUTPUT: "an output could not be written (disk full, I/O error, a directory, a missing "
    "directory...): the run stopped, one line names the output and the OS error, and "
    "everything written before was flushed",
    Exit.INTERRUPTED: "interrupted",
}


def epilog(statuses: tuple[Exit, ...] = tuple(Exit)) -> str:
    """The ``Exit status`` paragraph of a command's ``--help``."""
    import textwrap

    lines = ["Exit status:"]
    for status in statuses:
        body = textwrap.wrap(MEANING[status], 92)
        lines.append(f"  {int(status):<4}{body[0]}")
        lines.extend(f"      {line}" for line in body[1:])
    return "\n".join(lines) + "\n"
