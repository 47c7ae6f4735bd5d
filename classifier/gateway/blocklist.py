"""What the policy blocks at an instant, name by name: the one source of every name export.

``classifier export rpz``, ``zeek-intel`` and ``suricata`` all need the same answer for each host
rule of the signatures: its app and category (from its role, as attribution gives it), and whether
a provision covering them is effective at the instant in the view (``Policy.decide``). They differ
only in how they write it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from classifier.attribute import DEFAULT_CATEGORY, ROLE_CATEGORY
from classifier.errors import OutputError
from classifier.sigmodel import HostRule


def rule_category(role: str) -> str:
    """The category a host rule's role gives, as the attribution stage gives it."""
    return ROLE_CATEGORY.get(role, DEFAULT_CATEGORY)


@dataclass(frozen=True, slots=True)
class NameVerdict:
    """One host rule at the instant: blocked or not, by which provision, and why."""

    rule: HostRule
    category: str | None  # None for operator-only rules (no app)
    blocked: bool
    provision: str | None  # the effective provision that blocks it
    reason: str


def name_verdicts(
    sigs, policy, when: float, view: str, unenforced_blocks: bool = False
) -> Iterator[NameVerdict]:
    """Every host rule of ``sigs`` (sorted by pattern, exact before suffix) decided at ``when``."""
    for rule in sorted(sigs.hosts.rules, key=lambda r: (r.pattern, not r.exact)):
        if rule.app is None:
            yield NameVerdict(rule, None, False, None, f"operator {rule.operator} only: log")
            continue
        category = rule_category(rule.role)
        d = policy.decide(rule.app, (category,), True, when, view, unenforced_blocks)
        blocked = d.action == "block"
        provision = next((p.provision for p in d.provisions if p.status == "effective"), None)
        yield NameVerdict(rule, category, blocked, provision if blocked else None, d.reason)


def instant(as_of: float | None) -> float:
    """``--as-of``, or now."""
    return as_of if as_of is not None else dt.datetime.now(dt.UTC).timestamp()


def write_export(output: str | None, text: str) -> None:
    """Write to ``output`` atomically (a reader reloading mid-write never sees half a file), or to
    standard output when it is None or '-'.

    Only a regular file (or a new one) is replaced by renaming a temporary file over it: a device
    (``/dev/null``), a FIFO or a terminal is written in place, never replaced by a regular file.
    """
    import os
    import stat

    from classifier.outputs import TextOutput

    target = None if not output or output == "-" else output
    try:
        mode = os.stat(target).st_mode if target is not None else None
    except OSError:
        mode = None
    if target is None or (mode is not None and not stat.S_ISREG(mode)):
        with TextOutput(target) as sink:
            sink.write(text)
        return
    out = Path(target)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as err:
        raise OutputError(f"cannot write {out}: {err.strerror or err}") from None
