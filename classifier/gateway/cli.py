"""Command-line parsers for ``classifier gateway`` and ``classifier export``.

Import-light on purpose: ``classifier --help`` and ``classifier scan`` load this module, so the
gateway's modules (netfilterqueue, pyroute2, prometheus-client) are imported only when one of
these commands runs.
"""

from __future__ import annotations

import argparse

GATEWAY_EPILOG = """\
Without --enforce nothing on the datapath changes (dry run): the exact nft/iptables commands and
routes are printed, then traffic is classified and recorded as in monitor mode. --print-only
stops after printing. --cleanup removes every table, chain, rule and route this tool installed
(after a crash, kill -9 or power loss) and nothing else.

Exit status: 0 stopped by SIGTERM (or --cleanup/--print-only done), 2 usage or set-up error (one
line says what), 130 stopped by SIGINT, 1 internal error. See docs/gateway.md.
"""


def register(subparsers, signature_subparsers) -> None:
    """Add ``gateway`` and ``export`` to the main parser."""
    from classifier.cliargs import add_community_id_argument, add_floor_arguments, instant_arg, positive

    g = subparsers.add_parser(
        "gateway",
        help="classify (and with --enforce, block) live traffic on this Linux router",
        description="Run the classifier on a live datapath: monitor, inline (NFQUEUE) or reactive.",
        epilog=GATEWAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("-c", "--config", metavar="FILE", help="TOML config file (flags override it)")
    g.add_argument(
        "--mode",
        choices=("monitor", "inline", "reactive"),
        help="monitor: capture and record; inline: NFQUEUE verdicts; reactive: capture plus "
        "kernel block set (default: monitor)",
    )
    g.add_argument(
        "-i",
        "--interface",
        action="append",
        metavar="IFACE",
        help="interface to work on (repeatable; default: all)",
    )
    g.add_argument("--view", choices=("announced", "in-force"), help="policy view (default announced)")
    g.add_argument(
        "--as-of",
        metavar="INSTANT",
        type=instant_arg,
        help="decide every flow at this fixed instant instead of the wall clock",
    )
    g.add_argument(
        "--unenforced-blocks",
        action="store_true",
        default=None,
        help="in-force view: block during non-enforcement windows too",
    )
    add_floor_arguments(g, defaults=False)
    g.add_argument("--log", metavar="FILE", help="JSON-lines record log ('-': standard output)")
    g.add_argument("--peering", metavar="FILE", help="peering map (TOML)")
    g.add_argument("--signatures", metavar="DIR", help="signature directory (default: the shipped set)")
    g.add_argument("--policy", metavar="DIR", help="policy directory (default: <signatures>/policy)")
    add_community_id_argument(g, default=None)
    g.add_argument("--queue", type=int, metavar="N", help="NFQUEUE number (inline; default 7)")
    g.add_argument(
        "--queues",
        type=positive(int),
        metavar="N",
        help="inline: N queues from --queue on, one worker process each; both directions of "
        "a flow reach the same worker (default 1)",
    )
    g.add_argument(
        "--backend",
        choices=("auto", "nft", "iptables"),
        help="how packets reach the queue (inline; default auto: nft if the kernel has "
        "the nft queue statement, else iptables)",
    )
    g.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="Prometheus endpoint on loopback (default 127.0.0.1:9597; 'off' disables)",
    )
    g.add_argument("--idle-tcp", type=positive(float), metavar="SECONDS")
    g.add_argument("--idle-udp", type=positive(float), metavar="SECONDS")
    g.add_argument(
        "--closed-tcp",
        type=positive(float),
        metavar="SECONDS",
        help="time a closed TCP flow stays before its record is written (default 10)",
    )
    g.add_argument(
        "--sync-interval",
        type=positive(float),
        metavar="SECONDS",
        help="how often the kernel's per-flow counters are read (default 5)",
    )
    g.add_argument(
        "--no-offload",
        action="store_true",
        default=None,
        help="inline: keep every packet of decided flows on the queue",
    )
    g.add_argument(
        "--blackhole-routes",
        action="store_true",
        default=None,
        help="blackhole operator hosting prefixes of --route-asn while hosting is blocked",
    )
    g.add_argument(
        "--route-asn",
        type=int,
        action="append",
        metavar="ASN",
        help="operator ASN whose prefixes blackhole routes may cover (repeatable)",
    )
    act = g.add_mutually_exclusive_group()
    act.add_argument(
        "--dry-run",
        action="store_true",
        help="the default: print what would be installed, classify, change nothing",
    )
    act.add_argument("--enforce", action="store_true", help="install the rules and act on verdicts")
    act.add_argument("--print-only", action="store_true", help="print the plan and exit")
    act.add_argument(
        "--cleanup",
        action="store_true",
        help="remove every leftover object of ours (table, chains, rules, routes) and exit",
    )
    g.add_argument(
        "--cleanup-first",
        action="store_true",
        help="with --enforce: remove leftovers of an earlier run instead of refusing to start",
    )
    g.set_defaults(func=_gateway)

    e = subparsers.add_parser("export", help="export the policy for other systems")
    esub = e.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    r = esub.add_parser(
        "rpz",
        help="Response Policy Zone for a resolver (Unbound, BIND)",
        description="Write an RPZ: app names whose provision is effective at the "
        "instant are blocked, other app/operator names pass through (logged).",
    )
    _dated_export_arguments(r, instant_arg)
    r.add_argument(
        "--sinkhole",
        metavar="ADDR",
        help="answer blocked names with this address (A/AAAA) or name (CNAME) instead of NXDOMAIN",
    )
    r.add_argument("--ttl", type=positive(int), default=60, help="TTL of the zone's records (default 60)")
    r.set_defaults(func=_export_rpz)

    z = esub.add_parser(
        "zeek-intel",
        help="Zeek Intel framework file of the names blocked at the instant",
        description="Write a Zeek Intel file (Intel::read_files): one Intel::DOMAIN "
        "indicator per name whose provision is effective at the instant, with "
        "app, category, provision and signature in meta.desc.",
    )
    _dated_export_arguments(z, instant_arg)
    z.add_argument(
        "--operator-prefixes",
        action="store_true",
        help="also the operators' prefixes as Intel::SUBNET (logged, never blocked)",
    )
    z.set_defaults(func=_export_zeek)

    su = esub.add_parser(
        "suricata",
        help="Suricata rules (tls.sni, quic.sni, dns.query, http.host) for the names blocked at the instant",
        description="Write Suricata 7 rules matching the names whose provision is "
        "effective at the instant, app and provision in msg and metadata.",
    )
    _dated_export_arguments(su, instant_arg)
    su.add_argument(
        "--action",
        choices=("alert", "drop", "reject"),
        default="alert",
        help="rule action (default alert; drop/reject for an IPS)",
    )
    su.add_argument(
        "--sid-base",
        type=positive(int),
        default=3_000_000_000,
        metavar="N",
        help="lowest SID; SIDs are N to N+99999999, derived from the signature (default 3000000000)",
    )
    su.add_argument(
        "--datasets",
        metavar="DIR",
        help="write the names as Suricata datasets (string sets, base64 per line) into DIR, and as "
        "the rules a few dataset:isset rules per app, category and provision that load them "
        "(paths relative to -o, as Suricata resolves them). Lookups are exact: only http.host "
        "is matched whatever the case (README: Exports for the engines people run)",
    )
    su.set_defaults(func=_export_suricata)


