"""Keeping incidents true to what Alertmanager holds: back-fill and reconcile.

**Back-fill.** A webhook with ``truncatedAlerts`` > 0 (Alertmanager's ``max_alerts``) left
alerts out. Its group is read back from its ``groupKey`` and asked of Alertmanager: the
group's alerts the batch left out are ingested like any other, and the alerts of the
incidents the batch reached that belong to that group but that Alertmanager no longer
holds are resolved. So a truncated storm fills its incident, and a truncated resolution
resolves it. Back-fills run in the scheduler loop of the replica that took the batch;
one lost in a crash is made good by the next reconcile (resolutions) and by
Alertmanager's next send of the group (which is truncated again, and back-filled).

**Reconcile.** Every ``alertmanager.reconcile_interval``, one replica (a lease in the
store) compares each open incident's firing alerts with every alert Alertmanager holds:
one it no longer holds (silenced away and expired, deleted, Alertmanager's state lost)
is resolved, and one it holds silenced or inhibited is marked so. Both are said on the
incident's timeline.

Resolving goes through ``Pipeline.ingest`` with a resolved copy of the alert, so counts,
blips and the lifecycle behave exactly as if Alertmanager had sent the resolution.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime

from receiver.config.alertmanager import AlertmanagerConfig
from receiver.metrics import Metrics
from receiver.models import Alert, Batch
from receiver.peer import links
from receiver.peer.alertmanager import (
    AlertmanagerClient,
    AlertmanagerError,
    AmAlert,
    Matcher,
    parse_group_key,
)
from receiver.pipeline import Pipeline
from receiver.retired import Closable, Retired
from receiver.settings import ms
from receiver.store import GroupStore
from receiver.store.base import Annotation
from receiver.store.records import StoredAlert, TimelineEntry

logger = logging.getLogger("journey_receiver.peer")

ALERTS_COMPARED = 10_000
"""An incident's firing alerts compared per round (firing ones come first)."""
LEASE = "reconcile"
_NAMES_SHOWN = 3


