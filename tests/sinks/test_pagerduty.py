"""The PagerDuty sink with the real pagerduty client, against a fake Events API v2 over TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from receiver.config import Journey, Owner, PagerDutySinkConfig, Runbook
from receiver.errors import PermanentDeliveryError, RetryableDeliveryError
from receiver.incident import Incident, build
from receiver.models import NotificationKind
from receiver.scoring import Impact
from receiver.sinks import Delivery, Receipt, Shared
from receiver.sinks.pagerduty import (
    EVENT_MAX_BYTES,
    KEY_ID,
    SUMMARY_MAX,
    PagerDutySink,
    fingerprint,
)
from receiver.store.cache import LocalCache
from receiver.store.records import (
    AlertPage,
    CauseRecord,
    IncidentState,
    ScoreFactor,
    StoredAlert,
)
from tests.support.fake_pagerduty import FakePagerDuty, serve_pagerduty
from tests.support.fake_server import Fault
from tests.support.incidents import conversion
from tests.support.prometheus import self_signed_cert

pytestmark = pytest.mark.anyio

T = 1_776_506_400_000  # 2026-04-18T10:00:00Z
DEFAULT_KEY = "d" * 16 + "0123456789abcdef"
OWNER_KEY = "0" * 16 + "fedcba9876543210"
EXTERNAL_URL = "https://receiver.example.com"
RUNBOOK_URL = "https://runbooks.example.com/rb-17"
CHECKOUT = Journey(
    id="checkout",
    name="Checkout",
    weight=1.0,
    owner=Owner(team="payments"),
    stages=[],
    runbooks=[Runbook(title="Payment gateway errors", url=RUNBOOK_URL)],
)
PAYMENTS = Owner(team="payments")
ENQUEUE = "/v2/enqueue"


def make_incident(**changes: Any) -> Incident:
    state = IncidentState.model_validate(
        {
            "id": "checkout-eu-1",
            "key": "checkout|prod|eu",
            "digest": "d",
            "journey": "checkout",
            "group_labels": {"env": "prod", "region": "eu"},
            "status": "open",
            "created_at": T,
            "updated_at": T + 60_000,
            "first_firing_at": T,
            "alert_count": 2,
            "firing_count": 2,
            "services": {"payment-service": T, "cart": T},
            "regions": {"eu": T},
            "stages": {"payment": T},
            "firing_services": {"payment-service": 1, "cart": 1},
            "kpis": [conversion(revenue_at_risk_per_min=None)],
            "probable_causes": [
                CauseRecord(kind="service", text="payment-service errors", score=0.8)
            ],
        }
    )
    alerts = [
        StoredAlert(
            fp=f"fp{n}",
            status="firing",
            labels={"alertname": "HighErrorRate", "service": service},
            annotations={"summary": f"{service} is failing"},
            starts_at=T,
            service=service,
            severity="critical",
            first_seen=T,
            changed_at=T,
        )
        for n, service in enumerate(["payment-service", "cart"])
    ]
    impact = Impact(
        score=82.5,
        priority="P1",
        factors=(
            ScoreFactor(name="severity", value=1.0, reason="critical alerts are firing"),
            ScoreFactor(name="kpi", value=0.61, reason="conversion down 61%"),
        ),
    )
    return build(state, AlertPage(alerts=alerts, total=2), CHECKOUT, impact).model_copy(
        update=changes
    )


def delivery(kind: NotificationKind, owner: Owner = PAYMENTS) -> Delivery:
    return Delivery(kind=kind, job_id=f"job-{kind}", owner=owner)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("pagerduty-tls"))


@pytest.fixture
def pd(tls: tuple[Path, Path]) -> Iterator[FakePagerDuty]:
    with serve_pagerduty(tls) as fake:
        yield fake


def config(pd: FakePagerDuty, tls: tuple[Path, Path], **fields: Any) -> PagerDutySinkConfig:
    defaults = {
        "events_url": pd.server.url + ENQUEUE,
        "routing_key": DEFAULT_KEY,
        "ca_file": tls[0],
        "timeout": 5.0,
    }
    return PagerDutySinkConfig.model_validate({**defaults, **fields})


@pytest.fixture
async def sink(pd: FakePagerDuty, tls: tuple[Path, Path]) -> AsyncIterator[PagerDutySink]:
    sink = PagerDutySink(config(pd, tls), EXTERNAL_URL)
    yield sink
    await sink.aclose()


async def test_lifecycle_is_one_dedup_key_and_a_new_pagerduty_incident_after_a_resolve(
    pd: FakePagerDuty, sink: PagerDutySink
) -> None:
    opened = make_incident()
    lowered = make_incident(priority="P2")
    resolved = make_incident(priority="P2", status="resolved")
    steps = [
        (opened, "open"),
        (lowered, "update"),
        (resolved, "resolve"),
        (opened, "reopen"),
        (resolved, "resolve"),
    ]

    receipts = [await sink.deliver(i, delivery(kind), None) for i, kind in steps]

    # Each names the routing key it went with (by fingerprint, not the key).
    named = {"dedup_key": "checkout-eu-1", KEY_ID: fingerprint(DEFAULT_KEY)}
    assert [(r.sink, r.state, r.refs) for r in receipts] == [
        ("pagerduty", state, named)
        for state in ("triggered", "triggered", "resolved", "triggered", "resolved")
    ]
    assert DEFAULT_KEY[:8] not in str(receipts)
    assert pd.actions("checkout-eu-1") == ["trigger", "trigger", "resolve", "trigger", "resolve"]
    incidents = pd.incidents("checkout-eu-1")
    assert [(i.status, len(i.events)) for i in incidents] == [("resolved", 3), ("resolved", 2)]
    events = pd.events("checkout-eu-1")
    assert {e["routing_key"] for e in events} == {DEFAULT_KEY}
    assert [e["payload"]["severity"] for e in events if "payload" in e] == [
        "critical",
        "error",
        "critical",
    ]
    incident_url = f"{EXTERNAL_URL}/incidents/checkout-eu-1"
    first = events[0]
    assert first["client_url"] == incident_url
    assert first["links"] == [
        {"href": incident_url, "text": "Incident checkout-eu-1"},
        {"href": RUNBOOK_URL, "text": "Payment gateway errors"},
    ]
    payload = first["payload"]
    assert {k: v for k, v in payload.items() if k != "custom_details"} == {
        "summary": opened.title,
        "source": "journey-receiver",
        "severity": "critical",
        "timestamp": "2026-04-18T10:01:00.000Z",
        "component": "cart",
        "group": "checkout",
    }
    details = payload["custom_details"]
    assert details["summary"] == opened.summary
    assert (details["priority"], details["score"]) == ("P1", 82.5)
    assert [f["reason"] for f in details["score_breakdown"]] == [
        "critical alerts are firing",
        "conversion down 61%",
    ]
    assert details["kpis"] == ["conversion \u221261% vs last week (now 0.012, then 0.031 ratio)"]
    assert [c["text"] for c in details["probable_causes"]] == ["payment-service errors"]
    assert (details["services"], details["regions"]) == (["cart", "payment-service"], ["eu"])
    assert (details["alert_count"], details["firing_count"]) == (2, 2)
    assert len(details["alerts"]) == 2
    assert details["incident_url"] == incident_url


async def test_the_owner_routing_key_overrides_the_default(
    pd: FakePagerDuty, sink: PagerDutySink
) -> None:
    owner = Owner(team="payments", pagerduty_routing_key=OWNER_KEY)
    incident = make_incident()

    await sink.deliver(incident, delivery("open", owner), None)
    await sink.deliver(incident, delivery("resolve", owner), None)

    assert [(i.routing_key, i.status) for i in pd.incidents(incident.id)] == [
        (OWNER_KEY, "resolved")
    ]


async def test_an_episode_stays_under_the_routing_key_it_was_triggered_with(
    pd: FakePagerDuty, tls: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cache = LocalCache()  # the store's cache, which every replica and rebuild shares
    incident = make_incident()
    default = PagerDutySink(config(pd, tls), EXTERNAL_URL, Shared(cache))
    owned = Owner(team="payments", pagerduty_routing_key=OWNER_KEY)
    # A replica rebuilt with another default key: the old one is known to the cache only.
    other = "1" * 32
    rebuilt = PagerDutySink(config(pd, tls, routing_key=other), EXTERNAL_URL, Shared(cache))
    receipt: Receipt | None = None

    async def send(sink: PagerDutySink, kind: NotificationKind, owner: Owner) -> None:
        nonlocal receipt
        got = await sink.deliver(incident, delivery(kind, owner), receipt)
        receipt = Receipt("pagerduty", got.state, (receipt.refs if receipt else {}) | got.refs)

    await send(default, "open", PAYMENTS)
    # journeys.yaml now gives the journey its own key; replicas reload one after another.
    # The episode's updates, acknowledgement and resolve reach its alert where it is.
    for sink, kind in ((default, "update"), (rebuilt, "acknowledge"), (default, "update"),
                       (rebuilt, "update"), (rebuilt, "resolve")):  # fmt: skip
        await send(sink, kind, owned)
    assert [(i.routing_key, i.status) for i in pd.incidents(incident.id)] == [
        (DEFAULT_KEY, "resolved")
    ]
    # The next episode goes to the key of now.
    await send(rebuilt, "reopen", owned)
    await send(default, "resolve", owned)
    assert [(i.routing_key, i.status) for i in pd.incidents(incident.id)] == [
        (DEFAULT_KEY, "resolved"),
        (OWNER_KEY, "resolved"),
    ]
    assert receipt is not None and receipt.refs[KEY_ID] == fingerprint(OWNER_KEY)
    # A key known nowhere any more (the store's cache lost): sent with today's key, said.
    forgetful = PagerDutySink(
        config(pd, tls, routing_key=other), EXTERNAL_URL, Shared(LocalCache())
    )
    again = make_incident(id="checkout-eu-2")
    await forgetful.deliver(again, delivery("resolve"), receipt)
    assert pd.events("checkout-eu-2")[0]["routing_key"] == other
    assert "must be resolved in PagerDuty by hand" in caplog.text
    assert OWNER_KEY not in caplog.text
    for built in (default, rebuilt, forgetful):
        await built.aclose()


async def test_the_key_is_kept_while_events_are_sent_and_four_retentions_after(
    pd: FakePagerDuty, tls: tuple[Path, Path]
) -> None:
    now = [0.0]
    cache = LocalCache(clock=lambda: now[0])
    week = Shared(cache, retention_ms=7 * 86_400_000)
    incident = make_incident()
    old = PagerDutySink(config(pd, tls), EXTERNAL_URL, week)
    receipt = await old.deliver(incident, delivery("open"), None)
    now[0] += 27 * 86_400  # a month of alerts re-sent and nothing new to tell
    new = PagerDutySink(config(pd, tls, routing_key="1" * 32), EXTERNAL_URL, week)
    receipt = await new.deliver(incident, delivery("update"), receipt)
    now[0] += 27 * 86_400
    await new.deliver(incident, delivery("resolve"), receipt)
    assert [(i.routing_key, i.status) for i in pd.incidents(incident.id)] == [
        (DEFAULT_KEY, "resolved")
    ]
    for built in (old, new):
        await built.aclose()


async def test_without_any_routing_key_the_error_names_the_fix(
    pd: FakePagerDuty, tls: tuple[Path, Path]
) -> None:
    sink = PagerDutySink(config(pd, tls, routing_key=None), EXTERNAL_URL)

    with pytest.raises(PermanentDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery("open"), None)

    assert caught.value.reason == "auth"
    assert str(caught.value) == (
        "pagerduty: incident checkout-eu-1: auth: no PagerDuty routing key for journey "
        "'checkout': set sinks.pagerduty.routing_key in receiver.yaml, or the journey's "
        "owner.pagerduty_routing_key in journeys.yaml"
    )
    assert pd.server.requests() == []
    await sink.aclose()


@pytest.mark.parametrize(
    ("status", "retry_after", "reason", "wait"),
    [
        (429, "2", "rate_limited", 2.0),
        (429, None, "rate_limited", None),
        (500, None, "server", None),
        (503, "7", "server", 7.0),
    ],
)
async def test_a_retryable_answer_comes_back_after_one_request(
    pd: FakePagerDuty,
    sink: PagerDutySink,
    status: int,
    retry_after: str | None,
    reason: str,
    wait: float | None,
) -> None:
    # The client's own policy would sleep and send again, and the second try would succeed.
    pd.server.inject(Fault(ENQUEUE, status=status, retry_after=retry_after))

    with pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery("open"), None)

    assert (caught.value.reason, caught.value.retry_after) == (reason, wait)
    assert len(pd.server.requests(ENQUEUE)) == 1
    assert pd.actions("checkout-eu-1") == []
    assert DEFAULT_KEY not in str(caught.value)


async def test_an_event_pagerduty_finds_invalid_is_permanent(
    pd: FakePagerDuty, tls: tuple[Path, Path]
) -> None:
    sink = PagerDutySink(config(pd, tls, routing_key="too-short-a-key"), EXTERNAL_URL)

    with pytest.raises(PermanentDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery("open"), None)

    assert caught.value.reason == "client"
    assert "HTTP 400" in str(caught.value)
    assert "Length of 'routing_key' is incorrect (should be 32 characters)" in str(caught.value)
    assert "too-short-a-key" not in str(caught.value)
    assert len(pd.server.requests(ENQUEUE)) == 1
    await sink.aclose()


@pytest.mark.parametrize(("status", "reason"), [(400, "client"), (401, "auth"), (403, "auth")])
async def test_a_refusal_is_permanent_and_never_quotes_the_routing_key(
    pd: FakePagerDuty, sink: PagerDutySink, status: int, reason: str
) -> None:
    echo = {"status": "refused", "message": f"routing key {DEFAULT_KEY} refused"}
    pd.server.inject(Fault(ENQUEUE, status=status, body=echo))

    with pytest.raises(PermanentDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery("open"), None)

    assert caught.value.reason == reason
    assert f"HTTP {status}" in str(caught.value)
    assert "routing key <redacted> refused" in str(caught.value)
    assert DEFAULT_KEY not in str(caught.value)
    assert len(pd.server.requests(ENQUEUE)) == 1


async def test_a_dropped_connection_is_retryable_and_the_retry_lands_on_the_same_alert(
    pd: FakePagerDuty, sink: PagerDutySink
) -> None:
    incident = make_incident()
    pd.server.inject(Fault(ENQUEUE, drop=True, applied=True))

    with pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(incident, delivery("open"), None)
    assert caught.value.reason == "server"
    assert len(pd.server.requests(ENQUEUE)) == 1
    assert DEFAULT_KEY not in str(caught.value)

    # What the outbox does next: the same job again, which PagerDuty dedups.
    await sink.deliver(incident, Delivery("open", "job-open", PAYMENTS, attempt=2), None)
    assert [len(i.events) for i in pd.incidents(incident.id)] == [2]


async def test_an_answer_slower_than_the_timeout_is_retryable(
    pd: FakePagerDuty, tls: tuple[Path, Path]
) -> None:
    sink = PagerDutySink(config(pd, tls, timeout=0.2), EXTERNAL_URL)

    with pd.hold_next(), pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery("open"), None)

    assert caught.value.reason == "timeout"
    assert len(pd.server.requests(ENQUEUE)) == 1
    assert DEFAULT_KEY not in str(caught.value)
    await sink.aclose()


async def test_a_long_title_is_cut_to_pagerdutys_summary_limit_with_a_mark(
    pd: FakePagerDuty, sink: PagerDutySink
) -> None:
    await sink.deliver(make_incident(title="x" * 2000), delivery("open"), None)

    (event,) = pd.events("checkout-eu-1")
    summary = event["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX
    assert summary == "x" * (SUMMARY_MAX - 1) + "…"


async def test_control_characters_in_alert_text_are_shown_and_lines_kept(
    pd: FakePagerDuty, sink: PagerDutySink
) -> None:
    # Custom details carried the alerts' labels and annotations as they came, for
    # PagerDuty's pages, its apps and whatever reads its exports; the description's lines
    # are kept, its CRLF as a line break.
    controls = "db\x00 \x1b[31mred\x1b[0m \x07 \x7f \x9b2J \u2028 \ufffe"
    shown = "db\\x00 \\x1b[31mred\\x1b[0m \\x07 \\x7f \\x9b2J \\u2028 \\ufffe"
    incident = make_incident()
    alert = {
        **incident.alerts[0],
        "labels": {"alertname": controls, f"k{controls}": "v"},
        "annotations": {"description": f"line 1\r\n\tline 2 {controls}\nline 3"},
    }
    hostile = incident.model_copy(
        update={"title": f"checkout/eu P1 — {controls}", "summary": controls, "alerts": [alert]}
    )

    await sink.deliver(hostile, delivery("open"), None)

    (event,) = pd.events("checkout-eu-1")
    payload = event["payload"]
    folded = shown.replace(" \\u2028", "")  # a line separator is whitespace: folded
    assert payload["summary"] == f"checkout/eu P1 — {folded}"
    details = payload["custom_details"]
    assert details["summary"] == shown
    (sent,) = details["alerts"]
    assert sent["labels"] == {"alertname": shown, f"k{shown}": "v"}
    assert sent["annotations"] == {"description": f"line 1\n\tline 2 {shown}\nline 3"}


async def test_a_huge_incident_gives_up_detail_to_fit_the_event_limit(
    pd: FakePagerDuty, sink: PagerDutySink
) -> None:
    incident = make_incident()
    alert = incident.alerts[0]
    alerts = [
        {**alert, "fingerprint": f"fp{n}", "annotations": {"description": "y" * 1000}}
        for n in range(1000)
    ]
    huge = incident.model_copy(update={"alerts": alerts, "alert_count": 1000})

    receipt = await sink.deliver(huge, delivery("open"), None)

    assert receipt.state == "triggered"
    (request,) = pd.server.requests(ENQUEUE)
    assert len(request.body) <= EVENT_MAX_BYTES
    details = pd.events(incident.id)[0]["payload"]["custom_details"]
    assert "alerts" not in details
    assert details["omitted"] == "alerts (too large for PagerDuty)"
    assert details["alert_count"] == 1000
    assert details["score_breakdown"] == incident.score_breakdown


async def test_the_fake_is_trusted_only_through_ca_file(
    pd: FakePagerDuty, tls: tuple[Path, Path]
) -> None:
    untrusting = PagerDutySink(config(pd, tls, ca_file=None), EXTERNAL_URL)
    trusting = PagerDutySink(config(pd, tls), EXTERNAL_URL)
    incident = make_incident()

    with pytest.raises(PermanentDeliveryError) as caught:
        await untrusting.deliver(incident, delivery("open"), None)
    receipt = await trusting.deliver(incident, delivery("open"), None)

    assert caught.value.reason == "client"
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert "set sinks.pagerduty.ca_file" in str(caught.value)
    assert receipt.state == "triggered"
    assert len(pd.server.requests(ENQUEUE)) == 1
    await untrusting.aclose()
    await trusting.aclose()


async def test_the_client_call_leaves_the_event_loop_free(
    pd: FakePagerDuty, sink: PagerDutySink
) -> None:
    receipts: list[Receipt] = []

    async def deliver() -> None:
        receipts.append(await sink.deliver(make_incident(), delivery("open"), None))

    with pd.hold_next() as hold:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(deliver)
            # This task gets the loop while the request is held only if deliver let go of
            # it; a blocking call would keep it until the client timed out.
            assert await anyio.to_thread.run_sync(hold.arrived.wait, 5)
            assert receipts == []
            hold.release.set()

    assert [r.state for r in receipts] == ["triggered"]
