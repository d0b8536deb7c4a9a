"""The whole flow in one process: webhook → incident → group_wait → notify → resolve → reopen."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from receiver.store import open_store
from receiver.store.redis import RedisStore
from receiver.web import board
from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, make_alert, resolved
from tests.support.harness import Harness, harness, write_config

pytestmark = pytest.mark.anyio


@pytest.fixture
async def rx(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    async with harness(write_config(tmp_path), clock) as h:
        yield h


def storm(region: str = "eu", n: int = 12) -> list[dict[str, object]]:
    services = ["payment-service", "payments-db", "cart-api", "cart"]
    return [
        make_alert(services[i % 4], alertname=f"Err{i}", region=region, instance=f"i{i}")
        for i in range(n)
    ]


async def test_a_storm_becomes_one_incident_per_journey_and_region(rx: Harness) -> None:
    eu, us = storm("eu"), storm("us", 4)
    stray = [make_alert("legacy-batch", alertname="Stray")]
    r = await rx.post(eu[:6])
    assert r.status_code == 200
    assert r.json()["status"] == "accepted"
    assert r.json()["alerts"] == 6
    (eu_id,) = r.json()["incidents"]
    await rx.post(eu[6:] + us + stray)
    await rx.post(eu)  # Alertmanager repeats itself: same fingerprints, same alerts

    listed = {i["journey"] + "/" + i["key"]: i for i in await rx.incidents()}
    assert sorted((i["journey"], i["alert_count"]) for i in listed.values()) == [
        ("checkout", 4),
        ("checkout", 12),
        ("unmapped", 1),
    ]
    detail = await rx.incident(eu_id)
    assert detail["group_labels"] == {"env": "prod", "region": "eu"}
    assert detail["services"] == ["cart", "cart-api", "payment-service", "payments-db"]
    assert detail["stages"] == ["cart", "payment"]
    assert (detail["alert_count"], detail["firing_count"]) == (12, 12)
    assert detail["notified_at"] is None


async def test_first_notification_waits_for_group_wait_then_goes_once(rx: Harness) -> None:
    (inc,) = (await rx.post(storm())).json()["incidents"]
    await rx.tick(29.9)
    assert rx.sink.sent == []
    await rx.tick(0.1)
    assert rx.sink.kinds() == ["open"]
    await rx.tick(1)
    await rx.tick(600)
    assert rx.sink.kinds() == ["open"]
    incident = rx.sink.sent[0][2]
    assert incident.title == "checkout/eu P1 — 12 alerts in cart, cart-api, payment-service +1 more"
    # Three alerts each, started together: the example topology decides the upstream one.
    assert incident.probable_causes[0]["text"] == "payments-db"
    detail = await rx.incident(inc)
    assert detail["notified_at"] is not None
    assert detail["sinks"] == {"log": {"state": "open"}}
    assert detail["priority"] == "P1"
    assert [f["name"] for f in detail["score_breakdown"]] == [
        "journey", "stage", "severity", "tier", "blast_radius", "kpi",
    ]  # fmt: skip


async def test_a_round_reads_every_incident_it_claimed_at_once(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = {
        i
        for region in ("eu", "us", "ap")
        for i in (await rx.post(storm(region, 4))).json()["incidents"]
    }
    store = rx.receiver.store
    reads: list[list[str]] = []
    load_many, load = store.load_many, store.load

    async def counted_many(incident_ids: list[str]) -> Any:
        reads.append(list(incident_ids))
        return await load_many(incident_ids)

    async def counted_one(incident_id: str, timeline: bool = True) -> Any:
        if not timeline:  # a decision's read (the outbox reads whole incidents to send)
            reads.append([incident_id])
        return await load(incident_id, timeline)

    monkeypatch.setattr(store, "load_many", counted_many)
    monkeypatch.setattr(store, "load", counted_one)
    await rx.tick(30)
    assert rx.sink.kinds() == ["open"] * 3
    assert len(ids) == 3
    assert [sorted(r) for r in reads] == [sorted(ids)], reads


async def test_material_changes_are_rate_limited_but_priority_raises_are_not(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path), clock) as rx:
        warn = make_alert("cart-api", severity="warning", alertname="Slow")
        (inc,) = (await rx.post([warn])).json()["incidents"]
        await rx.tick(30)
        first = rx.sink.sent[-1][2]
        assert (rx.sink.kinds(), first.priority) == (["open"], "P4")

        # A new service joins at the same priority: held back until group_interval.
        await rx.post([make_alert("cart", severity="warning", alertname="Slow2")])
        await rx.tick(1)
        assert rx.sink.kinds() == ["open"]
        # A critical payment failure raises the priority: sent at once.
        await rx.post([make_alert("payment-service", alertname="PaymentsFailing")])
        await rx.tick(1)
        assert rx.sink.kinds() == ["open", "update"]
        assert rx.sink.sent[-1][2].priority == "P2"
        timeline = [e["text"] for e in (await rx.incident(inc))["timeline"]]
        assert "priority P4 → P2" in timeline


async def test_resolve_after_quiet_then_reopen_keeps_the_id(rx: Harness) -> None:
    alerts = storm(n=4)
    (inc,) = (await rx.post(alerts)).json()["incidents"]
    await rx.tick(30)
    await rx.post([resolved(a) for a in alerts])
    await rx.tick(299)
    assert rx.sink.kinds() == ["open"]
    await rx.tick(1)
    assert rx.sink.kinds() == ["open", "resolve"]
    detail = await rx.incident(inc)
    assert detail["status"] == "resolved"
    assert detail["resolved_at"] is not None

    again = [{**a, "startsAt": "2026-04-18T09:00:00Z"} for a in alerts[:2]]
    assert (await rx.post(again)).json()["incidents"] == [inc]
    await rx.tick(30)
    assert rx.sink.kinds() == ["open", "resolve", "reopen"]
    detail = await rx.incident(inc)
    assert (detail["status"], detail["reopened_count"]) == ("open", 1)


async def test_an_alert_dated_past_the_year_9999_in_utc_is_told_and_read(rx: Harness) -> None:
    # A sender's startsAt of 9999-12-31T23:00:00-05:00 is 10000-01-01 in UTC, which no
    # RFC 3339 text says: the incident's notification failed at every attempt and its
    # reads answered 500, for the alerts beside it too.
    odd = make_alert("cart", starts_at="9999-12-31T23:00:00-05:00")
    (incident_id,) = (await rx.post([make_alert(), odd])).json()["incidents"]
    await rx.tick(30)

    assert rx.sink.kinds(incident_id) == ["open"]
    detail = await rx.incident(incident_id)
    assert detail["started_at"] == "2026-04-18T08:10:00.123Z"
    assert {a["startsAt"] for a in detail["alerts"]} == {"2026-04-18T08:10:00.123Z", None}
    assert (await rx.client.get(f"/incidents/{incident_id}")).status_code == 200


async def test_a_blip_is_recorded_and_never_sent(rx: Harness) -> None:
    alert = make_alert("payment-service", alertname="Flap")
    (inc,) = (await rx.post([alert])).json()["incidents"]
    await rx.tick(10)
    await rx.post([resolved(alert)])
    await rx.tick(20)
    await rx.tick(600)
    assert rx.sink.sent == []
    detail = await rx.incident(inc)
    assert (detail["status"], detail["blips"], detail["notified_at"]) == ("resolved", 1, None)
    assert any(e["kind"] == "blip" for e in detail["timeline"])
    metrics = (await rx.client.get("/metrics")).text
    assert 'journey_receiver_blips_total{journey="checkout"} 1.0' in metrics


async def test_blips_beside_a_firing_alert_are_neither_told_nor_scored(rx: Harness) -> None:
    # Five services blip beside one warning in payment-service: the first page is the one
    # warning alone, at the priority it has without them; a blipped service that fires
    # again later is news.
    firing = make_alert("payment-service", alertname="Slow", severity="warning")
    blips = [
        make_alert(s, alertname="Blip", severity="warning")
        for s in ("cart", "cart-api", "checkout-service", "fraud-check", "payments-db")
    ]
    (inc,) = (await rx.post([firing, *blips])).json()["incidents"]
    await rx.tick(5)
    await rx.post([resolved(b) for b in blips])
    await rx.tick(25)
    assert (await rx.incident(inc))["blips"] == 5
    (kind, _, sent) = rx.sink.sent[0]
    assert kind == "open"
    assert (sent.priority, sent.services, sent.stages) == ("P4", ["payment-service"], ["payment"])
    assert [a["labels"]["service"] for a in sent.alerts] == ["payment-service"]
    assert "across payment-service." in sent.summary
    await rx.tick(120)
    assert rx.sink.kinds() == ["open"]  # nothing new to tell
    again = make_alert("cart-api", alertname="Blip", severity="warning", fingerprint="again")
    await rx.post([again])
    await rx.tick(120)
    (kind, _, update) = rx.sink.sent[-1]
    assert kind == "update" and update.services == ["cart-api", "payment-service"]


async def cart_blipped(rx: Harness) -> tuple[str, dict[str, object]]:
    """An incident opened on a payment-service warning, a cart alert blipping beside it."""
    firing = make_alert("payment-service", alertname="Slow", severity="warning")
    blip = make_alert("cart", alertname="Blip", severity="warning")
    (inc,) = (await rx.post([firing, blip])).json()["incidents"]
    await rx.tick(5)
    await rx.post([resolved(blip)])
    await rx.tick(25)
    assert rx.sink.kinds() == ["open"] and rx.sink.sent[0][2].services == ["payment-service"]
    return inc, firing


async def test_a_blipped_service_told_later_stays_told(rx: Harness) -> None:
    _, firing = await cart_blipped(rx)
    again = make_alert("cart", alertname="CartDown", severity="warning")
    await rx.post([again])
    await rx.tick(120)
    assert [(k, i.services) for k, _, i in rx.sink.sent[1:]] == [
        ("update", ["cart", "payment-service"])
    ]
    await rx.post([resolved(firing), resolved(again)])
    await rx.tick(300)
    (kind, _, closing) = rx.sink.sent[-1]
    assert (kind, closing.services) == ("resolve", ["cart", "payment-service"])


async def test_a_reopen_keeps_what_its_earlier_episode_told(rx: Harness) -> None:
    pay = make_alert("payment-service", alertname="Pay")
    cart = make_alert("cart", alertname="Cart")
    (inc,) = (await rx.post([pay, cart])).json()["incidents"]
    await rx.tick(30)
    await rx.post([resolved(pay), resolved(cart)])
    await rx.tick(300)
    await rx.post([{**pay, "startsAt": "2026-04-18T09:00:00Z"}])
    await rx.tick(30)
    assert rx.sink.kinds() == ["open", "resolve", "reopen"]
    assert rx.sink.sent[-1][2].services == ["cart", "payment-service"]
    stored = await rx.receiver.store.load(inc, False)
    assert stored is not None
    assert (stored.state.blipped_services, stored.state.blipped_stages) == ([], [])


async def test_a_blipped_service_is_no_ground_for_a_cause_nor_the_board(
    tmp_path: Path, clock: FakeClock
) -> None:
    clock.now = 1_776_499_800 - 30
    async with harness(write_config(tmp_path), clock) as rx:
        deploy = {"type": "deploy", "service": "cart", "version": "9.9",
                  "at": "2026-04-18T08:07:30Z"}  # fmt: skip
        assert (await rx.client.post("/api/v1/events", content=json.dumps(deploy))).is_success
        await cart_blipped(rx)
        sent = rx.sink.sent[0][2]
        assert "cart" not in sent.title
        # The deploy to cart is as unrelated as a deploy to any service not in the incident.
        assert [(c["text"], c["evidence"][-1]) for c in sent.probable_causes] == [
            ("payment-service", "no change to the incident's services in the 30 min before "
             "the first alert"),
            ("deploy 9.9 to cart", "cart is not one of the incident's services"),
        ]  # fmt: skip
        assert sent.suggested_actions == []
        (line,) = (await board.load(rx.receiver, board.OpenIncidents())).incidents
        assert line.stages == ["payment"]


async def test_blips_are_kept_where_an_older_replicas_commit_keeps_them(rx: Harness) -> None:
    # Replicas are rolled one at a time: one of the version before writes the view whole,
    # from a model without blipped_*, and merges the state field by field: in the state,
    # they are not lost with the view.
    inc, _ = await cart_blipped(rx)
    store = rx.receiver.store
    assert isinstance(store, RedisStore)
    key = store._p + "inc:" + inc
    state, view = (json.loads(v) for v in await store._r.hmget(key, ["state", "view"]))
    assert (state["blipped_services"], "blipped_services" in view) == (["cart"], False)
    await rx.tick(300)
    assert rx.sink.kinds() == ["open"]


async def test_truncated_batches_show_on_the_incident_and_in_metrics(rx: Harness) -> None:
    r = await rx.client.post(
        "/webhook/alertmanager",
        content=__import__("tests.conftest", fromlist=["body"]).body(storm(n=2), truncated=5),
    )
    (inc,) = r.json()["incidents"]
    detail = await rx.incident(inc)
    assert detail["truncated_alerts"] == 5
    assert "journey_receiver_truncated_alerts_total 5.0" in (await rx.client.get("/metrics")).text


async def test_an_incident_that_cannot_be_decided_does_not_hold_up_the_others(
    tmp_path: Path, clock: FakeClock, redis_port: int
) -> None:
    from redis.asyncio import Redis

    cfg = write_config(
        tmp_path, f"store: {{url: 'redis://127.0.0.1:{redis_port}/0', key_prefix: bad}}\n"
    )
    cfg.write_text(cfg.read_text().replace("store: {url: 'memory://'}\n", ""))
    async with harness(cfg, clock) as rx:
        (broken,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        (fine,) = (await rx.post([make_alert("legacy-batch")])).json()["incidents"]
        raw = Redis(port=redis_port)
        await raw.hset(f"{{bad}}:inc:{broken}", "state", "{not json")
        await raw.aclose()
        await rx.tick(30)
        assert [i for _, i, _ in rx.sink.sent] == [fine]
        metrics = (await rx.client.get("/metrics")).text
        assert "journey_receiver_flush_errors_total 1.0" in metrics


class RacingStore:
    """The real store, with a batch landing between every decision's read and its commit,
    as happens all the time during a storm with several replicas."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.race: Callable[[], Awaitable[object]] | None = None
        self.races = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, *args: Any) -> Any:
        if self.race is not None:
            self.races += 1
            await self.race()
        return await self.inner.commit(*args)


