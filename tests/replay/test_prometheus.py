"""``journey-receiver replay`` against the real Prometheus, on ``ALERTS`` series
backfilled with ``promtool tsdb create-blocks-from openmetrics`` (``storm.py``).

The answers are worked out by hand in ``storm.py``: Alertmanager (group_by alertname,
group_wait 10s, group_interval 30s) sends 11 batches in 5 groups (PaymentErrors twice,
CartLatency twice, SearchSlow once); the receiver (group_wait 2m) makes checkout/eu (A, B,
C: P2, paged), checkout/us (D: P5) and search/eu (E: P5) of them, and F is a blip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.cli import main
from receiver.replay import read_firings
from receiver.replay.history import RuleInterval, interval_of
from tests.replay.storm import STORM, T0
from tests.replay.storm import replay_argv as replay
from tests.support.prometheus import prometheus_server

DATA = Path(__file__).resolve().parent / "data"
MINUTE = 60_000


def as_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert main([*argv, "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def priorities(**counts: int) -> dict[str, int]:
    return {p: counts.get(p, 0) for p in ("P1", "P2", "P3", "P4", "P5")}


def test_a_storm_replays_to_its_known_incidents_pages_blips_and_groups(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No WEBHOOK_TOKEN, no PD_ROUTING_KEY: the config's server and sinks are never read.
    result = as_json(capsys, replay(prometheus))
    assert result == {
        "window": {"since": "2026-04-18T07:50:00.000Z", "until": "2026-04-18T09:30:00.000Z"},
        "alerts": 6,
        "incidents": 3,
        "pages": 1,
        "blips": 1,
        "alertmanager_groups": 5,
        "alertmanager_notifications": 11,
        "journeys": {
            "checkout": {
                "incidents": 2,
                "pages": 1,
                "alerts": 5,
                "blips": 1,
                "by_priority": priorities(P2=1, P5=1),
                "alerts_per_page": 5.0,
                "alertmanager_groups": 4,
            },
            "search": {
                "incidents": 1,
                "pages": 0,
                "alerts": 1,
                "blips": 0,
                "by_priority": priorities(P5=1),
                "alerts_per_page": None,
                "alertmanager_groups": 1,
            },
            "unmapped": {
                "incidents": 0,
                "pages": 0,
                "alerts": 0,
                "blips": 0,
                "by_priority": priorities(),
                "alerts_per_page": None,
                "alertmanager_groups": 0,
            },
        },
    }


def test_the_text_report_is_a_table_per_journey_and_priority(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay(prometheus)) == 0
    assert capsys.readouterr().out == (
        "replay 2026-04-18T07:50:00.000Z → 2026-04-18T09:30:00.000Z: 6 alert firings; "
        "Alertmanager would have sent 11 notifications in 5 groups\n"
        "\n"
        "journey   incidents  pages  P1  P2  P3  P4  P5  alerts  alerts/page  blips  AM groups\n"
        "checkout          2      1   0   1   0   0   1       5          5.0      1          4\n"
        "search            1      0   0   0   0   0   1       1            -      0          1\n"
        "total             3      1   0   1   0   0   2       6          6.0      1          5\n"
    )


def test_against_shows_what_moving_a_stage_to_another_journey_does(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    new, old = DATA / "journeys-new.yaml", DATA / "journeys-old.yaml"
    argv = replay(prometheus, "--journeys", str(new), "--against", str(old))
    result = as_json(capsys, argv)
    # The cart alerts C (eu) and D (us) leave checkout for browse: checkout/us is gone,
    # checkout/eu keeps its page, browse gains an incident per region.
    assert result["diff"] == {
        "checkout": {"incidents": -1, "pages": 0},
        "browse": {"incidents": 2, "pages": 0},
        "search": {"incidents": 0, "pages": 0},
        "unmapped": {"incidents": 0, "pages": 0},
    }
    assert result["moved"] == [{"from": "checkout", "to": "browse", "alerts": 2}]
    # search weighs 1.0 now: the same alert, the same incident, one priority up.
    assert result["reprioritised"] == [
        {"journey": "search", "key": 'search{env="prod",region="eu"}', "alerts": 1,
         "from": "P5", "to": "P4"}
    ]  # fmt: skip
    assert (result["incidents"], result["pages"], result["blips"]) == (4, 1, 1)
    assert result["journeys"]["browse"]["by_priority"] == priorities(P5=2)

    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.endswith(
        f"against {old}:\n"
        "journey   incidents  pages\n"
        "checkout         -1     +0\n"
        "browse           +2     +0\n"
        "  2 alert(s) moved from checkout to browse\n"
        '  re-prioritised: search{env="prod",region="eu"} (1 alerts) P5 → P4\n'
    )


def test_json_has_the_shape_spec_gives(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    new, old = DATA / "journeys-new.yaml", DATA / "journeys-old.yaml"
    result = as_json(capsys, replay(prometheus, "--journeys", str(new), "--against", str(old)))
    spec = {"window", "alerts", "incidents", "pages", "blips", "alertmanager_groups",
            "journeys", "diff"}  # fmt: skip
    assert spec <= set(result)
    assert set(result["window"]) == {"since", "until"}
    for figures in result["journeys"].values():
        assert {"incidents", "pages", "alerts", "blips", "by_priority"} <= set(figures)
        assert list(figures["by_priority"]) == ["P1", "P2", "P3", "P4", "P5"]
    for change in result["diff"].values():
        assert set(change) == {"incidents", "pages"}
    # The totals are the journeys' sums.
    for name in ("incidents", "pages", "blips", "alerts"):
        assert result[name] == sum(j[name] for j in result["journeys"].values())


def test_alerts_firing_intervals_are_read_exactly_and_pending_is_left_out(
    prometheus: str,
) -> None:
    since = int(T0.timestamp() * 1000) - 10 * MINUTE
    found = read_firings(prometheus, since, since + 120 * MINUTE, MINUTE)
    start = int(T0.timestamp() * 1000)
    assert sorted(
        (f.labels["service"], f.labels["region"], (f.start_ms - start) // MINUTE,
         None if f.end_ms is None else (f.end_ms - start) // MINUTE)
        for f in found
    ) == sorted(
        (service, region, first, end) for _, service, region, _, first, end in STORM
    )  # fmt: skip
    assert all("alertstate" not in f.labels and "__name__" not in f.labels for f in found)


_SLOW_RULES = """\
groups:
  - name: slow
    interval: 2m
    rules:
      - alert: SlowCheck
        expr: vector(0) > 1
