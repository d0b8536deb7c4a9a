"""The Run button at ``assist``, end to end: the real Slack sink puts it on the message,
a signed click comes back through ``/inbound/slack/interactions``, the run goes through the
outbox to the fake deploy system, and the decision reaches the thread and the Jira issue."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.act.levels import Person
from receiver.sinks.slack_blocks import RUN_PREFIX
from tests.conftest import FakeClock, make_alert
from tests.support.fake_deploy import FIRST_ALERT, FakeDeploy, deploys, journeys, serve_deploy
from tests.support.fake_server import Fault
from tests.support.fake_slack import Message
from tests.support.harness import Harness, harness, write_config
from tests.support.sink_world import Fakes
from tests.support.slack_clicks import ALICE, BOB, SECRET, Slack

pytestmark = pytest.mark.anyio

RUN = RUN_PREFIX + "rollback"


@pytest.fixture
def deploy() -> Iterator[FakeDeploy]:
    with serve_deploy() as fake:
        yield fake


@pytest.fixture
async def rx(tmp_path: Path, world: Fakes, deploy: FakeDeploy) -> AsyncIterator[Harness]:
    extra = f"inbound: {{slack: {{signing_secret: {SECRET}}}}}\n"
    config = write_config(
        tmp_path, world.config() + extra, journeys=journeys(tmp_path, deploy.url, "assist")
    )
    async with harness(config, FakeClock(FIRST_ALERT - 60), configured_sinks=True) as h:
        yield h


@pytest.fixture
def slack(rx: Harness, world: Fakes) -> Slack:
    return Slack(rx, world, rx.clock)


async def opened(rx: Harness, region: str = "eu") -> str:
    events = json.dumps(deploys(region))
    assert (await rx.client.post("/api/v1/events", content=events)).is_success
    rx.clock.now = FIRST_ALERT
    (incident_id,) = (await rx.post([make_alert()])).json()["incidents"]
    await rx.tick(30)
    return incident_id


def message(world: Fakes) -> Message:
    (posted,) = world.slack.messages("#inc-checkout")
    return posted


def run_button(posted: Message) -> dict[str, Any]:
    (button,) = [
        e
        for b in posted.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("action_id") == RUN
    ]
    return button


def shown(world: Fakes) -> str:
    """The Run button's ``value`` on the message as it is now: what a click on it sends."""
    return str(run_button(message(world))["value"])


async def runs(rx: Harness, incident_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await rx.incident(incident_id))["actions_run"]
    return found


async def test_a_responder_runs_it_once_and_everyone_hears(
    rx: Harness, slack: Slack, world: Fakes, deploy: FakeDeploy
) -> None:
    incident_id = await opened(rx)
    button = run_button(message(world))
    assert button["text"]["text"] == "Run: Roll back payment-service to v41"
    assert button["confirm"]["confirm"]["text"] == "Run"  # Slack asks before it sends
    assert deploy.calls == []  # assist: nothing runs by itself

    r = await slack.click(RUN, shown(world), ALICE)
    assert (r.status_code, r.content) == (200, b"")
    assert slack.responses()[-1]["text"].startswith("Roll back payment-service to v41: running")
    await rx.tick(1)
    [effect] = deploy.effects
    assert effect.key == f"{incident_id}/rollback"
    [run] = await runs(rx, incident_id)
    assert (run["status"], run["by"]) == ("ran", "@alice (U0ALICE)")

    # A second press (or a double click) runs nothing more.
    await slack.click(RUN, shown(world), ALICE)
    assert "already ran" in slack.responses()[-1]["text"]
    await rx.tick(1)
    assert len(deploy.calls) == 1 and len(await runs(rx, incident_id)) == 1

    posted = message(world)
    replies = [m.text for m in world.slack.replies(posted.ts)]
    assert any("Roll back payment-service to v41: ran (by @alice (U0ALICE))" in t for t in replies)
    (issue,) = world.jira.with_label(f"journey-receiver-{incident_id}")
    # Jira's wiki markup, with the person's words escaped.
    ran = r"Roll back payment\-service to v41: ran \(by \@alice \(U0ALICE\)\): 202"
    assert any(ran in str(c.body) for c in issue.comments)


