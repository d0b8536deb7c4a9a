"""The files in deploy/ are what operators copy: they must load in the real tools and
query only metrics the receiver exports."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.metrics import Metrics
from tests.conftest import EXAMPLE_JOURNEYS, body, make_alert
from tests.support import receiver_process as rp
from tests.support.github_actions import run_step
from tests.support.processes import binary
from tests.support.prometheus import fake_http

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_METRIC = re.compile(r"\bjourney_receiver_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, cwd=DEPLOY, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def exported() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        # A labelled family has no samples until a label set is used: name them by type.
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
    return names


def test_the_alertmanager_snippet_passes_amtool() -> None:
    assert "SUCCESS" in run(binary("amtool"), "check-config", "alertmanager.yml")
    route = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    (webhook,) = route["receivers"][0]["webhook_configs"]
    assert webhook["send_resolved"] is True
    assert webhook["max_alerts"] == 0
    assert webhook["url"].endswith("/webhook/alertmanager")


def test_the_alerting_rules_pass_promtool_and_their_unit_tests() -> None:
    assert "SUCCESS" in run(binary("promtool"), "check", "rules", "alerting-rules.yaml")
    assert "SUCCESS" in run(binary("promtool"), "test", "rules", "alerting-rules.test.yaml")


def test_an_alert_fires_when_no_receiver_is_scraped(tmp_path: Path) -> None:
    # Every replica down (a bad image, a crash loop) or unscraped: Alertmanager's sends
    # fail, nothing is paged, and every rule on the receiver's own metrics goes quiet.
    (tmp_path / "alerting-rules.yaml").write_text((DEPLOY / "alerting-rules.yaml").read_text())
    (tmp_path / "down.test.yaml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["alerting-rules.yaml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {"series": 'journey_receiver_store_up{pod="a"}', "values": "1x5"}
                        ],
                        "alert_rule_test": [
                            {"eval_time": "5m", "alertname": "JourneyReceiverDown"},
                            {
                                "eval_time": "20m",
                                "alertname": "JourneyReceiverDown",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {"severity": "critical"},
                                        "exp_annotations": down_annotations(),
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        )
    )
    done = subprocess.run(
        [binary("promtool"), "test", "rules", "down.test.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def down_annotations() -> dict[str, str]:
    rules = yaml.safe_load((DEPLOY / "alerting-rules.yaml").read_text())
    found = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "JourneyReceiverDown"]
    assert found, "no JourneyReceiverDown rule in deploy/alerting-rules.yaml"
    annotations: dict[str, str] = found[0]["annotations"]
    return annotations


def test_the_alerting_rules_query_only_metrics_the_receiver_exports() -> None:
    queried = set(_METRIC.findall((DEPLOY / "alerting-rules.yaml").read_text()))
    assert queried
    known = exported()
    missing = queried - known
    assert missing == set()
    # Every rule's metric is one whose family is documented in the README.
    readme = (DEPLOY.parent / "README.md").read_text()
    for name in queried:
        base = name.removeprefix("journey_receiver_")
        for suffix in _SUFFIXES:
            base = base.removesuffix(suffix)
        assert base in readme, name


DASHBOARDS = ("grafana-dashboard.json", "grafana-journey-health.json")
# What Grafana puts in place of its own variables before a query reaches Prometheus (the
# dashboard's time range taken as 6h).
_GRAFANA_VARIABLES = {"__range": "6h", "__range_s": "21600", "__interval": "1m",
                      "__rate_interval": "2m"}  # fmt: skip
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def dashboard(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((DEPLOY / name).read_text())
    return board


def queries(board: Mapping[str, Any]) -> list[str]:
    return [query for _, query in panel_queries(board)]


def panel_queries(board: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every panel's queries as Prometheus receives them: each ``$variable`` replaced as
    Grafana does, a dashboard variable by its "All" value; a variable Grafana would not
    know is a KeyError."""
    values = dict(_GRAFANA_VARIABLES)
    values.update({v["name"]: v["allValue"] for v in variables(board) if v["type"] == "query"})
    return [
        (panel, _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], target["expr"]))
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def variables(board: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = board["templating"]["list"]
    return found


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_each_grafana_dashboard_queries_only_metrics_the_receiver_exports(name: str) -> None:
    board = dashboard(name)
    # Its variables' queries (label_values(...)) count too: they fill the pickers.
    texts = queries(board) + [variable_query(v) for v in variables(board) if v["type"] == "query"]
    queried = {metric for text in texts for metric in _METRIC.findall(text)}
    assert queried
    assert queried - exported() == set()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    # Every panel asks the Prometheus the person picks.
    for panel in board["panels"]:
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize("name", DASHBOARDS)
def test_each_grafana_dashboard_query_is_valid_promql(name: str, tmp_path: Path) -> None:
    exprs = queries(dashboard(name))
    assert exprs
    # promtool parses rule expressions: each query becomes a recording rule.
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [
                {"record": f"dashboard:query{n}", "expr": expr} for n, expr in enumerate(exprs)
            ]}
        ]
    }  # fmt: skip
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    assert "SUCCESS" in run(binary("promtool"), "check", "rules", str(path))


