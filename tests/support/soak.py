"""Many replicas under fire: the soak shared by ``tests/e2e/test_replicas_soak.py`` (a
bounded one, in the suite) and ``benchmarks/soak.py`` (minutes of it, with a table).

Three receivers behind nginx share one durable Redis and deliver to the PagerDuty, Slack
and Jira fakes. Alertmanager is played by lanes of incidents ("waves"): each wave is one
alert group (a journey in a region of its own), sent as Alertmanager sends a group, the
whole group every ``batch_every`` with one more alert each time, a second service in
another stage half-way (a material change: an update), then every alert resolved. A lane
sends one batch at a time and retries a refused one (5xx, no answer) with backoff, as
Alertmanager's notify pipeline does, so a group's batches never overtake each other.
Meanwhile a random replica is SIGKILLed every ``kill_every`` seconds (and started again
on its port at once), and redis-server is SIGKILLed once and started again on its AOF.

Then the chaos stops, the soak waits until everything is resolved and delivered, and
:mod:`tests.support.soak_audit` holds what was acknowledged and decided against what the
receiver and the sink fakes show.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import EXAMPLE_JOURNEYS, body, make_alert, resolved
from tests.support import receiver_process as rp
from tests.support.balancer import Balancer, nginx_balancer
from tests.support.fake_jira import FakeJira
from tests.support.fake_pagerduty import serve_pagerduty
from tests.support.fake_server import FakeServer, Fault, serve
from tests.support.fake_slack import DEFAULT_CHANNELS, Channel, FakeSlack
from tests.support.fleet import DurableRedis, Replica, durable_redis, replicas
from tests.support.prometheus import self_signed_cert
from tests.support.sink_world import JIRA_TOKEN, Fakes
from tests.support.soak_audit import Audit, Figures, audit, figures

TOKEN = "soak-token"
WEBHOOK = "/webhook/alertmanager"
ALL = ["P1", "P2", "P3", "P4", "P5"]
SINKS = ("pagerduty", "slack", "jira")


@dataclass(frozen=True)
class Journey:
    """A journey of ``config/journeys.yaml`` (grouped by env and region), a service that
    fires first and one of another stage that joins half-way."""

    id: str
    first: str
    second: str


JOURNEYS = (
    Journey("checkout", "payment-service", "cart-api"),
    Journey("browse", "search-api", "frontend"),
    Journey("signup", "auth-service", "user-service"),
    Journey("unmapped", "kube-state-metrics", "node-exporter"),
)
REGIONS = ("eu", "us", "ap")
# The journeys' owners' channels and projects, so no delivery is refused for a missing one.
CHANNELS = (
    *DEFAULT_CHANNELS,
    Channel("C0BROWSE", "inc-browse"),
    Channel("C0IDENTITY", "inc-identity"),
    Channel("C0UNMAPPED", "alerts-unmapped"),
)
PROJECTS = ("OPS", "PAY", "DISC", "IDN")


@dataclass(frozen=True)
class Plan:
    duration: float
    """Seconds during which waves start; a wave under way then still finishes."""
    kill_every: float = 3.0
    """Mean seconds between two replica kills (each drawn from 0.5-1.5 times this)."""
    keep_up: int = 1
    """A kill is put off while only this many replicas are up (0: the chaos may take the
    last one down too, and the balancer answers 502 until one is back)."""
    redis_restart_at: float | None = 0.4
    """When redis-server is SIGKILLed and started again, as a share of ``duration``."""
    redis_down: float = 1.0
    """How long it stays down: a supervisor's restart delay."""
    appendfsync: str = "always"
    sink_delay: tuple[float, float] = (0.05, 0.3)
    """Each sink call is answered after a delay drawn from this range, as real APIs take
    their time: a kill then often lands while a delivery is in flight."""
    replicas: int = 3
    lanes: int = 8
    batches_per_wave: int = 12
    batch_every: float = 0.5
    give_up_after: float = 40.0
    """A batch refused this long counts as never acknowledged (a failure)."""
    settle_timeout: float = 60.0
    """After the chaos: until every incident is resolved and delivered."""
    seed: int = field(default_factory=lambda: random.randrange(1_000_000))

    @property
    def wave_seconds(self) -> float:
        return self.batches_per_wave * self.batch_every


@dataclass
class Attempt:
    sent_at: float
    answered_at: float
    status: int | None  # None: no answer (connection error or timeout)


@dataclass
class Batch:
    wave: str
    alerts: list[dict[str, Any]]
    attempts: list[Attempt] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return any(a.status == 200 for a in self.attempts)


@dataclass
class Chaos:
    kills: list[tuple[float, int]] = field(default_factory=list)
    """(seconds into the storm, replica index) of every SIGKILL."""
    redis_restarted_at: float | None = None