async def test_someone_not_a_responder_is_refused_and_the_refusal_recorded(
    rx: Harness, slack: Slack, world: Fakes, deploy: FakeDeploy
) -> None:
    incident_id = await opened(rx)

    r = await slack.click(RUN, shown(world), BOB)
    assert r.status_code == 200
    assert (
        "@bob (U0BOB) is not one of the journey's owner.responders" in slack.responses()[-1]["text"]
    )
    await rx.tick(1)
    assert deploy.calls == []
    [run] = await runs(rx, incident_id)
    assert (run["status"], run["by"]) == ("refused", "@bob (U0BOB)")
    metrics = (await rx.client.get("/metrics")).text
    assert 'action="rollback",journey="checkout",status="refused"} 1.0' in metrics


async def test_a_change_out_of_the_incidents_scope_is_refused(
    rx: Harness, slack: Slack, deploy: FakeDeploy
) -> None:
    # The deploys went to region us; the incident is in eu.
    incident_id = await opened(rx, region="us")

    await slack.click(RUN, incident_id, ALICE)
    await rx.tick(1)
    assert deploy.calls == []
    [run] = await runs(rx, incident_id)
    assert run["status"] == "refused"
    assert (
        run["result"]
        == "its conditions do not hold now: no deploy in the incident's scope before it started"
    )


async def test_a_click_that_is_not_signed_runs_nothing(
    rx: Harness, slack: Slack, deploy: FakeDeploy
) -> None:
    incident_id = await opened(rx)

    body, headers = slack.signed(slack.click_payload(RUN, incident_id, ALICE), secret="wrong")
    assert (await slack.send(body, headers)).status_code == 401
    await rx.tick(1)
    assert deploy.calls == [] and await runs(rx, incident_id) == []


async def test_a_deploy_older_than_within_is_refused_with_the_reason(
    rx: Harness, slack: Slack, deploy: FakeDeploy
) -> None:
    incident_id = await opened(rx)
    # The Run button was on the message; by the time Alice presses it the storm looks
    # otherwise: the journeys file now wants the deploy within 1 minute.
    path = rx.receiver.settings.config.journeys_file
    path.write_text(path.read_text().replace("within: 15m", "within: 1m"))
    rx.receiver.reload()

    await slack.click(RUN, incident_id, ALICE)
    await rx.tick(1)
    assert deploy.calls == []
    [run] = await runs(rx, incident_id)
    assert (run["status"], run["by"]) == ("refused", "@alice (U0ALICE)")
    assert run["result"] == (
        "its conditions do not hold now: the deploy of payment-service was 2 min before the "
        "first alert, more than 1 min"
    )


async def test_the_kill_switch_refuses_a_responder(
    rx: Harness, slack: Slack, world: Fakes, deploy: FakeDeploy
) -> None:
    incident_id = await opened(rx)
    config = rx.receiver.config_path
    assert config is not None
    config.write_text(config.read_text() + "automation: {enabled: false}\n")
    rx.receiver.reload()

    await slack.click(RUN, shown(world), ALICE)
    assert "automation is switched off" in slack.responses()[-1]["text"]
    await rx.tick(1)
    assert deploy.calls == []
    [run] = await runs(rx, incident_id)
    assert run["status"] == "refused"


