"""Jira sink: one issue per incident, found again by a label derived from the incident id.

The lifecycle follows jiralert (``pkg/notify/notify.go``): find the issue (by the key of the
last receipt, else by label, before any create), then edit, comment, transition. Opening
creates the issue; an update edits it and comments on the changes; resolving comments and
takes ``done_transition``; reopening takes ``reopen_transition`` and comments, unless the
issue was closed with a won't-fix resolution, which is left closed. Fields are edited only
while the issue is open: many workflows make done issues read-only. An issue deleted in
Jira (``DELETED_BY``) is not filed again until the incident reopens.

Server/Data Center speaks REST v2 with wiki markup, Cloud REST v3 with ADF (see
:mod:`receiver.sinks.jira_markup`). The ``jira`` client is blocking and built once, with its
own retries off (``max_retries=0``: it would sleep on 429/503) and no calls at construction
(``get_server_info=False``); each of its calls runs off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import requests
from jira import JIRA, JIRAError
from jira.resources import Issue

from receiver.config import JiraSinkConfig
from receiver.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    StoreUnavailable,
)
from receiver.incident import Incident
from receiver.logtext import clip, redact
from receiver.sinks import Delivery, Receipt, Shared
from receiver.sinks import jira_markup as markup
from receiver.sinks._http import error_for_status, incident_url, off_loop, retry_after

T = TypeVar("T")

LABEL = "journey-receiver"
LABEL_MAX = 255
SUMMARY_MAX = 255
_LABEL_SAFE = re.compile(r"[A-Za-z0-9._-]+")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FIELDS = ("status", "resolution", "labels")
# A retried job looks for its comment among the issue's latest ones; it is one of them.
_RECENT_COMMENTS = 50
DELETED_BY = "deleted_by"
"""Receipt key: who deleted the issue in Jira ("unknown" when the sink found it gone; ""
or absent: nobody). Nothing more goes to Jira for the incident until a reopen files a new
issue: a person who deleted it meant it gone, and filing it again at each change would
loop with them."""
ISSUE_CACHE = "jira-issue"
"""``store.cache``: an issue's key -> the id of the incident it was filed for, for the
webhooks that name the issue by its key alone (a comment's, on Jira Cloud)."""
_FOUND_GONE = "unknown"
_FILES_ANEW = frozenset({"open", "reopen"})
_HEADLINES = {
    "update": "Incident updated",
    "resolve": "Incident resolved",
    "reopen": "Incident reopened",
}


def label(prefix: str, value: str) -> str:
    """``<prefix>-<value>`` as a Jira label (≤ 255 characters, no spaces). A value that is
    not label-safe as it is gets cleaned, cut and suffixed with its hash, so two values never
    share a label."""
    plain = f"{prefix}-{value}"
    if _LABEL_SAFE.fullmatch(plain) and len(plain) <= LABEL_MAX:
        return plain
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    room = LABEL_MAX - len(prefix) - len(digest) - 2
    return f"{prefix}-{_LABEL_UNSAFE.sub('-', value)[:room]}-{digest}"


def incident_label(incident_id: str) -> str:
    return label(LABEL, incident_id)


def summary_text(title: str) -> str:
    """Jira's summary: one line of at most 255 characters."""
    return clip(title, SUMMARY_MAX)


@dataclass(frozen=True, slots=True)
class _Issue:
    """What the flow needs to know about an issue, and the client's resource to edit it."""

    key: str
    status: str
    done: bool
    resolution: str | None
    labels: frozenset[str]
    resource: Issue

    @classmethod
    def of(cls, resource: Issue) -> _Issue:
        raw = resource.raw
        fields = raw.get("fields") or {}
        status = fields.get("status") or {}
        resolution = fields.get("resolution") or {}
        return cls(
            key=str(raw["key"]),
            status=str(status.get("name", "?")),
            done=(status.get("statusCategory") or {}).get("key") == "done",
            resolution=resolution.get("name"),
            labels=frozenset(fields.get("labels") or ()),
            resource=resource,
        )


class _Gone(Exception):
    """Jira answered 404 to a call on an issue the sink had just read: deleted meanwhile."""


Identity = tuple[str, str]
"""(kind, value) of a Jira account: kind ``name``, ``key``, ``accountId`` or ``email``."""
_MYSELF = {"name": "name", "key": "key", "accountId": "accountId", "emailAddress": "email"}
OWN_RETRY_S = 60.0
"""How long after a ``myself`` that named no account the sink asks again."""
logger = logging.getLogger("journey_receiver.sinks.jira")


def client(config: JiraSinkConfig) -> JIRA:
    """The Jira client as the sink builds it (``check --online`` builds the same)."""
    token = config.token.get_secret_value()
    cloud = config.flavor == "cloud"
    client = JIRA(
        server=config.url,
        options={
            "rest_api_version": "3" if cloud else "2",
            "verify": str(config.ca_file) if config.ca_file else True,
        },
        basic_auth=(config.username, token) if config.username else None,
        token_auth=None if config.username else token,
        timeout=config.timeout,
        max_retries=0,
        get_server_info=False,
        validate=False,
    )
    if cloud:
        # Set from serverInfo, which is not fetched: it picks /search/jql over the /search
        # that Cloud has removed.
        client.deploymentType = "Cloud"
    return client


class JiraSink:
    name = "jira"
    coalesces_updates = False

    def __init__(
        self, config: JiraSinkConfig, external_url: str | None, shared: Shared | None = None
    ) -> None:
        self.config = config
        self.external_url = external_url
        shared = shared or Shared()
        self._cache = shared.cache
        self._keep_ms = shared.retention_ms
        self._cloud = config.flavor == "cloud"
        self._secrets = (config.token.get_secret_value(),)
        self._client = client(config)
        self._own: frozenset[Identity] | None = None
        self._own_retry_at = 0.0
        self._own_lock = asyncio.Lock()

    def own_names(self) -> frozenset[Identity]:
        """Who this sink's own account is in Jira's webhooks, as (kind, value): ``username``
        as configured (a username, or on Cloud the e-mail) and what ``myself`` said (name,
        key, accountId, e-mail). With a bearer token there is no username, and Jira Cloud
        leaves e-mails out of webhooks: only ``myself`` tells the receiver's own
        transitions from a person's. Never calls Jira (the inbound webhook reads it on the
        request path): ``learn_own_names`` asks, from the outbox."""
        configured = frozenset(
            (kind, name) for name in (self.config.username,) if name for kind in ("name", "email")
        )
        return configured | (self._own or frozenset())

    @property
    def asks_own_names(self) -> bool:
        """Whether ``learn_own_names`` would ask now: not answered yet, and not waiting
        after an ask that failed."""
        return self._own is None and time.monotonic() >= self._own_retry_at

    async def learn_own_names(self) -> None:
        """Ask ``myself`` who the sink is, until it answers; from the outbox's first round
        on, in the background, and after each delivery (never on a request path). A failed
        or empty answer is asked again at most every ``OWN_RETRY_S``."""
        async with self._own_lock:
            if self._own is None and time.monotonic() >= self._own_retry_at:
                found = await self._myself()
                if found:
                    self._own = found
                else:
                    self._own_retry_at = time.monotonic() + OWN_RETRY_S

    async def _myself(self) -> frozenset[Identity]:
        try:
            me: object = await off_loop(self._client.myself)
        except Exception as exc:  # down, refusing or garbled: the username alone, for now
            logger.warning("jira: myself failed, own transitions known by username only: %s",
                           self._clean(exc))  # fmt: skip
            return frozenset()
        fields = me if isinstance(me, dict) else {}
        found = frozenset(
            (kind, value)
            for field, kind in _MYSELF.items()
            if isinstance(value := fields.get(field), str) and value
        )
        if not found:
            logger.warning("jira: myself named no account; own transitions known by username only")
        return found

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        receipt = await self._deliver(incident, delivery, previous)
        key = receipt.refs.get("key")
        if key and self._cache is not None:
            # Its key as filed, or as found after a move to another project: a comment's
            # webhook names the issue by it alone. A hint only: the receipt is the record.
            with contextlib.suppress(StoreUnavailable):
                await self._cache.set(ISSUE_CACHE, key, incident.id, self._keep_ms)
        # Once Jira took a write: the webhooks later writes cause find the sink known, and
        # a Jira that is down or refusing is not asked one request more.
        await self.learn_own_names()
        return receipt

    async def _deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        known = previous.refs.get("key") if previous else None
        deleted = bool(previous and previous.refs.get(DELETED_BY))
        anew = delivery.kind in _FILES_ANEW
        if deleted and not anew:
            # Nothing sent, nothing learnt: who deleted it stays as recorded.
            return Receipt(self.name, "deleted", {})
        issue = await self._find(incident, known)
        if issue is None:
            if known and not anew:
                # Filed, and neither its key nor its label finds it now: deleted.
                logger.warning(
                    "jira: issue %s of incident %s is gone (deleted, or out of this "
                    "account's sight); nothing more is sent to Jira for it until it reopens",
                    known,
                    incident.id,
                )
                return Receipt(self.name, "deleted", {DELETED_BY: _FOUND_GONE})
            if delivery.kind == "resolve":
                # Nothing was ever filed for it: a ticket born closed would only be noise.
                return Receipt(self.name, "resolved", {})
            key = await self._create(incident, delivery)
            return Receipt(self.name, "open", {"key": key} | ({DELETED_BY: ""} if deleted else {}))
        try:
            receipt = await self._follow(incident, delivery, issue)
        except _Gone:
            logger.warning(
                "jira: issue %s of incident %s was deleted while it was written to; nothing "
                "more is sent to Jira for it until it reopens",
                issue.key,
                incident.id,
            )
            return Receipt(self.name, "deleted", {"key": issue.key, DELETED_BY: _FOUND_GONE})
        if deleted:
            # Found again after all (a reopen): no longer gone.
            return replace(receipt, refs={**receipt.refs, DELETED_BY: ""})
        return receipt

    async def _follow(self, incident: Incident, delivery: Delivery, issue: _Issue) -> Receipt:
        """Edit, comment on and move ``issue`` as ``delivery`` says."""
        if delivery.kind == "reopen" and issue.done:
            if self._wont_fix(issue.resolution):
                note = (
                    f"Incident reopened; this issue stays closed "
                    f"as it was resolved as {issue.resolution}"
                )
                await self._comment(issue, incident, delivery, note)
                return Receipt(self.name, "resolved", {"key": issue.key})
            await self._transition(incident, issue, self.config.reopen_transition)
            issue = replace(issue, done=False, resolution=None)
        if not issue.done:
            await self._edit(incident, issue)
        headline = _HEADLINES.get(delivery.kind)
        if headline and (delivery.changes or delivery.kind != "update"):
            await self._comment(issue, incident, delivery, headline)
        if delivery.kind == "resolve" and not issue.done:
            await self._transition(incident, issue, self.config.done_transition)
            return Receipt(self.name, "resolved", {"key": issue.key})
        return Receipt(self.name, "resolved" if issue.done else "open", {"key": issue.key})

    async def aclose(self) -> None:
        await off_loop(self._client.close)

    def _wont_fix(self, resolution: str | None) -> bool:
        wont = {name.casefold() for name in self.config.wont_fix_resolutions}
        return resolution is not None and resolution.casefold() in wont

    async def _find(self, incident: Incident, key: str | None) -> _Issue | None:
        if key:
            found = await self._call(incident, f"read issue {key}", self._read, key)
            if found is not None:
                return found
            # Deleted, or out of this account's sight: the label may still find a copy.
        return await self._call(incident, "search issues by label", self._search, incident)

    def _read(self, key: str) -> _Issue | None:
        try:
            return _Issue.of(self._client.issue(key, fields=",".join(_FIELDS)))
        except JIRAError as exc:
            if exc.status_code == 404:
                return None
            raise

    def _search(self, incident: Incident) -> _Issue | None:
        jql = f'labels = "{incident_label(incident.id)}" ORDER BY created ASC'
        # The oldest first: should two ever exist, every delivery keeps to the same one.
        found = self._client.search_issues(jql, maxResults=2, fields=list(_FIELDS))
        return _Issue.of(found[0]) if found else None

    def _labels(self, incident: Incident) -> list[str]:
        wanted = [incident_label(incident.id), LABEL, label("journey", incident.journey)]
        return list(dict.fromkeys([*wanted, *self.config.labels]))

    def _text(self, blocks: Sequence[markup.Block]) -> str | dict[str, Any]:
        return markup.adf(blocks) if self._cloud else markup.wiki(blocks)

    def _fields(self, incident: Incident) -> dict[str, Any]:
        url = incident_url(self.external_url, incident.id)
        fields: dict[str, Any] = {
            "summary": summary_text(incident.title),
            "description": self._text(markup.description(incident, url)),
        }
        priority = next(
            (name for p, name in self.config.priorities.items() if p == incident.priority), None
        )
        if priority is not None:
            fields["priority"] = {"name": priority}
        return fields

    async def _create(self, incident: Incident, delivery: Delivery) -> str:
        project = delivery.owner.jira_project or self.config.project
        fields = {
            "project": {"key": project},
            "issuetype": {"name": self.config.issue_type},
            "labels": self._labels(incident),
            **self._fields(incident),
        }
        created = await self._call(
            incident,
            f"create issue in {project}",
            self._client.create_issue,
            fields=fields,
            prefetch=False,
        )
        return str(created.key)

    async def _edit(self, incident: Incident, issue: _Issue) -> None:
        # Labels are added, never set: people label issues too.
        missing = [name for name in self._labels(incident) if name not in issue.labels]
        update = {"labels": [{"add": name} for name in missing]} if missing else None
        await self._call(
            incident,
            f"edit issue {issue.key}",
            issue.resource.update,
            on_issue=True,
            fields=self._fields(incident),
            update=update,
        )

    async def _comment(
        self, issue: _Issue, incident: Incident, delivery: Delivery, headline: str
    ) -> None:
        marker = f"{LABEL} job {delivery.job_id}"
        if delivery.attempt > 1:
            bodies = await self._call(
                incident,
                f"read comments of {issue.key}",
                self._recent_comments,
                issue.key,
                on_issue=True,
            )
            if any(markup.carries(body, marker) for body in bodies):
                return
        url = incident_url(self.external_url, incident.id)
        body = self._text(markup.comment(headline, incident, delivery.changes, marker, url))
        # add_comment is typed for wiki text, but sends any JSON body: v3 takes ADF there.
        add: Callable[..., object] = self._client.add_comment
        await self._call(incident, f"comment on {issue.key}", add, issue.key, body, on_issue=True)

    def _recent_comments(self, key: str) -> list[Any]:
        comments = self._client.comments(key, max_results=_RECENT_COMMENTS, order_by="-created")
        return [(c.raw or {}).get("body") for c in comments]

    async def _transition(self, incident: Incident, issue: _Issue, name: str) -> None:
        available: list[dict[str, Any]] = await self._call(
            incident,
            f"list transitions of {issue.key}",
            self._client.transitions,
            issue.key,
            on_issue=True,
        )
        chosen = next(
            (t for t in available if str(t.get("name", "")).casefold() == name.casefold()), None
        )
        if chosen is None:
            names = ", ".join(repr(str(t.get("name"))) for t in available) or "none"
            raise PermanentDeliveryError(
                self.name,
                incident.id,
                "client",
                f"transition {name!r} is not available on {issue.key} (status {issue.status}); "
                f"available: {names}",
            )
        await self._call(
            incident,
            f"transition {issue.key} by {name!r}",
            self._client.transition_issue,
            issue.key,
            str(chosen["id"]),
            on_issue=True,
        )

    async def _call(
        self,
        incident: Incident,
        action: str,
        fn: Callable[..., T],
        *args: Any,
        on_issue: bool = False,
        **kwargs: Any,
    ) -> T:
        """One blocking client call on a worker thread, its failure as a delivery error;
        with ``on_issue`` (a call on an issue just read), a 404 as ``_Gone``."""
        try:
            return await off_loop(fn, *args, **kwargs)
        except JIRAError as exc:
            if on_issue and exc.status_code == 404:
                raise _Gone from exc
            raise self._refused(incident.id, action, exc) from exc
        except requests.exceptions.SSLError as exc:
            raise PermanentDeliveryError(
                self.name,
                incident.id,
                "client",
                clip(f"{action}: TLS failed (is ca_file Jira's CA?): {self._clean(exc)}"),
            ) from exc
        except requests.Timeout as exc:
            raise RetryableDeliveryError(
                self.name,
                incident.id,
                "timeout",
                f"{action}: no answer within {self.config.timeout:g}s",
            ) from exc
        except requests.RequestException as exc:
            raise RetryableDeliveryError(
                self.name,
                incident.id,
                "server",
                clip(f"{action}: {type(exc).__name__}: {self._clean(exc)}"),
            ) from exc

    def _refused(self, incident_id: str, action: str, exc: JIRAError) -> DeliveryError:
        response = exc.response
        text = self._clean(exc.text or (response.reason if response is not None else "") or "")
        if exc.status_code is None or response is None:
            return RetryableDeliveryError(
                self.name, incident_id, "server", clip(f"{action}: {text or 'no answer'}")
            )
        if exc.status_code in (401, 403):
            who = f"basic auth as {self.config.username}" if self.config.username else "bearer"
            text = f"credentials refused ({who}; check sinks.jira username/token): {text}"
        wait = retry_after(response.headers.get("Retry-After"), time.time())
        return error_for_status(self.name, incident_id, exc.status_code, f"{action}: {text}", wait)

    def _clean(self, exc: object) -> str:
        return redact(str(exc), self._secrets)
