"""People answer from the incident's Slack message: the real sinks against the fake
PagerDuty and Slack, and Slack's interactions (button clicks, the "What fixed it?" modal)
coming back signed, as Slack signs them."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
import pytest
from slack_sdk import WebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver.act.levels import Person, refusal
from receiver.inbound.slack import (
    SILENCE_REFUSED,
    Interaction,
    fixed_modal,
    may_silence,
    parse,
)
from receiver.sinks.slack_blocks import (
    ACK,
    FIXED,
    NOT_USEFUL,
    SILENCE,
    USEFUL,
    WRONG_CAUSE,
    render,
)
from receiver.store import StoreSettings, open_store
from receiver.store.redis import RedisStore
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.fake_server import FakeServer, Fault, serve
from tests.support.fake_slack import TOKEN as SLACK_TOKEN
from tests.support.fake_slack import Message
from tests.support.harness import Harness, harness, write_config
from tests.support.incidents import make_incident
from tests.support.sink_world import Fakes
from tests.support.slack_clicks import ALICE, BOB, CAROL, SECRET, Slack

pytestmark = pytest.mark.anyio

HOSTILE = "<!channel> *bold*"
PD_SECRET = "pd-webhook-secret"
PAYMENT = make_alert("payment-service", alertname="PaymentErrors")
JOURNEYS = """\
journeys:
  - id: checkout
    name: Checkout
    weight: 1.0
    owner: {team: payments, slack_channel: "#inc-checkout", jira_project: PAY}
    group_by: [env, region]
    stages:
      - id: payment
        weight: 1.0
        match: ['service="payment-service"']
    actions:
      - title: "Restart payment-service in {region}"
      - title: "Fail over to the standby database"
    automation: recommend
"""


class FakeAlertmanager:
    """Alertmanager's ``POST /api/v2/silences``, and the alerts a silence's labels match
    (none but its own alert, so none); a reconcile asking for every alert is refused (503),
    which changes nothing. ``asked`` is set by a silence's arrival; while ``hold`` is set,
    the silence is answered only once it is set itself."""

    def __init__(self) -> None:
        self.silences: list[dict[str, Any]] = []
        self.asked = threading.Event()
        self.hold: threading.Event | None = None
        self.app = Starlette(
            routes=[
                Route("/api/v2/silences", self._silence, methods=["POST"]),
                Route("/api/v2/alerts", self._alerts, methods=["GET"]),
                Route("/api/v2/alerts/groups", self._unavailable, methods=["GET"]),
            ]
        )

    async def _silence(self, request: Request) -> JSONResponse:
        self.silences.append(await request.json())
        self.asked.set()
        if self.hold is not None:
            await anyio.to_thread.run_sync(self.hold.wait)
        return JSONResponse({"silenceID": f"silence-{len(self.silences)}"})

    async def _alerts(self, request: Request) -> JSONResponse:
        if "filter" in request.query_params:
            return JSONResponse([])
        return await self._unavailable(request)

    async def _unavailable(self, request: Request) -> JSONResponse:
        return JSONResponse({"error": "not in this fake"}, status_code=503)


@dataclass
class Alertmanager:
    fake: FakeAlertmanager
    server: FakeServer


@pytest.fixture
def alertmanager() -> Iterator[Alertmanager]:
    fake = FakeAlertmanager()
    with serve(fake.app, FakeServer()) as server:
        yield Alertmanager(fake, server)


@pytest.fixture
async def rx(
    tmp_path: Path, clock: FakeClock, world: Fakes, alertmanager: Alertmanager
) -> AsyncIterator[Harness]:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(JOURNEYS)
    extra = (
        f"inbound: {{slack: {{signing_secret: {SECRET}}}, "
        f"pagerduty: {{signing_secrets: [{PD_SECRET}]}}}}\n"
        f"alertmanager: {{urls: ['{alertmanager.server.url}'], timeout: 2s}}\n"
    )
    config = write_config(tmp_path, world.config() + extra, journeys=journeys)
    async with harness(config, clock, configured_sinks=True) as h:
        yield h


@pytest.fixture
def slack(rx: Harness, world: Fakes, clock: FakeClock) -> Slack:
    return Slack(rx, world, clock)


async def opened(rx: Harness, *alerts: dict[str, Any]) -> str:
    (incident_id,) = (await rx.post(list(alerts) or [PAYMENT])).json()["incidents"]
    await rx.tick(30)  # group_wait: open, delivered
    return incident_id


def message(world: Fakes) -> Message:
    (posted,) = world.slack.messages("#inc-checkout")
    return posted


def buttons(posted: Message) -> list[str]:
    """The action ids of the message's buttons (runbook links have none)."""
    return [
        e["action_id"]
        for b in posted.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("action_id", "").startswith("jr_")
    ]


def people(posted: Message) -> list[str]:
    """The texts of the context line that says what people did."""
    lines = [
        e["text"]
        for b in posted.blocks
        if b["type"] == "context"
        for e in b["elements"]
        if e["text"].startswith(("Acknowledge", "Marked", "Wrong", "Fixed", "Silenced"))
    ]
    return lines


def slack_timeline(detail: dict[str, Any]) -> list[str]:
    return [e["text"] for e in detail["timeline"] if e["kind"] == "slack"]


