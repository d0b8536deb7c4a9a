"""PagerDuty tells us what people did: the real PagerDuty sink against the fake PagerDuty,
whose people acknowledge, resolve and annotate, and whose v3 webhooks come back signed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from receiver.errors import PayloadError
from receiver.inbound import pagerduty
from receiver.inbound.routes import record
from receiver.store.base import Annotation
from receiver.store.records import IncidentState, ResponseRecord
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.harness import Harness, harness, write_config
from tests.support.sink_world import Fakes
from tests.support.vendor_signing import sign_pagerduty

pytestmark = pytest.mark.anyio

SECRET = "pd-webhook-secret-new"
OLD_SECRET = "pd-webhook-secret-old"
PAYMENT = make_alert("payment-service", alertname="PaymentErrors")
CART = make_alert("cart-api", alertname="CartErrors", severity="warning")


@pytest.fixture
async def rx(tmp_path: Path, clock: FakeClock, world: Fakes) -> AsyncIterator[Harness]:
    inbound = f"inbound: {{pagerduty: {{signing_secrets: [{SECRET}, {OLD_SECRET}]}}}}\n"
    config = write_config(tmp_path, world.config() + inbound)
    async with harness(config, clock, configured_sinks=True) as h:
        yield h


async def opened(rx: Harness) -> str:
    (incident_id,) = (await rx.post([PAYMENT])).json()["incidents"]
    await rx.tick(30)  # group_wait: open, delivered
    return incident_id


def detail_time(detail: dict[str, Any], field: str) -> float:
    """A time of the incident (or of its response) in seconds since the epoch."""
    value = detail["response"][field] if field == "resolved_at" else detail[field]
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def webhook(rx: Harness, body: bytes, headers: dict[str, str]) -> tuple[int, object]:
    r = await rx.client.post("/inbound/pagerduty", content=body, headers=headers)
    return r.status_code, r.json()


async def test_a_person_resolving_in_pagerduty_is_not_paged_again_until_a_real_reopen(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    pd = world.pagerduty
    clock.advance(60)
    ack = pd.person("acknowledged", incident_id, "Alice Oncall", SECRET, at=clock.now)
    assert await webhook(rx, *ack) == (200, {"status": "recorded", "incident": incident_id})
    clock.advance(240)
    done = pd.person("resolved", incident_id, "Alice Oncall", SECRET, at=clock.now)
    assert (await webhook(rx, *done))[0] == 200
    # PagerDuty delivers at least once: the same delivery again changes nothing.
    assert (await webhook(rx, *done))[1] == {"status": "already recorded", "incident": incident_id}

    detail = await rx.incident(incident_id)
    assert detail["response"]["acknowledged_by"] == "Alice Oncall"
    assert detail["response"]["resolved_by"] == "Alice Oncall"
    assert detail["response"]["source"] == "pagerduty"
    # Notified at the open (group_wait), acknowledged in PagerDuty 60 s later; resolved
    # there 240 s after that, which MTTR measures from the alerts' startsAt.
    assert detail["mtta_s"] == 60.0
    assert detail["mttr_s"] == pytest.approx(
        detail_time(detail, "resolved_at") - detail_time(detail, "started_at")
    )
    assert detail["sinks"]["pagerduty"]["resolved_by_person"] == "Alice Oncall"
    texts = [e["text"] for e in detail["timeline"] if e["kind"] == "pagerduty"]
    assert texts[0] == "acknowledged in PagerDuty by Alice Oncall"
    assert texts[1].startswith("resolved in PagerDuty by Alice Oncall")
    assert len(texts) == 2

    # The Slack message heard of both, through the outbox.
    await rx.tick()
    (message,) = world.slack.messages("#inc-checkout")
    replies = [r.text for r in world.slack.replies(message.ts)]
    assert replies[0].endswith("acknowledged in PagerDuty by Alice Oncall")
    assert "resolved in PagerDuty by Alice Oncall" in replies[1]
    edits = len(world.slack.edits(message.ts))

    # A material change (a new service) while the alerts still fire: no trigger, which
    # would open a second PagerDuty incident for the outage Alice closed.
    await rx.post([CART])
    await rx.tick(120)
    assert pd.actions(incident_id) == ["trigger"]
    assert len(pd.incidents(incident_id)) == 1
    assert len(world.slack.edits(message.ts)) == edits + 1, "the other sinks hear of it"

    # The alerts resolve, the incident resolves here (PagerDuty is not told again), and
    # the alerts fire anew: a real reopen pages, as a new PagerDuty incident.
    await rx.post([resolved(PAYMENT), resolved(CART)])
    await rx.tick(300)
    assert pd.actions(incident_id) == ["trigger"]
    again = {**PAYMENT, "startsAt": "2026-04-18T08:40:00Z"}
    await rx.post([again])
    await rx.tick(30)
    assert pd.actions(incident_id) == ["trigger", "trigger"]
    assert [i.status for i in pd.incidents(incident_id)] == ["resolved", "triggered"]
    detail = await rx.incident(incident_id)
    # A new episode: nobody has answered it yet, and MTTA/MTTR wait for this one.
    assert (detail["response"], detail["mtta_s"], detail["mttr_s"]) == (None, None, None)
    why = [e["text"] for e in detail["timeline"] if e["kind"] == "pagerduty"][-1]
    assert why.startswith("a new PagerDuty incident: Alice Oncall resolved the last one")
    assert detail["sinks"]["pagerduty"]["resolved_by_person"] == ""
    # Resolving now reaches PagerDuty again.
    await rx.post([resolved(again)])
    await rx.tick(300)
    assert pd.actions(incident_id) == ["trigger", "trigger", "resolve"]


async def test_a_reopen_in_pagerduty_takes_the_resolve_back_and_slack_hears_of_it(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    pd = world.pagerduty
    clock.advance(60)
    assert (await webhook(rx, *pd.person("resolved", incident_id, "Alice", SECRET, at=clock.now)))[
        0
    ] == 200
    clock.advance(60)
    assert (await webhook(rx, *pd.person("reopened", incident_id, "Alice", SECRET, at=clock.now)))[
        0
    ] == 200
    detail = await rx.incident(incident_id)
    assert detail["response"]["resolved_at"] is None and detail["mttr_s"] is None
    assert detail["sinks"]["pagerduty"]["resolved_by_person"] == ""
    await rx.tick()
    (message,) = world.slack.messages("#inc-checkout")
    replies = [r.text for r in world.slack.replies(message.ts)]
    assert replies[-1].endswith("reopened in PagerDuty by Alice")


def people(blocks: list[dict[str, Any]]) -> list[str]:
    """The texts of the Slack message's context line that says what people did."""
    return [
        e["text"]
        for b in blocks
        if b["type"] == "context"
        for e in b["elements"]
        if e["text"].startswith(("Acknowledge", "Resolved by"))
    ]


