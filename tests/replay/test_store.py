"""``journey-receiver replay --store URL``: the replay on a real Redis, under a scratch key
prefix of its own that is gone when it ends — and nothing else in that Redis touched.

The storm of ``storm.py`` from a real Prometheus, replayed on the session's real
redis-server (a database of its own, holding keys of "someone else" that must survive:
a plain key with a TTL, a receiver's key, and one under another replay's prefix).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis import Redis
from redis import asyncio as redis_asyncio

from receiver.cli import main
from receiver.replay import replay_settings
from receiver.replay.batches import Route, plan
from receiver.replay.drive import drive
from receiver.replay.history import Firing
from receiver.replay.run import interruptible
from receiver.replay.scratch import SCRATCH_PREFIX, StoreError
from tests.replay.storm import STORM, T0, replay_argv
from tests.support.processes import free_port, redis_args, running, stop

DATA = Path(__file__).resolve().parent / "data"
DB = 7
THEIRS = {
    "theirs": "keep me",
    "{jr}:inc:checkout-1": "a receiver's incident",
    "{" + SCRATCH_PREFIX + "0123456789abcdef}:due": "another replay's",
}


@pytest.fixture
def redis_url(redis_port: int) -> str:
    return f"redis://127.0.0.1:{redis_port}/{DB}"


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A client on the test's database, holding someone else's keys before the test."""
    client = Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    for key, value in THEIRS.items():
        client.set(key, value, ex=3600 if key == "theirs" else None)
    yield client
    client.flushdb()
    client.close()


def untouched(redis: Redis) -> None:
    """Every key is someone else's, as it was."""
    assert sorted(redis.keys("*")) == sorted(THEIRS)
    for key, value in THEIRS.items():
        assert redis.get(key) == value
    assert 3500 < redis.ttl("theirs") <= 3600
    assert redis.ttl("{jr}:inc:checkout-1") == -1


def calls(redis: Redis, command: str) -> int:
    stats: dict[str, Any] = redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def as_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    result: dict[str, Any] = json.loads(out)
    return result


