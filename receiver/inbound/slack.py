"""Slack interactivity: the buttons on the incident message and the "What fixed it?" modal.

Slack posts ``application/x-www-form-urlencoded`` with one field, ``payload``: the JSON of
a ``block_actions`` (buttons pressed: ``actions``, ``user``, ``trigger_id``,
``response_url``) or of a ``view_submission`` (our modal sent: ``view`` with its
``callback_id``, ``private_metadata`` and ``state.values``) (docs.slack.dev, "Handling
user interaction"). A button's ``value`` and the modal's ``private_metadata`` are the
incident id. Link buttons (runbooks) send ``block_actions`` too, which are answered and
ignored.

What each button adds to the incident, as one ``Annotation``:
- Acknowledge: ``response`` (the first acknowledgement counts), a PagerDuty
  ``acknowledge`` for its dedup key and an edit of the message, both through the outbox;
- Useful / Not useful / Wrong cause: a ``feedback`` record naming who, and an edit;
- What fixed it?: nothing yet. A modal (``views.open``, while the ``trigger_id`` lives,
  about 3 s) lists the suggested actions and takes free text; its submission appends
  ``feedback`` with ``fixed_by``, and an edit;
- Silence 2h: a timeline entry at once; the silences are made after the answer (see
  ``silence_outcome``), since Alertmanager may be slow. A Slack Connect guest from another
  organisation is refused unless named by user id in ``owner.responders`` (``may_silence``).

Slack does not retry interactions, and a double click is two deliveries with different
``action_ts``: ``once`` keeps a delivery that does arrive twice from landing twice.
"""

from __future__ import annotations

import functools
import http.client
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.to_thread
import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from receiver.alertmanager.silences import AlreadySilenced, SilenceUnderWay
from receiver.config import SlackSinkConfig
from receiver.errors import PayloadError
from receiver.inbound.resolves import acknowledgement, lapse_as_read
from receiver.incident import Incident, rfc3339
from receiver.logtext import printable
from receiver.sinks.slack import edit_job, web_client
from receiver.sinks.slack_blocks import (
    ACK,
    FIXED,
    NOT_USEFUL,
    SILENCE,
    USEFUL,
    WRONG_CAUSE,
    clip,
    escape,
    units,
)
from receiver.store.base import Annotation
from receiver.store.deliveries import Job
from receiver.store.records import IncidentState, TimelineEntry
from receiver.tls import ssl_context
from receiver.webhook import payload_error

SOURCE = "slack"
logger = logging.getLogger("journey_receiver.inbound.slack")

# The modal's parts, read back from ``view.state.values`` (block_id -> action_id -> state).
CHOICE_BLOCK, CHOICE = "jr_fixed_choice", "choice"
TEXT_BLOCK, TEXT = "jr_fixed_text", "text"
_WHO_MAX = 120
_FIXED_MAX = 500
_VIEW_TITLE = "What fixed it?"  # Slack: at most 24 characters
_OPTIONS_MAX = 10  # radio buttons take at most 10 options
_OPTION_TEXT_MAX = 75
_OPTION_VALUE_MAX = 150
_LABEL_MAX = 2000
_MODAL_TEXT_MAX = 600
# views.open must land while the trigger_id lives (3 s from the click); the answer to Slack
# is due in the same 3 s, both counted from the click's arrival. The SDK takes whole seconds.
_VIEWS_TIMEOUT_S = 2
VIEWS_DEADLINE_S = 2.2
"""From the click's arrival, when views.open must have answered (the rest of Slack's 3 s
is for the answer to reach it)."""
_VIEWS_LEAST_S = 0.2  # less than this left: views.open would not land in time
_TELL_TIMEOUT_S = 5.0
SILENCE_REFUSED = (
    "Silence 2h refused: you are from another Slack organisation (Slack Connect). Members "
    "of this workspace may silence the incident's alerts, and people the journey's "
    "owner.responders names by Slack user id."
)
"""Said to the person only, when ``may_silence`` refuses them."""
_ID_SHOWN_MAX = 100