@dataclass
class Result:
    plan: Plan
    batches: list[Batch]
    chaos: Chaos
    audit: Audit
    figures: Figures

    @property
    def problems(self) -> list[str]:
        return self.audit.problems


@contextlib.contextmanager
def soak_fakes(workdir: Path) -> Iterator[Fakes]:
    """The three sink fakes, with a channel and a project for every journey's owner."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_cert(workdir)
    slack = FakeSlack(channels=CHANNELS)
    jira = FakeJira(token=JIRA_TOKEN, projects=PROJECTS)
    with (
        serve_pagerduty((cert, key)) as pagerduty,
        serve(slack.app, FakeServer()) as slack_server,
        serve(jira.app, jira.server),
    ):
        yield Fakes(pagerduty, slack, slack_server, jira, cert)


def slow_sinks(world: Fakes, plan: Plan) -> None:
    """Every sink call delayed by ``plan.sink_delay``; half of them applied before the
    delay (the write landed, its answer is on its way: a kill then makes the retry find
    it), half after (the retry must make it)."""
    rng = random.Random(plan.seed)
    calls = int(plan.duration * 100) + 1000  # more than a soak makes
    for server in (world.pagerduty.server, world.slack_server, world.jira.server):
        for _ in range(calls):
            delay = rng.uniform(*plan.sink_delay)
            server.inject(Fault("/", delay=delay, applied=rng.random() < 0.5))


def soak_config(path: Path, store_url: str, world: Fakes) -> Path:
    """Short timers through the config (no waiting for production's), every priority to
    every sink."""
    return rp.write_config(
        path,
        store_url=store_url,
        key_prefix=f"soak-{uuid.uuid4().hex[:8]}",
        token=TOKEN,
        journeys_file=EXAMPLE_JOURNEYS,
        grouping={
            "group_by": ["env", "region"],
            "group_wait": "0s",
            "group_interval": "1s",
            "resolve_after": "1s",
            "reopen_window": "10m",
        },
        # A dead replica's claims lapse after the scheduler lease.
        scheduler={"tick": "100ms", "lease": "2s", "batch": 100},
        routing={sink: ALL for sink in SINKS},
        sinks=world.sinks("1s"),
        # The shortest lease the sink timeouts allow (6 calls of 1 s): a dead replica's
        # deliveries are taken over that soon.
        outbox={"lease": "6s", "backoff_initial": "200ms", "backoff_max": "1s"},
    )


async def _send(client: httpx.AsyncClient, batch: Batch, plan: Plan) -> None:
    """Post until acknowledged, backing off as Alertmanager does, or give up."""
    give_up_at = time.monotonic() + plan.give_up_after
    delay = 0.2
    content = body(batch.alerts)
    while True:
        attempt = Attempt(time.monotonic(), 0.0, None)
        with contextlib.suppress(httpx.TransportError):
            r = await client.post(WEBHOOK, content=content)
            attempt.status = r.status_code
            if r.status_code == 200:
                batch.incidents = r.json()["incidents"]
        attempt.answered_at = time.monotonic()
        batch.attempts.append(attempt)
        if attempt.status == 200 or time.monotonic() > give_up_at:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def _wave(
    client: httpx.AsyncClient, plan: Plan, journey: Journey, region: str, log: list[Batch]
) -> None:
    wave = f"{journey.id}/{region}"
    alerts: list[dict[str, Any]] = []
    half = plan.batches_per_wave // 2
    for i in range(plan.batches_per_wave):
        service, severity = (journey.first, "warning") if i < half else (journey.second, "critical")
        alerts.append(make_alert(service, alertname=f"Soak{i}", region=region, severity=severity))
        batch = Batch(wave, list(alerts))
        log.append(batch)
        started = time.monotonic()
        await _send(client, batch, plan)
        await asyncio.sleep(max(0.0, started + plan.batch_every - time.monotonic()))
    batch = Batch(wave, [resolved(a) for a in alerts])
    log.append(batch)
    await _send(client, batch, plan)


async def _lane(
    client: httpx.AsyncClient, plan: Plan, lane: int, ends_at: float, log: list[Batch]
) -> None:
    # Lanes start apart, so waves open, update and resolve at every moment of the storm.
    await asyncio.sleep(lane * plan.wave_seconds / plan.lanes)
    journey = JOURNEYS[lane % len(JOURNEYS)]
    number = 0
    while time.monotonic() + plan.wave_seconds <= ends_at:
        region = f"{REGIONS[lane % len(REGIONS)]}-{lane}-{number}"
        await _wave(client, plan, journey, region, log)
        number += 1


async def storm(url: str, plan: Plan, log: list[Batch]) -> None:
    """Every lane's waves until ``plan.duration`` is over; each batch lands in ``log``."""
    ends_at = time.monotonic() + plan.duration
    client = httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
        # Above nginx's own read timeout: an attempt ends with nginx's answer, so a retry
        # never races the attempt before it.
        timeout=40.0,
    )
    async with client, asyncio.TaskGroup() as tg:
        for lane in range(plan.lanes):
            tg.create_task(_lane(client, plan, lane, ends_at, log))