def test_on_redis_the_report_is_memorys_and_only_the_runs_own_keys_come_and_go(
    prometheus: str, redis: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    new, old = DATA / "journeys-new.yaml", DATA / "journeys-old.yaml"
    for extra, incidents in (([], 3), (["--journeys", str(new), "--against", str(old)], 4)):
        on_memory = as_json(capsys, replay_argv(prometheus, "--store", "memory://", *extra))
        # The default: a private redis-server, since the tests have one on PATH.
        on_default = as_json(capsys, replay_argv(prometheus, *extra))
        scripts, unlinks = calls(redis, "evalsha"), calls(redis, "unlink")
        on_redis = as_json(capsys, replay_argv(prometheus, "--store", redis_url, *extra))
        assert on_redis == on_default == on_memory
        assert on_redis["incidents"] == incidents
        # The scripts ran on this Redis; what they wrote is gone with the replay (with
        # --against, two replays, each its own prefix and its own cleanup).
        assert calls(redis, "evalsha") > scripts
        assert calls(redis, "unlink") >= unlinks + (2 if extra else 1)
        untouched(redis)


def test_without_redis_server_on_path_the_default_runs_embedded_and_says_so(
    prometheus: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_server = as_json(capsys, replay_argv(prometheus))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main([*replay_argv(prometheus), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == with_server
    assert err == (
        "journey-receiver replay: note: no redis-server on PATH, so the replay runs on the "
        "embedded store (memory://), about three times slower\n"
    )


def storm_firings() -> list[Firing]:
    from receiver.normalize import labels_fingerprint

    start = int(T0.timestamp() * 1000)
    found = []
    for alertname, service, region, severity, first, end in STORM:
        labels = {"alertname": alertname, "service": service, "env": "prod",
                  "region": region, "severity": severity}  # fmt: skip
        found.append(
            Firing(labels_fingerprint(labels), labels, start + first * 60_000, start + end * 60_000)
        )
    return found


@pytest.mark.anyio
async def test_an_interrupted_replay_leaves_no_key_and_wrote_none_outside_its_prefix(
    redis: Redis, redis_url: str
) -> None:
    watcher = redis_asyncio.Redis.from_url(redis_url, decode_responses=True)
    settings = replay_settings(DATA / "receiver.yaml", None)
    sent, until = storm_plan()
    seen: set[str] = set()
    interrupted = False

    async with anyio.create_task_group() as tg:

        async def replay() -> None:
            await drive(settings, sent.notifications, until, store_url=redis_url)

        async def interrupt() -> None:
            # Look at the keys between the replay's steps; interrupt it once it has an
            # incident (a replay that ended first would fail the test below).
            nonlocal interrupted
            while not any(":inc:" in k for k in seen - set(THEIRS)):
                seen.update(await watcher.keys("*"))
                await anyio.lowlevel.checkpoint()
            interrupted = True
            tg.cancel_scope.cancel()

        tg.start_soon(replay)
        tg.start_soon(interrupt)

    await watcher.aclose()
    assert interrupted
    mine = seen - set(THEIRS)
    prefixes = {key.partition("}")[0] + "}" for key in mine}
    assert len(prefixes) == 1
    (prefix,) = prefixes
    assert prefix.startswith("{" + SCRATCH_PREFIX) and len(prefix) == len(SCRATCH_PREFIX) + 18
    untouched(redis)


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["replay", "--prometheus", "http://127.0.0.1:9", *argv]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    return err


def test_a_bad_or_unreachable_store_is_refused_before_prometheus_is_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 9 would be a connection refused from Prometheus: the store is checked first.
    journeys = ["--journeys", str(DATA / "journeys-old.yaml")]
    err = refused(capsys, *journeys, "--store", "mongodb://127.0.0.1/x")
    assert err.startswith("journey-receiver replay: --store mongodb://127.0.0.1/x: unsupported")
    err = refused(capsys, *journeys, "--store", "redis+sentinel://h1:26379")
    assert err.startswith("journey-receiver replay: --store redis+sentinel://h1:26379: ")
    assert "master name" in err
    nobody = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    err = refused(capsys, *journeys, "--store", nobody)
    assert err.startswith(
        f"journey-receiver replay: --store redis://127.0.0.1:{nobody.rsplit(':', 1)[1]}: "
        "Redis does not answer: "
    )
    assert "hunter2" not in err


def storm_plan() -> tuple[Any, int]:
    route = Route(("alertname",), 10_000, 30_000, 4 * 3600 * 1000)
    until = int(T0.timestamp() * 1000) + 90 * 60_000
    return plan(storm_firings(), route, until), until


@pytest.mark.anyio
async def test_on_a_cluster_the_run_is_memorys_and_leaves_no_key(redis_cluster_url: str) -> None:
    # Every key of the run shares one hash tag (one slot); SCAN goes over every master.
    settings = replay_settings(DATA / "receiver.yaml", None)
    sent, until = storm_plan()
    on_memory = await drive(settings, sent.notifications, until)
    on_cluster = await drive(settings, sent.notifications, until, store_url=redis_cluster_url)
    assert on_cluster.sent == on_memory.sent and len(on_memory.sent) >= 4
    assert on_cluster.alerts == on_memory.alerts
    cluster = redis_asyncio.RedisCluster.from_url(
        "redis" + redis_cluster_url.removeprefix("redis+cluster"), decode_responses=True
    )
    try:
        left = [k async for k in cluster.scan_iter(match="{" + SCRATCH_PREFIX + "*")]
    finally:
        await cluster.aclose()
    assert left == []


@pytest.mark.anyio
async def test_a_redis_that_dies_mid_run_is_a_store_error_naming_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replay_settings(DATA / "receiver.yaml", None)
    sent, until = storm_plan()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    failed: list[BaseException] = []
    with running(redis_args(port, tmp_path), port, tmp_path / "redis.log") as server:
        watcher = redis_asyncio.Redis.from_url(url, decode_responses=True)

        async def kill_once_written() -> None:
            while not await watcher.keys("*:inc:*"):
                await anyio.lowlevel.checkpoint()
            await watcher.aclose()
            stop(server)

        async def replay() -> None:
            try:
                await drive(settings, sent.notifications, until, store_url=url)
            except StoreError as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_once_written)
            tg.start_soon(replay)
    assert [str(e).split(": ")[0] for e in failed] == [f"--store redis://127.0.0.1:{port}/0"]
    # Its keys died with the server here; on a Redis that stays down they would be left,
    # and the warning names them.
    assert "could not delete the scratch keys {journey-receiver-replay:" in caplog.text


@pytest.fixture
def ctrl_c_heard() -> Iterator[None]:
    """SIGINT as a terminal's replay has it, even when the tests run with it ignored (`&`)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("ctrl_c_heard")
def test_ctrl_c_stops_the_replay_and_its_keys_go_with_it(redis: Redis, redis_url: str) -> None:
    settings = replay_settings(DATA / "receiver.yaml", None)
    sent, until = storm_plan()
    finished = False

    async def replay_and_ctrl_c() -> None:
        nonlocal finished
        watcher = redis_asyncio.Redis.from_url(redis_url, decode_responses=True)

        async def ctrl_c() -> None:
            while not await watcher.keys("*:inc:*"):
                await anyio.lowlevel.checkpoint()
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, to this very process
            await anyio.sleep_forever()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ctrl_c)
                await drive(settings, sent.notifications, until, store_url=redis_url)
                finished = True
        finally:
            with anyio.CancelScope(shield=True):
                await watcher.aclose()

    with pytest.raises(KeyboardInterrupt):
        interruptible(replay_and_ctrl_c)
    assert not finished
    untouched(redis)
