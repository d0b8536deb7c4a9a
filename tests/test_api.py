"""The HTTP contract: status codes in SPEC order, JSON errors naming the field, no loss."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from receiver import app as app_module
from receiver.enrich import feed_registry
from receiver.enrich.json_feed import JsonFeed
from receiver.incident import rfc3339
from receiver.sinks import slack as slack_sink
from receiver.store import StoreSettings, open_store
from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, body, make_alert, make_batch, resolved
from tests.support.harness import harness, write_config
from tests.support.processes import free_port
from tests.support.sink_world import Fakes

pytestmark = pytest.mark.anyio

AUTH = """
server:
  max_body_bytes: 20000
  auth:
    bearer_tokens: ["s3cret-token"]
    basic: {username: am, password: "b4sic-pass"}
    read_bearer_tokens: ["reader"]
"""
TOKEN = {"authorization": "Bearer s3cret-token"}
BASIC = {"authorization": "Basic " + base64.b64encode(b"am:b4sic-pass").decode()}
READ = {"authorization": "Bearer reader"}


async def test_bad_input_gets_the_documented_status_and_loses_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path, AUTH), clock) as rx:
        good = [make_alert("payment-service"), make_alert("cart")]
        accepted = await rx.post(good, **TOKEN)
        assert accepted.status_code == 200
        (inc,) = accepted.json()["incidents"]

        async def send(content: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
            r = await rx.client.post("/webhook/alertmanager", content=content, headers=headers)
            return r.status_code, r.json()

        huge = body([make_alert(f"svc-{i}") for i in range(200)])
        assert len(huge) > 20000
        # Auth comes first, then size, then JSON syntax, then the schema.
        assert (await send(huge, {}))[0] == 401
        assert (await send(b"{nope", {"authorization": "Bearer wrong"}))[0] == 401
        assert (await send(huge, TOKEN))[0] == 413
        assert (await send(b"{nope" + b" " * 30000, TOKEN))[0] == 413
        code, err = await send(b'{"alerts": [', TOKEN)
        assert code == 400
        assert "not valid JSON" in str(err["error"])

        wrong_type = make_batch([{**make_alert("cart"), "labels": {"service": 7}}])
        code, err = await send(json.dumps(wrong_type).encode(), BASIC)
        assert code == 422
        assert err["errors"] == [
            {"field": "alerts[0].labels.service", "reason": "Input should be a valid string"}
        ]
        missing = make_batch([])
        del missing["alerts"]
        code, err = await send(json.dumps(missing).encode(), TOKEN)
        assert (code, err["errors"]) == (422, [{"field": "alerts", "reason": "Field required"}])
        code, err = await send(b"[1, 2]", TOKEN)
        assert code == 422

        # What was accepted before is all still there.
        detail = await rx.client.get(f"/api/v1/incidents/{inc}", headers=READ)
        assert detail.status_code == 200
        assert detail.json()["alert_count"] == 2
        metrics = (await rx.client.get("/metrics")).text
        assert 'journey_receiver_webhook_requests_total{code="413"} 2.0' in metrics
        assert 'journey_receiver_webhook_requests_total{code="422"} 3.0' in metrics


async def test_updated_at_says_when_anything_about_the_incident_changed(
    tmp_path: Path, clock: FakeClock
) -> None:
    # A client polling for what changed since it last looked must see feedback and the
    # resolve, not only changes to the alerts.
    async with harness(write_config(tmp_path), clock) as rx:
        alert = make_alert("payment-service")
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(30)  # group_wait: opened and notified
        told = await rx.incident(inc)
        assert told["updated_at"] == told["notified_at"] > told["created_at"]
        clock.advance(60)
        fed = await rx.client.post(f"/api/v1/incidents/{inc}/feedback", json={"useful": True})
        assert fed.status_code < 300, fed.text
        assert (await rx.incident(inc))["updated_at"] == rfc3339(clock.ms)
        clock.advance(60)
        await rx.post([resolved(alert)])
        await rx.tick(300)  # resolve_after
        detail = await rx.incident(inc)
        assert detail["status"] == "resolved"
        assert detail["updated_at"] == detail["resolved_at"]
        (summary,) = (await rx.client.get("/api/v1/incidents?status=resolved")).json()["incidents"]
        assert summary["updated_at"] == detail["resolved_at"]


async def test_read_endpoints_have_their_own_token(tmp_path: Path, clock: FakeClock) -> None:
    async with harness(write_config(tmp_path, AUTH), clock) as rx:
        assert (await rx.client.get("/api/v1/incidents")).status_code == 401
        assert (await rx.client.get("/api/v1/incidents", headers=READ)).status_code == 200
        assert (await rx.client.get("/api/v1/incidents", headers=TOKEN)).status_code == 200
        # A read token cannot write: a credential we know, of the wrong role.
        assert (await rx.post([make_alert()], **READ)).status_code == 403
        assert (await rx.client.get("/healthz")).status_code == 200


ROLES = """
server:
  auth:
    bearer_tokens: ["webhook-token"]
    read_bearer_tokens: ["read-token"]
    admin_bearer_tokens: ["admin-token"]
    metrics_need_read_token: true
