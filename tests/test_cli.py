"""The command line: check, explain, and serve (a real process, reloaded by SIGHUP)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from receiver.cli import _local_url, log_to_stderr, main
from receiver.config import load_journeys
from receiver.errors import ConfigError
from receiver.explain import explain_batch
from tests.conftest import (
    EXAMPLE_CONFIG,
    EXAMPLE_JOURNEYS,
    PROMETHEUS_DATA,
    ROOT,
    T0,
    FakeClock,
    body,
    make_alert,
    resolved,
)
from tests.support.harness import harness, write_config
from tests.support.processes import free_port, running
from tests.support.prometheus import fake_http
from tests.support.receiver_process import poll
from tests.test_config import checkout
from tests.test_slo import JOURNEY

CLI = str(Path(sys.executable).parent / "journey-receiver")
DATA = Path(__file__).parent / "data" / "config"


def test_check_accepts_the_examples() -> None:
    assert main(["check", "--config", str(EXAMPLE_CONFIG)]) == 0


def test_check_names_file_line_and_field(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(
        "journeys:\n"
        "  - id: checkout\n"
        "    name: Checkout\n"
        "    weight: 1.0\n"
        "    owner: {team: payments}\n"
        "    stages:\n"
        "      - {id: pay, weight: -1, match: ['service=\"payment\"']}\n"
    )
    result = subprocess.run(
        [CLI, "check", "--journeys", str(journeys)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert f"{journeys}:7: journeys[0].stages[0].weight: -1 is below the minimum 0" in result.stderr


def test_check_warns_of_a_journeys_file_without_journeys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "journeys.yaml"
    empty.write_text("# nothing yet\njourneys: []\n")
    assert main(["check", "--journeys", str(empty)]) == 0
    out, err = capsys.readouterr()
    assert out == "config OK\n"
    assert err == (
        "warning: no journeys configured: every alert would be filed under the built-in "
        "'unmapped' journey\n"
    )
    assert main(["check", "--config", str(EXAMPLE_CONFIG)]) == 0
    assert capsys.readouterr().err == ""


def test_check_warns_of_what_is_valid_but_almost_surely_a_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journeys = checkout(
        tmp_path,
        "    runbooks: [{title: Pay, url: 'https://r.example/p', match: [service='payment']}]\n"
        "    slo: {objective: 0.999}\n",
    )
    assert main(["check", "--journeys", str(journeys)]) == 0
    out, err = capsys.readouterr()
    assert out == "config OK\n"
    assert err.splitlines() == [
        f"warning: {journeys}:7: journeys[0].runbooks[0].match[0]: service=\"'payment'\" "
        "compares the label with 'payment', quotes included (did you mean service=\"payment\"?)",
        f"warning: {journeys}:8: journeys[0].slo.objective: is in percent: 0.999 lets the "
        "journey be degraded 99.001% of the window and still meet it (did you mean 99.9?)",
    ]
    receiver = tmp_path / "receiver.yaml"
    receiver.write_text("server: {auth: {allow_open: true}}\n")
    assert main(["check", "--config", str(receiver)]) == 0
    assert capsys.readouterr().err.count("warning: ") == 2


def test_a_team_lead_checks_journeys_alone_without_the_operators_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # From a checkout whose config/receiver.yaml needs ${WEBHOOK_TOKEN} (unset here) and
    # groups by region only: the journeys file is checked against that group_by alone.
    conf = tmp_path / "config"
    conf.mkdir()
    (conf / "receiver.yaml").write_text(
        "server: {auth: {bearer_tokens: ['${WEBHOOK_TOKEN:-}']}}\ngrouping: {group_by: [region]}\n"
    )
    journeys = conf / "journeys.yaml"
    team = (Path(__file__).parent / "rules" / "data" / "journeys.yaml").read_text()
    journeys.write_text(team.replace("    group_by: [env, region]\n", ""))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALLOW_OPEN", raising=False)
    assert main(["check", "--journeys", "config/journeys.yaml"]) == 1
    assert "uses $env, which is not among the journey's group_by labels (region)" in (
        capsys.readouterr().err
    )
    (conf / "receiver.yaml").write_text("grouping: {group_by: [env, region]}\n")
    assert main(["check", "--journeys", "config/journeys.yaml"]) == 0
    assert capsys.readouterr().out == "config OK\n"
    # Online, what receiver.yaml sets up is called: all of it is read, secrets and all.
    assert main(["check", "--journeys", "config/journeys.yaml", "--online"]) == 1
    assert "server.auth.bearer_tokens: no write credential is configured" in (
        capsys.readouterr().err
    )


def test_check_reports_a_run_timeout_the_outbox_lease_would_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The timeout is the team lead's (journeys.yaml), the lease the operators'
    # (receiver.yaml): both checks say it, the team lead's with the lease of the file found.
    conf = tmp_path / "config"
    conf.mkdir()
    (conf / "receiver.yaml").write_text("server: {auth: {allow_open: true}}\noutbox: {lease: 2s}\n")
    (conf / "journeys.yaml").write_text(
        "journeys:\n"
        "  - id: checkout\n"
        "    name: Checkout\n"
        "    weight: 1.0\n"
        "    owner: {team: payments}\n"
        "    stages: [{id: pay, weight: 1.0, match: ['service=\"payment\"']}]\n"
        "    actions:\n"
        "      - id: rollback\n"
        "        title: Roll back\n"
        "        run: {webhook: {url: 'https://deploy.example/rb', secret: s, timeout: 10s}}\n"
    )
    monkeypatch.chdir(tmp_path)
    said = (
        "config/journeys.yaml:10: journeys[0].actions[0].run.webhook.timeout: 10s needs "
        "outbox.lease (receiver.yaml, 2s) to be at least 2 times it, 20s"
    )
    for args in (["--config", "config/receiver.yaml"], ["--journeys", "config/journeys.yaml"]):
        assert main(["check", *args]) == 1
        assert said in capsys.readouterr().err


@pytest.mark.parametrize("command", ["rules", "explain", "check"])
def test_commands_that_send_nothing_need_no_routing_key_in_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    # As SPEC's reference journeys.yaml writes it: "${PD_KEY_PAYMENTS}", no default. A team
    # lead's CI (or a fork's pull request) has no such secret; these commands use none.
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(
        EXAMPLE_JOURNEYS.read_text().replace("${PD_KEY_PAYMENTS:-}", "${JR_TEST_PD_KEY}")
    )
    assert "${JR_TEST_PD_KEY}" in journeys.read_text()
    monkeypatch.delenv("JR_TEST_PD_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no config/receiver.yaml to fall back on
    extra = ["--alerts", str(ROOT / "examples" / "storm.json")] if command == "explain" else []
    assert main([command, "--journeys", str(journeys), *extra]) == 0, capsys.readouterr().err
    # Serving it is another matter: the key would be used.
    with pytest.raises(ConfigError, match="environment variable JR_TEST_PD_KEY is not set"):
        load_journeys(journeys)


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    # `journey-receiver rules | head -1`, the reader gone before the rules are written.
    with subprocess.Popen(
        [CLI, "rules", "--journeys", str(EXAMPLE_JOURNEYS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=30) == 128 + signal.SIGPIPE
    assert err == ""


def test_explain_shows_keys_scores_and_sinks() -> None:
    result = subprocess.run(
        [CLI, "explain", "--alerts", str(ROOT / "examples" / "storm.json"),
         "--config", str(EXAMPLE_CONFIG), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert len(report["alerts"]) == 10
    by_key = {i["key"]: i for i in report["incidents"]}
    assert sorted(by_key) == [
        'checkout{env="prod",region="eu"}',
        'checkout{env="prod",region="us"}',
        'unmapped{env="prod",region="eu"}',
    ]
    eu = by_key['checkout{env="prod",region="eu"}']
    assert (eu["priority"], eu["alert_count"], eu["sinks"]) == ("P1", 8, ["log"])
    assert by_key['unmapped{env="prod",region="eu"}']["priority"] == "P5"


def test_explain_needs_no_credential_nor_secret_it_would_never_use() -> None:
    # A dry run listens on nothing and sends nothing: the example config as it is, with
    # neither WEBHOOK_TOKEN nor ALLOW_OPEN set (serve and check refuse it so).
    env = {k: v for k, v in os.environ.items() if k not in ("ALLOW_OPEN", "WEBHOOK_TOKEN")}
    result = subprocess.run(
        [CLI, "explain", "--alerts", str(ROOT / "examples" / "storm.json"),
         "--config", str(EXAMPLE_CONFIG)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("10 alert(s) → 3 incident(s)")


def test_explain_needs_none_of_the_sinks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A production receiver.yaml on a team lead's laptop: its tokens are ${VAR}s not set
    # there, or files not there. Nothing is sent: none of them is needed.
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(
        f"journeys_file: {ROOT / 'config' / 'journeys.yaml'}\n"
        'server: {auth: {bearer_tokens: ["${WEBHOOK_TOKEN}"]}}\n'
        'sinks:\n  slack: {token: "${SLACK_TOKEN}"}\n'
        f"  pagerduty: {{routing_key_file: {tmp_path / 'absent'}}}\n"
        "routing: {slack: [P1, P2], pagerduty: [P1]}\n"
    )
    for name in ("WEBHOOK_TOKEN", "SLACK_TOKEN", "ALLOW_OPEN"):
        monkeypatch.delenv(name, raising=False)
    code = main(
        ["explain", "--config", str(cfg), "--alerts", str(ROOT / "examples" / "storm.json")]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.startswith("10 alert(s) → 3 incident(s)")
    assert "pagerduty, slack" in out  # the P1's sinks, as routing picks them
    # serve and check still refuse it so.
    assert main(["check", "--config", str(cfg)]) == 1
    assert "SLACK_TOKEN is not set" in capsys.readouterr().err


def test_explain_reports_a_bad_body(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"alerts": [{"status": "firing"}]}')
    result = subprocess.run(
        [CLI, "explain", "--alerts", str(bad), "--config", str(EXAMPLE_CONFIG)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "alerts[0].labels" in result.stderr


def test_explain_names_a_prometheus_option_that_is_no_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    storm = str(ROOT / "examples" / "storm.json")
    code = main(["explain", "--alerts", storm, "--config", str(EXAMPLE_CONFIG),
                 "--prometheus", "prometheus:9090"])  # fmt: skip
    assert code == 1
    assert capsys.readouterr().err == (
        "journey-receiver explain: --prometheus: an http:// or https:// URL with a host\n"
    )


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text("grouping: {group_wait: soon}\n")
    result = subprocess.run(
        [CLI, "serve", "--config", str(cfg), "--host", "127.0.0.1", "--port", str(free_port())],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"{cfg}:1: grouping.group_wait" in result.stderr


def test_serve_reloads_journeys_on_sighup(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(EXAMPLE_JOURNEYS.read_text())
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(
        f"journeys_file: {journeys}\nstore: {{url: 'memory://'}}\n"
        "server: {auth: {allow_open: true}}\n"
    )
    port = free_port()
    args = [CLI, "serve", "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
    with running(args, port, tmp_path / "serve.log") as proc:
        url = f"http://127.0.0.1:{port}"

        def post(service: str, name: str) -> str:
            r = httpx.post(
                f"{url}/webhook/alertmanager", content=body([make_alert(service, alertname=name)])
            )
            assert r.status_code == 200, r.text
            (incident,) = r.json()["incidents"]
            return str(incident)

        assert post("search-api", "A").startswith("browse-")
        journeys.write_text(
            "journeys:\n"
            "  - id: discovery\n    name: Discovery\n    weight: 0.5\n"
            "    owner: {team: search}\n"
            "    stages: [{id: search, weight: 1.0, match: ['service=\"search-api\"']}]\n"
        )
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded" not in (tmp_path / "serve.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        assert post("search-api", "B").startswith("discovery-")

        journeys.write_text("journeys: [{id: broken}]\n")
        proc.send_signal(signal.SIGHUP)
        while "reload rejected" not in (tmp_path / "serve.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        assert post("search-api", "C").startswith("discovery-")


def test_explain_reads_kpis_from_prometheus_when_asked(prometheus_url: str, tmp_path: Path) -> None:
    journeys = PROMETHEUS_DATA / "journeys.yaml"
    batch = tmp_path / "batch.json"
    batch.write_bytes(body([make_alert("payment-service")]))
    from receiver.explain import explain_batch

    # The time of the test data's drop (tests/data/prometheus/README.md).
    report = explain_batch(batch.read_bytes(), None, journeys, 1_776_499_800_000, prometheus_url)
    (incident,) = report.incidents
    assert [(k["name"], k["deviation_pct"]) for k in incident["kpis"]] == [("conversion", -60.0)]
    assert (incident["priority"], incident["score"]) == ("P1", 80.0)
    assert "conversion \u221260% vs last week" in incident["title"]


def test_serve_with_no_journeys_says_every_alert_will_be_unmapped(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    # No --config, and no config/receiver.yaml in the working directory to fall back on.
    with running([CLI, "serve", "--host", "127.0.0.1", "--port", str(port)], port, log, tmp_path):
        pass
    text = log.read_text()
    assert "no journeys configured (no --config and no --journeys given)" in text
    assert "every alert will be filed under the built-in 'unmapped' journey" in text


def served_config(tmp_path: Path, auth: str) -> tuple[Path, int]:
    """A receiver.yaml serving the example journeys on loopback and a free port, with
    ``auth`` (``server.auth``'s inside), on the memory:// store."""
    port = free_port()
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(
        f"server: {{host: 127.0.0.1, port: {port}, auth: {{{auth}}}}}\n"
        f"journeys_file: {EXAMPLE_JOURNEYS}\nstore: {{url: 'memory://'}}\n"
    )
    return cfg, port


def test_the_greeting_shows_a_trial_with_the_credentials_it_asks_for(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path, "bearer_tokens: [w-token], read_bearer_tokens: [r-token]")
    log = tmp_path / "serve.log"
    with running([CLI, "serve", "--config", str(cfg)], port, log):
        poll(log.read_text, lambda t: "listening" in t, what="the greeting")
    lines = log.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if "listening" in line)
    deploy, storm, read = lines[start + 1 : start + 4]
    assert "curl -s -XPOST -H 'Authorization: Bearer <write token>' " in deploy
    assert "curl -s -XPOST -H 'Authorization: Bearer <write token>' " in storm
    assert (
        read
        == f"  curl -s -H 'Authorization: Bearer <read token>' http://127.0.0.1:{port}/api/v1/incidents"
    )
    assert "w-token" not in log.read_text() and "r-token" not in log.read_text()


