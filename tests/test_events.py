from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from receiver.errors import PayloadError
from receiver.events import MAX_EVENTS_PER_REQUEST, ChangeEvent, parse_events
from receiver.feedback import MAX_FEEDBACK_TEXT, Feedback, parse_feedback

NOW = datetime(2026, 4, 18, 10, 0, tzinfo=UTC)
DEPLOY = {"type": "deploy", "service": "payment-service", "version": "2026.04.18-3"}


def events(body: object) -> list[ChangeEvent]:
    return parse_events(json.dumps(body).encode(), NOW)


def refused(body: object | bytes) -> PayloadError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(PayloadError) as info:
        parse_events(raw, NOW)
    return info.value


def test_one_object_gives_one_event_with_defaults() -> None:
    [event] = events({"type": "deploy", "service": "payment-service"})

    assert event.type == "deploy"
    assert event.service == "payment-service"
    assert event.at == NOW
    assert re.fullmatch(r"[0-9a-f]{32}", event.id)
    assert event.labels == {}
    assert (event.version, event.environment, event.region) == (None, None, None)
    assert (event.summary, event.url, event.author) == (None, None, None)


def test_a_number_is_not_a_time() -> None:
    # Found by tests/test_fuzz_api.py: 0 was taken as 1970 and a larger number as seconds or
    # milliseconds by its size; a guess, like a naive time.
    error = refused({**DEPLOY, "at": 1776506400})

    assert error.status == 422
    assert error.errors == [
        {"field": "at", "reason": "Input should be an RFC 3339 timestamp string, not a number"}
    ]


def test_the_published_schema_says_at_may_be_left_out() -> None:
    # It defaults to now (above); receiver/openapi.json is made from this schema.
    assert ChangeEvent.model_json_schema()["required"] == ["type", "service"]


def test_every_event_gets_its_own_id() -> None:
    first, second = events([DEPLOY, DEPLOY])

    assert first.id != second.id


def test_a_list_keeps_its_order_and_all_fields() -> None:
    full = {
        "id": "deploy-4711",
        "type": "Feature_Flag",
        "service": "cart",
        "at": "2026-04-18T11:58:00+02:00",
        "version": "v2",
        "environment": "prod",
        "region": "eu-west-1",
        "summary": "new-checkout flag to 50%",
        "url": "https://flags.example.com/new-checkout",
        "author": "jane",
        "labels": {"team": "payments"},
    }

    first, second = events([DEPLOY, full])

    assert first.service == "payment-service"
    assert second == ChangeEvent(
        id="deploy-4711",
        type="feature_flag",
        service="cart",
        at=datetime(2026, 4, 18, 9, 58, tzinfo=UTC),
        version="v2",
        environment="prod",
        region="eu-west-1",
        summary="new-checkout flag to 50%",
        url="https://flags.example.com/new-checkout",
        author="jane",
        labels={"team": "payments"},
    )


def test_at_is_converted_to_utc() -> None:
    [event] = events({**DEPLOY, "at": "2026-04-18T03:00:00.123456789-07:00"})

    assert event.at == datetime(2026, 4, 18, 10, 0, 0, 123456, tzinfo=UTC)
    assert event.at.tzinfo is UTC


def test_naive_at_is_refused() -> None:
    error = refused({**DEPLOY, "at": "2026-04-18T10:00:00"})

    assert error.status == 422
    wanted = "expected an RFC 3339 timestamp, such as 2026-04-18T08:13:00Z"
    assert error.errors == [{"field": "at", "reason": f"Input should have timezone info: {wanted}"}]
    # A word for a time says what is wanted too, not only what is wrong.
    (said,) = refused({**DEPLOY, "at": "yesterday"}).errors
    assert said == {
        "field": "at",
        "reason": f"Input should be a valid datetime or date, input is too short: {wanted}",
    }


def test_type_is_trimmed_and_lowercased_and_must_not_be_empty() -> None:
    assert events({**DEPLOY, "type": " Rollback "})[0].type == "rollback"

    error = refused({**DEPLOY, "type": "  "})

    assert error.errors == [{"field": "type", "reason": "String should have at least 1 character"}]


def test_service_is_required_and_must_be_text() -> None:
    error = refused([DEPLOY, {"type": "deploy"}, {"type": "deploy", "service": 5}])

    assert error.errors == [
        {"field": "[1].service", "reason": "Field required"},
        {"field": "[2].service", "reason": "Input should be a valid string"},
    ]
    assert error.message == "[1].service: Field required (and 1 more; 2 listed)"


