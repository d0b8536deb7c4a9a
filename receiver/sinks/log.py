"""The built-in ``log`` sink: one structured JSON log line per incident notification."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from receiver.sinks import Delivery, Receipt

if TYPE_CHECKING:
    from receiver.incident import Incident

logger = logging.getLogger("journey_receiver.notifications")


class LogSink:
    name = "log"
    coalesces_updates = False

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        # json.dumps escapes control characters, so untrusted alert text cannot forge
        # extra log lines.
        logger.info(
            json.dumps(
                {
                    "event": "incident_notification",
                    "sink": self.name,
                    "kind": delivery.kind,
                    "changes": list(delivery.changes),
                    "incident": incident.id,
                    "key": incident.key,
                    "journey": incident.journey,
                    "status": incident.status,
                    "priority": incident.priority,
                    "score": incident.score,
                    "title": incident.title,
                    "alert_count": incident.alert_count,
                    "firing_count": incident.firing_count,
                    "services": incident.services,
                },
                ensure_ascii=False,
            )
        )
        return Receipt(sink=self.name, state=incident.status)

    async def aclose(self) -> None:
        return None
