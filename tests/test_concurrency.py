"""Three receivers on one real Redis, as three replicas behind a load balancer with
Alertmanager HA peers sending each batch to all of them at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import FakeClock, make_alert, resolved
from tests.support.harness import Harness, RecordingSink, harness, write_config

pytestmark = pytest.mark.anyio

_prefix = itertools.count()


async def test_replicas_make_one_incident_per_key_and_one_notification_per_step(
    tmp_path: Path, clock: FakeClock, redis_port: int
) -> None:
    cfg = write_config(
        tmp_path,
        f"store: {{url: 'redis://127.0.0.1:{redis_port}/0', key_prefix: conc{next(_prefix)}}}\n",
    )
    cfg.write_text(cfg.read_text().replace("store: {url: 'memory://'}\n", ""))
    shared = RecordingSink()
    async with contextlib.AsyncExitStack() as stack:
        replicas: list[Harness] = [
            await stack.enter_async_context(harness(cfg, clock, shared)) for _ in range(3)
        ]
        services = ["payment-service", "payments-db", "cart-api", "checkout-service"]
        batches = [
            [
                make_alert(services[i % 4], alertname=f"E{b}-{i}", region=region, instance=f"{b}")
                for i in range(10)
            ]
            for b in range(6)
            for region in ("eu", "us")
        ]
        # Every batch goes to every replica at the same moment, several times over.
        posts = [rx.post(batch) for batch in batches for rx in replicas for _ in range(2)]
        responses = await asyncio.gather(*posts)
        assert {r.status_code for r in responses} == {200}

        listed = await replicas[0].incidents()
        assert sorted((i["key"], i["alert_count"], i["firing_count"]) for i in listed) == [
            ('checkout{env="prod",region="eu"}', 60, 60),
            ('checkout{env="prod",region="us"}', 60, 60),
        ]

        async def step(seconds: float) -> None:
            clock.advance(seconds)
            await asyncio.gather(*(rx.tick() for rx in replicas))

        await step(29)
        assert shared.sent == []
        await step(1)
        opened = Counter((i, k) for k, i, _ in shared.sent)
        assert sorted(opened.values()) == [1, 1]
        assert {kind for _, kind in opened} == {"open"}

        for _ in range(3):
            await step(1)
        assert len(shared.sent) == 2

        every = [a for batch in batches for a in batch]
        await asyncio.gather(*(rx.post([resolved(a) for a in every]) for rx in replicas))
        await step(299)
        assert len(shared.sent) == 2
        await step(1)
        await step(1)
        per_incident = Counter(i for _, i, _ in shared.sent)
        assert sorted(per_incident.values()) == [2, 2]
        assert sorted(k for k, _, _ in shared.sent) == ["open", "open", "resolve", "resolve"]
