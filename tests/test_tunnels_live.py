"""Tunnels built live in the namespace lab, as pcaps/build_tunnels.py builds the committed captures:
real TLS, QUIC, HTTP and DNS clients and servers talk through a kernel VXLAN and through the
userspace GTP-U endpoint; the scan of the underlay capture names every ClientHello the clients sent,
on the inner flow, with its tunnel.

Needs root and network namespaces: skipped without them outside CI, failed in CI (netlab.require_lab).
"""

from __future__ import annotations

import json
import sys

import netlab
import pytest
from conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT / "pcaps"))
import build_tunnels

pytestmark = pytest.mark.root

LIVE = {t.kind: t for t in build_tunnels.TUNNELS if t.kind in ("vxlan", "gtpu", "teredo")}


@pytest.fixture(scope="module")
def lab():
    netlab.require_lab()
    with netlab.Lab("direct") as lab:
        lab.start_all()
        yield lab


@pytest.mark.parametrize("kind,record_type,ident", [("vxlan", "vxlan", 4242), ("gtpu", "gtp-u", 4097)])
def test_live_tunnel_is_classified_on_its_inner_flows(lab, tmp_path, kind, record_type, ident):
    capture = tmp_path / f"{kind}.pcap"
    snis = build_tunnels.capture_tunnel(lab, LIVE[kind], capture)
    proc = run_cli("scan", str(capture), "-q", check_status=None)
    assert proc.returncode in (0, 3), proc.stderr.decode(errors="replace")
    records = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert sorted(r["sni"] for r in records if r["sni"]) == sorted(snis)
    inner = {"192.0.2.130", "2001:db8:1::130"}
    for r in records:
        assert r["src"] in inner, r  # the subscriber's flow, not the tunnel's
        assert r["tunnel"] == [
            {"type": record_type, "src": netlab.CLIENT4, "dst": netlab.GW_CLIENT4, "id": ident}
        ]
    assert {r["dns_queries"][0] for r in records if r["dns_queries"]} == {"www.tiktok.com", "web.wechat.com"}
    # the tunnel is gone again: the next test's traffic takes the plain path
    assert "vx0" not in lab.run("client", ["ip", "link"]).stdout


def test_live_teredo_is_classified_on_its_inner_ipv6_flows(lab, tmp_path):
    """IPv6 in UDP 3544 with the authentication and origin indication headers of RFC 4380."""
    capture = tmp_path / "teredo.pcap"
    snis = build_tunnels.capture_tunnel(lab, LIVE["teredo"], capture)
    records = [json.loads(line) for line in run_cli("scan", str(capture), "-q").stdout.decode().splitlines()]
    assert sorted(r["sni"] for r in records if r["sni"]) == sorted(snis) and snis
    for r in records:
        assert r["src"] == "2001:db8:1::130", r
        layer = {"type": "teredo", "src": netlab.CLIENT4, "dst": netlab.GW_CLIENT4, "id": None}
        assert r["tunnel"] == [layer]
