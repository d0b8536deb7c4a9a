"""Jira tells us a person closed the incident's issue: the real Jira sink against the fake
Jira, whose admin webhook comes back signed with its secret."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from receiver.errors import PayloadError
from receiver.inbound import jira
from receiver.store.base import Annotation
from receiver.store.records import IncidentState
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.fake_jira import BOT_ACCOUNT_ID
from tests.support.harness import Harness, harness, write_config
from tests.support.sink_world import JIRA_TOKEN, Fakes
from tests.support.vendor_signing import sign_jira

pytestmark = pytest.mark.anyio

SECRET = "jira-webhook-secret"
PAYMENT = make_alert("payment-service")
CART = make_alert("cart-api", alertname="CartErrors", severity="warning")


@pytest.fixture
async def rx(tmp_path: Path, clock: FakeClock, world: Fakes) -> AsyncIterator[Harness]:
    config = write_config(tmp_path, world.config() + f"inbound: {{jira: {{secret: {SECRET}}}}}\n")
    async with harness(config, clock, configured_sinks=True) as h:
        yield h


async def opened_issue(rx: Harness, world: Fakes) -> tuple[str, str]:
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)  # open: the Jira issue is created
    (issue,) = world.jira.with_label(f"journey-receiver-{incident_id}")
    return incident_id, issue.key


async def test_a_person_closing_the_issue_is_recorded_once(rx: Harness, world: Fakes) -> None:
    incident_id, key = await opened_issue(rx, world)
    world.jira.close(key, "Fixed")
    body, headers = world.jira.webhook(key, "Carol Lead", SECRET, before="Open")
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    again = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert again.json() == {"status": "already recorded", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert (detail["response"]["resolved_by"], detail["response"]["source"]) == (
        "Carol Lead",
        "jira",
    )
    assert detail["mttr_s"] is not None
    jira_entries = [e["text"] for e in detail["timeline"] if e["kind"] == "jira"]
    assert jira_entries == [f"{key} moved to Closed (done) in Jira by Carol Lead"]


def close_then_reopen(
    world: Fakes, clock: FakeClock, key: str
) -> tuple[tuple[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]:
    """Carol moves ``key`` to Closed, and a minute later to Open again: the two webhooks."""
    clock.advance(60)
    world.jira.close(key, "Fixed")
    closed = world.jira.webhook(key, "Carol Lead", SECRET, before="Open", at=clock.now)
    clock.advance(60)
    world.jira.issue(key).status = "Open"
    reopened = world.jira.webhook(key, "Carol Lead", SECRET, before="Closed", at=clock.now)
    return closed, reopened


async def test_an_issue_moved_out_of_done_takes_the_persons_resolve_back(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    incident_id, key = await opened_issue(rx, world)
    # Carol closed the wrong issue and opens it again; the alert still fires.
    closed, reopened = close_then_reopen(world, clock, key)
    assert (await rx.client.post("/inbound/jira", content=closed[0], headers=closed[1])).is_success
    assert (await rx.incident(incident_id))["mttr_s"] is not None
    r = await rx.client.post("/inbound/jira", content=reopened[0], headers=reopened[1])
    assert r.json()["status"] == "recorded"
    detail = await rx.incident(incident_id)
    assert (detail["status"], detail["mttr_s"]) == ("open", None)
    assert (detail["response"] or {}).get("resolved_at") is None
    assert detail["timeline"][-1]["text"] == (
        f"{key} moved to Open in Jira by Carol Lead: the resolve is taken back"
    )


async def test_a_done_delivered_after_the_reopen_that_followed_it_changes_nothing(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    incident_id, key = await opened_issue(rx, world)
    # Carol closes the issue by mistake and opens it again a minute later; the alert still
    # fires. Jira delivers the close late (a retry), after the reopen landed.
    closed, reopened = close_then_reopen(world, clock, key)
    r = await rx.client.post("/inbound/jira", content=reopened[0], headers=reopened[1])
    assert r.json() == {"status": "recorded", "incident": incident_id}
    r = await rx.client.post("/inbound/jira", content=closed[0], headers=closed[1])
    assert r.json() == {"status": "ignored", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert (detail["status"], detail["response"], detail["mttr_s"]) == ("open", None, None)
    texts = [e["text"] for e in detail["timeline"] if e["kind"] == "jira"]
    assert texts == [f"{key} moved to Open in Jira by Carol Lead"]


def moved(category: str, status: str, at_ms: int) -> jira.Event:
    """Carol Lead moving PAY-1 to ``status`` (of ``category``) at ``at_ms``."""
    issue = {"key": "PAY-1", "fields": {"status": {"statusCategory": {"key": category}}}}
    body = {
        "webhookEvent": "jira:issue_updated",
        "timestamp": at_ms,
        "user": {"displayName": "Carol Lead"},
        "issue": issue,
        "changelog": {"id": "7", "items": [{"field": "status", "toString": status}]},
    }
    return jira.parse(json.dumps(body).encode())


def test_a_move_out_of_done_from_before_the_resolve_takes_nothing_back() -> None:
    started = 1_776_500_000_000
    state = IncidentState(
        id="inc-1", key="k", digest="d", journey="checkout", group_labels={},
        status="open", created_at=started, updated_at=started, first_firing_at=started,
        sinks={"jira": {"key": "PAY-1"}},
        response={"resolved_at": started + 60_000, "resolved_by": "Carol Lead",
                  "resolved_via": "jira"},
    )  # fmt: skip

    late = jira.annotation(
        moved("new", "Open", started + 30_000), state, started + 90_000, "d1", ()
    )
    assert late is not None and "response" not in late.merge
    after = jira.annotation(
        moved("new", "Open", started + 70_000), state, started + 90_000, "d2", ()
    )
    assert after is not None
    assert after.merge["response"] == {
        "resolved_at": None,
        "resolved_by": None,
        "resolved_via": None,
    }
    # A resolve a person made in PagerDuty is not Jira's to take back, whether it says so
    # or was recorded before that was kept (its first word came from PagerDuty).
    assert state.response is not None
    for made in ({"resolved_via": "pagerduty"}, {"resolved_via": None, "source": "pagerduty"}):
        state.response = state.response.model_copy(update=made)
        for category, status in (("new", "Open"), ("indeterminate", "In Progress")):
            elsewhere = jira.annotation(
                moved(category, status, started + 70_000), state, started + 90_000, "d3", ()
            )
            assert elsewhere is not None and "response" not in elsewhere.merge


def test_taking_the_issue_up_after_an_acknowledgement_lapsed_acknowledges_it_again() -> None:
    # Alice acknowledged in PagerDuty at +60 s; it timed out there at +31 min.
    started = 1_776_500_000_000
    state = IncidentState(
        id="inc-1", key="k", digest="d", journey="checkout", group_labels={},
        status="open", created_at=started, updated_at=started, first_firing_at=started,
        sinks={"jira": {"key": "PAY-1"}},
        response={"acknowledged_at": started + 60_000, "acknowledged_by": "Alice",
                  "source": "pagerduty", "lapsed_at": started + 1_860_000},
    )  # fmt: skip
    now = started + 2_000_000
    # Carol moved PAY-1 to In Progress before the lapse (delivered late): nothing now.
    before = jira.annotation(
        moved("indeterminate", "In Progress", started + 600_000), state, now, "d1", ()
    )
    assert before is not None and "response" not in before.merge
    after = jira.annotation(
        moved("indeterminate", "In Progress", started + 1_900_000), state, now, "d2", ()
    )
    assert after is not None
    assert after.merge["response"] == {
        "lapsed_at": None,
        "reacknowledged_at": started + 1_900_000,
        "reacknowledged_by": "Carol Lead",
    }


def test_a_move_older_than_the_last_applied_undoes_nothing() -> None:
    # Carol closed PAY-1 at +60 s, opened it at +70 s and closed it again at +80 s; the
    # closes landed, and the reopen is delivered last (a retry).
    started = 1_776_500_000_000
    state = IncidentState(
        id="inc-1", key="k", digest="d", journey="checkout", group_labels={},
        status="open", created_at=started, updated_at=started, first_firing_at=started,
        sinks={"jira": {"key": "PAY-1", "person_changed_at": str(started + 80_000)}},
        response={"resolved_at": started + 60_000, "resolved_by": "Carol Lead",
                  "resolved_via": "jira"},
    )  # fmt: skip
    now = started + 90_000
    assert jira.annotation(moved("new", "Open", started + 70_000), state, now, "d1", ()) is None
    assert jira.annotation(moved("done", "Done", started + 70_000), state, now, "d2", ()) is None
    # Taken up then, it still is the acknowledgement it was, and takes nothing back.
    taken = jira.annotation(
        moved("indeterminate", "In Progress", started + 70_000), state, now, "d3", ()
    )
    assert taken is not None and taken.merge == {}
    assert taken.fill["response"]["acknowledged_at"] == started + 70_000
    # A newer move applies, and is the one later moves are judged by.
    newer = jira.annotation(moved("new", "Open", started + 85_000), state, now, "d4", ())
    assert newer is not None
    assert newer.merge["sinks.jira"] == {"person_changed_at": str(started + 85_000)}
    assert newer.merge["response"]["resolved_at"] is None


async def test_the_secret_may_come_in_the_url_as_older_jira_sends_it(
    rx: Harness, world: Fakes
) -> None:
    incident_id, key = await opened_issue(rx, world)
    world.jira.close(key, "Fixed")
    body, headers = world.jira.webhook(key, "Dan", "not-the-secret", before="Open")
    unsigned = {k: v for k, v in headers.items() if k != "x-hub-signature"}
    r = await rx.client.post(f"/inbound/jira?secret={SECRET}", content=body, headers=unsigned)
    assert r.json() == {"status": "recorded", "incident": incident_id}


PLUS_SECRET = "q3V+7kx/Zr0Tn1Uw4bPq9A=="  # what `openssl rand -base64 16` gives


async def test_a_url_secret_with_a_plus_sign_verifies_as_written(
    tmp_path: Path, clock: FakeClock, world: Fakes
) -> None:
    # Jira sends the URL as the admin typed it; read form-decoded, its '+' is a space.
    inbound = f"inbound: {{jira: {{secret: '{PLUS_SECRET}'}}}}\n"
    async with harness(
        write_config(tmp_path, world.config() + inbound), clock, configured_sinks=True
    ) as rx:
        incident_id, key = await opened_issue(rx, world)
        world.jira.close(key, "Fixed")
        body, headers = world.jira.webhook(key, "Dan", "not-the-secret", before="Open")
        unsigned = {k: v for k, v in headers.items() if k != "x-hub-signature"}
        for url in (
            f"/inbound/jira?secret={PLUS_SECRET}",
            f"/inbound/jira?secret={quote(PLUS_SECRET)}",
        ):
            r = await rx.client.post(url, content=body, headers=unsigned)
            assert r.status_code == 200, r.json()
        r = await rx.client.post(
            "/inbound/jira", content=body, headers=unsigned | {"x-webhook-secret": PLUS_SECRET}
        )
        assert r.json() == {"status": "already recorded", "incident": incident_id}
        near = PLUS_SECRET.replace("+", " ")
        for url in (f"/inbound/jira?secret={quote(near)}", "/inbound/jira?secret=q3V"):
            assert (await rx.client.post(url, content=body, headers=unsigned)).status_code == 401
        assert (await rx.incident(incident_id))["response"]["resolved_by"] == "Dan"


async def test_refusals_change_nothing(rx: Harness, world: Fakes) -> None:
    incident_id, key = await opened_issue(rx, world)
    before = await rx.incident(incident_id)
    body, headers = world.jira.webhook(key, "Mallory", "wrong-secret", before="Open")
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.status_code == 401
    wrong = await rx.client.post("/inbound/jira?secret=guess", content=body, headers={})
    assert wrong.status_code == 401
    # Every way a Jira sender may prove itself is named, the header senders that cannot
    # sign use too.
    assert "X-Webhook-Secret" in wrong.json()["error"]
    # Signed right, but the issue carries the label of an incident we do not have.
    event = json.loads(body)
    event["issue"]["fields"]["labels"] = ["journey-receiver-checkout-ffff-1"]
    raw = json.dumps(event).encode()
    r = await rx.client.post(
        "/inbound/jira", content=raw, headers={"x-hub-signature": sign_jira(raw, SECRET)}
    )
    assert r.status_code == 404
    # A copied label on another issue does not speak for the incident.
    event = json.loads(body)
    event["issue"]["key"] = "OTHER-9"
    raw = json.dumps(event).encode()
    r = await rx.client.post(
        "/inbound/jira", content=raw, headers={"x-hub-signature": sign_jira(raw, SECRET)}
    )
    assert r.json() == {"status": "ignored", "incident": incident_id}
    after = await rx.incident(incident_id)
    assert after["response"] is None
    assert after["timeline"] == before["timeline"]


async def test_the_sinks_own_resolve_is_not_a_persons(rx: Harness, world: Fakes) -> None:
    incident_id, key = await opened_issue(rx, world)
    await rx.post([resolved(PAYMENT)])
    await rx.tick(900)  # resolved here (its endsAt and resolve_after): the Jira sink
    await rx.tick(1)  # moves the issue to Resolved
    assert world.jira.issue(key).status == "Resolved"
    body, headers = world.jira.webhook(key, "journey-receiver bot", SECRET, before="Open")
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "ignored", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert detail["response"] is None


def in_progress(webhook: tuple[bytes, dict[str, str]]) -> tuple[bytes, dict[str, str]]:
    """A fake-Jira webhook, its issue moved to "In Progress" (category indeterminate)
    instead, signed again."""
    body = json.loads(webhook[0])
    body["issue"]["fields"]["status"] = {
        "name": "In Progress",
        "statusCategory": {"key": "indeterminate"},
    }
    body["changelog"]["items"][0]["toString"] = "In Progress"
    raw = json.dumps(body).encode()
    return raw, {**webhook[1], "x-hub-signature": sign_jira(raw, SECRET)}


async def test_an_issue_taken_up_after_the_incident_resolved_is_no_acknowledgement(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    # Nobody acknowledged; the alerts resolved and so did the incident (the sink moved the
    # issue to done). Next morning Dan reopens it into In Progress for the follow-up work.
    incident_id, key = await opened_issue(rx, world)
    await rx.post([resolved(PAYMENT)])
    await rx.tick(900)
    await rx.tick(1)
    detail = await rx.incident(incident_id)
    assert (detail["status"], world.jira.issue(key).status) == ("resolved", "Resolved")
    clock.advance(12 * 3600)
    world.jira.issue(key).status = "Open"
    moved = in_progress(world.jira.webhook(key, "Dan Dev", SECRET, before="Open", at=clock.now))
    r = await rx.client.post("/inbound/jira", content=moved[0], headers=moved[1])
    assert r.json() == {"status": "recorded", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert (detail["response"], detail["mtta_s"]) == (None, None)
    assert detail["timeline"][-1]["text"] == (
        f"{key} moved to In Progress in Jira by Dan Dev after the incident resolved"
    )


async def test_an_issue_reopened_after_the_incident_resolved_takes_no_resolve_back(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    # Carol resolved the issue while the alert fired; it resolved, and so did the incident.
    # Next morning she reopens the issue for the follow-up: its time to resolve is settled.
    incident_id, key = await opened_issue(rx, world)
    closed, _ = close_then_reopen(world, clock, key)
    assert (await rx.client.post("/inbound/jira", content=closed[0], headers=closed[1])).is_success
    await rx.post([resolved(PAYMENT)])
    await rx.tick(900)
    told = await rx.incident(incident_id)
    assert (told["status"], told["response"]["resolved_by"]) == ("resolved", "Carol Lead")
    clock.advance(12 * 3600)
    world.jira.issue(key).status = "Open"
    later = world.jira.webhook(key, "Carol Lead", SECRET, before="Resolved", at=clock.now)
    r = await rx.client.post("/inbound/jira", content=later[0], headers=later[1])
    assert r.json() == {"status": "recorded", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert (detail["response"], detail["mttr_s"]) == (told["response"], told["mttr_s"])
    assert detail["timeline"][-1]["text"] == f"{key} moved to Open in Jira by Carol Lead"


async def reopened_by_the_sink(rx: Harness, world: Fakes) -> tuple[str, str]:
    """An incident opened, resolved and firing again: its issue reopened by the sink."""
    incident_id, key = await opened_issue(rx, world)
    await rx.post([resolved(PAYMENT)])
    await rx.tick(900)
    await rx.tick(1)  # the sink moves the issue to Resolved
    await rx.post([{**PAYMENT, "startsAt": "2026-04-18T08:30:00Z"}])  # fires again
    await rx.tick(30)
    await rx.tick(1)  # the sink reopens the issue
    assert world.jira.issue(key).status == "Open"
    return incident_id, key


async def test_the_sinks_own_reopen_is_known_by_its_account_without_a_username(
    rx: Harness, world: Fakes
) -> None:
    # The sink logs in with a bearer token: no username; Jira's myself names its account.
    incident_id, key = await reopened_by_the_sink(rx, world)
    calls = len(world.jira.server.seen)
    body, headers = world.jira.webhook(
        key, "journey-bot", SECRET, before="Resolved", account="journey-bot"
    )
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "ignored", "incident": incident_id}
    # Known from the sink's deliveries: the webhook itself asked Jira nothing.
    assert len(world.jira.server.seen) == calls
    # A person moving it is still heard.
    body, headers = world.jira.webhook(
        key, "Carol Lead", SECRET, before="Resolved", account="carol", at=rx.clock.now
    )
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    texts = [e["text"] for e in (await rx.incident(incident_id))["timeline"] if e["kind"] == "jira"]
    assert texts == [f"{key} moved to Open in Jira by Carol Lead"]


async def test_a_replica_that_has_delivered_nothing_yet_knows_the_sinks_own_account(
    rx: Harness, world: Fakes
) -> None:
    incident_id, key = await reopened_by_the_sink(rx, world)
    outbox = rx.receiver.outbox
    sink = outbox.sinks["jira"]
    # Another replica made that reopen; this one just started and has delivered nothing.
    sink._own = None  # type: ignore[attr-defined]
    await rx.tick()
    assert outbox.learning is not None
    await outbox.learning
    body, headers = world.jira.webhook(
        key, "journey-bot", SECRET, before="Resolved", account="journey-bot"
    )
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "ignored", "incident": incident_id}


async def test_on_cloud_the_sinks_own_reopen_is_known_by_its_account_id(
    tmp_path: Path, clock: FakeClock, world: Fakes
) -> None:
    jira_line = f"token: {JIRA_TOKEN}, timeout: 5s}}"
    config = world.config().replace(jira_line, jira_line[:-1] + ", flavor: cloud}")
    assert config.count("flavor: cloud") == 1
    path = write_config(tmp_path, config + f"inbound: {{jira: {{secret: {SECRET}}}}}\n")
    async with harness(path, clock, configured_sinks=True) as rx:
        incident_id, key = await reopened_by_the_sink(rx, world)
        mine = world.jira.webhook(key, "journey-bot", SECRET, "Resolved", account_id=BOT_ACCOUNT_ID)
        r = await rx.client.post("/inbound/jira", content=mine[0], headers=mine[1])
        assert r.json() == {"status": "ignored", "incident": incident_id}
        theirs = world.jira.webhook(key, "Carol Lead", SECRET, "Resolved", at=rx.clock.now)
        r = await rx.client.post("/inbound/jira", content=theirs[0], headers=theirs[1])
        assert r.json() == {"status": "recorded", "incident": incident_id}


async def test_a_jira_that_does_not_say_who_the_sink_is_is_asked_again_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jira import JIRAError

    from receiver.config import JiraSinkConfig
    from receiver.sinks import jira as jira_sink

    sink = jira_sink.JiraSink(
        JiraSinkConfig(url="http://127.0.0.1:9", token="t", username="bot@example.com"), None
    )
    answers: list[object] = [JIRAError("HTTP 401"), [], {}, {"accountId": "5b10", "name": ""}]
    asked: list[object] = []

    def myself() -> object:
        answer = answers[len(asked)]
        asked.append(answer)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(sink._client, "myself", myself)
    now = [1000.0]
    monkeypatch.setattr(jira_sink.time, "monotonic", lambda: now[0])
    configured = {("name", "bot@example.com"), ("email", "bot@example.com")}
    assert sink.own_names() == configured  # never asks Jira itself
    assert asked == []
    for _ in range(3):  # refused, then answers that name no account: the username alone
        await sink.learn_own_names()
        await sink.learn_own_names()  # not asked again before the wait
        assert sink.own_names() == configured
        now[0] += jira_sink.OWN_RETRY_S
    await sink.learn_own_names()
    assert sink.own_names() == configured | {("accountId", "5b10")}
    now[0] += jira_sink.OWN_RETRY_S
    await sink.learn_own_names()
    assert len(asked) == 4  # kept once Jira named the account


def test_a_transition_by_the_sinks_own_account_is_recognised() -> None:
    event = jira.parse(
        json.dumps(
            {
                "webhookEvent": "jira:issue_updated",
                "user": {"emailAddress": "Bot@Example.com", "displayName": "Bot"},
            }
        ).encode()
    )
    assert event.by({("name", "journey-bot"), ("email", "bot@example.com")})
    assert not event.by({("email", "alice@example.com")})
    assert not event.by({("email", "")})
    assert not event.by(set())
    # Like with like: a user named by the webhook is not matched by e-mail, which Jira
    # Server does not keep unique, nor a key by a name.
    named = jira.parse(
        json.dumps(
            {
                "webhookEvent": "jira:issue_updated",
                "user": {
                    "name": "carol",
                    "key": "JIRAUSER10100",
                    "emailAddress": "ops@example.com",
                },
            }
        ).encode()
    )
    assert not named.by({("email", "ops@example.com"), ("name", "JIRAUSER10100")})
    assert named.by({("key", "jirauser10100")})


def test_a_transition_from_before_the_episode_began_is_not_this_episodes() -> None:
    # Carol closed the issue in the last episode; the delivery failed and came again after
    # the incident reopened (the issue is reused): nobody has answered this episode.
    started = 1_776_500_000_000
    state = IncidentState(
        id="inc-1", key="k", digest="d", journey="checkout", group_labels={},
        status="open", created_at=started - 3_600_000, updated_at=started,
        first_firing_at=started, started_at=started, sinks={"jira": {"key": "PAY-1"}},
    )  # fmt: skip

    assert (
        jira.annotation(moved("done", "Done", started - 900_000), state, started + 60_000, "d1", ())
        is None
    )
    now = jira.annotation(
        moved("done", "Done", started + 30_000), state, started + 60_000, "d2", ()
    )
    assert now is not None and now.fill["response"]["resolved_by"] == "Carol Lead"


@pytest.mark.parametrize("timestamp", [2**63, -1, "1776500400000"])
def test_a_timestamp_the_store_cannot_hold_is_refused(timestamp: object) -> None:
    # The same kind of number as truncatedAlerts, whose 2**63 made the webhook fail with a
    # 500 under tests/test_fuzz_api.py: here it would be the acknowledgement's time.
    body = {"webhookEvent": "jira:issue_updated", "timestamp": timestamp}
    with pytest.raises(PayloadError) as info:
        jira.parse(json.dumps(body).encode())
    assert [e["field"] for e in info.value.errors] == ["timestamp"]


async def test_an_issue_carrying_another_incidents_label_is_its_own_incidents(
    rx: Harness, world: Fakes
) -> None:
    first, _ = await opened_issue(rx, world)
    (second,) = (await rx.post([make_alert("payment-service", region="us")])).json()["incidents"]
    await rx.tick(30)
    (issue,) = world.jira.with_label(f"journey-receiver-{second}")
    # Someone added the first incident's label too, ahead of the issue's own.
    issue.labels.insert(0, f"journey-receiver-{first}")
    world.jira.close(issue.key, "Fixed")
    body, headers = world.jira.webhook(issue.key, "Carol Lead", SECRET, before="Open")
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": second}
    assert (await rx.incident(first))["response"] is None


async def test_an_issue_moved_to_another_project_is_still_the_incidents(
    rx: Harness, world: Fakes
) -> None:
    """Triage moves the issue from PAY to OPS: Jira gives it a new key (same id and
    labels), and a person closes it there. That close is the incident's resolve."""
    incident_id, key = await opened_issue(rx, world)
    new_key = world.jira.move(key, "OPS")
    body, headers = world.jira.webhook(new_key, "Carol Lead", SECRET, before=None)
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    world.jira.close(new_key, "Fixed")
    body, headers = world.jira.webhook(new_key, "Carol Lead", SECRET, before="Open")
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert detail["response"]["resolved_by"] == "Carol Lead"
    assert detail["sinks"]["jira"]["key"] == new_key
    assert [e["text"] for e in detail["timeline"] if e["kind"] == "jira"] == [
        f"{key} moved to {new_key} in Jira by Carol Lead",
        f"{new_key} moved to Closed (done) in Jira by Carol Lead",
    ]


