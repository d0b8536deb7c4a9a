"""What a Jira issue says, as one small document model rendered two ways: wiki markup for
Jira Server/Data Center (REST v2) and Atlassian Document Format for Jira Cloud (REST v3).

Alert labels and annotations reach titles, service names and causes, so incident text is
untrusted. It only ever enters a document as :class:`Text`, which the wiki renderer escapes
and the ADF renderer puts in plain text nodes; :class:`Link` is made only from trusted
config (journeys.yaml runbooks, the receiver's external URL).

Wiki escaping: every character the renderer treats as markup and can escape
(``! [ ] ^ ~ + ? % { } ( ) * _ - | @ #``, atlassian-renderer's
``BackslashEscapeRendererComponent``) gets a backslash; a backslash, which cannot be escaped
and would otherwise undo the next escape or form a ``\\\\`` line break, is replaced by a
look-alike; whitespace is collapsed so untrusted text never starts a line, and a line that
would still open with ``h1.``/``bq.`` is guarded. Bare ``scheme://`` text, which Jira turns
into links by itself, gets a zero-width space after the colon.

Control characters are shown as escapes in both renderings (``logtext.printable``): Jira
on PostgreSQL answers a NUL with a 500, however often it is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from receiver.incident import Incident, kpi_line, listing, number
from receiver.logtext import clip, cut, printable
from receiver.store.records import KpiRecord

_WIKI_SPECIAL = frozenset("![]^~+?%{}()*_-|@#")
_BACKSLASH_LOOKALIKE = "\u29f5"  # REVERSE SOLIDUS OPERATOR
_ZERO_WIDTH_SPACE = "\u200b"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?=//)")
_LINE_MARKUP = re.compile(r"\s*(?:h[1-6]|bq)\.")
_WHITESPACE = re.compile(r"\s+")
# Alert text can be long and services many; Jira refuses text fields over 32,767 characters.
_CELL_MAX = 300
# The narrative quotes alertnames whole, and wiki escaping may double it: a huge label
# must not make the description too long for Jira to file the issue at all.
_SUMMARY_MAX = 4_000
_LISTED_MAX = 20
# Characters a wiki link target must not carry: they would end or split ``[text|url]``.
_URL_SAFE = "/:?#@!$&'()*+,;=%~-._"


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    strong: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """A link from trusted config; a target that is not http(s) is shown as text."""

    text: str
    url: str


Inline = Text | Link


@dataclass(frozen=True, slots=True)
class Paragraph:
    parts: tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class Heading:
    text: str


@dataclass(frozen=True, slots=True)
class Bullets:
    items: tuple[tuple[Inline, ...], ...]


@dataclass(frozen=True, slots=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


Block = Paragraph | Heading | Bullets | Table


def _collapse(text: str) -> str:
    """Whitespace runs as one space, edges kept: parts of a line are joined as they are;
    control characters and bidirectional controls shown (``logtext.printable``)."""
    return printable(_WHITESPACE.sub(" ", text))


def escape_wiki(text: str) -> str:
    """``text`` shown literally by Jira's wiki renderer (on one line, see the module doc)."""
    text = _SCHEME.sub(rf"\1:{_ZERO_WIDTH_SPACE}", _collapse(text))
    return "".join(
        _BACKSLASH_LOOKALIKE if c == "\\" else f"\\{c}" if c in _WIKI_SPECIAL else c for c in text
    )


def _safe_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return quote(url, safe=_URL_SAFE)


def _wiki_inline(part: Inline) -> str:
    if isinstance(part, Link):
        url = _safe_url(part.url)
        if url is None:
            return escape_wiki(f"{part.text} ({part.url})")
        return f"[{escape_wiki(part.text)}|{url}]"
    text = escape_wiki(part.text)
    core = text.strip()
    if not part.strong or not core:
        return text
    # Jira's *bold* must hug its text: spaces go outside the asterisks.
    return text[: len(text) - len(text.lstrip())] + f"*{core}*" + text[len(text.rstrip()) :]


