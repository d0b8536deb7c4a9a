"""``journey-receiver check --online``: call each configured system and say what is missing.

The offline check proves the files are well formed; this one asks the systems whether the
config works with them, with the same clients the receiver builds, each call bounded by
the system's configured timeout:

- Slack: ``auth.test``; the token's scopes (the ``x-oauth-scopes`` header of the answer);
  each channel (``sinks.slack.channel``, the owners' ``slack_channel``) in
  ``conversations.list``, and whether the bot is a member.
- Jira: ``myself``; each project (``sinks.jira.project``, the owners' ``jira_project``)
  and its issue type (``project/{key}/statuses``); the done and reopen transitions, read
  off the project's latest open and latest done issue (transitions exist only from an
  issue's status, so without such an issue they cannot be checked).
- PagerDuty: the Events API host answers over TLS (there is no read API for a routing
  key); the routing keys are there and 32 characters long.
- Prometheus: ``/api/v1/status/buildinfo``; each KPI query runs now, its ``$label``
  placeholders filled with a value the label has had in the last hour.
- Alertmanager: ``GET /api/v2/status`` of each peer on its own.

Each check returns ``Finding``s: ``ok``, ``warning`` (works, but something is degraded or
cannot be checked) or ``problem`` (deliveries or enrichment will fail). No finding carries
a token, a routing key, a header value or a URL's password.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import math
import re
import ssl
import sys
import time
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
import requests
from jira import JIRA, JIRAError
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import SlackResponse
from urllib3.util import Retry

from receiver import config as cfg
from receiver.config.alertmanager import AlertmanagerConfig
from receiver.config.receiver_yaml import DEFAULT_JOURNEYS_FILE
from receiver.enrich import EnrichmentError
from receiver.enrich.prometheus_answers import Failed, failure_reason, read
from receiver.enrich.promql import escape_string, placeholders, substitute
from receiver.peer.alertmanager import (
    AlertmanagerClient,
    AlertmanagerRefused,
    AlertmanagerUnavailable,
)
from receiver.sinks.jira import _client as jira_client  # the sink's own client, as it builds it
from receiver.tls import ssl_context

Level = Literal["ok", "warning", "problem"]
_SYSTEMS = ("slack", "jira", "pagerduty", "prometheus", "alertmanager")
"""Every system asked, in the order of the report."""
_LABELS: dict[Level, str] = {"ok": "ok", "warning": "warning", "problem": "PROBLEM"}
_TEXT_MAX = 300
# As the Slack sink tells a channel ID from a name.
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
_SLACK_PAGE = 200
_SLACK_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
_JIRA_SAMPLE = 50
PAGERDUTY_KEY_LENGTH = 32
_LABEL_SAMPLE_S = 3600.0
_SDK_LOGGER = logging.getLogger("journey_receiver.slack_sdk")
_SDK_LOGGER.setLevel(logging.INFO)  # as in the sink: its DEBUG lines quote bodies


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: how ``system`` fares, and what to do about it."""

    level: Level
    system: str
    text: str

    def line(self) -> str:
        return f"{_LABELS[self.level]:<7} {self.system}: {self.text}"


class _Findings(list[Finding]):
    """The findings of one system, added by level."""

    def __init__(self, system: str) -> None:
        super().__init__()
        self.system = system

    def ok(self, text: str) -> None:
        self.append(Finding("ok", self.system, text))

    def warning(self, text: str) -> None:
        self.append(Finding("warning", self.system, text))

    def problem(self, text: str) -> None:
        self.append(Finding("problem", self.system, text))


