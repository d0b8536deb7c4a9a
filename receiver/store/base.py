"""The store's interface and the values that cross it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from receiver.fingerprint import GroupKey
from receiver.models import Alert
from receiver.store.cache import SharedCache
from receiver.store.deliveries import DeliveryQueue, Job
from receiver.store.records import AlertPage, IncidentState, StoredIncident, TimelineEntry


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """What the store itself needs to know: where its keys live and how long things last."""

    key_prefix: str = "jr"
    retention_ms: int = 7 * 86_400_000
    events_retention_ms: int = 7 * 86_400_000
    group_wait_ms: int = 30_000
    reopen_window_ms: int = 1_800_000
    # Replicas that must hold a batch before it is acknowledged (0: Redis's asynchronous
    # replication), and how long to wait for them.
    replica_acks: int = 0
    replica_ack_timeout_ms: int = 1_000
    # Alerts an incident keeps; beyond it its resolved ones go, oldest first (0: no limit).
    max_alerts_per_incident: int = 10_000


class PlacedAlert(NamedTuple):
    """An alert with what the catalog decided about it (a NamedTuple: one per alert)."""

    alert: Alert
    stage: str | None
    service: str
    severity: str
    region: str
    impact_class: str


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """The alerts of one batch that belong to one incident key."""

    key: GroupKey
    alerts: Sequence[PlacedAlert]


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What one batch did to one incident. ``incident_id`` is None when the group held only
    resolutions of alerts no incident knows (nothing to resolve, nothing opened). There is
    one per incident touched, which need not be one per group sent: an alert goes to the
    live incident that already holds it, whatever its group is under the current config."""

    incident_id: str | None
    journey: str
    opened: bool
    reopened: bool
    changed: int
    duplicates: int
    ignored: int
    alert_count: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A replica's exclusive right, until its lease runs out, to decide for one incident."""

    incident_id: str
    token: str
    due_ms: int


@dataclass(frozen=True, slots=True)
class Annotation:
    """What people and peers add to an incident between decisions, in one atomic step.

    ``append``: records added to a list field (``feedback``, ``silences``,
    ``actions_run``; the latest 50 are kept: of feedback, plain votes go first, of
    actions_run, refusals and skips; silences still in force stay beyond 50, up to 200).
    ``merge``: keys set in a mapping field, or in ``"sinks.<name>"``. ``fill``: the same,
    but only keys not set yet (the first acknowledgement is the one that counts).
    ``jobs`` go to the outbox like a decision's. ``once``: an id (a vendor's delivery id)
    under which this annotation lands once, whatever the retries. ``due``: the scheduler
    looks at the (open) incident again by then (ms) at the latest.
    """

    append: Mapping[str, Sequence[Mapping[str, object]]] = field(default_factory=dict)
    merge: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    fill: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    timeline: Sequence[TimelineEntry] = ()
    jobs: Sequence[Job] = ()
    once: str | None = None
    due: int | None = None
    expect: tuple[str, str, str | None] | None = None
    """``(path, key, value)``: lands only while ``path``'s ``key`` (as ``merge`` names
    them) still holds ``value`` as read (None: not set); else nothing lands and the answer
    is ``stale``: what was decided on it (a vendor's move against the last one applied) is
    to be decided again on a fresh read."""


AnnotateOutcome = Literal["ok", "unknown", "repeat", "stale"]
CommitOutcome = Literal["ok", "lost", "stale"]
IncidentStatusFilter = Literal["open", "resolved", "all"]