def _wiki_line(parts: Iterable[Inline]) -> str:
    line = "".join(_wiki_inline(p) for p in parts)
    return _ZERO_WIDTH_SPACE + line if _LINE_MARKUP.match(line) else line


def _wiki_cell(text: str) -> str:
    return escape_wiki(text) or " "


def _wiki_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"h3. {escape_wiki(block.text)}"
    if isinstance(block, Paragraph):
        return _wiki_line(block.parts)
    if isinstance(block, Bullets):
        return "\n".join(f"* {_wiki_line(item)}" for item in block.items)
    header = "||" + "||".join(_wiki_cell(h) for h in block.header) + "||"
    rows = ["|" + "|".join(_wiki_cell(c) for c in row) + "|" for row in block.rows]
    return "\n".join([header, *rows])


def wiki(blocks: Sequence[Block]) -> str:
    return "\n\n".join(_wiki_block(b) for b in blocks)


def _adf_inline(part: Inline) -> list[dict[str, Any]]:
    if isinstance(part, Link):
        url = _safe_url(part.url)
        if url is None:
            return _adf_text(f"{part.text} ({part.url})")
        return _adf_text(part.text, [{"type": "link", "attrs": {"href": url}}])
    return _adf_text(part.text, [{"type": "strong"}] if part.strong else [])


