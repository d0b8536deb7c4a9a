"""Alertmanager: ``GET /api/v2/status`` of each peer, and its cluster state."""

from __future__ import annotations

import asyncio
import json

from receiver.alertmanager.client import (
    AlertmanagerClient,
    AlertmanagerRefused,
    AlertmanagerUnavailable,
)
from receiver.config.alertmanager import AlertmanagerConfig
from receiver.online import Finding, Findings, shown_url


async def check_alertmanager(config: AlertmanagerConfig) -> list[Finding]:
    """``GET /api/v2/status`` of each peer on its own (the client would move on to the
    next peer, hiding one that is down)."""
    peers = await asyncio.gather(*(_peer(config, i) for i in range(len(config.urls))))
    return [finding for found in peers for finding in found]


async def _peer(config: AlertmanagerConfig, index: int) -> Findings:
    found = Findings("alertmanager")
    url = config.urls[index]
    name = f"{shown_url(url)} (alertmanager.urls[{index}])"
    async with AlertmanagerClient(config.model_copy(update={"urls": [url]})) as client:
        try:
            status = await client.status()
        except AlertmanagerUnavailable as exc:
            reason = str(exc).rpartition(f"{shown_url(url)}: ")[2]
            found.problem(f"{name} is down: {reason} — check the URL and that it runs")
            return found
        except AlertmanagerRefused as exc:
            found.problem(f"{name}: {exc}")
            return found
    cluster = status.get("cluster") or {}
    state = cluster.get("status")
    version = (status.get("versionInfo") or {}).get("version", "?")
    peers = len(cluster.get("peers") or [])
    if state == "ready":
        found.ok(f"{name}: Alertmanager {version}, cluster ready with {peers} peer(s)")
    elif state == "disabled" and len(config.urls) == 1:
        found.ok(f"{name}: Alertmanager {version}, not clustered")
    elif state == "disabled":
        found.warning(
            f"{name}: clustering is disabled, yet alertmanager.urls names "
            f"{len(config.urls)} peers: they share no silences or notification log — "
            "cluster them (--cluster.peer)"
        )
    else:
        found.warning(
            f"{name}: cluster status is {json.dumps(state)}, not ready — it may still be "
            "settling; check its --cluster.peer flags"
        )
    return found
