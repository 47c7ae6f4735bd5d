"""Servers and clients that speak a prelude before TLS, for the namespace lab (tests/netlab.py).

Minimal but real: each server answers its protocol's prelude the way a real server does, then hands
the socket to Python's ssl (OpenSSL) as a TLS server; the clients are real stacks where one exists
(curl through SOCKS, ``openssl s_client -starttls ...``, curl with TCP Fast Open), and a short Python
client for RDP's X.224 request (which no Debian command-line client sends without a display).

Ports (every address of the servers namespace): SOCKS4/4a/5 1080 (relays to the named or given
address, names resolved with netlab.NAMES), SMTP 25, FTP 21, POP3 110, IMAP 143, LDAP 389,
XMPP 5222, PostgreSQL 5432, RDP 3389, and a TLS server accepting TCP Fast Open data on 8443.
After the handshake every TLS server answers one HTTP/1.1 200 naming the SNI it saw.

Run inside a namespace as ``python preludelab.py serve --cert C --key K`` or ``rdp-get ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import netlab

HERE = Path(__file__).resolve()
SOCKS_PORT = 1080
TFO_PORT = 8443
PORTS = {
    "smtp": 25,
    "ftp": 21,
    "pop3": 110,
    "imap": 143,
    "ldap": 389,
    "xmpp": 5222,
    "postgres": 5432,
    "rdp": 3389,
}
_XMPP_NS = "urn:ietf:params:xml:ns:xmpp-tls"


def _tls_reply(ctx: ssl.SSLContext, raw: socket.socket, proto: str) -> None:
    """The TLS half: handshake as a server, answer one request naming the SNI."""
    seen: dict[str, str | None] = {}
    ctx.sni_callback = lambda _obj, name, _ctx: seen.__setitem__("sni", name)
    with ctx.wrap_socket(raw, server_side=True) as conn:
        netlab._read_request(conn)
        sni = seen.get("sni")
        print(f"{proto} sni={sni}", flush=True)
        netlab._respond(conn, f"proto={proto}\nsni={sni}\n")


def _line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < 4096:
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _recv_until(conn: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data and len(data) < 16384:
        chunk = conn.recv(1)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}")
        data += chunk
    return data


def _exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


# --- the server side of each prelude: returns when the client may start TLS ---------------------


def smtp(conn: socket.socket) -> None:
    conn.sendall(b"220 mail.example ESMTP ready\r\n")
    while True:
        cmd = _line(conn).strip().upper()
        if cmd.startswith((b"EHLO", b"HELO")):
            conn.sendall(b"250-mail.example\r\n250 STARTTLS\r\n")
        elif cmd == b"STARTTLS":
            conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
            return
        elif not cmd:
            raise ConnectionError("closed before STARTTLS")
        else:
            conn.sendall(b"250 OK\r\n")


def ftp(conn: socket.socket) -> None:
    conn.sendall(b"220 FTP server ready\r\n")
    while True:
        cmd = _line(conn).strip().upper()
        if cmd in (b"AUTH TLS", b"AUTH SSL"):
            conn.sendall(b"234 AUTH TLS successful\r\n")
            return
        if not cmd:
            raise ConnectionError("closed before AUTH TLS")
        conn.sendall(b"502 Command not implemented\r\n")


def pop3(conn: socket.socket) -> None:
    conn.sendall(b"+OK POP3 server ready\r\n")
    while True:
        cmd = _line(conn).strip().upper()
        if cmd == b"STLS":
            conn.sendall(b"+OK Begin TLS negotiation\r\n")
            return
        if cmd == b"CAPA":
            conn.sendall(b"+OK\r\nSTLS\r\n.\r\n")
        elif not cmd:
            raise ConnectionError("closed before STLS")
        else:
            conn.sendall(b"-ERR\r\n")


def imap(conn: socket.socket) -> None:
    conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
    while True:
        tag, _, cmd = _line(conn).strip().partition(b" ")
        if cmd.upper() == b"STARTTLS":
            conn.sendall(tag + b" OK Begin TLS negotiation now\r\n")
            return
        if cmd.upper() == b"CAPABILITY":
            conn.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK CAPABILITY completed\r\n")
        elif not tag:
            raise ConnectionError("closed before STARTTLS")
        else:
            conn.sendall(tag + b" BAD\r\n")


def xmpp(conn: socket.socket) -> None:
    _recv_until(conn, b"version='1.0'>")
    conn.sendall(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' id='lab' version='1.0'>"
        b"<stream:features><starttls xmlns='" + _XMPP_NS.encode() + b"'><required/></starttls>"
        b"</stream:features>"
    )
    _recv_until(conn, b"/>")
    conn.sendall(b"<proceed xmlns='" + _XMPP_NS.encode() + b"'/>")


def ldap(conn: socket.socket) -> None:
    head = _exact(conn, 2)
    body = _exact(conn, head[1])
    msg_id = body[2 : 2 + body[1]]
    # ExtendedResponse [APPLICATION 24]: resultCode success, matchedDN "", diagnosticMessage ""
    op = b"\x78\x07\x0a\x01\x00\x04\x00\x04\x00"
    inner = b"\x02" + bytes([len(msg_id)]) + msg_id + op
    conn.sendall(b"\x30" + bytes([len(inner)]) + inner)


def postgres(conn: socket.socket) -> None:
    _exact(conn, 8)
    conn.sendall(b"S")


def rdp(conn: socket.socket) -> None:
    head = _exact(conn, 4)
    _exact(conn, struct.unpack(">H", head[2:4])[0] - 4)
    # X.224 Connection Confirm with RDP_NEG_RSP selecting PROTOCOL_SSL (MS-RDPBCGR 2.2.1.2)
    conn.sendall(bytes.fromhex("030000130ed000001234000200080001000000"))


PRELUDES: dict[str, Callable[[socket.socket], None]] = {
    "smtp": smtp,
    "ftp": ftp,
    "pop3": pop3,
    "imap": imap,
    "xmpp": xmpp,
    "ldap": ldap,
    "postgres": postgres,
    "rdp": rdp,
}


# --- SOCKS --------------------------------------------------------------------------------------


def _socks_target(conn: socket.socket) -> tuple[str, int, bytes]:
    """(host, port, success reply) of a SOCKS4/4a/5 CONNECT request."""
    version = _exact(conn, 1)[0]
    if version == 4:
        head = _exact(conn, 7)
        port = struct.unpack(">H", head[1:3])[0]
        _recv_until(conn, b"\x00")  # user id
        if head[3:6] == b"\x00\x00\x00" and head[6]:
            host = _recv_until(conn, b"\x00")[:-1].decode()
        else:
            host = socket.inet_ntoa(head[3:7])
        return host, port, b"\x00\x5a" + head[1:7]
    methods = _exact(conn, _exact(conn, 1)[0])
    if 0 not in methods:
        conn.sendall(b"\x05\xff")
        raise ConnectionError("no acceptable SOCKS5 method")
    conn.sendall(b"\x05\x00")
    _ver, _cmd, _rsv, atyp = _exact(conn, 4)
    if atyp == 1:
        host = socket.inet_ntoa(_exact(conn, 4))
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, _exact(conn, 16))
    else:
        host = _exact(conn, _exact(conn, 1)[0]).decode()
    port = struct.unpack(">H", _exact(conn, 2))[0]
    return host, port, b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00"


def _relay(a: socket.socket, b: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := a.recv(16384):
            b.sendall(data)
    with contextlib.suppress(OSError):
        b.shutdown(socket.SHUT_WR)


def socks(conn: socket.socket) -> None:
    host, port, reply = _socks_target(conn)
    role = netlab.NAMES.get(host)
    addr = netlab.SERVERS[role][0] if role else host
    upstream = socket.create_connection((addr, port), timeout=10)
    conn.sendall(reply)
    print(f"socks {host}:{port} -> {addr}", flush=True)
    back = threading.Thread(target=_relay, args=(upstream, conn), daemon=True)
    back.start()
    _relay(conn, upstream)
    back.join(10)
    upstream.close()


# --- listeners -----------------------------------------------------------------------------------


def _serve(port: int, handle: Callable[[socket.socket], None], *, fastopen: bool = False) -> None:
    listener = netlab._dual_stack_listener(port)
    if fastopen:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)

    def run(raw: socket.socket) -> None:
        try:
            handle(raw)
        except (OSError, ssl.SSLError, ConnectionError, ValueError) as exc:
            print(f"port {port} error: {exc}", flush=True)
        finally:
            raw.close()

    def loop() -> None:
        while True:
            raw, _ = listener.accept()
            raw.settimeout(10)
            threading.Thread(target=run, args=(raw,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def serve(cert: str, key: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def after(proto: str, prelude: Callable[[socket.socket], None]) -> Callable[[socket.socket], None]:
        def handle(raw: socket.socket) -> None:
            prelude(raw)
            _tls_reply(ctx, raw, proto)

        return handle

    for proto, port in PORTS.items():
        _serve(port, after(proto, PRELUDES[proto]))
    _serve(SOCKS_PORT, socks)
    _serve(TFO_PORT, after("tfo", lambda _raw: None), fastopen=True)
    print("READY", flush=True)
    threading.Event().wait()


# --- the RDP client ------------------------------------------------------------------------------


def rdp_get(addr: str, sni: str, timeout: float, sport: int) -> int:
    """X.224 Connection Request asking for TLS, then a TLS handshake with this SNI and one GET."""
    cookie = b"Cookie: mstshash=lab\r\n"
    x224 = b"\xe0\x00\x00\x00\x00\x00" + cookie + b"\x01\x00\x08\x00\x01\x00\x00\x00"
    request = b"\x03\x00" + struct.pack(">H", 5 + len(x224)) + bytes([len(x224)]) + x224
    try:
        sock = netlab._connect(addr, PORTS["rdp"], timeout, sport)
        sock.sendall(request)
        confirm = _exact(sock, 19)
        if confirm[5] != 0xD0:
            return netlab._emit(False, error=f"no X.224 Connection Confirm: {confirm.hex()}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(sock, server_hostname=sni) as conn:
            status, body = netlab._http_exchange(conn, sni)
        return netlab._emit(status == 200, status=status, body=body)
    except (OSError, ssl.SSLError, ConnectionError) as exc:
        return netlab._emit(False, error=str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="prelude servers and the RDP client (inside a namespace)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p = sub.add_parser("rdp-get")
    p.add_argument("--addr", required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--sport", type=int, default=0)
    a = parser.parse_args(argv)
    if a.cmd == "serve":
        serve(a.cert, a.key)
        return 0
    return rdp_get(a.addr, a.sni, a.timeout, a.sport)


def start(lab: Any) -> None:
    """Start the prelude servers in the lab's servers namespace (ready-checked)."""
    lab.start_server("preludes", [netlab.PYTHON, HERE, "serve", "--cert", lab.cert, "--key", lab.key])