async def test_an_issue_closed_and_moved_after_the_incident_resolved_is_followed(
    rx: Harness, world: Fakes
) -> None:
    """Follow-up triage, after the incident resolved: the issue is closed and moved to OPS
    in one update. The close says nothing (the incident was over), the move is followed,
    so the issue's later updates, under its new key, are still the incident's."""
    incident_id, key = await opened_issue(rx, world)
    await rx.post([resolved(PAYMENT)])
    await rx.tick(300)
    await rx.tick()
    assert (await rx.incident(incident_id))["status"] == "resolved"
    world.jira.close(key, "Fixed")
    new_key = world.jira.move(key, "OPS")
    body, headers = world.jira.webhook(new_key, "Carol Lead", SECRET, before="Open")
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert detail["sinks"]["jira"]["key"] == new_key
    assert detail["response"] is None  # the close after the end is no one's resolve


async def dead_letters(rx: Harness) -> list[dict[str, object]]:
    r = await rx.client.get("/api/v1/deliveries?state=dead")
    assert r.status_code == 200, r.text
    found: list[dict[str, object]] = r.json()["deliveries"]
    return found


async def test_an_issue_a_person_deleted_is_not_filed_again_until_the_incident_fires_anew(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    """Carol deletes the incident's issue (noise, a duplicate) while the alert fires: the
    incident says so, and the receiver neither files it again at the next change nor
    fails trying to comment on it; only a reopen (a new episode) files one."""
    incident_id, key = await opened_issue(rx, world)
    clock.advance(60)
    body, headers = world.jira.delete(key, "Carol Lead", SECRET, at=clock.now)
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert detail["sinks"]["jira"]["state"] == "deleted"
    assert [e["text"] for e in detail["timeline"] if e["kind"] == "jira"] == [
        f"{key} deleted in Jira by Carol Lead: nothing more goes to Jira for this episode; "
        "a reopen files a new issue"
    ]
    assert detail["response"] is None  # a deletion answers nothing

    # A material change (a new service), then the end: nothing filed, nothing failed.
    await rx.post([CART])
    await rx.tick(120)
    await rx.tick(1)
    await rx.post([resolved(PAYMENT), resolved(CART)])
    await rx.tick(900)
    await rx.tick(900)
    assert world.jira.issues() == []
    assert await dead_letters(rx) == []
    detail = await rx.incident(incident_id)
    assert (detail["status"], detail["sinks"]["jira"]["state"]) == ("resolved", "deleted")

    # It fires again: a new episode, and a new issue for it.
    await rx.post([{**PAYMENT, "startsAt": "2026-04-18T08:30:00Z"}])
    await rx.tick(30)
    await rx.tick(1)
    (issue,) = world.jira.with_label(f"journey-receiver-{incident_id}")
    assert issue.key != key
    detail = await rx.incident(incident_id)
    assert (detail["sinks"]["jira"]["key"], detail["sinks"]["jira"]["state"]) == (
        issue.key,
        "open",
    )
    assert detail["sinks"]["jira"]["deleted_by"] == ""


async def test_a_persons_comment_on_the_issue_is_on_the_timeline(rx: Harness, world: Fakes) -> None:
    """Jira Cloud sends ``comment_created`` with the issue's key and id, not its labels:
    the key the Jira sink filed names the incident."""
    incident_id, key = await opened_issue(rx, world)
    said = "Rolled back payments.\n\n<!channel> {color:red}look{color} \x1b[31m" + "x" * 1000
    body, headers = world.jira.comment(key, "Carol Lead", said, SECRET)
    assert b"labels" not in body
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    again = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert again.json() == {"status": "already recorded", "incident": incident_id}
    (entry,) = [
        e["text"] for e in (await rx.incident(incident_id))["timeline"] if e["kind"] == "jira"
    ]
    assert entry.startswith(
        f"comment on {key} in Jira by Carol Lead: Rolled back payments. <!channel> "
        "{color:red}look{color} \\x1b[31mxxx"
    )
    assert entry.endswith("x…") and len(entry) < 600

    # The sink's own comment (a material change: another service fails) is not a person's.
    await rx.post([CART])
    await rx.tick(120)
    assert len(world.jira.issue(key).comments) == 2
    body, headers = world.jira.commented(key, SECRET)
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "ignored", "incident": incident_id}
    texts = [e["text"] for e in (await rx.incident(incident_id))["timeline"] if e["kind"] == "jira"]
    assert texts == [entry]


