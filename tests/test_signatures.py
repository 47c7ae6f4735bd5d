"""Signature loading, validation and matching; the builder reproduces the shipped data."""

import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from classifier.errors import SignatureError, UserError
from classifier.sigmatch import HostMatcher
from classifier.sigmodel import HostRule
from classifier.signatures import Signatures, shipped_directory

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "signatures"
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="module")
def sigs() -> Signatures:
    return Signatures.load()


def addr(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


# ---------------------------------------------------------------------------------------------
# The shipped set
# ---------------------------------------------------------------------------------------------


def test_shipped_directory_is_the_repository_set():
    assert shipped_directory().resolve() == SHIPPED.resolve()


def test_shipped_set_loads_fast_and_is_complete(sigs):
    start = time.perf_counter()
    Signatures.load()
    assert time.perf_counter() - start < 1.0
    assert set(sigs.apps) == {"tiktok", "wechat"}
    assert sigs.apps["tiktok"].operator == "bytedance"
    assert sigs.apps["wechat"].operator == "tencent"
    assert set(sigs.operators["bytedance"].asns) == {396986, 138699, 150436, 137718, 11983}
    assert set(sigs.operators["tencent"].asns) == {45090, 132203, 133478, 132591, 137876}
    assert sigs.operator_by_asn[11983] == "bytedance"
    assert sigs.operator_by_asn[132591] == "tencent"
    assert 20940 not in sigs.operator_by_asn and sigs.cdn_by_asn[20940] == "akamai"
    assert {"akamai", "fastly", "cloudflare", "cdnetworks", "kingsoft", "alibaba"} <= set(sigs.cdns)
    assert len(sigs.prefixes) > 19000
    assert len(sigs.hosts) > 100
    assert sigs.peering == {}  # the example peering map is not loaded by default


def test_every_entry_has_source_and_iso_date(sigs):
    entries = [
        *sigs.hosts.rules,
        *sigs.cname_suffixes,
        *sigs.store_rules,
        *sigs.apps.values(),
        *sigs.operators.values(),
        *sigs.cdns.values(),
        *sigs.asns.values(),
        *sigs.stores.values(),
    ]
    assert len(entries) > 200
    for entry in entries:
        assert entry.source.strip(), entry
        assert dt.date.fromisoformat(entry.date).isoformat() == entry.date, entry


def test_no_blocklist_only_noise_and_no_china_apps_as_tiktok(sigs):
    # data-sources.md §6: random-looking names only blocklistproject has.
    for host in ("xzcs3zlph.com", "0pbxmo.xzcs3zlph.com", "qfyf1toi.com", "zwtianshangm.com"):
        assert sigs.hosts.match(host) is None, host
    for host in ("www.douyin.com", "www.toutiao.com", "p3.byteimg.com", "api.snssdk.com", "www.capcut.com"):
        rule = sigs.hosts.match(host)
        assert rule is not None and rule.app is None and rule.operator == "bytedance", host
    assert sigs.hosts.match("api.amemv.com") is None  # Douyin API name: not TikTok, not shipped


# ---------------------------------------------------------------------------------------------
# Host names
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["tiktok.com", "www.tiktok.com", "TIKTOK.COM.", "Www.TikTok.com"])
def test_suffix_matches_on_label_boundaries(sigs, host):
    rule = sigs.hosts.match(host)
    assert rule is not None and rule.id == "tiktok.tiktok.com" and rule.app == "tiktok"


@pytest.mark.parametrize("host", ["faketiktok.com", "tiktok.com.example.net", "com", "", ".", "tiktok.co"])
def test_suffix_does_not_match_across_labels(sigs, host):
    assert sigs.hosts.match(host) is None


@pytest.mark.parametrize(
    "host",
    [
        "hkminorshort.weixin.qq.com",
        "short.weixin.qq.com",
        "weixin.qq.com",
        "wx.qq.com",
        "mmbiz.qpic.cn",
        "mmsns.qpic.cn",
        "res.wx.qq.com",
        "web.wechat.com",
        "webpush.web.wechat.com",
    ],
)
def test_wechat_hosts(sigs, host):
    rule = sigs.hosts.match(host)
    assert rule is not None and rule.app == "wechat" and rule.operator == "tencent", host


@pytest.mark.parametrize(
    "host",
    [
        "www.qq.com",
        "vv.video.qq.com",
        "qzonestyle.gtimg.cn",
        "pingma.qq.com",
        "cgi.connect.qq.com",
        "qpic.cn",
        "p.qpic.cn",
        "dldir1.qq.com",
    ],
)
def test_qq_hosts_are_tencent_but_not_wechat(sigs, host):
    rule = sigs.hosts.match(host)
    assert rule is not None and rule.app is None and rule.operator == "tencent", host


