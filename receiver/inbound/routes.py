"""The ``/inbound/*`` endpoints. No bearer token: the vendor's signature is the credential.

Each runs in this order: the vendor configured (else 404: a webhook nobody can verify
changes nothing), the body within ``server.max_body_bytes`` (413), the signature (401),
the JSON (400/422), the incident (404); then one atomic ``annotate`` in the store, once per
vendor delivery id (vendors deliver at least once). Every refusal is a JSON error and
changes nothing; but Slack shows a person any answer other than a 200 as a bare error, and
retries none, so a Slack click refused past its JSON (an incident not kept, a button not
on its message, a press that cannot land) is answered 200 and the reason is said to the
person alone (for a form sent: in the form).

Slack wants its answer within 3 seconds, so its handler does store calls only, and
``views.open`` (which must land while the click's ``trigger_id`` lives); the Silence 2h
button's silences and messages to the person are made after the answer is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import unquote

from starlette.background import BackgroundTask, BackgroundTasks
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.act.levels import Person
from receiver.alertmanager.client import AlertmanagerError
from receiver.alertmanager.silences import AlreadySilenced, SilenceUnderWay, silence_incident
from receiver.errors import PayloadError, StoreUnavailable
from receiver.inbound import jira, pagerduty, slack
from receiver.inbound.signatures import SlackVerdict, verify_jira, verify_pagerduty, verify_slack
from receiver.sinks.jira import ISSUE_CACHE
from receiver.sinks.slack import edit_job
from receiver.sinks.slack_blocks import (
    ACK,
    ACTIONS,
    FIXED,
    RUN_PREFIX,
    SILENCE,
    SILENCE_S,
    button_value,
)
from receiver.store.base import AnnotateOutcome, Annotation
from receiver.store.records import IncidentState, StoredIncident, TimelineEntry

if TYPE_CHECKING:
    from receiver.app import Receiver

logger = logging.getLogger("journey_receiver.inbound")


def refused(status: int, message: str, request: Request) -> JSONResponse:
    # Where from and why, never what was sent: a body that fails its signature is untrusted.
    logger.warning(
        "%d on %s from %s: %s",
        status,
        request.url.path,
        request.client.host if request.client else "unknown client",
        message,
    )
    return JSONResponse({"error": message}, status_code=status)


def not_configured(vendor: str, field: str) -> JSONResponse:
    return JSONResponse(
        {"error": f"{vendor} webhooks are not configured here (inbound.{field})"},
        status_code=404,
    )


# How often a vendor's move is decided again when another one landed between the read and
# the write; beyond that the vendor is asked to retry (it does, on any 5xx).
_DECISIONS = 5


async def record(
    receiver: Receiver,
    state: IncidentState,
    annotation: Annotation | None,
    decide: Callable[[IncidentState], Annotation | None],
) -> JSONResponse:
    """Land ``annotation``, decided on ``state``, as ``_land`` does; the vendor's answer."""
    incident_id = state.id

    def edited(state: IncidentState, annotation: Annotation | None) -> Annotation | None:
        if (
            annotation is None
            or not ("response" in annotation.fill or "response" in annotation.merge)
            or not annotation.timeline
        ):
            return annotation
        # Someone acknowledged, resolved or took a resolve back elsewhere: the Slack
        # message says so (and drops its Acknowledge button) through the outbox, like
        # any edit.
        said = annotation.timeline[0].text
        jobs = edit_job(state, receiver.pipeline.sinks, said, receiver.pipeline.now_ms())
        return replace(annotation, jobs=[*annotation.jobs, *jobs])

    landed = await _land(
        receiver, state, edited(state, annotation), lambda fresh: edited(fresh, decide(fresh))
    )
    if landed is None:
        return JSONResponse({"status": "ignored", "incident": incident_id})
    outcome = landed[0]
    if outcome == "unknown":
        return JSONResponse({"error": "no such incident"}, status_code=404)
    if outcome == "stale":
        return JSONResponse(
            {"error": "the incident kept changing while this was recorded: retry"}, status_code=503
        )
    status = "recorded" if outcome == "ok" else "already recorded"
    return JSONResponse({"status": status, "incident": incident_id})


