"""One incident's context: its journey's KPIs now vs baseline, and the changes around it.

Asked by the scheduler when an incident's first notification is due and again at most
every group_interval (``enriched_at`` on the incident is the cache, shared by replicas).
KPI queries and change sources run concurrently; each failure is a note, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import anyio

from receiver.causes import span
from receiver.config import Journey
from receiver.config.receiver_yaml import ScopeField
from receiver.enrich import ChangeMatch, ChangeReport, KpiReport
from receiver.enrich.changes import correlate, gather
from receiver.enrich.feeds import Feed, source_of
from receiver.enrich.prometheus import PrometheusKpis
from receiver.enrich.scope import PLACE_LABELS, contradiction, named_scope
from receiver.events import SETS_VERSION, ChangeEvent
from receiver.incident import kpi_moved
from receiver.outcomes import revenue
from receiver.scoring import measured
from receiver.store import GroupStore
from receiver.store.records import (
    CauseRecord,
    ChangeRecord,
    IncidentState,
    KpiRecord,
    TimelineEntry,
)
from receiver.topology import Ranking

NO_RANKING = Ranking()
# A service's stored versions read per change: the newest ones, where what it replaced is.
_VERSIONS_READ = 50
_WEEK = 7 * 86400.0
_DAY = 86400.0


def baseline_words(offset_s: float) -> str:
    """The baseline in words, for titles: "last week", "yesterday", "2h ago"."""
    if offset_s == _WEEK:
        return "last week"
    if offset_s == _DAY:
        return "yesterday"
    for unit, size in (("w", _WEEK), ("d", _DAY), ("h", 3600.0), ("m", 60.0)):
        if offset_s >= size and offset_s % size == 0:
            return f"{int(offset_s // size)}{unit} ago"
    return f"{offset_s:g}s ago"


@dataclass(frozen=True, slots=True)
class Enrichment:
    kpis: list[KpiRecord]
    changes: list[ChangeRecord]
    causes: list[CauseRecord]
    notes: list[str]
    kpis_unavailable: list[str] = field(default_factory=list)
    """KPIs Prometheus did not answer for: their last measurement stands (``apply``)."""


class Enricher:
    def __init__(
        self,
        store: GroupStore | None,
        kpis: PrometheusKpis | None,
        feeds: Sequence[Feed],
        *,
        lookback_s: float,
        baseline_offset_s: float,
        scope_labels: Mapping[ScopeField, str],
        chart_source: PrometheusKpis | None = None,
        budget_s: float | None = None,
    ) -> None:
        """``budget_s``: how long the change feeds may take (the KPIs' budget, which the
        pipeline's bound on the whole context leaves a second beyond)."""
        self.store = store
        self.scope_labels = dict(scope_labels)
        self.kpi_source = kpis
        # The incident page's range queries have a client (and threads) of their own:
        # people opening the page during an incident must not queue enrichment's queries.
        self.chart_source = chart_source
        self.feeds = list(feeds)
        self.lookback_s = lookback_s
        self.baseline_offset_s = baseline_offset_s
        self.budget_s = budget_s

    async def enrich(
        self,
        state: IncidentState,
        journey: Journey,
        now_ms: int,
        ranking: Ranking = NO_RANKING,
    ) -> Enrichment:
        """``ranking`` orders the incident's firing services, the probable upstream first."""
        kpi_report = KpiReport()
        change_report = ChangeReport()
        window: list[ChangeEvent] = []

        async def kpis() -> None:
            nonlocal kpi_report
            if self.kpi_source is not None and journey.kpis:
                at = datetime.fromtimestamp(now_ms / 1000, UTC)
                started = datetime.fromtimestamp(state.started / 1000, UTC)
                kpi_report = await self.kpi_source.kpis(journey, state.group_labels, at, started)

        async def changes() -> None:
            nonlocal change_report, window
            change_report, window = await self._changes(state, now_ms, ranking)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kpis)
            tg.start_soon(changes)
        offsets = {k.name: k.baseline_offset or self.baseline_offset_s for k in journey.kpis}
        return Enrichment(
            kpis=[
                KpiRecord.model_validate(
                    {**asdict(k), "vs": baseline_words(offsets.get(k.name, self.baseline_offset_s))}
                )
                for k in kpi_report.kpis
            ],
            changes=await self._records(change_report, window, state),
            causes=[
                CauseRecord(
                    kind=c.kind,
                    text=c.text,
                    score=c.score,
                    evidence=list(c.evidence),
                    change_id=c.change_id,
                    change_source=c.change_source,
                )
                for c in change_report.causes
            ],
            notes=[*kpi_report.notes, *change_report.notes],
            kpis_unavailable=list(kpi_report.unavailable),
        )

    async def _changes(
        self, state: IncidentState, now_ms: int, ranking: Ranking
    ) -> tuple[ChangeReport, list[ChangeEvent]]:
        """Correlated changes, and every event seen (to find what a change replaced)."""
        start_ms = state.started - round(self.lookback_s * 1000)
        # Without a store or feeds (explain's dry run) no change is known, yet the
        # services are still ranked: the upstream one is a cause, as in the live incident.
        docs = [] if self.store is None else await self.store.events_between(start_ms, now_ms)
        stored = [ChangeEvent.from_json(doc) for doc in docs]
        events, notes = await gather(
            stored,
            self.feeds,
            datetime.fromtimestamp(start_ms / 1000, UTC),
            datetime.fromtimestamp(now_ms / 1000, UTC),
            self.budget_s,
        )
        report = correlate(
            events,
            # As people are told them: a blip's service is no ground for a cause.
            services={s: state.services[s] for s in state.shown_services},
            ranking=ranking,
            journey_id=state.journey,
            group_labels=state.group_labels,
            scope_labels=self.scope_labels,
            started_ms=state.started,
            lookback_ms=round(self.lookback_s * 1000),
            now_ms=now_ms,
        )
        return ChangeReport(report.changes, report.causes, (*notes, *report.notes)), events

    async def _records(
        self, report: ChangeReport, window: list[ChangeEvent], state: IncidentState
    ) -> list[ChangeRecord]:
        """The correlated changes as stored, each with the version it replaced when the
        version history in the incident's scope names it: the events of the window, and
        each service's stored versions before its change (an index, not the history)."""
        changes = report.changes
        if self.store is None or not changes:
            earlier: list[list[str]] = [[] for _ in changes]
        else:
            earlier = await self.store.versions_before(
                [c.service for c in changes], [c.at_ms for c in changes], _VERSIONS_READ
            )
        records = []
        for change, docs in zip(changes, earlier, strict=True):
            seen = [*window, *map(ChangeEvent.from_json, docs)]
            records.append(
                ChangeRecord.model_validate(
                    {
                        **asdict(change),
                        "at": change.at_ms,
                        "previous_version": self._previous(change, seen, state),
                    }
                )
            )
        return records

    def _previous(
        self, change: ChangeMatch, events: list[ChangeEvent], state: IncidentState
    ) -> str | None:
        """The version ``change`` replaced, in the incident's scope and in the change's own
        (its cluster, its region): a version deployed elsewhere is not the one a rollback
        here would return to. A change that does not say which version it brought cannot
        say which one it replaced: the last version on record may be the very one it
        deployed. A deploy and a rollback both set the version that runs: a bad version
        rolled back since is not the one replaced, and after a rollback that named no
        version (``kubectl rollout undo``) what ran is not known."""
        if not change.version:
            return None
        own = next((e for e in events if e.id == change.id and source_of(e) == change.source), None)
        places = PLACE_LABELS | set(state.group_labels)
        where = named_scope(own, self.scope_labels, places) if own is not None else {}
        sets = change.type in SETS_VERSION
        before = [
            e
            for e in events
            if e.service == change.service
            and (e.type == change.type or (sets and e.type in SETS_VERSION))
            # A rollback that names no version (``kubectl rollout undo``) leaves what runs
            # unknown; a deploy that names none is most often another source's report of
            # one named elsewhere (a Grafana annotation beside CI's event): passed over.
            and (e.version or (sets and e.type == "rollback"))
            and e.version != change.version
            and e.at.timestamp() * 1000 < change.at_ms
            and contradiction(e, state.group_labels, self.scope_labels) is None
            and contradiction(e, where, self.scope_labels) is None
        ]
        if not before:
            return None
        return max(before, key=lambda e: e.at).version or None

    async def aclose(self) -> None:
        for source in (self.kpi_source, self.chart_source):
            if source is not None:
                await source.aclose()
        for feed in self.feeds:
            await feed.aclose()


