"""Every real capture in ../shared/pcaps/real, checked against its EXPECTED.md.

EXPECTED.md is parsed rather than copied: its "must be attributed" table gives, per capture, the
hostnames and the app (and sometimes the category) a correct classifier reports; its "must NOT"
table lists the captures where no TikTok/WeChat label may appear except on those hostnames.
"""

from __future__ import annotations

import re

import pytest
from conftest import REAL, need_shared, scan_records

NAME = re.compile(r"\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b")


def _table(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # skip header + rule
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def expected() -> tuple[dict, set]:
    text = (need_shared(REAL) / "EXPECTED.md").read_text()
    must: dict[str, list[tuple[str, str, str | None]]] = {}
    for capture, hosts, _flows, app in _table(text, "## Must be attributed to the app"):
        m = re.match(r"(\w+)(?: \(category (\w[\w-]*)\))?", app)
        for host in NAME.findall(hosts.split("(")[0]):
            must.setdefault(capture, []).append((host, m.group(1), m.group(2)))
    must_not = set()
    for captures, _why in _table(text, "## Must NOT be attributed to TikTok or WeChat"):
        must_not.update(c.split()[0] for c in captures.split(",") if c.strip())  # "x.pcap (note)"
    return must, must_not


def captures() -> list[str]:
    if not REAL.exists():
        return ["<absent>"]
    return sorted(p.name for p in REAL.iterdir() if p.suffix in (".pcap", ".pcapng"))


@pytest.fixture(scope="module")
def rules():
    return expected()


@pytest.mark.real
@pytest.mark.parametrize("capture", captures())
def test_capture_against_expected(capture, rules):
    must, must_not = rules
    path = need_shared(REAL / capture)
    records = scan_records(str(path))  # exit status 0: read completely, nothing broken
    assert records, capture
    allowed = {host: (app, cat) for host, app, cat in must.get(capture, [])}
    assert capture in must or capture in must_not, f"{capture} is in neither table of EXPECTED.md"

    # Every must-attribute hostname appears and every flow carrying it gets the right app.
    for host, (app, category) in allowed.items():
        flows = [r for r in records if r["hostname"] == host]
        assert flows, f"{capture}: no flow named {host}"
        for r in flows:
            assert r["app"] == app, f"{capture}: {host} -> {r['app']} ({r['evidence']})"
            if category is not None and r["hostname_source"] in ("sni", "http-host", "http-proxy"):
                assert r["category"] == category, f"{capture}: {host} category {r['category']}"

    # No TikTok/WeChat label anywhere else: only on the listed names.
    for r in records:
        if r["app"] is not None:
            assert r["hostname"] in allowed and allowed[r["hostname"]][0] == r["app"], (
                f"{capture}: unexpected {r['app']} label on {r['hostname']} "
                f"{r['dst']}:{r['dport']} ({[e['kind'] for e in r['evidence']]})"
            )
        assert r["action"] in ("log", "allow") or r["app"] is not None  # never block the unattributed


@pytest.mark.real
def test_wechat_traps_in_wechat_pcap():
    records = scan_records(str(need_shared(REAL / "wechat.pcap")))
    lan = [r for r in records if r["hostname"] == "webpush.web.wechat.com.lan"]
    assert len(lan) == 3 and all(r["app"] is None for r in lan)
    nameless = [
        r
        for r in records
        if r["dst"].startswith("203.205.")
        and r["app"] == "wechat"
        and r["hostname_source"] not in ("sni", "http-host")
    ]
    for r in nameless:  # called WeChat only with evidence, and the evidence says which
        assert {e["kind"] for e in r["evidence"]} & {"dns", "name-history"}, r


@pytest.mark.real
def test_operator_asn_is_not_the_app():
    """Tencent Cloud addresses used by unrelated apps: operator yes, WeChat no."""
    for capture in ("codm.pcap", "genshin-impact.pcap", "ethereum.pcap"):
        records = scan_records(str(need_shared(REAL / capture)))
        tencent = [r for r in records if r["operator"] == "tencent"]
        assert all(r["app"] is None and r["action"] == "log" for r in tencent), capture
    quic = scan_records(str(need_shared(REAL / "quic_frags_ch_out_of_order_same_packet_craziness.pcapng")))
    assert not any(r["app"] for r in quic)
