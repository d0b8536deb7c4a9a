"""The Run button at ``assist``, end to end: the real Slack sink puts it on the message,
a signed click comes back through ``/inbound/slack/interactions``, the run goes through the
outbox to the fake deploy system, and the decision reaches the thread and the Jira issue."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.sinks.slack_blocks import RUN_PREFIX
from tests.conftest import FakeClock, make_alert
from tests.support.fake_deploy import FIRST_ALERT, FakeDeploy, deploys, journeys, serve_deploy
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

    r = await slack.click(RUN, incident_id, ALICE)
    assert (r.status_code, r.content) == (200, b"")
    assert slack.responses()[-1]["text"].startswith("Roll back payment-service to v41: running")
    await rx.tick(1)
    [effect] = deploy.effects
    assert effect.key == f"{incident_id}/rollback"
    [run] = await runs(rx, incident_id)
    assert (run["status"], run["by"]) == ("ran", "@alice (U0ALICE)")

    # A second press (or a double click) runs nothing more.
    await slack.click(RUN, incident_id, ALICE)
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

    r = await slack.click(RUN, incident_id, BOB)
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
    rx: Harness, slack: Slack, deploy: FakeDeploy
) -> None:
    incident_id = await opened(rx)
    config = rx.receiver.config_path
    assert config is not None
    config.write_text(config.read_text() + "automation: {enabled: false}\n")
    rx.receiver.reload()

    await slack.click(RUN, incident_id, ALICE)
    assert "automation is switched off" in slack.responses()[-1]["text"]
    await rx.tick(1)
    assert deploy.calls == []
    [run] = await runs(rx, incident_id)
    assert run["status"] == "refused"