def test_serve_without_a_config_listens_open_only_on_loopback(tmp_path: Path) -> None:
    # No --config, and no config/receiver.yaml in the working directory: no credential.
    result = subprocess.run(
        [CLI, "serve", "--port", str(free_port())],
        capture_output=True, text=True, check=False, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "no receiver.yaml (--config), so no credential: refusing to listen open on every "
        "address; pass --config, or --host 127.0.0.1 to try it on this machine\n"
    )


def test_serve_says_listening_only_once_the_port_is_bound(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [CLI, "serve", "--config", str(EXAMPLE_CONFIG), "--host", "127.0.0.1",
             "--port", str(port)],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "address already in use" in result.stderr.lower()
    assert "listening" not in result.stderr + result.stdout


def test_healthcheck_follows_the_configured_port(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path, "allow_open: true")
    health = [CLI, "healthcheck", "--config", str(cfg)]
    with running([CLI, "serve", "--config", str(cfg)], port, tmp_path / "serve.log"):
        up = subprocess.run(health, capture_output=True, text=True, check=False, timeout=30)
        assert (up.returncode, up.stderr) == (0, "")
        # Edited into an invalid file: a reload would refuse it and serving goes on, and
        # so must the health check.
        cfg.write_text(cfg.read_text() + "grouping: {group_wait: soon}\n")
        still = subprocess.run(health, capture_output=True, text=True, check=False, timeout=30)
        assert (still.returncode, still.stderr) == (0, "")
    down = subprocess.run(health, capture_output=True, text=True, check=False, timeout=30)
    assert down.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz" in down.stderr


def test_the_local_url_reads_the_environment_as_serve_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("JR_TEST_PORT", "19123"), ("JR_TEST_HOST", "127.0.0.2")):
        monkeypatch.setenv(name, value)
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text("server: {host: '${JR_TEST_HOST}', port: '${JR_TEST_PORT}'}\n")
    # healthcheck and deliveries call the receiver where serve listens.
    assert _local_url(cfg) == "http://127.0.0.2:19123"
    assert _local_url(cfg, 9999) == "http://127.0.0.2:9999"


