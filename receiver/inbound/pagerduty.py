"""PagerDuty v3 webhooks: what responders did in PagerDuty, recorded on the incident.

A webhook subscription sends one event per request: ``{"event": {id, event_type,
occurred_at, agent, data}}``. Incident events carry the PagerDuty incident in ``data``,
with ``incident_key``: the Events API ``dedup_key``, which is our incident id. A note
(``incident.annotated``) names only the PagerDuty incident's own id, so that id is
remembered (``store.cache``) from the incident's earlier events.

Only a person counts as a responder: an acknowledgement or resolve whose ``agent`` is not
a user (our own resolve through the Events API, an auto-resolve) is PagerDuty echoing the
receiver or a timer, and is recorded on the timeline only. So is a person's acknowledgement
made after the incident resolved here: the incident was over (``resolves.after_the_end``).
An acknowledgement that times out (``incident.unacknowledged``: PagerDuty pages again)
no longer stands (``resolves.lapse``) until someone acknowledges again.

An incident that resolved and fired again has a new PagerDuty incident under the same key.
Which one an event is about, PagerDuty says in the incident's ``created_at``: one opened
well before this episode first fired (``EPISODE_MARGIN_MS``), other than the one the
incident's link names, belongs to an earlier episode. Its events are recorded on the
timeline as such, but never answer for this episode nor become its PagerDuty link; the
link comes from the current incident's events, its trigger first.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from receiver.inbound.resolves import (
    PERSON_AT,
    TAKEN_BACK,
    acknowledgement,
    after_the_end,
    as_read,
    lapse,
    lapse_as_read,
    superseded,
    taken_back,
)
from receiver.logtext import cut
from receiver.sinks.pagerduty import PERSON_RESOLVED
from receiver.store.base import Annotation
from receiver.store.records import IncidentState, TimelineEntry
from receiver.webhook import Rfc3339, parse_body

SOURCE = "pagerduty"
CACHE_NAMESPACE = "pd-incident"
"""``store.cache``: PagerDuty incident id -> our incident id."""
OPENED_NAMESPACE = "pd-incident-opened"
"""``store.cache``: PagerDuty incident id -> when PagerDuty opened it (ms), for its notes."""
_NOTE_MAX = 500
_ID_SHOWN_MAX = 64
OPENED_AT = "incident_opened_at"
"""``sinks.pagerduty`` key: when (ms) the linked PagerDuty incident was opened, as its
events said (its ``created_at``)."""
EPISODE_MARGIN_MS = 60_000
"""How long before an episode first fired a PagerDuty incident must have been opened to be
an earlier episode's (at most ``resolve_after``, the least time between an episode's
notification and the next episode). PagerDuty's clock is not ours, and it writes whole
seconds; the current episode's incident opens after it first fired, at its notification."""
RECORDED = frozenset(
    {
        "incident.triggered",
        "incident.acknowledged",
        "incident.unacknowledged",
        "incident.resolved",
        "incident.reopened",
        "incident.reassigned",
        "incident.delegated",
        "incident.escalated",
        "incident.priority_updated",
        "incident.annotated",
    }
)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


_TIME = TypeAdapter(Rfc3339)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Agent(_Wire):
    id: str = ""
    type: str = ""
    summary: str = ""


class Reference(_Wire):
    id: str = ""
    summary: str = ""


class ResolveReason(_Wire):
    """Why PagerDuty resolved the incident, when not a plain resolve: ``merge_resolve_reason``
    when a person merged it into ``incident`` (its alerts, our dedup_key's among them, move
    there and stay open)."""

    type: str = ""
    incident: Reference | None = None


def _object_or_none(value: object) -> object:
    return value if isinstance(value, dict) else None


class EventData(_Wire):
    """``incident`` events: the incident itself; ``incident_note`` events: the note and a
    reference to its incident."""

    id: str = ""
    type: str = ""
    incident_key: str | None = None
    html_url: str | None = None
    assignees: list[Reference] = []
    escalation_policy: Reference | None = None
    # The incident's priority (``incident.priority_updated``); null when taken off.
    priority: Annotated[
        Reference | None,
        BeforeValidator(_object_or_none),
        WithJsonSchema({"description": "an object; any other value reads as none"}),
    ] = None
    incident: Reference | None = None
    content: str | None = None
    resolve_reason: Annotated[
        ResolveReason | None,
        BeforeValidator(_object_or_none),
        WithJsonSchema({"description": "an object; any other value reads as none"}),
    ] = None
    # When PagerDuty opened the incident (incident events), as it writes it: read leniently
    # (``opened_ms``; anything but text as none), since refusing an event would count
    # against the subscription.
    created_at: Annotated[
        str | None,
        BeforeValidator(_text_or_none),
        WithJsonSchema({"description": "RFC 3339 text; any other value reads as none"}),
    ] = None


