"""The scanner finds the ClientHello after preludes and in a SYN (TCP Fast Open), and records JA4/JA4S."""

from __future__ import annotations

from test_ja4 import server_hello
from test_scanner import Run, client_hello, tcp

from classifier.inspect.prelude import MAX_PRELUDE_BYTES
from classifier.record import flow_record

C, S = "192.0.2.7", "198.51.100.20"
NAME = "www.tiktok.com"


def handshake(run, cport, dport, syn_data=b""):
    run.send(tcp(C, S, cport, dport, "S", 1000, data=syn_data))
    run.send(tcp(S, C, dport, cport, "SA", 5000, 1001 + len(syn_data)))
    run.send(tcp(C, S, cport, dport, "A", 1001 + len(syn_data), 5001))


def only(flows):
    assert len(flows) == 1, flows
    return flow_record(flows[0])


def test_tfo_clienthello_in_the_syn_accepted(sigs, policy):
    """The server acks the SYN's data: the ClientHello is only ever in the SYN."""
    hello = client_hello(NAME)
    run = Run(sigs, policy)
    handshake(run, 40001, 443, syn_data=hello)
    rec = only(run.done())
    assert (rec["app_proto"], rec["sni"]) == ("tls", NAME)
    assert rec["ja4"].startswith("t13d")


def test_tfo_clienthello_in_the_syn_refused_then_resent(sigs, policy):
    """The server acks only the SYN: the client sends the same bytes again after the handshake."""
    hello = client_hello(NAME)
    run = Run(sigs, policy)
    run.send(tcp(C, S, 40002, 443, "S", 1000, data=hello))
    run.send(tcp(S, C, 443, 40002, "SA", 5000, 1001))
    run.send(tcp(C, S, 40002, 443, "PA", 1001, 5001, hello))
    rec = only(run.done())
    assert (rec["app_proto"], rec["sni"]) == ("tls", NAME)


class Talk:
    """Both directions of a TCP conversation with their sequence numbers kept right."""

    def __init__(self, run, cport, dport):
        self.run, self.cport, self.dport = run, cport, dport
        self.seq = {True: 1001, False: 5001}
        handshake(run, cport, dport)

    def say(self, from_client: bool, data: bytes):
        if from_client:
            pkt = tcp(C, S, self.cport, self.dport, "PA", self.seq[True], self.seq[False], data)
        else:
            pkt = tcp(S, C, self.dport, self.cport, "PA", self.seq[False], self.seq[True], data)
        self.seq[from_client] += len(data)
        self.run.send(pkt)


def test_smtp_starttls_with_server_greeting_first(sigs, policy):
    run = Run(sigs, policy, server_hello=True)
    talk = Talk(run, 40003, 25)
    talk.say(False, b"220 mx.example ESMTP\r\n")
    talk.say(True, b"EHLO client.example\r\n")
    talk.say(False, b"250-mx.example\r\n250 STARTTLS\r\n")
    talk.say(True, b"STARTTLS\r\n")
    talk.say(False, b"220 go ahead\r\n")
    talk.say(True, client_hello(NAME))
    assert run.scanner.table.live == 1
    talk.say(False, server_hello(0x1301, [(0x002B, b"\x03\x04")]))
    rec = only(run.done())
    assert (rec["app_proto"], rec["prelude"], rec["sni"]) == ("tls", "smtp", NAME)
    assert rec["ja4s"] == "t130100_1301_b9a491fefe05"  # sha256("002b"): the ServerHello after the prelude


def test_socks5_target_is_evidence_and_a_name(sigs, policy):
    run = Run(sigs, policy)
    handshake(run, 40004, 1080)
    seq = 1001
    greeting = b"\x05\x01\x00"
    run.send(tcp(C, S, 40004, 1080, "PA", seq, 5001, greeting))
    seq += len(greeting)
    run.send(tcp(S, C, 1080, 40004, "PA", 5001, seq, b"\x05\x00"))
    req = b"\x05\x01\x00\x03" + bytes([len(NAME)]) + NAME.encode() + b"\x01\xbb"
    run.send(tcp(C, S, 40004, 1080, "PA", seq, 5003, req))
    seq += len(req)
    run.send(tcp(S, C, 1080, 40004, "PA", 5003, seq, b"\x05\x00\x00\x01\xc6\x33\x64\x14\x01\xbb"))
    run.send(tcp(C, S, 40004, 1080, "PA", seq, 5013, client_hello(None)))  # curl sends no SNI to an IP
    rec = only(run.done())
    assert (rec["prelude"], rec["app_proto"], rec["sni"]) == ("socks5", "tls", None)
    assert (rec["hostname"], rec["hostname_source"], rec["app"]) == (NAME, "socks", "tiktok")
    socks = [e for e in rec["evidence"] if e["kind"] == "socks"]
    assert socks and socks[0]["value"] == f"socks5 CONNECT {NAME}:443" and socks[0]["signature"]


