"""The Alertmanager side of one replica: what it keeps between rounds, and each round's step.

A truncated batch (``truncated``) is kept pending by its ``groupKey`` until the next
``step``, which back-fills it (``backfill``) in the scheduler loop of the replica that
took the batch. Every ``alertmanager.reconcile_interval`` the step also reconciles
(``reconcile``), on the one replica that takes that interval's lease in the store. The
``externalURL`` webhooks carry is kept for links, and the receiver names they come from for
reconcile (``heard``). A reload swaps the client
(``replace``); the old one is closed next round.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Sequence

from receiver.alertmanager import links
from receiver.alertmanager.backfill import backfill
from receiver.alertmanager.client import AlertmanagerClient, AlertmanagerError
from receiver.alertmanager.reconcile import RECEIVERS, reconcile
from receiver.config.alertmanager import AlertmanagerConfig
from receiver.metrics import Metrics
from receiver.models import Batch
from receiver.pipeline import Pipeline
from receiver.retired import Closable, Retired
from receiver.settings import ms
from receiver.store import GroupStore

logger = logging.getLogger("journey_receiver.peer")

LEASE = "reconcile"
_RECEIVER_MAX = 200  # a longer name (untrusted text) is not kept
# Names kept per replica: webhooks are untrusted (and may come without auth), and each
# name is a key in the store; Alertmanager configs have a handful.
_RECEIVERS_KEPT = 1_000


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
        # Receiver name -> when this replica last said it in the store.
        self._receivers: dict[str, int] = {}
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
        """Keep the ``externalURL`` Alertmanager sends, for links (when it changed), and
        the name of the receiver it sent the batch to, for reconcile (``receivers``): said
        in the store again once half the retention has passed."""
        url = batch.external_url
        retention = self.store_retention_ms
        if url and url != self._external_url and url.startswith(("http://", "https://")):
            await self.store.cache.set(links.CACHE_NAMESPACE, links.CACHE_FIELD, url, retention)
            self._external_url = url
        name = batch.receiver
        now = self.pipeline.now_ms()
        if not 0 < len(name) <= _RECEIVER_MAX or (
            name not in self._receivers and len(self._receivers) >= _RECEIVERS_KEPT
        ):
            return
        if now - self._receivers.get(name, -retention) > retention // 2:
            await self.store.cache.set(RECEIVERS, name, "1", retention)
            self._receivers[name] = now

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
        client = self.client
        if client is None:
            return 0
        done = 0
        pending, self._pending = self._pending, {}
        for group_key, (receiver, incidents) in pending.items():
            work = backfill(
                client,
                self.pipeline,
                self.store,
                self.metrics,
                group_key,
                receiver,
                incidents,
                self.restart_grace_s,
            )
            done += await self._guarded("back-fill", work)
        now = self.pipeline.now_ms()
        if now >= self._next_reconcile:
            self._next_reconcile = now + self.interval_ms
            # A lease per interval of the receiver's clock: one running out an interval
            # after it was taken, in the store's time, could still be held when its holder
            # came back by its own clock (or an injected one), and no one would reconcile
            # for another interval. Kept two intervals: a lagging clock cannot retake it.
            slot = now // max(self.interval_ms, 1)
            if await self.store.take_lease(f"{LEASE}:{slot}", self._token, 2 * self.interval_ms):
                work = reconcile(
                    client, self.pipeline, self.store, self.metrics, self.restart_grace_s
                )
                done += await self._guarded("reconcile", work)
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