async def test_an_acknowledgement_that_times_out_in_pagerduty_no_longer_stands(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    pd = world.pagerduty
    clock.advance(60)
    ack = pd.person("acknowledged", incident_id, "Alice Oncall", SECRET, at=clock.now)
    assert (await webhook(rx, *ack))[0] == 200
    await rx.tick()
    (message,) = world.slack.messages("#inc-checkout")
    assert people(message.blocks) == ["Acknowledged by Alice Oncall"]

    # Alice's acknowledgement times out (the service's acknowledgement timeout): PagerDuty
    # triggers the incident again and pages. Nobody is on it any more.
    clock.advance(1800)
    lapsed = pd.acknowledgement_timed_out(incident_id, SECRET, at=clock.now)
    assert await webhook(rx, *lapsed) == (200, {"status": "recorded", "incident": incident_id})
    assert [i.status for i in pd.incidents(incident_id)] == ["triggered"]
    detail = await rx.incident(incident_id)
    response = detail["response"]
    # The first acknowledgement still measures the time to acknowledge.
    assert (response["acknowledged_by"], detail["mtta_s"]) == ("Alice Oncall", 60.0)
    assert response["lapsed_at"] is not None and response["lapsed_at"].endswith("Z")
    texts = [e["text"] for e in detail["timeline"] if e["kind"] == "pagerduty"]
    assert texts[-1] == "acknowledgement by Alice Oncall timed out in PagerDuty: it pages again"
    await rx.tick()
    (message,) = world.slack.messages("#inc-checkout")
    assert people(message.blocks) == ["Acknowledgement by Alice Oncall lapsed"]
    replies = [r.text for r in world.slack.replies(message.ts)]
    assert replies[-1].endswith(
        "acknowledgement by Alice Oncall timed out in PagerDuty: it pages again"
    )
    page = (await rx.client.get(f"/incidents/{incident_id}")).text
    assert f"<dt>Acknowledgement lapsed</dt><dd>{response['lapsed_at']}" in page

    # Bob takes it up in PagerDuty: his acknowledgement stands now.
    clock.advance(120)
    again = pd.person("acknowledged", incident_id, "Bob", SECRET, at=clock.now)
    assert (await webhook(rx, *again))[0] == 200
    detail = await rx.incident(incident_id)
    response = detail["response"]
    assert response["lapsed_at"] is None
    assert (response["acknowledged_by"], response["reacknowledged_by"]) == ("Alice Oncall", "Bob")
    assert detail["mtta_s"] == 60.0
    await rx.tick()
    (message,) = world.slack.messages("#inc-checkout")
    assert people(message.blocks) == ["Acknowledged by Bob"]
    page = (await rx.client.get(f"/incidents/{incident_id}")).text
    assert "Acknowledgement lapsed" not in page
    again = response["reacknowledged_at"]
    assert f"<dt>Acknowledged again</dt><dd>{again} by <bdi>Bob</bdi></dd>" in page
    # The same timeout delivered again changes nothing.
    assert (await webhook(rx, *lapsed))[1] == {
        "status": "already recorded",
        "incident": incident_id,
    }
    assert (await rx.incident(incident_id))["response"]["lapsed_at"] is None


async def test_refusals_change_nothing(rx: Harness, world: Fakes) -> None:
    incident_id = await opened(rx)
    before = await rx.incident(incident_id)
    body, headers = world.pagerduty.person("acknowledged", incident_id, "Mallory", "wrong-secret")
    assert await webhook(rx, body, headers) == (
        401,
        {"error": "X-PagerDuty-Signature does not match a signing secret"},
    )
    no_header = {k: v for k, v in headers.items() if k != "x-pagerduty-signature"}
    assert (await webhook(rx, body, no_header))[0] == 401
    # Signed right, for an incident this receiver never had.
    other = json.loads(world.pagerduty.person("acknowledged", incident_id, "Bob", SECRET)[0])
    other["event"]["data"]["incident_key"] = "checkout-0000000000000000-1"
    raw = json.dumps(other).encode()
    signed = {
        "content-type": "application/json",
        "x-pagerduty-signature": sign_pagerduty(raw, SECRET),
    }
    status, answer = await webhook(rx, raw, signed)
    # A 2xx all the same: a shared service's other incidents are not errors to PagerDuty.
    assert (status, answer) == (200, {"status": "ignored"})
    # Signed right, but not JSON PagerDuty sends.
    junk = b'{"event": {"id": 5}}'
    status, answer = await webhook(
        rx, junk, {"x-pagerduty-signature": sign_pagerduty(junk, SECRET)}
    )
    assert status == 422
    assert {e["field"] for e in answer["errors"]} >= {"event.id", "event.event_type"}  # type: ignore[index]
    after = await rx.incident(incident_id)
    assert after["response"] is None
    assert after["timeline"] == before["timeline"]


async def test_a_rotated_secret_still_verifies_and_notes_find_their_incident(
    rx: Harness, world: Fakes
) -> None:
    incident_id = await opened(rx)
    # Signed with the old secret only (PagerDuty's side not rotated yet).
    ack = world.pagerduty.person("acknowledged", incident_id, "Bob", OLD_SECRET)
    assert (await webhook(rx, *ack))[0] == 200
    # A note names only PagerDuty's own incident id; the acknowledgement taught us it.
    note = world.pagerduty.person(
        "annotated", incident_id, "Bob", SECRET, content="<b>rolled back</b> payment"
    )
    assert (await webhook(rx, *note))[0] == 200
    detail = await rx.incident(incident_id)
    texts = [e["text"] for e in detail["timeline"] if e["kind"] == "pagerduty"]
    assert texts == [
        "acknowledged in PagerDuty by Bob",
        "note in PagerDuty by Bob: <b>rolled back</b> payment",
    ]


async def test_without_signing_secrets_the_endpoint_is_not_there(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path), clock) as h:
        r = await h.client.post("/inbound/pagerduty", content=b"{}")
        assert r.status_code == 404
        assert "inbound.pagerduty.signing_secrets" in r.json()["error"]


