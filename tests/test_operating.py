"""What an operator relies on: a store that refuses writes is a counted 503, a token from
the environment works as written, store_up tells the scheduler's view too, and replicas
that disagree on their sinks during a rolling change lose no delivery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import config
from receiver.app import create_app
from receiver.cli import main
from receiver.errors import RetryableDeliveryError
from receiver.incident import Incident
from receiver.sinks import Delivery, Receipt
from tests.conftest import FakeClock, body, make_alert, resolved
from tests.support.fake_jira import serve_jira
from tests.support.fake_server import FakeServer, serve
from tests.support.harness import Harness, RecordingSink, ScriptedSink, harness, write_config
from tests.support.processes import free_port, redis_server
from tests.support.sink_world import Fakes
from tests.support.vendor_signing import sign_jira, sign_slack

pytestmark = pytest.mark.anyio


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


@contextlib.asynccontextmanager
async def client_on(
    tmp_path: Path, clock: FakeClock, port: int
) -> AsyncIterator[httpx.AsyncClient]:
    """A receiver on the redis-server at ``port`` (no scheduler), and a client of it that
    gets its 5xx answers as a client would."""
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("memory://", f"redis://127.0.0.1:{port}/0"))
    app = create_app(cfg, clock=clock, sinks={"log": RecordingSink()}, run_scheduler=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://rx") as client,
    ):
        yield client


async def test_a_read_only_redis_is_a_counted_503_not_an_uncounted_500(
    tmp_path: Path, clock: FakeClock
) -> None:
    # store.url points at a node that has become a replica (a managed Redis's primary
    # endpoint after a failover, a plain redis:// at a demoted master): PING works, every
    # write is refused with READONLY. Alertmanager must get the documented 503 for "store
    # down", and the metrics the shipped alert rules read (webhook_requests_total{code=~"5.."},
    # store_up) must say so.
    with redis_server(tmp_path / "replica", "--replicaof", "127.0.0.1", str(free_port())) as port:
        async with client_on(tmp_path, clock, port) as client:
            r = await client.post(
                "/webhook/alertmanager",
                content=body([make_alert()]),
                headers={"content-type": "application/json"},
            )
            # The kubelet's probe PINGs it and a dashboard reads from it: a replica answers
            # both, and neither says it takes writes (nor may reset store_up between the
            # failing webhooks, or the alert on it, min == 0 for 2m, never fires).
            await client.get("/readyz")
            await client.get("/api/v1/incidents")
            metrics = (await client.get("/metrics")).text
    assert r.status_code == 503, (r.status_code, r.headers.get("content-type"), r.text)
    assert _metric(metrics, 'journey_receiver_webhook_requests_total{code="503"}') == 1.0
    assert _metric(metrics, "journey_receiver_store_up") == 0.0


async def test_a_token_from_the_environment_with_a_trailing_newline_is_trimmed(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Kubernetes Secret made with `kubectl create secret --from-file` from `echo tok > f`
    # carries the newline into the environment. An HTTP header cannot carry it, and the
    # receiver strips the header's credentials (as it strips *_file tokens): so this token
    # matches no request ever, every Alertmanager send is a 401 (never retried: the alerts
    # are lost), while `journey-receiver check` says "config OK". Either trim it as the
    # *_file tokens are trimmed: trimmed.
    monkeypatch.setenv("WEBHOOK_TOKEN", "s3cret-token\n")
    cfg = write_config(tmp_path, 'server:\n  auth:\n    bearer_tokens: ["${WEBHOOK_TOKEN}"]\n')
    assert config.check(cfg) == []
    async with harness(cfg, clock) as rx:
        r = await rx.post([make_alert()], authorization="Bearer s3cret-token")
        assert r.status_code == 200, (r.status_code, r.text)


async def test_vendor_secrets_from_the_environment_with_a_trailing_newline_are_trimmed(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same newline in Slack's signing secret and Jira's webhook secret: no vendor signs
    # with it, so every button press and every issue update was refused (401).
    monkeypatch.setenv("SLACK_SECRET", "8f742231b10e8888abcd99yyyzzz85a5\n")
    monkeypatch.setenv("JIRA_SECRET", "jira-webhook-secret\n")
    inbound = (
        "inbound: {slack: {signing_secret: '${SLACK_SECRET}'}, jira: {secret: '${JIRA_SECRET}'}}\n"
    )
    async with harness(write_config(tmp_path, inbound), clock) as rx:
        press = {"type": "block_actions", "user": {"id": "U0ALICE"},
                 "actions": [{"action_id": "jr_ack", "value": "checkout-nope-1"}]}  # fmt: skip
        raw = urlencode({"payload": json.dumps(press)}).encode()
        stamp = str(int(clock.now))
        slack = await rx.client.post(
            "/inbound/slack/interactions",
            content=raw,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-slack-request-timestamp": stamp,
                "x-slack-signature": sign_slack(raw, "8f742231b10e8888abcd99yyyzzz85a5", stamp),
            },
        )
        update = json.dumps({"webhookEvent": "jira:issue_updated"}).encode()
        jira = await rx.client.post(
            "/inbound/jira",
            content=update,
            headers={"x-hub-signature": sign_jira(update, "jira-webhook-secret")},
        )
    # Past the signature: no such incident (a 200 for Slack, which shows the person any
    # other answer as a bare error), no such issue.
    assert (slack.status_code, jira.status_code) == (200, 404), (slack.text, jira.text)


async def test_store_up_is_1_once_the_scheduler_has_reached_the_store(
    tmp_path: Path, clock: FakeClock
) -> None:
    # docs/operating.md: store_up is "1 if the last store operation reached Redis", and
    # deploy/alerting-rules.yaml pages on min(store_up) == 0 for 2m. A replica that started
    # in a quiet hour (no webhook yet) and is not probed on /readyz (the image's HEALTHCHECK
    # calls /healthz) has reached its store on every scheduler tick, yet exports 0: a
    # false "cannot reach its Redis store" page.
    async with harness(write_config(tmp_path), clock) as rx:
        await rx.tick(1)
        await rx.tick(1)
        metrics = (await rx.client.get("/metrics")).text
    assert _metric(metrics, "journey_receiver_store_up") == 1.0


async def test_store_up_drops_when_the_scheduler_cannot_reach_the_store(
    tmp_path: Path, clock: FakeClock
) -> None:
    # The other way round: Redis dies in a quiet period with notifications queued. Every
    # scheduler tick fails (nothing is decided or delivered), yet store_up keeps the 1 the
    # last webhook left, so JourneyReceiverStoreDown never fires.
    with redis_server(tmp_path / "redis") as port:
        cfg = write_config(tmp_path)
        cfg.write_text(cfg.read_text().replace("memory://", f"redis://127.0.0.1:{port}/0"))
        async with harness(cfg, clock) as rx:
            assert (await rx.post([make_alert()])).status_code == 200
            # Redis goes away (SHUTDOWN; the fixture leaves an exited server alone).
            admin = Redis(port=port)
            with contextlib.suppress(RedisError):
                await admin.shutdown(nosave=True)
            with contextlib.suppress(RedisError):
                await admin.aclose()
            await rx.tick(31)  # group_wait over: a decision is due, and fails
            await rx.tick(1)
            metrics = (await rx.client.get("/metrics")).text
    assert _metric(metrics, "journey_receiver_store_up") == 0.0


def rolling_change(tmp_path: Path, redis_port: int) -> tuple[Path, Path]:
    """The configs of two replicas on one Redis during a rolling change that adds Slack:
    the new one's, with Slack routed every priority, and the old one's, without it."""
    prefix = f"mixed{uuid.uuid4().hex[:8]}"
    store = f"store: {{url: 'redis://127.0.0.1:{redis_port}/0', key_prefix: {prefix}}}\n"
    routing = "routing: {log: [P1, P2, P3, P4, P5]%s}\n"
    new_dir, old_dir = tmp_path / "new", tmp_path / "old"
    new_dir.mkdir()
    old_dir.mkdir()
    new_cfg = write_config(
        new_dir,
        store + "sinks: {slack: {token: xoxb-test}}\n" + routing % ", slack: [P1, P2, P3, P4, P5]",
    )
    old_cfg = write_config(old_dir, store + routing % "")
    for cfg in (new_cfg, old_cfg):
        cfg.write_text(cfg.read_text().replace("store: {url: 'memory://'}\n", ""))
    return new_cfg, old_cfg


async def test_a_replica_without_a_sink_does_not_dead_letter_the_jobs_of_replicas_with_it(
    tmp_path: Path, clock: FakeClock, redis_port: int
) -> None:
    # A rolling change that adds Slack (new pods, or a ConfigMap that reaches each pod's
    # reload up to a minute apart): for a while replicas on one Redis disagree on the sinks.
    # Slack answers 429 in a storm; whichever replica ticks first after the retry is due
    # claims the queue. One that has no Slack gives the job back (it is not a dead letter:
    # that would page JourneyReceiverDeadLetters and never reach Slack), and a replica that
    # has Slack delivers it at its next try.
    new_cfg, old_cfg = rolling_change(tmp_path, redis_port)
    slack = ScriptedSink(
        "slack", script=[RetryableDeliveryError("slack", "x", "rate_limited", "429", 1.0)]
    )
    async with (
        harness(new_cfg, clock, sinks={"log": ScriptedSink("log"), "slack": slack}) as new,
        harness(old_cfg, clock, sinks={"log": ScriptedSink("log")}) as old,
    ):
        (inc,) = (await new.post([make_alert()])).json()["incidents"]
        await new.tick(30)  # the new replica decides; Slack's first attempt is a 429
        assert [a.kind for a in slack.attempts] == ["open"]
        clock.advance(600)  # well past the backoff
        await old.tick()  # the old replica happens to tick first: it gives the job back
        clock.advance(60)  # its backoff
        await new.tick()
        dead = (await new.client.get("/api/v1/deliveries?state=dead")).json()["deliveries"]
        assert dead == [], [d["error"] for d in dead]
        assert slack.kinds() == ["open"]
        assert (await new.incident(inc))["sinks"]["slack"]["state"] != "failed"


async def test_the_resolve_a_replica_without_the_sink_decides_still_reaches_it(
    tmp_path: Path, clock: FakeClock, redis_port: int
) -> None:
    # During a rolling change that adds Slack, a new replica posts the incident to Slack;
    # an old one, without Slack, happens to decide the resolve. The message must still
    # say resolved: the job goes to the queue, and a replica with Slack delivers it.
    new_cfg, old_cfg = rolling_change(tmp_path, redis_port)
    slack = ScriptedSink("slack")
    async with (
        harness(new_cfg, clock, sinks={"log": ScriptedSink("log"), "slack": slack}) as new,
        harness(old_cfg, clock, sinks={"log": ScriptedSink("log")}) as old,
    ):
        alert = make_alert()
        (inc,) = (await new.post([alert])).json()["incidents"]
        await new.tick(30)
        await old.post([resolved(alert)])
        await old.tick(240)
        await new.tick(0)  # still up: it says again that it has Slack
        await old.tick(61)  # resolve_after: the old replica decides, and tells its log
        assert (await old.incident(inc))["status"] == "resolved"
        await old.tick(60)  # its outbox gives Slack's job back, as it lacks the sink
        await new.tick(60)
        assert [a.kind for a in slack.delivered] == ["open", "resolve"]
        dead = (await new.client.get("/api/v1/deliveries?state=dead")).json()["deliveries"]
        assert dead == []


async def test_a_replica_of_the_release_before_still_finds_the_sinks_a_new_one_has(
    tmp_path: Path, clock: FakeClock, redis_port: int
) -> None:
    # An upgrade that adds Slack rolls replicas of the release before (which read a single
    # replica's token under "sinks:<name>", with GET) beside new ones: an old replica
    # deciding the resolve of an incident a new one posted to Slack must find that a
    # replica has Slack, or the message never says resolved.
    new_cfg, _ = rolling_change(tmp_path, redis_port)
    async with harness(
        new_cfg, clock, sinks={"log": ScriptedSink("log"), "slack": ScriptedSink("slack")}
    ) as new:
        await new.tick(0)
        # What the release before asks: a token under the old key, not its own.
        assert await new.receiver.store.cache.get("sinks", "slack") is not None


async def queued(rx: Harness) -> list[dict[str, Any]]:
    """Every delivery job waiting, retrying or dead, as the API lists them."""
    jobs: list[dict[str, Any]] = []
    for state in ("pending", "retrying", "dead"):
        r = await rx.client.get(f"/api/v1/deliveries?state={state}")
        jobs += r.json()["deliveries"]
    return jobs


async def test_the_end_of_an_incident_a_sink_removed_everywhere_heard_of_is_not_queued(
    tmp_path: Path, clock: FakeClock, redis_port: int
) -> None:
    # Slack taken out of every replica's config: no replica says it has it any more, so
    # the resolve of an incident posted there before is not queued to fail into the dead
    # letters (and page JourneyReceiverDeadLetters for a week).
    with_slack, without = rolling_change(tmp_path, redis_port)
    async with harness(
        with_slack, clock, sinks={"log": ScriptedSink("log"), "slack": ScriptedSink("slack")}
    ) as before:
        alert = make_alert()
        (inc,) = (await before.post([alert])).json()["incidents"]
        await before.tick(30)
        said = before.receiver.store.cache.key("sinks-here", "slack")
    admin = Redis(port=redis_port)
    await admin.delete(said)  # two minutes on: what it said has expired
    await admin.aclose()
    async with harness(without, clock, sinks={"log": ScriptedSink("log")}) as after:
        await after.post([resolved(alert)])
        await after.tick(301)
        assert (await after.incident(inc))["status"] == "resolved"
        assert await queued(after) == []


def take_slack_out(cfg: Path) -> None:
    """Take Slack out of ``world.config()``'s receiver.yaml at ``cfg``."""
    text = cfg.read_text().replace(", slack: [P1, P2, P3, P4, P5]", "")
    # Only the sink's own line: the paths on other lines (a checkout under /tmp/slack-…)
    # may hold the word too.
    kept = (x for x in text.splitlines() if not x.lstrip().startswith("slack:"))
    cfg.write_text("\n".join(kept) + "\n")


