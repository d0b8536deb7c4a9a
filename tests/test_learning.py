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


# A person's changed verdict, a fix that did not hold, a cause people called wrong, and a
# flapping alert's blips crowding the past out of the memory.


async def test_a_person_who_takes_back_their_not_useful_is_not_counted_as_not_useful(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Alice clicks "Not useful" by mistake, then "Useful". The Slack message counts the
    latest verdict of each person ("Marked useful by alice"); /stats kept counting her
    first click: 100 % not useful, and the alertname listed as noise to tune away."""
    async with harness(write_config(tmp_path), clock) as h:
        (inc,) = (await h.post([make_alert(alertname="PaymentErrors")])).json()["incidents"]
        await h.tick(30)
        url = f"/api/v1/incidents/{inc}/feedback"
        assert (await h.client.post(url, json={"useful": False, "by": "alice"})).status_code == 201
        assert (await h.client.post(url, json={"useful": True, "by": "alice"})).status_code == 201
        # Bob's "not useful" without a change of mind still counts, whatever Alice says.
        (other,) = (await h.post([make_alert(region="us")])).json()["incidents"]
        await h.tick(30)
        bob = {"useful": False, "by": "bob"}
        assert (await h.client.post(f"/api/v1/incidents/{other}/feedback", json=bob)).is_success
        h.clock.advance(120)
        signal = (await h.client.get("/api/v1/stats")).json()["signal"]
        assert signal["not_useful_pct"] == 50.0
        assert [n["alertname"] for n in signal["noisy_alertnames"]] == ["HighErrorRate"]


async def test_a_run_whose_incident_reopens_within_the_window_did_not_help(
    tmp_path: Path,
) -> None:
    """The auto rollback runs, the alerts resolve, the incident resolves ("helped" at
    once), and two minutes later the same alerts fire again: the incident reopens within
    the 30 min outcome window. The fix did not hold, yet the run stayed "helped": in
    /stats (helped_pct 100) and on every similar incident's history."""
    with serve_deploy() as deploy:
        cfg = write_config(
            tmp_path,
            "automation: {outcome_window: 30m}\n",
            journeys=journeys(tmp_path, deploy.url, "auto"),
        )
        async with harness(cfg, FakeClock(FIRST_ALERT - 60)) as rx:
            posted = await rx.client.post("/api/v1/events", content=json.dumps(deploys()))
            assert posted.is_success
            rx.clock.now = FIRST_ALERT
            storm = [make_alert(alertname=f"Errors{i}", fingerprint=f"storm-{i}") for i in range(3)]
            (first,) = (await rx.post(storm)).json()["incidents"]
            await rx.tick(30)
            assert len(deploy.effects) == 1
            rx.clock.advance(60)
            await rx.post([resolved(a) for a in storm])
            await rx.tick(0)
            await rx.tick(300)
            detail = await rx.incident(first)
            assert detail["status"] == "resolved"
            assert detail["actions_run"][0]["outcome"]["verdict"] == "helped"
            rx.clock.advance(120)  # well within the outcome window: it fires again
            again = [{**a, "startsAt": "2026-04-18T08:40:00Z"} for a in storm]
            (reopened,) = (await rx.post(again)).json()["incidents"]
            await rx.tick(30)
            detail = await rx.incident(first)
            assert (reopened, detail["status"], detail["reopened_count"]) == (first, "open", 1)
            [run] = detail["actions_run"]
            assert run.get("outcome", {}).get("verdict") != "helped", run
            await rx.tick(1800)  # the window's end: judged on what it sees then
            [run] = (await rx.incident(first))["actions_run"]
            assert run["outcome"]["verdict"] == "no_change", run["outcome"]
            rx.clock.advance(120)
            actions = (await rx.client.get("/api/v1/stats")).json()["actions"]
            assert (actions["helped"], actions["no_change"]) == (0, 1)


async def test_a_cause_people_called_wrong_is_no_change_to_detection_in_stats(
    tmp_path: Path,
) -> None:
    """The incident names the deploy 2 minutes before it as its probable cause; its people
    say the cause was wrong (it was something else). /stats kept the deploy as "the change
    behind the incident": change_to_detection_s_p50 stayed 120 s."""
    with serve_deploy() as deploy:
        cfg = write_config(tmp_path, journeys=journeys(tmp_path, deploy.url, "recommend"))
        async with harness(cfg, FakeClock(FIRST_ALERT - 60)) as h:
            posted = await h.client.post("/api/v1/events", content=json.dumps(deploys()))
            assert posted.is_success
            h.clock.now = FIRST_ALERT
            (inc,) = (await h.post([make_alert()])).json()["incidents"]
            await h.tick(30)
            [cause] = (await h.incident(inc))["probable_causes"]
            assert cause["text"] == "deploy v42 to payment-service"
            business = (await h.client.get("/api/v1/stats")).json()["business"]
            assert business["change_to_detection_s_p50"] == 120.0
            said = {"useful": True, "wrong_cause": True, "cause": "a feature flag"}
            r = await h.client.post(f"/api/v1/incidents/{inc}/feedback", json=said)
            assert r.status_code == 201
            h.clock.advance(120)  # past the shared answer's minute
            business = (await h.client.get("/api/v1/stats")).json()["business"]
            assert business["change_to_detection_s_p50"] is None


async def test_a_flapping_alerts_blips_never_crowd_the_fixed_incident_out_of_memory(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A probe flapping all afternoon leaves 501 blips in the journey (each came and went
    within group_wait). Blips are never similar, but the recall reads only the journey's
    500 newest incidents, blips included: the incident that was fixed, older than them,
    is no longer compared, and the next one is told of no similar past incident."""
    async with harness(write_config(tmp_path), clock) as h:
        alert = make_alert(alertname="PaymentErrors", fingerprint="fixed-1")
        (fixed,) = (await h.post([alert])).json()["incidents"]
        await h.tick(30)
        said = {"useful": True, "fixed_by": "rollback-deploy"}
        r = await h.client.post(f"/api/v1/incidents/{fixed}/feedback", json=said)
        assert r.status_code == 201
        await h.post([resolved(alert)])
        await h.tick(0)
        await h.tick(300)
        assert (await h.incident(fixed))["status"] == "resolved"
        h.clock.advance(3600)
        flaps = [
            make_alert(alertname="Probe", region=f"r{i}", fingerprint=f"flap-{i}")
            for i in range(501)
        ]
        await h.post(flaps)
        h.clock.advance(5)
        await h.post([resolved(a) for a in flaps])
        for _ in range(12):
            await h.tick(30)
        assert len(await h.incidents("status=resolved&limit=1000")) == 502
        h.clock.advance(3600)
        again = make_alert(alertname="PaymentErrors", fingerprint="again-1")
        (new,) = (await h.post([again])).json()["incidents"]
        await h.tick(30)
        similar = [(s["id"], s["fixed_by"]) for s in (await h.incident(new))["similar"]]
        assert similar == [(fixed, "rollback-deploy")]


@pytest.mark.parametrize("who", ["alice", None], ids=["alice", "the-API"])
@pytest.mark.parametrize("first", [{"useful": False}, {"useful": False, "note": "noise"}])
async def test_the_feedback_cap_keeps_a_persons_latest_verdict(
    tmp_path: Path, clock: FakeClock, first: dict[str, object], who: str | None
) -> None:
    """Alice (or the API, records with no "by": one voice) said "not useful", then took it
    back with a plain "useful"; 49 others press Useful. The cap (50) let the oldest plain
    vote go first: that "useful", leaving "not useful" as the word (the Slack message then
    says so, and /stats counts it)."""
    by = {"by": who} if who else {}
    async with harness(write_config(tmp_path), clock) as h:
        (inc,) = (await h.post([make_alert()])).json()["incidents"]
        await h.tick(30)
        url = f"/api/v1/incidents/{inc}/feedback"
        assert (await h.client.post(url, json={**first, **by})).status_code == 201
        assert (await h.client.post(url, json={"useful": True, **by})).status_code == 201
        for i in range(49):
            r = await h.client.post(url, json={"useful": True, "by": f"u{i}"})
            assert r.status_code == 201
        feedback = (await h.incident(inc))["feedback"]
        assert len(feedback) == 50
        said = [f["useful"] for f in feedback if f.get("by") == who]
        assert said[-1] is True
        h.clock.advance(120)
        assert (await h.client.get("/api/v1/stats")).json()["signal"]["not_useful_pct"] == 0.0


async def test_a_by_less_not_useful_taken_back_is_counted_as_slack_shows_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The API (no "by") says not useful, then useful: one voice, whose latest word
    counts, in /stats as in the Slack message ("Marked useful by the API")."""
    async with harness(write_config(tmp_path), clock) as h:
        (inc,) = (await h.post([make_alert()])).json()["incidents"]
        await h.tick(30)
        url = f"/api/v1/incidents/{inc}/feedback"
        assert (await h.client.post(url, json={"useful": False})).status_code == 201
        assert (await h.client.post(url, json={"useful": True})).status_code == 201
        h.clock.advance(120)
        assert (await h.client.get("/api/v1/stats")).json()["signal"]["not_useful_pct"] == 0.0
