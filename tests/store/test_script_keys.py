"""Every store script touches only the keys it was given, as Redis Cluster requires.

A real redis-server's MONITOR shows each script call (EVALSHA with its KEYS) followed by
every command the script ran inside Redis; ``COMMAND GETKEYS`` says which arguments of each
are keys. A receiver's whole life runs meanwhile — batches (new, repeated, moved by a
reload, reopened), decisions, deliveries delivered, retried, buried and redriven, an empty
queue, feedback, a claim given back — so that every script in receiver/store/lua/ runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from receiver.errors import PermanentDeliveryError, RetryableDeliveryError
from receiver.store import StoreSettings, open_store
from receiver.store.redis import RedisStore
from receiver.store.scripts import script
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.harness import ScriptedSink, harness, write_config
from tests.support.processes import binary

pytestmark = pytest.mark.anyio

LUA = resources.files("receiver.store").joinpath("lua")
# As the store loads them: with the shared pieces each names in front (scripts.script).
SCRIPTS = {
    hashlib.sha1(script(name).encode()).hexdigest(): name
    for name in (f.name.removesuffix(".lua") for f in LUA.iterdir() if f.name.endswith(".lua"))
}
# One MONITOR line: time, [db client], then each argument in double quotes.
_LINE = re.compile(r"^[\d.]+ \[\d+ (?P<client>[^\]]+)\] (?P<args>.*)$")
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class ScriptRun:
    name: str
    declared: list[str]
    commands: list[list[str]] = field(default_factory=list)


@contextlib.contextmanager
def monitor(port: int, out: Path) -> Iterator[Path]:
    """Everything the server runs, written to ``out`` by redis-cli MONITOR until exit."""
    with out.open("wb") as sink:
        proc = subprocess.Popen([binary("redis-cli"), "-p", str(port), "monitor"], stdout=sink)
    try:
        # redis-cli subscribes, and later writes what it hears, in its own time: a marker
        # seen in the file says it listens, and at the end that it has written everything.
        _until_written(port, out, "monitor-listens")
        yield out
        _until_written(port, out, "monitor-wrote-all")
    finally:
        proc.terminate()
        proc.wait(10)


def _until_written(port: int, out: Path, marker: str) -> None:
    deadline = time.monotonic() + 20
    with SyncRedis(port=port) as r:
        while marker not in out.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"redis-cli monitor never wrote {marker}"
            r.echo(marker)
            time.sleep(0.05)


def runs(log: str) -> list[ScriptRun]:
    """The script calls in a MONITOR log, each with the commands it ran."""
    found: list[ScriptRun] = []
    for line in log.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        args = _ARG.findall(match["args"])
        if match["client"] == "lua":
            found[-1].commands.append(args)
        elif args and args[0].upper() in ("EVALSHA", "EVAL"):
            sha = (
                args[1]
                if args[0].upper() == "EVALSHA"
                else hashlib.sha1(args[1].encode()).hexdigest()
            )
            found.append(ScriptRun(SCRIPTS[sha], args[3 : 3 + int(args[2])]))
    return found


async def a_receivers_life(store: RedisStore, clock: FakeClock, tmp_path: Path) -> None:
    sink = ScriptedSink()
    config = write_config(tmp_path, "outbox: {max_attempts: 4, backoff_initial: 10s}\n")
    async with harness(config, clock, sinks={"log": sink}, store=store) as rx:
        payment = make_alert("payment-service", fingerprint="fp-payment")
        (incident,) = (await rx.post([payment])).json()["incidents"]
        await rx.post([payment])  # a repeat
        await rx.tick(30)  # open: decided, delivered
        sink.script = [RetryableDeliveryError("log", "x", "server", "HTTP 503", None)]
        sink.script.append(PermanentDeliveryError("log", "x", "client", "HTTP 400"))
        await rx.post([make_alert("cart-api", severity="warning")])
        await rx.tick(120)  # update: retried
        await rx.tick(30)  # and buried
        assert (await rx.client.post("/api/v1/deliveries/redrive", content=b"{}")).is_success
        await rx.tick(1)  # redriven, delivered
        # The same alert under another region: it stays with the incident that holds it.
        moved = {**payment, "labels": {**payment["labels"], "region": "us"}}
        assert (await rx.post([moved])).json()["incidents"] == [incident]
        feedback = b'{"useful": true}'
        r = await rx.client.post(f"/api/v1/incidents/{incident}/feedback", content=feedback)
        assert r.status_code == 201
        # A queue whose list is gone.
        await store._r.zadd(store._p + "ob:ready", {"ghost|log": 0})
        await rx.tick(1)
        await rx.post([resolved(payment), resolved(make_alert("cart-api"))])
        await rx.tick(600)  # resolved
        await rx.post([payment])  # reopened within reopen_window
        await rx.tick(30)
        await rx.post([make_alert("search-api")])
        (claim,) = await store.claim_due(clock.ms + 60_000, 30_000, 10)
        await store.release(claim, clock.ms + 1)
        (claim,) = await store.claim_due(clock.ms + 60_000, 30_000, 10)
        await store.release(claim, None)
        assert await store.take_slot("runs", "a", 1, 60_000, clock.ms)


async def test_every_script_touches_only_the_keys_it_was_given(
    redis_port: int, clock: FakeClock, tmp_path: Path
) -> None:
    store = open_store(
        f"redis://127.0.0.1:{redis_port}/0",
        StoreSettings(key_prefix="keys", events_retention_ms=86_400_000),
    )
    assert isinstance(store, RedisStore)
    with monitor(redis_port, tmp_path / "monitor.log") as log:
        await a_receivers_life(store, clock, tmp_path)
    await store.aclose()

    seen = runs(log.read_text())
    assert {r.name for r in seen} == set(SCRIPTS.values()), "a script never ran here"
    getkeys = Redis(port=redis_port, decode_responses=True)
    undeclared: dict[str, set[str]] = {}
    for run in seen:
        for command in run.commands:
            keys = await getkeys.command_getkeys(*command)
            stray = set(keys) - set(run.declared)
            if stray:
                undeclared.setdefault(run.name, set()).update(stray)
    await getkeys.aclose()
    assert undeclared == {}


def test_the_monitor_reader_sees_a_stray_key() -> None:
    """The check above reads MONITOR's format right: a key outside KEYS is caught."""
    sha = next(s for s, n in SCRIPTS.items() if n == "annotate")
    log = (
        f'1.0 [0 127.0.0.1:1] "EVALSHA" "{sha}" "1" "{{p}}:inc:a" "{{\\"x\\": 1}}"\n'
        '1.1 [0 lua] "HGET" "{p}:inc:a" "state"\n'
        '1.2 [0 lua] "HSET" "{p}:inc:b" "state" "{\\"y\\": \\"a b\\"}"\n'
    )
    (run,) = runs(log)
    assert (run.name, run.declared) == ("annotate", ["{p}:inc:a"])
    assert run.commands[1] == ["HSET", "{p}:inc:b", "state", '{\\"y\\": \\"a b\\"}']
