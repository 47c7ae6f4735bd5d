"""No import cycles in the package, counting imports inside functions too.

A cycle hidden in a function (``run.py`` importing ``cli`` back for its exit codes) still ties two
modules together: neither can be understood, tested or moved without the other. The graph is read
statically with ``ast`` (every ``import`` and ``from ... import`` anywhere in a module), so an
import that only runs on some path counts as much as one at the top.
"""

from __future__ import annotations

import ast
import importlib
import textwrap
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "classifier"


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package rooted at ``package_dir``."""
    root = package_dir.name
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [root, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body)."""
    modules = module_names(package_dir)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets.add(prefix)
                targets.update(f"{prefix}.{alias.name}" for alias in node.names)  # submodules
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE_DIR)
    assert len(graph) > 40  # the walk found the package
    assert cycles(graph) == []


def test_every_module_imports():
    for name in module_names(PACKAGE_DIR):
        if name.endswith("__main__"):
            continue  # running it is the command line itself
        importlib.import_module(name)


def test_nothing_imports_the_command_line_back():
    # cli builds the parser of every command; a module importing it back is a cycle in the making
    graph = import_graph(PACKAGE_DIR)
    assert sorted(m for m, targets in graph.items() if "classifier.cli" in targets) == ["classifier.__main__"]


@pytest.mark.parametrize(
    "files",
    [
        {  # the shape that was: the scan command imports the command line back inside a function
            "cli.py": "def _scan(args):\n    from .run import run_scan\n    return run_scan(args)\n",
            "run.py": "def run_scan(args):\n    from .cli import EXIT_OK\n    return EXIT_OK\n",
        },
        {  # through a package: from . import sibling, and an absolute import back
            "sub/__init__.py": "",
            "sub/a.py": "from . import b\n",
            "sub/b.py": "import pkg.c\n",
            "c.py": "from pkg.sub.a import thing\n",
        },
    ],
    ids=["relative-in-function", "package-and-absolute"],
)
def test_the_checker_finds_a_cycle(tmp_path, files):
    pkg = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(textwrap.dedent(text))
    assert len(cycles(import_graph(pkg))) == 1