async def test_a_storm_that_never_pauses_still_gets_its_notification(
    tmp_path: Path, clock: FakeClock
) -> None:
    racing = RacingStore(open_store("memory://"))
    async with harness(write_config(tmp_path), clock, store=racing) as rx:
        (inc,) = (await rx.post([make_alert("payment-service", alertname="First")])).json()[
            "incidents"
        ]
        more = iter(range(1000))
        racing.race = lambda: rx.post([make_alert("cart-api", alertname=f"Storm{next(more)}")])
        await rx.tick(30)
        assert racing.races >= 1
        assert rx.sink.kinds() == ["open"]
        # What landed while it was being decided is looked at again at once...
        await rx.tick(1)
        # ...and, a new service, sent as an update after group_interval.
        await rx.tick(120)
        assert rx.sink.kinds() == ["open", "update"]
        detail = await rx.incident(inc)
        assert "cart-api" in detail["services"]
        assert detail["alert_count"] == 1 + racing.races


async def test_a_reload_that_shortens_a_timer_reaches_incidents_already_waiting(
    rx: Harness,
) -> None:
    config = rx.receiver.config_path
    assert config is not None

    def shorten(before: str, after: str) -> None:
        assert config is not None
        config.write_text(config.read_text().replace(before, after))
        rx.receiver.reload()

    alert = make_alert("payment-service")
    await rx.post([alert])
    await rx.tick()  # looked at once: due when the 30s group_wait ends
    shorten("group_wait: 30s", "group_wait: 5s")
    await rx.tick(5)
    assert rx.sink.kinds() == ["open"]
    await rx.post([resolved(alert)])
    await rx.tick()  # due when the 5m resolve_after ends
    shorten("resolve_after: 5m", "resolve_after: 1m")
    await rx.tick(60)
    assert rx.sink.kinds() == ["open", "resolve"]
    # A reload that shortens nothing moves nothing.
    rx.receiver.reload()
    assert not rx.receiver.pipeline.look_again


