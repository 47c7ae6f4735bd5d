"""``classifier export suricata``: the names the policy blocks at an instant, as Suricata rules.

Four rules per blocked host rule, one per sticky buffer where a name shows: ``tls.sni``,
``quic.sni``, ``dns.query`` and ``http.host`` (Suricata 7 keywords). A suffix rule matches the
name and every name under it with ``dotprefix; content:".name"; endswith;`` (the transform puts a
dot before the buffer, so ``xname`` never matches); an exact rule with ``startswith; endswith``.
``msg`` names the app, category and provision; ``metadata`` carries app, category, provision,
signature, view and instant, so an alert says why. The action is ``alert`` unless ``--action``
says ``drop`` or ``reject`` (an IPS). SIDs are derived from the signature id and the buffer
(stable from one export to the next), in ``--sid-base`` and the 100 000 000 numbers above it.

``--datasets DIR`` writes the names as Suricata datasets instead (``dataset:isset``, string sets,
one base64 name per line: Suricata's dataset file format), so a list of any length costs a few
rules and one hash lookup per buffer. Names are grouped by what blocks them (app, category,
provision), so an alert still says why. An exact name is looked up as it is; a suffix of *k*
labels is looked up in the set of *k*-label suffixes after ``pcrexform`` has cut the buffer to
its last *k* labels (a name shorter than that is left whole, and no whole name of fewer labels is
in that set), which matches exactly the names the per-name rules' ``dotprefix ... endswith``
match. Dataset lookups are exact, so the sets hold lower-case names and only ``http.host``
(which Suricata lower-cases) matches whatever the case the client sent; the per-name rules use
``nocase`` where datasets cannot (Suricata 7 has no lower-casing transform for them).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

from classifier.errors import OutputError, UserError
from classifier.outputs import check_writable

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


def suffix_transform(labels: int) -> str:
    """The pcrexform regex that keeps a name's last ``labels`` labels (no backslash: none to escape)."""
    return f"(?:^|[.])((?:[^.]+[.]){{{labels - 1}}}[^.]+)$"


def dataset_line(name: str) -> str:
    """One entry of a string dataset file: the name, base64 encoded."""
    return base64.b64encode(name.encode()).decode("ascii")


def build_datasets(
    sigs,
    policy,
    when: float,
    view: str,
    unenforced_blocks: bool = False,
    action: str = "alert",
    sid_base: int = 3_000_000_000,
    load_dir: str = ".",
) -> tuple[str, dict[str, str], int]:
    """(rules text, dataset file name -> its text, blocked names) of ``--datasets``: the rules load
    each set as ``load_dir/<file>`` (relative to the rules file, or absolute)."""
    from classifier.timeutil import format_instant

    if action not in ACTIONS:
        raise UserError(f"--action {action!r}: one of {', '.join(ACTIONS)}")
    if not 1 <= sid_base <= 2**32 - 1 - SID_SPAN:
        raise UserError(f"--sid-base {sid_base}: between 1 and {2**32 - 1 - SID_SPAN}")
    at = format_instant(when)
    # (app, category, provision) -> kind ("exact" or the suffix's label count) -> names
    groups: dict[tuple[str, str, str], dict[str | int, set[str]]] = defaultdict(lambda: defaultdict(set))
    seen: set[str] = set()
    for v in name_verdicts(sigs, policy, when, view, unenforced_blocks):
        rule = v.rule
        if not v.blocked or rule.pattern in seen:
            continue
        seen.add(rule.pattern)
        name = rule.pattern.lower()
        kind: str | int = "exact" if rule.exact else name.count(".") + 1
        groups[(str(rule.app), str(v.category), str(v.provision))][kind].add(name)
    lines = [
        f"# Suricata dataset rules written by `classifier export suricata --datasets`: names blocked "
        f"at {at}, {view} view" + ("; unenforced prohibitions block" if unenforced_blocks else ""),
        f"# signatures: {sigs.directory}",
    ]
    files: dict[str, str] = {}
    used: set[int] = set()
    for (app, category, provision), kinds in sorted(groups.items()):
        for kind in sorted(kinds, key=lambda k: (isinstance(k, int), k)):
            names = sorted(kinds[kind])
            label = "exact" if kind == "exact" else f"{kind}labels"
            stem = _meta(f"classifier-{app}-{category}-{provision}-{label}")
            files[f"{stem}.lst"] = "".join(dataset_line(n) + "\n" for n in names)
            load = os.path.join(load_dir, f"{stem}.lst")
            what = "exact names" if kind == "exact" else f"names under {kind}-label suffixes"
            lines.append(f"# {stem}: {len(names)} {what}")
            for buffer, (proto, _lower) in BUFFERS.items():
                cut = "" if kind == "exact" else f' pcrexform:"{suffix_transform(int(kind))}";'
                msg = (
                    f"classifier {app} {category} blocked by {provision} ({view} view at {at}): "
                    f"{buffer} in dataset {stem}"
                )
                meta = ", ".join(
                    f"{k} {_meta(x)}"
                    for k, x in (
                        ("app", app),
                        ("category", category),
                        ("provision", provision),
                        ("dataset", stem),
                        ("view", view),
                        ("as_of", at),
                    )
                )
                sid = _sid(sid_base, f"dataset/{stem}/{buffer}", used)
                lines.append(
                    f'{action} {proto} any any -> any any (msg:"{_msg(msg)}"; {buffer};{cut} '
                    f"dataset:isset,{stem}, type string, load {load}; "
                    f"metadata: {meta}; sid:{sid}; rev:1;)"
                )
    return "\n".join(lines) + "\n", files, len(seen)


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
    when = instant(args.as_of)
    if args.datasets:
        return _export_datasets(args, sigs, policy, when)
    text, names = build_rules(
        sigs, policy, when, args.view, args.unenforced_blocks, args.action, args.sid_base
    )
    write_export(args.output, text)
    if not args.quiet:
        print(f"suricata: {names} blocked names, {names * len(BUFFERS)} rules", file=sys.stderr)
    return 0


def _export_datasets(args: argparse.Namespace, sigs, policy, when: float) -> int:
    """``--datasets DIR``: the set files into DIR, the rules that load them to -o (paths relative
    to the rules file, as Suricata resolves ``load``; absolute when the rules go to stdout)."""
    directory = Path(args.datasets)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--datasets {args.datasets}: not a directory")
    to_stdout = not args.output or args.output == "-"
    base = Path.cwd() if to_stdout else Path(args.output).resolve().parent
    load_dir = str(directory.resolve()) if to_stdout else os.path.relpath(directory.resolve(), base)
    if not to_stdout:
        check_writable(args.output)  # before any set is written
    text, files, names = build_datasets(
        sigs, policy, when, args.view, args.unenforced_blocks, args.action, args.sid_base, load_dir
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"--datasets {args.datasets}: {err.strerror or err}") from None
    for name, content in files.items():
        write_export(str(directory / name), content)
    write_export(args.output, text)
    if not args.quiet:
        print(
            f"suricata: {names} blocked names in {len(files)} datasets under {directory}, "
            f"{len(files) * len(BUFFERS)} rules",
            file=sys.stderr,
        )
    return 0
