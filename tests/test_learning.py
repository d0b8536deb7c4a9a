"""Learning from outcomes as people and runs feed it: an action's verdict, what fixed an
incident, and the usefulness figures in /stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.sinks.slack_blocks import FIXED, NOT_USEFUL
from tests.conftest import FakeClock, make_alert, resolved
from tests.inbound.test_slack_interactions import (  # noqa: F401  (fixtures)
    alertmanager,
    opened,
    rx,
    slack,
)
from tests.support.fake_deploy import FIRST_ALERT, deploys, journeys, serve_deploy
from tests.support.harness import Harness, harness, write_config
from tests.support.sink_world import Fakes
from tests.support.slack_clicks import ALICE, BOB, Slack

pytestmark = pytest.mark.anyio


async def test_a_run_made_after_every_alert_had_resolved_is_not_credited_with_the_resolve(
    tmp_path: Path,
) -> None:
    """An ``auto`` rollback whose first attempt hits a 503 is retried by the outbox; by
    then the only alert has resolved on its own (the incident is merely waiting out
    resolve_after). The incident then resolves, and the run is judged "helped" -- which
    feeds "ran on 1: helped 1" on every similar incident and helped_pct in /stats."""
    with serve_deploy() as deploy:
        cfg = write_config(
            tmp_path,
            "automation: {outcome_window: 10m}\n",
            journeys=journeys(tmp_path, deploy.url, "auto"),
        )
        async with harness(cfg, FakeClock(FIRST_ALERT - 60)) as h:
            posted = await h.client.post("/api/v1/events", content=json.dumps(deploys()))
            assert posted.is_success
            h.clock.now = FIRST_ALERT
            deploy.fail(503, times=1)  # the deploy system is briefly unavailable
            alert = make_alert()
            (inc,) = (await h.post([alert])).json()["incidents"]
            await h.tick(30)  # notified; the auto run's first attempt fails
            assert deploy.effects == []
            # The alert resolves on its own before the retry.
            h.clock.advance(5)
            await h.post([resolved(alert)])
            detail = await h.incident(inc)
            assert (detail["status"], detail["firing_count"]) == ("open", 0)
            for _ in range(12):  # the outbox retries
                await h.tick(10)
                if deploy.effects:
                    break
            assert len(deploy.effects) == 1
            [run] = (await h.incident(inc))["actions_run"]
            assert run["status"] == "ran"
            await h.tick(300)  # resolve_after passes: resolved, as it would have anyway
            detail = await h.incident(inc)
            assert detail["status"] == "resolved"
            [run] = detail["actions_run"]
            # Nothing was firing when it ran: the resolve is not its doing.
            assert run.get("outcome", {}).get("verdict") != "helped", run["outcome"]


async def test_what_fixed_it_in_slack_is_not_a_usefulness_verdict_in_stats(
    rx: Harness,  # noqa: F811
    slack: Slack,  # noqa: F811
    world: Fakes,
) -> None:
    """docs/operating.md: not_useful_pct = incidents marked not useful / incidents with a
    feedback saying useful (true or false); "feedback that says only something else
    (wrong cause, wrong grouping, what fixed it) neither counts as 'not useful' nor as a
    verdict". The Slack "What fixed it?" form records useful: true, so an incident where
    someone only said what fixed it dilutes the noise figure."""
    noisy = await opened(rx, make_alert("payment-service", alertname="PaymentErrors"))
    fixed = await opened(rx, make_alert("payment-service", alertname="PaymentErrors", region="us"))
    assert (await slack.click(NOT_USEFUL, noisy, BOB)).status_code == 200
    assert (await slack.click(FIXED, fixed, ALICE)).status_code == 200
    view = world.slack.views()[-1]
    written = {
        "jr_fixed_text": {"text": {"type": "plain_text_input", "value": "restarted the pod"}}
    }
    assert (await slack.submit(view, written)).status_code == 200
    stats = (await rx.client.get("/api/v1/stats")).json()
    # One incident judged (Bob's), and it was not useful: 100 %.
    assert stats["signal"]["not_useful_pct"] == 100.0


async def test_what_fixed_it_survives_later_feedback(tmp_path: Path, clock: FakeClock) -> None:
    """Feedback is a list capped at the latest 50 records (store/lua/annotate.lua): once 50
    more "useful" clicks or posts arrive, the record saying what fixed it is silently
    dropped, and the next similar incident is told nothing fixed it."""
    async with harness(write_config(tmp_path), clock) as h:
        alert = make_alert()
        (first,) = (await h.post([alert])).json()["incidents"]
        await h.tick(30)
        fix = {"useful": True, "fixed_by": "rollback-deploy", "by": "alice"}
        r = await h.client.post(f"/api/v1/incidents/{first}/feedback", json=fix)
        assert r.status_code == 201
        for i in range(50):  # a P1 in a busy channel: everyone presses Useful
            r = await h.client.post(
                f"/api/v1/incidents/{first}/feedback", json={"useful": True, "by": f"u{i}"}
            )
            assert r.status_code == 201
        h.clock.advance(60)
        await h.post([resolved(alert)])
        await h.tick(0)
        await h.tick(300)
        assert (await h.incident(first))["status"] == "resolved"
        h.clock.advance(3600)
        again = make_alert(fingerprint="0000000000000abc")
        (second,) = (await h.post([again])).json()["incidents"]
        await h.tick(30)
        assert second != first
        [past] = (await h.incident(second))["similar"]
        assert past["id"] == first
        assert past["fixed_by"] == "rollback-deploy"


async def test_a_blank_fixed_by_is_refused_and_does_not_replace_the_fix(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A blank ``fixed_by`` (or ``by``) is refused, naming it: being the latest word, it
    would replace what Alice said fixed the incident on the next similar one."""
    async with harness(write_config(tmp_path), clock) as h:
        alert = make_alert()
        (first,) = (await h.post([alert])).json()["incidents"]
        await h.tick(30)
        url = f"/api/v1/incidents/{first}/feedback"
        fix = {"useful": True, "fixed_by": "rollback-deploy", "by": "alice"}
        assert (await h.client.post(url, json=fix)).status_code == 201
        blank = await h.client.post(url, json={"useful": True, "fixed_by": "  \n", "by": "bob"})
        assert blank.status_code == 422
        assert blank.json()["errors"] == [{"field": "fixed_by", "reason": "must not be blank"}]
        nobody = await h.client.post(url, json={"useful": True, "by": " "})
        assert (nobody.status_code, nobody.json()["errors"][0]["field"]) == (422, "by")
        h.clock.advance(60)
        await h.post([resolved(alert)])
        await h.tick(0)
        await h.tick(300)
        h.clock.advance(3600)
        (second,) = (await h.post([make_alert(fingerprint="0000000000000abd")])).json()["incidents"]
        await h.tick(30)
        [past] = (await h.incident(second))["similar"]
        assert past["fixed_by"] == "rollback-deploy"