def _adf_text(text: str, marks: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    text = _collapse(text)
    if not text:  # ADF refuses empty text nodes
        return []
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = marks
    return [node]


def _adf_paragraph(parts: Iterable[Inline]) -> dict[str, Any]:
    return {"type": "paragraph", "content": [n for p in parts for n in _adf_inline(p)]}


def _adf_row(cells: Sequence[str], kind: str) -> dict[str, Any]:
    return {
        "type": "tableRow",
        "content": [{"type": kind, "content": [_adf_paragraph([Text(c)])]} for c in cells],
    }


def _adf_block(block: Block) -> dict[str, Any]:
    if isinstance(block, Heading):
        return {"type": "heading", "attrs": {"level": 3}, "content": _adf_text(block.text)}
    if isinstance(block, Paragraph):
        return _adf_paragraph(block.parts)
    if isinstance(block, Bullets):
        return {
            "type": "bulletList",
            "content": [
                {"type": "listItem", "content": [_adf_paragraph(item)]} for item in block.items
            ],
        }
    return {
        "type": "table",
        "content": [
            _adf_row(block.header, "tableHeader"),
            *(_adf_row(row, "tableCell") for row in block.rows),
        ],
    }


def adf(blocks: Sequence[Block]) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": [_adf_block(b) for b in blocks]}


def adf_text(document: Any) -> str:
    """The text of an ADF document (or of any part of one), for finding a marker in it."""
    if isinstance(document, dict):
        own = document.get("text")
        return (own if isinstance(own, str) else "") + adf_text(document.get("content"))
    if isinstance(document, list):
        return "\n".join(adf_text(node) for node in document)
    return ""


def carries(body: Any, marker: str) -> bool:
    """Whether a comment body as Jira returns it (wiki text or ADF) holds ``marker`` as a
    line of its own: the marker of job 7 is no part of job 70's, nor of a line of text
    quoting it."""
    if isinstance(body, str):
        text, wanted = body, escape_wiki(marker)
    else:
        text, wanted = adf_text(body), marker
    return any(line.strip() == wanted for line in text.splitlines())


def _kpi_row(kpi: KpiRecord) -> tuple[str, ...]:
    deviation = "" if kpi.deviation_pct is None else f"{kpi.deviation_pct:+.1f}%".replace("-", "−")
    at_risk = kpi.revenue_at_risk_per_min
    return (
        kpi.name,
        number(kpi.value, kpi.unit),
        number(kpi.baseline, kpi.unit) + (f" ({kpi.vs})" if kpi.vs else ""),
        deviation,
        f"{at_risk:,.0f}/min" if at_risk else "",
    )


def _cause_row(cause: dict[str, Any]) -> tuple[str, ...]:
    evidence = [str(e) for e in cause.get("evidence") or []]
    return (
        clip(str(cause.get("text", "")), _CELL_MAX),
        number(cause.get("score")),
        clip("; ".join(evidence), _CELL_MAX),
    )


def _listing(names: Sequence[str]) -> str:
    return clip(listing(list(names), _LISTED_MAX) or "none", _CELL_MAX)


def _incident_link(incident: Incident, url: str | None) -> Inline:
    return Link(incident.id, url) if url else Text(incident.id)


def description(incident: Incident, url: str | None) -> list[Block]:
    """The issue description: the narrative, then the evidence an on-call engineer needs."""
    kpis = [KpiRecord.model_validate(k) for k in incident.kpis]
    blocks: list[Block] = [
        Paragraph((Text("Summary: ", strong=True), Text(cut(incident.summary, _SUMMARY_MAX)))),
        Paragraph(
            (
                Text("Priority: ", strong=True),
                Text(f"{incident.priority} (impact score {incident.score:g}/100); "),
                Text("status: ", strong=True),
                Text(incident.status),
            )
        ),
        Paragraph(
            (
                Text("Journey: ", strong=True),
                Text(f"{incident.journey_name} ({incident.journey}); "),
                Text("services: ", strong=True),
                Text(_listing(incident.services) + "; "),
                Text("regions: ", strong=True),
                Text(_listing(incident.regions)),
            )
        ),
        Paragraph(
            (
                Text("Alerts: ", strong=True),
                Text(f"{incident.firing_count} firing of {incident.alert_count}"),
            )
        ),
    ]
    if kpis:
        blocks += [
            Heading("Business KPIs"),
            Table(
                ("KPI", "Now", "Baseline", "Deviation", "Revenue at risk"),
                tuple(_kpi_row(k) for k in kpis),
            ),
        ]
    if incident.probable_causes:
        blocks += [
            Heading("Probable causes"),
            Table(
                ("Cause", "Score", "Evidence"),
                tuple(map(_cause_row, incident.probable_causes[:_LISTED_MAX])),
            ),
        ]
    if incident.runbooks:
        blocks += [
            Heading("Runbooks"),
            Bullets(tuple((Link(rb["title"], rb["url"]),) for rb in incident.runbooks)),
        ]
    if incident.sink_actions:
        blocks += [
            Heading("Suggested actions"),
            Bullets(tuple(_action(a) for a in incident.sink_actions)),
        ]
    blocks.append(Paragraph((Text("Incident: ", strong=True), _incident_link(incident, url))))
    return blocks


def _action(action: dict[str, Any]) -> tuple[Inline, ...]:
    because = action.get("because")
    return (
        Text(clip(str(action.get("title", "")), _CELL_MAX)),
        Text(clip(f" (because: {because})", _CELL_MAX) if because else ""),
    )


def _kpi_lines(incident: Incident) -> list[str]:
    return [
        line for k in incident.kpis if (line := kpi_line(KpiRecord.model_validate(k))) is not None
    ]


def comment(
    headline: str, incident: Incident, changes: Sequence[str], marker: str, url: str | None
) -> list[Block]:
    """A comment: what happened, the changes behind it, where things stand, and ``marker``
    as its last line, so a retried job can tell that it already commented."""
    blocks: list[Block] = [Paragraph((Text(headline, strong=True),))]
    if changes:
        blocks.append(Bullets(tuple((Text(clip(c, _CELL_MAX)),) for c in changes)))
    now = (
        f"Now {incident.priority} (impact score {incident.score:g}/100), "
        f"{incident.firing_count} of {incident.alert_count} alerts firing."
    )
    blocks.append(Paragraph((Text(now), *(Text(f" {line}.") for line in _kpi_lines(incident)))))
    blocks.append(Paragraph((Text("Incident: "), _incident_link(incident, url))))
    blocks.append(Paragraph((Text(marker),)))
    return blocks
