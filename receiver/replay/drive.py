"""Alertmanager's batches through the receiver's own ingest and decisions, on a virtual
clock, with the embedded ``memory://`` store running the same Lua scripts.

Each batch goes the webhook's way (``normalize`` → ``Pipeline.ingest``) at the moment
Alertmanager would have sent it, and the scheduler's decisions (``Pipeline.flush_due``)
run whenever one is due. The clock jumps from one such moment to the next instead of
ticking through the week: the store is told every due time there is — an ingest (the
incident is due now, or at the end of its group_wait when it opens), a decision's next
look and a released claim — so the replay wakes exactly then, which is when the
scheduler's one-second tick would have found the incident due, give or take that second.

Nothing is delivered and no context is fetched: a decision's jobs name the sinks its
priority is routed to (that is all a page count needs), and without KPIs a journey that has
some scores as when Prometheus is unreachable ("no KPI measured"). Similar past incidents
are not looked up: they are shown to people and never change a decision.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from receiver.app import store_settings
from receiver.metrics import Metrics
from receiver.normalize import normalize
from receiver.pipeline import Pipeline
from receiver.replay.batches import Notification
from receiver.settings import Settings
from receiver.store import Claim, CommitOutcome, IngestOutcome, StoreSettings
from receiver.store.base import AlertGroup
from receiver.store.deliveries import Job
from receiver.store.records import IncidentState, TimelineEntry
from receiver.store.redis import RedisStore

_EVERY_INCIDENT = 10**9


class VirtualClock:
    """The receiver's clock during a replay: seconds, set by the replay alone."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000


@dataclass(frozen=True, slots=True)
class Sent:
    """One decision that notified: what kind, at which priority, to which sinks."""

    at_ms: int
    incident: str
    journey: str
    kind: str
    priority: str
    sinks: tuple[str, ...]


@dataclass
class Replayed:
    """What the receiver did: every notification decided, in order, the incidents as they
    ended (with the fingerprints of their alerts), and decisions that failed."""

    sent: list[Sent] = field(default_factory=list)
    incidents: list[IncidentState] = field(default_factory=list)
    alerts: dict[str, frozenset[str]] = field(default_factory=dict)
    flush_errors: int = 0


class _ReplayStore(RedisStore):
    """The ``memory://`` store, noting every due time it is given and every notification
    it commits."""

    def __init__(self, settings: StoreSettings, group_wait_ms: int) -> None:
        super().__init__(FakeRedis(server=FakeServer(), decode_responses=True), settings)
        self.wakeups: list[int] = []
        self.sent: list[Sent] = []
        self._group_wait_ms = group_wait_ms

    def wake(self, at_ms: int) -> None:
        heapq.heappush(self.wakeups, at_ms)

    async def ingest(
        self, groups: Sequence[AlertGroup], truncated: int, now_ms: int
    ) -> list[IngestOutcome]:
        outcomes = await super().ingest(groups, truncated, now_ms)
        self.wake(now_ms)
        if any(o.opened or o.reopened for o in outcomes):
            self.wake(now_ms + self._group_wait_ms)
        return outcomes

    async def commit(
        self,
        claim: Claim,
        version: int,
        state: IncidentState,
        guard: Mapping[str, str | int | None],
        next_due_ms: int | None,
        appended: Sequence[TimelineEntry],
        now_ms: int,
        jobs: Sequence[Job] = (),
    ) -> CommitOutcome:
        result = await super().commit(
            claim, version, state, guard, next_due_ms, appended, now_ms, jobs
        )
        if result != "ok":
            self.wake(now_ms)
            return result
        if next_due_ms is not None:
            self.wake(next_due_ms)
        if jobs:
            self.sent.append(
                Sent(
                    at_ms=now_ms,
                    incident=state.id,
                    journey=state.journey,
                    kind=jobs[0].kind,
                    priority=state.priority or "P5",
                    sinks=tuple(sorted(job.sink for job in jobs)),
                )
            )
        return result

    async def release(self, claim: Claim, due_ms: int | None) -> None:
        await super().release(claim, due_ms)
        if due_ms is not None:
            self.wake(due_ms)

    async def incidents_since(
        self, since_ms: int, journey: str | None, limit: int
    ) -> list[IncidentState]:
        return []


async def drive(settings: Settings, notifications: Sequence[Notification], end_ms: int) -> Replayed:
    """Send ``notifications`` at their times and decide whatever is due up to ``end_ms``."""
    start = notifications[0].at_ms if notifications else end_ms
    clock = VirtualClock(start)
    metrics = Metrics()
    store = _ReplayStore(store_settings(settings), settings.timers.group_wait_ms)
    # Sinks by name only: routing decides the targets, and no job is ever delivered.
    pipeline = Pipeline(store, settings, settings.routing.keys(), metrics, clock)
    batch = settings.config.scheduler.batch

    async def decide_until(limit_ms: int) -> None:
        while store.wakeups and store.wakeups[0] <= limit_ms:
            at = heapq.heappop(store.wakeups)
            while store.wakeups and store.wakeups[0] == at:
                heapq.heappop(store.wakeups)
            clock.now_ms = max(clock.now_ms, at)
            while await pipeline.flush_due() >= batch:
                pass

    try:
        for at_ms, together in itertools.groupby(notifications, key=lambda n: n.at_ms):
            # Decisions due before the batches come first; one due at their very moment
            # after them, as the scheduler's tick would most often find it.
            await decide_until(at_ms - 1)
            clock.now_ms = at_ms
            # Alertmanager flushes many groups in the same second (their timers run from
            # alert starts on the rules' evaluation grid): sent side by side, as they
            # would arrive, the store applies them in one script call (its group commit).
            async with anyio.create_task_group() as tg:
                for n in together:
                    tg.start_soon(pipeline.ingest, normalize(n.message))
        await decide_until(end_ms)
        incidents = await store.list_incidents("all", None, _EVERY_INCIDENT)
        alerts = {
            st.id: frozenset(a.fp for a in (await store.load_alerts(st.id, _EVERY_INCIDENT)).alerts)
            for st in incidents
        }
    finally:
        await pipeline.aclose()
        await store.aclose()
    return Replayed(
        sent=store.sent,
        incidents=incidents,
        alerts=alerts,
        flush_errors=int(
            metrics.registry.get_sample_value("journey_receiver_flush_errors_total") or 0
        ),
    )