def s_client_starttls(lab: Any, proto: str, addr: str, sni: str, timeout: float = 8) -> netlab.Result:
    """``openssl s_client -starttls PROTO`` through the prelude, then one HTTP request over TLS."""
    port = PORTS[proto]
    argv = [
        "timeout",
        str(timeout),
        "openssl",
        "s_client",
        "-connect",
        f"{addr}:{port}",
        "-quiet",
        "-ign_eof",
        "-starttls",
        proto,
        "-servername",
        sni,
    ]
    if proto == "xmpp":
        argv += ["-xmpphost", sni]
    request = f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
    proc = lab.run("client", argv, input=request, timeout=timeout + 10)
    ok = "HTTP/1.1 200" in proc.stdout and f"sni={sni}" in proc.stdout
    return netlab.Result(ok, 200 if ok else None, proc.stdout, proc.stderr.strip())


def rdp_client(lab: Any, addr: str, sni: str, timeout: float = 8) -> netlab.Result:
    """The RDP client above, run in the client namespace."""
    proc = lab.run(
        "client",
        [netlab.PYTHON, HERE, "rdp-get", "--addr", addr, "--sni", sni, "--timeout", str(timeout)],
        timeout=timeout + 10,
    )
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return netlab.Result(False, error=f"exit {proc.returncode}: {proc.stdout} {proc.stderr}".strip())
    return netlab.Result(data["ok"], data.get("status"), data.get("body", ""), data.get("error", ""))


if __name__ == "__main__":
    sys.exit(main())
