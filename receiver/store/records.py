"""What the store keeps: one incident state document and one record per member alert.

Both are JSON written by the Lua scripts and by the scheduler's commit. Times are integer
milliseconds since the epoch, taken from the receiver's injectable clock. Lua's cjson cannot
tell an empty array from an empty object, so list fields accept ``{}`` as ``[]``.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    model_validator,
)

from receiver.fingerprint import key_label_names

# The store keeps a timeline's first entries (how it began) and its latest ones; what falls
# out between is counted in ``timeline_dropped``. The Lua scripts keep the first 10.
TIMELINE_CAP = 200


def _empty_object_is_list(value: Any) -> Any:
    return [] if value == {} else value


def _empty_is_none(value: Any) -> Any:
    return None if value in ({}, []) else value


def _empty_array_is_dict(value: Any) -> Any:
    return {} if value == [] else value


StrList = Annotated[list[str], BeforeValidator(_empty_object_is_list)]
StrMap = Annotated[dict[str, str], BeforeValidator(_empty_array_is_dict)]
IntMap = Annotated[dict[str, int], BeforeValidator(_empty_array_is_dict)]
FloatMap = Annotated[dict[str, float], BeforeValidator(_empty_array_is_dict)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TimelineEntry(_Record):
    at: int
    kind: str
    text: str


class StoredAlert(_Record):
    """One member alert, as last reported. ``starts_at``/``ends_at`` are Alertmanager's
    (ms); ``first_seen`` and ``changed_at`` (its last status change) the receiver's."""

    fp: str
    status: Literal["firing", "resolved"]
    labels: StrMap
    annotations: StrMap
    starts_at: int | None = None
    ends_at: int | None = None
    generator_url: str = ""
    stage: str | None = None
    service: str
    severity: str
    first_seen: int
    changed_at: int


class Notified(_Record):
    """What the last notification said, so the next decision can tell a material change."""

    at: int
    kind: str
    priority: str
    score: float
    services: StrList
    stages: StrList
    firing_count: int
    # The change it named as the cause and the KPIs it called bad: a new one of either is
    # news for the people paged. None: a notification from before these were kept, which
    # is compared with nothing (an upgrade must not page everyone again).
    cause: str | None = None
    bad_kpis: StrList | None = None
    kpis_back: StrList | None = None
    """The KPIs this episode's notifications said were back in band (None: none yet, or a
    notification from before these were kept): one dipping again is no news on its own."""


class ScoreFactor(_Record):
    name: str
    value: float
    reason: str


class KpiRecord(_Record):
    """A journey KPI as last measured (see receiver.enrich.KpiValue)."""

    name: str
    value: float | None = None
    baseline: float | None = None
    deviation_pct: float | None = None
    unit: str = ""
    bad_when: Literal["down", "up"] = "down"
    bad: bool = False
    revenue_at_risk_per_min: float | None = None
    vs: str = ""
    """The baseline in words: "last week", "yesterday", "2h ago"."""
    at_start: float | None = None
    """Its value when the incident started (None when that was under a minute ago)."""


class ChangeRecord(_Record):
    """A change event correlated with the incident (see receiver.enrich.ChangeMatch)."""

    id: str
    type: str
    service: str
    at: int
    minutes_before: float
    overlap: bool
    summary: str = ""
    version: str | None = None
    previous_version: str | None = None
    url: str | None = None
    source: str = "api"


class CauseRecord(_Record):
    kind: Literal["change", "service"]
    text: str
    score: float
    evidence: StrList = Field(default_factory=list)
    change_id: str | None = None
    change_source: str | None = None
    """The change's source (``api``, a feed's name): ids are unique within one source
    only. None in records from before it was kept: the id alone then."""


class FeedbackRecord(_Record):
    """What someone said about the incident. ``useful`` is None when they said something
    else (the cause was wrong); ``by`` and ``source`` are None for the API's records."""

    at: int
    useful: bool | None = None
    action: str | None = None
    cause: str | None = None
    note: str | None = None
    by: str | None = None
    source: str | None = None
    wrong_cause: bool | None = None
    wrong_grouping: bool | None = None
    fixed_by: str | None = None
    """A suggested action's id (its title when it has none), or the person's own words."""


class SimilarRecord(_Record):
    """A past incident like this one (``receiver/outcomes/similar.py``)."""

    id: str
    title: str
    created_at: int
    similarity: float
    fixed_by: str | None = None
    outcomes: StrMap = Field(default_factory=dict)
    """Action id -> the verdict of its run there (helped, no_change, worse)."""


