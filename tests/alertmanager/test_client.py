"""The Alertmanager API v2 client against the real ``prometheus-alertmanager``.

One Alertmanager serves the module, with a route tree (a ``severity="page"`` child route
under the root) whose webhooks go to a local capture server, so that the ``groupKey``s
parsed here are the ones Alertmanager really sends. Each test uses its own alertname, so
the tests share the Alertmanager without seeing each other's alerts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from receiver.alertmanager.client import (
    AlertmanagerClient,
    AlertmanagerRefused,
    AlertmanagerUnavailable,
    AmAlert,
    Matcher,
    parse_group_key,
)
from receiver.config.alertmanager import AlertmanagerConfig
from receiver.matchers import parse_matcher
from tests.support import alertmanager as am
from tests.support.fake_server import FakeServer, Fault, serve
from tests.support.processes import free_port

pytestmark = pytest.mark.anyio
T = TypeVar("T")

# A quote, a comma, a colon, braces and a backslash: everything a filter or a groupKey
# must escape or must not take for structure.
QUIRK = 'say "hi", then: {go} \\ back'
# And what only Go's strconv.Quote (the groupKey's group labels) escapes: \n, \t, \x1b.
CONTROL = "line one\nline\ttwo \x1b[0m café"
PAGE_ROUTE_KEY = '{}/{severity="page",team=~"pay|ship"}'


async def answer_ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def answering(body: bytes) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture(scope="module")
def hooks() -> Iterator[FakeServer]:
    """Where Alertmanager sends its webhooks: records them, answers 200."""
    with serve(answer_ok, FakeServer()) as fake:
        yield fake


@pytest.fixture(scope="module")
def alertmanager(
    tmp_path_factory: pytest.TempPathFactory, hooks: FakeServer
) -> Iterator[am.Alertmanager]:
    workdir = tmp_path_factory.mktemp("alertmanager")
    timers = {"group_wait": "100ms", "group_interval": "1s", "repeat_interval": "1h"}
    config = {
        "route": {
            "receiver": "hook",
            "group_by": ["alertname"],
            **timers,
            "routes": [
                {
                    "receiver": "pager",
                    "matchers": ['team=~"pay|ship"', 'severity="page"'],
                    "group_by": ["alertname", "quirk", "region"],
                }
            ],
        },
        "receivers": [
            {"name": name, "webhook_configs": [{"url": f"{hooks.url}/{name}", "max_alerts": 0}]}
            for name in ("hook", "pager")
        ],
    }
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with am.alertmanager(path, workdir) as process:
        yield process


def client(*urls: str, timeout: float = 2.0) -> AlertmanagerClient:
    return AlertmanagerClient(AlertmanagerConfig(urls=list(urls), timeout=timeout))


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def unique_name() -> str:
    return f"Test{uuid.uuid4().hex[:12]}"


def post(alertmanager: am.Alertmanager, *label_sets: Mapping[str, str]) -> datetime:
    started = datetime.now(UTC).replace(microsecond=0)
    alertmanager.post_alerts([am.alert(labels, starts_at=started) for labels in label_sets])
    return started


async def eventually(
    fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, what: str, within: float = 10
) -> T:
    """``await fetch()`` until ``done`` holds for its value, for at most ``within`` seconds."""
    value: T | None = None
    with anyio.move_on_after(within):
        while True:
            value = await fetch()
            if done(value):
                return value
            await anyio.sleep(0.05)
    raise AssertionError(f"{what}: not reached within {within}s; last seen:\n{value!r}")


def instances(alerts: list[AmAlert]) -> list[str]:
    return sorted(alert.labels["instance"] for alert in alerts)


async def test_alerts_filtered_by_matchers(alertmanager: am.Alertmanager) -> None:
    name = unique_name()
    started = post(
        alertmanager,
        {"alertname": name, "quirk": QUIRK, "instance": "a"},
        {"alertname": name, "quirk": QUIRK, "instance": "b"},
        {"alertname": name, "quirk": "plain", "instance": "c"},
    )
    async with client(alertmanager.url) as am_client:
        quirky = await am_client.alerts([Matcher("alertname", name), Matcher("quirk", QUIRK)])
        regex = await am_client.alerts(
            [Matcher("alertname", name), Matcher("instance", "a|c", is_regex=True)]
        )
        not_quirky = await am_client.alerts(
            [Matcher("alertname", name), Matcher.of(parse_matcher(f"quirk!={json.dumps(QUIRK)}"))]
        )
    assert instances(quirky) == ["a", "b"]
    assert instances(regex) == ["a", "c"]
    assert instances(not_quirky) == ["c"]
    alert = next(a for a in quirky if a.labels["instance"] == "a")
    assert dict(alert.labels) == {"alertname": name, "quirk": QUIRK, "instance": "a"}
    assert dict(alert.annotations) == {"summary": f"{name} firing"}
    assert alert.starts_at == started
    assert alert.ends_at == started + am.FAR_FUTURE
    assert alert.generator_url == "http://prometheus.test/graph"
    assert alert.state == "active"
    assert (alert.silenced_by, alert.inhibited_by) == ((), ())
    assert alert.receivers == ("hook",)
    assert len(alert.fingerprint) == 16


async def test_group_alerts_of_a_route_group(alertmanager: am.Alertmanager) -> None:
    name = unique_name()
    page = {"alertname": name, "severity": "page", "team": "pay", "region": "eu", "quirk": QUIRK}
    post(
        alertmanager,
        {**page, "instance": "p1"},
        {**page, "instance": "p2"},
        {"alertname": name, "severity": "warning", "region": "eu", "instance": "w1"},
    )
    page_group = {"alertname": name, "quirk": QUIRK, "region": "eu"}
    async with client(alertmanager.url) as am_client:
        paged = await eventually(
            lambda: am_client.group_alerts(page_group, "pager"),
            lambda found: len(found) == 2,
            what="the page route's group with both alerts",
        )
        # The root route's group {alertname}: the page alerts carry that alertname too,
        # but they went to the child route.
        root = await am_client.group_alerts({"alertname": name})
        # No group has exactly these labels: every alert that carries them.
        no_group = await am_client.group_alerts({"alertname": name, "region": "eu"})
        other_receiver = await am_client.group_alerts(page_group, "hook")
    assert instances(paged) == ["p1", "p2"]
    assert all(alert.receivers == ("pager",) for alert in paged)
    assert instances(root) == ["w1"]
    assert instances(no_group) == ["p1", "p2", "w1"]
    assert other_receiver == []


async def test_webhook_group_keys_parse_to_their_group_labels(
    alertmanager: am.Alertmanager, hooks: FakeServer
) -> None:
    name = unique_name()
    page = {"alertname": name, "severity": "page", "team": "ship", "region": "us"}
    post(
        alertmanager,
        {**page, "quirk": QUIRK, "instance": "p1"},
        {**page, "quirk": CONTROL, "instance": "p2"},
        {"alertname": name, "severity": "warning", "instance": "w1"},
    )

    async def ours() -> list[dict[str, Any]]:
        bodies = [json.loads(seen.body) for seen in hooks.requests()]
        return [b for b in bodies if b["groupLabels"].get("alertname") == name]

    messages = await eventually(ours, lambda found: len(found) == 3, what="three webhooks")
    keys = {m["groupKey"]: m["groupLabels"] for m in messages}
    assert len(keys) == 3
    for key, labels in keys.items():
        assert parse_group_key(key) == labels, key
    assert {(m["receiver"], m["groupKey"].rpartition("}:{")[0] + "}") for m in messages} == {
        ("pager", PAGE_ROUTE_KEY),
        ("hook", "{}"),
    }
    # The groupKey as Alertmanager 0.25 wrote it, escapes and all.
    assert f'{PAGE_ROUTE_KEY}:{{alertname="{name}", quirk={json.dumps(QUIRK)}, region="us"}}' in (
        keys
    )
    assert any(r"\x1b[0m café" in key and r"line one\nline\ttwo" in key for key in keys)


async def test_a_silence_suppresses_the_alert(alertmanager: am.Alertmanager) -> None:
    name = unique_name()
    post(alertmanager, {"alertname": name, "quirk": QUIRK, "instance": "a"})
    matchers = [Matcher("alertname", name), Matcher("quirk", QUIRK)]
    now = datetime.now(UTC)
    async with client(alertmanager.url) as am_client:
        silence = await am_client.create_silence(
            matchers, now, now + timedelta(hours=1), "journey-receiver", "incident abc: 1h"
        )
        [alert] = await eventually(
            lambda: am_client.alerts(matchers),
            lambda found: [a.state for a in found] == ["suppressed"],
            what="the alert suppressed",
        )
        hidden = await am_client.alerts(matchers, silenced=False)
        with pytest.raises(AlertmanagerRefused) as refused:
            await am_client.create_silence(matchers, now - timedelta(hours=2), now, "me", "past")
    assert alert.silenced_by == (silence,)
    assert alert.inhibited_by == ()
    assert hidden == []
    assert refused.value.status == 400
    assert "end time can't be in the past" in str(refused.value)


async def test_status(alertmanager: am.Alertmanager) -> None:
    async with client(alertmanager.url) as am_client:
        status = await am_client.status()
    assert status["versionInfo"]["version"].startswith("0.")
    assert status["cluster"]["status"] == "disabled"
    assert "route:" in status["config"]["original"]


async def test_a_peer_that_is_down_is_passed_over(alertmanager: am.Alertmanager) -> None:
    name = unique_name()
    post(alertmanager, {"alertname": name})
    async with client(closed_port_url(), alertmanager.url) as am_client:
        found = await am_client.alerts([Matcher("alertname", name)])
    assert [alert.labels["alertname"] for alert in found] == [name]


async def test_the_peer_that_answered_is_asked_first(alertmanager: am.Alertmanager) -> None:
    with serve(answer_ok, FakeServer()) as failing:
        failing.inject(Fault(status=503, times=100))
        async with client(failing.url, alertmanager.url) as am_client:
            await am_client.status()
            await am_client.status()
        assert len(failing.requests()) == 1


App = Callable[[Scope, Receive, Send], Awaitable[None]]


def by_path(answers: Mapping[str, bytes | None]) -> App:
    """An Alertmanager stand-in answering each API path with its body (None: 503)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = answers[scope["path"].removeprefix("/api/v2")]
        status = 503 if body is None else 200
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body or b""})

    return app


