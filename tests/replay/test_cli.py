"""``journey-receiver replay``'s refusals: each names what is wrong, exit 1, nothing else
printed. None of these reach a Prometheus that answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.cli import main
from tests.support.processes import free_port
from tests.support.prometheus import fake_http

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


def test_a_journeys_file_with_an_error_is_refused_like_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "journeys.yaml"
    bad.write_text("journeys:\n  - id: checkout\n    weight: 3\n")
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--journeys", str(bad))
    assert err.startswith(f"{bad}:")
    assert "journeys[0]" in err


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


def test_a_window_that_ends_before_it_starts_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--since",
                  "2026-04-18T10:00:00Z", "--until", "2026-04-18T09:00:00Z")  # fmt: skip
    assert err == "journey-receiver replay: --since 2026-04-18T10:00:00Z is not before --until\n"
    err = refused(capsys, "--prometheus", "http://127.0.0.1:9", "--step", "often")
    assert err.startswith("journey-receiver replay: --step: ")
