"""Prometheus metrics by app and category, and the provisions effective at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from classifier.gateway import metrics
from classifier.gateway.supervisor import _add
from classifier.timeutil import parse_instant


def scrape(collector) -> str:
    reg = CollectorRegistry()
    reg.register(collector)
    return generate_latest(reg).decode()


def test_verdicts_by_app_and_category():
    stats = metrics.Stats()
    stats.apps.update({("tiktok", "hosting", "block"): 3, ("none", "hosting", "log"): 2})
    total = metrics.Stats()
    _add(total, stats)
    _add(total, stats)  # the supervisor sums its workers' counters
    text = scrape(metrics._Collector(total, "inline", None, lambda: 0))
    assert (
        'classifier_gateway_app_verdicts_total{action="block",app="tiktok",category="hosting",'
        'mode="inline"} 6.0'
    ) in text
    assert (
        'classifier_gateway_app_verdicts_total{action="log",app="none",category="hosting",mode="inline"} 4.0'
        in text
    )


def test_provisions_effective_now_follow_the_view_and_instant(policy):
    when = parse_instant("2025-03-01")  # PAFACA effective (announced), not enforced (in force)
    announced = scrape(
        metrics._Collector(
            metrics.Stats(),
            "monitor",
            None,
            lambda: 0,
            provisions=metrics.provision_states(policy, "announced", when),
        )
    )
    in_force = scrape(
        metrics._Collector(
            metrics.Stats(),
            "monitor",
            None,
            lambda: 0,
            provisions=metrics.provision_states(policy, "in-force", when),
            view="in-force",
        )
    )
    hosting = (
        'classifier_gateway_provision_effective{app="tiktok",category="hosting",'
        'provision="tiktok-pafaca-hosting",status="%s",view="%s"} %s'
    )
    assert hosting % ("effective", "announced", "1.0") in announced
    assert hosting % ("unenforced", "in-force", "0.0") in in_force
    count = [
        line for line in announced.splitlines() if line.startswith("classifier_gateway_provisions_effective{")
    ]
    effective = sum(
        1 for pid in policy.provisions if policy.status(pid, when, "announced").status == "effective"
    )
    assert count == [f'classifier_gateway_provisions_effective{{view="announced"}} {float(effective)}']
    assert effective > 0
    assert 'classifier_gateway_provisions_effective{view="in-force"} 0.0' in in_force
