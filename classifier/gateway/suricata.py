"""``classifier export suricata``: the names the policy blocks at an instant, as Suricata rules.

Four rules per blocked host rule, one per sticky buffer where a name shows: ``tls.sni``,
``quic.sni``, ``dns.query`` and ``http.host`` (Suricata 7 keywords). A suffix rule matches the
name and every name under it with ``dotprefix; content:".name"; endswith;`` (the transform puts a
dot before the buffer, so ``xname`` never matches); an exact rule with ``startswith; endswith``.
``msg`` names the app, category and provision; ``metadata`` carries app, category, provision,
signature, view and instant, so an alert says why. The action is ``alert`` unless ``--action``
says ``drop`` or ``reject`` (an IPS). SIDs are derived from the signature id and the buffer
(stable from one export to the next), in ``--sid-base`` and the 100 000 000 numbers above it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

from classifier.errors import UserError

from .blocklist import instant, name_verdicts, write_export

# buffer -> (protocol of the rule header, whether the buffer is normalised to lower case)
BUFFERS = {
    "tls.sni": ("tls", False),
    "quic.sni": ("quic", False),
    "dns.query": ("dns", False),
    "http.host": ("http", True),
}
ACTIONS = ("alert", "drop", "reject")
SID_SPAN = 100_000_000
_METADATA_VALUE = re.compile(r"[^A-Za-z0-9_.:-]+")


def _content(text: str) -> str:
    """``text`` as the inside of a content string: ``"``, ``;``, ``\\`` and bytes outside printable
    ASCII written as |hex|."""
    out = []
    for ch in text:
        if ch in '";\\|' or not 32 <= ord(ch) < 127:
            out.append("|" + ch.encode().hex(" ") + "|")
        else:
            out.append(ch)
    return "".join(out)


def _meta(value: object) -> str:
    return _METADATA_VALUE.sub("_", str(value)) or "_"


def _msg(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace(";", "\\;")


def build_rules(
    sigs,
    policy,
    when: float,
    view: str,
    unenforced_blocks: bool = False,
    action: str = "alert",
    sid_base: int = 3_000_000_000,
) -> tuple[str, int]:
    """The rules file's text and the number of blocked host rules in it."""
    from classifier.timeutil import format_instant

    if action not in ACTIONS:
        raise UserError(f"--action {action!r}: one of {', '.join(ACTIONS)}")
    if not 1 <= sid_base <= 2**32 - 1 - SID_SPAN:
        raise UserError(f"--sid-base {sid_base}: between 1 and {2**32 - 1 - SID_SPAN}")
    at = format_instant(when)
    lines = [
        f"# Suricata rules written by `classifier export suricata`: names blocked at {at}, {view} view"
        + ("; unenforced prohibitions block" if unenforced_blocks else ""),
        f"# signatures: {sigs.directory}",
    ]
    used: set[int] = set()
    names = 0
    seen: set[str] = set()
    for v in name_verdicts(sigs, policy, when, view, unenforced_blocks):
        rule = v.rule
        if not v.blocked or rule.pattern in seen:
            continue
        seen.add(rule.pattern)
        names += 1
        lines.append(f"# {rule.id} ({rule.date}): {' '.join(rule.source.split())}")
        for buffer, (proto, lower) in BUFFERS.items():
            pattern = rule.pattern.lower() if lower else rule.pattern
            if rule.exact:
                match = f'content:"{_content(pattern)}"; startswith; endswith;'
            else:
                match = f'dotprefix; content:".{_content(pattern)}"; endswith;'
            nocase = "" if lower else " nocase;"
            sid = _sid(sid_base, f"{rule.id}/{buffer}", used)
            msg = (
                f"classifier {rule.app} {v.category} blocked by {v.provision} "
                f"({view} view at {at}): {buffer} {rule.pattern} (signature {rule.id})"
            )
            meta = ", ".join(
                f"{k} {_meta(x)}"
                for k, x in (
                    ("app", rule.app),
                    ("category", v.category),
                    ("provision", v.provision),
                    ("signature", rule.id),
                    ("view", view),
                    ("as_of", at),
                    ("signature_date", rule.date),
                )
            )
            lines.append(
                f'{action} {proto} any any -> any any (msg:"{_msg(msg)}"; {buffer}; {match}{nocase} '
                f"metadata: {meta}; sid:{sid}; rev:1;)"
            )
    return "\n".join(lines) + "\n", names


def _sid(base: int, key: str, used: set[int]) -> int:
    """A SID from a digest of ``key``: the same rule keeps its SID; a collision takes the next free."""
    offset = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % SID_SPAN
    sid = base + offset
    while sid in used:
        sid = base + (sid - base + 1) % SID_SPAN
    used.add(sid)
    return sid


def run_export_suricata(args: argparse.Namespace) -> int:
    """The ``classifier export suricata`` command."""
    from classifier.policy import Policy
    from classifier.signatures import Signatures, shipped_directory

    sig_dir = Path(args.signatures) if args.signatures else shipped_directory()
    sigs = Signatures.load(sig_dir)
    policy = Policy.load(Path(args.policy) if args.policy else sig_dir / "policy")
    text, names = build_rules(
        sigs, policy, instant(args.as_of), args.view, args.unenforced_blocks, args.action, args.sid_base
    )
    write_export(args.output, text)
    if not args.quiet:
        print(f"suricata: {names} blocked names, {names * len(BUFFERS)} rules", file=sys.stderr)
    return 0
