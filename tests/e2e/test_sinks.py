"""The whole way out: webhook → decision → outbox → PagerDuty, Slack and Jira (local fakes
that enforce the APIs' rules, driven by the real client libraries)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.sinks.pagerduty import KEY_ID, fingerprint
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.fake_server import Fault
from tests.support.harness import Harness, harness, write_config
from tests.support.sink_world import PD_KEY, Fakes

pytestmark = pytest.mark.anyio


@pytest.fixture
async def rx(tmp_path: Path, clock: FakeClock, world: Fakes) -> AsyncIterator[Harness]:
    config = write_config(tmp_path, world.config())
    async with harness(config, clock, configured_sinks=True) as h:
        yield h


PAYMENT = make_alert("payment-service", alertname="PaymentErrors")
CART = make_alert("cart-api", alertname="CartErrors", severity="warning")
DB = make_alert("payments-db", alertname="DbErrors", severity="warning")


async def test_one_incident_is_one_pd_alert_one_slack_message_one_jira_issue_all_its_life(
    rx: Harness, world: Fakes
) -> None:
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)  # group_wait: open
    await rx.post([CART])
    await rx.tick(120)  # group_interval: update (new service, new stage)
    await rx.post([DB])
    await rx.tick(120)  # update (new service)
    await rx.post([resolved(a) for a in (PAYMENT, CART, DB)])
    await rx.tick(300)  # resolve_after: resolve
    again = {**PAYMENT, "startsAt": "2026-04-18T08:40:00Z"}  # it fires anew
    await rx.post([again])
    await rx.tick(30)  # reopen (same id), after group_wait
    await rx.post([resolved(again)])
    await rx.tick(300)  # resolve

    pd = world.pagerduty
    assert pd.actions(incident_id) == [
        "trigger", "trigger", "trigger", "resolve", "trigger", "resolve"
    ]  # fmt: skip
    # One dedup key; PagerDuty itself opens a second incident for the reopen.
    assert [i.status for i in pd.incidents(incident_id)] == ["resolved", "resolved"]

    (message,) = world.slack.messages("#inc-checkout")
    assert len(world.slack.edits(message.ts)) == 5  # every later notification edits it
    replies = [r.text for r in world.slack.replies(message.ts)]
    assert len(replies) == 5
    assert "new services: cart-api" in replies[0]
    assert "new services: payments-db" in replies[1]

    (issue,) = world.jira.with_label(f"journey-receiver-{incident_id}")
    assert issue.project == "PAY"  # the journey owner's project
    assert issue.transitions == ["Resolve Issue", "Reopen Issue", "Resolve Issue"]
    assert issue.status == "Resolved"
    assert len(issue.comments) == 5  # two changes, resolve, reopen, resolve

    detail = await rx.incident(incident_id)
    # The routing key the alert was triggered with, by its fingerprint, never the key.
    assert detail["sinks"]["pagerduty"] == {
        "state": "resolved",
        "dedup_key": incident_id,
        KEY_ID: fingerprint(PD_KEY),
    }
    assert PD_KEY not in json.dumps(detail)
    assert detail["sinks"]["slack"]["ts"] == message.ts
    assert detail["sinks"]["jira"] == {"state": "resolved", "key": issue.key}


async def test_a_sink_that_is_down_for_a_while_gets_everything_once_it_recovers_in_order(
    rx: Harness, world: Fakes
) -> None:
    # The Jira sink asks who it is from the first round on: asked before the faults, so
    # that they all land on deliveries.
    await rx.tick()
    assert rx.receiver.outbox.learning is not None
    await rx.receiver.outbox.learning
    world.pagerduty.server.inject(Fault("/v2/enqueue", status=503, times=3))
    world.jira.server.inject(Fault("/rest/api/2/", status=429, retry_after="40", times=2))
    # Slack's rate limit: HTTP 429 with error "ratelimited" and Retry-After.
    world.slack_server.inject(
        Fault(
            "/api/chat.",
            status=429,
            retry_after="30",
            body={"ok": False, "error": "ratelimited"},
            times=2,
        )
    )
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)
    await rx.post([resolved(PAYMENT)])
    for _ in range(10):
        await rx.tick(60)
    # The open was refused three times; the resolve, decided meanwhile, waited behind it.
    assert world.pagerduty.actions(incident_id) == ["trigger", "resolve"]
    assert len(world.pagerduty.server.requests("/v2/enqueue")) == 5
    (issue,) = world.jira.with_label(f"journey-receiver-{incident_id}")
    assert issue.status == "Resolved"
    (message,) = world.slack.messages("#inc-checkout")
    assert "RESOLVED" in message.text or "RESOLVED" in str(message.blocks)
    attempts = rx.receiver.metrics.delivery_attempts
    assert attempts.labels("pagerduty", "server")._value.get() == 3
    assert attempts.labels("jira", "rate_limited")._value.get() == 2
    assert attempts.labels("slack", "rate_limited")._value.get() == 2


async def test_a_permanently_failing_sink_dead_letters_and_redrive_delivers_after_the_fix(
    rx: Harness, world: Fakes
) -> None:
    world.jira.projects = ("OPS",)  # the journey's project PAY does not exist (yet)
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)
    assert len(world.pagerduty.incidents(incident_id)) == 1  # the others are not held up
    dead = (await rx.client.get("/api/v1/deliveries?state=dead")).json()["deliveries"]
    assert [(d["sink"], d["kind"], d["attempts"]) for d in dead] == [("jira", "open", 1)]
    assert "project" in str(dead[0]["error"]).lower()
    assert rx.receiver.metrics.dead_letters_total.labels("jira")._value.get() == 1

    world.jira.projects = ("OPS", "PAY")
    r = await rx.client.post("/api/v1/deliveries/redrive", json={"sink": "jira"})
    assert r.json()["redriven"] == 1
    await rx.tick()
    assert len(world.jira.with_label(f"journey-receiver-{incident_id}")) == 1
    assert (await rx.client.get("/api/v1/deliveries")).json()["deliveries"] == []


async def test_a_redriven_job_does_not_repeat_what_its_dead_attempt_wrote(
    rx: Harness, world: Fakes
) -> None:
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)
    (issue,) = world.jira.with_label(f"journey-receiver-{incident_id}")
    # The resolve's comment lands, but Jira's answer is a refusal: a dead letter whose
    # comment is on the issue already.
    path = f"/rest/api/2/issue/{issue.key}/comment"
    world.jira.server.inject(Fault(path, status=400, body={"errorMessages": ["no"]}, applied=True))
    await rx.post([resolved(PAYMENT)])
    for _ in range(6):
        await rx.tick(60)
    dead = (await rx.client.get("/api/v1/deliveries?state=dead")).json()["deliveries"]
    assert [(d["sink"], d["kind"]) for d in dead] == [("jira", "resolve")]
    assert len(world.jira.issue(issue.key).comments) == 1
    r = await rx.client.post("/api/v1/deliveries/redrive", json={"sink": "jira"})
    assert r.json()["redriven"] == 1
    await rx.tick()
    # The redrive is that job once more: its comment is found, not written again.
    assert len(world.jira.issue(issue.key).comments) == 1
    assert world.jira.issue(issue.key).status == "Resolved"