def test_search_suffix_name_is_not_wechat(sigs):
    assert sigs.hosts.match("webpush.web.wechat.com.lan") is None


def test_roles(sigs):
    def role(host):
        return sigs.hosts.match(host).role

    assert role("pay.weixin.qq.com") == "payments"
    assert role("api.mch.weixin.qq.com") == "payments"
    assert role("www.wechatpay.com") == "payments"
    assert role("wechatpay.com.hk") == "payments"
    assert role("res.wx.qq.com") == "cdn"
    assert role("analytics.tiktok.com") == "sdk"  # the pixel: category code-use
    assert role("v16m.tiktokcdn.com") == "cdn"
    assert role("api16-normal-c-useast1a.tiktokv.com") == "api"
    # tenpay.com is shared with QQ Wallet: payments, but the app stays unknown
    tenpay = sigs.hosts.match("www.tenpay.com")
    assert (tenpay.app, tenpay.operator, tenpay.role) == (None, "tencent", "payments")
    assert sigs.hosts.match("wx.tenpay.com").app == "wechat"


def test_third_party_cdn_names_are_specific(sigs):
    for host in (
        "p16-tiktokcdn-com.akamaized.net",
        "api16-va.tiktokv.com.edgekey.net",
        "v16.tiktokcdn.com.edgesuite.net",
        "h1.bytedance.map.fastly.net",
        "api-t3.tiktokv.com.cdn.cloudflare.net",
        "cdn.tiktok.com.c.footprint.net",
    ):
        rule = sigs.hosts.match(host)
        assert rule is not None and rule.app == "tiktok" and rule.role == "cdn", host
    for host in (
        "akamaized.net",
        "x.akamaized.net",
        "www.instagram.com.edgekey.net",
        "map.fastly.net",
        "p16-tiktokcdn-com.akamaized.net.evil.example",
        "x.p16-tiktokcdn-com.akamaized.net",
    ):
        assert sigs.hosts.match(host) is None, host


def test_most_specific_rule_wins():
    def rule(ident, pattern, exact, app=None):
        return HostRule(ident, pattern, exact, app, "op", "web", "high", "test", "2026-01-01")

    m = HostMatcher(
        [
            rule("a", "example.com", False),
            rule("b", "deep.example.com", False, "x"),
            rule("c", "host.deep.example.com", True, "y"),
        ]
    )
    assert m.match("host.deep.example.com").id == "c"
    assert m.match("sub.host.deep.example.com").id == "b"  # exact rules do not cover subdomains
    assert m.match("other.deep.example.com").id == "b"
    assert m.match("www.example.com").id == "a"
    assert m.match("example.org") is None
    assert len(m) == 3


# ---------------------------------------------------------------------------------------------
# Prefixes
# ---------------------------------------------------------------------------------------------


def test_lpm_tiktok_us_more_specific_inside_bytedance_space(sigs):
    inner = sigs.prefixes.lookup(addr("71.18.6.1"))  # 71.18.6.0/24 is AS11983 inside AS396986 space
    assert (inner.asn, inner.owner, inner.kind) == (11983, "bytedance", "operator")
    assert inner.network == "71.18.6.0/24"
    outer = sigs.prefixes.lookup(addr("71.18.1.1"))
    assert (outer.asn, outer.owner) == (396986, "bytedance")
    assert outer.network != inner.network


def test_lpm_tencent_akamai_ipv6_and_miss(sigs):
    wechat = sigs.prefixes.lookup(addr("203.205.147.171"))
    assert (wechat.asn, wechat.owner, wechat.kind) == (132203, "tencent", "operator")
    edge = sigs.prefixes.lookup(addr("92.122.95.99"))
    assert (edge.owner, edge.kind, edge.asn) == ("akamai", "cdn", 20940)
    v6 = sigs.prefixes.lookup(addr("2605:340::1"))
    assert v6.owner == "bytedance" and v6.asn in (396986, 11983) and v6.network.startswith("2605:340:")
    assert sigs.prefixes.lookup(addr("192.0.2.1")) is None
    assert sigs.prefixes.lookup(addr("2001:db8::1")) is None
    assert sigs.prefixes.lookup(b"\x01\x02\x03") is None


def test_prefix_entries_carry_their_asn_entry(sigs):
    entry = sigs.prefixes.lookup(addr("203.205.147.171"))
    asn = sigs.asns[entry.asn]
    assert entry.id == asn.id == "AS132203"
    assert entry.source == asn.source and entry.date == asn.date == "2026-09-16"


