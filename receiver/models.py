"""Value types passed between the steps of the flow.

The wire formats (webhook JSON, YAML) stop at their own modules; everything after them
speaks these frozen types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

AlertStatus = Literal["firing", "resolved"]
NotificationKind = Literal["open", "update", "resolve", "reopen", "acknowledge"]

# The service of an alert that names none (no service, app or job label).
UNKNOWN_SERVICE = "unknown"
"""What a decision tells the sinks; each is one outbox job per sink. ``acknowledge`` is
not a decision's: a person acknowledged in Slack, and PagerDuty is told (its sink only)."""


class Alert(NamedTuple):
    """One alert after normalisation. Labels and annotations are untrusted text.

    A NamedTuple rather than a frozen dataclass: one is built per alert on the webhook
    path, and a frozen dataclass costs several times more to build.
    """

    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str


@dataclass(frozen=True, slots=True)
class Batch:
    """One webhook delivery from Alertmanager, normalised."""

    alerts: list[Alert]
    truncated_alerts: int
    group_key: str
    receiver: str
    external_url: str
