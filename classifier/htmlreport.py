"""The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched).

It renders an aggregate from ``classifier.reportdata``; the plots are SVG drawn here, so the file
opens offline in any browser and reads the same with scripts disabled. Every value from the
records (hostnames, reasons) is escaped: records are wire data.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Sequence

from . import __version__
from .policy import Policy
from .reportdata import MAX_PREFIXES, Aggregate, BgpAggregate, Buckets, ScanAggregate
from .timeutil import format_instant, parse_instant

COLOURS = {
    "block": "#c62828",
    "log": "#f9a825",
    "allow": "#2e7d32",
    "announce": "#1565c0",
    "withdraw": "#6a1b9a",
    "effective": "#c62828",
    "unenforced": "#ef6c00",
    "not-yet-effective": "#b0bec5",
    "ended": "#81c784",
}
_OTHER = ("#00838f", "#5d4037", "#ad1457", "#455a64", "#9e9d24", "#4527a0")

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#212121;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.block{color:#c62828;font-weight:600}.log{color:#8d6e00}.allow{color:#2e7d32}
.note{color:#616161}svg{font:11px system-ui,sans-serif}.cols{display:flex;flex-wrap:wrap;gap:2em}
"""


def _e(value: object) -> str:
    return html.escape("-" if value is None else str(value), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = (
                ' class="n"' if i in numeric else (f' class="{v}"' if v in ("block", "log", "allow") else "")
            )
            cells.append(f"<td{cls}>{_e(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _colour(series: str, i: int) -> str:
    return COLOURS.get(series, _OTHER[i % len(_OTHER)])


def _when(ts: float, span: float) -> str:
    text = format_instant(ts)
    return text[:10] if span > 3 * 86400 else text[:19].replace("T", " ")


def stacked_plot(buckets: Buckets, plot_id: str, title: str) -> str:
    """Stacked bars per time bucket and series, with a legend and a time axis."""
    if not buckets.counts:
        return f'<p class="note">{_e(title)}: nothing to plot.</p>'
    w, h, left, bottom = 900, 220, 50, 40
    first, last = min(buckets.counts), max(buckets.counts)
    slots = last - first + 1
    series = buckets.series()
    top = max(sum(c.values()) for c in buckets.counts.values())
    bar = (w - left - 10) / slots
    parts = [
        f'<svg id="{plot_id}" class="plot" role="img" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="#999"/>',
        f'<text x="{left - 4}" y="15" text-anchor="end">{top}</text>',
        f'<text x="{left - 4}" y="{h - bottom}" text-anchor="end">0</text>',
    ]
    scale = (h - bottom - 15) / top
    for slot, counts in sorted(buckets.counts.items()):
        x = left + (slot - first) * bar
        y: float = h - bottom
        for i, name in enumerate(series):
            n = counts.get(name, 0)
            if not n:
                continue
            height = n * scale
            y -= height
            start = slot * buckets.width
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{height:.1f}" '
                f'fill="{_colour(name, i)}"><title>{_e(name)}: {n} from '
                f"{_e(format_instant(start))}</title></rect>"
            )
    span = slots * buckets.width
    t0, t1 = first * buckets.width, (last + 1) * buckets.width
    parts.append(f'<text x="{left}" y="{h - bottom + 14}">{_e(_when(t0, span))}</text>')
    parts.append(f'<text x="{w - 10}" y="{h - bottom + 14}" text-anchor="end">{_e(_when(t1, span))}</text>')
    parts.append(
        f'<text x="{(left + w) / 2}" y="{h - bottom + 14}" text-anchor="middle">bucket '
        f"{_e(_duration(buckets.width))}</text>"
    )
    x = left
    for i, name in enumerate(series):
        parts.append(
            f'<rect x="{x}" y="{h - 14}" width="10" height="10" fill="{_colour(name, i)}"/>'
            f'<text x="{x + 14}" y="{h - 5}">{_e(name)}</text>'
        )
        x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def bar_chart(items: Sequence[tuple[str, int]], plot_id: str, title: str) -> str:
    """Horizontal bars, one per item."""
    if not items:
        return f'<p class="note">{_e(title)}: none.</p>'
    w, row = 420, 18
    h = row * len(items) + 20
    top = max(n for _, n in items) or 1
    parts = [
        f'<svg id="{plot_id}" class="plot" role="img" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    ]
    for i, (label, n) in enumerate(items):
        y = 10 + i * row
        length = 200 * n / top
        parts.append(
            f'<text x="150" y="{y + 12}" text-anchor="end">{_e(label[:28])}</text>'
            f'<rect x="155" y="{y + 2}" width="{max(length, 1):.1f}" height="{row - 4}" '
            f'fill="{_colour(label, i)}"/><text x="{160 + length:.1f}" y="{y + 12}">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def policy_segments(policy: Policy, pid: str, view: str) -> list[tuple[float, str]]:
    """(start, state) of each stretch of one provision in ``view``; state is a COLOURS key."""
    starts = [float("-inf")] + [parse_instant(t) for t, p, _ in policy.timeline(view) if p == pid]
    out = []
    for start in starts:
        probe = start if start != float("-inf") else (starts[1] - 1 if len(starts) > 1 else 0.0)
        st = policy.status(pid, probe, view)
        state = "unenforced" if st.status == "effective" and st.unenforced else st.status
        out.append((start, state))
    return out


def policy_plot(policy: Policy, pids: Sequence[str], view: str, data_span: tuple[float, float] | None) -> str:
    """One bar per provision, coloured by its state over time; the records' time span shaded."""
    known = [p for p in pids if p in policy.provisions]
    if not known:
        return '<p class="note">No provision covered these records.</p>'
    segs = {pid: policy_segments(policy, pid, view) for pid in known}
    instants = [s for v in segs.values() for s, _ in v if s != float("-inf")]
    if data_span is not None:
        instants += list(data_span)
    t0, t1 = min(instants), max(instants)
    pad = max((t1 - t0) * 0.05, 86400)
    t0, t1 = t0 - pad, t1 + pad
    w, row, left = 900, 22, 230
    h = row * len(known) + 50
    scale = (w - left - 10) / (t1 - t0)

    def x(t: float) -> float:
        return left + (max(t, t0) - t0) * scale

    parts = [
        f'<svg id="plot-policy" class="plot" role="img" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>Provisions over time ({_e(view)} view)</title>"
    ]
    if data_span is not None:
        x0, x1 = x(data_span[0]), x(data_span[1])
        parts.append(
            f'<rect x="{x0:.1f}" y="0" width="{max(x1 - x0, 2):.1f}" height="{h - 30}" '
            'fill="#e3f2fd"><title>time span of the records</title></rect>'
        )
    for i, pid in enumerate(known):
        y = 5 + i * row
        parts.append(f'<text x="{left - 5}" y="{y + 14}" text-anchor="end">{_e(pid)}</text>')
        stretches = segs[pid]
        for j, (start, state) in enumerate(stretches):
            end = stretches[j + 1][0] if j + 1 < len(stretches) else t1
            a, b = x(start), x(end)
            since = "" if start == float("-inf") else f" from {format_instant(start)}"
            parts.append(
                f'<rect x="{a:.1f}" y="{y + 3}" width="{max(b - a, 1):.1f}" height="{row - 6}" '
                f'fill="{COLOURS[state]}"><title>{_e(pid)}: {_e(state)}{_e(since)}</title></rect>'
            )
    base = h - 30
    parts.append(
        f'<text x="{left}" y="{base + 14}">{_e(_when(t0, 10 * 86400))}</text>'
        f'<text x="{w - 10}" y="{base + 14}" text-anchor="end">{_e(_when(t1, 10 * 86400))}</text>'
    )
    lx = left
    for state in ("not-yet-effective", "effective", "unenforced", "ended"):
        parts.append(
            f'<rect x="{lx}" y="{h - 12}" width="10" height="10" fill="{COLOURS[state]}"/>'
            f'<text x="{lx + 14}" y="{h - 3}">{state}</text>'
        )
        lx += 30 + 7 * len(state)
    parts.append("</svg>")
    return "".join(parts)


def _policy_section(
    policy: Policy | None, pids: Sequence[str], view: str, span: tuple[float, float] | None
) -> list[str]:
    out = [f'<h2 id="policy">Policy timeline of the provisions covering these records ({_e(view)} view)</h2>']
    if policy is None:
        out.append('<p class="note">No policy given.</p>')
        return out
    out.append(policy_plot(policy, pids, view, span))
    changes = [(t, p, c) for t, p, c in policy.timeline(view) if p in pids]
    out.append(_table(("instant", "provision", "change"), changes))
    return out


def _head(title: str) -> list[str]:
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]


def _main_view(views: dict[str, int]) -> str:
    return max(views, key=views.__getitem__) if views else "announced"


def _scan(agg: ScanAggregate, policy: Policy | None, stats: dict | None) -> list[str]:
    view = _main_view(agg.views)
    span = (agg.first, agg.last) if agg.first is not None and agg.last is not None else None
    out = _head("classifier scan report")
    when = f"{format_instant(span[0])} to {format_instant(span[1])}" if span else "-"
    out.append(
        f"<p>{agg.records} flows, {agg.packets} packets, {agg.bytes} bytes; first packets from "
        f"{_e(when)}; view {_e(', '.join(sorted(agg.views)))}; inputs: "
        f"{_e(', '.join(sorted(agg.files)))}. Written by classifier {_e(__version__)}.</p>"
    )
    if stats:
        out.append(
            f'<p class="note">Input: {_e(stats.get("files"))} file(s), {_e(stats.get("packets"))} '
            f"packets; malformed {_e(stats.get('malformed') or 'none')}; problems: "
            f"{_e('; '.join(stats.get('problems') or ()) or 'none')}.</p>"
        )
    out.append('<h2 id="totals">Flows by app, category and action</h2>')
    rows: list[tuple[object, ...]] = [
        (a, c, act, n, agg.cell_bytes[(a, c, act)])
        for (a, c, act), n in sorted(agg.cells.items(), key=lambda kv: (kv[0][0] == "-", kv[0]))
    ]
    out.append(_table(("app", "category", "action", "flows", "bytes"), rows, (3, 4)))
    totals = {k: 0 for k in ("block", "log", "allow")}
    for (_a, _c, act), n in agg.cells.items():
        totals[act] = totals.get(act, 0) + n
    out.append(bar_chart(sorted(totals.items()), "plot-totals", "flows by action"))
    out.append('<h2 id="over-time">Actions over time</h2>')
    out.append(stacked_plot(agg.actions, "plot-actions", "flows by action, by first packet"))
    out.append('<h2 id="top">Top hostnames and server ASNs per app (or operator)</h2><div class="cols">')
    for owner in sorted(set(agg.hostnames) | set(agg.asns)):
        out.append(f"<div><h3>{_e(owner if owner != '-' else 'not attributed')}</h3>")
        out.append(_table(("hostname", "flows"), agg.hostnames.get(owner, Counter()).most_common(15), (1,)))
        out.append(
            _table(
                ("server ASN", "flows"),
                [(f"AS{a}", n) for a, n in agg.asns.get(owner, Counter()).most_common(10)],
                (1,),
            )
        )
        out.append("</div>")
    out.append("</div>")
    out.append('<h2 id="evidence">Evidence kinds and confidence (attributed flows)</h2><div class="cols">')
    out.append(bar_chart(agg.evidence.most_common(), "plot-evidence", "flows by evidence kind"))
    out.append(bar_chart(sorted(agg.confidence.items()), "plot-confidence", "flows by confidence"))
    out.append("</div>")
    out.append(_table(("decision rule", "flows"), agg.rules.most_common(), (1,)))
    out.append('<h2 id="blind">Blind spots: names this input cannot show</h2>')
    if agg.blind:
        what = {
            "ech": "Encrypted ClientHello",
            "doh": "DNS over HTTPS",
            "dot": "DNS over TLS",
            "doq": "DNS over QUIC",
        }
        out.append(
            _table(
                ("kind", "flows", "top servers"),
                [
                    (
                        what.get(k, k),
                        n,
                        ", ".join(f"{s} ({c})" for s, c in agg.blind_servers[k].most_common(5)),
                    )
                    for k, n in agg.blind.most_common()
                ],
                (1,),
            )
        )
    else:
        out.append('<p class="note">None: no ECH and no encrypted DNS seen.</p>')
    out += _policy_section(policy, sorted(agg.provisions), view, span)
    out.append(
        f'<h2 id="blocked">Blocked flows ({sum(n for (*_k, a), n in agg.cells.items() if a == "block")}),'
        " grouped by app, category, name and reason</h2>"
    )
    rows = [
        (k[0], k[1], k[2], v[0], format_instant(v[1]), format_instant(v[2]), k[3])
        for k, v in agg.blocked.top()
    ]
    out.append(
        _table(("app", "category", "hostname or server", "flows", "first", "last", "reason"), rows, (3,))
    )
    hidden = agg.blocked.hidden()
    if hidden:
        out.append(f'<p class="note">{hidden} more blocked flows in smaller groups not shown.</p>')
    return out


def _at_least(n: int, limit: int) -> str:
    return f"at least {n}" if n >= limit else str(n)


def _bgp(agg: BgpAggregate, policy: Policy | None) -> list[str]:
    view = _main_view(agg.views)
    span = (agg.first, agg.last) if agg.first is not None and agg.last is not None else None
    out = _head("classifier BGP report")
    when = f"{format_instant(span[0])} to {format_instant(span[1])}" if span else "-"
    out.append(
        f"<p>{agg.routes} route records, {agg.events} timeline records, {_e(when)}; view "
        f"{_e(', '.join(sorted(agg.views)))}. Written by classifier {_e(__version__)}.</p>"
    )
    out.append('<h2 id="neighbours">Routes per neighbour</h2>')
    rows: list[tuple[object, ...]] = [
        (
            f"AS{k[0]}" if isinstance(k[0], int) else k[0],
            k[1],
            k[2],
            k[3],
            k[4],
            v[0],
            _at_least(len(agg.neighbour_prefixes.get(k, ())), MAX_PREFIXES),
            v[1],
            v[2],
        )
        for k, v in sorted(agg.neighbours.items(), key=lambda kv: -kv[1][0])
    ]
    out.append(
        _table(
            (
                "neighbour",
                "neighbour operator",
                "relationship",
                "app",
                "action",
                "routes",
                "prefixes",
                "announcements",
                "withdrawals",
            ),
            rows,
            (5, 6, 7, 8),
        )
    )
    per_rel: dict[str, int] = {}
    for k, v in agg.neighbours.items():
        per_rel[k[2]] = per_rel.get(k[2], 0) + v[0]
    out.append(bar_chart(sorted(per_rel.items()), "plot-relationship", "routes by relationship"))
    out.append('<h2 id="timeline">Announcement timeline</h2>')
    if agg.events:
        out.append(stacked_plot(agg.timeline, "plot-announcements", "timeline records by event"))
        out.append("<h3>Direct-session and blocked changes</h3>")
        rows = [
            (
                k[0],
                k[1],
                f"AS{k[2]}" if k[2] is not None else "-",
                v[0],
                format_instant(v[1]),
                format_instant(v[2]),
                k[3],
                k[4],
            )
            for k, v in agg.direct_events.top()
        ]
        out.append(
            _table(("event", "prefix", "neighbour", "times", "first", "last", "action", "reason"), rows, (3,))
        )
    else:
        out.append(
            '<p class="note">No timeline records: run <code>classifier bgp --timeline</code> on '
            "update files for them.</p>"
        )
    out += _policy_section(policy, sorted(agg.provisions), view, span)
    return out


def render_html(agg: Aggregate, policy: Policy | None, stats: dict | None = None) -> str:
    """The whole report as one HTML document."""
    body = _scan(agg, policy, stats) if isinstance(agg, ScanAggregate) else _bgp(agg, policy)
    body.append("</body></html>\n")
    return "\n".join(body)