async def test_a_sink_a_reload_removed_from_the_only_replica_is_told_no_more_ends(
    tmp_path: Path, clock: FakeClock, world: Fakes
) -> None:
    # One replica (the memory store) posted the incident to Slack; Slack is then taken out
    # of receiver.yaml and reloaded. What it said of its sinks before the reload is still
    # in the store for two minutes: it is no other replica having Slack. The resolve must
    # not be queued to a sink nobody has, to die into the dead letters.
    cfg = write_config(tmp_path, world.config())
    async with harness(cfg, clock, configured_sinks=True) as rx:
        alert = make_alert()
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(30)
        assert "slack" in (await rx.incident(inc))["sinks"]
        take_slack_out(cfg)
        assert (await rx.client.post("/-/reload")).status_code == 200
        assert rx.receiver.pipeline.sinks == {"log", "pagerduty", "jira"}
        await rx.post([resolved(alert)])
        await rx.tick(301)
        assert (await rx.incident(inc))["status"] == "resolved"
        for _ in range(8):
            await rx.tick(70)
        assert await queued(rx) == []


@contextlib.asynccontextmanager
async def two_with_slack(
    tmp_path: Path, clock: FakeClock, world: Fakes, redis_port: int
) -> AsyncIterator[tuple[Harness, Harness, list[Path]]]:
    """Two replicas with ``world``'s sinks, Slack among them, on one Redis, and their
    receiver.yaml files."""
    prefix = f"said{uuid.uuid4().hex[:8]}"
    store = f"store: {{url: 'redis://127.0.0.1:{redis_port}/0', key_prefix: {prefix}}}\n"
    configs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        cfg = write_config(tmp_path / name, world.config() + store)
        cfg.write_text(cfg.read_text().replace("store: {url: 'memory://'}\n", ""))
        configs.append(cfg)
    async with (
        harness(configs[0], clock, configured_sinks=True) as one,
        harness(configs[1], clock, configured_sinks=True) as two,
    ):
        yield one, two, configs


