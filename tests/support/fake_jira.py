"""A fake Jira REST API: the subset the Jira sink uses, in v2 (Server/Data Center, wiki markup
text) and v3 (Cloud, Atlassian Document Format), under ``/rest/api/{2,3}/``.

It checks credentials (Basic ``username:token`` or Bearer token, else 401), validates
bodies the way Jira does and answers with Jira's error shape
(``{"errorMessages": [...], "errors": {field: message}}``), and models a small workflow:
Open (status category ``new``) → "Resolve Issue" → Resolved (``done``, resolution Done)
→ "Reopen Issue" → Open; "Close Issue" → Closed (``done``, read-only: the default workflow's
``jira.issue.editable=false``), which :meth:`FakeJira.close` also does as a person would.
A person may delete an issue (:meth:`FakeJira.delete`): its key is then a 404, and its
number is never given again.

Endpoints: ``GET field``; ``GET myself``; ``GET project/{key}/statuses``; ``POST issue``;
``GET``/``PUT issue/{key}``; ``GET``/``POST issue/{key}/comment``;
``GET``/``POST issue/{key}/transitions``; ``GET search`` in v2 only and ``GET search/jql``
in v3 only (Cloud answers 410 to the old search), both with JQL of ``labels``,
``project`` and ``issuetype`` equality clauses joined by ``AND``
(``[ORDER BY created ASC|DESC]``) and nothing else; a project that does not exist is a 400,
as in Jira.

Sources:

- "JIRA REST API Example - Create Issue" (developer.atlassian.com/server/jira/platform/
  jira-rest-api-example-create-issue-7897248/): project by key, issuetype by name, the
  ``{"id", "key", "self"}`` answer.
- "Field input formats" (developer.atlassian.com/server/jira-servicedesk/info/
  field-input-formats): summary is one line, description multi-line text, labels an array.
- Jira Cloud platform REST v3, "Atlassian Document Format"
  (developer.atlassian.com/cloud/jira/platform/apis/document/structure) and the ADF JSON
  schema (@atlaskit/adf-schema ``json-schema/v1/full.json``): doc/version 1, block and inline
  nodes, text nodes with ``minLength`` 1, marks, ``link`` needs ``attrs.href``.
- "Run JQL search query using Jira Cloud REST API" (confluence.atlassian.com/display/JIRAKB/
  Run+JQL+search+query+using+Jira+Cloud+REST+API): ``/rest/api/3/search`` removed for
  ``/search/jql`` with ``nextPageToken``; only id/key without ``fields``.
- ``GET myself`` (v2: ``name``, ``key``, ``displayName``; v3: ``accountId``,
  ``displayName``) and ``GET project/{key}/statuses`` (each issue type of the project with
  its workflow's statuses and their category; 404 "No project could be found with key"),
  from the Jira Server/Cloud REST references.
- Transitions: ``GET`` lists ``{id, name, to: {name, statusCategory: {key}}}`` available
  from the current status, ``POST {"transition": {"id"}}`` answers 204; status categories
  ``new``/``indeterminate``/``done`` are fixed (jiralert ``pkg/notify/notify.go`` relies on
  ``done``).
- Error wording from the jira package (``resilientsession.parse_errors``, the autofix
  branch of ``Resource.update``: "The summary is invalid because it contains newline
  characters.") and Jira's label limits (255 characters, no spaces).
- Jira on PostgreSQL (Atlassian KB "Database migration to PostgreSQL fails - Invalid byte
  sequence for encoding UTF8: 0x00": "PostgreSQL does not allow null characters (U+0000)
  in text columns"): an issue or comment whose text holds a NUL fails to be stored, and
  the REST API answers 500 ``{"errorMessages": ["Internal server error"], "errors": {}}``,
  every time it is sent again.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fake_server import FakeServer, serve
from tests.support.vendor_signing import sign_jira

SUMMARY_MAX = 255
LABEL_MAX = 255
BOT_ACCOUNT_ID = "5b10a2844c20165700ede21g"
"""The sink's own account on Cloud, as ``myself`` gives it."""
PERSON_ACCOUNT_ID = "5b10ac8d82e05b22cc7d4ef5"
CATEGORIES = {"Open": "new", "Resolved": "done", "Closed": "done"}
READ_ONLY = frozenset({"Closed"})
_JQL = re.compile(r"(.*?)\s*(?:ORDER\s+BY\s+created\s+(ASC|DESC))?\s*", re.IGNORECASE | re.DOTALL)
_CLAUSE = re.compile(r'\s*(labels|project|issuetype)\s*=\s*"([^"\\]+)"\s*', re.IGNORECASE)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
_EPOCH = 1_776_500_000
_SYSTEM_FIELDS = ("summary", "description", "labels", "priority", "status", "resolution")


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    sources: frozenset[str]
    target: str


