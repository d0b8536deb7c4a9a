"""The flow, one awaited call per step: ``ingest`` on the request path, ``flush`` after.

ingest: batch → placement (journey, stage, key) → store (one atomic round trip).
flush:  load → score → decide (lifecycle) → commit → deliver to sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from receiver import lifecycle
from receiver.errors import DeliveryError, StoreUnavailable
from receiver.incident import Incident, build, title
from receiver.metrics import Metrics
from receiver.models import Batch
from receiver.placement import place
from receiver.scoring import Impact
from receiver.settings import Settings, ms
from receiver.sinks import Receipt, Sink
from receiver.store import Claim, GroupStore, IngestOutcome
from receiver.store.records import IncidentState, StoredIncident

logger = logging.getLogger("journey_receiver.pipeline")

_COMMIT_ATTEMPTS = 3
# Alerts written into one notification or API read; the counts always cover all of them.
ALERTS_SHOWN = 500

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Notification:
    incident: Incident
    kind: str
    targets: tuple[str, ...]
    due_ms: int


class Pipeline:
    def __init__(
        self,
        store: GroupStore,
        settings: Settings,
        sinks: Mapping[str, Sink],
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sinks = dict(sinks)
        self.metrics = metrics
        self.clock = clock

    def now_ms(self) -> int:
        return ms(self.clock())

    async def ingest(self, batch: Batch) -> list[IngestOutcome]:
        groups = place(batch, self.settings)
        outcomes = await self.store.ingest(groups, batch.truncated_alerts, self.now_ms())
        m = self.metrics
        m.batches.inc()
        firing = sum(a.status == "firing" for a in batch.alerts)
        m.alerts_received.labels("firing").inc(firing)
        m.alerts_received.labels("resolved").inc(len(batch.alerts) - firing)
        if batch.truncated_alerts:
            m.truncated_alerts.inc(batch.truncated_alerts)
        for group, outcome in zip(groups, outcomes, strict=True):
            if outcome.duplicates:
                m.alerts_duplicate.inc(outcome.duplicates)
            if outcome.opened:
                m.incidents_opened.labels(group.key.journey).inc()
            if outcome.reopened:
                m.incidents_reopened.labels(group.key.journey).inc()
        return outcomes

    async def incident(self, stored: StoredIncident, impact: Impact | None = None) -> Incident:
        """The incident as it reads now (API reads and notifications)."""
        state = stored.state
        page = await self.store.load_alerts(state.id, ALERTS_SHOWN)
        journey = self.settings.catalog.find(state.journey)
        return build(state, page, journey, impact or self.settings.impact(state))

    async def flush_due(self) -> int:
        """Claim every incident due now and decide for each; returns how many were claimed."""
        sched = self.settings.config.scheduler
        claims = await self.store.claim_due(self.now_ms(), ms(sched.lease), sched.batch)
        for claim in claims:
            try:
                await self.flush(claim)
            except StoreUnavailable:
                raise
            except Exception:
                # One incident that cannot be decided must not hold up the others; its claim
                # lapses after the lease and it is tried again then.
                self.metrics.flush_errors.inc()
                logger.exception("flush of incident %s failed", claim.incident_id)
        return len(claims)

    async def flush(self, claim: Claim) -> None:
        """Decide for one claimed incident from its state alone; read its alerts only to
        write a notification."""
        for _ in range(_COMMIT_ATTEMPTS):
            stored = await self.store.load(claim.incident_id)
            if stored is None:
                return
            loaded = stored.state
            now = self.now_ms()
            impact = self.settings.impact(loaded)
            assessment = lifecycle.Assessment(impact.priority, impact.score)
            decision = lifecycle.decide(loaded, assessment, now, self.settings.timers)
            targets = self._targets(loaded, decision.notify, impact.priority)
            state = lifecycle.advance(loaded, decision, assessment, now, list(targets))
            state.score_breakdown = list(impact.factors)
            state.title = title(state, impact)
            if decision.notify is not None:
                state.sinks = {
                    **state.sinks,
                    **{t: {"state": decision.notify} for t in targets},
                }
            outcome = await self.store.commit(
                claim,
                stored.version,
                state,
                lifecycle.guard(loaded, decision),
                decision.next_due_ms,
                state.timeline[len(loaded.timeline) :],
                now,
            )
            if outcome == "stale":
                continue
            if outcome == "ok":
                self._count(loaded, decision)
                if decision.notify is not None:
                    incident = await self.incident(StoredIncident(state=state, version=0), impact)
                    await self._deliver(
                        Notification(incident, decision.notify, targets, claim.due_ms)
                    )
            return
        # A guarded field keeps changing under us: give it back, due at once, for the next tick.
        await self.store.release(claim, self.now_ms())

    def _targets(self, state: IncidentState, kind: str | None, priority: str) -> tuple[str, ...]:
        if kind is None:
            return ()
        routed = self.settings.sinks_for(priority)
        # Whoever heard of the incident hears of its updates and its end.
        told = set(state.sinks) if kind in ("update", "resolve", "reopen") else set()
        return tuple(sorted(n for n in routed | told if n in self.sinks))

    def _count(self, state: IncidentState, decision: lifecycle.Decision) -> None:
        m = self.metrics
        journey = state.journey
        if decision.blips:
            m.blips.labels(journey).inc(decision.blips)
        if decision.resolve:
            m.incidents_resolved.labels(journey).inc()
        if decision.notify == "open":
            m.alerts_per_incident.observe(state.alert_count)

    async def _deliver(self, note: Notification) -> None:
        for name in note.targets:
            sink = self.sinks[name]
            previous = note.incident.sinks.get(name)
            receipt = Receipt(sink=name, state=previous["state"]) if previous else None
            try:
                await sink.deliver(note.incident, note.kind, receipt)
            except DeliveryError as exc:
                self.metrics.notifications.labels(name, note.kind, exc.reason).inc()
                logger.warning("delivery failed: %s", exc)
                continue
            except Exception:
                # A sink's bug must not keep the incident from the other sinks.
                self.metrics.notifications.labels(name, note.kind, "error").inc()
                logger.exception("sink %s failed on incident %s", name, note.incident.id)
                continue
            self.metrics.notifications.labels(name, note.kind, "delivered").inc()
            self.metrics.notification_latency.labels(name).observe(
                max(0.0, (self.now_ms() - note.due_ms) / 1000)
            )
