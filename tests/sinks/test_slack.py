"""The Slack sink against a fake Slack Web API, through the real slack_sdk client."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from receiver.config import Owner, SlackSinkConfig
from receiver.errors import PermanentDeliveryError, RetryableDeliveryError
from receiver.incident import Incident
from receiver.models import NotificationKind
from receiver.sinks import Delivery, Receipt
from receiver.sinks.slack import SlackSink
from receiver.sinks.slack_blocks import clip, escape
from tests.support.fake_server import FakeServer, Fault, serve
from tests.support.fake_slack import TOKEN, FakeSlack, Message
from tests.support.incidents import CREATED_MS, RUNBOOK_URL, make_incident

pytestmark = pytest.mark.anyio

CHECKOUT = Owner(team="payments", slack_channel="#inc-checkout")
POST = "/api/chat.postMessage"
HOSTILE = (
    "<!channel> <!here> <!everyone> <@U123> <#C123> <!subteam^S1> <http://evil.example|click> & < >"
)


@dataclass
class Workspace:
    fake: FakeSlack
    server: FakeServer

    def sink(self, token: str = TOKEN, **config: Any) -> SlackSink:
        settings = SlackSinkConfig(
            token=SecretStr(token), base_url=f"{self.server.url}/api/", **({"timeout": 2} | config)
        )
        return SlackSink(settings, "https://receiver.example")


@pytest.fixture
def slack() -> Iterator[Workspace]:
    # Just after the incident opened: the sink looks for a lost post from created_at on.
    fake = FakeSlack(clock=lambda: CREATED_MS / 1000 + 40)
    with serve(fake.app, FakeServer()) as server:
        yield Workspace(fake, server)


@contextlib.contextmanager
def hanging_up_server() -> Iterator[tuple[str, list[int]]]:
    """A server that reads each request and closes the connection without an answer (the
    error slack_sdk's default retry handler re-sends on); yields its URL and a counter."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted = [0]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                accepted[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/", accepted
    finally:
        stop.set()
        thread.join()
        listener.close()


def delivery(
    kind: NotificationKind = "open",
    *,
    owner: Owner = CHECKOUT,
    changes: tuple[str, ...] = (),
    attempt: int = 1,
    job_id: str | None = None,
    ambiguous: bool = False,
) -> Delivery:
    return Delivery(kind, job_id or f"job-{kind}-{changes}", owner, changes, attempt, ambiguous)


def mrkdwn_texts(message: Message) -> list[str]:
    """Every mrkdwn text of a stored message: its blocks' and its top-level text."""
    found = [message.text]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.blocks)
    return found


def header(message: Message) -> str:
    return str(message.blocks[0]["text"]["text"])


async def test_lifecycle_edits_one_message_and_threads_each_change(slack: Workspace) -> None:
    sink = slack.sink()
    steps: list[tuple[NotificationKind, Incident, tuple[str, ...]]] = [
        ("open", make_incident(), ()),
        ("update", make_incident(services=["payment-service", "cart", "search"]), ("+search",)),
        ("update", make_incident(priority="P2"), ("priority P1 → P2",)),
        ("resolve", make_incident(status="resolved", resolved_at="2026-04-18T10:30:00.000Z"), ()),
        ("reopen", make_incident(reopened_count=1), ()),
        (
            "resolve",
            make_incident(
                status="resolved", resolved_at="2026-04-18T11:00:00.000Z", reopened_count=1
            ),
            (),
        ),
    ]
    receipt: Receipt | None = None
    for kind, incident, changes in steps:
        receipt = await sink.deliver(incident, delivery(kind, changes=changes), receipt)

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt == Receipt("slack", "resolved", {"channel": "C0CHECKOUT", "ts": message.ts})
    assert slack.fake.messages("#incidents") == []
    assert len(slack.fake.edits(message.ts)) == 5
    assert [r.text for r in slack.fake.replies(message.ts)] == [
        "*Updated* (P1): +search",
        "*Updated* (P2): priority P1 → P2",
        "*Resolved* (P1)",
        "*Reopened* (P1)",
        "*Resolved* (P1)",
    ]
    assert header(message) == (
        "RESOLVED — checkout/eu P1 — 2 alerts in payment-service, cart; "
        "conversion −61% vs last week"
    )
    assert message.text.startswith("RESOLVED — checkout/eu P1")
    assert "*Resolved* at 2026-04-18T11:00:00.000Z" in mrkdwn_texts(message)[1]
    assert slack.fake.messages("#inc-checkout")[0].metadata == {
        "event_type": "journey_receiver_incident",
        "event_payload": {"incident_id": "checkout-eu-1"},
    }