class ResponseRecord(_Record):
    """What people did about the incident, as PagerDuty, Slack and Jira told us: the first
    acknowledgement and the resolve by a person (``source`` says where the first word
    came from); whether an acknowledgement stands now (``lapsed_at``, and who took it up
    after one lapsed)."""

    acknowledged_at: int | None = None
    acknowledged_by: str | None = None
    lapsed_at: int | None = None
    """When the acknowledgement standing timed out in PagerDuty (``incident.unacknowledged``:
    it pages again); None while one stands. The first one still counts for MTTA."""
    reacknowledged_at: int | None = None
    reacknowledged_by: str | None = None
    """The latest acknowledgement after one lapsed: who is on it now."""
    resolved_at: int | None = None
    resolved_by: str | None = None
    source: str | None = None
    resolved_via: str | None = None
    """Where the person's resolve was made (``pagerduty``, ``jira``): only a reopen there
    takes it back. None on a resolve recorded before this was kept."""

    @property
    def standing(self) -> tuple[int, str] | None:
        """The acknowledgement that stands, (when, by whom); None when none does (none yet,
        or the last one lapsed)."""
        if self.acknowledged_at is None or self.lapsed_at is not None:
            return None
        if self.reacknowledged_at is not None:
            return self.reacknowledged_at, self.reacknowledged_by or ""
        return self.acknowledged_at, self.acknowledged_by or ""


class ToldEpisode(_Record):
    """The incident's last episode that people were told of, as it ended: kept at a
    reopen, so that one nobody is told of (a blip) does not replace its figures: the
    response, and how long before its start the change it named as the cause came (the
    blip's context is read against the blip's own start)."""

    first_firing_at: int
    notified_at: int
    started_at: int | None = None
    resolved_at: int | None = None
    last_change_at: int = 0
    response: Annotated[ResponseRecord | None, BeforeValidator(_empty_is_none)] = None
    change_to_detection_s: float | None = None

    @property
    def started(self) -> int:
        return self.first_firing_at if self.started_at is None else self.started_at


RunStatus = Literal["ran", "failed", "refused", "skipped", "dry_run"]
Verdict = Literal["helped", "no_change", "worse"]


class ActionRunRecord(_Record):
    """One decision about running an action (``receiver/act/``): ``by`` is the person who
    pressed Run, or ``auto``; ``result`` is the remote's answer, or why not."""

    action: str
    by: str
    at: int
    status: RunStatus
    result: str = ""
    title: str = ""
    definition: str = ""
    """The action as defined when it was decided (``receiver/act/definition.py``): the
    same on the records of every replica that decided under the same journeys.yaml."""
    # At the run, for its outcome: firing alerts, and how far the worst KPI was off in its
    # bad direction (percent; None without a measured KPI).
    firing: int | None = None
    kpi_off: float | None = None
    """Infinite for a KPI gone bad from a zero baseline (no percentage): JSON has no
    infinity, so it is written as the string "Infinity", which reads back as one."""

    @field_serializer("kpi_off", when_used="json")
    def _finite_in_json(self, value: float | None) -> float | str | None:
        return "Infinity" if value == math.inf else value


class ActionOutcome(_Record):
    """Whether a run helped, told once its watch window ended (``receiver/act/outcome.py``):
    ``verdict`` helped, no_change or worse, and in words why."""

    verdict: Verdict
    at: int
    because: str


class SilenceRecord(_Record):
    """An Alertmanager silence made for the incident's alerts."""

    id: str
    at: int
    by: str
    ends_at: int
    comment: str = ""
    fingerprint: str = ""
    """The alert it silences (none in records from before they named it)."""