def _dated_export_arguments(p: argparse.ArgumentParser, instant_arg) -> None:
    """The options every policy-dated export shares: instant, view, data, output."""
    from classifier.cliargs import output_file

    p.add_argument("--as-of", metavar="INSTANT", type=instant_arg, help="policy instant (default: now)")
    p.add_argument("--view", choices=("announced", "in-force"), default="announced")
    p.add_argument(
        "--unenforced-blocks",
        action="store_true",
        help="in-force view: block during non-enforcement windows too",
    )
    p.add_argument("--signatures", metavar="DIR", help="signature directory (default: the shipped set)")
    p.add_argument("--policy", metavar="DIR", help="policy directory (default: <signatures>/policy)")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=output_file,
        help="write here (atomically) instead of stdout (-)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")


def _gateway(args: argparse.Namespace) -> int:
    from .runner import run_gateway

    return run_gateway(args)


def _export_rpz(args: argparse.Namespace) -> int:
    from .rpz import run_export_rpz

    return run_export_rpz(args)


def _export_zeek(args: argparse.Namespace) -> int:
    from .zeekintel import run_export_zeek

    return run_export_zeek(args)


def _export_suricata(args: argparse.Namespace) -> int:
    from .suricata import run_export_suricata

    return run_export_suricata(args)