async def test_message_shows_kpis_causes_facts_and_links(slack: Workspace) -> None:
    incident = make_incident(
        id="inc-7f3a",
        title="checkout/eu P1 — 12 alerts in payment-service",
        alert_count=12,
        firing_count=12,
    )
    await slack.sink().deliver(incident, delivery(), None)

    [message] = slack.fake.messages("#inc-checkout")
    texts = "\n".join(mrkdwn_texts(message))
    assert header(message) == "checkout/eu P1 — 12 alerts in payment-service"
    assert (
        "• conversion −61% vs last week (now 0.012, then 0.031 ratio); 1,200/min of revenue at risk"
    ) in texts
    assert "• deploy 2026.04.18-3 to payment-service (2 min before the first alert)" in texts
    assert "Alerts: 12 firing of 12" in texts
    assert "Incident: inc-7f3a" in texts
    [actions] = [b for b in message.blocks if b["type"] == "actions"]
    assert [(e["text"]["text"], e["url"]) for e in actions["elements"]] == [
        ("Payment gateway errors", RUNBOOK_URL),
        ("Incident details", "https://receiver.example/incidents/inc-7f3a"),
    ]
    # A cause below the confidence is a guess, and the list (no score column) says so.
    guess = {"kind": "change", "text": "config on cart", "score": 12.5, "evidence": ["9 min"]}
    await slack.sink().deliver(make_incident(id="inc-2", probable_causes=[guess]), delivery(), None)
    texts = "\n".join(mrkdwn_texts(slack.fake.messages("#inc-checkout")[-1]))
    assert "• config on cart (a guess: score 12.5, below 20; 9 min)" in texts


async def test_a_silence_alertmanager_ended_early_is_not_shown_in_force(
    slack: Workspace,
) -> None:
    """A request's silences (one per alert) that a person expired in Alertmanager before
    their end, as a reconcile found, read as ended early; another request's hold."""

    def silence(n: int, by: str, at: str, ends: str, expired: str | None) -> dict[str, Any]:
        return {"id": f"s-{n}", "by": by, "at": at, "ends_at": ends, "expired_at": expired}

    expired = "2026-04-18T08:40:00.000Z"
    alice = ("alice", "2026-04-18T08:20:00.000Z", "2026-04-18T10:20:00.000Z")
    bob = ("bob", "2026-04-18T08:50:00.000Z", "2026-04-18T09:20:00.000Z")
    incident = make_incident(
        silences=[silence(1, *alice, expired), silence(2, *alice, expired), silence(3, *bob, None)]
    )
    await slack.sink().deliver(incident, delivery(), None)

    [message] = slack.fake.messages("#inc-checkout")
    texts = mrkdwn_texts(message)
    assert "Silenced 2h by alice (ended early in Alertmanager)" in texts
    assert "Silenced 30m by bob" in texts


async def test_owner_without_channel_uses_the_default(slack: Workspace) -> None:
    receipt = await slack.sink().deliver(make_incident(), delivery(owner=Owner(team="sre")), None)

    assert receipt.refs["channel"] == "C0INCIDENTS"
    assert len(slack.fake.messages("#incidents")) == 1


