"""The incident page's KPI chart: the SVG drawn from two series, and the series read from a
real Prometheus.

The history is ``tests/data/prometheus/conversion.om`` (a gauge, one sample a minute): on
2026-04-18 the eu conversion is 0.93 from 07:40Z (nothing before), 0.41 from 08:00Z, NaN
08:15–08:19Z, 0.41 again until 08:40Z; a week earlier it is 0.93 from 07:20Z to 08:40Z. The
us conversion is 0.9 throughout, both weeks.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.config.journeys_yaml import Kpi
from receiver.config.receiver_yaml import PrometheusConfig
from receiver.enrich.prometheus import PrometheusKpis
from receiver.enrich.prometheus_answers import Failed
from receiver.web.charts import Point, kpi_chart, number
from receiver.web.series import ChartUnavailable, KpiSeries, kpi_series, window
from tests.support.fake_server import FakeServer, serve
from tests.support.processes import free_port
from tests.support.prometheus import DATA, fake_http, prometheus_server, silent_server

pytestmark = pytest.mark.anyio

SVG = "{http://www.w3.org/2000/svg}"
STARTED = datetime(2026, 4, 18, 8, 0, tzinfo=UTC)
RESOLVED = datetime(2026, 4, 18, 8, 30, tzinfo=UTC)
LATER = datetime(2026, 4, 18, 9, 0, tzinfo=UTC)
CONVERSION = Kpi.model_validate(
    {
        "name": "conversion",
        "query": 'avg(journey_conversion_ratio{region="$region"})',
        "unit": "ratio",
        "bad_when": "down",
    }
)


def chart(now: list[Point], baseline: list[Point], **overrides: Any) -> str:
    options: dict[str, Any] = {
        "start": 0.0,
        "end": 100.0,
        "unit": "ratio",
        "bad_when": "down",
        "incident_start": 25.0,
        "title": "conversion",
    }
    return kpi_chart(now, baseline, **{**options, **overrides})


def parsed(svg: str) -> ET.Element:
    """The SVG as XML: parsing fails on anything that is not well-formed."""
    assert "style=" not in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def path(root: ET.Element, css: str) -> ET.Element:
    (found,) = [p for p in root.iter(f"{SVG}path") if css in p.get("class", "").split()]
    return found


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


# The plot spans x 4..316 and y 16 (highest value) ..100 (lowest value).


def test_now_is_solid_the_baseline_dashed_and_the_start_marked() -> None:
    now: list[Point] = [(0.0, 1.0), (50.0, 0.0), (100.0, 0.0)]
    baseline: list[Point] = [(0.0, 1.0), (50.0, 1.0), (100.0, 1.0)]
    root = parsed(chart(now, baseline))

    solid = path(root, "kpi-chart-now")
    assert solid.get("d") == "M4.0 16.0L160.0 100.0L316.0 100.0"
    assert solid.get("stroke-dasharray") is None
    assert "kpi-chart-bad" in solid.get("class", "")  # 0 now against 1 last week, bad down
    dashed = path(root, "kpi-chart-baseline")
    assert dashed.get("d") == "M4.0 16.0L160.0 16.0L316.0 16.0"
    assert dashed.get("stroke-dasharray") == "4 3"

    (marker,) = [m for m in root.iter(f"{SVG}line") if m.get("class") == "kpi-chart-start"]
    # 25 s into a 100 s window over 312 units: 4 + 0.25 * 312.
    assert (marker.get("x1"), marker.get("x2")) == ("82.0", "82.0")
    assert (marker.get("y1"), marker.get("y2")) == ("16.0", "100.0")
    assert marker.findtext(f"{SVG}title") == "incident start 00:00 UTC"

    summary = "conversion now 0 vs 1 last week (ratio)"
    assert root.get("aria-label") == summary
    assert root.get("role") == "img"
    assert root.findtext(f"{SVG}title") == summary
    assert root.get("viewBox") == "0 0 320 120"
    assert {"1 ratio", "0 ratio", "now", "last week", "00:00–00:01 UTC"} <= set(texts(root))


def test_every_word_of_the_chart_is_in_the_pages_text_colour() -> None:
    # The words are small (10 units of a 320-wide chart): in the page's text colour they read
    # at the contrast the page's text has in light and dark mode. The incident start's
    # orange (#e65100) is 3.8:1 on white, under the 4.5:1 text needs (WCAG 1.4.3).
    root = parsed(chart([(0.0, 1.0), (100.0, 0.0)], [(0.0, 1.0), (100.0, 1.0)]))
    assert "start" in texts(root)
    assert root.get("fill") == "currentColor"
    assert {t.text: t.get("fill") for t in root.iter(f"{SVG}text") if t.get("fill")} == {}


def test_the_bad_direction_decides_the_colour() -> None:
    up = [(0.0, 1.0), (100.0, 3.0)]
    usual: list[Point] = [(0.0, 1.0), (100.0, 1.0)]
    latency = parsed(chart(up, usual, bad_when="up", title="latency", unit="s", vs="yesterday"))
    assert "kpi-chart-bad" in path(latency, "kpi-chart-now").get("class", "")
    assert latency.get("aria-label") == "latency now 3 vs 1 yesterday (s)"
    better = parsed(chart(up, usual, bad_when="down"))
    assert path(better, "kpi-chart-now").get("class") == "kpi-chart-now"
    flat = parsed(chart(usual, usual))
    assert path(flat, "kpi-chart-now").get("class") == "kpi-chart-now"
    # One value only: the line sits in the middle, min and max are the same.
    assert path(flat, "kpi-chart-now").get("d") == "M4.0 58.0L316.0 58.0"


def test_missing_points_are_gaps() -> None:
    now: list[Point] = [
        (0.0, 1.0),
        (10.0, 1.0),
        (20.0, None),  # no value
        (30.0, 0.0),
        (40.0, math.nan),  # Prometheus said NaN
        (50.0, 0.0),
        (60.0, 0.5),
        # 70 and 80 left out altogether: a hole of three steps
        (90.0, 1.0),
        (100.0, math.inf),
    ]
    root = parsed(chart(now, []))
    d = path(root, "kpi-chart-now").get("d", "")
    assert d == (
        "M4.0 16.0L35.2 16.0"  # 0, 10
        "M97.6 100.0h0"  # 30 alone: a dot
        "M160.0 100.0L191.2 58.0"  # 50, 60
        "M284.8 16.0h0"  # 90 alone
    )
    assert [p.get("class") for p in root.iter(f"{SVG}path")] == ["kpi-chart-now"]
    assert root.get("aria-label") == "conversion now 1 vs no data last week (ratio)"


def test_points_outside_the_window_are_left_out() -> None:
    now: list[Point] = [(-50.0, 9.0), (0.0, 1.0), (100.0, 2.0), (150.0, -9.0)]
    root = parsed(chart(now, [], incident_start=200.0))
    assert path(root, "kpi-chart-now").get("d") == "M4.0 100.0L316.0 16.0"
    assert {"1 ratio", "2 ratio"} <= set(texts(root))
    # The incident started after the window: no marker.
    assert [m for m in root.iter(f"{SVG}line") if m.get("class") == "kpi-chart-start"] == []


def test_hostile_text_is_escaped_and_the_svg_stays_well_formed() -> None:
    title = '</svg><script>alert(1)</script>"\x00\x1b'
    unit = '"><image href=x onerror=alert(2)>'
    svg = chart([(0.0, 1.0), (100.0, 2.0)], [(0.0, 2.0)], title=title, unit=unit, vs="<b>")
    assert "<script" not in svg
    assert "<image" not in svg
    root = parsed(svg)
    assert [e.tag for e in root.iter() if e.tag.endswith(("script", "image", "b"))] == []
    summary = f'</svg><script>alert(1)</script>" now 2 vs 2 <b> ({unit})'
    assert root.get("aria-label") == summary
    assert root.findtext(f"{SVG}title") == summary
    assert f"2 {unit}" in texts(root)
    assert "<b>" in texts(root)


def test_no_data_is_said() -> None:
    for now, baseline in (([], []), ([(0.0, None), (50.0, math.nan)], [(0.0, None)])):
        root = parsed(chart(now, baseline))
        assert texts(root) == ["no data"]
        assert root.get("aria-label") == "conversion: no data"
        assert list(root.iter(f"{SVG}path")) == []
    only_last_week = parsed(chart([], [(0.0, 0.9), (100.0, 0.9)]))
    assert only_last_week.get("aria-label") == "conversion: no data now"
    assert [p.get("class") for p in only_last_week.iter(f"{SVG}path")] == ["kpi-chart-baseline"]


def test_a_window_must_have_a_length() -> None:
    with pytest.raises(ValueError, match="end > start"):
        chart([], [], start=10.0, end=10.0)


def test_numbers_are_short() -> None:
    assert [number(v) for v in (0.41, 0.929999, 12.5, 20.0, 1_001_500.0, 0.0012, -0.0)] == [
        "0.41",
        "0.93",
        "12.5",
        "20",
        "1,001,500",
        "0.0012",
        "0",
    ]


def test_the_window_starts_half_an_hour_early_on_a_round_step() -> None:
    started = STARTED.timestamp()
    start, end, step = window(started, started + 1800)
    assert (start, end, step) == (started - 1800, started + 1800, 60.0)
    # Three days open: still at most 120 points, the start on the step.
    start, end, step = window(started + 7, started + 3 * 86400)
    assert step == 3600.0
    assert start % step == 0
    assert start <= started + 7 - 1800
    assert (end - start) // step + 1 <= 120
    # Resolved "before" it started (clocks disagree): the half hour before still shows.
    assert window(started, started - 60) == (started - 1800, started, 30.0)


# ---- the series, from a real Prometheus ----


@pytest.fixture(scope="module")
def conversion_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_server(
        tmp_path_factory.mktemp("prometheus-conversion"), DATA / "conversion.om"
    ) as url:
        yield url


def source(url: str, **settings: Any) -> PrometheusKpis:
    return PrometheusKpis(PrometheusConfig.model_validate({"url": url, **settings}))


@pytest.fixture
async def prometheus(conversion_url: str) -> AsyncIterator[PrometheusKpis]:
    kpis = source(conversion_url)
    yield kpis
    await kpis.aclose()


def values(points: tuple[Point, ...]) -> list[float | None]:
    return [v for _, v in points]


async def test_a_drop_against_last_week_is_two_series_on_one_grid(
    prometheus: PrometheusKpis,
) -> None:
    series = await kpi_series(
        prometheus, CONVERSION, {"region": "eu"}, started=STARTED, resolved=RESOLVED, now=LATER
    )
    assert isinstance(series, KpiSeries), series
    assert series.query == 'avg(journey_conversion_ratio{region="eu"})'
    assert (series.start, series.end, series.step) == (
        (STARTED - timedelta(minutes=30)).timestamp(),
        RESOLVED.timestamp(),
        60.0,
    )
    assert series.incident_start == STARTED.timestamp()
    assert [t for t, _ in series.now] == [series.start + 60 * k for k in range(61)]
    assert [t for t, _ in series.baseline] == [t for t, _ in series.now]
    # 07:30–07:39 nothing yet, 07:40–07:59 0.93, 08:00–08:14 0.41, 08:15–08:19 NaN, then 0.41.
    assert values(series.now) == [None] * 10 + [0.93] * 20 + [0.41] * 15 + [None] * 5 + [0.41] * 11
    assert values(series.baseline) == [0.93] * 61
    assert (series.baseline_offset, series.vs, series.notes) == (604800.0, "last week", ())

    root = parsed(series.svg())
    assert root.get("aria-label") == "conversion now 0.41 vs 0.93 last week (ratio)"
    now_d = path(root, "kpi-chart-now").get("d", "")
    assert now_d.count("M") == 2  # 07:40–08:14 and 08:20–08:30, the NaN minutes a gap
    assert path(root, "kpi-chart-baseline").get("d", "").count("M") == 1
    (marker,) = [m for m in root.iter(f"{SVG}line") if m.get("class") == "kpi-chart-start"]
    assert marker.get("x1") == "160.0"  # 08:00, halfway through 07:30–08:30


async def test_an_open_incident_is_charted_until_now(prometheus: PrometheusKpis) -> None:
    now = STARTED + timedelta(minutes=10, seconds=30)
    series = await kpi_series(
        prometheus, CONVERSION, {"region": "us"}, started=STARTED, resolved=None, now=now
    )
    assert isinstance(series, KpiSeries), series
    assert series.end == now.timestamp()
    assert series.step == 30.0  # 40.5 minutes in at most 120 points
    assert len(series.now) == 82  # 07:30:00 … 08:10:30
    assert set(values(series.now)) == set(values(series.baseline)) == {0.9}


async def test_the_kpis_own_offset_with_no_data_then(prometheus: PrometheusKpis) -> None:
    daily = CONVERSION.model_copy(update={"baseline_offset": 86400.0})
    series = await kpi_series(
        prometheus, daily, {"region": "eu"}, started=STARTED, resolved=RESOLVED, now=LATER
    )
    assert isinstance(series, KpiSeries), series
    assert series.vs == "yesterday"
    assert set(values(series.baseline)) == {None}
    assert series.notes == ("yesterday: the query returned no series",)
    assert parsed(series.svg()).get("aria-label") == (
        "conversion now 0.41 vs no data yesterday (ratio)"
    )


async def test_a_query_of_several_series_uses_the_first(prometheus: PrometheusKpis) -> None:
    every_region = CONVERSION.model_copy(update={"query": "journey_conversion_ratio"})
    series = await kpi_series(
        prometheus, every_region, {}, started=STARTED, resolved=RESOLVED, now=LATER
    )
    assert isinstance(series, KpiSeries), series
    many = "the query returned 2 series; a KPI must return one, used the first"
    assert series.notes == (f"now: {many}", f"last week: {many}")


async def test_the_range_query_on_the_client(prometheus: PrometheusKpis) -> None:
    answer = await prometheus.range(
        'journey_conversion_ratio{region="eu"}',
        datetime(2026, 4, 18, 8, 14, tzinfo=UTC),
        datetime(2026, 4, 18, 8, 16, tzinfo=UTC),
        60,
    )
    assert not isinstance(answer, Failed), answer
    assert [(s.labels, s.points) for s in answer] == [
        (
            {"__name__": "journey_conversion_ratio", "region": "eu"},
            ((1776500040.0, 0.41), (1776500100.0, None), (1776500160.0, None)),
        )
    ]
    with pytest.raises(ValueError, match="step"):
        await prometheus.range("x", STARTED, LATER, 0)


@contextlib.contextmanager
def baseline_refused(upstream: str) -> Iterator[str]:
    """A proxy to ``upstream`` that answers 503 to queries of more than a day ago."""

    async def answer(request: Request) -> Response:
        if float(request.query_params["start"]) < STARTED.timestamp() - 86400:
            return Response(b"<html>upstream down</html>", 503, media_type="text/html")
        async with httpx.AsyncClient() as client:
            found = await client.get(upstream + request.url.path, params=request.query_params)
        return Response(found.content, found.status_code, media_type="application/json")

    with serve(Starlette(routes=[Route("/{path:path}", answer)]), FakeServer()) as proxy:
        yield proxy.url


async def test_without_the_baseline_now_is_still_charted(conversion_url: str) -> None:
    with baseline_refused(conversion_url) as url:
        kpis = source(url)
        series = await kpi_series(
            kpis, CONVERSION, {"region": "eu"}, started=STARTED, resolved=RESOLVED, now=LATER
        )
        await kpis.aclose()
    assert isinstance(series, KpiSeries), series
    assert values(series.now)[-1] == 0.41
    assert set(values(series.baseline)) == {None}
    assert series.notes == ("last week unavailable: prometheus: HTTP 503",)
    root = parsed(series.svg())
    assert root.get("aria-label") == "conversion now 0.41 vs no data last week (ratio)"


async def test_a_label_the_incident_lacks_is_no_chart(prometheus: PrometheusKpis) -> None:
    per_cluster = CONVERSION.model_copy(update={"query": 'x{cluster="$cluster"}'})
    answer = await kpi_series(
        prometheus, per_cluster, {"region": "eu"}, started=STARTED, resolved=None, now=LATER
    )
    assert answer == ChartUnavailable(
        "conversion",
        'query uses $cluster but the incident has no "cluster" label (its group labels: region)',
    )


async def test_prometheus_down_is_chart_unavailable() -> None:
    kpis = source(f"http://127.0.0.1:{free_port()}")
    answer = await kpi_series(
        kpis, CONVERSION, {"region": "eu"}, started=STARTED, resolved=RESOLVED, now=LATER
    )
    await kpis.aclose()
    assert isinstance(answer, ChartUnavailable)
    assert answer.text == "chart unavailable: prometheus: connection refused"
    nothing = await kpi_series(
        None, CONVERSION, {"region": "eu"}, started=STARTED, resolved=None, now=LATER
    )
    assert isinstance(nothing, ChartUnavailable)
    assert nothing.text == "chart unavailable: prometheus: not configured (prometheus.url)"


async def test_a_prometheus_that_never_answers_costs_the_timeout() -> None:
    with silent_server() as port:
        kpis = source(f"http://127.0.0.1:{port}", timeout="400ms")
        began = time.monotonic()
        answer = await kpi_series(
            kpis, CONVERSION, {"region": "eu"}, started=STARTED, resolved=None, now=LATER
        )
        assert time.monotonic() - began < 0.4 + 1.0
        await kpis.aclose()
    assert isinstance(answer, ChartUnavailable)
    assert answer.text == "chart unavailable: prometheus: timed out after 0.4s"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"<html>a login page</html>", "unexpected response (not Prometheus API JSON)"),
        (
            200,
            b'{"status":"success","data":{"resultType":"matrix","result":'
            b'[{"metric":{},"values":[[1776499800,"x"]]}]}}',
            "unexpected response (sample value is not a number)",
        ),
        (
            200,
            b'{"status":"success","data":{"resultType":"vector","result":'
            b'[{"metric":{},"value":[1776499800,"1"]}]}}',
            "unexpected response (not a range query result)",
        ),
        (503, b"<html>upstream down</html>", "HTTP 503"),
    ],
)
async def test_a_bad_answer_is_chart_unavailable(status: int, body: bytes, reason: str) -> None:
    with fake_http(status, body, "text/html" if body.startswith(b"<") else "application/json") as f:
        kpis = source(f.url)
        answer = await kpi_series(
            kpis, CONVERSION, {"region": "eu"}, started=STARTED, resolved=None, now=LATER
        )
        await kpis.aclose()
    assert answer == ChartUnavailable("conversion", f"prometheus: {reason}")


def test_the_chart_svg_has_no_inline_style_anywhere() -> None:
    svgs = [
        chart([(0.0, 1.0)], [(0.0, 2.0)]),
        chart([], []),
        chart([(0.0, 1.0), (100.0, None)], [], bad_when="up"),
    ]
    assert all(not re.search(r"\bstyle\s*=", svg) and "<script" not in svg for svg in svgs)
