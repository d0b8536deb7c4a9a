"""GET /api/v1/stats: figures from a seeded history through the real API and scheduler, each
expected value worked out by hand from the history; then the pure roll-up's edge cases."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import generate_latest

from receiver.app import create_app
from receiver.errors import PayloadError
from receiver.outcomes import stats as outcome_stats
from receiver.outcomes.stats import (
    CACHE_NAMESPACE,
    NOISY_CAP,
    REFRESH_SLOT_MS,
    Alertnames,
    Outcome,
    Reading,
    Stats,
    StatsQuery,
    compute,
    not_useful,
    p50,
    parse_query,
    pct,
    read_outcomes,
    refresh_metrics,
)
from receiver.store import open_store
from receiver.store.base import Annotation, GroupStore, PlacedAlert, StoreSettings
from receiver.store.records import (
    CauseRecord,
    ChangeRecord,
    FeedbackRecord,
    IncidentState,
    KpiRecord,
)
from receiver.store.redis import RedisStore
from tests.conftest import PROMETHEUS_DATA, T0, FakeClock, make_alert
from tests.store.builders import STARTS, group, placed
from tests.support.harness import Harness, harness, write_config
from tests.support.incidents import incident_state as state

pytestmark = pytest.mark.anyio

DAY = 86_400
T1 = T0 + 8 * DAY  # eight days on: at NOW, a 7d window no longer reaches T0
NOW = T1 + 4 * 3600  # when the figures are asked for

JOURNEYS = """
journeys:
  - id: checkout
    name: Checkout
    weight: 1.0
    owner: {team: payments}
    group_by: [region]
    stages:
      - {id: payment, weight: 1.0, match: ['service="payment-service"']}
  - id: browse
    name: Browse
    weight: 0.2
    owner: {team: discovery}
    group_by: [region]
    stages:
      - {id: search, weight: 0.3, match: ['service="search-api"']}
