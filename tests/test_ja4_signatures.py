"""JA4 signatures (signatures/fingerprints.toml): validated, low-confidence evidence, never a block alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_scanner import Run, client_hello, tcp

from classifier.blockfloor import BlockFloor, check_evidence
from classifier.errors import SignatureError
from classifier.inspect.ja4 import ja4
from classifier.inspect.tls import parse_client_hello
from classifier.record import flow_record
from classifier.signatures import Signatures, shipped_directory

C, S = "192.0.2.7", "198.51.100.99"  # an address in no signature prefix


def signatures_with(tmp_path: Path, entries: str) -> Path:
    root = tmp_path / "sigs"
    shutil.copytree(
        shipped_directory(), root, ignore=shutil.ignore_patterns("policy", "build", "__pycache__")
    )
    (root / "fingerprints.toml").write_text(entries, encoding="utf-8")
    return root


def entry(fingerprint: str, ident: str = "ja4-test", app: str = "tiktok") -> str:
    return (
        f'[[ja4]]\nid = "{ident}"\nja4 = "{fingerprint}"\napp = "{app}"\n'
        'source = "test: the ClientHello of this machine\'s OpenSSL"\ndate = "2026-12-04"\n'
    )


def flow(sigs, policy, name, **opts):
    run = Run(sigs, policy, **opts)
    run.send(tcp(C, S, 40100, 443, "S", 1000))
    run.send(tcp(S, C, 443, 40100, "SA", 5000, 1001))
    run.send(tcp(C, S, 40100, 443, "PA", 1001, 5001, client_hello(name)))
    (f,) = run.done()
    return flow_record(f)


def test_shipped_table_is_empty_but_loaded():
    assert Signatures.load().ja4 == {}


def test_ja4_alone_names_the_app_at_low_confidence_and_never_blocks(tmp_path, policy):
    fingerprint = ja4(parse_client_hello(client_hello(None)))
    sigs = Signatures.load(signatures_with(tmp_path, entry(fingerprint)))
    rec = flow(sigs, policy, None)
    assert rec["ja4"] == fingerprint
    assert (rec["app"], rec["confidence"]) == ("tiktok", "low")
    assert {
        "kind": "ja4",
        "value": fingerprint,
        "signature": "ja4-test",
        "source": "test: the ClientHello of this machine's OpenSSL",
    } in rec["evidence"]
    assert rec["action"] == "log" and rec["rule"] in ("below-block-confidence", "evidence-cannot-block")
    # even with the lowest floor the configuration allows, ja4 cannot be made to block
    assert "can never support a block" in check_evidence(("ja4",))
    with pytest.raises(ValueError):
        BlockFloor(confidence="low", evidence=("ja4",))


def test_ja4_does_not_override_a_name(tmp_path, policy):
    fingerprint = ja4(parse_client_hello(client_hello("web.wechat.com")))
    sigs = Signatures.load(signatures_with(tmp_path, entry(fingerprint)))
    rec = flow(sigs, policy, "web.wechat.com")
    assert rec["app"] == "wechat" and rec["hostname_source"] == "sni"
    assert any(e["kind"] == "ja4" for e in rec["evidence"])  # shown, but the name decides


@pytest.mark.parametrize(
    "text,field",
    [
        (entry("t13d1516h2_8daaf6152771"), "ja4"),  # truncated
        (entry("T13d1516h2_8daaf6152771_e5627efa2ab1"), "ja4"),  # upper case
        (entry("t13d1516h2_8daaf6152771_e5627efa2ab1", app="nosuchapp"), "app"),
        (
            entry("t13d1516h2_8daaf6152771_e5627efa2ab1")
            + entry("t13d1516h2_8daaf6152771_e5627efa2ab1", "ja4-b"),
            "ja4",
        ),  # listed twice
        ('[[ja4]]\nid = "x"\nja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"\napp = "tiktok"\n', "source"),
    ],
)
def test_bad_entries_name_file_entry_and_field(tmp_path, text, field):
    root = signatures_with(tmp_path, text)
    with pytest.raises(SignatureError) as info:
        Signatures.load(root)
    err = info.value
    assert err.path.endswith("fingerprints.toml") and "\n" not in str(err)
    assert field in str(err)
