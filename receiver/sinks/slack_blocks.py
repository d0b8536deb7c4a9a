"""The Slack message of an incident: Block Kit blocks and fallback text, within Slack's
limits, with every piece of incident text escaped.

Incident text (titles, summaries, services, causes, runbook titles) comes from alert labels
and annotations, so it is untrusted. Slack's control characters ``&``, ``<`` and ``>`` are
replaced by ``&amp;``, ``&lt;`` and ``&gt;`` in every mrkdwn text built from it, so no
``<!channel>``, ``<@U…>``, ``<#C…>`` or ``<url|label>`` can be forged; mrkdwn objects are
``verbatim`` so Slack does not link bare URLs or channel names either; line breaks are
folded so that a value cannot start a line of its own (a fake heading or quote), and
control characters are shown as escapes (``logtext.one_line``), in plain text too. Text is
escaped first and clipped after, never inside an entity.

With ``buttons`` the message carries the interactive buttons (``ACTIONS``; each button's
``value`` is the incident id, a Run button's also what it shows of its action:
``run_value``), answered by ``/inbound/slack/interactions``; a context line says what
people did (acknowledged, useful or not, wrong cause, what fixed it, silenced), whatever
the buttons.

Limits (docs.slack.dev, Block Kit reference): at most 50 blocks; header text 150; text
objects 3000; context elements 10; actions elements 25; button text 75, button URL 3000,
button value 2000; confirmation dialog title 100, text 300, its buttons 30.
Slack also refuses blocks whose text adds up to about 12,000 characters
(``msg_blocks_too_long``, undocumented; slackapi/bolt-js#2509), so the sections share a
budget well below that. Lengths are counted in UTF-16 units, the stricter reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from receiver.act import STATUS_WORDS
from receiver.causes import CAUSE_CONFIDENCE
from receiver.incident import Incident, kpi_line, latest_verdicts
from receiver.logtext import one_line
from receiver.models import NotificationKind
from receiver.store.records import KpiRecord

HEADER_MAX = 150
TEXT_MAX = 3000
CONTEXT_ELEMENTS_MAX = 10
BUTTON_TEXT_MAX = 75
URL_MAX = 3000
TRUNCATED = "… (truncated)"

# The interactive buttons' action_ids: stable names, since messages posted long ago still
# carry them.
ACK = "jr_ack"
USEFUL = "jr_useful"
NOT_USEFUL = "jr_not_useful"
WRONG_CAUSE = "jr_wrong_cause"
FIXED = "jr_fixed"
SILENCE = "jr_silence"
ACTIONS = frozenset({ACK, USEFUL, NOT_USEFUL, WRONG_CAUSE, FIXED, SILENCE})
RUN_PREFIX = "jr_run:"
"""A Run button's action_id is this and the action's id (``automation: assist``/``auto``)."""
_RUN_BUTTONS = 5
_CONFIRM_TEXT_MAX = 300  # Slack: a confirm dialog's text
SILENCE_S = 7200
"""How long the Silence 2h button silences the incident's alerts."""

# Shares of the ~12,000-character budget; together they stay under 11,500.
_SUMMARY_MAX = 2000
_LIST_MAX = 1800
_ITEM_MAX = 400
_CONTEXT_ITEM_MAX = 200
_PEOPLE_ITEM_MAX = 120
_FIXES_SHOWN = 2
_SILENCES_SHOWN = 2
_RUNBOOK_BUTTONS = 8
_FALLBACK_MAX = 3000

_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")
_REPLY_LABELS: dict[NotificationKind, str] = {
    "open": "Opened",
    "update": "Updated",
    "resolve": "Resolved",
    "reopen": "Reopened",
}


@dataclass(frozen=True, slots=True)
class Message:
    text: str
    blocks: list[dict[str, Any]]


