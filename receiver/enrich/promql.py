"""Group label values into a KPI's PromQL without letting a value change the query.

A KPI query names the incident's group labels as ``$region`` or ``${region}``. The values
are alert label text, which anyone who can fire an alert controls, so they are written into
the query only inside string literals, escaped by the rules of Prometheus's lexer
(``promql/parser/lex.go``: ``lexString`` and ``lexEscape``, Go's escapes):

- ``\\`` and the literal's own quote are backslash-escaped; a raw newline would end the
  literal with an error, so ``\\n``, ``\\r``, ``\\t``, ``\\a``, ``\\b``, ``\\f``, ``\\v``
  are written as escapes and every other control or invisible format character as
  ``\\uXXXX``; so is U+FFFD, which the lexer would take for invalid UTF-8.
- A value that is not valid Unicode (a lone surrogate) is refused.
- In the operand of a regex matcher (``=~``, ``!~``) the value is first regex-quoted
  (Go's ``regexp.QuoteMeta``), so ``.*`` matches the two characters, not every region.

A placeholder outside a string literal (``rate(x[$window])``), inside a raw backtick
literal (no escapes exist there) or naming a label the incident does not have is an
``EnrichmentError``: such a query could not be made safe, or would silently ask for the
wrong series. ``$$`` is a literal ``$`` (write ``$$name`` for label_replace's named group
reference); a ``$`` followed by neither a name nor ``{`` (``"eu.*$"``, ``"$1"``) is left
alone, and so is ``${1}``. Comments (``# ...``) are copied unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from receiver.enrich import EnrichmentError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_GROUP_REF = re.compile(r"[0-9]|\{[0-9]+\}")
"""``$1``, ``${1}``: capture-group references of label_replace, not placeholders."""
_SPACE = " \t\r\n"
_NAMED_ESCAPES = {
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}
# Control, format (bidi overrides, zero-width), line/paragraph separators: escaped so the
# query is readable in logs; escaping never changes the value Prometheus sees.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_REGEX_META = frozenset("\\.+*?()|[]{}^$")


def escape_string(value: str, quote: str = '"') -> str:
    """``value`` as the inside of a PromQL string literal delimited by ``quote``."""
    if quote not in ('"', "'"):
        raise ValueError("quote must be ' or \"")
    out: list[str] = []
    for ch in value:
        code = ord(ch)
        if ch == quote:
            out.append("\\" + ch)
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif 0xD800 <= code <= 0xDFFF:
            raise EnrichmentError(f"label value has an invalid Unicode code point U+{code:04X}")
        elif ch == "\ufffd" or unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def escape_regex(value: str) -> str:
    """``value`` as an RE2 pattern that matches exactly it (Go's ``regexp.QuoteMeta``)."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in value)


def substitute(query: str, labels: Mapping[str, str]) -> str:
    """``query`` with each ``$name``/``${name}`` replaced by the escaped ``labels[name]``.

    Raises ``EnrichmentError`` when a placeholder is outside a string literal, in a raw
    string, malformed, or names a label not in ``labels``; or when the query has an
    unterminated string literal.
    """
    out: list[str] = []
    for part in _parts(query):
        if isinstance(part, _Literal):
            out.append(part.quote + _fill(part, labels) + part.quote)
        else:
            out.append(part.text)
    return "".join(out)


def placeholders(query: str) -> frozenset[str]:
    """The label names ``query`` uses; raises ``EnrichmentError`` like ``substitute``.

    Lets a config check report a query that could never be substituted before any
    incident needs it.
    """
    names: set[str] = set()
    for part in _parts(query):
        if isinstance(part, _Literal):
            names.update(name for name in _names(part) if name is not None)
    return frozenset(names)


_CLOSES = {")": "(", "]": "[", "}": "{"}


def check_brackets(query: str) -> None:
    """Raise ``EnrichmentError`` when the brackets of ``query`` outside its strings and
    comments do not pair up: Prometheus would refuse it at every read (the KPI lost in
    the middle of an incident), and ``rules`` would cut a broken rule from it. A query
    whose strings cannot be split is left to ``placeholders``, which says why."""
    try:
        parts = list(_parts(query))
    except EnrichmentError:
        return
    opened: list[tuple[str, int]] = []
    at = 0
    for part in parts:
        text = part.text if isinstance(part, _Code) else part.quote + part.body + part.quote
        if isinstance(part, _Code) and not text.startswith(("#", "`")):
            for offset, ch in enumerate(text):
                column = at + offset + 1
                if ch in "([{":
                    opened.append((ch, column))
                elif ch in _CLOSES:
                    if not opened:
                        raise EnrichmentError(f"unmatched {ch} at column {column}")
                    bracket, where = opened.pop()
                    if bracket != _CLOSES[ch]:
                        raise EnrichmentError(
                            f"{ch} at column {column} closes the {bracket} at column {where}"
                        )
        at += len(text)
    if opened:
        bracket, where = opened[-1]
        raise EnrichmentError(f"unclosed {bracket} at column {where}")


@dataclass(frozen=True, slots=True)
class _Code:
    text: str
    """Query text outside string literals, or a comment; copied unchanged."""


@dataclass(frozen=True, slots=True)
class _Literal:
    quote: str
    body: str
    """Between the quotes, escapes as written."""
    regex: bool
    """The operand of ``=~`` or ``!~``."""
    column: int


def _parts(query: str) -> Iterator[_Code | _Literal]:
    """Split ``query`` the way Prometheus's lexer does: code, comments, string literals."""
    i = 0
    start = 0
    n = len(query)
    while i < n:
        ch = query[i]
        if ch == "#":
            end = query.find("\n", i)
            end = n if end == -1 else end
            yield from _code(query[start:i], start)
            yield _Code(query[i:end])
            i = start = end
        elif ch in "\"'`":
            yield from _code(query[start:i], start)
            end = _literal_end(query, i)
            body = query[i + 1 : end]
            if ch == "`":
                if _has_placeholder(body):
                    raise EnrichmentError(
                        f"placeholder in the raw string at column {i + 1}, where a value "
                        "cannot be escaped: use a double-quoted string"
                    )
                yield _Code(query[i : end + 1])
            else:
                yield _Literal(ch, body, _after_regex_operator(query, i), i + 1)
            i = start = end + 1
        else:
            i += 1
    yield from _code(query[start:], start)


def _code(text: str, offset: int) -> Iterator[_Code]:
    dollar = text.find("$")
    while dollar != -1:
        rest = text[dollar + 1 :]
        if _NAME.match(rest) or rest.startswith("{"):
            raise EnrichmentError(
                f"placeholder at column {offset + dollar + 1} is outside a string literal; "
                'a label value can only be inserted quoted, e.g. region="$region"'
            )
        dollar = text.find("$", dollar + 1)
    if text:
        yield _Code(text)


def _literal_end(query: str, open_at: int) -> int:
    quote = query[open_at]
    i = open_at + 1
    while i < len(query):
        ch = query[i]
        if ch == "\\" and quote != "`":
            i += 2
            continue
        if ch == quote:
            return i
        if ch == "\n" and quote != "`":
            break
        i += 1
    raise EnrichmentError(f"unterminated string literal at column {open_at + 1}")


def _after_regex_operator(query: str, open_at: int) -> bool:
    before = query[:open_at].rstrip(_SPACE)
    return before.endswith(("=~", "!~"))


def _has_placeholder(body: str) -> bool:
    return any(True for _ in _placeholders(body))


def _placeholders(body: str) -> Iterator[tuple[int, int, str | None]]:
    """(start, end, name) of each ``$`` token in a literal body; name None for ``$$``."""
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        if ch != "$":
            i += 1
            continue
        rest = body[i + 1 :]
        if rest.startswith("$"):
            yield i, i + 2, None
            i += 2
        elif _GROUP_REF.match(rest):
            i += 1
        elif rest.startswith("{"):
            braced = _BRACED.match(rest)
            if braced is None:
                raise EnrichmentError(
                    "malformed placeholder: ${ must be followed by a label name and }"
                )
            yield i, i + 1 + braced.end(), braced.group(1)
            i += 1 + braced.end()
        elif (plain := _NAME.match(rest)) is not None:
            yield i, i + 1 + plain.end(), plain.group(0)
            i += 1 + plain.end()
        else:
            i += 1


def _names(literal: _Literal) -> Iterator[str | None]:
    for _start, _end, name in _placeholders(literal.body):
        yield name


def _fill(literal: _Literal, labels: Mapping[str, str]) -> str:
    out: list[str] = []
    done = 0
    for start, end, name in _placeholders(literal.body):
        out.append(literal.body[done:start])
        if name is None:
            out.append("$")
        else:
            if name not in labels:
                have = ", ".join(sorted(labels)) or "none"
                raise EnrichmentError(
                    f'query uses ${name} but the incident has no "{name}" label '
                    f"(its group labels: {have})"
                )
            value = escape_regex(labels[name]) if literal.regex else labels[name]
            out.append(escape_string(value, literal.quote))
        done = end
    out.append(literal.body[done:])
    return "".join(out)
