"""The Slack sink with only the common bot scopes: it looks for an earlier post only when
one may have landed unheard, a lookup Slack refuses degrades to posting, and a channel
name's ID is listed once (200 a page) and shared through the store.

Through the real slack_sdk client against the fake Slack, which enforces the token's
scopes and ``conversations.list``'s limit; the outbox cases run the whole chain (outbox,
store, sink) on the fake clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from receiver.config import Owner, SlackSinkConfig
from receiver.errors import PermanentDeliveryError, RetryableDeliveryError
from receiver.incident import Incident
from receiver.metrics import Metrics
from receiver.sinks import Delivery, Receipt, Shared
from receiver.sinks.slack import CHANNELS, NOT_FOUND_TTL_MS, SlackSink
from receiver.store.cache import Cache, LocalCache, SharedCache
from receiver.store.redis import RedisStore
from tests.conftest import FakeClock, make_alert
from tests.support.fake_server import FakeServer, Fault, serve
from tests.support.fake_slack import DEFAULT_CHANNELS, SCOPES, TOKEN, Channel, FakeSlack
from tests.support.harness import Harness, RecordingSink, harness, write_config
from tests.support.incidents import CREATED_MS, make_incident

pytestmark = pytest.mark.anyio

POST = "/api/chat.postMessage"
LOOKUPS = "/api/conversations."
CHECKOUT = Owner(team="payments", slack_channel="#inc-checkout")
NOWHERE = Owner(team="payments", slack_channel="#nowhere")
DEGRADED = "journey_receiver_slack_lookup_degraded_total"
SLACK_LOGGER = "journey_receiver.sinks.slack"
# Channels enough for three pages of conversations.list, the journey's channel last.
CROWDED = (*(Channel(f"C1{i:07d}", f"other-{i}") for i in range(450)), *DEFAULT_CHANNELS)


def rate_limited() -> Fault:
    """Slack's 429, asking for longer than the outbox's backoff (10 s, up to 10 s jitter)."""
    return Fault(POST, status=429, retry_after="25", body={"ok": False, "error": "ratelimited"})


@dataclass
class Slack:
    fake: FakeSlack
    server: FakeServer
    metrics: Metrics = field(default_factory=Metrics)

    def sink(self, cache: Cache | None = None) -> SlackSink:
        config = SlackSinkConfig(
            token=SecretStr(TOKEN), base_url=f"{self.server.url}/api/", timeout=2
        )
        return SlackSink(config, "https://receiver.example", Shared(cache, self.metrics))

    def lookups(self) -> list[str]:
        """The lookup methods called, in order (refused calls too)."""
        return [s.path.removeprefix("/api/") for s in self.server.requests(LOOKUPS)]

    def degraded(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(DEGRADED, {"reason": reason})
        return value or 0.0


@contextlib.contextmanager
def slack_with(
    scopes: Iterable[str] = SCOPES,
    channels: Iterable[Channel] = DEFAULT_CHANNELS,
    clock: FakeClock | None = None,
) -> Iterator[Slack]:
    # By default just after the incident opened: a lookup searches from created_at on.
    fake = FakeSlack(
        scopes=scopes, channels=channels, clock=clock or (lambda: CREATED_MS / 1000 + 40)
    )
    with serve(fake.app, FakeServer()) as server:
        yield Slack(fake, server)


def job(owner: Owner = CHECKOUT, *, attempt: int = 1, ambiguous: bool = False) -> Delivery:
    """The incident's open, as the outbox hands it over."""
    return Delivery("open", "job-1", owner, attempt=attempt, previous_error_ambiguous=ambiguous)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == SLACK_LOGGER and r.levelno == logging.WARNING
    ]


# -- through the outbox ------------------------------------------------------------------

OUTBOX = "outbox: {max_attempts: 4, backoff_initial: 10s, backoff_max: 60s, lease: 30s}\n"