async def test_a_press_runs_the_change_its_button_showed_or_nothing(
    rx: Harness, slack: Slack, world: Fakes, deploy: FakeDeploy
) -> None:
    """The Run button and Slack's confirmation say "Roll back payment-service to v41". When
    the probable cause moves before the click (a late deploy event; the message's edit held
    back by Slack's rate limit, as in a storm), the click must not roll back to v42, a
    version nobody confirmed: it is refused, saying what changed."""
    incident_id = await opened(rx)
    button = run_button(message(world))
    assert button["text"]["text"] == "Run: Roll back payment-service to v41"
    world.slack_server.inject(Fault("/api/chat.update", status=429, retry_after="60", times=5))
    late = [{"type": "deploy", "service": "payment-service", "version": "v42.1",
             "at": "2026-04-18T08:08:30Z", "environment": "prod", "region": "eu"}]  # fmt: skip
    assert (await rx.client.post("/api/v1/events", content=json.dumps(late))).is_success
    rx.clock.advance(120)
    await rx.post([make_alert(alertname="Latency")])
    await rx.tick(1)
    assert run_button(message(world))["text"]["text"] == "Run: Roll back payment-service to v41"
    [now] = (await rx.incident(incident_id))["suggested_actions"]
    assert now["title"] == "Roll back payment-service to v42"

    # Alice confirms "Roll back payment-service to v41".
    await slack.click(RUN, button["value"], ALICE)
    assert slack.responses()[-1]["text"] == (
        "Roll back payment-service to v42 was not run: it now names another change than the "
        "one you confirmed: version, previous_version differ from what was shown; look again "
        "and press Run on it as it is shown now"
    )
    await rx.tick(1)
    assert deploy.calls == []
    [run] = await runs(rx, incident_id)
    assert (run["status"], run["by"]) == ("refused", "@alice (U0ALICE)")

    # Once Slack takes the edit, the button shows v42, and confirming that runs it.
    for _ in range(10):
        await rx.tick(61)
    button = run_button(message(world))
    assert button["text"]["text"] == "Run: Roll back payment-service to v42"
    await slack.click(RUN, button["value"], ALICE)
    await rx.tick(1)
    assert [e.body["to"] for e in deploy.effects] == ["v42"]


async def test_a_run_button_from_before_it_said_what_it_showed_runs_nothing_and_is_replaced(
    rx: Harness, slack: Slack, world: Fakes, deploy: FakeDeploy
) -> None:
    """A message posted by an older receiver carries Run buttons whose value is the
    incident id alone: what the person confirmed is not known, so the click runs nothing;
    the refusal edits the message, whose new button runs."""
    incident_id = await opened(rx)

    await slack.click(RUN, incident_id, ALICE)
    assert slack.responses()[-1]["text"] == (
        "Roll back payment-service to v41 was not run: the Run pressed does not say which "
        "change it was confirmed for: press Run again where the action is shown as it is now"
    )
    await rx.tick(1)
    assert deploy.calls == []
    assert shown(world).startswith(f"{incident_id} ")
    await slack.click(RUN, shown(world), ALICE)
    await rx.tick(1)
    assert [e.body["to"] for e in deploy.effects] == ["v41"]


async def test_a_runnable_action_gets_its_run_button_whatever_comes_before_it(
    tmp_path: Path, world: Fakes, deploy: FakeDeploy
) -> None:
    """Run buttons are capped at five, counted among the runnable actions: a journey that
    lists five hand-done suggestions before its rollback still shows the rollback's."""
    path = journeys(tmp_path, deploy.url, "assist")
    by_hand = "".join(f"      - title: Check dashboard {i}\n" for i in range(5))
    path.write_text(path.read_text().replace("    actions:\n", "    actions:\n" + by_hand))
    extra = f"inbound: {{slack: {{signing_secret: {SECRET}}}}}\n"
    config = write_config(tmp_path, world.config() + extra, journeys=path)
    async with harness(config, FakeClock(FIRST_ALERT - 60), configured_sinks=True) as rx:
        incident_id = await opened(rx)
        suggested = (await rx.incident(incident_id))["suggested_actions"]
        assert [a["runnable"] for a in suggested] == [False] * 5 + [True]
        ids = [
            e.get("action_id")
            for b in message(world).blocks
            if b["type"] == "actions"
            for e in b["elements"]
        ]
        assert [i for i in ids if str(i).startswith(RUN_PREFIX)] == [RUN]


