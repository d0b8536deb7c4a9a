"""The same storm after a deploy at each automation level, and the guard rails, end to end:
webhook in, scheduler ticks on a fake clock, runs through the outbox to a fake deploy
system that checks signatures and idempotency keys."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.act.levels import Person
from receiver.act.runs import _changed_since_asked
from receiver.act.webhook import WebhookExecutor
from receiver.actions import shown_by_id
from receiver.config import Action, Journey, Owner
from receiver.errors import StoreUnavailable
from receiver.store.deliveries import Job
from receiver.store.records import CauseRecord, ChangeRecord, IncidentState
from tests.conftest import FakeClock, make_alert
from tests.support.fake_deploy import FIRST_ALERT, FakeDeploy, deploys, journeys, serve_deploy
from tests.support.harness import Harness, harness, write_config

pytestmark = pytest.mark.anyio

DEPLOYS = deploys()
ALICE = Person.of("alice", ["alice@example.com"])


@pytest.fixture
def deploy() -> Iterator[FakeDeploy]:
    with serve_deploy() as fake:
        yield fake


@contextlib.asynccontextmanager
async def stormed(
    tmp: Path,
    deploy: FakeDeploy,
    level: str,
    automation: str = "",
    *,
    when: str = "",
    changes: list[dict[str, str]] = DEPLOYS,
) -> AsyncIterator[tuple[Harness, str]]:
    """A receiver at ``level``, the deploys (``changes``) posted, then a storm of five
    alerts on payment-service; the incident is notified (group_wait over) when this
    yields."""
    text = "outbox: {backoff_initial: 1s, backoff_max: 2s, max_attempts: 3}\n" + automation
    cfg = write_config(tmp, text, journeys=journeys(tmp, deploy.url, level, when))
    clock = FakeClock(FIRST_ALERT - 60)
    async with harness(cfg, clock) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(changes))).is_success
        clock.now = FIRST_ALERT
        storm = [make_alert(alertname=f"Errors{i}") for i in range(5)]
        (inc,) = (await rx.post(storm)).json()["incidents"]
        await rx.tick(30)
        assert rx.sink.kinds() == ["open"]
        yield rx, inc


async def runs(rx: Harness, inc: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await rx.incident(inc))["actions_run"]
    return found


async def test_observe_keeps_the_suggestion_on_the_incident_and_off_the_sinks(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    async with stormed(tmp_path, deploy, "observe") as (rx, inc):
        sent = rx.sink.sent[0][2]
        assert sent.sink_actions == []
        detail = await rx.incident(inc)
        assert [a["title"] for a in detail["suggested_actions"]] == [
            "Roll back payment-service to v41"
        ]
        await rx.tick(300)
        assert deploy.calls == [] and await runs(rx, inc) == []


async def test_recommend_shows_the_suggestion_and_runs_nothing(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    async with stormed(tmp_path, deploy, "recommend") as (rx, inc):
        [action] = rx.sink.sent[0][2].sink_actions
        assert (action["title"], action["runnable"]) == ("Roll back payment-service to v41", True)
        await rx.tick(300)
        assert deploy.calls == [] and await runs(rx, inc) == []


async def test_auto_runs_once_signed_and_keyed_and_records_it(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        [effect] = deploy.effects
        assert effect.key == f"{inc}/rollback"
        assert effect.body == {"service": "payment-service", "to": "v41", "incident": inc}
        [run] = await runs(rx, inc)
        assert (run["action"], run["by"], run["status"]) == ("rollback", "auto", "ran")
        assert run["title"] == "Roll back payment-service to v41"
        assert run["result"].startswith("202: ")
        # Later decisions (more alerts, KPI looks) never run it again.
        await rx.post([make_alert(alertname="Errors9")])
        for _ in range(5):
            await rx.tick(120)
        assert len(deploy.calls) == 1
        timeline = [e["text"] for e in (await rx.incident(inc))["timeline"]]
        assert "Roll back payment-service to v41: run asked by auto" in timeline
        ran = "Roll back payment-service to v41: ran (by auto): 202"
        assert any(t.startswith(ran) for t in timeline)
        metrics = (await rx.client.get("/metrics")).text
        assert (
            'journey_receiver_action_runs_total{action="rollback",journey="checkout",'
            'status="ran"} 1.0' in metrics
        )


async def test_a_change_events_text_cannot_forge_a_line_of_the_receivers_log(
    tmp_path: Path, deploy: FakeDeploy, caplog: pytest.LogCaptureFixture
) -> None:
    # The version a deploy event names fills the action's title ("Roll back {service} to
    # {previous_version}"), which the receiver logs with each decision about the run.
    forged = "v41\n2026-04-18 08:14:00,000 INFO journey_receiver.act all clear\x1b[2K"
    changes = [{**DEPLOYS[0], "version": forged}, DEPLOYS[1]]
    caplog.set_level(logging.INFO, logger="journey_receiver.act")
    async with stormed(tmp_path, deploy, "auto", changes=changes) as (rx, inc):
        [run] = await runs(rx, inc)
        assert run["status"] == "ran"
    said = [r.getMessage() for r in caplog.records if r.name == "journey_receiver.act"]
    [ran] = [line for line in said if line.startswith(f"action rollback of incident {inc}: ")]
    # The version is still there to read, on the one line, and steers no terminal.
    assert "to v41\\x0a2026-04-18 08:14:00,000 INFO" in ran, ran
    assert all("\n" not in line and "\x1b" not in line for line in said), said


async def test_auto_under_dry_run_calls_nothing_and_says_so_once(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    async with stormed(tmp_path, deploy, "auto", "automation: {dry_run: true}\n") as (rx, inc):
        await rx.tick(120)
        await rx.tick(120)
        assert deploy.calls == []
        [run] = await runs(rx, inc)
        assert (run["status"], run["by"]) == ("dry_run", "auto")


async def test_the_kill_switch_stops_auto_and_is_recorded_once(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    async with stormed(tmp_path, deploy, "auto", "automation: {enabled: false}\n") as (rx, inc):
        await rx.tick(120)
        await rx.tick(120)
        assert deploy.calls == []
        [run] = await runs(rx, inc)
        assert (run["status"], run["by"]) == ("skipped", "auto")
        assert "automation.enabled: false" in run["result"]


async def test_the_rate_limit_holds_over_incidents(tmp_path: Path, deploy: FakeDeploy) -> None:
    limit = "automation: {max_runs_per_hour: 1}\n"
    async with stormed(tmp_path, deploy, "auto", limit) as (rx, inc):
        assert len(deploy.effects) == 1
        # A second region's storm: the same conditions, but the hour's one run is taken.
        rx.clock.advance(60)
        us = [{**d, "region": "us"} for d in DEPLOYS]
        assert (await rx.client.post("/api/v1/events", content=json.dumps(us))).is_success
        (other,) = (await rx.post([make_alert(region="us")])).json()["incidents"]
        await rx.tick(30)
        assert other != inc and len(deploy.effects) == 1
        [run] = await runs(rx, other)
        assert run["status"] == "skipped"
        assert "max_runs_per_hour (1)" in run["result"]
        # An hour later the slot is free again: the next decision runs it.
        rx.clock.advance(3600)
        await rx.post([make_alert(region="us", alertname="More")])
        await rx.tick(120)
        assert len(deploy.effects) == 2
        assert [r["status"] for r in await runs(rx, other)] == ["skipped", "ran"]


async def test_a_dead_run_stays_dead_when_deliveries_are_redriven(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    deploy.fail(503, times=3)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        await rx.tick(2)
        await rx.tick(2)
        [run] = await runs(rx, inc)
        assert run["status"] == "failed"
        dead = (await rx.client.get("/api/v1/deliveries?state=dead")).json()["deliveries"]
        assert [d["kind"] for d in dead] == ["run"]
        # "Redrive everything" after an outage: a run would pass by the guards it was
        # asked under (the hour's budget, the level, who asked); it is cleared instead,
        # so the dead letters (and the alert on them) do not hold it for ever.
        r = await rx.client.post("/api/v1/deliveries/redrive", content=b"")
        assert r.json() == {"redriven": 0, "jobs": [], "cleared": [dead[0]["id"]], "expired": []}
        await rx.tick(2)
        assert deploy.effects == [] and [r["status"] for r in await runs(rx, inc)] == ["failed"]
        assert (await rx.client.get("/api/v1/deliveries?state=dead")).json()["deliveries"] == []
        r = await rx.client.post("/api/v1/deliveries/redrive", content=b"")
        assert r.json() == {"redriven": 0, "jobs": [], "cleared": [], "expired": []}


async def test_a_run_held_back_by_the_kill_switch_holds_no_slot_of_later_hours(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    deploy.fail(503, times=1)
    limit = "automation: {max_runs_per_hour: 1}\n"
    async with stormed(tmp_path, deploy, "auto", limit) as (rx, inc):
        config = rx.receiver.config_path
        assert config is not None
        config.write_text(config.read_text().replace(limit, "automation: {enabled: false}\n"))
        rx.receiver.reload()
        await rx.tick(2)  # the retry: skipped by the kill switch
        assert [r["status"] for r in await runs(rx, inc)] == ["skipped"]
        config.write_text(config.read_text().replace("automation: {enabled: false}\n", limit))
        rx.receiver.reload()
        # An hour on, a decision of that incident asks again: its mark stands, no slot.
        rx.clock.advance(3600)
        await rx.post([make_alert(alertname="More")])
        await rx.tick(120)
        # So another incident's run still gets the hour's one slot.
        us = [{**d, "region": "us"} for d in DEPLOYS]
        assert (await rx.client.post("/api/v1/events", content=json.dumps(us))).is_success
        (other,) = (await rx.post([make_alert(region="us")])).json()["incidents"]
        await rx.tick(30)
        assert [r["status"] for r in await runs(rx, other)] == ["ran"]


@pytest.mark.parametrize(
    ("before", "after", "why"),
    [
        ("automation: auto", "automation: recommend", "the journey was set to recommend"),
        ("within: 15m", "within: 1m", "its conditions no longer held when it was to run: "),
    ],
)
async def test_a_retry_goes_ahead_only_while_the_level_and_conditions_still_allow_it(
    tmp_path: Path, deploy: FakeDeploy, before: str, after: str, why: str
) -> None:
    deploy.fail(503, times=1)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        # The first attempt failed; before its retry the journey is changed by a reload.
        assert await runs(rx, inc) == []
        path = tmp_path / "journeys.yaml"
        path.write_text(path.read_text().replace(before, after))
        rx.receiver.reload()
        await rx.tick(2)
        [run] = await runs(rx, inc)
        assert (run["status"], run["by"]) == ("skipped", "auto")
        assert run["result"].startswith(why)
        assert deploy.calls == []
        await rx.tick(60)
        assert deploy.calls == [] and len(await runs(rx, inc)) == 1


async def test_auto_never_runs_on_a_deploy_older_than_within(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    early = [{**DEPLOYS[0]}, {**DEPLOYS[1], "at": "2026-04-18T07:50:00Z"}]
    cfg = write_config(tmp_path, journeys=journeys(tmp_path, deploy.url, "auto"))
    clock = FakeClock(FIRST_ALERT - 60)
    async with harness(cfg, clock) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(early))).is_success
        clock.now = FIRST_ALERT
        (inc,) = (await rx.post([make_alert()])).json()["incidents"]
        await rx.tick(30)
        await rx.tick(120)
        assert deploy.calls == [] and await runs(rx, inc) == []


async def test_a_failing_deploy_system_is_retried_then_recorded_as_failed(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    deploy.fail(400, times=1)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        [run] = await runs(rx, inc)
        assert run["status"] == "failed"
        assert "400" in run["result"]
        # Failed is settled: later decisions do not try again by themselves.
        await rx.tick(120)
        assert len(deploy.server.seen) == 1 and deploy.effects == []


def test_a_retry_is_skipped_when_its_conditions_now_name_another_change() -> None:
    action = Action.model_validate(
        {"id": "rollback", "title": "Roll back {service}", "when": {"change_type": "deploy"}}
    )
    journey = Journey(
        id="checkout", name="Checkout", weight=1.0, owner=Owner(team="p"), stages=[],
        actions=[action], automation="auto",
    )  # fmt: skip
    at = 1_776_500_000_000
    cart = ChangeRecord(id="x", type="deploy", service="cart", at=at - 300_000,
                        minutes_before=5, overlap=True, version="2.0")  # fmt: skip
    payments = ChangeRecord(id="y", type="deploy", service="payments", at=at - 600_000,
                            minutes_before=10, overlap=True, version="7.1")  # fmt: skip
    # Asked for when the cart deploy was the trusted cause: roll back cart 2.0.
    job = Job(incident="inc-1", sink="action:rollback", kind="run", due=at, by="auto",
              values={"service": "cart", "version": "2.0", "incident_id": "inc-1"})  # fmt: skip
    state = IncidentState(
        id="inc-1", key="k", digest="d", journey="checkout", group_labels={}, status="open",
        created_at=at, updated_at=at, first_firing_at=at, changes=[cart, payments],
        probable_causes=[
            CauseRecord(kind="change", text="deploy 7.1 to payments", score=30, change_id="y"),
            CauseRecord(kind="change", text="deploy 2.0 to cart", score=25, change_id="x"),
        ],
    )  # fmt: skip
    # At the retry, the payments deploy ranks first: its conditions name another change.
    assert _changed_since_asked(job, journey, action, state, "P1") == (
        "its conditions now name another change than the one it was asked for (service, version)"
    )
    state.probable_causes.reverse()
    assert _changed_since_asked(job, journey, action, state, "P1") is None


async def test_a_journey_reloaded_to_auto_runs_on_its_open_incident(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # The team moves the journey to auto during the outage; the alerts keep firing and
    # nothing new arrives: the run goes ahead now, not at some next alert.
    async with stormed(tmp_path, deploy, "recommend") as (rx, inc):
        assert deploy.calls == []
        path = tmp_path / "journeys.yaml"
        path.write_text(path.read_text().replace("automation: recommend", "automation: auto"))
        rx.receiver.reload()
        await rx.tick(1)
        await rx.tick(1)
        assert len(deploy.effects) == 1, await runs(rx, inc)


@contextlib.asynccontextmanager
async def two_replicas(
    tmp: Path, deploy: FakeDeploy, redis_port: int
) -> AsyncIterator[tuple[Harness, Harness, str]]:
    """Two replicas at ``auto`` on one Redis; the deploys and the storm posted to the
    first, nothing decided yet."""
    store = f"store: {{url: 'redis://127.0.0.1:{redis_port}/0', key_prefix: {tmp.name}}}\n"
    cfg = write_config(tmp, store, journeys=journeys(tmp, deploy.url, "auto"))
    cfg.write_text(cfg.read_text().replace("store: {url: 'memory://'}\n", ""))
    clock = FakeClock(FIRST_ALERT - 60)
    async with harness(cfg, clock) as first, harness(cfg, clock, first.sink) as second:
        assert (await first.client.post("/api/v1/events", content=json.dumps(DEPLOYS))).is_success
        clock.now = FIRST_ALERT
        storm = [make_alert(alertname=f"Errors{i}") for i in range(5)]
        (inc,) = (await first.post(storm)).json()["incidents"]
        yield first, second, inc


def answer_lost(landed: Callable[..., Awaitable[Any]] | None = None) -> Callable[..., Any]:
    """A store call whose answer never comes back (a failover): ``landed`` runs first,
    when the call itself reached Redis."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        if landed is not None:
            await landed(*args, **kwargs)
        raise StoreUnavailable("store unreachable: Connection reset by peer")

    return call


