"""The checks `make test` runs before the suite, the pre-commit hooks that mirror them, and the
recipes of CONTRIBUTING.md, kept true to the tree.

A recipe that names a file or a test that no longer exists sends the next contributor the wrong
way; a hook that checks less than `make test` lets a commit through that CI then refuses.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
CHECKS = ("ruff check .", "ruff format --check .", "mypy")  # what runs before pytest, in order

_BACKTICKED = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"^[\w.-]+(/[\w.-]+)*/?$")
_FILE_SUFFIXES = (".py", ".toml", ".md", ".txt", ".json", ".yaml", ".tsv", ".sh")


def make_target(makefile: str, target: str) -> list[str]:
    """The recipe lines of ``target`` in a Makefile, without the leading tab."""
    lines = makefile.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line[1:])
    return recipe


def hook_entries(config: str) -> list[str]:
    """The ``entry`` commands of the pre-commit config, in order."""
    return re.findall(r"^\s+entry:\s*(.+?)\s*$", config, re.MULTILINE)


def named_paths(text: str) -> list[str]:
    """Repository paths a document names in backticks (placeholders, globs and ``../`` skipped)."""
    found = []
    for token in _BACKTICKED.findall(text):
        if not _PATH.match(token) or token.startswith("../") or "/" not in token:
            continue
        if token.endswith("/") or token.endswith(_FILE_SUFFIXES):
            found.append(token.rstrip("/"))
    return found


def named_tests(text: str) -> list[str]:
    return sorted({t for t in _BACKTICKED.findall(text) if re.fullmatch(r"test_\w+", t)})


def defined_tests(tests_dir: Path) -> set[str]:
    return {
        m.group(1)
        for path in tests_dir.rglob("*.py")
        for m in re.finditer(r"^def (test_\w+)\(", path.read_text(encoding="utf-8"), re.MULTILINE)
    }


def test_make_test_runs_lint_format_and_types_before_the_suite():
    recipe = make_target((ROOT / "Makefile").read_text(), "test")
    checks = [line.removeprefix("$(BIN)/") for line in recipe]
    assert checks[: len(CHECKS)] == list(CHECKS), recipe
    assert checks[len(CHECKS)].startswith("python -m pytest"), recipe


def test_pre_commit_runs_the_same_checks_from_the_venv_without_network():
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    entries = hook_entries(config)
    # The hooks pass files (or, for mypy, nothing: it checks the configured package) instead of ".".
    assert [e.removeprefix(".venv/bin/").replace(" --force-exclude", "") for e in entries] == [
        c.removesuffix(" .") for c in CHECKS
    ]
    assert re.findall(r"^\s*- repo:\s*(\S+)", config, re.MULTILINE) == ["local"]
    assert re.findall(r"^\s+language:\s*(\S+)", config, re.MULTILINE) == ["system"] * len(entries)


def test_mypy_is_configured_for_the_package():
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["packages"] == ["classifier"] and mypy["python_version"] == "3.11"
    assert mypy["check_untyped_defs"] and mypy["warn_unused_ignores"] and mypy["no_implicit_optional"]


def test_no_type_ignore_without_an_error_code():
    bare = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "classifier").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"#\s*type:\s*ignore(?!\[)", line)
    ]
    assert not bare, f"'# type: ignore' needs an error code and a reason: {bare}"


def test_contributing_names_only_files_that_exist():
    paths = named_paths(CONTRIBUTING.read_text())
    assert len(paths) > 40  # the recipes were read
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"CONTRIBUTING.md names files that do not exist: {missing}"


def test_contributing_names_only_tests_that_exist():
    names = named_tests(CONTRIBUTING.read_text())
    assert len(names) > 10
    missing = sorted(set(names) - defined_tests(ROOT / "tests"))
    assert not missing, f"CONTRIBUTING.md names tests that do not exist: {missing}"


def test_the_document_checks_catch_a_stale_recipe(tmp_path):
    text = (
        "Touch `classifier/gone.py`, `classifier/inspect/<proto>.py`, `pcaps/expected/*.json`, "
        "`../shared/docs/policy-facts.md`, `tests/`, and add `test_gone` beside `test_present`."
    )
    assert named_paths(text) == ["classifier/gone.py", "tests"]
    (tmp_path / "test_x.py").write_text("def test_present():\n    pass\n")
    assert sorted(set(named_tests(text)) - defined_tests(tmp_path)) == ["test_gone"]


def test_the_makefile_check_reads_the_recipe_of_the_target():
    makefile = "test: install\n\t$(BIN)/mypy\n\t$(BIN)/python -m pytest\n\nlint:\n\t$(BIN)/ruff check .\n"
    assert make_target(makefile, "test") == ["$(BIN)/mypy", "$(BIN)/python -m pytest"]
    assert make_target(makefile, "lint") == ["$(BIN)/ruff check ."]