async def test_no_proxy_is_honoured(slack: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    await slack.sink().deliver(make_incident(), delivery(), None)

    assert len(slack.fake.messages("#inc-checkout")) == 1


async def test_without_thread_updates_edits_only(slack: Workspace) -> None:
    sink = slack.sink(thread_updates=False)
    receipt = await sink.deliver(make_incident(), delivery(), None)
    await sink.deliver(make_incident(priority="P2"), delivery("update", changes=("P2",)), receipt)

    assert slack.fake.replies(receipt.refs["ts"]) == []
    assert header(slack.fake.messages("#inc-checkout")[0]).startswith("checkout/eu P2 — ")


async def test_deleted_message_is_posted_again(slack: Workspace) -> None:
    gone = Receipt("slack", "open", {"channel": "C0CHECKOUT", "ts": "1.000001"})

    receipt = await slack.sink().deliver(make_incident(), delivery("update"), gone)

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt.refs == {"channel": "C0CHECKOUT", "ts": message.ts}


async def test_a_message_in_an_archived_channel_is_posted_again_in_the_owners_channel(
    slack: Workspace,
) -> None:
    sink = slack.sink()
    receipt = await sink.deliver(make_incident(), delivery(), None)
    assert receipt.refs["channel"] == "C0CHECKOUT"
    # The team archived its channel and moved to #incidents (journeys.yaml reloaded).
    archived = dataclasses.replace(slack.fake.channels["C0CHECKOUT"], is_archived=True)
    slack.fake.channels["C0CHECKOUT"] = archived
    moved = Owner(team="payments", slack_channel="#incidents")

    update = await sink.deliver(make_incident(), delivery("update", owner=moved), receipt)

    [message] = slack.fake.messages("#incidents")
    assert update.refs == {"channel": "C0INCIDENTS", "ts": message.ts}

    # Moved to a channel the bot cannot post in: the error names that one, not the old.
    nowhere = Owner(team="payments", slack_channel="#nowhere")
    with pytest.raises(PermanentDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery("update", owner=nowhere), receipt)
    assert "cannot post in #nowhere" in str(caught.value)
    assert "C0CHECKOUT" not in str(caught.value)


async def test_huge_incident_fits_slack_limits_and_says_it_was_cut(slack: Workspace) -> None:
    long = "x" * 10_000
    incident = make_incident(
        title="t" * 400,
        summary=long,
        services=[f"svc-{i}-{long}" for i in range(80)],
        kpis=[
            {"name": f"kpi-{i}-{long}", "value": 1.0, "baseline": 2.0, "deviation_pct": -50.0}
            for i in range(80)
        ],
        probable_causes=[
            {"kind": "service", "text": f"cause {i} {long}", "score": 0.5, "evidence": [long]}
            for i in range(80)
        ],
        runbooks=[
            {"title": f"runbook {i} {long}", "url": f"https://rb.example/{i}"} for i in range(80)
        ],
        suggested_actions=[{"title": f"do {i} {long}", "because": long} for i in range(80)],
    )

    await slack.sink().deliver(incident, delivery(), None)

    [message] = slack.fake.messages("#inc-checkout")
    assert len(message.blocks) <= 50
    assert len(header(message)) <= 150
    assert header(message).startswith("P1 ttt")
    assert header(message).endswith("… (truncated)")
    texts = mrkdwn_texts(message)
    assert all(len(t) <= 3000 for t in texts)
    assert sum("(truncated)" in t for t in texts) >= 5
    assert "… and 7" in "".join(texts)  # "… and 7x more (truncated)" under a list
    assert "more runbook(s) not shown" in "".join(texts)


async def test_hostile_annotations_cannot_mention_or_link(slack: Workspace) -> None:
    incident = make_incident(
        title=f"title {HOSTILE}",
        summary=f"summary {HOSTILE}\n*Resolved* fake line",
        services=[f"svc {HOSTILE}"],
        journey_name=f"journey {HOSTILE}",
        probable_causes=[
            {"kind": "service", "text": f"cause {HOSTILE}", "score": 1.0, "evidence": [HOSTILE]}
        ],
        kpis=[{"name": f"kpi {HOSTILE}", "value": 1.0, "baseline": 2.0, "deviation_pct": -50.0}],
        suggested_actions=[{"title": f"action {HOSTILE}", "because": HOSTILE}],
        runbooks=[{"title": f"runbook {HOSTILE}", "url": "https://rb.example/1"}],
    )
    sink = slack.sink()

    receipt = await sink.deliver(incident, delivery(), None)
    await sink.deliver(incident, delivery("update", changes=(f"new {HOSTILE}",)), receipt)

    [message] = slack.fake.messages("#inc-checkout")
    [reply] = slack.fake.replies(message.ts)
    texts = [*mrkdwn_texts(message), reply.text]
    for text in texts:
        assert "<" not in text
        assert ">" not in text
        assert not re.search(r"&(?!amp;|lt;|gt;)", text)
    escaped = "&lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt; &lt;@U123&gt; &lt;#C123&gt;"
    assert sum(escaped in t for t in texts) >= 8  # every field that carries the text
    assert "&lt;http://evil.example|click&gt; &amp; &lt; &gt;" in reply.text
    assert "\n*Resolved*" not in "".join(texts)  # a value cannot start a line of its own
    mrkdwn_objects = [
        e for b in message.blocks for e in [b.get("text"), *b.get("elements", [])] if e
    ]
    assert all(o.get("verbatim") for o in mrkdwn_objects if o["type"] == "mrkdwn")
    assert all(b["text"]["type"] == "plain_text" for b in message.blocks if b["type"] == "header")


# What alert text may carry that is no text: NUL, an ANSI colour, BEL, DEL, a C1 CSI, a
# line separator, a non-character.
CONTROLS = "db\x00 \x1b[31mred\x1b[0m \x07 \x7f \x9b2J \u2028 \ufffe"
SHOWN = "db\\x00 \\x1b[31mred\\x1b[0m \\x07 \\x7f \\x9b2J \\ufffe"


def sent_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from sent_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from sent_strings(item)


async def test_control_characters_in_alert_text_are_shown_never_sent(slack: Workspace) -> None:
    # They reached Slack as they were, in the message's text, its blocks and the replies,
    # where a desktop client or a terminal reading an export obeys them.
    incident = make_incident(
        title=f"title {CONTROLS}",
        summary=f"summary {CONTROLS}",
        services=[f"svc {CONTROLS}"],
        probable_causes=[{"kind": "service", "text": CONTROLS, "score": 1.0, "evidence": []}],
        suggested_actions=[{"id": "rollback", "title": f"Roll back {CONTROLS}", "runnable": True}],
        shown_values={"rollback": "Roll back"},
        automation="assist",
        runbooks=[{"title": f"runbook {CONTROLS}", "url": RUNBOOK_URL}],
    )
    sink = slack.sink(buttons=True)

    receipt = await sink.deliver(incident, delivery(), None)
    await sink.deliver(incident, delivery("update", changes=(f"new {CONTROLS}",)), receipt)

    sent = [json.loads(s.body) for s in slack.server.requests("/api/chat.")]
    assert len(sent) == 3  # the post, its edit and the thread reply
    texts = [t for body in sent for t in sent_strings(body)]
    assert [t for t in texts if re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\ufffe]", t)] == []
    assert sum(SHOWN in t for t in texts) >= 12  # every field that carries the text


def test_clipping_never_cuts_an_entity() -> None:
    for width in range(20, 40):
        clipped = clip(escape("<" * 100), width)
        assert clipped.endswith("… (truncated)")
        assert re.fullmatch(r"(&lt;)*… \(truncated\)", clipped)
        assert len(clipped) <= width


async def test_rate_limit_is_retryable_after_exactly_one_request(slack: Workspace) -> None:
    slack.server.inject(
        Fault(POST, status=429, retry_after="7", body={"ok": False, "error": "ratelimited"})
    )

    with pytest.raises(RetryableDeliveryError) as caught:
        await slack.sink().deliver(make_incident(), delivery(), None)

    assert caught.value.reason == "rate_limited"
    assert caught.value.retry_after == 7.0
    assert not caught.value.ambiguous  # an answer: nothing was posted
    assert len(slack.server.requests(POST)) == 1


@pytest.mark.parametrize(
    ("status", "body", "reason", "ambiguous"),
    [
        # Slack: "it's possible some aspect of the operation succeeded".
        (500, {"ok": False, "error": "internal_error"}, "server", True),
        (200, {"ok": False, "error": "fatal_error"}, "server", True),
        (200, {"ok": False, "error": "internal_error"}, "server", True),
        # A gateway's 5xx says nothing of what Slack did behind it.
        (502, {"error": "bad gateway"}, "server", True),
        (503, {"error": "upstream"}, "server", True),
        (504, {"error": "gateway timeout"}, "server", True),
        # Refusals: nothing was posted.
        (200, {"ok": False, "error": "service_unavailable"}, "server", False),
        (200, {"ok": False, "error": "request_timeout"}, "timeout", False),
        (200, {"ok": False, "error": "ratelimited"}, "rate_limited", False),
        (429, {"ok": False, "error": "ratelimited"}, "rate_limited", False),
    ],
)
async def test_server_trouble_is_retryable(
    slack: Workspace, status: int, body: dict[str, Any], reason: str, ambiguous: bool
) -> None:
    slack.server.inject(Fault(POST, status=status, body=body))

    with pytest.raises(RetryableDeliveryError) as caught:
        await slack.sink().deliver(make_incident(), delivery(), None)

    assert caught.value.reason == reason
    assert caught.value.ambiguous is ambiguous
    assert len(slack.server.requests(POST)) == 1


async def test_an_edit_that_failed_on_slacks_side_is_ambiguous(slack: Workspace) -> None:
    sink = slack.sink()
    receipt = await sink.deliver(make_incident(), delivery(), None)
    slack.server.inject(Fault("/api/chat.update", status=502, body={"error": "bad gateway"}))

    with pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery("update", changes=("+cart",)), receipt)

    assert caught.value.ambiguous


