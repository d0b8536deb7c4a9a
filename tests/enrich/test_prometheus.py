"""Journey KPIs against a real Prometheus, and what happens when Prometheus misbehaves.

The history is ``tests/data/prometheus/checkout.om`` (see the README there): at 08:10Z the
eu checkout conversion is 0.2 against 0.5 a week earlier; us is flat at 0.5.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from receiver.config.journeys_yaml import Journey, Kpi
from receiver.config.receiver_yaml import PrometheusConfig
from receiver.enrich import KpiReport, KpiValue
from receiver.enrich.prometheus import PrometheusKpis, assess
from receiver.enrich.prometheus_answers import Pair, Sample, failure_reason, read_pair
from tests.support.processes import free_port
from tests.support.prometheus import fake_http, self_signed_cert, silent_server, tcp_server

pytestmark = pytest.mark.anyio

AT = datetime.fromtimestamp(1_776_499_800, UTC)  # 2026-04-18T08:10:00Z
CONVERSION = {
    "name": "conversion",
    "query": (
        'sum(rate(checkout_completed_total{region="$region"}[5m]))'
        ' / sum(rate(checkout_started_total{region="$region"}[5m]))'
    ),
    "unit": "ratio",
    "bad_when": "down",
    # EUR per minute that normally flows through checkout: 1500 in eu, 1200 in us.
    "revenue_query": 'sum(rate(order_value_eur_total{region="$region"}[5m])) * 60',
}
ORDERS = {
    "name": "orders_per_min",
    "query": 'sum(rate(checkout_completed_total{env="$env", region="${region}"}[5m])) * 60',
    "unit": "orders/min",
    "bad_when": "down",
    "revenue_per_unit": 30.0,
}
STARTED = {
    "name": "started",
    "query": 'sum(checkout_started_total{region="$region"})',
    "unit": "checkouts",
    "bad_when": "down",
}


def journey(*kpis: Mapping[str, Any]) -> Journey:
    return Journey.model_validate(
        {
            "id": "checkout",
            "name": "Checkout",
            "weight": 1.0,
            "owner": {"team": "payments"},
            "stages": [{"id": "payment", "weight": 1.0, "match": ['env="prod"']}],
            "kpis": list(kpis),
        }
    )


def source(url: str | None, **settings: Any) -> PrometheusKpis:
    return PrometheusKpis(PrometheusConfig.model_validate({"url": url, **settings}))


async def report_of(
    kpis: PrometheusKpis, j: Journey, labels: Mapping[str, str], at: datetime = AT
) -> KpiReport:
    try:
        return await kpis.kpis(j, labels, at)
    finally:
        await kpis.aclose()


async def test_a_conversion_drop_is_measured_against_last_week(prometheus_url: str) -> None:
    report = await report_of(
        source(prometheus_url), journey(CONVERSION, ORDERS), {"region": "eu", "env": "prod"}
    )
    assert report.notes == ()
    conversion, orders = report.kpis
    assert conversion.value == pytest.approx(0.2)
    assert conversion.baseline == pytest.approx(0.5)
    assert replace(conversion, value=None, baseline=None) == KpiValue(
        name="conversion",
        value=None,
        baseline=None,
        deviation_pct=-60.0,
        unit="ratio",
        bad_when="down",
        bad=True,
        revenue_at_risk_per_min=900.0,  # 60 % of the 1500 EUR/min of last week
        query=(
            'sum(rate(checkout_completed_total{region="eu"}[5m]))'
            ' / sum(rate(checkout_started_total{region="eu"}[5m]))'
        ),
    )
    assert orders.value == pytest.approx(20.0)
    assert orders.baseline == pytest.approx(50.0)
    assert orders.deviation_pct == -60.0
    assert orders.bad is True
    assert orders.revenue_at_risk_per_min == 900.0  # 30 orders/min lost x 30 EUR
    assert orders.query == 'sum(rate(checkout_completed_total{env="prod", region="eu"}[5m])) * 60'


async def test_a_kpi_is_also_read_at_the_incidents_start(prometheus_url: str) -> None:
    kpis = source(prometheus_url)
    labels = {"region": "eu", "env": "prod"}
    # Started at 07:58Z, before the drop at 08:00Z: 0.5 then, 0.2 now.
    (early,) = (await kpis.kpis(journey(CONVERSION), labels, AT, AT - timedelta(minutes=12))).kpis
    assert (early.at_start, early.value) == (pytest.approx(0.5), pytest.approx(0.2))
    # Started under a minute ago: reading it again would only repeat "now".
    (recent,) = (await kpis.kpis(journey(CONVERSION), labels, AT, AT - timedelta(seconds=59))).kpis
    assert recent.at_start is None
    await kpis.aclose()


async def test_a_flat_region_is_not_bad(prometheus_url: str) -> None:
    # A sub-second timeout also reaches Prometheus in a form it accepts.
    kpis = source(prometheus_url, timeout="900ms")
    report = await report_of(kpis, journey(CONVERSION, ORDERS), {"region": "us", "env": "prod"})
    assert report.notes == ()
    conversion, orders = report.kpis
    assert conversion.value == pytest.approx(0.5)
    assert conversion.baseline == pytest.approx(0.5)
    assert (conversion.deviation_pct, conversion.bad) == (0.0, False)
    assert conversion.revenue_at_risk_per_min == 0.0
    assert (orders.deviation_pct, orders.bad, orders.revenue_at_risk_per_min) == (0.0, False, 0.0)


async def test_the_baseline_offset_comes_from_the_kpi_else_the_config(
    prometheus_url: str,
) -> None:
    # A day earlier there is no data at all; the KPI's own offset wins over the config's.
    daily = {**ORDERS, "name": "daily", "baseline_offset": "1d"}
    report = await report_of(
        source(prometheus_url), journey(daily, ORDERS), {"region": "eu", "env": "prod"}
    )
    daily_orders, weekly_orders = report.kpis
    assert daily_orders.value == pytest.approx(20.0)
    assert daily_orders.baseline is None
    assert weekly_orders.baseline == pytest.approx(50.0)
    report = await report_of(
        source(prometheus_url, baseline_offset="1d"), journey(STARTED), {"region": "eu"}
    )
    (started,) = report.kpis
    assert started.value == 1_001_500.0
    assert started.baseline is None
    assert started.bad is False
    assert report.notes == ("KPI started (at the baseline): the query returned no series",)


async def test_promql_injection_through_a_label_value_is_neutralised(
    prometheus_url: str,
) -> None:
    hostile = 'nowhere"} or vector(1) or up{x="'
    # Pasted in as it is, the value would turn the query into "... or vector(1)".
    naive = STARTED["query"].replace("$region", hostile)
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{prometheus_url}/api/v1/query", params={"query": naive, "time": AT.timestamp()}
        )
    answer = response.json()
    assert answer["data"]["result"][0]["value"][1] == "1"

    report = await report_of(source(prometheus_url), journey(STARTED), {"region": hostile})
    (started,) = report.kpis
    assert started.value is None
    assert (
        started.query
        == 'sum(checkout_started_total{region="nowhere\\"} or vector(1) or up{x=\\""})'
    )
    assert report.notes == ("KPI started (now and at the baseline): the query returned no series",)


async def test_an_escaped_value_matches_exactly_its_own_series(prometheus_url: str) -> None:
    # A real label value with a quote, a backslash, a newline, CJK and PromQL in it.
    weird = 'a.b"c\\d\ne東京"} or vector(1)'
    by_regex = {
        **STARTED,
        "name": "by_regex",
        "query": 'sum(checkout_started_total{region=~"$region"})',
    }
    report = await report_of(source(prometheus_url), journey(STARTED, by_regex), {"region": weird})
    assert [(k.name, k.value) for k in report.kpis] == [("started", 7.0), ("by_regex", 7.0)]
    # In a regex matcher the value is a literal, not a pattern: "e." is not "eu".
    report = await report_of(source(prometheus_url), journey(by_regex), {"region": "e."})
    assert report.kpis[0].value is None


async def test_one_failing_kpi_leaves_the_others(prometheus_url: str) -> None:
    broken = {**STARTED, "name": "broken", "query": "sum(rate(x[5m]) by)"}
    unknown_label = {**STARTED, "name": "per_cluster", "query": 'sum(x{cluster="$cluster"})'}
    report = await report_of(
        source(prometheus_url),
        journey(broken, CONVERSION, unknown_label),
        {"region": "eu", "env": "prod"},
    )
    assert [k.name for k in report.kpis] == ["conversion"]
    assert report.kpis[0].deviation_pct == -60.0
    assert report.notes == (
        'KPI per_cluster: query uses $cluster but the incident has no "cluster" label '
        "(its group labels: env, region)",
        "context unavailable: prometheus: HTTP 400: "
        "1:17: parse error: unexpected <by> in aggregation (broken)",
    )


async def test_a_kpi_must_be_one_series(prometheus_url: str) -> None:
    per_region = {
        **STARTED,
        "name": "per_region",
        "query": "sum by (region) (checkout_started_total)",
    }
    report = await report_of(source(prometheus_url), journey(per_region), {"region": "eu"})
    (kpi,) = report.kpis
    assert kpi.value is not None
    # The first series of now is not the first of last week (a region more now).
    assert report.notes == (
        "KPI per_region (now): the query returned 3 series; a KPI must return one, used the "
        "first, the series now is not the one at the baseline (its labels differ)",
        "KPI per_region (at the baseline): the query returned 2 series; "
        "a KPI must return one, used the first",
    )


async def test_an_unreachable_prometheus_is_a_note_within_the_budget() -> None:
    kpis = source(f"http://127.0.0.1:{free_port()}", budget="1s")
    started = time.monotonic()
    report = await report_of(kpis, journey(CONVERSION, ORDERS), {"region": "eu", "env": "prod"})
    assert time.monotonic() - started < 1.0 + 1.0
    assert report == KpiReport(
        notes=("context unavailable: prometheus: connection refused (conversion, orders_per_min)",),
        unavailable=("conversion", "orders_per_min"),
    )


async def test_a_prometheus_that_never_answers_costs_at_most_the_budget() -> None:
    with silent_server() as port:
        kpis = source(f"http://127.0.0.1:{port}", timeout="30s", budget="500ms")
        started = time.monotonic()
        report = await report_of(kpis, journey(CONVERSION, ORDERS), {"region": "eu", "env": "p"})
        assert time.monotonic() - started < 0.5 + 1.0
    assert report == KpiReport(
        notes=(
            "context unavailable: prometheus: no answer within the 0.5s budget "
            "(conversion, orders_per_min)",
        ),
        unavailable=("conversion", "orders_per_min"),
    )


def test_a_read_timeout_reads_as_one_whichever_clock_runs_out_first() -> None:
    # The client's own timeout may end a query before the worker's bound does (a loaded
    # machine starts the thread late). With retries off, as the KPI client runs requests,
    # requests hands the read timeout over as a ConnectionError: the note says timed out.
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=Retry(total=0, redirect=False)))
    with silent_server() as port, pytest.raises(requests.exceptions.ConnectionError) as caught:
        session.get(f"http://127.0.0.1:{port}/api/v1/query", timeout=0.2)
    assert failure_reason(caught.value, 0.2) == "timed out after 0.2s"


async def test_each_query_has_its_own_timeout() -> None:
    with silent_server() as port:
        # 1 s, not less: the timeout bounds the connect too, and on a loaded machine the
        # worker thread's connect alone has taken over 300 ms ("cannot connect").
        kpis = source(f"http://127.0.0.1:{port}", timeout="1s", budget="30s")
        started = time.monotonic()
        report = await report_of(kpis, journey(STARTED), {"region": "eu"})
        assert time.monotonic() - started < 1.0 + 1.5
    assert report == KpiReport(
        notes=("context unavailable: prometheus: timed out after 1s (started)",),
        unavailable=("started",),
    )


@pytest.mark.parametrize(
    ("status", "body", "content_type", "reason"),
    [
        (503, b"<html>upstream down</html>", "text/html", "HTTP 503"),
        (401, b"Unauthorized", "text/plain", "HTTP 401 (check prometheus.headers)"),
        (
            422,
            b'{"status":"error","errorType":"execution","error":"many-to-many matching"}',
            "application/json",
            "HTTP 422: many-to-many matching",
        ),
        (
            200,
            b"<html>a login page</html>",
            "text/html",
            "unexpected response (not Prometheus API JSON)",
        ),
        (
            200,
            b'{"status":"success"}',
            "application/json",
            "unexpected response (not Prometheus API JSON)",
        ),
        (
            200,
            b'{"status":"success","data":{"resultType":"vector","result":"x"}}',
            "application/json",
            "unexpected response (not a query result)",
        ),
        (
            200,
            b'{"status":"success","data":{"resultType":"matrix","result":'
            b'[{"metric":{},"values":[[1776499800,"x"]]}]}}',
            "application/json",
            "unexpected response (sample value is not a number)",
        ),
    ],
)
async def test_a_broken_answer_is_a_short_note_without_secrets(
    status: int, body: bytes, content_type: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Bearer s3cr3t-token"
    with fake_http(status, body, content_type) as fake:
        kpis = source(fake.url, headers={"Authorization": secret})
        report = await report_of(kpis, journey(STARTED), {"region": "eu"})
    assert report == KpiReport(
        notes=(f"context unavailable: prometheus: {reason} (started)",), unavailable=("started",)
    )
    assert fake.seen_headers and all(h["authorization"] == secret for h in fake.seen_headers)
    assert "s3cr3t" not in caplog.text
    assert reason in caplog.text


async def test_a_private_ca_is_trusted_through_ca_file(tmp_path: Path) -> None:
    tls = self_signed_cert(tmp_path)
    # Now and a week earlier come back as the two points of one range query.
    matrix = (
        b'{"status":"success","data":{"resultType":"matrix","result":'
        b'[{"metric":{},"values":[[1775895000,"0.5"],[1776499800,"0.5"]]}]}}'
    )
    with fake_http(200, matrix, tls=tls) as fake:
        trusted = await report_of(
            source(fake.url, ca_file=str(tls[0])), journey(STARTED), {"region": "eu"}
        )
        untrusted = await report_of(source(fake.url), journey(STARTED), {"region": "eu"})
    assert [(k.value, k.baseline, k.deviation_pct) for k in trusted.kpis] == [(0.5, 0.5, 0.0)]
    assert untrusted.notes == (
        "context unavailable: prometheus: TLS handshake failed (check prometheus.ca_file) "
        "(started)",
    )


async def test_credentials_in_the_url_stay_out_of_notes_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    kpis = source(f"http://reader:pa55word@127.0.0.1:{free_port()}")
    report = await report_of(kpis, journey(STARTED), {"region": "eu"})
    assert report.notes == ("context unavailable: prometheus: connection refused (started)",)
    assert "pa55word" not in caplog.text


async def test_without_a_url_there_are_no_kpis() -> None:
    unknown_label = {**STARTED, "name": "per_cluster", "query": 'sum(x{cluster="$cluster"})'}
    # Not even planned: with a URL the unknown label would be a note
    # (test_one_failing_kpi_leaves_the_others).
    report = await report_of(source(None), journey(CONVERSION, unknown_label), {"region": "eu"})
    assert report == KpiReport()


def kpi(bad_when: str = "down", **extra: Any) -> Kpi:
    return Kpi.model_validate(
        {"name": "k", "query": "x", "unit": "u", "bad_when": bad_when, **extra}
    )


def test_deviation_and_revenue_follow_the_bad_direction() -> None:
    latency = assess(kpi("up", revenue_per_unit=10.0), 3.0, 2.0)
    assert (latency.deviation_pct, latency.bad, latency.revenue_at_risk_per_min) == (
        50.0,
        True,
        10.0,
    )
    faster = assess(kpi("up", revenue_per_unit=10.0), 1.0, 2.0)
    assert (faster.deviation_pct, faster.bad, faster.revenue_at_risk_per_min) == (-50.0, False, 0.0)
    more = assess(kpi("down"), 3.0, 2.0)
    assert (more.deviation_pct, more.bad, more.revenue_at_risk_per_min) == (50.0, False, None)
    assert assess(kpi("down"), 1.0, 3.0).deviation_pct == -66.7
    assert assess(kpi("down"), 0.99996, 1.0).deviation_pct == 0.0  # never -0.0


def test_revenue_query_is_scaled_by_the_relative_loss_at_most_all_of_it() -> None:
    down = kpi("down", revenue_query="r")
    assert assess(down, 0.2, 0.5, revenue_per_min=1500.0).revenue_at_risk_per_min == 900.0
    assert assess(down, 0.0, 0.5, revenue_per_min=1500.0).revenue_at_risk_per_min == 1500.0
    assert assess(down, 0.2, 0.5).revenue_at_risk_per_min is None
    up = kpi("up", revenue_query="r")
    assert assess(up, 5.0, 1.0, revenue_per_min=100.0).revenue_at_risk_per_min == 100.0
    assert assess(up, 1.5, 1.0, revenue_per_min=100.0).revenue_at_risk_per_min == 50.0


def test_missing_or_zero_baselines_give_no_deviation() -> None:
    gone = assess(kpi("down", revenue_per_unit=1.0), None, 5.0)
    assert (gone.deviation_pct, gone.bad, gone.revenue_at_risk_per_min) == (None, False, None)
    assert assess(kpi("down"), 5.0, None).deviation_pct is None
    from_zero = assess(kpi("up", revenue_query="r"), 4.0, 0.0, revenue_per_min=10.0)
    assert (from_zero.deviation_pct, from_zero.bad) == (None, True)
    assert from_zero.revenue_at_risk_per_min is None
    assert assess(kpi("down"), 0.0, 0.0).bad is False


def test_a_series_at_the_baseline_and_another_now_are_not_one_kpi_moving() -> None:
    # A label changed between then and now (a new pod, a renamed job): each time has one
    # series, but not the same one. The values are used, and the note says so.
    def series(pod: str, ts: float, value: str) -> dict[str, object]:
        return {"metric": {"pod": pod}, "values": [[ts, value]]}

    pair = read_pair([series("a", 100.0, "0.5"), series("b", 200.0, "0.2")], 100.0, 200.0)
    assert pair == Pair(
        Sample(0.5),
        Sample(0.2, "the series now is not the one at the baseline (its labels differ)"),
    )
    same = read_pair([{"metric": {}, "values": [[100.0, "0.5"], [200.0, "0.2"]]}], 100.0, 200.0)
    assert same == Pair(Sample(0.5), Sample(0.2))


def trickle(conn: socket.socket, stop: threading.Event) -> None:
    """Answers 200 with a long body sent a byte at a time, one byte every 100 ms: a read
    timeout (per socket read) never fires."""
    with contextlib.suppress(OSError):
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n")  # fmt: skip
        while not stop.wait(0.1):
            conn.sendall(b" ")


async def test_queries_abandoned_on_a_trickling_prometheus_stay_within_max_threads() -> None:
    # "max_threads bounds the worker threads (and so the connections) in use at once":
    # a query given up at its timeout whose thread still reads a trickle (a proxy that
    # drips) must keep counting, or every look at every incident adds a thread and a
    # connection for as long as the drip lasts.
    started = Journey.model_validate(
        {"id": "checkout", "name": "Checkout", "weight": 1.0, "owner": {"team": "p"},
         "stages": [{"id": "payment", "weight": 1.0, "match": ['env="prod"']}],
         "kpis": [{"name": "started", "query": 'sum(x{region="$region"})', "unit": "n",
                   "bad_when": "down"}]}
    )  # fmt: skip
    at = datetime(2026, 4, 18, 8, 10, tzinfo=UTC)

    async def looks(port: int) -> list[tuple[str, ...]]:
        config = PrometheusConfig.model_validate(
            {"url": f"http://127.0.0.1:{port}", "timeout": "300ms", "budget": "1s"}
        )
        kpis = PrometheusKpis(config, max_threads=2)
        try:
            return [(await kpis.kpis(started, {"region": "eu"}, at)).notes for _ in range(6)]
        finally:
            await kpis.aclose()

    with tcp_server(trickle) as (port, conns):
        notes = await looks(port)
        opened = len(conns)
    assert all(n and n[0].startswith("context unavailable: prometheus: ") for n in notes), notes
    assert opened <= 2, (opened, notes)
