"""Templates of an action's ``run``: ``{name}`` fields filled from a run's values.

Only plain names are fields (``{service}``, ``{incident_id}``, ``{region}``); ``{{`` and
``}}`` are literal braces; anything else with a brace is an error when the config is
loaded. Unlike ``str.format`` a field cannot reach attributes or indexes, and unlike
``receiver.actions.render`` an unknown name is an error, never sent as written: a run
acts on a real system and must not do so with a half-filled request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from pydantic import JsonValue

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class MissingValues(KeyError):
    """A template names values the run does not have."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(names)

    def __str__(self) -> str:
        shown = ", ".join("{" + name + "}" for name in self.names)
        return f"the template names {shown}, which this incident has no value for"


TITLE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""A ``{name}`` of an action's title: filled where known, else left as written (a title
is words for people, not a template that must parse)."""


def fields(template: str) -> list[str]:
    """The names ``template`` uses, in order; ValueError on a stray brace or a field that
    is not a plain name."""
    names: list[str] = []
    for found in _TOKEN.finditer(template):
        text = found.group(0)
        if text in ("{{", "}}"):
            continue
        name = found.group(1)
        if name is None:
            raise ValueError(
                f"stray {text!r} at character {found.start()}: fields are plain names like "
                "{service}; write {{ or }} for a literal brace"
            )
        names.append(name)
    return names


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every field filled; MissingValues names every unknown one."""
    missing = sorted({name for name in fields(template) if name not in values})
    if missing:
        raise MissingValues(missing)

    def fill(found: re.Match[str]) -> str:
        text = found.group(0)
        if text == "{{":
            return "{"
        if text == "}}":
            return "}"
        return values[found.group(1)]

    return _TOKEN.sub(fill, template)


def strings(value: JsonValue) -> Iterator[str]:
    """Every string in a JSON-shaped template, keys left out: the ones that are filled."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
