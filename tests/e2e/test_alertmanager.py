"""A storm through the real Alertmanager into the real receiver process, on a real Redis.

53 alerts go into Alertmanager: 40 for checkout in eu (four services, three stages), 8 for
checkout in us, 5 that no journey matches. Alertmanager batches them by region and sends
them to the receiver's webhook, which must make exactly three incidents, notify each once
after group_wait, resolve each once when Alertmanager sends the resolutions, and reopen the
same checkout/eu incident when its alerts fire again.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import alertmanager as am
from tests.support import receiver_process as rp

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "config" / "journeys.yaml"
TOKEN = "e2e-webhook-token-0123456789"

# Services of the checkout journey in config/journeys.yaml, and the stage each one matches.
CHECKOUT_STAGES = {
    "payment-service": "payment",
    "payments-db": "payment",
    "checkout-service": "checkout",
    "cart-api": "cart",
}
ALERTNAMES = ("HighErrorRate", "HighLatency", "PodCrashLooping", "SaturationHigh", "SLOBurn")
SEVERITIES = ("critical", "warning")

EU = ("checkout", "eu")
US = ("checkout", "us")
UNMAPPED = ("unmapped", "eu")
EXPECTED_COUNTS = {EU: 40, US: 8, UNMAPPED: 5}

Labels = dict[str, str]
Incidents = dict[tuple[str, str], dict[str, Any]]


def labels(service: str, region: str, i: int) -> Labels:
    return {
        "alertname": ALERTNAMES[i % len(ALERTNAMES)],
        "service": service,
        "env": "prod",
        "region": region,
        "severity": SEVERITIES[i % len(SEVERITIES)],
        "instance": f"{service}-{i}.{region}.internal:9100",
    }


def storm() -> dict[tuple[str, str], list[Labels]]:
    """The label sets of every alert, by the incident they belong to."""
    return {
        EU: [labels(s, "eu", i) for s in CHECKOUT_STAGES for i in range(10)],
        US: [labels(s, "us", i) for s in CHECKOUT_STAGES for i in range(2)],
        UNMAPPED: [labels("legacy-batch", "eu", i) for i in range(5)],
    }


def firing(all_labels: list[Labels], at: datetime) -> list[dict[str, Any]]:
    return [am.alert(lb, starts_at=at) for lb in all_labels]


def ended(all_labels: list[Labels], started: datetime, at: datetime) -> list[dict[str, Any]]:
    return [am.alert(lb, starts_at=started, ends_at=at) for lb in all_labels]


def listed(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/api/v1/incidents", params={"status": "all"})
    assert response.status_code == 200, response.text
    summaries: list[dict[str, Any]] = response.json()["incidents"]
    return summaries


def incidents(client: httpx.Client) -> Incidents:
    """Every incident the receiver holds (full detail), by (journey, region).

    Two different incidents for one journey and region fail at once. The same id listed
    twice is tolerated here, while batches still open incidents (a known race in the
    listing); ``assert_listed_once`` checks the listing once things are quiet.
    """
    found: Incidents = {}
    for summary in listed(client):
        detail = client.get(f"/api/v1/incidents/{summary['id']}")
        assert detail.status_code == 200, detail.text
        incident = detail.json()
        where = (incident["journey"], incident["group_labels"].get("region", ""))
        seen = found.get(where)
        assert seen is None or seen["id"] == incident["id"], (
            f"two incidents for {where}: {seen and seen['id']}, {incident['id']}"
        )
        found[where] = {**incident, "summary": summary}
    return found


def assert_listed_once(client: httpx.Client, ids: dict[tuple[str, str], str]) -> None:
    """The listing holds each incident exactly once, newest first."""
    summaries = listed(client)
    assert sorted(s["id"] for s in summaries) == sorted(ids.values())
    created = [s["created_at"] for s in summaries]
    assert created == sorted(created, reverse=True)


def counts(found: Incidents) -> dict[tuple[str, str], tuple[str, int, int]]:
    return {k: (v["status"], v["alert_count"], v["firing_count"]) for k, v in found.items()}


def timeline_kinds(incident: dict[str, Any]) -> list[str]:
    return [entry["kind"] for entry in incident["timeline"]]


def notified_texts(incident: dict[str, Any]) -> list[str]:
    return [e["text"] for e in incident["timeline"] if e["kind"] == "notified"]


@pytest.fixture
def receiver(tmp_path: Path, redis_port: int) -> Iterator[rp.ReceiverProcess]:
    config = rp.write_config(
        tmp_path / "receiver.yaml",
        store_url=f"redis://127.0.0.1:{redis_port}/0",
        key_prefix=f"e2e-{uuid.uuid4().hex[:8]}",
        token=TOKEN,
        journeys_file=JOURNEYS,
    )
    with rp.receiver_process(config, tmp_path, TOKEN) as process:
        yield process


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: rp.ReceiverProcess) -> Iterator[am.Alertmanager]:
    config = am.write_config(
        tmp_path / "alertmanager.yml",
        webhook_url=f"{receiver.url}/webhook/alertmanager",
        token=TOKEN,
        # By region only: the eu batch mixes checkout and unmapped alerts, which the
        # receiver must split into two incidents.
        group_by=["region"],
    )
    with am.alertmanager(config, tmp_path) as process:
        yield process


@pytest.fixture
def client(receiver: rp.ReceiverProcess) -> Iterator[httpx.Client]:
    with receiver.client() as c:
        yield c


def test_storm_groups_resolves_and_reopens(
    receiver: rp.ReceiverProcess, alertmanager: am.Alertmanager, client: httpx.Client
) -> None:
    alerts = storm()
    every = list(itertools.chain.from_iterable(alerts.values()))
    # startsAt now: Alertmanager flushes a group at once, skipping its group_wait, for an
    # alert that started longer than group_wait ago; the storm would arrive in pieces.
    started = datetime.now(UTC)

    # 1. The storm: one incident per journey and region, each notified once after group_wait.
    alertmanager.post_alerts(firing(every, started))
    opened = rp.poll(
        lambda: incidents(client),
        lambda found: (
            counts(found) == {k: ("open", n, n) for k, n in EXPECTED_COUNTS.items()}
            and all(i["notified_at"] for i in found.values())
        ),
        what="three open, notified incidents with every alert",
        context=receiver.tail,
    )
    for (journey, region), incident in opened.items():
        assert incident["journey"] == journey
        assert incident["group_labels"] == {"env": "prod", "region": region}
        assert incident["summary"]["id"] == incident["id"]
        assert incident["status"] == "open"
        assert incident["reopened_count"] == 0
        assert incident["resolved_at"] is None
        assert "log" in incident["sinks"]
        assert timeline_kinds(incident)[0] == "opened"
        assert len(notified_texts(incident)) == 1
        assert notified_texts(incident)[0].startswith("open ")
        assert {a["fingerprint"] for a in incident["alerts"]} == {
            a["fingerprint"] for a in incident["alerts"] if a["status"] == "firing"
        }
        assert (
            len({a["fingerprint"] for a in incident["alerts"]}) == EXPECTED_COUNTS[journey, region]
        )
    assert set(opened[EU]["services"]) == set(CHECKOUT_STAGES)
    assert set(opened[EU]["stages"]) == set(CHECKOUT_STAGES.values())
    assert set(opened[US]["services"]) == set(CHECKOUT_STAGES)
    assert opened[UNMAPPED]["services"] == ["legacy-batch"]
    # Alertmanager's own fingerprints identify the members, each in exactly one incident.
    members = [a["fingerprint"] for i in opened.values() for a in i["alerts"]]
    assert sorted(members) == sorted(a["fingerprint"] for a in alertmanager.alerts())
    ids = {where: incident["id"] for where, incident in opened.items()}
    assert len(set(ids.values())) == 3
    assert_listed_once(client, ids)

    # 2. Alertmanager sends the resolutions; each incident resolves after resolve_after.
    alertmanager.post_alerts(ended(every, started, datetime.now(UTC) - timedelta(seconds=1)))
    resolved = rp.poll(
        lambda: incidents(client),
        lambda found: counts(found) == {k: ("resolved", n, 0) for k, n in EXPECTED_COUNTS.items()},
        what="the three incidents resolved",
        context=receiver.tail,
    )
    for where, incident in resolved.items():
        assert incident["id"] == ids[where]
        assert incident["resolved_at"] is not None
        assert incident["resolved_at"] >= incident["notified_at"]
        assert "resolved" in timeline_kinds(incident)
        assert [t.split()[0] for t in notified_texts(incident)] == ["open", "resolve"]

    # 3. checkout/eu fires again within reopen_window: the same incident reopens.
    refired = datetime.now(UTC)
    alertmanager.post_alerts(firing(alerts[EU], refired))
    reopened = rp.poll(
        lambda: incidents(client),
        lambda found: (
            found.get(EU, {}).get("reopened_count") == 1 and len(notified_texts(found[EU])) == 3
        ),
        what="checkout/eu reopened and notified",
        context=receiver.tail,
    )
    assert {where: i["id"] for where, i in reopened.items()} == ids
    eu = reopened[EU]
    assert (eu["status"], eu["alert_count"], eu["firing_count"]) == ("open", 40, 40)
    assert eu["resolved_at"] is None
    assert "reopened" in timeline_kinds(eu)
    assert [t.split()[0] for t in notified_texts(eu)] == ["open", "resolve", "reopen"]
    assert counts(reopened)[US] == ("resolved", 8, 0)
    assert counts(reopened)[UNMAPPED] == ("resolved", 5, 0)

    # One log-sink line per notification, nothing more.
    expected = Counter(
        {(ids[where], kind): 1 for where in ids for kind in ("open", "resolve")}
        | {(ids[EU], "reopen"): 1}
    )
    rp.poll(
        receiver.notification_counts,
        lambda seen: seen == expected,
        what=f"log-sink notifications {dict(expected)}",
        context=receiver.tail,
    )
    assert_listed_once(client, ids)
    # Alertmanager retries 5xx quietly: every webhook it sent must have been taken at once.
    webhooks = receiver.samples("journey_receiver_webhook_requests")
    assert set(webhooks) == {(("code", "200"),)}, webhooks
    eu_kinds = [n["kind"] for n in receiver.notifications() if n["incident"] == ids[EU]]
    assert eu_kinds == ["open", "resolve", "reopen"]