@contextlib.asynccontextmanager
async def receiver_with(tmp_path: Path, clock: FakeClock, slack: Slack) -> AsyncIterator[Harness]:
    sinks = {"slack": {"token": TOKEN, "base_url": f"{slack.server.url}/api/", "timeout": "2s"}}
    routing = {"slack": ["P1", "P2", "P3", "P4", "P5"]}
    # JSON is YAML.
    text = f"{OUTBOX}routing: {json.dumps(routing)}\nsinks: {json.dumps(sinks)}\n"
    config = write_config(tmp_path, text)
    async with harness(config, clock, sinks={"slack": slack.sink()}) as rx:
        yield rx


async def open_incident(rx: Harness) -> str:
    r = await rx.post([make_alert("payment-service", alertname="Errors")])
    (incident_id,) = r.json()["incidents"]
    rx.clock.advance(30)  # group_wait
    return str(incident_id)


async def test_a_rate_limited_post_with_only_chat_write_is_posted_once_without_lookups(
    tmp_path: Path, clock: FakeClock
) -> None:
    with slack_with(scopes={"chat:write"}, clock=clock) as slack:
        slack.server.inject(rate_limited())
        async with receiver_with(tmp_path, clock, slack) as rx:
            incident_id = await open_incident(rx)
            await rx.tick()
            assert slack.fake.messages("#inc-checkout") == []
            await rx.tick(24)
            assert slack.fake.messages("#inc-checkout") == []  # Retry-After is not over
            await rx.tick(1)
            sinks = (await rx.incident(incident_id))["sinks"]

    [message] = slack.fake.messages("#inc-checkout")
    assert sinks["slack"] == {"state": "open", "channel": "C0CHECKOUT", "ts": message.ts}
    assert len(slack.server.requests(POST)) == 2
    # A 429 proves nothing was posted: no history, no listing, no missing_scope.
    assert slack.lookups() == []


async def test_a_dropped_answer_is_looked_for_and_found_not_posted_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    with slack_with(clock=clock) as slack:
        slack.server.inject(Fault(POST, drop=True, applied=True))
        async with receiver_with(tmp_path, clock, slack) as rx:
            incident_id = await open_incident(rx)
            await rx.tick()
            assert len(slack.fake.messages("#inc-checkout")) == 1  # landed, unheard
            await rx.tick(20)  # backoff
            sinks = (await rx.incident(incident_id))["sinks"]

    [message] = slack.fake.messages("#inc-checkout")
    assert sinks["slack"] == {"state": "open", "channel": "C0CHECKOUT", "ts": message.ts}
    assert len(slack.server.requests(POST)) == 1
    assert slack.lookups() == ["conversations.list", "conversations.history"]
    assert len(slack.fake.edits(message.ts)) == 1


@pytest.mark.parametrize(
    "body",
    [{"error": "upstream"}, {"ok": False, "error": "internal_error"}],
    ids=["gateway", "internal_error"],
)
async def test_a_post_slack_kept_before_failing_is_looked_for_and_not_posted_again(
    tmp_path: Path, clock: FakeClock, body: dict[str, object]
) -> None:
    with slack_with(clock=clock) as slack:
        # The message is recorded, then the answer is a 503 (a gateway, or Slack itself).
        slack.server.inject(Fault(POST, status=503, body=body, applied=True))
        async with receiver_with(tmp_path, clock, slack) as rx:
            incident_id = await open_incident(rx)
            await rx.tick()
            assert len(slack.fake.messages("#inc-checkout")) == 1  # landed, refused
            await rx.tick(20)  # backoff
            sinks = (await rx.incident(incident_id))["sinks"]

    [message] = slack.fake.messages("#inc-checkout")
    assert sinks["slack"] == {"state": "open", "channel": "C0CHECKOUT", "ts": message.ts}
    assert len(slack.server.requests(POST)) == 1
    assert slack.lookups() == ["conversations.list", "conversations.history"]
    assert len(slack.fake.edits(message.ts)) == 1


