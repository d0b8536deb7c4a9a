"""The outbox against the vendors' fakes: the order an incident's dead letters go in again, a
reopen's trigger PagerDuty took late, and a short rate limit in a storm."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.sinks.slack_blocks import ACK
from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, make_alert, resolved
from tests.support.fake_server import Fault
from tests.support.harness import Harness, harness, write_config
from tests.support.sink_world import Fakes
from tests.support.slack_clicks import ALICE, SECRET, Slack

pytestmark = pytest.mark.anyio

PAYMENT = make_alert("payment-service", alertname="PaymentErrors")


@pytest.fixture
async def rx(tmp_path: Path, clock: FakeClock, world: Fakes) -> AsyncIterator[Harness]:
    extra = f"inbound: {{slack: {{signing_secret: {SECRET}}}}}\n"
    config = write_config(tmp_path, world.config() + extra)
    async with harness(config, clock, configured_sinks=True) as h:
        yield h


async def test_redriving_an_incidents_dead_letters_keeps_their_order(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    """PagerDuty is down longer than max_attempts (5) lasts: the open is buried. Alice
    acknowledges in Slack meanwhile; PagerDuty's acknowledge is buried too. PagerDuty is
    back and the operator redrives everything, as the README says to."""
    pd = world.pagerduty
    pd.server.inject(Fault("/v2/enqueue", status=503, times=10))
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)  # group_wait: the open (Slack gets it, PagerDuty refuses)
    for _ in range(6):
        await rx.tick(70)
    clock.advance(10)
    slack = Slack(rx, world, clock)
    assert (await slack.click(ACK, incident_id, ALICE)).status_code == 200
    for _ in range(7):
        await rx.tick(70)
    dead = await rx.receiver.outbox.dead_letters(10)
    assert sorted(d.job.kind for d in dead if d.job.sink == "pagerduty") == [
        "acknowledge", "open"
    ]  # fmt: skip
    assert pd.actions(incident_id) == []  # PagerDuty heard nothing yet

    r = await rx.client.post("/api/v1/deliveries/redrive", json={"sink": "pagerduty"})
    assert r.json()["redriven"] == 2, r.text
    await rx.tick()
    await rx.tick()

    # The incident was acknowledged by a person: its PagerDuty incident must not page.
    assert pd.actions(incident_id) == ["trigger", "acknowledge"]
    assert [i.status for i in pd.incidents(incident_id)] == ["acknowledged"]


PD_SECRET = "pd-webhook-secret-outbox"


@pytest.fixture
async def rx_defaults(tmp_path: Path, clock: FakeClock, world: Fakes) -> AsyncIterator[Harness]:
    """The fakes with the outbox's default retry policy (10 attempts, 2s doubling to 5m)
    and PagerDuty's webhooks signed."""
    short = "outbox: {max_attempts: 5, backoff_initial: 10s, backoff_max: 1m, lease: 30s}"
    assert short in world.config()
    text = world.config().replace(
        short, "outbox: {max_attempts: 10, backoff_initial: 2s, backoff_max: 5m, lease: 30s}"
    )
    text += f"inbound: {{pagerduty: {{signing_secrets: [{PD_SECRET}]}}}}\n"
    config = write_config(tmp_path, text)
    async with harness(config, clock, configured_sinks=True) as h:
        yield h


async def test_a_reopen_trigger_delivered_late_is_resolved_when_the_episode_ends(
    rx_defaults: Harness, world: Fakes, clock: FakeClock
) -> None:
    """Alice resolved the last PagerDuty incident by hand. The alerts fire again: the
    reopen triggers a new PagerDuty incident, but PagerDuty answers 503 for a few minutes,
    so the trigger is still retrying when the alerts resolve again and resolve_after ends.
    The trigger lands; the resolve must follow it, or that PagerDuty incident pages on."""
    rx, pd = rx_defaults, world.pagerduty
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)  # the open: triggered
    clock.advance(60)
    body, headers = pd.person("resolved", incident_id, "Alice", PD_SECRET, at=clock.now)
    r = await rx.client.post("/inbound/pagerduty", content=body, headers=headers)
    assert r.status_code == 200, r.text
    await rx.post([resolved(PAYMENT)])
    await rx.tick(300)  # resolved here; PagerDuty is not told (Alice did it there)
    assert pd.actions(incident_id) == ["trigger"]

    pd.server.inject(Fault("/v2/enqueue", status=503, times=8))
    again = {**PAYMENT, "startsAt": "2026-04-18T08:40:00Z"}
    await rx.post([again])
    await rx.tick(30)  # the reopen: PagerDuty refuses its trigger, retried
    await rx.post([resolved(again)])
    for _ in range(90):  # 15 minutes: resolve_after ends, PagerDuty comes back
        await rx.tick(10)

    assert (await rx.incident(incident_id))["status"] == "resolved"
    assert pd.actions(incident_id)[:2] == ["trigger", "trigger"]  # the reopen landed
    # The second PagerDuty incident is over too: nobody is paged for a resolved incident.
    assert [i.status for i in pd.incidents(incident_id)] == ["resolved", "resolved"]