def context_texts(world: Fakes) -> str:
    return " ".join(
        e.get("text", "")
        for b in message(world).blocks
        if b["type"] == "context"
        for e in b["elements"]
    )


async def test_a_refused_press_after_the_run_leaves_the_message_saying_it_ran(
    rx: Harness, slack: Slack, world: Fakes, deploy: FakeDeploy
) -> None:
    incident_id = await opened(rx)
    await slack.click(RUN, shown(world), ALICE)
    await rx.tick(1)
    await rx.tick(1)
    ran = "Roll back payment-service to v41: ran (by @alice (U0ALICE))"
    assert ran in context_texts(world)
    # Bob, not a responder, presses the Run button still on the message.
    await slack.click(RUN, shown(world), BOB)
    for _ in range(3):
        await rx.tick(1)
    assert [r["status"] for r in await runs(rx, incident_id)] == ["ran", "refused"]
    assert ran in context_texts(world)
    assert len(deploy.effects) == 1


async def test_a_press_after_a_failed_run_is_told_it_failed_and_so_is_the_page(
    rx: Harness, slack: Slack, world: Fakes, deploy: FakeDeploy
) -> None:
    deploy.fail(400, times=1)  # the deploy system refuses: nothing rolled back
    incident_id = await opened(rx)
    await slack.click(RUN, shown(world), ALICE)
    await rx.tick(1)
    assert [r["status"] for r in await runs(rx, incident_id)] == ["failed"]
    await slack.click(RUN, shown(world), ALICE)
    told = slack.responses()[-1]["text"]
    assert told == (
        "Roll back payment-service to v41 failed on this incident and is not tried again "
        "(an action runs at most once per incident)"
    )
    page = (await rx.client.get(f"/incidents/{incident_id}")).text
    assert "It has run on this incident" not in page
    assert "It was tried on this incident and failed (see Runs)" in page
    assert deploy.effects == []


async def test_refused_presses_never_push_the_record_of_a_run_off_the_incident(
    rx: Harness, slack: Slack, world: Fakes
) -> None:
    # Anyone in the channel may press Run, and each refusal is recorded; the incident keeps
    # its latest 50 records, but the run that ran stays among them, and is judged.
    incident_id = await opened(rx)
    await slack.click(RUN, shown(world), ALICE)
    await rx.tick(1)
    stored = await rx.receiver.store.load(incident_id)
    assert stored is not None
    mallory = Person.of("@mallory (U0MAL)", ["U0MAL", "@mallory"])
    for n in range(60):
        await rx.receiver.runs.press(stored.state, "rollback", mallory, f"{n}:U0MAL", "x")
    kept = await runs(rx, incident_id)
    assert len(kept) == 50 and kept[0]["status"] == "ran"
    await rx.tick(900)  # the outcome window's end
    assert "outcome" in (await runs(rx, incident_id))[0]


async def test_a_press_naming_no_action_is_refused_with_its_id_clipped(
    rx: Harness, slack: Slack, world: Fakes, deploy: FakeDeploy
) -> None:
    incident_id = await opened(rx)
    # Slack takes an action_id of up to 255 characters; the click's is the sender's word.
    key = "rollback-" + "x" * 228 + "\n<!channel>"
    assert len(RUN_PREFIX + key) <= 255

    r = await slack.click(RUN_PREFIX + key, shown(world), ALICE)
    assert r.status_code == 200
    told = slack.responses()[-1]["text"]
    assert "has no action 'rollback-xxx" in told
    assert "x" * 100 not in told and "\n" not in told
    await rx.tick(1)
    assert deploy.calls == []
    [run] = await runs(rx, incident_id)
    assert (run["status"], run["by"]) == ("refused", "@alice (U0ALICE)")
    for said in (run["action"], run["title"], run["result"]):
        assert "x" * 100 not in said and "\n" not in said
    entry = (await rx.incident(incident_id))["timeline"][-1]["text"]
    assert "x" * 100 not in entry
