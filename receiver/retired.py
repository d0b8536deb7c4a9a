"""Clients a reload replaced, closed once nothing can still be using them.

A reload swaps in new sinks or a new enricher while a scheduler round may be delivering
or deciding with the old ones; rounds run one after another, so the start of the next
round is the first moment the old ones are surely idle.
"""

from __future__ import annotations

import logging
from typing import Protocol

logger = logging.getLogger("journey_receiver.reload")


class Closable(Protocol):
    async def aclose(self) -> None: ...


class Retired:
    def __init__(self) -> None:
        self._clients: list[Closable] = []

    def add(self, client: Closable) -> None:
        self._clients.append(client)

    def __bool__(self) -> bool:
        return bool(self._clients)

    async def close(self) -> None:
        """Close every retired client (call between rounds)."""
        clients, self._clients = self._clients, []
        for client in clients:
            try:
                await client.aclose()
            except Exception:
                # The rest still close, and the round that called this still runs: a
                # client failing to close is no reason to skip a round of decisions.
                logger.exception("closing a client a reload replaced failed")
