"""End to end in the namespace lab: a forged DNS answer crossing the gateway never makes it block.

A forged response (no query was sent) claims www.tiktok.com for the lab's unrelated server; a
nameless TLS connection to that server must still work, and its record says why it was not blocked.
In the same run a real lookup through the gateway, followed by a nameless connection to the answered
(ByteDance-prefix) address, is blocked: binding answers to queries did not switch DNS naming off.

Needs root; skipped without it unless CI is set (then it fails). The lab, the test signatures and the
leftover check are those of test_gateway_e2e.py.
"""

from __future__ import annotations

import time

import gateway_helpers as gh
import netlab
import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from test_gateway_e2e import TIKTOK_ON, base_args, clean_gateway, lab, sig_dir  # noqa: F401 (fixtures)

pytestmark = pytest.mark.root

A = netlab.Lab.addr


def send_raw(packet: bytes, dst: str) -> bool:
    """Runs inside a namespace: send one complete IPv4 packet as it is (the forger's view)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(packet, (dst, 0))
    return True


def test_forged_dns_answer_does_not_make_the_gateway_block(lab, sig_dir, tmp_path):  # noqa: F811
    forged = IP(src=netlab.RESOLVER4, dst=netlab.CLIENT4) / UDP(sport=53, dport=40999)
    forged /= DNS(
        id=0x5EED,
        qr=1,
        qd=DNSQR(qname="www.tiktok.com"),
        an=DNSRR(rrname="www.tiktok.com", type="A", rdata=A("unrelated"), ttl=300),
    )
    args = base_args(sig_dir, "--mode", "inline", "--enforce", "--as-of", TIKTOK_ON)
    with gh.running(lab, tmp_path, *args) as gw:
        assert lab.ns_exec("servers", send_raw, bytes(forged), netlab.CLIENT4)
        time.sleep(0.2)  # it crosses the gateway before the client connects
        assert lab.tls_get("client", A("unrelated"), None).ok  # the forged address still works
        # Control: an answer bound to a real query still names a nameless flow, which is blocked.
        assert A("tiktok") in lab.dig("client", netlab.RESOLVER4, "www.tiktok.com").detail["addresses"]
        assert not lab.tls_get("client", A("tiktok"), None).ok
        named = gw.wait_records(
            lambda r: r["dst"] == A("unrelated") and r["dport"] == 443,
            what="record of the nameless flow to the forged address",
        )
        gw.wait_records(
            lambda r: r["dst"] == A("tiktok") and r["action"] == "block",
            what="block record of the nameless flow to the answered address",
        )
    (r,) = named
    assert (r["hostname"], r["hostname_source"], r["app"], r["confidence"]) == (
        "www.tiktok.com",
        "dns-unsolicited",
        "tiktok",
        "low",
    )
    assert (r["action"], r["rule"]) == ("log", "below-block-confidence")
    assert "bound to no query (dns-unsolicited" in r["evidence"][0]["value"]
    recs = gw.records()
    forged_flow = [x for x in recs if x["sport"] == 40999 or x["dport"] == 40999]
    assert forged_flow and any("dns-unsolicited" in n for n in forged_flow[0]["notes"])
    blocked = [x for x in recs if x["dst"] == A("tiktok") and x["dport"] == 443]
    assert all((x["hostname_source"], x["action"]) == ("dns", "block") for x in blocked)