"""


def test_a_rule_evaluated_less_often_than_the_step_keeps_its_firings_whole(
    tmp_path: Path,
) -> None:
    # Two alerts with samples every other minute (0-18 and 40-42): SlowCheck's group is
    # evaluated every 2m (the rules API says so), Unlisted's rule is gone from Prometheus.
    start = int(T0.timestamp())
    lines = ["# TYPE ALERTS gauge"]
    for alertname in ("SlowCheck", "Unlisted"):
        labels = f'alertname="{alertname}",alertstate="firing",service="search-api"'
        lines += [f"ALERTS{{{labels}}} 1 {start + 60 * m}" for m in [*range(0, 20, 2), 40, 42]]
    history = tmp_path / "alerts.om"
    history.write_text("\n".join([*lines, "# EOF"]) + "\n")
    with prometheus_server(tmp_path / "prometheus", history, _SLOW_RULES) as url:
        since = start * 1000 - 10 * MINUTE
        found = read_firings(url, since, since + 120 * MINUTE, MINUTE)
    minutes = {
        name: [
            ((f.start_ms // 1000 - start) // 60, (f.end_ms // 1000 - start) // 60)
            for f in found
            if f.labels["alertname"] == name and f.end_ms is not None
        ]
        for name in ("SlowCheck", "Unlisted")
    }
    assert minutes["SlowCheck"] == [(0, 20), (40, 44)]
    # Unknown to the rules API: read at the step, each sample a firing of its own.
    assert minutes["Unlisted"] == [(m, m + 1) for m in [*range(0, 20, 2), 40, 42]]


_SHARED_NAME_RULES = """\
groups:
  - name: payments
    interval: 1m
    rules:
      - alert: HighErrorRate
        expr: vector(0) > 1
        labels: {team: payments}
  - name: batch-jobs
    interval: 5m
    rules:
      - alert: HighErrorRate
        expr: vector(0) > 1
        labels: {team: batch}