class Event(_Wire):
    id: str
    event_type: str
    occurred_at: Rfc3339
    agent: Agent | None = None
    data: EventData

    @property
    def pagerduty_incident(self) -> str:
        """The PagerDuty incident's own id (not our dedup key)."""
        if self.data.type == "incident":
            return self.data.id
        return self.data.incident.id if self.data.incident else ""

    @property
    def opened_ms(self) -> int | None:
        """When PagerDuty opened the incident this incident event is about (ms); None for
        a note, or a time that does not read as one."""
        text = self.data.created_at
        if self.data.type != "incident" or not text:
            return None
        try:
            # Read as ``occurred_at`` is, from JSON text: the same RFC 3339 rules.
            opened = _TIME.validate_json(json.dumps(text))
        except ValidationError:
            return None
        return round(opened.timestamp() * 1000) if opened.tzinfo is not None else None

    @property
    def merged_into(self) -> str | None:
        """The PagerDuty incident this one was merged into (resolved by the merge), if so."""
        reason = self.data.resolve_reason
        if reason is None or "merge" not in reason.type:
            return None
        return reason.incident.id if reason.incident else ""

    @property
    def by_person(self) -> bool:
        return self.agent is not None and self.agent.type.startswith("user")

    @property
    def who(self) -> str:
        if self.agent is None or not self.agent.summary:
            return "PagerDuty"
        return self.agent.summary


class Envelope(_Wire):
    event: Event


def parse(body: bytes) -> Event:
    """The event of a webhook body; ``PayloadError`` (400/422, naming the field) otherwise."""
    return parse_body(Envelope, body).event