async def test_after_a_buried_open_whose_post_landed_the_next_job_finds_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    with slack_with(clock=clock) as slack:
        # Attempt 1: the post lands, its answer is lost; attempts 2 to 4: the lookup that
        # would find it is rate limited (asking for less than the backoff: the backoff is
        # waited). The open is buried.
        slack.server.inject(Fault(POST, drop=True, applied=True))
        slack.server.inject(
            Fault("/api/conversations.", status=429, retry_after="3",
                  body={"ok": False, "error": "ratelimited"}, times=3)
        )  # fmt: skip
        async with receiver_with(tmp_path, clock, slack) as rx:
            incident_id = await open_incident(rx)
            for _ in range(10):  # attempts 10-20 s, 20-30 s and 40-50 s apart
                await rx.tick(15)
            assert (await rx.incident(incident_id))["sinks"]["slack"] == {"state": "failed"}
            assert len(await rx.receiver.outbox.dead_letters(10)) == 1
            assert len(slack.fake.messages("#inc-checkout")) == 1  # it landed all the same
            # The next job of that incident looks before it posts.
            await rx.post([make_alert("cart-api", alertname="CartErrors")])
            await rx.tick(120)
            await rx.tick(15)
            (message,) = slack.fake.messages("#inc-checkout")
            assert (await rx.incident(incident_id))["sinks"]["slack"]["ts"] == message.ts


async def test_an_update_that_is_slacks_first_news_is_posted_without_lookups(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    routing = "routing: {log: [P1, P2, P3, P4, P5]%s}\n"
    with slack_with(scopes={"chat:write"}, clock=clock) as slack:
        configured = {"token": TOKEN, "base_url": f"{slack.server.url}/api/", "timeout": "2s"}
        text = f"{OUTBOX}sinks: {json.dumps({'slack': configured})}\n"
        chosen = {"log": RecordingSink(), "slack": slack.sink()}
        async with harness(write_config(tmp_path, text + routing % ""), clock, sinks=chosen) as rx:
            incident_id = await open_incident(rx)
            await rx.tick()
            # Routed to Slack while open, as when its priority rises into Slack's routing:
            # Slack's first job is an update, its receipt only {"state": "pending"}.
            write_config(tmp_path, text + routing % ", slack: [P1, P2, P3, P4, P5]")
            rx.receiver.reload()
            await rx.post([make_alert("cart-api", alertname="CartErrors")])
            await rx.tick(120)  # group_interval
            sinks = (await rx.incident(incident_id))["sinks"]

    [message] = slack.fake.messages("#inc-checkout")
    assert sinks["slack"] == {"state": "open", "channel": "C0CHECKOUT", "ts": message.ts}
    # Nothing was lost, so nothing is looked for: no refused lookup, no warning.
    assert len(slack.server.requests(POST)) == 1
    assert slack.lookups() == []
    assert warnings(caplog) == []
    assert slack.degraded("missing_scope") == 0


@pytest.mark.parametrize(
    ("path", "ambiguous"),
    [
        # The lookup itself was refused: the earlier post may still be there.
        ("/api/conversations.history", True),
        # The lookup found nothing, then the post was refused: nothing is there.
        (POST, False),
    ],
)
async def test_a_doubt_lasts_until_a_lookup_settles_it(path: str, ambiguous: bool) -> None:
    with slack_with() as slack:
        slack.server.inject(Fault(path, status=429, retry_after="3"))
        with pytest.raises(RetryableDeliveryError) as caught:
            await slack.sink().deliver(make_incident(), job(attempt=2, ambiguous=True), None)

    assert caught.value.reason == "rate_limited"
    assert caught.value.ambiguous is ambiguous


# -- what the outbox tells a sink about the previous attempt ------------------------------


@dataclass
class FlakySink:
    """Fails as scripted (an exception, or None to succeed) and keeps every Delivery."""

    name: str = "log"
    coalesces_updates: bool = False
    script: list[Exception | None] = field(default_factory=list)
    seen: list[Delivery] = field(default_factory=list)

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        self.seen.append(delivery)
        failure = self.script.pop(0) if self.script else None
        if failure is not None:
            raise failure
        return Receipt(sink=self.name, state=incident.status)

    async def aclose(self) -> None:
        return None

    def told(self) -> list[tuple[int, bool]]:
        return [(d.attempt, d.previous_error_ambiguous) for d in self.seen]


def failed(*, ambiguous: bool) -> RetryableDeliveryError:
    return RetryableDeliveryError("log", "x", "server", "down", ambiguous=ambiguous)


@pytest.mark.parametrize(
    ("failure", "told"),
    [
        (failed(ambiguous=False), False),
        (failed(ambiguous=True), True),
        (TimeoutError(), True),  # the outbox's own bound: the request may still land
        (RuntimeError("bug"), True),
    ],
)
async def test_the_next_attempt_is_told_whether_the_last_one_may_have_landed(
    tmp_path: Path, clock: FakeClock, failure: Exception, told: bool
) -> None:
    sink = FlakySink(script=[failure])
    async with harness(write_config(tmp_path, OUTBOX), clock, sinks={"log": sink}) as rx:
        await open_incident(rx)
        await rx.tick()
        await rx.tick(20)

    assert sink.told() == [(1, False), (2, told)]


async def test_an_attempt_that_never_finished_is_ambiguous_whatever_was_recorded_before(
    tmp_path: Path, clock: FakeClock
) -> None:
    sink = FlakySink(script=[failed(ambiguous=False)])
    async with harness(write_config(tmp_path, OUTBOX), clock, sinks={"log": sink}) as rx:
        await open_incident(rx)
        await rx.tick()
        rx.clock.advance(20)
        # Attempt 2 goes to a replica that dies mid-send: attempt 1's answer is still the
        # last error recorded, and says nothing about attempt 2.
        (held,) = await rx.receiver.store.deliveries.claim(rx.clock.ms, 30_000, 10, "gone")
        assert held.attempt == 2
        await rx.tick(30)

    assert sink.told() == [(1, False), (3, True)]


# -- lookups Slack refuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "owner", "needed"),
    [
        # By name: listing needs channels:read.
        ({"chat:write"}, CHECKOUT, "channels:read"),
        # By ID: no listing; the history needs channels:history.
        ({"chat:write"}, Owner(team="payments", slack_channel="C0CHECKOUT"), "channels:history"),
    ],
)
async def test_a_lookup_refused_for_a_scope_posts_with_a_warning_and_the_metric(
    caplog: pytest.LogCaptureFixture, scopes: set[str], owner: Owner, needed: str
) -> None:
    with slack_with(scopes=scopes) as slack:
        receipt = await slack.sink().deliver(
            make_incident(), job(owner=owner, ambiguous=True), None
        )

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt.refs == {"channel": "C0CHECKOUT", "ts": message.ts}
    [warning] = warnings(caplog)
    assert f"lacks {needed}" in warning
    assert slack.degraded("missing_scope") == 1


