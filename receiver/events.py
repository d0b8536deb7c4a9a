"""Change events (deploys, config changes, flag flips, ...) posted to ``/api/v1/events``.

This is the receiver's own API, so unlike the webhook it refuses fields it does not know:
a misspelt ``enviroment`` should fail loudly, not vanish.

``at`` must carry an offset (``Z`` or ``+02:00``); a naive time is refused rather than
guessed, because ``datetime.now().isoformat()`` writes local time without saying so and a
wrong guess would mis-rank every change against the incidents it is compared with.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import uuid4

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from receiver.webhook import not_a_number, payload_error

MAX_EVENTS_PER_REQUEST = 1000

_LIST_BODY = re.compile(rb"[ \t\r\n]*\[")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range once converted to UTC") from None


Text = Annotated[str, StringConstraints(max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


def _at_is_optional(schema: JsonDict) -> None:
    # ``at`` is filled in with "now" before validation, so a body may leave it out: the
    # published schema (receiver/openapi.json) must say so.
    required = schema.get("required")
    if isinstance(required, list):
        schema["required"] = [name for name in required if name != "at"]


DOCUMENTED_TYPES = ("deploy", "config", "feature_flag", "rollback", "scale")
"""The change types the API names; any other is accepted too (a tool's own word)."""
SETS_VERSION = frozenset({"deploy", "rollback"})
"""Change types after which the version they name is the one running."""

ChangeType = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=64)
]
"""A change's type (deploy, config, ...), trimmed and lower-cased wherever it is read, so
that an action's ``when.change_type: Deploy`` matches the deploys events bring."""


class ChangeEvent(BaseModel):
    """One change, as stored and as correlated with incidents. ``at`` is in UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_at_is_optional)

    id: Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")] = Field(
        default_factory=lambda: uuid4().hex
    )
    type: ChangeType
    service: Name
    at: Annotated[AwareDatetime, BeforeValidator(not_a_number), AfterValidator(_to_utc)]
    version: Text | None = None
    environment: Text | None = None
    region: Text | None = None
    summary: Annotated[str, StringConstraints(max_length=4000)] | None = None
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)] | None = None
    author: Text | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _at_defaults_to_now(cls, data: object, info: ValidationInfo) -> object:
        # "now" comes from the caller (an injectable clock), so parsing stays pure.
        now = info.context.get("now") if isinstance(info.context, dict) else None
        if isinstance(data, dict) and "at" not in data and now is not None:
            return {**data, "at": now}
        return data

    @field_validator("at")
    @classmethod
    def _not_far_ahead(cls, at: datetime, info: ValidationInfo) -> datetime:
        # Stored events are trimmed by time: one dated years ahead would never go. An hour
        # of slack covers clocks that disagree.
        now = info.context.get("now") if isinstance(info.context, dict) else None
        if now is not None and at > now + MAX_AHEAD:
            raise ValueError("is more than 1h ahead of the receiver's clock")
        return at

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ChangeEvent:
        return cls.model_validate_json(text)


MAX_AHEAD = timedelta(hours=1)

_EVENT_LIST = TypeAdapter(
    Annotated[list[ChangeEvent], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]
)


def parse_events(body: bytes, now: datetime) -> list[ChangeEvent]:
    """One event object or a non-empty list of at most ``MAX_EVENTS_PER_REQUEST``.

    ``now`` (timezone-aware) fills a missing ``at``; a missing ``id`` gets a fresh uuid4 hex.
    Raises ``PayloadError`` 400/422 shaped as ``receiver.webhook.payload_error`` describes.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    context = {"now": now}
    try:
        if _LIST_BODY.match(body):
            return _EVENT_LIST.validate_json(body, context=context)
        return [ChangeEvent.model_validate_json(body, context=context)]
    except ValidationError as exc:
        raise payload_error(exc, body, "a JSON object or a list of them") from exc
