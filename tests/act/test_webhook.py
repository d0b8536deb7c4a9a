"""The webhook executor against a fake deploy system that checks signatures and keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from receiver.act import RunRequest, RunResult
from receiver.act.webhook import WebhookExecutor, sign
from receiver.config.actions import WebhookRun
from receiver.errors import PermanentDeliveryError, RetryableDeliveryError
from tests.support.fake_deploy import SECRET, FakeDeploy, serve_deploy
from tests.support.fake_server import Fault

pytestmark = pytest.mark.anyio

TOKEN = "deploy-api-TOKEN-7373"
VALUES = {
    "service": "payment-service",
    "previous_version": "v41",
    "incident_id": "inc-1",
    "region": "eu",
}
BODY: dict[str, Any] = {
    "service": "{service}",
    "to_version": "{previous_version}",
    "reason": "journey-receiver incident {incident_id} in {region}",
    "dry_run": False,
}


@pytest.fixture
def deploy() -> Iterator[FakeDeploy]:
    with serve_deploy() as fake:
        yield fake


def config(deploy: FakeDeploy, **overrides: Any) -> WebhookRun:
    section: dict[str, Any] = {
        "url": deploy.url,
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "body": BODY,
        "secret": SECRET,
        "timeout": "2s",
    }
    return WebhookRun.model_validate({**section, **overrides})


def request(key: str = "inc-1:rollback", **values: str) -> RunRequest:
    return RunRequest("rollback", "inc-1", key, {**VALUES, **values})


async def run_once(run: WebhookRun, req: RunRequest | None = None) -> RunResult:
    executor = WebhookExecutor(run)
    try:
        with anyio.fail_after(10):
            return await executor.run(req or request())
    finally:
        await executor.aclose()


async def test_a_run_is_signed_keyed_and_acted_on(deploy: FakeDeploy) -> None:
    result = await run_once(config(deploy))

    assert result.status == 202
    assert json.loads(result.text) == {"status": "rolled back", "run": 1}
    [call] = deploy.calls
    assert call.method == "POST"
    assert call.headers["idempotency-key"] == "inc-1:rollback"
    assert call.headers["x-journey-receiver-signature"] == sign(SECRET.encode(), call.body)
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.headers["content-type"] == "application/json"
    assert [e.body for e in deploy.effects] == [
        {
            "service": "payment-service",
            "to_version": "v41",
            "reason": "journey-receiver incident inc-1 in eu",
            "dry_run": False,
        }
    ]


async def test_a_wrong_secret_is_refused_by_the_fake_and_permanent(deploy: FakeDeploy) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await run_once(config(deploy, secret="not-the-shared-secret"))

    assert caught.value.reason == "auth"
    assert deploy.effects == []


async def test_the_same_key_twice_acts_once(deploy: FakeDeploy) -> None:
    first = await run_once(config(deploy))
    second = await run_once(config(deploy))

    assert second == first
    assert len(deploy.calls) == 2
    assert len(deploy.effects) == 1


async def test_a_503_is_retryable_and_may_have_acted(deploy: FakeDeploy) -> None:
    deploy.fail(503)

    with pytest.raises(RetryableDeliveryError) as caught:
        await run_once(config(deploy))

    assert caught.value.reason == "server"
    assert caught.value.ambiguous
    assert caught.value.sink == "action:rollback"
    assert caught.value.incident_id == "inc-1"


async def test_a_429_is_retryable_after_its_retry_after(deploy: FakeDeploy) -> None:
    deploy.fail(429, retry_after="7")

    with pytest.raises(RetryableDeliveryError) as caught:
        await run_once(config(deploy))

    assert caught.value.reason == "rate_limited"
    assert caught.value.retry_after == 7
    assert not caught.value.ambiguous


async def test_a_409_is_retryable_and_may_be_under_way(deploy: FakeDeploy) -> None:
    # The Idempotency-Key draft's answer to a retry that comes while the first request
    # with the key is still being processed: the run may be acting there.
    deploy.fail(409)

    with pytest.raises(RetryableDeliveryError) as caught:
        await run_once(config(deploy))

    assert caught.value.ambiguous
    assert "HTTP 409" in str(caught.value)


async def test_a_400_is_permanent(deploy: FakeDeploy) -> None:
    deploy.fail(400)

    with pytest.raises(PermanentDeliveryError) as caught:
        await run_once(config(deploy))

    assert caught.value.reason == "client"
    assert "HTTP 400" in str(caught.value)


async def test_no_answer_in_time_is_retryable_and_ambiguous_and_the_retry_acts_once(
    deploy: FakeDeploy,
) -> None:
    deploy.slow(1.0, applied=True)  # acts, then answers too late

    with pytest.raises(RetryableDeliveryError) as caught:
        await run_once(config(deploy, timeout="200ms"))

    assert caught.value.reason == "timeout"
    assert caught.value.ambiguous
    assert "no answer within 0.2s" in str(caught.value)
    await run_once(config(deploy))
    assert len(deploy.effects) == 1


async def test_no_connection_is_retryable_and_not_ambiguous(deploy: FakeDeploy) -> None:
    closed = config(deploy, url="http://127.0.0.1:9/rollback")

    with pytest.raises(RetryableDeliveryError) as caught:
        await run_once(closed)

    assert not caught.value.ambiguous


async def test_secrets_never_reach_error_text(deploy: FakeDeploy) -> None:
    echo = f"echo Bearer {TOKEN} {SECRET} url-QUERY-SECRET"
    deploy.server.inject(Fault("/rollback", status=400, body={"error": echo}))

    with pytest.raises(PermanentDeliveryError) as caught:
        await run_once(config(deploy, url=deploy.url + "?token=url-QUERY-SECRET"))

    text = str(caught.value)
    assert TOKEN not in text and SECRET not in text and "url-QUERY-SECRET" not in text
    assert "<redacted>" in text


async def test_a_hostile_label_stays_data_inside_the_json_body(deploy: FakeDeploy) -> None:
    hostile = 'eu", "to_version": "v1", "x": "\\u0000}'

    await run_once(config(deploy), request(region=hostile))

    [effect] = deploy.effects
    assert effect.body["to_version"] == "v41"
    assert effect.body["reason"] == f"journey-receiver incident inc-1 in {hostile}"
    assert set(effect.body) == set(BODY)


async def test_a_string_body_is_sent_as_text_with_literal_braces(deploy: FakeDeploy) -> None:
    await run_once(config(deploy, body="roll {service} back to {previous_version} {{now}}"))

    [effect] = deploy.effects
    assert effect.body == "roll payment-service back to v41 {now}"
    assert deploy.calls[0].headers["content-type"] == "text/plain; charset=utf-8"


async def test_a_value_the_incident_lacks_is_permanent_and_nothing_is_sent(
    deploy: FakeDeploy,
) -> None:
    body = {"service": "{service}", "cluster": "{cluster}", "zone": "{zone}"}

    with pytest.raises(PermanentDeliveryError) as caught:
        await run_once(config(deploy, body=body))

    assert "{cluster}, {zone}" in str(caught.value)
    assert deploy.calls == []


async def test_url_and_header_fields_are_filled_and_a_label_stays_in_its_segment(
    deploy: FakeDeploy,
) -> None:
    url = deploy.url + "/{service}?region={region}&why=incident%20{incident_id}"
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Service": "{service}"}

    await run_once(config(deploy, url=url, headers=headers), request(service="../admin?x=1#y"))

    [call] = deploy.calls
    assert call.target == "/rollback/..%2Fadmin%3Fx%3D1%23y?region=eu&why=incident%20inc-1"
    assert call.headers["x-service"] == "../admin?x=1#y"
    assert len(deploy.effects) == 1


async def test_a_line_break_from_a_label_in_a_header_fails_and_nothing_is_sent(
    deploy: FakeDeploy,
) -> None:
    headers = {"X-Service": "{service}"}

    with pytest.raises(PermanentDeliveryError, match="X-Service would carry a line break"):
        await run_once(config(deploy, headers=headers), request(service="a\r\nX-Evil: 1"))

    assert deploy.calls == []


@pytest.mark.parametrize(
    ("region", "carried"),
    [("são-paulo", "a character that is not ASCII"), ("eu\x0bwest", "a control character")],
    ids=["not-ascii", "vertical-tab"],
)
async def test_a_label_a_header_cannot_carry_fails_the_run_at_once_and_sends_nothing(
    deploy: FakeDeploy, region: str, carried: str
) -> None:
    """Not ASCII, or a control character other than a line break: permanent, as a line
    break is, not an error of the HTTP client (taken for "it may have run", and retried)."""
    headers = {"X-Reason": "incident in {region}"}

    with pytest.raises(PermanentDeliveryError, match=f"X-Reason would carry {carried}"):
        await run_once(config(deploy, headers=headers), request(region=region))

    assert deploy.calls == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "http://{region}.deploy.example/rollback"}, "not in the host"),
        ({"headers": {"X-Token": "ab}cd"}}, "X-Token: stray '}' at character 2"),
        ({"body": {"a": "{service"}}, "stray '{' at character 0"),
        ({"body": "{service.__class__}"}, "fields are plain names"),
        ({"headers": {"idempotency-key": "x"}}, "idempotency-key is set by the receiver"),
        ({"secret": ""}, "is empty"),
        ({"url": "ftp://deploy"}, "expected an http:// or https:// URL"),
    ],
)
def test_config_errors(deploy: FakeDeploy, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match="1 validation error") as caught:
        config(deploy, **overrides)

    assert message in str(caught.value)