def escape(text: str) -> str:
    """``text`` as literal mrkdwn: Slack's three control characters as entities, on one
    line, what is not text shown as escapes (``logtext.one_line``)."""
    return one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def units(text: str) -> int:
    """Length as Slack's limits may count it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int, marker: str = TRUNCATED) -> str:
    """``text`` cut to ``limit`` units with ``marker`` at the end when it had to be cut,
    never inside an ``&amp;``-style entity."""
    if units(text) <= limit:
        return text
    room = limit - units(marker)
    cut = used = 0
    for char in text:
        used += units(char)
        if used > room:
            break
        cut += 1
    return _PARTIAL_ENTITY.sub("", text[:cut]) + marker


def render(incident: Incident, incident_url: str | None, *, buttons: bool = False) -> Message:
    """The message showing ``incident`` as it is now; ``buttons``: with the interactive
    buttons (``sinks.slack.buttons``)."""
    resolved = incident.status == "resolved"
    # Incident titles name the priority already ("checkout/eu P1 — …"); others get it here.
    named = re.search(rf"\b{re.escape(incident.priority)}\b", incident.title)
    head = ("RESOLVED — " if resolved else "") + (
        incident.title if named else f"{incident.priority} {incident.title}"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(clip(one_line(head), HEADER_MAX))}
    ]
    if resolved:
        when = f" at {escape(incident.resolved_at)}" if incident.resolved_at else ""
        blocks.append(_context([f":white_check_mark: *Resolved*{when}: no alert is firing"]))
    if incident.summary.strip():
        blocks.append(_section(clip(escape(incident.summary), _SUMMARY_MAX)))
    kpis = [line for k in incident.kpis if (line := kpi_line(KpiRecord.model_validate(k)))]
    causes = [_cause(c) for c in incident.probable_causes]
    actions = [_action(a) for a in incident.sink_actions]
    lists = (("KPIs", kpis), ("Probable causes", causes), ("Suggested actions", actions))
    for title, lines in lists:
        if lines:
            blocks.append(_section(_listing(title, lines)))
    blocks.append(_context(_facts(incident)))
    people = _people(incident)
    if people:
        blocks.append(_context(people))
    if buttons:
        blocks.append({"type": "actions", "block_id": "jr_actions", "elements": _actions(incident)})
        runs = _run_buttons(incident)
        if runs:
            blocks.append({"type": "actions", "block_id": "jr_runs", "elements": runs})
    links, left_out = _buttons(incident.runbooks, incident_url)
    if left_out:
        blocks.append(_context([f"{left_out} more runbook(s) not shown (truncated)"]))
    if links:
        blocks.append({"type": "actions", "elements": links})
    fallback = escape(head) + (f"\n{escape(incident.summary)}" if incident.summary else "")
    return Message(clip(fallback, _FALLBACK_MAX), blocks)


def reply_text(kind: NotificationKind, priority: str, changes: tuple[str, ...]) -> str:
    """The thread reply for a notification: what happened and what changed."""
    what = "; ".join(escape(c) for c in changes if c.strip())
    return clip(f"*{_REPLY_LABELS[kind]}* ({priority})" + (f": {what}" if what else ""), TEXT_MAX)


def run_value(incident_id: str, shown: str) -> str:
    """A Run button's ``value``: the incident id and, after a space (no id has one), what
    the button shows of its action (``receiver.actions.shown``, 35 characters: the value
    stays far below Slack's 2000)."""
    return f"{incident_id} {shown}"


def button_value(value: str) -> tuple[str, str | None]:
    """The incident id a button's ``value`` names and, for a Run button, what it showed
    of its action; None for a Run button from before it carried that."""
    incident_id, space, shown = value.partition(" ")
    return incident_id, shown if space else None


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(items: list[str]) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [_mrkdwn(item) for item in items[:CONTEXT_ELEMENTS_MAX]],
    }


def _listing(title: str, lines: list[str]) -> str:
    """``*title*`` and one bullet per line, as many as fit; a last line says how many did
    not."""
    text = f"*{title}*"
    for shown, line in enumerate(lines):
        bullet = "\n• " + clip(escape(line), _ITEM_MAX)
        rest = len(lines) - shown
        tail = f"\n… and {rest - 1} more (truncated)" if rest > 1 else ""
        if units(text + bullet + tail) > _LIST_MAX:
            return text + f"\n… and {rest} more (truncated)"
        text += bullet
    return text