"""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def config(tmp_path: Path) -> Path:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(JOURNEYS)
    cfg = write_config(tmp_path, journeys=journeys)
    # A month of history, so that a 30d window reaches the incident eight days back.
    cfg.write_text(
        cfg.read_text().replace("{url: 'memory://'}", "{url: 'memory://', retention: 30d}")
    )
    return cfg


def alert(service: str, alertname: str, region: str, at: float, **labels: str) -> dict[str, Any]:
    severity = "critical" if service == "payment-service" else "warning"
    return make_alert(
        service, alertname=alertname, region=region, severity=severity, starts_at=iso(at), **labels
    )


def ended(alerts: list[dict[str, Any]], at: float) -> list[dict[str, Any]]:
    return [{**a, "status": "resolved", "endsAt": iso(at)} for a in alerts]


async def opened(rx: Harness, alerts: list[dict[str, Any]]) -> str:
    r = await rx.post(alerts)
    assert r.status_code == 200, r.text
    (incident,) = r.json()["incidents"]
    return str(incident)


async def respond(rx: Harness, incident: str, **at: float) -> None:
    """What PagerDuty would have told us: ``acknowledged_at`` / ``resolved_at`` (seconds)."""
    fill: dict[str, object] = {name: round(t * 1000) for name, t in at.items()}
    fill["source"] = "pagerduty"
    answer = await rx.receiver.store.annotate(
        incident, Annotation(fill={"response": fill}), rx.clock.ms
    )
    assert answer == "ok"


async def feedback(rx: Harness, incident: str, useful: bool) -> None:
    r = await rx.client.post(
        f"/api/v1/incidents/{incident}/feedback", content=json.dumps({"useful": useful})
    )
    assert r.status_code == 201, r.text


async def acted(rx: Harness, incident: str, at: float) -> None:
    """A rollback refused to bob, then run by alice; its outcome window told it helped."""
    ms = round(at * 1000)
    runs = [
        {"action": "rollback", "by": "bob", "at": ms, "status": "refused", "result": "no"},
        {"action": "rollback", "by": "alice", "at": ms + 1, "status": "ran", "result": "202"},
    ]
    told = {"rollback": {"verdict": "helped", "at": ms + 900_000, "because": "resolved"}}
    annotation = Annotation(append={"actions_run": runs}, merge={"action_outcomes": told})
    assert await rx.receiver.store.annotate(incident, annotation, ms) == "ok"


async def seed(rx: Harness) -> dict[str, str]:
    """The history every figure below is worked out from (times in seconds):

    OLD  checkout/us  T0: OldAlert from T0, notified T0+30, its alert ends T0+60, resolved
                      by its alerts T0+360 (after resolve_after).
    A    checkout/eu  T1: PaymentErrors x2 + PaymentLatency from T1-60, notified T1+30,
                      acked T1+90, feedback useful, a rollback refused to bob then run
                      by alice at T1+120 (it helped), its alerts end T1+600, resolved by
                      them T1+900.
    B    checkout/ap  T1+3600: PaymentErrors from T1+3600, notified T1+3630, acked T1+3750,
                      resolved by a person T1+4800 (its alert keeps firing), not useful.
    C    checkout/sa  T1+7200: PaymentErrors + FlakyProbe, both resolved at T1+7210: a blip
                      of 2 alerts, resolved unnotified at T1+7230.
    D    browse/eu    T1+10800: SearchSlow + FlakyProbe (warnings), notified T1+10830 at
                      P5, never acked, not useful; still open.
    """
    rx.clock.now = T0
    old = [alert("payment-service", "OldAlert", "us", T0)]
    ids = {"old": await opened(rx, old)}
    await rx.tick(30)
    rx.clock.now = T0 + 60
    await rx.post(ended(old, T0 + 60))
    await rx.tick(300)

    rx.clock.now = T1
    a = [
        alert("payment-service", "PaymentErrors", "eu", T1 - 60, instance="i1"),
        alert("payment-service", "PaymentErrors", "eu", T1 - 60, instance="i2"),
        alert("payment-service", "PaymentLatency", "eu", T1 - 60),
    ]
    ids["a"] = await opened(rx, a)
    await rx.tick(30)
    await respond(rx, ids["a"], acknowledged_at=T1 + 90)
    await feedback(rx, ids["a"], useful=True)
    await acted(rx, ids["a"], T1 + 120)
    rx.clock.now = T1 + 600
    await rx.post(ended(a, T1 + 600))
    await rx.tick(300)

    rx.clock.now = T1 + 3600
    ids["b"] = await opened(rx, [alert("payment-service", "PaymentErrors", "ap", T1 + 3600)])
    await rx.tick(30)
    await respond(rx, ids["b"], acknowledged_at=T1 + 3750, resolved_at=T1 + 4800)
    await feedback(rx, ids["b"], useful=False)

    rx.clock.now = T1 + 7200
    c = [
        alert("payment-service", "PaymentErrors", "sa", T1 + 7200),
        alert("payment-service", "FlakyProbe", "sa", T1 + 7200),
    ]
    ids["c"] = await opened(rx, c)
    rx.clock.now = T1 + 7210
    await rx.post(ended(c, T1 + 7210))
    await rx.tick(20)

    rx.clock.now = T1 + 10800
    d = [
        alert("search-api", "SearchSlow", "eu", T1 + 10800),
        alert("search-api", "FlakyProbe", "eu", T1 + 10800),
    ]
    ids["d"] = await opened(rx, d)
    await rx.tick(30)
    await feedback(rx, ids["d"], useful=False)

    rx.clock.now = NOW
    # What the figures rest on, as the incidents API tells it.
    seen = {i["id"]: (i["status"], i["priority"]) for i in await rx.incidents()}
    assert seen == {
        ids["old"]: ("resolved", "P2"),
        ids["a"]: ("resolved", "P2"),
        ids["b"]: ("open", "P2"),
        ids["c"]: ("resolved", "P5"),
        ids["d"]: ("open", "P5"),
    }
    detail = await rx.incident(ids["c"])
    assert (detail["notified_at"], detail["blips"]) == (None, 2)
    return ids


async def stats(rx: Harness, query: str = "") -> dict[str, Any]:
    r = await rx.client.get("/api/v1/stats" + query)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def noisy(name: str, incidents: int, not_useful: int, blips: int) -> dict[str, Any]:
    return {"alertname": name, "incidents": incidents, "not_useful": not_useful, "blips": blips}


NO_BUSINESS = {
    "revenue_quantified_pct": 0.0,
    "revenue_at_risk_total": None,
    "change_to_detection_s_p50": None,
}
NOTHING = {
    "signal": {
        "alerts": 0,
        "incidents": 0,
        "alerts_per_incident": None,
        "blips": 0,
        "not_useful_pct": None,
        "noisy_alertnames": [],
    },
    "response": {"mtta_s_p50": None, "mttr_s_p50": None, "ack_pct": None},
    "business": {
        "revenue_quantified_pct": None,
        "revenue_at_risk_total": None,
        "change_to_detection_s_p50": None,
    },
    "actions": {
        "ran": 0, "failed": 0, "refused": 0, "skipped": 0, "dry_run": 0,
        "helped": 0, "no_change": 0, "worse": 0, "helped_pct": None,
    },
    "minutes_degraded": 0.0,
    "slo": {
        "degraded_at": "P3", "objective_pct": None, "attainment_pct": 100.0,
        "budget_remaining_pct": None,
    },
}  # fmt: skip
PER_JOURNEY = ("minutes_degraded", "slo")
ACTED = {
    **NOTHING["actions"], "ran": 1, "refused": 1, "helped": 1, "helped_pct": 100.0,
}  # fmt: skip


async def test_the_week_in_figures(tmp_path: Path) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        figures = await stats(rx, "?window=7d&journey=")
    # OLD was created eight days before NOW: outside the week. A, B, C, D are in.
    assert (figures["window"], figures["journey"]) == ("7d", None)
    assert (figures["since"], figures["until"]) == (iso(NOW - 7 * DAY), iso(NOW))
    assert figures["signal"] == {
        "alerts": 8,  # 3 + 1 + 2 + 2
        "incidents": 4,
        "alerts_per_incident": 2.0,
        "blips": 2,  # C's two alerts
        "not_useful_pct": 66.7,  # B and D of A, B, D (the ones with feedback)
        "noisy_alertnames": [
            noisy("FlakyProbe", 2, 1, 1),  # C (blip), D (not useful): 2 of 2 noisy
            noisy("PaymentErrors", 3, 1, 1),  # B, C of A, B, C: 2 of 3
            noisy("SearchSlow", 1, 1, 0),  # D: 1 of 1
        ],
    }
    assert figures["response"] == {
        "mtta_s_p50": 90.0,  # A 60 s, B 120 s
        "mttr_s_p50": 930.0,  # A 660 s (its last alert), B 1200 s (person); D open, C a blip
        "ack_pct": 66.7,  # A, B of A, B, D notified
    }
    assert figures["business"] == NO_BUSINESS  # no KPI carries revenue
    assert figures["actions"] == ACTED  # A's rollback: refused once, ran once, helped
    assert figures["journeys"]["browse"]["actions"] == NOTHING["actions"]
    assert list(figures["journeys"]) == ["checkout", "browse", "unmapped"]
    checkout = figures["journeys"]["checkout"]
    assert checkout["signal"] == {
        "alerts": 6,
        "incidents": 3,
        "alerts_per_incident": 2.0,
        "blips": 2,
        "not_useful_pct": 50.0,
        "noisy_alertnames": [noisy("PaymentErrors", 3, 1, 1), noisy("FlakyProbe", 1, 0, 1)],
    }
    assert checkout["response"] == {"mtta_s_p50": 90.0, "mttr_s_p50": 930.0, "ack_pct": 100.0}
    assert checkout["business"] == NO_BUSINESS
    # A from T1-60 to T1+900 (16 min) and B from T1+3600 to NOW (180 min); C is a blip.
    assert checkout["minutes_degraded"] == 196.0
    browse = figures["journeys"]["browse"]
    assert browse["signal"]["noisy_alertnames"] == [
        noisy("FlakyProbe", 1, 1, 0),
        noisy("SearchSlow", 1, 1, 0),
    ]
    assert browse["response"] == {"mtta_s_p50": None, "mttr_s_p50": None, "ack_pct": 0.0}
    assert browse["minutes_degraded"] == 0.0  # D is P5
    assert figures["journeys"]["unmapped"] == NOTHING


async def test_the_value_page_shows_what_actions_did(tmp_path: Path) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        rx.clock.now = NOW
        page = await rx.client.get("/stats?window=7d")
    assert page.status_code == 200, page.text
    assert "1 run(s), 0 failed, 1 refused" in page.text
    assert "100% of the runs with an outcome helped (1 helped, 0 no change" in page.text
    table = page.text.split('id="actions-table"')[1]
    row = table.split('<tr data-journey="checkout">')[1].split("</tr>")[0]
    assert "<td>1</td><td>0</td><td>1</td><td>0</td><td>0</td><td>100%</td>" in row


async def test_a_longer_window_reaches_further_back(tmp_path: Path) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        figures = await stats(rx, "?window=30d")
    assert figures["since"] == iso(NOW - 30 * DAY)
    assert (figures["signal"]["incidents"], figures["signal"]["alerts"]) == (5, 9)
    # OLD adds a resolve after 60 s and a notification nobody acknowledged.
    assert figures["response"] == {"mtta_s_p50": 90.0, "mttr_s_p50": 660.0, "ack_pct": 50.0}
    assert figures["journeys"]["checkout"]["minutes_degraded"] == 202.0  # + OLD's 6 min


async def test_one_journey(tmp_path: Path) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        figures = await stats(rx, "?journey=browse")
    assert (figures["window"], figures["journey"]) == ("7d", "browse")
    assert list(figures["journeys"]) == ["browse"]
    assert figures["signal"] == {
        "alerts": 2,
        "incidents": 1,
        "alerts_per_incident": 2.0,
        "blips": 0,
        "not_useful_pct": 100.0,
        "noisy_alertnames": [noisy("FlakyProbe", 1, 1, 0), noisy("SearchSlow", 1, 1, 0)],
    }
    assert figures["response"] == {"mtta_s_p50": None, "mttr_s_p50": None, "ack_pct": 0.0}
    assert {
        k: v for k, v in figures.items() if k in ("signal", "response", "business", "actions")
    } == {k: v for k, v in figures["journeys"]["browse"].items() if k not in PER_JOURNEY}


DURATION_HELP = "expected seconds or a duration like 500ms, 30s, 2m, 1h30m, 7d, 1w"


async def test_figures_of_a_window_with_more_incidents_than_are_read_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcome_stats, "INCIDENTS_READ", 2)  # stands for 20,000
    async with harness(config(tmp_path), FakeClock(T1)) as rx:
        for n, region in enumerate(["eu", "us", "ap"]):
            rx.clock.now = T1 + n * 3600
            await opened(rx, [alert("payment-service", "PaymentErrors", region, rx.clock.now)])
            await rx.tick(30)
        rx.clock.now = T1 + 4 * 3600
        figures = await stats(rx)
        assert (figures["signal"]["incidents"], figures["capped"]) == (2, True)
        page = await rx.client.get("/stats")
        assert "only the newest 20,000 incidents are counted" in page.text
        monkeypatch.setattr(outcome_stats, "INCIDENTS_READ", 3)
        rx.clock.advance(120)  # past the kept answer's minute
        figures = await stats(rx)
        assert (figures["signal"]["incidents"], figures["capped"]) == (3, True)
        monkeypatch.setattr(outcome_stats, "INCIDENTS_READ", 4)
        rx.clock.advance(120)
        assert (await stats(rx))["capped"] is False


async def test_a_blip_after_the_resolve_leaves_the_episode_people_answered_counted(
    tmp_path: Path,
) -> None:
    async with harness(config(tmp_path), FakeClock(T1)) as rx:
        paged = [alert("payment-service", "PaymentErrors", "eu", T1 - 60)]
        incident = await opened(rx, paged)
        await rx.tick(30)  # told at T1+30
        await respond(rx, incident, acknowledged_at=T1 + 90)
        rx.clock.now = T1 + 600
        await rx.post(ended(paged, T1 + 600))
        await rx.tick(300)  # resolved by its alerts
        told = {"mtta_s_p50": 60.0, "mttr_s_p50": 660.0, "ack_pct": 100.0}
        assert (await stats(rx))["response"] == told
        # Within reopen_window: the alert fires again for 10 s, then later a resolution
        # comes in for an alert that fired between two of Alertmanager's flushes. Nobody
        # is told of either.
        for n, (at, name) in enumerate([(T1 + 1200, "PaymentErrors"), (T1 + 1500, "Latency")]):
            rx.clock.now = at
            again = [alert("payment-service", name, "eu", at)]
            if n == 0:
                await rx.post(again)
            rx.clock.now = at + 10
            await rx.post(ended(again, at + 10))
            await rx.tick(30)
            detail = await rx.incident(incident)
            assert (detail["status"], detail["blips"]) == ("resolved", 1)
            assert (detail["mtta_s"], detail["mttr_s"]) == (60.0, 660.0)
            rx.clock.advance(120)  # past the kept answer's minute
            assert (await stats(rx))["response"] == told
        # A reopen people are told of is counted from then on, acknowledged or not.
        rx.clock.now = T1 + 1800
        await rx.post([alert("payment-service", "PaymentErrors", "eu", T1 + 1800)])
        await rx.tick(30)
        detail = await rx.incident(incident)
        assert (detail["mtta_s"], detail["mttr_s"], detail["reopened_count"]) == (None, None, 2)
        rx.clock.advance(120)
        assert (await stats(rx))["response"]["ack_pct"] == 0.0


async def test_a_blip_after_the_resolve_leaves_the_change_to_detection_people_were_told(
    tmp_path: Path,
) -> None:
    async with harness(config(tmp_path), FakeClock(T1 - 600)) as rx:
        deploy = {"type": "deploy", "service": "payment-service", "at": iso(T1 - 120)}
        assert (await rx.client.post("/api/v1/events", content=json.dumps(deploy))).is_success
        rx.clock.now = T1
        paged = [alert("payment-service", "PaymentErrors", "eu", T1, fingerprint="f1")]
        incident = await opened(rx, paged)
        await rx.tick(30)  # told at T1+30: a deploy to payment-service 2 min before
        rx.clock.now = T1 + 600
        await rx.post(ended(paged, T1 + 600))
        await rx.tick(300)  # resolved by its alerts
        assert (await stats(rx))["business"]["change_to_detection_s_p50"] == 120.0
        # Within reopen_window the alert fires for 10 s: a blip nobody is told of, whose
        # context is read against its own start, 22 min after the deploy.
        rx.clock.now = T1 + 1200
        again = [alert("payment-service", "PaymentErrors", "eu", T1 + 1200, fingerprint="f1")]
        await rx.post(again)
        rx.clock.now = T1 + 1210
        await rx.post(ended(again, T1 + 1210))
        await rx.tick(30)
        detail = await rx.incident(incident)
        assert (detail["status"], detail["blips"], detail["reopened_count"]) == ("resolved", 1, 1)
        rx.clock.advance(120)  # past the kept answer's minute
        assert (await stats(rx))["business"]["change_to_detection_s_p50"] == 120.0


async def test_an_incident_routed_to_no_sink_is_not_counted_as_told(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(JOURNEYS)
    # P4 and P5 go nowhere: the usual way to keep low priorities off people.
    cfg = write_config(tmp_path, "routing: {log: [P1, P2, P3]}\n", journeys=journeys)
    async with harness(cfg, FakeClock(T1)) as rx:
        paged = await opened(rx, [alert("payment-service", "PaymentErrors", "eu", T1)])
        quiet = await opened(rx, [alert("search-api", "SearchSlow", "eu", T1)])
        await rx.tick(30)
        await respond(rx, paged, acknowledged_at=T1 + 90)
        detail = await rx.incident(quiet)
        assert (detail["priority"], detail["notified_at"] is not None) == ("P5", True)
        assert detail["timeline"][-1]["text"] == "open P5 sent to no sink (routing matched none)"
        assert [kind for kind, _, _ in rx.sink.sent] == ["open"]  # the P2's alone
        rx.clock.advance(60)
        figures = await stats(rx)
    # Nobody heard of the P5, so nobody could acknowledge it: the one told of was.
    assert figures["response"]["ack_pct"] == 100.0
    assert figures["business"]["revenue_quantified_pct"] == 0.0  # of the P2 alone
    assert figures["journeys"]["browse"]["response"]["ack_pct"] is None
    assert figures["journeys"]["browse"]["business"]["revenue_quantified_pct"] is None


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("?window=soon", "window", f'{DURATION_HELP}, got "soon"'),
        ("?window=", "window", f'{DURATION_HELP}, got ""'),
        ("?window=0s", "window", '"0s" must be longer than 0s'),
        ("?window=0.0001", "window", '"0.0001" must be longer than 0s'),  # 0 ms
        ("?window=91d", "window", '"91d" is longer than the maximum 90d'),
        # Past the maximum of durations anywhere: still this endpoint's own.
        ("?window=9999999999999d", "window", '"9999999999999d" is longer than the maximum 90d'),
        ("?window=-1", "window", '"-1" is below the minimum 0'),
        ("?windw=7d", "windw", "unknown query parameter"),
        ("?journey=nope", "journey", 'unknown journey "nope"'),
    ],
)  # fmt: skip
async def test_a_bad_query_is_422_naming_the_field(
    tmp_path: Path, query: str, field: str, reason: str
) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        r = await rx.client.get("/api/v1/stats" + query)
    assert r.status_code == 422
    body = r.json()
    assert body["errors"] == [{"field": field, "reason": reason}]
    assert field in body["error"]


def metric_lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if line.startswith("journey_receiver_stats_")}


WEEK_LINES = (
    'journey_receiver_stats_incidents{journey="",window="7d"} 4.0',
    'journey_receiver_stats_alerts{journey="",window="7d"} 8.0',
    'journey_receiver_stats_alerts_per_incident{journey="",window="7d"} 2.0',
    'journey_receiver_stats_blips{journey="checkout",window="7d"} 2.0',
    'journey_receiver_stats_not_useful_ratio{journey="",window="7d"} 0.667',
    'journey_receiver_stats_mtta_seconds_p50{journey="",window="7d"} 90.0',
    'journey_receiver_stats_mttr_seconds_p50{journey="checkout",window="7d"} 930.0',
    'journey_receiver_stats_ack_ratio{journey="browse",window="7d"} 0.0',
    'journey_receiver_stats_revenue_quantified_ratio{journey="",window="7d"} 0.0',
    'journey_receiver_stats_minutes_degraded{journey="checkout",window="7d"} 196.0',
    'journey_receiver_stats_minutes_degraded{journey="unmapped",window="7d"} 0.0',
)


async def metrics_of(rx: Harness) -> set[str]:
    return metric_lines((await rx.client.get("/metrics")).text)


async def test_the_week_is_metrics_too_and_only_the_week(tmp_path: Path) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        before = await metrics_of(rx)
        figures = await refresh_metrics(rx.receiver)
        lines = await metrics_of(rx)
        # The API exports nothing of its own: a gauge it alone set would never be
        # refreshed, and would show an old answer as long as the process lives.
        for query in ("?window=1d", "?window=30d&journey=browse", "?window=2d", "?journey=browse"):
            await stats(rx, query)
        after = await metrics_of(rx)
    assert before == set()
    assert figures is not None and figures.signal.incidents == 4
    for line in WEEK_LINES:
        assert line in lines
    # A figure without a value has no series.
    assert not [line for line in lines if "revenue_at_risk{" in line]
    assert not [line for line in lines if 'mtta_seconds_p50{journey="browse"' in line]
    assert after == lines
    assert all('window="7d"' in line for line in after)


async def test_a_figure_that_loses_its_value_loses_its_series(tmp_path: Path) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        await refresh_metrics(rx.receiver)
        assert 'journey_receiver_stats_mtta_seconds_p50{journey="",window="7d"} 90.0' in (
            await metrics_of(rx)
        )
        # Eight days on, the week holds no incident: no median, and 0 incidents.
        rx.clock.advance(8 * DAY)
        await refresh_metrics(rx.receiver)
        lines = await metrics_of(rx)
    assert not [line for line in lines if "mtta_seconds_p50" in line]
    assert 'journey_receiver_stats_incidents{journey="",window="7d"} 0.0' in lines


class CountingReads:
    """Counts the costly reads of the figures (the incidents of a window and their
    alerts), passing each on to the real one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._read = outcome_stats.read_outcomes
        monkeypatch.setattr(outcome_stats, "read_outcomes", self)

    def __call__(
        self,
        store: GroupStore,
        since_ms: int,
        journey: str | None,
        page_size: int,
        names: Alertnames | None = None,
        reading: Reading | None = None,
    ) -> AsyncGenerator[list[Outcome], None]:
        self.calls += 1
        return self._read(store, since_ms, journey, page_size, names, reading)