def exec_form(pattern: str, dockerfile: str) -> list[str]:
    match = re.search(pattern, dockerfile, re.M)
    assert match, pattern
    form: list[str] = json.loads(match[1])
    return form


def test_the_container_healthcheck_reads_the_config_it_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    serve = exec_form(r"^CMD (\[.*\])$", dockerfile)
    check = exec_form(r"^HEALTHCHECK .*\n\s+CMD (\[.*\])$", dockerfile)
    assert serve[:2] == ["serve", "--config"]
    assert check == ["journey-receiver", "healthcheck", "--config", serve[2]]


# explain against serve: the same batch, the same incidents.


async def _served(cfg: Path, alerts: list[dict[str, object]]) -> dict[str, tuple[str, float]]:
    """What serve tells, per incident key, once group_wait is over: (priority, score)."""
    async with harness(cfg, FakeClock(T0)) as rx:
        r = await rx.post(alerts)
        assert r.status_code == 200, r.text
        await rx.tick(31)
        return {inc.key: (inc.priority, inc.score) for _kind, _id, inc in rx.sink.sent}


def test_explain_opens_no_incident_for_resolutions_serve_ignores(tmp_path: Path) -> None:
    # Resolutions of alerts nobody knew (the receiver restarted on memory://, or the
    # incident expired) open nothing in serve; the dry run must not show an incident,
    # a priority and sinks for them.
    cfg = write_config(tmp_path)
    alerts = [
        make_alert("payment-service", region="eu"),
        resolved(make_alert("payment-service", region="us", fingerprint="a2")),
    ]
    served = anyio.run(_served, cfg, alerts)
    report = explain_batch(body(alerts), cfg, None, round(T0 * 1000))
    explained = {i["key"]: (i["priority"], i["score"]) for i in report.incidents}
    assert explained == served


