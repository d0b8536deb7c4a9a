"""The loop every replica runs: claim due incidents, flush them, sleep a tick.

Claims are atomic in the store, so any number of replicas can run it: each due incident is
decided by exactly one of them.
"""

from __future__ import annotations

import logging

import anyio

from receiver.errors import StoreUnavailable
from receiver.pipeline import Pipeline

logger = logging.getLogger("journey_receiver.scheduler")


async def run(pipeline: Pipeline) -> None:
    while True:
        sched = pipeline.settings.config.scheduler
        try:
            claimed = await pipeline.flush_due()
        except StoreUnavailable as exc:
            logger.warning("scheduler: %s; retrying in %ss", exc, sched.tick)
            claimed = 0
        except Exception:
            # One bad incident must not stop every later decision.
            logger.exception("scheduler: flush failed")
            claimed = 0
        if claimed < sched.batch:
            await anyio.sleep(sched.tick)