class IncidentState(_Record):
    """The incident document, small enough to read on every decision.

    Ingest (Lua) owns membership and the counts decisions need, so that no decision has to
    read the alerts: ``firing_classes`` counts firing alerts per impact class (the JSON of
    ``[stage, severity, tier]``), ``firing_services`` per service, ``last_change_at`` is
    the last time an alert changed status and ``pending_resolved`` how many alerts resolved
    since the incident (re)opened and before its first notification (the blips). The
    scheduler owns ``SCHEDULER_FIELDS`` and merges them in with a guard on what its
    decision relied on.
    """

    id: str
    key: str
    digest: str
    journey: str
    group_labels: StrMap
    status: Literal["open", "resolved"]
    created_at: int
    updated_at: int
    first_firing_at: int
    # When it started by Alertmanager's startsAt: its earliest firing alert's (a missing,
    # zero or future one counts as when the receiver stored it). None: stored before this
    # was kept; first_firing_at stands in (``started``).
    started_at: int | None = None
    last_change_at: int = 0
    resolved_at: int | None = None
    reopened_count: int = 0
    alert_count: int = 0
    firing_count: int = 0
    pending_resolved: int = 0
    services: IntMap = Field(default_factory=dict)
    stages: IntMap = Field(default_factory=dict)
    regions: IntMap = Field(default_factory=dict)
    firing_classes: IntMap = Field(default_factory=dict)
    firing_services: IntMap = Field(default_factory=dict)
    # "service|severity" -> firing alerts, and service -> when its alerts started (earliest
    # valid startsAt): the upstream ranking reads these, never the alerts.
    firing_severities: IntMap = Field(default_factory=dict)
    service_starts: IntMap = Field(default_factory=dict)
    timeline: Annotated[list[TimelineEntry], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    timeline_dropped: int = 0
    truncated_alerts: int = 0
    alerts_dropped: int = 0
    """Resolved alerts let go beyond ``store.max_alerts_per_incident``."""
    pending: Literal["open", "reopen"] | None = None
    notified_at: int | None = None
    last_notified: Notified | None = None
    blips: int = 0
    priority: str | None = None
    score: float | None = None
    title: str | None = None
    score_breakdown: Annotated[list[ScoreFactor], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    # The weight of each of its stages when it was last scored: a stage a reload renamed or
    # removed weighs what it did (its alerts keep the class they were counted under).
    stage_weights: FloatMap = Field(default_factory=dict)
    sinks: Annotated[dict[str, dict[str, str]], BeforeValidator(_empty_array_is_dict)] = Field(
        default_factory=dict
    )
    # Context, refreshed at most every group_interval (``enriched_at``).
    kpis: Annotated[list[KpiRecord], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    changes: Annotated[list[ChangeRecord], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    probable_causes: Annotated[list[CauseRecord], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    context_notes: StrList = Field(default_factory=list)
    enriched_at: int | None = None
    # The revenue at risk its KPI looks have counted over its time, and up to when
    # (``receiver/outcomes/revenue.py``): None before any look had a figure.
    revenue_at_risk: float | None = None
    revenue_counted_to: int | None = None
    feedback: Annotated[list[FeedbackRecord], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    # Services and stages whose every alert was a blip at the episode's first notification
    # (fired and resolved within group_wait): never told, so not shown nor scored while none
    # of their alerts fires again.
    blipped_services: StrList = Field(default_factory=list)
    blipped_stages: StrList = Field(default_factory=list)
    # Seconds from the change named as the probable cause to the start, as the last
    # decision found it (``receiver.causes.change_to_detection``): in the state, not the
    # view, for ingest to keep it in ``told`` at a reopen.
    change_to_detection_s: float | None = None
    # What people and peers added (``GroupStore.annotate``).
    response: Annotated[ResponseRecord | None, BeforeValidator(_empty_is_none)] = None
    told: Annotated[ToldEpisode | None, BeforeValidator(_empty_is_none)] = None
    silences: Annotated[list[SilenceRecord], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    # Silence id (of ``silences``) -> when Alertmanager ended it before its ``ends_at``
    # (expired or deleted there, or lost), as a reconcile found.
    silences_ended: IntMap = Field(default_factory=dict)
    # Kept at each (re)open's notification: its alertnames, and the past incidents most
    # like it (receiver/outcomes/similar.py).
    alertnames: StrList = Field(default_factory=list)
    similar: Annotated[list[SimilarRecord], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    # Firing alerts Alertmanager holds silenced or inhibited: fingerprint -> why ("" once
    # it no longer does), as the last reconcile found them.
    suppressed: StrMap = Field(default_factory=dict)
    # Every decision about running an action (annotated, newest last) and, per action that
    # ran, whether it helped (the scheduler's, once its window ended).
    actions_run: Annotated[list[ActionRunRecord], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    action_outcomes: Annotated[dict[str, ActionOutcome], BeforeValidator(_empty_array_is_dict)] = (
        Field(default_factory=dict)
    )

    @model_validator(mode="after")
    def _group_labels_in_key_order(self) -> IncidentState:
        # The store's Lua keeps them in a table, which has no order: they come back in its
        # hash order, so the title and summary ("checkout/staging/eu") follow the key's.
        labels = self.group_labels
        if len(labels) > 1:
            order = key_label_names(self.key)
            if set(order) == set(labels) and list(labels) != order:
                self.group_labels = {name: labels[name] for name in order}
        return self

    @property
    def started(self) -> int:
        """When the incident started, by Alertmanager's clock where it had one."""
        return self.first_firing_at if self.started_at is None else self.started_at

    def _told_now(self) -> bool:
        return self.notified_at is not None and self.notified_at >= self.first_firing_at

    def _blips(self, stages: bool = False) -> set[str]:
        """Names (of services, or of stages) to leave out unless they fire: those recorded
        as blips once the episode is told; before, every one that fires no more (when
        something fires: an incident of blips alone is never told, and reads whole)."""
        if self._told_now():
            return set(self.blipped_stages if stages else self.blipped_services)
        if not self.firing_count:
            return set()
        # What an earlier episode told stays told (a reopen's services before it fired).
        told = self.last_notified
        earlier = set((told.stages if stages else told.services) if told else ())
        return set(self.stages if stages else self.services) - earlier

    def firing_stages(self) -> set[str]:
        """The stages of its firing alerts (from ``firing_classes``)."""
        return {json.loads(c)[0] for c, n in self.firing_classes.items() if n > 0} - {""}

    @property
    def shown_services(self) -> list[str]:
        """Its services as people are told them: not those whose every alert was a blip
        (before the episode's first notification, any that fires no more will be one)."""
        firing = {s for s, n in self.firing_services.items() if n > 0}
        return sorted(s for s in self.services if s in firing or s not in self._blips())

    def services_busiest_first(self) -> list[str]:
        """``shown_services`` as a title leads with them: by firing alerts while any fire;
        once none does, in the order the last notification named them (the busiest first
        then), so that a resolved incident still leads with what was failing most."""
        told = self.last_notified.services if self.last_notified else []
        rank = {service: n for n, service in enumerate(told)}
        return sorted(
            self.shown_services,
            key=lambda s: (-self.firing_services.get(s, 0), rank.get(s, len(rank)), s),
        )

    @property
    def shown_stages(self) -> list[str]:
        """Its stages as people are told them, as ``shown_services``."""
        firing = self.firing_stages()
        return sorted(s for s in self.stages if s in firing or s not in self._blips(stages=True))

    @property
    def changed_at(self) -> int:
        """When anything about it last changed, as the API's ``updated_at`` says: its
        alerts (``updated_at`` as stored is ingest's alone, which the figures read), a
        decision (a notification, the resolve, a look at its context) or what people did
        (a response, feedback, a run, a silence), so that a client polling for changes
        sees the resolve."""
        response = self.response or ResponseRecord()
        last = [
            entries[-1].at
            for entries in (self.feedback, self.actions_run, self.silences)
            if entries
        ]
        stamps = (
            self.resolved_at,
            self.enriched_at,
            self.last_notified.at if self.last_notified else None,
            response.acknowledged_at,
            response.lapsed_at,
            response.reacknowledged_at,
            response.resolved_at,
            *last,
        )
        return max([self.updated_at, *(at for at in stamps if at is not None)])

    @property
    def sent_anywhere(self) -> bool:
        """Whether a notification of it went to a sink, so that someone could hear of it
        (the commit marks each sink it queues a job for). ``notified_at`` alone does not
        say: a decision to notify sets it whatever routing said, and routing may send a
        priority nowhere (``open P5 sent to no sink``)."""
        return bool(self.sinks)


# What the scheduler decides and writes; everything else in the state is ingest's, except
# ``sinks``: the commit marks the sinks it queues jobs for, the outbox records receipts.
SCHEDULER_FIELDS = frozenset(
    {
        "status",
        "resolved_at",
        "pending",
        "notified_at",
        "last_notified",
        "blips",
        "priority",
        "score",
        "title",
        "score_breakdown",
        "stage_weights",
        "kpis",
        "changes",
        "probable_causes",
        "context_notes",
        "enriched_at",
        "revenue_at_risk",
        "revenue_counted_to",
        "blipped_services",
        "blipped_stages",
        "alertnames",
        "similar",
        "action_outcomes",
        "change_to_detection_s",
    }
)


# The scheduler's fields that ingest never reads: kept in their own document (``view`` in
# the incident's hash, beside ``state``) so that a batch does not decode and re-encode them.
# They are most of the document once an incident has been notified (its score breakdown,
# similar incidents, causes, KPIs), and every batch used to pay for them.
VIEW_FIELDS = SCHEDULER_FIELDS - {
    "status",
    "resolved_at",
    "pending",
    "notified_at",
    "blips",
    "change_to_detection_s",
    # In the state, not the view: a replica of a version before them rewrites the view
    # whole at its commit, and would drop them; the state is merged field by field.
    "blipped_services",
    "blipped_stages",
}


def stored_state(state: str | bytes, view: str | bytes | None) -> IncidentState:
    """An incident from its two stored documents. The view goes last, so that it wins over
    a copy of the same field an older version of the receiver left in the state."""
    raw = _text(state)
    extra = _text(view) if view is not None else "{}"
    if extra != "{}":
        raw = raw[:-1] + "," + extra[1:]
    return IncidentState.model_validate_json(raw)


def _text(raw: str | bytes) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class StoredIncident(_Record):
    """An incident as loaded for a decision: its state and the version read."""

    state: IncidentState
    version: int


class AlertPage(_Record):
    """Some of an incident's alerts (firing first, latest first) and how many there are."""

    alerts: list[StoredAlert]
    total: int