async def _told(cfg: Path, alerts: list[dict[str, object]], at: float) -> dict[str, str]:
    async with harness(cfg, FakeClock(at)) as rx:
        r = await rx.post(alerts)
        assert r.status_code == 200, r.text
        await rx.tick(31)
        return {inc.key: f"{inc.title}\n{inc.summary}" for _kind, _id, inc in rx.sink.sent}


def test_explain_dates_the_incident_to_the_millisecond_serve_does(tmp_path: Path) -> None:
    # Alertmanager's startsAt has nanoseconds (10:02:11.482910331Z); serve keeps
    # milliseconds by truncating them, and the dry run must tell the same "since".
    cfg = write_config(tmp_path)
    storm = json.loads((ROOT / "examples" / "storm.json").read_text())
    at = 1_776_506_700.0  # 10:05:00Z, after the storm's startsAt
    served = anyio.run(_told, cfg, storm["alerts"], at)
    report = explain_batch(body(storm["alerts"]), cfg, None, round(at * 1000) + 31_000)
    explained = {i["key"]: f"{i['title']}\n{i['summary']}" for i in report.incidents}
    assert explained == served


JOURNEYS_WITH_ERRORS = (
    JOURNEY
    + """    kpis:
      - {name: errors, query: 'sum(rate(errors_total{region="$region"}[5m]))', unit: "/s",
         bad_when: up}
"""
)


