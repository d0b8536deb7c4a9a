"""Which dead letters to deliver again: ``POST /api/v1/deliveries/redrive``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from receiver.webhook import parse_body


class Redrive(BaseModel):
    """An empty body (or ``{}``) redrives every dead letter; ``ids`` and ``sink`` narrow it.
    An action's run is cleared from the dead letters rather than sent again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: list[str] = Field(default_factory=list, max_length=10_000)
    sink: str | None = None


def parse_redrive(body: bytes) -> Redrive:
    """An empty body redrives everything; ``PayloadError`` 400/422 for a bad one."""
    return parse_body(Redrive, body, empty=Redrive())
