"""The dataclass code cache: classes built from it are the ones ``exec`` builds, a second start-up
compiles none of our classes, and a file that is not ours and private, broken or of another
Python version is ignored and replaced."""

from __future__ import annotations

import dataclasses
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from classifier import classcode


def _make(*, frozen: bool) -> type:
    """A dataclass like ours: frozen with slots, defaults, a field kept out of eq and repr."""
    fields = [("a", int), ("b", "tuple[str, ...]", dataclasses.field(default=())), ("c", float, 0.5)]
    fields.append(("d", str, dataclasses.field(default="x", compare=False, repr=False)))
    # Of a module of ours: the hook serves only our classes (``dataclasses`` compiles the code in
    # the namespace of the class's module).
    ours = {"__module__": classcode.__name__}
    return dataclasses.make_dataclass("Sample", fields, namespace=ours, frozen=frozen, slots=True)


def _shape(cls: type) -> list[tuple[object, ...]]:
    out = []
    methods = sorted((n, f) for n, f in vars(cls).items() if n.startswith("__") and hasattr(f, "__code__"))
    assert {"__init__", "__repr__", "__eq__"} <= {n for n, _ in methods}
    for name, fn in methods:
        code = fn.__code__
        out.append((name, code.co_code, code.co_consts, code.co_names, code.co_flags, fn.__annotations__))
    return out


@pytest.mark.parametrize("frozen", [True, False])
def test_a_class_from_the_cache_is_the_class_exec_builds(monkeypatch, frozen):
    monkeypatch.delattr(dataclasses, "exec", raising=False)
    plain = _make(frozen=frozen)
    # through the cache: compiled anew, then served from a marshal round trip of what was compiled
    monkeypatch.setattr(classcode, "_cache", {})
    monkeypatch.setattr(classcode, "_new", {})
    monkeypatch.setattr(classcode, "_used", set())
    monkeypatch.setattr(dataclasses, "exec", classcode._exec, raising=False)
    compiled = _make(frozen=frozen)
    assert classcode._new, "the hook was not used"
    classcode._cache.clear()
    classcode._cache.update(marshal.loads(marshal.dumps(classcode._new)))
    classcode._new.clear()
    cached = _make(frozen=frozen)
    assert not classcode._new, "a cached text was compiled again"
    for cls in (compiled, cached):
        assert _shape(cls) == _shape(plain)
        x, y = cls(1, ("p",)), plain(1, ("p",))
        assert repr(x) == repr(y) and x == cls(1, ("p",), d="other") and x != cls(2)
        if frozen:
            assert hash(x) == hash(y)
            with pytest.raises(dataclasses.FrozenInstanceError):
                x.a = 3  # type: ignore[misc]


def _imports(cache: Path) -> tuple[int, int]:
    """(texts served from the cache, texts compiled) when a fresh process imports a scan's modules."""
    code = (
        "import classifier.cli, classifier.commands.scan\n"
        "from classifier import classcode\n"
        "print(len(classcode._used) - len(classcode._new), len(classcode._new))\n"
        "classcode.finish()\n"
    )
    env = {**os.environ, "CLASSIFIER_CACHE_DIR": str(cache)}
    env.pop("CLASSIFIER_NO_CACHE", None)
    out = _python(code, env)
    served, compiled = out.stdout.split()
    return int(served), int(compiled)


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", code]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)


def test_a_second_start_compiles_none_of_our_classes(tmp_path):
    cache = tmp_path / "cache"
    served, compiled = _imports(cache)
    assert served == 0 and compiled > 100
    assert _imports(cache) == (compiled, 0)
    assert classcode._FILE_NAME in os.listdir(cache / "classifier")


