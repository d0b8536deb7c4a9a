"""Alertmanager's batches through the receiver's own ingest and decisions, on a virtual
clock, with the embedded ``memory://`` store running the same Lua scripts.

Each batch goes the webhook's way (``normalize`` → ``Pipeline.ingest``) at the moment
Alertmanager would have sent it, and the scheduler's decisions (``Pipeline.flush_due``)
run whenever one is due. The clock jumps from one such moment to the next instead of
ticking through the week: the store is told every due time there is — an ingest (the
incident is due now, or at the end of its group_wait when it opens), a decision's next
look and a released claim — so the replay wakes exactly then, which is when the
scheduler's one-second tick would have found the incident due, give or take that second.

Nothing is delivered: a decision's jobs name the sinks its priority is routed to (that is
all a page count needs). No context is fetched unless an ``enricher`` is given (``replay
--context``): then each decision's KPIs (and change feeds) are read at its virtual time,
as the scheduler would have read them then; without one a journey that has KPIs scores as
when Prometheus is unreachable ("no KPI measured"). Similar past incidents are not looked
up: they are shown to people and never change a decision.

The store is ``memory://`` unless ``store_url`` names a Redis (``scratch.py``): then the
replay's keys live under a scratch prefix of its own, deleted when it ends.

The store keeps every incident of the window however long it is (its retention is at
least the window and a day): the report counts them all at the end, and a window longer
than ``store.retention`` would otherwise lose the first ones before they were counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from receiver.app import store_settings
from receiver.enrich.enricher import Enricher
from receiver.errors import StoreUnavailable
from receiver.metrics import Metrics
from receiver.normalize import normalize
from receiver.pipeline import Pipeline
from receiver.replay import scratch
from receiver.replay.batches import Notification
from receiver.settings import Settings
from receiver.store import Claim, CommitOutcome, IngestOutcome, StoreSettings
from receiver.store.base import AlertGroup
from receiver.store.deliveries import Job
from receiver.store.records import IncidentState, TimelineEntry
from receiver.store.redis import RedisStore
from receiver.store.scripts import text

_EVERY_INCIDENT = 10**9
_DAY_MS = 86_400_000
_READS_AT_ONCE = 1000
_CLEANUP_S = 60.0
"""The longest a replay waits for its scratch keys to be deleted as it ends."""


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
    bad_kpis: tuple[str, ...] = ()
    """The journey's KPIs off their baseline in the bad direction when it was decided
    (``replay --context`` only)."""
    notes: tuple[str, ...] = ()
    """Its context notes then ("context unavailable: ...")."""


@dataclass
class Replayed:
    """What the receiver did: every notification decided, in order, the incidents as they
    ended (with the fingerprints of their alerts), and decisions that failed."""

    sent: list[Sent] = field(default_factory=list)
    incidents: list[IncidentState] = field(default_factory=list)
    alerts: dict[str, frozenset[str]] = field(default_factory=dict)
    flush_errors: int = 0
    context: bool = False
    """Whether decisions read their context (``replay --context``)."""


class _ReplayStore(RedisStore):
    """The replay's store, noting every due time it is given and every notification it
    commits."""

    def __init__(
        self, client: Any, helpers: Sequence[Any], settings: StoreSettings, group_wait_ms: int
    ) -> None:
        super().__init__(client, settings, helpers=helpers)
        self.client = client
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
                    bad_kpis=tuple(k.name for k in state.kpis if k.bad),
                    notes=tuple(state.context_notes),
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

    async def fingerprints(self, incident_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """The fingerprints of each incident's alerts, a round trip per thousand incidents:
        the report needs nothing else of them."""
        found: dict[str, frozenset[str]] = {}
        for start in range(0, len(incident_ids), _READS_AT_ONCE):
            ids = incident_ids[start : start + _READS_AT_ONCE]
            async with self.client.pipeline(transaction=False) as pipe:
                for incident_id in ids:
                    pipe.hkeys(self._p + "am:" + incident_id)
                fps = await pipe.execute()
            found |= {i: frozenset(map(text, f)) for i, f in zip(ids, fps, strict=True)}
        return found

    async def settle(self) -> None:
        """Wait for the batches already taken into a script call: after this nothing of
        the replay writes to the store any more."""
        if self._writer is not None:
            # Its outcome (or failure) is for the batches it carried, not for this wait.
            await asyncio.wait([self._writer])


async def drive(
    settings: Settings,
    notifications: Sequence[Notification],
    end_ms: int,
    *,
    store_url: str = scratch.MEMORY,
    enricher: Enricher | None = None,
) -> Replayed:
    """Send ``notifications`` at their times and decide whatever is due up to ``end_ms``.

    ``scratch.StoreError`` when the Redis of ``store_url`` cannot be used (its keys are
    deleted all the same)."""
    start = notifications[0].at_ms if notifications else end_ms
    clock = VirtualClock(start)
    metrics = Metrics()
    memory = scratch.is_memory(store_url)
    configured = store_settings(settings)
    stored = dataclasses.replace(
        configured, retention_ms=max(configured.retention_ms, end_ms - start + _DAY_MS)
    )
    if not memory:
        stored = dataclasses.replace(stored, key_prefix=scratch.scratch_prefix())
    client, helpers = scratch.client_for(store_url)
    store = _ReplayStore(client, helpers, stored, settings.timers.group_wait_ms)
    reached = False
    try:
        if not memory:
            await scratch.reachable(store_url, client)
            reached = True
        return await _run(settings, notifications, end_ms, clock, metrics, store, enricher)
    except Exception as exc:
        failure = None if memory else _unavailable(exc)
        if failure is not None:
            raise scratch.StoreError(f"--store {scratch.shown(store_url)}: {failure}") from exc
        raise
    finally:
        # However it ends — an error, Ctrl-C, a cancelled task — the run's keys go: shielded,
        # or a cancellation would cancel the cleanup too.
        with anyio.move_on_after(_CLEANUP_S, shield=True) as scope:
            await store.settle()
            if reached:
                await scratch.delete_scratch(store_url, client, stored.key_prefix)
            with contextlib.suppress(Exception):
                await store.aclose()
        if reached and scope.cancelled_caught:
            scratch.left_behind(store_url, stored.key_prefix, f"not done in {_CLEANUP_S:g}s")


async def _run(
    settings: Settings,
    notifications: Sequence[Notification],
    end_ms: int,
    clock: VirtualClock,
    metrics: Metrics,
    store: _ReplayStore,
    enricher: Enricher | None,
) -> Replayed:
    # Sinks by name only: routing decides the targets, and no job is ever delivered.
    pipeline = Pipeline(store, settings, settings.routing.keys(), metrics, clock, enricher)
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
            batches = [normalize(n.message) for n in together]
            if len(batches) == 1:
                await pipeline.ingest(batches[0])
                continue
            async with anyio.create_task_group() as tg:
                for b in batches:
                    tg.start_soon(pipeline.ingest, b)
        await decide_until(end_ms)
        incidents = await store.list_incidents("all", None, _EVERY_INCIDENT)
        alerts = await store.fingerprints([st.id for st in incidents])
    finally:
        with anyio.CancelScope(shield=True):
            await pipeline.aclose()
    return Replayed(
        sent=store.sent,
        incidents=incidents,
        alerts=alerts,
        flush_errors=int(
            metrics.registry.get_sample_value("journey_receiver_flush_errors_total") or 0
        ),
        context=enricher is not None,
    )


def _unavailable(exc: BaseException) -> str | None:
    """Why the store failed, if ``exc`` is (or holds, from a task group) its failure."""
    if isinstance(exc, StoreUnavailable):
        return str(exc) or type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _unavailable(inner)) is not None:
                return found
    return None