def _chaos(
    fleet: list[Replica], store: DurableRedis, plan: Plan, stop: threading.Event, seen: Chaos
) -> None:
    """Kill a random live replica every ``kill_every`` s (it is started again at once, on
    another thread) and crash Redis once, until ``stop``."""
    rng = random.Random(plan.seed)
    began = time.monotonic()
    redis_at = None if plan.redis_restart_at is None else plan.redis_restart_at * plan.duration
    next_kill = plan.kill_every * rng.uniform(0.5, 1.5)
    restarts: list[Future[None]] = []
    with ThreadPoolExecutor(len(fleet)) as pool:
        while not stop.wait(0.05):
            now = time.monotonic() - began
            if redis_at is not None and now >= redis_at:
                redis_at = None
                seen.redis_restarted_at = now
                store.crash_and_restart(plan.redis_down)
            if now >= next_kill:
                live = [r for r in fleet if r.up]
                if len(live) > plan.keep_up:
                    victim = rng.choice(live)
                    victim.kill()
                    seen.kills.append((now, victim.index))
                    restarts.append(pool.submit(victim.start))
                    next_kill = now + plan.kill_every * rng.uniform(0.5, 1.5)
        for restart in restarts:
            restart.result()


def _settled(url: str, pending: set[str], fleet: list[Replica]) -> list[str]:
    """What is not yet resolved and delivered (empty once everything is); an incident
    found done leaves ``pending`` (nothing fires any more, so it stays done)."""
    waiting: list[str] = []
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0
    ) as client:
        for incident_id in sorted(pending):
            r = client.get(f"/api/v1/incidents/{incident_id}")
            if r.status_code != 200:
                waiting.append(f"{incident_id}: {r.status_code}")
                continue
            detail = r.json()
            states = {name: s.get("state") for name, s in detail["sinks"].items()}
            if detail["status"] != "resolved" or states != dict.fromkeys(SINKS, "resolved"):
                waiting.append(f"{incident_id}: {detail['status']}, sinks {states}")
            else:
                pending.discard(incident_id)
    for replica in fleet:
        gauges = httpx.get(f"{replica.url}/metrics", timeout=10.0).text
        for line in gauges.splitlines():
            name, _, value = line.partition(" ")
            if name == "journey_receiver_outbox_pending_queues" and float(value):
                waiting.append(f"replica {replica.index}: {value} outbox queues pending")
    return waiting


def run_soak(plan: Plan, workdir: Path) -> Result:
    """The whole soak; every process it started is stopped by its PID before it returns."""
    log: list[Batch] = []
    seen = Chaos()
    with (
        soak_fakes(workdir / "fakes") as world,
        durable_redis(workdir / "redis", plan.appendfsync) as store,
    ):
        slow_sinks(world, plan)
        config = soak_config(workdir / "receiver.yaml", store.url, world)
        with (
            replicas(config, workdir, plan.replicas) as fleet,
            nginx_balancer(workdir / "nginx", [r.port for r in fleet]) as balancer,
        ):
            stop = threading.Event()
            with ThreadPoolExecutor(1) as pool:
                chaos = pool.submit(_chaos, fleet, store, plan, stop, seen)
                try:
                    storm_began = time.monotonic()
                    asyncio.run(storm(balancer.url, plan, log))
                finally:
                    stop.set()
                    chaos.result()
            storm_ended = time.monotonic()
            delivered = _wait_delivered(balancer, log, fleet, plan)
            found = audit(log, balancer.url, TOKEN, world, CHANNELS)
            numbers = figures(
                log,
                found,
                fleet=fleet,
                store=store,
                balancer=balancer,
                kills=len(seen.kills),
                storm_seconds=storm_ended - storm_began,
                settle_seconds=delivered - storm_ended if delivered else None,
            )
    return Result(plan, log, seen, found, numbers)


def _wait_delivered(
    balancer: Balancer, log: list[Batch], fleet: list[Replica], plan: Plan
) -> float | None:
    """When everything was resolved and delivered, or None if not within the timeout (the
    audit then says what is missing)."""
    pending = {i for b in log for i in b.incidents}
    try:
        rp.poll(
            lambda: _settled(balancer.url, pending, fleet),
            lambda waiting: not waiting,
            what="every incident resolved and delivered",
            timeout=plan.settle_timeout,
            step=0.5,
        )
    except AssertionError:
        return None
    return time.monotonic()