def test_the_grafana_dashboards_are_distinct() -> None:
    boards = [dashboard(name) for name in DASHBOARDS]
    assert len({board["uid"] for board in boards}) == len(boards)
    assert len({board["title"] for board in boards}) == len(boards)


def test_the_grafana_dashboard_shows_what_the_guide_promises() -> None:
    board = dashboard("grafana-dashboard.json")
    assert len(queries(board)) == len(board["panels"]) + 1
    titles = " ".join(panel["title"] for panel in board["panels"]).lower()
    for shown in ("alerts received", "by journey", "by priority", "compression",
                  "delivery latency", "dead letters"):  # fmt: skip
        assert shown in titles


_HEALTH = re.compile(r"journey_receiver_journey_[a-z_]+")
# A journey-health gauge is the same on every replica: it is read through max, never summed.
_ACROSS_REPLICAS = re.compile(r"max by \([a-z, ]+\) \($")


def test_the_journey_health_dashboard_shows_each_journey_by_stage_kpi_and_time_degraded() -> None:
    board = dashboard("grafana-journey-health.json")
    titles = " ".join(panel["title"] for panel in board["panels"]).lower()
    for shown in ("journey \u00d7 stage, by priority", "kpi deviation", "minutes degraded",
                  "degraded for"):  # fmt: skip
        assert shown in titles
    (journey,) = [v for v in variables(board) if v["name"] == "journey"]
    assert (journey["multi"], journey["includeAll"], journey["allValue"]) == (True, True, ".*")
    assert _HEALTH.findall(variable_query(journey))
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    health = {"journey_receiver_journey_open_incidents",
              "journey_receiver_journey_kpi_deviation_percent",
              "journey_receiver_journey_degraded_seconds"}  # fmt: skip
    assert {name for expr in exprs for name in _HEALTH.findall(expr)} == health
    for expr in exprs:
        # Templated by journey, and each gauge aggregated across replicas with max.
        assert 'journey=~"$journey"' in expr, expr
        for found in _HEALTH.finditer(expr):
            assert _ACROSS_REPLICAS.search(expr[: found.start()]), expr
    # The table's columns are the priorities, one query each.
    (table,) = [panel for panel in board["panels"] if panel["type"] == "table"]
    assert [t["refId"] for t in table["targets"]] == ["P1", "P2", "P3", "P4", "P5"]
    for target in table["targets"]:
        assert f'priority="{target["refId"]}"' in target["expr"]


