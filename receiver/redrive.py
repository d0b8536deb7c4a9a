"""Which dead letters to deliver again: ``POST /api/v1/deliveries/redrive``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from receiver.act.runs import SINK_PREFIX
from receiver.sinks import registry
from receiver.webhook import parse_body


class Redrive(BaseModel):
    """An empty body (or ``{}``) redrives every dead letter; ``ids`` and ``sink`` narrow it.
    An action's run is cleared from the dead letters rather than sent again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: list[str] = Field(default_factory=list, max_length=10_000)
    sink: str | None = Field(
        default=None, description="A sink's name (`pagerduty`, `slack`, ...) or `action:<id>`"
    )

    @field_validator("sink")
    @classmethod
    def _a_sink(cls, value: str | None) -> str | None:
        # A misspelt name would match nothing and read as "nothing to redrive".
        known = sorted(registry.names())
        if value is None or value in known or value.startswith(SINK_PREFIX):
            return value
        raise ValueError(f"no such sink: one of {', '.join(known)}, or {SINK_PREFIX}<action id>")


def parse_redrive(body: bytes) -> Redrive:
    """An empty body redrives everything; ``PayloadError`` 400/422 for a bad one."""
    return parse_body(Redrive, body, empty=Redrive())
