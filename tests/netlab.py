"""A small network lab in Linux network namespaces, for the gateway tests and the QUIC capture builder.

Topology (``Lab(topology="gateway")``, the default)::

    client (cli0) ---- (gw-cli) gateway (gw-srv) ---- (srv0) servers
    192.0.2.10/24        192.0.2.1/24  198.51.100.1/24       198.51.100.{10,20,21,53}/24
    2001:db8:1::10/64    2001:db8:1::1 203.0.113.1/24        203.0.113.{10,20,80}/24
                                       2001:db8:2::1/64      2001:db8:2::{10,20,21,53,80,100,120}/64

The gateway namespace forwards IPv4 and IPv6 (plain routing, no rules: the gateway under test adds
its own). ``Lab(topology="direct")`` links client and servers with one veth and gives the servers
namespace the client-side router addresses too, for capture generation. Every host uses
documentation ranges only; no namespace has a route to anywhere but the other namespaces.

Real software runs in the servers namespace, each ready-checked before its start method returns:
a TLS server on 443/tcp (Python ssl, a certificate made by openssl at run time, the response names
the SNI it saw), an HTTP server on 80/tcp (echoes the Host), Unbound on 198.51.100.53 and
2001:db8:2::53 port 53 (an auth-zone "." holding the test names, optionally an RPZ), and an aioquic
HTTP/3 server on 443/udp of every server address (QUIC v1, v2 and draft-29, optional Retry).

Clients (``tls_get``, ``http_get``, ``quic_get``, ``dig``, ``curl``, ``s_client``) run as
subprocesses inside a namespace and return a :class:`Result`. This file is also the script those
subprocesses run (``python netlab.py serve-quic ...``), so the lab is one self-contained file.

Clean-up: every namespace, veth (veths live only inside the lab's namespaces), process and temporary
file is removed on exit, also when the body raised. Namespace names are ``clf-<pid>-<n>-<role>``;
:func:`sweep_stale` removes those whose creating process is gone (a crashed run) and is called on
every ``Lab`` entry.

Needs root. :func:`require_lab` skips a test when that is missing outside CI and fails it in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import itertools
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PYTHON = sys.executable
PREFIX = "clf-"

#: Every program the lab and the tests run through it (besides this Python). lab_unavailable()
#: requires all of them; run()/popen() refuse any other, so a new one is declared here and its package
#: in tools/debian-packages.txt (tests/test_setup_audit.py checks that list covers this table).
TOOLS = (
    "ip",
    "sysctl",
    "tcpdump",
    "unbound",
    "unbound-checkconf",
    "dig",
    "curl",
    "openssl",
    "timeout",
    "nft",
    "iptables",
    "ip6tables",
    "setpriv",
    "cat",
    "sleep",
)

# --- address plan (documentation ranges only) -------------------------------------------------

CLIENT4, CLIENT6 = "192.0.2.10", "2001:db8:1::10"
GW_CLIENT4, GW_CLIENT6 = "192.0.2.1", "2001:db8:1::1"
GW_SERVER4 = ("198.51.100.1", "203.0.113.1")
GW_SERVER6 = "2001:db8:2::1"
RESOLVER4, RESOLVER6 = "198.51.100.53", "2001:db8:2::53"

#: role -> (IPv4, IPv6) of the servers namespace. Every server listens on every one of them.
SERVERS: dict[str, tuple[str, str]] = {
    "tiktok": ("198.51.100.10", "2001:db8:2::10"),  # "operator" hosting a TikTok name
    "wechat": ("198.51.100.20", "2001:db8:2::20"),  # "operator" hosting a WeChat name
    "tencent": ("198.51.100.21", "2001:db8:2::21"),  # the operator's own site (www.qq.com), not the app
    "resolver": (RESOLVER4, RESOLVER6),  # Unbound
    "unrelated": ("203.0.113.10", "2001:db8:2::100"),  # www.google.com
    "lookalike": ("203.0.113.20", "2001:db8:2::120"),  # faketiktok.com, tiktok.com.example.net
    "cdn": ("203.0.113.80", "2001:db8:2::80"),  # ONE shared CDN address: TikTok + unrelated names
}

#: test name -> role whose addresses it resolves to (A and AAAA)
NAMES: dict[str, str] = {
    "www.tiktok.com": "tiktok",
    "m.tiktok.com": "tiktok",
    "api16-normal-c-useast1a.tiktokv.com": "tiktok",
    "web.wechat.com": "wechat",
    "short.weixin.qq.com": "wechat",
    "www.qq.com": "tencent",
    "www.google.com": "unrelated",
    "faketiktok.com": "lookalike",
    "tiktok.com.example.net": "lookalike",
    "v16-webapp.tiktok.com.edgesuite.net": "cdn",
    "static.example.com.edgesuite.net": "cdn",
}
#: CNAME chains into the CDN: a TikTok name and an unrelated name end on the same address
CNAMES: dict[str, str] = {
    "v16-webapp.tiktok.com": "v16-webapp.tiktok.com.edgesuite.net",
    "static.example.com": "static.example.com.edgesuite.net",
}

#: QUIC versions by the names used in this project's records
QUIC_VERSIONS: dict[str, int] = {"1": 0x00000001, "2": 0x6B3343CF, "draft-29": 0xFF00001D}

# fixed, locally administered MACs so captures are stable from run to run
MACS = {
    "cli0": "02:00:00:00:00:10",
    "gw-cli": "02:00:00:00:00:01",
    "gw-srv": "02:00:00:00:01:01",
    "srv0": "02:00:00:00:01:10",
}

_seq = itertools.count()


@dataclasses.dataclass
class Result:
    """What a client saw: ``ok`` plus the status, body and error text, and tool-specific details."""

    ok: bool
    status: int | str | None = None
    body: str = ""
    error: str = ""
    detail: dict = dataclasses.field(default_factory=dict)


class LabError(RuntimeError):
    """The lab could not be built or a server did not come up (the message carries its log)."""


# --- environment checks and the stale sweep -----------------------------------------------------


def lab_unavailable() -> str | None:
    """Why this machine cannot run the lab, or None when it can (root, ip netns, tools)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (make test installs tools/debian-packages.txt)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"ip netns add failed: {proc.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def require_lab() -> None:
    """Skip the calling test when the lab cannot run here, unless CI is set: then fail it."""
    import pytest

    why = lab_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"network lab unavailable in CI: {why}")
        pytest.skip(f"network lab unavailable: {why}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_ns_processes(ns: str) -> None:
    proc = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    for pid in proc.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def lab_namespaces() -> list[str]:
    """Every namespace with the lab's prefix, whoever made it."""
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.startswith(PREFIX)]


