"""Start-up builds long-lived objects (modules, classes, the signature set, the policy) in a burst:
the cyclic garbage collector would run over and over while they pile up and find nothing to free,
and once more over all of them at exit (together about a tenth of a scan's start-up). ``loading()``
pauses it for such a burst, then freezes what exists (``gc.freeze``: never traversed again, and
shared untouched by forked workers) and turns it back on, whatever happens inside.

Only the first command of a process freezes: a process that runs ``cli.main`` again and again (the
fuzz harness, tests) would otherwise freeze, each time, the garbage the previous runs left for the
collector. ``command_done()`` marks the end of that first command."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_freeze = True  # no command has finished in this process yet


@contextmanager
def loading() -> Iterator[None]:
    """No collection while the block runs; afterwards (during the process's first command) what
    exists is frozen, and the collector is on again if it was on before."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _freeze:
            gc.freeze()
        if was_on:
            gc.enable()


def command_done() -> None:
    """A command has finished: later ``loading()`` blocks in this process only pause the collector."""
    global _freeze
    _freeze = False


def thaw_after_workers() -> None:
    """Undo a freeze made before forking workers, unless this is the process's first command.

    ``gc.unfreeze`` thaws everything, the start-up freeze included, and the collector would then
    traverse all of it once more at exit (about 30M instructions after a scan with workers). A
    first command ends the process, so what it froze can stay frozen; a process that runs
    commands again and again (tests, the fuzz harness) thaws, so frozen garbage never piles up.
    """
    if not _freeze:
        gc.unfreeze()


def first_command() -> bool:
    """True until a command of this process has finished (what it leaves may then be frozen)."""
    return _freeze
