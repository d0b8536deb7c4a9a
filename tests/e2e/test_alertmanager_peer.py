"""Alertmanager as a peer (``receiver/alertmanager``), against the real
``prometheus-alertmanager``.

The storm test runs the whole chain for real: Alertmanager with ``max_alerts`` sends its
truncated webhooks to the receiver process on a real Redis, which back-fills them by
asking the same Alertmanager. The other tests drive an in-process receiver on an injected
clock (``tests/support/harness.py``) and feed it the webhooks Alertmanager really sent,
captured on a local server: the receiver's rounds and intervals are then exact, while
Alertmanager runs on real time (short group_wait and group_interval, polled with
deadlines). The receiver's clock starts at the real time, so the silences it makes mean
the same to Alertmanager.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Receive, Scope, Send

from receiver.alertmanager.silences import silence_incident
from receiver.incident import rfc3339
from receiver.sinks import Sink
from receiver.store import GroupStore, StoreSettings, open_store
from tests.conftest import FakeClock
from tests.support import alertmanager as am
from tests.support import receiver_process as rp
from tests.support.fake_server import FakeServer, serve
from tests.support.harness import Harness, ScriptedSink, harness, write_config
from tests.support.processes import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(40)]

T = TypeVar("T")
Labels = dict[str, str]
ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "config" / "journeys.yaml"
TOKEN = "peer-e2e-token-0123456789"
METRIC = "journey_receiver_alertmanager"


def checkout(alertname: str, instance: str, region: str = "eu") -> Labels:
    """An alert of the checkout journey's payment stage (``config/journeys.yaml``)."""
    return {
        "alertname": alertname,
        "service": "payment-service",
        "env": "prod",
        "region": region,
        "severity": "critical",
        "instance": instance,
    }


def three_of_a_group() -> list[Labels]:
    """Three alerts of one Alertmanager group (a ``max_alerts: 2`` route truncates it)."""
    return [
        checkout("HighErrorRate", "p-1"),
        checkout("HighLatency", "p-2"),
        checkout("SLOBurn", "p-3"),
    ]


def ended(labels: Labels, started: datetime) -> dict[str, Any]:
    """``labels`` posted again, ending now: Alertmanager stops holding it."""
    now = datetime.now(UTC)
    assert now > started
    return am.alert(labels, starts_at=started, ends_at=now)


def eventually(
    fetch: Callable[[], T], done: Callable[[T], bool], *, what: str, within: float = 10.0
) -> T:
    """``fetch()`` until ``done`` holds for its value, for at most ``within`` seconds.

    Blocking is fine in the async tests: between ticks nothing runs in their event loop
    (the harness runs no scheduler); Alertmanager and the hooks server run elsewhere."""
    return rp.poll(fetch, done, what=what, timeout=within, step=0.05)


# --- Alertmanager whose webhooks are captured -------------------------------------------


async def answer_ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def hooks() -> Iterator[FakeServer]:
    """Where the Alertmanagers send their webhooks: recorded, answered 200."""
    with serve(answer_ok, FakeServer()) as fake:
        yield fake


