"""Probable causes as an on-call engineer meets them: a reopen told against its own start, a
rollback target from the change's own cluster and never a version undone without a name, a
release train of two services left unknown, a quiet dependency's migration a suspect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.incident import Incident
from tests.conftest import T0, FakeClock, make_alert, resolved
from tests.support.harness import harness, write_config

pytestmark = pytest.mark.anyio

HERE = {"service": "payment-service", "environment": "prod", "region": "eu"}


async def first_told(tmp_path: Path, events: object, **labels: str) -> Incident:
    """What the first notification tells of a payment-service alert that started at
    08:13:00 after ``events`` were posted (``labels``: the alert's own)."""
    async with harness(write_config(tmp_path), FakeClock(T0)) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(events))).is_success
        await rx.post([make_alert("payment-service", starts_at="2026-04-18T08:13:00Z", **labels)])
        await rx.tick(31)
        return rx.sink.sent[0][2]


async def test_a_reopen_names_its_own_cause_not_the_last_episodes(tmp_path: Path) -> None:
    # Episode 1: deploy v3 two minutes before the alert; the on-call rolls back to v2, the
    # alert resolves and the incident resolves (08:20:51). v4 goes out at 08:20:55 and the
    # alert fires again at 08:21 (within reopen_window). The reopen must be read against
    # its own start: v4 10 s before it is the change, v3 (rolled back 6 min before the
    # reopen) is no more, and rolling v3 "back to v2" would put back what ran already.
    events = [
        {"type": "deploy", "version": "v2", "at": "2026-04-17T10:00:00Z", **HERE},
        {"type": "deploy", "version": "v3", "at": "2026-04-18T08:11:00Z", **HERE},
        {"type": "rollback", "version": "v2", "at": "2026-04-18T08:15:00Z", **HERE},
    ]
    clock = FakeClock(T0)  # 08:13:20
    async with harness(write_config(tmp_path), clock) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(events))).is_success
        alert = make_alert("payment-service", starts_at="2026-04-18T08:13:00Z")
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(31)
        (kind, _, opened) = rx.sink.sent[-1]
        assert kind == "open"
        assert opened.probable_causes[0]["text"] == "deploy v3 to payment-service"
        clock.advance(120)
        await rx.post([resolved(alert)])
        while rx.sink.kinds()[-1] != "resolve":
            await rx.tick(60)
        assert clock.now == T0 + 451  # 08:20:51
        v4 = {"type": "deploy", "version": "v4", "at": "2026-04-18T08:20:55Z", **HERE}
        assert (await rx.client.post("/api/v1/events", content=json.dumps(v4))).is_success
        clock.now = T0 + 460  # 08:21:00
        again = make_alert("payment-service", starts_at="2026-04-18T08:21:00Z",
                           fingerprint=alert["fingerprint"])  # fmt: skip
        await rx.post([again])
        await rx.tick(31)
        (kind, _, told) = rx.sink.sent[-1]
        assert kind == "reopen"
        assert (await rx.incident(inc))["started_at"] == "2026-04-18T08:21:00.000Z"
        titles = [a["title"] for a in told.suggested_actions]
        assert (told.title, told.probable_causes[0]["text"], titles) == (
            "checkout/eu P2 — 1 alert in payment-service; deploy v4 to payment-service "
            "less than 1 min before",
            "deploy v4 to payment-service",
            ["Roll back payment-service to v2"],
        )