async def test_what_a_peer_holds_comes_with_that_peers_own_status(
    alertmanager: am.Alertmanager,
) -> None:
    # Up for years, but failing on /alerts: its uptime must not vouch for the list of the
    # peer asked next (here the real Alertmanager, started with this module).
    veteran = by_path({"/status": b'{"uptime": "2020-01-01T00:00:00Z"}', "/alerts": None})
    with serve(veteran, FakeServer()) as failing:
        async with client(failing.url, alertmanager.url) as am_client:
            _, status = await am_client.held_with_status()
    assert "versionInfo" in status
    assert status["uptime"] != "2020-01-01T00:00:00Z"


async def test_a_peer_that_lists_its_alerts_but_not_its_status_is_no_answer(
    alertmanager: am.Alertmanager,
) -> None:
    mute = by_path({"/alerts": b"[]", "/status": None})
    with serve(mute, FakeServer()) as fake:
        async with client(fake.url, alertmanager.url) as am_client:
            with pytest.raises(AlertmanagerUnavailable, match="not /status"):
                await am_client.held_with_status()


async def test_a_peer_that_is_too_slow_is_passed_over(alertmanager: am.Alertmanager) -> None:
    with serve(answer_ok, FakeServer()) as slow:
        slow.inject(Fault(delay=1.0))
        async with client(slow.url, alertmanager.url, timeout=0.3) as am_client:
            with anyio.fail_after(0.9):
                status = await am_client.status()
    assert "versionInfo" in status


