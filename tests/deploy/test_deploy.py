"""The files in deploy/ are what operators copy: they must load in the real tools and
query only metrics the receiver exports."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import yaml

from receiver.metrics import Metrics
from tests.conftest import EXAMPLE_JOURNEYS
from tests.support import receiver_process as rp
from tests.support.processes import binary

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


def test_the_grafana_dashboard_queries_only_metrics_the_receiver_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) == len(dashboard["panels"]) + 1
    queried = {name for expr in exprs for name in _METRIC.findall(expr)}
    assert queried - exported() == set()
    # What the operator's guide promises the dashboard shows.
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for shown in ("alerts received", "by journey", "by priority", "compression",
                  "delivery latency", "dead letters"):  # fmt: skip
        assert shown in titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_grafana_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
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


def test_the_ci_deploy_event_script_posts_an_event_the_receiver_accepts(tmp_path: Path) -> None:
    config = rp.write_config(
        tmp_path / "receiver.yaml",
        store_url="memory://",
        key_prefix="jr",
        token="ci-token",
        journeys_file=EXAMPLE_JOURNEYS,
    )
    with rp.receiver_process(config, tmp_path, "ci-token") as receiver:
        env = {
            "PATH": os.environ["PATH"],
            "JOURNEY_RECEIVER_URL": receiver.url,
            "JOURNEY_RECEIVER_TOKEN": "ci-token",
            "REGION": "eu",
            "CHANGE_URL": "https://ci.example.com/runs/42",
        }
        script = str(DEPLOY / "ci" / "send-deploy-event.sh")
        done = subprocess.run(
            [script, "payment-service", "2026.04.18-3"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0
        assert done.stderr == ""
        assert json.loads(done.stdout) == {"accepted": 1}
        # A wrong token is reported, and does not fail the deploy.
        env["JOURNEY_RECEIVER_TOKEN"] = "wrong"
        done = subprocess.run(
            [script, "payment-service", "2026.04.18-4"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0
        assert "deploy event not sent" in done.stderr


def test_the_github_actions_step_runs_the_script() -> None:
    workflow = yaml.safe_load((DEPLOY / "ci" / "github-actions.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["deploy"]["steps"] if "run" in s]
    assert step["run"].startswith("deploy/ci/send-deploy-event.sh ")
    assert {"JOURNEY_RECEIVER_URL", "JOURNEY_RECEIVER_TOKEN"} <= set(step["env"])


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
