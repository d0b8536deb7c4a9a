"""Silencing an incident's alerts in Alertmanager, from the API or a Slack button.

One silence per firing alert, matching all of its labels exactly: a silence on the labels
the alerts share (say ``alertname`` and ``region``) would also mute alerts of other
services and incidents that happen to share them. The silence ids are kept on the
incident's ``silences`` with who asked, until when and why, and said on its timeline.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from receiver.alertmanager.client import Matcher
from receiver.config.fields import parse_duration
from receiver.errors import PayloadError
from receiver.store.base import Annotation
from receiver.store.records import TimelineEntry
from receiver.webhook import parse_body

if TYPE_CHECKING:
    from receiver.app import Receiver

MAX_SILENCED = 100
"""At most this many alerts are silenced in one request (one silence each)."""
MAX_DURATION_S = 7 * 86400.0
_ALERTS_READ = MAX_SILENCED + 1


class SilenceRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    duration: str = "2h"
    comment: Annotated[str, StringConstraints(max_length=1000)] = ""
    by: Annotated[str, StringConstraints(max_length=200)] | None = Field(default=None)
    """Who asks (shown in Alertmanager as ``createdBy``); the API caller by default."""

    def seconds(self) -> float:
        try:
            seconds = parse_duration(self.duration)
        except ValueError as exc:
            raise PayloadError(422, str(exc), [{"field": "duration", "reason": str(exc)}]) from exc
        if not 0 < seconds <= MAX_DURATION_S:
            reason = "must be more than 0 and at most 7d"
            raise PayloadError(422, f"duration {reason}", [{"field": "duration", "reason": reason}])
        return seconds


def parse_silence(body: bytes) -> SilenceRequest:
    """An empty body silences for 2h; ``PayloadError`` 400/422 for a bad one."""
    return parse_body(SilenceRequest, body, empty=SilenceRequest())


async def silence_incident(
    receiver: Receiver, incident_id: str, seconds: float, by: str, comment: str
) -> list[str] | None:
    """Silence the incident's firing alerts for ``seconds``; the new silence ids, or None
    for an unknown incident. Raises ``PayloadError`` 409/422 when there is nothing (or too
    much) to silence or no Alertmanager configured, and lets ``AlertmanagerError`` through."""
    client = receiver.alertmanager
    if client is None:
        raise PayloadError(409, "no alertmanager configured in receiver.yaml (alertmanager.urls)")
    if await receiver.store.load(incident_id) is None:
        return None
    page = await receiver.store.load_alerts(incident_id, _ALERTS_READ)
    firing = [a for a in page.alerts if a.status == "firing"]
    if not firing:
        raise PayloadError(409, "the incident has no firing alert to silence")
    if len(firing) > MAX_SILENCED:
        raise PayloadError(
            422,
            f"more than {MAX_SILENCED} firing alerts: silence them in Alertmanager itself",
        )
    now_ms = receiver.pipeline.now_ms()
    starts = datetime.fromtimestamp(now_ms / 1000, UTC)
    ends = starts + timedelta(seconds=seconds)
    why = comment or f"journey-receiver incident {incident_id}"
    ids = []
    for alert in firing:
        matchers = [Matcher(name, value) for name, value in sorted(alert.labels.items())]
        ids.append(await client.create_silence(matchers, starts, ends, by, why))
    ends_ms = round(ends.timestamp() * 1000)
    records = [
        {"id": silence_id, "at": now_ms, "by": by, "ends_at": ends_ms, "comment": why}
        for silence_id in ids
    ]
    hours = seconds / 3600
    span = f"{hours:g}h" if hours >= 1 else f"{seconds / 60:g}m"
    await receiver.store.annotate(
        incident_id,
        Annotation(
            append={"silences": records},
            timeline=[
                TimelineEntry(
                    at=now_ms,
                    kind="alertmanager",
                    text=f"{len(ids)} alert(s) silenced in Alertmanager for {span} by {by}",
                )
            ],
        ),
        now_ms,
    )
    return ids
