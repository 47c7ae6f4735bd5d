"""A 2026 RIB with ByteDance and Tencent routes, synthetic but built from real prefixes.

No public MRT excerpt with a ByteDance ASN could be found (the public test files are from 2016 or
earlier; ../shared/docs/data-sources.md, "MRT"), so this module writes one: a TABLE_DUMP_V2 RIB
dumped at 2026-09-16T08:00:00Z (the build date of the prefix lists) holding every prefix of
../shared/data/asn for AS396986, AS138699 (ByteDance) and AS45090, AS132203 (Tencent), IPv4 and
IPv6, as three sessions of a collector (documentation addresses and ASNs) see them:

* AS64500 198.51.100.1, a transit customer session: ``64500 2914 396986`` and
  ``64500 2914 138699`` for ByteDance, ``64500 3491 45090`` and ``64500 9304 132203`` for Tencent
  (indirect). AS2914, AS3491 and AS9304 are the transit networks that carried Tencent's prefixes
  to PCH in the real 2015 file (pch-as3856_updates.et-header.20151023.gz); for ByteDance no public
  path data was reachable offline, so AS2914 is an assumption, not an observed upstream.
* AS64510 198.51.100.10, an IXP route server: ``396986`` and ``132203`` with the server's
  community 64510:1 (the route server is not in the path: direct, multilateral peering).
* AS64501 2001:db8::1, a bilateral IPv6 session with TikTok Pte. Ltd.: ``64501 138699`` for
  AS138699's IPv6 prefixes (direct).

``python tests/bgp_recent.py OUT.mrt`` writes it (docs/bgp-audit.md shows its audit).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import test_bgp_mrtwriter as w

ROOT = Path(__file__).resolve().parents[1]
ASN_LISTS = ROOT.parent / "shared" / "data" / "asn"
DUMP = 1_789_545_600  # 2026-09-16T08:00:00Z
ORIGINATED = DUMP - 86_400 * 20
TRANSIT = (64500, "198.51.100.1")
ROUTE_SERVER = (64510, "198.51.100.10")
BILATERAL_V6 = (64501, "2001:db8::1")
UPSTREAM = {396986: 2914, 138699: 2914, 45090: 3491, 132203: 9304}


def prefixes(asn: int, family: int, lists: Path = ASN_LISTS) -> list[str]:
    """The prefixes of one shipped per-ASN list (comments skipped)."""
    text = (lists / f"{asn}-ipv{family}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _attrs(path: tuple[int, ...], nh: str, community: tuple[int, int] | None = None) -> bytes:
    comm = w.attr(8, struct.pack(">HH", *community), 0xC0) if community else b""
    return w.rib_attrs(w.seq(*path), nh) + comm


def build(lists: Path = ASN_LISTS) -> bytes:
    peers = [TRANSIT[::-1], ROUTE_SERVER[::-1], BILATERAL_V6[::-1]]
    out = [w.peer_index_table(DUMP, peers, view="recent-2026")]
    seq = 0
    written: set[str] = set()
    for origin in UPSTREAM:
        for family in (4, 6):
            for prefix in prefixes(origin, family, lists):
                if prefix in written:  # in two lists (an origin moved between the DBs): one RIB record
                    continue
                written.add(prefix)
                nh = "2001:db8::9" if family == 6 else "192.0.2.9"
                entries = [(0, ORIGINATED, _attrs((TRANSIT[0], UPSTREAM[origin], origin), nh), None)]
                if origin in (396986, 132203):
                    rs_hop = "2001:db8::20" if family == 6 else "198.51.100.20"
                    entries.append((1, ORIGINATED, _attrs((origin,), rs_hop, (ROUTE_SERVER[0], 1)), None))
                if origin == 138699 and family == 6:
                    entries.append((2, ORIGINATED, _attrs((BILATERAL_V6[0], origin), "2001:db8::1"), None))
                out.append(w.rib(DUMP, seq, prefix, entries))
                seq += 1
    return b"".join(out)


if __name__ == "__main__":
    Path(sys.argv[1]).write_bytes(build())