def no_incident(incident_id: str) -> str:
    """Said to the person only, for a button of an incident this receiver does not keep:
    Slack shows a refused click as a bare error, with no reason."""
    return (
        f"Nothing was recorded: journey-receiver has no incident {clip(incident_id, _ID_SHOWN_MAX)}"
        " (an incident is kept for store.retention after its last change)."
    )


KEPT_CHANGING = (
    "Nothing was recorded: the incident kept changing while your press was recorded "
    "(other people's presses, or its alerts): press the button again."
)
"""Said to the person only, when their press could not land for others landing first."""


def not_its_message(incident_id: str) -> str:
    """Said to the person only, for a button on a message that is not the incident's own
    (``Interaction.on_message_of``)."""
    return (
        "Nothing was recorded: this is not the Slack message of incident "
        f"{clip(incident_id, _ID_SHOWN_MAX)} that journey-receiver keeps (the incident was "
        "posted again since, or the message is another installation's): press the button "
        "on the incident's current message."
    )


def acknowledged_late(state: IncidentState) -> str | None:
    """Said to the person only, when their Acknowledge came after the incident resolved
    (it is on the timeline, and no acknowledgement); None otherwise."""
    if state.status != "resolved":
        return None
    when = f" at {rfc3339(state.resolved_at)}" if state.resolved_at is not None else ""
    return (
        f"Not recorded as an acknowledgement: the incident resolved{when} (every alert "
        "resolved), before you pressed Acknowledge."
    )


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class User(_Wire):
    id: str
    username: str = ""
    name: str = ""
    team_id: str = ""

    @property
    def who(self) -> str:
        """``@name (U…)``: what the incident records as ``by`` (escaped where shown)."""
        handle = self.username or self.name
        return clip(" ".join(f"@{handle} ({self.id})".split()) if handle else self.id, _WHO_MAX)


class Action(_Wire):
    action_id: str
    value: str = ""
    action_ts: str = ""


class Option(_Wire):
    value: str = ""


class InputState(_Wire):
    """One input element as submitted: a radio button's ``selected_option`` or a text
    input's ``value``."""

    value: str | None = None
    selected_option: Option | None = None


class ViewState(_Wire):
    values: dict[str, dict[str, InputState]] = {}

    def read(self, block: str, action: str) -> str:
        found = self.values.get(block, {}).get(action)
        if found is None:
            return ""
        chosen = found.selected_option.value if found.selected_option else found.value
        return (chosen or "").strip()


class View(_Wire):
    id: str = ""
    callback_id: str = ""
    private_metadata: str = ""
    state: ViewState = Field(default_factory=ViewState)


class Container(_Wire):
    """Where a button was: for one on a message, that message."""

    channel_id: str = ""
    message_ts: str = ""


class Team(_Wire):
    """The workspace the click came from; on Enterprise Grid, with its organisation's id."""

    id: str = ""
    enterprise_id: str = ""


class Enterprise(_Wire):
    """The Enterprise Grid organisation of an app installed on it (``is_enterprise_install``
    payloads may carry no ``team`` at all)."""

    id: str = ""


class Interaction(_Wire):
    type: str
    user: User
    trigger_id: str = ""
    response_url: str | None = None
    actions: list[Action] = []
    view: View | None = None
    container: Container | None = None
    team: Team | None = None
    enterprise: Enterprise | None = None

    def on_message_of(self, state: IncidentState) -> bool:
        """Whether the button was on the incident's own Slack message, as its receipt
        names it: an id alone would let a message of another installation sharing the
        Slack app (whose ids may be the same) act on this one's incident. Unknown (no
        receipt yet, or no message in the payload) is not held against it."""
        receipt = state.sinks.get("slack") or {}
        posted = receipt.get("ts") if isinstance(receipt, dict) else None
        clicked = self.container.message_ts if self.container else ""
        return not (posted and clicked) or posted == clicked

    def from_home(self) -> bool:
        """Whether the clicker belongs to where the app is: ``user.team_id`` is the
        workspace's ``team.id`` or, on Enterprise Grid (where Slack reports the
        organisation's E… id there instead), the organisation's (``team.enterprise_id``,
        ``enterprise.id``). Anyone else is a Slack Connect guest from another organisation.
        A payload that does not say is not held against them."""
        theirs = self.user.team_id
        home = {self.team.id, self.team.enterprise_id} if self.team else set()
        if self.enterprise:
            home.add(self.enterprise.id)
        home.discard("")
        return not theirs or not home or theirs in home

    def handles(self) -> list[str]:
        """The clicker's ``@handle``s, only for a person of the workspace (or Enterprise
        Grid organisation) the app is in: a handle from another organisation (Slack
        Connect) proves nothing here."""
        if not self.from_home():
            return []
        return [f"@{self.user.username}", f"@{self.user.name}"]