async def test_dropped_connection_is_retryable_and_not_resent(slack: Workspace) -> None:
    slack.server.inject(Fault(POST, drop=True))

    with pytest.raises(RetryableDeliveryError) as caught:
        await slack.sink().deliver(make_incident(), delivery(), None)

    assert caught.value.reason == "server"
    assert len(slack.server.requests(POST)) == 1
    assert slack.fake.messages("#inc-checkout") == []


async def test_connection_closed_before_an_answer_is_not_resent() -> None:
    with hanging_up_server() as (url, accepted):
        config = SlackSinkConfig(token=SecretStr(TOKEN), base_url=url, timeout=2)
        with pytest.raises(RetryableDeliveryError):
            await SlackSink(config, None).deliver(make_incident(), delivery(), None)

    assert accepted == [1]


async def test_timeout_is_retryable(slack: Workspace) -> None:
    slack.server.inject(Fault(POST, delay=1.5))

    with pytest.raises(RetryableDeliveryError) as caught:
        await slack.sink(timeout=1).deliver(make_incident(), delivery(), None)

    assert caught.value.reason == "timeout"
    assert caught.value.ambiguous  # no answer: the post may have landed


async def test_bad_token_is_permanent_and_not_shown(slack: Workspace) -> None:
    token = "xoxb-1234-do-not-leak"

    with pytest.raises(PermanentDeliveryError) as caught:
        await slack.sink(token=token).deliver(make_incident(), delivery(), None)

    assert caught.value.reason == "auth"
    assert "invalid_auth" in str(caught.value)
    assert "sinks.slack.token" in str(caught.value)
    assert token not in str(caught.value)
    assert token not in repr(caught.value)


