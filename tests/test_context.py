"""Context on a notified incident, against a real Prometheus and the events API."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.store import StoreSettings, open_store
from tests.conftest import PROMETHEUS_DATA, T0, FakeClock, make_alert, resolved
from tests.support.fake_server import Fault
from tests.support.harness import Harness, harness, write_config
from tests.support.processes import free_port
from tests.support.prometheus import fake_http, prometheus_server

pytestmark = pytest.mark.anyio

# tests/data/prometheus/checkout.om: conversion in eu drops from 0.5 to 0.2 at 08:00Z on
# 2026-04-18; group_wait (30 s) ends at 08:10:00Z, when the receiver asks.
FIRST_ALERT = 1_776_499_800 - 30


def config(tmp_path: Path, prometheus_url: str) -> Path:
    prometheus = f"prometheus: {{url: '{prometheus_url}', timeout: 1s, budget: 2s}}\n"
    return write_config(tmp_path, prometheus, journeys=PROMETHEUS_DATA / "journeys.yaml")


DEPLOYS = [
    {"type": "deploy", "service": "payment-service", "version": "2026.04.17-9",
     "at": "2026-04-17T10:00:00Z"},
    {"type": "deploy", "service": "payment-service", "version": "2026.04.18-3",
     "at": "2026-04-18T08:07:30Z", "summary": "payment-service 2026.04.18-3"},
    {"type": "config", "service": "search-api", "at": "2026-04-18T08:09:00Z"},
]  # fmt: skip


async def test_the_notification_says_how_bad_and_what_changed_just_before(
    tmp_path: Path, prometheus_url: str
) -> None:
    clock = FakeClock(FIRST_ALERT - 600)
    async with harness(config(tmp_path, prometheus_url), clock) as rx:
        r = await rx.client.post("/api/v1/events", content=json.dumps(DEPLOYS))
        assert r.status_code == 202
        clock.now = FIRST_ALERT
        (inc,) = (await rx.post([make_alert("payment-service", alertname="PaymentErrors")])).json()[
            "incidents"
        ]
        await rx.tick(30)
        assert rx.sink.kinds() == ["open"]
        sent = rx.sink.sent[0][2]
        assert sent.title == (
            "checkout/eu P1 — 1 alert; conversion \u221260% vs last week; "
            "deploy 2026.04.18-3 to payment-service 2 min before"
        )
        assert sent.score == 80.0
        (kpi,) = sent.kpis
        assert (kpi["name"], kpi["deviation_pct"], kpi["bad"], kpi["vs"]) == (
            "conversion", -60.0, True, "last week",
        )  # fmt: skip
        assert kpi["value"] == pytest.approx(0.2)
        assert kpi["baseline"] == pytest.approx(0.5)
        assert sent.probable_causes[0]["text"] == "deploy 2026.04.18-3 to payment-service"
        assert [c["version"] for c in sent.changes if c["overlap"]] == ["2026.04.18-3"]
        assert sent.suggested_actions[0]["title"] == "Roll back payment-service to 2026.04.17-9"
        assert sent.context_notes == []

        detail = await rx.incident(inc)
        texts = [(e["kind"], e["text"]) for e in detail["timeline"]]
        assert ("kpi", "KPI conversion -60.0% vs last week") in texts
        assert (
            "change",
            "deploy 2026.04.18-3 to payment-service 2 min before the first alert",
        ) in texts


async def test_without_prometheus_the_incident_still_goes_out_on_time_and_says_why(
    tmp_path: Path,
) -> None:
    clock = FakeClock(FIRST_ALERT)
    async with harness(config(tmp_path, f"http://127.0.0.1:{free_port()}"), clock) as rx:
        (inc,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        await rx.tick(30)
        assert rx.sink.kinds() == ["open"]
        sent = rx.sink.sent[0][2]
        assert sent.context_notes == [
            "context unavailable: prometheus: connection refused (conversion)"
        ]
        # No KPI evidence: the KPI factor is unknown (0.85), so P2, not P1.
        assert (sent.priority, sent.score) == ("P2", 68.0)
        assert "(context unavailable: prometheus: connection refused (conversion))" in sent.summary
        detail = await rx.incident(inc)
        assert detail["notified_at"] is not None


async def test_a_prometheus_that_never_answers_costs_the_budget_and_no_more(
    tmp_path: Path,
) -> None:
    import time

    from tests.support.prometheus import silent_server

    with silent_server() as port:
        cfg = config(tmp_path, f"http://127.0.0.1:{port}")
        cfg.write_text(
            cfg.read_text().replace("timeout: 1s, budget: 2s", "timeout: 5s, budget: 500ms")
        )
        clock = FakeClock(FIRST_ALERT)
        async with harness(cfg, clock) as rx:
            await rx.post([make_alert("payment-service")])
            started = time.monotonic()
            await rx.tick(30)
            # A bound on correctness (the budget holds), not a benchmark: generous margin.
            assert time.monotonic() - started < 0.5 + 1.5
            assert rx.sink.kinds() == ["open"]
            assert rx.sink.sent[0][2].context_notes == [
                "context unavailable: prometheus: no answer within the 0.5s budget (conversion)"
            ]


@contextlib.asynccontextmanager
async def opened(tmp_path: Path, prometheus_url: str) -> AsyncIterator[tuple[Harness, str]]:
    """A receiver whose checkout incident just went out (group_wait over), and its id."""
    async with harness(config(tmp_path, prometheus_url), FakeClock(FIRST_ALERT)) as rx:
        (inc,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        await rx.tick(30)
        assert rx.sink.kinds() == ["open"]
        yield rx, inc


async def due(rx: Harness, at_ms: int) -> list[str]:
    """The incidents the scheduler would take up at ``at_ms``."""
    return [c.incident_id for c in await rx.receiver.store.claim_due(at_ms, 1_000, 10)]


async def test_an_open_incident_with_kpis_is_looked_at_again_every_group_interval(
    tmp_path: Path, prometheus_url: str
) -> None:
    async with opened(tmp_path, prometheus_url) as (rx, inc):
        # Nothing changes, yet its KPIs may: due again after group_interval (2m).
        assert await due(rx, rx.clock.ms + 119_999) == []
        assert await due(rx, rx.clock.ms + 120_000) == [inc]


async def test_a_batch_in_between_does_not_put_off_the_next_kpi_look(
    tmp_path: Path, prometheus_url: str
) -> None:
    async with opened(tmp_path, prometheus_url) as (rx, inc):
        # A second before its context is group_interval (2m) old, an alert of the same
        # service joins: decided at once (nothing material), the next look stays put.
        rx.clock.advance(119)
        await rx.post([make_alert("payment-service", alertname="Another")])
        await rx.tick()
        assert await due(rx, rx.clock.ms) == []
        assert await due(rx, rx.clock.ms + 1_000) == [inc]


async def test_a_cause_found_at_a_later_look_goes_out_as_an_update(
    tmp_path: Path, prometheus_url: str
) -> None:
    async with opened(tmp_path, prometheus_url) as (rx, inc):
        assert "deploy" not in rx.sink.sent[0][2].title
        # CI reports the deploy late: it happened 2 minutes before the first alert.
        late = [{**DEPLOYS[1], "environment": "prod", "region": "eu"}]
        assert (await rx.client.post("/api/v1/events", content=json.dumps(late))).is_success
        await rx.tick(119)
        assert rx.sink.kinds() == ["open"]  # group_interval is not over
        await rx.tick(1)
        assert rx.sink.kinds() == ["open", "update"]
        update = rx.sink.sent[1][2]
        assert update.title.endswith("; deploy 2026.04.18-3 to payment-service 2 min before")
        notes = [e["text"] for e in (await rx.incident(inc))["timeline"]]
        assert (
            "update P1 sent to log (probable cause: deploy 2026.04.18-3 to payment-service)"
            in notes
        )
        await rx.tick(120)  # looked at again: nothing new, nothing sent
        assert rx.sink.kinds() == ["open", "update"]


async def test_changes_are_timed_against_alertmanagers_start_not_the_receipt(
    tmp_path: Path, prometheus_url: str
) -> None:
    # Alertmanager's own group_wait and a slow route delivered the alert 8 min after it
    # started; the deploy was 2 min before it started, 10 before the receiver saw it.
    clock = FakeClock(FIRST_ALERT)
    async with harness(config(tmp_path, prometheus_url), clock) as rx:
        deploy = {**DEPLOYS[1], "at": "2026-04-18T07:59:30Z"}
        assert (await rx.client.post("/api/v1/events", content=json.dumps(deploy))).is_success
        alert = make_alert("payment-service", starts_at="2026-04-18T08:01:30Z")
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(30)
        sent = rx.sink.sent[0][2]
        assert sent.title.endswith("; deploy 2026.04.18-3 to payment-service 2 min before")
        assert sent.started_at == "2026-04-18T08:01:30.000Z"
        assert "since 2026-04-18T08:01:30.000Z" in sent.summary
        # The KPI is read at the start too, 8.5 min before now: is it getting worse?
        (kpi,) = sent.kpis
        assert kpi["at_start"] is not None and kpi["at_start"] > kpi["value"]
        assert f"(now 0.2, at the start {kpi['at_start']:.4g}, then 0.5 ratio)" in sent.summary
        assert (await rx.incident(inc))["started_at"] == sent.started_at


async def test_a_responders_change_after_the_start_does_not_hide_the_upstream_cause(
    tmp_path: Path, prometheus_url: str
) -> None:
    async with harness(config(tmp_path, prometheus_url), FakeClock(FIRST_ALERT)) as rx:
        alerts = [
            make_alert("payments-db", starts_at="2026-04-18T08:05:00Z"),
            make_alert("payment-service", starts_at="2026-04-18T08:09:00Z"),
        ]
        (inc,) = (await rx.post(alerts)).json()["incidents"]
        await rx.tick(30)
        assert rx.sink.sent[0][2].probable_causes[0]["text"] == "payments-db"
        # The on-call scales payment-service once paged: an answer, not a cause.
        scale = {"type": "scale", "service": "payment-service", "at": "2026-04-18T08:10:30Z",
                 "environment": "prod", "region": "eu"}  # fmt: skip
        assert (await rx.client.post("/api/v1/events", content=json.dumps(scale))).is_success
        await rx.tick(120)
        detail = await rx.incident(inc)
        causes = [(c["kind"], c["text"]) for c in detail["probable_causes"]]
        assert causes[0] == ("service", "payments-db")
        assert ("change", "scale on payment-service") in causes
        assert "cause unknown" not in detail["title"]


@pytest.mark.parametrize(
    ("history", "latest", "suggested"),
    [
        # v2 was bad and rolled back to v1 the same day; v3 went out 2 min before the alert.
        (
            [("deploy", "v2", "2026-04-16T10:00:00Z"), ("rollback", "v1", "2026-04-16T10:20:00Z"),
             ("deploy", "v3", "2026-04-18T08:07:30Z")],
            ("v3", "v1"),
            ["Roll back payment-service to v1"],
        ),
        # v2 went out 10 min before the alert and was rolled back to v1 three minutes later:
        # v1 runs, so rolling v2 "back to v1" would put back what runs already.
        (
            [("deploy", "v2", "2026-04-18T07:59:20Z"), ("rollback", "v1", "2026-04-18T08:02:20Z")],
            ("v1", "v2"),
            [],
        ),
    ],
)  # fmt: skip
async def test_a_rollback_puts_back_what_ran_before_what_runs_now(
    tmp_path: Path,
    prometheus_url: str,
    history: list[tuple[str, str, str]],
    latest: tuple[str, str],
    suggested: list[str],
) -> None:
    here = {"service": "payment-service", "environment": "prod", "region": "eu"}
    events = [
        {"type": "deploy", "version": "v1", "at": "2026-04-15T10:00:00Z", **here},
        *({"type": kind, "version": v, "at": at, **here} for kind, v, at in history),
    ]
    clock = FakeClock(FIRST_ALERT - 600)
    async with harness(config(tmp_path, prometheus_url), clock) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(events))).is_success
        clock.now = FIRST_ALERT
        await rx.post([make_alert("payment-service")])
        await rx.tick(30)
        sent = rx.sink.sent[0][2]
        # The latest change, and the version it replaced.
        assert (sent.changes[0]["version"], sent.changes[0]["previous_version"]) == latest
        assert [a["title"] for a in sent.suggested_actions] == suggested


async def test_the_cause_people_were_told_stands_while_the_incident_resolves(
    tmp_path: Path,
) -> None:
    # payments-db is upstream of payment-service (journeys.yaml topology): the cause. Once
    # every alert resolved no service fires to rank, and a rollback the on-call made
    # meanwhile explains nothing: the resolve tells the same story as the open.
    alerts = [
        make_alert("payments-db", starts_at="2026-04-18T08:13:00Z"),
        make_alert("payment-service", starts_at="2026-04-18T08:13:00Z"),
    ]
    clock = FakeClock(T0)
    async with harness(write_config(tmp_path), clock) as rx:
        (inc,) = (await rx.post(alerts)).json()["incidents"]
        await rx.tick(31)
        (kind, _, opened) = rx.sink.sent[-1]
        assert kind == "open" and opened.probable_causes[0]["text"] == "payments-db"
        clock.advance(120)
        await rx.post([resolved(a) for a in alerts])
        rollback = {"type": "rollback", "service": "payment-service", "at": "2026-04-18T08:15:30Z",
                    "environment": "prod", "region": "eu"}  # fmt: skip
        assert (await rx.client.post("/api/v1/events", content=json.dumps(rollback))).is_success
        for _ in range(4):
            await rx.tick(120)
        (kind, _, told) = rx.sink.sent[-1]
        assert kind == "resolve"
        assert told.probable_causes == opened.probable_causes
        assert "cause unknown" not in told.title
        assert (await rx.incident(inc))["status"] == "resolved"


async def test_a_cause_is_its_own_change_when_another_source_uses_the_same_id(
    tmp_path: Path,
) -> None:
    # Ids are unique within one source: the deploy log's deploy 7 and the config
    # pipeline's run 7 (posted to the API) are two changes, each its own cause.
    here = {"service": "payment-service", "environment": "prod", "region": "eu"}
    deploys = [{"id": 7, "type": "deploy", "version": "v3", "at": "2026-04-18T08:08:00Z", **here}]
    config = {"id": "7", "type": "config", "at": "2026-04-18T08:12:00Z", **here}
    with fake_http(200, json.dumps(deploys).encode()) as feed:
        cfg = write_config(
            tmp_path, f"events: {{feeds: [{{type: json, name: deploys, url: '{feed.url}'}}]}}\n"
        )
        async with harness(cfg, FakeClock(T0)) as rx:
            assert (await rx.client.post("/api/v1/events", content=json.dumps(config))).is_success
            await rx.post([make_alert("payment-service", starts_at="2026-04-18T08:13:00Z")])
            await rx.tick(31)
            sent = rx.sink.sent[0][2]
            causes = [(c["text"], c["change_id"], c["change_source"]) for c in sent.probable_causes]
            assert causes[:2] == [
                ("config on payment-service", "7", "api"),
                ("deploy v3 to payment-service", "7", "deploys"),
            ]
            titles = [a["title"] for a in sent.suggested_actions]
            assert titles == ["Roll back payment-service to its previous version (unknown)"]


async def test_a_feed_slower_than_the_budget_costs_its_own_events_only(
    tmp_path: Path, prometheus_url: str
) -> None:
    # The feed may take 5 s by its own timeout; the incident's context has 1 s for it.
    with fake_http(200, b"[]") as feed:
        feed.server.inject(Fault(delay=2.0, times=10))
        cfg = write_config(
            tmp_path,
            f"prometheus: {{url: '{prometheus_url}', timeout: 1s, budget: 1s}}\n"
            f"events: {{feeds: [{{type: json, name: deploys, url: '{feed.url}', timeout: 5s}}]}}\n",
            journeys=PROMETHEUS_DATA / "journeys.yaml",
        )
        clock = FakeClock(FIRST_ALERT - 600)
        async with harness(cfg, clock) as rx:
            stored = [{**DEPLOYS[1], "environment": "prod", "region": "eu"}]
            assert (await rx.client.post("/api/v1/events", content=json.dumps(stored))).is_success
            clock.now = FIRST_ALERT
            await rx.post([make_alert("payment-service")])
            await rx.tick(30)
            sent = rx.sink.sent[0][2]
            # What Prometheus and the store answered is used; the feed is a note.
            assert [k["name"] for k in sent.kpis] == ["conversion"]
            assert sent.probable_causes[0]["text"] == "deploy 2026.04.18-3 to payment-service"
            assert sent.context_notes == [
                "context unavailable: deploys: no answer within 1s (prometheus.budget, which "
                "the change feeds share)"
            ]


async def test_a_prometheus_gone_for_a_look_leaves_the_measured_kpi_and_the_priority(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(
            prometheus_server(tmp_path / "prom", PROMETHEUS_DATA / "checkout.om")
        )
        async with harness(config(tmp_path, url), FakeClock(FIRST_ALERT)) as rx:
            (inc,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
            await rx.tick(30)
            assert rx.sink.sent[0][2].priority == "P1"
            measured = rx.sink.sent[0][2].kpis
            stack.close()  # Prometheus stops answering
            await rx.tick(120)  # the next look
            detail = await rx.incident(inc)
            # Unknown now is not healthy: the last measurement stands, said so.
            assert detail["priority"] == "P1" and rx.sink.kinds() == ["open"]
            assert [k["deviation_pct"] for k in detail["kpis"]] == [
                k["deviation_pct"] for k in measured
            ]
            assert (
                "KPI conversion: not answered now, shown as last measured"
                in (detail["context_notes"])
            )


async def test_a_storm_among_changes_elsewhere_on_redis_and_prometheus(
    tmp_path: Path, prometheus_url: str, redis_port: int
) -> None:
    """The real stack: Redis as the store, Prometheus for the KPI. Changes in staging, in
    another region and in another cluster surround the incident; two services fire with
    the same startsAt. Only the in-scope change is seen, the topology names the upstream
    service, and the rollback goes back to the version that ran here."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(
        (PROMETHEUS_DATA / "journeys.yaml")
        .read_text()
        .replace("    stages:", "    group_by: [env, region, cluster]\n    stages:", 1)
        + "topology:\n  payment-service: [payments-db]\n"
    )
    cfg = config(tmp_path, prometheus_url)
    cfg.write_text(cfg.read_text().replace(str(PROMETHEUS_DATA / "journeys.yaml"), str(journeys)))
    here = {"environment": "prod", "region": "eu", "labels": {"cluster": "k1"}}
    events = [
        {"type": "deploy", "service": "payments-db", "version": "v1", **here,
         "at": "2026-04-16T10:00:00Z"},
        {"type": "deploy", "service": "payments-db", "version": "v9-staging",
         "environment": "staging", "at": "2026-04-17T10:00:00Z"},
        {"type": "deploy", "service": "payments-db", "version": "v2", **here,
         "at": "2026-04-18T07:58:00Z"},
        {"type": "deploy", "service": "payment-service", "version": "s-1",
         "environment": "staging", "at": "2026-04-18T08:00:00Z"},
        {"type": "config", "service": "payment-service", "region": "us",
         "at": "2026-04-18T08:00:00Z"},
        {"type": "deploy", "service": "payments-db", "version": "k2-7",
         "labels": {"cluster": "k2"}, "at": "2026-04-18T08:00:30Z"},
    ]  # fmt: skip
    store = open_store(
        f"redis://127.0.0.1:{redis_port}/0", StoreSettings(key_prefix=f"scenario-{FIRST_ALERT}")
    )
    clock = FakeClock(FIRST_ALERT)
    async with harness(cfg, clock, store=store) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(events))).is_success
        started = "2026-04-18T08:01:00Z"  # both services: which fired first is unknown
        services = ("payment-service", "payments-db")
        alerts = [make_alert(s, starts_at=started, cluster="k1") for s in services]
        (inc,) = (await rx.post(alerts)).json()["incidents"]
        await rx.tick(30)
        sent = rx.sink.sent[0][2]
        assert sent.title == (
            "checkout/eu/k1 P1 — 2 alerts; "
            "conversion \u221260% vs last week; deploy v2 to payments-db 3 min before"
        )
        assert [c["version"] for c in sent.changes] == ["v2"]
        assert sent.probable_causes[0]["evidence"] == [
            "deploy v2 to payments-db 3 min before the first alert",
            "payments-db is the probable upstream service of the incident",
        ]
        assert [a["title"] for a in sent.suggested_actions] == ["Roll back payments-db to v1"]
        told = json.dumps([sent.title, sent.summary, sent.timeline, sent.probable_causes])
        for elsewhere in ("v9-staging", "s-1", "config", "k2-7"):
            assert elsewhere not in told, elsewhere
        assert (await rx.incident(inc))["changes"] == sent.changes


