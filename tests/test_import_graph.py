"""No import cycles in the package, counting imports inside functions too; every module named in
docs/ARCHITECTURE.md, with a layer that its imports keep to.

A cycle hidden in a function (``run.py`` importing ``cli`` back for its exit codes) still ties two
modules together: neither can be understood, tested or moved without the other. The graph is read
statically with ``ast`` (every ``import`` and ``from ... import`` anywhere in a module), so an
import that only runs on some path counts as much as one at the top.
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "classifier"
ARCHITECTURE = PACKAGE_DIR.parent / "docs" / "ARCHITECTURE.md"
# The layers of docs/ARCHITECTURE.md, lowest first: a module imports its own layer or lower ones.
LAYERS = ("base", "parse", "data", "state", "judge", "pipeline", "front")
APART = {("data", "parse")}  # (importer, imported): ordered, yet signatures know nothing of packets
# ... save the protocol registry: sigload checks that each protocols.toml id names a protocol an
# inspector registers (the registry holds functions, and imports no parser).
APART_EXCEPT = {"classifier.inspect", "classifier.inspect.registry"}
# Front-end packages that import none of each other (what two share belongs a layer down).
FRONT_PACKAGES = ("classifier.commands", "classifier.gateway", "classifier.bgp")
_MODULE_ROW = re.compile(r"^\|\s*`(classifier/[^`]+\.py)`\s*\|\s*([^|]*?)\s*\|", re.MULTILINE)


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


def module_paths(package_dir: Path) -> dict[str, str]:
    """Dotted module name -> its path as the docs write it (``classifier/gateway/engine.py``)."""
    root = package_dir.parent
    return {name: path.relative_to(root).as_posix() for name, path in module_names(package_dir).items()}


def documented_layers(text: str) -> dict[str, str]:
    """Module path -> layer, from the rows of the module table (``| `classifier/x.py` | layer | job |``)."""
    return dict(_MODULE_ROW.findall(text))


def table_problems(package_dir: Path, doc: Path) -> list[str]:
    """Modules the doc's module table does not name (or names with no known layer), and rows naming
    a module that does not exist: each one line telling the author what to change where."""
    layers = documented_layers(doc.read_text(encoding="utf-8"))
    paths = set(module_paths(package_dir).values())
    where = doc.relative_to(package_dir.parent).as_posix()  # docs/ARCHITECTURE.md
    problems = []
    for path in sorted(paths - set(layers)):
        problems.append(
            f"{path} is not in the module table of {where}: add the row "
            f"| `{path}` | <layer> | <its job> | (layers, lowest first: {', '.join(LAYERS)})"
        )
    for path in sorted(set(layers) - paths):
        problems.append(f"{where} names {path}, which does not exist: remove or rename its row")
    for path, layer in sorted(layers.items()):
        if path in paths and layer not in LAYERS:
            problems.append(f"{where}: {path} has layer {layer!r}; the layers are {', '.join(LAYERS)}")
    return problems


def _front_package(module: str) -> str | None:
    return next((p for p in FRONT_PACKAGES if module == p or module.startswith(p + ".")), None)


def layer_violations(graph: dict[str, set[str]], layer_of: dict[str, str]) -> list[str]:
    """Imports that break the layer rules: upward, between layers kept apart, across front packages."""
    found = []
    for importer in sorted(graph):
        upper = layer_of.get(importer)
        if upper not in LAYERS:
            continue  # reported by table_problems
        for imported in sorted(graph[importer]):
            lower = layer_of.get(imported)
            if lower not in LAYERS:
                continue
            apart = (upper, lower) in APART and imported not in APART_EXCEPT
            if LAYERS.index(lower) > LAYERS.index(upper) or apart:
                found.append(f"{importer} ({upper}) imports {imported} ({lower})")
                continue
            mine, theirs = _front_package(importer), _front_package(imported)
            if mine and theirs and mine != theirs:
                found.append(f"{importer} imports {imported}: {mine} and {theirs} import none of each other")
    return found


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


def test_architecture_names_every_module_with_its_layer():
    problems = table_problems(PACKAGE_DIR, ARCHITECTURE)
    assert not problems, "docs/ARCHITECTURE.md is out of date:\n" + "\n".join(problems)


def test_imports_keep_to_the_layers_of_architecture_md():
    paths = module_paths(PACKAGE_DIR)
    by_path = documented_layers(ARCHITECTURE.read_text(encoding="utf-8"))
    layer_of = {name: by_path.get(path, "") for name, path in paths.items()}
    assert set(layer_of.values()) >= set(LAYERS)  # the table was read: every layer has a module
    violations = layer_violations(import_graph(PACKAGE_DIR), layer_of)
    assert not violations, (
        "imports against the layers of docs/ARCHITECTURE.md (move the shared part down a layer, or "
        "change the module's layer in the table if its job changed):\n" + "\n".join(violations)
    )


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "classifier"
    for rel, text in {"__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(textwrap.dedent(text))
    return pkg


def _rows(layers: dict[str, str]) -> str:
    return "| module | layer | job |\n|---|---|---|\n" + "".join(
        f"| `{path}` | {layer} | a job |\n" for path, layer in layers.items()
    )


def test_the_table_check_names_the_missing_module_the_gone_one_and_a_bad_layer(tmp_path):
    pkg = _package(tmp_path, {"tunnels.py": "", "inspect/__init__.py": "", "inspect/registry.py": ""})
    doc = tmp_path / "ARCHITECTURE.md"
    doc.write_text(
        _rows(
            {
                "classifier/__init__.py": "base",
                "classifier/inspect/__init__.py": "parse",
                "classifier/inspect/registry.py": "parser",
                "classifier/old.py": "base",
            }
        )
    )
    assert table_problems(pkg, doc) == [
        "classifier/tunnels.py is not in the module table of ARCHITECTURE.md: add the row "
        "| `classifier/tunnels.py` | <layer> | <its job> | "
        "(layers, lowest first: base, parse, data, state, judge, pipeline, front)",
        "ARCHITECTURE.md names classifier/old.py, which does not exist: remove or rename its row",
        "ARCHITECTURE.md: classifier/inspect/registry.py has layer 'parser'; "
        "the layers are base, parse, data, state, judge, pipeline, front",
    ]
    doc.write_text(
        _rows(
            {
                "classifier/__init__.py": "base",
                "classifier/inspect/__init__.py": "parse",
                "classifier/inspect/registry.py": "parse",
                "classifier/tunnels.py": "state",
            }
        )
    )
    assert table_problems(pkg, doc) == []


@pytest.mark.parametrize(
    ("files", "layers", "expected"),
    [
        (  # upward, inside a function
            {"errors.py": "def f():\n    from .flows import Flow\n", "flows.py": ""},
            {"classifier.errors": "base", "classifier.flows": "state"},
            ["classifier.errors (base) imports classifier.flows (state)"],
        ),
        (  # signatures knowing packets: ordered, yet apart
            {"sigload.py": "from classifier.decode import decode\n", "decode.py": ""},
            {"classifier.sigload": "data", "classifier.decode": "parse"},
            ["classifier.sigload (data) imports classifier.decode (parse)"],
        ),
        (  # one front package reaching into another
            {
                "gateway/__init__.py": "",
                "gateway/rpz.py": "from classifier.bgp import prefixes\n",
                "bgp/__init__.py": "",
                "bgp/prefixes.py": "",
            },
            {
                "classifier.gateway": "front",
                "classifier.gateway.rpz": "front",
                "classifier.bgp": "front",
                "classifier.bgp.prefixes": "front",
            },
            [
                "classifier.gateway.rpz imports classifier.bgp: classifier.gateway and classifier.bgp "
                "import none of each other",
                "classifier.gateway.rpz imports classifier.bgp.prefixes: classifier.gateway and "
                "classifier.bgp import none of each other",
            ],
        ),
        (  # downward and sideways within a layer are fine
            {
                "pipeline.py": "from . import flows, report\n",
                "flows.py": "",
                "report.py": "from . import record\n",
                "record.py": "",
            },
            {
                "classifier.pipeline": "pipeline",
                "classifier.flows": "state",
                "classifier.report": "judge",
                "classifier.record": "judge",
            },
            [],
        ),
    ],
    ids=["upward", "apart", "front-packages", "allowed"],
)
def test_the_layer_check_finds_what_breaks_the_rules(tmp_path, files, layers, expected):
    graph = import_graph(_package(tmp_path, files))
    assert layer_violations(graph, {"classifier": "base", **layers}) == expected


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