def run(config_path: Path | None, journeys_path: Path | None, out: TextIO | None = None) -> int:
    """Load the (already checked) files, call every configured system, print one line per
    finding and a summary; 1 when any finding is a problem, else 0."""
    out = out or sys.stdout
    if config_path is None:
        receiver, journeys = (
            cfg.ReceiverConfig(),
            cfg.load_journeys(journeys_path or DEFAULT_JOURNEYS_FILE),
        )
    else:
        receiver, journeys = cfg.load(config_path, journeys_path)
    findings = asyncio.run(check_all(receiver, journeys))
    for finding in findings:
        print(finding.line(), file=out)
    checked = sorted({f.system for f in findings}, key=_SYSTEMS.index)
    problems = sum(f.level == "problem" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    if not checked:
        print(
            "online check: nothing to call (no Slack, Jira or PagerDuty sink, no "
            "prometheus.url, no alertmanager section)",
            file=out,
        )
        return 0
    print(
        f"online check of {', '.join(checked)}: {problems} problem(s), {warnings} warning(s)",
        file=out,
    )
    return 1 if problems else 0


async def check_all(receiver: cfg.ReceiverConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """The findings of every configured (and enabled) system, asked all at once, in the
    order of ``_SYSTEMS``; secrets of the config are blanked out of every text."""
    enabled = receiver.sinks.enabled()
    sinks = receiver.sinks
    calls: list[Awaitable[list[Finding]]] = []
    if sinks.slack is not None and "slack" in enabled:
        calls.append(asyncio.to_thread(check_slack, sinks.slack, journeys))
    if sinks.jira is not None and "jira" in enabled:
        calls.append(asyncio.to_thread(check_jira, sinks.jira, journeys))
    if sinks.pagerduty is not None and "pagerduty" in enabled:
        calls.append(asyncio.to_thread(check_pagerduty, sinks.pagerduty, journeys))
    if receiver.prometheus.url is not None:
        calls.append(asyncio.to_thread(check_prometheus, receiver.prometheus, journeys))
    if receiver.alertmanager is not None:
        calls.append(check_alertmanager(receiver.alertmanager))
    results: list[list[Finding]] = await asyncio.gather(*calls)
    secrets = sorted(_secrets(receiver, journeys), key=len, reverse=True)
    return [
        Finding(f.level, f.system, _redact(f.text, secrets)) for found in results for f in found
    ]


# --- Slack -------------------------------------------------------------------------------


def check_slack(config: cfg.SlackSinkConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """``auth.test``, the token's scopes and the configured channels."""
    found = _Findings("slack")
    client = WebClient(
        token=config.token.get_secret_value(),
        base_url=config.base_url,
        timeout=math.ceil(config.timeout),
        ssl=ssl_context(config.ca_file),
        retry_handlers=[],
        logger=_SDK_LOGGER,
    )
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        code = _slack_code(exc)
        if code in _SLACK_AUTH_ERRORS:
            found.problem(
                f"auth.test refused the token ({code}): sinks.slack.token is not a valid "
                "bot token — issue a new one"
            )
        else:
            status = exc.response.status_code
            found.problem(
                f"auth.test failed (HTTP {status}, {code or 'no error code'}) — check "
                "sinks.slack.base_url and sinks.slack.token"
            )
        return found
    except (OSError, http.client.HTTPException, SlackRequestError) as exc:
        found.problem(
            f"cannot reach sinks.slack.base_url {_shown(config.base_url)}: "
            f"{_transport_reason(exc, config.timeout, 'sinks.slack.ca_file')}"
        )
        return found
    user, team, team_id = answer.get("user"), answer.get("team"), answer.get("team_id")
    found.ok(f"auth.test as @{user} in team {team_id}" + (f" ({team})" if team else ""))
    targets = _slack_targets(config, journeys)
    scopes = _scopes(answer)
    if scopes is None:
        found.warning(
            "the answer has no x-oauth-scopes header: cannot tell the token's scopes "
            "(is sinks.slack.base_url Slack's Web API?)"
        )
    else:
        _slack_scopes(found, scopes, any(not _CHANNEL_ID.fullmatch(t) for t in targets))
    if scopes is None or "channels:read" in scopes:
        _slack_channels(found, client, targets, scopes, str(user))
    return found


def _scopes(answer: SlackResponse) -> frozenset[str] | None:
    headers = {str(k).lower(): v for k, v in answer.headers.items()}
    value = headers.get("x-oauth-scopes")
    if isinstance(value, list):  # some transports keep every value of a header
        value = ",".join(value)
    if value is None:
        return None
    return frozenset(s.strip() for s in str(value).split(",") if s.strip())


def _slack_scopes(found: _Findings, scopes: frozenset[str], by_name: bool) -> None:
    if "chat:write" not in scopes:
        found.problem(
            "the token lacks chat:write: nothing can be posted — add it to the Slack app's "
            "bot token scopes and reinstall the app"
        )
    else:
        found.ok("the token has chat:write")
    optional = [
        ("channels:history", "messages cannot be found again after a crash"),
        ("groups:history", "messages in private channels cannot be found again after a crash"),
    ]
    if by_name:
        optional = [
            ("channels:read", "channels configured by name cannot be resolved to their IDs"),
            ("groups:read", "private channels configured by name cannot be resolved"),
            *optional,
        ]
    for scope, effect in optional:
        if scope not in scopes:
            found.warning(f"the token lacks {scope}: {effect} (optional)")


def _slack_targets(
    config: cfg.SlackSinkConfig, journeys: cfg.JourneysConfig
) -> dict[str, list[str]]:
    """Each channel messages go to -> the config fields naming it."""
    targets: dict[str, list[str]] = {config.channel: ["sinks.slack.channel"]}
    for field, channel in _owner_values(journeys, "slack_channel"):
        targets.setdefault(channel, []).append(field)
    return targets


def _slack_channels(
    found: _Findings,
    client: WebClient,
    targets: dict[str, list[str]],
    scopes: frozenset[str] | None,
    user: str,
) -> None:
    private = scopes is None or "groups:read" in scopes
    types = "public_channel,private_channel" if private else "public_channel"
    wanted = {t if _CHANNEL_ID.fullmatch(t) else t.removeprefix("#") for t in targets}
    seen: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    try:
        while True:
            page = client.conversations_list(
                types=types, exclude_archived=True, limit=_SLACK_PAGE, cursor=cursor
            )
            channels: list[dict[str, Any]] = page.get("channels", [])
            for channel in channels:
                for key in (str(channel.get("id")), str(channel.get("name"))):
                    if key in wanted:
                        seen[key] = channel
            data = page.data if isinstance(page.data, dict) else {}
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor or wanted <= seen.keys():
                break
    except SlackApiError as exc:
        found.warning(f"conversations.list failed ({_slack_code(exc)}): channels not checked")
        return
    except (OSError, http.client.HTTPException, SlackRequestError) as exc:
        found.warning(f"conversations.list failed ({type(exc).__name__}): channels not checked")
        return
    for target, fields in targets.items():
        where = ", ".join(fields)
        known = seen.get(target if _CHANNEL_ID.fullmatch(target) else target.removeprefix("#"))
        if known is None:
            hidden = (
                "" if private else " (private channels not listed: the token lacks groups:read)"
            )
            found.warning(
                f"channel {target} ({where}) is not among the channels the bot can see"
                f"{hidden} — fix the name, or invite the bot if the channel is private"
            )
        elif not known.get("is_member"):
            found.warning(
                f"channel {target} ({where}): the bot is not a member — invite it (/invite @{user})"
            )
        else:
            found.ok(f"channel {target} ({where}) is {known.get('id')}; the bot is a member")


def _slack_code(exc: SlackApiError) -> str:
    data = exc.response.data
    return str(data.get("error") or "") if isinstance(data, dict) else ""


# --- Jira --------------------------------------------------------------------------------


def check_jira(config: cfg.JiraSinkConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """``myself``, each project and its issue type, the done and reopen transitions."""
    found = _Findings("jira")
    client = jira_client(config)
    try:
        try:
            me = client.myself()
        except (JIRAError, requests.RequestException) as exc:
            found.problem(f"myself: {_jira_reason(exc, config)}")
            return found
        who = me.get("displayName") or me.get("name") or me.get("accountId") or "?"
        found.ok(f"myself: logged in as {who}")
        projects: dict[str, list[str]] = {config.project: ["sinks.jira.project"]}
        for field, project in _owner_values(journeys, "jira_project"):
            projects.setdefault(project, []).append(field)
        for key, fields in projects.items():
            try:
                _jira_project(found, client, config, key, ", ".join(fields))
            except (JIRAError, requests.RequestException) as exc:
                found.problem(f"project {key}: {_jira_reason(exc, config)}")
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return found


def _jira_project(
    found: _Findings, client: JIRA, config: cfg.JiraSinkConfig, key: str, where: str
) -> None:
    try:
        types = client.issue_types_for_project(key)
    except JIRAError as exc:
        if exc.status_code != 404:
            raise
        found.problem(
            f"project {key} ({where}) does not exist, or this account may not browse it — "
            "fix the key, or grant the account the project's Browse permission"
        )
        return
    names = [str(t.raw.get("name")) for t in types]
    wanted = config.issue_type
    if wanted not in names:
        found.problem(
            f'project {key}: no issue type "{wanted}" (has: {", ".join(names) or "none"}) — '
            "set sinks.jira.issue_type"
        )
        return
    found.ok(f"project {key} ({where}) has issue type {wanted}")
    jql = f"project = {_jql(key)} AND issuetype = {_jql(wanted)} ORDER BY created DESC"
    issues = client.search_issues(jql, maxResults=_JIRA_SAMPLE, fields=["status"])
    latest_open = next((i for i in issues if _category(i.raw) != "done"), None)
    latest_done = next((i for i in issues if _category(i.raw) == "done"), None)
    if latest_open is None and latest_done is None:
        found.warning(
            f"project {key}: cannot check transitions: no {wanted} issue yet "
            "(sinks.jira.done_transition, sinks.jira.reopen_transition)"
        )
        return
    for field, name, issue, state in (
        ("done_transition", config.done_transition, latest_open, "open"),
        ("reopen_transition", config.reopen_transition, latest_done, "done"),
    ):
        if issue is None:
            found.warning(
                f'project {key}: cannot check sinks.jira.{field} "{name}": no {state} '
                f"{wanted} issue yet"
            )
            continue
        status = str(((issue.raw.get("fields") or {}).get("status") or {}).get("name", "?"))
        available = [str(t.get("name")) for t in client.transitions(issue.key)]
        if name.casefold() in (a.casefold() for a in available):
            found.ok(f'project {key}: transition "{name}" is there from {status} ({issue.key})')
        else:
            found.problem(
                f'project {key}: no transition named "{name}" from {status} '
                f"(has: {', '.join(available) or 'none'}) — set sinks.jira.{field}"
            )


def _category(raw: dict[str, Any]) -> str | None:
    status = (raw.get("fields") or {}).get("status") or {}
    key = (status.get("statusCategory") or {}).get("key")
    return str(key) if key is not None else None


def _jql(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _jira_reason(exc: Exception, config: cfg.JiraSinkConfig) -> str:
    if isinstance(exc, JIRAError):
        status = exc.status_code
        text = _clip(exc.text or "")
        if status == 401:
            how = f"basic auth as {config.username}" if config.username else "bearer token"
            return (
                f"HTTP 401: credentials refused ({how}) — check sinks.jira.username and "
                "sinks.jira.token"
            )
        return f"HTTP {status}: {text}" if status else f"no answer: {text}"
    return (
        f"cannot reach sinks.jira.url {_shown(config.url)}: "
        f"{_transport_reason(exc, config.timeout, 'sinks.jira.ca_file')}"
    )


# --- PagerDuty ---------------------------------------------------------------------------


def check_pagerduty(config: cfg.PagerDutySinkConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """The Events API host answers over TLS; the routing keys are there and well formed."""
    found = _Findings("pagerduty")
    base = config.base_url()
    try:
        with httpx.Client(verify=ssl_context(config.ca_file), timeout=config.timeout) as client:
            answer = client.head(base + "/")
        found.ok(f"{_shown(base)} answers over TLS (HTTP {answer.status_code})")
    except httpx.HTTPError as exc:
        found.problem(
            f"cannot reach sinks.pagerduty.events_url {_shown(base)}: "
            f"{_transport_reason(exc, config.timeout, 'sinks.pagerduty.ca_file')}"
        )
    keys = [("sinks.pagerduty.routing_key", config.routing_key)]
    keys += list(_owner_values(journeys, "pagerduty_routing_key"))
    present = [(field, key.get_secret_value()) for field, key in keys if key is not None]
    for field, key in present:
        if len(key) != PAGERDUTY_KEY_LENGTH:
            found.warning(
                f"{field} is {len(key)} characters, not the {PAGERDUTY_KEY_LENGTH} of a "
                "PagerDuty integration key — copy it again from the service's Events API "
                "v2 integration"
            )
    if present and all(len(key) == PAGERDUTY_KEY_LENGTH for _, key in present):
        found.ok(f"{len(present)} routing key(s), each {PAGERDUTY_KEY_LENGTH} characters")
    if config.routing_key is None:
        keyless = [
            journey for journey, owner in _owners(journeys) if owner.pagerduty_routing_key is None
        ]
        if keyless:
            found.warning(
                f"no sinks.pagerduty.routing_key, and {', '.join(keyless)} "
                "set no owner.pagerduty_routing_key: their incidents cannot page — set one"
            )
    return found


# --- Prometheus --------------------------------------------------------------------------


def check_prometheus(config: cfg.PrometheusConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """Build info, then every KPI query (and revenue query) of every journey, now."""
    found = _Findings("prometheus")
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
        found.problem(f"prometheus.url {_shown(url)}: {exc}")
        session.close()
        return found
    found.ok(f"{_shown(url)} is Prometheus {version}")
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
    found: _Findings,
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


# --- Alertmanager ------------------------------------------------------------------------


async def check_alertmanager(config: AlertmanagerConfig) -> list[Finding]:
    """``GET /api/v2/status`` of each peer on its own (the client would move on to the
    next peer, hiding one that is down)."""
    peers = await asyncio.gather(*(_peer(config, i) for i in range(len(config.urls))))
    return [finding for found in peers for finding in found]


async def _peer(config: AlertmanagerConfig, index: int) -> _Findings:
    found = _Findings("alertmanager")
    url = config.urls[index]
    name = f"{_shown(url)} (alertmanager.urls[{index}])"
    async with AlertmanagerClient(config.model_copy(update={"urls": [url]})) as client:
        try:
            status = await client.status()
        except AlertmanagerUnavailable as exc:
            reason = str(exc).rpartition(f"{_shown(url)}: ")[2]
            found.problem(f"{name} is down: {reason} — check the URL and that it runs")
            return found
        except AlertmanagerRefused as exc:
            found.problem(f"{name}: {exc}")
            return found
    cluster = status.get("cluster") or {}
    state = cluster.get("status")
    version = (status.get("versionInfo") or {}).get("version", "?")
    peers = len(cluster.get("peers") or [])
    if state == "ready":
        found.ok(f"{name}: Alertmanager {version}, cluster ready with {peers} peer(s)")
    elif state == "disabled" and len(config.urls) == 1:
        found.ok(f"{name}: Alertmanager {version}, not clustered")
    elif state == "disabled":
        found.warning(
            f"{name}: clustering is disabled, yet alertmanager.urls names "
            f"{len(config.urls)} peers: they share no silences or notification log — "
            "cluster them (--cluster.peer)"
        )
    else:
        found.warning(
            f"{name}: cluster status is {json.dumps(state)}, not ready — it may still be "
            "settling; check its --cluster.peer flags"
        )
    return found


# --- shared ------------------------------------------------------------------------------


def _owners(journeys: cfg.JourneysConfig) -> Iterator[tuple[str, cfg.Owner]]:
    """(how the config names it, owner) of every journey, the built-in unmapped one last."""
    for journey in journeys.journeys:
        yield f"journey {journey.id}", journey.owner
    yield "unmapped", journeys.unmapped.owner


def _owner_values(journeys: cfg.JourneysConfig, attr: str) -> Iterator[tuple[str, Any]]:
    """(field, value) of each owner that sets ``attr``."""
    for who, owner in _owners(journeys):
        value = getattr(owner, attr)
        if value is not None:
            yield f"{who} owner.{attr}", value


def _shown(url: str) -> str:
    """``url`` without user and password, query or fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def _transport_reason(exc: BaseException, timeout: float, ca_field: str) -> str:
    chain = list(_causes(exc))
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or any(
        isinstance(e, requests.exceptions.SSLError) for e in chain
    ):
        return f"TLS verification failed — is {ca_field} the CA of its certificate?"
    if any(isinstance(e, TimeoutError | httpx.TimeoutException | requests.Timeout) for e in chain):
        return f"no answer within {timeout:g}s"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in str(exc):
        return "connection refused"
    return _clip(f"{type(exc).__name__}: {exc}")


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        reason = getattr(exc, "reason", None)  # urllib's URLError wraps its cause there
        if isinstance(reason, BaseException) and id(reason) not in seen:
            yield reason
        exc = exc.__cause__ or exc.__context__


def _secrets(receiver: cfg.ReceiverConfig, journeys: cfg.JourneysConfig) -> Iterable[str]:
    sinks = receiver.sinks
    values: list[Any] = []
    if sinks.slack is not None:
        values.append(sinks.slack.token)
    if sinks.jira is not None:
        values += [sinks.jira.token, _password(sinks.jira.url)]
    if sinks.pagerduty is not None:
        values.append(sinks.pagerduty.routing_key)
    values += [owner.pagerduty_routing_key for _, owner in _owners(journeys)]
    values += list(receiver.prometheus.headers.values())
    values.append(_password(receiver.prometheus.url))
    am = receiver.alertmanager
    if am is not None:
        values += [*am.headers.values(), am.bearer_token, *map(_password, am.urls)]
        if am.basic_auth is not None:
            values.append(am.basic_auth.password)
    for value in values:
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if isinstance(text, str) and text:
            yield text


def _password(url: str | None) -> str | None:
    return urlsplit(url).password if url else None


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def _clip(text: str, limit: int = _TEXT_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