def parse(body: bytes) -> Interaction:
    """The interaction of a form body (``payload=<JSON>``); ``PayloadError`` otherwise."""
    try:
        form = parse_qs(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PayloadError(400, "request body is not UTF-8 form data") from exc
    payloads = form.get("payload")
    if not payloads:
        raise PayloadError(400, "no payload field: expected Slack's form-encoded interaction")
    raw = payloads[0].encode()
    try:
        return Interaction.model_validate_json(raw)
    except ValidationError as exc:
        raise payload_error(exc, raw, "an interaction payload (a JSON object)") from exc


def pressed(
    interaction: Interaction,
    action: Action,
    state: IncidentState,
    sinks: Collection[str],
    now_ms: int,
) -> Annotation | None:
    """What pressing ``action`` adds to the incident; None for What fixed it (a modal
    opens, nothing is recorded yet) and for buttons that are not ours."""
    who = interaction.user.who
    fill: dict[str, dict[str, object]] = {}
    merge: dict[str, dict[str, object]] = {}
    append: dict[str, list[dict[str, object]]] = {}
    jobs: list[Job] = []
    expect: tuple[str, str, str | None] | None = None
    kind = action.action_id
    if kind == ACK:
        # Who is on it: nobody once the last acknowledgement lapsed in PagerDuty.
        standing = state.response.standing if state.response else None
        first = standing[1] if standing else None
        if state.status == "resolved":
            text, change = f"Acknowledge pressed in Slack by {who} after the incident resolved", ""
        elif first == who:
            # Their own second press (a double click, or a message not edited yet): the
            # edit their first one queued is all the message needs.
            text, change = f"Acknowledge pressed in Slack again by {who}", ""
        elif first:
            text = f"Acknowledge pressed in Slack by {who}; {first} had acknowledged it"
            change = f"already acknowledged by {first}"
        else:
            filled, taken_up = acknowledgement(state, now_ms, who, SOURCE, after_lapse=True)
            text, change = f"acknowledged in Slack by {who}", f"acknowledged by {who}"
            # Someone else's press (or PagerDuty's) may land between this read and the
            # write: then theirs is the acknowledgement, and this one is decided again.
            if filled:
                fill["response"], expect = filled, ("response", "acknowledged_by", None)
            else:
                merge["response"], expect = taken_up, lapse_as_read(state)
            if "pagerduty" in sinks and "pagerduty" in state.sinks:
                jobs.append(
                    Job(incident=state.id, sink="pagerduty", kind="acknowledge", due=now_ms)
                )
    elif kind in (USEFUL, NOT_USEFUL):
        said = "useful" if kind == USEFUL else "not useful"
        append["feedback"] = [_feedback(now_ms, who, useful=kind == USEFUL)]
        text, change = f"marked {said} in Slack by {who}", f"marked {said} by {who}"
    elif kind == WRONG_CAUSE:
        cause = state.probable_causes[0].text if state.probable_causes else None
        append["feedback"] = [_feedback(now_ms, who, wrong_cause=True)]
        text = f"probable cause called wrong in Slack by {who}" + (f": {cause}" if cause else "")
        change = f"cause called wrong by {who}"
    elif kind == SILENCE:
        text, change = f"Silence 2h asked in Slack by {who}", ""
    else:
        return None
    if change:
        jobs += edit_job(state, sinks, change, now_ms)
    return Annotation(
        append=append,
        merge=merge,
        fill=fill,
        timeline=[TimelineEntry(at=now_ms, kind=SOURCE, text=text)],
        jobs=jobs,
        once=_once(interaction, action),
        expect=expect,
    )


def may_silence(interaction: Interaction, responders: Collection[str]) -> bool:
    """Whether the clicker may press Silence 2h: a silence hides the incident's alerts from
    everyone, so, as for Run, a Slack Connect guest from another organisation (a shared
    channel lets them in) may only when the journey's ``owner.responders`` names their user
    id; members of the workspace (or Enterprise Grid organisation) the app is in may."""
    named = {r.strip().lower() for r in responders}
    return interaction.from_home() or interaction.user.id.lower() in named


def silence_refused(interaction: Interaction, action: Action, now_ms: int) -> Annotation:
    """A Silence 2h ``may_silence`` refused, on the timeline, as Run's refusals are."""
    text = (
        f"Silence 2h asked in Slack by {interaction.user.who} refused: "
        "from another Slack organisation, not named in owner.responders"
    )
    return Annotation(
        timeline=[TimelineEntry(at=now_ms, kind=SOURCE, text=text)],
        once=_once(interaction, action),
    )


def _once(interaction: Interaction, action: Action) -> str | None:
    # Slack does not retry, but a delivery that arrives twice must land once.
    if not action.action_ts:
        return None
    return f"{SOURCE}:{action.action_ts}:{interaction.user.id}:{action.action_id}"


def fixed(
    interaction: Interaction, view: View, state: IncidentState, sinks: Collection[str], now_ms: int
) -> Annotation | dict[str, str]:
    """What the submitted "What fixed it?" modal adds; or, when neither a suggested action
    was picked nor anything written, or more written than the field takes, the errors to
    show in the modal (block_id -> text)."""
    chosen = view.state.read(CHOICE_BLOCK, CHOICE)
    written = view.state.read(TEXT_BLOCK, TEXT)
    if not chosen and not written:
        return {TEXT_BLOCK: "Pick a suggested action, or say in a few words what fixed it."}
    if units(written) > _FIXED_MAX:
        # Said in the form, where the person can still cut it: never cut here unseen.
        return {TEXT_BLOCK: f"At most {_FIXED_MAX} characters, please (this is {units(written)})."}
    who = interaction.user.who
    fixed_by = clip(chosen or written, _FIXED_MAX, "…")
    # Says what fixed it, not whether the page was worth it: no verdict for /stats.
    record = _feedback(now_ms, who, fixed_by=fixed_by)
    if chosen and written:
        record["note"] = written
    return Annotation(
        append={"feedback": [record]},
        timeline=[TimelineEntry(at=now_ms, kind=SOURCE, text=f"fixed by: {fixed_by} (says {who})")],
        jobs=edit_job(state, sinks, f"fixed by {fixed_by} (says {who})", now_ms),
        once=f"{SOURCE}:view:{view.id}:{interaction.user.id}" if view.id else None,
    )


def silenced_already(exc: AlreadySilenced | SilenceUnderWay, who: str) -> tuple[str, str]:
    """A Silence 2h that made no silence, since one holds or is under way: the timeline's
    line, and what the person who pressed is told."""
    if isinstance(exc, SilenceUnderWay):
        return (
            f"Silence 2h asked in Slack by {who} made no new silence: one asked by {exc.by} "
            "was under way",
            f"Silence 2h is already being made for this incident (asked by {exc.by} just "
            "before you): no second silence was made; the message will show it.",
        )
    holds = f"silenced until {rfc3339(exc.until_ms)} by {', '.join(exc.by)}"
    return (
        f"Silence 2h asked in Slack by {who} made no new silence: every firing alert is {holds}",
        f"Already silenced: every firing alert of this incident is {holds}; no new silence "
        "was made (to change it, edit the silence in Alertmanager).",
    )


def silence_failed(who: str, failure: str, now_ms: int) -> Annotation:
    """After Silence 2h failed: the reason, on the timeline (``silence_incident`` recorded
    the silences made before it failed, with an edit of the message showing them)."""
    text = f"Silence 2h asked in Slack by {who} failed: {failure}"
    return Annotation(timeline=[TimelineEntry(at=now_ms, kind=SOURCE, text=text)])


def _feedback(now_ms: int, who: str, **said: object) -> dict[str, object]:
    return {"at": now_ms, **said, "by": who, "source": SOURCE}


def fixed_modal(incident: Incident) -> dict[str, Any]:
    """The "What fixed it?" modal: the incident's suggested actions to pick from (at most
    10, the radio buttons' limit) and a free-text field. Option labels are plain text,
    which Slack shows as written; the rest is escaped mrkdwn, as on the message."""
    options: list[dict[str, Any]] = []
    values: set[str] = set()
    for action in incident.sink_actions:
        title = " ".join(str(action.get("title", "")).split())
        value = clip(str(action.get("id") or title), _OPTION_VALUE_MAX, "…")
        # Shown, not the value: the value names the action as journeys.yaml does.
        shown = printable(title)
        if title and value not in values and len(options) < _OPTIONS_MAX:
            values.add(value)
            options.append({"text": _plain(clip(shown, _OPTION_TEXT_MAX, "…")), "value": value})
    left_out = len(incident.sink_actions) - len(options)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _mrkdwn(clip(escape(incident.title), _MODAL_TEXT_MAX))}
    ]
    if options:
        blocks.append(
            {
                "type": "input",
                "block_id": CHOICE_BLOCK,
                "optional": True,
                "label": _plain("A suggested action"),
                "element": {"type": "radio_buttons", "action_id": CHOICE, "options": options},
            }
        )
    if left_out > 0:
        note = f"{left_out} more suggested action(s) not listed: say it in your own words."
        blocks.append({"type": "context", "elements": [_mrkdwn(note)]})
    blocks.append(
        {
            "type": "input",
            "block_id": TEXT_BLOCK,
            "optional": True,
            "label": _plain("In your own words" if options else "What fixed it, in a few words"),
            "element": {
                "type": "plain_text_input",
                "action_id": TEXT,
                "multiline": True,
                "max_length": _FIXED_MAX,
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": FIXED,
        "private_metadata": incident.id,
        "title": _plain(_VIEW_TITLE),
        "submit": _plain("Save"),
        "close": _plain("Cancel"),
        "blocks": blocks,
    }


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, _LABEL_MAX, "…")}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