@dataclass
class FakeComment:
    id: str
    body: Any
    created: int
    author: dict[str, str] = field(default_factory=dict)
    """Who wrote it, as Jira's webhooks name a user; the sink's own account for one made
    through the API."""


@dataclass
class FakeIssue:
    id: str
    key: str
    project: str
    issuetype: str
    summary: str
    description: Any
    labels: list[str]
    priority: str | None
    created: int
    status: str = "Open"
    resolution: str | None = None
    comments: list[FakeComment] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)
    """Names of the transitions taken, in order (people's included)."""
    moved_from: list[str] = field(default_factory=list)
    """Keys it had before a move to another project: Jira still finds it under them."""


def _error(status: int, messages: list[str], errors: dict[str, str] | None = None) -> Response:
    return JSONResponse({"errorMessages": messages, "errors": errors or {}}, status_code=status)


def _holds_nul(value: Any) -> bool:
    """Whether any string in ``value`` (a JSON body) holds U+0000, which PostgreSQL's text
    columns refuse."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return False


def _unstorable(body: Any) -> Response | None:
    """Jira's answer when the database refuses what ``body`` would store (a NUL)."""
    return _error(500, ["Internal server error"]) if _holds_nul(body) else None


class FakeJira:
    """Jira's state as its REST API changes it; ``server`` is the HTTP side (url, requests
    seen, faults)."""

    _deliveries = 0

    def __init__(
        self,
        *,
        token: str,
        username: str | None = None,
        projects: tuple[str, ...] = ("OPS", "PAY"),
        issue_types: tuple[str, ...] = ("Incident", "Task"),
        priorities: tuple[str, ...] = ("Highest", "High", "Medium", "Low", "Lowest"),
    ) -> None:
        self.server = FakeServer()
        self.projects = projects
        self.issue_types = issue_types
        self.priorities = priorities
        self.workflow = (
            Transition("11", "Resolve Issue", frozenset({"Open"}), "Resolved"),
            Transition("21", "Close Issue", frozenset({"Open", "Resolved"}), "Closed"),
            Transition("31", "Reopen Issue", frozenset({"Resolved", "Closed"}), "Open"),
        )
        self._username = username
        secret = f"{username}:{token}".encode()
        self._auth = f"Basic {base64.b64encode(secret).decode()}" if username else f"Bearer {token}"
        self._lock = threading.Lock()
        self._issues: dict[str, FakeIssue] = {}
        self._told_moves: set[str] = set()
        self._ids = itertools.count(10001)
        # Per project, the last issue number given: Jira never gives a number twice, not
        # even one of an issue deleted since.
        self._numbers: dict[str, int] = {}
        base = "/rest/api/{version:int}/"
        self.app = Starlette(
            routes=[
                Route(base + "field", self._fields),
                Route(base + "myself", self._myself),
                Route(base + "project/{key}/statuses", self._statuses),
                Route(base + "issue", self._create, methods=["POST"]),
                Route(base + "issue/{key}", self._issue, methods=["GET", "PUT"]),
                Route(base + "issue/{key}/comment", self._comment, methods=["GET", "POST"]),
                Route(base + "issue/{key}/transitions", self._transitions, methods=["GET", "POST"]),
                Route(base + "search", self._search),
                Route(base + "search/jql", self._search),
            ]
        )

    # The tests' view

    def issues(self) -> list[FakeIssue]:
        with self._lock:
            return list(self._issues.values())

    def with_label(self, label: str) -> list[FakeIssue]:
        return [i for i in self.issues() if label in i.labels]

    def issue(self, key: str) -> FakeIssue:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        return found

    def close(self, key: str, resolution: str) -> None:
        """Close the issue with ``resolution``, as a person would in the UI."""
        issue = self.issue(key)
        with self._lock:
            issue.status, issue.resolution = "Closed", resolution
            issue.transitions.append("Close Issue")

    def move(self, key: str, project: str) -> str:
        """Move the issue to ``project``, as a person would: it gets a key there (its new
        key, returned), keeps its id, labels and status."""
        issue = self.issue(key)
        with self._lock:
            issue.moved_from.append(issue.key)
            issue.key, issue.project = self._next_key(project), project
            return issue.key

    def delete(
        self, key: str, who: str, secret: str, at: float = _EPOCH + 600
    ) -> tuple[bytes, dict[str, str]]:
        """A person (``who``) deletes issue ``key`` at ``at``, as in the UI: it is gone, and
        the ``jira:issue_deleted`` webhook Jira sends for it comes back as (body, headers),
        signed with ``secret``. Jira sends the issue as it was, and no changelog."""
        issue = self.issue(key)
        with self._lock:
            del self._issues[next(k for k, i in self._issues.items() if i is issue)]
            body = self._event("jira:issue_deleted", "issue_deleted", issue, at)
        body["user"] = {"accountId": PERSON_ACCOUNT_ID, "displayName": who}
        return self._signed(body, secret)

    def webhook(
        self,
        key: str,
        who: str,
        secret: str,
        before: str | None,
        account: str = "",
        account_id: str = PERSON_ACCOUNT_ID,
        at: float = _EPOCH + 600,
    ) -> tuple[bytes, dict[str, str]]:
        """The ``jira:issue_updated`` webhook Jira sends after a person (``who``, Cloud's
        ``account_id``; with ``account``, a Server/DC user of that name) moved issue
        ``key`` from status ``before`` to its status now (None: its status did not change)
        at ``at`` (seconds since the epoch), signed with ``secret`` like a Jira admin
        webhook with a secret (``X-Hub-Signature: sha256=...``). An issue moved to another
        project since the last one (``move``) says so too, as Jira's changelog does."""
        issue = self.issue(key)
        with self._lock:
            items = []
            if issue.moved_from and issue.moved_from[-1] not in self._told_moves:
                self._told_moves.add(issue.moved_from[-1])
                items += [
                    {"field": "project", "fieldtype": "jira",
                     "fromString": issue.moved_from[-1].split("-")[0],
                     "toString": issue.project},
                    {"field": "Key", "fieldtype": "jira", "fromString": issue.moved_from[-1],
                     "toString": issue.key},
                ]  # fmt: skip
            if before is not None:
                items.append(
                    {"field": "status", "fieldtype": "jira", "fromString": before,
                     "toString": issue.status}
                )  # fmt: skip
            body = self._event("jira:issue_updated", "issue_generic", issue, at)
        body["user"] = {"accountId": account_id, "displayName": who} | (
            {"name": account, "key": account} if account else {}
        )
        body["changelog"] = {"id": body["delivery"], "items": items}
        return self._signed(body, secret)

    def comment(
        self,
        key: str,
        who: str,
        body: Any,
        secret: str,
        account_id: str = PERSON_ACCOUNT_ID,
        at: float = _EPOCH + 600,
    ) -> tuple[bytes, dict[str, str]]:
        """A person (``who``, Cloud's ``account_id``) comments ``body`` on issue ``key`` at
        ``at``, as in the UI: the ``comment_created`` webhook Jira sends for it comes back
        as (body, headers), signed with ``secret`` (``commented``)."""
        issue = self.issue(key)
        with self._lock:
            made = FakeComment(
                str(next(self._ids)),
                body,
                next(self._ids),
                {"accountId": account_id, "displayName": who},
            )
            issue.comments.append(made)
        return self.commented(key, secret, at=at)

    def commented(
        self, key: str, secret: str, which: int = -1, at: float = _EPOCH + 600
    ) -> tuple[bytes, dict[str, str]]:
        """The ``comment_created`` webhook of a comment on issue ``key`` (``which``: its
        index, the latest by default; the sink's own included), signed with ``secret``.
        As on Jira Cloud, its issue carries its id, key and a few fields, not its labels;
        there is no top-level ``user``: the comment's ``author`` says who."""
        issue = self.issue(key)
        with self._lock:
            made = issue.comments[which]
            body = self._event("comment_created", "issue_commented", issue, at)
        del body["issue_event_type_name"]
        del body["issue"]["fields"]["labels"]
        created = datetime.fromtimestamp(_EPOCH + made.created, UTC).isoformat()
        body["comment"] = {
            "id": made.id,
            "author": made.author,
            "body": made.body,
            "updateAuthor": made.author,
            "created": created,
            "updated": created,
        }
        return self._signed(body, secret)

    def _event(self, event: str, type_name: str, issue: FakeIssue, at: float) -> dict[str, Any]:
        """A webhook's body for ``issue`` as it is, under a new delivery id (``delivery``,
        taken out again by ``_signed``); the lock is held."""
        self._deliveries += 1
        return {
            "delivery": f"delivery-{self._deliveries}",
            "timestamp": round(at * 1000),
            "webhookEvent": event,
            "issue_event_type_name": type_name,
            "issue": {
                "id": issue.id,
                "key": issue.key,
                "fields": {
                    "labels": list(issue.labels),
                    "status": {
                        "name": issue.status,
                        "statusCategory": {"key": CATEGORIES[issue.status]},
                    },
                },
            },
        }

    @staticmethod
    def _signed(body: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
        """``body`` as Jira sends it: signed with ``secret`` like an admin webhook with a
        secret (``X-Hub-Signature: sha256=...``), its delivery id in a header."""
        delivery = body.pop("delivery")
        raw = json.dumps(body).encode()
        return raw, {
            "content-type": "application/json",
            "x-hub-signature": sign_jira(raw, secret),
            "x-atlassian-webhook-identifier": delivery,
        }

    # The API

    async def _fields(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        return JSONResponse(
            [
                {"id": name, "name": name.title(), "custom": False, "clauseNames": [name]}
                for name in _SYSTEM_FIELDS
            ]
        )

    async def _myself(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        return JSONResponse(self._me(request.path_params["version"]) | {"active": True})

    def _me(self, version: int) -> dict[str, str]:
        """The account the credentials are, as ``myself`` and the webhooks name it."""
        name = self._username or "journey-bot"
        if version == 3:
            return {"accountId": BOT_ACCOUNT_ID, "displayName": name}
        return {"name": name, "key": name, "displayName": name}

    async def _statuses(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        key = request.path_params["key"]
        if key not in self.projects:
            return _error(404, [f"No project could be found with key '{key}'."])
        statuses = [
            {"id": str(i), "name": name, "statusCategory": {"key": category}}
            for i, (name, category) in enumerate(CATEGORIES.items(), start=1)
        ]
        return JSONResponse(
            [
                {"id": str(i), "name": name, "subtask": False, "statuses": statuses}
                for i, name in enumerate(self.issue_types, start=1)
            ]
        )

    async def _create(self, request: Request) -> Response:
        version = request.path_params["version"]
        if (refused := self._refuse(request)) is not None:
            return refused
        body = await request.json()
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return _error(400, ["No fields were given."])
        errors = self._field_problems(fields, version, creating=True)
        if errors:
            return _error(400, [], errors)
        if (unstorable := _unstorable(body)) is not None:
            return unstorable
        with self._lock:
            project = fields["project"]["key"]
            issue = FakeIssue(
                id=str(next(self._ids)),
                key=self._next_key(project),
                project=project,
                issuetype=fields["issuetype"]["name"],
                summary=fields["summary"],
                description=fields.get("description"),
                labels=list(fields.get("labels", [])),
                priority=(fields.get("priority") or {}).get("name"),
                created=len(self._issues),
            )
            self._issues[issue.key] = issue
        url = f"{request.base_url}rest/api/{version}/issue/{issue.id}"
        return JSONResponse({"id": issue.id, "key": issue.key, "self": url}, status_code=201)

    async def _issue(self, request: Request) -> Response:
        version = request.path_params["version"]
        issue = self._addressed(request)
        if isinstance(issue, Response):
            return issue
        if request.method == "GET":
            return JSONResponse(self._json(request, issue, _wanted(request, everything=True)))
        body = await request.json()
        fields, update = body.get("fields") or {}, body.get("update") or {}
        errors = self._field_problems(fields, version, creating=False)
        if issue.status in READ_ONLY:
            errors |= {
                name: f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                "or unknown."
                for name in [*fields, *update]
            }
        for name, operations in update.items():
            if name != "labels":
                errors[name] = f"Field '{name}' cannot be updated with operations here."
            else:
                errors |= _label_problems([op.get("add") or op.get("remove") for op in operations])
        if errors:
            return _error(400, [], errors)
        if (unstorable := _unstorable(body)) is not None:
            return unstorable
        with self._lock:
            for name, value in fields.items():
                if name == "priority":
                    issue.priority = value["name"]
                else:
                    setattr(issue, name, value)
            for op in update.get("labels", []):
                if "add" in op and op["add"] not in issue.labels:
                    issue.labels.append(op["add"])
                if "remove" in op and op["remove"] in issue.labels:
                    issue.labels.remove(op["remove"])
        return Response(status_code=204)

    async def _comment(self, request: Request) -> Response:
        version = request.path_params["version"]
        issue = self._addressed(request)
        if isinstance(issue, Response):
            return issue
        if request.method == "GET":
            comments = sorted(
                issue.comments,
                key=lambda c: c.created,
                reverse=request.query_params.get("orderBy", "created").startswith("-"),
            )
            limit = int(request.query_params.get("maxResults", "5000"))
            return JSONResponse(
                {
                    "startAt": 0,
                    "maxResults": limit,
                    "total": len(comments),
                    "comments": [_comment_json(c) for c in comments[:limit]],
                }
            )
        body = (await request.json()).get("body")
        problem = _text_problem(body, version)
        if problem or not body:
            return _error(400, [], {"comment": problem or "Comment body can not be empty!"})
        if (unstorable := _unstorable(body)) is not None:
            return unstorable
        with self._lock:
            comment = FakeComment(str(next(self._ids)), body, next(self._ids), self._me(version))
            issue.comments.append(comment)
        return JSONResponse(_comment_json(comment), status_code=201)

    async def _transitions(self, request: Request) -> Response:
        issue = self._addressed(request)
        if isinstance(issue, Response):
            return issue
        available = [t for t in self.workflow if issue.status in t.sources]
        if request.method == "GET":
            return JSONResponse({"transitions": [_transition_json(t) for t in available]})
        body = await request.json()
        wanted = str((body.get("transition") or {}).get("id"))
        chosen = next((t for t in available if t.id == wanted), None)
        if chosen is None:
            return _error(
                400,
                [
                    f"It seems that you have tried to perform a workflow operation ({wanted}) "
                    f"that is not valid for the current state of this issue ({issue.key})."
                ],
            )
        with self._lock:
            issue.status = chosen.target
            done = CATEGORIES[chosen.target] == "done"
            issue.resolution = "Done" if done else None
            issue.transitions.append(chosen.name)
        return Response(status_code=204)

    async def _search(self, request: Request) -> Response:
        version = request.path_params["version"]
        if (refused := self._refuse(request)) is not None:
            return refused
        enhanced = request.url.path.endswith("/jql")
        if enhanced and version != 3:
            return _error(404, ["null for uri: " + str(request.url)])
        if version == 3 and not enhanced:
            return _error(410, ["The requested API has been removed. Use /rest/api/3/search/jql."])
        match = _JQL.fullmatch(request.query_params.get("jql", ""))
        clauses = [_CLAUSE.fullmatch(c) for c in _AND.split(match.group(1))] if match else [None]
        if match is None or None in clauses:
            return _error(
                400,
                ['Error in the JQL Query: only labels, project and issuetype = "..." joined by '
                 "AND are supported."],
            )  # fmt: skip
        wanted_by = {c.group(1).lower(): c.group(2) for c in clauses if c is not None}
        project = wanted_by.get("project")
        if project is not None and project not in self.projects:
            return _error(400, [f"The value '{project}' does not exist for the field 'project'."])
        found = sorted(
            (i for i in self.issues() if _matches(i, wanted_by)), key=lambda i: i.created
        )
        if (match.group(2) or "ASC").upper() == "DESC":
            found.reverse()
        limit = int(request.query_params.get("maxResults", "50"))
        wanted = _wanted(request, everything=not enhanced)
        issues = [self._json(request, i, wanted) for i in found[:limit]]
        if enhanced:
            return JSONResponse({"issues": issues, "isLast": len(found) <= limit})
        return JSONResponse(
            {"startAt": 0, "maxResults": limit, "total": len(found), "issues": issues}
        )

    # Rules

    def _next_key(self, project: str) -> str:
        """The key of the next issue in ``project`` (created or moved there); under the lock."""
        self._numbers[project] = self._numbers.get(project, 0) + 1
        return f"{project}-{self._numbers[project]}"

    def _refuse(self, request: Request) -> Response | None:
        if request.path_params["version"] not in (2, 3):
            return _error(404, ["No such API version."])
        if request.headers.get("authorization") != self._auth:
            return _error(
                401,
                ["You are not authenticated. Authentication required to perform this operation."],
            )
        return None

    def _addressed(self, request: Request) -> FakeIssue | Response:
        """The issue named by ``{key}`` in the path, or Jira's answer when the request is
        refused or no such issue exists."""
        if (refused := self._refuse(request)) is not None:
            return refused
        issue = self._find(request.path_params["key"])
        return _error(404, ["Issue Does Not Exist"]) if issue is None else issue

    def _find(self, key_or_id: str) -> FakeIssue | None:
        with self._lock:
            return next(
                (
                    i
                    for i in self._issues.values()
                    if key_or_id in (i.key, i.id) or key_or_id in i.moved_from
                ),
                None,
            )

    def _field_problems(
        self, fields: dict[str, Any], version: int, *, creating: bool
    ) -> dict[str, str]:
        errors: dict[str, str] = {}
        settable = {"summary", "description", "labels", "priority"}
        if creating:
            settable |= {"project", "issuetype"}
            if (fields.get("project") or {}).get("key") not in self.projects:
                errors["project"] = "valid project is required"
            if (fields.get("issuetype") or {}).get("name") not in self.issue_types:
                errors["issuetype"] = "valid issue type is required"
            if not fields.get("summary"):
                errors["summary"] = "You must specify a summary of the issue."
        for name in fields.keys() - settable:
            errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen."
        summary = fields.get("summary")
        if summary is not None:
            if not isinstance(summary, str):
                errors["summary"] = "Operation value must be a string"
            elif "\n" in summary or "\r" in summary:
                errors["summary"] = "The summary is invalid because it contains newline characters."
            elif len(summary) > SUMMARY_MAX:
                errors["summary"] = "Summary must be less than 255 characters."
        if "description" in fields and (problem := _text_problem(fields["description"], version)):
            errors["description"] = problem
        if "labels" in fields:
            errors |= _label_problems(fields["labels"])
        if "priority" in fields:
            name = (fields["priority"] or {}).get("name")
            if name not in self.priorities:
                errors["priority"] = f"Priority name '{name}' is not valid"
        return errors

    def _json(self, request: Request, issue: FakeIssue, wanted: set[str]) -> dict[str, Any]:
        version = request.path_params["version"]
        everything = {
            "summary": issue.summary,
            "description": issue.description,
            "labels": issue.labels,
            "priority": {"name": issue.priority} if issue.priority else None,
            "status": {
                "name": issue.status,
                "statusCategory": {"key": CATEGORIES[issue.status]},
            },
            "resolution": {"name": issue.resolution} if issue.resolution else None,
            "project": {"key": issue.project},
            "issuetype": {"name": issue.issuetype},
        }
        return {
            "id": issue.id,
            "key": issue.key,
            "self": f"{request.base_url}rest/api/{version}/issue/{issue.id}",
            "fields": {k: v for k, v in everything.items() if k in wanted or "*all" in wanted},
        }


def _matches(issue: FakeIssue, wanted_by: dict[str, str]) -> bool:
    have = {"labels": issue.labels, "project": [issue.project], "issuetype": [issue.issuetype]}
    return all(value in have[name] for name, value in wanted_by.items())


def _wanted(request: Request, *, everything: bool) -> set[str]:
    names = {n for v in request.query_params.getlist("fields") for n in v.split(",") if n}
    return names or ({"*all"} if everything else set())


def _label_problems(labels: Any) -> dict[str, str]:
    if not isinstance(labels, list):
        return {"labels": "Operation value must be an array of strings"}
    for name in labels:
        if not isinstance(name, str) or not name:
            return {"labels": "Label must be a non-empty string"}
        if any(c.isspace() for c in name):
            return {"labels": f"The label '{name}' contains spaces which is invalid."}
        if len(name) > LABEL_MAX:
            return {
                "labels": f"The label '{name}' exceeds the maximum length for a single label "
                f"of {LABEL_MAX} characters."
            }
    return {}


def _text_problem(value: Any, version: int) -> str | None:
    """Why ``value`` is not a text field's value in this API version, or None."""
    if version == 2:
        return (
            None if value is None or isinstance(value, str) else "Operation value must be a string"
        )
    problems = adf_problems(value)
    if problems:
        return (
            "Operation value must be an Atlassian Document (see the Atlassian Document Format): "
            + "; ".join(problems)
        )
    return None


_INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard"}
_CHILDREN: dict[str, set[str]] = {
    "doc": {"paragraph", "heading", "bulletList", "orderedList", "table", "rule", "codeBlock"},
    "paragraph": _INLINE,
    "heading": _INLINE,
    "codeBlock": {"text"},
    "bulletList": {"listItem"},
    "orderedList": {"listItem"},
    "listItem": {"paragraph", "bulletList", "orderedList", "codeBlock"},
    "table": {"tableRow"},
    "tableRow": {"tableHeader", "tableCell"},
    "tableHeader": {"paragraph", "bulletList", "orderedList", "heading", "codeBlock"},
    "tableCell": {"paragraph", "bulletList", "orderedList", "heading", "codeBlock"},
}
_NEEDS_CONTENT = {
    "bulletList", "orderedList", "listItem", "table", "tableRow", "tableHeader", "tableCell",
}  # fmt: skip
_MARKS = {"strong", "em", "code", "strike", "underline", "link"}


def adf_problems(doc: Any) -> list[str]:
    """What makes ``doc`` not an ADF document (empty when it is one)."""
    if not isinstance(doc, dict) or doc.get("type") != "doc" or doc.get("version") != 1:
        return ['the root must be {"type": "doc", "version": 1, "content": [...]}']
    return _node_problems(doc, "doc")


def _node_problems(node: Any, where: str) -> list[str]:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return [f"{where}: a node must be an object with a type"]
    kind = node["type"]
    if kind == "text":
        problems = [] if isinstance(node.get("text"), str) and node["text"] else [f"{where}: empty"]
        for mark in node.get("marks", []):
            if mark.get("type") not in _MARKS:
                problems.append(f"{where}: unknown mark {mark.get('type')!r}")
            elif mark["type"] == "link" and not (mark.get("attrs") or {}).get("href"):
                problems.append(f"{where}: a link mark needs attrs.href")
        return problems
    if kind == "heading" and (node.get("attrs") or {}).get("level") not in range(1, 7):
        return [f"{where}: a heading needs attrs.level 1-6"]
    content = node.get("content", [])
    allowed = _CHILDREN.get(kind)
    if allowed is None:
        return [] if kind in _INLINE | {"rule"} else [f"{where}: unknown node {kind!r}"]
    if not isinstance(content, list) or (kind in _NEEDS_CONTENT and not content):
        return [f"{where}: {kind} needs content"]
    problems = []
    for i, child in enumerate(content):
        child_kind = child.get("type") if isinstance(child, dict) else None
        if child_kind not in allowed:
            problems.append(f"{where}.{kind}[{i}]: {child_kind!r} cannot be in {kind}")
        else:
            problems += _node_problems(child, f"{where}.{kind}[{i}]")
    return problems


def _comment_json(comment: FakeComment) -> dict[str, Any]:
    created = datetime.fromtimestamp(_EPOCH + comment.created, UTC).isoformat()
    return {"id": comment.id, "body": comment.body, "created": created}


def _transition_json(transition: Transition) -> dict[str, Any]:
    target = {"name": transition.target, "statusCategory": {"key": CATEGORIES[transition.target]}}
    return {"id": transition.id, "name": transition.name, "to": target, "hasScreen": False}


@contextlib.contextmanager
def serve_jira(
    *, token: str, username: str | None = None, tls: tuple[Path, Path] | None = None
) -> Iterator[FakeJira]:
    """A running fake; its base URL (the ``sinks.jira.url``) is ``server.url``."""
    fake = FakeJira(token=token, username=username)
    with serve(fake.app, fake.server, tls=tls):
        yield fake
