"""The outbox: jobs written with the decision, delivered in order, retried, buried, redriven."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from receiver.config import OutboxConfig
from receiver.errors import PermanentDeliveryError, RetryableDeliveryError, StoreUnavailable
from receiver.incident import Incident, rfc3339
from receiver.outbox import backoff, kind_now
from receiver.sinks import Delivery, Receipt
from receiver.store import deliveries as store_deliveries
from receiver.store.base import Annotation
from receiver.store.deliveries import Job, Waiting
from receiver.store.redis import RedisStore
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.harness import Harness, ScriptedSink, harness, write_config

pytestmark = pytest.mark.anyio

ALERT = make_alert("payment-service", alertname="Errors")
REGIONS = ("eu", "us", "ap", "sa", "af")
OUTBOX = "outbox: {max_attempts: 4, backoff_initial: 10s, backoff_max: 60s, lease: 30s}\n"


@pytest.fixture
def sink() -> ScriptedSink:
    return ScriptedSink()


@pytest.fixture
async def rx(
    tmp_path: Path, clock: FakeClock, store: RedisStore, sink: ScriptedSink
) -> AsyncIterator[Harness]:
    async with harness(
        write_config(tmp_path, OUTBOX), clock, sinks={"log": sink}, store=store
    ) as h:
        yield h


def retryable(retry_after: float | None = None) -> RetryableDeliveryError:
    return RetryableDeliveryError("log", "x", "server", "HTTP 503: down", retry_after)


async def open_incident(rx: Harness) -> str:
    r = await rx.post([ALERT])
    (incident_id,) = r.json()["incidents"]
    rx.clock.advance(30)  # group_wait
    return str(incident_id)


async def deliveries(rx: Harness, state: str) -> list[dict[str, object]]:
    r = await rx.client.get(f"/api/v1/deliveries?state={state}")
    assert r.status_code == 200, r.text
    found: list[dict[str, object]] = r.json()["deliveries"]
    return found


async def test_the_decision_queues_the_job_and_the_outbox_delivers_it(
    rx: Harness, sink: ScriptedSink
) -> None:
    incident_id = await open_incident(rx)
    await rx.receiver.pipeline.flush_due()
    # Decided and committed, not yet sent: the job waits in the store, not in memory.
    assert sink.attempts == []
    assert await rx.receiver.store.deliveries.counts() == (1, 0)
    assert (await rx.incident(incident_id))["sinks"] == {"log": {"state": "pending"}}

    await rx.receiver.outbox.deliver_due()
    assert sink.kinds() == ["open"]
    assert sink.delivered[0].attempt == 1
    priority = (await rx.incident(incident_id))["priority"]
    notified = rx.receiver.metrics.notifications.labels("checkout", priority, "open")
    assert notified._value.get() == 1
    # The receipt is kept on the incident and handed back on the next delivery.
    assert (await rx.incident(incident_id))["sinks"] == {
        "log": {"state": "open", "object": f"obj-{incident_id}"}
    }
    assert await rx.receiver.store.deliveries.counts() == (0, 0)

    await rx.post([resolved(ALERT)])
    await rx.tick(300)  # resolve_after
    assert sink.kinds() == ["open", "resolve"]
    assert sink.delivered[1].previous is not None
    assert sink.delivered[1].previous.refs == {"object": f"obj-{incident_id}"}
    assert (await rx.incident(incident_id))["sinks"]["log"]["state"] == "resolved"


async def test_a_failing_sink_is_retried_with_backoff_and_order_is_kept(
    rx: Harness, sink: ScriptedSink
) -> None:
    sink.script = [retryable(), retryable()]
    await open_incident(rx)
    await rx.tick()
    assert [a.attempt for a in sink.attempts] == [1]
    await rx.tick(9.9)  # the first wait is at least backoff_initial
    assert len(sink.attempts) == 1
    await rx.tick(10.1)  # ... and at most backoff_initial plus as much jitter
    assert [a.attempt for a in sink.attempts] == [1, 2]

    # While the open waits out its backoff, the incident resolves: the resolve queues
    # behind the open and goes only after it.
    await rx.post([resolved(ALERT)])
    await rx.tick(300)
    assert [(a.kind, a.attempt) for a in sink.attempts] == [
        ("open", 1),
        ("open", 2),
        ("open", 3),
        ("resolve", 1),
    ]
    assert sink.kinds() == ["open", "resolve"]
    deliveries = rx.receiver.metrics.deliveries
    assert deliveries.labels("log", "open", "retried")._value.get() == 2
    assert deliveries.labels("log", "open", "delivered")._value.get() == 1


async def test_retry_after_is_honoured(rx: Harness, sink: ScriptedSink) -> None:
    sink.script = [retryable(retry_after=45)]
    await open_incident(rx)
    await rx.tick()
    await rx.tick(44)
    assert len(sink.attempts) == 1
    await rx.tick(1)
    assert sink.kinds() == ["open"]


async def test_a_backlog_of_updates_is_coalesced_for_sinks_that_send_the_whole_incident(
    rx: Harness, sink: ScriptedSink
) -> None:
    sink.coalesces_updates = True
    sink.script = [retryable(retry_after=300)]
    await open_incident(rx)
    await rx.tick()  # the open is refused; the sink is back in 300s
    await rx.post([make_alert("cart-api", alertname="Cart")])
    await rx.tick(120)  # an update (new service) queues behind the open
    await rx.post([make_alert("payments-db", alertname="Db")])
    await rx.tick(120)  # and another
    await rx.tick(60)
    # The first update is moot: the second tells the incident as it is now.
    assert sink.kinds() == ["open", "update"]
    deliveries = rx.receiver.metrics.deliveries
    assert deliveries.labels("log", "update", "coalesced")._value.get() == 1
    assert await rx.receiver.store.deliveries.counts() == (0, 0)


async def test_an_update_is_not_coalesced_away_behind_an_acknowledgement(
    rx: Harness, sink: ScriptedSink
) -> None:
    sink.coalesces_updates = True
    incident_id = await open_incident(rx)
    await rx.tick()
    sink.script = [retryable(retry_after=300)]
    await rx.post([make_alert("cart-api", alertname="Cart")])
    await rx.tick(120)  # an update (new service) is refused; the sink is back in 300s
    # Someone acknowledges meanwhile (Slack's button): the acknowledge queues behind it.
    ack = Job(incident=incident_id, sink="log", kind="acknowledge", due=rx.clock.ms)
    await rx.receiver.store.annotate(incident_id, Annotation(jobs=[ack]), rx.clock.ms)
    await rx.tick(300)
    # An acknowledge tells nothing of the incident: the update still goes.
    assert sink.kinds() == ["open", "update", "acknowledge"]
    assert await rx.receiver.store.deliveries.counts() == (0, 0)


async def test_a_permanent_failure_is_a_dead_letter_that_can_be_redriven(
    rx: Harness, sink: ScriptedSink
) -> None:
    sink.script = [PermanentDeliveryError("log", "x", "auth", "HTTP 401: invalid token")]
    incident_id = await open_incident(rx)
    await rx.tick()
    await rx.tick(600)
    assert len(sink.attempts) == 1  # not retried
    (letter,) = await deliveries(rx, "dead")
    assert letter["incident"] == incident_id
    assert letter["sink"] == "log"
    assert letter["kind"] == "open"
    assert letter["attempts"] == 1
    assert "HTTP 401: invalid token" in str(letter["error"])
    assert (await rx.incident(incident_id))["sinks"]["log"]["state"] == "failed"
    m = rx.receiver.metrics
    assert m.dead_letters_total.labels("log")._value.get() == 1
    assert m.dead_letters._value.get() == 1

    # A misspelt sink is refused, naming the field, not taken for "nothing to redrive".
    r = await rx.client.post("/api/v1/deliveries/redrive", json={"sink": "lgo"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {"field": "sink", "reason": "no such sink: one of jira, log, pagerduty, slack, or "
         "action:<action id>"}
    ]  # fmt: skip
    assert len(await deliveries(rx, "dead")) == 1
    r = await rx.client.post("/api/v1/deliveries/redrive", json={"ids": [letter["id"]]})
    assert r.status_code == 200, r.text
    assert r.json()["redriven"] == 1
    await rx.tick()
    assert sink.kinds() == ["open"]
    assert await deliveries(rx, "dead") == []
    assert (await rx.incident(incident_id))["sinks"]["log"]["state"] == "open"


async def test_attempts_are_bounded(rx: Harness, sink: ScriptedSink) -> None:
    sink.script = [retryable() for _ in range(10)]
    await open_incident(rx)
    for _ in range(10):
        await rx.tick(60)
    assert len(sink.attempts) == 4  # max_attempts
    (letter,) = await deliveries(rx, "dead")
    assert str(letter["error"]).startswith("gave up after 4 attempts: ")


async def test_a_redriven_open_tells_a_since_resolved_incident_as_resolved(
    rx: Harness, sink: ScriptedSink
) -> None:
    sink.script = [PermanentDeliveryError("log", "x", "client", "HTTP 400: bad")]
    await open_incident(rx)
    await rx.tick()
    await rx.post([resolved(ALERT)])
    await rx.tick(300)
    assert sink.kinds() == ["resolve"]
    r = await rx.client.post("/api/v1/deliveries/redrive", content=b"")
    assert r.json()["redriven"] == 1
    await rx.tick()
    # A late "open" would page for an incident that is over.
    assert sink.kinds() == ["resolve", "resolve"]


async def test_a_redrive_racing_a_resolve_tells_the_incident_resolved(
    rx: Harness, sink: ScriptedSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.script = [PermanentDeliveryError("log", "x", "client", "HTTP 400: bad")]
    await open_incident(rx)
    await rx.tick()  # the open: a dead letter
    await rx.post([resolved(ALERT)])
    rx.clock.advance(300)  # the resolve is due, not yet decided
    load = rx.receiver.store.load
    raced: list[bool] = []

    async def read_then_resolved_elsewhere(incident_id: str, timeline: bool = True) -> Any:
        stored = await load(incident_id, timeline)
        if not raced:
            raced.append(True)
            await rx.receiver.pipeline.flush_due()  # another replica decides meanwhile
        return stored

    monkeypatch.setattr(rx.receiver.store, "load", read_then_resolved_elsewhere)
    r = await rx.client.post("/api/v1/deliveries/redrive", content=b"")
    monkeypatch.undo()
    assert (raced, r.json()["redriven"]) == ([True], 1)
    await rx.receiver.outbox.deliver_due()
    # Read while it was open, queued once it was resolved: an open would page again.
    assert sink.kinds() == ["resolve", "resolve"]


async def acknowledged_unheard(rx: Harness, sink: ScriptedSink) -> str:
    """An incident acknowledged by alice whose acknowledge job the sink refused (a dead
    letter)."""
    incident_id = await open_incident(rx)
    await rx.tick()
    response = {"response": {"acknowledged_at": rx.clock.ms, "acknowledged_by": "alice"}}
    ack = Job(incident=incident_id, sink="log", kind="acknowledge", due=rx.clock.ms)
    sink.script = [PermanentDeliveryError("log", "x", "client", "HTTP 400: bad")]
    await rx.receiver.store.annotate(
        incident_id, Annotation(fill=response, jobs=[ack]), rx.clock.ms
    )
    await rx.tick()
    return incident_id


async def test_a_redriven_acknowledgement_does_not_acknowledge_a_later_episode(
    rx: Harness, sink: ScriptedSink
) -> None:
    # Acknowledged (the sink refuses to hear it: a dead letter), then over, then back.
    incident_id = await acknowledged_unheard(rx, sink)
    await rx.post([resolved(ALERT)])
    await rx.tick(300)
    await rx.post([{**ALERT, "startsAt": "2026-04-18T09:10:00Z"}])
    await rx.tick(30)
    await rx.tick()
    detail = await rx.incident(incident_id)
    assert (detail["status"], detail["response"]) == ("open", None)
    assert sink.kinds() == ["open", "resolve", "reopen"]
    r = await rx.client.post("/api/v1/deliveries/redrive", content=b"")
    assert r.json()["redriven"] == 1
    await rx.tick()
    # Nobody acknowledged this episode: an acknowledge would stop the sink's escalation.
    assert sink.kinds() == ["open", "resolve", "reopen", "update"]


async def test_a_redriven_acknowledgement_does_not_acknowledge_one_that_lapsed(
    rx: Harness, sink: ScriptedSink
) -> None:
    incident_id = await acknowledged_unheard(rx, sink)
    # Then it timed out in PagerDuty, which pages again: nobody is on it.
    lapsed = {"response": {"lapsed_at": rx.clock.ms + 1}}
    await rx.receiver.store.annotate(incident_id, Annotation(merge=lapsed), rx.clock.ms)
    r = await rx.client.post("/api/v1/deliveries/redrive", content=b"")
    assert r.json()["redriven"] == 1
    await rx.tick()
    # An acknowledge would stop the escalation that is paging someone to take it up.
    assert sink.kinds() == ["open", "update"]


async def test_a_replica_that_dies_holding_a_job_gives_it_up_after_the_lease(
    rx: Harness, sink: ScriptedSink
) -> None:
    await open_incident(rx)
    await rx.receiver.pipeline.flush_due()
    # Another replica claims the job and dies before sending it.
    (held,) = await rx.receiver.store.deliveries.claim(
        rx.receiver.pipeline.now_ms(), 30_000, 10, "gone"
    )
    assert held.attempt == 1
    await rx.tick(29)
    assert sink.attempts == []
    await rx.tick(1)
    assert sink.kinds() == ["open"]
    # The sink is told an earlier attempt may have landed, so it can look for it.
    assert sink.delivered[0].attempt == 2


async def test_a_job_that_never_finishes_ends_as_a_dead_letter(
    rx: Harness, sink: ScriptedSink
) -> None:
    await open_incident(rx)
    await rx.receiver.pipeline.flush_due()
    for _ in range(4):  # every holder dies mid-attempt
        await rx.receiver.store.deliveries.claim(rx.receiver.pipeline.now_ms(), 30_000, 10, "x")
        rx.clock.advance(30)
    await rx.tick()
    assert sink.attempts == []
    (letter,) = await deliveries(rx, "dead")
    assert str(letter["error"]).startswith("no attempt finished")


class GatedSink:
    """Holds the first ``held`` calls until ``gate`` opens, as a slow sink would."""

    name = "log"
    coalesces_updates = False

    def __init__(self, held: int) -> None:
        self.held = held
        self.gate = anyio.Event()
        self.busy = anyio.Event()
        self.calls: list[tuple[str, int]] = []

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        self.calls.append((delivery.job_id, delivery.attempt))
        if len(self.calls) == self.held:
            self.busy.set()
        if len(self.calls) <= self.held:
            await self.gate.wait()
        return Receipt(sink=self.name, state=incident.status)

    async def aclose(self) -> None:
        return None


async def test_a_replica_never_starts_a_job_whose_lease_ran_out_while_it_waited(
    tmp_path: Path, clock: FakeClock, store: RedisStore
) -> None:
    slow = GatedSink(held=8)  # every slot of the first replica is busy
    config = write_config(tmp_path, OUTBOX)
    async with harness(config, clock, sinks={"log": slow}, store=store) as rx:
        for n in range(9):
            await rx.post([make_alert("payment-service", region=f"r{n}")])
        clock.advance(30)
        await rx.receiver.pipeline.flush_due()
        outbox = rx.receiver.outbox
        async with anyio.create_task_group() as tg:
            tg.start_soon(outbox.deliver_due)  # replica A
            await slow.busy.wait()
            clock.advance(31)  # A's leases lapse while its sends hang
            await outbox.deliver_due()  # replica B delivers all nine
            slow.gate.set()
    # A sent only what it had started before its leases ran out; nothing of A's came
    # after B's delivery of the same job, and never as a first attempt.
    first_by_b = {job for job, attempt in slow.calls[8:] if attempt == 1}
    assert len(slow.calls) == 8 + 9
    assert {job for job, _ in slow.calls[:8]}.isdisjoint(first_by_b)


async def test_a_stale_holder_cannot_bury_a_job_another_replica_is_sending(
    rx: Harness,
) -> None:
    queue = rx.receiver.store.deliveries
    await open_incident(rx)
    await rx.receiver.pipeline.flush_due()
    now = rx.receiver.pipeline.now_ms
    (stale,) = await queue.claim(now(), 30_000, 10, "A")
    rx.clock.advance(31)
    (current,) = await queue.claim(now(), 30_000, 10, "B")
    assert current.job.id == stale.job.id
    assert not await queue.bury(stale, "A's permanent error", now(), 100)
    assert await queue.dead_letters(10) == []
    outcome, _ = await queue.ack(current, {"state": "open"}, now(), 30_000)
    assert outcome == "ok"


async def test_a_store_outage_mid_delivery_is_reported_as_such(
    rx: Harness, sink: ScriptedSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    await open_incident(rx)
    await rx.receiver.pipeline.flush_due()

    async def unreachable(incident_id: str) -> None:
        raise StoreUnavailable("store unreachable: connection refused")

    monkeypatch.setattr(rx.receiver.store, "load", unreachable)
    # The scheduler logs this as a store outage and retries next tick.
    with pytest.raises(StoreUnavailable):
        await rx.receiver.outbox.deliver_due()
    assert sink.attempts == []


async def test_jobs_still_to_deliver_are_listed_as_pending_or_retrying(
    rx: Harness, sink: ScriptedSink
) -> None:
    sink.script = [retryable()]
    incident_id = await open_incident(rx)
    await rx.receiver.pipeline.flush_due()
    decided = rfc3339(rx.receiver.pipeline.now_ms())
    (job,) = await deliveries(rx, "pending")
    assert job == {
        "id": "1", "incident": incident_id, "sink": "log", "kind": "open", "changes": [],
        "due_at": decided, "state": "pending", "error": None, "attempts": 0, "position": 0,
        "sending": False, "next_attempt_at": decided,
    }  # fmt: skip
    assert await deliveries(rx, "retrying") == []

    await rx.receiver.outbox.deliver_due()  # attempt 1: HTTP 503
    (retrying,) = await deliveries(rx, "retrying")
    assert retrying["id"] == job["id"]
    assert (retrying["attempts"], retrying["sending"]) == (1, False)
    assert retrying["error"] == "attempt 1: log: incident x: server: HTTP 503: down"
    wait_s = (_at(retrying["next_attempt_at"]) - _at(decided)).total_seconds()
    assert 10 <= wait_s <= 20  # backoff_initial, plus at most as much jitter
    assert await deliveries(rx, "pending") == []

    # The resolve queues behind the open that waits out its backoff: pending, after it.
    await rx.post([resolved(ALERT)])
    rx.clock.advance(300)  # resolve_after
    await rx.receiver.pipeline.flush_due()
    (behind,) = await deliveries(rx, "pending")
    assert (behind["kind"], behind["position"], behind["attempts"]) == ("resolve", 1, 0)
    assert behind["next_attempt_at"] is None
    assert behind["error"] is None

    await rx.tick()
    await rx.tick()
    assert sink.kinds() == ["open", "resolve"]
    assert await deliveries(rx, "pending") == await deliveries(rx, "retrying") == []


def _at(text: object) -> datetime:
    return datetime.fromisoformat(str(text))


async def test_pending_jobs_are_listed_once_while_other_replicas_claim_their_queues(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_deliveries, "_WAITING_PAGE", 2)
    alerts = [make_alert("payment-service", alertname="Errors", region=r) for r in REGIONS]
    r = await rx.post(alerts)
    opened = r.json()["incidents"]
    assert len(opened) == len(REGIONS)
    rx.clock.advance(30)  # group_wait
    await rx.receiver.pipeline.flush_due()
    queue = rx.receiver.store.deliveries
    now = rx.receiver.pipeline.now_ms()
    heads_of = queue._heads_of
    pages: list[list[str]] = []

    async def claimed_meanwhile(queues: list[str], now_ms: int, depth: int) -> list[Waiting]:
        if not pages:
            # Another replica claims the queue due first: its head is being sent now, and
            # the queue moves behind the others (at the end of its lease).
            (held,) = await queue.claim(now, 30_000, 1, "another replica")
            assert held.job.queue == queues[0]
        pages.append(queues)
        return await heads_of(queues, now_ms, depth)

    monkeypatch.setattr(queue, "_heads_of", claimed_meanwhile)
    jobs = await deliveries(rx, "pending")
    # Walked a page at a time (queues due at once all go in the page of their time), the
    # claimed one seen again at its new time, and listed once.
    assert len(pages) > 2
    assert sum(len(p) for p in pages) == len(REGIONS) + 1
    assert pages[-1] == pages[0][:1]
    assert sorted(str(j["incident"]) for j in jobs) == sorted(opened)
    sending = [j for j in jobs if j["sending"]]
    assert [(j["attempts"], j["next_attempt_at"]) for j in sending] == [(1, None)]
    monkeypatch.undo()

    # The replica died holding it: once its lease is over, the job counts as retrying,
    # with no error (nobody was left to record one).
    rx.clock.advance(31)
    (orphan,) = await deliveries(rx, "retrying")
    assert orphan["id"] == sending[0]["id"]
    assert (orphan["attempts"], orphan["error"], orphan["sending"]) == (1, None, False)
    assert len(await deliveries(rx, "pending")) == len(REGIONS) - 1
    # A limit smaller than a page stops the walk there.
    r2 = await rx.client.get("/api/v1/deliveries?state=pending&limit=2")
    assert len(r2.json()["deliveries"]) == 2


async def test_the_deliveries_endpoint_checks_its_parameters(rx: Harness) -> None:
    r = await rx.client.get("/api/v1/deliveries?state=stuck")
    assert r.status_code == 422
    assert r.json()["error"] == "state must be dead, pending or retrying"
    assert r.json()["errors"] == [{"field": "state", "reason": "must be dead, pending or retrying"}]
    for limit in ("0", "²"):  # "²" is a digit to str.isdigit(), and none to int()
        for path in ("deliveries?state=pending&", "incidents?"):
            r = await rx.client.get(f"/api/v1/{path}limit={limit}")
            assert r.status_code == 422
            reason = "must be a whole number from 1 to 1000"
            assert r.json()["errors"] == [{"field": "limit", "reason": reason}]
    r = await rx.client.get("/api/v1/incidents?status=bogus")
    assert r.json()["errors"] == [{"field": "status", "reason": "must be open, resolved or all"}]
    r = await rx.client.post("/api/v1/deliveries/redrive", json={"idz": ["1"]})
    assert r.status_code == 422
    assert "idz" in r.text


async def test_resolve_goes_only_to_the_sinks_that_heard_of_the_incident(
    tmp_path: Path, clock: FakeClock
) -> None:
    log, slack = ScriptedSink("log"), ScriptedSink("slack")
    routing = "routing: {log: [P1, P2, P3, P4, P5]%s}\n"
    config = write_config(tmp_path, "sinks: {slack: {token: xoxb-test}}\n" + routing % "")
    async with harness(config, clock, sinks={"log": log, "slack": slack}) as rx:
        await open_incident(rx)
        await rx.tick()
        # A team lead routes every priority to Slack too, while the incident is open.
        write_config(
            tmp_path,
            "sinks: {slack: {token: xoxb-test}}\n" + routing % ", slack: [P1, P2, P3, P4, P5]",
        )
        rx.receiver.reload()
        await rx.post([resolved(ALERT)])
        await rx.tick(300)
        # Slack never heard of the incident, so it is not told of its end either.
        assert log.kinds() == ["open", "resolve"]
        assert slack.attempts == []


def test_backoff_grows_with_jitter_up_to_the_maximum() -> None:
    cfg = OutboxConfig(backoff_initial=2, backoff_max=60)
    for attempt, low in ((1, 2), (2, 4), (3, 8), (4, 16)):
        waits = {backoff(attempt, cfg) for _ in range(50)}
        assert all(low <= w <= low + 2 for w in waits)
        assert len(waits) > 1  # jittered
    assert backoff(10, cfg) == 60


def test_a_redriven_job_tells_the_incident_as_it_is_now() -> None:
    assert kind_now("open", "resolved", False) == "resolve"
    assert kind_now("update", "resolved", False) == "resolve"
    assert kind_now("resolve", "open", False) == "update"
    assert kind_now("reopen", "open", False) == "reopen"
    # An acknowledgement stands while the episode it answered does.
    assert kind_now("acknowledge", "open", True) == "acknowledge"
    assert kind_now("acknowledge", "open", False) == "update"
    assert kind_now("acknowledge", "resolved", True) == "resolve"


async def test_a_stale_holders_ack_between_a_claim_and_its_heads_hands_over_no_count(
    rx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's lease lapsed while it sent job 1 (attempt 3); B claims the queue, and A's late
    ack lands before B takes the head: B gets job 2 as its first attempt, not job 1's 4th."""
    queue = rx.receiver.store.deliveries
    await open_incident(rx)
    await rx.receiver.pipeline.flush_due()
    await rx.post([make_alert("cart-api", alertname="Slow")])  # an update queued behind
    rx.clock.advance(120)
    await rx.receiver.pipeline.flush_due()
    now = rx.receiver.pipeline.now_ms
    for _ in range(3):
        (stale,) = await queue.claim(now(), 30_000, 10, "A")
        rx.clock.advance(31)
    assert (stale.job.kind, stale.attempt) == ("open", 3)
    heads = queue._heads

    async def ack_first(*args: object, **kwargs: object) -> object:
        await queue.ack(stale, {"state": "open"}, now(), 30_000)
        return await heads(*args, **kwargs)

    monkeypatch.setattr(queue, "_heads", ack_first)
    (current,) = await queue.claim(now(), 30_000, 10, "B")
    assert (current.job.kind, current.attempt, current.last_error) == ("update", 1, None)