async def test_where_an_incident_is_reads_in_group_by_order(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The group labels go through the store's Lua, in a table, which has no order: they
    are read back in group_by's order, so the title and summary sent, the API and the
    pages all say "unmapped/staging/eu/c1"."""
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(
        f"journeys_file: {EXAMPLE_JOURNEYS}\n"
        "store: {url: 'memory://'}\n"
        "grouping: {group_by: [env, region, cluster], group_wait: 30s}\n"
        "server: {auth: {allow_open: true}}\n"
    )
    async with harness(cfg, clock) as rx:
        alert = make_alert("legacy-batch", env="staging", region="eu", cluster="c1")
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(30)
        sent = rx.sink.sent[-1][2]
        assert sent.title.startswith("unmapped/staging/eu/c1 P"), sent.title
        assert " in env staging, region eu, cluster c1, since " in sent.summary
        detail = await rx.incident(inc)
        assert list(detail["group_labels"]) == ["env", "region", "cluster"]
        # The incident page and the API say what the sinks were told.
        assert detail["title"] == sent.title
        (listed,) = await rx.incidents()
        assert listed["title"].startswith("unmapped/staging/eu/c1 P")


async def test_a_resolved_title_still_leads_with_what_was_failing_most(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Three payment alerts and one in cart: the open leads with payment-service, and so do
    the resolve and the resolved incident's page, not whichever service sorts first."""
    async with harness(write_config(tmp_path), clock) as rx:
        alerts = [make_alert("payment-service", instance=f"p-{n}") for n in range(3)]
        alerts.append(make_alert("cart-api"))
        (incident_id,) = (await rx.post(alerts)).json()["incidents"]
        await rx.tick(30)
        await rx.post([resolved(a) for a in alerts])
        await rx.tick(300)
        await rx.tick(1)
        titles = [delivery.title for _, i, delivery in rx.sink.sent if i == incident_id]
        detail = await rx.incident(incident_id)
    assert [t.split(" — ")[1].split(";")[0] for t in titles] == [
        "4 alerts in payment-service, cart-api",
        "resolved: 4 alerts in payment-service, cart-api",
    ]
    assert detail["title"] == titles[-1]