@contextlib.contextmanager
def alertmanager_to(
    hooks: FakeServer,
    workdir: Path,
    *,
    max_alerts: int = 0,
    port: int | None = None,
    inhibit_rules: Sequence[Mapping[str, Any]] = (),
) -> Iterator[am.Alertmanager]:
    """A real Alertmanager grouping by region, quickly, whose webhooks go to ``hooks`` at
    the path ``/<workdir's name>``; its state in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = am.write_config(
        workdir / "alertmanager.yml",
        webhook_url=f"{hooks.url}/{workdir.name}",
        token=TOKEN,
        group_by=["region"],
        group_wait="200ms",
        group_interval="500ms",
        max_alerts=max_alerts,
        inhibit_rules=inhibit_rules,
    )
    with am.alertmanager(config, workdir, port) as process:
        yield process


def webhook(hooks: FakeServer, path: str, done: Callable[[dict[str, Any]], bool]) -> bytes:
    """The body of the first webhook sent to ``path`` whose message satisfies ``done``."""

    def matching() -> list[bytes]:
        return [seen.body for seen in hooks.requests(path) if done(json.loads(seen.body))]

    return eventually(matching, bool, what=f"a webhook to {path} as expected")[0]


def held(alertmanager: am.Alertmanager) -> dict[str, dict[str, Any]]:
    """The alerts Alertmanager holds now, by instance."""
    return {alert["labels"]["instance"]: alert for alert in alertmanager.alerts()}


# --- the in-process receiver ------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


def peer_config(
    tmp: Path, *urls: str, interval: str = "1m", grace: str = "0s", more: str = ""
) -> Path:
    # These Alertmanagers started a moment ago: no restart grace, unless a test asks.
    section = {
        "urls": list(urls),
        "timeout": "2s",
        "reconcile_interval": interval,
        "restart_grace": grace,
    }
    return write_config(tmp, f"alertmanager: {json.dumps(section)}\n{more}")


async def relay(rx: Harness, raw: bytes) -> list[str]:
    """Post Alertmanager's own webhook body to the receiver; the incidents it reached."""
    response = await rx.client.post(
        "/webhook/alertmanager", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["incidents"]
    return ids


async def peer_counts(rx: Harness) -> dict[str, float]:
    """The receiver's ``journey_receiver_alertmanager_*`` counters, by short name."""
    response = await rx.client.get("/metrics")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.startswith(METRIC) and sample.name.endswith("_total"):
                name = sample.name.removeprefix(METRIC + "_").removesuffix("_total")
                found[sample.labels.get("change", name)] = sample.value
    if not found.get("reconciles_skipped"):
        found.pop("reconciles_skipped", None)
    return found


def am_lines(incident: dict[str, Any]) -> list[str]:
    return [e["text"] for e in incident["timeline"] if e["kind"] == "alertmanager"]


def by_name(incident: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {alert["labels"]["alertname"]: alert for alert in incident["alerts"]}


# --- the tests --------------------------------------------------------------------------

STORM = 40
MAX_ALERTS = 5
ALERTNAMES = ("HighErrorRate", "HighLatency", "PodCrashLooping", "SaturationHigh", "SLOBurn")


@pytest.mark.timeout(60)
def test_a_truncated_storm_is_backfilled_and_its_truncated_resolution_resolves(
    tmp_path: Path, redis_port: int
) -> None:
    # Each side needs the other's address: Alertmanager's port is chosen first.
    am_port = free_port()
    config = rp.write_config(
        tmp_path / "receiver.yaml",
        store_url=f"redis://127.0.0.1:{redis_port}/0",
        key_prefix=f"peer-{uuid.uuid4().hex[:8]}",
        token=TOKEN,
        journeys_file=JOURNEYS,
        # Only back-fills may fill or resolve the incident here: after the first round,
        # at start, the next reconcile is an hour away.
        alertmanager={
            "urls": [f"http://127.0.0.1:{am_port}"],
            "timeout": "2s",
            "reconcile_interval": "1h",
            "restart_grace": "0s",
        },
    )
    storm = [checkout(ALERTNAMES[i % 5], f"payment-{i}.eu.internal:9100") for i in range(STORM)]
    with (
        rp.receiver_process(config, tmp_path, TOKEN) as receiver,
        receiver.client() as client,
    ):
        am_config = am.write_config(
            tmp_path / "alertmanager.yml",
            webhook_url=f"{receiver.url}/webhook/alertmanager",
            token=TOKEN,
            group_by=["region"],
            group_wait="200ms",
            group_interval="500ms",
            max_alerts=MAX_ALERTS,
        )
        with am.alertmanager(am_config, tmp_path, am_port) as alertmanager:
            # startsAt now, so that Alertmanager waits group_wait and sends the storm whole.
            started = datetime.now(UTC)
            alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in storm])

            def the_incident() -> dict[str, Any] | None:
                listed = client.get("/api/v1/incidents", params={"status": "all"}).json()
                if not listed["incidents"]:
                    return None
                [summary] = listed["incidents"]
                detail: dict[str, Any] = client.get(f"/api/v1/incidents/{summary['id']}").json()
                return detail

            opened = rp.poll(
                the_incident,
                lambda i: i is not None and i["notified_at"] is not None,
                what="the storm's incident notified",
                context=receiver.tail,
            )
            assert opened is not None
            assert (opened["alert_count"], opened["firing_count"]) == (STORM, STORM)
            assert sorted(a["fingerprint"] for a in opened["alerts"]) == sorted(
                a["fingerprint"] for a in alertmanager.alerts()
            )
            # The one webhook carried MAX_ALERTS alerts, the back-fill the rest, before the
            # receiver's group_wait ran out: the first notification has the whole storm.
            [first, *_] = rp.poll(
                receiver.notifications, bool, what="a notification", context=receiver.tail
            )
            assert (first["kind"], first["alert_count"]) == ("open", STORM)
            assert opened["truncated_alerts"] == STORM - MAX_ALERTS

            # The resolution is truncated too: MAX_ALERTS resolved alerts in the webhook;
            # the back-fill finds that Alertmanager holds none of the rest.
            alertmanager.post_alerts([ended(lb, started) for lb in storm])
            resolved = rp.poll(
                the_incident,
                lambda i: i is not None and i["status"] == "resolved",
                what="the storm's incident resolved",
                context=receiver.tail,
            )
        rp.poll(
            receiver.notification_counts,
            lambda seen: seen[opened["id"], "resolve"] == 1,
            what="the resolve notification",
            context=receiver.tail,
        )
        truncated = receiver.samples("journey_receiver_truncated_alerts")
        backfills = receiver.samples(METRIC + "_backfills")
        changed = receiver.samples(METRIC + "_alerts")
        notified = receiver.notification_counts()
    assert resolved is not None
    assert resolved["id"] == opened["id"]
    assert (resolved["alert_count"], resolved["firing_count"]) == (STORM, 0)
    assert {a["status"] for a in resolved["alerts"]} == {"resolved"}
    gone = STORM - MAX_ALERTS
    [line] = am_lines(resolved)
    names = "|".join(ALERTNAMES)
    assert re.fullmatch(
        rf"back-fill: Alertmanager no longer holds {gone} alert\(s\) "
        rf"\((?:{names}), (?:{names}), (?:{names}) \+{gone - 3} more\): resolved here",
        line,
    ), line
    # Both webhooks were truncated; each was back-filled once.
    assert truncated == {(): 2.0 * gone}
    assert backfills == {(): 2.0}
    assert changed == {(("change", "backfilled"),): gone, (("change", "resolved"),): gone}
    assert notified == {(opened["id"], "open"): 1, (opened["id"], "resolve"): 1}