async def _land(
    receiver: Receiver,
    state: IncidentState,
    annotation: Annotation | None,
    decide: Callable[[IncidentState], Annotation | None],
) -> tuple[AnnotateOutcome, IncidentState] | None:
    """Land ``annotation``, decided on ``state``; when the store answers that what it was
    decided against has changed since (``Annotation.expect``), read again and ``decide``
    again. The store's answer and the state last decided on; None when a decision adds
    nothing."""
    outcome: AnnotateOutcome = "stale"
    for _ in range(_DECISIONS):
        if annotation is None:
            return None
        outcome = await receiver.store.annotate(state.id, annotation, receiver.pipeline.now_ms())
        if outcome != "stale":
            return outcome, state
        fresh = await load_state(receiver, state.id)
        if fresh is None:
            return "unknown", state
        state, annotation = fresh, decide(fresh)
    return outcome, state


def _jira_own(receiver: Receiver) -> frozenset[tuple[str, str]]:
    """Who the Jira sink's own account is, as far as it knows (``JiraSink.own_names``: no
    call to Jira on this request path); none without the sink, whose receipts are the only
    way an issue is an incident's."""
    # Looked up by name: importing the Jira sink here would load its client library into
    # every receiver, Jira or not.
    own_names = getattr(receiver.outbox.sinks.get("jira"), "own_names", None)
    if own_names is None:
        return frozenset()
    names: frozenset[tuple[str, str]] = own_names()
    return names


async def load_state(receiver: Receiver, incident_id: str) -> IncidentState | None:
    stored = await receiver.store.load(incident_id) if incident_id else None
    return stored.state if stored else None


async def pagerduty_webhook(request: Request, receiver: Receiver, body: bytes) -> Response:
    secrets = receiver.settings.config.inbound.pagerduty.all_secrets()
    if not secrets:
        return not_configured("PagerDuty", "pagerduty.signing_secrets")
    if not verify_pagerduty(body, request.headers.get("x-pagerduty-signature"), secrets):
        return refused(401, "X-PagerDuty-Signature does not match a signing secret", request)
    event = pagerduty.parse(body)
    # Events this receiver does not record, and those of incidents that are not its own (a
    # shared service, another integration), are fine, not ours to refuse: a 4xx would
    # count against the subscription, which PagerDuty retries and may turn off.
    ignored = JSONResponse({"status": "ignored"})
    cache = receiver.store.cache
    incident_id = event.data.incident_key or ""
    pd_incident = event.pagerduty_incident
    if not incident_id and pd_incident:
        if event.event_type not in pagerduty.RECORDED:
            return ignored
        incident_id = await cache.get(pagerduty.CACHE_NAMESPACE, pd_incident) or ""
    state = await load_state(receiver, incident_id)
    if state is None:
        return ignored
    retention_ms = round(receiver.settings.config.store.retention * 1000)
    opened = event.opened_ms
    if pd_incident and event.data.incident_key:
        # Even from an event not recorded: a later note names no key, nor when PagerDuty
        # opened its incident.
        await cache.set(pagerduty.CACHE_NAMESPACE, pd_incident, state.id, retention_ms)
        if opened is not None:
            await cache.set(pagerduty.OPENED_NAMESPACE, pd_incident, str(opened), retention_ms)
    elif pd_incident and opened is None:
        kept = await cache.get(pagerduty.OPENED_NAMESPACE, pd_incident)
        opened = int(kept) if kept and kept.isdigit() else None
    if event.event_type not in pagerduty.RECORDED:
        return ignored
    now = receiver.pipeline.now_ms()
    margin = min(pagerduty.EPISODE_MARGIN_MS, receiver.settings.timers.resolve_after_ms)

    def decide(state: IncidentState) -> Annotation | None:
        return pagerduty.annotation(event, state, now, margin, opened)

    return await record(receiver, state, decide(state), decide)


