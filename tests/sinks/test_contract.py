"""The contract every sink that talks to a remote API meets (STYLE.md, "The one sink
interface"), checked for each one against its fake through the real client library:

- an HTTP status decides retryable or permanent, with a reason and Retry-After, after one
  request (the outbox alone retries);
- no secret reaches an error's text or any log line, even when the API echoes it back
  (alertmanager ``notify/test`` AssertNotifyLeaksNoSecret);
- the same incident delivered twice, the first receipt lost, is one remote object.

Each sink is built through ``receiver.sinks.registry`` from its config section, as the
receiver builds it, so the name it reports is the name it is registered under.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

from receiver.config import (
    JiraSinkConfig,
    Owner,
    PagerDutySinkConfig,
    ReceiverConfig,
    ServerConfig,
    SinksConfig,
    SlackSinkConfig,
)
from receiver.errors import (
    DeliveryError,
    PermanentDeliveryError,
    ReceiverError,
    RetryableDeliveryError,
)
from receiver.sinks import Delivery, Sink, registry
from tests.support.fake_jira import serve_jira
from tests.support.fake_pagerduty import serve_pagerduty
from tests.support.fake_server import FakeServer, Fault, serve
from tests.support.fake_slack import FakeSlack
from tests.support.incidents import CREATED_MS, make_incident
from tests.support.prometheus import self_signed_cert

pytestmark = pytest.mark.anyio

# Distinctive secrets, so that a hit in error text or a log line can only be a leak.
PD_KEY = "PDKEY-contract-secret-0123456789"  # PagerDuty refuses a key that is not 32 long
SLACK_TOKEN = "xoxb-contract-SLACKSECRET-4242"
JIRA_TOKEN = "jira-contract-JIRASECRET-4242"
EXTERNAL_URL = "https://receiver.example.com"
# No overrides: every sink uses its configured routing key, channel and project.
OWNER = Owner(team="payments")
OPEN = Delivery("open", "job-open", OWNER)

REMOTE = ("pagerduty", "slack", "jira")
# The log sink writes a line and holds no secret: it has no status, no credential and no
# remote object, so only the registry tests below concern it.
LOCAL = ("log",)


@dataclass
class Fake:
    """A running fake of one remote API, and what the contract needs to know about it."""

    config: BaseModel
    """The sink's section of ``sinks``, pointing at the fake, with the secret."""
    server: FakeServer
    first_path: str
    """Where the sink's first request for a new incident goes: faults are injected there."""
    secret: str
    objects: Callable[[str], int]
    """How many remote objects (PD incidents, top-level messages, issues) an incident has."""


@dataclass
class Remote:
    name: str
    sink: Sink
    fake: Fake
    config: ReceiverConfig

    def rebuilt(self) -> Sink:
        """The sink as a restarted receiver builds it: nothing remembered in memory."""
        return registry.build(self.config)[self.name]


@contextlib.contextmanager
def pagerduty(tls: tuple[Path, Path]) -> Iterator[Fake]:
    with serve_pagerduty(tls) as pd:
        config = PagerDutySinkConfig.model_validate(
            {
                "events_url": f"{pd.server.url}/v2/enqueue",
                "routing_key": PD_KEY,
                "ca_file": tls[0],
                "timeout": 5.0,
            }
        )
        yield Fake(config, pd.server, "/v2/enqueue", PD_KEY, lambda id_: len(pd.incidents(id_)))


@contextlib.contextmanager
def slack(tls: tuple[Path, Path]) -> Iterator[Fake]:
    # Slack's clock just after the incident opened: a sink looking for its lost post
    # searches the channel from the incident's creation on.
    fake = FakeSlack(token=SLACK_TOKEN, clock=lambda: CREATED_MS / 1000 + 40)
    with serve(fake.app, FakeServer()) as server:
        config = SlackSinkConfig.model_validate(
            {"token": SLACK_TOKEN, "base_url": f"{server.url}/api/", "timeout": 5}
        )
        # Every method is under /api/; a new incident starts with chat.postMessage.
        yield Fake(
            config,
            server,
            "/api/",
            SLACK_TOKEN,
            lambda id_: sum(
                ((m.metadata or {}).get("event_payload") or {}).get("incident_id") == id_
                for m in fake.messages(str(config.channel))
            ),
        )