async def test_pagerdutys_test_ping_is_answered_and_changes_nothing(rx: Harness) -> None:
    ping = json.dumps(
        {
            "event": {
                "id": "01PING",
                "event_type": "pagey.ping",
                "resource_type": "pagey",
                "occurred_at": "2026-04-18T08:20:00Z",
                "agent": None,
                "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
            }
        }
    ).encode()
    headers = {"x-pagerduty-signature": sign_pagerduty(ping, SECRET)}
    assert await webhook(rx, ping, headers) == (200, {"status": "ignored"})


def test_a_number_is_not_when_it_happened() -> None:
    # Found by tests/test_fuzz_api.py: occurred_at 0 was read as 1970; PagerDuty writes
    # RFC 3339 text.
    body = {"event": {"id": "E1", "event_type": "incident.acknowledged", "occurred_at": 0}}
    body["event"]["data"] = {"id": "P1", "type": "incident"}
    with pytest.raises(PayloadError) as info:
        pagerduty.parse(json.dumps(body).encode())
    assert info.value.errors == [
        {
            "field": "event.occurred_at",
            "reason": "Input should be an RFC 3339 timestamp string, not a number",
        }
    ]


async def test_a_note_before_any_acknowledgement_finds_its_incident_through_the_trigger(
    rx: Harness, world: Fakes
) -> None:
    incident_id = await opened(rx)
    # The trigger names PagerDuty's incident with our key: the link, nothing on the
    # timeline.
    trigger = world.pagerduty.person("triggered", incident_id, "Bob", SECRET)
    assert await webhook(rx, *trigger) == (200, {"status": "recorded", "incident": incident_id})
    detail = await rx.incident(incident_id)
    assert detail["sinks"]["pagerduty"]["incident"] == "P000001"
    assert detail["sinks"]["pagerduty"]["url"].endswith("/incidents/P000001")
    note = world.pagerduty.person("annotated", incident_id, "Bob", SECRET, content="looking")
    assert (await webhook(rx, *note))[0] == 200
    detail = await rx.incident(incident_id)
    texts = [e["text"] for e in detail["timeline"] if e["kind"] == "pagerduty"]
    assert texts == ["note in PagerDuty by Bob: looking"]


