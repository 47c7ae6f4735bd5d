"""Checks before the gateway touches anything: privileges, kernel support, interfaces.

Each failure is one line that says what is missing and how to get it, raised as ``UserError``
(exit status 2), so a gateway never half-starts and then fails with a traceback from a socket call.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from classifier.errors import UserError

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13

#: Every external program the gateway may run: nft (only without libnftables), iptables/ip6tables
#: (iptables backend), modprobe (to load nfnetlink_queue). tools/debian-packages.txt names the package
#: of each; tests/test_setup_audit.py checks that this table covers the gateway's code.
COMMANDS = ("nft", "iptables", "ip6tables", "modprobe")


def effective_caps(proc: Path = Path("/proc")) -> int:
    """The effective capability mask of this process (0 if it cannot be read)."""
    try:
        for line in (proc / "self" / "status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def require_privileges(proc: Path = Path("/proc"), need_raw: bool = True) -> None:
    """Root with CAP_NET_ADMIN (and CAP_NET_RAW for captures and resets)."""
    if os.geteuid() != 0:
        raise UserError(
            "classifier gateway must run as root (it installs netfilter rules, routes and "
            "captures packets); try sudo"
        )
    caps = effective_caps(proc)
    if not caps >> CAP_NET_ADMIN & 1:
        raise UserError(
            "CAP_NET_ADMIN is missing: running as root but without the capability to change "
            "the network configuration (container or systemd CapabilityBoundingSet?)"
        )
    if need_raw and not caps >> CAP_NET_RAW & 1:
        raise UserError("CAP_NET_RAW is missing: it is needed to capture packets and send TCP resets")


def require_interfaces(names: tuple[str, ...]) -> dict[str, int]:
    """Interface name -> index; a missing interface is an error naming it."""
    found = {}
    for name in names:
        try:
            found[name] = socket.if_nametoindex(name)
        except OSError:
            raise UserError(
                f"interface {name!r} does not exist in this network namespace (see `ip link`)"
            ) from None
    return found


def require_nf_tables(nft) -> None:
    """nf_tables must answer a listing; a kernel without it says 'Protocol not supported'."""
    from .nftlib import NftError

    try:
        nft.run("list tables")
    except NftError as err:
        raise UserError(
            f"the kernel has no usable nf_tables support ({err}); load nf_tables "
            "(modprobe nf_tables) or use a kernel built with CONFIG_NF_TABLES"
        ) from None


def require_nfqueue(proc: Path = Path("/proc")) -> None:
    """NFQUEUE needs nfnetlink_queue, which shows itself in /proc once loaded."""
    marker = proc / "net" / "netfilter" / "nfnetlink_queue"
    if not marker.exists() and shutil.which("modprobe"):
        subprocess.run(["modprobe", "-q", "nfnetlink_queue"], capture_output=True)
    if not marker.exists():
        raise UserError(
            "the kernel has no NFQUEUE support (nfnetlink_queue is not loaded: try "
            "`modprobe nfnetlink_queue`; the kernel needs CONFIG_NETFILTER_NETLINK_QUEUE)"
        )


def require_iptables() -> None:
    """The iptables backend needs the iptables and ip6tables commands."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            raise UserError(
                f"{tool} is not installed, and this kernel needs it for NFQUEUE "
                "(no nft queue support): install the iptables package"
            )
