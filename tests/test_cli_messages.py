"""What the command line says when people hit its edges (issue 12, part 5): help text, missing
arguments, flags that change nothing, unreadable inputs, unenforced verdicts in the table, the
option a gateway error names, and build-prefixes on a RIB without operator routes."""

from __future__ import annotations

import io
import os
import re
import stat

from conftest import ROOT, SHARED, need_shared, run_cli

from classifier.progress import Progress

DEMO = str(ROOT / "pcaps" / "demo.pcap")


def test_top_level_help_lists_every_command_in_plain_words():
    out = run_cli("--help").stdout.decode()
    assert "``" not in out
    for command in ("scan", "policy", "signatures", "schema", "report", "gateway", "export", "bgp"):
        assert re.search(rf"^    {command}\b", out, re.M), command


def test_missing_subcommand_errors_name_no_internal_attribute():
    for args in (("signatures",), ("export",), ()):
        err = run_cli(*args, check_status=2).stderr.decode()
        assert "required: " in err
        assert "sig_command" not in err and "export_command" not in err and "command\n" not in err
        assert "COMMAND" in err or "FORMAT" in err


def test_unenforced_blocks_in_the_announced_view_is_warned_about():
    err = run_cli("scan", DEMO, "-q", "-o", "/dev/null", "--unenforced-blocks").stderr.decode()
    assert "warning: --unenforced-blocks applies to the in-force view only" in err
    err = run_cli("scan", DEMO, "-q", "-o", "/dev/null", "--unenforced-blocks", "--view", "in-force").stderr
    assert b"warning" not in err
    err = run_cli("export", "rpz", "--unenforced-blocks", "-q", "-o", os.devnull).stderr.decode()
    assert "warning: --unenforced-blocks" in err
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)  # written to, never replaced by a regular file


def test_scan_of_a_missing_file_prints_the_error_not_empty_tables(tmp_path):
    proc = run_cli("scan", str(tmp_path / "nonexist.pcap"), "--format", "table", check_status=3)
    assert proc.stdout == b""
    assert proc.stderr.decode() == f"classifier: error: {tmp_path / 'nonexist.pcap'}: no such file\n"
    proc = run_cli("scan", str(tmp_path / "nonexist.pcap"), check_status=3)
    assert "┏" not in proc.stderr.decode() and proc.stdout == b""


def test_in_force_table_marks_unenforced_prohibitions():
    # 2025-03-01: PAFACA in force but not enforced (EO 14166): logged, and the table says why.
    out = run_cli("scan", DEMO, "--as-of", "2025-03-01", "--view", "in-force", "--format", "table").stdout
    rows = [line for line in out.decode().splitlines() if "tiktok" in line and "hosting" in line]
    assert rows and all("log (unenforced)" in r for r in rows)
    out = run_cli(
        "scan",
        DEMO,
        "--as-of",
        "2025-03-01",
        "--view",
        "in-force",
        "--unenforced-blocks",
        "--format",
        "table",
    ).stdout.decode()
    assert "block (unenforced)" in out
    out = run_cli("scan", DEMO, "--as-of", "2025-03-01", "--format", "table").stdout.decode()
    assert "unenforced" not in out  # the announced view has no such window


def test_gateway_route_asn_errors_name_the_flag_or_the_file(tmp_path):
    err = run_cli(
        "gateway",
        "--mode",
        "inline",
        "--blackhole-routes",
        "--route-asn",
        "1",
        "--print-only",
        check_status=2,
    ).stderr.decode()
    assert err.startswith("classifier: error: --route-asn: AS1 is not in the signatures")
    conf = tmp_path / "gw.toml"
    conf.write_text("[routes]\nasns = [1]\n")
    err = run_cli(
        "gateway", "-c", str(conf), "--mode", "inline", "--blackhole-routes", "--print-only", check_status=2
    ).stderr.decode()
    assert f"{conf}: [routes] asns: AS1 is not in the signatures" in err


def test_build_prefixes_without_operator_routes_writes_nothing(tmp_path):
    rib = need_shared(SHARED / "mrt" / "mrtparse-sample_quagga_rib.mrt")
    out = tmp_path / "lists"
    err = run_cli(
        "signatures", "build-prefixes", str(rib), "-o", str(out), "--no-progress", check_status=2
    ).stderr.decode()
    assert "no prefix originated by an operator ASN" in err and "nothing written" in err
    assert len(err.splitlines()) == 1 and not out.exists()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_on_a_terminal_only():
    out = Tty()
    with Progress("reading x.mmdb", "networks", out=out) as p:
        for _ in range(10_000):
            p.tick()
    assert "reading x.mmdb: 0 networks" in out.getvalue() and out.getvalue().endswith("\r\x1b[K")
    assert p.count == 10_000
    quiet = Tty()
    with Progress("x", "networks", enabled=False, out=quiet) as p:
        p.tick()
    plain = io.StringIO()
    with Progress("x", "networks", out=plain) as p:
        p.tick()
    assert quiet.getvalue() == plain.getvalue() == ""
