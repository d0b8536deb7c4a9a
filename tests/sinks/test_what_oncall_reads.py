"""What the on-call engineer reads at 3 a.m. in PagerDuty, Slack and Jira: counts that
say what they count, titles that keep the priority, the owner never pushed out, and no
button asking for what a person already did."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock, make_alert, resolved
from tests.support.harness import Harness, harness, write_config
from tests.support.sink_world import Fakes

pytestmark = pytest.mark.anyio

PD_SECRET = "pd-webhook-secret"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
async def rx(tmp_path: Path, clock: FakeClock, world: Fakes) -> AsyncIterator[Harness]:
    inbound = (
        f"inbound: {{pagerduty: {{signing_secrets: [{PD_SECRET}]}},"
        f" slack: {{signing_secret: {SLACK_SECRET}}}}}\n"
    )
    config = write_config(tmp_path, world.config() + inbound)
    async with harness(config, clock, configured_sinks=True) as h:
        yield h


def slack_blocks(world: Fakes) -> list[dict[str, object]]:
    (message,) = world.slack.messages("#inc-checkout")
    return message.blocks


async def test_what_broke_in_a_storm_larger_than_the_page_does_not_miscount(
    tmp_path: Path, clock: FakeClock
) -> None:
    # 600 PaymentErrors and 3 CartErrors fire: the chart reads the incident's 500 latest
    # alerts only. It must not say "500× PaymentErrors" (600 fire) as if that were all
    # that broke, with the CartErrors gone without a word.
    async with harness(write_config(tmp_path), clock) as h:
        storm = [
            make_alert("payment-service", alertname="PaymentErrors", instance=f"p{i}")
            for i in range(600)
        ]
        storm += [
            make_alert("cart-api", alertname="CartErrors", instance=f"c{i}", severity="warning")
            for i in range(3)
        ]
        await h.post(storm)
        await h.tick(30)
        (kind, _, sent) = h.sink.sent[-1]
        assert kind == "open"
        assert "603 of 603 alert(s) firing" in sent.summary
        broke = sent.summary.split("What broke", 1)[1].split(". For whom", 1)[0]
        # Either the counts are of every firing alert, or the line says it read only some.
        assert "600× PaymentErrors" in broke or "500 of 603" in broke, broke


async def test_a_long_group_label_does_not_cut_the_priority_out_of_the_title(
    tmp_path: Path, clock: FakeClock
) -> None:
    # A region label of 150 characters (a cluster name, say): the title that PagerDuty
    # pages with and Jira files under must still say how bad and what fails.
    region = "eu-west-1-" + "k8s-prod-cluster-" * 8
    async with harness(write_config(tmp_path), clock) as h:
        await h.post([make_alert("payment-service", alertname="PaymentErrors", region=region)])
        await h.tick(30)
        (_, _, sent) = h.sink.sent[-1]
        assert len(sent.title) <= 120
        assert f" {sent.priority} — " in sent.title, sent.title
        assert "payment-service" in sent.title, sent.title


async def cart_resolved_after_the_open(rx: Harness) -> str:
    """An incident of a payment-service warning and a critical cart-api alert, told; then
    the cart alert resolves and an update goes out (the priority fell, only
    payment-service fires). Its id."""
    pay = make_alert("payment-service", alertname="PaymentErrors", severity="warning")
    cart = make_alert("cart-api", alertname="CartErrors")
    (incident_id,) = (await rx.post([pay, cart])).json()["incidents"]
    await rx.tick(30)
    await rx.post([resolved(cart)])
    await rx.tick(120)
    return str(incident_id)


async def test_the_cause_does_not_say_only_service_when_the_incident_shows_two(
    rx: Harness, world: Fakes
) -> None:
    incident_id = await cart_resolved_after_the_open(rx)
    (issue,) = world.jira.issues()
    detail = await rx.incident(incident_id)
    assert detail["services"] == ["cart-api", "payment-service"]
    # The summary names both services; its cause must not call one "the only service".
    assert "firing across cart-api, payment-service" in detail["summary"]
    assert "is the only service in the incident" not in detail["summary"], detail["summary"]
    assert "only service in the incident" not in json.dumps(slack_blocks(world))
    assert "only service in the incident" not in issue.description


async def test_pagerduty_component_is_a_service_that_fires(rx: Harness, world: Fakes) -> None:
    incident_id = await cart_resolved_after_the_open(rx)
    last = world.pagerduty.events(incident_id)[-1]
    assert last["event_action"] == "trigger"
    payload = last["payload"]
    assert payload["summary"].endswith("1 alert in payment-service"), payload["summary"]
    # PagerDuty shows the component beside the summary: not the service that stopped firing.
    assert payload["component"] == "payment-service"


async def test_slack_does_not_ask_to_acknowledge_what_a_person_resolved_in_pagerduty(
    rx: Harness, world: Fakes, clock: FakeClock
) -> None:
    (incident_id,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
    await rx.tick(30)
    clock.advance(60)
    body, headers = world.pagerduty.person("resolved", incident_id, "Bob", PD_SECRET, at=clock.now)
    assert (await rx.client.post("/inbound/pagerduty", content=body, headers=headers)).is_success
    await rx.tick()
    blocks = slack_blocks(world)
    said = json.dumps(blocks)
    assert "Resolved by Bob" in said
    buttons = [
        e["action_id"]
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]  # type: ignore[attr-defined]
    ]
    # Bob took it up and closed it: the channel is not asked, in green, to acknowledge it.
    assert "jr_ack" not in buttons


async def test_a_storm_over_many_services_keeps_the_owner_in_slack(
    rx: Harness, world: Fakes
) -> None:
    # One rule (`up == 0`) fires for 60 services in one evaluation: same startsAt, same
    # severity, one alert each, so which one is upstream is not known. Naming all 60 in
    # the cause (twice) must not push the owner out of Slack's summary section.
    storm = [
        make_alert(f"cart-svc-{i:02d}-frontend-edge", alertname="InstanceDown") for i in range(60)
    ]
    await rx.post(storm)
    await rx.tick(30)
    section = next(b for b in slack_blocks(world) if b["type"] == "section")
    text = section["text"]["text"]  # type: ignore[index]
    assert "Owner: payments." in text, text[-200:]


def strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


async def test_control_characters_in_alert_text_reach_no_vendor_and_the_ticket_is_filed(
    rx: Harness, world: Fakes
) -> None:
    # A NUL in an annotation: Jira on PostgreSQL answered every attempt with a 500 and the
    # issue went to the dead letters unfiled; an ANSI colour or a C1 CSI reached Slack,
    # PagerDuty and Jira as they were, for a terminal showing an export to obey.
    controls = "\x00\x1b[31m\x07\x7f\x9b2J"
    alert = make_alert(
        "payment-service",
        alertname=f"PaymentErrors{controls}",
        region=f"eu{controls}",
        annotations={"summary": f"declines{controls}", "description": f"a{controls}\nb"},
    )
    (incident_id,) = (await rx.post([alert])).json()["incidents"]
    await rx.tick(30)

    (issue,) = world.jira.issues()
    assert "eu\\x00\\x1b[31m\\x07\\x7f\\x9b2J" in issue.summary
    assert world.pagerduty.actions(incident_id) == ["trigger"]
    assert slack_blocks(world)
    servers = (world.jira.server, world.pagerduty.server, world.slack_server)
    sent = [json.loads(s.body) for server in servers for s in server.seen if s.body]
    assert [
        t for body in sent for t in strings(body) if re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", t)
    ] == []
    (details,) = [e["payload"]["custom_details"] for e in world.pagerduty.events(incident_id)]
    # A description keeps its lines.
    assert (
        details["alerts"][0]["annotations"]["description"] == "a\\x00\\x1b[31m\\x07\\x7f\\x9b2J\nb"
    )