class LearningSink(GatedSink):
    """A sink that asks who it is (as the Jira sink asks ``myself``), slowly; closed, it
    must no longer be asking."""

    def __init__(self) -> None:
        super().__init__(held=0)
        self.asking = anyio.Event()
        self.events: list[str] = []

    @property
    def asks_own_names(self) -> bool:
        return "answered" not in self.events

    async def learn_own_names(self) -> None:
        self.asking.set()
        await self.gate.wait()
        self.events.append("answered")

    async def aclose(self) -> None:
        self.events.append("closed")


async def test_a_sink_asking_who_it_is_is_let_finish_before_it_is_closed(
    tmp_path: Path, clock: FakeClock
) -> None:
    learning = LearningSink()
    config = write_config(tmp_path, OUTBOX)
    async with harness(config, clock, sinks={"log": learning}) as rx:
        outbox = rx.receiver.outbox
        await outbox.deliver_due()  # the first round starts the asking, in the background
        await learning.asking.wait()
        assert learning.events == []
        # A reload replaces the sink while it asks: the next round waits for the answer
        # before it closes the old one.
        successor = LearningSink()
        outbox.replace_sinks({"log": successor})
        async with anyio.create_task_group() as tg:
            tg.start_soon(outbox.deliver_due)
            for _ in range(20):  # the round gets as far as it can without the answer
                await anyio.lowlevel.checkpoint()
            learning.gate.set()
        assert learning.events == ["answered", "closed"]
        successor.gate.set()
        await outbox.learning
        # Answered: later rounds start no more asking.
        asked = outbox.learning
        await outbox.deliver_due()
        assert outbox.learning is asked