# ---------------------------------------------------------------------------------------------
# CNAME suffixes and app stores
# ---------------------------------------------------------------------------------------------


def test_cname_provider(sigs):
    assert sigs.cname_provider("api16-va.tiktokv.com.edgekey.net").provider == "akamai"
    assert sigs.cname_provider("e1234.a.akamaiedge.net.").provider == "akamai"
    assert sigs.cname_provider("bytedance.map.fastly.net").provider == "fastly"
    assert sigs.cname_provider("d1abc.CloudFront.net").provider == "cloudfront"
    assert sigs.cname_provider("api-t3.tiktokv.com.cdn.cloudflare.net").provider == "cloudflare"
    assert sigs.cname_provider("cloudflare.net") is None  # only the cdn. subdomain is the CNAME domain
    assert sigs.cname_provider("notedgekey.net") is None
    assert sigs.cname_provider("www.tiktok.com") is None


def test_store_match(sigs):
    play = sigs.store_match("play.google.com", "/store/apps/details?id=com.zhiliaoapp.musically&hl=en")
    assert (play.app, play.store, play.package) == ("tiktok", "google-play", "com.zhiliaoapp.musically")
    assert sigs.store_match("PLAY.GOOGLE.COM.", "/store/apps/details?id=com.tencent.mm").app == "wechat"
    assert sigs.store_match("apps.apple.com", "/us/app/tiktok/id835599320").app == "tiktok"
    assert sigs.store_match("itunes.apple.com", "/cn/app/wei-xin/id414478124?mt=8").app == "wechat"
    # not the package: a longer package name, a longer number, another host, no id
    assert sigs.store_match("play.google.com", "/store/apps/details?id=com.zhiliaoapp.musically.go") is None
    assert sigs.store_match("play.google.com", "/store/apps/details?id=com.tencent.mmx") is None
    assert sigs.store_match("apps.apple.com", "/us/app/x/id4144781240") is None
    assert sigs.store_match("www.example.com", "/?id=com.zhiliaoapp.musically") is None
    assert sigs.store_match("play.google.com", "/store/apps/top") is None


def test_peering_example_loads_only_when_given():
    sigs = Signatures.load(peering=SHIPPED / "peering.example.toml")
    assert sigs.peering == {"00:00:5e:00:53:01": 64496, "if:pni0": 64497}


# ---------------------------------------------------------------------------------------------
# Validation: a broken copy names the file and the entry
# ---------------------------------------------------------------------------------------------


def copy_shipped(tmp_path: Path) -> Path:
    root = tmp_path / "sigs"
    shutil.copytree(SHIPPED, root, ignore=shutil.ignore_patterns("policy", "build", "__pycache__"))
    return root


def broken_copy(tmp_path: Path, rel: str, old: str, new: str) -> Path:
    """A copy of the shipped signatures with the first `old` replaced by `new` in file `rel`."""
    root = copy_shipped(tmp_path)
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return root


def load_error(root: Path, **kwargs) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        Signatures.load(root, **kwargs)
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)
    return info.value


def test_toml_syntax_error(tmp_path):
    root = broken_copy(tmp_path, "apps/wechat.toml", 'role = "api"', 'role = "api')
    err = load_error(root)
    assert err.path.endswith("apps/wechat.toml")
    assert re.fullmatch(r"line \d+, column \d+", err.entry)
    assert "TOML syntax error" in str(err)


@pytest.mark.parametrize("field", ["source", "date"])
def test_missing_source_or_date(tmp_path, field):
    root = copy_shipped(tmp_path)
    path = root / "apps" / "tiktok.toml"
    text = path.read_text()
    start = text.index('id = "tiktok.tiktokv.com"')
    line_start = text.index(f"\n{field} = ", start) + 1
    line_end = text.index("\n", line_start) + 1
    path.write_text(text[:line_start] + text[line_end:])
    err = load_error(root)
    assert err.path.endswith("apps/tiktok.toml")
    assert err.entry == "rule 'tiktok.tiktokv.com'"
    assert err.field == field and err.problem == "missing"
    assert str(err).endswith(f"apps/tiktok.toml: rule 'tiktok.tiktokv.com': {field}: missing")


def test_bad_date(tmp_path):
    root = broken_copy(tmp_path, "app-stores.toml", 'date = "2026-11-28"', 'date = "28/11/2026"')
    err = load_error(root)
    assert err.path.endswith("app-stores.toml") and err.entry == "store 'google-play'"
    assert "YYYY-MM-DD" in err.problem