async def test_a_replica_lost_right_after_the_open_leaves_the_run_to_another(
    tmp_path: Path, deploy: FakeDeploy, redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The replica that decides the open loses the store's answer to its commit (a
    # failover), which landed: the incident is notified, and nothing new arrives. The run
    # it would have asked for next is asked for by the other replica.
    async with two_replicas(tmp_path, deploy, redis_port) as (first, second, inc):
        store = first.receiver.store
        monkeypatch.setattr(store, "commit", answer_lost(store.commit))
        await first.tick(30)
        assert first.sink.kinds() == ["open"] and await runs(first, inc) == []
        for _ in range(3):
            await second.tick(30)
        assert len(deploy.effects) == 1, await runs(second, inc)
        assert [r["status"] for r in await runs(second, inc)] == ["ran"]


async def test_a_run_recorded_before_its_job_was_dropped_is_not_sent_again(
    tmp_path: Path, deploy: FakeDeploy, redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The replica that runs the rollback records it, then loses the store before the job
    # leaves its queue. The other replica takes the job over after the lease: the run is
    # done and recorded, so it calls nothing (GitHub, say, ignores Idempotency-Key).
    async with two_replicas(tmp_path, deploy, redis_port) as (first, second, inc):
        monkeypatch.setattr(first.receiver.store.deliveries, "ack", answer_lost())
        await first.tick(30)
        assert len(deploy.calls) == 1
        assert [r["status"] for r in await runs(first, inc)] == ["ran"]
        for _ in range(3):
            await second.tick(61)
        assert len(deploy.calls) == 1
        assert [r["status"] for r in await runs(second, inc)] == ["ran"]
        assert (await second.client.get("/api/v1/deliveries?state=pending")).json()[
            "deliveries"
        ] == []


async def test_a_run_held_back_by_the_hours_limit_runs_once_a_slot_is_free(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # A second region's storm within the hour: its run is held back, and its alerts keep
    # firing with nothing new coming in. Once the hour's slot is free, it runs.
    async with stormed(tmp_path, deploy, "auto", "automation: {max_runs_per_hour: 1}\n") as (
        rx,
        _,
    ):
        assert len(deploy.effects) == 1
        us = [{**d, "region": "us"} for d in deploys()]
        assert (await rx.client.post("/api/v1/events", content=json.dumps(us))).is_success
        (other,) = (await rx.post([make_alert(region="us")])).json()["incidents"]
        await rx.tick(30)
        assert [r["status"] for r in await runs(rx, other)] == ["skipped"]
        for _ in range(8):
            await rx.tick(600)
        assert len(deploy.effects) == 2, await runs(rx, other)
        # Told once, however often it was asked for again meanwhile.
        assert [r["status"] for r in await runs(rx, other)] == ["skipped", "ran"]


async def test_a_queued_run_held_by_the_kill_switch_is_told_once(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    deploy.fail(503, times=1)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        # Asked for; its first attempt got a 503, so a retry is queued.
        assert await runs(rx, inc) == []
        cfg = tmp_path / "receiver.yaml"
        cfg.write_text(cfg.read_text() + "automation: {enabled: false}\n")
        rx.receiver.reload()
        await rx.post([make_alert(alertname="More")])  # a new decision of the incident
        await rx.tick(2)  # ... and the retry's attempt
        await rx.tick(2)
        told = [r["status"] for r in await runs(rx, inc)]
        assert told == ["skipped"]
        assert deploy.effects == []


async def test_a_run_naming_a_group_label_the_alerts_lack_is_not_sent_empty(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # Grouped by [env, region], the action's URL names {region}, and the alerts carry no
    # region: the incident's region is "" (as in Alertmanager's grouping), a value it lacks.
    # A rollback to ".../" could mean every region: it is not sent.
    cfg = write_config(tmp_path, journeys=journeys(tmp_path, deploy.url + "/{region}", "auto"))
    clock = FakeClock(FIRST_ALERT - 60)
    async with harness(cfg, clock) as rx:
        everywhere = [{k: v for k, v in d.items() if k != "region"} for d in deploys()]
        assert (await rx.client.post("/api/v1/events", content=json.dumps(everywhere))).is_success
        clock.now = FIRST_ALERT
        alert = make_alert()
        del alert["labels"]["region"]
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(30)
        await rx.tick(2)
        assert (await rx.incident(inc))["group_labels"] == {"env": "prod", "region": ""}
        assert deploy.calls == []
        [run] = await runs(rx, inc)
        assert run["status"] == "skipped" and "{region}" in run["result"]


async def test_a_refusal_names_the_action_as_people_saw_it(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # The condition no longer holds (a reload narrowed `within`): the refusal's title is
    # the action's as shown, never "{service}" or "its previous version (unknown)".
    async with stormed(tmp_path, deploy, "assist") as (rx, inc):
        path = tmp_path / "journeys.yaml"
        path.write_text(path.read_text().replace("within: 15m", "within: 1m"))
        rx.receiver.reload()
        stored = await rx.receiver.store.load(inc)
        assert stored is not None
        answer = await rx.receiver.runs.press(stored.state, "rollback", ALICE, "p1", "x")
        [run] = await runs(rx, inc)
    assert answer.status == "refused"
    assert run["title"] == "Roll back payment-service to the version before"
    assert run["title"] in answer.text


async def test_a_press_after_the_receivers_run_was_skipped_is_told_it_did_not_run(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # The receiver asked at auto; its first attempt got a 503, and before the retry the
    # team moved the journey back to assist: the retry is skipped. Alice, pressing Run, is
    # not told it "was already asked for", as if it were under way.
    deploy.fail(503, times=1)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        path = tmp_path / "journeys.yaml"
        path.write_text(path.read_text().replace("automation: auto", "automation: assist"))
        rx.receiver.reload()
        await rx.tick(2)
        [run] = await runs(rx, inc)
        assert run["status"] == "skipped"
        stored = await rx.receiver.store.load(inc)
        assert stored is not None
        journey = rx.receiver.settings.catalog.find(stored.state.journey)
        priority = rx.receiver.settings.impact(stored.state).priority
        shown = shown_by_id(journey, stored.state, priority)["rollback"]
        answer = await rx.receiver.runs.press(stored.state, "rollback", ALICE, "p1", shown)
        await rx.tick(2)
    assert deploy.effects == []
    assert "was asked for on this incident and not run" in answer.text, answer.text


async def test_executors_a_reload_replaced_are_closed_and_dropped(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # Each reload that changes an action's run gives it a new executor (an HTTP client
    # and its TLS context); the one it replaced must go once its round is over, not
    # when the receiver stops weeks later.
    async with stormed(tmp_path, deploy, "auto") as (rx, _):
        path = tmp_path / "journeys.yaml"
        for n in range(6):
            timeout = f"timeout: {n + 3}s"
            path.write_text(re.sub(r"timeout: \d+s", timeout, path.read_text()))
            rx.receiver.reload()
            region = f"r{n}"
            moved = [{**d, "region": region} for d in DEPLOYS]
            assert (await rx.client.post("/api/v1/events", content=json.dumps(moved))).is_success
            (inc,) = (await rx.post([make_alert(region=region)])).json()["incidents"]
            await rx.tick(30)
            assert [r["status"] for r in await runs(rx, inc)] == ["ran"]
        # Removed from journeys.yaml, its executor goes too.
        actions = re.compile(r"    actions:\n(.|\n)*?timeout: \d+s\n")
        gone = actions.sub("    actions: []\n", path.read_text())
        path.write_text(gone.replace("automation: auto", "automation: observe"))
        rx.receiver.reload()
        await rx.tick(1)
        gc.collect()
        executors = [o for o in gc.get_objects() if isinstance(o, WebhookExecutor)]
        assert executors == []
        assert len(deploy.calls) == 7


@pytest.mark.parametrize(
    ("before", "after", "what"),
    [
        ("url: {url}", "url: {url}/all-regions", "url"),
        ("{service: ", "{force: yes, service: ", "body"),
        ("timeout: 2s", "method: PUT\n            timeout: 2s", "method"),
    ],
)
async def test_a_retry_is_not_sent_as_a_reload_redefined_its_run(
    tmp_path: Path, deploy: FakeDeploy, before: str, after: str, what: str
) -> None:
    # Asked for under one run.webhook; its first attempt got a 503, and before the retry a
    # reload points the action elsewhere (or sends another body, another method). The
    # request nobody decided on is not sent: the retry is skipped, saying what changed.
    deploy.fail(503, times=1)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        path = tmp_path / "journeys.yaml"
        text = path.read_text()
        old, new = (s.replace("{url}", deploy.url) for s in (before, after))
        assert old in text
        path.write_text(text.replace(old, new))
        rx.receiver.reload()
        await rx.tick(2)
        await rx.tick(60)
        assert len(deploy.server.seen) == 1 and deploy.calls == [], deploy.calls
        [run] = await runs(rx, inc)
        assert (run["status"], run["by"]) == ("skipped", "auto")
        assert run["result"] == (
            f"its run.webhook in journeys.yaml changed since it was asked for ({what}): "
            "a request nobody decided on is not sent"
        )


async def test_a_retry_goes_ahead_when_a_reload_changed_only_how_its_run_is_sent(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # A longer timeout (or a rotated secret or token) changes how the request is sent,
    # not what it asks for: the retry goes ahead with what is configured now.
    deploy.fail(503, times=1)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        path = tmp_path / "journeys.yaml"
        path.write_text(path.read_text().replace("timeout: 2s", "timeout: 3s"))
        rx.receiver.reload()
        await rx.tick(2)
        assert [r["status"] for r in await runs(rx, inc)] == ["ran"]
        assert len(deploy.effects) == 1


async def test_a_retry_asked_by_someone_no_longer_a_responder_is_not_sent(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # Alice pressed Run; the first attempt got a 503, and before the retry she is taken
    # out of owner.responders: who may run the journey's actions is checked again.
    deploy.fail(503, times=1)
    async with stormed(tmp_path, deploy, "assist") as (rx, inc):
        stored = await rx.receiver.store.load(inc)
        assert stored is not None
        journey = rx.receiver.settings.catalog.find(stored.state.journey)
        priority = rx.receiver.settings.impact(stored.state).priority
        shown = shown_by_id(journey, stored.state, priority)["rollback"]
        answer = await rx.receiver.runs.press(stored.state, "rollback", ALICE, "p1", shown)
        assert answer.status == "queued"
        await rx.tick(0)  # its first attempt: a 503
        path = tmp_path / "journeys.yaml"
        path.write_text(path.read_text().replace('"alice@example.com"', '"bob@example.com"'))
        rx.receiver.reload()
        await rx.tick(2)
        await rx.tick(60)
        assert len(deploy.server.seen) == 1 and deploy.effects == []
        [run] = await runs(rx, inc)
        assert (run["status"], run["by"]) == ("skipped", "alice")
        assert run["result"] == (
            "by the time it was to run, alice is not one of the journey's owner.responders"
        )


async def test_a_retry_is_not_sent_once_max_runs_per_hour_is_set_to_zero(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # max_runs_per_hour: 0 lets no run start: a retry of one asked for before is held too.
    deploy.fail(503, times=1)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        cfg = tmp_path / "receiver.yaml"
        cfg.write_text(cfg.read_text() + "automation: {max_runs_per_hour: 0}\n")
        rx.receiver.reload()
        await rx.tick(2)
        await rx.tick(60)
        assert len(deploy.server.seen) == 1 and deploy.effects == []
        [run] = await runs(rx, inc)
        assert run["status"] == "skipped"
        assert "automation.max_runs_per_hour (0)" in run["result"]


def replica_config(tmp: Path, redis_port: int, journeys_yaml: str) -> Path:
    """One replica's receiver.yaml and journeys.yaml (``journeys_yaml``), in a directory
    of its own, on the Redis every replica of ``tmp`` shares."""
    store = f"store: {{url: 'redis://127.0.0.1:{redis_port}/0', key_prefix: {tmp.name}}}\n"
    outbox = "outbox: {backoff_initial: 1s, backoff_max: 2s, max_attempts: 5}\n"
    here = tmp / uuid.uuid4().hex[:8]
    here.mkdir()
    cfg = write_config(here, store + outbox, journeys=here / "journeys.yaml")
    (here / "journeys.yaml").write_text(journeys_yaml)
    cfg.write_text(cfg.read_text().replace("store: {url: 'memory://'}\n", ""))
    return cfg


@contextlib.asynccontextmanager
async def rolling(
    tmp: Path, redis_port: int, new_yaml: str, old_yaml: str
) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two replicas on one Redis during a rolling change of journeys.yaml: ``new`` reads
    ``new_yaml``, ``old`` still ``old_yaml``; the deploys posted, nothing else yet."""
    new_cfg = replica_config(tmp, redis_port, new_yaml)
    old_cfg = replica_config(tmp, redis_port, old_yaml)
    clock = FakeClock(FIRST_ALERT - 60)
    async with harness(new_cfg, clock) as new, harness(old_cfg, clock, new.sink) as old:
        assert (await new.client.post("/api/v1/events", content=json.dumps(DEPLOYS))).is_success
        clock.now = FIRST_ALERT
        yield new, old


async def storm(rx: Harness) -> str:
    (inc,) = (await rx.post([make_alert(alertname=f"Errors{i}") for i in range(5)])).json()[
        "incidents"
    ]
    return str(inc)


@pytest.mark.parametrize(
    "change", ["the journey moved to auto", "the action added", "the journey added"]
)
async def test_a_replica_still_on_the_old_journeys_yaml_leaves_a_new_run_to_one_on_the_new(
    tmp_path: Path, deploy: FakeDeploy, redis_port: int, change: str
) -> None:
    # A rolling change moves the journey to auto (or adds the action, or the journey). A
    # new replica asks
    # for the run; its first attempt gets a 503, and the old replica happens to claim the
    # retry. It does not skip it for good ("the journey was set to assist", "no longer in
    # journeys.yaml"): it gives it back, and the new replica runs it.
    new_yaml = journeys(tmp_path, deploy.url, "auto").read_text()
    if change == "the journey moved to auto":
        old_yaml = new_yaml.replace("automation: auto", "automation: assist")
    elif change == "the journey added":
        old_yaml = new_yaml.replace("id: checkout", "id: storefront")
    else:
        old_yaml = re.sub(r"    actions:\n(.|\n)*?timeout: 2s\n", "    actions: []\n", new_yaml)
        assert "rollback" not in old_yaml
    deploy.fail(503, times=1)
    async with rolling(tmp_path, redis_port, new_yaml, old_yaml) as (new, old):
        inc = await storm(new)
        await new.tick(30)  # decided, asked for; its first attempt: a 503
        assert len(deploy.server.seen) == 1
        await old.tick(5)  # the old replica claims the retry
        assert len(deploy.server.seen) == 1 and await runs(old, inc) == []
        retrying = (await old.client.get("/api/v1/deliveries?state=retrying")).json()
        [job] = retrying["deliveries"]
        assert "left to a replica that defines it as it was asked for" in job["error"]
        await new.tick(5)
        assert len(deploy.effects) == 1
        [run] = await runs(new, inc)
        assert (run["status"], run["by"]) == ("ran", "auto")


async def test_a_run_asked_under_the_old_journeys_yaml_is_sent_as_asked_or_not_at_all(
    tmp_path: Path, deploy: FakeDeploy, redis_port: int
) -> None:
    # The rolling change points the action at another URL. The old replica asked for the
    # run; its first attempt got a 503. The new replica, claiming the retry, leaves it to
    # the old one, which sends what was decided; once no replica defines the action as
    # it was asked for, a retry is skipped, saying so, rather than sent elsewhere.
    old_yaml = journeys(tmp_path, deploy.url, "auto").read_text()
    new_yaml = old_yaml.replace(f"url: {deploy.url}", f"url: {deploy.url}/v2")
    new_cfg = replica_config(tmp_path, redis_port, new_yaml)
    old_cfg = replica_config(tmp_path, redis_port, old_yaml)
    clock = FakeClock(FIRST_ALERT - 60)
    deploy.fail(503, times=1)
    async with harness(new_cfg, clock) as new:
        async with harness(old_cfg, clock, new.sink) as old:
            for region in ("eu", "us"):
                changes = json.dumps(deploys(region))
                assert (await old.client.post("/api/v1/events", content=changes)).is_success
            clock.now = FIRST_ALERT
            inc = await storm(old)
            await old.tick(30)
            assert len(deploy.server.seen) == 1
            await new.tick(5)  # the new replica claims the retry: given back
            assert len(deploy.server.seen) == 1 and await runs(new, inc) == []
            await old.tick(5)
            assert [c.target for c in deploy.calls] == ["/rollback"]
            [run] = await runs(old, inc)
            assert run["status"] == "ran"
            # The record names the definition it was decided and carried out under.
            assert len(run["definition"]) == 62

            deploy.fail(503, times=1)
            (other,) = (await old.post([make_alert(region="us")])).json()["incidents"]
            await old.tick(30)  # asked for; its first attempt: a 503
        # The old replica is gone; two minutes on, what it said of its actions expired.
        await new.tick(121)
        await new.tick(5)
        assert len(deploy.effects) == 1
        [skipped] = await runs(new, other)
    assert (skipped["status"], skipped["definition"]) == ("skipped", run["definition"])
    assert skipped["result"] == (
        "its run.webhook in journeys.yaml changed since it was asked for (url): "
        "a request nobody decided on is not sent"
    )


async def test_a_retry_of_an_action_a_reload_removed_is_skipped_where_people_look(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    # No replica defines the action any more: the retry is not sent, and why is on the
    # incident's record, its timeline and its page.
    deploy.fail(503, times=1)
    async with stormed(tmp_path, deploy, "auto") as (rx, inc):
        path = tmp_path / "journeys.yaml"
        actions = re.compile(r"    actions:\n(.|\n)*?timeout: 2s\n")
        path.write_text(actions.sub("    actions: []\n", path.read_text()))
        rx.receiver.reload()
        await rx.tick(2)
        assert len(deploy.server.seen) == 1 and deploy.calls == []
        [run] = await runs(rx, inc)
        why = "the action is no longer in journeys.yaml with a run"
        assert (run["status"], run["result"]) == ("skipped", why)
        timeline = [e["text"] for e in (await rx.incident(inc))["timeline"]]
        assert f"rollback: not run (by auto): {why}" in timeline
        page = (await rx.client.get(f"/incidents/{inc}")).text
        assert why in page


async def test_a_change_every_replica_reloaded_is_decided_at_once_not_given_back_between_them(
    tmp_path: Path, deploy: FakeDeploy, redis_port: int
) -> None:
    # Both replicas read the same journeys.yaml; a run is asked for and its first attempt
    # gets a 503. A ConfigMap change then points the action at another URL, and both
    # reload. What each said of the old definition before its reload is no replica
    # defining the action so any more: the replica claiming the retry decides it at once
    # (skipped, the URL changed) instead of the two giving it back to each other for the
    # two minutes their old saying would otherwise last.
    old_yaml = journeys(tmp_path, deploy.url, "auto").read_text()
    new_yaml = old_yaml.replace(f"url: {deploy.url}", f"url: {deploy.url}/v2")
    deploy.fail(503, times=1)
    async with rolling(tmp_path, redis_port, old_yaml, old_yaml) as (a, b):
        await b.tick(0)  # b says what it defines
        inc = await storm(a)
        await a.tick(30)  # asked for; its first attempt: a 503
        assert len(deploy.server.seen) == 1
        for rx in (a, b):
            assert rx.receiver.config_path is not None
            (rx.receiver.config_path.parent / "journeys.yaml").write_text(new_yaml)
            rx.receiver.reload()
        await b.tick(0)  # b says what it defines now; the retry is not due yet
        assert await runs(b, inc) == []
        await a.tick(5)  # a claims the retry
        assert len(deploy.server.seen) == 1
        [run] = await runs(a, inc)
        assert run["status"] == "skipped"
        assert "changed since it was asked for (url)" in run["result"]
