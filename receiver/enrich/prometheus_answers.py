"""What Prometheus answered for a KPI query: a sample, or a failure with a short reason.

``read`` reads the ``data.result`` of an instant query, ``read_pair`` that of the
two-point range query standing for two instant queries (the baseline and now). Each point
is a ``Sample`` (``value`` None, and a ``note`` saying why, when there is no usable
sample: no series, NaN/Inf) or ``Failed`` when the answer is malformed;
``failure_reason`` is the reason for a request that raised. Reasons never carry the URL
(it may hold credentials) or headers.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException

_STATUS = re.compile(r"HTTP Status Code (\d{3}) \((b['\"].*['\"])\)\Z", re.DOTALL)
_REASON_CHARS = 160


@dataclass(frozen=True, slots=True)
class Sample:
    """Prometheus answered; ``value`` None when it had no usable sample (``note`` says why)."""

    value: float | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """No usable answer: the request failed or the answer is malformed (``reason``)."""

    reason: str


Outcome = Sample | Failed


@dataclass(frozen=True, slots=True)
class Pair:
    """The two points of the range query: at the baseline (``then``) and at ``now``."""

    then: Outcome
    now: Outcome


def read_pair(result: object, then_ts: float, now_ts: float) -> Pair | Failed:
    """The ``data.result`` of the two-point range query, read as the two instant queries
    it stands for: per time, the series that have a point then."""
    if not isinstance(result, list) or not all(isinstance(s, dict) for s in result):
        return Failed("unexpected response (not a query result)")
    if any(not isinstance(s.get("values"), list) for s in result):
        return Failed("unexpected response (not a range query result)")

    def at(ts: float) -> tuple[Outcome, object]:
        """The point at ``ts``, and the labels of the series it came from."""
        found = [
            (point[1], series.get("metric"))
            for series in result
            for point in series["values"]
            if isinstance(point, list)
            and len(point) == 2
            and isinstance(point[0], int | float)
            and abs(point[0] - ts) < 0.01
        ]
        if not found:
            return Sample(None, "the query returned no series"), None
        value, labels = found[0]
        sample = _number(value)
        if len(found) > 1 and isinstance(sample, Sample):
            many = f"the query returned {len(found)} series; a KPI must return one, used the first"
            sample = Sample(sample.value, many if sample.note is None else f"{many}, {sample.note}")
        return sample, labels

    (then, then_labels), (now, now_labels) = at(then_ts), at(now_ts)
    if (
        isinstance(now, Sample)
        and now.value is not None
        and then_labels is not None
        and now_labels is not None
        and then_labels != now_labels
    ):
        # One series then and another now (a label that changed): not one KPI moving.
        differ = "the series now is not the one at the baseline (its labels differ)"
        now = Sample(now.value, differ if now.note is None else f"{now.note}, {differ}")
    return Pair(then, now)


def read(result: object) -> Outcome:
    """The ``data.result`` of an instant query: a vector (list of series) or a scalar."""
    if not isinstance(result, list):
        return Failed("unexpected response (not a query result)")
    if len(result) == 2 and not isinstance(result[0], dict):
        return _number(result[1])  # scalar: [time, "value"]
    if not all(isinstance(series, dict) for series in result):
        return Failed("unexpected response (not a query result)")
    if not result:
        return Sample(None, "the query returned no series")
    first = result[0]
    if "value" not in first:
        return Sample(None, "the query returned a range vector; a KPI needs one instant value")
    if not isinstance(first["value"], list) or len(first["value"]) != 2:
        return Failed("unexpected response (malformed sample)")
    sample = _number(first["value"][1])
    if len(result) > 1 and isinstance(sample, Sample):
        many = f"the query returned {len(result)} series; a KPI must return one, used the first"
        return Sample(sample.value, many if sample.note is None else f"{many}, {sample.note}")
    return sample


def _number(raw: object) -> Outcome:
    if not isinstance(raw, str):
        return Failed("unexpected response (sample value is not a string)")
    try:
        number = float(raw)
    except ValueError:
        return Failed("unexpected response (sample value is not a number)")
    if not math.isfinite(number):
        return Sample(None, f"the query returned {raw}")
    return Sample(number)


def failure_reason(exc: Exception, timeout: float) -> str:
    """A short, secret-free reason: never the URL (it may hold credentials) or headers."""
    if isinstance(exc, PrometheusApiClientException):
        return _http_reason(str(exc))
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (check prometheus.ca_file)"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"timed out after {_seconds(timeout)}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "Read timed out" in text:
            # With retries off, requests wraps a read timeout as a ConnectionError: a
            # Prometheus that is slow to answer is not one that cannot be reached.
            return f"timed out after {_seconds(timeout)}"
        if "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "cannot resolve the host"
        if "RemoteDisconnected" in text or "Connection aborted" in text:
            return "connection closed without a response"
        return "cannot connect"
    if isinstance(exc, ValueError | KeyError | TypeError):
        return "unexpected response (not Prometheus API JSON)"
    if isinstance(exc, requests.exceptions.RequestException):
        return f"request failed ({type(exc).__name__})"
    return f"query failed ({type(exc).__name__})"


def _http_reason(text: str) -> str:
    match = _STATUS.match(text)
    if match is None:
        return "HTTP error"
    status = int(match.group(1))
    hint = " (check prometheus.headers)" if status in (401, 403) else ""
    detail = ""
    try:
        body = ast.literal_eval(match.group(2))
        error = json.loads(body).get("error") if isinstance(body, bytes) else None
        if isinstance(error, str) and error:
            detail = ": " + error[:_REASON_CHARS]
    except (ValueError, SyntaxError, AttributeError):
        pass  # not Prometheus's JSON (a proxy's HTML page): the status says enough
    return f"HTTP {status}{hint}{detail}"


def _seconds(seconds: float) -> str:
    return f"{seconds:g}s"