@functools.lru_cache(maxsize=2)
def _client(config: SlackSinkConfig) -> WebClient:
    # One client per Slack sink config (a reload with new settings makes another), built
    # as the sink builds its own: no retry handlers, a short timeout, the same TLS.
    return web_client(config, _VIEWS_TIMEOUT_S)


async def open_modal(
    config: SlackSinkConfig, trigger_id: str, view: dict[str, Any], deadline: float
) -> str | None:
    """Open ``view`` for the person who pressed the button, answered by ``deadline``
    (``anyio.current_time()``); None when it opened, else why not, in words for them
    (never a secret: Slack's error code or the exception's kind)."""
    left = deadline - anyio.current_time()
    if left < _VIEWS_LEAST_S:
        return (
            "journey-receiver took too long to answer Slack (it allows 3 s): press What "
            "fixed it? again"
        )
    client = _client(config)
    call = functools.partial(client.views_open, trigger_id=trigger_id, view=view)
    try:
        with anyio.fail_after(left):
            await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
    except SlackApiError as exc:
        code = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        return f"Slack refused views.open ({code or f'HTTP {exc.response.status_code}'})"
    except TimeoutError:
        return "Slack did not answer views.open in time: press What fixed it? again"
    except (OSError, http.client.HTTPException, SlackRequestError) as exc:
        return f"views.open failed ({type(exc).__name__})"
    return None


async def tell(response_url: str | None, text: str, ca_file: Path | None = None) -> None:
    """Say ``text`` to the person who pressed the button, and to them only (an ephemeral
    message through the interaction's ``response_url``); a failure is logged."""
    if not response_url or urlsplit(response_url).scheme not in ("https", "http"):
        return
    message = {"response_type": "ephemeral", "replace_original": False, "text": escape(text)}
    try:
        async with httpx.AsyncClient(
            timeout=_TELL_TIMEOUT_S, verify=ssl_context(ca_file)
        ) as client:
            answer = await client.post(response_url, json=message)
    except httpx.HTTPError as exc:
        logger.warning("slack: could not answer through response_url: %s", type(exc).__name__)
        return
    if answer.status_code >= 300:
        logger.warning("slack: response_url answered HTTP %d", answer.status_code)