def test_the_journey_health_queries_count_two_replicas_once(tmp_path: Path) -> None:
    """Two replicas export the same gauges; the dashboard's queries, run by promtool's
    rule tests on that history, count each incident and each degraded minute once."""
    found = panel_queries(dashboard("grafana-journey-health.json"))
    (minutes,) = [q for panel, q in found if "minutes degraded" in panel["title"].lower()]
    (p1,) = [q for panel, q in found if panel["type"] == "table" and 'priority="P1"' in q]
    history = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            # Checkout degraded from minute 10 to 12 (three one-minute refreshes), with one
            # open P1 incident on the payment stage meanwhile; both replicas say the same.
            "input_series": [
                *({"series": "journey_receiver_journey_degraded_seconds"
                             f'{{journey="checkout", instance="{replica}"}}',
                   "values": "0x9 60 120 180 0x370"} for replica in ("a", "b")),
                *({"series": "journey_receiver_journey_open_incidents"
                             f'{{journey="checkout", stage="payment", priority="P1", '
                             f'instance="{replica}"}}',
                   "values": "0x9 1x2 0x370"} for replica in ("a", "b")),
            ],
            "promql_expr_test": [
                {"expr": minutes, "eval_time": "6h",
                 "exp_samples": [{"labels": '{journey="checkout"}', "value": 3}]},
                {"expr": p1, "eval_time": "11m",
                 "exp_samples": [{"labels": '{journey="checkout", stage="payment"}',
                                  "value": 1}]},
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "queries.test.yaml"
    path.write_text(yaml.safe_dump(history))
    assert "SUCCESS" in run(binary("promtool"), "test", "rules", str(path))


def send_deploy_event(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """deploy/ci/send-deploy-event.sh with ``args``, ``env`` and nothing else but PATH."""
    return subprocess.run(
        [str(DEPLOY / "ci" / "send-deploy-event.sh"), *args],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, check=False,
    )  # fmt: skip


@contextlib.contextmanager
def ci_receiver(tmp_path: Path) -> Iterator[rp.ReceiverProcess]:
    """A running receiver with the example journeys that takes the CI's token."""
    config = rp.write_config(
        tmp_path / "receiver.yaml",
        store_url="memory://",
        key_prefix="jr",
        token="ci-token",
        journeys_file=EXAMPLE_JOURNEYS,
    )
    with rp.receiver_process(config, tmp_path, "ci-token") as receiver:
        yield receiver


def test_the_ci_deploy_event_script_posts_an_event_the_receiver_accepts(tmp_path: Path) -> None:
    with ci_receiver(tmp_path) as receiver:
        env = {
            "JOURNEY_RECEIVER_URL": receiver.url,
            "JOURNEY_RECEIVER_TOKEN": "ci-token",
            "REGION": "eu",
            "CHANGE_URL": "https://ci.example.com/runs/42",
        }
        done = send_deploy_event(env, "payment-service", "2026.04.18-3")
        assert done.returncode == 0
        assert done.stderr == ""
        assert json.loads(done.stdout) == {"accepted": 1}
        # A wrong token is reported, and does not fail the deploy.
        env["JOURNEY_RECEIVER_TOKEN"] = "wrong"
        done = send_deploy_event(env, "payment-service", "2026.04.18-4")
        assert done.returncode == 0
        assert "deploy event not sent" in done.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOURNEY_RECEIVER_TOKEN", None),
        # GitHub Actions expands a secret or variable the repository does not have to "".
        ("JOURNEY_RECEIVER_TOKEN", ""),
        ("JOURNEY_RECEIVER_URL", ""),
    ],
    ids=["token-unset", "token-empty", "url-empty"],
)
def test_the_ci_deploy_event_script_without_its_settings_warns_and_sends_nothing(
    name: str, value: str | None
) -> None:
    with fake_http(202, b'{"accepted": 1}') as fake:
        settings = {"JOURNEY_RECEIVER_URL": fake.url, "JOURNEY_RECEIVER_TOKEN": "ci-token"}
        env = {k: v for k, v in (settings | {name: value}).items() if v is not None}
        done = send_deploy_event(env, "payment-service", "2026.04.18-3")
        assert done.returncode == 0
        assert done.stderr == f"journey-receiver: deploy event not sent: {name} is not set\n"
        assert fake.server.requests() == []
        # With both set, the same run reaches the fake: it would have seen a request.
        send_deploy_event(settings, "payment-service", "2026.04.18-3")
        assert [seen.path for seen in fake.server.requests()] == ["/api/v1/events"]


