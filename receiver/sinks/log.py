"""The built-in ``log`` sink: each notification as the chart a person would read in Slack.

``format: json`` (the default) writes one JSON line per notification for log pipelines;
``format: text`` writes the same chart as indented lines for a person at a terminal. Either
way the chart holds the title, the summary, the top probable cause, the suggested actions,
the runbooks, the owner and the link.

Alert text is untrusted: in JSON, every character that does not print is escaped
(``\\uXXXX``: the value is unchanged for whoever parses it); in text, every value is folded
onto one line and its control characters shown as escapes (``logtext.one_line``), so no
label or annotation can forge a log line of its own or steer the terminal that shows it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from receiver.causes import CAUSE_CONFIDENCE
from receiver.logtext import one_line
from receiver.sinks import Delivery, Receipt
from receiver.sinks._http import incident_url

if TYPE_CHECKING:
    from receiver.config.sinks import LogSinkConfig
    from receiver.incident import Incident

logger = logging.getLogger("journey_receiver.notifications")


def _json_line(chart: dict[str, Any]) -> str:
    """``chart`` as one line of JSON, readable (not every non-ASCII letter escaped) yet
    with every character that does not print escaped as ``\\uXXXX``: ``json.dumps``
    escapes C0 controls only, and a C1 control (U+009B opens a terminal command), a bidi
    override or a line separator from alert text would reach the terminal as it is.
    Outside strings JSON is printable ASCII, so only string contents change, not their
    value."""
    text = json.dumps(chart, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _json_escape(c) for c in text)


def _json_escape(char: str) -> str:
    # Beyond the BMP a surrogate pair, as JSON writes it.
    units = char.encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))


def _owner(owner: dict[str, Any]) -> str:
    """``payments (slack #inc-checkout, jira PAY, pagerduty journey)``."""
    routes = ", ".join(f"{k.split('_')[0]} {v}" for k, v in owner["routing"].items() if v)
    return one_line(f"{owner['team']} ({routes})" if routes else owner["team"])


class LogSink:
    name = "log"
    coalesces_updates = False

    def __init__(self, config: LogSinkConfig, external_url: str | None) -> None:
        self.format = config.format
        self.external_url = external_url

    def chart(self, incident: Incident, delivery: Delivery) -> dict[str, Any]:
        # The leading cause, as the title and summary tell it (receiver.causes.leading): the
        # first, and none when it is below the confidence (a guess, or "one of" a tie).
        first = incident.probable_causes[:1]
        cause = next((c for c in first if c["score"] >= CAUSE_CONFIDENCE), None)
        return {
            "event": "incident_notification",
            "sink": self.name,
            "kind": delivery.kind,
            "changes": list(delivery.changes),
            "incident": incident.id,
            "key": incident.key,
            "journey": incident.journey,
            "status": incident.status,
            "priority": incident.priority,
            "score": incident.score,
            "title": incident.title,
            "summary": incident.summary,
            "alert_count": incident.alert_count,
            "firing_count": incident.firing_count,
            "services": incident.services,
            "top_cause": cause and {"text": cause["text"], "score": cause["score"]},
            "actions": [a["title"] for a in incident.sink_actions],
            "runbooks": incident.runbooks,
            "owner": incident.owner,
            # Without server.external_url the page's path still tells a person where to look.
            "link": incident_url(self.external_url, incident.id) or f"/incidents/{incident.id}",
        }

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        chart = self.chart(incident, delivery)
        if self.format == "json":
            logger.info(_json_line(chart))
        else:
            logger.info("%s", self.text(chart))
        return Receipt(sink=self.name, state=incident.status)

    @staticmethod
    def text(chart: dict[str, Any]) -> str:
        cause = chart["top_cause"]
        lines = [
            f"[{chart['kind']}] {one_line(chart['title'])}",
            f"  summary:  {one_line(chart['summary'])}",
            f"  cause:    {one_line(cause['text']) if cause else 'unknown'}",
            *(f"  action:   {one_line(a)}" for a in chart["actions"]),
            *(
                f"  runbook:  {one_line(r['title'])} {one_line(r['url'])}"
                for r in chart["runbooks"]
            ),
            f"  owner:    {_owner(chart['owner'])}",
            f"  link:     {one_line(chart['link'])}",
        ]
        if chart["changes"]:
            lines.insert(1, f"  changed:  {one_line('; '.join(chart['changes']))}")
        return "\n".join(lines)

    async def aclose(self) -> None:
        return None