async def one_more_incident(rx: Harness) -> None:
    at = rx.clock.now
    await opened(rx, [alert("payment-service", "PaymentErrors", "us", at)])


async def test_within_a_minute_the_api_answers_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        reads = CountingReads(monkeypatch)
        first = await stats(rx)
        await one_more_incident(rx)
        rx.clock.advance(59)
        # The same question (an empty journey is all of them) within the minute: the
        # same answer, read once, though an incident came since.
        assert await stats(rx) == first
        assert await stats(rx, "?window=7d&journey=") == first
        assert reads.calls == 1
        # Another question is read on its own, then kept in turn.
        browse = await stats(rx, "?journey=browse")
        assert await stats(rx, "?journey=browse") == browse
        assert reads.calls == 2
        # A minute after the first answer it is read again, and sees the new incident.
        rx.clock.advance(1)
        later = await stats(rx)
        assert reads.calls == 3
    assert (first["signal"]["incidents"], later["signal"]["incidents"]) == (4, 5)
    assert later["until"] == iso(NOW + 60)


async def test_an_unreadable_kept_answer_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        # As a replica of another version might have left it during an upgrade.
        await rx.receiver.store.cache.set(CACHE_NAMESPACE, "7d", '{"signal": 1}', 60_000)
        reads = CountingReads(monkeypatch)
        figures = await stats(rx)
    assert figures["signal"]["incidents"] == 4
    assert reads.calls == 1