def test_the_ci_deploy_event_script_without_its_arguments_warns_and_exits_0() -> None:
    settings = {"JOURNEY_RECEIVER_URL": "http://127.0.0.1:9", "JOURNEY_RECEIVER_TOKEN": "t"}
    done = send_deploy_event(settings, "payment-service")
    assert done.returncode == 0
    assert done.stderr.startswith("journey-receiver: deploy event not sent: usage: ")


def test_the_github_actions_step_tells_a_running_receiver_about_the_deploy(
    tmp_path: Path,
) -> None:
    workflow = yaml.safe_load((DEPLOY / "ci" / "github-actions.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["deploy"]["steps"] if "run" in s]
    sha = "3f786850e387550fdab836ed7e6dc881de23001b"
    with ci_receiver(tmp_path) as receiver:
        github = {
            "vars.JOURNEY_RECEIVER_URL": receiver.url,
            "secrets.JOURNEY_RECEIVER_TOKEN": "ci-token",
            "github.server_url": "https://github.com",
            "github.repository": "shop/payments",
            "github.run_id": "42",
            "github.actor": "octocat",
            "github.sha": sha,
        }
        done = run_step(step, github, DEPLOY.parent, tmp_path / "step.sh", {})
        assert (done.returncode, done.stderr) == (0, "")
        assert json.loads(done.stdout) == {"accepted": 1}

        # The API has no listing of events: a stored deploy shows on the next incident of
        # its service, as that incident's change and first probable cause.
        started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        with receiver.client() as client:
            answer = client.post(
                "/webhook/alertmanager",
                content=body([make_alert("payment-service", starts_at=started)]),
                headers={"content-type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
            (incident_id,) = answer.json()["incidents"]
            incident = rp.poll(
                lambda: client.get(f"/api/v1/incidents/{incident_id}").json(),
                lambda found: found["notified_at"] is not None,
                what="the incident notified, with its context",
                context=receiver.tail,
            )
    (change,) = incident["changes"]
    assert {k: change[k] for k in ("type", "service", "version", "url", "overlap")} == {
        "type": "deploy",
        "service": "payment-service",
        "version": sha,
        "url": "https://github.com/shop/payments/actions/runs/42",
        "overlap": True,
    }
    assert incident["probable_causes"][0]["text"] == f"deploy {sha} to payment-service"


def test_the_alertmanagerconfig_example_matches_the_alertmanager_snippet() -> None:
    config, secret = yaml.safe_load_all((DEPLOY / "alertmanagerconfig.yaml").read_text())
    plain = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    assert config["kind"] == "AlertmanagerConfig"
    assert config["spec"]["route"]["groupBy"] == plain["route"]["group_by"]
    (webhook,) = config["spec"]["receivers"][0]["webhookConfigs"]
    assert webhook["sendResolved"] is True
    assert webhook["maxAlerts"] == 0
    credentials = webhook["httpConfig"]["authorization"]["credentials"]
    assert credentials["name"] == secret["metadata"]["name"]
    assert credentials["key"] in secret["stringData"]


def test_the_operators_guide_explains_every_metric() -> None:
    guide = (DEPLOY.parent / "docs" / "operating.md").read_text()
    for family in Metrics().registry.collect():
        name = family.name.removeprefix("journey_receiver_")
        shown = f"{name}_total" if family.type == "counter" else name
        assert f"`{shown}" in guide, family.name
