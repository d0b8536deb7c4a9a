"""Acting: what an action's ``run`` does once its run is due. One interface; one module per
kind (``webhook.py``, ...).

An executor carries out one run of one action for one incident and says how it went. It
raises ``RetryableDeliveryError`` or ``PermanentDeliveryError`` (chained with ``from``), as
a sink does, and never retries, sleeps or swallows: runs are outbox jobs like deliveries,
so retry policy is the outbox's alone. Every run carries an idempotency key, the same on
every attempt, so the system acted on can tell a retry from a second run.

Nothing here decides *whether* to run (automation levels, guards): that comes before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

STATUS_WORDS: dict[str, str] = {
    "ran": "ran",
    "failed": "failed",
    "refused": "refused",
    "skipped": "not run",
    "dry_run": "dry run (nothing called)",
}
"""How a run's status reads in the timeline, the sinks and the pages."""


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run as the executor sees it.

    ``idempotency_key`` is the same on every attempt of the run (once per incident and
    action); ``values`` are what the action's templates may name: ``{service}``,
    ``{previous_version}``, ``{incident_id}``, the incident's group labels, ...
    """

    action_id: str
    incident_id: str
    idempotency_key: str
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run that was carried out went: the remote's status and a short, redacted
    text of its answer, for the incident's ``actions_run`` and timeline."""

    status: int
    text: str


class Executor(Protocol):
    kind: str
    """The ``run`` key this executor implements: ``webhook``."""

    async def run(self, request: RunRequest) -> RunResult:
        """Carry out ``request`` once; raise a ``DeliveryError`` when it did not succeed."""
        ...

    async def aclose(self) -> None: ...