async def test_an_alert_held_back_for_days_joins_without_moving_the_start(
    tmp_path: Path,
) -> None:
    # A cart alert has fired for three days under a silence; the silence expires while the
    # incident of a deploy is open, and Alertmanager sends it with its startsAt of three
    # days ago. It joins the incident, but the incident did not start three days ago: the
    # deploy 2 min before the first alert stays the cause, and cart is not upstream for
    # having "started first".
    clock = FakeClock(FIRST_ALERT - 600)
    async with harness(write_config(tmp_path), clock) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(DEPLOYS))).is_success
        clock.now = FIRST_ALERT
        (inc,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        await rx.tick(30)
        (_, _, opened) = rx.sink.sent[-1]
        assert opened.probable_causes[0]["text"] == "deploy 2026.04.18-3 to payment-service"
        clock.advance(300)
        held = make_alert(
            "cart", alertname="CartErrors", severity="critical",
            starts_at="2026-04-15T08:00:00Z",
        )  # fmt: skip
        await rx.post([held])
        await rx.tick(120)
        detail = await rx.incident(inc)
        assert detail["started_at"] == opened.started_at
        assert detail["services"] == ["cart", "payment-service"]
        causes = [c["text"] for c in detail["probable_causes"]]
        assert causes[0] == "deploy 2026.04.18-3 to payment-service"
        assert "cart" not in causes
        # One that started just before the first alert and came late (Alertmanager's
        # group_interval) is early news, not old news: the start moves back to it.
        early = make_alert("cart-api", alertname="Slow", starts_at="2026-04-18T08:06:00Z")
        await rx.post([early])
        assert (await rx.incident(inc))["started_at"] == "2026-04-18T08:06:00.000Z"