async def test_the_rollback_goes_back_to_what_ran_in_the_deploys_own_cluster(
    tmp_path: Path,
) -> None:
    # checkout groups by env and region; eu prod runs payment-service in two clusters.
    # The canary cluster k1 took the release candidate v4-rc an hour ago; k2, where the
    # alert fires, ran v2 until v3 went out 2 min before it. Rolling k2 "back" to v4-rc
    # would push the canary's candidate onto it: v3 replaced v2 there.
    events = [
        {"type": "deploy", "version": "v2", "at": "2026-04-15T10:00:00Z", **HERE,
         "labels": {"cluster": "k1"}},
        {"type": "deploy", "version": "v2", "at": "2026-04-15T10:05:00Z", **HERE,
         "labels": {"cluster": "k2"}},
        {"type": "deploy", "version": "v4-rc", "at": "2026-04-18T07:13:00Z", **HERE,
         "labels": {"cluster": "k1"}},
        {"type": "deploy", "version": "v3", "at": "2026-04-18T08:11:00Z", **HERE,
         "labels": {"cluster": "k2"}},
    ]  # fmt: skip
    sent = await first_told(tmp_path, events, cluster="k2")
    assert sent.probable_causes[0]["text"] == "deploy v3 to payment-service"
    assert (sent.changes[0]["version"], sent.changes[0]["previous_version"]) == ("v3", "v2")
    assert [a["title"] for a in sent.suggested_actions] == ["Roll back payment-service to v2"]


async def test_a_release_train_of_two_services_is_not_settled_by_the_event_ids(
    tmp_path: Path,
) -> None:
    # One pipeline deploys cart and cart-api at the same second, 2 min before both fire
    # together (same startsAt, severity and count; no topology between them). Nothing
    # tells the two deploys apart, so nothing may name one of them as the cause with
    # confidence, and above all not the change ids the CI happened to give them.
    here = {"environment": "prod", "region": "eu", "at": "2026-04-18T08:11:00Z"}
    told = []
    for ids in (("train-1", "train-2"), ("train-2", "train-1")):
        events = [
            {"id": ids[0], "type": "deploy", "service": "cart", "version": "c-7", **here},
            {"id": ids[1], "type": "deploy", "service": "cart-api", "version": "a-7", **here},
        ]
        (tmp_path / ids[0]).mkdir()
        async with harness(write_config(tmp_path / ids[0]), FakeClock(T0)) as rx:
            r = await rx.client.post("/api/v1/events", content=json.dumps(events))
            assert r.is_success
            alerts = [
                make_alert(s, alertname="CartErrors", starts_at="2026-04-18T08:13:00Z")
                for s in ("cart", "cart-api")
            ]
            await rx.post(alerts)
            await rx.tick(31)
            sent = rx.sink.sent[0][2]
            told.append((sent.title, [c["text"] for c in sent.probable_causes][:2]))
    assert told[0] == told[1]
    assert "cause unknown" in told[0][0]


async def test_a_deploy_to_a_dependency_that_does_not_alert_is_not_passed_over(
    tmp_path: Path,
) -> None:
    # journeys.yaml: payment-service calls payments-db. A schema migration (a deploy of
    # payments-db) goes out 1 min before payment-service starts failing; payments-db
    # itself has no alert. payment-service depends on it (topology): the migration, not
    # payment-service itself ("no change to the incident's services"), leads the causes.
    db = {"type": "deploy", "service": "payments-db", "version": "m-42",
          "environment": "prod", "region": "eu", "at": "2026-04-18T08:12:00Z"}  # fmt: skip
    sent = await first_told(tmp_path, db)
    causes = [(c["kind"], c["text"], c["score"]) for c in sent.probable_causes]
    assert causes[0][:2] == ("change", "deploy m-42 to payments-db"), (sent.title, causes)


@pytest.mark.parametrize(
    "bad_at",
    ["2026-04-18T07:50:00Z", "2026-04-17T15:00:00Z"],  # within the lookback; yesterday
)
async def test_a_bad_version_rolled_back_without_naming_a_version_is_not_the_target(
    tmp_path: Path, bad_at: str
) -> None:
    # v3 was bad; the on-call undid it with the chat-ops button, which reports a rollback
    # without a version (`kubectl rollout undo`). v4 goes out 2 min before the alert. What
    # v4 replaced is whatever the undo put back (v2 by the history, or unknown): never
    # v3, the version that was rolled back for being bad.
    from datetime import datetime, timedelta

    undo_at = (datetime.fromisoformat(bad_at) + timedelta(minutes=5)).isoformat()
    events = [
        {"type": "deploy", "version": "v2", "at": "2026-04-16T10:00:00Z", **HERE},
        {"type": "deploy", "version": "v3", "at": bad_at, **HERE},
        {"type": "rollback", "at": undo_at, **HERE},
        {"type": "deploy", "version": "v4", "at": "2026-04-18T08:11:00Z", **HERE},
    ]
    sent = await first_told(tmp_path, events)
    assert sent.probable_causes[0]["text"] == "deploy v4 to payment-service"
    assert sent.changes[0]["previous_version"] is None
    titles = [a["title"] for a in sent.suggested_actions]
    assert "Roll back payment-service to v3" not in titles