"""


# The payments rule templates its severity from the value, as many rules do.
_TEMPLATED_RULES = _SHARED_NAME_RULES.replace(
    "labels: {team: payments}",
    "labels: {severity: '{{ if gt $value 10.0 }}critical{{ else }}warning{{ end }}'}",
)


@pytest.mark.parametrize(
    ("rules", "carried"),
    [
        (_SHARED_NAME_RULES, 'team="payments"'),
        # A label templated from the value: no alert carries the template's text.
        (_TEMPLATED_RULES, 'severity="critical"'),
    ],
)
def test_an_alertname_two_groups_raise_is_read_at_the_interval_of_its_own_rule(
    rules: str, carried: str, tmp_path: Path
) -> None:
    # Teams reuse alertnames: the payments team's 1m rule and another team's 5m rule both
    # raise HighErrorRate. The payments alert fires 0-10 and 14-20 (one sample a minute):
    # two firings, not one read at the other group's 5m.
    start = int(T0.timestamp())
    labels = f'alertname="HighErrorRate",alertstate="firing",service="payment-service",{carried}'
    lines = ["# TYPE ALERTS gauge"]
    lines += [f"ALERTS{{{labels}}} 1 {start + 60 * m}" for m in [*range(0, 10), *range(14, 20)]]
    history = tmp_path / "alerts.om"
    history.write_text("\n".join([*lines, "# EOF"]) + "\n")
    with prometheus_server(tmp_path / "prometheus", history, rules) as url:
        since = start * 1000 - 10 * MINUTE
        found = read_firings(url, since, since + 60 * MINUTE, MINUTE)
    assert [
        ((f.start_ms // 1000 - start) // 60, (f.end_ms // 1000 - start) // 60)
        for f in found
        if f.end_ms is not None
    ] == [(0, 10), (14, 20)]


@pytest.mark.parametrize(
    "rules",
    [
        httpx.Response(404, text="not found"),
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json={"status": "success", "data": {"groups": "none"}}),
        # Raw text: 1e400 is read back as an infinite float.
        httpx.Response(
            200,
            text='{"status": "success", "data": {"groups": [5, '
            '{"interval": "NaN", "rules": [{"type": "alerting", "name": "SlowCheck"}]}, '
            '{"interval": 1e400, "rules": [{"type": "alerting", "name": "SlowCheck"}]}, '
            '{"interval": 120, "rules": "SlowCheck"}, '
            '{"interval": 120, "rules": [{"type": "alerting", "name": ["SlowCheck"]}]}]}}',
        ),
    ],
)  # fmt: skip
def test_a_rules_answer_of_any_other_shape_reads_at_the_step(rules: httpx.Response) -> None:
    start = int(T0.timestamp()) * 1000

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/rules":
            return rules
        values = [[(start + m * MINUTE) / 1000, "1"] for m in (0, 2)]
        metric = {"__name__": "ALERTS", "alertname": "SlowCheck", "alertstate": "firing"}
        return httpx.Response(200, json={"status": "success", "data": {
            "resultType": "matrix", "result": [{"metric": metric, "values": values}]}})  # fmt: skip

    found = read_firings(
        "http://prometheus", start, start + 10 * MINUTE, MINUTE,
        transport=httpx.MockTransport(answer),
    )  # fmt: skip
    assert [(f.start_ms - start, f.end_ms and f.end_ms - start) for f in found] == [
        (0, MINUTE),
        (2 * MINUTE, 3 * MINUTE),
    ]


def test_a_rule_label_set_to_empty_is_one_its_alerts_carry() -> None:
    # `labels: {team: ""}` removes the label (Prometheus drops empty labels): the rule's
    # alerts carry no `team`, which is what "" means; they are still that rule's.
    rules = [
        RuleInterval("HighErrorRate", {"team": ""}, 60_000),
        RuleInterval("HighErrorRate", {"team": "batch"}, 300_000),
    ]
    assert interval_of({"alertname": "HighErrorRate"}, rules, 60_000) == 60_000
