"""What responders say fixed an incident: ``POST /api/v1/incidents/{id}/feedback`` and the
incident page's form both record it with :func:`record_feedback`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool, StringConstraints
from pydantic_core import PydanticCustomError

from receiver.store.base import Annotation, GroupStore
from receiver.webhook import parse_body

MAX_FEEDBACK_TEXT = 4000


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
    store: GroupStore, incident_id: str, feedback: Feedback, now_ms: int
) -> Literal["recorded", "unknown"]:
    """``feedback`` appended to the incident's ``feedback``, with when it was received;
    "unknown" when there is no such incident."""
    record = {"at": now_ms, **feedback.model_dump(exclude_none=True)}
    outcome = await store.annotate(incident_id, Annotation(append={"feedback": [record]}), now_ms)
    return "unknown" if outcome == "unknown" else "recorded"


def latest_verdicts(said: Iterable[tuple[str | None, object]]) -> dict[str | None, bool]:
    """Each voice's latest "useful" verdict from ``(by, useful)`` in the order received,
    the voice that changed its mind last coming last.

    The one rule the Slack message, the figures and the store's cap (annotate.lua) share:
    a person's later verdict replaces their earlier one; records with no ``by`` are one
    voice, the API's; a record whose ``useful`` is not a boolean (only a wrong cause, or
    what fixed it, said in Slack) is no verdict. A verdict given beside a wrong cause or a
    fix (the incident page's form) is one.
    """
    latest: dict[str | None, bool] = {}
    for by, useful in said:
        if isinstance(useful, bool):
            latest.pop(by, None)
            latest[by] = useful
    return latest