async def test_missing_scope_names_the_scope(slack: Workspace) -> None:
    slack.server.inject(
        Fault(
            POST, status=200, body={"ok": False, "error": "missing_scope", "needed": "chat:write"}
        )
    )

    with pytest.raises(PermanentDeliveryError) as caught:
        await slack.sink().deliver(make_incident(), delivery(), None)

    assert caught.value.reason == "auth"
    assert "lacks chat:write" in str(caught.value)


@pytest.mark.parametrize(
    ("channel", "error"), [("#nowhere", "channel_not_found"), ("#not-invited", "not_in_channel")]
)
async def test_unusable_channel_is_permanent_and_says_how_to_fix(
    slack: Workspace, channel: str, error: str
) -> None:
    owner = Owner(team="payments", slack_channel=channel)

    with pytest.raises(PermanentDeliveryError) as caught:
        await slack.sink().deliver(make_incident(), delivery(owner=owner), None)

    assert caught.value.reason == "client"
    assert error in str(caught.value)
    assert f"cannot post in {channel}" in str(caught.value)
    assert "owner.slack_channel" in str(caught.value)


async def test_post_that_landed_unheard_is_found_not_repeated(slack: Workspace) -> None:
    sink = slack.sink()
    slack.server.inject(Fault(POST, drop=True, applied=True))
    with pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery(attempt=1), None)
    # No answer: the outbox tells the next attempt that this one may have landed.
    assert caught.value.ambiguous

    again = delivery(attempt=2, ambiguous=True)
    receipt = await sink.deliver(make_incident(priority="P2"), again, None)

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt.refs == {"channel": "C0CHECKOUT", "ts": message.ts}
    assert header(message).startswith("checkout/eu P2 — ")
    assert len(slack.server.requests(POST)) == 1