async def test_a_bot_outside_the_channel_posts_with_chat_write_public_without_looking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scopes = {"chat:write", "chat:write.public", "channels:history"}
    owner = Owner(team="payments", slack_channel="C0OUTSIDE")
    with slack_with(scopes=scopes) as slack:
        await slack.sink().deliver(make_incident(), job(owner=owner, ambiguous=True), None)

    assert len(slack.fake.messages("C0OUTSIDE")) == 1
    [warning] = warnings(caplog)
    assert "not a member of C0OUTSIDE" in warning
    assert slack.degraded("not_in_channel") == 1


async def test_without_groups_read_public_channels_are_still_listed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scopes = {"chat:write", "channels:read", "channels:history"}
    with slack_with(scopes=scopes) as slack:
        sink = slack.sink()
        # An earlier attempt's post landed unheard; the retry must find it.
        slack.server.inject(Fault(POST, drop=True, applied=True))
        with pytest.raises(RetryableDeliveryError):
            await sink.deliver(make_incident(), job(), None)
        receipt = await sink.deliver(make_incident(), job(attempt=2, ambiguous=True), None)
        listed = [c["types"] for c in slack.fake.calls("conversations.list")]

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt.refs == {"channel": "C0CHECKOUT", "ts": message.ts}
    assert listed == ["public_channel,private_channel", "public_channel"]
    assert warnings(caplog) == []
    assert slack.degraded("missing_scope") == 0