"""


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        # Alertmanager's token posts alerts, events and feedback and reads; never admin.
        ("webhook-token", {"write": 200, "read": 200, "admin": 403, "metrics": 200}),
        ("read-token", {"write": 403, "read": 200, "admin": 403, "metrics": 200}),
        ("admin-token", {"write": 403, "read": 200, "admin": 200, "metrics": 200}),
        ("no-such-token", {"write": 401, "read": 401, "admin": 401, "metrics": 401}),
        (None, {"write": 401, "read": 401, "admin": 401, "metrics": 401}),
    ],
)
async def test_each_role_is_refused_where_it_does_not_belong(
    tmp_path: Path, clock: FakeClock, token: str | None, expected: dict[str, int]
) -> None:
    async with harness(write_config(tmp_path, ROLES), clock) as rx:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        got = {
            "write": (await rx.post([make_alert()], **headers)).status_code,
            "read": (await rx.client.get("/api/v1/incidents", headers=headers)).status_code,
            "admin": (await rx.client.post("/-/reload", headers=headers)).status_code,
            "metrics": (await rx.client.get("/metrics", headers=headers)).status_code,
        }
        assert got == expected
        redrive = await rx.client.post("/api/v1/deliveries/redrive", content=b"{}", headers=headers)
        assert redrive.status_code == expected["admin"]
        if expected["admin"] == 403:
            assert "admin_bearer_tokens" in redrive.json()["error"]


async def test_without_admin_tokens_only_sighup_reloads(tmp_path: Path, clock: FakeClock) -> None:
    async with harness(write_config(tmp_path, AUTH), clock) as rx:
        r = await rx.client.post("/-/reload", headers=TOKEN)
        assert r.status_code == 403
        assert "admin_bearer_tokens" in r.json()["error"]


async def test_store_down_is_a_503_that_alertmanager_retries(
    tmp_path: Path, clock: FakeClock
) -> None:
    down = open_store(
        f"redis://127.0.0.1:{free_port()}/0",
        StoreSettings(
            key_prefix="down",
            retention_ms=60_000,
            events_retention_ms=60_000,
            reopen_window_ms=60_000,
        ),
    )
    async with harness(write_config(tmp_path), clock, store=down) as rx:
        r = await rx.post([make_alert()])
        assert r.status_code == 503
        assert "store unavailable" in r.json()["error"]
        assert (await rx.client.get("/readyz")).status_code == 503
        assert (await rx.client.get("/healthz")).status_code == 200


async def test_incident_queries(tmp_path: Path, clock: FakeClock) -> None:
    async with harness(write_config(tmp_path), clock) as rx:
        (a,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        clock.advance(1)
        (b,) = (await rx.post([make_alert("legacy-batch")])).json()["incidents"]
        assert [i["id"] for i in await rx.incidents()] == [b, a]
        assert [i["id"] for i in await rx.incidents("journey=checkout")] == [a]
        assert [i["id"] for i in await rx.incidents("status=resolved")] == []
        assert [i["id"] for i in await rx.incidents("limit=1")] == [b]
        summary = (await rx.incidents())[1]
        assert set(summary) == {
            "id", "key", "journey", "status", "priority", "score", "title",
            "alert_count", "firing_count", "created_at", "updated_at",
        }  # fmt: skip
        bad = await rx.client.get("/api/v1/incidents?status=closed")
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "status"
        assert (await rx.client.get("/api/v1/incidents?limit=0")).status_code == 422
        assert (await rx.client.get("/api/v1/incidents/nope")).status_code == 404


async def test_events_are_accepted_and_stored(tmp_path: Path, clock: FakeClock) -> None:
    async with harness(write_config(tmp_path), clock) as rx:
        events = [
            {"type": "deploy", "service": "payment-service", "version": "2026.04.18-3"},
            {"type": "config", "service": "cart", "at": "2026-04-18T08:00:00Z"},
        ]
        r = await rx.client.post("/api/v1/events", content=json.dumps(events))
        assert (r.status_code, r.json()) == (202, {"accepted": 2})
        stored = await rx.receiver.store.events_between(0, clock.ms)
        assert sorted(json.loads(e)["service"] for e in stored) == ["cart", "payment-service"]
        bad = await rx.client.post("/api/v1/events", content=b'{"type": "deploy"}')
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "service"


async def test_feedback_is_recorded_on_the_incident(tmp_path: Path, clock: FakeClock) -> None:
    async with harness(write_config(tmp_path), clock) as rx:
        (inc,) = (await rx.post([make_alert()])).json()["incidents"]
        fb = {"useful": True, "action": "rolled back payment-service", "cause": "deploy"}
        r = await rx.client.post(f"/api/v1/incidents/{inc}/feedback", content=json.dumps(fb))
        assert r.status_code == 201
        detail = await rx.incident(inc)
        assert detail["feedback"][0]["action"] == "rolled back payment-service"
        missing = await rx.client.post("/api/v1/incidents/nope/feedback", content=json.dumps(fb))
        assert missing.status_code == 404
        bad = await rx.client.post(f"/api/v1/incidents/{inc}/feedback", content=b'{"useful": 1}')
        assert bad.status_code == 422
        rollup = {"useful": False, "wrong_cause": True, "wrong_grouping": True, "by": "dana"}
        r = await rx.client.post(f"/api/v1/incidents/{inc}/feedback", content=json.dumps(rollup))
        assert r.status_code == 201
        last = (await rx.incident(inc))["feedback"][-1]
        assert {k: last[k] for k in rollup} == rollup
        loose = await rx.client.post(
            f"/api/v1/incidents/{inc}/feedback", content=b'{"useful": false, "wrong_cause": "y"}'
        )
        assert loose.json()["errors"][0]["field"] == "wrong_cause"


async def test_reload_rejects_a_bad_file_and_keeps_the_running_config(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(EXAMPLE_JOURNEYS.read_text())
    async with harness(write_config(tmp_path, journeys=journeys), clock) as rx:
        journeys.write_text("journeys:\n  - id: checkout\n    weight: 7\n")
        with caplog.at_level("ERROR"):
            r = await rx.client.post("/-/reload")
        assert r.status_code == 400
        assert "running config is kept" in r.json()["error"]
        assert any("weight" in e["reason"] for e in r.json()["errors"])
        # In the log too, as a rejected SIGHUP is: whoever reads it learns why.
        assert "reload (POST /-/reload) rejected, running config kept:" in caplog.text
        assert f"{journeys}:3: journeys[0].weight" in caplog.text
        (inc,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        assert inc.startswith("checkout-")

        journeys.write_text(
            "journeys:\n"
            "  - id: payments\n    name: Payments\n    weight: 1.0\n"
            "    owner: {team: payments}\n"
            "    stages: [{id: pay, weight: 1.0, match: ['service=\"payment-service\"']}]\n"
        )
        assert (await rx.client.post("/-/reload")).status_code == 200
        (moved,) = (await rx.post([make_alert("payment-service", alertname="B")])).json()[
            "incidents"
        ]
        assert moved.startswith("payments-")
        metrics = (await rx.client.get("/metrics")).text
        assert 'journey_receiver_config_reloads_total{outcome="failure"} 1.0' in metrics
        assert "journey_receiver_config_last_reload_successful 1.0" in metrics


async def test_a_reload_reads_a_rotated_secret_file_again(tmp_path: Path, clock: FakeClock) -> None:
    # A Kubernetes Secret mounted as a volume (no subPath) is updated in place; the Helm
    # chart's README counts on a reload reading its new content (an env var never changes).
    tokens = tmp_path / "webhook-tokens"
    tokens.write_text("old-token\n")
    cfg = write_config(
        tmp_path,
        f"server:\n  auth:\n    bearer_tokens_file: {tokens}\n"
        "    admin_bearer_tokens: [admin-token]\n",
    )
    old, new = {"authorization": "Bearer old-token"}, {"authorization": "Bearer new-token"}
    async with harness(cfg, clock) as rx:
        assert (await rx.post([make_alert("cart")], **old)).status_code == 200
        tokens.write_text("new-token\n")
        assert (await rx.post([make_alert("cart")], **new)).status_code == 401
        reload = await rx.client.post("/-/reload", headers={"authorization": "Bearer admin-token"})
        assert reload.status_code == 200
        assert (await rx.post([make_alert("cart")], **new)).status_code == 200
        assert (await rx.post([make_alert("cart")], **old)).status_code == 401


def test_open_write_endpoints_are_announced(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    from receiver.app import create_app

    with caplog.at_level("WARNING", logger="journey_receiver"):
        create_app(write_config(tmp_path), clock=clock)
    assert "no server.auth credentials configured" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="journey_receiver"):
        create_app(write_config(tmp_path, AUTH), clock=clock)
    assert "no server.auth credentials" not in caplog.text


async def test_a_chunked_body_is_cut_off_at_the_limit_too(tmp_path: Path, clock: FakeClock) -> None:
    async with harness(write_config(tmp_path, AUTH), clock) as rx:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):  # 100 x 1 KiB, five times the 20000-byte limit
                yield b" " * 1024

        r = await rx.client.post("/webhook/alertmanager", content=chunks(), headers=TOKEN)
        assert r.status_code == 413
        assert "larger than the limit of 20000 bytes" in r.json()["error"]


async def test_after_a_reload_regroups_alerts_their_incident_still_resolves(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = write_config(tmp_path)
    async with harness(cfg, clock) as rx:
        alert = make_alert("legacy-batch", cluster="k1")  # unmapped: the default group_by
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(30)
        cfg.write_text(
            cfg.read_text().replace("grouping: {", "grouping: {group_by: [env, region, cluster], ")
        )
        assert (await rx.client.post("/-/reload")).status_code == 200
        # The resolution goes to the incident that paged for it, not to a new key.
        assert (
            await rx.post([{**alert, "status": "resolved", "endsAt": "2026-04-18T08:20:00Z"}])
        ).json()["incidents"] == [inc]
        await rx.tick(300)
        assert rx.sink.kinds() == ["open", "resolve"]
        assert (await rx.incident(inc))["status"] == "resolved"


async def test_the_list_and_the_detail_agree_while_gathering_and_after(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path), clock) as rx:
        await rx.post([make_alert("payment-service", severity="critical")])
        shared = ("id", "status", "priority", "score", "title", "alert_count", "firing_count")

        async def both() -> tuple[dict[str, object], dict[str, object]]:
            (summary,) = await rx.incidents()
            return summary, await rx.incident(str(summary["id"]))

        summary, detail = await both()
        assert summary["title"] == (
            f"checkout/eu {detail['priority']} — 1 alert, gathering until group_wait ends"
        )
        assert detail["priority"] is not None
        assert {k: summary[k] for k in shared} == {k: detail[k] for k in shared}
        assert detail["notified_at"] is None

        await rx.tick(30)  # group_wait ends: the first notification goes out
        await rx.post([make_alert("cart", severity="warning")])  # and the incident moves on
        summary, detail = await both()
        assert "gathering" not in str(detail["title"])
        assert detail["notified_at"] is not None
        assert detail["alert_count"] == 2
        assert {k: summary[k] for k in shared} == {k: detail[k] for k in shared}


async def test_401_is_counted_and_logged_without_the_credential(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(write_config(tmp_path, AUTH), clock) as rx:
        guess = "Bearer s3cret-tokeN-near-miss"
        with caplog.at_level("WARNING", logger="journey_receiver"):
            r = await rx.client.post(
                "/webhook/alertmanager",
                content=body([make_alert()]),
                headers={"authorization": guess},
            )
            assert r.status_code == 401
            assert (await rx.client.post("/webhook/alertmanager", content=b"{}")).status_code == 401
            reload = await rx.client.post("/-/reload", headers={"authorization": "Bearer x"})
            assert reload.status_code == 401
        metrics = (await rx.client.get("/metrics")).text
        assert 'journey_receiver_webhook_requests_total{code="401"} 2.0' in metrics
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 3
        assert all("from 127.0.0.1" in w for w in warnings), warnings
        assert "POST /webhook/alertmanager" in warnings[0]
        assert "POST /-/reload" in warnings[2]
        assert "s3cret" not in caplog.text
        assert "reader" not in caplog.text


async def test_unknown_paths_and_methods_answer_json(tmp_path: Path, clock: FakeClock) -> None:
    async with harness(write_config(tmp_path), clock) as rx:
        missing = await rx.client.get("/api/v1/nope")
        assert (missing.status_code, missing.json()) == (404, {"error": "no such endpoint"})
        assert missing.headers["content-type"] == "application/json"
        wrong = await rx.client.get("/webhook/alertmanager")
        assert wrong.status_code == 405
        assert wrong.json() == {"error": "method not allowed; this path takes POST"}
        assert wrong.headers["allow"] == "POST"


def _refusing(*args: object, **kwargs: object) -> NoReturn:
    raise ssl.SSLError("a client that cannot be made")


async def test_a_reload_rebuilds_the_sinks_and_refuses_ones_it_cannot_build(
    tmp_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routing = "routing: {log: [P1, P2, P3, P4, P5]}\n"
    cfg = write_config(tmp_path, routing + "sinks: {log: {format: json}}\n")
    async with harness(cfg, clock, configured_sinks=True) as rx:
        before = rx.receiver.outbox.sinks["log"]
        cfg.write_text(cfg.read_text().replace("format: json", "format: text"))
        assert (await rx.client.post("/-/reload")).status_code == 200
        rebuilt = rx.receiver.outbox.sinks["log"]
        assert rebuilt is not before and rebuilt.format == "text"  # type: ignore[attr-defined]
        with caplog.at_level("INFO", logger="journey_receiver.notifications"):
            await rx.post([make_alert("payment-service")])
            await rx.tick(30)
        assert "[open] checkout/eu" in caplog.text  # the new sink wrote the chart as text

        # A Slack sink whose CA bundle is no certificate: refused as the file is read.
        bad_ca = tmp_path / "ca.pem"
        bad_ca.write_text("not a certificate\n")
        cfg.write_text(
            cfg.read_text().replace(
                "sinks: {log: {format: text}}",
                f"sinks: {{log: {{format: text}}, slack: {{token: xoxb-1, ca_file: {bad_ca}}}}}",
            )
        )
        r = await rx.client.post("/-/reload")
        assert r.status_code == 400
        assert r.json()["errors"][0]["field"] == "sinks.slack.ca_file"
        assert rx.receiver.outbox.sinks == {"log": rebuilt}
        # One that cannot be built all the same (its TLS refused as the client is made):
        # refused, the running sinks kept.
        cfg.write_text(cfg.read_text().replace(f", ca_file: {bad_ca}", ""))
        with monkeypatch.context() as patched:
            patched.setattr(slack_sink, "web_client", _refusing)
            r = await rx.client.post("/-/reload")
        assert r.status_code == 400
        assert r.json()["errors"][0]["field"] == "sinks"
        assert "cannot build: SSLError" in r.json()["errors"][0]["reason"]
        assert rx.receiver.outbox.sinks == {"log": rebuilt}


async def test_a_reload_rebuilds_prometheus_and_the_feeds(tmp_path: Path, clock: FakeClock) -> None:
    cfg = write_config(tmp_path, "prometheus: {url: 'http://127.0.0.1:9', timeout: 1s}\n")
    async with harness(cfg, clock) as rx:
        before = rx.receiver.pipeline.enricher
        assert before is not None and before.kpi_source is not None
        cfg.write_text(cfg.read_text().replace("127.0.0.1:9'", "127.0.0.1:19'"))
        assert (await rx.client.post("/-/reload")).status_code == 200
        after = rx.receiver.pipeline.enricher
        assert after is not before and after is rx.receiver.enricher
        closed: list[bool] = []

        async def aclose() -> None:
            closed.append(True)

        before.aclose = aclose  # type: ignore[method-assign]
        await rx.tick(1)  # the next round: nothing can still use the old one
        assert closed == [True]


async def test_a_reload_applies_the_stores_settings_but_not_its_address(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = write_config(tmp_path)
    async with harness(cfg, clock) as rx:
        text = cfg.read_text().replace(
            "store: {url: 'memory://'}", "store: {url: 'memory://', retention: 2d}"
        )
        cfg.write_text(text)
        with caplog.at_level("WARNING"):
            answer = await rx.client.post("/-/reload")
        assert answer.json() == {"status": "reloaded", "restart_needed": []}
        assert "store" not in caplog.text
        assert rx.receiver.peer.store_retention_ms == 2 * 86_400_000
        assert rx.receiver.store.settings.retention_ms == 2 * 86_400_000
        cfg.write_text(text.replace("memory://", "redis://127.0.0.1:9/0"))
        with caplog.at_level("WARNING"):
            answer = await rx.client.post("/-/reload")
        # Said to the one who asked, and in the log.
        assert answer.json() == {"status": "reloaded", "restart_needed": ["store.url"]}
        assert "reload: store.url changed: takes effect after a restart" in caplog.text
        caplog.clear()
        opened = "server: {auth: {allow_open: true}}"
        cfg.write_text(cfg.read_text().replace(opened, opened[:-1] + ", port: 9999}"))
        with caplog.at_level("WARNING"):
            answer = await rx.client.post("/-/reload")
        # Against what runs: the store's address still waits for a restart.
        assert answer.json()["restart_needed"] == ["store.url", "server.port"]
        assert "reload: store.url, server.port changed: takes effect after a restart" in (
            caplog.text
        )
        # Both put back as they run: nothing waits for a restart any more.
        cfg.write_text(text)
        answer = await rx.client.post("/-/reload")
        assert answer.json() == {"status": "reloaded", "restart_needed": []}


async def test_a_reload_of_the_retention_reaches_how_long_pagerduty_keys_are_kept(
    tmp_path: Path, clock: FakeClock, world: Fakes
) -> None:
    day = 86_400_000
    cfg = write_config(tmp_path, world.config())
    async with harness(cfg, clock, configured_sinks=True) as rx:
        assert rx.receiver.outbox.sinks["pagerduty"]._keep_ms == 4 * 7 * day  # type: ignore[attr-defined]
        memory = "store: {url: 'memory://'}"
        cfg.write_text(cfg.read_text().replace(memory, memory[:-1] + ", retention: 60d}"))
        assert (await rx.client.post("/-/reload")).status_code == 200
        assert rx.receiver.outbox.sinks["pagerduty"]._keep_ms == 4 * 60 * day  # type: ignore[attr-defined]


async def test_a_rejected_reload_closes_every_client_it_had_built(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(tmp_path, "prometheus: {url: 'http://127.0.0.1:9', timeout: 1s}\n")
    async with harness(cfg, clock) as rx:
        built: list[JsonFeed] = []

        def second_refused(*args: Any, **kwargs: Any) -> JsonFeed:
            if built:
                _refusing()
            built.append(JsonFeed(*args, **kwargs))
            return built[-1]

        monkeypatch.setattr(feed_registry, "JsonFeed", second_refused)
        feeds = "[{type: json, name: a, url: 'http://127.0.0.1:9'}, " + (
            "{type: json, name: b, url: 'http://127.0.0.1:9'}]"
        )
        cfg.write_text(cfg.read_text().replace("timeout: 1s}", "timeout: 2s}"))
        cfg.write_text(cfg.read_text() + f"events: {{feeds: {feeds}}}\n")
        r = await rx.client.post("/-/reload")
        assert (r.status_code, r.json()["errors"][0]["field"]) == (400, "prometheus")
        (first,) = built
        assert not first._client.is_closed
        await rx.tick(1)  # the next round closes what the rejected reload had made
        assert first._client.is_closed


async def test_a_reload_that_cannot_build_the_alertmanager_client_keeps_everything(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(
        tmp_path,
        "routing: {log: [P1, P2, P3, P4, P5]}\n"
        "alertmanager: {urls: ['http://127.0.0.1:9'], restart_grace: 0s}\n",
    )
    async with harness(cfg, clock, configured_sinks=True) as rx:
        client = rx.receiver.peer.client
        sinks = dict(rx.receiver.outbox.sinks)
        # Sinks change too, and are built first: the Alertmanager client then fails.
        cfg.write_text(
            cfg.read_text().replace("restart_grace: 0s}", "restart_grace: 1s}")
            + "sinks: {log: {format: json}}\n"
        )
        monkeypatch.setattr(app_module, "AlertmanagerClient", _refusing)
        r = await rx.client.post("/-/reload")
        assert r.status_code == 400
        assert r.json()["errors"][0]["field"] == "alertmanager"
        assert "cannot build: SSLError" in r.json()["errors"][0]["reason"]
        assert rx.receiver.peer.client is client
        assert rx.receiver.outbox.sinks == sinks
        assert rx.receiver.settings.config.alertmanager is not None
        assert rx.receiver.settings.config.alertmanager.restart_grace == 0
        await rx.tick(1)  # the next round closes what the rejected reload built
        assert not client._client.is_closed  # type: ignore[union-attr]
