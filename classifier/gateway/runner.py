"""``classifier gateway``: check, plan, (with --enforce) install, run, and always clean up.

Order of a run, chosen so the datapath is never left in a state nobody owns:

1. config and flags, signatures and policy (all validated before anything else);
2. preflight: root, capabilities, interfaces, kernel support;
3. the plan: the exact nft text, iptables commands and routes; printed in a dry run;
4. with ``--enforce``: refuse leftovers of an earlier run (unless ``--cleanup-first``; checked
   before the plan, which records the mangle tables iptables will create), install signal
   handlers, bind the queue, install the rules, run;
5. on SIGINT, SIGTERM or any error: unbind (traffic passes: bypass), write the records of live
   flows, remove our table, chains and routes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from classifier.errors import UserError

from . import netfilter, preflight, xtables
from .config import GatewayConfig, resolve

if TYPE_CHECKING:
    from .engine import Engine
    from .inline import InlineEngine
    from .supervisor import QueueSupervisor


def load_signatures(cfg: GatewayConfig):
    """The signatures and policy a run uses (validated; the cache makes this cheap for workers)."""
    from classifier.policy import Policy
    from classifier.signatures import Signatures, shipped_directory

    sig_dir = Path(cfg.signatures) if cfg.signatures else shipped_directory()
    sigs = Signatures.load(sig_dir, peering=cfg.peering)
    policy = Policy.load(Path(cfg.policy) if cfg.policy else sig_dir / "policy")
    return sigs, policy


def _say(msg: str) -> None:
    print(f"classifier gateway: {msg}", file=sys.stderr, flush=True)


def run_cleanup(cfg: GatewayConfig) -> int:
    """``--cleanup``: remove every object of ours (table, chains, jumps, routes) and only those."""
    from .nftlib import Nft
    from .routes import Routes

    preflight.require_privileges(need_raw=False)
    nft = Nft()
    preflight.require_nf_tables(nft)
    kept: list[str] = []
    removed = netfilter.remove_all(nft, kept)
    routes = Routes(cfg.route_protocol)
    try:
        removed += routes.remove_all()
        left = netfilter.leftovers(nft) + [f"route {p} table {t}" for p, t, _ in routes.ours()]
    finally:
        routes.close()
    for item in removed:
        print(f"removed {item}")
    for item in kept:
        print(f"kept {item}")
    if not removed:
        print("nothing to clean up: no table, chain, rule or route of ours")
    if left:
        raise UserError("could not remove: " + "; ".join(left))
    return 0


def run_gateway(args: argparse.Namespace) -> int:
    """The ``classifier gateway`` command."""
    cfg = resolve(args)
    if args.cleanup:
        return run_cleanup(cfg)
    enforce = bool(args.enforce)
    print_only = bool(args.print_only)
    sigs, policy = load_signatures(cfg)

    from .nftlib import Nft
    from .routes import RoutePlan, route_command

    nft = None
    if not print_only:
        preflight.require_privileges()
        preflight.require_interfaces(cfg.interfaces)
        if cfg.mode != "monitor":
            nft = Nft()
            preflight.require_nf_tables(nft)
        if cfg.mode == "inline" and enforce:
            preflight.require_nfqueue()
    elif cfg.mode == "inline" and os.geteuid() == 0:
        with contextlib.suppress(UserError):
            nft = Nft()
    backend = netfilter.choose_backend(cfg, nft) if cfg.mode == "inline" else None
    if enforce and backend == "iptables":
        preflight.require_iptables()
    if enforce and cfg.mode != "monitor":
        _refuse_or_remove_leftovers(cfg, nft, args.cleanup_first)  # before the plan: it looks at tables

    route_plan = RoutePlan(cfg, sigs, policy) if cfg.mode != "monitor" else None
    start = cfg.as_of if cfg.as_of is not None else time.time()
    desired = route_plan.desired(start) if route_plan is not None else {}
    created = xtables.absent(nft) if nft is not None and netfilter.uses_iptables(cfg, backend) else []
    plan = netfilter.build_plan(
        cfg, backend, [route_command(p, cfg.route_protocol) for p in sorted(desired)], created
    )
    if route_plan is not None and route_plan.excluded:
        plan.notes.append(
            f"{len(route_plan.excluded)} operator prefixes overlap CDN prefixes and are never blackholed"
        )
    if route_plan is not None and cfg.blackhole_routes and cfg.as_of is None:
        plan.notes.append("routes follow the policy: added and removed at effective instants")

    if not enforce or print_only:
        out = sys.stderr if cfg.log == "-" and not print_only else sys.stdout  # records own stdout
        out.write(plan.render(enforce=False))
        out.flush()
        if print_only:
            return 0
        if nft is not None:
            found = netfilter.leftovers(nft)
            if found:
                _say("warning: leftovers of an earlier run (remove with --cleanup): " + "; ".join(found))
    else:
        sys.stderr.write(plan.render(enforce=True))
        sys.stderr.flush()
    return _run(cfg, sigs, policy, plan, nft, enforce, args, route_plan)


def _refuse_or_remove_leftovers(cfg: GatewayConfig, nft, cleanup_first: bool) -> None:
    """An enforcing run never starts over objects of an earlier run: refuse, or remove them first."""
    from .routes import Routes

    found = netfilter.leftovers(nft)
    routes_probe = Routes(cfg.route_protocol)
    try:
        found += [f"route {p} table {t} proto {cfg.route_protocol}" for p, t, _ in routes_probe.ours()]
    finally:
        routes_probe.close()
    if found:
        if not cleanup_first:
            raise UserError(
                "objects of an earlier gateway run are still installed ("
                + "; ".join(found)
                + "): remove them with `classifier gateway --cleanup` "
                "or start with --cleanup-first"
            )
        run_cleanup(cfg)


def _run(cfg, sigs, policy, plan, nft, enforce: bool, args, route_plan) -> int:
    from .flowsets import FlowSets
    from .metrics import Stats, provision_states, serve
    from .recordlog import RecordLog
    from .resets import Resetter
    from .routes import Routes

    log = RecordLog(cfg.log)
    stats = Stats()
    mode = cfg.mode if enforce else "monitor"
    enforcing = enforce and cfg.mode != "monitor"
    multiqueue = mode == "inline" and cfg.queues > 1  # the workers have their own sets and resetters
    sets = FlowSets(nft, cfg.set_timeout) if enforcing and not multiqueue else None
    resetter = Resetter() if enforcing and cfg.resets and not multiqueue else None
    label = f"{cfg.mode}{'' if enforce else ' (dry run)'}"
    # The supervisor has the engine's interface as far as this function uses it; binding differs.
    engine: Engine | QueueSupervisor
    supervisor: QueueSupervisor | None = None
    inline_engine: InlineEngine | None = None
    if multiqueue:
        from .supervisor import QueueSupervisor

        engine = supervisor = QueueSupervisor(cfg, log, stats, label)
    elif mode == "inline":
        from .inline import InlineEngine

        engine = inline_engine = InlineEngine(
            cfg, sigs, policy, log, stats, sets=sets, label=label, resetter=resetter
        )
    elif mode == "reactive":
        from .reactive import ReactiveEngine

        engine = ReactiveEngine(
            cfg,
            sigs,
            policy,
            log,
            stats,
            sets=sets,
            label=label,
            interfaces=cfg.interfaces,
            resetter=resetter,
        )
    else:
        from .monitor import MonitorEngine

        engine = MonitorEngine(cfg, sigs, policy, log, stats, label=label, interfaces=cfg.interfaces)

    def flows_live() -> int:
        return engine.live_flows()

    def queue_packets() -> dict[int, int]:
        return supervisor.queue_packets() if supervisor is not None else {cfg.queue: stats.packets}

    interrupted: list[int] = []

    def stop(signum, _frame) -> None:
        interrupted.append(signum)
        engine.stop_requested = True

    def reopen(_signum, _frame) -> None:
        engine.reopen_requested = True

    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    old_wakeup = signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reopen)

    routes = None
    installed = False
    try:
        if cfg.metrics_address is not None:
            host, port = cfg.metrics_address
            try:
                inline = mode == "inline"
                _server, bound = serve(
                    stats,
                    cfg.mode,
                    netfilter.queue_numbers(cfg) if inline else None,
                    flows_live,
                    host,
                    port,
                    queue_packets if inline else None,
                    provision_states(policy, cfg.view, cfg.as_of),
                    cfg.view,
                )
            except OSError as err:
                raise UserError(f"metrics: cannot listen on {cfg.metrics}: {err.strerror or err}") from None
            _say(f"metrics on http://{host if ':' not in host else f'[{host}]'}:{bound}/metrics")
        if enforcing:
            if supervisor is not None:
                supervisor.start()  # every worker bound before the rules: no flow skips classification
            elif inline_engine is not None:
                inline_engine.bind()  # bound before the rules: no window where flows skip classification
            installed = True
            netfilter.install(plan, nft)
            if route_plan is not None and route_plan.candidates:
                routes = Routes(cfg.route_protocol)
                _apply_routes(routes, route_plan, cfg)
                engine.ticks.append(lambda now: _apply_routes(routes, route_plan, cfg, now))
        where = ", ".join(cfg.interfaces) or "all interfaces"
        policy_time = "wall clock" if cfg.as_of is None else f"fixed at {args_as_of(cfg)}"
        queues = f" on {cfg.queues} queues" if multiqueue else ""
        _say(
            f"running: {cfg.mode} mode{queues} on {where}, "
            f"{'enforcing' if enforcing else 'dry run, nothing enforced'}, {cfg.view} view, "
            f"policy time {policy_time}, records to {cfg.log}"
        )
        engine.run(rfd)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for s, h in old.items():
            signal.signal(s, h)
        problems = _shutdown(engine, nft, routes, installed, log, resetter)
        os.close(rfd)
        os.close(wfd)
        if problems:
            _say("cleanup problems: " + "; ".join(problems))
    if engine.fatal is not None:
        raise engine.fatal
    _say(
        f"stopped: {stats.packets} packets, {stats.records} records, "
        + ", ".join(f"{a} {stats.verdicts.get(a, 0)}" for a in ("block", "log", "allow"))
    )
    return 130 if interrupted and interrupted[0] == signal.SIGINT else 0


def args_as_of(cfg: GatewayConfig) -> str:
    from classifier.timeutil import format_instant

    return format_instant(cfg.as_of) if cfg.as_of is not None else "now"


def _apply_routes(routes, route_plan, cfg: GatewayConfig, now: float | None = None) -> None:
    when = cfg.as_of if cfg.as_of is not None else (now if now is not None else time.time())
    added, removed = routes.apply(route_plan.desired(when))
    if added:
        _say(f"routes: {len(added)} blackhole routes added (proto {cfg.route_protocol})")
    if removed:
        _say(f"routes: {len(removed)} blackhole routes removed (proto {cfg.route_protocol})")


def _shutdown(engine, nft, routes, installed: bool, log, resetter) -> list[str]:
    """Stop taking packets, write every live flow's record, remove what we installed."""
    problems: list[str] = []

    def attempt(what: str, fn) -> None:
        try:
            fn()
        except Exception as err:
            problems.append(f"{what}: {err}")

    attempt("queue", engine.close)  # unbound: the bypass lets traffic through from here on
    attempt("records", engine.finish)
    if installed and nft is not None:
        kept: list[str] = []
        attempt("netfilter", lambda: netfilter.remove_all(nft, kept))
        for item in kept:
            _say(f"kept {item}")
    if routes is not None:
        attempt("routes", routes.remove_all)
        attempt("routes", routes.close)
    if resetter is not None:
        attempt("resets", resetter.close)
    attempt("log", log.close)
    return problems
