"""Where incidents are sent. One interface; one module per sink; one registry line each.

A sink delivers the incident as it is now; opening, updating, resolving and reopening are
all just ``deliver`` calls with the incident's current status and the notification kind.
It raises ``RetryableDeliveryError`` or ``PermanentDeliveryError`` and never retries itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from receiver.incident import Incident


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a sink needs to find its object again next time (dedup key, message ts, key)."""

    sink: str
    state: str
    refs: dict[str, str] = field(default_factory=dict)


class Sink(Protocol):
    name: str

    async def deliver(self, incident: Incident, kind: str, previous: Receipt | None) -> Receipt:
        """Send ``incident``; ``kind`` is open, update, resolve or reopen."""
        ...

    async def aclose(self) -> None: ...
