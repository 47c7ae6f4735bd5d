"""A fresh Debian 12 machine gets everything the tests and the gateway run, in known versions.

`make test` installs tools/debian-packages.txt and nothing else, so every external command in the
code and the tests must come from a package listed there (tools/audit_commands.py finds them), the
declared tables of commands (netlab.TOOLS, the gateway's preflight.COMMANDS) must cover their code,
and dpkg must agree that each listed package owns the commands the list says it provides. Python
packages come pinned from constraints.txt, which must name every one the project needs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import netlab
import pytest

from classifier.gateway import preflight

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("audit_commands", ROOT / "tools" / "audit_commands.py")
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)

DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # where Debian packages put programs (not /usr/local)


def test_every_command_run_is_provided_by_a_listed_package() -> None:
    uses = audit.scan()
    assert {"ip", "sysctl", "nft", "iptables", "tcpdump", "tshark", "unbound", "openssl"} <= set(uses)
    missing = audit.uncovered(uses, audit.package_map())
    assert not missing, f"commands no package in tools/debian-packages.txt provides: {missing}"


def test_a_package_missing_from_the_list_is_caught(tmp_path: Path) -> None:
    """The failure a fresh machine showed: no procps, so no sysctl for the namespace lab."""
    lines = audit.PACKAGE_LIST.read_text().splitlines()
    without = tmp_path / "debian-packages.txt"
    without.write_text("\n".join(line for line in lines if not line.startswith("procps")) + "\n")
    missing = audit.uncovered(audit.scan(), audit.package_map(without))
    assert list(missing) == ["sysctl"]
    assert any(where.startswith("tests/netlab.py:") for where in missing["sysctl"])


def test_the_scan_finds_each_form_of_command_and_nothing_else() -> None:
    source = """
import shutil, subprocess
subprocess.run(["conntrack", "-L"], check=True)
proc = subprocess.Popen(("ethtool", "-k", "eth0"))
lab.run("gateway", ["bridge", "fdb", "show"])
argv = ["ss", "-tn"] if numeric else ["ss", "-t"]
wrap = ("nsenter", "--net=/run/netns/x")
shutil.which("arping")
for tool in ("arptables", "ebtables"):
    subprocess.run([tool, "-L"])
TOOLS = ("tc",)
parser.parse_args(["scan", "--format", "table"])
labels = ["mode", "action"]
for name in ("eth0", "eth1"):
    print(name)
"""
    found = audit.commands_in(source)
    assert set(found) == {
        "conntrack",
        "ethtool",
        "bridge",
        "ss",
        "nsenter",
        "arping",
        "arptables",
        "ebtables",
        "tc",
    }
    assert found["conntrack"] == [3] and found["ss"] == [6, 6]
    assert set(audit.uncovered({c: ["here"] for c in found}, audit.package_map())) == set(found)


def test_package_list_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "debian-packages.txt"
    bad.write_text("procps   # provides: sysctl\nbusybox  # provides: sysctl\n")
    with pytest.raises(ValueError, match=r"debian-packages.txt:2: sysctl is already provided by procps"):
        audit.package_map(bad)
    bad.write_text("procps   # provides: sysctl, not a name\n")
    with pytest.raises(ValueError, match=r":1: 'not a name' is not a command name"):
        audit.package_map(bad)


def test_the_audit_script_prints_command_package_and_use(tmp_path: Path) -> None:
    script = str(ROOT / "tools" / "audit_commands.py")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^sysctl +procps +tests/netlab\.py:\d+", proc.stdout, re.M), proc.stdout


def test_declared_tables_cover_their_code() -> None:
    lab_uses = audit.commands_in((ROOT / "tests" / "netlab.py").read_text())
    assert set(lab_uses) <= set(netlab.TOOLS), set(lab_uses) - set(netlab.TOOLS)
    gateway_uses: set[str] = set()
    for path in sorted((ROOT / "classifier").rglob("*.py")):
        gateway_uses |= set(audit.commands_in(path.read_text(), str(path)))
    assert gateway_uses == set(preflight.COMMANDS)
    provides = audit.package_map()
    assert not (set(netlab.TOOLS) | set(preflight.COMMANDS)) - set(provides)


def test_the_lab_refuses_an_undeclared_program() -> None:
    lab = netlab.Lab()  # not entered: no namespace is made, only its temporary directory
    undeclared, python_by_name = "conntrack", "python3"  # names, not literals: the scan skips them
    try:
        with pytest.raises(netlab.LabError, match=r"'conntrack' is not in netlab.TOOLS"):
            lab.run("client", [undeclared, "-L"])
        with pytest.raises(netlab.LabError, match=r"'python3' is not in netlab.TOOLS"):
            lab.popen("client", [python_by_name, "-c", "pass"])
    finally:
        lab.close()
    assert not lab.dir.exists()


def _dpkg_owners(path: str) -> set[str]:
    """Packages dpkg says own ``path`` (also as its target, and its /usr-less alias on merged /usr)."""
    candidates = {path, os.path.realpath(path)}
    candidates |= {c.removeprefix("/usr") for c in candidates if c.startswith("/usr/")}
    proc = subprocess.run(["dpkg-query", "-S", *sorted(candidates)], capture_output=True, text=True)
    owners = set()
    for line in proc.stdout.splitlines():
        if line.startswith("diversion ") or ": " not in line:
            continue
        owners |= {p.strip().split(":")[0] for p in line.split(": ", 1)[0].split(",")}
    return owners


def test_dpkg_agrees_with_the_list() -> None:
    if shutil.which("dpkg-query") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs on Debian, but dpkg-query is missing")
        pytest.skip("not a Debian system")
    listed = set(audit.packages())
    wrong, absent = [], []
    for command, package in sorted(audit.package_map().items()):
        assert package in listed
        path = shutil.which(command, path=DEBIAN_PATH)
        if path is None:
            absent.append(f"{command} ({package})")
            continue
        owners = _dpkg_owners(path)
        if package not in owners:
            owned_by = ", ".join(sorted(owners)) or "no package"
            wrong.append(f"{command}: listed as {package}, owned by {owned_by}")
    assert not wrong
    if absent and os.environ.get("CI"):  # make test installed every listed package
        pytest.fail(f"commands of listed packages not installed: {', '.join(absent)}")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.partition("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt:{number}: {line!r} is not name==version"
            pins[_norm(name)] = version.strip()
    return pins


def _needed() -> dict[str, str]:
    """Every distribution the project needs with extras gateway, test and dask (transitively): its version."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo = [("classifier", frozenset({"gateway", "test", "dask"}))]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (_norm(name), extras) in done:
            continue
        done.add((_norm(name), extras))
        dist = metadata.distribution(name)
        found[_norm(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((req.name, frozenset(req.extras)))
    del found["classifier"]
    return found


def test_constraints_pin_every_python_package_the_project_needs() -> None:
    pins, needed = _pins(), _needed()
    assert {"pytest", "ruff", "scapy", "dpkt", "netfilterqueue", "aioquic"} <= set(needed)
    unpinned = sorted(set(needed) - set(pins))
    assert not unpinned, f"not pinned in constraints.txt: {unpinned}"
    assert {"pip", "setuptools"} <= set(pins)  # the installer and the build back-end too
    if os.environ.get("CI"):  # make test installed exactly these
        differ = {n: (v, pins[n]) for n, v in needed.items() if v != pins[n]}
        assert not differ, f"installed (left) differs from constraints.txt (right): {differ}"


def test_make_installs_through_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs and all("$(PIN)" in line for line in installs), installs
    assert "PIN := -c constraints.txt" in makefile and "--build-constraint constraints.txt" in makefile