def test_explain_text_keeps_alert_text_on_its_line_and_off_the_terminals_controls() -> None:
    # The body is one Alertmanager sent: its labels and annotations are anyone's text.
    forged = "cart\nIncident forged{}\n  priority: P1 (score 99/100)\x1b]0;owned\x07\u202e"
    alert = make_alert(
        "payment-service", alertname=forged, annotations={"summary": forged}, region=forged
    )
    text = explain_batch(body([alert]), None, EXAMPLE_JOURNEYS).as_text()
    lines = text.splitlines()
    assert all(c.isprintable() for line in lines for c in line), text
    forged_lines = ("Incident forged", "  priority: P1 (score 99")
    assert not any(line.startswith(forged_lines) for line in lines)
    # Still there to read, escaped.
    assert "cart\\nIncident forged{}" in text and "\\x1b]0;owned\\x07\\u202e" in text


def test_explain_text_shows_a_kpi_gone_bad_from_zero_not_no_data(tmp_path: Path) -> None:
    # Errors from none last week to 30 now: measured, fully bad (the KPI factor is 1), and
    # "0 → 30" everywhere else; the dry run's text must not call it "no data".
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(JOURNEYS_WITH_ERRORS)
    now_s = 1_776_499_830  # 30 s after the alert's startsAt (08:10:00Z)
    then_s = now_s - 7 * 86400
    matrix = json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[then_s, "0"], [now_s, "30"]]}]}}
    ).encode()  # fmt: skip
    alert = make_alert("payment-service", starts_at="2026-04-18T08:10:00Z")
    with fake_http(200, matrix) as fake:
        report = explain_batch(body([alert]), None, journeys, now_s * 1000, fake.url)
    (incident,) = report.incidents
    assert {f["name"]: f["value"] for f in incident["score_breakdown"]}["kpi"] == 1.0
    kpi_lines = [line for line in report.as_text().splitlines() if "kpi:" in line]
    assert kpi_lines == ["  kpi:      errors 0 → 30 vs last week"]


def test_serve_keeps_the_http_clients_request_lines_out_of_its_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # httpx logs every request at INFO with its whole URL: a feed's token in its query, and
    # a line per Alertmanager call every reconcile.
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    try:
        log_to_stderr("info")  # as serve sets it up
        caplog.set_level(logging.INFO)
        with fake_http(200, b"[]") as fake, httpx.Client() as client:
            assert client.get(f"{fake.url}/changes?token=s3cr3t").status_code == 200
        assert "s3cr3t" not in caplog.text
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
