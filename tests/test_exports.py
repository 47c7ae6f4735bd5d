"""Exports for the engines people run: Zeek Intel, Suricata rules, the RPZ serial, and router prefix
lists loaded in BIRD.

Zeek is not in Debian 12 main, nor Suricata (bookworm has no candidate), so those two are checked by
format here: the Intel file's ``#fields`` layout, and every Suricata rule through a parser of the
rule grammar (header, options, escaping, unique SIDs). The RPZ loads in a real Unbound on loopback
here; the nft export loads in nft in tests/test_bgp_prefixes.py; the BIRD sets load in bird -p.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import time
from pathlib import Path

from conftest import ROOT, need_program, run_cli

from classifier.bgp.prefixes import collapse
from classifier.gateway import rpz, suricata, zeekintel
from classifier.gateway.blocklist import name_verdicts
from classifier.timeutil import parse_instant

PAFACA = parse_instant("2025-03-01")  # TikTok hosting blocked (announced view)
WECHAT_PAY = parse_instant("2020-10-01")  # WeChat payments: announced effective, in force enjoined


def blocked_names(sigs, policy, when: float, view: str) -> set[str]:
    return {v.rule.pattern for v in name_verdicts(sigs, policy, when, view) if v.blocked}


def rpz_blocked(text: str) -> set[str]:
    return {
        line.split()[0]
        for line in text.splitlines()
        if line.endswith(" CNAME .") and not line.startswith("*.")
    }


# -- Zeek ------------------------------------------------------------------------------------------


def intel_rows(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("#fields\t"))
    fields = header.split("\t")[1:]
    rows = []
    for line in lines:
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        assert len(cols) == len(fields), line
        assert all(c and c == c.strip() for c in cols), line
        rows.append(dict(zip(fields, cols, strict=True)))
    return rows


def test_zeek_intel_lists_exactly_the_blocked_names(sigs, policy):
    text, counts = zeekintel.build_intel(sigs, policy, PAFACA, "announced")
    rows = intel_rows(text)
    assert {"indicator", "indicator_type", "meta.source", "meta.desc"} <= set(rows[0])
    assert {r["indicator_type"] for r in rows} == {"Intel::DOMAIN"}
    names = {r["indicator"] for r in rows}
    assert (
        names
        == blocked_names(sigs, policy, PAFACA, "announced")
        == rpz_blocked(rpz.build_zone(sigs, policy, PAFACA, "announced")[0])
    )
    assert "tiktok.com" in names and counts["Intel::DOMAIN"] == len(rows)
    tiktok = next(r for r in rows if r["indicator"] == "tiktok.com")
    assert "app tiktok; category hosting; provision tiktok-pafaca-hosting; signature " in tiktok["meta.desc"]
    assert tiktok["meta.source"].startswith("classifier signature tiktok.")


def test_zeek_intel_follows_instant_and_view(sigs, policy):
    assert intel_rows(zeekintel.build_intel(sigs, policy, parse_instant("2019-01-01"), "announced")[0]) == []
    pay = next(r for r in sigs.hosts.rules if r.app == "wechat" and r.role == "payments")
    announced = {
        r["indicator"] for r in intel_rows(zeekintel.build_intel(sigs, policy, WECHAT_PAY, "announced")[0])
    }
    in_force = {
        r["indicator"] for r in intel_rows(zeekintel.build_intel(sigs, policy, WECHAT_PAY, "in-force")[0])
    }
    assert pay.pattern in announced and pay.pattern not in in_force


def test_zeek_intel_operator_subnets_on_request(sigs, policy):
    text, counts = zeekintel.build_intel(sigs, policy, PAFACA, "announced", operator_prefixes=True)
    subnets = [r for r in intel_rows(text) if r["indicator_type"] == "Intel::SUBNET"]
    assert len(subnets) == counts["Intel::SUBNET"] > 0
    for r in subnets[:50]:
        ipaddress.ip_network(r["indicator"])
        assert "logged, not blocked" in r["meta.desc"]


# -- Suricata --------------------------------------------------------------------------------------

RULE = re.compile(r"^(alert|drop|reject) (tls|quic|dns|http) any any -> any any \((.*)\)$")
OPTION = re.compile(r'\s*([a-z_.]+)(?::\s*((?:[^;\\"]|\\.|"(?:[^"\\]|\\.)*")*))?;')
KNOWN = {
    "msg",
    "tls.sni",
    "quic.sni",
    "dns.query",
    "http.host",
    "dotprefix",
    "content",
    "startswith",
    "endswith",
    "nocase",
    "metadata",
    "sid",
    "rev",
}
BUFFER_OF = {"tls": "tls.sni", "quic": "quic.sni", "dns": "dns.query", "http": "http.host"}


def parse_rule(line: str) -> tuple[str, str, list[tuple[str, str | None]]]:
    """(action, protocol, options) of one rule; AssertionError on anything outside the grammar."""
    m = RULE.match(line)
    assert m, line
    body, options, pos = m.group(3), [], 0
    while pos < len(body):
        o = OPTION.match(body, pos)
        assert o, f"cannot parse at {body[pos : pos + 40]!r} in {line}"
        options.append((o.group(1), o.group(2)))
        pos = o.end()
    return m.group(1), m.group(2), options


def test_suricata_rules_parse_and_cover_every_blocked_name_in_each_buffer(sigs, policy):
    text, names = suricata.build_rules(sigs, policy, PAFACA, "announced")
    rules = [parse_rule(line) for line in text.splitlines() if line and not line.startswith("#")]
    assert names == len(blocked_names(sigs, policy, PAFACA, "announced")) and len(rules) == 4 * names
    sids = []
    covered: dict[str, set[str]] = {}
    for _action, proto, options in rules:
        keys = [k for k, _ in options]
        assert set(keys) <= KNOWN and keys.count("content") == 1
        assert keys[1] == BUFFER_OF[proto]  # the sticky buffer comes before its content
        opts = dict(options)
        sids.append(int(opts["sid"]))
        meta = dict(item.split(" ", 1) for item in opts["metadata"].split(", "))
        assert meta["view"] == "announced" and meta["provision"] and meta["signature"] in opts["msg"]
        content = opts["content"].strip('"')
        name = content.removeprefix(".")
        assert ("dotprefix" in keys) == content.startswith(".")
        if proto == "http":
            assert name == name.lower() and "nocase" not in keys
        covered.setdefault(name, set()).add(proto)
    assert len(set(sids)) == len(sids)
    assert covered == {
        n: {"tls", "quic", "dns", "http"} for n in blocked_names(sigs, policy, PAFACA, "announced")
    }


def test_suricata_sids_are_stable_and_escaping_holds(sigs, policy):
    a, _ = suricata.build_rules(sigs, policy, PAFACA, "announced")
    b, _ = suricata.build_rules(sigs, policy, PAFACA, "announced", action="drop")
    sid = re.compile(r"sid:(\d+);")
    assert sid.findall(a) == sid.findall(b) and b.count("\ndrop ") == a.count("\nalert ")
    assert suricata._content('a"b;c') == "a|22|b|3b|c"
    assert parse_rule(f'alert tls any any -> any any (msg:"{suricata._msg("x;y")}"; sid:1; rev:1;)')


def test_export_commands_write_dated_files(tmp_path):
    for kind in ("zeek-intel", "suricata"):
        out = tmp_path / kind
        proc = run_cli("export", kind, "--as-of", "2025-03-01", "--view", "in-force", "-o", str(out))
        assert "blocked names" in proc.stderr.decode()
        assert "names blocked at 2025-03-01T00:00:00Z, in-force view" in out.read_text()
    proc = run_cli("export", "suricata", "--sid-base", "4294967295", check_status=2)
    assert "--sid-base" in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()


# -- RPZ serial ------------------------------------------------------------------------------------


def soa_serial(text: str) -> int:
    return int(next(line for line in text.splitlines() if " SOA " in line).split()[4])


def test_rpz_serial_changes_with_the_content_at_the_same_instant(tmp_path, sigs, policy):
    from classifier.signatures import Signatures

    zone, _ = rpz.build_zone(sigs, policy, PAFACA, "announced")
    assert soa_serial(zone) == soa_serial(rpz.build_zone(sigs, policy, PAFACA, "announced")[0])
    # The same instant, one signature less: the content differs, and so must the serial.
    copy = tmp_path / "sigs"
    shutil.copytree(ROOT / "signatures", copy)
    app_file = copy / "apps" / "tiktok.toml"
    text = app_file.read_text()
    start = text.index('[[rule]]\nid = "tiktok.bytedapm.com"')
    end = text.index("[[rule]]", start + 1)
    app_file.write_text(text[:start] + text[end:])
    fewer = Signatures.load(copy)
    other, _ = rpz.build_zone(fewer, policy, PAFACA, "announced")
    assert other != zone and soa_serial(other) != soa_serial(zone)
    # Another TTL is other content too.
    assert soa_serial(rpz.build_zone(sigs, policy, PAFACA, "announced", ttl=61)[0]) != soa_serial(zone)


# -- router prefix lists -----------------------------------------------------------------------------


def test_prefix_lists_merge_adjacent_and_covered_prefixes():
    merged = collapse(
        [
            "192.0.2.0/25",
            "192.0.2.128/25",
            "192.0.2.64/26",
            "198.51.100.0/24",
            "2001:db8::/33",
            "2001:db8:8000::/33",
            "2001:db8:1::/48",
        ]
    )
    assert list(map(str, merged)) == ["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"]


def need_bird() -> str:
    return need_program("bird", "CI must load the BIRD export")


def test_bird_export_loads_in_bird(tmp_path):
    sets = tmp_path / "operators.conf"
    run_cli("signatures", "export-prefixes", "--format", "bird", "-o", str(sets))
    conf = tmp_path / "bird.conf"
    conf.write_text(f'router id 192.0.2.1;\ninclude "{sets}";\nprotocol device {{}}\n')
    proc = subprocess.run([need_bird(), "-p", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The check itself can fail: a broken prefix is refused.
    bad = tmp_path / "bad.conf"
    bad.write_text(Path(sets).read_text().replace("+", "/33+", 1))
    conf.write_text(f'router id 192.0.2.1;\ninclude "{bad}";\n')
    proc = subprocess.run([need_bird(), "-p", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


# -- the RPZ in Unbound (loopback only) -------------------------------------------------------------

UNBOUND_CONF = """server:
    interface: 127.0.0.1@{port}
    port: {port}
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-not-query-localhost: yes
    module-config: "respip validator iterator"
rpz:
    name: "rpz.classifier."
    zonefile: "{zone}"
    rpz-log: yes
"""


def need(command: str) -> str:
    return need_program(command)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rpz_export_loads_in_unbound_and_answers_nxdomain(tmp_path):
    zone = tmp_path / "zone.rpz"
    run_cli("export", "rpz", "--as-of", "2025-03-01", "-q", "-o", str(zone))
    port = free_port()
    conf = tmp_path / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(port=port, dir=tmp_path, zone=zone))
    check = subprocess.run([need("unbound-checkconf"), str(conf)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    server = subprocess.Popen(
        [need("unbound"), "-d", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        answer = ""
        for _ in range(50):  # until it listens (at most ~5 s)
            proc = subprocess.run(
                [need("dig"), "+time=1", "+tries=1", "-p", str(port), "@127.0.0.1", "www.tiktok.com", "A"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            answer = proc.stdout
            if "status:" in answer:
                break
            time.sleep(0.1)
        assert "status: NXDOMAIN" in answer, answer
    finally:
        server.terminate()
        log = server.communicate(timeout=10)[0]
    assert "rpz: applied *.tiktok.com. rpz-nxdomain" in log, log