@pytest.mark.parametrize(
    "applied",
    [
        Fault(POST, status=503, body={"error": "upstream"}, applied=True),
        Fault(POST, status=502, body={"error": "bad gateway"}, applied=True),
        Fault(POST, status=200, body={"ok": False, "error": "internal_error"}, applied=True),
        Fault(POST, status=200, body={"ok": False, "error": "fatal_error"}, applied=True),
    ],
    ids=["503", "502", "internal_error", "fatal_error"],
)
async def test_post_that_landed_before_slack_failed_is_found_not_repeated(
    slack: Workspace, applied: Fault
) -> None:
    sink = slack.sink()
    slack.server.inject(applied)
    with pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery(attempt=1), None)
    assert len(slack.fake.messages("#inc-checkout")) == 1  # landed all the same

    again = delivery(attempt=2, ambiguous=caught.value.ambiguous)
    receipt = await sink.deliver(make_incident(priority="P2"), again, None)

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt.refs == {"channel": "C0CHECKOUT", "ts": message.ts}
    assert header(message).startswith("checkout/eu P2 — ")
    assert len(slack.server.requests(POST)) == 1


async def test_a_message_found_but_not_yet_recorded_is_looked_for_again(
    slack: Workspace,
) -> None:
    sink = slack.sink()
    slack.server.inject(Fault(POST, drop=True, applied=True))
    with pytest.raises(RetryableDeliveryError):
        await sink.deliver(make_incident(), delivery(attempt=1), None)
    slack.server.inject(
        Fault("/api/chat.update", status=429, body={"ok": False, "error": "ratelimited"})
    )
    with pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(make_incident(), delivery(attempt=2, ambiguous=True), None)
    # Found, then refused: no receipt names the message, so the next attempt must look.
    assert caught.value.ambiguous

    again = delivery(attempt=3, ambiguous=caught.value.ambiguous)
    receipt = await sink.deliver(make_incident(), again, None)

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt.refs == {"channel": "C0CHECKOUT", "ts": message.ts}
    assert len(slack.server.requests(POST)) == 1