def annotation(
    event: Event,
    state: IncidentState,
    now_ms: int,
    margin_ms: int = EPISODE_MARGIN_MS,
    opened_ms: int | None = None,
) -> Annotation | None:
    """What ``event`` adds to the incident; None when it is not worth recording.
    ``margin_ms``: ``EPISODE_MARGIN_MS``, or ``resolve_after`` when that is shorter.
    ``opened_ms``: when PagerDuty opened the incident, as an earlier event said, for an
    event that does not say (a note)."""
    at = round(event.occurred_at.timestamp() * 1000)
    who = event.who
    kind = event.event_type
    opened = event.opened_ms if event.opened_ms is not None else opened_ms
    recorded = state.sinks.get("pagerduty", {})
    known = recorded.get("incident")
    # Opened after the one the link names (PagerDuty opens a new incident for a trigger
    # after a resolve): the link moves to it, with whichever of its events comes first.
    # One opened before never takes the link back (a late event of the last one).
    newer = (
        known is not None
        and event.pagerduty_incident != known
        and opened is not None
        and opened > int(recorded.get(OPENED_AT) or 0)
    )
    # The PagerDuty incident the link names, or will: only its resolve or reopen says
    # whether the one open now was resolved by a person.
    linked = known is None or event.pagerduty_incident == known or newer
    # An earlier episode's PagerDuty incident: opened well before this episode first fired
    # (+1 s: PagerDuty writes whole seconds), and not the one the link names (a resolve
    # that never reached PagerDuty leaves the old one open, and the next trigger lands on
    # it: then it is this episode's too).
    earlier = (
        opened is not None
        and opened + 1000 + margin_ms <= state.first_firing_at
        and event.pagerduty_incident != known
    )
    if kind in ("incident.acknowledged", "incident.resolved") and (at < state.started or earlier):
        # About an earlier episode (delivered late, or the PagerDuty incident of the last
        # one): it says nothing of who answered this one, and a person's resolve then
        # would stop the updates of the PagerDuty incident now open.
        return None
    if kind in ("incident.resolved", "incident.reopened") and linked and superseded(recorded, at):
        # Older than the resolve or reopen already applied (delivered late): it would undo it.
        return None
    sink: dict[str, Any] = {}
    if not earlier and linked:
        sink["incident"] = event.pagerduty_incident
        if event.data.html_url:
            sink["url"] = event.data.html_url
        if opened is not None:
            sink[OPENED_AT] = str(opened)
        if newer and recorded.get(PERSON_RESOLVED) and kind != "incident.resolved":
            sink[PERSON_RESOLVED] = ""  # a new PagerDuty incident, which nobody resolved
    fill: dict[str, dict[str, Any]] = {}
    merge: dict[str, dict[str, Any]] = {}
    expect: tuple[str, str, str | None] | None = None
    if kind == "incident.triggered":
        # Our own trigger, as PagerDuty opened it: the link, nothing to tell.
        if not sink:
            return None
        return Annotation(merge={"sinks.pagerduty": sink}, once=f"{SOURCE}:{event.id}")
    if kind == "incident.acknowledged":
        if not event.by_person:
            return None
        text = f"acknowledged in PagerDuty by {who}"
        if after_the_end(state, at):
            text += " after the incident resolved"
        else:
            filled, taken_up = acknowledgement(state, at, who, SOURCE)
            if filled:
                fill["response"] = filled
            if taken_up:
                merge["response"] = taken_up
            # Decided on whether one had lapsed: a timeout landing meanwhile decides anew.
            expect = lapse_as_read(state)
    elif kind == "incident.resolved" and event.merged_into is not None:
        # Merged into another PagerDuty incident: our alert lives on there, unresolved.
        # Nobody resolved the outage (no person-resolved flag, no response), and the
        # receiver's resolve must still reach it.
        into = event.merged_into[:_ID_SHOWN_MAX] or "another incident"
        text = f"merged in PagerDuty by {who} into {into}"
    elif kind == "incident.resolved":
        if not event.by_person or state.status == "resolved":
            # Our own resolve coming back, or PagerDuty's auto-resolve timer.
            return None
        if linked:
            sink[PERSON_RESOLVED] = who
            sink[PERSON_AT] = str(at)
        fill["response"] = {
            "resolved_at": at,
            "resolved_by": who,
            "resolved_via": SOURCE,
            "source": SOURCE,
        }
        text = (
            f"resolved in PagerDuty by {who}: PagerDuty is not triggered again for it "
            "unless its alerts fire again after it resolves here"
        )
    elif kind == "incident.reopened":
        if not earlier and linked:
            sink[PERSON_RESOLVED] = ""
            sink[PERSON_AT] = str(at)
            if taken_back(state, SOURCE, at):
                # The resolve it takes back no longer answers for this episode (MTTR).
                merge["response"] = TAKEN_BACK
        text = f"reopened in PagerDuty by {who}"
    elif kind == "incident.unacknowledged":
        # PagerDuty's acknowledgement timeout: it pages again, and nobody is on it now.
        lapsed = lapse(state, at) if linked and not earlier and at >= state.started else None
        if lapsed is None:
            text = "acknowledgement in PagerDuty timed out"
        else:
            by, merge["response"] = lapsed
            text = f"acknowledgement by {by} timed out in PagerDuty: it pages again"
            expect = lapse_as_read(state)
    elif kind == "incident.reassigned":
        names = ", ".join(a.summary for a in event.data.assignees if a.summary) or "nobody"
        text = f"reassigned in PagerDuty by {who} to {names}"
    elif kind == "incident.delegated":
        # Reassigned to another escalation policy (PagerDuty's Reassign dialog, a team).
        policy = event.data.escalation_policy.summary if event.data.escalation_policy else ""
        people = ", ".join(a.summary for a in event.data.assignees if a.summary)
        names = (f"{policy} ({people})" if people else policy) if policy else people
        text = f"reassigned in PagerDuty by {who} to {names or 'another escalation policy'}"
    elif kind == "incident.escalated":
        names = ", ".join(a.summary for a in event.data.assignees if a.summary) or "nobody"
        text = f"escalated in PagerDuty to {names}"
    elif kind == "incident.priority_updated":
        # PagerDuty's own priority, which the Events API never sets: a person's call.
        shown = event.data.priority.summary if event.data.priority else ""
        text = (
            f"priority set to {cut(shown, _ID_SHOWN_MAX)} in PagerDuty by {who}"
            if shown
            else f"priority taken off in PagerDuty by {who}"
        )
    elif kind == "incident.annotated":
        note = (event.data.content or "").strip()
        clipped = cut(note, _NOTE_MAX)
        text = f"note in PagerDuty by {who}: {clipped}"
    else:
        return None
    if earlier:
        shown = event.pagerduty_incident[:_ID_SHOWN_MAX]
        text += f" (PagerDuty incident {shown}, of an earlier episode)"
    if sink:
        merge["sinks.pagerduty"] = sink
    return Annotation(
        merge=merge,
        fill=fill,
        timeline=[TimelineEntry(at=now_ms, kind=SOURCE, text=text)],
        once=f"{SOURCE}:{event.id}",
        # Decided against the last move as read: another replica (or request) may have
        # applied a newer one since.
        expect=as_read(SOURCE, recorded) if PERSON_AT in sink else expect,
    )
