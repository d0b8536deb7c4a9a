"""The files in deploy/ are what operators copy: they must load in the real tools and
query only metrics the receiver exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from receiver.metrics import Metrics
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