@pytest.mark.parametrize(
    "previous", [None, Receipt("slack", "pending", {})], ids=["no receipt", "pending"]
)
async def test_update_slack_never_heard_of_is_posted_without_looking(
    slack: Workspace, previous: Receipt | None
) -> None:
    # The incident's priority rose into Slack's routing: its first notification there.
    update = delivery("update", changes=("priority P3 → P1",))

    receipt = await slack.sink().deliver(make_incident(), update, previous)

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt.refs == {"channel": "C0CHECKOUT", "ts": message.ts}
    assert slack.server.requests("/api/conversations.") == []
    assert slack.fake.replies(message.ts) == []


@pytest.mark.parametrize(
    ("previous", "attempt", "ambiguous"),
    [
        # An earlier job was buried: its post may have landed.
        (Receipt("slack", "failed", {}), 1, False),
        # This job's previous attempt went unanswered.
        (None, 2, True),
    ],
)
async def test_update_without_receipt_finds_the_message(
    slack: Workspace, previous: Receipt | None, attempt: int, ambiguous: bool
) -> None:
    sink = slack.sink()
    await sink.deliver(make_incident(), delivery(), None)
    update = delivery("update", changes=("+cart",), attempt=attempt, ambiguous=ambiguous)

    receipt = await sink.deliver(make_incident(), update, previous)

    [message] = slack.fake.messages("#inc-checkout")
    assert receipt.refs["ts"] == message.ts
    assert [r.text for r in slack.fake.replies(message.ts)] == ["*Updated* (P1): +cart"]


async def test_reply_that_landed_unheard_is_not_repeated(slack: Workspace) -> None:
    sink = slack.sink()
    receipt = await sink.deliver(make_incident(), delivery(), None)
    update = delivery("update", changes=("+cart",), job_id="job-9")
    slack.server.inject(Fault(POST, drop=True, applied=True))
    with pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(make_incident(), update, receipt)
    assert caught.value.ambiguous

    retried = delivery("update", changes=("+cart",), attempt=2, job_id="job-9", ambiguous=True)
    await sink.deliver(make_incident(), retried, receipt)

    assert len(slack.fake.replies(receipt.refs["ts"])) == 1


async def test_a_repost_that_landed_unheard_is_found_not_posted_again(slack: Workspace) -> None:
    sink = slack.sink()
    receipt = await sink.deliver(make_incident(), delivery(), None)
    with slack.fake._lock:
        slack.fake._messages.clear()  # someone deletes the incident's message
    # The update finds it gone and posts it again; that post lands, its answer is lost.
    slack.server.inject(Fault(POST, drop=True, applied=True))
    update = delivery("update", changes=("+cart",), job_id="job-u1")
    with pytest.raises(RetryableDeliveryError) as caught:
        await sink.deliver(make_incident(), update, receipt)
    assert caught.value.ambiguous
    assert len(slack.fake.messages("#inc-checkout")) == 1
    # The retry carries the old receipt still: it looks before posting once more.
    retried = delivery("update", changes=("+cart",), job_id="job-u1", attempt=2, ambiguous=True)
    again = await sink.deliver(make_incident(), retried, receipt)
    (message,) = slack.fake.messages("#inc-checkout")
    assert again.refs["ts"] == message.ts


def test_the_slack_header_shows_a_bidi_override_as_an_escape() -> None:
    # "bidirectional controls in alert text are shown as escapes on pages and in every
    # sink": the header block (plain_text, the title as Slack shows it biggest) is not.
    from receiver.sinks.slack_blocks import render
    from tests.support.incidents import make_incident

    title = "checkout/eu\u202e P1 — 1 alert in payment-service"
    message = render(make_incident(title=title), None)
    header = message.blocks[0]
    assert header["type"] == "header"
    assert "\u202e" not in header["text"]["text"], header["text"]["text"]
