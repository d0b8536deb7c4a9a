"""The generated rules evaluated by the real Prometheus on four weeks of backfilled KPI
history with a weekly and a daily pattern (``tests/rules/seasonal.py``).

Prometheus evaluates rules only at the wall clock, so the history is backfilled to end at
this minute (``promtool tsdb create-blocks-from openmetrics``) and Prometheus evaluates the
rules, exactly as ``journey-receiver rules`` prints them, every second. Within the test the
eu drop has lasted less than ``for: 10m``: its alert is pending, the others are absent.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.cli import main
from receiver.config import load_journeys
from receiver.journeys import JourneyCatalog
from receiver.rules import ALERTNAME
from tests.rules.seasonal import openmetrics
from tests.support.processes import binary, free_port, running
from tests.support.receiver_process import poll

JOURNEYS = Path(__file__).resolve().parent / "data" / "journeys.yaml"
CONFIG = """\
global:
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs: []
"""


@contextmanager
def prometheus_with_rules(workdir: Path, rules: str, history: str) -> Iterator[str]:
    """Prometheus on ``history`` (OpenMetrics) evaluating ``rules``; yields its base URL."""
    source = workdir / "history.om"
    source.write_text(history)
    tsdb = workdir / "tsdb"
    backfill = subprocess.run(
        # Blocks of up to 31 days instead of 2h: a handful of blocks to open, not 340.
        [binary("promtool"), "tsdb", "create-blocks-from", "openmetrics",
         "--max-block-duration=744h", str(source), str(tsdb)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    (workdir / "rules.yaml").write_text(rules)
    (workdir / "prometheus.yml").write_text(CONFIG)
    port = free_port()
    log = workdir / "prometheus.log"
    args = [
        binary("prometheus"),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={tsdb}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=100y",
        "--log.level=warn",
    ]
    with running(args, port, log):
        yield f"http://127.0.0.1:{port}"


def api(url: str, path: str, **params: str) -> Any:
    response = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=10.0)
    response.raise_for_status()
    return response.json()["data"]


def evaluated(url: str) -> bool:
    """Every rule group has been evaluated since Prometheus started, without error."""
    try:
        groups = api(url, "rules")["groups"]
    except httpx.HTTPError:
        return False
    return bool(groups) and all(
        rule["health"] == "ok" and rule["lastEvaluation"] > "2000"
        for group in groups
        for rule in group["rules"]
    )


def by_region(url: str, query: str) -> dict[tuple[str, str], float]:
    result = api(url, "query", query=query)["result"]
    return {(s["metric"]["env"], s["metric"]["region"]): float(s["value"][1]) for s in result}


def test_prometheus_evaluates_the_rules_on_seasonal_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "--journeys", str(JOURNEYS)]) == 0
    rules = capsys.readouterr().out
    now = int(time.time()) // 60 * 60
    with prometheus_with_rules(tmp_path, rules, openmetrics(now)) as url:
        poll(
            lambda: evaluated(url),
            bool,
            what="every rule evaluated",
            timeout=30.0,
            context=lambda: (tmp_path / "prometheus.log").read_text()[-3000:],
        )
        baseline = by_region(url, "journey:kpi:baseline")
        kpi = by_region(url, "journey:kpi")
        alerts = api(url, "alerts")["alerts"]

    # The median of the same minute 1-4 weeks ago: eu's bad week two weeks ago is outvoted,
    # us keeps its weekly dip; staging has no baseline of its own (env is pinned to prod);
    # dr never had traffic: 0/0 every week, no number.
    assert math.isnan(baseline.pop(("prod", "dr")))
    assert baseline == pytest.approx(
        {("prod", "eu"): 0.3, ("prod", "us"): 0.12, ("prod", "ap"): 0.3, ("prod", "sa"): 0.3}
    )
    # sa has no traffic at all: 0/0, no number.
    assert math.isnan(kpi.pop(("prod", "sa"))) and math.isnan(kpi.pop(("prod", "dr")))
    assert kpi == pytest.approx({("prod", "eu"): 0.1, ("prod", "us"): 0.12, ("prod", "ap"): 0.0})
    # eu and sa: us is at its seasonal level, ap's usual traffic at this hour is too low,
    # dr never had any.
    assert sorted((a["labels"]["region"], a["state"]) for a in alerts) == [
        ("eu", "pending"),
        ("sa", "pending"),
    ]
    labels = next(a["labels"] for a in alerts if a["labels"]["region"] == "eu")
    assert labels == {
        "alertname": ALERTNAME,
        "env": "prod",
        "journey": "checkout",
        "kpi": "conversion",
        "region": "eu",
        "service": "payment-service",
        "severity": "critical",
    }
    journey, stage = JourneyCatalog(load_journeys(JOURNEYS), ["env", "region"]).match(labels)
    assert (journey.id, stage and stage.id) == ("checkout", "payment")