class Peer:
    """The Alertmanager side of one replica; without ``client`` it does nothing."""

    def __init__(
        self,
        config: AlertmanagerConfig | None,
        pipeline: Pipeline,
        store: GroupStore,
        metrics: Metrics,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.metrics = metrics
        self._token = secrets.token_hex(8)
        self._next_reconcile = 0
        # groupKey -> (receiver, the incidents the truncated batch reached)
        self._pending: dict[str, tuple[str, set[str]]] = {}
        self._retired = Retired()
        self._external_url = ""
        self.store_retention_ms = ms(pipeline.settings.config.store.retention)
        self.config = config
        self.client = AlertmanagerClient(config) if config else None

    @property
    def interval_ms(self) -> int:
        return ms(self.config.reconcile_interval) if self.config else 0

    @property
    def restart_grace_s(self) -> float:
        return self.config.restart_grace if self.config else 0.0

    def replace(self, config: AlertmanagerConfig | None, client: AlertmanagerClient | None) -> None:
        """After a reload: ``client``, built for ``config`` (None without); in-flight calls
        finish on the old one, which is closed next round."""
        if self.client is not None:
            self._retired.add(self.client)
        self.config = config
        self.client = client

    def retire(self, client: Closable) -> None:
        """Close ``client`` next round (one a rejected reload built)."""
        self._retired.add(client)

    async def aclose(self) -> None:
        await self._retired.close()
        if self.client is not None:
            await self.client.aclose()

    async def heard(self, batch: Batch) -> None:
        """Keep the ``externalURL`` Alertmanager sends, for links (when it changed)."""
        url = batch.external_url
        if url and url != self._external_url and url.startswith(("http://", "https://")):
            retention = self.store_retention_ms
            await self.store.cache.set(links.CACHE_NAMESPACE, links.CACHE_FIELD, url, retention)
            self._external_url = url

    def truncated(self, batch: Batch, incidents: Sequence[str]) -> None:
        """Remember a batch that left alerts out, to back-fill its group next round."""
        if self.client is None or not batch.truncated_alerts:
            return
        _, reached = self._pending.setdefault(batch.group_key, (batch.receiver, set()))
        reached.update(incidents)

    async def step(self) -> int:
        """Back-fill what is pending, and reconcile when due and this replica holds the
        lease; how many of either were done."""
        await self._retired.close()
        if self.client is None:
            return 0
        done = 0
        pending, self._pending = self._pending, {}
        for group_key, (receiver, incidents) in pending.items():
            done += await self._guarded("back-fill", self.backfill(group_key, receiver, incidents))
        now = self.pipeline.now_ms()
        if now >= self._next_reconcile:
            self._next_reconcile = now + self.interval_ms
            # A lease per interval of the receiver's clock: one running out an interval
            # after it was taken, in the store's time, could still be held when its holder
            # came back by its own clock (or an injected one), and no one would reconcile
            # for another interval. Kept two intervals: a lagging clock cannot retake it.
            slot = now // max(self.interval_ms, 1)
            if await self.store.take_lease(f"{LEASE}:{slot}", self._token, 2 * self.interval_ms):
                done += await self._guarded("reconcile", self.reconcile())
        return done

    async def _guarded(self, what: str, work: Awaitable[None]) -> int:
        # A back-fill lost here is made good by the next reconcile and by Alertmanager's
        # next send of the group; a reconcile, by the next one.
        try:
            await work
        except AlertmanagerError as exc:
            self.metrics.peer_errors.inc()
            logger.warning("alertmanager: %s failed: %s", what, exc)
            return 0
        return 1

    async def backfill(self, group_key: str, receiver: str, incidents: set[str]) -> None:
        assert self.client is not None
        labels = parse_group_key(group_key)
        if not labels and not group_key.endswith(":{}"):
            logger.warning("back-fill: cannot read the group of groupKey %r; skipped", group_key)
            return
        since = self.pipeline.now_ms()
        held = await self.client.group_alerts(labels, receiver or None)
        self.metrics.peer_backfills.inc()
        # Alertmanager notifies of active alerts only; silenced and inhibited ones it holds
        # were never going to be in the batch.
        active = [a for a in held if a.state == "active"]
        if active:
            outcomes = await self.pipeline.ingest(
                Batch(
                    alerts=[_firing(a) for a in active],
                    truncated_alerts=0,
                    group_key=group_key,
                    receiver=receiver,
                    external_url="",
                )
            )
            added = sum(o.changed for o in outcomes)
            self.metrics.peer_alerts.labels("backfilled").inc(added)
            incidents.update(o.incident_id for o in outcomes if o.incident_id)
        # What is gone is decided from every alert carrying the group's labels, whatever
        # receiver or group Alertmanager routes it to: an incident may hold alerts of
        # other routes, which this group's list does not show.
        matchers = [Matcher(name, value) for name, value in sorted(labels.items())]
        everywhere = {a.fingerprint: a for a in await self.client.alerts(matchers)}
        for incident_id in sorted(incidents):
            await self.compare(incident_id, everywhere, labels, "back-fill", since)

    async def reconcile(self) -> None:
        assert self.client is not None
        if await self._restarted_lately():
            return
        since = self.pipeline.now_ms()
        held = {a.fingerprint: a for a in await self.client.alerts([])}
        self.metrics.peer_reconciles.inc()
        for state in await self.store.list_incidents("open", None, ALERTS_COMPARED):
            if state.firing_count:
                await self.compare(state.id, held, {}, "reconcile", since)

    async def _restarted_lately(self) -> bool:
        """Whether an Alertmanager started within ``restart_grace`` (by the wall clock, as
        Alertmanager's own ``uptime`` is): it may not hold its alerts again yet."""
        assert self.client is not None
        if self.restart_grace_s <= 0:
            return False
        started = _started(await self.client.status())
        if started is None or time.time() - started >= self.restart_grace_s:
            return False
        logger.info("alertmanager: reconcile skipped: it started %s ago", started)
        self.metrics.peer_reconciles_skipped.inc()
        return True

    async def compare(
        self,
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
        stored = await self.store.load(incident_id)
        if stored is None:
            return
        page = await self.store.load_alerts(incident_id, ALERTS_COMPARED)
        firing = [
            a
            for a in page.alerts
            if a.status == "firing"
            and a.changed_at < asked_ms
            and all(a.labels.get(k) == v for k, v in scope.items())
        ]
        now = self.pipeline.now_ms()
        gone = [a for a in firing if a.fp not in held]
        entries = []
        if gone:
            await self.pipeline.ingest(
                Batch(
                    alerts=[_resolved(a, now) for a in gone],
                    truncated_alerts=0,
                    group_key="",
                    receiver="",
                    external_url="",
                )
            )
            self.metrics.peer_alerts.labels("resolved").inc(len(gone))
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
            self.metrics.peer_alerts.labels("suppressed").inc(len(newly))
            entries.append(f"{why}: {_names(newly)} {marks[newly[0].fp]} in Alertmanager")
        if marks or entries:
            await self.store.annotate(
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


def _firing(alert: AmAlert) -> Alert:
    return Alert(
        fingerprint=alert.fingerprint,
        status="firing",
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        starts_at=alert.starts_at,
        ends_at=None,
        generator_url=alert.generator_url,
    )


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