@contextlib.contextmanager
def jira(tls: tuple[Path, Path]) -> Iterator[Fake]:
    with serve_jira(token=JIRA_TOKEN) as fake:
        config = JiraSinkConfig.model_validate(
            {"url": fake.server.url, "token": JIRA_TOKEN, "timeout": 5.0}
        )
        # Server/Data Center (REST v2). A new incident starts with a search by its label,
        # before which the client fetches the field list: both under /rest/api/2/.
        yield Fake(
            config,
            fake.server,
            "/rest/api/2/",
            JIRA_TOKEN,
            lambda id_: len(fake.with_label(f"journey-receiver-{id_}")),
        )


FAKES: dict[str, Callable[[tuple[Path, Path]], contextlib.AbstractContextManager[Fake]]] = {
    "pagerduty": pagerduty,
    "slack": slack,
    "jira": jira,
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # The pagerduty client speaks HTTPS only; one certificate serves the whole module.
    return self_signed_cert(tmp_path_factory.mktemp("contract-tls"))


@pytest.fixture(params=REMOTE)
async def remote(request: pytest.FixtureRequest, tls: tuple[Path, Path]) -> AsyncIterator[Remote]:
    name = str(request.param)
    with FAKES[name](tls) as fake:
        config = ReceiverConfig(
            server=ServerConfig(external_url=EXTERNAL_URL),
            sinks=SinksConfig.model_validate({name: fake.config}),
        )
        sink = registry.build(config)[name]
        try:
            yield Remote(name, sink, fake, config)
        finally:
            await sink.aclose()


def test_config_and_registry_name_the_same_sinks() -> None:
    # A sink with a config model and no registry line (or the reverse) is never built, or
    # cannot be configured.
    assert set(SinksConfig.model_fields) == registry.names()


def test_every_registered_sink_is_under_this_contract() -> None:
    # A new sink fails here until it is added to REMOTE (with its fake) or to LOCAL.
    assert registry.names() == {*REMOTE, *LOCAL}
    assert set(FAKES) == set(REMOTE)


# Slack's Web API answers refusals (invalid_auth, not_authed, bad arguments) with HTTP 200
# and ``{"ok": false, "error": ...}``; only rate limits (429) and outages (5xx) come as HTTP
# statuses. The 400/401/403 rows are not what Slack sends, but the Slack sink still maps
# any real HTTP status by this table, which is what it guarantees; Slack's documented
# HTTP 200 refusals have their own rows in the Slack-only tests below.
@pytest.mark.parametrize(
    ("status", "error", "reason", "retry_after"),
    [
        (429, RetryableDeliveryError, "rate_limited", 7.0),
        (500, RetryableDeliveryError, "server", None),
        (502, RetryableDeliveryError, "server", None),
        (503, RetryableDeliveryError, "server", None),
        (400, PermanentDeliveryError, "client", None),
        (401, PermanentDeliveryError, "auth", None),
        (403, PermanentDeliveryError, "auth", None),
    ],
)
async def test_http_status_decides_retryable_or_permanent_after_one_request(
    remote: Remote,
    status: int,
    error: type[DeliveryError],
    reason: str,
    retry_after: float | None,
) -> None:
    server = remote.fake.server
    # The fault answers once: a sink (or its client) that retried would succeed the second
    # time and raise nothing. Retry-After 7 would make a sink that sleeps on it overrun
    # the 5 s bound.
    server.inject(
        Fault(remote.fake.first_path, status=status, retry_after="7" if status == 429 else None)
    )

    with anyio.fail_after(5), pytest.raises(error) as caught:
        await remote.sink.deliver(make_incident(), OPEN, None)

    err = caught.value
    assert (err.sink, err.incident_id, err.reason) == (remote.name, "checkout-eu-1", reason)
    assert err.__cause__ is not None  # raised ``from`` the client's error
    if isinstance(err, RetryableDeliveryError):
        assert err.retry_after == retry_after
    assert len(server.requests()) == 1


@pytest.mark.parametrize("remote", ["slack"], indirect=True)
@pytest.mark.parametrize(
    ("code", "error", "reason"),
    [
        ("invalid_auth", PermanentDeliveryError, "auth"),
        ("not_authed", PermanentDeliveryError, "auth"),
        ("token_revoked", PermanentDeliveryError, "auth"),
        ("invalid_arguments", PermanentDeliveryError, "client"),
        ("fatal_error", RetryableDeliveryError, "server"),
    ],
)
async def test_slack_refusals_in_http_200_are_mapped_by_their_error_code(
    remote: Remote, code: str, error: type[DeliveryError], reason: str
) -> None:
    # Slack's own shape for the table above: HTTP 200, the verdict in the error code.
    server = remote.fake.server
    server.inject(Fault(remote.fake.first_path, status=200, body={"ok": False, "error": code}))

    with anyio.fail_after(5), pytest.raises(error) as caught:
        await remote.sink.deliver(make_incident(), OPEN, None)

    assert (caught.value.sink, caught.value.reason) == ("slack", reason)
    assert caught.value.__cause__ is not None
    assert len(server.requests()) == 1


def echoing(secret: str) -> dict[str, object]:
    """An API's answer that quotes the credential back, in each field a sink may quote:
    PagerDuty's message, Slack's error code, Jira's errorMessages."""
    return {
        "ok": False,
        "error": f"invalid_auth: {secret}",
        "status": "refused",
        "message": f"credential {secret} refused",
        "errorMessages": [f"credential {secret} refused"],
        "errors": {"token": secret},
    }


async def assert_no_secret_leaks(
    remote: Remote, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    secret = remote.fake.secret
    remote.fake.server.inject(Fault(remote.fake.first_path, status=status, body=echoing(secret)))
    # Every logger, the client libraries' included, for the whole call.
    caplog.set_level(logging.DEBUG)

    with pytest.raises(DeliveryError) as caught:
        await remote.sink.deliver(make_incident(), OPEN, None)

    err = caught.value
    assert secret not in str(err)
    assert secret not in repr(err)
    # The sink's own errors down the chain, should it ever chain through one. The client
    # libraries' errors below are not the sink's text, and they do carry the secret:
    # pagerduty's quotes the body on a 5xx and the key's last 4 characters on a 401,
    # slack_sdk's the body, JIRAError's the request headers (Authorization included). They
    # stay in __cause__ for debugging; the outbox records and logs only str(err).
    cause = err.__cause__
    assert cause is not None
    while isinstance(cause, ReceiverError):
        assert secret not in str(cause)
        cause = cause.__cause__
    formatter = logging.Formatter()
    for record in caplog.records:
        # format() fills in the args and appends any traceback, chained causes included.
        assert secret not in formatter.format(record), record.name


@pytest.mark.parametrize("status", [401, 500])
async def test_secrets_never_reach_errors_or_logs(
    remote: Remote, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_no_secret_leaks(remote, status, caplog)


@pytest.mark.parametrize("remote", ["slack"], indirect=True)
async def test_secrets_never_reach_errors_or_logs_when_slack_refuses_with_http_200(
    remote: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    # Slack's documented refusal is HTTP 200 with ok: false, a path the 401/500 rows above
    # do not take through slack_sdk.
    await assert_no_secret_leaks(remote, 200, caplog)


async def test_the_same_incident_twice_is_one_remote_object(remote: Remote) -> None:
    incident = make_incident()

    first = await remote.sink.deliver(incident, OPEN, None)
    # The replica crashed after the write landed and before its receipt was recorded; the
    # next one runs the same job again, with no receipt and a sink built afresh, so only
    # what the remote side holds (dedup key, message metadata, issue label) can help.
    restarted = remote.rebuilt()
    try:
        again = Delivery("open", OPEN.job_id, OWNER, attempt=2, previous_error_ambiguous=True)
        second = await restarted.deliver(incident, again, None)
    finally:
        await restarted.aclose()

    assert remote.fake.objects(incident.id) == 1
    assert (second.sink, second.refs) == (first.sink, first.refs)
