"""Real-stack captures of TLS after preludes and in a SYN (pcaps/preludes.pcap, pcaps/tfo.pcap).

The committed captures are checked against pcaps/expected/preludes.json (the tshark oracle checks
their SNIs independently, tests/test_tshark_oracle.py). The live test rebuilds them in the
namespace lab with the same builder and checks what the scanner makes of the fresh captures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import netlab
import pytest
from conftest import ROOT, scan_records

PCAPS = ROOT / "pcaps"
EXPECTED = json.loads((PCAPS / "expected" / "preludes.json").read_text())


def check(directory: Path, expected: list[dict]) -> None:
    problems = []
    for name in sorted({e["capture"] for e in expected}):
        records = {r["sport"]: r for r in scan_records("--ja4s", str(directory / name))}
        want = [e for e in expected if e["capture"] == name]
        assert sorted(records) == sorted(e["sport"] for e in want), name
        for e in want:
            r = records[e["sport"]]
            got = (r["app_proto"], r["prelude"], r["sni"], r["hostname"])
            if got != ("tls", e["prelude"], e["sni"], e["sni"]):
                problems.append(f"{name} {e['why']}: (app_proto, prelude, sni, hostname) {got}")
            socks = [x["value"] for x in r["evidence"] if x["kind"] == "socks"]
            if socks != ([f"{e['prelude']} CONNECT {e['socks']}"] if e["socks"] else []):
                problems.append(f"{name} {e['why']}: socks evidence {socks}")
            if not (r["ja4"] or "").startswith("t13d") or not (r["ja4s"] or "").startswith("t13"):
                problems.append(f"{name} {e['why']}: ja4 {r['ja4']} ja4s {r['ja4s']}")
    assert not problems, "\n".join(problems)


def test_expectations_cover_every_prelude_and_both_fast_open_cases():
    kinds = sorted({e["prelude"] for e in EXPECTED if e["prelude"]})
    assert kinds == ["ftp", "imap", "ldap", "pop3", "postgres", "rdp", "smtp", "socks4", "socks5", "xmpp"]
    assert sum(1 for e in EXPECTED if e["capture"] == "tfo.pcap") == 2


def test_committed_captures():
    check(PCAPS, EXPECTED)


@pytest.mark.root
def test_live_rebuild_in_the_namespace_lab(tmp_path):
    """Real curl, openssl s_client and kernel TFO in namespaces, captured fresh and scanned."""
    netlab.require_lab()
    sys.path.insert(0, str(PCAPS))
    import build_preludes

    assert build_preludes.main(["build_preludes", str(tmp_path)]) == 0
    fresh = json.loads((tmp_path / "expected" / "preludes.json").read_text())
    assert [(e["prelude"], e["sni"], e["socks"]) for e in fresh] == [
        (e["prelude"], e["sni"], e["socks"]) for e in EXPECTED
    ]
    check(tmp_path, fresh)
