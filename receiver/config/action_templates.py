"""The fields an action's title and ``run`` name (``receiver/act/template.py``), checked
against what a suggestion and a run have values for, under the receiver.yaml that serves
the journeys (its ``group_by`` is among them).

A field no suggestion or run has is an error (a run refuses a half-filled request, a title
shows it as written). So is a ``${name}`` of such a field: it is an environment variable,
read once when the file is loaded, never the incident's value. A field written the way of
another template language (``{{service}}``, ``{ service }``, ``$service``) is valid but
sent or shown as written: a warning.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator

from receiver.act.template import TITLE_FIELD, strings
from receiver.act.template import fields as template_fields
from receiver.config.fields import Loc
from receiver.config.journeys_yaml import JourneysConfig
from receiver.config.receiver_yaml import ReceiverConfig
from receiver.config.source import Document

# What every run has (docs/actions.md "Template fields"; {incident_url} only with
# server.external_url, which the operators set), and what only an action about a change has.
_RUN_FIELDS = frozenset({"incident_id", "incident_url", "journey", "action", "priority"})
_CHANGE_FIELDS = frozenset({"service", "version", "previous_version"})

_NAME = r"([A-Za-z_][A-Za-z0-9_]*)"
# Jinja's and Go's {{name}}, a field with spaces inside its braces, a KPI query's $name.
_DOUBLE = re.compile(rf"\{{\{{\s*{_NAME}\s*\}}\}}")
_SPACED = re.compile(rf"(?<!\{{)\{{(?:\s+{_NAME}\s*|{_NAME}\s+)\}}(?!\}})")
_DOLLAR = re.compile(rf"(?<!\$)\${_NAME}")


def check_action_templates(config: ReceiverConfig, journeys: JourneysConfig, doc: Document) -> None:
    """Fields an action names that it never has a value for: a run refuses to send a
    half-filled request (every run fails, the first time at an incident), and a title
    shows the field as written. Said here, where the typo is."""
    for i, journey in enumerate(journeys.journeys):
        group_by = journey.group_by if journey.group_by is not None else config.grouping.group_by
        shown = _CHANGE_FIELDS | set(group_by)  # what a suggestion's title is filled with
        known = _RUN_FIELDS | shown
        labels = ", ".join("{" + name + "}" for name in group_by) or "none"
        for j, action in enumerate(journey.actions):
            at: Loc = ("journeys", i, "actions", j)
            _environment_variables(at, known, doc)
            title = sorted(set(TITLE_FIELD.findall(action.title)) - shown)
            if title:
                doc.add(
                    (*at, "title"),
                    f"names {_fields_said(title, shown)}, which a suggestion has no value for: "
                    "the title would show it as written. A title may name the change's "
                    f"{{service}}, {{version}}, {{previous_version}} and the journey's group "
                    f"labels ({labels})",
                )
            # Said only of what a title can name: {incident_id} would be refused there.
            for reason in _other_syntax(action.title, shown, title=True):
                doc.warn((*at, "title"), reason)
            if action.run is None:
                continue
            run = action.run.webhook
            texts: list[tuple[Loc, list[str]]] = [(("url",), [run.url])]
            texts += [(("headers", k), [v.get_secret_value()]) for k, v in run.headers.items()]
            texts.append((("body",), list(strings(run.body)) if run.body is not None else []))
            # The change's fields exist only with when.change_type; the service also for
            # an incident of one service, or when it is a group label.
            of_a_change = {"version", "previous_version"}
            if not (action.when.single_service or "service" in group_by):
                of_a_change.add("service")
            for where, parts in texts:
                named = {name for text in parts for name in template_fields(text)}
                loc: Loc = (*at, "run", "webhook", *where)
                for text in parts:
                    for reason in _other_syntax(text, known, title=False):
                        doc.warn(loc, reason)
                unknown = sorted(named - known)
                if unknown:
                    doc.add(
                        loc,
                        f"names {_fields_said(unknown, known)}, which no run has a value for: "
                        "every run would be refused. A run has {incident_id}, {incident_url}, "
                        "{journey}, {action}, {priority}, the change's {service}, {version}, "
                        f"{{previous_version}} and the journey's group labels ({labels})",
                    )
                changed = sorted(named & of_a_change) if action.when.change_type is None else []
                if changed:
                    doc.add(
                        loc,
                        f"names {', '.join('{' + n + '}' for n in changed)}, which only an action "
                        "with when.change_type has a value for: without it every run would be "
                        "refused",
                    )


def _environment_variables(at: Loc, known: frozenset[str], doc: Document) -> None:
    """``${service}`` in a title or run: the loader put the environment's value there
    (a team lead's check, which needs no variable set, put nothing), never the field."""
    for loc, names in doc.references.items():
        if loc[: len(at) + 1] not in ((*at, "title"), (*at, "run")):
            continue
        for name in dict.fromkeys(names):
            if name in known:
                doc.add(
                    loc,
                    f"${{{name}}} is an environment variable, read once when the file is "
                    f"loaded: a field is written {{{name}}}",
                )


def _other_syntax(text: str, known: frozenset[str], *, title: bool) -> Iterator[str]:
    """What ``text`` writes as one of the fields ``known`` in another template language's
    way, in order."""
    found: list[tuple[int, str]] = []
    for match in _DOUBLE.finditer(text):
        name = match.group(1)
        if name not in known:
            continue  # {{x}}: a literal brace, as the run templates write it
        written = match.group(0)
        before = text[: match.start()]
        if not title and (len(before) - len(before.rstrip("{"))) % 2:
            # Mustache's {{{service}}}: {{ is read first, then {service}, a field.
            written = "{" + written + "}"
            said = "is sent as its value in braces"
        elif not title:
            said = f"is sent as the text {written[1:-1]} (double braces are a literal brace)"
        elif TITLE_FIELD.search(written):
            said = "is shown as its value in braces"
        else:
            said = "is shown as written"
        found.append((match.start(), f"{written} {said}: a field is written {{{name}}}"))
    if title:  # in a run's template a lone brace is refused already
        for match in _SPACED.finditer(text):
            name = match.group(1) or match.group(2)
            if name not in known:
                continue  # words in braces, no field of any language
            found.append(
                (
                    match.start(),
                    f"{match.group(0)} is shown as written: a field is written {{{name}}}",
                )
            )
    for match in _DOLLAR.finditer(text):
        name = match.group(1)
        if name in known:
            verb = "shown" if title else "sent"
            found.append(
                (
                    match.start(),
                    f"${name} is {verb} as written ($name is how a KPI query names a label): "
                    f"a field is written {{{name}}}",
                )
            )
    for _, reason in sorted(found, key=lambda item: item[0]):
        yield reason


def _fields_said(names: list[str], known: set[str] | frozenset[str]) -> str:
    said = []
    for name in names:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        said.append("{" + name + "}" + (f" (did you mean {{{close[0]}}}?)" if close else ""))
    return ", ".join(said)
