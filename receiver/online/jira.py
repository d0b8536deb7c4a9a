"""Jira: ``myself``, each project and its issue type, the done and reopen transitions."""

from __future__ import annotations

from typing import Any

import requests
from jira import JIRA, JIRAError

from receiver import config as cfg
from receiver.logtext import clip
from receiver.online import Finding, Findings, owner_values, shown_url, transport_reason
from receiver.sinks.jira import client as jira_client

_JIRA_SAMPLE = 50


def check_jira(config: cfg.JiraSinkConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """``myself``, each project and its issue type, the done and reopen transitions."""
    found = Findings("jira")
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
        for field, project in owner_values(journeys, "jira_project"):
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
    found: Findings, client: JIRA, config: cfg.JiraSinkConfig, key: str, where: str
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
        text = clip(exc.text or "")
        if status == 401:
            how = f"basic auth as {config.username}" if config.username else "bearer token"
            return (
                f"HTTP 401: credentials refused ({how}) — check sinks.jira.username and "
                "sinks.jira.token"
            )
        return f"HTTP {status}: {text}" if status else f"no answer: {text}"
    return (
        f"cannot reach sinks.jira.url {shown_url(config.url)}: "
        f"{transport_reason(exc, config.timeout, 'sinks.jira.ca_file')}"
    )