def test_unknown_role(tmp_path):
    root = broken_copy(
        tmp_path,
        "apps/tiktok.toml",
        'suffix = "tiktokv.com"\nrole = "api"',
        'suffix = "tiktokv.com"\nrole = "hosting"',
    )
    err = load_error(root)
    assert err.path.endswith("apps/tiktok.toml") and err.entry == "rule 'tiktok.tiktokv.com'"
    assert err.field == "role" and err.problem.startswith("'hosting' is not one of api, cdn, payments")


def test_unknown_app(tmp_path):
    root = broken_copy(tmp_path, "operators.toml", 'apps = ["wechat"]', 'apps = ["wechat", "qq"]')
    err = load_error(root)
    assert err.path.endswith("operators.toml") and err.entry == "operator 'tencent'"
    assert "unknown app 'qq'" in err.problem

    root = broken_copy(tmp_path / "2", "app-stores.toml", 'app = "wechat"', 'app = "weixin"')
    err = load_error(root)
    assert err.path.endswith("app-stores.toml") and err.entry == "package 'wechat.google-play'"
    assert "unknown app 'weixin'" in err.problem


def test_unknown_operator(tmp_path):
    root = broken_copy(tmp_path, "apps/wechat.toml", 'operator = "tencent"', 'operator = "tencnet"')
    err = load_error(root)
    assert err.path.endswith("apps/wechat.toml") and err.entry == "app 'wechat'"
    assert "unknown operator 'tencnet'" in err.problem

    root = broken_copy(
        tmp_path / "2",
        "operators.toml",
        'id = "tencent.qq.com"\noperator = "tencent"',
        'id = "tencent.qq.com"\noperator = "alibaba"',
    )
    err = load_error(root)
    assert err.entry == "rule 'tencent.qq.com'" and "unknown operator 'alibaba'" in err.problem


def _insert_prefix_line(root: Path, rel: str, bad: str) -> int:
    """Replace the first prefix line of a prefix file with `bad`; return its line number."""
    path = root / rel
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    lines[number] = bad
    path.write_text("\n".join(lines) + "\n")
    return number + 1


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("71.18.0.0/33", "prefix length 33 exceeds 32"),
        ("71.18.0.1/16", "host bits set (the network is 71.18.0.0/16)"),
        ("71.18.0/16", "bad IPv4 address"),
        ("71.18.0.0", "not address/length"),
        ("2605:340::/32", "not an IPv4 prefix"),
    ],
)
def test_bad_prefix_names_file_and_line(tmp_path, bad, problem):
    root = copy_shipped(tmp_path)
    line = _insert_prefix_line(root, "prefixes/AS396986-ipv4.txt", bad)
    err = load_error(root)
    assert err.path.endswith("prefixes/AS396986-ipv4.txt")
    assert err.entry == f"line {line}: '{bad}'"
    assert problem in err.problem


def test_prefix_listed_twice(tmp_path):
    root = copy_shipped(tmp_path)
    _insert_prefix_line(root, "prefixes/AS45090-ipv4.txt", "203.205.147.0/24")
    _insert_prefix_line(root, "prefixes/AS132203-ipv4.txt", "203.205.147.0/24")
    err = load_error(root)
    assert "203.205.147.0/24" in err.entry and "also listed under AS" in err.problem


def test_duplicate_id(tmp_path):
    root = broken_copy(tmp_path, "apps/wechat.toml", 'id = "wechat.wx.qq.com"', 'id = "wechat.weixin.qq.com"')
    err = load_error(root)
    assert err.path.endswith("apps/wechat.toml") and err.entry == "rule 'wechat.weixin.qq.com'"
    assert "duplicate id" in err.problem

    root = broken_copy(tmp_path / "2", "operators.toml", 'id = "tencent.qq.com"', 'id = "tiktok.tiktok.com"')
    err = load_error(root)
    assert err.path.endswith("operators.toml") and "duplicate id (also in" in err.problem


def test_duplicate_pattern(tmp_path):
    root = broken_copy(tmp_path, "operators.toml", 'suffix = "qpic.cn"', 'suffix = "mmbiz.qpic.cn"')
    err = load_error(root)
    assert err.entry == "rule 'tencent.qpic.cn'" and "duplicates rule 'wechat.mmbiz.qpic.cn'" in err.problem


