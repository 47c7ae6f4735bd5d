"""Gateway configuration: a TOML file, then command-line flags over it, validated in one place.

Every problem is one line naming the file (or the flag) and the key, so an operator editing a
config on a router sees exactly what to fix. Relative paths in the file are relative to the file.
``--enforce`` is deliberately not a config key: changing the datapath is asked for on each run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from classifier.blockfloor import CONFIDENCE_LEVELS, DEFAULT_CONFIDENCE, DEFAULT_EVIDENCE, check_evidence
from classifier.datafile import read_toml
from classifier.errors import DataError, UserError
from classifier.flows import DEFAULT_MAX_FLOWS
from classifier.timeutil import instant_of
from classifier.validate import (
    BOOLEAN,
    INTEGER,
    INTEGER_LIST,
    NUMBER,
    STRING,
    TEXT,
    Invalid,
    Kind,
    choice,
    key_text,
    kind,
    list_of,
)

MODES = ("monitor", "inline", "reactive")
VIEWS = ("announced", "in-force")
BACKENDS = ("auto", "nft", "iptables")
MAX_QUEUES = 64


@dataclass(frozen=True)
class GatewayConfig:
    """Everything a gateway run needs; defaults are the safe ones."""

    source: str = "<defaults>"  # the config file, for messages
    mode: str = "monitor"
    interfaces: tuple[str, ...] = ()
    view: str = "announced"
    as_of: float | None = None
    unenforced_blocks: bool = False
    block_confidence: str = DEFAULT_CONFIDENCE  # least confidence a block needs (blockfloor)
    block_evidence: tuple[str, ...] = DEFAULT_EVIDENCE  # evidence kinds that can support a block
    log: str = "-"
    peering: str | None = None
    signatures: str | None = None
    policy: str | None = None
    community_id_seed: int = 0  # seed of the records' Community ID: the one the site's Zeek/Suricata use
    # flows (wall-clock seconds)
    idle_tcp: float = 300.0
    idle_udp: float = 60.0
    closed_tcp: float = 10.0
    max_flows: int = DEFAULT_MAX_FLOWS
    # inline
    queue: int = 7
    queues: int = 1  # queues from `queue` on, one worker process each (flows spread by address hash)
    queue_maxlen: int = 4096
    backend: str = "auto"
    fail_open: bool = True
    offload: bool = True
    offload_after: int = 16  # packets after the decision before a flow is offloaded
    mark: int = 0x00100000
    # sets
    set_size: int = 65536
    set_timeout: float = 3600.0
    sync_interval: float = 5.0
    resets: bool = True
    # routes
    blackhole_routes: bool = False
    route_asns: tuple[int, ...] = ()
    route_asns_named: str = ""  # how messages name route_asns when a flag gave it ("--route-asn")
    route_protocol: int = 241
    # metrics
    metrics: str | None = "127.0.0.1:9597"

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the metrics endpoint, or None when disabled."""
        if not self.metrics:
            return None
        host, _, port = self.metrics.rpartition(":")
        return host.strip("[]"), int(port)


# (section, key) -> (attribute, kind). kind: str, bool, int, float, path, strlist, intlist,
# instant, or a tuple of allowed strings.
_KEYS: dict[tuple[str, str], tuple[str, Any]] = {
    ("gateway", "mode"): ("mode", MODES),
    ("gateway", "interfaces"): ("interfaces", "strlist"),
    ("gateway", "view"): ("view", VIEWS),
    ("gateway", "as_of"): ("as_of", "instant"),
    ("gateway", "unenforced_blocks"): ("unenforced_blocks", "bool"),
    ("gateway", "block_confidence"): ("block_confidence", CONFIDENCE_LEVELS),
    ("gateway", "block_evidence"): ("block_evidence", "strlist"),
    ("gateway", "log"): ("log", "path"),
    ("gateway", "peering"): ("peering", "path"),
    ("gateway", "signatures"): ("signatures", "path"),
    ("gateway", "policy"): ("policy", "path"),
    ("gateway", "community_id_seed"): ("community_id_seed", "int"),
    ("flows", "idle_tcp"): ("idle_tcp", "float"),
    ("flows", "idle_udp"): ("idle_udp", "float"),
    ("flows", "closed_tcp"): ("closed_tcp", "float"),
    ("flows", "max_flows"): ("max_flows", "int"),
    ("inline", "queue"): ("queue", "int"),
    ("inline", "queues"): ("queues", "int"),
    ("inline", "queue_maxlen"): ("queue_maxlen", "int"),
    ("inline", "backend"): ("backend", BACKENDS),
    ("inline", "fail_open"): ("fail_open", "bool"),
    ("inline", "offload"): ("offload", "bool"),
    ("inline", "offload_after"): ("offload_after", "int"),
    ("inline", "mark"): ("mark", "int"),
    ("sets", "size"): ("set_size", "int"),
    ("sets", "timeout"): ("set_timeout", "float"),
    ("sets", "sync_interval"): ("sync_interval", "float"),
    ("sets", "resets"): ("resets", "bool"),
    ("routes", "blackhole"): ("blackhole_routes", "bool"),
    ("routes", "asns"): ("route_asns", "intlist"),
    ("routes", "protocol"): ("route_protocol", "int"),
    ("metrics", "listen"): ("metrics", "str"),
}