async def test_credentials_and_headers_are_sent() -> None:
    status = b'{"versionInfo": {"version": "fake"}}'
    with serve(answering(status), FakeServer()) as fake:
        bearer = {"bearer_token": "t0ken", "headers": {"X-Scope-OrgID": "tenant-1"}}
        basic = {"basic_auth": {"username": "am", "password": "pw"}}
        for extra in (bearer, basic):
            config = AlertmanagerConfig.model_validate({"urls": [fake.url + "/am/"], **extra})
            async with AlertmanagerClient(config) as am_client:
                assert await am_client.status() == {"versionInfo": {"version": "fake"}}
        first, second = fake.requests()
    assert first.path == second.path == "/am/api/v2/status"
    assert first.headers["authorization"] == "Bearer t0ken"
    assert first.headers["x-scope-orgid"] == "tenant-1"
    assert second.headers["authorization"] == "Basic YW06cHc="  # am:pw


async def test_no_peer_answers() -> None:
    down = [closed_port_url(), closed_port_url().replace("//", "//user:s3cret@")]
    async with client(*down) as am_client:
        with pytest.raises(AlertmanagerUnavailable) as caught:
            await am_client.alerts([Matcher("alertname", "X")])
    message = str(caught.value)
    shown = down[1].replace("user:s3cret@", "")
    assert message == (
        f"no Alertmanager answered GET /api/v2/alerts: {down[0]}: cannot connect; "
        f"{shown}: cannot connect"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>login</html>", "answer is not JSON"),
        (b'{"alerts": []}', "unexpected answer: (body): Input should be a valid list"),
        (
            b'[{"fingerprint": "f", "labels": {}, "annotations": {}, "receivers": [],'
            b' "startsAt": "2026-04-18T08:10:00Z", "endsAt": "2026-04-18T09:10:00Z",'
            b' "updatedAt": "2026-04-18T08:10:00Z"}]',
            "unexpected answer: [0].status: missing",
        ),
    ],
)
async def test_an_answer_that_is_not_the_api_is_unavailable(
    alertmanager: am.Alertmanager, body: bytes, reason: str
) -> None:
    with serve(answering(body), FakeServer()) as odd:
        async with client(odd.url) as am_client:
            with pytest.raises(AlertmanagerUnavailable) as caught:
                await am_client.alerts([])
        assert (
            str(caught.value) == f"no Alertmanager answered GET /api/v2/alerts: {odd.url}: {reason}"
        )
        # Another peer that answers properly is asked next.
        async with client(odd.url, alertmanager.url) as am_client:
            assert isinstance(await am_client.alerts([Matcher("alertname", "none")]), list)