@pytest.mark.parametrize("bad", [".tiktok.com", "TikTok.com", "tiktok .com", "*.tiktok.com", "tiktok.com."])
def test_bad_suffix(tmp_path, bad):
    root = broken_copy(tmp_path, "apps/tiktok.toml", 'suffix = "tiktok.com"', f'suffix = "{bad}"')
    err = load_error(root)
    assert err.path.endswith("apps/tiktok.toml") and err.entry == "rule 'tiktok.tiktok.com'"
    assert "is not a lowercase host name" in err.problem


def test_bad_cname_suffix(tmp_path):
    root = broken_copy(tmp_path, "cdn.toml", 'suffix = "edgekey.net"', 'suffix = ".edgekey.net"')
    err = load_error(root)
    assert err.path.endswith("cdn.toml") and err.entry == "cname 'akamai.edgekey.net'"


def test_unknown_key(tmp_path):
    old = 'suffix = "tiktok.com"'
    root = broken_copy(tmp_path, "apps/tiktok.toml", old, old + "\nsufix = 1")
    err = load_error(root)
    assert err.entry == "rule 'tiktok.tiktok.com'" and "unknown key 'sufix' (allowed: id, " in err.problem

    root = broken_copy(tmp_path / "2", "cdn.toml", "[[provider]]", "[[providers]]")
    err = load_error(root)
    assert err.path.endswith("cdn.toml") and err.entry == "providers"
    assert "unknown top-level table (allowed: provider, asn, cname)" in err.problem


def test_bad_peering_file(tmp_path):
    path = tmp_path / "peering.toml"
    path.write_text('[[neighbour]]\nmac = "00:00:5e:00:53"\nasn = 64496\nsource = "x"\ndate = "2026-01-01"\n')
    err = load_error(SHIPPED, peering=path)
    assert err.path == str(path) and err.entry == "neighbour #1" and "six hex pairs" in err.problem
    path.write_text('[[neighbour]]\ninterface = "eth1"\nasn = 64496\ndate = "2026-01-01"\n')
    err = load_error(SHIPPED, peering=path)
    assert err.entry == "neighbour 'if:eth1'" and err.field == "source" and err.problem == "missing"


def test_missing_directory(tmp_path):
    err = load_error(tmp_path / "nope")
    assert err.path.endswith("nope") and "does not exist" in err.problem


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------


def test_builder_reproduces_shipped_data(tmp_path):
    if not (SHARED / "data").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} is missing in CI")
        pytest.skip(f"{SHARED} is not present")
    check = (SHIPPED / "prefixes" / "CHECK.tsv").read_text()
    build_date = re.search(r"^# build-date: (\S+)$", check, re.M).group(1)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "build_signatures.py"),
            str(SHARED),
            "--out",
            str(out),
            "--build-date",
            build_date,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    built = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert Path("apps/tiktok.toml") in built and Path("prefixes/CHECK.tsv") in built
    for rel in built:
        assert (out / rel).read_bytes() == (SHIPPED / rel).read_bytes(), f"{rel} differs from the build"
    shipped_prefixes = {p.relative_to(SHIPPED) for p in (SHIPPED / "prefixes").iterdir()}
    assert shipped_prefixes == {p for p in built if p.parts[0] == "prefixes"}, "stale prefix files"


def test_cache_is_used_and_invalidated_by_any_change(tmp_path, monkeypatch):
    import shutil

    from classifier.signatures import Signatures, shipped_directory

    monkeypatch.setenv("CLASSIFIER_CACHE_DIR", str(tmp_path / "cache"))
    d = tmp_path / "sigs"
    shutil.copytree(shipped_directory(), d)
    first = Signatures.load(d)
    cached = list((tmp_path / "cache" / "classifier").glob("signatures-*.json"))
    assert len(cached) == 1
    second = Signatures.load(d)
    assert second.hosts.match("www.tiktok.com").id == first.hosts.match("www.tiktok.com").id
    assert len(second.prefixes) == len(first.prefixes)
    # a change to a prefix file means a fresh load (and here a validation error), never the cache
    with open(d / "prefixes" / "AS45090-ipv4.txt", "a") as f:
        f.write("10.0.0.0/33\n")
    with pytest.raises(SignatureError) as exc:
        Signatures.load(d)
    assert "AS45090-ipv4.txt" in str(exc.value)


def test_cache_keeps_copies_apart(tmp_path, monkeypatch):
    """Two directories with the same files are two cache entries: each set knows its directory."""
    import shutil

    from classifier.signatures import Signatures, shipped_directory

    monkeypatch.setenv("CLASSIFIER_CACHE_DIR", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(shipped_directory(), a)
    shutil.copytree(shipped_directory(), b)
    assert Signatures.load(a).directory == a
    assert Signatures.load(b).directory == b
    assert Signatures.load(a).directory == a  # from the cache now