def apply(state: IncidentState, context: Enrichment, now_ms: int) -> IncidentState:
    """``state`` with this context, and a timeline entry for each thing it newly shows: a
    KPI gone bad or back in its band, a change found, a source gone missing."""
    # Its own timeline, the one list changed in place; the rest is assigned anew below. A
    # deep copy of the whole state was a tenth of a decision's cost.
    updated = state.model_copy(update={"timeline": list(state.timeline)})
    was_bad = {k.name for k in state.kpis if k.bad}
    known = {(c.source, c.id) for c in state.changes}

    def note(kind: str, text: str) -> None:
        updated.timeline.append(TimelineEntry(at=now_ms, kind=kind, text=text))

    for kpi in context.kpis:
        if not measured(kpi):
            continue  # not measured: neither gone bad nor back
        # From a baseline of zero there is no percentage: "0 → 30" says how far.
        # The percentage to a tenth, as outcomes/slo.py reads it back.
        moved = f"{kpi.deviation_pct:+.1f}%" if kpi.deviation_pct is not None else kpi_moved(kpi)
        if kpi.bad and kpi.name not in was_bad:
            note("kpi", f"KPI {kpi.name} {moved} vs {kpi.vs}")
        elif not kpi.bad and kpi.name in was_bad:
            # The journey's SLO time (outcomes/slo.py) ends here, not at the next resolve.
            note("kpi_ok", f"KPI {kpi.name} back in its band, {moved} vs {kpi.vs}")
    for change in context.changes:
        if (change.source, change.id) not in known:
            when = (
                f"{span(change.minutes_before * 60_000)} before the first alert"
                if change.minutes_before >= 0
                else f"{span(-change.minutes_before * 60_000)} after the first alert"
            )
            what = f"{change.type} {change.version}" if change.version else change.type
            note("change", f"{what} to {change.service} {when}")
    # A KPI Prometheus did not answer for is unknown now, not healthy: its last
    # measurement stands (said so), or a moment's outage would lower the priority.
    answered = {k.name for k in context.kpis}
    kept = [k for k in state.kpis if k.name in context.kpis_unavailable and k.name not in answered]
    notes = list(context.notes)
    if kept:
        names = ", ".join(k.name for k in kept)
        notes.append(f"KPI {names}: not answered now, shown as last measured")
    for text in notes:
        if text not in state.context_notes:
            note("context", text)
    updated.kpis = [*context.kpis, *kept]
    if state.pending is None:
        # An episode not yet told is counted from its first notification (the look for it
        # is this one), so that a blip is not counted at all (receiver/outcomes/revenue.py).
        updated.revenue_at_risk, updated.revenue_counted_to = revenue.count(
            state, updated.kpis, now_ms
        )
    updated.changes = context.changes
    updated.probable_causes = context.causes
    updated.context_notes = notes
    updated.enriched_at = now_ms
    return updated