async def test_a_private_channel_unlisted_for_lack_of_groups_read_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    private = Channel("G0PRIVATE", "inc-private", is_private=True)
    scopes = {"chat:write", "channels:read", "channels:history"}
    owner = Owner(team="payments", slack_channel="#inc-private")
    with slack_with(scopes=scopes, channels=[*DEFAULT_CHANNELS, private]) as slack:
        await slack.sink().deliver(make_incident(), job(owner=owner, ambiguous=True), None)

    assert len(slack.fake.messages("#inc-private")) == 1
    [warning] = warnings(caplog)
    assert "lacks groups:read" in warning
    assert slack.degraded("missing_scope") == 1


# -- channel IDs in the shared cache -----------------------------------------------------


async def test_a_channel_name_is_listed_once_for_every_sink_sharing_the_store(
    store: RedisStore,
) -> None:
    with slack_with(channels=CROWDED) as slack:
        first, second = slack.sink(store.cache), slack.sink(store.cache)
        await first.deliver(make_incident(id="inc-1"), job(ambiguous=True), None)
        await second.deliver(make_incident(id="inc-2"), job(ambiguous=True), None)
        listed = slack.fake.calls("conversations.list")

    assert len(slack.fake.messages("#inc-checkout")) == 2
    # Three pages of 200 for the first sink, none for the second.
    assert [(c["limit"], c.get("cursor")) for c in listed] == [
        ("200", None),
        ("200", "200"),
        ("200", "400"),
    ]
    assert slack.lookups().count("conversations.history") == 2
    assert await store.cache.get(CHANNELS, "inc-checkout") == "C0CHECKOUT"


async def test_a_posts_answer_tells_every_replica_the_channel_id(store: RedisStore) -> None:
    with slack_with() as slack:
        await slack.sink(store.cache).deliver(make_incident(id="inc-1"), job(), None)
        # Another replica, after an attempt that may have landed: no listing needed.
        await slack.sink(store.cache).deliver(make_incident(id="inc-2"), job(ambiguous=True), None)

    assert slack.lookups() == ["conversations.history"]


async def test_a_name_not_found_is_not_listed_again_within_its_ttl(clock: FakeClock) -> None:
    cache = LocalCache(clock)
    with slack_with(channels=CROWDED) as slack:
        sink = slack.sink(cache)

        async def attempt() -> None:
            with pytest.raises(PermanentDeliveryError, match="channel_not_found"):
                await sink.deliver(make_incident(), job(owner=NOWHERE, ambiguous=True), None)

        await attempt()
        assert len(slack.fake.calls("conversations.list")) == 3  # every page, once
        clock.advance(NOT_FOUND_TTL_MS / 1000 - 1)
        await attempt()
        assert len(slack.fake.calls("conversations.list")) == 3
        clock.advance(1)
        await attempt()
        assert len(slack.fake.calls("conversations.list")) == 6


async def test_a_name_not_found_is_remembered_in_the_store_for_ten_minutes(
    store: RedisStore,
) -> None:
    with slack_with() as slack:
        for sink in (slack.sink(store.cache), slack.sink(store.cache)):
            with pytest.raises(PermanentDeliveryError, match="channel_not_found"):
                await sink.deliver(make_incident(), job(owner=NOWHERE, ambiguous=True), None)

    assert len(slack.fake.calls("conversations.list")) == 1
    assert await store.cache.get(CHANNELS, "nowhere") == ""


async def test_shared_cache_keys_live_under_the_hash_tag_and_expire(redis_port: int) -> None:
    client = Redis(port=redis_port, decode_responses=True)
    try:
        cache = SharedCache(client, "{cache-test}:")
        await cache.set("ns", "field", "value", 600_000)

        assert await cache.get("ns", "field") == "value"
        assert await cache.get("ns", "other") is None
        assert cache.key("ns", "field").startswith("{cache-test}:")
        assert 590_000 < await client.pttl(cache.key("ns", "field")) <= 600_000
        await client.delete(cache.key("ns", "field"))
    finally:
        await client.aclose()


async def test_local_cache_forgets_at_the_ttl(clock: FakeClock) -> None:
    cache = LocalCache(clock)
    await cache.set("ns", "a", "1", 1000)
    clock.advance(0.999)
    assert await cache.get("ns", "a") == "1"
    clock.advance(0.001)
    assert await cache.get("ns", "a") is None