async def test_a_few_seconds_of_slack_rate_limiting_does_not_bury_the_open(
    rx_defaults: Harness, world: Fakes
) -> None:
    """An alert storm: Slack rate-limits chat.postMessage (one message a second per
    channel) and answers 429 with Retry-After: 1, again and again. Each attempt waits at
    least its backoff (2s doubling to 5m, 10 attempts, about 13 minutes in all): a
    Retry-After of 1s must not spend the ten in ten seconds."""
    rx = rx_defaults
    world.slack_server.inject(
        Fault(
            "/api/chat.postMessage",
            status=429,
            retry_after="1",
            body={"ok": False, "error": "ratelimited"},
            times=12,
        )
    )
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)  # group_wait: the open
    for _ in range(60):  # a minute, the scheduler ticking every second
        await rx.tick(1)

    dead = [d for d in await rx.receiver.outbox.dead_letters(10) if d.job.sink == "slack"]
    assert dead == [], dead[0].error
    (waiting,) = [
        w for w in await rx.receiver.outbox.waiting("retrying", 10) if w.job.sink == "slack"
    ]
    # Attempts at 0 s and about 2, 6, 14 and 30 s after (the backoff, up to 2 s of jitter
    # each): five in the minute; the sixth waits past it.
    assert waiting.attempts == 5
    assert waiting.job.incident == incident_id


@pytest.fixture
async def rx_routed(tmp_path: Path, clock: FakeClock, world: Fakes) -> AsyncIterator[Harness]:
    """PagerDuty pages for P1 and P2 only, as the README's routing example."""
    routing = "routing: {pagerduty: [P1, P2], slack: [P1, P2, P3, P4, P5], jira: [P1, P2, P3]}"
    text = world.config()
    config = write_config(tmp_path, text.replace(text.splitlines()[0], routing))
    async with harness(config, clock, configured_sinks=True) as h:
        yield h


async def test_a_low_priority_reopen_does_not_page_pagerduty_again(
    rx_routed: Harness, world: Fakes
) -> None:
    """routing sends P1 and P2 to PagerDuty only. A P2 outage pages, then resolves. Twenty
    minutes later one info alert of the same journey fires (P5): the incident reopens, which
    is right, but a trigger to PagerDuty opens a new PagerDuty incident: someone is paged
    for a P5 that routing says must not page. Nor may a later P5 update page. Once the
    priority climbs back into PagerDuty's routing, it pages as any update would."""
    rx, pd = rx_routed, world.pagerduty
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)  # the open: P2, PagerDuty pages
    await rx.tick()
    assert (await rx.incident(incident_id))["priority"] == "P2"
    await rx.post([resolved(PAYMENT)])
    await rx.tick(300)
    await rx.tick()
    assert [i.status for i in pd.incidents(incident_id)] == ["resolved"]

    low = make_alert("cart-web", alertname="SlowCart", severity="info",
                     starts_at="2026-04-18T08:40:00Z")  # fmt: skip
    await rx.post([low])
    await rx.tick(30)
    await rx.tick()
    detail = await rx.incident(incident_id)
    assert (detail["status"], detail["priority"], detail["reopened_count"]) == ("open", "P5", 1)
    # Slack's message and Jira's issue hear of it (the same message, the same issue) ...
    assert world.slack.calls("chat.update")
    # ... but PagerDuty opens no new incident for a P5.
    assert pd.actions(incident_id) == ["trigger", "resolve"]
    assert [i.status for i in pd.incidents(incident_id)] == ["resolved"]

    # A material change that keeps it at P5 (a new service) does not page either.
    other = make_alert("cart-api", alertname="SlowCartApi", severity="info",
                       starts_at="2026-04-18T08:41:00Z")  # fmt: skip
    await rx.post([other])
    await rx.tick(120)
    await rx.tick()
    assert (await rx.incident(incident_id))["priority"] == "P5"
    assert pd.actions(incident_id) == ["trigger", "resolve"]

    # Back to P2: routed to PagerDuty, it pages, and its resolve ends that page.
    again = {**PAYMENT, "startsAt": "2026-04-18T08:44:00Z", "fingerprint": "00000000000000aa"}
    await rx.post([again])
    await rx.tick(1)
    await rx.tick()
    assert (await rx.incident(incident_id))["priority"] == "P2"
    assert pd.actions(incident_id) == ["trigger", "resolve", "trigger"]
    await rx.post([resolved(a) for a in (low, other, again)])
    await rx.tick(300)
    await rx.tick()
    assert (await rx.incident(incident_id))["status"] == "resolved"
    assert [i.status for i in pd.incidents(incident_id)] == ["resolved", "resolved"]


