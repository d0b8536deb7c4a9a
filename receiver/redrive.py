"""Which dead letters to deliver again: ``POST /api/v1/deliveries/redrive``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from receiver.webhook import payload_error


class Redrive(BaseModel):
    """An empty body (or ``{}``) redrives every dead letter; ``ids`` and ``sink`` narrow it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: list[str] = Field(default_factory=list, max_length=10_000)
    sink: str | None = None


def parse_redrive(body: bytes) -> Redrive:
    """Raises ``PayloadError`` 400/422 shaped as ``receiver.webhook.payload_error`` describes."""
    if not body.strip():
        return Redrive()
    try:
        return Redrive.model_validate_json(body)
    except ValidationError as exc:
        raise payload_error(exc, body) from exc