async def test_a_rollback_without_a_version_stored_before_the_upgrade_is_still_no_target(
    tmp_path: Path,
) -> None:
    # As above (yesterday's undo), but the events were posted to the version before, which
    # kept a rollback that names no version in the events alone, not in the service's
    # index the rollback target is read from: after the upgrade v3 is still no target.
    events = [
        {"type": "deploy", "version": "v2", "at": "2026-04-16T10:00:00Z", **HERE},
        {"type": "deploy", "version": "v3", "at": "2026-04-17T15:00:00Z", **HERE},
        {"type": "rollback", "at": "2026-04-17T15:05:00Z", **HERE},
        {"type": "deploy", "version": "v4", "at": "2026-04-18T08:11:00Z", **HERE},
    ]
    async with harness(write_config(tmp_path), FakeClock(T0)) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(events))).is_success
        store = rx.receiver.store
        index = f"{store._p}ver:payment-service"
        indexed = await store._r.zrange(index, 0, -1)
        undone = [d for d in indexed if json.loads(d)["type"] == "rollback"]
        assert len(undone) == 1
        await store._r.zrem(index, *undone)
        await rx.post([make_alert("payment-service", starts_at="2026-04-18T08:13:00Z")])
        await rx.tick(31)
        sent = rx.sink.sent[0][2]
    assert sent.probable_causes[0]["text"] == "deploy v4 to payment-service"
    assert sent.changes[0]["previous_version"] is None
    assert "Roll back payment-service to v3" not in [a["title"] for a in sent.suggested_actions]


async def test_a_deploys_own_commit_label_does_not_lose_the_version_it_replaced(
    tmp_path: Path,
) -> None:
    # CI posts each deploy with its commit as a label: no incident groups by it, so it
    # contradicts no incident (README, Scope), nor says where a deploy ran: an earlier
    # deploy's other commit does not keep v2 from being what v3 replaced.
    here = HERE
    events = [
        {"type": "deploy", "version": "v2", "at": "2026-04-17T10:00:00Z", **here,
         "labels": {"commit": "1a2b3c"}},
        {"type": "deploy", "version": "v3", "at": "2026-04-18T08:11:00Z", **here,
         "labels": {"commit": "4d5e6f"}},
    ]  # fmt: skip
    sent = await first_told(tmp_path, events)
    assert sent.probable_causes[0]["text"] == "deploy v3 to payment-service"
    assert sent.changes[0]["previous_version"] == "v2"
    assert [a["title"] for a in sent.suggested_actions] == ["Roll back payment-service to v2"]


async def test_a_deploy_reported_again_without_its_version_keeps_the_rollback_target(
    tmp_path: Path,
) -> None:
    # CI posts v3 with its version; a second source (a Grafana annotation, say) reports the
    # same deploy without one. Only a rollback that names no version makes what ran before
    # unknown: this is no such thing, and the rollback still goes back to v2.
    here = {"service": "payment-service", "environment": "prod", "region": "eu"}
    events = [
        {"type": "deploy", "version": "v2", "at": "2026-04-17T10:00:00Z", **here},
        {"type": "deploy", "version": "v3", "at": "2026-04-18T08:11:00Z", **here},
        {"type": "deploy", "at": "2026-04-18T08:10:58Z", **here, "summary": "annotation"},
    ]
    sent = await first_told(tmp_path, events)
    v3 = next(c for c in sent.changes if c.get("version") == "v3")
    assert v3["previous_version"] == "v2"
    assert [a["title"] for a in sent.suggested_actions] == ["Roll back payment-service to v2"]
