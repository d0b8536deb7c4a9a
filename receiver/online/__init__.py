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

This module holds what the checks share: the finding, the owners they read, how a URL and
a failure are shown, and the redaction of secrets. Each system has its module
(``slack``, ``jira``, ``pagerduty``, ``prometheus``, ``alertmanager``) with its
``check_<system>``; ``runner`` asks them all at once and prints the report.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import requests

from receiver import config as cfg
from receiver.logtext import clip

Level = Literal["ok", "warning", "problem"]
_LABELS: dict[Level, str] = {"ok": "ok", "warning": "warning", "problem": "PROBLEM"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: how ``system`` fares, and what to do about it."""

    level: Level
    system: str
    text: str

    def line(self) -> str:
        return f"{_LABELS[self.level]:<7} {self.system}: {self.text}"


class Findings(list[Finding]):
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


def owners(journeys: cfg.JourneysConfig) -> Iterator[tuple[str, cfg.Owner]]:
    """(how the config names it, owner) of every journey, the built-in unmapped one last."""
    for journey in journeys.journeys:
        yield f"journey {journey.id}", journey.owner
    yield "unmapped", journeys.unmapped.owner


def owner_values(journeys: cfg.JourneysConfig, attr: str) -> Iterator[tuple[str, Any]]:
    """(field, value) of each owner that sets ``attr``."""
    for who, owner in owners(journeys):
        value = getattr(owner, attr)
        if value is not None:
            yield f"{who} owner.{attr}", value


def http_url(text: str) -> httpx.URL:
    """``text`` as an http(s) URL with a host, for a command line option to name in its
    error: ``ValueError`` saying what it is not, never quoting it (it may hold a password)."""
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("an http:// or https:// URL with a host")
    return url


def shown_url(url: str) -> str:
    """``url`` without user and password, query or fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def transport_reason(exc: BaseException, timeout: float, ca_field: str) -> str:
    """Why a call got no answer, in words that name the fix (``ca_field`` for TLS)."""
    chain = list(_causes(exc))
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or any(
        isinstance(e, requests.exceptions.SSLError) for e in chain
    ):
        return f"TLS verification failed — is {ca_field} the CA of its certificate?"
    if any(isinstance(e, TimeoutError | httpx.TimeoutException | requests.Timeout) for e in chain):
        return f"no answer within {timeout:g}s"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in str(exc):
        return "connection refused"
    return clip(f"{type(exc).__name__}: {exc}")


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        reason = getattr(exc, "reason", None)  # urllib's URLError wraps its cause there
        if isinstance(reason, BaseException) and id(reason) not in seen:
            yield reason
        exc = exc.__cause__ or exc.__context__


def secrets_of(receiver: cfg.ReceiverConfig, journeys: cfg.JourneysConfig) -> Iterable[str]:
    """Every token, key, header value and URL password the two configs hold."""
    sinks = receiver.sinks
    values: list[Any] = []
    if sinks.slack is not None:
        values.append(sinks.slack.token)
    if sinks.jira is not None:
        values += [sinks.jira.token, _password(sinks.jira.url)]
    if sinks.pagerduty is not None:
        values.append(sinks.pagerduty.routing_key)
    values += [owner.pagerduty_routing_key for _, owner in owners(journeys)]
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
