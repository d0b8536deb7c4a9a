"""The journey-health gauges (``journey_receiver_journey_*``): incidents seeded through the
real API, scheduler and KPI enrichment (a real Prometheus), then ``refresh_journey_metrics``
and the samples ``GET /metrics`` exports, each worked out by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from receiver.metrics import Metrics
from receiver.outcomes.health import journey_health, publish_journey_health
from receiver.outcomes.health import refresh_journey_metrics as refresh
from receiver.store.records import IncidentState, KpiRecord
from tests.conftest import FakeClock, make_alert
from tests.support.harness import Harness, harness, write_config

pytestmark = pytest.mark.anyio

# tests/data/prometheus/checkout.om: from 08:00Z on 2026-04-18 eu completes 20 checkouts a
# minute of 100 started, against 50 of 100 a week earlier; us completes 40 of 80 both weeks.
# So in eu conversion is -60% and abandoned checkouts (started - completed) +60%; in us
# both are 0%. There is no data for region "ap".
T = 1_776_499_800  # 08:10:00Z, when group_wait (30 s) of the first incidents ends

JOURNEYS = """
journeys:
  - id: checkout
    name: Checkout
    weight: 1.0
    owner: {team: payments}
    stages:
      - {id: cart, weight: 0.5, match: ['service="cart-api"']}
      - {id: payment, weight: 1.0, match: ['service="payment-service"']}
    kpis:
      - name: conversion
        query: >-
          sum(rate(checkout_completed_total{env="$env", region="$region"}[5m]))
          / sum(rate(checkout_started_total{env="$env", region="$region"}[5m]))
        unit: ratio
        bad_when: down
      - name: abandoned
        query: >-
          60 * (sum(rate(checkout_started_total{env="$env", region="$region"}[5m]))
          - sum(rate(checkout_completed_total{env="$env", region="$region"}[5m])))
        unit: per minute
        bad_when: up
  - id: browse
    name: Browse
    weight: 0.2
    owner: {team: discovery}
    stages:
      - {id: search, weight: 0.3, match: ['service="search-api"']}