class GroupStore(Protocol):
    """Everything the receiver keeps. Every method is atomic on its own; times are ms."""

    deliveries: DeliveryQueue
    cache: SharedCache

    async def ingest(
        self, groups: Sequence[AlertGroup], truncated: int, now_ms: int
    ) -> list[IngestOutcome]:
        """Apply one batch in one round trip; same fingerprint twice = one alert."""
        ...

    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[Claim]: ...

    async def look_at(self, incident_ids: Sequence[str], at_ms: int) -> int:
        """Make each of ``incident_ids`` due at ``at_ms`` at the latest (due later, or not
        due at all: a reload changed how they are scored); how many moved."""
        ...

    async def hasten(self, until_ms: int) -> int:
        """Every incident due after ``until_ms`` due at ``until_ms`` instead (a reload
        shortened a timer the due times were set by); how many were moved."""
        ...

    async def load(self, incident_id: str, timeline: bool = True) -> StoredIncident | None:
        """The state document and (unless ``timeline`` is False: then it is empty) its
        timeline; cheap, whatever the number of alerts."""
        ...

    async def resolved_since(self, since_ms: int, limit: int) -> list[IncidentState]:
        """Incidents resolved at or after ``since_ms``, however long ago they were created:
        the ``limit`` resolved last, the latest first."""
        ...

    async def load_many(self, incident_ids: Sequence[str]) -> list[StoredIncident | None]:
        """``load(id, timeline=False)`` of each, in order, in one round trip (a scheduler
        round reads every incident it claimed at once)."""
        ...

    async def load_alerts(self, incident_id: str, limit: int) -> AlertPage:
        """Up to ``limit`` alerts, firing first, then the latest to change."""
        ...

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
        """Merge the scheduler's fields of ``state``, append ``appended`` to the timeline
        and queue ``jobs`` in the outbox, if ``claim`` still holds and every ``guard`` field
        still has its value; "stale" otherwise. If batches landed since ``version`` was
        read, the incident is due again at once."""
        ...

    async def release(self, claim: Claim, due_ms: int | None) -> None:
        """Give ``claim`` back undecided: due again at ``due_ms``, or never again when
        ``due_ms`` is None (the incident is gone)."""
        ...

    async def list_incidents(
        self, status: IncidentStatusFilter, journey: str | None, limit: int
    ) -> list[IncidentState]:
        """Up to ``limit`` incidents of ``status`` (of ``journey`` when given), newest
        first."""
        ...

    def iter_incidents(
        self, status: IncidentStatusFilter, journey: str | None, page_size: int
    ) -> AsyncGenerator[list[IncidentState], None]:
        """Every incident of ``status`` (of ``journey`` when given), newest first, in pages:
        each page comes from one read of at most ``page_size`` incidents, so a reader that
        aggregates as it goes holds one page at a time, however many incidents there are.
        An incident opened while the walk is under way may be left out; one that expires
        meanwhile may be; none is given twice."""
        ...

    async def add_events(self, events: Sequence[tuple[int, str]], now_ms: int) -> None:
        """Store change events given as (time ms, JSON document)."""
        ...

    async def events_between(self, start_ms: int, end_ms: int) -> list[str]: ...

    async def versions_before(
        self, services: Sequence[str], before_ms: Sequence[int], limit: int
    ) -> list[list[str]]:
        """Per service, its stored change events that carry a version, and its rollbacks that
        name none, at most ``limit``,
        newest first, from before the matching ``before_ms``: what a change replaced is
        found without reading the whole history."""
        ...

    async def annotate(
        self, incident_id: str, annotation: Annotation, now_ms: int
    ) -> AnnotateOutcome:
        """Apply ``annotation``; "unknown" for no such incident, "repeat" when its
        ``once`` id already landed. Neither changes anything."""
        ...

    async def take_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """True when ``holder`` now holds the lease ``name`` for ``ttl_ms`` (it was free,
        or expired): one replica at a time does what the lease guards."""
        ...

    async def marked(self, once: str) -> bool:
        """Whether an annotation carrying ``once`` (``Annotation.once``) has landed."""
        ...

    async def take_slot(
        self, name: str, holder: str, limit: int, window_ms: int, now_ms: int
    ) -> bool:
        """True when ``holder`` has one of the ``limit`` slots ``name`` allows in any
        ``window_ms`` (a sliding window over every replica; it may already hold one)."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        ...

    async def aclose(self) -> None: ...

    async def incidents_since(
        self, since_ms: int, journey: str | None, limit: int
    ) -> list[IncidentState]:
        """Up to ``limit`` incidents created at or after ``since_ms`` (of ``journey`` when
        given), newest first. The index keeps an incident for ``retention`` after it was
        created, so no window reaches further back than that."""
        ...

    def iter_incidents_since(
        self, since_ms: int, journey: str | None, page_size: int
    ) -> AsyncGenerator[list[IncidentState], None]:
        """Every incident created at or after ``since_ms`` (of ``journey`` when given),
        newest first, in pages as ``iter_incidents`` gives them."""
        ...


async def capped(
    pages: AsyncGenerator[list[IncidentState], None], limit: int
) -> AsyncGenerator[list[IncidentState], None]:
    """The pages of ``pages`` (``GroupStore.iter_incidents``) up to ``limit`` incidents in
    all, the last one cut short; the walk stops there, without reading a page more."""
    left = limit
    async with aclosing(pages):
        while left > 0 and (page := await anext(pages, None)) is not None:
            yield page[:left]
            left -= len(page)