def _cause(cause: dict[str, Any]) -> str:
    evidence = "; ".join(str(e) for e in cause.get("evidence", [])[:2])
    score = float(cause.get("score", 0.0))
    # The list has no score column (Jira's and the page's have): a guess must say so.
    guess = f"a guess: score {score:g}, below {CAUSE_CONFIDENCE:g}"
    said = "; ".join(part for part in (guess if score < CAUSE_CONFIDENCE else "", evidence) if part)
    return str(cause.get("text", "")) + (f" ({said})" if said else "")


def _action(action: dict[str, Any]) -> str:
    because = action.get("because")
    return str(action.get("title", "")) + (f" ({because})" if because else "")


def _facts(incident: Incident) -> list[str]:
    services = incident.services
    shown = ", ".join(services[:5]) + (f" +{len(services) - 5} more" if len(services) > 5 else "")
    facts = [
        f"Journey: {incident.journey_name} ({incident.journey})",
        f"Services: {shown or 'none'}",
        f"Alerts: {incident.firing_count} firing of {incident.alert_count}",
        f"Score: {incident.score:g}/100",
        f"Incident: {incident.id}",
        f"Created: {incident.created_at}",
    ]
    if incident.reopened_count:
        facts.append(f"Reopened {incident.reopened_count}×")
    return [clip(escape(fact), _CONTEXT_ITEM_MAX) for fact in facts]


def _actions(incident: Incident) -> list[dict[str, Any]]:
    """The interactive buttons: on a resolved incident only Useful, Not useful and What
    fixed it; Acknowledge only until someone has (or resolved it by hand); Wrong cause
    only when a cause is named."""
    live = incident.status != "resolved"
    response = incident.response or {}
    # A person's resolve (in PagerDuty, in Jira) answered it: nobody is asked to take it up.
    # An acknowledgement that timed out in PagerDuty (it pages again) answers nothing now.
    standing = response.get("acknowledged_at") and not response.get("lapsed_at")
    acknowledged = bool(standing or response.get("resolved_at"))
    wanted: list[tuple[str, str, str | None]] = []
    if live and not acknowledged:
        wanted.append((ACK, "Acknowledge", "primary"))
    wanted += [(USEFUL, "Useful", None), (NOT_USEFUL, "Not useful", None)]
    if live and incident.probable_causes:
        wanted.append((WRONG_CAUSE, "Wrong cause", None))
    wanted.append((FIXED, "What fixed it?", None))
    if live:
        wanted.append((SILENCE, "Silence 2h", "danger"))
    buttons = []
    for action_id, label, style in wanted:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": _plain(label),
            "value": incident.id,
        }
        if style:
            button["style"] = style
        if action_id == SILENCE:
            button["confirm"] = {
                "title": _plain("Silence for 2 hours?"),
                "text": _plain(
                    f"Alertmanager silences the {incident.firing_count} firing alert(s) of "
                    "this incident for 2 hours; they do not page while it lasts."
                ),
                "confirm": _plain("Silence 2h"),
                "deny": _plain("Cancel"),
            }
        buttons.append(button)
    return buttons


def _run_buttons(incident: Incident) -> list[dict[str, Any]]:
    """A Run button per runnable suggested action of a live incident whose journey is at
    ``assist`` or ``auto``, each behind Slack's confirmation dialog. Whether the person
    may run it is decided when it is pressed (``owner.responders``)."""
    if incident.status == "resolved" or incident.automation not in ("assist", "auto"):
        return []
    buttons = []
    # The runnable ones first, then the cap: actions done by hand take no Run button's room.
    runnable = [action for action in incident.sink_actions if action.get("runnable")]
    for action in runnable[:_RUN_BUTTONS]:
        key = str(action["id"])
        title = one_line(str(action.get("title", "")))
        buttons.append(
            {
                "type": "button",
                "action_id": RUN_PREFIX + key,
                "text": _plain(clip(f"Run: {title}", BUTTON_TEXT_MAX)),
                # What it shows, for the press to run that or nothing (Runs.press).
                "value": run_value(incident.id, incident.shown_values[key]),
                "style": "danger",
                "confirm": {
                    "title": _plain("Run this action?"),
                    "text": _plain(
                        clip(
                            f"{title}. It acts on a real system now, once for this incident, "
                            "and is recorded with your name.",
                            _CONFIRM_TEXT_MAX,
                        )
                    ),
                    "confirm": _plain("Run"),
                    "deny": _plain("Cancel"),
                },
            }
        )
    return buttons