def load(path: str | Path | None) -> GatewayConfig:
    """Read and validate a config file (None: the defaults)."""
    if path is None:
        return GatewayConfig()
    p = Path(path)
    doc = read_toml(p, allow_empty=True)  # a config of comments only means the defaults
    values: dict[str, Any] = {}
    sections = {s for s, _ in _KEYS}
    for section, table in doc.items():
        if section not in sections:
            known = ", ".join(sorted(sections))
            raise DataError(str(p), f"[{key_text(section)}]", f"unknown section (known: {known})")
        if not isinstance(table, dict):
            raise DataError(str(p), section, f"must be a table ([{section}])")
        for key, raw in table.items():
            where = f"[{section}] {key_text(key)}"
            spec = _KEYS.get((section, key))
            if spec is None:
                known = ", ".join(k for s, k in _KEYS if s == section)
                raise DataError(str(p), where, f"unknown key (known: {known})")
            attr, kind = spec
            try:
                values[attr] = _kind(kind, p.parent).convert(raw)
            except Invalid as err:
                raise DataError(str(p), where, str(err)) from None
    cfg = replace(GatewayConfig(), source=str(p), **values)
    return validate(cfg, lambda attr: f"{p}: [{_section_of(attr)}] {_key_of(attr)}")


def _section_of(attr: str) -> str:
    return next(s for (s, _k), (a, _) in _KEYS.items() if a == attr)


def _key_of(attr: str) -> str:
    return next(k for (_s, k), (a, _) in _KEYS.items() if a == attr)


def _instant(raw: Any) -> float:
    """A TOML date, date-time or ISO 8601 string, as epoch seconds (classifier.timeutil)."""
    if not isinstance(raw, str | dt.date):
        raise Invalid(f"{raw!r} is not an ISO 8601 date or date-time")
    try:
        return instant_of(raw)
    except UserError as err:
        raise Invalid(str(err)) from None


# The kinds _KEYS names, from the shared validation layer (classifier.validate).
_KINDS: dict[str, Kind] = {
    "bool": BOOLEAN,
    "int": INTEGER,
    "float": NUMBER,
    "str": STRING,
    "strlist": list_of(TEXT, allow_empty=True),
    "intlist": INTEGER_LIST,
    "instant": Kind("an ISO 8601 date or date-time", _instant),
}


def _kind(name: Any, base: Path) -> Kind:
    """The validation kind for a _KEYS kind; a path is relative to the config file (``base``)."""
    if isinstance(name, tuple):
        return choice(name)
    if name == "path":
        return kind(
            "a non-empty path",
            lambda v: isinstance(v, str) and v != "",
            lambda v: v if v == "-" or Path(v).is_absolute() else str(base / v),
        )
    return _KINDS[name]