async def test_one_replica_a_minute_computes_and_every_replica_publishes(
    tmp_path: Path, redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def shared() -> RedisStore:
        return open_store(
            f"redis://127.0.0.1:{redis_port}/0",
            StoreSettings(key_prefix="stats-replicas", retention_ms=30 * DAY * 1000),
        )

    clock = FakeClock()
    cfg = config(tmp_path)
    async with (
        harness(cfg, clock, store=shared()) as one,
        harness(cfg, clock, store=shared()) as two,
    ):
        await seed(one)
        reads = CountingReads(monkeypatch)
        # One minute, both replicas: the first to come computes, the other publishes
        # what the first kept, and the API of either answers it too.
        computed = await refresh_metrics(one.receiver)
        published = await refresh_metrics(two.receiver)
        assert reads.calls == 1
        assert computed == published
        assert await stats(two) == await stats(one) == computed.model_dump(mode="json")
        assert reads.calls == 1
        lines = await metrics_of(one)
        assert await metrics_of(two) == lines
        for line in WEEK_LINES:
            assert line in lines
        # The next minute, whoever comes first computes; both publish the new incident.
        await one_more_incident(one)
        clock.advance(60)
        await refresh_metrics(two.receiver)
        await refresh_metrics(one.receiver)
        assert reads.calls == 2
        both = [await metrics_of(one), await metrics_of(two)]
    assert both[0] == both[1]
    assert 'journey_receiver_stats_incidents{journey="",window="7d"} 5.0' in both[0]


async def test_each_minute_reads_the_alerts_of_the_incidents_that_changed_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        reads: list[str] = []
        load = rx.receiver.store.load_alerts

        async def counted(incident_id: str, limit: int) -> Any:
            reads.append(incident_id)
            return await load(incident_id, limit)

        monkeypatch.setattr(rx.receiver.store, "load_alerts", counted)
        computed = CountingReads(monkeypatch)
        first = await refresh_metrics(rx.receiver)
        assert first is not None and len(reads) == first.signal.incidents == 4
        rx.clock.advance(60)
        same = await refresh_metrics(rx.receiver)  # the next minute, nothing changed
        assert computed.calls == 2  # computed again, not taken from the cache
        assert same is not None and same.signal == first.signal and len(reads) == 4
        await one_more_incident(rx)
        rx.clock.advance(60)
        again = await refresh_metrics(rx.receiver)
        assert again is not None and again.signal.incidents == 5
        assert len(reads) == 5  # the new incident's alerts; the others' are kept


async def test_a_replica_with_nothing_kept_leaves_its_gauges_as_they_were(
    tmp_path: Path, redis_port: int
) -> None:
    # The lease of this minute is held by a replica still computing (or gone): there is
    # nothing to publish yet, and nothing is read here either.
    store = open_store(
        f"redis://127.0.0.1:{redis_port}/0", StoreSettings(key_prefix="stats-nothing-kept")
    )
    clock = FakeClock()
    held = f"{CACHE_NAMESPACE}:{clock.ms // REFRESH_SLOT_MS}"
    assert await store.take_lease(held, "another-replica", 120_000)
    async with harness(config(tmp_path), clock, store=store) as rx:
        assert await refresh_metrics(rx.receiver) is None
        assert await metrics_of(rx) == set()


def priced(tmp_path: Path, prometheus: str) -> Path:
    """The checkout journey's conversion at 1,000 a unit: 0.2 against 0.5 is 300/min."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(
        (PROMETHEUS_DATA / "journeys.yaml")
        .read_text()
        .replace("bad_when: down\n", "bad_when: down\n        revenue_per_unit: 1000\n")
    )
    source = f"prometheus: {{url: '{prometheus}', timeout: 1s, budget: 2s}}\n"
    return write_config(tmp_path, source, journeys=journeys)


async def test_revenue_and_the_change_before_it_end_to_end(
    tmp_path: Path, prometheus_url: str
) -> None:
    # tests/data/prometheus: conversion in eu is 0.2 against 0.5 a week before at 08:10Z,
    # and the deploy below is 2 min before the alert starts.
    first = 1_776_499_800 - 30  # 08:09:30Z
    clock = FakeClock(first - 600)
    async with harness(priced(tmp_path, prometheus_url), clock) as rx:
        deploy = {"type": "deploy", "service": "payment-service", "at": iso(first - 120)}
        assert (await rx.client.post("/api/v1/events", content=json.dumps(deploy))).is_success
        clock.now = first
        await opened(rx, [alert("payment-service", "PaymentErrors", "eu", first)])
        await rx.tick(30)
        clock.now = first + 120
        figures = await stats(rx, "?window=1d")
    # 0.3 of conversion lost × 1000 per unit = 300/min, open 2 min since its start.
    assert figures["business"] == {
        "revenue_quantified_pct": 100.0,
        "revenue_at_risk_total": 600.0,
        "change_to_detection_s_p50": 120.0,
    }


async def test_the_store_reads_a_window_by_creation_time(store: RedisStore) -> None:
    t = round(T0 * 1000)
    ids = []
    for n, (region, journey) in enumerate(
        [("eu", "checkout"), ("us", "checkout"), ("eu", "browse")]
    ):
        batch = [group(placed(f"a{n}", region=region), region=region, journey=journey)]
        (o,) = await store.ingest(batch, 0, t + n * 60_000)
        ids.append(o.incident_id)
    assert [s.id for s in await store.incidents_since(t + 60_000, None, 10)] == ids[:0:-1]
    assert [s.id for s in await store.incidents_since(t, "checkout", 10)] == [ids[1], ids[0]]
    assert [s.id for s in await store.incidents_since(t, None, 1)] == [ids[2]]
    assert await store.incidents_since(t + 180_000, None, 10) == []


def named(
    fp: str, alertname: str, region: str, status: str = "firing", starts_at: datetime = STARTS
) -> PlacedAlert:
    p = placed(fp, status=status, region=region, starts_at=starts_at)
    return p._replace(alert=p.alert._replace(labels={**p.alert.labels, "alertname": alertname}))


async def test_an_incident_whose_alerts_did_not_change_is_not_read_again(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = round(T0 * 1000)
    ids = []
    for n, region in enumerate(["eu", "us"]):
        (o,) = await store.ingest([group(named(f"a{n}", f"A{n}", region), region=region)], 0, t)
        ids.append(o.incident_id)
    reads: list[str] = []
    load = store.load_alerts

    async def counted(incident_id: str, limit: int) -> Any:
        reads.append(incident_id)
        return await load(incident_id, limit)

    monkeypatch.setattr(store, "load_alerts", counted)
    names = Alertnames()

    async def alertnames() -> dict[str, frozenset[str]]:
        return {
            o.state.id: o.alertnames
            async for page in read_outcomes(store, t, None, names=names)
            for o in page
        }

    first = await alertnames()
    assert first == {ids[0]: {"A0"}, ids[1]: {"A1"}} and sorted(reads) == sorted(ids)
    assert await alertnames() == first and len(reads) == 2  # nothing changed: nothing read
    # Another alertname joins the first incident: that one is read again, the other is not.
    await store.ingest([group(named("b0", "B0", "eu"), region="eu")], 0, t + 1)
    assert await alertnames() == {ids[0]: {"A0", "B0"}, ids[1]: {"A1"}}
    assert reads[2:] == [ids[0]]
    # So is one whose alert resolved: what a page shows is ranked by status.
    await store.ingest([group(placed("a1", status="resolved", region="us"), region="us")], 0, t + 2)
    await alertnames()
    assert reads[3:] == [ids[1]]


async def test_alerts_that_swap_status_within_one_millisecond_are_read_again(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One alert shown (ALERTS_READ), firing first: which one it is changes when X resolves
    # and Y fires again, though the counts stay and every call falls in one millisecond.
    monkeypatch.setattr(outcome_stats, "ALERTS_READ", 1)
    t = round(T0 * 1000)
    (o,) = await store.ingest([group(named("x", "AX", "eu"), named("y", "AY", "eu"))], 0, t)
    await store.ingest([group(named("y", "AY", "eu", status="resolved"))], 0, t)
    names = Alertnames()

    async def shown() -> frozenset[str]:
        pages = [page async for page in read_outcomes(store, t, None, names=names)]
        return pages[0][0].alertnames

    assert await shown() == {"AX"}
    again = STARTS + timedelta(minutes=5)
    swap = [named("x", "AX", "eu", status="resolved"), named("y", "AY", "eu", starts_at=again)]
    await store.ingest([group(*swap)], 0, t)
    assert await shown() == {"AY"}
    loaded = await store.load(o.incident_id)
    assert loaded is not None and loaded.state.updated_at == t + 2  # a millisecond a change


# The roll-up on its own: edge cases of the arithmetic.

MIN = 60_000


def roll_up(*states: IncidentState, names: dict[int, list[str]] | None = None) -> Stats:
    outcomes = [Outcome(s, frozenset((names or {}).get(i, []))) for i, s in enumerate(states)]
    return compute(outcomes, 0, 60 * MIN, ["checkout"])


def test_median_and_percent() -> None:
    assert p50([]) is None
    assert p50([5.0]) == 5.0
    assert p50([30.0, 10.0, 20.0]) == 20.0
    assert p50([10.0, 20.0, 40.0, 1000.0]) == 30.0  # mean of the middle two
    assert pct(0, 0) is None
    assert pct(1, 3) == 33.3
    assert pct(0, 4) == 0.0


def test_no_incidents_give_nulls_not_zero_divisions() -> None:
    stats = roll_up()
    assert stats.model_dump(include={"signal", "response", "business", "actions"}) == {
        k: v for k, v in NOTHING.items() if k not in PER_JOURNEY
    }
    assert stats.journeys["checkout"].model_dump() == NOTHING


def test_revenue_adds_what_each_incident_counted_running_on_while_open() -> None:
    def kpi(name: str, per_min: float | None) -> KpiRecord:
        return KpiRecord(name=name, revenue_at_risk_per_min=per_min)

    told = {"notified_at": 1, "sinks": {"log": {"state": "sent"}}}
    stats = roll_up(
        # 3,000 counted to its resolve, though its last look found nothing at risk.
        state(1, status="resolved", resolved_at=40 * MIN, revenue_at_risk=3_000.0,
              revenue_counted_to=40 * MIN, kpis=[kpi("orders", 0.0)], **told),
        # Open: 250 counted to minute 20, then 2.5/min (the larger of two views of one
        # loss) to the end of the window at 60.
        state(2, first_firing_at=10 * MIN, revenue_at_risk=250.0, revenue_counted_to=20 * MIN,
              kpis=[kpi("orders", 2.5), kpi("conversion", 1.0)], **told),
        # Told, but no KPI carries revenue.
        state(3, kpis=[kpi("latency", None)], **told),
        # Counted, but routing sent it to no sink: money, but nobody told, so not a share.
        state(4, notified_at=1, revenue_at_risk=10.0, revenue_counted_to=1),
        # A blip is never counted: nobody was told of it.
        state(5, status="resolved", resolved_at=1, kpis=[kpi("orders", 9.0)]),
    )  # fmt: skip
    assert stats.business.revenue_at_risk_total == 3_000 + 250 + 2.5 * 40 + 10
    assert stats.business.revenue_quantified_pct == 66.7  # 1 and 2 of 1, 2, 3


def test_change_to_detection_is_from_the_trusted_leading_change() -> None:
    def change(id_: str, at: int) -> ChangeRecord:
        return ChangeRecord(
            id=id_, type="deploy", service="s", at=at, minutes_before=0, overlap=True
        )

    def cause(id_: str, score: float) -> CauseRecord:
        return CauseRecord(kind="change", text=id_, score=score, change_id=id_)

    start = 30 * MIN
    stats = roll_up(
        state(1, started_at=start, notified_at=start, changes=[change("c1", start - 90_000)],
              probable_causes=[cause("c1", 60.0)]),
        state(2, started_at=start, notified_at=start, changes=[change("c2", start - 30_000)],
              probable_causes=[cause("c2", 60.0)]),
        # A guess (below the confidence), a change after the start, a service cause: none.
        state(3, started_at=start, notified_at=start, changes=[change("c3", start - 1000)],
              probable_causes=[cause("c3", 5.0)]),
        state(4, started_at=start, notified_at=start, changes=[change("c4", start + 1000)],
              probable_causes=[cause("c4", 60.0)]),
        state(5, started_at=start, notified_at=start,
              probable_causes=[CauseRecord(kind="service", text="db", score=80.0)]),
        # The same change as 1's behind an incident nobody was told of (a blip): none.
        state(6, status="resolved", resolved_at=start + 10_000, started_at=start,
              changes=[change("c6", start - 90_000)],
              probable_causes=[cause("c6", 60.0)]),
    )  # fmt: skip
    assert stats.business.change_to_detection_s_p50 == 60.0  # median of 90 s and 30 s


def test_minutes_degraded_counts_overlaps_once_within_the_window() -> None:
    stats = compute(
        [
            Outcome(s, frozenset())
            for s in (
                # Started before the window (at 0): counts from minute 10.
                state(1, priority="P1", started_at=0, resolved_at=20 * MIN, status="resolved",
                      notified_at=1),
                # Overlaps the first: minutes 15-25 add only 20-25.
                state(2, priority="P3", started_at=15 * MIN, resolved_at=25 * MIN,
                      status="resolved", notified_at=1),
                # Open until the window's end at 60: minutes 50-60.
                state(3, priority="P2", started_at=50 * MIN, notified_at=1),
                # Not degraded: P4, and a blip at P1.
                state(4, priority="P4", started_at=30 * MIN, notified_at=1),
                state(5, priority="P1", started_at=40 * MIN, resolved_at=41 * MIN,
                      status="resolved"),
            )
        ],
        10 * MIN,
        60 * MIN,
        ["checkout"],
    )  # fmt: skip
    assert stats.journeys["checkout"].minutes_degraded == 10 + 5 + 10


def test_noisy_alertnames_are_ranked_and_capped() -> None:
    unwanted = [FeedbackRecord(at=1, useful=False)]
    states = [state(i, notified_at=1, feedback=unwanted) for i in range(12)]
    names = {i: [f"Noisy{i:02d}", "Everywhere"] for i in range(12)}
    # A useful incident: Noisy03 is now noisy in 1 of 2; Quiet in none.
    states.append(state(12, notified_at=1, feedback=[FeedbackRecord(at=1, useful=True)]))
    names[12] = ["Noisy03", "Quiet"]
    # A blip: Noisy05 is now noisy in 2 of 2.
    states.append(state(13, status="resolved", resolved_at=1))
    names[13] = ["Noisy05", "Blippy"]
    listed = [n.model_dump() for n in roll_up(*states, names=names).signal.noisy_alertnames]
    assert len(listed) == NOISY_CAP
    assert listed[:2] == [
        {"alertname": "Everywhere", "incidents": 12, "not_useful": 12, "blips": 0},
        {"alertname": "Noisy05", "incidents": 2, "not_useful": 1, "blips": 1},
    ]
    # Then one noisy incident of one each, by name, until the cap; Noisy03's 1 of 2 and
    # Quiet's none come after or not at all.
    assert [n["alertname"] for n in listed[2:]] == [
        "Blippy",
        *(f"Noisy{i:02d}" for i in (0, 1, 2, 4, 6, 7, 8)),
    ]


def test_only_useful_false_is_not_useful_and_only_a_verdict_judges() -> None:
    said = {
        "no": FeedbackRecord(at=1, useful=False),
        "yes": FeedbackRecord(at=1, useful=True),
        "wrong cause": FeedbackRecord(at=1, wrong_cause=True, cause="db"),
        "fixed by": FeedbackRecord(at=1, fixed_by="rollback"),
    }
    states = [
        state(1, notified_at=1, feedback=[said["no"]]),
        state(2, notified_at=1, feedback=[said["yes"], said["wrong cause"]]),
        # Something was said, but not whether it was useful: not a judgement either way.
        state(3, notified_at=1, feedback=[said["wrong cause"], said["fixed by"]]),
        state(4, notified_at=1, feedback=[said["wrong cause"], said["no"]]),
    ]
    assert [not_useful(s) for s in states] == [True, False, False, True]
    stats = roll_up(*states, names={2: ["WrongCauseOnly"]})
    assert stats.signal.not_useful_pct == 66.7  # 1 and 4 of 1, 2 and 4
    assert stats.signal.noisy_alertnames == []


def test_parse_query_defaults_and_duration_forms() -> None:
    assert parse_query({}) == StatsQuery("7d", 7 * DAY * 1000, None)
    assert parse_query({"window": "36h", "journey": ""}) == StatsQuery("36h", 36 * 3600_000, None)
    assert parse_query({"window": "3600", "journey": "checkout"}) == StatsQuery(
        "3600", 3600_000, "checkout"
    )
    with pytest.raises(PayloadError):
        parse_query({"window": "1y"})


async def test_a_running_receiver_keeps_the_week_as_gauges(tmp_path: Path) -> None:
    """The serving loop refreshes the 7-day figures by itself (receiver/app.py), with no
    call of GET /api/v1/stats."""
    app = create_app(write_config(tmp_path), clock=FakeClock())
    registry = app.state.receiver.metrics.registry
    shown = 'journey_receiver_stats_incidents{journey="",window="7d"} 0.0'
    assert shown not in generate_latest(registry).decode()
    async with app.router.lifespan_context(app):
        with anyio.fail_after(10):
            while shown not in generate_latest(registry).decode():  # noqa: ASYNC110 - a gauge, no event to wait on
                await anyio.sleep(0.05)


async def test_viewers_asking_at_once_share_one_computation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness(config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        reads = CountingReads(monkeypatch)
        answers: list[dict[str, Any]] = []

        async def viewer() -> None:
            answers.append(await stats(rx, "?window=30d"))

        async with anyio.create_task_group() as viewers:
            for _ in range(5):  # a dashboard open in five tabs, after the cache ran out
                viewers.start_soon(viewer)
        assert reads.calls == 1
        assert len(answers) == 5 and all(a == answers[0] for a in answers)


async def test_questions_asked_once_leave_nothing_behind(tmp_path: Path) -> None:
    # The window is the request's own text: every spelling of every duration is another
    # question, and what shares one computation must not outlive its askers.
    async with harness(config(tmp_path), FakeClock()) as rx:
        await stats(rx, "?window=7d")
        gc.collect()
        before = sum(isinstance(o, asyncio.Lock) for o in gc.get_objects())
        for n in range(300):
            await stats(rx, f"?window={3600 + n}")
        gc.collect()
        after = sum(isinstance(o, asyncio.Lock) for o in gc.get_objects())
    assert after - before < 10


# Journey SLOs (receiver/outcomes/slo.py) on the seeded history.

SLOS = {"checkout": "{degraded_at: P2, objective: 99.9}", "browse": "{degraded_at: P5}"}


def slo_config(tmp_path: Path, slos: dict[str, str] = SLOS) -> Path:
    cfg = config(tmp_path)
    journeys = tmp_path / "journeys.yaml"
    text = journeys.read_text()
    for journey, slo in slos.items():
        text = text.replace(f"  - id: {journey}\n", f"  - id: {journey}\n    slo: {slo}\n")
    journeys.write_text(text)
    return cfg


async def test_each_journey_is_measured_against_its_own_slo(tmp_path: Path) -> None:
    async with harness(slo_config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        figures = await stats(rx)
        await refresh_metrics(rx.receiver)
        lines = await metrics_of(rx)
    week = 7 * 24 * 60
    journeys = figures["journeys"]
    # A (16 min) and B (180 min) were P2: at or above checkout's P2.
    assert journeys["checkout"]["minutes_degraded"] == 196.0
    assert journeys["checkout"]["slo"] == {
        "degraded_at": "P2",
        "objective_pct": 99.9,
        # 98.0556, rounded down: never up to an objective not met
        "attainment_pct": (week - 196) * 100_000 // week / 1000,  # 98.055
        "budget_remaining_pct": round(100 * (1 - 196 / (0.001 * week)), 1),  # overspent
    }
    # D is P5, at browse's threshold: from T1+10800 to NOW, 60 min.
    assert journeys["browse"]["minutes_degraded"] == 60.0
    assert journeys["browse"]["slo"]["objective_pct"] is None
    assert journeys["unmapped"]["slo"]["degraded_at"] == "P3"
    attained = (week - 196) * 100_000 // week / 100_000
    assert (
        f'journey_receiver_stats_slo_attainment_ratio{{journey="checkout",window="7d"}} {attained}'
        in lines
    )
    assert (
        'journey_receiver_stats_slo_objective_ratio{journey="checkout",window="7d"} 0.999' in lines
    )
    assert 'journey_receiver_stats_minutes_degraded{journey="browse",window="7d"} 60.0' in lines
    # No objective, no series; and none for all journeys together.
    assert not [line for line in lines if 'objective_ratio{journey="browse"' in line]
    assert not [line for line in lines if 'slo_attainment_ratio{journey=""' in line]


async def test_a_window_longer_than_the_retention_is_cut_to_what_the_store_shows(
    tmp_path: Path,
) -> None:
    cfg = slo_config(tmp_path)
    # Nine days: the seeded incident eight days back is still there.
    cfg.write_text(cfg.read_text().replace("retention: 30d", "retention: 9d"))
    async with harness(cfg, FakeClock()) as rx:
        await seed(rx)
        month = await stats(rx, "?window=30d")
        week = await stats(rx, "?window=7d")
        page = (await rx.client.get("/stats?window=30d")).text
    assert (month["retention_limited"], week["retention_limited"]) == (True, False)
    since, until = (datetime.fromisoformat(month[k]) for k in ("since", "until"))
    assert (month["window"], until - since) == ("30d", timedelta(days=9))
    # 21 days the store no longer shows are not 21 days without an incident.
    checkout = month["journeys"]["checkout"]
    degraded = checkout["minutes_degraded"]
    assert degraded >= week["journeys"]["checkout"]["minutes_degraded"] > 0
    assert checkout["slo"]["attainment_pct"] == pytest.approx(
        100 * (1 - degraded / (9 * 24 * 60)), abs=0.001
    )
    assert "cut to <code>store.retention</code>" in page


async def test_an_answer_kept_under_another_retention_is_not_given(tmp_path: Path) -> None:
    cfg = slo_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("retention: 30d", "retention: 9d"))
    async with harness(cfg, FakeClock()) as rx:
        await seed(rx)
        assert (await stats(rx, "?window=9d"))["retention_limited"] is False
        assert (await stats(rx, "?window=30d"))["retention_limited"] is True
        cfg.write_text(cfg.read_text().replace("retention: 9d", "retention: 60d"))
        rx.receiver.reload()  # within the minute the answer above is kept for
        assert (await stats(rx, "?window=30d"))["retention_limited"] is False


async def test_an_incident_opened_before_the_window_counts_while_open_in_it(
    tmp_path: Path,
) -> None:
    async with harness(slo_config(tmp_path), FakeClock()) as rx:
        ids = await seed(rx)
        # The last hour (from T1+10800): B, opened at T1+3600, is still open at P2.
        hour = await stats(rx, "?window=1h&journey=checkout")
        pages = outcome_stats.read_outcomes(rx.receiver.store, (NOW - 3600) * 1000, None)
        read = [o async for page in pages for o in page]
    # Read with its timeline (the index holds state documents only), which the minutes
    # rest on; a blip's is not read.
    kinds = {o.state.id: [e.kind for e in o.state.timeline] for o in read}
    assert kinds[ids["b"]][:2] == ["opened", "notified"]
    assert kinds[ids["d"]][:2] == ["opened", "notified"]
    assert set(kinds) == {ids["b"], ids["d"]}  # A and C ended before the hour
    checkout = hour["journeys"]["checkout"]
    assert checkout["signal"]["incidents"] == 0  # created before the hour
    assert checkout["minutes_degraded"] == 60.0
    assert checkout["slo"]["attainment_pct"] == 0.0


async def test_the_value_page_shows_the_journey_slos(tmp_path: Path) -> None:
    async with harness(slo_config(tmp_path), FakeClock()) as rx:
        await seed(rx)
        page = await rx.client.get("/stats?window=7d")
    assert page.status_code == 200, page.text
    table = page.text.split('id="slo-table"')[1].split("</table>")[0]
    row = table.split('<tr data-journey="checkout">')[1].split("</tr>")[0]
    assert (
        "<td>P2 or above</td><td>196 min</td><td>98.055%</td><td>99.9%</td>"
        "<td>-1,844.4%</td><td>missed</td>"
    ) in row
    browse = table.split('<tr data-journey="browse">')[1].split("</tr>")[0]
    assert "<td>P5 or above</td><td>60 min</td>" in browse and "<td>—</td><td>—</td>" in browse


async def test_an_overspent_budget_is_never_an_objective_met(tmp_path: Path) -> None:
    """99.9 % of a week allows 604.8 s degraded; an incident keeps checkout degraded 606 s.
    The attainment is 99.8998 %, under the objective, and the budget is overspent: yet the
    attainment, rounded to 3 decimals, reads 99.9, so the API, the gauge (alert when
    attainment < objective) and the page's "Met" column all say the objective was met."""
    async with harness(slo_config(tmp_path), FakeClock()) as rx:
        rx.clock.now = T1
        a = [alert("payment-service", "PaymentErrors", "eu", T1 - 246)]
        await opened(rx, a)
        await rx.tick(30)  # notified (P2) at T1+30
        rx.clock.now = T1 + 60
        await rx.post(ended(a, T1 + 60))
        await rx.tick(300)  # resolved at T1+360: degraded from T1-246, 606 s
        rx.clock.now = T1 + DAY
        figures = await stats(rx, "?window=7d")
        page = (await rx.client.get("/stats?window=7d")).text
    slo = figures["journeys"]["checkout"]["slo"]
    assert figures["journeys"]["checkout"]["minutes_degraded"] == 10.1
    assert slo["budget_remaining_pct"] < 0, slo
    assert slo["attainment_pct"] < slo["objective_pct"], slo
    row = page.split('id="slo-table"')[1].split('<tr data-journey="checkout">')[1]
    assert row.split("</tr>")[0].endswith("<td>missed</td>"), row.split("</tr>")[0]


async def test_a_large_overspent_budget_reads_as_a_number_on_the_page(tmp_path: Path) -> None:
    """Five nines (99.999) allow 6 s a week; a P2 open all week overspends the budget by
    a hundred thousand times: the API says -9999900.0, the page "-1e+07%"."""
    five_nines = slo_config(tmp_path, {"checkout": "{degraded_at: P2, objective: 99.999}"})
    async with harness(five_nines, FakeClock()) as rx:
        rx.clock.now = T1
        await opened(rx, [alert("payment-service", "PaymentErrors", "eu", T1)])
        await rx.tick(30)
        rx.clock.now = T1 + 7 * DAY
        figures = await stats(rx, "?window=7d")
        page = (await rx.client.get("/stats?window=7d")).text
    slo = figures["journeys"]["checkout"]["slo"]
    assert slo["budget_remaining_pct"] == -9999900.0
    row = page.split('id="slo-table"')[1].split('<tr data-journey="checkout">')[1]
    row = row.split("</tr>")[0]
    assert "e+" not in row, row
    assert "-9,999,900%" in row, row


async def test_a_window_read_whole_is_not_said_to_be_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read also takes in the 7 days before the window (incidents still open in it
    count towards minutes degraded), and those count towards the 20,000 read: a week of
    1,500 incidents a day is read whole, yet the answer says ``capped`` and the value page
    that "older ones of the window are left out"."""
    monkeypatch.setattr(outcome_stats, "INCIDENTS_READ", 2)  # stands for 20,000
    async with harness(config(tmp_path), FakeClock(T1)) as rx:
        now = T1 + 10 * DAY
        # Two incidents of the week before the window, over long before it began.
        for n, region in enumerate(["us", "ap"]):
            rx.clock.now = now - 8 * DAY + n * 3600
            a = [alert("payment-service", "PaymentErrors", region, rx.clock.now)]
            await opened(rx, a)
            await rx.tick(30)
            rx.clock.advance(30)
            await rx.post(ended(a, rx.clock.now))
            await rx.tick(300)
        # The window's only incident.
        rx.clock.now = now - 3600
        await opened(rx, [alert("payment-service", "PaymentErrors", "eu", rx.clock.now)])
        await rx.tick(30)
        rx.clock.now = now
        figures = await stats(rx, "?window=7d")
        page = (await rx.client.get("/stats?window=7d")).text
    assert figures["signal"]["incidents"] == 1
    assert figures["capped"] is False
    assert "only the newest 20,000 incidents are counted" not in page


async def test_a_blip_nobody_was_told_of_has_no_change_to_detection(tmp_path: Path) -> None:
    """docs/operating.md: change_to_detection_s_p50 is read from "its latest episode people
    were told of ... a blip's own are never counted". An incident that was only ever a blip
    has no such episode; yet the context its group_wait decision read counts."""
    async with harness(config(tmp_path), FakeClock(T1 - 600)) as rx:
        deploy = {"type": "deploy", "service": "payment-service", "at": iso(T1 - 120)}
        assert (await rx.client.post("/api/v1/events", content=json.dumps(deploy))).is_success
        rx.clock.now = T1
        a = [alert("payment-service", "PaymentErrors", "eu", T1)]
        incident = await opened(rx, a)
        rx.clock.now = T1 + 10
        await rx.post(ended(a, T1 + 10))
        await rx.tick(20)  # past group_wait: a blip, nobody told
        detail = await rx.incident(incident)
        assert (detail["status"], detail["notified_at"], detail["blips"]) == ("resolved", None, 1)
        figures = await stats(rx)
    assert figures["business"]["change_to_detection_s_p50"] is None, (
        figures["business"],
        detail["probable_causes"],
    )


# Replicas whose clocks are a few seconds apart, on one store.

SKEW = 5.0


@contextlib.asynccontextmanager
async def skewed_replicas(
    tmp_path: Path, redis_port: int, cfg: Path | None = None, start: float = T1
) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two replicas on one Redis: ``behind`` on the true time (``start`` to begin with),
    ``ahead`` SKEW seconds ahead of it (``true_time`` sets both)."""

    def shared() -> RedisStore:
        return open_store(
            f"redis://127.0.0.1:{redis_port}/0",
            StoreSettings(key_prefix=f"skew-{tmp_path.name}", retention_ms=30 * DAY * 1000),
        )

    cfg = cfg or config(tmp_path)
    async with (
        harness(cfg, FakeClock(start), store=shared()) as behind,
        harness(cfg, FakeClock(start + SKEW), store=shared()) as ahead,
    ):
        yield behind, ahead


def true_time(replicas: tuple[Harness, Harness], t: float) -> None:
    """True time ``t`` on both replicas' clocks."""
    behind, ahead = replicas
    behind.clock.now, ahead.clock.now = t, t + SKEW


async def test_a_reopen_just_after_a_resolve_on_a_replica_behind_keeps_its_degraded_time(
    tmp_path: Path, redis_port: int
) -> None:
    # The replica ahead resolves the incident; seconds later (true time) its alert fires
    # again and lands on the replica behind, whose clock still reads before that resolve.
    # The reopened episode is P2 like the first, and open since: checkout was degraded
    # the whole hour, not only the first six minutes.
    async with skewed_replicas(tmp_path, redis_port) as replicas:
        behind, ahead = replicas
        a = [alert("payment-service", "PaymentErrors", "eu", T1)]
        incident = await opened(behind, a)
        true_time(replicas, T1 + 30)
        await ahead.tick()  # open P2, told
        true_time(replicas, T1 + 60)
        await behind.post(ended(a, T1 + 60))
        true_time(replicas, T1 + 360)
        await ahead.tick()  # resolved at T1+365 by its clock
        true_time(replicas, T1 + 362)
        again = [alert("payment-service", "PaymentErrors", "eu", T1 + 362)]
        assert await opened(behind, again) == incident  # reopened at T1+362 by its clock
        true_time(replicas, T1 + 400)
        await ahead.tick()  # reopen P2, told
        true_time(replicas, T1 + 3600)
        timeline = (await behind.incident(incident))["timeline"]
        figures = await stats(behind, "?window=1d")
    kinds = [e["kind"] for e in timeline]
    assert kinds == ["opened", "notified", "notified", "resolved", "reopened", "notified"]
    assert figures["journeys"]["checkout"]["minutes_degraded"] == 60.0, timeline