def _url_secret(request: Request) -> list[str | None]:
    """``?secret=`` read both ways: form-decoded ('+' as a space, as ``query_params`` reads
    it) and percent-decoded only ('+' as itself): Jira sends the URL as the admin typed it,
    and a base64 secret often holds a '+' (an encoded one, ``%2B``, reads the same both
    ways)."""
    query: bytes = request.scope["query_string"]
    pairs = (part.partition("=") for part in query.decode("latin-1").split("&"))
    written = [unquote(value) for name, _, value in pairs if unquote(name) == "secret"]
    # The last, as query_params keeps it: both readings are then of the same text.
    return [request.query_params.get("secret"), written[-1] if written else None]


async def jira_webhook(request: Request, receiver: Receiver, body: bytes) -> Response:
    secrets = receiver.settings.config.inbound.jira.all_secrets()
    if not secrets:
        return not_configured("Jira", "jira.secret")
    shared = [*_url_secret(request), request.headers.get("x-webhook-secret")]
    if not verify_jira(body, shared, request.headers.get("x-hub-signature"), secrets):
        why = "neither X-Hub-Signature, ?secret= nor X-Webhook-Secret matches inbound.jira"
        return refused(401, why, request)
    event = jira.parse(body)
    own = _jira_own(receiver)
    delivery = request.headers.get("x-atlassian-webhook-identifier")
    now = receiver.pipeline.now_ms()
    cache = receiver.store.cache
    retention_ms = round(receiver.settings.config.store.retention * 1000)

    def decide(state: IncidentState) -> Annotation | None:
        return jira.annotation(event, state, now, delivery, own)

    incident_ids = event.incident_ids
    if not incident_ids and event.issue is not None:
        # No labels (Jira Cloud sends a comment's issue without them): the key the Jira
        # sink filed, or an earlier webhook of the issue named, says whose it is.
        cached = await cache.get(ISSUE_CACHE, event.issue.key)
        incident_ids = [cached] if cached else []
    found: IncidentState | None = None
    for incident_id in incident_ids:
        state = await load_state(receiver, incident_id)
        if state is None:
            continue
        if event.issue is not None and jira.its_issue(event, state):
            # Even from an update not recorded: the issue's next comment names no label,
            # and after a move to another project, a key the sink has not seen yet.
            await cache.set(ISSUE_CACHE, event.issue.key, state.id, retention_ms)
        said = decide(state)
        if said is not None:
            return await record(receiver, state, said, decide)
        # Not this incident's issue (its receipt names another key), or nothing to record:
        # an issue carrying several incidents' labels may still be the next one's.
        found = found or state
    if found is not None:
        return JSONResponse({"status": "ignored", "incident": found.id})
    issue = event.issue.key if event.issue else "(none)"
    return JSONResponse({"error": f"issue {issue} is not an incident's"}, status_code=404)


async def slack_interactions(request: Request, receiver: Receiver, body: bytes) -> Response:
    """Slack interactivity: buttons pressed (``block_actions``) and the "What fixed it?"
    modal sent (``view_submission``). An empty 200 is Slack's "done" (it closes a modal)."""
    config = receiver.settings.config.inbound.slack
    secrets = config.all_secrets()
    if not secrets:
        return not_configured("Slack", "slack.signing_secret")
    verdict = verify_slack(
        body,
        request.headers.get("x-slack-request-timestamp"),
        request.headers.get("x-slack-signature"),
        secrets,
        receiver.clock(),
        config.max_age,
    )
    if verdict is SlackVerdict.STALE:
        return refused(
            401,
            f"X-Slack-Request-Timestamp is missing or more than {config.max_age:g}s from now",
            request,
        )
    if verdict is not SlackVerdict.OK:
        return refused(401, "X-Slack-Signature does not match a signing secret", request)
    interaction = slack.parse(body)
    if interaction.type == "view_submission":
        return await _slack_submission(receiver, interaction)
    if interaction.type == "block_actions":
        arrived: float = request.state.arrived
        return await _slack_actions(receiver, interaction, arrived + slack.VIEWS_DEADLINE_S)
    return Response()