def sweep_stale() -> list[str]:
    """Remove ``clf-<pid>-...`` namespaces (and their processes) whose creating process is gone."""
    removed = []
    for ns in lab_namespaces():
        m = re.match(rf"{PREFIX}(\d+)-", ns)
        if m and _pid_alive(int(m.group(1))):
            continue
        _kill_ns_processes(ns)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        removed.append(ns)
    for d in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        m = re.match(rf"{PREFIX}(\d+)-", d.name)
        if d.is_dir() and m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
    return removed


# --- the lab ----------------------------------------------------------------------------------


_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


class Lab:
    """Namespaces, veths, addresses and routes; servers and clients inside them; clean-up on exit.

    Roles: ``"client"``, ``"gateway"`` (gateway topology only) and ``"servers"``. Every method that
    takes ``ns`` accepts a role or a real namespace name.
    """

    def __init__(self, topology: str = "gateway", *, keep_dir: bool = False) -> None:
        if topology not in ("gateway", "direct"):
            raise ValueError(f"topology must be gateway or direct, not {topology!r}")
        self.topology = topology
        self.keep_dir = keep_dir
        tag = f"{PREFIX}{os.getpid()}-{next(_seq)}"
        roles = ("client", "gateway", "servers") if topology == "gateway" else ("client", "servers")
        self.namespaces: dict[str, str] = {role: f"{tag}-{role}" for role in roles}
        self.dir = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
        self.cert = self.dir / "lab.crt"
        self.key = self.dir / "lab.key"
        self._procs: list[subprocess.Popen] = []
        self._servers: dict[str, subprocess.Popen] = {}
        self._made: list[str] = []
        # interface names, per role
        self.client_if = "cli0"
        self.server_if = "srv0"
        self.gw_client_if = "gw-cli" if topology == "gateway" else None
        self.gw_server_if = "gw-srv" if topology == "gateway" else None

    # context manager
    def __enter__(self) -> Lab:
        try:
            sweep_stale()
            self._build()
            self._make_certificate()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ns(self, ns: str) -> str:
        """The real namespace name of a role (a real name passes through)."""
        return self.namespaces.get(ns, ns)

    @staticmethod
    def addr(role: str, family: int = 4) -> str:
        """A server address by role, e.g. ``Lab.addr("cdn", 6)``."""
        return SERVERS[role][0 if family == 4 else 1]

    # building
    def _ip(self, *args: str, ns: str | None = None) -> None:
        argv = ["ip", *(("-n", self.ns(ns)) if ns else ()), *args]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"{' '.join(argv)}: {proc.stderr.strip()}")

    def _sysctl(self, ns: str, **values: str) -> None:
        for key, value in values.items():
            self.run(ns, ["sysctl", "-q", "-w", f"{key.replace('__', '.')}={value}"], check=True)

    def _veth(self, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
        self._ip(
            "link",
            "add",
            a_if,
            "netns",
            self.ns(a_ns),
            "address",
            MACS[a_if],
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            self.ns(b_ns),
            "address",
            MACS[b_if],
        )

    def _addrs(self, ns: str, iface: str, addrs: Sequence[str]) -> None:
        for a in addrs:
            extra = ("nodad",) if ":" in a else ()
            self._ip("addr", "add", a, "dev", iface, *extra, ns=ns)
        self._ip("link", "set", iface, "up", ns=ns)

    def _build(self) -> None:
        for name in self.namespaces.values():
            self._ip("netns", "add", name)
            self._made.append(name)
            self._ip("link", "set", "lo", "up", ns=name)
            self._sysctl(name, net__ipv6__conf__default__accept_dad="0", net__ipv6__conf__all__accept_dad="0")
        server_addrs = [f"{v4}/24" for v4, _ in SERVERS.values()] + [f"{v6}/64" for _, v6 in SERVERS.values()]
        if self.topology == "gateway":
            self._veth("client", "cli0", "gateway", "gw-cli")
            self._veth("gateway", "gw-srv", "servers", "srv0")
            self._sysctl("gateway", net__ipv4__ip_forward="1", net__ipv6__conf__all__forwarding="1")
            self._addrs("gateway", "gw-cli", [f"{GW_CLIENT4}/24", f"{GW_CLIENT6}/64"])
            self._addrs("gateway", "gw-srv", [f"{a}/24" for a in GW_SERVER4] + [f"{GW_SERVER6}/64"])
            self._addrs("servers", "srv0", server_addrs)
            self._ip("route", "add", "default", "via", GW_SERVER4[0], ns="servers")
            self._ip("-6", "route", "add", "default", "via", GW_SERVER6, ns="servers")
        else:
            self._veth("client", "cli0", "servers", "srv0")
            # the servers namespace is also the client's router: the same server addresses either way
            self._addrs("servers", "srv0", [f"{GW_CLIENT4}/24", f"{GW_CLIENT6}/64", *server_addrs])
        self._addrs("client", "cli0", [f"{CLIENT4}/24", f"{CLIENT6}/64"])
        self._ip("route", "add", "default", "via", GW_CLIENT4, ns="client")
        self._ip("-6", "route", "add", "default", "via", GW_CLIENT6, ns="client")

    def _make_certificate(self) -> None:
        names = sorted(
            {
                *NAMES,
                *CNAMES,
                "*.tiktok.com",
                "*.tiktokv.com",
                "*.wechat.com",
                "*.qq.com",
                "*.weixin.qq.com",
                "*.example.com",
                "*.example.net",
                "*.google.com",
                "localhost",
            }
        )
        san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for pair in SERVERS.values() for a in pair])
        proc = subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "7",
                "-subj",
                "/CN=classifier netlab",
                "-addext",
                f"subjectAltName={san}",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise LabError(f"openssl req failed: {proc.stderr.strip()}")

    # clean-up
    def close(self) -> None:
        """Stop every process, delete the namespaces (their veths go with them), remove temp files."""
        for proc in reversed(self._procs):
            _stop(proc)
        self._procs.clear()
        self._servers.clear()
        for name in self._made:
            _kill_ns_processes(name)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._made.clear()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # running things
    def _in_ns(self, ns: str, argv: Sequence[Any]) -> list[str]:
        """``ip netns exec NS argv...``, for a declared program only (see TOOLS)."""
        program = str(argv[0]) if argv else ""
        if program not in TOOLS and program != PYTHON:
            raise LabError(
                f"{program!r} is not in netlab.TOOLS: declare it there, and its Debian package "
                "in tools/debian-packages.txt"
            )
        return ["ip", "netns", "exec", self.ns(ns), *map(str, argv)]

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        input: str | bytes | None = None,
        timeout: float = 30,
        check: bool = False,
        text: bool = True,
        env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        """Run argv inside ns to completion (``ip netns exec``); raise on failure only when check."""
        full = self._in_ns(ns, argv)
        if text and isinstance(input, bytes):
            input = input.decode()
        proc = subprocess.run(full, input=input, capture_output=True, timeout=timeout, text=text, env=env)
        if check and proc.returncode != 0:
            raise LabError(f"{' '.join(full)} exited {proc.returncode}: {proc.stderr!s}")
        return proc

    def popen(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        log: str | Path | None = None,
        env: dict | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen:
        """Start argv inside ns in its own process group; it is stopped when the lab closes.

        With ``log`` (a file name, relative to the lab directory), stdout and stderr go there.
        """
        full = self._in_ns(ns, argv)
        if log is not None:
            path = self.dir / log
            with open(path, "ab") as fh:
                proc = subprocess.Popen(
                    full,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                    **kwargs,
                )
            proc.log_path = path  # type: ignore[attr-defined]
        else:
            kwargs.setdefault("stdin", subprocess.DEVNULL)
            proc = subprocess.Popen(full, start_new_session=True, env=env, **kwargs)
        self._procs.append(proc)
        return proc

    def running(self) -> list[subprocess.Popen]:
        """The processes started with popen and not stopped yet (oldest first)."""
        return list(self._procs)

    def stop_started_after(self, earlier: Sequence[subprocess.Popen]) -> list[subprocess.Popen]:
        """Stop every process started since ``earlier`` (a ``running()`` list): what a failed test
        left. Returns those that were still running; each is stopped with SIGTERM first, so a
        gateway removes its own objects as it would on a normal stop."""
        left = [p for p in self._procs if p not in earlier]
        running = [p for p in left if p.poll() is None]
        for proc in reversed(left):
            self.stop(proc)
        return running

    def stop(self, proc: subprocess.Popen) -> int | None:
        """Stop a process started with popen (SIGTERM, then SIGKILL) and return its exit status."""
        _stop(proc)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def ns_exec(self, ns: str, fn: Callable[..., Any], *args: Any, timeout: float = 30) -> Any:
        """Call fn(*args) in a forked child that joined ns; return its (picklable) result or raise."""
        path = f"/run/netns/{self.ns(ns)}"
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(r)
                fd = os.open(path, os.O_RDONLY)
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {path}")
                outcome: tuple[bool, Any] = (True, fn(*args))
            except BaseException as exc:
                outcome = (False, f"{type(exc).__name__}: {exc}")
            try:
                data = pickle.dumps(outcome)
            except Exception as exc:
                data = pickle.dumps((False, f"unpicklable result: {exc}"))
            with os.fdopen(w, "wb") as fh:
                fh.write(data)
            os._exit(0)
        os.close(w)
        chunks = []
        deadline = time.monotonic() + timeout
        with os.fdopen(r, "rb") as fh:
            os.set_blocking(fh.fileno(), False)
            while True:
                try:
                    chunk = fh.read()
                except BlockingIOError:
                    chunk = None
                if chunk:
                    chunks.append(chunk)
                elif chunk == b"":
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise TimeoutError(f"ns_exec {fn!r} in {ns} took over {timeout} s")
                time.sleep(0.01)
        os.waitpid(pid, 0)
        ok, value = pickle.loads(b"".join(chunks))
        if not ok:
            raise LabError(f"ns_exec {fn!r} in {ns}: {value}")
        return value

    @contextlib.contextmanager
    def capture(
        self, ns: str, iface: str, path: str | Path, bpf: str = "", *, snaplen: int = 0, settle: float = 0.3
    ) -> Iterator[dict]:
        """tcpdump -U -w path on iface inside ns for the duration of the block.

        Returns once tcpdump says it is listening; on exit waits ``settle`` seconds for packets in
        flight, stops tcpdump with SIGINT and waits for it to flush. The yielded dict gets
        ``captured`` (tcpdump's own count) after the block.
        """
        path = Path(path)
        log = f"tcpdump-{next(_seq)}.log"
        argv = ["tcpdump", "-n", "-U", "--immediate-mode", "-Z", "root", "-i", iface, "-w", str(path)]
        if snaplen:
            argv += ["-s", str(snaplen)]
        argv += bpf.split() if bpf else []
        proc = self.popen(ns, argv, log=log)
        self._wait_for(proc, "listening on", 10, what=f"tcpdump on {iface}")
        info: dict = {}
        try:
            yield info
        finally:
            time.sleep(settle)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    _stop(proc)
            if proc in self._procs:
                self._procs.remove(proc)
            log_path = self.dir / log
            text = log_path.read_text(errors="replace") if log_path.exists() else ""
            m = re.search(r"(\d+) packets? captured", text)
            info["captured"] = int(m.group(1)) if m else None
            info["log"] = text

    def _wait_for(self, proc: subprocess.Popen, marker: str, timeout: float, *, what: str) -> None:
        path: Path = proc.log_path  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = path.read_text(errors="replace") if path.exists() else ""
            if marker in text:
                return
            if proc.poll() is not None:
                raise LabError(f"{what} exited {proc.returncode} before it was ready:\n{text}")
            time.sleep(0.05)
        _stop(proc)
        raise LabError(f"{what} not ready after {timeout} s:\n{path.read_text(errors='replace')}")

    def log(self, name: str) -> str:
        """A server's log so far (name: tls, http, unbound, quic)."""
        proc = self._servers.get(name)
        path = getattr(proc, "log_path", None) if proc else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    # --- servers (all in the servers namespace) ---------------------------------------------------

    def _start_server(
        self, name: str, argv: Sequence[str], marker: str = "READY", timeout: float = 20
    ) -> None:
        self.stop_server(name)
        proc = self.popen("servers", argv, log=f"{name}.log")
        self._servers[name] = proc
        self._wait_for(proc, marker, timeout, what=f"{name} server")

    def start_server(self, name: str, argv: Sequence[Any], marker: str = "READY") -> None:
        """Start another script's server in the servers namespace (e.g. tests/preludelab.py)."""
        self._start_server(name, argv, marker)

    def stop_server(self, name: str) -> None:
        """Stop one of the lab's servers (tls, http, unbound, quic) if it runs."""
        proc = self._servers.pop(name, None)
        if proc is not None:
            self.stop(proc)

    def start_tls(self, port: int = 443) -> None:
        """TLS server on [::]:port (IPv4 too): answers an HTTP/1.1 200 naming the SNI it saw."""
        self._start_server(
            "tls", [PYTHON, HERE, "serve-tls", "--port", port, "--cert", self.cert, "--key", self.key]
        )

    def start_http(self, port: int = 80) -> None:
        """Plain HTTP server on [::]:port (IPv4 too): answers 200 echoing the Host header."""
        self._start_server("http", [PYTHON, HERE, "serve-http", "--port", port])

    def start_quic(
        self, *, retry: bool = False, versions: Sequence[str] = ("1", "2", "draft-29"), port: int = 443
    ) -> None:
        """aioquic HTTP/3 server on port/udp of every server address; ``retry`` sends Retry first."""
        addrs = [a for pair in SERVERS.values() for a in pair]
        argv = [
            PYTHON,
            HERE,
            "serve-quic",
            "--port",
            port,
            "--cert",
            self.cert,
            "--key",
            self.key,
            "--versions",
            ",".join(versions),
            *(["--retry"] if retry else []),
        ]
        for a in addrs:
            argv += ["--addr", a]
        self._start_server("quic", argv)

    def start_unbound(self, *, rpz: str | Path | None = None, rpz_name: str | None = None) -> None:
        """Unbound on 198.51.100.53 and 2001:db8:2::53 port 53 serving the test names.

        rpz: a Response Policy Zone file to load (copied into the lab). Its zone name is taken from
        a ``$ORIGIN`` line, else ``rpz_name``, else ``rpz.lab``. Starting again replaces the running
        Unbound (use that to load another RPZ).
        """
        conf = self.dir / "unbound.conf"
        (self.dir / "root.zone").write_text(zone_text())
        rpz_clause = ""
        if rpz is not None:
            text = Path(rpz).read_text()
            (self.dir / "rpz.zone").write_text(text)
            m = re.search(r"^\$ORIGIN\s+(\S+)", text, re.M)
            origin = m.group(1) if m else (rpz_name or "rpz.lab.")
            rpz_clause = (
                f'rpz:\n  name: "{origin}"\n  zonefile: "{self.dir / "rpz.zone"}"\n'
                "  rpz-log: yes\n  rpz-log-name: lab-rpz\n"
            )
        conf.write_text(f"""server:
  interface: {RESOLVER4}
  interface: {RESOLVER6}
  port: 53
  ip-freebind: yes
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{self.dir}"
  pidfile: "{self.dir / "unbound.pid"}"
  use-syslog: no
  logfile: ""
  log-queries: yes
  verbosity: 1
  num-threads: 1
  so-reuseport: no
  access-control: 0.0.0.0/0 allow
  access-control: ::/0 allow
  module-config: "respip iterator"
  do-not-query-localhost: no
  qname-minimisation: no
  minimal-responses: no
auth-zone:
  name: "."
  zonefile: "{self.dir / "root.zone"}"
  for-downstream: no
  for-upstream: yes
  fallback-enabled: no
{rpz_clause}""")
        check = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise LabError(f"unbound-checkconf: {check.stdout}{check.stderr}")
        self._start_server("unbound", ["unbound", "-d", "-c", conf], marker="start of service")
        deadline = time.monotonic() + 10
        while True:  # ready when it answers a test name
            if self.dig("servers", RESOLVER4, "lab", "SOA", timeout=1).status in ("NOERROR", "NXDOMAIN"):
                return
            if time.monotonic() > deadline:
                raise LabError(f"unbound does not answer:\n{self.log('unbound')}")
            time.sleep(0.1)

    def start_all(self, *, rpz: str | Path | None = None, quic_retry: bool = False) -> None:
        """TLS, HTTP, Unbound (optionally with an RPZ) and the QUIC server."""
        self.start_tls()
        self.start_http()
        self.start_unbound(rpz=rpz)
        self.start_quic(retry=quic_retry)

    # --- clients ----------------------------------------------------------------------------------

    def _script_client(self, ns: str, args: Sequence[Any], timeout: float) -> Result:
        try:
            proc = self.run(ns, [PYTHON, HERE, *args], timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            return Result(False, error="client process timed out")
        try:
            data = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return Result(False, error=f"exit {proc.returncode}: {proc.stdout} {proc.stderr}".strip())
        return Result(
            data["ok"],
            data.get("status"),
            data.get("body", ""),
            data.get("error", ""),
            data.get("detail", {}),
        )

    def tls_get(
        self,
        ns: str,
        addr: str,
        sni: str | None,
        timeout: float = 5,
        *,
        port: int = 443,
        sport: int = 0,
        verify: bool = False,
    ) -> Result:
        """HTTPS GET / over Python ssl with this SNI (None: no SNI). ok = a 200 response came back."""
        args = ["tls-get", "--addr", addr, "--port", port, "--timeout", timeout, "--sport", sport]
        args += ["--sni", sni] if sni is not None else []
        args += ["--cafile", self.cert] if verify else []
        return self._script_client(ns, args, timeout)

    def http_get(
        self, ns: str, addr: str, host: str, timeout: float = 5, *, port: int = 80, sport: int = 0
    ) -> Result:
        """Plain HTTP GET / with this Host. ok = a 200 response came back."""
        return self._script_client(
            ns,
            [
                "http-get",
                "--addr",
                addr,
                "--host",
                host,
                "--port",
                port,
                "--timeout",
                timeout,
                "--sport",
                sport,
            ],
            timeout,
        )

    def quic_get(
        self,
        ns: str,
        addr: str,
        sni: str | None,
        version: str = "1",
        timeout: float = 5,
        *,
        port: int = 443,
        sport: int = 0,
        big_client_hello: bool = False,
        alpn: Sequence[str] | None = None,
    ) -> Result:
        """HTTP/3 GET / with aioquic. version: "1", "2", "draft-29" or a comma list (first is tried first).

        big_client_hello adds aioquic's 1200-byte quantum-readiness transport parameter, so the
        ClientHello spans two Initial packets. detail has the negotiated version and whether a Retry
        was received.
        """
        args = [
            "quic-get",
            "--addr",
            addr,
            "--port",
            port,
            "--version",
            version,
            "--timeout",
            timeout,
            "--sport",
            sport,
            *(["--sni", sni] if sni is not None else []),
            *(["--big"] if big_client_hello else []),
        ]
        for a in alpn or ():
            args += ["--alpn", a]
        return self._script_client(ns, args, timeout)

    def dig(
        self, ns: str, server: str, name: str, qtype: str = "A", timeout: float = 2, *, tcp: bool = False
    ) -> Result:
        """dig @server name qtype. status is the RCODE name; detail["answers"] the answer RRs."""
        argv = [
            "dig",
            f"@{server}",
            name,
            qtype,
            "+tries=1",
            f"+time={max(1, int(timeout))}",
            "+noall",
            "+answer",
            "+comments",
            *(["+tcp"] if tcp else []),
        ]
        try:
            proc = self.run(ns, argv, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            return Result(False, error="dig timed out")
        m = re.search(r"status: (\w+)", proc.stdout)
        answers = [
            line.split(None, 4) for line in proc.stdout.splitlines() if line and not line.startswith(";")
        ]
        answers = [(a[0].rstrip("."), a[3], a[4].rstrip(".")) for a in answers if len(a) == 5]
        status = m.group(1) if m else None
        return Result(
            status == "NOERROR",
            status,
            proc.stdout,
            "" if m else proc.stdout + proc.stderr,
            {"answers": answers, "addresses": [d for _, t, d in answers if t in ("A", "AAAA")]},
        )

    def curl(self, ns: str, url: str, *args: str, timeout: float = 5) -> Result:
        """curl -sS -k url [args]; status is the HTTP code, body the response body."""
        argv = ["curl", "-sS", "-k", "--max-time", str(timeout), "-w", "\n%{http_code}", *args, url]
        try:
            proc = self.run(ns, argv, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            return Result(False, error="curl timed out")
        body, _, code = proc.stdout.rpartition("\n")
        status = int(code) if code.isdigit() else None
        return Result(proc.returncode == 0 and status == 200, status, body, proc.stderr.strip())

    def s_client(self, ns: str, addr: str, sni: str | None, *, port: int = 443, timeout: float = 5) -> Result:
        """openssl s_client with this SNI, sending one HTTP/1.1 request."""
        host = f"[{addr}]" if ":" in addr else addr
        argv = [
            "timeout",
            str(timeout),
            "openssl",
            "s_client",
            "-connect",
            f"{host}:{port}",
            "-quiet",
            "-ign_eof",
            *(["-servername", sni] if sni else ["-noservername"]),
        ]
        request = f"GET / HTTP/1.1\r\nHost: {sni or addr}\r\nConnection: close\r\n\r\n"
        try:
            proc = self.run(ns, argv, input=request, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            return Result(False, error="s_client timed out")
        ok = proc.stdout.startswith("HTTP/1.1 200")
        return Result(ok, 200 if ok else None, proc.stdout, proc.stderr.strip())


def _stop(proc: subprocess.Popen, grace: float = 3) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            stream.close()


def zone_text() -> str:
    """The lab's root zone for Unbound: every test name with A and AAAA, plus the CNAME chains."""
    lines = [
        "$TTL 300",
        ". IN SOA ns.lab. hostmaster.lab. 1 3600 600 86400 300",
        ". IN NS ns.lab.",
        f"ns.lab. IN A {RESOLVER4}",
        f"ns.lab. IN AAAA {RESOLVER6}",
    ]
    for name, role in NAMES.items():
        v4, v6 = SERVERS[role]
        lines += [f"{name}. IN A {v4}", f"{name}. IN AAAA {v6}"]
    lines += [f"{name}. IN CNAME {target}." for name, target in CNAMES.items()]
    return "\n".join(lines) + "\n"


# --- the scripts run inside namespaces (servers and clients) -------------------------------------


def _emit(ok: bool, **fields: Any) -> int:
    print(json.dumps({"ok": ok, **fields}), flush=True)
    return 0 if ok else 1


def _dual_stack_listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    sock.listen(64)
    return sock


def _plain_addr(addr: str) -> str:
    return addr.removeprefix("::ffff:")


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def _respond(conn: socket.socket, body: str) -> None:
    payload = body.encode()
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )


def serve_tls(port: int, cert: str, key: str) -> None:
    """Threaded TLS server: the body names the SNI the server saw and the address it answered on."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    seen: dict[int, str | None] = {}

    def on_sni(sslobj: Any, name: str | None, _ctx: Any) -> None:
        seen[id(sslobj)] = name

    ctx.sni_callback = on_sni
    listener = _dual_stack_listener(port)
    print("READY", flush=True)

    def handle(raw: socket.socket) -> None:
        try:
            with ctx.wrap_socket(raw, server_side=True) as conn:
                request = _read_request(conn)
                first = request.split(b"\r\n", 1)[0].decode(errors="replace")
                sni = seen.pop(id(conn), None)
                local = _plain_addr(conn.getsockname()[0])
                print(f"tls {local} sni={sni} {first}", flush=True)
                _respond(conn, f"proto=tls\nsni={sni}\nserver={local}\n")
        except (OSError, ssl.SSLError) as exc:
            print(f"tls error: {exc}", flush=True)
        finally:
            raw.close()

    while True:
        raw, _ = listener.accept()
        raw.settimeout(10)
        threading.Thread(target=handle, args=(raw,), daemon=True).start()


def serve_http(port: int) -> None:
    """Threaded plain HTTP server: the body echoes the Host header and the address it answered on."""
    listener = _dual_stack_listener(port)
    print("READY", flush=True)

    def handle(conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn).decode(errors="replace")
            m = re.search(r"^host:\s*(\S+)", request, re.I | re.M)
            local = _plain_addr(conn.getsockname()[0])
            print(f"http {local} host={m and m.group(1)}", flush=True)
            with contextlib.suppress(OSError):
                _respond(conn, f"proto=http\nhost={m.group(1) if m else None}\nserver={local}\n")

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


DRAFT29_SALT = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
DRAFT29_RETRY_KEY = bytes.fromhex("ccce187ed09a09d05728155a6cb96be1")
DRAFT29_RETRY_NONCE = bytes.fromhex("e54930f97f2136f0530a8c1c")
TP_DRAFT, TP_V1 = 0xFFA5, 0x0039


def patch_aioquic() -> None:
    """Teach aioquic (1.x dropped the drafts) QUIC draft-29, and let the server record the SNI.

    Draft-29 differs from v1, for what aioquic does, in the Initial salt, the Retry integrity key
    and nonce, and the TLS extension codepoint of the transport parameters (0xffa5); packet types
    and key labels are v1's. The patch swaps those in only for version 0xff00001d.
    """
    from aioquic import tls
    from aioquic.quic import connection as qconn
    from aioquic.quic import crypto as qcrypto
    from aioquic.quic import packet as qpacket

    if getattr(tls, "_netlab_patched", False):
        return
    d29 = QUIC_VERSIONS["draft-29"]
    setup_initial = qcrypto.CryptoPair.setup_initial

    def patched_setup_initial(self: Any, cid: bytes, is_client: bool, version: int) -> None:
        if version != d29:
            return setup_initial(self, cid, is_client, version)
        saved = qcrypto.INITIAL_SALT_VERSION_1
        qcrypto.INITIAL_SALT_VERSION_1 = DRAFT29_SALT
        try:
            return setup_initial(self, cid, is_client, version)
        finally:
            qcrypto.INITIAL_SALT_VERSION_1 = saved

    retry_tag = qpacket.get_retry_integrity_tag

    def patched_retry_tag(packet_without_tag: bytes, original_destination_cid: bytes, version: int) -> bytes:
        if version != d29:
            return retry_tag(packet_without_tag, original_destination_cid, version)
        saved = qpacket.RETRY_AEAD_KEY_VERSION_1, qpacket.RETRY_AEAD_NONCE_VERSION_1
        qpacket.RETRY_AEAD_KEY_VERSION_1, qpacket.RETRY_AEAD_NONCE_VERSION_1 = (
            DRAFT29_RETRY_KEY,
            DRAFT29_RETRY_NONCE,
        )
        try:
            return retry_tag(packet_without_tag, original_destination_cid, version)
        finally:
            qpacket.RETRY_AEAD_KEY_VERSION_1, qpacket.RETRY_AEAD_NONCE_VERSION_1 = saved

    class LabContext(tls.Context):
        """Maps the draft transport-parameter codepoint to v1's on receipt; records the client's SNI."""

        lab_sni: str | None = None

        @property
        def received_extensions(self) -> Any:
            return self._lab_received

        @received_extensions.setter
        def received_extensions(self, value: Any) -> None:
            self._lab_received = (
                None if value is None else [(TP_V1 if t == TP_DRAFT else t, d) for t, d in value]
            )

        def _server_handle_hello(self, input_buf: Any, *args: Any) -> None:
            pos = input_buf.tell()
            with contextlib.suppress(Exception):
                self.lab_sni = tls.pull_client_hello(input_buf).server_name
            input_buf.seek(pos)
            return super()._server_handle_hello(input_buf, *args)

    initialize = qconn.QuicConnection._initialize

    def patched_initialize(self: Any, peer_cid: bytes) -> None:
        initialize(self, peer_cid)
        if self._version == d29:  # the draft codepoint on the wire
            self.tls.handshake_extensions = [
                (TP_DRAFT if t == TP_V1 else t, d) for t, d in self.tls.handshake_extensions
            ]

    qcrypto.CryptoPair.setup_initial = patched_setup_initial
    qpacket.get_retry_integrity_tag = patched_retry_tag
    qconn.get_retry_integrity_tag = patched_retry_tag
    qconn.QuicConnection._initialize = patched_initialize
    tls.Context = LabContext
    tls._netlab_patched = True


def _version_list(spec: str) -> list[int]:
    return [QUIC_VERSIONS[v.strip()] for v in spec.split(",") if v.strip()]


def _version_name(number: int | None) -> str | None:
    return next((k for k, v in QUIC_VERSIONS.items() if v == number), None if number is None else hex(number))


def serve_quic(addrs: Sequence[str], port: int, cert: str, key: str, versions: str, retry: bool) -> None:
    """aioquic HTTP/3 server on every address (one socket each: UDP replies leave from the right one)."""
    import asyncio
    from functools import partial

    patch_aioquic()
    from aioquic.asyncio import QuicConnectionProtocol, serve
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import ProtocolNegotiated

    class H3Server(QuicConnectionProtocol):
        def __init__(self, *args: Any, local: str = "", **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._h3: H3Connection | None = None
            self._local = local

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, ProtocolNegotiated) and self._h3 is None:
                self._h3 = H3Connection(self._quic)
            if self._h3 is None:
                return
            for ev in self._h3.handle_event(event):
                if isinstance(ev, HeadersReceived):
                    sni = getattr(self._quic.tls, "lab_sni", None)
                    version = _version_name(self._quic._version)
                    print(f"quic {self._local} sni={sni} version={version}", flush=True)
                    body = f"proto=quic\nsni={sni}\nversion={version}\nserver={self._local}\n".encode()
                    self._h3.send_headers(
                        ev.stream_id,
                        [
                            (b":status", b"200"),
                            (b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    )
                    self._h3.send_data(ev.stream_id, body, end_stream=True)
                    self.transmit()

    async def main() -> None:
        for addr in addrs:
            config = QuicConfiguration(
                is_client=False,
                alpn_protocols=[*H3_ALPN, "h3-29"],
                supported_versions=_version_list(versions),
            )
            config.load_cert_chain(cert, key)
            await serve(
                addr, port, configuration=config, create_protocol=partial(H3Server, local=addr), retry=retry
            )
        print("READY", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def quic_get(
    addr: str,
    port: int,
    sni: str | None,
    versions: str,
    timeout: float,
    sport: int,
    big: bool,
    alpn: Sequence[str],
) -> int:
    import asyncio
    import ssl

    patch_aioquic()
    from aioquic.asyncio import QuicConnectionProtocol, connect
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import ProtocolNegotiated

    class H3Client(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._h3: H3Connection | None = None
            self.status: int | None = None
            self.body = b""
            self.done = asyncio.Event()

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, ProtocolNegotiated) and self._h3 is None:
                self._h3 = H3Connection(self._quic)
            if self._h3 is None:
                return
            for ev in self._h3.handle_event(event):
                if isinstance(ev, HeadersReceived):
                    self.status = int(dict(ev.headers).get(b":status", b"0"))
                elif isinstance(ev, DataReceived):
                    self.body += ev.data
                if getattr(ev, "stream_ended", False):
                    self.done.set()

        async def get(self, authority: str) -> None:
            assert self._h3 is not None
            sid = self._quic.get_next_available_stream_id()
            self._h3.send_headers(
                sid,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", authority.encode()),
                    (b":path", b"/"),
                ],
                end_stream=True,
            )
            self.transmit()
            await self.done.wait()

    wanted = _version_list(versions)
    if not alpn:
        alpn = ["h3-29"] if wanted[0] == QUIC_VERSIONS["draft-29"] else ["h3"]
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=list(alpn),
        verify_mode=ssl.CERT_NONE,
        supported_versions=wanted,
        quantum_readiness_test=big,
        server_name=sni if sni is not None else addr,
    )
    detail: dict[str, Any] = {}

    async def main() -> None:
        async with connect(
            addr, port, configuration=config, create_protocol=H3Client, local_port=sport
        ) as client:
            detail["version"] = _version_name(client._quic._version)
            detail["retry"] = client._quic._retry_count > 0
            await client.get(sni or addr)
            detail["status"] = client.status
            detail["body"] = client.body.decode(errors="replace")

    try:
        asyncio.run(asyncio.wait_for(main(), timeout))
    except Exception as exc:  # any failure is a result, not a crash
        return _emit(False, error=f"{type(exc).__name__}: {exc}", detail=detail)
    return _emit(
        detail.get("status") == 200, status=detail.get("status"), body=detail.get("body", ""), detail=detail
    )


def _connect(addr: str, port: int, timeout: float, sport: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if sport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
    sock.connect((addr, port))
    return sock


def _http_exchange(sock: Any, host: str) -> tuple[int | None, str]:
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netlab\r\nConnection: close\r\n\r\n"
    sock.sendall(request.encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(m.group(1)) if m else None), body.decode(errors="replace")


def tls_get(addr: str, port: int, sni: str | None, timeout: float, sport: int, cafile: str | None) -> int:
    import ssl

    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not cafile:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        with _connect(addr, port, timeout, sport) as raw, ctx.wrap_socket(raw, server_hostname=sni) as sock:
            version = sock.version()
            status, body = _http_exchange(sock, sni or addr)
    except (OSError, ssl.SSLError) as exc:
        return _emit(False, error=f"{type(exc).__name__}: {exc}")
    return _emit(status == 200, status=status, body=body, detail={"tls_version": version})


def http_get(addr: str, port: int, host: str, timeout: float, sport: int) -> int:
    try:
        with _connect(addr, port, timeout, sport) as sock:
            status, body = _http_exchange(sock, host)
    except OSError as exc:
        return _emit(False, error=f"{type(exc).__name__}: {exc}")
    return _emit(status == 200, status=status, body=body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="netlab servers and clients (run inside a namespace)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve-tls")
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p = sub.add_parser("serve-http")
    p.add_argument("--port", type=int, default=80)
    p = sub.add_parser("serve-quic")
    p.add_argument("--addr", action="append", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--versions", default="1,2,draft-29")
    p.add_argument("--retry", action="store_true")
    for name in ("tls-get", "http-get", "quic-get"):
        p = sub.add_parser(name)
        p.add_argument("--addr", required=True)
        p.add_argument("--port", type=int)
        p.add_argument("--timeout", type=float, default=5)
        p.add_argument("--sport", type=int, default=0)
        if name == "http-get":
            p.add_argument("--host", required=True)
        else:
            p.add_argument("--sni")
        if name == "tls-get":
            p.add_argument("--cafile")
        if name == "quic-get":
            p.add_argument("--version", default="1")
            p.add_argument("--big", action="store_true")
            p.add_argument("--alpn", action="append", default=[])
    a = parser.parse_args(argv)
    if a.cmd == "serve-tls":
        serve_tls(a.port, a.cert, a.key)
    elif a.cmd == "serve-http":
        serve_http(a.port)
    elif a.cmd == "serve-quic":
        serve_quic(a.addr, a.port, a.cert, a.key, a.versions, a.retry)
    elif a.cmd == "tls-get":
        return tls_get(a.addr, a.port or 443, a.sni, a.timeout, a.sport, a.cafile)
    elif a.cmd == "http-get":
        return http_get(a.addr, a.port or 80, a.host, a.timeout, a.sport)
    elif a.cmd == "quic-get":
        return quic_get(a.addr, a.port or 443, a.sni, a.version, a.timeout, a.sport, a.big, a.alpn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