async def test_a_comment_on_the_issue_moved_to_another_project_is_the_incidents(
    rx: Harness, world: Fakes
) -> None:
    incident_id, key = await opened_issue(rx, world)
    # Moved with no webhook for the move: the sink's next delivery finds it under its new key.
    new_key = world.jira.move(key, "OPS")
    await rx.post([CART])
    await rx.tick(120)
    assert (await rx.incident(incident_id))["sinks"]["jira"]["key"] == new_key
    body, headers = world.jira.comment(new_key, "Carol Lead", "on it", SECRET)
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}

    # Moved again, and the move's webhook comes first: the comment after it is found too.
    newer_key = world.jira.move(new_key, "PAY")
    body, headers = world.jira.webhook(newer_key, "Carol Lead", SECRET, before=None)
    assert (await rx.client.post("/inbound/jira", content=body, headers=headers)).is_success
    body, headers = world.jira.comment(newer_key, "Dan", "still on it", SECRET)
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    texts = [e["text"] for e in (await rx.incident(incident_id))["timeline"] if e["kind"] == "jira"]
    assert texts[-1] == f"comment on {newer_key} in Jira by Dan: still on it"


async def test_a_deletion_read_before_a_new_issue_was_filed_does_not_mark_the_new_one(
    rx: Harness, world: Fakes, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Carol deletes the incident's issue just as the sink files a new one for it (a reopen
    that found the old one gone): the new issue's receipt lands between the deletion's read
    of the incident and its write. The deletion is of the old issue: it must not mark the
    new one deleted, or nothing more would reach Jira for this episode."""
    incident_id, key = await opened_issue(rx, world)
    clock.advance(60)
    body, headers = world.jira.delete(key, "Carol Lead", SECRET, at=clock.now)
    store = rx.receiver.store
    annotate = store.annotate
    filed = Annotation(merge={"sinks.jira": {"key": "OPS-999", "state": "open"}})

    async def sink_acks_first(incident: str, annotation: Annotation, now_ms: int) -> str:
        if annotation.merge.get("sinks.jira", {}).get("state") == "deleted":
            monkeypatch.setattr(store, "annotate", annotate)
            assert await annotate(incident, filed, now_ms) == "ok"
        return await annotate(incident, annotation, now_ms)

    monkeypatch.setattr(store, "annotate", sink_acks_first)
    r = await rx.client.post("/inbound/jira", content=body, headers=headers)
    assert r.json() == {"status": "ignored", "incident": incident_id}
    detail = await rx.incident(incident_id)
    assert detail["sinks"]["jira"]["key"] == "OPS-999"
    assert detail["sinks"]["jira"]["state"] == "open"
    assert "deleted_by" not in detail["sinks"]["jira"]