async def test_the_pagerduty_incident_of_an_earlier_episode_answers_for_nothing_now(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    pd = world.pagerduty
    first = pd.person("triggered", incident_id, "PagerDuty", SECRET, at=clock.now)
    assert (await webhook(rx, *first))[0] == 200
    # The alerts resolve, and fire again later: a new episode, a new PagerDuty incident.
    await rx.post([resolved(PAYMENT)])
    await rx.tick(300)
    again = {**PAYMENT, "startsAt": "2026-04-18T08:40:00Z"}
    await rx.post([again])
    await rx.tick(30)
    assert [i.status for i in pd.incidents(incident_id)] == ["resolved", "triggered"]
    trigger = pd.person("triggered", incident_id, "PagerDuty", SECRET, at=clock.now)
    assert (await webhook(rx, *trigger))[0] == 200
    # Then people work on the first PagerDuty incident (a postmortem note, a reassignment,
    # a resolve delivered late), stamped now: nothing of it is this episode's.
    clock.advance(60)
    old: dict[str, Any] = {"which": 0, "at": clock.now, "secret": SECRET}
    note = pd.person("annotated", incident_id, "Carol", content="root cause: DNS", **old)
    moved = pd.person("reassigned", incident_id, "Carol", assignees=[{"summary": "Dan"}], **old)
    done = pd.person("resolved", incident_id, "Carol", **old)
    reopened = pd.person("reopened", incident_id, "Carol", **old)
    for body in (note, moved, done, reopened):
        assert (await webhook(rx, *body))[0] == 200
    detail = await rx.incident(incident_id)
    assert detail["sinks"]["pagerduty"]["incident"] == "P000002"
    assert detail["sinks"]["pagerduty"]["url"].endswith("/incidents/P000002")
    assert detail["response"] is None
    texts = [e["text"] for e in detail["timeline"] if e["kind"] == "pagerduty"]
    earlier = " (PagerDuty incident P000001, of an earlier episode)"
    assert texts[-3:] == [
        # A note says only which PagerDuty incident: when it opened, its trigger said.
        "note in PagerDuty by Carol: root cause: DNS" + earlier,
        "reassigned in PagerDuty by Carol to Dan" + earlier,
        "reopened in PagerDuty by Carol" + earlier,
    ]
    # The current PagerDuty incident's own acknowledgement still answers for it.
    ack = pd.person("acknowledged", incident_id, "Erin", SECRET, at=clock.now)
    assert (await webhook(rx, *ack))[0] == 200
    assert (await rx.incident(incident_id))["response"]["acknowledged_by"] == "Erin"


async def test_a_resolve_from_before_the_episode_began_is_not_this_episodes(
    rx: Harness, world: Fakes
) -> None:
    incident_id = await opened(rx)
    started = detail_time(await rx.incident(incident_id), "started_at")
    # Delivered late, about the PagerDuty incident of an earlier episode.
    late = world.pagerduty.person("resolved", incident_id, "Al", SECRET, at=started - 600)
    assert await webhook(rx, *late) == (200, {"status": "ignored", "incident": incident_id})
    detail = await rx.incident(incident_id)
    assert detail["response"] is None
    assert "resolved_by_person" not in detail["sinks"]["pagerduty"]


async def test_an_acknowledgement_after_the_incident_resolved_is_on_the_timeline_only(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    # Nobody acknowledged; the alerts resolve, and so does the incident.
    await rx.post([resolved(PAYMENT)])
    await rx.tick(300)
    detail = await rx.incident(incident_id)
    assert (detail["status"], detail["response"]) == ("resolved", None)
    ended = clock.now  # resolved by this tick
    # Next morning Bob acknowledges the PagerDuty incident (our resolve never reached it):
    # the incident was over, so it is no acknowledgement of it (MTTA, /stats).
    clock.advance(12 * 3600)
    ack = world.pagerduty.person("acknowledged", incident_id, "Bob", SECRET, at=clock.now)
    assert await webhook(rx, *ack) == (200, {"status": "recorded", "incident": incident_id})
    detail = await rx.incident(incident_id)
    assert (detail["response"], detail["mtta_s"]) == (None, None)
    texts = [e["text"] for e in detail["timeline"] if e["kind"] == "pagerduty"]
    assert texts == ["acknowledged in PagerDuty by Bob after the incident resolved"]
    # Alice's, made while it was open and delivered only now, still answered it.
    late = world.pagerduty.person("acknowledged", incident_id, "Alice", SECRET, at=ended - 60)
    assert (await webhook(rx, *late))[0] == 200
    detail = await rx.incident(incident_id)
    assert detail["response"]["acknowledged_by"] == "Alice"
    assert detail["mtta_s"] is not None


# --- which episode an event is about, judged from the event alone ------------------------

FIRST_FIRING = 1_776_500_000_000  # this episode first fired then (ms)


def episode(**sinks: str) -> IncidentState:
    """An open incident whose current episode first fired at FIRST_FIRING; ``sinks``: what
    its PagerDuty entry holds."""
    return IncidentState(
        id="inc-1", key="k", digest="d", journey="checkout", group_labels={},
        status="open", created_at=FIRST_FIRING - 3_600_000, updated_at=FIRST_FIRING,
        first_firing_at=FIRST_FIRING, started_at=FIRST_FIRING,
        sinks={"pagerduty": dict(sinks)} if sinks else {},
    )  # fmt: skip


def event(kind: str, pd_id: str, created_at: object, at_ms: int = FIRST_FIRING + 90_000) -> bytes:
    occurred = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()
    data = {"id": pd_id, "type": "incident", "incident_key": "inc-1", "created_at": created_at}
    agent = {"id": "PU1", "type": "user_reference", "summary": "Pat"}
    envelope = {"id": "E1", "event_type": kind, "occurred_at": occurred, "agent": agent}
    return json.dumps({"event": envelope | {"data": data}}).encode()


def test_this_episodes_incident_opened_within_the_same_second_is_this_episodes() -> None:
    # PagerDuty opened it 300 ms after the episode first fired (group_wait 0) and wrote
    # whole seconds: its created_at reads as 700 ms before the episode.
    same_second = datetime.fromtimestamp((FIRST_FIRING - 700) / 1000, UTC)
    created = same_second.strftime("%Y-%m-%dT%H:%M:%SZ")
    ack = pagerduty.annotation(
        pagerduty.parse(event("incident.acknowledged", "P2", created)), episode(), FIRST_FIRING
    )
    assert ack is not None and ack.fill["response"]["acknowledged_by"] == "Pat"
    opened = str(round(datetime.fromisoformat(created).timestamp() * 1000))
    assert ack.merge == {"sinks.pagerduty": {"incident": "P2", "incident_opened_at": opened}}
    # One opened an hour before the episode is an earlier episode's (with no link known).
    hour_before = datetime.fromtimestamp((FIRST_FIRING - 3_600_000) / 1000, UTC).isoformat()
    old = pagerduty.parse(event("incident.acknowledged", "P1", hour_before))
    assert pagerduty.annotation(old, episode(), FIRST_FIRING, margin_ms=5_000) is None


def test_an_earlier_episodes_incident_leaves_the_person_resolved_flag_and_the_link() -> None:
    an_hour_before = datetime.fromtimestamp((FIRST_FIRING - 3_600_000) / 1000, UTC).isoformat()
    state = episode(incident="P2", resolved_by_person="Alice")
    reopened = pagerduty.parse(event("incident.reopened", "P1", an_hour_before))
    said = pagerduty.annotation(reopened, state, FIRST_FIRING)
    assert said is not None and said.merge == {}
    assert said.timeline[0].text.endswith("(PagerDuty incident P1, of an earlier episode)")
    # Its trigger, delivered late, is not this episode's link.
    late = pagerduty.parse(event("incident.triggered", "P1", an_hour_before))
    assert pagerduty.annotation(late, state, FIRST_FIRING) is None
    # The one the link names stays this episode's however old (our resolve never reached
    # PagerDuty, and this episode's trigger landed on it).
    ack = pagerduty.parse(event("incident.acknowledged", "P2", an_hour_before))
    assert pagerduty.annotation(ack, state, FIRST_FIRING) is not None


def person_event(
    kind: str, pd_id: str, at_ms: int, opened_ms: int = FIRST_FIRING + 60_000
) -> pagerduty.Event:
    """``kind`` of PagerDuty incident ``pd_id`` (opened at ``opened_ms``, in this episode)
    by Pat at ``at_ms``, each with an id of its own (deliveries are deduplicated by id)."""
    opened = datetime.fromtimestamp(opened_ms / 1000, UTC).isoformat()
    body = json.loads(event(kind, pd_id, opened, at_ms))
    body["event"]["id"] = f"E-{kind}-{pd_id}-{at_ms}"
    return pagerduty.parse(json.dumps(body).encode())


def test_a_resolve_delivered_after_the_reopen_that_followed_it_changes_nothing() -> None:
    resolve_at, reopen_at = FIRST_FIRING + 90_000, FIRST_FIRING + 120_000
    state = episode(incident="P1")
    reopen = pagerduty.annotation(person_event("incident.reopened", "P1", reopen_at), state, 0)
    assert reopen is not None
    state.sinks["pagerduty"].update(reopen.merge["sinks.pagerduty"])
    # The resolve's delivery failed and came again after the reopen's had landed.
    late = person_event("incident.resolved", "P1", resolve_at)
    assert pagerduty.annotation(late, state, 0) is None


P1_OPENED, P2_OPENED = FIRST_FIRING + 60_000, FIRST_FIRING + 100_000


def test_the_link_follows_the_newest_pagerduty_incident_whichever_event_comes_first() -> None:
    # Pat resolved P1; before that webhook came, an update opened P2 (PagerDuty opens a
    # new incident for a trigger after a resolve), which the link names now.
    on_p2 = episode(incident="P2", incident_opened_at=str(P2_OPENED))
    late = person_event("incident.resolved", "P1", FIRST_FIRING + 90_000, P1_OPENED)
    said = pagerduty.annotation(late, on_p2, 0)
    assert said is not None
    assert said.merge == {}  # neither resolved_by_person nor the link moves
    assert said.fill["response"]["resolved_by"] == "Pat"
    # P1's trigger, delivered late, does not take the link back either.
    trigger = person_event("incident.triggered", "P1", FIRST_FIRING + 61_000, P1_OPENED)
    assert pagerduty.annotation(trigger, on_p2, 0) is None
    # Linked to P1 (resolved by Pat), P2's first event moves the link, whichever it is: a
    # trigger clears Pat's resolve of P1, a resolve of P2 by Pat is one again.
    on_p1 = episode(incident="P1", incident_opened_at=str(P1_OPENED), resolved_by_person="Pat")
    for kind, flag in (("incident.triggered", ""), ("incident.resolved", "Pat")):
        moved = pagerduty.annotation(
            person_event(kind, "P2", FIRST_FIRING + 120_000, P2_OPENED), on_p1, 0
        )
        assert moved is not None
        sink = moved.merge["sinks.pagerduty"]
        assert (sink["incident"], sink["resolved_by_person"]) == ("P2", flag)


def test_a_reopen_in_pagerduty_takes_the_persons_resolve_back() -> None:
    state = episode(incident="P1", resolved_by_person="Pat")
    # Recorded before where a resolve was made was kept: its first word's source says.
    state.response = ResponseRecord(
        resolved_at=FIRST_FIRING + 90_000, resolved_by="Pat", source="pagerduty"
    )
    said = pagerduty.annotation(
        person_event("incident.reopened", "P1", FIRST_FIRING + 120_000), state, 0
    )
    assert said is not None
    assert said.merge["response"] == {
        "resolved_at": None,
        "resolved_by": None,
        "resolved_via": None,
    }
    assert said.merge["sinks.pagerduty"]["resolved_by_person"] == ""
    # A resolve a person made in Jira is not PagerDuty's to take back.
    state.response = state.response.model_copy(update={"resolved_via": "jira"})
    said = pagerduty.annotation(
        person_event("incident.reopened", "P1", FIRST_FIRING + 120_000), state, 0
    )
    assert said is not None and "response" not in said.merge


@pytest.mark.parametrize(
    "created_at", [None, 12345, {"at": 1}, "", "yesterday", "2026-04-18T08:00"]
)
def test_a_creation_time_that_is_not_one_is_read_as_none(created_at: object) -> None:
    parsed = pagerduty.parse(event("incident.acknowledged", "P9", created_at))
    assert parsed.opened_ms is None
    assert pagerduty.annotation(parsed, episode(), FIRST_FIRING) is not None


async def test_a_merge_into_another_incident_is_no_persons_resolve(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    """A responder merges our PagerDuty incident into another: PagerDuty resolves ours
    (``merge_resolve_reason``) and moves its alert, our dedup_key, into the other. Nobody
    resolved the outage: MTTR does not count the merge, and the receiver's resolve still
    goes out when the alerts resolve, or the merged alert stays triggered for good."""
    incident_id = await opened(rx)
    pd = world.pagerduty
    clock.advance(60)
    reason = {
        "type": "merge_resolve_reason",
        "incident": {"id": "PTARGET", "type": "incident_reference"},
    }
    merged = pd.person(
        "resolved", incident_id, "Alice", SECRET, at=clock.now, resolve_reason=reason
    )
    assert await webhook(rx, *merged) == (200, {"status": "recorded", "incident": incident_id})
    detail = await rx.incident(incident_id)
    assert detail["response"] is None
    assert detail["timeline"][-1]["text"] == "merged in PagerDuty by Alice into PTARGET"
    await rx.post([resolved(PAYMENT)])
    await rx.tick(300)
    await rx.tick(1)
    assert (await rx.incident(incident_id))["status"] == "resolved"
    assert pd.actions(incident_id) == ["trigger", "resolve"]


async def test_a_reassignment_to_a_team_and_an_escalation_are_recorded(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    """Reassigning to an escalation policy (another team) is ``incident.delegated``, an
    escalation ``incident.escalated``: reassignments the README says are recorded."""
    incident_id = await opened(rx)
    pd = world.pagerduty
    clock.advance(60)
    dan = [{"id": "PDBA", "summary": "Dan DBA", "type": "user_reference"}]
    team = {"id": "PEP2", "summary": "Database team", "type": "escalation_policy_reference"}
    delegated = pd.person(
        "delegated", incident_id, "Carol", SECRET, at=clock.now, assignees=dan,
        escalation_policy=team,
    )  # fmt: skip
    assert (await webhook(rx, *delegated))[1] == {"status": "recorded", "incident": incident_id}
    clock.advance(60)
    erin = [{"id": "PBOSS", "summary": "Erin Lead", "type": "user_reference"}]
    escalated = pd.person(
        "escalated", incident_id, "PagerDuty", SECRET, at=clock.now, assignees=erin
    )
    assert (await webhook(rx, *escalated))[1] == {"status": "recorded", "incident": incident_id}
    timeline = (await rx.incident(incident_id))["timeline"]
    assert [e["text"] for e in timeline if e["kind"] == "pagerduty"] == [
        "reassigned in PagerDuty by Carol to Database team (Dan DBA)",
        "escalated in PagerDuty to Erin Lead",
    ]


@pytest.mark.parametrize("landed_first", ["reopened", "resolved"])
async def test_a_resolve_and_its_reopen_read_at_once_land_as_they_happened(
    landed_first: str, rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    """Alice resolves by mistake and reopens seconds later; PagerDuty sends both at once
    and two replicas each read the incident before either wrote. Whichever lands second
    was decided on a read the first has changed: it is decided again, so the reopen wins
    either way (the resolve landing last would have set resolved_by_person on a PagerDuty
    incident open again, which then heard nothing more from the receiver; the reopen
    landing last would have left the resolve standing)."""
    incident_id = await opened(rx)
    pd = world.pagerduty
    clock.advance(60)
    moves = {"resolved": pd.person("resolved", incident_id, "Alice", SECRET, at=clock.now)}
    clock.advance(5)
    moves["reopened"] = pd.person("reopened", incident_id, "Alice", SECRET, at=clock.now)
    stored = await rx.receiver.store.load(incident_id)
    assert stored is not None
    assert (await webhook(rx, *moves[landed_first]))[0] == 200
    # The other replica, with what it read before the first landed.
    event = pagerduty.parse(moves["resolved" if landed_first == "reopened" else "reopened"][0])
    now = rx.receiver.pipeline.now_ms()

    def decide(state: IncidentState) -> Annotation | None:
        return pagerduty.annotation(event, state, now)

    await record(rx.receiver, stored.state, decide(stored.state), decide)
    detail = await rx.incident(incident_id)
    assert detail["sinks"]["pagerduty"]["resolved_by_person"] == ""
    assert (detail["response"] or {}).get("resolved_at") is None and detail["mttr_s"] is None


async def test_a_priority_set_in_pagerduty_is_recorded(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    """A responder raises the PagerDuty incident's priority (``incident.priority_updated``),
    then takes it off: the incident's timeline says so; nothing goes back to PagerDuty."""
    incident_id = await opened(rx)
    pd = world.pagerduty
    clock.advance(60)
    p1 = {"id": "PSO75BM", "type": "priority_reference", "summary": "P1"}
    raised = pd.person("priority_updated", incident_id, "Carol", SECRET, at=clock.now, priority=p1)
    assert (await webhook(rx, *raised))[1] == {"status": "recorded", "incident": incident_id}
    clock.advance(60)
    cleared = pd.person(
        "priority_updated", incident_id, "Carol", SECRET, at=clock.now, priority=None
    )
    assert (await webhook(rx, *cleared))[1] == {"status": "recorded", "incident": incident_id}
    timeline = (await rx.incident(incident_id))["timeline"]
    assert [e["text"] for e in timeline if e["kind"] == "pagerduty"] == [
        "priority set to P1 in PagerDuty by Carol",
        "priority taken off in PagerDuty by Carol",
    ]
    await rx.tick(120)
    assert pd.actions(incident_id) == ["trigger"]