async def test_an_alertmanager_that_just_started_is_not_taken_at_its_word(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted Alertmanager holds nothing until Prometheus sends its alerts again:
    within restart_grace, reconcile resolves nothing."""
    caplog.set_level(logging.INFO, logger="journey_receiver")
    alerts = [checkout("HighErrorRate", "p-1"), checkout("HighLatency", "p-2")]
    with alertmanager_to(hooks, tmp_path / "am") as alertmanager:
        started = datetime.now(UTC)
        alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
        raw = webhook(hooks, "/am", lambda m: len(m["alerts"]) == 2)
        config = peer_config(tmp_path, alertmanager.url, grace="1h")
        async with harness(config, clock) as rx:
            [incident_id] = await relay(rx, raw)
            alertmanager.post_alerts([ended(lb, started) for lb in alerts])
            eventually(lambda: held(alertmanager), lambda h: not h, what="no alert held")
            await rx.tick(60)
            await rx.tick(60)
            incident = await rx.incident(incident_id)
            assert (incident["firing_count"], am_lines(incident)) == (2, [])
            counts = await peer_counts(rx)
            assert (counts["reconciles"], counts["reconciles_skipped"]) == (0, 2)
            # How long ago it started, in seconds: not the epoch time it started at.
            said = [m for r in caplog.records if "reconcile skipped" in (m := r.getMessage())]
            assert said and all(
                re.fullmatch(
                    r"alertmanager: reconcile skipped: it started \d{1,2} s ago, within the "
                    r"restart grace of 3600 s \(it may not hold its alerts again yet\)",
                    line,
                )
                for line in said
            ), said


@pytest.mark.timeout(60)
async def test_a_back_fill_from_an_alertmanager_that_just_started_resolves_nothing(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Alertmanager restarts (a rolling update): it keeps silences and its notification log,
    not alerts. Prometheus sends its rule groups' alerts again one evaluation at a time, so
    the restarted Alertmanager holds HighErrorRate and HighLatency but not yet SLOBurn, and
    sends the group truncated (max_alerts). Within restart_grace the back-fill takes in
    what it holds, and resolves nothing for its not holding SLOBurn, still firing."""
    caplog.set_level(logging.INFO, logger="journey_receiver")
    port = free_port()
    alerts = three_of_a_group()
    started = datetime.now(UTC)
    with alertmanager_to(hooks, tmp_path / "before", port=port) as before:
        before.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
        whole = webhook(hooks, "/before", lambda m: len(m["alerts"]) == 3)
    config = peer_config(tmp_path, f"http://127.0.0.1:{port}", grace="1h")
    async with harness(config, clock) as rx:
        [incident_id] = await relay(rx, whole)
        await rx.tick()  # the first reconcile: skipped (no Alertmanager answers)
        # Restarted, its alerts lost; Prometheus has sent two of the three again so far.
        with alertmanager_to(hooks, tmp_path / "after", max_alerts=1, port=port) as after:
            after.post_alerts([am.alert(lb, starts_at=started) for lb in alerts[:2]])
            truncated = webhook(hooks, "/after", lambda m: m["truncatedAlerts"] == 1)
            assert set(held(after)) == {"p-1", "p-2"}
            await relay(rx, truncated)
            await rx.tick(1)  # the back-fill (the reconcile is not due)
            incident = await rx.incident(incident_id)
        counts = await peer_counts(rx)
    assert am_lines(incident) == []
    assert {n: a["status"] for n, a in by_name(incident).items()} == {
        "HighErrorRate": "firing",
        "HighLatency": "firing",
        "SLOBurn": "firing",
    }
    assert (counts["backfills"], counts["errors"]) == (1, 1)
    said = [m for r in caplog.records if "back-fill" in (m := r.getMessage())]
    assert len(said) == 1 and re.fullmatch(
        r"alertmanager: back-fill of '.+:\{region=\"eu\"\}' resolves nothing: it started "
        r"\d{1,2} s ago, within the restart grace of 3600 s \(it may not hold its alerts "
        r"again yet\)",
        said[0],
    ), said


async def test_reconcile_resolves_what_alertmanager_no_longer_holds(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    alerts = three_of_a_group()
    with alertmanager_to(hooks, tmp_path / "am") as alertmanager:
        started = datetime.now(UTC)
        alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
        raw = webhook(hooks, "/am", lambda m: len(m["alerts"]) == 3)
        async with harness(peer_config(tmp_path, alertmanager.url), clock) as rx:
            [incident_id] = await relay(rx, raw)
            await rx.tick()
            incident = await rx.incident(incident_id)
            assert (incident["firing_count"], am_lines(incident)) == (3, [])

            # SLOBurn ends in Alertmanager, and its resolution never reaches the receiver.
            alertmanager.post_alerts([ended(alerts[2], started)])
            eventually(
                lambda: held(alertmanager), lambda h: set(h) == {"p-1", "p-2"}, what="SLOBurn ended"
            )
            await rx.tick(30)
            assert (await rx.incident(incident_id))["firing_count"] == 3, "asked before due"
            await rx.tick(30)
            incident = await rx.incident(incident_id)
            assert (incident["status"], incident["firing_count"]) == ("open", 2)
            assert {n: a["status"] for n, a in by_name(incident).items()} == {
                "HighErrorRate": "firing",
                "HighLatency": "firing",
                "SLOBurn": "resolved",
            }
            assert am_lines(incident) == [
                "reconcile: Alertmanager no longer holds 1 alert(s) (SLOBurn): resolved here"
            ]
            assert await peer_counts(rx) == {
                "backfills": 0,
                "reconciles": 2,
                "errors": 0,
                "resolved": 1,
            }

            # The rest end as well: the incident resolves as if Alertmanager had said so.
            alertmanager.post_alerts([ended(lb, started) for lb in alerts[:2]])
            eventually(lambda: held(alertmanager), lambda h: not h, what="no alert held")
            await rx.tick(60)
            assert (await rx.incident(incident_id))["firing_count"] == 0
            await rx.tick(300)  # resolve_after
            incident = await rx.incident(incident_id)
    assert incident["status"] == "resolved"
    assert len(am_lines(incident)) == 2
    assert rx.sink.kinds(incident_id) == ["open", "resolve"]


async def test_silences_from_the_api_are_seen_by_alertmanager_and_reconciled(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    alerts = [checkout("HighErrorRate", "p-1"), checkout("HighLatency", "p-2")]
    # Shares the alertname with the first: a silence on shared labels would mute it too.
    bystander = checkout("HighErrorRate", "p-9", region="us")
    with alertmanager_to(hooks, tmp_path / "am") as alertmanager:
        started = datetime.now(UTC)
        alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in [*alerts, bystander]])
        raw = webhook(hooks, "/am", lambda m: m["groupLabels"] == {"region": "eu"})
        async with harness(peer_config(tmp_path, alertmanager.url), clock) as rx:
            [incident_id] = await relay(rx, raw)
            await rx.tick()

            response = await rx.client.post(
                f"/api/v1/incidents/{incident_id}/silence",
                json={"duration": "2h", "comment": "rolling back payment-service"},
            )
            assert response.status_code == 201, response.text
            answer = response.json()
            assert answer["status"] == "silenced"
            ids = answer["silences"]
            assert len(set(ids)) == 2

            incident = await rx.incident(incident_id)
            assert [s["id"] for s in incident["silences"]] == ids
            for record in incident["silences"]:
                assert record["by"] == "journey-receiver API"
                assert record["comment"] == "rolling back payment-service"
                at = datetime.fromisoformat(record["at"])
                assert datetime.fromisoformat(record["ends_at"]) - at == timedelta(hours=2)
                assert record["url"] == f"{alertmanager.url}/#/silences/{record['id']}"
            assert incident["timeline"][-1] == {
                "time": incident["silences"][0]["at"],
                "kind": "alertmanager",
                "text": "2 alert(s) silenced in Alertmanager for 2h by journey-receiver API",
            }

            # In Alertmanager: one active silence per alert, on exactly its labels.
            holds = held(alertmanager)
            assert holds["p-9"]["status"] == {
                "state": "active",
                "silencedBy": [],
                "inhibitedBy": [],
            }
            silence_of: dict[str, str] = {}
            for labels in alerts:
                status = holds[labels["instance"]]["status"]
                assert status["state"] == "suppressed"
                [silence_id] = status["silencedBy"]
                silence = alertmanager.silence(silence_id)
                assert silence["status"]["state"] == "active"
                assert silence["createdBy"] == "journey-receiver API"
                assert silence["comment"] == "rolling back payment-service"
                assert sorted(
                    (m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in silence["matchers"]
                ) == sorted((k, v, False, True) for k, v in labels.items())
                silence_of[labels["alertname"]] = silence_id
            assert sorted(silence_of.values()) == sorted(ids)

            # The next reconcile, not before it is due, marks them on the incident.
            said = "2 alert(s) silenced in Alertmanager for 2h by journey-receiver API"
            await rx.tick()
            assert am_lines(await rx.incident(incident_id)) == [said]
            await rx.tick(60)
            incident = await rx.incident(incident_id)
            assert (incident["status"], incident["firing_count"]) == ("open", 2)
            assert {n: a["suppressed"] for n, a in by_name(incident).items()} == {
                name: f"silenced by {silence_id}" for name, silence_id in silence_of.items()
            }
            names = ", ".join(a["labels"]["alertname"] for a in incident["alerts"])
            each = ", ".join(silence_of[a["labels"]["alertname"]] for a in incident["alerts"])
            # Who made them, until when and why, as Alertmanager keeps them.
            until = incident["silences"][0]["ends_at"]
            assert am_lines(incident) == [
                said,
                f"reconcile: 2 alert(s) ({names}) silenced by {each} in Alertmanager, made by "
                f'journey-receiver API until {until}: "rolling back payment-service"',
            ]
            assert (await peer_counts(rx))["suppressed"] == 2
            # Said once: the next reconcile finds nothing new.
            await rx.tick(60)
            assert len(am_lines(await rx.incident(incident_id))) == 2


async def test_a_silence_leaves_out_an_alert_with_the_same_labels_and_more(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    """An SRE silences a noisy unmapped incident: an aggregate HighErrorRate over every
    service of eu/prod (no service label). A silence on its labels alone would match every
    alert carrying them: the payments team's per-service HighErrorRate in the checkout
    incident (the same labels plus service and instance) too. Absent-label matchers
    (``service=""``, ``instance=""``) leave it out."""
    aggregate = {
        "alertname": "HighErrorRate",
        "env": "prod",
        "region": "eu",
        "severity": "critical",
    }
    payments = checkout("HighErrorRate", "p-1")  # the same four labels, and more
    with alertmanager_to(hooks, tmp_path / "am") as alertmanager:
        started = datetime.now(UTC)
        alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in (aggregate, payments)])
        raw = webhook(hooks, "/am", lambda m: len(m["alerts"]) == 2)
        async with harness(peer_config(tmp_path, alertmanager.url), clock) as rx:
            ids = await relay(rx, raw)
            assert len(ids) == 2
            journeys = {(await rx.incident(i))["journey"]: i for i in ids}
            assert set(journeys) == {"unmapped", "checkout"}
            response = await rx.client.post(f"/api/v1/incidents/{journeys['unmapped']}/silence")
            assert response.status_code == 201, response.text
            [silence_id] = response.json()["silences"]
            holds = {a["labels"].get("service", "-"): a for a in alertmanager.alerts()}
            assert holds["-"]["status"]["silencedBy"] == [silence_id]
            # The checkout incident's alert was not asked to be silenced.
            assert holds["payment-service"]["status"]["silencedBy"] == []
            matchers = alertmanager.silence(silence_id)["matchers"]
    assert sorted((m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in matchers) == sorted(
        [(k, v, False, True) for k, v in aggregate.items()]
        + [("instance", "", False, True), ("service", "", False, True)]
    )


async def test_one_of_two_receivers_on_one_store_reconciles_per_interval(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock, redis_port: int
) -> None:
    url, prefix = f"redis://127.0.0.1:{redis_port}/0", f"lease-{uuid.uuid4().hex[:8]}"
    interval = 0.5

    def shared() -> GroupStore:
        """A client of the one store the two receivers share."""
        return open_store(url, StoreSettings(key_prefix=prefix))

    async def reconciles(*replicas: Harness) -> tuple[float, ...]:
        return tuple([(await peer_counts(rx))["reconciles"] for rx in replicas])

    # Nothing to compare: the counts say who asked Alertmanager, each interval.
    with alertmanager_to(hooks, tmp_path / "am") as alertmanager:
        config = peer_config(tmp_path, alertmanager.url, interval="500ms")
        async with (
            harness(config, clock, store=shared()) as a,
            harness(config, clock, store=shared()) as b,
        ):
            await a.tick()
            await b.tick()
            assert await reconciles(a, b) == (1, 0)
            await b.tick(interval / 2)
            await a.tick()
            assert await reconciles(a, b) == (1, 0)

            # The next interval: whoever asks first takes it, even from the last holder.
            await b.tick(interval / 2)
            await a.tick()
            assert await reconciles(a, b) == (1, 1)
            await a.tick()
            await b.tick()
            assert await reconciles(a, b) == (1, 1)
            # And the one after: the last holder may take it again.
            await a.tick(interval)
            await b.tick()
            assert await reconciles(a, b) == (2, 1)
            assert [(await peer_counts(rx))["errors"] for rx in (a, b)] == [0, 0]


async def test_an_alertmanager_that_is_down_changes_nothing_and_the_next_round_works(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    port = free_port()
    alerts = three_of_a_group()
    started = datetime.now(UTC)
    with alertmanager_to(hooks, tmp_path / "am-1", max_alerts=2, port=port) as alertmanager:
        alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
        raw = webhook(hooks, "/am-1", lambda m: m["truncatedAlerts"] == 1)
    # Alertmanager has stopped; the receiver takes the truncated webhook it sent.
    async with harness(peer_config(tmp_path, f"http://127.0.0.1:{port}"), clock) as rx:
        [incident_id] = await relay(rx, raw)
        before = await rx.incident(incident_id)
        assert (before["alert_count"], before["truncated_alerts"]) == (2, 1)
        await rx.tick()  # the back-fill and the first reconcile both fail
        assert await rx.incident(incident_id) == before
        assert await peer_counts(rx) == {"backfills": 0, "reconciles": 0, "errors": 2}
        await rx.tick(60)  # the next reconcile fails too; the back-fill is not retried
        after = await rx.incident(incident_id)
        assert after["alerts"] == before["alerts"]
        assert (after["status"], after["alert_count"], after["firing_count"]) == ("open", 2, 2)
        assert am_lines(after) == []
        assert await peer_counts(rx) == {"backfills": 0, "reconciles": 0, "errors": 3}

        # Alertmanager is back at the same address, its alerts lost in the restart; the
        # alerts' source sends them again and Alertmanager sends the group again.
        with alertmanager_to(hooks, tmp_path / "am-2", max_alerts=2, port=port) as alertmanager:
            alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
            await relay(rx, webhook(hooks, "/am-2", lambda m: m["truncatedAlerts"] == 1))
            await rx.tick(60)
            incident = await rx.incident(incident_id)
        counts = await peer_counts(rx)
    assert (incident["alert_count"], incident["firing_count"]) == (3, 3)
    assert am_lines(incident) == []
    assert counts == {"backfills": 1, "reconciles": 1, "errors": 3, "backfilled": 1}


async def test_reload_points_the_receiver_at_other_alertmanagers(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    alerts = [checkout("HighErrorRate", "p-1"), checkout("HighLatency", "p-2")]
    with (
        alertmanager_to(hooks, tmp_path / "old") as old,
        alertmanager_to(hooks, tmp_path / "new") as new,
    ):
        started = datetime.now(UTC)
        old.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
        # The new peer never heard of HighLatency.
        new.post_alerts([am.alert(alerts[0], starts_at=started)])
        raw = webhook(hooks, "/old", lambda m: len(m["alerts"]) == 2)
        async with harness(peer_config(tmp_path, old.url), clock) as rx:
            [incident_id] = await relay(rx, raw)
            await rx.tick()
            assert (await rx.incident(incident_id))["firing_count"] == 2

            peer_config(tmp_path, new.url, interval="5m")
            assert (await rx.client.post("/-/reload")).status_code == 200
            await rx.tick(60)  # due on the old schedule; asks the new peer
            incident = await rx.incident(incident_id)
            assert {n: a["status"] for n, a in by_name(incident).items()} == {
                "HighErrorRate": "firing",
                "HighLatency": "resolved",
            }
            assert am_lines(incident) == [
                "reconcile: Alertmanager no longer holds 1 alert(s) (HighLatency): resolved here"
            ]
            await rx.tick(60)  # not due: the new interval is 5m
            assert (await peer_counts(rx))["reconciles"] == 2

            # Silences go to the new peer.
            response = await rx.client.post(f"/api/v1/incidents/{incident_id}/silence")
            assert response.status_code == 201, response.text
            [silence_id] = response.json()["silences"]
            assert new.silence(silence_id)["matchers"]
            with pytest.raises(httpx.HTTPStatusError, match="404 Not Found"):
                old.silence(silence_id)

            # Without the section, the receiver leaves Alertmanager alone.
            write_config(tmp_path)
            assert (await rx.client.post("/-/reload")).status_code == 200
            await rx.tick(600)
            assert (await peer_counts(rx))["reconciles"] == 2
            response = await rx.client.post(f"/api/v1/incidents/{incident_id}/silence")
            assert response.status_code == 409
            assert "no alertmanager configured" in response.json()["error"]


@contextlib.asynccontextmanager
async def silenced_pair(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock, slack: ScriptedSink | None = None
) -> AsyncIterator[tuple[Harness, am.Alertmanager, str, list[str], datetime]]:
    """Two checkout alerts silenced from the API, and reconciled (marked) since: the
    receiver, Alertmanager, the incident id, the silence ids and when the alerts began.
    With ``slack``, the incident goes there (notified by the reconcile's tick)."""
    alerts = [checkout("HighErrorRate", "p-1"), checkout("HighLatency", "p-2")]
    with alertmanager_to(hooks, tmp_path / "am") as alertmanager:
        started = datetime.now(UTC)
        alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
        raw = webhook(hooks, "/am", lambda m: len(m["alerts"]) == 2)
        more = "sinks: {slack: {token: xoxb-test}}\nrouting: {slack: [P1, P2, P3, P4, P5]}\n"
        config = peer_config(tmp_path, alertmanager.url, more=more if slack else "")
        sinks: dict[str, Sink] | None = {"slack": slack} if slack else None
        async with harness(config, clock, sinks=sinks) as rx:
            [incident_id] = await relay(rx, raw)
            await rx.tick()
            response = await rx.client.post(f"/api/v1/incidents/{incident_id}/silence")
            assert response.status_code == 201, response.text
            await rx.tick(60)
            marked = by_name(await rx.incident(incident_id))
            assert all(a["suppressed"] for a in marked.values())
            yield rx, alertmanager, incident_id, response.json()["silences"], started


async def test_a_silence_expired_in_alertmanager_is_said_on_the_timeline(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    """A person expires the receiver's silences in Alertmanager: the next reconcile takes
    the mark off the alerts, and the timeline, which said they were silenced, says they
    are not any more (or a reader takes them for silenced still), once."""
    async with silenced_pair(tmp_path, hooks, clock) as silenced:
        rx, alertmanager, incident_id, ids, _ = silenced
        for silence_id in ids:
            alertmanager.expire(silence_id)
        await rx.tick(60)
        incident = await rx.incident(incident_id)
        await rx.tick(60)
        again = await rx.incident(incident_id)
    assert {n: a["suppressed"] for n, a in by_name(incident).items()} == {
        "HighErrorRate": None,
        "HighLatency": None,
    }
    names = ", ".join(a["labels"]["alertname"] for a in incident["alerts"])
    assert (
        f"reconcile: 2 alert(s) ({names}) no longer silenced or inhibited in Alertmanager"
    ) in am_lines(incident)
    assert am_lines(again) == am_lines(incident)


async def test_a_resolved_alert_does_not_keep_its_silenced_mark(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    """A silenced alert whose silence ends and which then resolves, Alertmanager's
    resolution coming before the next reconcile: it is not shown silenced beside its
    resolved status for ever after."""
    async with silenced_pair(tmp_path, hooks, clock) as silenced:
        rx, alertmanager, incident_id, ids, started = silenced
        for silence_id in ids:
            alertmanager.expire(silence_id)
        latency = by_name(await rx.incident(incident_id))["HighLatency"]["labels"]
        alertmanager.post_alerts([ended(latency, started)])
        resolved = webhook(
            hooks, "/am", lambda m: any(a["status"] == "resolved" for a in m["alerts"])
        )
        await relay(rx, resolved)
        await rx.tick(60)
        await rx.tick(60)
        incident = await rx.incident(incident_id)
    alert = by_name(incident)["HighLatency"]
    assert (alert["status"], alert["suppressed"]) == ("resolved", None)


def when(at: str) -> datetime:
    return datetime.fromisoformat(at)


async def test_silences_made_here_and_expired_in_alertmanager_are_no_longer_shown_in_force(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    """A person expires the receiver's silences in Alertmanager's UI an hour and a half
    before their end: the incident's ``silences`` stop saying they hold until then (the
    API, the page, the timeline and the Slack message), once, with when Alertmanager ended
    them."""
    slack = ScriptedSink("slack")
    async with silenced_pair(tmp_path, hooks, clock, slack) as silenced:
        rx, alertmanager, incident_id, ids, _ = silenced
        for silence_id in ids:
            alertmanager.expire(silence_id)
        expired = {i: when(alertmanager.silence(i)["endsAt"]) for i in ids}
        await rx.tick(60)
        incident = await rx.incident(incident_id)
        await rx.tick(60)
        again = await rx.incident(incident_id)
        page = (await rx.client.get(f"/incidents/{incident_id}")).text
        # Slack's Silence 2h, which makes none while the incident's own hold, makes them anew.
        made = await silence_incident(rx.receiver, incident_id, 7200, "Alice", "", again=False)
        assert made is not None and len(made) == 2 and not set(made) & set(ids)
    edits = [a.changes for a in slack.delivered if a.kind == "update"]
    assert edits[0] == ("2 silence(s) made here ended early in Alertmanager",)
    until = incident["silences"][0]["ends_at"]
    for record in incident["silences"]:
        assert when(record["expired_at"]) == expired[record["id"]]
        assert when(record["expired_at"]) < when(record["ends_at"]) - timedelta(minutes=110)
    assert (
        f"reconcile: 2 silence(s) made here by journey-receiver API until {until} expired in "
        f"Alertmanager before their end ({', '.join(ids)})"
    ) in am_lines(incident)
    assert am_lines(again) == am_lines(incident)
    assert page.count(" ended early in Alertmanager at ") == 2


@pytest.mark.timeout(60)
async def test_silences_lost_in_a_restart_of_alertmanager_are_no_longer_shown_in_force(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    """Alertmanager runs without a persistent data dir and restarts: its silences are gone,
    and the alerts they muted notify again once Prometheus sends them. The silences made
    here are said to be no longer kept there, not shown in force for two more hours."""
    port = free_port()
    alerts = [checkout("HighErrorRate", "p-1"), checkout("HighLatency", "p-2")]
    started = datetime.now(UTC)
    async with harness(peer_config(tmp_path, f"http://127.0.0.1:{port}"), clock) as rx:
        with alertmanager_to(hooks, tmp_path / "before", port=port) as before:
            before.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
            raw = webhook(hooks, "/before", lambda m: len(m["alerts"]) == 2)
            [incident_id] = await relay(rx, raw)
            await rx.tick()
            response = await rx.client.post(f"/api/v1/incidents/{incident_id}/silence")
            assert response.status_code == 201, response.text
            ids = response.json()["silences"]
            await rx.tick(60)
            assert all(a["suppressed"] for a in by_name(await rx.incident(incident_id)).values())
        # Back on the same address with an empty data dir; Prometheus sends the alerts again.
        with alertmanager_to(hooks, tmp_path / "after", port=port) as after:
            after.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
            eventually(lambda: held(after), lambda h: len(h) == 2, what="the alerts held again")
            await rx.tick(60)
            incident = await rx.incident(incident_id)
    assert {n: a["suppressed"] for n, a in by_name(incident).items()} == {
        "HighErrorRate": None,
        "HighLatency": None,
    }
    # Lost when the round found them so.
    assert [s["expired_at"] for s in incident["silences"]] == [rfc3339(round(clock.now * 1000))] * 2
    until = incident["silences"][0]["ends_at"]
    assert (
        f"reconcile: 2 silence(s) made here by journey-receiver API until {until} no longer "
        "kept by Alertmanager (deleted from its data, or lost in a restart without it) "
        f"({', '.join(ids)})"
    ) in am_lines(incident)


async def test_a_silence_a_person_made_in_alertmanager_says_who_until_when_and_its_end(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    """An SRE silences one of the incident's alerts in Alertmanager's UI: the incident
    names the silence, who made it, until when and why, and says when it no longer holds;
    it is not one of the incident's own ``silences``."""
    alerts = [checkout("HighErrorRate", "p-1"), checkout("HighLatency", "p-2")]
    with alertmanager_to(hooks, tmp_path / "am") as alertmanager:
        started = datetime.now(UTC)
        alertmanager.post_alerts([am.alert(lb, starts_at=started) for lb in alerts])
        raw = webhook(hooks, "/am", lambda m: len(m["alerts"]) == 2)
        async with harness(peer_config(tmp_path, alertmanager.url), clock) as rx:
            [incident_id] = await relay(rx, raw)
            await rx.tick()
            silence_id = alertmanager.add_silence(
                alerts[0],
                created_by="alice@example.com",
                comment="payments-db failover, CHG-42",
                ends_at=started + timedelta(hours=1),
            )
            await rx.tick(60)
            silenced = await rx.incident(incident_id)
            made = alertmanager.silence(silence_id)
            alertmanager.expire(silence_id)
            await rx.tick(60)
            ended = await rx.incident(incident_id)
    until = rfc3339(round(when(made["endsAt"]).timestamp() * 1000))
    assert {n: a["suppressed"] for n, a in by_name(silenced).items()} == {
        "HighErrorRate": f"silenced by {silence_id}",
        "HighLatency": None,
    }
    assert am_lines(silenced) == [
        f"reconcile: 1 alert(s) (HighErrorRate) silenced by {silence_id} in Alertmanager, "
        f'made by alice@example.com until {until}: "payments-db failover, CHG-42"'
    ]
    assert silenced["silences"] == ended["silences"] == []
    assert by_name(ended)["HighErrorRate"]["suppressed"] is None
    assert am_lines(ended)[1:] == [
        "reconcile: 1 alert(s) (HighErrorRate) no longer silenced or inhibited in Alertmanager"
    ]


async def test_an_inhibited_alert_is_marked_with_the_alert_inhibiting_it(
    tmp_path: Path, hooks: FakeServer, clock: FakeClock
) -> None:
    """An inhibit rule mutes the critical alerts of a region while RegionDown fires there:
    the incident's HighLatency, firing before, is marked inhibited, by RegionDown by name
    (Alertmanager says only its fingerprint), and said active again when it ends."""
    rule = {
        "source_matchers": ['alertname="RegionDown"'],
        "target_matchers": ['severity="critical"'],
        "equal": ["region"],
    }
    latency = checkout("HighLatency", "p-2")
    down = {"alertname": "RegionDown", "env": "prod", "region": "eu", "severity": "page"}
    with alertmanager_to(hooks, tmp_path / "am", inhibit_rules=[rule]) as alertmanager:
        started = datetime.now(UTC)
        alertmanager.post_alerts([am.alert(latency, starts_at=started)])
        raw = webhook(hooks, "/am", lambda m: len(m["alerts"]) == 1)
        async with harness(peer_config(tmp_path, alertmanager.url), clock) as rx:
            [incident_id] = await relay(rx, raw)
            await rx.tick()
            alertmanager.post_alerts([am.alert(down, starts_at=started)])

            def inhibited() -> list[str]:
                [status] = [
                    a["status"]
                    for a in alertmanager.alerts()
                    if a["labels"]["alertname"] == "HighLatency"
                ]
                return list(status["inhibitedBy"])

            [fingerprint] = eventually(inhibited, bool, what="HighLatency inhibited")
            await rx.tick(60)
            marked = await rx.incident(incident_id)
            alertmanager.post_alerts([ended(down, started)])
            eventually(inhibited, lambda by: not by, what="the inhibition ended")
            await rx.tick(60)
            after = await rx.incident(incident_id)
    assert by_name(marked)["HighLatency"]["suppressed"] == f"inhibited by {fingerprint}"
    assert am_lines(marked) == [
        f"reconcile: 1 alert(s) (HighLatency) inhibited by RegionDown ({fingerprint}) in "
        "Alertmanager"
    ]
    assert by_name(after)["HighLatency"]["suppressed"] is None
    assert am_lines(after)[1:] == [
        "reconcile: 1 alert(s) (HighLatency) no longer silenced or inhibited in Alertmanager"
    ]
