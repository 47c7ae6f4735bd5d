"""``classifier gateway`` and ``classifier export``: the scan pipeline on a live Linux datapath.

Modules, one job each (see docs/gateway.md):

* ``config``: the TOML config file and the flags that override it, validated.
* ``preflight``: root, capabilities, kernel support and interfaces, checked before anything runs.
* ``nftlib``: a thin handle on libnftables (or the ``nft`` binary) for rule sets and set elements.
* ``netfilter``: the nftables/iptables objects of each mode: plan, install, list, remove.
* ``flowsets``: the per-flow elements of our nft sets (batched adds/removals, kernel counters).
* ``resets``: TCP resets toward both ends of a blocked connection.
* ``engine``: what the packet loops share (scanner fed with wall-clock time, verdicts, records).
* ``inline``, ``monitor``, ``reactive``: the three packet loops.
* ``supervisor``, ``worker``, ``channel``, ``dnsshare``: inline mode on several queues (one worker
  process per queue; the supervisor writes records, relays DNS answers, sums metrics).
* ``routes``: blackhole routes for operator-owned hosting prefixes, tagged with our protocol number.
* ``metrics``: Prometheus counters on loopback.
* ``recordlog``: the JSON-lines log, flushed per line and reopened on SIGHUP.
* ``runner``: wires it together, owns signals and cleanup.
* ``rpz``: ``classifier export rpz``, a Response Policy Zone for Unbound.
* ``cli``: the argument parsers (import-light).
"""