async def test_a_sink_every_replica_reloaded_out_is_told_no_more_at_once(
    tmp_path: Path, clock: FakeClock, world: Fakes, redis_port: int
) -> None:
    # Both replicas said they had Slack a moment ago; then both reload without it. What
    # each said is taken back with the reload, not left two minutes: the resolve decided
    # right after is not queued to Slack, to be given back and forth and die.
    async with two_with_slack(tmp_path, clock, world, redis_port) as (one, two, configs):
        alert = make_alert()
        (inc,) = (await one.post([alert])).json()["incidents"]
        await one.tick(30)  # posted to Slack
        await two.post([resolved(alert)])
        await one.tick(290)
        await two.tick(1)  # both said they have Slack
        for rx, cfg in ((one, configs[0]), (two, configs[1])):
            take_slack_out(cfg)
            assert (await rx.client.post("/-/reload")).status_code == 200
            await rx.tick(0)
        await two.tick(15)  # resolve_after: decided
        assert (await two.incident(inc))["status"] == "resolved"
        assert await queued(two) == []


async def test_a_replica_that_said_it_had_a_sink_last_hides_no_other_replica_having_it(
    tmp_path: Path, clock: FakeClock, world: Fakes, redis_port: int
) -> None:
    # Two replicas with Slack on one Redis; the second to say so is then reloaded without
    # Slack and decides the resolve. What it said last is its own: the first replica still
    # has Slack, and the message must still be told the incident resolved.
    async with two_with_slack(tmp_path, clock, world, redis_port) as (keeps, drops, configs):
        alert = make_alert()
        (inc,) = (await keeps.post([alert])).json()["incidents"]
        await keeps.tick(30)  # posted to Slack
        await drops.post([resolved(alert)])
        await keeps.tick(280)  # it says it has Slack ...
        await drops.tick(1)  # ... and the other one says so too, after it
        take_slack_out(configs[1])
        assert (await drops.client.post("/-/reload")).status_code == 200
        await drops.tick(25)  # resolve_after: the replica without Slack decides
        assert (await drops.incident(inc))["status"] == "resolved"
        assert world.slack.calls("chat.update") == []
        await keeps.tick(60)  # the job queued for Slack (given back by the other: its backoff)
        (update,) = world.slack.calls("chat.update")
        assert "resolved" in json.dumps(update).lower()


