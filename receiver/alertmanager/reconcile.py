"""Reconcile: keeping open incidents true to what Alertmanager holds.

Every ``alertmanager.reconcile_interval``, one replica (the one holding that interval's
lease, taken by ``peer.Peer``) compares each open incident's firing alerts with every
alert Alertmanager holds: one it no longer holds (silenced away and expired, deleted,
Alertmanager's state lost) is resolved, and one it holds silenced or inhibited is marked
so. Both are said on the incident's timeline. The same comparison (``compare``), scoped
to a group's labels, decides what a back-fill resolves.

An Alertmanager that started within ``alertmanager.restart_grace`` may not hold its
alerts again yet: the round is skipped rather than resolving what it has not heard of.

Resolving goes through ``Pipeline.ingest`` with a resolved copy of the alert, so counts,
blips and the lifecycle behave exactly as if Alertmanager had sent the resolution.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from receiver.alertmanager.client import AlertmanagerClient, AmAlert
from receiver.metrics import Metrics
from receiver.models import Alert, Batch
from receiver.pipeline import Pipeline
from receiver.store import GroupStore
from receiver.store.base import Annotation
from receiver.store.records import StoredAlert, TimelineEntry

logger = logging.getLogger("journey_receiver.peer")

ALERTS_COMPARED = 10_000
"""An incident's firing alerts compared per round (firing ones come first)."""
_NAMES_SHOWN = 3


async def reconcile(
    client: AlertmanagerClient,
    pipeline: Pipeline,
    store: GroupStore,
    metrics: Metrics,
    restart_grace_s: float,
) -> None:
    """Compare every open incident with firing alerts to what Alertmanager holds."""
    if await restarted_lately(client, metrics, restart_grace_s):
        return
    since = pipeline.now_ms()
    held = {a.fingerprint: a for a in await client.alerts([])}
    metrics.peer_reconciles.inc()
    for state in await store.list_incidents("open", None, ALERTS_COMPARED):
        if state.firing_count:
            await compare(pipeline, store, metrics, state.id, held, {}, "reconcile", since)


async def restarted_lately(
    client: AlertmanagerClient, metrics: Metrics, restart_grace_s: float
) -> bool:
    """Whether an Alertmanager started within ``restart_grace`` (by the wall clock, as
    Alertmanager's own ``uptime`` is): it may not hold its alerts again yet."""
    if restart_grace_s <= 0:
        return False
    started = _started(await client.status())
    if started is None or time.time() - started >= restart_grace_s:
        return False
    logger.info("alertmanager: reconcile skipped: it started %s ago", started)
    metrics.peer_reconciles_skipped.inc()
    return True


async def compare(
    pipeline: Pipeline,
    store: GroupStore,
    metrics: Metrics,
    incident_id: str,
    held: Mapping[str, AmAlert],
    scope: Mapping[str, str],
    why: str,
    asked_ms: int,
) -> None:
    """Resolve the incident's firing alerts within ``scope`` (labels they carry) that
    Alertmanager does not hold, and mark the silenced or inhibited ones. ``held`` was
    asked at ``asked_ms``: an alert that changed since (a webhook newer than the
    answer) is left for the next round."""
    stored = await store.load(incident_id)
    if stored is None:
        return
    page = await store.load_alerts(incident_id, ALERTS_COMPARED)
    firing = [
        a
        for a in page.alerts
        if a.status == "firing"
        and a.changed_at < asked_ms
        and all(a.labels.get(k) == v for k, v in scope.items())
    ]
    now = pipeline.now_ms()
    gone = [a for a in firing if a.fp not in held]
    entries = []
    if gone:
        await pipeline.ingest(
            Batch(
                alerts=[_resolved(a, now) for a in gone],
                truncated_alerts=0,
                group_key="",
                receiver="",
                external_url="",
            )
        )
        metrics.peer_alerts.labels("resolved").inc(len(gone))
        entries.append(f"{why}: Alertmanager no longer holds {_names(gone)}: resolved here")
    known = stored.state.suppressed
    marks: dict[str, str] = {}
    for alert in firing:
        am = held.get(alert.fp)
        reason = _suppression(am) if am is not None else ""
        if reason != known.get(alert.fp, ""):
            marks[alert.fp] = reason
    newly = [a for a in firing if marks.get(a.fp)]
    if newly:
        metrics.peer_alerts.labels("suppressed").inc(len(newly))
        entries.append(f"{why}: {_names(newly)} {marks[newly[0].fp]} in Alertmanager")
    if marks or entries:
        await store.annotate(
            incident_id,
            Annotation(
                merge={"suppressed": marks} if marks else {},
                timeline=[TimelineEntry(at=now, kind="alertmanager", text=t) for t in entries],
            ),
            now,
        )


def _started(status: Mapping[str, object]) -> float | None:
    """When Alertmanager started, from ``/status``'s ``uptime`` (an RFC 3339 time)."""
    uptime = status.get("uptime")
    if not isinstance(uptime, str):
        return None
    try:
        return datetime.fromisoformat(uptime.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _suppression(alert: AmAlert) -> str:
    if alert.state != "suppressed":
        return ""
    if alert.silenced_by:
        return "silenced by " + ", ".join(alert.silenced_by)
    return "inhibited by " + ", ".join(alert.inhibited_by) if alert.inhibited_by else "suppressed"


def _names(alerts: Sequence[StoredAlert]) -> str:
    names = [a.labels.get("alertname") or a.fp for a in alerts[:_NAMES_SHOWN]]
    more = f" +{len(alerts) - _NAMES_SHOWN} more" if len(alerts) > _NAMES_SHOWN else ""
    return f"{len(alerts)} alert(s) ({', '.join(names)}{more})"


def _resolved(alert: StoredAlert, now_ms: int) -> Alert:
    return Alert(
        fingerprint=alert.fp,
        status="resolved",
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        # No startsAt of its own: ingest takes a firing copy with the startsAt it had for
        # a late copy of an alert Alertmanager resolved, and ignores it. This resolution
        # is the receiver's inference, so the alert firing again (Alertmanager still had
        # it after all) must count.
        starts_at=None,
        ends_at=_at(now_ms),
        generator_url=alert.generator_url,
    )


def _at(ms_: int) -> datetime:
    return datetime.fromtimestamp(ms_ / 1000, UTC)
