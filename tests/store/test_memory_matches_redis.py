"""The embedded store and a real redis-server, driven by the same random batches and the
same clock, answer, list, decide and notify alike: the memory:// a newcomer tries is the
store production runs."""

from __future__ import annotations

import contextlib
import itertools
import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, make_alert, resolved
from tests.support.harness import harness

pytestmark = pytest.mark.anyio
_prefixes = itertools.count(1)


def _config(tmp: Path, url: str, prefix: str) -> Path:
    cfg = tmp / f"receiver-{prefix}-{url.split(':')[0]}.yaml"
    cfg.write_text(
        f"journeys_file: {EXAMPLE_JOURNEYS}\n"
        f"store: {{url: '{url}', key_prefix: {prefix}}}\n"
        "grouping: {group_wait: 30s, group_interval: 2m, resolve_after: 5m, reopen_window: 30m}\n"
        "server: {auth: {allow_open: true}}\n"
    )
    return cfg


def _scenario(seed: int, steps: int = 40) -> list[tuple[float, list[dict[str, Any]]]]:
    rnd = random.Random(seed)
    services = ["payment-service", "cart-api", "legacy-batch", "checkout-service"]
    pool = []
    for i in range(8):
        labels: dict[str, str] = {"instance": f"i{i}"}
        region = rnd.choice(["eu", "us", None])
        alert = make_alert(
            rnd.choice(services),
            alertname=f"A{i}",
            fingerprint=f"{i:016x}",
            starts_at=f"2026-04-18T08:0{i}:00Z",
            **labels,
        )
        if region is None:
            del alert["labels"]["region"]
        else:
            alert["labels"]["region"] = region
        pool.append(alert)
    out = []
    for _ in range(steps):
        wait = rnd.choice([0, 1, 10, 29, 30, 31, 60, 120, 300, 301, 1800])
        batch = []
        for _ in range(rnd.randint(1, 4)):
            a = rnd.choice(pool)
            if rnd.random() < 0.2:  # a new episode of the alert
                a = {**a, "startsAt": f"2026-04-18T{rnd.randint(9, 23):02d}:00:00Z"}
            batch.append(a if rnd.random() < 0.55 else resolved(a))
        out.append((wait, batch))
        if rnd.random() < 0.3:  # an HA peer's copy of the same batch
            out.append((rnd.choice([0, 1]), list(batch)))
    return out


@pytest.mark.parametrize("seed", range(4))
async def test_memory_and_redis_agree_on_the_same_batches(
    tmp_path: Path, seed: int, redis_port: int
) -> None:
    """Two regions and none, new episodes, HA copies, resolutions out of order, waits at
    the timers' edges."""
    clocks = [FakeClock(), FakeClock()]
    prefix = f"diff{seed}x{next(_prefixes)}"
    configs = [
        _config(tmp_path, f"redis://127.0.0.1:{redis_port}/0", prefix),
        _config(tmp_path, "memory://", prefix),
    ]
    async with contextlib.AsyncExitStack() as stack:
        rxs = [
            await stack.enter_async_context(harness(c, k))
            for c, k in zip(configs, clocks, strict=True)
        ]
        for n, (wait, batch) in enumerate(_scenario(seed)):
            answers = []
            for rx in rxs:
                await rx.tick(wait)
                r = await rx.post(batch)
                await rx.tick(0)
                answers.append((r.status_code, r.json()))
            assert answers[0] == answers[1], (n, batch)
            seen = [await rxs[0].incidents(), await rxs[1].incidents()]
            assert seen[0] == seen[1], n
        for rx in rxs:
            await rx.tick(3600)
            await rx.tick(1)
        per = [{i: rx.sink.kinds(i) for _, i, _ in rx.sink.sent} for rx in rxs]
        assert per[0] == per[1]
        full = [[await rx.incident(i["id"]) for i in await rx.incidents()] for rx in rxs]
        assert full[0] == full[1]