async def test_a_replica_without_the_sink_keeps_the_last_attempts_no_answer(
    tmp_path: Path, clock: FakeClock, redis_port: int
) -> None:
    # Slack's first attempt got no answer (a dropped connection: the message may be posted).
    # During a rolling change a replica without Slack claims the retry and gives it back;
    # the next attempt, on a replica with Slack, must still look for that message before
    # posting it again (previous_error_ambiguous), or the channel gets it twice.
    class Slack:
        name = "slack"
        coalesces_updates = False

        def __init__(self) -> None:
            self.seen: list[bool] = []

        async def deliver(
            self, incident: Incident, delivery: Delivery, previous: Receipt | None
        ) -> Receipt:
            self.seen.append(delivery.previous_error_ambiguous)
            if len(self.seen) == 1:
                raise RetryableDeliveryError("slack", incident.id, "network", "reset",
                                             ambiguous=True)  # fmt: skip
            return Receipt(sink="slack", state=incident.status, refs={"ts": "1"})

        async def aclose(self) -> None:
            return None

    new_cfg, old_cfg = rolling_change(tmp_path, redis_port)
    slack = Slack()
    async with (
        harness(new_cfg, clock, sinks={"log": ScriptedSink("log"), "slack": slack}) as new,
        harness(old_cfg, clock, sinks={"log": ScriptedSink("log")}) as old,
    ):
        await new.post([make_alert()])
        await new.tick(30)  # attempt 1: no answer
        clock.advance(600)
        await old.tick()  # attempt 2: no Slack here, given back
        clock.advance(600)
        await new.tick()  # attempt 3
    assert slack.seen == [False, True], slack.seen