async def _slack_actions(
    receiver: Receiver, interaction: slack.Interaction, views_deadline: float
) -> Response:
    """The buttons pressed; ``views_deadline`` (``anyio.current_time()``) is when a
    ``views.open`` must have been answered, for the answer to reach Slack in time."""
    slack_sink = receiver.settings.config.sinks.slack
    ca_file = slack_sink.ca_file if slack_sink else None

    def told(text: str) -> Response:
        # A refused click: Slack shows the person any answer but a 200 as a bare error
        # (and does not retry), so the answer is a 200 and the reason goes to them alone.
        logger.info("slack: a click by %s refused: %s", interaction.user.id, text)
        return Response(
            background=BackgroundTask(slack.tell, interaction.response_url, text, ca_file)
        )

    # Every incident first: a click naming none changes nothing at all.
    pressed: list[tuple[slack.Action, StoredIncident, str | None]] = []
    for action in interaction.actions:
        if action.action_id not in ACTIONS and not action.action_id.startswith(RUN_PREFIX):
            continue  # a link button (runbook, incident details): Slack wants a 200
        incident_id, shown = button_value(action.value)
        # No timeline: no button needs it, and the reading counts against Slack's 3 s.
        stored = await receiver.store.load(incident_id, timeline=False) if incident_id else None
        if stored is None:
            return told(slack.no_incident(incident_id))
        if not interaction.on_message_of(stored.state):
            return told(slack.not_its_message(incident_id))
        pressed.append((action, stored, shown))
    later = BackgroundTasks()
    for action, stored, shown in pressed:
        state = stored.state
        if action.action_id == FIXED:
            why = "no Slack token is configured here (sinks.slack)"
            if slack_sink is not None:
                modal = slack.fixed_modal(await receiver.pipeline.incident(stored))
                trigger = interaction.trigger_id
                why = await slack.open_modal(slack_sink, trigger, modal, views_deadline) or ""
            if why:
                logger.warning("slack: the What fixed it? modal did not open: %s", why)
                later.add_task(
                    slack.tell, interaction.response_url, f"The form did not open: {why}", ca_file
                )
            continue
        if action.action_id.startswith(RUN_PREFIX):
            user = interaction.user
            person = Person.of(user.who, [user.id, *interaction.handles()])
            key = action.action_id.removeprefix(RUN_PREFIX)
            press = f"{action.action_ts}:{user.id}" if action.action_ts else None
            answer = await receiver.runs.press(state, key, person, press, shown)
            later.add_task(slack.tell, interaction.response_url, answer.text, ca_file)
            continue
        now = receiver.pipeline.now_ms()
        if action.action_id == SILENCE:
            responders = receiver.settings.catalog.find(state.journey).owner.responders
            if not slack.may_silence(interaction, responders):
                refusal = slack.silence_refused(interaction, action, now)
                if await receiver.store.annotate(state.id, refusal, now) == "unknown":
                    return told(slack.no_incident(state.id))
                later.add_task(slack.tell, interaction.response_url, slack.SILENCE_REFUSED, ca_file)
                continue
        landed = await _press(receiver, interaction, action, state)
        if landed is None:
            continue
        outcome, decided = landed
        if outcome == "unknown":
            return told(slack.no_incident(state.id))
        if outcome == "stale":
            return told(slack.KEPT_CHANGING)
        late = slack.acknowledged_late(decided) if action.action_id == ACK else None
        if outcome == "ok" and late is not None:
            later.add_task(slack.tell, interaction.response_url, late, ca_file)
        if action.action_id == SILENCE and outcome == "ok":
            later.add_task(_silence_from_slack, receiver, state.id, interaction)
    return Response(background=later)


