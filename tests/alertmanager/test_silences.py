"""Silencing an incident (``receiver/alertmanager/silences.py``) with Alertmanager's answers
scripted: the failures the real Alertmanager cannot be made to show on cue (a peer failing
partway, an answer no silence can be made exact for). The real one is asked in
``tests/e2e/test_alertmanager_peer.py``. Also what a silence request may ask for."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.alertmanager.client import AlertmanagerClient
from receiver.alertmanager.silences import parse_silence
from receiver.errors import PayloadError
from tests.conftest import FakeClock, make_alert
from tests.support.harness import Harness, harness, write_config

pytestmark = pytest.mark.anyio

CONFIG = "alertmanager: {urls: ['http://am-0:9093', 'http://am-1:9093'], restart_grace: 0s}\n"
Labels = dict[str, str]


def held(labels: Labels) -> dict[str, Any]:
    """An alert as ``GET /api/v2/alerts`` lists it."""
    return {
        "fingerprint": hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16],
        "labels": labels,
        "annotations": {},
        "startsAt": "2026-04-18T08:10:00Z",
        "endsAt": "2026-04-18T12:10:00Z",
        "updatedAt": "2026-04-18T08:10:00Z",
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
        "receivers": [{"name": "journey-receiver"}],
    }


def alertmanager(
    posts: list[dict[str, Any]],
    matched: Callable[[str], list[Labels]] = lambda name: [],
    answer: Callable[[int], httpx.Response] = lambda n: httpx.Response(
        200, json={"silenceID": f"made-{n}"}
    ),
) -> httpx.MockTransport:
    """Both HA peers: ``GET /alerts`` lists ``matched(alertname)`` as the alerts the
    filter matches besides the silenced one; ``POST /silences`` is recorded in ``posts``
    and answered ``answer(len(posts))``."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/api/v2/alerts":
            filters = request.url.params.get_list("filter")
            [alertname] = [f.split('"')[1] for f in filters if f.startswith("alertname=")]
            return httpx.Response(200, json=[held(lb) for lb in matched(alertname)])
        if request.method == "POST" and path == "/api/v2/silences":
            posts.append(json.loads(request.content))
            return answer(len(posts))
        return httpx.Response(404)

    return httpx.MockTransport(handle)


async def with_client(rx: Harness, transport: httpx.AsyncBaseTransport) -> None:
    real = rx.receiver.peer.client
    assert real is not None and rx.receiver.peer.config is not None
    await real.aclose()
    rx.receiver.peer.client = AlertmanagerClient(rx.receiver.peer.config, transport=transport)


def silenced(post: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["value"] for m in post["matchers"]}


def am_lines(incident: dict[str, Any]) -> list[str]:
    return [e["text"] for e in incident["timeline"] if e["kind"] == "alertmanager"]