async def test_a_redis_that_stopped_writes_after_a_failed_save_is_a_503_for_change_events(
    tmp_path: Path, clock: FakeClock
) -> None:
    # MISCONF (stop-writes-on-bgsave-error after a failed save) is "a counted 503, not an
    # uncounted 500". A write made in a MULTI/EXEC (POST /api/v1/events: add_events) gets
    # it as redis-py's "Command # 1 (...) of pipeline caused error: MISCONF ...", whose
    # first word is "Command": a 500, and a CI pipeline's deploy event is not retried.
    # Snapshots go to /proc, where nothing can be written: the next save fails.
    with redis_server(tmp_path / "redis", "--save", "3600 1", "--dir", "/proc") as port:
        admin = Redis(port=port)
        await admin.bgsave()
        for _ in range(50):
            if (await admin.info("persistence"))["rdb_last_bgsave_status"] == "err":
                break
            await asyncio.sleep(0.1)
        await admin.aclose()
        async with client_on(tmp_path, clock, port) as client:
            r = await client.post(
                "/api/v1/events",
                json={"type": "deploy", "service": "payment-service", "version": "v3"},
            )
        # No save at shutdown (it would fail, and the server would wait for it).
        admin = Redis(port=port)
        await admin.config_set("save", "")
        await admin.aclose()
    assert r.status_code == 503, (r.status_code, r.text[:300])


