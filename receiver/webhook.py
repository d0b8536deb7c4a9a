"""Alertmanager webhook v4 wire schema; its camelCase names stop in this module.

The shape is Alertmanager's ``notify/webhook.Message``: ``version``, ``groupKey`` and
``truncatedAlerts`` around an embedded ``template.Data``. Fields this schema does not know
(``notification_reason`` and whatever later versions add) are ignored rather than refused,
because Alertmanager never retries a 4xx and the alerts would be lost.

``payload_error`` turns a pydantic ``ValidationError`` into the receiver's one error shape
for every JSON body it accepts (webhook, change events, feedback).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError
from pydantic_core import ErrorDetails

from receiver.errors import PayloadError
from receiver.fieldpath import field_path
from receiver.models import AlertStatus

M = TypeVar("M", bound=BaseModel)
MAX_REPORTED_ERRORS = 20
"""At most this many schema errors are listed, so a hostile body cannot inflate the reply."""

MAX_EXACT_INT = 2**53 - 1
"""The largest integer a body may carry: the store's Lua reads numbers as doubles, exact up
to here, and one beyond 2**63 made the ingest fail with a 500 (found by fuzzing)."""

NOT_A_NUMBER = "Input should be an RFC 3339 timestamp string, not a number"
_ROOT = "(body)"
_TIMESTAMP_ERRORS = frozenset({"datetime_parsing", "datetime_from_date_parsing", "timezone_aware"})
_ROOT_TYPE_ERRORS = frozenset({"model_type", "model_attributes_type", "dict_type", "list_type"})
_JSON_KINDS = {
    ord("{"): "an object",
    ord("["): "an array",
    ord('"'): "a string",
    ord("t"): "a boolean",
    ord("f"): "a boolean",
    ord("n"): "null",
}


def _timestamp(value: datetime) -> datetime | None:
    # Go's zero time.Time (0001-01-01T00:00:00Z) is how Alertmanager writes "not set".
    if value.year == 1:
        return None
    # Go always writes an offset; a naive time can only come from another sender and is
    # taken as UTC so that every timestamp downstream compares with every other.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.year == 9999:
        try:
            value.astimezone(UTC)
        except OverflowError:
            # Past the year 9999 in UTC (9999-12-31T23:00:00-05:00): no RFC 3339 text can
            # say it, and the incident holding it could be neither read nor sent. Refusing
            # it would lose the batch (Alertmanager never retries a 4xx); as a far-future
            # time it says nothing, as a missing one.
            return None
    return value


def not_a_number(value: object) -> object:
    # pydantic would read a number as seconds or milliseconds since the epoch, guessing
    # which by its size; every sender of these formats writes RFC 3339 text.
    if _is_number(value):
        raise ValueError(NOT_A_NUMBER)
    return value


Rfc3339 = Annotated[datetime, Strict()]
"""A timestamp as JSON bodies carry it: text, never a JSON number. Strict, for the same
reason as ``not_a_number`` but checked inside pydantic-core: a Python validator called for
every timestamp of a 100-alert batch cost a sixth of its parse (benchmarks/ingest.py).
Strict also refuses a date without a time (lax read it as midnight); text of digits alone
is still read as seconds since the epoch, as pydantic reads it either way."""

# pydantic parses RFC 3339 with up to nanosecond fractions and truncates to microseconds.
_Timestamp = Annotated[Rfc3339, AfterValidator(_timestamp)]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class WebhookAlert(_Wire):
    """One entry of ``alerts``: Alertmanager's ``template.Alert``."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: _Timestamp | None = Field(default=None, alias="startsAt")
    ends_at: _Timestamp | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str | None = None


class WebhookMessage(_Wire):
    """A whole webhook delivery. Only ``status`` and ``alerts`` are required: the rest has
    a neutral default so that other senders of this format are accepted too."""

    version: str = "4"
    group_key: str = Field(default="", alias="groupKey")
    # Strict: JSON's false or "3" is not a count.
    truncated_alerts: int = Field(
        default=0, ge=0, le=MAX_EXACT_INT, alias="truncatedAlerts", strict=True
    )
    status: AlertStatus
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[WebhookAlert]


def parse_webhook(body: bytes) -> WebhookMessage:
    """Validate an Alertmanager webhook body.

    Raises ``PayloadError`` 400 when the body is not JSON and 422 when it does not fit the
    schema; see ``payload_error`` for the shape.
    """
    return parse_body(WebhookMessage, body)


def parse_body(model: type[M], body: bytes, empty: M | None = None) -> M:
    """``body`` as ``model`` (``empty`` for a blank body, when given); ``PayloadError``
    400/422 naming the field otherwise, as ``payload_error`` shapes it. The one way every
    JSON body the receiver accepts is read."""
    if empty is not None and not body.strip():
        return empty
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise payload_error(exc, body) from exc


def payload_error(
    exc: ValidationError, body: bytes, expected: str = "a JSON object"
) -> PayloadError:
    """The ``PayloadError`` for a body pydantic refused.

    Syntax errors give 400. Schema errors give 422 whose ``errors`` lists up to
    ``MAX_REPORTED_ERRORS`` of ``{"field": "alerts[3].labels.severity", "reason": "..."}``
    and whose message names the first field and how many errors there were in all.
    ``expected`` describes the top-level JSON value, for a body that is something else.
    """
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        if not body.strip():
            return PayloadError(400, f"request body is empty; expected {expected}")
        detail = first["msg"].removeprefix("Invalid JSON: ")
        return PayloadError(400, f"request body is not valid JSON: {detail}")
    listed = [
        {"field": field_path(error["loc"]) or _ROOT, "reason": _reason(error, body, expected)}
        for error in errors[:MAX_REPORTED_ERRORS]
    ]
    total = exc.error_count()
    message = f"{listed[0]['field']}: {listed[0]['reason']}"
    if total > 1:
        message += f" (and {total - 1} more; {len(listed)} listed)"
    return PayloadError(422, message, listed)


def _reason(error: ErrorDetails, body: bytes, expected: str) -> str:
    if not error["loc"] and error["type"] in _ROOT_TYPE_ERRORS:
        return f"expected {expected}, got {_json_kind(body)}"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "datetime_type" and _is_number(error.get("input")):
        return NOT_A_NUMBER
    if error["type"] in _TIMESTAMP_ERRORS:
        # pydantic names what is wrong, not what is wanted.
        return f"{error['msg']}: expected an RFC 3339 timestamp, such as 2026-04-18T08:13:00Z"
    # A ValueError raised in a validator is already worded for the sender.
    return error["msg"].removeprefix("Value error, ")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_kind(body: bytes) -> str:
    # Only reached for a body that parsed as JSON, so it has a first character.
    return _JSON_KINDS.get(body.lstrip()[0], "a number")