async def test_silences_made_before_alertmanager_failed_are_kept_on_the_incident(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Silencing an incident of three firing alerts makes three silences, one by one. When
    Alertmanager fails on the second (both peers 503), the first silence mutes its alert
    for 2h: the incident keeps its id, so a retry can be told from it and it can be
    expired from the incident, and the 502 says so."""
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        posts: list[dict[str, Any]] = []
        first_only = alertmanager(
            posts,
            answer=lambda n: (
                httpx.Response(200, json={"silenceID": "made-1"})
                if n == 1
                else httpx.Response(503, text="service unavailable")
            ),
        )
        await with_client(rx, first_only)
        alerts = [make_alert("payment-service", alertname=n) for n in ("A", "B", "C")]
        (incident_id,) = (await rx.post(alerts)).json()["incidents"]
        response = await rx.client.post(f"/api/v1/incidents/{incident_id}/silence")
        assert response.status_code == 502, response.text
        assert len(posts) == 3  # made-1, then the second refused by both peers
        assert silenced(posts[0])["alertname"] == "A"
        incident = await rx.incident(incident_id)
    assert [s["id"] for s in incident["silences"]] == ["made-1"]
    failure = (
        "2 alert(s) (B, C) not silenced: no Alertmanager answered POST /api/v2/silences: "
        "http://am-0:9093: HTTP 503; http://am-1:9093: HTTP 503"
    )
    assert am_lines(incident) == [
        "1 alert(s) silenced in Alertmanager for 2h by journey-receiver API",
        failure,
    ]
    assert response.json() == {
        "error": "alertmanager: 1 of 3 alert(s) silenced, kept on the incident's silences; "
        + failure
    }


async def test_each_silence_leaves_out_the_alerts_carrying_its_labels_and_more(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Alertmanager says which alerts each silence's labels match: B's also match B with a
    ``team`` label, which a ``team=""`` matcher leaves out. C's match an alert without a
    label C lacks (only an Alertmanager answering against its own matching could say so):
    no silence can leave it out, so C is refused rather than silenced wider."""
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        alerts = [make_alert("payment-service", alertname=n) for n in ("A", "B", "C")]
        labels = {a["labels"]["alertname"]: a["labels"] for a in alerts}
        others = {
            "A": [],
            "B": [{**labels["B"], "team": "payments", "instance": "p-1"}],
            "C": [{k: v for k, v in labels["C"].items() if k != "service"}],
        }
        posts: list[dict[str, Any]] = []
        await with_client(rx, alertmanager(posts, others.__getitem__))
        (incident_id,) = (await rx.post(alerts)).json()["incidents"]
        response = await rx.client.post(f"/api/v1/incidents/{incident_id}/silence")
        assert response.status_code == 409, response.text
        incident = await rx.incident(incident_id)
    assert [silenced(p) for p in posts] == [
        labels["A"],
        {**labels["B"], "instance": "", "team": ""},
    ]
    assert [s["id"] for s in incident["silences"]] == ["made-1", "made-2"]
    refusal = (
        "1 alert(s) (C) not silenced: its labels match another alert Alertmanager holds, "
        "which has no label this one lacks: a silence of it would mute that one too"
    )
    assert am_lines(incident) == [
        "2 alert(s) silenced in Alertmanager for 2h by journey-receiver API",
        refusal,
    ]
    assert response.json() == {
        "error": f"2 of 3 alert(s) silenced, kept on the incident's silences; {refusal}"
    }


@pytest.mark.parametrize(
    ("body", "seconds"),
    [(b"", 7200.0), (b"{}", 7200.0), (b'{"duration": "1h30m"}', 5400.0),
     (b'{"duration": 600}', 600.0), (b'{"duration": "600"}', 600.0),
     (b'{"duration": "7d"}', 604800.0)],
)  # fmt: skip
def test_a_silence_lasts_a_duration_or_a_number_of_seconds(body: bytes, seconds: float) -> None:
    assert parse_silence(body).seconds() == seconds


@pytest.mark.parametrize(
    ("duration", "reason"),
    [('"8d"', '"8d" is longer than the maximum 7d'),
     ('"200y"', '"200y" is longer than the maximum 7d'),
     ("0", "must be at least 1s"),
     ("0.0001", "must be at least 1s"),
     ('"500ms"', "must be at least 1s"),
     ('"soon"', 'expected seconds or a duration like 500ms, 30s, 2m, 1h30m, 7d, 1w, got "soon"')],
)  # fmt: skip
def test_a_silence_longer_than_a_week_or_of_no_time_is_refused_naming_why(
    duration: str, reason: str
) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_silence(f'{{"duration": {duration}}}'.encode()).seconds()
    assert (refused.value.status, refused.value.errors) == (
        422,
        [{"field": "duration", "reason": reason}],
    )


async def test_every_silence_made_for_a_large_incident_is_kept_on_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    """An incident of 60 firing alerts (within the 100 one request may silence): 60
    silences are made and answered, and each is kept on the incident's ``silences`` so it
    can be found and expired from there, as the README promises."""
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        posts: list[dict[str, Any]] = []
        await with_client(rx, alertmanager(posts))
        alerts = [make_alert("payment-service", instance=f"p-{i}") for i in range(60)]
        (incident_id,) = (await rx.post(alerts)).json()["incidents"]
        response = await rx.client.post(f"/api/v1/incidents/{incident_id}/silence")
        incident = await rx.incident(incident_id)
    assert response.status_code == 201, response.text
    made = response.json()["silences"]
    kept = [s["id"] for s in incident["silences"]]
    assert len(posts) == len(made) == 60
    assert sorted(kept) == sorted(made), f"{len(made)} made, {len(kept)} kept"
