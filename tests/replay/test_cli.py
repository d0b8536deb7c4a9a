"""``journey-receiver replay``'s refusals (each names what is wrong, exit 1, nothing else
printed; none reaches a Prometheus that answers) and its warnings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from receiver.cli import main
from receiver.config import check
from receiver.replay import replay_settings
from tests.support.processes import free_port
from tests.support.prometheus import fake_http
from tests.test_config import checkout

DATA = Path(__file__).resolve().parent / "data"


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["replay", *argv]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    return err


def test_a_bad_value_in_a_section_replay_reads_is_named_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(
        "server: {auth: {bearer_tokens: ['${WEBHOOK_TOKEN}']}}\n"
        f"journeys_file: {DATA / 'journeys-old.yaml'}\n"
        "grouping:\n  group_wait: soon\n"
        "routing: {pagerduty: [P9]}\n"
    )
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--config", str(cfg))
    assert err.startswith(f"{cfg}:4: grouping.group_wait: ")
    cfg.write_text(cfg.read_text().replace("soon", "30s"))
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--config", str(cfg))
    assert err.startswith(f"{cfg}:5: routing.pagerduty[0]: ")
    cfg.write_text(cfg.read_text().replace("pagerduty: [P9]", "pagerdutty: [P1]"))
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--config", str(cfg))
    assert err.startswith(f"{cfg}:5: routing.pagerdutty: not a sink: one of ")


def test_a_journeys_file_with_an_error_is_refused_like_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "journeys.yaml"
    bad.write_text("journeys:\n  - id: checkout\n    weight: 3\n")
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--journeys", str(bad))
    assert err.startswith(f"{bad}:")
    assert "journeys[0]" in err


def test_a_journeys_file_check_refuses_for_the_receiver_it_runs_under_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Valid alone, but its KPI uses a label the receiver.yaml's group_by does not give
    # incidents, and its title a field no suggestion has: a reload would refuse it.
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text("grouping: {group_by: [region]}\noutbox: {lease: 10m}\n")
    journeys = checkout(
        tmp_path,
        "    kpis:\n"
        "      - {name: orders, query: 'sum(x{env=\"$env\"})', unit: x, bad_when: down}\n"
        "    actions:\n"
        "      - {title: 'Roll back {servce}', when: {change_type: deploy}}\n",
    )
    argv = ("--prometheus", "http://127.0.0.1:9", "--config", str(cfg), "--journeys")
    err = refused(capsys, *argv, str(journeys))
    assert err.splitlines()[0].startswith(f"{journeys}:8: journeys[0].kpis[0].query: uses $env")
    assert err.splitlines()[1].startswith(f"{journeys}:10: journeys[0].actions[0].title: ")
    assert "--against" not in err
    err = refused(capsys, *argv, str(DATA / "journeys-new.yaml"), "--against", str(journeys))
    assert err.startswith(f"{journeys}:8: journeys[0].kpis[0].query: uses $env")
    # A run's timeout is measured against receiver.yaml's outbox.lease, as check does.
    journeys.write_text(
        journeys.read_text()
        .replace('{env="$env"}', '{region="$region"}')
        .replace("{servce}", "{service}")
        .replace(
            "when: {change_type: deploy}}",
            "when: {change_type: deploy}, id: rollback,\n"
            "         run: {webhook: {url: 'https://deploy.example/x', secret: s, timeout: 2m}}}",
        )
    )
    assert check(None, journeys, ["region"], 600.0) == []
    assert replay_settings(cfg, journeys).journeys.journeys[0].actions[0].id == "rollback"
    cfg.write_text("grouping: {group_by: [region]}\n")
    err = refused(capsys, *argv, str(journeys))
    assert "journeys[0].actions[0].run.webhook.timeout: 120s needs outbox.lease" in err


def test_prometheus_errors_and_silence_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journeys = ["--journeys", str(DATA / "journeys-old.yaml")]
    nobody = f"http://127.0.0.1:{free_port()}"
    err = refused(capsys, "--prometheus", nobody, *journeys)
    assert err.startswith(f"journey-receiver replay: {nobody}/api/v1/query_range: ConnectError")
    answer = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"})
    with fake_http(400, answer.encode()) as prometheus:
        err = refused(capsys, "--prometheus", prometheus.url, *journeys)
    assert err == (
        f"journey-receiver replay: {prometheus.url}/api/v1/query_range: HTTP 400: parse error\n"
    )
    with fake_http(200, b"<html>", "text/html") as other:
        err = refused(capsys, "--prometheus", other.url, *journeys)
        assert err.endswith("HTTP 200: not a Prometheus query API answer (check --prometheus)\n")
        # A password in the URL (basic auth) is used, and never printed.
        with_password = other.url.replace("://", "://ci:s3cret@")
        err = refused(capsys, "--prometheus", with_password, *journeys)
        assert err.startswith(f"journey-receiver replay: {other.url}/api/v1/query_range: HTTP 200")
        assert other.server.seen[-1].headers["authorization"] == "Basic Y2k6czNjcmV0"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "give Prometheus' URL (or set PROMETHEUS_URL)"),
        ("http://[::1", "not a URL (Invalid port: ':1')"),
        ("prometheus:9090", "an http:// or https:// URL with a host"),
        ("http://p:9090/?token=s3cret", "no query or fragment (the API paths are added to it)"),
    ],
)
def test_a_prometheus_url_that_cannot_be_used_is_refused_and_never_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, given: str, why: str
) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    err = refused(capsys, "--prometheus", given)
    assert err == f"journey-receiver replay: --prometheus: {why}\n"
    # From the environment as from the option.
    monkeypatch.setenv("PROMETHEUS_URL", given)
    assert refused(capsys) == err


def test_a_window_that_ends_before_it_starts_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--since",
                  "2026-04-18T10:00:00Z", "--until", "2026-04-18T09:00:00Z")  # fmt: skip
    assert err == "journey-receiver replay: --since 2026-04-18T10:00:00Z is not before --until\n"
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--step", "often")
    assert err.startswith("journey-receiver replay: --step: ")
    # The grid is in whole milliseconds: a step that rounds to none is refused, said so.
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--step", "0.0001")
    assert err == "journey-receiver replay: --step and --am-group-interval must be 1ms or more\n"


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--until", "yesterday", "not an RFC 3339 time (2026-04-18T08:00:00Z) or Unix seconds"),
        ("--until", "inf", "not an RFC 3339 time (2026-04-18T08:00:00Z) or Unix seconds"),
        ("--until", "nan", "not an RFC 3339 time (2026-04-18T08:00:00Z) or Unix seconds"),
        (
            "--until",
            "99999999999999",
            "not an RFC 3339 time (2026-04-18T08:00:00Z) or Unix seconds",
        ),
        ("--since", "7x", "not a duration (7d, 36h), an RFC 3339 time or Unix seconds"),
    ],
)
def test_a_time_that_cannot_be_read_names_its_option(
    capsys: pytest.CaptureFixture[str], option: str, value: str, why: str
) -> None:
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", option, value)
    assert err == f"journey-receiver replay: {option} {value!r}: {why}\n"


def test_since_in_unix_seconds_is_an_instant_not_a_duration() -> None:
    from receiver.replay.command import _window

    assert _window("1776499200", "1776502800") == (1776499200_000, 1776502800_000)
    assert _window("1h", "1776502800") == (1776499200_000, 1776502800_000)
    # A window reaching into the future ends now.
    since, until = _window("1h", "4102444800")  # 2100-01-01
    assert until - since == 3_600_000 and abs(until / 1000 - time.time()) < 60
    assert _window("2026-04-18T08:00:00", "2026-04-18T09:00:00Z") == (
        1776499200_000,
        1776502800_000,
    )
    # RFC 3339 allows a lowercase t and z.
    assert _window("2026-04-18t08:00:00z", "2026-04-18t09:00:00z") == (
        1776499200_000,
        1776502800_000,
    )


def test_untrusted_text_is_made_safe_for_a_terminal() -> None:
    from receiver.terminal import shown

    evil = 'region="eu\x9b2J\u202eevil\x1b[31m"'
    assert shown(evil) == 'region="eu\\x9b2J\\u202eevil\\x1b[31m"'
    assert all(c.isprintable() for c in shown(evil))
    assert shown("x" * 1000) == "x" * 159 + "…"


def test_a_window_without_alerts_says_so_and_still_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})
    with fake_http(200, empty.encode()) as prometheus:
        assert main(["replay", "--prometheus", prometheus.url, "--since", "1h",
                     "--journeys", str(DATA / "journeys-old.yaml")]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "total" in out
    assert err == (
        f"journey-receiver replay: warning: no alert fired in the window at {prometheus.url} "
        "(check --prometheus, and that Prometheus still keeps ALERTS that far back)\n"
    )
