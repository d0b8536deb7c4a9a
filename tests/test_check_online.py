"""``journey-receiver check --online`` against the fake Slack, Jira and PagerDuty and the real
Prometheus and Alertmanager."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from receiver.cli import main
from receiver.config import JourneysConfig, PrometheusConfig, ReceiverConfig
from receiver.config.alertmanager import AlertmanagerConfig
from receiver.online import Finding
from receiver.online.alertmanager import check_alertmanager
from receiver.online.prometheus import check_prometheus
from receiver.online.runner import check_all
from tests.support import alertmanager as am
from tests.support.fake_jira import FakeJira, serve_jira
from tests.support.fake_pagerduty import FakePagerDuty, serve_pagerduty
from tests.support.fake_server import FakeServer, serve
from tests.support.fake_slack import TOKEN as SLACK_TOKEN
from tests.support.fake_slack import FakeSlack
from tests.support.processes import free_port
from tests.support.prometheus import self_signed_cert

CLI = str(Path(sys.executable).parent / "journey-receiver")
JIRA_TOKEN = "jira-s3cret-token-0123456789"
PD_KEY = "R0UTINGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's are
OWN_KEY = "0WNKEY000123456789abcdefABCDEF00"
# Past data only (tests/data/prometheus): `or vector(0)` answers now all the same.
STARTED = 'sum(rate(checkout_started_total{env="$env", region="$region"}[5m])) or vector(0)'


def journeys_doc(*kpis: dict[str, Any], slack_channel: str = "#inc-checkout") -> dict[str, Any]:
    return {
        "journeys": [
            {
                "id": "checkout",
                "name": "Checkout",
                "weight": 1.0,
                "owner": {
                    "team": "payments",
                    "slack_channel": slack_channel,
                    "jira_project": "PAY",
                    "pagerduty_routing_key": OWN_KEY,
                },
                "stages": [{"id": "pay", "weight": 1.0, "match": ['service="payment"']}],
                "kpis": list(kpis) or [kpi("started", STARTED)],
            }
        ]
    }


def kpi(name: str, query: str) -> dict[str, Any]:
    return {"name": name, "query": query, "unit": "per second", "bad_when": "down"}


def write(tmp_path: Path, config: dict[str, Any], journeys: dict[str, Any]) -> Path:
    (tmp_path / "journeys.yaml").write_text(yaml.safe_dump(journeys))
    path = tmp_path / "receiver.yaml"
    path.write_text(yaml.safe_dump({"server": {"auth": {"allow_open": True}}, **config}))
    return path


def lines(output: str, level: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(level)]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("online-tls"))


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack()
    with serve(fake.app, FakeServer()) as server:
        yield fake, f"{server.url}/api/"


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    with serve_jira(token=JIRA_TOKEN) as fake:
        yield fake


@pytest.fixture
def pagerduty(tls: tuple[Path, Path]) -> Iterator[FakePagerDuty]:
    with serve_pagerduty(tls) as fake:
        yield fake


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[am.Alertmanager]:
    workdir = tmp_path_factory.mktemp("online-alertmanager")
    config = am.write_config(
        workdir / "alertmanager.yml",
        webhook_url="http://127.0.0.1:9/webhook/alertmanager",
        token="unused",
        group_by=["alertname"],
    )
    with am.alertmanager(config, workdir) as running:
        yield running


def file_issue(jira: FakeJira, project: str, *, resolve: bool = False) -> str:
    """An issue made through the API, as the sink (and then a person) would."""
    api = f"{jira.server.url}/rest/api/2"
    auth = {"Authorization": f"Bearer {JIRA_TOKEN}"}
    fields = {"project": {"key": project}, "issuetype": {"name": "Incident"}, "summary": "x"}
    created = httpx.post(f"{api}/issue", json={"fields": fields}, headers=auth, timeout=5)
    key = str(created.json()["key"])
    if resolve:
        moved = httpx.post(
            f"{api}/issue/{key}/transitions",
            json={"transition": {"id": "11"}},
            headers=auth,
            timeout=5,
        )
        assert moved.status_code == 204
    return key


def jira_sink(jira: FakeJira, **fields: Any) -> dict[str, Any]:
    return {"url": jira.server.url, "token": JIRA_TOKEN, "timeout": "5s"} | fields


def test_all_good_is_ok_lines_and_exit_0(
    tmp_path: Path,
    slack: tuple[FakeSlack, str],
    jira: FakeJira,
    pagerduty: FakePagerDuty,
    tls: tuple[Path, Path],
    prometheus_url: str,
    alertmanager: am.Alertmanager,
) -> None:
    for project in ("OPS", "PAY"):
        file_issue(jira, project)
        file_issue(jira, project, resolve=True)
    config = {
        "sinks": {
            "slack": {"token": SLACK_TOKEN, "base_url": slack[1], "timeout": "5s"},
            "jira": jira_sink(jira),
            "pagerduty": {
                "events_url": f"{pagerduty.server.url}/v2/enqueue",
                "routing_key": PD_KEY,
                "ca_file": str(tls[0]),
                "timeout": "5s",
            },
        },
        "prometheus": {"url": prometheus_url, "timeout": "5s"},
        "alertmanager": {"urls": [alertmanager.url]},
    }
    path = write(tmp_path, config, journeys_doc())

    result = subprocess.run(
        [CLI, "check", "--config", str(path), "--online"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert lines(out, "PROBLEM") == [] and lines(out, "warning") == [], out
    for expected in (
        "config OK",
        "ok      slack: auth.test as @journey-bot in team T0FAKE (Fake Workspace)",
        "ok      slack: the token has chat:write",
        "ok      slack: channel #incidents (sinks.slack.channel) is C0INCIDENTS; the bot is a "
        "member",
        "ok      slack: channel #inc-checkout (journey checkout owner.slack_channel) is "
        "C0CHECKOUT; the bot is a member",
        "ok      jira: myself: logged in as journey-bot",
        "ok      jira: project OPS (sinks.jira.project) has issue type Incident",
        'ok      jira: project PAY: transition "Resolve Issue" is there from Open (PAY-1)',
        'ok      jira: project PAY: transition "Reopen Issue" is there from Resolved (PAY-2)',
        "ok      pagerduty: 2 routing key(s), each 32 characters",
        'ok      prometheus: journey checkout KPI "started" is 0 now (with env="sample", '
        'region="sample")',
        f"ok      alertmanager: {alertmanager.url} (alertmanager.urls[0]): Alertmanager",
        "online check of slack, jira, pagerduty, prometheus, alertmanager: 0 problem(s), "
        "0 warning(s)",
    ):
        assert expected in out, out
    for secret in (SLACK_TOKEN, JIRA_TOKEN, PD_KEY, OWN_KEY):
        assert secret not in out + result.stderr


def test_a_token_with_only_chat_write_warns_of_each_missing_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeSlack(scopes={"chat:write"})
    with serve(fake.app, FakeServer()) as server:
        config = {"sinks": {"slack": {"token": SLACK_TOKEN, "base_url": f"{server.url}/api/"}}}
        code = main(["check", "--config", str(write(tmp_path, config, journeys_doc())), "--online"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert lines(out, "PROBLEM") == []
    assert lines(out, "warning") == [
        "warning slack: the token lacks channels:read: channels configured by name cannot be "
        "resolved to their IDs (optional)",
        "warning slack: the token lacks groups:read: private channels configured by name "
        "cannot be resolved (optional)",
        "warning slack: the token lacks channels:history: messages cannot be found again "
        "after a crash (optional)",
        "warning slack: the token lacks groups:history: messages in private channels cannot "
        "be found again after a crash (optional)",
    ]
    assert not fake.calls("conversations.list")  # not asked what it may not tell


def test_a_channel_without_the_bot_is_a_warning(
    tmp_path: Path, slack: tuple[FakeSlack, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = {"sinks": {"slack": {"token": SLACK_TOKEN, "base_url": slack[1]}}}
    journeys = journeys_doc(slack_channel="#not-invited")
    journeys["journeys"].append(
        {
            **journeys["journeys"][0],
            "id": "search",
            "owner": {"team": "x", "slack_channel": "#nope"},
            "stages": [{"id": "search", "weight": 1.0, "match": ['service="search"']}],
        }
    )
    code = main(["check", "--config", str(write(tmp_path, config, journeys)), "--online"])

    out = capsys.readouterr().out
    assert code == 0
    assert lines(out, "warning") == [
        "warning slack: channel #not-invited (journey checkout owner.slack_channel): the bot is "
        "not a member — invite it (/invite @journey-bot)",
        "warning slack: channel #nope (journey search owner.slack_channel) is not among the "
        "channels the bot can see — fix the name, or invite the bot if the channel is private",
    ]


def test_a_missing_done_transition_is_a_problem_naming_the_field(
    tmp_path: Path, jira: FakeJira, capsys: pytest.CaptureFixture[str]
) -> None:
    file_issue(jira, "OPS")
    config = {"sinks": {"jira": jira_sink(jira, done_transition="Done")}}
    path = write(tmp_path, config, {"journeys": []})

    assert main(["check", "--config", str(path), "--online"]) == 1

    out = capsys.readouterr().out
    assert lines(out, "PROBLEM") == [
        'PROBLEM jira: project OPS: no transition named "Done" from Open (has: Resolve Issue, '
        "Close Issue) — set sinks.jira.done_transition"
    ]
    assert lines(out, "warning") == [
        'warning jira: project OPS: cannot check sinks.jira.reopen_transition "Reopen Issue": '
        "no done Incident issue yet"
    ]
    assert "1 problem(s), 1 warning(s)" in out


def test_jira_projects_and_issue_types_are_checked(jira: FakeJira) -> None:
    receiver = ReceiverConfig.model_validate(
        {"sinks": {"jira": jira_sink(jira, issue_type="Outage")}}
    )
    journeys = JourneysConfig.model_validate(journeys_doc())
    journeys = journeys.model_copy(
        update={"journeys": [j.model_copy(update={"owner": j.owner.model_copy(
            update={"jira_project": "NOPE"})}) for j in journeys.journeys]}
    )  # fmt: skip

    found = asyncio.run(check_all(receiver, journeys))

    assert [f.line() for f in found if f.level != "ok"] == [
        'PROBLEM jira: project OPS: no issue type "Outage" (has: Incident, Task) — set '
        "sinks.jira.issue_type",
        "PROBLEM jira: project NOPE (journey checkout owner.jira_project) does not exist, or "
        "this account may not browse it — fix the key, or grant the account the project's "
        "Browse permission",
    ]


def test_a_project_without_issues_cannot_have_its_transitions_checked(jira: FakeJira) -> None:
    receiver = ReceiverConfig.model_validate({"sinks": {"jira": jira_sink(jira)}})

    found = asyncio.run(check_all(receiver, JourneysConfig()))

    assert (
        Finding(
            "warning",
            "jira",
            "project OPS: cannot check transitions: no Incident issue yet "
            "(sinks.jira.done_transition, sinks.jira.reopen_transition)",
        )
        in found
    )


def test_refused_jira_credentials_are_one_problem(jira: FakeJira) -> None:
    receiver = ReceiverConfig.model_validate(
        {"sinks": {"jira": jira_sink(jira, token="wrong-token")}}
    )

    found = asyncio.run(check_all(receiver, JourneysConfig()))

    assert [f.line() for f in found] == [
        "PROBLEM jira: myself: HTTP 401: credentials refused (bearer token) — check "
        "sinks.jira.username and sinks.jira.token"
    ]


def test_a_kpi_query_that_errors_is_a_problem_naming_journey_and_kpi(prometheus_url: str) -> None:
    journeys = JourneysConfig.model_validate(
        journeys_doc(
            kpi("started", STARTED),
            kpi("broken", 'sum(rate(checkout_started_total{region="$region"}[5m])) by'),
            kpi("gone", 'sum(rate(checkout_finished_total{region="$region"}[5m]))'),
        )
    )

    found = check_prometheus(PrometheusConfig(url=prometheus_url, timeout=5.0), journeys)

    assert [f.level for f in found] == ["ok", "ok", "problem", "warning"]
    assert found[0].text.startswith(f"{prometheus_url} is Prometheus ")
    assert found[2].text.startswith('journey checkout KPI "broken" fails: HTTP 400: ')
    assert "parse error" in found[2].text
    assert found[2].text.endswith("— fix kpis[].query in the journeys file")
    assert found[3].text == (
        'journey checkout KPI "gone" returns nothing now (with region="sample"): check the '
        "metric names"
    )


def test_slack_down_is_one_problem_and_nothing_else_is_printed(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api/"
    slack = {"token": SLACK_TOKEN, "base_url": closed, "timeout": "2s"}
    path = write(tmp_path, {"sinks": {"slack": slack}}, journeys_doc())

    result = subprocess.run(
        [CLI, "check", "--config", str(path), "--online"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1
    assert [line.split(":")[0] for line in lines(result.stdout, "PROBLEM")] == ["PROBLEM slack"]
    # The SDK's own "Failed to send a request" line is not printed beside the finding.
    assert result.stderr == "", result.stderr


def test_prometheus_down_is_a_problem() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    found = check_prometheus(PrometheusConfig(url=url), JourneysConfig())

    assert [f.line() for f in found] == [
        f"PROBLEM prometheus: prometheus.url {url}: connection refused"
    ]


def test_an_alertmanager_peer_on_a_closed_port_is_a_problem(
    alertmanager: am.Alertmanager,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    config = AlertmanagerConfig(urls=[alertmanager.url, closed], timeout=2.0)

    found = asyncio.run(check_alertmanager(config))

    assert [f.level for f in found] == ["warning", "problem"]
    assert found[0].text.startswith(
        f"{alertmanager.url} (alertmanager.urls[0]): clustering is disabled, yet "
        "alertmanager.urls names 2 peers"
    )
    assert found[1].text == (
        f"{closed} (alertmanager.urls[1]) is down: cannot connect — check the URL and that it runs"
    )


def test_no_secret_is_printed(pagerduty: FakePagerDuty, tls: tuple[Path, Path]) -> None:
    port = free_port()
    receiver = ReceiverConfig.model_validate(
        {
            "sinks": {
                "pagerduty": {
                    "events_url": f"{pagerduty.server.url}/v2/enqueue",
                    "routing_key": "short-s3cret-key",
                    "ca_file": str(tls[0]),
                }
            },
            "alertmanager": {"urls": [f"http://am:pa55word@127.0.0.1:{port}"], "timeout": "2s"},
        }
    )

    found = asyncio.run(check_all(receiver, JourneysConfig()))

    text = "\n".join(f.line() for f in found)
    assert "short-s3cret-key" not in text and "pa55word" not in text
    assert (
        "warning pagerduty: sinks.pagerduty.routing_key is 16 characters, not the 32 of a "
        "PagerDuty integration key — copy it again from the service's Events API v2 "
        "integration"
    ) in text
    assert f"PROBLEM alertmanager: http://127.0.0.1:{port} (alertmanager.urls[0]) is down" in text


def test_pagerduty_untrusted_certificate_is_a_problem(pagerduty: FakePagerDuty) -> None:
    receiver = ReceiverConfig.model_validate(
        {"sinks": {"pagerduty": {"events_url": f"{pagerduty.server.url}/v2/enqueue"}}}
    )

    found = asyncio.run(check_all(receiver, JourneysConfig()))

    assert found[0] == Finding(
        "problem",
        "pagerduty",
        f"cannot reach sinks.pagerduty.events_url {pagerduty.server.url}: TLS verification "
        "failed — is sinks.pagerduty.ca_file the CA of its certificate?",
    )
    assert found[1].text.startswith("no sinks.pagerduty.routing_key, and unmapped set no")


def test_an_invalid_config_skips_the_online_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, {"prometheus": {"url": "not a url"}}, {"journeys": []})

    assert main(["check", "--config", str(path), "--online"]) == 1

    captured = capsys.readouterr()
    assert "online check skipped: fix the config first" in captured.err
    assert captured.out == ""
