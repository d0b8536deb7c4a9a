"""Alertmanager label matchers (``service=~"payment.*"``), parsed once at config load.

Parsing follows Alertmanager's classic ``labels.ParseMatcher`` (pkg/labels/parse.go) and
matching its ``labels.Matcher``: regexes are anchored at both ends and a label the alert
does not carry counts as the empty string, so ``team!="x"`` and ``team=~".*"`` match it.

Regexes run on RE2, the engine behind Go's regexp: the same syntax Alertmanager accepts,
and matching in linear time, so an untrusted label value cannot make a matcher hang.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import re2

MatchOp = Literal["=", "!=", "=~", "!~"]

# Go's \s is ASCII whitespace only and its $ means end of text (Python's \Z), hence the
# spelled-out classes. '=~' precedes '=' so that '=~' is not read as '=' plus a value '~…'.
_WS = r"[\t\n\f\r ]*"
_SYNTAX = re.compile(rf"{_WS}([a-zA-Z_:][a-zA-Z0-9_:]*){_WS}(=~|=|!=|!~){_WS}(.*?){_WS}", re.DOTALL)
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error comes back as ValueError; no stray stderr lines
_UNESCAPES = {"n": "\n", '"': '"', "\\": "\\"}
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


@dataclass(frozen=True, slots=True)
class Matcher:
    """One ``name op value`` condition on an alert's labels."""

    name: str
    op: MatchOp
    value: str
    _regex: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = None
        if self.op in ("=~", "!~"):
            try:
                # fullmatch is Alertmanager's ^(?:value)$ without breaking a leading (?i).
                regex = re2.compile(self.value, _RE2_OPTIONS)
            except re2.error as exc:
                text = exc.args[0].decode() if isinstance(exc.args[0], bytes) else exc.args[0]
                reason = text.split(": ", 1)[0]  # RE2 appends the offending part again
                raise ValueError(f"invalid regex {_quote(self.value)}: {reason}") from None
        elif self.op not in ("=", "!="):
            raise ValueError(f"unknown matcher operator {_quote(self.op)}")
        object.__setattr__(self, "_regex", regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self._regex is None:
            return (value == self.value) == (self.op == "=")
        return (self._regex.fullmatch(value) is not None) == (self.op == "=~")

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value.translate(_ESCAPES)}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher as Alertmanager does; ``ValueError`` says what is wrong."""
    found = _SYNTAX.fullmatch(text)
    if found is None:
        raise ValueError(
            f"bad matcher {_quote(text)}: expected name, operator (=, !=, =~, !~) and value"
        )
    name, op, raw = found.groups()
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    value: list[str] = []
    escaped = False
    last = len(raw) - 1
    for i, char in enumerate(raw):
        if escaped:
            escaped = False
            # A backslash before anything else is a literal backslash, as in Alertmanager.
            value.append(_UNESCAPES.get(char, "\\" + char))
        elif char == "\\" and i < last:
            escaped = True
        elif char == '"':
            if not quoted or i < last:
                raise ValueError(f"bad matcher {_quote(text)}: unescaped double quote in value")
            quoted = False
        else:
            value.append(char)
    if quoted:
        raise ValueError(f"bad matcher {_quote(text)}: missing closing double quote")
    return Matcher(name, cast(MatchOp, op), "".join(value))


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
