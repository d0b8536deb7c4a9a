"""Jira webhooks: a person moving the incident's issue along its workflow.

Jira sends ``jira:issue_updated`` with the issue (its labels name our incident: the Jira
sink labels every issue ``journey-receiver-<incident id>``), the user who changed it and a
``changelog``. A status change into the "done" category is a resolve by that person; into
"indeterminate" (In Progress and the like), an acknowledgement, unless the incident had
resolved here by then (``resolves.after_the_end``: then it is on the timeline only). The
issue's key must be the one the incident's Jira receipt holds, so a label copied onto
another issue does not speak for the incident. Jira retries a failed delivery later, out of
order: a move older than the last one applied (``resolves.superseded``) neither resolves
nor takes a resolve back. ``jira:issue_deleted`` of the incident's issue is recorded, and
the Jira sink files nothing more for the incident until it reopens (``DELETED_BY``).
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, Field

from receiver.inbound.resolves import (
    PERSON_AT,
    TAKEN_BACK,
    after_the_end,
    as_read,
    superseded,
    taken_back,
)
from receiver.sinks.jira import DELETED_BY, LABEL
from receiver.store.base import Annotation
from receiver.store.records import IncidentState, TimelineEntry
from receiver.webhook import MAX_EXACT_INT, parse_body

SOURCE = "jira"
DELETED = "jira:issue_deleted"
_PREFIX = LABEL + "-"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class StatusCategory(_Wire):
    key: str = ""


class Status(_Wire):
    name: str = ""
    category: StatusCategory = Field(default_factory=StatusCategory, alias="statusCategory")


class Fields(_Wire):
    labels: list[str] = []
    status: Status | None = None


class Issue(_Wire):
    key: str
    fields: Fields = Field(default_factory=Fields)


class User(_Wire):
    display_name: str = Field(default="", alias="displayName")
    account_id: str = Field(default="", alias="accountId")
    email_address: str = Field(default="", alias="emailAddress")
    name: str = ""
    key: str = ""


class ChangeItem(_Wire):
    field: str = ""
    from_string: str | None = Field(default=None, alias="fromString")
    to_string: str | None = Field(default=None, alias="toString")


class Changelog(_Wire):
    id: str = ""
    items: list[ChangeItem] = []


class Event(_Wire):
    webhook_event: str = Field(alias="webhookEvent")
    # Recorded as the acknowledgement's or resolve's time: within what the store holds.
    timestamp: int | None = Field(default=None, ge=0, le=MAX_EXACT_INT, strict=True)
    issue: Issue | None = None
    user: User | None = None
    changelog: Changelog | None = None

    @property
    def incident_ids(self) -> list[str]:
        """Our incident ids among the issue's labels."""
        labels = self.issue.fields.labels if self.issue else []
        return [label.removeprefix(_PREFIX) for label in labels if label.startswith(_PREFIX)]

    @property
    def new_status(self) -> str | None:
        """The status the issue moved to, when this update moved it."""
        items = self.changelog.items if self.changelog else []
        return next((i.to_string or "" for i in items if i.field == "status"), None)

    @property
    def moved_from(self) -> str | None:
        """The key the issue had before this update moved it to another project (Jira
        gives it a new key, and keeps its id and labels), when it did."""
        items = self.changelog.items if self.changelog else []
        return next((i.from_string for i in items if i.field.casefold() == "key"), None)

    def by(self, own: Collection[tuple[str, str]]) -> bool:
        """Whether the account ``own`` names (``JiraSink.own_names``: (kind, value)) did it,
        like compared with like: a name with a name, an accountId with an accountId; an
        e-mail only for a user the webhook names no other way (e-mails need not be unique
        on Jira Server)."""
        user = self.user
        if user is None:
            return False
        ids = (("name", user.name), ("key", user.key), ("accountId", user.account_id))
        theirs = {(kind, value.casefold()) for kind, value in ids if value}
        if not theirs and user.email_address:
            theirs = {("email", user.email_address.casefold())}
        return any((kind, value.casefold()) in theirs for kind, value in own if value)

    @property
    def who(self) -> str:
        user = self.user
        name = (user.display_name or user.name or user.account_id) if user else ""
        return name or "Jira"


def parse(body: bytes) -> Event:
    """The event of a webhook body; ``PayloadError`` (400/422, naming the field) otherwise."""
    return parse_body(Event, body)


