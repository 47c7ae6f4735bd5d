"""The signature cache: plain JSON that cannot run code, used only when nobody else could have
written it, keyed so that any change to code or data means a fresh, validated load."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from classifier import sigcache
from classifier.signatures import Signatures, shipped_directory


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("CLASSIFIER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLASSIFIER_NO_CACHE", raising=False)
    return tmp_path / "cache" / "classifier"


@pytest.fixture
def sigdir(tmp_path: Path) -> Path:
    d = tmp_path / "sigs"
    shutil.copytree(shipped_directory(), d, ignore=shutil.ignore_patterns("__pycache__"))
    return d


def cache_file(cache: Path) -> Path:
    (path,) = cache.glob("signatures-*.json")
    return path


def forge(path: Path) -> None:
    """Rename the first host rule in the cached data: visible if, and only if, the file is used."""
    doc = orjson.loads(path.read_bytes())
    doc["host_rules"][0][0] = "forged-by-cache"
    path.write_bytes(orjson.dumps(doc))


def used_forged(sigdir: Path) -> bool:
    return any(r.id == "forged-by-cache" for r in Signatures.load(sigdir).hosts.rules)


def test_cached_set_equals_a_fresh_load(cache, sigdir, monkeypatch):
    cached_first = Signatures.load(sigdir)
    cached = Signatures.load(sigdir)  # from the file now
    doc = orjson.loads(cache_file(cache).read_bytes())
    assert doc["format"] == sigcache.FORMAT and len(doc["host_rules"]) == len(cached.hosts)
    monkeypatch.setenv("CLASSIFIER_NO_CACHE", "1")
    fresh = Signatures.load(sigdir)
    for s in (cached_first, cached):
        assert s.hosts.rules == fresh.hosts.rules
        assert (s.apps, s.operators, s.cdns, s.asns) == (fresh.apps, fresh.operators, fresh.cdns, fresh.asns)
        assert (s.cname_suffixes, s.stores, s.store_rules) == (
            fresh.cname_suffixes,
            fresh.stores,
            fresh.store_rules,
        )
        assert (s.resolvers, s.encrypted_ports, s.ech_public_names, s.protocols) == (
            fresh.resolvers,
            fresh.encrypted_ports,
            fresh.ech_public_names,
            fresh.protocols,
        )
        assert s.directory == fresh.directory == sigdir
        assert sorted(s.prefixes.networks(), key=lambda n: n[:3]) == sorted(
            fresh.prefixes.networks(), key=lambda n: n[:3]
        )
        for asn in fresh.asns:
            assert s.prefixes_of(asn) == fresh.prefixes_of(asn)
        for size, value, _, _, _ in fresh.prefixes.networks():
            addr = (value + 1).to_bytes(size, "big")
            assert s.prefixes.lookup(addr) == fresh.prefixes.lookup(addr) is not None


def test_forged_file_is_used_only_when_ours_and_private(cache, sigdir):
    Signatures.load(sigdir)
    path = cache_file(cache)
    forge(path)
    os.chmod(path, 0o600)
    assert used_forged(sigdir)  # the control: a file that passes the checks is used
    for mode in (0o666, 0o620, 0o602):
        forge(path)
        os.chmod(path, mode)
        assert not used_forged(sigdir), oct(mode)
        assert not used_forged(sigdir)  # and replaced by a fresh one


@pytest.mark.root
def test_file_owned_by_another_user_is_not_loaded(cache, sigdir):
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("needs root to chown a file to another user, and CI must run this test")
        pytest.skip("needs root to chown a file to another user")
    Signatures.load(sigdir)
    path = cache_file(cache)
    forge(path)
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    assert not used_forged(sigdir)
    assert path.stat().st_uid == 0  # replaced by our own


def test_directory_writable_by_others(cache, sigdir):
    Signatures.load(sigdir)
    path = cache_file(cache)
    forge(path)
    os.chmod(cache, 0o777)
    assert not used_forged(sigdir)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o755  # our own directory: closed again
    forge(path)
    os.chmod(cache, 0o1777)  # sticky, like /tmp: others cannot replace our file
    assert used_forged(sigdir)


def test_pickle_payload_is_never_run(cache, sigdir, tmp_path):
    Signatures.load(sigdir)
    path = cache_file(cache)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = pickle.dumps(Payload())
    path.write_bytes(evil)
    legacy = cache / "signatures-0123456789abcdef0123456789abcdef.pickle"
    legacy.write_bytes(evil)
    sigs = Signatures.load(sigdir)
    assert sigs.hosts.match("www.tiktok.com") is not None
    assert not marker.exists()
    assert orjson.loads(path.read_bytes())["format"] == sigcache.FORMAT  # rewritten as JSON
    assert not legacy.exists()  # old pickles are removed, never read


def test_fifo_in_place_of_the_file_does_not_hang(cache, sigdir):
    Signatures.load(sigdir)
    path = cache_file(cache)
    path.unlink()
    os.mkfifo(path, 0o600)
    code = (
        "import sys; from classifier.signatures import Signatures as S; print(len(S.load(sys.argv[1]).hosts))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(sigdir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CLASSIFIER_CACHE_DIR": str(cache.parent)},
    )
    assert proc.returncode == 0 and int(proc.stdout) > 100, proc.stderr


def test_edit_that_keeps_size_and_mtime_is_noticed(cache, sigdir):
    first = Signatures.load(sigdir)
    path = sigdir / "apps" / "tiktok.toml"
    before = path.stat()
    text = path.read_text()
    assert 'suffix = "tiktokv.com"\nrole = "api"' in text
    path.write_text(
        text.replace('suffix = "tiktokv.com"\nrole = "api"', 'suffix = "tiktokv.com"\nrole = "web"', 1)
    )
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert first.hosts.match("api.tiktokv.com").role == "api"
    assert Signatures.load(sigdir).hosts.match("api.tiktokv.com").role == "web"


def test_key_covers_the_package_sources_and_the_vocabulary(tmp_path, sigdir, monkeypatch):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "model.py").write_text("x = 1\n")
    monkeypatch.setattr(sigcache, "_PACKAGE", package)
    vocab = sigdir / "policy" / "vocabulary.toml"
    before = sigcache._key(sigdir, [vocab])
    assert sigcache._key(sigdir, [vocab]) == before
    (package / "sub" / "model.py").write_text("x = 22\n")
    after_code = sigcache._key(sigdir, [vocab])
    assert after_code != before
    vocab.write_text(vocab.read_text() + "\n")
    assert sigcache._key(sigdir, [vocab]) != after_code


def test_only_the_newest_files_are_kept(cache, tmp_path):
    for i in range(sigcache.KEEP + 3):
        d = tmp_path / f"set{i}"
        shutil.copytree(shipped_directory(), d, ignore=shutil.ignore_patterns("__pycache__", "policy"))
        Signatures.load(d)
    assert len(list(cache.glob("signatures-*.json"))) == sigcache.KEEP


def test_no_cache_when_turned_off(cache, sigdir, monkeypatch):
    monkeypatch.setenv("CLASSIFIER_NO_CACHE", "1")
    Signatures.load(sigdir)
    assert not cache.exists()


def test_key_sees_data_files_at_any_depth_and_only_those(sigdir):
    before = sigcache._key(sigdir, [])
    (sigdir / "notes").mkdir()
    (sigdir / "notes" / "readme.md").write_text("not signature data\n")
    assert sigcache._key(sigdir, []) == before
    (sigdir / "notes" / "deeper").mkdir()
    (sigdir / "notes" / "deeper" / "extra.txt").write_text("192.0.2.0/24\n")
    assert sigcache._key(sigdir, []) != before


def test_prefix_texts_are_made_from_the_keys_exactly_as_the_loader_wrote_them():
    # the table keeps no network text (sigmatch._network_text remakes it on a hit): every text
    # must be parse_prefix's canonical form of the prefix, and a table refuses any other text
    from classifier.sigmatch import PrefixTable
    from classifier.sigmodel import PrefixEntry
    from classifier.validate import parse_prefix

    sigs = Signatures.load()
    seen = 0
    for size, value, length, text, _ in sigs.prefixes.networks():
        packed = value.to_bytes(size, "big")
        assert parse_prefix(text) == (packed, length, text)
        seen += 1
    assert seen == len(sigs.prefixes) > 10000
    for written in ("2001:db8::/32", "10.1.0.0/16", "::ffff:1.2.3.0/120", "2001:db8:0:0:1::/80"):
        packed, length, canonical = parse_prefix(written)
        entry = PrefixEntry("x", canonical, 64496, "o", "cdn", "s", "2026-01-01")
        assert PrefixTable([(packed, length, entry)]).lookup(packed) == entry
    entry = PrefixEntry("x", "2001:0db8::/32", 64496, "o", "cdn", "s", "2026-01-01")
    with pytest.raises(ValueError, match="canonical"):
        PrefixTable([(parse_prefix("2001:db8::/32")[0], 32, entry)])
