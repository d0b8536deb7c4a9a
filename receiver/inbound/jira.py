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

``comment_created``: a person's comment on the incident's issue goes on its timeline, on
one line and clipped (its text is anyone's). Jira Cloud sends the comment's issue without
its labels, so its key names the incident (``sinks.jira.ISSUE_CACHE``, kept by the Jira
sink as it files and by the issue's own webhooks, a move's included). The Jira sink's own
comments (its account, as for transitions) are not a person's.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from receiver.inbound.resolves import (
    PERSON_AT,
    TAKEN_BACK,
    acknowledgement,
    after_the_end,
    as_read,
    superseded,
    taken_back,
)
from receiver.logtext import clip
from receiver.sinks.jira import DELETED_BY, LABEL
from receiver.sinks.jira_markup import adf_text
from receiver.store.base import Annotation
from receiver.store.records import IncidentState, TimelineEntry
from receiver.webhook import MAX_EXACT_INT, parse_body

SOURCE = "jira"
DELETED = "jira:issue_deleted"
COMMENTED = "comment_created"
_COMMENT_MAX = 500
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

    def named(self, own: Collection[tuple[str, str]]) -> bool:
        """Whether this is the account ``own`` names (``JiraSink.own_names``: (kind,
        value)), like compared with like: a name with a name, an accountId with an
        accountId; an e-mail only for a user named no other way (e-mails need not be unique
        on Jira Server)."""
        ids = (("name", self.name), ("key", self.key), ("accountId", self.account_id))
        theirs = {(kind, value.casefold()) for kind, value in ids if value}
        if not theirs and self.email_address:
            theirs = {("email", self.email_address.casefold())}
        return any((kind, value.casefold()) in theirs for kind, value in own if value)

    @property
    def who(self) -> str:
        return self.display_name or self.name or self.account_id or "Jira"


class Comment(_Wire):
    id: str = ""
    author: User | None = None
    # Wiki text (REST v2, and the webhooks of Jira Server) or an ADF document (Cloud).
    body: Any = None

    @property
    def text(self) -> str:
        """What it says, on one line and clipped: anyone's words."""
        body = self.body if isinstance(self.body, str) else adf_text(self.body)
        return clip(body.strip(), _COMMENT_MAX)


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
    comment: Comment | None = None

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
        """Whether the account ``own`` names (``JiraSink.own_names``: (kind, value)) did it
        (``User.named``)."""
        return self.user is not None and self.user.named(own)

    @property
    def who(self) -> str:
        return self.user.who if self.user else "Jira"


def its_issue(event: Event, state: IncidentState) -> bool:
    """Whether ``event`` is about the incident's own issue: the key its Jira receipt holds,
    or the new key this event says that issue moved to (another project)."""
    known = state.sinks.get(SOURCE, {}).get("key")
    issue = event.issue
    if issue is None or known is None:
        return False
    return known == issue.key or event.moved_from == known


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
    """What a status change, a deletion or a comment adds to the incident; None for
    anything else, for an issue that is not the incident's own, and for the Jira sink's own
    transitions and comments (made by the account ``own`` names, or a resolve of an
    incident already resolved here): those are the receiver speaking, not a person. An
    issue moved to another project is followed whatever the rest of the update says."""
    issue = event.issue
    status = event.new_status
    recorded = state.sinks.get(SOURCE, {})
    if issue is None or not its_issue(event, state):
        return None
    known = recorded.get("key")
    # Moved to another project: a new key for the same issue, which the receipt follows
    # (the sink's next delivery reads it under the new key too).
    rekeyed = known != issue.key
    changelog = event.changelog.id if event.changelog else ""
    if event.webhook_event == COMMENTED:
        return _commented(event, issue.key, now_ms, delivery_id, own)
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
            # Of the issue the receipt named as read: the sink may file a new one meanwhile
            # (a reopen that found this one gone), which this must not mark deleted.
            expect=(f"sinks.{SOURCE}", "key", issue.key),
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
            filled, taken_up = acknowledgement(state, at, who, SOURCE)
            if filled:
                fill["response"] = filled
            if taken_up:
                merge["response"] = taken_up
        elif category == "indeterminate":
            text += " after the incident resolved"
        if not late and taken_back(state, SOURCE, at):
            # Out of done after a person's resolve in Jira: that resolve is taken back
            # (MTTR), as a PagerDuty reopen takes back one made there.
            merge["response"] = {**merge.get("response", {}), **TAKEN_BACK}
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


def _commented(
    event: Event,
    key: str,
    now_ms: int,
    delivery_id: str | None,
    own: Collection[tuple[str, str]],
) -> Annotation | None:
    """A person's comment on the incident's issue: on the timeline. None for the Jira
    sink's own (its account) and for one that says nothing."""
    comment = event.comment
    if comment is None:
        return None
    # The author, or for a sender that leaves it out, who the webhook says acted.
    author = comment.author or event.user
    text = comment.text
    if (author is not None and author.named(own)) or not text:
        return None
    who = author.who if author else "Jira"
    return Annotation(
        timeline=[
            TimelineEntry(at=now_ms, kind=SOURCE, text=f"comment on {key} in Jira by {who}: {text}")
        ],
        once=f"{SOURCE}:{delivery_id or f'{key}:comment:{comment.id}'}",
    )