async def test_a_message_the_bot_may_no_longer_edit_is_posted_again(
    rx: Harness, world: Fakes
) -> None:
    """The team moved the receiver to a new Slack app (a new bot token, reloaded). The open
    incidents' messages were posted by the old app's bot, and Slack answers chat.update
    with ``cant_update_message`` ("Authenticated user does not have permission to update
    this message", chat.update's documented errors). Like a deleted message or an archived
    channel, the message is out of reach: a new one must show the incident, or every
    update and the resolve are dead letters, redriven in vain, and the channel shows a P2
    firing for good."""
    slack = world.slack
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)
    await rx.tick()
    (first,) = slack.messages("C0CHECKOUT")
    world.slack_server.inject(
        Fault("/api/chat.update", status=200,
              body={"ok": False, "error": "cant_update_message"}, times=100)
    )  # fmt: skip
    await rx.post([resolved(PAYMENT)])
    await rx.tick(300)
    await rx.tick()
    dead = [d for d in await rx.receiver.outbox.dead_letters(10) if d.job.sink == "slack"]
    assert dead == [], dead[0].error
    messages = slack.messages("C0CHECKOUT")
    assert len(messages) == 2 and messages[0].ts == first.ts
    sinks = (await rx.incident(incident_id))["sinks"]["slack"]
    assert (sinks["state"], sinks["ts"]) == ("resolved", messages[1].ts)


# An open that landed unheard, then a reload that moves where the journey is told.

NEW_KEY = "N3WR0UT1NGKEY0123456789abcdefABC"


def _journeys(tmp_path: Path) -> Path:
    path = tmp_path / "journeys.yaml"
    path.write_text(EXAMPLE_JOURNEYS.read_text())
    return path


async def _reload(rx: Harness) -> None:
    r = await rx.client.post("/-/reload")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("refused_once", [False, True])
async def test_an_open_pagerduty_took_unheard_is_not_triggered_again_under_a_reloaded_key(
    tmp_path: Path, clock: FakeClock, world: Fakes, refused_once: bool
) -> None:
    """The open's trigger lands in PagerDuty but the connection drops before the answer
    (or the replica is stopped mid-send: SIGTERM with a drain shorter than the sink's
    timeout). Before the retry, journeys.yaml gives the journey its own routing key (a
    reload, or the next replica of a rolling change). The retries (one refused with a 429
    on the way, too) must reach the alert the first attempt made: a trigger under the new
    key is a second page, and the first PagerDuty incident is never resolved."""
    pd = world.pagerduty
    journeys = _journeys(tmp_path)
    config = write_config(tmp_path, world.config(), journeys=journeys)
    async with harness(config, clock, configured_sinks=True) as rx:
        pd.server.inject(Fault("/v2/enqueue", drop=True, applied=True))
        (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
        await rx.tick(30)  # group_wait: the open; PagerDuty takes it, no answer comes
        assert len(pd.incidents(incident_id)) == 1

        journeys.write_text(journeys.read_text().replace('"${PD_KEY_PAYMENTS:-}"', f'"{NEW_KEY}"'))
        await _reload(rx)
        if refused_once:
            pd.server.inject(Fault("/v2/enqueue", status=429, retry_after="1"))
        for _ in range(4):
            await rx.tick(70)  # the open's retries

        await rx.post([resolved(PAYMENT)])
        for _ in range(8):
            await rx.tick(60)  # resolve_after, then the resolve's delivery
        assert (await rx.incident(incident_id))["status"] == "resolved"
        # One outage, one page, and it is over.
        assert [(i.routing_key == NEW_KEY, i.status) for i in pd.incidents(incident_id)] == [
            (False, "resolved")
        ]


async def test_a_slack_open_posted_unheard_is_not_posted_again_in_a_reloaded_channel(
    tmp_path: Path, clock: FakeClock, world: Fakes
) -> None:
    """The open's message lands in #inc-checkout but the answer is lost; before the retry
    the team lead moves the journey to #incidents. The retry must find the message where
    it was posted, not post the incident a second time elsewhere."""
    slack = world.slack
    journeys = _journeys(tmp_path)
    config = write_config(tmp_path, world.config(), journeys=journeys)
    async with harness(config, clock, configured_sinks=True) as rx:
        world.slack_server.inject(Fault("/api/chat.postMessage", drop=True, applied=True))
        (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
        await rx.tick(30)
        assert len(slack.messages("#inc-checkout")) == 1

        journeys.write_text(
            journeys.read_text().replace(
                'slack_channel: "#inc-checkout"', 'slack_channel: "#incidents"'
            )
        )
        await _reload(rx)
        await rx.tick(70)  # the open's retry
        detail = await rx.incident(incident_id)
        assert detail["sinks"]["slack"]["state"] == "open", detail["sinks"]
        assert (len(slack.messages("#inc-checkout")), len(slack.messages("#incidents"))) == (1, 0)