def test_plain_smtp_without_starttls_is_still_decided_within_bounds(sigs, policy):
    run = Run(sigs, policy)
    handshake(run, 40005, 25)
    run.send(tcp(S, C, 25, 40005, "PA", 5001, 1001, b"220 mx.example ESMTP\r\n"))
    lines = b"".join(b"RCPT TO:<u%d@example.com>\r\n" % i for i in range(20))
    run.send(tcp(C, S, 40005, 25, "PA", 1001, 5025, lines))
    assert run.scanner.table.entries  # still live, but decided: 16 lines and no STARTTLS
    flow = next(iter(run.scanner.table))
    assert flow.stage == 1 and not flow.inspecting
    rec = only(run.done())
    assert (rec["app_proto"], rec["prelude"], rec["sni"]) == ("unknown", None, None)


def test_prelude_then_no_tls_gives_up(sigs, policy):
    run = Run(sigs, policy)
    handshake(run, 40006, 5432)
    run.send(tcp(C, S, 40006, 5432, "PA", 1001, 5001, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"))
    run.send(tcp(S, C, 5432, 40006, "PA", 5001, 1009, b"N"))
    run.send(tcp(C, S, 40006, 5432, "PA", 1009, 5002, b"\x00\x00\x00\x54\x00\x03\x00\x00user\x00"))
    rec = only(run.done())
    assert (rec["app_proto"], rec["prelude"], rec["sni"]) == ("unknown", "postgres", None)
    assert MAX_PRELUDE_BYTES >= 1024


def test_server_hello_is_read_after_the_decision_within_bounds(sigs, policy):
    """The verdict never waits for the ServerHello; reading it stops at the ServerHello, or after
    8 more client segments with no answer (the client's bytes are dropped at the decision)."""
    run = Run(sigs, policy, server_hello=True)
    talk = Talk(run, 40007, 443)
    talk.say(True, client_hello(NAME))
    flow = next(iter(run.scanner.table))
    assert flow.decision is not None and flow.inspecting and not flow.streams[0].data
    talk.say(False, server_hello(0x1301, [(0x002B, b"\x03\x04")]))
    assert not flow.inspecting and flow.streams is None and flow.facts.ja4s.startswith("t130100_1301_")

    talk = Talk(run, 40008, 443)
    talk.say(True, client_hello(NAME))
    flow = next(f for f in run.scanner.table if f.client_port == 40008)
    for _ in range(7):
        talk.say(True, b"\x17\x03\x03\x00\x01\x00")
    assert flow.inspecting
    talk.say(True, b"\x17\x03\x03\x00\x01\x00")
    assert not flow.inspecting and flow.streams is None and flow.facts.ja4s is None


def test_server_hello_is_not_read_unless_asked(sigs, policy):
    """By default a scan's decided TLS flow stops inspecting at its verdict: reading the
    ServerHello is a per-packet cost only ``scan --ja4s`` (and the gateway) pays."""
    run = Run(sigs, policy)
    talk = Talk(run, 40009, 443)
    talk.say(True, client_hello(NAME))
    flow = next(iter(run.scanner.table))
    assert flow.decision is not None and not flow.inspecting and flow.streams is None
    talk.say(False, server_hello(0x1301, [(0x002B, b"\x03\x04")]))
    rec = only(run.done())
    assert rec["ja4s"] is None and rec["ja4"].startswith("t13d")


def test_ja4_is_computed_at_record_time_not_on_the_packet_path(sigs, policy):
    """The decision needs no JA4 (the shipped JA4 table is empty): the packet that decides the flow
    leaves it uncomputed, and the record computes it once."""
    run = Run(sigs, policy)
    talk = Talk(run, 40010, 443)
    talk.say(True, client_hello(NAME))
    flow = next(iter(run.scanner.table))
    assert flow.decision is not None and flow.facts.tls is not None and flow.facts.ja4 is None
    rec = flow_record(flow)
    assert rec["ja4"].startswith("t13d") and flow.facts.ja4 == rec["ja4"]