def annotation(
    event: Event,
    state: IncidentState,
    now_ms: int,
    delivery_id: str | None,
    own: Collection[tuple[str, str]],
) -> Annotation | None:
    """What a status change adds to the incident; None for anything else, for an issue
    that is not the incident's own, and for the Jira sink's own transitions (made by the
    account ``own`` names, or a resolve of an incident already resolved here): those are
    the receiver speaking, not a person. An issue moved to another project is followed
    whatever the rest of the update says."""
    issue = event.issue
    status = event.new_status
    recorded = state.sinks.get(SOURCE, {})
    if issue is None:
        return None
    known = recorded.get("key")
    # Moved to another project: a new key for the same issue, which the receipt follows
    # (the sink's next delivery reads it under the new key too).
    rekeyed = known is not None and known != issue.key and event.moved_from == known
    if known != issue.key and not rekeyed:
        return None
    changelog = event.changelog.id if event.changelog else ""
    if event.webhook_event == DELETED:
        # A person deleted it: filed again at the next change, it would be deleted again.
        text = (
            f"{issue.key} deleted in Jira by {event.who}: nothing more goes to Jira for "
            "this episode; a reopen files a new issue"
        )
        return Annotation(
            merge={f"sinks.{SOURCE}": {"state": "deleted", DELETED_BY: event.who}},
            timeline=[TimelineEntry(at=now_ms, kind=SOURCE, text=text)],
            once=f"{SOURCE}:{delivery_id or f'{issue.key}:deleted'}",
        )
    # What the move alone adds, whatever becomes of the rest of the update (Jira's move
    # wizard changes the status in the same update, of an issue closed long ago, say).
    moved = (
        Annotation(
            merge={f"sinks.{SOURCE}": {"key": issue.key}},
            timeline=[
                TimelineEntry(
                    at=now_ms,
                    kind=SOURCE,
                    text=f"{known} moved to {issue.key} in Jira by {event.who}",
                )
            ],
            once=f"{SOURCE}:{delivery_id or f'{issue.key}:{changelog}'}",
        )
        if rekeyed
        else None
    )
    if status is None:
        return moved
    category = issue.fields.status.category.key if issue.fields.status else ""
    if event.by(own) or (category == "done" and state.status == "resolved"):
        return moved
    at = event.timestamp or now_ms
    if at < state.started:
        # About an earlier episode (delivered late: the issue is reused when the incident
        # reopens): it says nothing of who answered this one.
        return moved
    # In progress is an acknowledgement, unless the incident had resolved by then: the
    # issue taken up for follow-up work answers nothing.
    acknowledged = category == "indeterminate" and not after_the_end(state, at)
    late = superseded(recorded, at)
    if late and not acknowledged:
        # Older than the move already applied (Jira retries a failed delivery later, out of
        # order): the issue has moved since, and applying this would undo that move.
        return moved
    who = event.who
    merge: dict[str, dict[str, object]] = {}
    fill: dict[str, dict[str, object]] = {}
    if category == "done":
        fill["response"] = {
            "resolved_at": at,
            "resolved_by": who,
            "resolved_via": SOURCE,
            "source": SOURCE,
        }
        text = f"{issue.key} moved to {status} (done) in Jira by {who}"
    else:
        text = f"{issue.key} moved to {status} in Jira by {who}"
        if acknowledged:
            fill["response"] = {"acknowledged_at": at, "acknowledged_by": who, "source": SOURCE}
        elif category == "indeterminate":
            text += " after the incident resolved"
        if not late and taken_back(state, SOURCE, at):
            # Out of done after a person's resolve in Jira: that resolve is taken back
            # (MTTR), as a PagerDuty reopen takes back one made there.
            merge["response"] = TAKEN_BACK
            text += ": the resolve is taken back"
    if not late:
        merge[f"sinks.{SOURCE}"] = {PERSON_AT: str(at)}
    if rekeyed:
        merge.setdefault(f"sinks.{SOURCE}", {})["key"] = issue.key
    return Annotation(
        merge=merge,
        fill=fill,
        timeline=[TimelineEntry(at=now_ms, kind=SOURCE, text=text)],
        once=f"{SOURCE}:{delivery_id or f'{issue.key}:{changelog}:{at}'}",
        # Decided against the last move as read: another replica (or request) may have
        # applied a newer one since.
        expect=None if late else as_read(SOURCE, recorded),
    )
