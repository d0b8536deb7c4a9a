"""Pull feeds of change events, against respx routes that answer as the real APIs do."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from starlette.types import Receive, Scope, Send

from receiver.config import load_receiver_config
from receiver.config.feeds import GrafanaFeedConfig, JsonFeedConfig
from receiver.enrich import EnrichmentError
from receiver.enrich.changes import gather
from receiver.enrich.feed_registry import build_feeds
from receiver.enrich.feeds import Feed, FeedEvent, FeedEvents, source_of
from receiver.enrich.http_feed import READS_AT_ONCE
from receiver.enrich.json_feed import JsonFeed
from receiver.errors import ConfigError
from receiver.events import ChangeEvent
from tests.support.fake_server import FakeServer, serve
from tests.support.prometheus import fake_http, self_signed_cert

pytestmark = pytest.mark.anyio

START = datetime(2026, 4, 18, 7, 43, 20, tzinfo=UTC)
END = START + timedelta(minutes=40)
START_MS = 1_776_498_200_000
END_MS = START_MS + 40 * 60_000
TOKEN = "glsa_s3cr3t-T0KEN"  # a fake, asserted absent from every note
DEPLOYS_URL = "https://deploys.test/api/changes"
GRAFANA_URL = "https://grafana.test/grafana/api/annotations"

JSON_FEED = JsonFeedConfig(
    type="json",
    name="deploys",
    url=DEPLOYS_URL,
    headers={"Authorization": f"Bearer {TOKEN}"},  # type: ignore[dict-item]
)
GRAFANA_FEED = GrafanaFeedConfig(
    type="grafana",
    name="grafana",
    url="https://grafana.test/grafana/",
    token=TOKEN,  # type: ignore[arg-type]
    tags=["change", "prod"],
)


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def deploy(minutes: float, **fields: Any) -> dict[str, Any]:
    item = {"type": "deploy", "service": "payment-service", "at": at(minutes)}
    return {**item, **fields}


def annotation(ident: int, minutes: float, tags: list[str], text: str = "") -> dict[str, Any]:
    """An annotation as ``GET /api/annotations`` returns it (Grafana HTTP API docs)."""
    time = START_MS + int(minutes * 60_000)
    return {
        "id": ident,
        "alertId": 0,
        "dashboardUID": "",
        "panelId": 0,
        "userId": 1,
        "newState": "",
        "time": time,
        "timeEnd": time,
        "text": text,
        "tags": tags,
        "data": {},
    }


@pytest.fixture
async def feeds() -> AsyncIterator[list[Feed]]:
    built = build_feeds([JSON_FEED, GRAFANA_FEED], backoff=0)
    yield built
    for feed in built:
        await feed.aclose()


def no_secret(notes: Iterable[str]) -> list[str]:
    notes = list(notes)
    assert all(TOKEN not in note and "s3cr3t" not in note for note in notes)
    return notes


async def test_json_feed_reads_the_window_and_skips_malformed_items(
    respx_mock: respx.MockRouter, feeds: list[Feed]
) -> None:
    route = respx_mock.get(DEPLOYS_URL).respond(
        json=[
            deploy(10, id=42, version="2026.04.18-3", extra="ignored"),
            deploy(-5, id="too-early"),
            {"type": "deploy", "at": at(12)},  # no service
            "not an object",
            deploy(15, summary="  rolled\n out  "),
        ]
    )

    found = await feeds[0].events(START, END)

    request = route.calls.last.request
    assert request.url.params["since"] == "2026-04-18T07:43:20.000Z"
    assert request.url.params["until"] == "2026-04-18T08:23:20.000Z"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert isinstance(found, FeedEvents)
    assert found.notes == ("2 malformed items skipped",)
    first, second = found
    assert (first.id, first.version, source_of(first)) == ("42", "2026.04.18-3", "deploys")
    assert first.at == START + timedelta(minutes=10)
    assert second.summary == "rolled out"
    assert len(second.id) == 32  # derived from the item, stable across fetches
    assert [e.id for e in await feeds[0].events(START, END)] == ["42", second.id]


async def test_json_feed_finds_the_list_at_a_dotted_path(respx_mock: respx.MockRouter) -> None:
    config = JSON_FEED.model_copy(update={"items": "data.changes", "url": DEPLOYS_URL + "?env=p"})
    [feed] = build_feeds([config])
    route = respx_mock.get(DEPLOYS_URL).respond(json={"data": {"changes": [deploy(1, id="a")]}})

    [event] = await feed.events(START, END)
    await feed.aclose()

    assert event.id == "a"
    assert route.calls.last.request.url.params["env"] == "p"


async def test_json_feed_500_is_retried_then_a_note(
    respx_mock: respx.MockRouter, feeds: list[Feed]
) -> None:
    route = respx_mock.get(DEPLOYS_URL).respond(500)

    events, notes = await gather([], feeds[:1], START, END)

    assert events == []
    assert no_secret(notes) == ["context unavailable: deploys: HTTP 500 after 3 attempts"]
    assert route.call_count == 3


async def test_json_feed_recovers_when_a_retry_succeeds(
    respx_mock: respx.MockRouter, feeds: list[Feed]
) -> None:
    route = respx_mock.get(DEPLOYS_URL)
    route.side_effect = [
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=[deploy(1, id="a")]),
    ]

    events, notes = await gather([], feeds[:1], START, END)

    assert [e.id for e in events] == ["a"]
    assert notes == []
    assert route.call_count == 3


async def test_json_feed_that_cannot_connect(
    respx_mock: respx.MockRouter, feeds: list[Feed]
) -> None:
    route = respx_mock.get(DEPLOYS_URL).mock(side_effect=httpx.ConnectError("refused"))

    _, notes = await gather([], feeds[:1], START, END)

    assert no_secret(notes) == ["context unavailable: deploys: cannot connect (3 attempts)"]
    assert route.call_count == 3


async def test_a_slow_feed_is_cut_at_its_timeout(respx_mock: respx.MockRouter) -> None:
    [feed] = build_feeds([JSON_FEED.model_copy(update={"timeout": 0.05})])

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        return httpx.Response(200, json=[])

    respx_mock.get(DEPLOYS_URL).mock(side_effect=hang)

    with anyio.fail_after(5):
        _, notes = await gather([], [feed], START, END)
    await feed.aclose()

    assert no_secret(notes) == ["context unavailable: deploys: timed out after 0.05s"]


@pytest.mark.parametrize(
    ("items", "body", "reason"),
    [
        ("", b"<html>502 Bad Gateway</html>", "response is not JSON"),
        ("", b'{"changes": []}', "expected a list at the top level, got an object"),
        ("data.changes", b'{"data": {}}', 'no "data.changes" in the response'),
        ("data.changes", b'{"data": []}', 'expected an object with "data.changes", got a list'),
        ("data", b'{"data": {"changes": []}}', 'expected a list at "data", got an object'),
    ],
)
async def test_json_feed_malformed_response(
    respx_mock: respx.MockRouter, items: str, body: bytes, reason: str
) -> None:
    [feed] = build_feeds([JSON_FEED.model_copy(update={"items": items})])
    route = respx_mock.get(DEPLOYS_URL).respond(200, content=body)

    _, notes = await gather([], [feed], START, END)
    await feed.aclose()

    assert no_secret(notes) == [f"context unavailable: deploys: {reason}"]
    assert route.call_count == 1


async def test_grafana_annotations_become_change_events(
    respx_mock: respx.MockRouter, feeds: list[Feed]
) -> None:
    route = respx_mock.get(GRAFANA_URL).respond(
        json=[
            annotation(
                1124,
                28,
                [
                    "change",
                    "prod",
                    "service:payment-service",
                    "type:deploy",
                    "version:2026.04.18-3",
                    "env:prod",
                    "region:eu",
                ],
                "Deploy <b>2026.04.18-3</b>\n by CI ",
            ),
            annotation(1123, 20, ["change", "prod", "release notes"], "no service tag"),
            annotation(1122, 15, ["change", "prod", "service:cart", "service:payment-service"]),
            annotation(1121, -10, ["change", "prod", "service:cart"]),  # before the window
            {"id": 1120, "tags": ["service:cart"]},  # no time
        ]
    )

    found = await feeds[1].events(START, END)

    params = route.calls.last.request.url.params
    assert params.get_list("tags") == ["change", "prod"]
    assert (params["from"], params["to"]) == (str(START_MS), str(END_MS))
    assert (params["type"], params["matchAny"], params["limit"]) == ("annotation", "false", "500")
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert isinstance(found, FeedEvents)
    assert found.notes == ("1 malformed annotation skipped",)
    # env: and region: tags scope the event; without them it applies everywhere.
    assert [(e.id, e.type, e.service, e.version, e.environment, e.region) for e in found] == [
        ("1124", "deploy", "payment-service", "2026.04.18-3", "prod", "eu"),
        ("1122:cart", "annotation", "cart", None, None, None),
        ("1122:payment-service", "annotation", "payment-service", None, None, None),
    ]
    assert found[0].summary == "Deploy <b>2026.04.18-3</b> by CI"
    assert found[0].at == START + timedelta(minutes=28)
    assert {source_of(e) for e in found} == {"grafana"}


async def test_grafana_at_its_limit_says_older_annotations_may_be_missing(
    respx_mock: respx.MockRouter,
) -> None:
    [feed] = build_feeds([GRAFANA_FEED.model_copy(update={"limit": 2})])
    respx_mock.get(GRAFANA_URL).respond(
        json=[annotation(2, 5, ["service:cart"]), annotation(1, 4, ["service:cart"])]
    )

    events, notes = await gather([], [feed], START, END)
    await feed.aclose()

    assert len(events) == 2
    assert notes == [
        "context incomplete: grafana: 2 annotations, the limit: older ones may be missing"
    ]


async def test_grafana_401_is_not_retried(
    respx_mock: respx.MockRouter, feeds: list[Feed], caplog: pytest.LogCaptureFixture
) -> None:
    route = respx_mock.get(GRAFANA_URL).respond(
        401, json={"message": "invalid API key", "token": TOKEN}
    )

    _, notes = await gather([], feeds[1:], START, END)

    assert no_secret(notes) == ["context unavailable: grafana: HTTP 401: check the credentials"]
    assert route.call_count == 1
    assert no_secret([caplog.text]) == [caplog.text]
    assert "HTTP 401" in caplog.text


async def test_grafana_answering_an_object_is_a_malformed_response(
    respx_mock: respx.MockRouter, feeds: list[Feed]
) -> None:
    respx_mock.get(GRAFANA_URL).respond(json={"message": "Unauthorized"})

    _, notes = await gather([], feeds[1:], START, END)

    assert notes == ["context unavailable: grafana: expected a list of annotations, got an object"]


async def test_one_failing_source_never_hides_the_others(
    respx_mock: respx.MockRouter, feeds: list[Feed]
) -> None:
    stored = ChangeEvent(type="config", service="cart", at=START + timedelta(minutes=3), id="s1")
    respx_mock.get(DEPLOYS_URL).respond(json=[deploy(5, id="d1"), deploy(2, id="s1")])
    respx_mock.get(GRAFANA_URL).mock(side_effect=httpx.ConnectError("refused"))

    events, notes = await gather([stored], feeds, START, END)

    assert [(source_of(e), e.id) for e in events] == [
        ("deploys", "s1"),  # same id, other source: another event
        ("api", "s1"),
        ("deploys", "d1"),
    ]
    assert no_secret(notes) == ["context unavailable: grafana: cannot connect (3 attempts)"]


async def test_events_are_unique_by_source_and_id(
    respx_mock: respx.MockRouter, feeds: list[Feed]
) -> None:
    stored = ChangeEvent(type="deploy", service="cart", at=START, id="x")
    respx_mock.get(DEPLOYS_URL).respond(json=[deploy(5, id="d1"), deploy(5, id="d1")])

    events, _ = await gather([stored, stored], feeds[:1], START, END)

    assert [(source_of(e), e.id) for e in events] == [("api", "x"), ("deploys", "d1")]


@pytest.mark.parametrize("raised", [KeyError, TimeoutError])  # a timeout of its own, too
async def test_a_feed_that_raises_something_unexpected_is_a_note(
    caplog: pytest.LogCaptureFixture, raised: type[Exception]
) -> None:
    class Broken:
        name = "broken"

        async def events(self, start: datetime, end: datetime) -> list[ChangeEvent]:
            raise raised(TOKEN)

        async def aclose(self) -> None:
            pass

    class Plain:
        name = "plain"

        async def events(self, start: datetime, end: datetime) -> list[ChangeEvent]:
            return [FeedEvent(type="scale", service="cart", at=start, id="p", source=self.name)]

        async def aclose(self) -> None:
            pass

    events, notes = await gather([], [Broken(), Plain()], START, END)

    assert [e.id for e in events] == ["p"]
    assert no_secret(notes) == [f"context unavailable: broken: {raised.__name__}"]
    assert no_secret([caplog.text]) == [caplog.text]


async def test_a_private_ca_bundle_is_used(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    answer = b'[{"id": "e1", "type": "deploy", "service": "cart", "at": "2026-04-18T08:00:00Z"}]'
    with fake_http(200, answer, tls=(cert, key)) as fake:
        trusting = JSON_FEED.model_copy(update={"url": fake.url, "ca_file": cert})
        [feed] = build_feeds([trusting], backoff=0)
        assert [e.id for e in await feed.events(START, END)] == ["e1"]
        await feed.aclose()
        # Without the private CA the certificate is refused, and said so.
        [plain] = build_feeds([JSON_FEED.model_copy(update={"url": fake.url})], backoff=0)
        with pytest.raises(EnrichmentError):
            await plain.events(START, END)
        await plain.aclose()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "receiver.yaml"
    path.write_text(text + "server: {auth: {allow_open: true}}\n")
    (tmp_path / "journeys.yaml").write_text("journeys: []\n")
    return path


def test_feeds_load_from_receiver_yaml(tmp_path: Path) -> None:
    (tmp_path / "grafana-token").write_text(TOKEN + "\n")
    path = write(
        tmp_path,
        "events:\n"
        "  lookback: 30m\n"
        "  feeds:\n"
        "    - type: json\n"
        "      name: deploys\n"
        f"      url: {DEPLOYS_URL}\n"
        "      headers: {Authorization: Bearer abc}\n"
        "      items: data.changes\n"
        "      timeout: 500ms\n"
        "    - type: grafana\n"
        "      name: grafana\n"
        "      url: https://grafana.test\n"
        "      token_file: grafana-token\n"
        "      tags: [change]\n",
    )

    feeds = load_receiver_config(path).events.feeds

    json_feed, grafana = feeds
    assert isinstance(json_feed, JsonFeedConfig)
    assert (json_feed.items, json_feed.timeout) == ("data.changes", 0.5)
    assert json_feed.headers["Authorization"].get_secret_value() == "Bearer abc"
    assert isinstance(grafana, GrafanaFeedConfig)
    assert grafana.token is not None
    assert grafana.token.get_secret_value() == TOKEN
    assert (grafana.tags, grafana.service_tag_prefix, grafana.timeout) == (
        ["change"],
        "service:",
        2,
    )
    assert TOKEN not in repr(grafana)


def test_feed_config_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "events:\n"
        "  feeds:\n"
        "    - type: jsn\n"
        "      name: deploys\n"
        "    - type: grafana\n"
        "      name: grafana\n"
        "      url: ftp://grafana.test\n"
        f"      token: {json.dumps(TOKEN)}\n"
        "      colour: red\n"
        "    - name: nameless\n"
        "    - type: json\n"
        "      name: api\n"
        f"      url: {DEPLOYS_URL}\n",
    )

    with pytest.raises(ConfigError) as info:
        load_receiver_config(path)

    assert str(info.value).splitlines() == [
        f'{path}:3: events.feeds[0].type: expected "json" or "grafana", got "jsn"',
        f"{path}:7: events.feeds[1].url: expected an http:// or https:// URL",
        f"{path}:9: events.feeds[1].colour: unknown field",
        f"{path}:10: events.feeds[2].type: is required",
    ]
    assert TOKEN not in str(info.value)


def test_feed_names_are_unique_and_not_api(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "events:\n"
        "  feeds:\n"
        f"    - {{type: json, name: deploys, url: {DEPLOYS_URL}}}\n"
        "    - {type: grafana, name: deploys, url: https://grafana.test}\n"
        f"    - {{type: json, name: api, url: {DEPLOYS_URL}}}\n",
    )

    with pytest.raises(ConfigError) as info:
        load_receiver_config(path)

    assert str(info.value).splitlines() == [
        f'{path}:4: events.feeds[1].name: duplicate feed name "deploys" (first at line 3)',
        f'{path}:5: events.feeds[2].name: "api" is reserved for /api/v1/events',
    ]


def test_a_secret_that_is_not_a_string_is_not_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "events:\n"
        "  feeds:\n"
        "    - type: grafana\n"
        "      name: grafana\n"
        "      url: https://grafana.test\n"
        "      token: 987654321\n",
    )

    with pytest.raises(ConfigError) as info:
        load_receiver_config(path)

    assert str(info.value) == f"{path}:6: events.feeds[0].token: expected a string"


async def test_a_feed_answering_its_whole_history_keeps_to_the_budget() -> None:
    # A deploy log that ignores since/until (the feed re-applies the window for such
    # endpoints) and answers years of history: 300,000 items, all outside the window.
    # Reading them is off the event loop, so the budget (0.5 s) cuts it short with a note
    # (it took seconds on the loop, where no deadline could interrupt it).
    items = [
        {"type": "deploy", "service": f"svc-{i % 500}", "version": f"v{i}",
         "at": "2025-01-01T00:00:00Z"}
        for i in range(300_000)
    ]  # fmt: skip
    start = datetime(2026, 4, 18, 7, 40, tzinfo=UTC)
    config = {"type": "json", "name": "deploys", "timeout": "10s"}
    with fake_http(200, json.dumps(items).encode()) as fake:
        feed = JsonFeed(JsonFeedConfig.model_validate({**config, "url": fake.url}))
        try:
            began = time.monotonic()
            events, notes = await gather([], [feed], start, start + timedelta(minutes=40), 0.5)
            took = time.monotonic() - began
        finally:
            await feed.aclose()
    assert events == []
    # A deadline, not a benchmark: generous for a loaded 2-core machine.
    assert took < 1.5, (took, notes)


@pytest.mark.parametrize(
    "shape",
    ["declared", "streamed", "inflated"],
    ids=["content-length", "chunked", "gzip-bomb"],
)
async def test_an_answer_past_max_body_bytes_is_a_note_read_no_further(shape: str) -> None:
    # 300,000 deploys in the window (~32 MB), said up front (Content-Length), streamed in
    # chunks with no length, or gzipped into less than the limit: each is cut at the
    # feed's limit (1 MB here) instead of being held and parsed whole.
    item = json.dumps(deploy(1, version="2026.04.18-3")).encode()
    whole = b"[" + b",".join([item] * 300_000) + b"]"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body, headers = whole, [(b"content-type", b"application/json")]
        if shape == "declared":
            headers.append((b"content-length", str(len(whole)).encode()))
        elif shape == "inflated":
            body = gzip.compress(whole)
            assert len(body) < 1_000_000 < len(whole)
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for at in range(0, len(body), 65_536):  # no length given: sent chunked
            more = at + 65_536 < len(body)
            await send({"type": "http.response.body", "body": body[at : at + 65_536],
                        "more_body": more})  # fmt: skip

    with serve(app, FakeServer()) as fake:
        config = {"type": "json", "name": "deploys", "url": fake.url}
        feed = JsonFeed(JsonFeedConfig.model_validate({**config, "max_body_bytes": 1_000_000}))
        try:
            events, notes = await gather([], [feed], START, END)
        finally:
            await feed.aclose()

    assert events == []
    assert no_secret(notes) == [
        "context unavailable: deploys: answer larger than 1000000 bytes (max_body_bytes)"
    ]


async def test_an_answer_within_max_body_bytes_is_read() -> None:
    answer = json.dumps([deploy(1, id="a")]).encode()
    with fake_http(200, answer) as fake:
        config = {"type": "json", "name": "deploys", "url": fake.url}
        feed = JsonFeed(JsonFeedConfig.model_validate({**config, "max_body_bytes": len(answer)}))
        try:
            assert [e.id for e in await feed.events(START, END)] == ["a"]
        finally:
            await feed.aclose()


async def test_reads_given_up_at_the_budget_stay_within_their_places() -> None:
    # A read given up at the budget goes on in its worker thread until it ends: at most
    # READS_AT_ONCE of them per feed, then a look is told so at once instead of adding one.
    feed = JsonFeed(
        JsonFeedConfig.model_validate(
            {"type": "json", "name": "deploys", "url": "http://127.0.0.1:9", "timeout": "1s"}
        )
    )
    done = threading.Event()
    try:
        for _ in range(READS_AT_ONCE):
            with anyio.move_on_after(0.05):
                await feed.off_loop(done.wait)
        with pytest.raises(EnrichmentError, match="earlier reads of its answers have not ended"):
            await feed.off_loop(lambda: 1)
        done.set()
        with anyio.fail_after(5):
            while True:  # the given-up reads end, and their places are free again
                try:
                    assert await feed.off_loop(lambda: 1) == 1
                    break
                except EnrichmentError:
                    await anyio.sleep(0.01)
    finally:
        done.set()
        await feed.aclose()
