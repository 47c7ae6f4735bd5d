"""Start-up builds long-lived objects (modules, classes, the signature set, the policy) in a burst:
the cyclic garbage collector would run over and over while they pile up and find nothing to free
(about 6 % of a scan's start-up). ``loading()`` pauses it for such a burst, then freezes what the
burst made (``gc.freeze``: never traversed again, and shared untouched by forked workers) and
turns it back on, whatever happens inside."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def loading() -> Iterator[None]:
    """No collection while the block runs; afterwards what exists is frozen and the collector
    is on again (if it was on before: a caller that turned it off keeps it off)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_on:
            gc.enable()