@pytest.mark.parametrize(
    ("key", "labels"),
    [
        # Route keys from Alertmanager's dispatch/route_test.go, with group label sets.
        ('{}/{owner="team-A"}:{}', {}),
        (
            '{}/{level!="critical",owner="team-A"}/{baz!~".*quux",env="testing"}'
            ':{alertname="X", region="eu"}',
            {"alertname": "X", "region": "eu"},
        ),
        ('{}/{owner=~"^(?:team-(B|C))$"}:{role="db"}', {"role": "db"}),
        # A ':' and braces in a route matcher, and in a value.
        ('{}/{instance="a:9100",x="}{"}:{instance="a:9100"}', {"instance": "a:9100"}),
        # Go escapes: octal, \u and \U.
        (r'{}:{a="\101\u00e9\U0001F600"}', {"a": "Aé😀"}),
    ],
)
def test_parse_group_key(key: str, labels: dict[str, str]) -> None:
    assert parse_group_key(key) == labels


@pytest.mark.parametrize(
    "key",
    [
        "",
        "{}",
        "garbage",
        '{}:{a="1"',
        '{}:{a="1"}trailing',
        '{}:{a="1",b="2"}',
        '{}:{a="1", a="2"}',
        "{}:{a=1}",
        r'{}:{a="\q"}',
        r'{}:{a="\400"}',
        r'{}:{a="\x4"}',
        '{}/{x="unclosed}:{a="1"}',
    ],
)
def test_parse_group_key_gives_nothing_for_what_it_cannot_read(key: str) -> None:
    assert parse_group_key(key) == {}


@given(st.text())
def test_parse_group_key_never_raises(key: str) -> None:
    assert isinstance(parse_group_key(key), dict)


def test_matcher_filter_escapes_as_alertmanager_parses() -> None:
    assert Matcher("msg", 'a "b", c\\d\ne').filter() == r'msg="a \"b\", c\\d\ne"'
    assert Matcher("job", "api|web", is_regex=True, is_equal=False).filter() == 'job!~"api|web"'
    assert Matcher("k8s.pod", "x").filter() == '"k8s.pod"="x"'
    assert Matcher.of(parse_matcher('env!="prod"')) == Matcher("env", "prod", False, False)


def test_config_one_credential() -> None:
    with pytest.raises(ValueError, match="set bearer_token or basic_auth, not both"):
        AlertmanagerConfig.model_validate(
            {
                "urls": ["http://am:9093"],
                "bearer_token": "t",
                "basic_auth": {"username": "u", "password": "p"},
            }
        )
    with pytest.raises(ValueError, match="urls"):
        AlertmanagerConfig.model_validate({"urls": []})
    with pytest.raises(ValueError, match=r"headers\.authorization: set the Authorization header"):
        AlertmanagerConfig.model_validate(
            {"urls": ["http://am:9093"], "bearer_token": "t", "headers": {"authorization": "x"}}
        )
    with pytest.raises(ValueError, match=r"urls.1: the same peer twice \(first at urls.0\)"):
        AlertmanagerConfig.model_validate({"urls": ["http://am:9093", "http://am:9093/"]})
    config = AlertmanagerConfig.model_validate({"urls": ["http://am:9093"]})
    assert (config.timeout, config.reconcile_interval) == (5.0, 60.0)
