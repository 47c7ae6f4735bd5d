"""signatures/policy/vocabulary.toml is the one source of apps, categories and roles: the loaders
check the data against it, and these tests check the code's own constants against it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pytest

from classifier import vocabulary
from classifier.errors import SignatureError
from classifier.signatures import Signatures, shipped_directory

ROOT = Path(__file__).resolve().parents[1]
VOCAB = shipped_directory() / "policy" / vocabulary.FILE_NAME


@pytest.fixture(scope="module")
def vocab() -> vocabulary.Vocabulary:
    return vocabulary.load(VOCAB)


def test_attribution_constants_follow_the_vocabulary(vocab):
    from classifier.attribute import CATEGORY_ORDER, DEFAULT_CATEGORY, ROLE_CATEGORY

    assert sorted(CATEGORY_ORDER) == sorted(vocab.categories)
    assert len(set(CATEGORY_ORDER)) == len(CATEGORY_ORDER)
    assert set(ROLE_CATEGORY) <= set(vocab.roles)
    assert set(ROLE_CATEGORY.values()) <= set(vocab.categories)
    assert DEFAULT_CATEGORY in vocab.categories


def test_other_constants_follow_the_vocabulary(vocab, policy):
    from classifier.bgp.decide import CATEGORY

    assert CATEGORY in vocab.categories
    assert (policy.apps, policy.categories) == (vocab.apps, vocab.categories)


def test_shipped_signatures_use_only_vocabulary_words(vocab, sigs):
    assert set(sigs.apps) <= set(vocab.apps)
    assert {r.role for r in sigs.hosts.rules} | {p.role for p in sigs.protocols.values()} <= set(vocab.roles)


def _copy_with_vocabulary(tmp_path: Path, old: str, new: str) -> Path:
    root = tmp_path / "sigs"
    shutil.copytree(shipped_directory(), root, ignore=shutil.ignore_patterns("__pycache__"))
    path = root / "policy" / vocabulary.FILE_NAME
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return root


def test_a_role_missing_from_the_vocabulary_refuses_the_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSIFIER_NO_CACHE", "1")
    root = _copy_with_vocabulary(tmp_path, '"telemetry", ', "")
    with pytest.raises(SignatureError) as info:
        Signatures.load(root)
    err = info.value
    assert err.field == "role" and err.problem.startswith("'telemetry' is not one of api, cdn, payments")
    assert err.entry.startswith("rule '")


def test_an_app_missing_from_the_vocabulary_refuses_its_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSIFIER_NO_CACHE", "1")
    root = _copy_with_vocabulary(tmp_path, 'apps = ["tiktok", "wechat"]', 'apps = ["tiktok"]')
    with pytest.raises(SignatureError) as info:
        Signatures.load(root)
    err = info.value
    assert err.path.endswith("apps/wechat.toml") and err.entry == "app 'wechat'" and err.field == "id"
    assert "not an app of the vocabulary" in err.problem


def test_vocabulary_file_is_checked(tmp_path):
    path = tmp_path / vocabulary.FILE_NAME
    path.write_text('[vocabulary]\napps = ["tiktok"]\ncategories = ["Hosting"]\nroles = ["api"]\n')
    with pytest.raises(SignatureError) as info:
        vocabulary.load(path)
    assert info.value.field == "categories" and "'Hosting' must be lowercase" in info.value.problem
    path.write_text('[vocabulary]\napps = ["tiktok"]\ncategories = ["hosting"]\n')
    with pytest.raises(SignatureError, match="roles: missing"):
        vocabulary.load(path)


def test_builder_takes_its_roles_from_the_vocabulary(vocab, monkeypatch):
    spec = importlib.util.spec_from_file_location("build_signatures", ROOT / "tools" / "build_signatures.py")
    builder = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "build_signatures", builder)  # dataclasses look their module up
    spec.loader.exec_module(builder)
    rule = builder.Builder.make_rule  # needs only the vocabulary of the builder it runs for
    ok = rule(
        types.SimpleNamespace(vocabulary=vocab), "example.com", {"role": "telemetry"}, "x", [], "", "here"
    )
    assert ok.role == "telemetry"
    fewer = vocabulary.Vocabulary(vocab.apps, vocab.categories, ("api",), "test")
    with pytest.raises(builder.BuildError, match="role 'telemetry' is not one of api"):
        rule(
            types.SimpleNamespace(vocabulary=fewer), "example.com", {"role": "telemetry"}, "x", [], "", "here"
        )
