"""Where incidents are sent. One interface; one module per sink; one registry line each.

A sink makes the remote object (PagerDuty alert, Slack message, Jira issue) show the
incident as it is now; opening, updating, resolving and reopening are all ``deliver`` calls
whose :class:`Delivery` says which notification it is and what changed. It raises
``RetryableDeliveryError`` or ``PermanentDeliveryError`` (chained with ``from``) and never
retries, sleeps or swallows: retry policy belongs to the outbox alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from receiver.models import NotificationKind

if TYPE_CHECKING:
    from receiver.config import Owner
    from receiver.incident import Incident
    from receiver.metrics import Metrics
    from receiver.store.cache import Cache


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a sink needs to find its object again next time (dedup key, channel+ts, issue
    key), kept on the incident under ``sinks.<name>``; ``state`` is what it was last told."""

    sink: str
    state: str
    refs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox job as the sink sees it.

    ``changes`` are the material changes that made an update due (for a comment or a
    thread reply); ``job_id`` is unique per job, so a sink that can look its own writes up
    (Jira comments) skips one a previous attempt already made; ``attempt`` counts from 1,
    and above 1 a previous attempt may have landed without its receipt being recorded.
    ``previous_error_ambiguous`` narrows that down: True when the previous attempt ended
    without an answer (a ``RetryableDeliveryError`` with ``ambiguous``, the outbox's own
    time limit, an unexpected error) or never finished (its replica died or lost its
    lease) or with an answer that may hide a write (a 5xx to a write); False after an
    answer that proves nothing was written (a 429, a refusal), so a sink whose lookups
    cost scarce API budget can skip them.
    ``owner`` is the journey's owner: routing key, channel and project override the
    sink's defaults.
    """

    kind: NotificationKind
    job_id: str
    owner: Owner
    changes: tuple[str, ...] = ()
    attempt: int = 1
    previous_error_ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class Shared:
    """What a sink may use beyond its own config section, given by whoever builds it:
    ``cache``, the store's cache that every replica sees (a Slack channel's ID for its
    name), and ``metrics``, the receiver's. Both optional: a sink built without them keeps
    what it learns to itself and counts nothing."""

    cache: Cache | None = None
    metrics: Metrics | None = None
    retention_ms: int = 7 * 86_400_000
    """How long the store keeps an incident (``store.retention``): what a sink keeps in
    ``cache`` for an incident's later deliveries must last as long."""


class Sink(Protocol):
    name: str
    coalesces_updates: bool
    """True when every delivery carries the whole incident and nothing per change
    (PagerDuty): an update with later jobs queued behind it is then skipped, which keeps a
    backlog after an outage under the API's rate limit."""

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        """Send ``incident``; ``previous`` is this sink's receipt from the last delivery."""
        ...

    async def aclose(self) -> None: ...