async def test_acknowledge_tells_pagerduty_records_who_and_edits_the_message(
    rx: Harness, slack: Slack, world: Fakes, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    # inbound.slack has a signing secret: the real sink put the buttons on the message.
    assert buttons(message(world)) == [ACK, USEFUL, NOT_USEFUL, WRONG_CAUSE, FIXED, SILENCE]
    clock.advance(60)
    click = slack.signed(slack.click_payload(ACK, incident_id, ALICE))

    r = await slack.send(*click)
    assert (r.status_code, r.content) == (200, b"")

    detail = await rx.incident(incident_id)
    assert detail["response"]["acknowledged_by"] == "@alice (U0ALICE)"
    assert detail["response"]["source"] == "slack"
    assert detail["mtta_s"] == 60.0
    assert slack_timeline(detail) == ["acknowledged in Slack by @alice (U0ALICE)"]
    # Slack does not retry, but a delivery that arrives twice lands once.
    assert (await slack.send(*click)).status_code == 200

    await rx.tick()  # the outbox: PagerDuty's acknowledge, the message's edit
    pd = world.pagerduty
    assert pd.actions(incident_id) == ["trigger", "acknowledge"]
    assert [i.status for i in pd.incidents(incident_id)] == ["acknowledged"]
    posted = message(world)
    assert len(world.slack.edits(posted.ts)) == 1
    assert people(posted) == ["Acknowledged by @alice (U0ALICE)"]
    (reply,) = world.slack.replies(posted.ts)
    assert reply.text.endswith("acknowledged by @alice (U0ALICE)")

    # Alice again (a double click): on the timeline, and nothing more in the thread.
    clock.advance(5)
    assert (await slack.click(ACK, incident_id, ALICE)).status_code == 200
    await rx.tick()
    assert slack_timeline(await rx.incident(incident_id))[-1] == (
        "Acknowledge pressed in Slack again by @alice (U0ALICE)"
    )
    assert (len(world.slack.replies(posted.ts)), len(world.slack.edits(posted.ts))) == (1, 1)

    # Bob, from a message that still showed the button: the first acknowledgement stands,
    # PagerDuty is not told again.
    clock.advance(30)
    assert (await slack.click(ACK, incident_id, BOB)).status_code == 200
    await rx.tick()
    detail = await rx.incident(incident_id)
    assert detail["response"]["acknowledged_by"] == "@alice (U0ALICE)"
    assert slack_timeline(detail)[-1] == (
        "Acknowledge pressed in Slack by @bob (U0BOB); @alice (U0ALICE) had acknowledged it"
    )
    assert pd.actions(incident_id) == ["trigger", "acknowledge"]


class PressedMeanwhile:
    """The real store, with another press landing between a click's read of the incident
    and its write: two people pressing Acknowledge at once, or on two replicas."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.meanwhile: Callable[[], Awaitable[object]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def annotate(self, *args: Any) -> Any:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            await meanwhile()
        return await self.inner.annotate(*args)


_prefixes = itertools.count()


def _settings() -> StoreSettings:
    return StoreSettings(key_prefix=f"slackrace{next(_prefixes)}")


@asynccontextmanager
async def on_store(
    tmp_path: Path, clock: FakeClock, world: Fakes, store: Any
) -> AsyncIterator[tuple[Harness, Slack]]:
    """The receiver taking Slack's presses on ``store`` (a wrapper over a real one)."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(JOURNEYS)
    extra = f"inbound: {{slack: {{signing_secret: {SECRET}}}}}\n"
    config = write_config(tmp_path, world.config() + extra, journeys=journeys)
    async with harness(config, clock, configured_sinks=True, store=store) as rx:
        yield rx, Slack(rx, world, clock)


async def test_after_an_acknowledgement_lapsed_in_pagerduty_anyone_may_take_it_up_again(
    rx: Harness, slack: Slack, world: Fakes, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    clock.advance(60)
    assert (await slack.click(ACK, incident_id, ALICE)).status_code == 200
    await rx.tick()
    assert ACK not in buttons(message(world))
    # Alice's acknowledgement times out in PagerDuty, which pages again.
    clock.advance(1800)
    body, headers = world.pagerduty.acknowledgement_timed_out(incident_id, PD_SECRET, clock.now)
    r = await rx.client.post("/inbound/pagerduty", content=body, headers=headers)
    assert r.json() == {"status": "recorded", "incident": incident_id}
    await rx.tick()
    posted = message(world)
    assert buttons(posted)[0] == ACK
    assert people(posted) == ["Acknowledgement by @alice (U0ALICE) lapsed"]

    clock.advance(60)
    assert (await slack.click(ACK, incident_id, BOB)).status_code == 200
    detail = await rx.incident(incident_id)
    assert slack_timeline(detail)[-1] == "acknowledged in Slack by @bob (U0BOB)"
    assert detail["response"]["reacknowledged_by"] == "@bob (U0BOB)"
    assert detail["mtta_s"] == 60.0  # Alice's, the first
    await rx.tick()
    # PagerDuty hears of it, and stops paging.
    pd = world.pagerduty
    assert pd.actions(incident_id) == ["trigger", "acknowledge", "acknowledge"]
    assert [i.status for i in pd.incidents(incident_id)] == ["acknowledged"]
    posted = message(world)
    assert ACK not in buttons(posted)
    assert people(posted) == ["Acknowledged by @bob (U0BOB)"]


async def test_two_people_pressing_acknowledge_at_once_make_one_acknowledgement(
    tmp_path: Path, clock: FakeClock, world: Fakes, redis_port: int
) -> None:
    racing = PressedMeanwhile(open_store(f"redis://127.0.0.1:{redis_port}/0", _settings()))
    async with on_store(tmp_path, clock, world, racing) as (rx, slack):
        incident_id = await opened(rx)
        # Bob's press lands after Alice's was read and before it is written.
        racing.meanwhile = lambda: slack.click(ACK, incident_id, BOB)

        r = await slack.click(ACK, incident_id, ALICE)

        assert (r.status_code, r.content) == (200, b"")
        detail = await rx.incident(incident_id)
        assert detail["response"]["acknowledged_by"] == "@bob (U0BOB)"
        assert slack_timeline(detail) == [
            "acknowledged in Slack by @bob (U0BOB)",
            "Acknowledge pressed in Slack by @alice (U0ALICE); @bob (U0BOB) had acknowledged it",
        ]
        await rx.tick()
        # PagerDuty hears one acknowledgement; the thread does not say Alice's was one.
        assert world.pagerduty.actions(incident_id) == ["trigger", "acknowledge"]
        replies = [reply.text for reply in world.slack.replies(message(world).ts)]
        assert [text.split(": ", 1)[1] for text in replies] == [
            "acknowledged by @bob (U0BOB)",
            "already acknowledged by @bob (U0BOB)",
        ]


class EverChanging:
    """The real store, answering ``stale`` to every write while ``changing``: as if other
    presses landed before each, so that a click is decided again and again."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.changing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def annotate(self, *args: Any) -> Any:
        return "stale" if self.changing else await self.inner.annotate(*args)


async def test_a_press_that_cannot_land_for_others_landing_first_is_told_to_press_again(
    tmp_path: Path, clock: FakeClock, world: Fakes, redis_port: int
) -> None:
    racing = EverChanging(open_store(f"redis://127.0.0.1:{redis_port}/0", _settings()))
    async with on_store(tmp_path, clock, world, racing) as (rx, slack):
        incident_id = await opened(rx)

        racing.changing = True

        r = await slack.click(ACK, incident_id, ALICE)

        # Slack retries no click: a 503 would only show the person a bare error.
        assert (r.status_code, r.content) == (200, b"")
        (said,) = slack.responses()
        assert said["text"] == (
            "Nothing was recorded: the incident kept changing while your press was recorded "
            "(other people's presses, or its alerts): press the button again."
        )
        racing.changing = False
        assert (await rx.incident(incident_id))["response"] is None


async def test_acknowledge_pressed_after_the_resolve_is_told_to_the_person(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    incident_id = await opened(rx)
    assert (await rx.post([resolved(PAYMENT)])).status_code == 200
    await rx.tick(300)  # resolve_after
    detail = await rx.incident(incident_id)
    assert detail["status"] == "resolved"

    # From the message as it was: its edit to "resolved" was still on its way to Slack.
    r = await slack.click(ACK, incident_id, ALICE)

    assert (r.status_code, r.content) == (200, b"")
    (said,) = slack.responses()
    assert said["response_type"] == "ephemeral"
    assert said["text"] == (
        f"Not recorded as an acknowledgement: the incident resolved at {detail['resolved_at']} "
        "(every alert resolved), before you pressed Acknowledge."
    )
    after = await rx.incident(incident_id)
    assert after["response"] is None
    assert slack_timeline(after) == [
        "Acknowledge pressed in Slack by @alice (U0ALICE) after the incident resolved"
    ]
    assert world.pagerduty.actions(incident_id) == ["trigger", "resolve"]


async def test_a_press_that_changes_nothing_for_want_of_its_incident_says_why(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    # Slack shows a person a click answered other than 200 as a bare error: the answer is
    # a 200, and the reason is said to them alone.
    incident_id = await opened(rx)
    gone = "checkout-0000000000000000-1"
    why = (
        f"Nothing was recorded: journey-receiver has no incident {gone} "
        "(an incident is kept for store.retention after its last change)."
    )

    # An incident this receiver does not keep (it expired after store.retention, say).
    for action_id in (USEFUL, FIXED):
        r = await slack.click(action_id, gone, ALICE)
        assert (r.status_code, r.content) == (200, b"")
        (said,) = slack.responses()
        assert (said["response_type"], said["text"]) == ("ephemeral", why)
    assert world.slack.views() == []
    # A message that is not the incident's own.
    r = await slack.click(USEFUL, incident_id, ALICE, message_ts="1776500000.999999")
    assert (r.status_code, r.content) == (200, b"")
    (said,) = slack.responses()
    assert said["text"].startswith(
        f"Nothing was recorded: this is not the Slack message of incident {incident_id} "
    )
    assert (await rx.incident(incident_id))["feedback"] == []


async def test_what_fixed_it_sent_for_an_incident_gone_meanwhile_says_so_in_the_form(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    # The form stays open for as long as the person likes; the incident may expire
    # meanwhile. The form says why nothing was recorded (a 404 shows a bare error there).
    incident_id = await opened(rx)
    assert (await slack.click(FIXED, incident_id, ALICE)).status_code == 200
    (view,) = world.slack.views()
    gone = {**view, "private_metadata": "checkout-0000000000000000-1"}
    written = {"jr_fixed_text": {"text": {"type": "plain_text_input", "value": "restarted"}}}

    r = await slack.submit(gone, written)

    assert r.status_code == 200
    assert r.json() == {
        "response_action": "errors",
        "errors": {
            "jr_fixed_text": "Nothing was recorded: journey-receiver has no incident "
            "checkout-0000000000000000-1 (an incident is kept for store.retention after its "
            "last change)."
        },
    }
    assert (await rx.incident(incident_id))["feedback"] == []


async def test_useful_not_useful_and_wrong_cause_are_recorded_with_who(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    incident_id = await opened(rx)
    for action_id, user in ((USEFUL, ALICE), (NOT_USEFUL, BOB), (WRONG_CAUSE, CAROL)):
        r = await slack.click(action_id, incident_id, user)
        assert (r.status_code, r.content) == (200, b"")
    # Alice changes her mind: her latest word counts on the message; both are kept.
    assert (await slack.click(NOT_USEFUL, incident_id, ALICE)).status_code == 200

    detail = await rx.incident(incident_id)
    said = [{k: v for k, v in f.items() if k != "at"} for f in detail["feedback"]]
    assert said == [
        {"useful": True, "by": "@alice (U0ALICE)", "source": "slack"},
        {"useful": False, "by": "@bob (U0BOB)", "source": "slack"},
        {"wrong_cause": True, "by": "@carol (U0CAROL)", "source": "slack"},
        {"useful": False, "by": "@alice (U0ALICE)", "source": "slack"},
    ]
    assert slack_timeline(detail) == [
        "marked useful in Slack by @alice (U0ALICE)",
        "marked not useful in Slack by @bob (U0BOB)",
        "probable cause called wrong in Slack by @carol (U0CAROL): payment-service",
        "marked not useful in Slack by @alice (U0ALICE)",
    ]
    await rx.tick()
    assert people(message(world)) == [
        "Marked not useful by @bob (U0BOB), @alice (U0ALICE)",
        "Wrong cause, says @carol (U0CAROL)",
    ]
    # Feedback is not an acknowledgement: PagerDuty heard only the trigger.
    assert world.pagerduty.actions(incident_id) == ["trigger"]


async def test_feedback_given_elsewhere_is_on_the_message_as_counted(
    rx: Harness, slack: Slack, world: Fakes, clock: FakeClock
) -> None:
    # Feedback from the API or the incident page edits the message as a click on it does
    # (it waited for the next change). The page's form sends a verdict with a wrong cause
    # or what fixed it in one record: /stats counts Alice's "not useful", and so does the
    # message now (it showed only her wrong cause).
    incident_id = await opened(rx)
    url = f"/api/v1/incidents/{incident_id}/feedback"
    for said in (
        {"useful": False, "wrong_cause": True, "by": "alice"},
        {"useful": True, "fixed_by": "restarted the pod", "by": "dave"},
        {"useful": True, "wrong_grouping": True},
    ):
        assert (await rx.client.post(url, json=said)).status_code == 201
    await rx.tick()
    posted = message(world)
    assert people(posted) == [
        "Marked useful by dave, the API",
        "Marked not useful by alice",
        "Wrong cause, says alice",
        "Fixed by: restarted the pod (says dave)",
    ]
    assert [r.text for r in world.slack.replies(posted.ts)] == [
        "*Updated* (P2): marked not useful, probable cause called wrong by alice",
        "*Updated* (P2): marked useful, fixed by restarted the pod by dave",
        "*Updated* (P2): marked useful, grouping called wrong by the API",
    ]
    clock.advance(120)
    assert (await rx.client.get("/api/v1/stats")).json()["signal"]["not_useful_pct"] == 100.0


async def test_what_fixed_it_opens_a_modal_of_the_suggested_actions_and_records_the_answer(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    hostile = make_alert("payment-service", alertname="PaymentErrors", region=f"eu {HOSTILE}")
    incident_id = await opened(rx, hostile)

    r = await slack.click(FIXED, incident_id, ALICE)
    assert (r.status_code, r.content) == (200, b"")

    (view,) = world.slack.views()
    assert view["callback_id"] == FIXED
    assert view["private_metadata"] == incident_id
    (choice,) = [b for b in view["blocks"] if b.get("block_id") == "jr_fixed_choice"]
    options = choice["element"]["options"]
    # Option labels are plain text: Slack shows them as written, never as a mention.
    assert [o["text"] for o in options] == [
        {"type": "plain_text", "text": f"Restart payment-service in eu {HOSTILE}"},
        {"type": "plain_text", "text": "Fail over to the standby database"},
    ]
    mrkdwn = [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]
    assert mrkdwn and all("<" not in t and ">" not in t for t in mrkdwn)
    assert "&lt;!channel&gt; *bold*" in mrkdwn[0]
    assert world.pagerduty.actions(incident_id) == ["trigger"]
    assert (await rx.incident(incident_id))["feedback"] == []

    # Sent with nothing picked or written: the modal says so and stays open.
    empty = await slack.submit(view, {"jr_fixed_choice": {"choice": {"type": "radio_buttons"}}})
    assert empty.status_code == 200
    assert empty.json()["response_action"] == "errors"
    assert set(empty.json()["errors"]) == {"jr_fixed_text"}

    picked = {
        "jr_fixed_choice": {
            "choice": {"type": "radio_buttons", "selected_option": options[0]},
        },
        "jr_fixed_text": {"text": {"type": "plain_text_input", "value": None}},
    }
    done = await slack.submit(view, picked)
    assert (done.status_code, done.content) == (200, b"")  # closes the modal

    detail = await rx.incident(incident_id)
    (record,) = detail["feedback"]
    # The action as journeys.yaml names it (its id, else its title as written), so that
    # similar incidents' history can count it whatever this incident's labels were.
    assert record["fixed_by"] == "Restart payment-service in {region}"
    # What fixed it, not a verdict on the page (/stats' not_useful_pct).
    assert "useful" not in record
    assert (record["by"], record["source"]) == ("@alice (U0ALICE)", "slack")
    await rx.tick()
    (line,) = people(message(world))
    assert line == "Fixed by: Restart payment-service in {region} (says @alice (U0ALICE))"
    mrkdwn = [
        e["text"]
        for b in message(world).blocks
        for e in [b.get("text"), *b.get("elements", [])]
        if e and e.get("type") == "mrkdwn"
    ]
    assert mrkdwn and not [t for t in mrkdwn if "<" in t or ">" in t]


def test_the_modal_shows_control_characters_in_alert_text_as_escapes() -> None:
    # An action's title holds label values: a NUL or an ANSI colour reached Slack as it was.
    controls = "eu\x00\x1b[31m\x9b2J"
    view = fixed_modal(
        make_incident(
            title=f"checkout/{controls} P1", suggested_actions=[{"title": f"Restart in {controls}"}]
        )
    )
    shown = "eu\\x00\\x1b[31m\\x9b2J"
    (choice,) = [b for b in view["blocks"] if b.get("block_id") == "jr_fixed_choice"]
    (option,) = choice["element"]["options"]
    assert option["text"]["text"] == f"Restart in {shown}"
    (section,) = [b for b in view["blocks"] if b["type"] == "section"]
    assert section["text"]["text"] == f"checkout/{shown} P1"


async def test_what_fixed_it_written_too_long_is_refused_in_the_form_naming_the_field(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    # The field says max_length 500 (UTF-16 units, as Slack counts): what is sent longer
    # is said in the form, whose text the person can still cut, not cut here unseen.
    incident_id = await opened(rx)
    assert (await slack.click(FIXED, incident_id, ALICE)).status_code == 200
    (view,) = world.slack.views()
    long = {"jr_fixed_text": {"text": {"type": "plain_text_input", "value": "🔥" * 251}}}

    r = await slack.submit(view, long)

    assert r.status_code == 200
    assert r.json() == {
        "response_action": "errors",
        "errors": {"jr_fixed_text": "At most 500 characters, please (this is 502)."},
    }
    assert (await rx.incident(incident_id))["feedback"] == []


async def test_a_modal_that_cannot_open_is_said_to_the_person_only(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    incident_id = await opened(rx)

    r = await slack.click(FIXED, incident_id, ALICE, trigger_id="12345.98765.expired")

    assert (r.status_code, r.content) == (200, b"")
    assert world.slack.views() == []
    (said,) = slack.responses()
    assert said["response_type"] == "ephemeral"
    assert said["replace_original"] is False
    assert said["text"] == "The form did not open: Slack refused views.open (invalid_trigger_id)"


class SlowToRead:
    """The real store, taking ``delay`` s to read an incident (a busy Redis, a failover)."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.delay = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self, *args: Any, **kwargs: Any) -> Any:
        await anyio.sleep(self.delay)
        return await self.inner.load(*args, **kwargs)


async def test_views_open_has_what_is_left_of_slacks_3_s_from_the_clicks_arrival(
    tmp_path: Path, clock: FakeClock, world: Fakes, redis_port: int
) -> None:
    # The trigger_id and Slack's wait for the answer both run from the click: time spent
    # reading the store before views.open is time views.open no longer has.
    slow = SlowToRead(open_store(f"redis://127.0.0.1:{redis_port}/0", _settings()))
    async with on_store(tmp_path, clock, world, slow) as (rx, slack):
        incident_id = await opened(rx)
        slow.delay = 1.5
        world.slack_server.inject(Fault(path="/api/views.open", delay=2.5))

        started = anyio.current_time()
        r = await slack.click(FIXED, incident_id, ALICE)
        answered = anyio.current_time() - started

        assert (r.status_code, r.content) == (200, b"")
        # The answer, the person's message included, within Slack's 3 s.
        assert answered < 2.8
        (said,) = slack.responses()
        assert said["text"] == (
            "The form did not open: Slack did not answer views.open in time: press What "
            "fixed it? again"
        )

        # A click whose reading alone took Slack's time: views.open is not even tried.
        slow.delay = 2.4
        r = await slack.click(FIXED, incident_id, ALICE)
        assert (r.status_code, r.content) == (200, b"")
        (said,) = slack.responses()
        assert said["text"] == (
            "The form did not open: journey-receiver took too long to answer Slack (it "
            "allows 3 s): press What fixed it? again"
        )
        assert len(world.slack.calls("views.open")) == 1


async def test_silence_2h_silences_in_alertmanager_after_the_answer_and_shows_who(
    rx: Harness, slack: Slack, world: Fakes, alertmanager: Alertmanager, clock: FakeClock
) -> None:
    incident_id = await opened(rx)

    r = await slack.click(SILENCE, incident_id, ALICE)

    assert (r.status_code, r.content) == (200, b"")
    (made,) = alertmanager.fake.silences
    assert made["createdBy"] == "@alice (U0ALICE)"
    assert made["comment"] == "silenced from Slack by @alice (U0ALICE)"
    assert {m["name"]: m["value"] for m in made["matchers"]} == PAYMENT["labels"]
    detail = await rx.incident(incident_id)
    (silence,) = detail["silences"]
    assert (silence["id"], silence["by"]) == ("silence-1", "@alice (U0ALICE)")
    assert slack_timeline(detail) == ["Silence 2h asked in Slack by @alice (U0ALICE)"]
    assert slack.responses() == []
    await rx.tick()
    assert people(message(world)) == ["Silenced 2h by @alice (U0ALICE)"]


async def test_silence_2h_pressed_again_makes_no_second_silence_and_says_whose_holds(
    rx: Harness, slack: Slack, world: Fakes, alertmanager: Alertmanager, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    assert (await slack.click(SILENCE, incident_id, ALICE)).status_code == 200
    (first,) = (await rx.incident(incident_id))["silences"]
    assert first["fingerprint"]
    clock.advance(60)

    # Bob, from the message as it was, then Alice again (a double click): one silence
    # each alert, and each is told whose holds until when.
    for user, who in ((BOB, "@bob (U0BOB)"), (ALICE, "@alice (U0ALICE)")):
        r = await slack.click(SILENCE, incident_id, user)
        assert (r.status_code, r.content) == (200, b"")
        (said,) = slack.responses()
        assert said["response_type"] == "ephemeral"
        assert said["text"] == (
            "Already silenced: every firing alert of this incident is silenced until "
            f"{first['ends_at']} by @alice (U0ALICE); no new silence was made (to change "
            "it, edit the silence in Alertmanager)."
        )
        assert slack_timeline(await rx.incident(incident_id))[-1] == (
            f"Silence 2h asked in Slack by {who} made no new silence: every firing alert "
            f"is silenced until {first['ends_at']} by @alice (U0ALICE)"
        )
    assert len(alertmanager.fake.silences) == 1
    assert len((await rx.incident(incident_id))["silences"]) == 1

    # An alert that joined the incident since is silenced alone by the next press.
    latency = make_alert("payment-service", alertname="PaymentLatency")
    assert (await rx.post([latency])).status_code == 200
    assert (await slack.click(SILENCE, incident_id, BOB)).status_code == 200
    assert slack.responses() == []
    made = alertmanager.fake.silences[-1]
    assert len(alertmanager.fake.silences) == 2
    assert {m["name"]: m["value"] for m in made["matchers"]} == latency["labels"]


async def test_silence_2h_pressed_by_two_people_at_once_makes_one_silence(
    rx: Harness, slack: Slack, world: Fakes, alertmanager: Alertmanager
) -> None:
    # Two presses at once (two people, or two replicas each receiving one): the first
    # to claim the incident silences it, the other is told it is under way.
    incident_id = await opened(rx)
    fake = alertmanager.fake
    fake.hold = threading.Event()

    async def alice() -> None:
        assert (await slack.click(SILENCE, incident_id, ALICE)).status_code == 200

    async with anyio.create_task_group() as tg:
        tg.start_soon(alice)
        # Bob presses while Alice's silence is on its way to Alertmanager.
        assert await anyio.to_thread.run_sync(fake.asked.wait, 10.0)
        try:
            bob = await slack.click(SILENCE, incident_id, BOB)
        finally:
            fake.hold.set()
    assert bob.status_code == 200
    (said,) = slack.responses()

    assert len(fake.silences) == 1
    assert said["text"] == (
        "Silence 2h is already being made for this incident (asked by @alice (U0ALICE) "
        "just before you): no second silence was made; the message will show it."
    )
    detail = await rx.incident(incident_id)
    assert len(detail["silences"]) == 1
    assert slack_timeline(detail)[-1] == (
        "Silence 2h asked in Slack by @bob (U0BOB) made no new silence: one asked by "
        "@alice (U0ALICE) was under way"
    )


async def test_a_silence_made_through_the_api_is_on_the_message(
    rx: Harness, slack: Slack, world: Fakes, alertmanager: Alertmanager
) -> None:
    incident_id = await opened(rx)
    url = f"/api/v1/incidents/{incident_id}/silence"
    r = await rx.client.post(url, json={"duration": "30m", "by": "carol"})
    assert r.status_code == 201, r.text
    await rx.tick()
    posted = message(world)
    assert people(posted) == ["Silenced 30m by carol"]
    (reply,) = world.slack.replies(posted.ts)
    assert reply.text.endswith("silenced for 30m by carol")


@pytest.mark.parametrize(
    ("duration", "said"),
    [("100m", "1h40m"), ("45s", "45s"), ("1h1m", "1h1m"), ("7d", "7d"), (5400, "1h30m")],
)
async def test_a_silence_of_any_length_is_said_alike_in_slack_and_on_the_timeline(
    rx: Harness,
    slack: Slack,
    world: Fakes,
    alertmanager: Alertmanager,
    duration: str | int,
    said: str,
) -> None:
    # As a duration is written, whole: not "1.66667h" on the timeline beside "1.7h" in the
    # message, nor a 45 s silence as "0.75m" there and "1m" here.
    incident_id = await opened(rx)
    url = f"/api/v1/incidents/{incident_id}/silence"
    r = await rx.client.post(url, json={"duration": duration, "by": "carol"})
    assert r.status_code == 201, r.text
    await rx.tick()
    posted = message(world)
    assert people(posted) == [f"Silenced {said} by carol"]
    (reply,) = world.slack.replies(posted.ts)
    assert reply.text.endswith(f"silenced for {said} by carol")
    lines = [e["text"] for e in (await rx.incident(incident_id))["timeline"]]
    assert f"1 alert(s) silenced in Alertmanager for {said} by carol" in lines


GUEST = {"id": "U0GUEST", "username": "alice", "name": "alice", "team_id": "T0PARTNER"}
"""A Slack Connect guest: a person of another organisation in the shared channel."""


async def test_silence_2h_from_a_slack_connect_guest_is_refused_and_said_to_them_only(
    rx: Harness, slack: Slack, world: Fakes, alertmanager: Alertmanager
) -> None:
    incident_id = await opened(rx)

    r = await slack.click(SILENCE, incident_id, GUEST)

    assert (r.status_code, r.content) == (200, b"")
    assert alertmanager.fake.silences == []
    (said,) = slack.responses()
    assert (said["response_type"], said["text"]) == ("ephemeral", SILENCE_REFUSED)
    detail = await rx.incident(incident_id)
    assert detail["silences"] == []
    assert slack_timeline(detail) == [
        "Silence 2h asked in Slack by @alice (U0GUEST) refused: "
        "from another Slack organisation, not named in owner.responders"
    ]
    await rx.tick()
    assert world.slack.edits(message(world).ts) == []
    # A member of the workspace still may.
    assert (await slack.click(SILENCE, incident_id, BOB)).status_code == 200
    assert len(alertmanager.fake.silences) == 1


async def test_a_silence_that_fails_is_recorded_and_said_to_the_person(
    rx: Harness, slack: Slack, world: Fakes, alertmanager: Alertmanager
) -> None:
    incident_id = await opened(rx)
    alertmanager.server.inject(Fault(path="/api/v2/silences", status=500))

    assert (await slack.click(SILENCE, incident_id, BOB)).status_code == 200

    detail = await rx.incident(incident_id)
    assert detail["silences"] == []
    asked, failed = slack_timeline(detail)
    assert asked == "Silence 2h asked in Slack by @bob (U0BOB)"
    assert failed.startswith("Silence 2h asked in Slack by @bob (U0BOB) failed: Alertmanager: ")
    (said,) = slack.responses()
    assert said["response_type"] == "ephemeral"
    assert said["text"].startswith("Silence 2h failed: Alertmanager: ")
    assert "500" in said["text"]
    await rx.tick()
    assert world.slack.edits(message(world).ts) == []


async def test_a_silence_that_fails_partway_keeps_what_was_made_and_says_how_many(
    rx: Harness, slack: Slack, world: Fakes, alertmanager: Alertmanager
) -> None:
    latency = make_alert("payment-service", alertname="PaymentLatency")
    incident_id = await opened(rx, PAYMENT, latency)
    # The first silence passes (a fault that changes nothing), the second fails.
    alertmanager.server.inject(Fault(path="/api/v2/silences"))
    alertmanager.server.inject(Fault(path="/api/v2/silences", status=500))

    assert (await slack.click(SILENCE, incident_id, BOB)).status_code == 200

    detail = await rx.incident(incident_id)
    assert [s["id"] for s in detail["silences"]] == ["silence-1"]
    made, left = [e["text"] for e in detail["timeline"] if e["kind"] == "alertmanager"]
    assert made == "1 alert(s) silenced in Alertmanager for 2h by @bob (U0BOB)"
    assert left.startswith("1 alert(s) (") and " not silenced: " in left
    (said,) = slack.responses()
    assert said["text"] == (
        "Silence 2h failed: Alertmanager: 1 of 2 alert(s) silenced, kept on the incident's "
        f"silences; {left}"
    )
    # The message shows what was silenced, as after a whole silence.
    await rx.tick()
    assert people(message(world)) == ["Silenced 2h by @bob (U0BOB)"]


async def test_refusals_change_nothing(
    rx: Harness, slack: Slack, world: Fakes, clock: FakeClock
) -> None:
    incident_id = await opened(rx)
    before = await rx.incident(incident_id)

    forged = slack.signed(slack.click_payload(ACK, incident_id), secret="not-the-secret")
    r = await slack.send(*forged)
    assert (r.status_code, r.json()) == (
        401,
        {"error": "X-Slack-Signature does not match a signing secret"},
    )
    body, headers = slack.signed(slack.click_payload(ACK, incident_id))
    unsigned = {k: v for k, v in headers.items() if k != "x-slack-signature"}
    assert (await slack.send(body, unsigned)).status_code == 401
    # Signed right, but stamped six minutes ago: a replay.
    old = slack.signed(slack.click_payload(ACK, incident_id), at=clock.now - 360)
    r = await slack.send(*old)
    assert r.status_code == 401
    assert r.json() == {"error": "X-Slack-Request-Timestamp is missing or more than 300s from now"}
    # Signed right just now, and held back for ten minutes by the receiver's clock.
    held = slack.signed(slack.click_payload(ACK, incident_id))
    clock.advance(600)
    assert (await slack.send(*held)).status_code == 401
    # Signed right, for an incident this receiver never had: said to the person only.
    r = await slack.click(ACK, "checkout-0000000000000000-1")
    assert (r.status_code, r.content) == (200, b"")
    (said,) = slack.responses()
    assert "no incident checkout-0000000000000000-1" in said["text"]
    r = await slack.submit({"id": "V1", "callback_id": FIXED, "private_metadata": "nope"}, {})
    assert (r.status_code, r.json()["response_action"]) == (200, "errors")
    # A runbook link button: Slack wants a 200, and nothing happens.
    r = await slack.click("link-0", incident_id)
    assert (r.status_code, r.content) == (200, b"")

    await rx.tick()
    after = await rx.incident(incident_id)
    assert after["response"] is None
    assert after["feedback"] == after["silences"] == []
    assert after["timeline"] == before["timeline"]
    assert world.pagerduty.actions(incident_id) == ["trigger"]
    assert world.slack.edits(message(world).ts) == []


async def test_signed_junk_is_a_payload_error(slack: Slack) -> None:
    r = await slack.send(*slack.sign(b"payload=%7B%22type%22%3A%20%22block_actions%22%7D"))
    assert (r.status_code, r.json()["error"]) == (422, "user: Field required")
    r = await slack.send(*slack.sign(b"nothing=here"))
    assert r.status_code == 400
    assert "no payload field" in r.json()["error"]


async def test_without_a_signing_secret_the_endpoint_is_not_there(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path), clock) as h:
        r = await h.client.post("/inbound/slack/interactions", content=b"payload=%7B%7D")
        assert r.status_code == 404
        assert "inbound.slack.signing_secret" in r.json()["error"]


# -- the message's buttons and its line of what people did ----------------------------


def _ids(posted: dict[str, Any]) -> list[str]:
    (actions,) = [b for b in posted["blocks"] if b.get("block_id") == "jr_actions"]
    assert {e["value"] for e in actions["elements"]} == {"checkout-eu-1"}
    return [e["action_id"] for e in actions["elements"]]


def _blocks(**overrides: Any) -> dict[str, Any]:
    rendered = render(make_incident(**overrides), "https://rx.example.com/i", buttons=True)
    return {"text": rendered.text, "blocks": rendered.blocks}


def test_buttons_follow_the_incident() -> None:
    assert _ids(_blocks()) == [ACK, USEFUL, NOT_USEFUL, WRONG_CAUSE, FIXED, SILENCE]
    acknowledged = {"acknowledged_at": "2026-04-18T10:01:00.000Z", "acknowledged_by": "x"}
    assert ACK not in _ids(_blocks(response=acknowledged))
    assert WRONG_CAUSE not in _ids(_blocks(probable_causes=[]))
    resolved = _blocks(status="resolved", resolved_at="2026-04-18T11:00:00.000Z")
    assert _ids(resolved) == [USEFUL, NOT_USEFUL, FIXED]
    without = render(make_incident(), None)
    assert not [b for b in without.blocks if b.get("block_id") == "jr_actions"]


async def test_a_crowded_hostile_message_keeps_slacks_limits(world: Fakes) -> None:
    long = "y" * 5000
    who = f"@{HOSTILE} (U0MALLORY) {long}"
    crowded = _blocks(
        title="t" * 400,
        summary="s" * 10_000,
        suggested_actions=[{"title": f"do {i} {long}"} for i in range(80)],
        runbooks=[{"title": f"rb {i}", "url": f"https://rb.example/{i}"} for i in range(80)],
        response={"acknowledged_at": "2026-04-18T10:01:00.000Z", "acknowledged_by": who},
        feedback=[
            {"at": "2026-04-18T10:02:00.000Z", "useful": i % 2 == 0, "by": f"{who}{i}"}
            for i in range(40)
        ]
        + [{"at": "2026-04-18T10:03:00.000Z", "fixed_by": f"{HOSTILE} {long}", "by": who}] * 5
        + [{"at": "2026-04-18T10:04:00.000Z", "wrong_cause": True, "by": who}],
        silences=[
            {
                "id": f"s{i}",
                "at": "2026-04-18T10:05:00.000Z",
                "ends_at": "2026-04-18T12:05:00.000Z",
                "by": who,
            }
            for i in range(100)
        ],
    )
    client = WebClient(token=SLACK_TOKEN, base_url=f"{world.slack_server.url}/api/")

    answer = await anyio.to_thread.run_sync(
        lambda: client.chat_postMessage(channel="#incidents", **crowded)
    )

    assert answer["ok"]
    (posted,) = world.slack.messages("#incidents")
    lines = people(posted)
    assert [line.split(" ", 2)[:2] for line in lines] == [
        ["Acknowledged", "by"],
        ["Marked", "useful"],
        ["Marked", "not"],
        ["Wrong", "cause,"],
        ["Fixed", "by:"],
        ["Fixed", "by:"],
        ["Silenced", "2h"],
    ]
    assert all(len(line) <= 120 and "<" not in line and ">" not in line for line in lines)
    assert all(line.endswith("… (truncated)") for line in lines)
    assert lines[0].startswith("Acknowledged by @&lt;!channel&gt; *bold* (U0MALLORY) yyy")


async def test_a_button_of_another_message_does_not_act_on_the_incident(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    # Another installation sharing the Slack app may number its incidents the same way:
    # the id alone does not say the click was on this incident's message.
    incident_id = await opened(rx)
    r = await slack.click(ACK, incident_id, message_ts="1776500000.999999")
    assert (r.status_code, r.content) == (200, b"")
    (said,) = slack.responses()
    assert "not the Slack message of incident" in said["text"]
    assert (await rx.incident(incident_id))["response"] is None
    r = await slack.click(ACK, incident_id, message_ts=message(world).ts)
    assert r.status_code == 200
    assert (await rx.incident(incident_id))["response"]["acknowledged_by"] == "@alice (U0ALICE)"


def clicked(user: dict[str, str], **where: Any) -> Interaction:
    """A click by ``user``, from the workspace T0HOME unless ``where`` says otherwise
    (``team``, ``enterprise``)."""
    payload = {"type": "block_actions", "user": user, "team": {"id": "T0HOME"}} | where
    return parse(urlencode({"payload": json.dumps(payload)}).encode())


def test_a_handle_counts_only_for_a_person_of_the_apps_workspace() -> None:
    home = {"id": "U1", "username": "alice", "name": "alice", "team_id": "T0HOME"}
    assert clicked(home).handles() == ["@alice", "@alice"]
    # Slack Connect: the same handle in another organisation proves nothing here.
    assert clicked(home | {"id": "U9", "team_id": "T0OTHER"}).handles() == []


def test_on_enterprise_grid_a_member_of_the_organisation_keeps_their_handle() -> None:
    # There Slack reports user.team_id as the organisation's id (E...), while team is the
    # workspace, with its enterprise_id (docs.slack.dev, "block_actions payload").
    alice = {"id": "W0ALICE", "username": "alice", "name": "alice", "team_id": "E0GRID"}
    grid = {
        "team": {"id": "T0HOME", "domain": "acme-prod", "enterprise_id": "E0GRID"},
        "enterprise": {"id": "E0GRID", "name": "Acme"},
    }
    member = clicked(alice, **grid)
    person = Person.of(member.user.who, [member.user.id, *member.handles()])
    assert refusal("assist", person, ["@alice"]) is None
    # Installed on the whole organisation, a payload may name no workspace at all.
    org_wide = clicked(alice, team=None, enterprise={"id": "E0GRID"})
    assert org_wide.handles() == ["@alice", "@alice"]
    # A guest from another organisation, on Enterprise Grid or not, is still a guest.
    for theirs in ("E0OTHER", "T0OTHER"):
        assert clicked(alice | {"team_id": theirs}, **grid).handles() == []
        assert (
            clicked(alice | {"team_id": theirs}, team=None, enterprise={"id": "E0GRID"}).handles()
            == []
        )


def test_a_slack_connect_guest_may_silence_only_when_named_by_user_id() -> None:
    guest = clicked(GUEST)
    # As for Run, a guest's @handle proves nothing; their user id does.
    assert not may_silence(guest, [])
    assert not may_silence(guest, ["@alice", "alice@example.com"])
    assert may_silence(guest, [" u0guest "])
    # Members of the workspace or its Enterprise Grid organisation need not be named.
    assert may_silence(clicked(GUEST | {"team_id": "T0HOME"}), [])
    grid = {"team": {"id": "T0HOME", "enterprise_id": "E0GRID"}}
    assert may_silence(clicked(GUEST | {"team_id": "E0GRID"}, **grid), [])