def test_label_values_must_be_strings() -> None:
    error = refused({**DEPLOY, "labels": {"replicas": 3}})

    assert error.errors == [
        {"field": "labels.replicas", "reason": "Input should be a valid string"}
    ]


def test_unknown_field_is_named() -> None:
    error = refused([DEPLOY, {**DEPLOY, "enviroment": "prod"}])

    assert error.status == 422
    assert error.errors == [{"field": "[1].enviroment", "reason": "unknown field"}]


def test_url_must_be_http() -> None:
    error = refused({**DEPLOY, "url": "javascript:alert(1)"})

    assert error.errors[0]["field"] == "url"


def test_empty_list_is_refused() -> None:
    error = refused([])

    assert error.status == 422
    assert error.errors[0]["field"] == "(body)"
    assert "at least 1 item" in error.message


def test_too_many_events_are_refused() -> None:
    error = refused([DEPLOY] * (MAX_EVENTS_PER_REQUEST + 1))

    assert error.status == 422
    assert error.errors == [
        {
            "field": "(body)",
            "reason": f"List should have at most {MAX_EVENTS_PER_REQUEST} items after "
            f"validation, not {MAX_EVENTS_PER_REQUEST + 1}",
        }
    ]


def test_the_maximum_is_accepted() -> None:
    assert len(events([DEPLOY] * MAX_EVENTS_PER_REQUEST)) == MAX_EVENTS_PER_REQUEST


@pytest.mark.parametrize("body", [b"{", b'[{"type": "deploy",]', b""])
def test_malformed_json_is_400(body: bytes) -> None:
    assert refused(body).status == 400


def test_a_scalar_body_is_422() -> None:
    error = refused(b' "deploy"')

    assert error.errors == [
        {"field": "(body)", "reason": "expected a JSON object or a list of them, got a string"}
    ]


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_events(json.dumps(DEPLOY).encode(), datetime(2026, 4, 18, 10, 0))


def test_json_round_trip() -> None:
    [event] = events({**DEPLOY, "labels": {"k": "v"}, "at": "2026-04-18T09:58:00.5Z"})

    assert ChangeEvent.from_json(event.to_json()) == event


def test_stored_event_without_at_is_refused_on_read() -> None:
    # Outside parse_events there is no clock: a stored event must carry its time.
    with pytest.raises(ValueError, match="at"):
        ChangeEvent.from_json('{"type": "deploy", "service": "x"}')


# Feedback shares the API error shape.


def test_feedback_with_all_fields() -> None:
    body = b'{"useful": true, "action": "rolled back", "cause": "deploy", "note": "ok"}'

    assert parse_feedback(body) == Feedback(
        useful=True, action="rolled back", cause="deploy", note="ok"
    )


def test_feedback_needs_only_useful() -> None:
    assert parse_feedback(b'{"useful": false}') == Feedback(useful=False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{}", "useful"),
        (b'{"useful": "no"}', "useful"),
        (b'{"useful": 1}', "useful"),
        (b'{"useful": true, "note": 3}', "note"),
        (b'{"useful": true, "why": "x"}', "why"),
        (json.dumps({"useful": True, "cause": "x" * (MAX_FEEDBACK_TEXT + 1)}).encode(), "cause"),
    ],
)
def test_bad_feedback_is_422_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_feedback(body)

    assert info.value.status == 422
    assert info.value.errors[0]["field"] == field


def test_malformed_feedback_is_400() -> None:
    with pytest.raises(PayloadError) as info:
        parse_feedback(b'{"useful": tru}')

    assert info.value.status == 400


def test_an_event_far_in_the_future_is_refused_with_its_field() -> None:
    # Events are trimmed by time; one dated years ahead would never be. An hour is slack.
    now = datetime(2026, 4, 18, 10, 0, tzinfo=UTC)
    soon = b'{"type": "deploy", "service": "cart", "at": "2026-04-18T10:59:00Z"}'
    assert parse_events(soon, now)[0].service == "cart"
    with pytest.raises(PayloadError) as refused:
        parse_events(b'{"type": "deploy", "service": "cart", "at": "2099-01-01T00:00:00Z"}', now)
    assert refused.value.status == 422
    assert refused.value.errors == [
        {"field": "at", "reason": "is more than 1h ahead of the receiver's clock"}
    ]