async def _press(
    receiver: Receiver, interaction: slack.Interaction, action: slack.Action, state: IncidentState
) -> tuple[AnnotateOutcome, IncidentState] | None:
    """What pressing ``action`` adds, landed (``_land``); None for a button that adds
    nothing."""

    def decide(state: IncidentState) -> Annotation | None:
        now = receiver.pipeline.now_ms()
        return slack.pressed(interaction, action, state, receiver.pipeline.sinks, now)

    return await _land(receiver, state, decide(state), decide)


async def _slack_submission(receiver: Receiver, interaction: slack.Interaction) -> Response:
    view = interaction.view
    if view is None or view.callback_id != FIXED:
        return Response()
    # Said in the form, which stays open (Slack shows any answer but a 200 there as a
    # bare error, and the submission carries no response_url).
    gone = {slack.TEXT_BLOCK: slack.no_incident(view.private_metadata)}
    state = await load_state(receiver, view.private_metadata)
    if state is None:
        return JSONResponse({"response_action": "errors", "errors": gone})
    now = receiver.pipeline.now_ms()
    result = slack.fixed(interaction, view, state, receiver.pipeline.sinks, now)
    if isinstance(result, dict):
        return JSONResponse({"response_action": "errors", "errors": result})
    if await receiver.store.annotate(state.id, result, now) == "unknown":
        return JSONResponse({"response_action": "errors", "errors": gone})
    return Response()


async def _silence_from_slack(
    receiver: Receiver, incident_id: str, interaction: slack.Interaction
) -> None:
    """Silence 2h, after Slack has its answer: the silences and an edit of the message
    (``silence_incident``), and on failure a timeline entry and a word to the person who
    asked. An alert a silence made for the incident holds is not silenced again, and
    nothing is while another press silences the incident: the person is told whose
    silence holds, or is under way."""
    who = interaction.user.who
    failure: str | None = None
    slack_sink = receiver.settings.config.sinks.slack
    ca_file = slack_sink.ca_file if slack_sink else None
    try:
        made = await silence_incident(
            receiver, incident_id, SILENCE_S, who, f"silenced from Slack by {who}", again=False
        )
        if made is None:
            failure = "the incident is gone"
    except (AlreadySilenced, SilenceUnderWay) as exc:
        said, told = slack.silenced_already(exc, who)
        now = receiver.pipeline.now_ms()
        annotation = Annotation(timeline=[TimelineEntry(at=now, kind=slack.SOURCE, text=said)])
        try:
            await receiver.store.annotate(incident_id, annotation, now)
        except StoreUnavailable as unavailable:
            logger.warning("slack: Silence 2h of incident %s: %s", incident_id, unavailable)
        await slack.tell(interaction.response_url, told, ca_file)
        return
    except PayloadError as exc:
        failure = exc.message
    except AlertmanagerError as exc:
        failure = f"Alertmanager: {exc}"
    except StoreUnavailable as exc:
        failure = f"the store is unavailable: {exc}"
    except Exception:
        # After the answer nobody else would hear of it.
        logger.exception("slack: Silence 2h of incident %s failed", incident_id)
        failure = "an unexpected error (the receiver's log has it)"
    if failure is None:
        return
    logger.warning("slack: Silence 2h of incident %s by %s failed: %s", incident_id, who, failure)
    try:
        now = receiver.pipeline.now_ms()
        await receiver.store.annotate(incident_id, slack.silence_failed(who, failure, now), now)
    except StoreUnavailable as exc:
        logger.warning("slack: Silence 2h of incident %s not recorded: %s", incident_id, exc)
    await slack.tell(interaction.response_url, f"Silence 2h failed: {failure}", ca_file)
