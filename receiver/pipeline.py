"""The flow, one awaited call per step: ``ingest`` on the request path, ``flush`` after.

ingest: batch → placement (journey, stage, key) → store (one atomic round trip).
flush:  load → enrich → score → decide (lifecycle) → commit, with the decision's delivery
        jobs written in the same atomic step; the outbox (``receiver.outbox``) delivers them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from receiver import lifecycle
from receiver.act import outcome as run_outcome
from receiver.alertmanager import links
from receiver.causes import change_to_detection
from receiver.enrich.enricher import Enricher, Enrichment, apply
from receiver.errors import StoreUnavailable
from receiver.inbound.resolves import before_this_episode
from receiver.incident import Incident, build, title
from receiver.metrics import Metrics
from receiver.models import Batch
from receiver.outcomes import similar
from receiver.placement import place
from receiver.retired import Retired
from receiver.scoring import Impact
from receiver.settings import Settings, ms
from receiver.sinks.pagerduty import resolved_by_person
from receiver.store import Claim, GroupStore, IngestOutcome
from receiver.store.cache import Said
from receiver.store.deliveries import Job
from receiver.store.records import IncidentState, StoredIncident

if TYPE_CHECKING:
    from receiver.act.runs import Runs

logger = logging.getLogger("journey_receiver.pipeline")

_COMMIT_ATTEMPTS = 3
_FLUSH_CONCURRENCY = 8
# Which sinks each replica has, for the others (``Pipeline._elsewhere``): said every half
# minute, remembered two minutes, so a replica that stopped or dropped a sink leaves the
# list within that. Each says it with its own token: what a replica said itself before a
# reload dropped the sink (or the only one, on the memory store) is no other one having it.
# A sorted set of who says it (``SharedCache.say``), so that no replica's saying hides
# another's; under a name of its own, as releases before kept one token under "sinks".
# That token is still written, for a replica of the release before during an upgrade (one
# that adds a sink would otherwise have it drop the sink's end): any token not its own is
# what it looks for.
_SINKS_NAMESPACE = "sinks-here"
_SINKS_BEFORE = "sinks"
SINKS_SAID_EVERY_MS = 30_000
SINKS_SAID_FOR_MS = 120_000
_RESCORED_PAGE = 200  # open incidents read at a time when a reload changed the scoring
# Alerts written into one notification or API read; the counts always cover all of them.
ALERTS_SHOWN = 500

Clock = Callable[[], float]


class Pipeline:
    def __init__(
        self,
        store: GroupStore,
        settings: Settings,
        sinks: Collection[str],
        metrics: Metrics,
        clock: Clock,
        enricher: Enricher | None = None,
    ) -> None:
        self.store = store
        self.enricher = enricher
        self.settings = settings
        # Names only: deciding needs to know which sinks exist; the outbox holds the clients.
        self.sinks = frozenset(sinks)
        self.metrics = metrics
        self.clock = clock
        self._retired = Retired()
        self.runs: Runs | None = None
        """Asks for the runs an ``auto`` journey's decisions call for; set by the receiver."""
        self.look_again = False
        self._sinks_said = Said(
            store.cache, _SINKS_NAMESPACE, SINKS_SAID_EVERY_MS, SINKS_SAID_FOR_MS
        )
        # A reload changed the scoring (weights, severities, tiers, thresholds): every open
        # incident is scored again at the next round, those that would wait for a change too.
        self.rescore = False
        """Set when a reload shortened a timer: the next round first makes every incident
        due now, since due times set under the longer timer would wait it out."""

    def replace_enricher(self, enricher: Enricher) -> None:
        """Enrich with ``enricher`` from now on; decisions under way finish on the old one."""
        if self.enricher is not None:
            self._retired.add(self.enricher)
        self.enricher = enricher

    async def aclose(self) -> None:
        await self._retired.close()
        if self.enricher is not None:
            await self.enricher.aclose()

    def now_ms(self) -> int:
        return ms(self.clock())

    async def ingest(self, batch: Batch) -> list[IngestOutcome]:
        groups = place(batch, self.settings)
        outcomes = await self.store.ingest(groups, batch.truncated_alerts, self.now_ms())
        m = self.metrics
        m.batches.inc()
        firing = sum(a.status == "firing" for a in batch.alerts)
        m.alerts_firing.inc(firing)
        m.alerts_resolved.inc(len(batch.alerts) - firing)
        if batch.truncated_alerts:
            m.truncated_alerts.inc(batch.truncated_alerts)
        for outcome in outcomes:
            if outcome.duplicates:
                m.alerts_duplicate.inc(outcome.duplicates)
            if outcome.opened:
                m.incidents_opened.labels(outcome.journey).inc()
            if outcome.reopened:
                m.incidents_reopened.labels(outcome.journey).inc()
        return outcomes

    async def incident(self, stored: StoredIncident, impact: Impact | None = None) -> Incident:
        """The incident as it reads now (API reads and notifications)."""
        state = stored.state
        page = await self.store.load_alerts(state.id, ALERTS_SHOWN)
        journey = self.settings.catalog.find(state.journey)
        impact = impact or self.settings.impact(state)
        am = await self.store.cache.get(links.CACHE_NAMESPACE, links.CACHE_FIELD)
        cap = self.settings.config.store.max_alerts_per_incident
        return build(state, page, journey, impact, self.settings.rules.tier_label, am, cap or None)

    async def flush_due(self) -> int:
        """Claim every incident due now and decide for each; returns how many were claimed."""
        # Rounds run one after another: nothing from the last one still enriches.
        await self._retired.close()
        sched = self.settings.config.scheduler
        if self.look_again:
            moved = await self.store.hasten(self.now_ms())
            self.look_again = False
            logger.info("a reload shortened a timer: %d incident(s) looked at again now", moved)
        if self.rescore:
            moved = 0
            async for page in self.store.iter_incidents("open", None, _RESCORED_PAGE):
                moved += await self.store.look_at([s.id for s in page], self.now_ms())
            # Once walked: a store that failed on the way leaves it for the next round.
            self.rescore = False
            logger.info(
                "a reload changed the scoring or automation: %d open incident(s) looked at", moved
            )
        claims = await self.store.claim_due(self.now_ms(), ms(sched.lease), sched.batch)
        if not claims:
            return 0
        loaded = await self._read_round(claims)
        # The round's openings share one read of the past incidents they are compared with.
        recall = similar.Recall(self.store, self.now_ms(), self._retention_ms, len(claims))
        # Side by side: one incident waiting for a slow Prometheus must not delay the rest.
        limiter = anyio.CapacityLimiter(_FLUSH_CONCURRENCY)
        unavailable: list[StoreUnavailable] = []

        async def one(claim: Claim) -> None:
            async with limiter:
                try:
                    await self.flush(claim, recall, loaded.get(claim.incident_id))
                except StoreUnavailable as exc:
                    unavailable.append(exc)
                except Exception:
                    # One incident that cannot be decided must not hold up the others; its
                    # claim lapses after the lease and it is tried again then.
                    self.metrics.flush_errors.inc()
                    logger.exception("flush of incident %s failed", claim.incident_id)

        if len(claims) == 1:
            # The usual quiet tick: nothing to run side by side, so no task group to pay for.
            await one(claims[0])
        else:
            async with anyio.create_task_group() as tg:
                for claim in claims:
                    tg.start_soon(one, claim)
        if unavailable:
            raise unavailable[0]
        return len(claims)

    async def _read_round(self, claims: list[Claim]) -> dict[str, StoredIncident | None]:
        """Every claimed incident in one read. A batch landing before an incident's turn
        comes is caught as any other between a read and its commit (commit.lua)."""
        ids = [c.incident_id for c in claims]
        try:
            return dict(zip(ids, await self.store.load_many(ids), strict=True))
        except StoreUnavailable:
            raise
        except Exception:
            # One incident that cannot be read must not hold up the others: each reads its
            # own, and that one fails alone (flush_errors).
            return {}

    def _needs_context(self, state: IncidentState, now_ms: int) -> bool:
        """Open, past group_wait, and its context older than group_interval, none, or read
        before this episode began (a reopen is told against its own start: the last
        episode's changes and causes may be rolled back since)."""
        timers = self.settings.timers
        if self.enricher is None or state.status != "open":
            return False
        if state.pending is not None and now_ms < state.first_firing_at + timers.group_wait_ms:
            return False
        read = state.enriched_at
        return (
            read is None
            or read < state.first_firing_at
            or now_ms - read >= timers.group_interval_ms
        )

    async def _context(self, state: IncidentState, now_ms: int) -> Enrichment:
        assert self.enricher is not None
        journey = self.settings.catalog.find(state.journey)
        try:
            with anyio.fail_after(self.settings.context_budget_s):
                ranking = self.settings.rank_incident(state)
                found = await self.enricher.enrich(state, journey, now_ms, ranking)
            if state.firing_count == 0 and state.notified_at is not None:
                # Every alert resolved (resolve_after is being waited out): no service
                # fires to rank, and a responder's rollback since is no cause. The story
                # people were told stands; only the KPIs are read again (back in band?).
                return replace(
                    found, changes=list(state.changes), causes=list(state.probable_causes)
                )
            return found
        except TimeoutError:
            reason = f"context unavailable: no answer within {self.settings.context_budget_s:g}s"
        except Exception as exc:
            # Context is a courtesy: a bug in it must not keep the incident from going out.
            logger.exception("enrichment of incident %s failed", state.id)
            reason = f"context unavailable: {type(exc).__name__}"
        self.metrics.enrichment_failures.inc()
        return Enrichment(
            kpis=list(state.kpis),
            changes=list(state.changes),
            causes=list(state.probable_causes),
            notes=[reason],
        )

    async def flush(
        self,
        claim: Claim,
        recall: similar.Recall | None = None,
        read: StoredIncident | None = None,
    ) -> None:
        """Decide for one claimed incident from its state alone; read its alerts only to
        write a notification. ``recall``: the past incidents of the round (``flush_due``);
        without it, this opening reads its own. ``read``: the incident as the round read it
        (``flush_due``), for the first try; else it is read here."""
        context: Enrichment | None = None
        for attempt in range(_COMMIT_ATTEMPTS):
            # Without its timeline: a decision only appends to it (commit.lua); reading and
            # parsing the whole story at every look would be work for nothing.
            stored = (
                read
                if attempt == 0 and read is not None
                else await self.store.load(claim.incident_id, timeline=False)
            )
            if stored is None:
                # Expired with its retention: nothing to decide, ever again.
                await self.store.release(claim, None)
                return
            now = self.now_ms()
            if context is None and self._needs_context(stored.state, now):
                context = await self._context(stored.state, now)
            loaded = apply(stored.state, context, now) if context else stored.state
            impact = self.settings.impact(loaded)
            assessment = lifecycle.Assessment(impact.priority, impact.score)
            decision = lifecycle.decide(loaded, assessment, now, self.settings.timers)
            elsewhere = await self._elsewhere(loaded, decision.notify)
            targets = self._targets(loaded, decision.notify, impact.priority, elsewhere)
            state = lifecycle.advance(loaded, decision, assessment, now, list(targets))
            state.score_breakdown = list(impact.factors)
            state.stage_weights = dict(impact.stage_weights)
            state.title = title(state, impact)
            state.change_to_detection_s = change_to_detection(state)
            state.action_outcomes = run_outcome.standing(state, self._outcome_window_ms)
            state.action_outcomes |= run_outcome.judged(state, now, self._outcome_window_ms)
            if decision.notify in ("open", "reopen"):
                await self._remember(state, now, recall)
            jobs = [
                Job(
                    incident=state.id,
                    sink=sink,
                    kind=decision.notify,
                    changes=list(decision.reasons),
                    due=now,
                )
                for sink in targets
                if decision.notify is not None
            ]
            next_look = self._next_look(state, decision, now)
            if self.runs is not None and await self.runs.unasked(state, impact.priority):
                # Asked for after the commit: should this replica stop, or the store fail,
                # in between, nothing else would look at the incident again (no alert may
                # change), and the run would never be asked for.
                again = now + ms(self.settings.config.scheduler.lease)
                next_look = again if next_look is None else min(next_look, again)
            committed = await self.store.commit(
                claim,
                stored.version,
                state,
                lifecycle.guard(loaded, decision),
                next_look,
                state.timeline[len(stored.state.timeline) :],
                now,
                jobs,
            )
            if committed == "stale":
                continue
            if committed == "ok":
                self._count(loaded, decision, impact.priority)
                if self.runs is not None:
                    await self.runs.offer(state, impact.priority)
            return
        # A guarded field keeps changing under us: give it back, due at once, for the next tick.
        await self.store.release(claim, self.now_ms())

    async def _remember(
        self, state: IncidentState, now_ms: int, recall: similar.Recall | None
    ) -> None:
        """What this episode is like, and the past incidents most like it."""
        page = await self.store.load_alerts(state.id, ALERTS_SHOWN)
        state.alertnames = sorted({a.labels.get("alertname", "") for a in page.alerts} - {""})
        recall = recall or similar.Recall(self.store, now_ms, self._retention_ms)
        state.similar = await recall.find(state)

    @property
    def _retention_ms(self) -> int:
        return ms(self.settings.config.store.retention)

    def _next_look(
        self, state: IncidentState, decision: lifecycle.Decision, now_ms: int
    ) -> int | None:
        """When to decide again. An open incident of a journey with KPIs is looked at again
        every group_interval even if no alert changes: a KPI getting worse (or Prometheus
        coming back) may raise its priority. Counted from when its context was read: a
        decision in between (a batch) must not put the next reading off."""
        due = decision.next_due_ms
        journey = self.settings.catalog.find(state.journey)
        wanted = [due, run_outcome.next_look(state, self._outcome_window_ms)]
        if state.status == "open" and self.enricher is not None and journey.kpis:
            interval = self.settings.timers.group_interval_ms
            look = (state.enriched_at if state.enriched_at is not None else now_ms) + interval
            # Not read when due (still gathering, say): a whole interval on, not at once.
            wanted.append(look if look > now_ms else now_ms + interval)
        return min((d for d in wanted if d is not None), default=None)

    @property
    def _outcome_window_ms(self) -> int:
        return ms(self.settings.config.automation.outcome_window)

    async def say_sinks(self) -> int:
        """Tell the other replicas which sinks this one has (``_elsewhere``), every
        ``SINKS_SAID_EVERY_MS`` and at once after a reload changed them; how many were said."""
        said = await self._sinks_said.say(self.sinks, self.now_ms())
        if said:
            for name in sorted(self.sinks):
                await self.store.cache.set(
                    _SINKS_BEFORE, name, self._sinks_said.token, SINKS_SAID_FOR_MS
                )
        return said

    async def _elsewhere(self, state: IncidentState, kind: str | None) -> frozenset[str]:
        """The sinks that heard of the incident which this replica lacks but another one
        has (a rolling change that adds a sink): the end goes to them too, through the
        outbox, which gives their jobs to a replica that has them. A sink removed from
        every replica is said by none: its end is not queued to fail."""
        lacking = set(state.sinks) - self.sinks if kind == "resolve" else set()
        now = self.now_ms()
        return frozenset([name for name in lacking if await self._sinks_said.elsewhere(name, now)])

    def _targets(
        self,
        state: IncidentState,
        kind: str | None,
        priority: str,
        elsewhere: frozenset[str] = frozenset(),
    ) -> tuple[str, ...]:
        if kind is None:
            return ()
        told = set(state.sinks) if kind in ("update", "resolve", "reopen") else set()
        routed = self.settings.sinks_for(priority)
        if "pagerduty" not in routed and kind in ("update", "reopen"):
            # A trigger after PagerDuty's alert resolved opens a new PagerDuty incident: a
            # page. A reopen (or an update of the reopened episode) at a priority routing
            # keeps from PagerDuty must not page; its alert from an earlier episode is over.
            last = state.sinks.get("pagerduty", {}).get("state")
            if kind == "reopen" or last == "resolved":
                told.discard("pagerduty")
        # The end goes to whoever heard of the incident, and only to them; an update also
        # reaches a sink its new priority is routed to, which then hears of it first.
        wanted = told if kind == "resolve" else routed | told
        closed = resolved_by_person(state) and not before_this_episode(
            state.sinks.get("pagerduty", {}), state
        )
        if kind in ("update", "resolve") and closed:
            # A trigger would open a second PagerDuty incident for the outage a person
            # closed there; only a reopen pages again. A resolve made before this episode
            # reopened was of the last PagerDuty incident: the reopen triggers a new one,
            # whose receipt may not be back yet (PagerDuty retried), and it must end too.
            wanted.discard("pagerduty")
        return tuple(sorted(n for n in wanted if n in self.sinks or n in elsewhere))

    def _count(self, state: IncidentState, decision: lifecycle.Decision, priority: str) -> None:
        m = self.metrics
        journey = state.journey
        if decision.notify is not None:
            m.notifications.labels(journey, priority, decision.notify).inc()
        if decision.blips:
            m.blips.labels(journey).inc(decision.blips)
        if decision.resolve:
            m.incidents_resolved.labels(journey).inc()
        if decision.notify == "open":
            m.alerts_per_incident.observe(state.alert_count)
