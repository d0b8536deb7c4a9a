"""Back-fill: filling in what a truncated batch left out, from what Alertmanager holds.

A webhook with ``truncatedAlerts`` > 0 (Alertmanager's ``max_alerts``) left alerts out.
Its group is read back from its ``groupKey`` and asked of Alertmanager: the group's
alerts the batch left out are ingested like any other, and the alerts of the incidents
the batch reached that belong to that group but that Alertmanager no longer holds are
resolved (by ``reconcile.compare``). So a truncated storm fills its incident, and a
truncated resolution resolves it. An Alertmanager that started within
``alertmanager.restart_grace`` may not hold the group's alerts again yet (Prometheus sends
them again one rule evaluation at a time, while the restarted peer already sends the
group, truncated): what it holds is taken in, but nothing is resolved for being absent
from it, as reconcile skips its round (``reconcile.held_unless_restarted``: the status of
the peer whose list decides what is gone). Back-fills run in the scheduler loop of the
replica that took the batch (``peer.Peer`` keeps them pending until its next step); one lost in
a crash is made good by the next reconcile (resolutions) and by Alertmanager's next send
of the group (which is truncated again, and back-filled).

Resolving goes through ``Pipeline.ingest`` with a resolved copy of the alert, so counts,
blips and the lifecycle behave exactly as if Alertmanager had sent the resolution.
"""

from __future__ import annotations

import logging

from receiver.alertmanager.client import AlertmanagerClient, AmAlert, Matcher, parse_group_key
from receiver.alertmanager.reconcile import compare, held_unless_restarted
from receiver.metrics import Metrics
from receiver.models import Alert, Batch
from receiver.pipeline import Pipeline
from receiver.store import GroupStore

logger = logging.getLogger("journey_receiver.peer")


async def backfill(
    client: AlertmanagerClient,
    pipeline: Pipeline,
    store: GroupStore,
    metrics: Metrics,
    group_key: str,
    receiver: str,
    incidents: set[str],
    restart_grace_s: float,
) -> None:
    """Back-fill the group of ``group_key`` (sent to ``receiver``), whose truncated batch
    reached ``incidents``; resolving nothing when the Alertmanager asked started within
    ``restart_grace_s``."""
    labels = parse_group_key(group_key)
    if not labels and not group_key.endswith(":{}"):
        logger.warning("back-fill: cannot read the group of groupKey %r; skipped", group_key)
        return
    since = pipeline.now_ms()
    held = await client.group_alerts(labels, receiver or None)
    metrics.peer_backfills.inc()
    # Alertmanager notifies of active alerts only; silenced and inhibited ones it holds
    # were never going to be in the batch.
    active = [a for a in held if a.state == "active"]
    if active:
        outcomes = await pipeline.ingest(
            Batch(
                alerts=[_firing(a) for a in active],
                truncated_alerts=0,
                group_key=group_key,
                receiver=receiver,
                external_url="",
            )
        )
        added = sum(o.changed for o in outcomes)
        metrics.peer_alerts.labels("backfilled").inc(added)
        incidents.update(o.incident_id for o in outcomes if o.incident_id)
    # What is gone is decided from every alert carrying the group's labels, whatever
    # receiver or group Alertmanager routes it to: an incident may hold alerts of
    # other routes, which this group's list does not show.
    matchers = [Matcher(name, value) for name, value in sorted(labels.items())]
    carrying = await held_unless_restarted(
        client, matchers, restart_grace_s, f"back-fill of {group_key!r} resolves nothing"
    )
    if carrying is None:
        return
    everywhere = {a.fingerprint: a for a in carrying}
    for incident_id in sorted(incidents):
        await compare(
            pipeline,
            store,
            metrics,
            incident_id,
            everywhere,
            labels,
            "back-fill",
            since,
            frozenset([receiver]) if receiver else frozenset(),
        )


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
