"""Prometheus: build info, then every KPI query of every journey, run now."""

from __future__ import annotations

import time

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from receiver import config as cfg
from receiver.enrich import EnrichmentError
from receiver.enrich.prometheus_answers import Failed, failure_reason, read
from receiver.enrich.promql import escape_string, placeholders, substitute
from receiver.online import Finding, Findings, shown_url

_LABEL_SAMPLE_S = 3600.0


def check_prometheus(config: cfg.PrometheusConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """Build info, then every KPI query (and revenue query) of every journey, now."""
    found = Findings("prometheus")
    if config.url is None:
        return found
    url = config.url.rstrip("/")
    session = requests.Session()
    if config.ca_file is not None:
        session.verify = str(config.ca_file)
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    no_retries = Retry(total=0, redirect=False)
    client = PrometheusConnect(
        url=url, headers=headers or None, retry=no_retries, session=session, timeout=config.timeout
    )
    session.mount(url, HTTPAdapter(max_retries=no_retries))
    try:
        version = _build_version(session, url, headers, config.timeout)
    except _Unanswered as exc:
        found.problem(f"prometheus.url {shown_url(url)}: {exc}")
        session.close()
        return found
    found.ok(f"{shown_url(url)} is Prometheus {version}")
    samples: dict[str, str] = {}
    try:
        for journey in journeys.journeys:
            for kpi in journey.kpis:
                for field in ("query", "revenue_query"):
                    query = getattr(kpi, field)
                    if query is not None:
                        _kpi_query(found, client, config.timeout, samples, journey, kpi, field)
    finally:
        session.close()
    return found


class _Unanswered(Exception):
    """No usable answer; the text says why."""


def _build_version(
    session: requests.Session, url: str, headers: dict[str, str], timeout: float
) -> str:
    try:
        answer = session.get(f"{url}/api/v1/status/buildinfo", headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise _Unanswered(failure_reason(exc, timeout)) from exc
    if answer.status_code != 200:
        hint = {401: " — check prometheus.headers", 403: " — check prometheus.headers"}.get(
            answer.status_code, " — is prometheus.url a Prometheus?"
        )
        raise _Unanswered(f"/api/v1/status/buildinfo: HTTP {answer.status_code}{hint}")
    try:
        return str(answer.json()["data"]["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _Unanswered("/api/v1/status/buildinfo: not Prometheus's answer") from exc


def _kpi_query(
    found: Findings,
    client: PrometheusConnect,
    timeout: float,
    samples: dict[str, str],
    journey: cfg.Journey,
    kpi: cfg.Kpi,
    field: str,
) -> None:
    what = f'journey {journey.id} KPI "{kpi.name}"' + (f" {field}" if field != "query" else "")
    query: str = getattr(kpi, field)
    try:
        names = sorted(placeholders(query))
        labels = {name: _sample(client, name, samples) for name in names}
        filled = substitute(query, labels)
    except EnrichmentError as exc:
        found.problem(f"{what}: {exc} — fix kpis[].{field} in the journeys file")
        return
    shown = ", ".join(f'{name}="{escape_string(value)}"' for name, value in labels.items())
    given = f" (with {shown})" if shown else ""
    try:
        result = client.custom_query(
            filled,
            params={"timeout": f"{timeout:g}"},
            timeout=timeout,
        )
    except (requests.RequestException, PrometheusApiClientException, ValueError) as exc:
        found.problem(
            f"{what} fails: {failure_reason(exc, timeout)} — fix kpis[].{field} in the "
            "journeys file"
        )
        return
    outcome = read(result)
    if isinstance(outcome, Failed):
        found.problem(f"{what}: {outcome.reason}")
    elif outcome.value is None and outcome.note == "the query returned no series":
        found.warning(f"{what} returns nothing now{given}: check the metric names")
    elif outcome.note is not None:
        found.warning(f"{what}{given}: {outcome.note}")
    else:
        found.ok(f"{what} is {outcome.value:g} now{given}")


def _sample(client: PrometheusConnect, name: str, samples: dict[str, str]) -> str:
    """A value ``name`` has had in the last hour ("sample" when none): a query with a
    placeholder is run for some incident that could really happen."""
    if name not in samples:
        since = {"start": f"{time.time() - _LABEL_SAMPLE_S:.3f}"}
        try:
            values = client.get_label_values(name, params=since)
        except (requests.RequestException, PrometheusApiClientException, ValueError):
            values = []
        samples[name] = str(values[0]) if values else "sample"
    return samples[name]
