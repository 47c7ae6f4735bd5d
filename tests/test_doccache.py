"""The TOML document cache (``datafile.read_toml(..., cached=True)``): a document served from it
is the one the parser gives, an edit is always seen, a broken or untrusted cache file is ignored,
and faults are still reported by the parser, never cached."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tomllib
from pathlib import Path

import pytest

from classifier import datafile
from classifier.errors import DataError, SignatureError
from classifier.policy import Policy
from classifier.signatures import shipped_directory

SAMPLE = """
title = "x"
date = 2020-09-19
at = 2020-09-19T04:00:00Z
local = 2020-09-19T04:00:00.123456
offset = 2020-09-19T04:00:00-05:00
clock = 23:59:00
nested = { list = [1, 2.5, true, "s", [2021-01-01]], empty = [] }
[[item]]
id = "a"
[[item]]
id = "b"
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    """A private cache directory, and a document cache not yet read in this process."""
    monkeypatch.setenv("CLASSIFIER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLASSIFIER_NO_CACHE", raising=False)
    datafile.save_documents()  # forget what earlier tests left (nothing is new: nothing written)
    yield tmp_path / "cache" / "classifier" / datafile._DOCS_FILE
    datafile.save_documents()


def _fresh_process() -> None:
    """Store, then forget, as a process's end and the next one's start would."""
    datafile.save_documents()


def _served(path: Path) -> bool:
    """Whether read_toml answered ``path`` from the cache (the parser is not called)."""
    calls = []
    real = tomllib.loads

    def spy(text: str) -> dict:
        calls.append(text)
        return real(text)

    tomllib.loads = spy  # type: ignore[assignment]
    try:
        datafile.read_toml(path, cached=True)
    finally:
        tomllib.loads = real  # type: ignore[assignment]
    return not calls


def test_a_served_document_is_the_parsed_one(cache, tmp_path):
    path = tmp_path / "sample.toml"
    path.write_text(SAMPLE)
    parsed = tomllib.loads(SAMPLE)
    assert datafile.read_toml(path, cached=True) == parsed
    _fresh_process()
    assert cache.is_file() and oct(cache.stat().st_mode & 0o777) == "0o600"
    assert _served(path)
    served = datafile.read_toml(path, cached=True)
    assert served == parsed
    assert [type(v) for v in served.values()] == [type(v) for v in parsed.values()]
    assert served["offset"].utcoffset() == dt.timedelta(hours=-5)
    served["item"].append({})  # the caller's copy: the next read is not changed by it
    assert datafile.read_toml(path, cached=True) == parsed


def test_an_edit_is_seen_even_with_size_and_mtime_kept(cache, tmp_path):
    path = tmp_path / "sample.toml"
    path.write_text('title = "aaa"\n')
    datafile.read_toml(path, cached=True)
    _fresh_process()
    st = path.stat()
    path.write_text('title = "bbb"\n')
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert datafile.read_toml(path, cached=True) == {"title": "bbb"}


def test_uncached_reads_neither_use_nor_fill_the_cache(cache, tmp_path):
    path = tmp_path / "sample.toml"
    path.write_text(SAMPLE)
    datafile.read_toml(path)
    _fresh_process()
    assert not cache.exists()


@pytest.mark.parametrize("damage", ["truncated", "not-marshal", "not-a-document", "group-writable"])
def test_a_broken_or_untrusted_cache_file_is_ignored(cache, tmp_path, damage):
    path = tmp_path / "sample.toml"
    path.write_text(SAMPLE)
    datafile.read_toml(path, cached=True)
    _fresh_process()
    data = cache.read_bytes()
    if damage == "truncated":
        cache.write_bytes(data[: len(data) // 2])
    elif damage == "not-marshal":
        cache.write_bytes(b"\xff" * 64)
    elif damage == "not-a-document":
        import marshal

        table = marshal.loads(data)
        key = next(iter(table))
        table[key] = (table[key][0], {"title": ("forged", "x")})
        cache.write_bytes(marshal.dumps(table))
    else:
        os.chmod(cache, 0o620)
    assert not _served(path)
    assert datafile.read_toml(path, cached=True) == tomllib.loads(SAMPLE)


def test_faults_are_reported_by_the_parser_and_never_cached(cache, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("title = \n")
    for _ in range(2):
        with pytest.raises(DataError, match="TOML syntax error"):
            datafile.read_toml(path, cached=True)
        _fresh_process()
    with pytest.raises(DataError, match="does not exist"):
        datafile.read_toml(tmp_path / "missing.toml", cached=True)


def test_the_policy_from_the_cache_is_the_parsed_policy(cache, tmp_path):
    policy_dir = tmp_path / "policy"
    shutil.copytree(shipped_directory() / "policy", policy_dir)
    parsed = Policy.load(policy_dir)
    _fresh_process()
    files = sorted(policy_dir.glob("*.toml"))
    assert all(_served(f) for f in files)
    served = Policy.load(policy_dir)
    for name in ("apps", "categories", "instruments", "provisions", "events"):
        assert getattr(served, name) == getattr(parsed, name)
    # an edit that breaks the policy is reported as before
    (policy_dir / "provisions.toml").write_text(
        (policy_dir / "provisions.toml").read_text() + "\n[[provision]]\n"
    )
    with pytest.raises(SignatureError, match=r"provisions\.toml"):
        Policy.load(policy_dir)


def test_documents_of_other_files_are_dropped_once_they_could_double_the_file(cache, tmp_path):
    files = []
    for i in range(20):
        files.append(tmp_path / f"f{i}.toml")
        files[-1].write_text(f"n = {i}\n")
        datafile.read_toml(files[-1], cached=True)
    _fresh_process()
    datafile.read_toml(files[0], cached=True)
    files[1].write_text("n = 100\n")  # something new to store
    datafile.read_toml(files[1], cached=True)
    _fresh_process()
    import marshal

    assert sorted(marshal.loads(cache.read_bytes())) == sorted(os.path.abspath(f) for f in files[:2])
