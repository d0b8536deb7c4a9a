"""What responders say fixed an incident: ``POST /api/v1/incidents/{id}/feedback`` and the
incident page's form both record it with :func:`record_feedback`."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool, StringConstraints
from pydantic_core import PydanticCustomError

from receiver.logtext import clip
from receiver.sinks.slack import edit_job
from receiver.store.base import Annotation, GroupStore
from receiver.webhook import parse_body

MAX_FEEDBACK_TEXT = 4000
# What fixed it, as the Slack thread says it: the whole text is on the incident.
_FIX_SAID_MAX = 200


def _not_blank(text: str) -> str:
    # A blank "fixed_by", the latest word, would hide the fix an earlier one named.
    if not text:
        raise PydanticCustomError("blank", "must not be blank")
    return text


# Stripped, and refused when blank.
FeedbackText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_FEEDBACK_TEXT),
    AfterValidator(_not_blank),
]


class Feedback(BaseModel):
    """The body as posted; the caller adds when it was received."""

    # Our own API: unknown fields are refused so that a misspelt one is not silently lost.
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Strict: "useful": "no" must not be read as true.
    useful: StrictBool
    action: FeedbackText | None = None
    cause: FeedbackText | None = None
    note: FeedbackText | None = None
    wrong_cause: StrictBool | None = None
    """The probable cause it named was not the cause."""
    wrong_grouping: StrictBool | None = None
    """Alerts were grouped into this incident that did not belong together (or apart)."""
    fixed_by: FeedbackText | None = None
    """A suggested action's id, or what fixed it in words."""
    by: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=200),
            AfterValidator(_not_blank),
        ]
        | None
    ) = None


def parse_feedback(body: bytes) -> Feedback:
    """``PayloadError`` 400/422 for a bad body."""
    return parse_body(Feedback, body)


async def record_feedback(
    store: GroupStore,
    sinks: Collection[str],
    incident_id: str,
    feedback: Feedback,
    now_ms: int,
    once: str | None = None,
) -> Literal["recorded", "unknown"]:
    """``feedback`` appended to the incident's ``feedback``, with when it was received;
    "unknown" when there is no such incident. The incident's Slack message (``sinks``: the
    sinks configured) is edited, as after a click on it: its line of what people did
    shows the verdict, a wrong cause or the fix, and its thread says who said so.
    ``once``: the form this came from, recorded once however often it is sent."""
    stored = await store.load(incident_id, timeline=False)
    if stored is None:
        return "unknown"
    record = {"at": now_ms, **feedback.model_dump(exclude_none=True)}
    jobs = edit_job(stored.state, sinks, _said(feedback), now_ms)
    annotation = Annotation(append={"feedback": [record]}, jobs=jobs, once=once)
    outcome = await store.annotate(incident_id, annotation, now_ms)
    return "unknown" if outcome == "unknown" else "recorded"


def _said(feedback: Feedback) -> str:
    words = ["marked useful" if feedback.useful else "marked not useful"]
    if feedback.wrong_cause:
        words.append("probable cause called wrong")
    if feedback.wrong_grouping:
        words.append("grouping called wrong")
    if feedback.fixed_by:
        words.append(f"fixed by {clip(feedback.fixed_by, _FIX_SAID_MAX)}")
    return f"{', '.join(words)} by {feedback.by or 'the API'}"