async def test_a_dead_letter_whose_incident_expired_is_dropped_by_redrive(
    rx: Harness, sink: ScriptedSink
) -> None:
    """A delivery died (a Jira project that did not exist yet) and nobody redrove it before
    its incident's retention ran out. Nothing can ever deliver it: redrive takes it off the
    list, or dead_letters_current, and the shipped alert on it, stay up for good."""
    sink.script = [PermanentDeliveryError("log", "x", "client", "HTTP 400: bad")]
    incident_id = await open_incident(rx)
    await rx.tick()
    (letter,) = await rx.receiver.outbox.dead_letters(10)
    assert letter.job.incident == incident_id
    # A retention of quiet later: the incident's keys expired (as Redis expires them).
    store = rx.receiver.store
    raw, prefix = store._r, store._p  # type: ignore[attr-defined]
    await raw.delete(*[k async for k in raw.scan_iter(match=f"{prefix}*{incident_id}*")])
    assert await store.load(incident_id) is None

    r = await rx.client.post("/api/v1/deliveries/redrive", json={})
    assert r.status_code == 200, r.text
    assert (r.json()["redriven"], r.json()["expired"]) == (0, [letter.job.id])
    assert await rx.receiver.outbox.dead_letters(10) == []
    await rx.tick()
    assert rx.receiver.metrics.dead_letters._value.get() == 0