_ACTED = frozenset({"ran", "failed", "dry_run"})


def _people(incident: Incident) -> list[str]:
    """What people did, one context item each: "Acknowledged by X", "Marked useful by Y",
    "Silenced 2h by Z"... The latest verdict of each person counts."""
    items: list[str] = []
    response = incident.response or {}
    # Who took it up last: the first to acknowledge, or who did after theirs lapsed.
    acknowledged_by = response.get("reacknowledged_by") or response.get("acknowledged_by")
    if acknowledged_by and response.get("lapsed_at"):
        items.append(f"Acknowledgement by {acknowledged_by} lapsed")
    elif acknowledged_by:
        items.append(f"Acknowledged by {acknowledged_by}")
    if response.get("resolved_by"):
        items.append(f"Resolved by {response['resolved_by']}")
    wrong: dict[str, None] = {}
    fixes: list[str] = []
    for record in incident.feedback:
        who = _voice(record.get("by"))
        if record.get("fixed_by"):
            fixes.append(f"Fixed by: {record['fixed_by']} (says {who})")
        if record.get("wrong_cause"):
            wrong[who] = None
    verdicts = latest_verdicts((r.get("by"), r.get("useful")) for r in incident.feedback)
    useful = [_voice(who) for who, said in verdicts.items() if said]
    not_useful = [_voice(who) for who, said in verdicts.items() if not said]
    if useful:
        items.append("Marked useful by " + ", ".join(useful))
    if not_useful:
        items.append("Marked not useful by " + ", ".join(not_useful))
    if wrong:
        items.append("Wrong cause, says " + ", ".join(wrong))
    items += fixes[-_FIXES_SHOWN:]
    # One record per silenced alert: one line per request, said ended early once every
    # silence of it was (expired in Alertmanager before its end).
    requests: dict[tuple[str, str, str], bool] = {}
    for s in incident.silences:
        request = (str(s.get("by", "")), str(s.get("at", "")), str(s.get("ends_at", "")))
        requests[request] = requests.get(request, True) and bool(s.get("expired_at"))
    items += [
        f"Silenced {_span(at, ends)} by {by}{' (ended early in Alertmanager)' if early else ''}"
        for (by, at, ends), early in requests.items()
    ][-_SILENCES_SHOWN:]
    if incident.actions_run:
        # What was done outweighs a later refusal or skip (a stranger pressing Run after
        # it ran): the channel must not read that a rollback which ran was refused.
        done = [r for r in incident.actions_run if r.get("status") in _ACTED]
        last = (done or incident.actions_run)[-1]
        said = STATUS_WORDS.get(last["status"], last["status"])
        items.append(f"{last.get('title') or last['action']}: {said} (by {last['by']})")
    # At most 9 items, within the context block's 10.
    return [clip(escape(item), _PEOPLE_ITEM_MAX) for item in items]


def _voice(by: object) -> str:
    return str(by) if by else "the API"


def _span(start: str, end: str) -> str:
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return "for a while"
    return silence_length(seconds)


def silence_length(seconds: float) -> str:
    """How long a silence lasts, as a duration is written: ``2h``, ``1h40m``, ``45s``,
    ``7d``, in whole seconds. The timeline says it as the message does."""
    rest = max(0, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _buttons(
    runbooks: list[dict[str, str]], incident_url: str | None
) -> tuple[list[dict[str, Any]], int]:
    """Link buttons for the runbooks that have a usable URL (Slack refuses the message for
    a bad one) and for the incident; and how many runbooks were left out."""
    usable = [rb for rb in runbooks if _linkable(rb.get("url", ""))]
    shown = usable[:_RUNBOOK_BUTTONS]
    links = [(rb.get("title") or "Runbook", rb["url"]) for rb in shown]
    if incident_url and _linkable(incident_url):
        links.append(("Incident details", incident_url))
    buttons = [
        {
            "type": "button",
            "action_id": f"link-{i}",
            "text": _plain(clip(one_line(title) or "Link", BUTTON_TEXT_MAX, "…")),
            "url": url,
        }
        for i, (title, url) in enumerate(links)
    ]
    return buttons, len(runbooks) - len(shown)


def _linkable(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and units(url) <= URL_MAX