def _write(tmp_path: Path, config: dict[str, Any], journeys: dict[str, Any] | None = None) -> Path:
    (tmp_path / "journeys.yaml").write_text(yaml.safe_dump(journeys or {"journeys": []}))
    path = tmp_path / "receiver.yaml"
    path.write_text(yaml.safe_dump({"server": {"auth": {"allow_open": True}}, **config}))
    return path


def test_a_jira_token_from_the_environment_with_a_trailing_newline_is_trimmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same `echo tok > file` Secret put in ${JIRA_TOKEN}: the README says sink tokens
    # are trimmed, but the Jira sink sent "Bearer tok\n" (refused by requests).
    token = "jira-s3cret-token-0123456789"
    monkeypatch.setenv("JIRA_TOKEN", token + "\n")
    with serve_jira(token=token) as jira:
        sink = {"url": jira.server.url, "token": "${JIRA_TOKEN}", "timeout": 5}
        path = _write(tmp_path, {"sinks": {"jira": sink}})
        main(["check", "--config", str(path), "--online"])
    out = capsys.readouterr().out
    assert "ok      jira: myself: logged in as" in out, out


def test_a_prometheus_header_from_the_environment_with_a_trailing_newline_is_trimmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `prometheus.headers: {Authorization: "Bearer ${PROM_TOKEN}"}` with the Secret's
    # newline: check --online said "unexpected response (not Prometheus API JSON)" and serve
    # put "context unavailable" on every incident; the header was never sent.
    async def buildinfo(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != "Bearer prom-token":
            return JSONResponse({"status": "error"}, status_code=401)
        return JSONResponse({"status": "success", "data": {"version": "2.99.0"}})

    app = Starlette(routes=[Route("/api/v1/status/buildinfo", buildinfo)])
    monkeypatch.setenv("PROM_TOKEN", "prom-token\n")
    with serve(app, FakeServer()) as server:
        prometheus = {"url": server.url, "headers": {"Authorization": "Bearer ${PROM_TOKEN}"}}
        main(["check", "--config", str(_write(tmp_path, {"prometheus": prometheus})), "--online"])
    out = capsys.readouterr().out
    assert "is Prometheus 2.99.0" in out, out


async def test_a_token_file_saved_with_a_bom_and_crlf_still_authenticates(
    tmp_path: Path, clock: FakeClock
) -> None:
    # A token file written on Windows (Notepad's "UTF-8 with BOM", CRLF line ends): `check`
    # says "config OK", and every Alertmanager send is then a 401 (never retried): the BOM
    # stayed glued to the token, which no request header carries.
    (tmp_path / "tokens").write_bytes("\ufeffs3cret-token\r\nother-token\r\n".encode())
    cfg = write_config(tmp_path, "server:\n  auth:\n    bearer_tokens_file: tokens\n")
    assert config.check(cfg) == []
    async with harness(cfg, clock) as rx:
        r = await rx.post([make_alert()], authorization="Bearer s3cret-token")
        assert r.status_code == 200, (r.status_code, r.text)


def test_an_empty_token_file_is_an_error_naming_the_file_field_not_open_reads(
    tmp_path: Path,
) -> None:
    # A Secret key created empty (`--from-literal=read-token="$READ_TOKEN"` with the
    # variable unset) mounted as read_bearer_tokens_file: `check` said "config OK" and the
    # receiver served every read endpoint (incidents, alert labels, deliveries) to anyone,
    # without a word; an empty password_file was blamed on "an unset ${ENV}" at password.
    (tmp_path / "empty").write_text("\n")
    cfg = _write(tmp_path, {})
    cfg.write_text(
        "journeys_file: journeys.yaml\n"
        "server:\n  auth:\n    bearer_tokens: [w-token]\n"
        "    read_bearer_tokens_file: empty\n"
        "    basic: {username: u, password_file: empty}\n"
    )
    problems = [(p.path, p.reason) for p in config.check(cfg)]
    assert [path for path, _ in problems] == [
        "server.auth.read_bearer_tokens_file",
        "server.auth.basic.password_file",
    ], problems
    assert all("is empty" in reason and "ENV" not in reason for _, reason in problems), problems


async def test_a_refused_request_cannot_forge_a_log_line_through_its_path(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Anyone who reaches the port, with no credential, writes the path into the 401 line;
    # a %0a in it starts a line of their own (here a fake "reload rejected").
    cfg = write_config(
        tmp_path,
        "server:\n  auth:\n    bearer_tokens: [w-token]\n    read_bearer_tokens: [r-token]\n",
    )
    forged = "x%0a2026-01-01 00:00:00,000 ERROR journey_receiver reload rejected%1b[2J"
    async with harness(cfg, clock) as rx:
        with caplog.at_level(logging.WARNING, logger="journey_receiver"):
            r = await rx.client.get(f"/api/v1/incidents/{forged}")
    assert r.status_code == 401
    said = [rec.getMessage() for rec in caplog.records if "401 on" in rec.getMessage()]
    assert said, caplog.text
    for message in said:
        assert "\n" not in message and "\x1b" not in message, repr(message)


def test_every_secret_from_the_environment_is_trimmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's promise for the `echo tok > file` newline, field by field.
    monkeypatch.setenv("TOK", "tok\n")
    cfg = write_config(
        tmp_path,
        "sinks: {slack: {token: '${TOK}'}, jira: {url: 'https://jira.example.com', "
        "token: '${TOK}'}}\n"
        "prometheus: {url: 'http://127.0.0.1:9', headers: {Authorization: 'Bearer ${TOK}'}}\n",
    )
    loaded, _ = config.load(cfg)
    assert loaded.sinks.slack is not None and loaded.sinks.jira is not None
    assert loaded.prometheus is not None
    assert [
        loaded.sinks.slack.token.get_secret_value(),
        loaded.sinks.jira.token.get_secret_value(),
        loaded.prometheus.headers["Authorization"].get_secret_value(),
    ] == ["tok", "tok", "Bearer tok"]
