#!/usr/bin/env python3
"""Which external commands the code and tests run, and which Debian package provides each.

Usage:  python tools/audit_commands.py     (prints command, package, where used; exit 1 if any is uncovered)

A fresh Debian 12 machine has only what ``tools/debian-packages.txt`` installs, so every command that
the gateway, the tests, the benchmarks or the builders start must be provided by a package named
there. The list says which commands a package provides with ``# ... provides: cmd, cmd`` on its
line. The commands are found in the Python sources by their syntax (``ast``):

* a list or tuple whose first item is a string, passed to a function that starts processes
  (``subprocess.run``, ``Popen``, ``lab.run``/``lab.popen``, ...), or assigned to a name that holds
  a command line (``argv``, ``cmd``, ``prefix``, ...);
* ``shutil.which("name")``;
* ``for tool in ("iptables", "ip6tables")`` when the loop starts ``[tool, ...]``;
* declared tables: module-level tuples named ``TOOLS`` or ``COMMANDS`` (netlab's and the gateway's).

Commands built at run time from other data are beyond this scan; the declared tables cover them
(``tests/netlab.py`` refuses to start a command that is not in its ``TOOLS``).
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_LIST = ROOT / "tools" / "debian-packages.txt"
SCANNED = ("classifier", "tests", "tools", "benchmarks", "pcaps")

#: functions that take a command line (as any positional argument)
LAUNCHERS = frozenset(
    {"run", "Popen", "call", "check_call", "check_output", "popen", "_run", "_start_server", "getoutput"}
)
#: functions whose first argument is the program itself
EXEC_STYLE = frozenset({"create_subprocess_exec", "execvp", "execlp", "execv", "execl", "spawnlp", "spawnvp"})
#: names that hold a command line or a prefix of one
ARGV_NAMES = re.compile(r"(?i)^_?(argv|cmd|command|full|wrap|wrapper|prefix|base|unprivileged)$")
#: module-level declared tables of commands
TABLE_NAMES = frozenset({"TOOLS", "COMMANDS"})
COMMAND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def package_map(path: Path = PACKAGE_LIST) -> dict[str, str]:
    """command -> the package whose line in the list says ``provides: ...command...``."""
    provides: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        package, _, comment = line.partition("#")
        package = package.strip()
        m = re.search(r"provides:\s*(.+)$", comment)
        if m is None or not package:  # comment lines only explain
            continue
        for command in (c.strip() for c in m.group(1).split(",")):
            if not COMMAND.match(command):
                raise ValueError(f"{path}:{number}: {command!r} is not a command name")
            if provides.get(command, package) != package:
                raise ValueError(f"{path}:{number}: {command} is already provided by {provides[command]}")
            provides[command] = package
    return provides


def packages(path: Path = PACKAGE_LIST) -> list[str]:
    """The packages the list installs, in order."""
    return [p for line in path.read_text().splitlines() if (p := line.partition("#")[0].strip())]


def _callee(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _head(node: ast.AST) -> list[str]:
    """The program of a command-line literal: its first item when that is a string."""
    if isinstance(node, ast.IfExp):
        return _head(node.body) + _head(node.orelse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _head(node.left)
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and COMMAND.match(first.value):
            return [first.value]
    return []


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _loop_programs(loop: ast.For) -> list[str]:
    """``for tool in ("a", "b"):`` whose body builds ``[tool, ...]``: the strings are programs."""
    if not isinstance(loop.target, ast.Name):
        return []
    name = loop.target.id
    for node in ast.walk(loop):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Name) and first.id == name:
                return _strings(loop.iter)
    return []


def commands_in(source: str, filename: str = "<source>") -> dict[str, list[int]]:
    """command -> line numbers where ``source`` starts (or looks up) that command."""
    found: dict[str, list[int]] = defaultdict(list)

    def add(names: list[str], node: ast.AST) -> None:
        for name in names:
            found[name].append(node.lineno)

    tree = ast.parse(source, filename)
    for node in tree.body:  # declared tables
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in TABLE_NAMES for t in targets):
                add(_strings(node.value), node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _callee(node)
            if name in LAUNCHERS:
                for arg in node.args:
                    add(_head(arg), node)
            elif (name in EXEC_STYLE or name == "which") and node.args:  # the program comes first
                add(_strings(ast.Tuple(elts=node.args[:1])), node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and ARGV_NAMES.match(t.id) for t in targets):
                add(_head(node.value), node)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            pass  # `argv += [...]` extends a command line, its head is elsewhere
        elif isinstance(node, ast.For):
            add(_loop_programs(node), node)
    return dict(found)


def python_files(root: Path = ROOT) -> list[Path]:
    files = []
    for top in SCANNED:
        files += sorted(p for p in (root / top).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def scan(root: Path = ROOT) -> dict[str, list[str]]:
    """command -> ``path:line`` of every use in the project's Python files."""
    uses: dict[str, list[str]] = defaultdict(list)
    for path in python_files(root):
        for command, lines in commands_in(path.read_text(), str(path)).items():
            uses[command] += [f"{path.relative_to(root)}:{n}" for n in lines]
    return dict(uses)


def uncovered(uses: dict[str, list[str]], provides: dict[str, str]) -> dict[str, list[str]]:
    """The commands no listed package provides, with where they are used."""
    return {c: where for c, where in sorted(uses.items()) if c not in provides}


def main() -> int:
    try:
        provides = package_map()
    except (OSError, ValueError) as err:
        print(f"audit_commands: {err}", file=sys.stderr)
        return 2
    uses = scan()
    missing = uncovered(uses, provides)
    for command in sorted(uses):
        print(
            f"{command:20} {provides.get(command, 'NOT COVERED'):20} {', '.join(uses[command][:4])}"
            + (" ..." if len(uses[command]) > 4 else "")
        )
    listed = PACKAGE_LIST.relative_to(ROOT)
    for command, where in missing.items():
        print(
            f"audit_commands: {command} (used at {where[0]}) is provided by no package in {listed}: "
            f"add its package with '# provides: {command}'",
            file=sys.stderr,
        )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
