"""Revenue at risk over an incident's time, through the real scheduler and a real
Prometheus: each look's figure per minute counted until the next look, from the start of
each episode people were told of to its resolve, never a blip, never the time between."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.outcomes import revenue
from receiver.outcomes.stats import Business, Outcome, compute, parse_query, read_stats
from receiver.store.records import stored_state
from tests.conftest import FakeClock
from tests.support.harness import Harness, harness
from tests.support.prometheus import prometheus_server
from tests.test_stats import alert, ended, opened, priced, skewed_replicas, true_time

pytestmark = pytest.mark.anyio

WEEK = 7 * 86_400
START = 1_776_498_900  # 07:55Z on 2026-04-18; the baseline is the same hour a week before
FIRST = 1_776_499_800 - 30  # 08:09:30Z: the alert starts
MIN = 60
MIN_MS = MIN * 1000


def history() -> str:
    """Checkouts, 07:55Z to 08:55Z on the incident day and a week before: 100 started a
    minute, 50 completed (conversion 0.5), except on the incident day 20 (0.2) in eu
    from 08:00Z to 08:14Z, and in us from 08:00Z on."""
    bad = {"eu": range(5, 19), "us": range(5, 61)}
    lines = ["# TYPE checkout_started counter"]
    for region in bad:
        for day in (START - WEEK, START):
            lines += [
                f'checkout_started_total{{region="{region}",env="prod"}} {10_000 + 100 * m} '
                f"{day + 60 * m}"
                for m in range(61)
            ]
    lines.append("# TYPE checkout_completed counter")
    for region, minutes in bad.items():
        for day in (START - WEEK, START):
            total = 10_000
            for m in range(61):
                series = f'checkout_completed_total{{region="{region}",env="prod"}}'
                lines.append(f"{series} {total} {day + 60 * m}")
                total += 20 if day == START and m in minutes else 50
    return "\n".join([*lines, "# EOF"]) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("prometheus-revenue")
    (work / "checkouts.om").write_text(history())
    with prometheus_server(work / "server", work / "checkouts.om") as url:
        yield url


async def at_risk(rx: Harness) -> Business:
    """The business figures of the last day now, as the stats endpoint computes them
    (without the minute it keeps an answer)."""
    query = parse_query({"window": "1d"})
    return (await read_stats(rx.receiver.store, query, rx.clock.ms, ["checkout"])).business


async def test_what_was_at_risk_stays_counted_once_the_kpi_is_back(
    tmp_path: Path, prometheus: str
) -> None:
    clock = FakeClock(FIRST)
    async with harness(priced(tmp_path, prometheus), clock) as rx:
        paged = [alert("payment-service", "PaymentErrors", "eu", FIRST)]
        incident = await opened(rx, paged)
        await rx.tick(30)  # told at 08:10Z, 300/min: counted from its start, 30 s before
        assert (await rx.incident(incident))["kpis"][0]["revenue_at_risk_per_min"] == 300.0
        assert (await at_risk(rx)).revenue_at_risk_total == 150.0
        per_min = []
        for _ in range(4):  # a look every group_interval: 08:12Z, 08:14Z, 08:16Z, 08:18Z
            await rx.tick(120)
            per_min.append((await rx.incident(incident))["kpis"][0]["revenue_at_risk_per_min"])
        # Prometheus's 5-minute rates as the checkouts recover from 08:14Z.
        assert per_min == [300.0, 300.0, 180.0, 60.0]
        clock.now = FIRST + 600
        await rx.post(ended(paged, FIRST + 600))  # 08:19:30Z
        for wait in (30, 120, 120):  # looks at 08:20Z, 08:22Z, 08:24Z: nothing at risk
            await rx.tick(wait)
        await rx.tick(30)  # resolved at 08:24:30Z, resolve_after past the last alert
        detail = await rx.incident(incident)
        assert (detail["status"], detail["kpis"][0]["revenue_at_risk_per_min"]) == (
            "resolved",
            0.0,
        )
        business = await at_risk(rx)
    # 300/min from 08:09:30Z to 08:16Z, 180 to 08:18Z, 60 to 08:20Z, nothing since.
    assert business.revenue_at_risk_total == 300 * 6.5 + 180 * 2 + 60 * 2
    assert business.revenue_quantified_pct == 100.0


async def test_each_told_episode_counts_and_neither_a_blip_nor_the_time_between(
    tmp_path: Path, prometheus: str
) -> None:
    clock = FakeClock(FIRST)
    async with harness(priced(tmp_path, prometheus), clock) as rx:
        # us loses 300/min all along; the incident is open 08:09:30Z to 08:17Z.
        paged = [alert("payment-service", "PaymentErrors", "us", FIRST, fingerprint="f1")]
        incident = await opened(rx, paged)
        await rx.tick(30)  # told at 08:10Z
        await rx.tick(120)  # 08:12Z
        await rx.post(ended(paged, FIRST + 150))
        for wait in (120, 120, 60):  # looks at 08:14Z and 08:16Z, resolved at 08:17Z
            await rx.tick(wait)
        assert (await rx.incident(incident))["status"] == "resolved"
        first = 300 * 7.5
        assert (await at_risk(rx)).revenue_at_risk_total == first
        # At 08:20Z a blip: the alert fires for 10 s, nobody is told.
        clock.now = FIRST + 630
        blip = [alert("payment-service", "PaymentErrors", "us", FIRST + 630, fingerprint="f1")]
        await rx.post(blip)
        clock.now = FIRST + 640
        await rx.post(ended(blip, FIRST + 640))
        await rx.tick(20)
        detail = await rx.incident(incident)
        assert (detail["status"], detail["blips"]) == ("resolved", 1)
        assert (await at_risk(rx)).revenue_at_risk_total == first
        # At 08:27Z it fires again and people are told at 08:27:30Z.
        clock.now = FIRST + 1050
        again = [alert("payment-service", "PaymentErrors", "us", FIRST + 1050, fingerprint="f1")]
        await rx.post(again)
        await rx.tick(30)
        detail = await rx.incident(incident)
        assert (detail["status"], detail["reopened_count"]) == ("open", 2)
        clock.advance(120)  # 08:29:30Z
        business = await at_risk(rx)
    # The first episode's 7.5 min, and 2.5 min of this one: not 08:17Z to 08:27Z.
    assert business.revenue_at_risk_total == first + 300 * 2.5


async def test_a_blip_just_after_the_resolve_on_a_replica_behind_adds_nothing(
    tmp_path: Path, prometheus: str, redis_port: int
) -> None:
    # The replica ahead resolves the incident; two seconds later (true time) its alert
    # comes and goes on the replica behind, whose clock still reads before that resolve:
    # a blip nobody is told of, whose time is not at risk.
    cfg = priced(tmp_path, prometheus)
    async with skewed_replicas(tmp_path, redis_port, cfg, FIRST) as replicas:
        behind, ahead = replicas
        paged = [alert("payment-service", "PaymentErrors", "us", FIRST, fingerprint="f1")]
        incident = await opened(behind, paged)
        true_time(replicas, FIRST + 30)
        await ahead.tick()  # told
        true_time(replicas, FIRST + 150)
        await behind.post(ended(paged, FIRST + 150))
        for t in (270, 390, 450):  # resolved at FIRST+455 by the clock ahead
            true_time(replicas, FIRST + t)
            await ahead.tick()
        assert (await behind.incident(incident))["status"] == "resolved"
        first = (await at_risk(behind)).revenue_at_risk_total
        true_time(replicas, FIRST + 452)
        blip = [alert("payment-service", "PaymentErrors", "us", FIRST + 452, fingerprint="f1")]
        await behind.post(blip)
        true_time(replicas, FIRST + 462)
        await behind.post(ended(blip, FIRST + 462))
        true_time(replicas, FIRST + 490)
        await ahead.tick()
        detail = await behind.incident(incident)
        assert (detail["status"], detail["blips"]) == ("resolved", 1)
        assert (await at_risk(behind)).revenue_at_risk_total == first


def test_an_incident_stored_before_the_count_keeps_its_revenue() -> None:
    # As the previous version left it: told, resolved after 40 minutes, its last look
    # 100/min at risk; no revenue_at_risk or revenue_counted_to in either document.
    state = {
        "id": "checkout-x-1", "key": "checkout", "digest": "x", "journey": "checkout",
        "group_labels": {}, "status": "resolved", "created_at": 0, "updated_at": 40 * MIN_MS,
        "first_firing_at": 0, "resolved_at": 40 * MIN_MS, "notified_at": 30_000,
        "sinks": {"log": {"state": "sent"}},
    }  # fmt: skip
    view = {"kpis": [{"name": "orders", "revenue_at_risk_per_min": 100.0}]}
    old = stored_state(json.dumps(state), json.dumps(view))
    stats = compute([Outcome(old, frozenset())], 0, 60 * MIN_MS, ["checkout"])
    # As that version counted it: its last figure over its 40 minutes.
    assert stats.business.revenue_quantified_pct == 100.0
    assert stats.business.revenue_at_risk_total == 4_000.0
    # Open at the upgrade: its next count goes on from there, counting no minute twice.
    still = stored_state(
        json.dumps({**state, "status": "open", "resolved_at": None}), json.dumps(view)
    )
    counted, to = revenue.count(still, still.kpis, 40 * MIN_MS)
    assert (counted, to) == (4_000.0, 40 * MIN_MS)
    went_on = still.model_copy(update={"revenue_at_risk": counted, "revenue_counted_to": to})
    assert revenue.closed(went_on, 50 * MIN_MS) == (5_000.0, 50 * MIN_MS)
    # Resolved before its next look: closed as that version would have counted it.
    assert revenue.closed(still, 45 * MIN_MS) == (4_500.0, 45 * MIN_MS)
