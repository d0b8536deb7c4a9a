"""What the store keeps: one incident state document and one record per member alert.

Both are JSON written by the Lua scripts and by the scheduler's commit. Times are integer
milliseconds since the epoch, taken from the receiver's injectable clock. Lua's cjson cannot
tell an empty array from an empty object, so list fields accept ``{}`` as ``[]``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# The store keeps a timeline's first entries (how it began) and its latest ones; what falls
# out between is counted in ``timeline_dropped``. The Lua scripts keep the first 10.
TIMELINE_CAP = 200


def _empty_object_is_list(value: Any) -> Any:
    return [] if value == {} else value


def _empty_array_is_dict(value: Any) -> Any:
    return {} if value == [] else value


StrList = Annotated[list[str], BeforeValidator(_empty_object_is_list)]
StrMap = Annotated[dict[str, str], BeforeValidator(_empty_array_is_dict)]
TimeMap = Annotated[dict[str, int], BeforeValidator(_empty_array_is_dict)]


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


class ScoreFactor(_Record):
    name: str
    value: float
    reason: str


class FeedbackRecord(_Record):
    at: int
    useful: bool
    action: str | None = None
    cause: str | None = None
    note: str | None = None


class IncidentState(_Record):
    """The incident document. Ingest (Lua) owns membership and counts; the scheduler owns
    notification and resolution; the version number arbitrates between them."""

    id: str
    key: str
    digest: str
    journey: str
    group_labels: StrMap
    status: Literal["open", "resolved"]
    created_at: int
    updated_at: int
    first_firing_at: int
    resolved_at: int | None = None
    reopened_count: int = 0
    alert_count: int = 0
    firing_count: int = 0
    services: TimeMap = Field(default_factory=dict)
    stages: TimeMap = Field(default_factory=dict)
    regions: TimeMap = Field(default_factory=dict)
    timeline: Annotated[list[TimelineEntry], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )
    timeline_dropped: int = 0
    truncated_alerts: int = 0
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
    sinks: Annotated[dict[str, dict[str, str]], BeforeValidator(_empty_array_is_dict)] = Field(
        default_factory=dict
    )
    feedback: Annotated[list[FeedbackRecord], BeforeValidator(_empty_object_is_list)] = Field(
        default_factory=list
    )


class StoredIncident(_Record):
    """An incident as loaded for a decision: its state, members and the version read."""

    state: IncidentState
    alerts: list[StoredAlert]
    version: int
