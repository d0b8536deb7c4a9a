"""A webhook storm across a failover of the store, and what must hold after it: shared by
the Redis Cluster and the Sentinel failover tests (``tests/e2e/test_*_failover.py``).

A test starts the store, a real receiver on it and the sink fakes, calls ``storm_through``
with a function that kills the master and watches a replica take over, then
``assert_nothing_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import body, make_alert
from tests.e2e.test_crash_safety import OPEN, TOKEN, incident, wait_delivered
from tests.support import receiver_process as rp
from tests.support.sink_world import Fakes
from tests.support.soak_audit import comment_jobs, reply_jobs

RATE = 20  # webhook batches a second: a storm, and the failover falls well inside it
BATCHES = 240  # 12 s at RATE; per incident one new alert a batch, under the 500 the detail lists
KILL_AFTER = 40  # acknowledged batches before the kill
REGIONS = ("eu", "us", "ap")  # checkout groups by region: one incident each
SERVICES = ("payment-service", "payments-db", "checkout-api", "cart-api")
# Alertmanager gives a notification at least 10 s (notify.MinTimeout) before it gives up
# on it: an answer later than that would be none. Above the receiver's retries of a dead
# master (2-5 s in all), so a timeout here means the receiver hung.
CLIENT_TIMEOUT = 10.0


@dataclass
class Sent:
    alerts: list[dict[str, Any]]
    sent_at: float
    answered_at: float
    status: int | None  # None: no answer (connection error or timeout)
    incidents: list[str] = field(default_factory=list)


@dataclass
class Failover:
    killed_at: float
    # ROLE's answer is true somewhere between asking and hearing back: the replica was
    # promoted after it was last asked and still said "slave", and before the first
    # "master" was heard.
    last_replica_at: float
    promoted_at: float
    # From then on the receiver's client can be expected to have found the new master:
    # every batch sent later must be accepted.
    settled_at: float


async def storm(url: str, log: list[Sent]) -> None:
    """BATCHES webhook batches at RATE, each answer (or its absence) appended to ``log``.

    Sent on schedule whatever the answers, as Alertmanager sends each group's batch on its
    own; a batch carries a new alert per region and the previous batch's again, as
    Alertmanager does on its next group_interval and after a 5xx.
    """
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
        timeout=CLIENT_TIMEOUT,
        # Every batch held by the failover keeps its connection: no wait for a free one.
        limits=httpx.Limits(max_connections=None),
    ) as client:

        async def send(alerts: list[dict[str, Any]]) -> None:
            sent = Sent(alerts, time.monotonic(), 0.0, None)
            with contextlib.suppress(httpx.TransportError):
                r = await client.post("/webhook/alertmanager", content=body(alerts))
                sent.status = r.status_code
                if r.status_code == 200:
                    sent.incidents = r.json()["incidents"]
            sent.answered_at = time.monotonic()
            log.append(sent)

        started = time.monotonic()
        previous: list[dict[str, Any]] = []
        async with asyncio.TaskGroup() as tg:
            for i in range(BATCHES):
                await asyncio.sleep(max(0.0, started + i / RATE - time.monotonic()))
                new = [make_alert(SERVICES[i % len(SERVICES)], region=r) for r in REGIONS]
                tg.create_task(send(new + previous))
                previous = new


def storm_through(
    process: rp.ReceiverProcess, fail_over: Callable[[], Failover]
) -> tuple[list[Sent], Failover]:
    """Storm ``process``; once KILL_AFTER batches are acknowledged, ``fail_over()``."""
    log: list[Sent] = []
    with ThreadPoolExecutor(1) as pool:
        storming = pool.submit(asyncio.run, storm(process.url, log))
        rp.poll(
            lambda: sum(s.status == 200 for s in log),
            lambda acked: acked >= KILL_AFTER or storming.done(),
            what=f"{KILL_AFTER} batches acknowledged",
            context=process.tail,
        )
        failover = fail_over()
        storming.result(timeout=BATCHES / RATE + 2 * CLIENT_TIMEOUT)
    return log, failover


def assert_nothing_lost(
    log: list[Sent], failover: Failover, process: rp.ReceiverProcess, world: Fakes, what: str
) -> None:
    """Nothing acknowledged is lost, no incident or sink object doubled, and no batch
    accepted while there was no master; prints how long the gap was."""

    def at(t: float) -> str:
        return f"{t - failover.killed_at:+.2f}s"

    after = [s for s in log if s.sent_at > failover.killed_at]
    first_ok = next((s.answered_at for s in after if s.status == 200), None)
    gap = (
        f"kill → promotion {at(failover.promoted_at)} (replica until"
        f" {at(failover.last_replica_at)}), settled {at(failover.settled_at)}, kill → first"
        f" 2xx {at(first_ok) if first_ok else 'never'}; {len(log)} batches,"
        f" {sum(s.status == 503 for s in log)} answered 503, longest answer"
        f" {max(s.answered_at - s.sent_at for s in log):.2f}s"
    )
    print(f"\nfailover of {what}: {gap}")

    # Answered before the kill: accepted. The receiver always answers, and its one
    # refusal is 503 (Alertmanager retries 5xx): never a 500, never silence.
    assert all(s.status == 200 for s in log if s.answered_at < failover.killed_at), gap
    answers = {s.status for s in log}
    assert answers <= {200, 503}, f"{answers}; {gap}\n{process.tail()}"
    # Sent after the kill and answered before the promotion: refused, every one. (How
    # many there are is chance: the receiver's client retries a dead master for seconds,
    # so some batches of the gap are held and accepted once the replica took over.)
    assert all(s.status == 503 for s in after if s.answered_at < failover.last_replica_at), [
        (at(s.sent_at), at(s.answered_at), s.status)
        for s in after
        if s.answered_at < failover.last_replica_at and s.status != 503
    ]
    # Sent once the client had time to find the new master: accepted, every one.
    late = [s for s in after if s.sent_at > failover.settled_at]
    assert late, f"the storm ended before the failover settled; {gap}"
    assert all(s.status == 200 for s in late), [
        (at(s.sent_at), s.status) for s in late if s.status != 200
    ]

    # Every incident of every answer is one of the incidents open before the kill, and
    # no other was opened: a lost index entry would open one under a new id.
    before = {i for s in log if s.answered_at < failover.killed_at for i in s.incidents}
    answered = {i for s in log for i in s.incidents}
    assert len(before) == len(REGIONS)
    assert answered == before, gap
    with process.client() as client:
        listed = client.get("/api/v1/incidents", params={"limit": 100}).json()["incidents"]
    assert {i["id"] for i in listed} == before, gap

    # Every alert of every acknowledged batch is in its incident.
    acked: dict[str, set[str]] = {r: set() for r in REGIONS}
    for s in log:
        if s.status == 200:
            for a in s.alerts:
                acked[a["labels"]["region"]].add(a["fingerprint"])
    for incident_id in before:
        detail = incident(process, incident_id)
        region = detail["group_labels"]["region"]
        assert detail["alerts_omitted"] == 0
        stored = {a["fingerprint"] for a in detail["alerts"]}
        lost = acked[region] - stored
        assert not lost, [
            (gap, at(s.sent_at), at(s.answered_at), a["fingerprint"])
            for s in log
            for a in s.alerts
            if a["fingerprint"] in lost and s.status == 200
        ]

    # One PagerDuty incident, one Slack message, one Jira issue per incident.
    wait_delivered(process, sorted(before), OPEN)
    for incident_id in before:
        assert len(world.pagerduty.incidents(incident_id)) == 1, gap
        assert len(world.jira.with_label(f"journey-receiver-{incident_id}")) == 1, gap
    slack = {incident(process, i)["sinks"]["slack"]["ts"] for i in before}
    assert sorted(m.ts for m in world.slack.messages("#inc-checkout")) == sorted(slack), gap
    # The later deliveries carry their job's id: none of them twice either.
    replies = [reply_jobs(world, ts) for ts in slack]
    comments = [comment_jobs(i) for i in world.jira.issues()]
    twice = [(job, n) for jobs in [*replies, *comments] for job, n in jobs.items() if n > 1]
    assert not twice, (twice, gap)
    print(f"later deliveries: {sum(map(len, replies))} thread replies, "
          f"{sum(map(len, comments))} comments")  # fmt: skip
