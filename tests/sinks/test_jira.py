"""The Jira sink with the real jira client, against a fake Jira REST API (v2 and v3)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.config import JiraSinkConfig, Owner
from receiver.errors import PermanentDeliveryError, RetryableDeliveryError
from receiver.models import NotificationKind
from receiver.sinks import Delivery, Receipt
from receiver.sinks.jira import JiraSink, incident_label, label
from receiver.sinks.jira_markup import Paragraph, Text, adf_text, carries, wiki
from tests.support.fake_jira import FakeIssue, FakeJira, adf_problems, serve_jira
from tests.support.fake_server import Fault
from tests.support.incidents import RUNBOOK_URL, make_incident
from tests.support.prometheus import self_signed_cert

pytestmark = pytest.mark.anyio

TOKEN = "jira-s3cret-token-0123456789"
USER = "sre-bot@example.com"
EXTERNAL_URL = "https://receiver.example.com"
TRUSTED_URLS = (f"{EXTERNAL_URL}/incidents/checkout-eu-1", RUNBOOK_URL)
PAYMENTS = Owner(team="payments", jira_project="PAY")
HOSTILE = (
    "[~admin] [click|http://evil.example] {noformat}x{noformat} {code}y{code} "
    "!http://evil.example/x.png! a|b h1. big *bold* _it_ -strike- {{mono}} ??cite?? "
    "\\[~root] ----"
)


def job(kind: NotificationKind, job_id: str, *changes: str, attempt: int = 1) -> Delivery:
    return Delivery(kind, job_id, PAYMENTS, changes=changes, attempt=attempt)


def marker(job_id: str) -> str:
    return f"journey-receiver job {job_id}"


def api(flavor: str) -> str:
    return "/rest/api/3/" if flavor == "cloud" else "/rest/api/2/"


@pytest.fixture(params=["server", "cloud"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def jira(flavor: str) -> Iterator[FakeJira]:
    # Cloud: account e-mail + API token (basic); Server/DC: a personal access token (bearer).
    with serve_jira(token=TOKEN, username=USER if flavor == "cloud" else None) as fake:
        yield fake


@pytest.fixture
async def make_sink(jira: FakeJira, flavor: str) -> AsyncIterator[Callable[..., JiraSink]]:
    made: list[JiraSink] = []

    def make(**config: Any) -> JiraSink:
        settings = {
            "url": jira.server.url,
            "flavor": flavor,
            "username": USER if flavor == "cloud" else None,
            "token": TOKEN,
            "timeout": 5.0,
        }
        sink = JiraSink(JiraSinkConfig(**(settings | config)), EXTERNAL_URL)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


def the_issue(jira: FakeJira) -> FakeIssue:
    issues = jira.with_label(incident_label("checkout-eu-1"))
    assert len(issues) == 1
    return issues[0]


def comments_for(issue: FakeIssue, job_id: str) -> int:
    return sum(carries(c.body, marker(job_id)) for c in issue.comments)


def assert_text_field(flavor: str, value: Any) -> None:
    if flavor == "cloud":
        assert adf_problems(value) == []
    else:
        assert isinstance(value, str)


async def test_lifecycle_keeps_one_issue_from_open_to_reopen_and_resolve(
    jira: FakeJira, flavor: str, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink()
    incident = make_incident()
    resolved = incident.model_copy(update={"status": "resolved", "title": "resolved: all ok"})

    receipt: Receipt | None = await sink.deliver(incident, job("open", "j1"), None)
    assert receipt == Receipt("jira", "open", {"key": "PAY-1"})
    receipt = await sink.deliver(incident, job("update", "j2", "new service cart"), receipt)
    p2 = incident.model_copy(update={"priority": "P2", "title": "checkout/eu P2 — calmer"})
    receipt = await sink.deliver(p2, job("update", "j3", "priority P1 → P2"), receipt)
    receipt = await sink.deliver(resolved, job("resolve", "j4"), receipt)
    assert receipt.state == "resolved"
    receipt = await sink.deliver(incident, job("reopen", "j5", "cart firing again"), receipt)
    assert receipt.state == "open"
    receipt = await sink.deliver(resolved, job("resolve", "j6"), receipt)

    assert receipt == Receipt("jira", "resolved", {"key": "PAY-1"})
    issue = the_issue(jira)
    assert (issue.project, issue.issuetype, issue.status) == ("PAY", "Incident", "Resolved")
    assert {"journey-receiver", "journey-checkout"} <= set(issue.labels)
    assert issue.transitions == ["Resolve Issue", "Reopen Issue", "Resolve Issue"]
    assert [comments_for(issue, j) for j in ("j1", "j2", "j3", "j4", "j5", "j6")] == [
        0, 1, 1, 1, 1, 1,
    ]  # fmt: skip
    assert issue.summary == "resolved: all ok"
    assert_text_field(flavor, issue.description)
    for comment in issue.comments:
        assert_text_field(flavor, comment.body)
    # The key from the receipt is used directly: one label search, for the first open only.
    assert len(jira.server.requests(api(flavor) + "search")) == 1


async def test_the_issue_says_what_the_incident_says(
    jira: FakeJira, flavor: str, make_sink: Callable[..., JiraSink]
) -> None:
    await make_sink().deliver(make_incident(), job("open", "j1"), None)

    issue = the_issue(jira)
    text = adf_text(issue.description) if flavor == "cloud" else readable(issue.description)
    for expected in (
        "Checkout (checkout) in env prod, region eu",
        "conversion",
        "1,200/min",
        "deploy 2026.04.18-3 to payment-service",
        "2 min before the first alert",
        "cart, payment-service",
        "2 firing of 2",
        "Payment gateway errors",
        "Roll back payment-service",
    ):
        assert expected in text
    assert issue.priority == "Highest"
    assert link_targets(flavor, issue.description) == set(TRUSTED_URLS)


async def test_open_again_without_receipt_finds_the_issue_by_its_label(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink()
    first = await sink.deliver(make_incident(), job("open", "j1"), None)
    # The receiver crashed before recording the receipt; the outbox runs the job again.
    again = await sink.deliver(make_incident(), job("open", "j1", attempt=2), None)

    assert again == first
    assert len(jira.issues()) == 1


async def test_retried_update_whose_comment_landed_does_not_comment_twice(
    jira: FakeJira, flavor: str, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink()
    opened = await sink.deliver(make_incident(), job("open", "j1"), None)
    jira.server.inject(Fault(f"{api(flavor)}issue/PAY-1/comment", drop=True, applied=True))

    with pytest.raises(RetryableDeliveryError):
        await sink.deliver(make_incident(), job("update", "j2", "new service cart"), opened)
    await sink.deliver(make_incident(), job("update", "j2", "new service cart", attempt=2), opened)

    assert comments_for(the_issue(jira), "j2") == 1


async def test_a_jobs_comment_is_not_mistaken_for_another_whose_id_it_begins(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink()
    receipt = await sink.deliver(make_incident(), job("open", "6"), None)
    # Job 70 commented; job 7, redriven (so attempt 2, told to look first), has not.
    receipt = await sink.deliver(make_incident(), job("update", "70", "cart firing"), receipt)
    await sink.deliver(make_incident(), job("update", "7", "priority P2 → P1", attempt=2), receipt)
    issue = the_issue(jira)
    assert (comments_for(issue, "70"), comments_for(issue, "7")) == (1, 1)


async def test_a_huge_alertname_leaves_the_description_within_jiras_limit(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    # The narrative quotes alertnames whole, and wiki escaping doubles every "-".
    huge = make_incident(summary="Payment-Gateway-" * 2_100)
    await make_sink().deliver(huge, job("open", "j1"), None)
    described = the_issue(jira).description
    size = len(described if isinstance(described, str) else json.dumps(described))
    assert size <= 32_767


async def test_resolve_run_again_after_it_landed_changes_nothing_more(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink()
    opened = await sink.deliver(make_incident(), job("open", "j1"), None)
    resolved = make_incident(status="resolved")
    first = await sink.deliver(resolved, job("resolve", "j2"), opened)
    # Landed, but the receipt was never recorded: the outbox runs the job again.
    again = await sink.deliver(resolved, job("resolve", "j2", attempt=2), opened)

    assert again == first == Receipt("jira", "resolved", {"key": "PAY-1"})
    issue = the_issue(jira)
    assert issue.transitions == ["Resolve Issue"]
    assert comments_for(issue, "j2") == 1


async def test_reopen_leaves_an_issue_closed_as_wont_fix_closed_and_says_so(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink()
    receipt = await sink.deliver(make_incident(), job("open", "j1"), None)
    jira.close("PAY-1", "Won't Fix")
    resolved = make_incident(status="resolved")
    receipt = await sink.deliver(resolved, job("resolve", "j2"), receipt)
    receipt = await sink.deliver(make_incident(), job("reopen", "j3"), receipt)

    assert receipt == Receipt("jira", "resolved", {"key": "PAY-1"})
    issue = the_issue(jira)
    assert (issue.status, issue.resolution) == ("Closed", "Won't Fix")
    assert issue.transitions == ["Close Issue"]
    reopened = [c.body for c in issue.comments if carries(c.body, marker("j3"))]
    assert len(reopened) == 1
    assert "stays closed" in str(reopened[0])


async def test_update_of_a_vanished_issue_falls_back_on_the_label(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink()
    await sink.deliver(make_incident(), job("open", "j1"), None)
    stale = Receipt("jira", "open", {"key": "PAY-77"})

    receipt = await sink.deliver(make_incident(), job("update", "j2", "x"), stale)

    assert receipt.refs == {"key": "PAY-1"}
    assert len(jira.issues()) == 1


async def test_resolve_of_an_incident_never_filed_files_nothing(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    receipt = await make_sink().deliver(
        make_incident(status="resolved"), job("resolve", "j1"), None
    )

    assert receipt == Receipt("jira", "resolved", {})
    assert jira.issues() == []


def readable(wiki: str) -> str:
    """Wiki text as a reader sees it once escapes are rendered."""
    return re.sub(r"\\(.)", r"\1", wiki).replace("\u200b", "")


def live_wiki(wiki: str) -> str:
    """What of ``wiki`` Jira would still read as markup: escaped characters removed."""
    return re.sub(r"\\.", "", wiki)


def link_targets(flavor: str, text: Any) -> set[str]:
    if flavor == "cloud":
        return {
            mark["attrs"]["href"]
            for node in nodes(text)
            for mark in node.get("marks", [])
            if mark["type"] == "link"
        }
    return set(re.findall(r"\[[^|\]]*\|([^\]]*)\]", live_wiki(text)))


def nodes(document: Any) -> Iterator[dict[str, Any]]:
    if isinstance(document, dict):
        yield document
        yield from nodes(document.get("content", []))
    elif isinstance(document, list):
        for node in document:
            yield from nodes(node)


async def test_hostile_annotations_cannot_inject_jira_markup(
    jira: FakeJira, flavor: str, make_sink: Callable[..., JiraSink]
) -> None:
    hostile = make_incident(
        title="h1. " + HOSTILE + "\n" + "x" * 300,
        summary=HOSTILE,
        services=[HOSTILE, "cart"],
        probable_causes=[{"kind": "service", "text": HOSTILE, "score": 0.5, "evidence": [HOSTILE]}],
        suggested_actions=[{"title": HOSTILE, "because": HOSTILE}],
        runbooks=[
            {"title": HOSTILE, "url": RUNBOOK_URL},
            {"title": "not a web link", "url": "javascript:alert(1)"},
        ],
    )
    sink = make_sink()
    receipt = await sink.deliver(hostile, job("open", "j1"), None)
    await sink.deliver(hostile, job("update", "j2", HOSTILE), receipt)

    issue = the_issue(jira)
    assert len(issue.summary) == 255
    assert issue.summary.endswith("…")
    assert "\n" not in issue.summary
    texts = [issue.description, *(c.body for c in issue.comments)]
    for text in texts:
        assert link_targets(flavor, text) <= set(TRUSTED_URLS)
        if flavor == "cloud":
            assert adf_problems(text) == []
            assert {n["type"] for n in nodes(text) if "text" in n or n["type"] in INLINE} == {
                "text"
            }
            assert HOSTILE in adf_text(text)
            continue
        live = live_wiki(text)
        for markup in ("[~", "{noformat}", "{code}", "!http", "*bold*", "_it_", "{{", "??"):
            assert markup not in live
        headings = re.findall(r"^[ \t]*(?:h[1-6]|bq)\..*$", text, re.MULTILINE)
        assert set(headings) <= {f"h3. {h}" for h in HEADINGS}
        assert "http://evil" not in text  # no bare URL for Jira to turn into a link
        assert " ".join(HOSTILE.split()).replace("\\", "\u29f5") in readable(text)
    if flavor == "server":
        # A "|" in a cell is escaped: every causes row still has its three cells.
        rows = [live_wiki(r) for r in issue.description.splitlines() if r.startswith("|")]
        assert [r.count("|") for r in rows if "|0.5|" in r] == [4]


# What alert text may carry that is no text: NUL (PostgreSQL, under Jira, refuses it),
# an ANSI colour (a terminal showing an export obeys it), BEL, DEL, a C1 CSI and a
# non-character (XML exports refuse it).
CONTROLS = "db\x00 \x1b[31mred\x1b[0m \x07 \x7f \x9b2J \ufffe"
SHOWN = "db\\x00 \\x1b[31mred\\x1b[0m \\x07 \\x7f \\x9b2J \\ufffe"


def no_controls(text: str) -> bool:
    return not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]", text)


async def test_alert_text_with_control_characters_is_filed_with_them_shown(
    jira: FakeJira, flavor: str, make_sink: Callable[..., JiraSink]
) -> None:
    # Jira on PostgreSQL answers a NUL with a 500, every time: the issue was never filed,
    # and the incident's every later job failed the same way into the dead letters.
    incident = make_incident(
        title=f"checkout/eu P1 — 1 alert in {CONTROLS}",
        summary=CONTROLS,
        services=[CONTROLS],
        probable_causes=[{"kind": "service", "text": CONTROLS, "score": 50, "evidence": []}],
    )
    sink = make_sink()
    receipt = await sink.deliver(incident, job("open", "j1"), None)
    await sink.deliver(incident, job("update", "j2", CONTROLS), receipt)

    issue = the_issue(jira)
    texts = [issue.description, *(c.body for c in issue.comments)]
    shown = [adf_text(t) if flavor == "cloud" else readable(t) for t in texts]
    assert len(issue.comments) == 1
    assert no_controls(issue.summary), issue.summary
    assert issue.summary.endswith(SHOWN)
    for text in shown:
        assert no_controls(text.replace("\n", "")), text
        assert SHOWN.replace("\\", "\u29f5" if flavor == "server" else "\\") in text


def test_the_fake_refuses_a_nul_as_jira_on_postgresql_does(jira: FakeJira, flavor: str) -> None:
    fields = {
        "project": {"key": "PAY"},
        "issuetype": {"name": "Incident"},
        "summary": "db\x00",
    }
    answer = httpx.post(
        f"{jira.server.url}{api(flavor)}issue",
        json={"fields": fields},
        headers={"Authorization": f"Bearer {TOKEN}"} if flavor == "server" else {},
        auth=(USER, TOKEN) if flavor == "cloud" else None,
    )
    assert (answer.status_code, answer.json()) == (
        500,
        {"errorMessages": ["Internal server error"], "errors": {}},
    )
    assert jira.issues() == []


def test_text_that_opens_a_paragraph_cannot_make_it_a_heading() -> None:
    for opening in ("h1. Big", " bq. quoted", "h6.x"):
        rendered = wiki([Paragraph((Text(opening),))])

        assert not re.match(r"[ \t]*(h[1-6]|bq)\.", rendered)
        assert readable(rendered) == opening


INLINE = {"mention", "emoji", "inlineCard", "hardBreak", "text"}
HEADINGS = ("Business KPIs", "Probable causes", "Runbooks", "Suggested actions")


async def test_rate_limit_is_retryable_with_retry_after_after_one_request(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    jira.server.inject(Fault("/rest/api/", status=429, retry_after="7"))

    with pytest.raises(RetryableDeliveryError) as caught:
        await make_sink().deliver(make_incident(), job("open", "j1"), None)

    assert (caught.value.reason, caught.value.retry_after) == ("rate_limited", 7.0)
    assert len(jira.server.requests()) == 1


async def test_unavailable_is_retryable_after_one_request(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    jira.server.inject(Fault("/rest/api/", status=503))

    with pytest.raises(RetryableDeliveryError) as caught:
        await make_sink().deliver(make_incident(), job("open", "j1"), None)

    assert caught.value.reason == "server"
    assert len(jira.server.requests()) == 1


async def test_refused_credentials_are_permanent_and_never_quoted(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    wrong = "wrong-s3cret-token-9876543210"

    with pytest.raises(PermanentDeliveryError) as caught:
        await make_sink(token=wrong).deliver(make_incident(), job("open", "j1"), None)

    assert caught.value.reason == "auth"
    assert "HTTP 401" in str(caught.value)
    for error in (caught.value, caught.value.__cause__):
        assert wrong not in str(error)
        assert TOKEN not in str(error)


async def test_rejected_field_is_permanent_with_jiras_message(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink(priorities={"P1": "Urgent"})

    with pytest.raises(PermanentDeliveryError) as caught:
        await sink.deliver(make_incident(), job("open", "j1"), None)

    assert caught.value.reason == "client"
    assert "HTTP 400" in str(caught.value)
    assert "Priority name 'Urgent' is not valid" in str(caught.value)


async def test_missing_transition_is_permanent_and_names_the_available_ones(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    sink = make_sink(done_transition="Done")
    receipt = await sink.deliver(make_incident(), job("open", "j1"), None)

    with pytest.raises(PermanentDeliveryError) as caught:
        await sink.deliver(make_incident(status="resolved"), job("resolve", "j2"), receipt)

    assert "'Done' is not available on PAY-1" in str(caught.value)
    assert "'Resolve Issue', 'Close Issue'" in str(caught.value)


async def test_dropped_connection_is_retryable(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    jira.server.inject(Fault("/rest/api/", drop=True))

    with pytest.raises(RetryableDeliveryError) as caught:
        await make_sink().deliver(make_incident(), job("open", "j1"), None)

    assert caught.value.reason == "server"


async def test_slow_answer_is_a_retryable_timeout(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    jira.server.inject(Fault("/rest/api/", delay=1.0))

    with pytest.raises(RetryableDeliveryError) as caught:
        await make_sink(timeout=0.2).deliver(make_incident(), job("open", "j1"), None)

    assert caught.value.reason == "timeout"


async def test_the_client_makes_no_request_until_the_first_delivery(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    make_sink()

    assert jira.server.requests() == []


async def test_private_ca_is_trusted_only_when_configured(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    with serve_jira(token=TOKEN, tls=(cert, key)) as fake:
        trusting = JiraSink(JiraSinkConfig(url=fake.server.url, token=TOKEN, ca_file=cert), None)
        default = JiraSink(JiraSinkConfig(url=fake.server.url, token=TOKEN), None)
        try:
            receipt = await trusting.deliver(make_incident(), job("open", "j1"), None)
            with pytest.raises(PermanentDeliveryError, match="ca_file"):
                await default.deliver(make_incident(), job("open", "j1"), None)
        finally:
            await trusting.aclose()
            await default.aclose()

    assert receipt.refs == {"key": "PAY-1"}


def test_labels_stay_valid_and_distinct_for_any_id() -> None:
    long_ids = ["a b" * 200, "a_b" * 200]
    labels = [label("journey-receiver", i) for i in ["checkout-eu-1", *long_ids]]

    assert labels[0] == "journey-receiver-checkout-eu-1"
    assert all(len(x) <= 255 and not any(c.isspace() for c in x) for x in labels)
    assert len(set(labels)) == 3


async def test_an_issue_deleted_in_jira_is_neither_filed_again_nor_failed_on(
    jira: FakeJira, make_sink: Callable[..., JiraSink]
) -> None:
    """A person deleted the issue (no webhook told the receiver): the next update and the
    resolve find it gone and stop there, with no dead letter and no second issue; a
    reopen, a new episode, files a new one."""
    sink = make_sink()
    receipt = await sink.deliver(make_incident(), job("open", "j1"), None)
    jira.delete(receipt.refs["key"], "Carol Lead", "unused")

    receipt = await sink.deliver(make_incident(), job("update", "j2", "new service"), receipt)
    assert receipt == Receipt("jira", "deleted", {"deleted_by": "unknown"})
    assert jira.issues() == []
    stored = Receipt("jira", "deleted", {"key": "PAY-1", "deleted_by": "unknown"})
    requests = len(jira.server.requests())
    resolved = make_incident(status="resolved")
    assert (await sink.deliver(resolved, job("resolve", "j3"), stored)).state == "deleted"
    assert len(jira.server.requests()) == requests, "nothing asked of Jira once it is known gone"

    receipt = await sink.deliver(make_incident(), job("reopen", "j4", "firing again"), stored)
    assert receipt == Receipt("jira", "open", {"key": "PAY-2", "deleted_by": ""})
    assert [i.key for i in jira.issues()] == ["PAY-2"]


async def test_an_issue_deleted_while_a_delivery_writes_to_it_ends_the_delivery(
    jira: FakeJira, flavor: str, make_sink: Callable[..., JiraSink]
) -> None:
    """Deleted between the sink's read and its comment: Jira answers 404 to the comment,
    which is no error to retry or bury, but the issue gone."""
    sink = make_sink()
    receipt = await sink.deliver(make_incident(), job("open", "j1"), None)
    gone = {"errorMessages": ["Issue Does Not Exist"], "errors": {}}
    jira.server.inject(Fault(api(flavor) + "issue/PAY-1/comment", status=404, body=gone))

    receipt = await sink.deliver(make_incident(), job("update", "j2", "new service"), receipt)

    assert receipt == Receipt("jira", "deleted", {"key": "PAY-1", "deleted_by": "unknown"})
