"""Schemathesis over every operation of ``receiver/openapi.json``, against the app in process.

The app runs on the ``memory://`` store (the same Lua scripts as Redis) with a fake clock and
no scheduler, so a run is reproducible: a fixed seed, Hypothesis derandomized, no example
database, and a budget per operation that keeps the file well inside a minute.

Every request carries a valid credential, so the fuzzer gets past auth to the logic:
- the bearer token of the role the operation's ``security`` names (a wrong role in the
  document shows up as a 401/403 here);
- ``/inbound/*``: :class:`Vendors` signs each body as PagerDuty, Slack or Jira would;
- the pages: a signed-in session cookie, and a valid CSRF token put first in every form
  (the page reads the first value of a field), so the rest of the form is the fuzzer's.

What must hold (SPEC "HTTP API"): no 5xx while the store is up (the documented 502 of a
silence needs an Alertmanager configured; here there is none, so it is a 409); only the
answers the document declares, in its content types and schemas; a request the document
calls invalid refused with a 4xx; no 401/403 for a valid credential; and every 4xx of a JSON
operation a JSON ``Error`` whose 422 names each field (``errors[].field``), the first in its
message too. The pages answer their 4xx as HTML pages that say why in words, with no field
to name: they are held to the status codes, content types and headers the document lists,
and not to refusing what it calls invalid (their forms get a CSRF token from
:class:`Vendors`, and they read unknown ``?window=`` or ``?why=`` as the default).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.app import create_app
from receiver.config.fields import show
from receiver.web.auth import NONCE_COOKIE, SESSION_COOKIE
from tests.conftest import FakeClock, body, make_alert
from tests.support.harness import write_config

# CI runs the defaults; a longer hunt: FUZZ_SEED=7 FUZZ_EXAMPLES=500 pytest tests/test_fuzz_api.py
SEED = int(os.environ.get("FUZZ_SEED", "15"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
"""Fuzzing examples per operation, after the schema's examples and the coverage phase."""