"""

OPEN = "journey_receiver_journey_open_incidents"
KPI = "journey_receiver_journey_kpi_deviation_percent"
DEGRADED = "journey_receiver_journey_degraded_seconds"
STAGES = [("checkout", "cart"), ("checkout", "payment"), ("browse", "search"), ("unmapped", "")]
# Every configured journey x stage x priority has a series: 0 unless said otherwise.
NO_INCIDENTS = {(j, s, p): 0.0 for j, s in STAGES for p in ("P1", "P2", "P3", "P4", "P5")}


def config(tmp_path: Path, prometheus_url: str) -> Path:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(JOURNEYS)
    prometheus = f"prometheus: {{url: '{prometheus_url}', timeout: 1s, budget: 2s}}\n"
    cfg = write_config(tmp_path, prometheus, journeys=journeys)
    # Resolved a minute after the last alert, so that all happens while Prometheus has data.
    cfg.write_text(cfg.read_text().replace("resolve_after: 5m", "resolve_after: 1m"))
    return cfg


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def alert(service: str, region: str, started: float, **kw: Any) -> dict[str, Any]:
    return make_alert(service, region=region, starts_at=iso(started), **kw)


def ended(alerts: list[dict[str, Any]], at: float) -> list[dict[str, Any]]:
    return [{**a, "status": "resolved", "endsAt": iso(at)} for a in alerts]


async def opened(rx: Harness, alerts: list[dict[str, Any]]) -> str:
    r = await rx.post(alerts)
    assert r.status_code == 200, r.text
    (incident,) = r.json()["incidents"]
    return str(incident)


async def stored(rx: Harness) -> list[IncidentState]:
    return await rx.receiver.store.list_incidents("all", None, 100)


def samples(text: str, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` in the exposition ``text``, keyed by the values of ``labels``."""
    return {
        tuple(sample.labels[label] for label in labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def exported(rx: Harness, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` that ``GET /metrics`` answers."""
    r = await rx.client.get("/metrics")
    assert r.status_code == 200, r.text
    return samples(r.text, name, *labels)


async def test_open_incidents_kpi_deviation_and_degraded_time_per_journey_and_stage(
    tmp_path: Path, prometheus_url: str
) -> None:
    """The incidents (times in seconds from T = 08:10:00Z):

    E  checkout/eu  payment-service + cart-api (critical) from T-300: both stages; P1.
    U  checkout/us  payment-service (critical) from T-120: P2.
    B  browse/eu    search-api (warning) from T-60: P5.
    X  unmapped/eu  batch-jobs (no stage matches) from T-60: P5.
    P  checkout/ap  payment-service from T-20, posted at T-10: still in group_wait at T.
    """
    async with harness(config(tmp_path, prometheus_url), FakeClock(T - 30)) as rx:
        e = [alert("payment-service", "eu", T - 300), alert("cart-api", "eu", T - 300)]
        ids = {"e": await opened(rx, e)}
        u = [alert("payment-service", "us", T - 120)]
        b = [alert("search-api", "eu", T - 60, severity="warning")]
        x = [alert("batch-jobs", "eu", T - 60)]
        ids["u"], ids["b"], ids["x"] = [await opened(rx, group) for group in (u, b, x)]
        rx.clock.now = T - 10
        p = [alert("payment-service", "ap", T - 20)]
        ids["p"] = await opened(rx, p)
        await rx.tick(10)
        # As the store keeps them (the API shows an undecided incident's priority as it
        # would be now).
        seen = {s.id: (s.journey, s.priority) for s in await stored(rx)}
        assert seen == {
            ids["e"]: ("checkout", "P1"),  # its KPIs 60% off: the KPI factor is 1.0
            ids["u"]: ("checkout", "P2"),  # KPIs at their baseline: 0.75
            ids["b"]: ("browse", "P5"),
            ids["x"]: ("unmapped", "P5"),
            ids["p"]: ("checkout", None),  # not decided yet
        }

        await refresh(rx.receiver)
        assert await exported(rx, OPEN, "journey", "stage", "priority") == NO_INCIDENTS | {
            ("checkout", "cart", "P1"): 1.0,  # E
            ("checkout", "payment", "P1"): 1.0,  # E again: it touches both stages
            ("checkout", "payment", "P2"): 1.0,  # U; P has no priority yet
            ("browse", "search", "P5"): 1.0,  # B
            ("unmapped", "", "P5"): 1.0,  # X
        }
        # The worst of E's and U's: conversion falls (bad when down), abandoned checkouts
        # rise (bad when up); U's 0% is the better of each.
        assert await exported(rx, KPI, "journey", "kpi") == {
            ("checkout", "conversion"): -60.0,
            ("checkout", "abandoned"): 60.0,
        }
        # Checkout is degraded since E started (T-300); B and X are P5, not degraded.
        assert await exported(rx, DEGRADED, "journey") == {
            ("checkout",): 300.0,
            ("browse",): 0.0,
            ("unmapped",): 0.0,
        }

        # E's alerts resolve at T+60 and it is resolved a minute later (resolve_after);
        # P is decided at T+60: Prometheus has no "ap" data, so its KPIs are unknown (P2).
        rx.clock.now = T + 60
        await rx.post(ended(e, T + 60))
        await rx.tick()
        await rx.tick(60)
        seen = {s.id: (s.status, s.priority) for s in await stored(rx)}
        assert (seen[ids["e"]], seen[ids["p"]]) == (("resolved", "P1"), ("open", "P2"))

        await refresh(rx.receiver)
        assert await exported(rx, OPEN, "journey", "stage", "priority") == NO_INCIDENTS | {
            ("checkout", "payment", "P2"): 2.0,  # U and P
            ("browse", "search", "P5"): 1.0,
            ("unmapped", "", "P5"): 1.0,
        }
        # Only U's measured KPIs are left (P's could not be measured): both at baseline.
        assert await exported(rx, KPI, "journey", "kpi") == {
            ("checkout", "conversion"): 0.0,
            ("checkout", "abandoned"): 0.0,
        }
        # Degraded since U started (T-120), now T+120; E no longer counts.
        assert await exported(rx, DEGRADED, "journey") == {
            ("checkout",): 240.0,
            ("browse",): 0.0,
            ("unmapped",): 0.0,
        }

        # Everything resolves: the counts go back to 0, the KPI series go.
        rx.clock.now = T + 180
        for group in (u, p, b, x):
            await rx.post(ended(group, T + 180))
        await rx.tick()
        await rx.tick(60)
        assert {s.status for s in await stored(rx)} == {"resolved"}

        await refresh(rx.receiver)
        assert await exported(rx, OPEN, "journey", "stage", "priority") == NO_INCIDENTS
        assert await exported(rx, KPI, "journey", "kpi") == {}
        assert await exported(rx, DEGRADED, "journey") == {
            ("checkout",): 0.0,
            ("browse",): 0.0,
            ("unmapped",): 0.0,
        }


def state(n: int, journey: str, stages: list[str], priority: str, started: int) -> IncidentState:
    return IncidentState(
        id=f"i{n}",
        key=f"k{n}",
        digest=f"d{n}",
        journey=journey,
        group_labels={},
        status="open",
        created_at=started,
        updated_at=started,
        first_firing_at=started,
        started_at=started,
        stages=dict.fromkeys(stages, started),
        priority=priority,
    )


def test_a_journey_or_stage_no_longer_configured_shows_while_it_has_open_incidents() -> None:
    metrics = Metrics()
    configured = {"checkout": ["payment"]}
    # A reload removed the stage "cart" and the journey "legacy"; their incidents are open.
    gone = [state(1, "checkout", ["cart"], "P3", 1_000), state(2, "legacy", ["old"], "P1", 4_000)]
    publish_journey_health(metrics, journey_health(gone, 10_000, configured))
    text = generate_latest(metrics.registry).decode()
    assert samples(text, OPEN, "journey", "stage", "priority") == {
        **{("checkout", "payment", p): 0.0 for p in ("P1", "P2", "P3", "P4", "P5")},
        ("checkout", "cart", "P3"): 1.0,
        ("legacy", "old", "P1"): 1.0,
    }
    assert samples(text, DEGRADED, "journey") == {("checkout",): 9.0, ("legacy",): 6.0}

    # Once they are resolved, only the configured journey and stage are left.
    publish_journey_health(metrics, journey_health([], 20_000, configured))
    text = generate_latest(metrics.registry).decode()
    assert samples(text, OPEN, "journey", "stage", "priority") == {
        ("checkout", "payment", p): 0.0 for p in ("P1", "P2", "P3", "P4", "P5")
    }
    assert samples(text, DEGRADED, "journey") == {("checkout",): 0.0}


def test_a_kpi_gone_bad_from_a_zero_baseline_is_infinitely_off_in_its_bad_direction() -> None:
    metrics = Metrics()
    errors = KpiRecord(name="errors", value=30.0, baseline=0.0, bad_when="up", bad=True)
    # The same KPI in another incident of the journey, 50% off: the zero baseline's is worse.
    also = KpiRecord(name="errors", value=3.0, baseline=2.0, deviation_pct=50.0, bad_when="up")
    calm = KpiRecord(name="latency", value=0.0, baseline=0.0, bad_when="up")
    incidents = [
        state(1, "checkout", ["payment"], "P2", 1_000).model_copy(update={"kpis": [also]}),
        state(2, "checkout", ["payment"], "P1", 2_000).model_copy(update={"kpis": [errors, calm]}),
    ]
    publish_journey_health(metrics, journey_health(incidents, 10_000, {"checkout": ["payment"]}))
    text = generate_latest(metrics.registry).decode()
    # None last week and none now: measured, and not moved at all.
    assert samples(text, KPI, "journey", "kpi") == {
        ("checkout", "errors"): math.inf,
        ("checkout", "latency"): 0.0,
    }