def validate(cfg: GatewayConfig, name_of) -> GatewayConfig:
    """Range and consistency checks shared by the file and the flags; ``name_of(attr)`` names a key."""

    def bad(attr: str, problem: str) -> UserError:
        return UserError(f"{name_of(attr)}: {problem}")

    for attr in ("idle_tcp", "idle_udp", "closed_tcp", "set_timeout", "sync_interval"):
        if getattr(cfg, attr) <= 0:
            raise bad(attr, "must be positive")
    for attr in ("max_flows", "queue_maxlen", "set_size"):
        if getattr(cfg, attr) <= 0:
            raise bad(attr, "must be positive")
    if not 0 <= cfg.community_id_seed <= 0xFFFF:
        raise bad("community_id_seed", "must be 0..65535 (the Community ID seed is 16 bits)")
    if cfg.offload_after < 0:
        raise bad("offload_after", "must be 0 or more")
    shortest = min(("closed_tcp", "idle_udp", "idle_tcp"), key=lambda a: getattr(cfg, a))
    if cfg.sync_interval > getattr(cfg, shortest):
        # Counters are read every sync_interval: a flow must not end before a read after its last packet.
        raise bad(
            "sync_interval",
            f"must not exceed {_FLAG_NAMES.get(shortest, shortest)} "
            f"({getattr(cfg, shortest):g} s), or offloaded flows lose counts",
        )
    if not 0 <= cfg.queue <= 65535:
        raise bad("queue", "must be a queue number 0-65535")
    if not 1 <= cfg.queues <= MAX_QUEUES:
        raise bad("queues", f"must be 1-{MAX_QUEUES} (one worker process per queue)")
    if cfg.queue + cfg.queues - 1 > 65535:
        raise bad("queues", f"queues {cfg.queue}-{cfg.queue + cfg.queues - 1} go past queue number 65535")
    if cfg.mark <= 0 or cfg.mark >= 1 << 32 or cfg.mark & (cfg.mark - 1):
        raise bad("mark", "must be a single bit of the 32-bit packet mark, e.g. 0x00100000")
    if not 5 <= cfg.route_protocol <= 255:
        raise bad("route_protocol", "must be a routing protocol number 5-255 (0-4 are the kernel's own)")
    if cfg.blackhole_routes and not cfg.route_asns:
        raise bad("route_asns", "blackhole routes need the list of operator ASNs they may cover")
    for asn in cfg.route_asns:
        if not 0 < asn < 1 << 32:
            raise bad("route_asns", f"{asn} is not an ASN")
    if cfg.mode == "monitor" and cfg.blackhole_routes:
        raise bad("blackhole_routes", "monitor mode enforces nothing; use inline or reactive")
    problem = check_evidence(cfg.block_evidence)
    if problem is not None:
        raise bad("block_evidence", problem)
    if len(set(cfg.interfaces)) != len(cfg.interfaces):
        raise bad("interfaces", "lists an interface twice")
    for name in cfg.interfaces:
        if len(name) > 15 or "/" in name or name.strip() != name or not name:
            raise bad("interfaces", f"{name!r} is not an interface name")
    if cfg.metrics:
        host, sep, port = cfg.metrics.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise bad("metrics", f"{cfg.metrics!r} is not host:port (e.g. 127.0.0.1:9597)")
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise bad("metrics", f"{host!r} is not an IP address") from None
        if not addr.is_loopback:
            raise bad("metrics", f"{host} is not a loopback address: the endpoint is bound to loopback only")
    return cfg


# Flag attribute on the argparse namespace -> config attribute.
_FLAGS: dict[str, str] = {
    "mode": "mode",
    "interface": "interfaces",
    "view": "view",
    "as_of": "as_of",
    "unenforced_blocks": "unenforced_blocks",
    "block_confidence": "block_confidence",
    "block_evidence": "block_evidence",
    "log": "log",
    "peering": "peering",
    "signatures": "signatures",
    "policy": "policy",
    "community_id_seed": "community_id_seed",
    "queue": "queue",
    "queues": "queues",
    "backend": "backend",
    "metrics": "metrics",
    "idle_tcp": "idle_tcp",
    "idle_udp": "idle_udp",
    "closed_tcp": "closed_tcp",
    "blackhole_routes": "blackhole_routes",
    "route_asn": "route_asns",
    "sync_interval": "sync_interval",
    "no_offload": "offload",
}

_FLAG_NAMES = {attr: "--" + flag.replace("_", "-") for flag, attr in _FLAGS.items()}


def resolve(args: argparse.Namespace) -> GatewayConfig:
    """The config file named by ``--config`` with every flag the user gave applied over it."""
    cfg = load(getattr(args, "config", None))
    changes: dict[str, Any] = {}
    for flag, attr in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag == "no_offload":
            if value:
                changes["offload"] = False
            continue
        if attr in ("interfaces", "route_asns"):
            value = tuple(value)
        if flag == "metrics" and value in ("", "off", "none"):
            value = None
        changes[attr] = value
    if not changes:
        return cfg
    if "route_asns" in changes:
        changes["route_asns_named"] = _FLAG_NAMES["route_asns"]
    merged = replace(cfg, **changes)

    def name_of(attr: str) -> str:
        if (attr in changes or cfg.source == "<defaults>") and attr in _FLAG_NAMES:
            return _FLAG_NAMES[attr]
        return f"{cfg.source}: [{_section_of(attr)}] {_key_of(attr)}"

    return validate(merged, name_of)


def describe(cfg: GatewayConfig) -> dict[str, Any]:
    """The effective settings, for the start-up line and the dry run."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}