TOKENS = {"read": "fuzz-reader", "write": "fuzz-writer", "admin": "fuzz-admin"}
PAGERDUTY_SECRET = "pd-fuzz-secret"
SLACK_SECRET = "slack-fuzz-secret"
JIRA_SECRET = "jira-fuzz-secret"
CONFIG = f"""
server:
  auth:
    bearer_tokens: ["{TOKENS["write"]}"]
    read_bearer_tokens: ["{TOKENS["read"]}"]
    admin_bearer_tokens: ["{TOKENS["admin"]}"]
inbound:
  pagerduty: {{signing_secrets: ["{PAGERDUTY_SECRET}"]}}
  slack: {{signing_secret: "{SLACK_SECRET}"}}
  jira: {{secret: "{JIRA_SECRET}"}}
"""
SCHEME_ROLES = {"readToken": "read", "writeToken": "write", "adminToken": "admin"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
PAGE_CHECKS = [check for check in CHECKS if check is not negative_data_rejection]
_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Visitor:
    """Cookies and the CSRF token of a browser: signed in, or not (for /signin, /signout)."""

    cookies: str
    csrf: str


class Vendors:
    """ASGI middleware in front of the app, playing PagerDuty, Slack, Jira and a browser:
    it signs ``/inbound/*`` bodies with the configured secrets and gives page requests a
    session and a CSRF token, so the fuzzer's requests reach the code behind those checks."""

    def __init__(self, app: ASGIApp, clock: FakeClock) -> None:
        self.app = app
        self.clock = clock
        self.signed_in: Visitor | None = None
        self.anonymous: Visitor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        visitor = self.anonymous if path in ("/signin", "/signout") else self.signed_in
        inbound = path.startswith("/inbound/")
        if scope["type"] != "http" or not (inbound or visitor is not None):
            await self.app(scope, receive, send)
            return
        content = await _read(receive)
        headers = [(k, v) for k, v in scope["headers"] if k not in _REPLACED]
        if inbound:
            headers += self._signatures(path, content)
        elif visitor is not None and not path.startswith(("/static/", "/api/", "/webhook/", "/-/")):
            headers.append((b"cookie", visitor.cookies.encode()))
            if scope["method"] == "POST":
                content = f"csrf={visitor.csrf}&".encode() + content
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-length", str(len(content)).encode()))
        await self.app({**scope, "headers": headers}, _replay(content, receive), send)

    def _signatures(self, path: str, content: bytes) -> list[tuple[bytes, bytes]]:
        if path == "/inbound/pagerduty":
            return [(b"x-pagerduty-signature", b"v1=" + _hmac(PAGERDUTY_SECRET, content))]
        if path == "/inbound/jira":
            return [(b"x-hub-signature", b"sha256=" + _hmac(JIRA_SECRET, content))]
        stamp = str(int(self.clock())).encode()
        signed = _hmac(SLACK_SECRET, b"v0:" + stamp + b":" + content)
        return [(b"x-slack-request-timestamp", stamp), (b"x-slack-signature", b"v0=" + signed)]


_REPLACED = frozenset(
    {
        b"cookie",
        b"x-pagerduty-signature",
        b"x-hub-signature",
        b"x-webhook-secret",
        b"x-slack-request-timestamp",
        b"x-slack-signature",
    }
)


def _hmac(secret: str, content: bytes) -> bytes:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest().encode()


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(content: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    return replay


DOCUMENT = Path(str(resources.files("receiver").joinpath("openapi.json")))
# The schema is read at import (schemathesis makes one test per operation when collecting);
# the app it is sent to is the module's fixture, passed to every call.
schema = schemathesis.openapi.from_path(DOCUMENT)
schema.config.seed = SEED
schema.config.generation.update(
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    database="none",
    with_security_parameters=False,
)
SEEDED = ("seeded-incident-0", "seeded-incident-1")
"""Stand-ins the fuzzer draws for ``incident_id``, replaced with the seeded incidents' ids."""


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    # A known incident two times in three: the fuzzer rarely guesses an id, and a known one
    # reaches the code past the 404.
    if path_parameters is None or "incident_id" not in path_parameters:
        return st.just(path_parameters)
    choices = [path_parameters["incident_id"], *SEEDED]
    return st.sampled_from(choices).map(lambda i: {**path_parameters, "incident_id": i})


@dataclass
class Fuzzed:
    app: Vendors
    incidents: dict[str, str]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    clock = FakeClock()
    config = write_config(tmp_path_factory.mktemp("fuzz"), CONFIG)
    vendors = Vendors(create_app(config, clock=clock, run_scheduler=False), clock)
    try:
        with asgi.get_client(vendors) as client:
            incidents = _seed(client)
            vendors.anonymous, vendors.signed_in = _visitors(client)
        # The document's examples name the first, so the examples phase finds it too.
        example = schema["/api/v1/incidents/{incident_id}"]["GET"].definition.raw
        assert incidents[0] == example["parameters"][0]["example"], (
            "the seeded incident's id changed: put it in the examples of receiver/openapi.json"
        )
        yield Fuzzed(vendors, dict(zip(SEEDED, incidents, strict=True)))
    finally:
        asgi.shutdown_lifespans()


def _seed(client: asgi.ASGIClient) -> list[str]:
    """Two incidents for the fuzzer to find."""
    alerts = [make_alert("payment-service"), make_alert("cart-api", region="us")]
    answer = client.post(
        "/webhook/alertmanager",
        data=body(alerts),
        headers={"authorization": f"Bearer {TOKENS['write']}"},
    )
    assert answer.status_code == 200, answer.text
    incidents: list[str] = answer.json()["incidents"]
    return incidents


def _visitors(client: asgi.ASGIClient) -> tuple[Visitor, Visitor]:
    form = client.get("/signin")
    nonce = form.cookies[NONCE_COOKIE]
    anonymous = Visitor(f"{NONCE_COOKIE}={nonce}", _csrf(form.text))
    signed = client.post(
        "/signin",
        data={"csrf": anonymous.csrf, "token": TOKENS["write"], "name": "fuzz"},
        headers={"cookie": anonymous.cookies},
        allow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    cookies = f"{SESSION_COOKIE}={signed.cookies[SESSION_COOKIE]}"
    board = client.get("/", headers={"cookie": cookies})
    assert board.status_code == 200, board.text
    return anonymous, Visitor(cookies, _csrf(board.text))


def _csrf(page: str) -> str:
    found = _CSRF_FIELD.search(page)
    assert found is not None, "no form with a CSRF token on the page"
    return found.group(1)


@schema.parametrize()
def test_every_operation(case: schemathesis.Case, fuzzed: Fuzzed) -> None:
    parameters = case.path_parameters or {}
    if parameters.get("incident_id") in fuzzed.incidents:
        parameters["incident_id"] = fuzzed.incidents[parameters["incident_id"]]
    response = case.call(
        base_url=f"http://{asgi.HOST}",
        app=fuzzed.app,
        headers=credentials(case.operation.definition.raw),
    )
    page = case.operation.definition.raw["tags"] == ["pages"]
    # A page's form gets its CSRF token from Vendors, whatever the fuzzer left out.
    case.validate_response(response, checks=PAGE_CHECKS if page else CHECKS)
    assert_error_shape(case, response)


def credentials(operation: dict[str, Any]) -> dict[str, str]:
    """The bearer token of the first role the operation's ``security`` names, if any."""
    for requirement in operation.get("security", []):
        for scheme in requirement:
            if scheme in SCHEME_ROLES:
                return {"authorization": f"Bearer {TOKENS[SCHEME_ROLES[scheme]]}"}
    return {}


def assert_error_shape(case: schemathesis.Case, response: schemathesis.Response) -> None:
    status = response.status_code
    pages = case.operation.definition.raw.get("tags") == ["pages"]
    if status < 400 or (pages and case.operation.path != "/static/{path}"):
        return
    if case.operation.path.startswith(("/api/", "/webhook/", "/-/", "/inbound/")):
        assert status not in (401, 403), f"{case.operation.label}: refused a valid credential"
    answer = json.loads(response.content)
    assert isinstance(answer.get("error"), str) and answer["error"], answer
    if status == 422:
        errors = answer.get("errors")
        assert errors, f"a 422 without errors[] naming the field: {answer}"
        assert all(isinstance(e.get("field"), str) for e in errors), answer
        # An unknown query parameter is named as sent, quoted: it may be empty or unprintable.
        first = errors[0]["field"]
        named = (first and first in answer["error"]) or show(first) in answer["error"]
        assert named, f"the message names no field: {answer}"