DAMAGE = ["truncated", "not-marshal", "other-version", "not-code", "group-writable"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_broken_or_untrusted_file_is_ignored_and_replaced(tmp_path, damage):
    cache = tmp_path / "cache"
    _, compiled = _imports(cache)
    path = cache / "classifier" / classcode._FILE_NAME
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not-marshal":
        path.write_bytes(b"\xff" * 64)
    elif damage == "other-version":
        path.write_bytes(marshal.dumps(("cpython-27-0", marshal.loads(data)[1])))
    elif damage == "not-code":
        tag, table = marshal.loads(data)
        path.write_bytes(marshal.dumps((tag, dict.fromkeys(table, "print('forged')"))))
    else:
        os.chmod(path, 0o620)
    assert classcode._load(path) == {}
    if damage == "group-writable":
        os.chmod(path, 0o600)
        path.write_bytes(b"")  # a file we may replace
    assert _imports(cache) == (0, compiled)  # compiled as usual, and stored again
    assert _imports(cache) == (compiled, 0)


def test_a_directory_others_can_write_is_not_trusted(tmp_path):
    cache = tmp_path / "cache"
    _imports(cache)
    path = cache / "classifier" / classcode._FILE_NAME
    os.chmod(path.parent, 0o777)
    try:
        assert classcode._load(path) == {}
    finally:
        os.chmod(path.parent, 0o700)
    assert classcode._load(path) != {}


def test_no_cache_when_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSIFIER_NO_CACHE", "1")
    assert classcode.cache_file() is None
    env = {**os.environ, "CLASSIFIER_CACHE_DIR": str(tmp_path / "cache"), "CLASSIFIER_NO_CACHE": "1"}
    code = "import classifier.cli, dataclasses as d, builtins as b\n"
    code += "print(getattr(d, 'exec', b.exec) is b.exec)"
    out = _python(code, env)
    assert out.stdout.strip() == "True"
    assert not (tmp_path / "cache").exists()


def test_generated_functions_compile_once_and_as_compile_does(monkeypatch):
    source = "def f(x):\n    return {'x': x, 'y': [x] * 2}\n"
    plain = compile(source, "<generated>", "exec", dont_inherit=True)
    monkeypatch.setattr(classcode, "_active", False)
    assert classcode.compiled(source, "<generated>").co_code == plain.co_code
    monkeypatch.setattr(classcode, "_active", True)
    monkeypatch.setattr(classcode, "_cache", {})
    monkeypatch.setattr(classcode, "_new", {})
    monkeypatch.setattr(classcode, "_used", set())
    first = classcode.compiled(source, "<generated>")
    assert classcode._new and classcode.compiled(source, "<generated>") is first
    assert classcode.compiled(source, "<other>") is not first  # the file name is part of the key
    for code in (first, marshal.loads(marshal.dumps(first))):
        assert (code.co_code, code.co_consts) == (plain.co_code, plain.co_consts)
        assert code.co_filename == "<generated>"
        scope: dict = {}
        exec(code, scope)
        assert scope["f"](3) == {"x": 3, "y": [3, 3]}


def test_stale_entries_are_dropped_once_they_could_double_the_file(tmp_path):
    cache = tmp_path / "cache"
    _, compiled = _imports(cache)
    path = cache / "classifier" / classcode._FILE_NAME
    tag, table = marshal.loads(path.read_bytes())
    code = next(iter(table.values()))
    all_but_one = dict(list(table.items())[1:])  # a file is written only when something is new
    few = {f"# stale {i}\n": code for i in range(10)}
    path.write_bytes(marshal.dumps((tag, {**all_but_one, **few})))
    _imports(cache)
    assert len(marshal.loads(path.read_bytes())[1]) == len(table) + len(few)  # a few stale ones stay
    many = {f"# stale {i}\n": code for i in range(2 * compiled + 100)}
    path.write_bytes(marshal.dumps((tag, {**all_but_one, **many})))
    _imports(cache)
    assert marshal.loads(path.read_bytes())[1].keys() == table.keys()


def test_the_hook_serves_our_classes_only(monkeypatch):
    """Another package's dataclass, made while the hook is in place (``import classifier`` in a
    program of its own), is compiled as usual: nothing of it is kept or stored."""
    monkeypatch.setattr(classcode, "_cache", {})
    monkeypatch.setattr(classcode, "_new", {})
    monkeypatch.setattr(classcode, "_used", set())
    monkeypatch.setattr(dataclasses, "exec", classcode._exec, raising=False)
    theirs = dataclasses.make_dataclass("Theirs", [("a", int)], namespace={"__module__": "json"})
    assert theirs(1) == theirs(1) and not classcode._new and not classcode._used
    assert classcode._ours({"__name__": "classifier"}) and classcode._ours({"__name__": "classifier.flows"})
    assert not classcode._ours({"__name__": "classifierx"}) and not classcode._ours({})
    _make(frozen=True)
    assert classcode._new  # ours: compiled once and kept


def test_named_tuple_annotations_compile_once_and_as_compile_does(monkeypatch):
    # typing.ForwardRef compiles each string annotation of a NamedTuple: served from the cache
    # (classcode._compile) while it is active, the same code as typing's own compile gives
    import typing

    def make() -> type:
        return typing.NamedTuple("Sample", [("a", "int | None"), ("b", "tuple[str, ...]")])

    monkeypatch.delattr(typing, "compile", raising=False)  # this process may have the hook on
    plain = make().__annotations__
    monkeypatch.setattr(classcode, "_cache", {})
    monkeypatch.setattr(classcode, "_new", {})
    monkeypatch.setattr(classcode, "_used", set())
    monkeypatch.setattr(typing, "compile", classcode._compile, raising=False)
    compiled = make().__annotations__
    assert sorted(classcode._new) == ["<eval>\0int | None", "<eval>\0tuple[str, ...]"]
    classcode._cache.update(marshal.loads(marshal.dumps(classcode._new)))
    classcode._new.clear()
    cached = make().__annotations__
    assert not classcode._new, "a cached text was compiled again"
    for hints in (compiled, cached):
        assert hints == plain
        for name, ref in hints.items():
            mine, theirs = ref.__forward_code__, plain[name].__forward_code__
            assert (mine.co_code, mine.co_consts, mine.co_names, mine.co_flags) == (
                theirs.co_code,
                theirs.co_consts,
                theirs.co_names,
                theirs.co_flags,
            )
    with pytest.raises(SyntaxError, match="Forward reference must be an expression"):
        typing.ForwardRef("not an expression")
    other = classcode._compile("x = 1", "<x>", "exec")  # not typing's call: compiled as asked
    assert other.co_filename == "<x>" and not classcode._new


def test_start_and_finish_hook_typing_and_unhook_it(tmp_path):
    code = (
        "import typing, classifier; from classifier import classcode; "
        "hooked = typing.compile is classcode._compile; classcode.finish(); "
        "print(hooked, 'compile' in vars(typing))"
    )
    env = {**os.environ, "CLASSIFIER_CACHE_DIR": str(tmp_path)}
    env.pop("CLASSIFIER_NO_CACHE", None)
    assert _python(code, env).stdout.split() == ["True", "False"]
