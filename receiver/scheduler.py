"""The loop every replica runs: decide for the due incidents, deliver the due jobs, sleep;
beside it, Alertmanager's back-fills and reconciles (``receiver/alertmanager/``).

Claims are atomic in the store, so any number of replicas can run it: each due incident is
decided by exactly one of them, and each outbox queue is worked by one of them at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from receiver.alertmanager.peer import Peer
from receiver.errors import StoreUnavailable
from receiver.outbox import Outbox
from receiver.pipeline import Pipeline

logger = logging.getLogger("journey_receiver.scheduler")


async def tick(pipeline: Pipeline, outbox: Outbox, peer: Peer | None = None) -> bool:
    """One round; True when there may be more due work right away (a full batch). With
    ``peer``, Alertmanager's part goes first, in the same round (tests step it so; the
    running receiver gives it a loop of its own, see ``run``)."""
    batch = pipeline.settings.config.scheduler.batch
    if peer is not None:
        await _step(pipeline, "alertmanager", peer.step)
    claimed = await _step(pipeline, "decide", pipeline.flush_due)
    # Right after the decisions, so a notification goes out in the tick that decided it.
    queues = await _step(pipeline, "deliver", outbox.deliver_due)
    await _step(pipeline, "say which sinks are here", pipeline.say_sinks)
    return claimed >= batch or queues >= outbox.cfg.batch


async def _step(pipeline: Pipeline, name: str, step: Callable[[], Awaitable[int]]) -> int:
    try:
        return await step()
    except StoreUnavailable as exc:
        # Said on store_up too: in a quiet hour no request would, while nothing is decided
        # nor delivered.
        pipeline.metrics.store_up.set(0)
        logger.warning("scheduler: %s: %s; retrying next tick", name, exc)
    except Exception:
        # One bad incident or job must not stop every later one.
        logger.exception("scheduler: %s failed", name)
    return 0


async def run(
    pipeline: Pipeline, outbox: Outbox, stop: anyio.Event, peer: Peer | None = None
) -> None:
    """Tick until ``stop`` is set; a round under way is finished first, so a shutdown does
    not cut a delivery between the sink's answer and its receipt."""
    async with anyio.create_task_group() as tasks:
        if peer is not None:
            # Its own loop: an Alertmanager that hangs (a timeout per peer, one group after
            # another) must not hold up decisions and deliveries.
            tasks.start_soon(_peer_loop, pipeline, peer, stop)
        while not stop.is_set():
            if not await tick(pipeline, outbox):
                await _pause(pipeline, stop)


async def _peer_loop(pipeline: Pipeline, peer: Peer, stop: anyio.Event) -> None:
    while not stop.is_set():
        await _step(pipeline, "alertmanager", peer.step)
        await _pause(pipeline, stop)


async def _pause(pipeline: Pipeline, stop: anyio.Event) -> None:
    with anyio.move_on_after(pipeline.settings.config.scheduler.tick):
        await stop.wait()
