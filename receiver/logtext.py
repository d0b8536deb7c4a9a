"""Text fit for a log line, an error, a dead letter or a field a sink sends: on one line
(or on its own lines, where the field holds several), cut short, secrets out, and no
control character or bidirectional control obeyed.

Alert labels and annotations, vendors' answers and exception messages all end up there.
Every sink sends its text through :func:`printable` (most of it through :func:`one_line` or
:func:`clip`), so what is not text reaches no vendor as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DETAIL_MAX = 300

# Bidirectional controls (embeddings, overrides, isolates): in alert text they would turn
# the words after them around wherever it is shown (a region ending in U+202E reverses the
# rest of the title), so they are shown as escapes instead.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def clip(text: str, limit: int = DETAIL_MAX) -> str:
    """``text`` on one line (:func:`one_line`), cut to ``limit`` characters."""
    return cut(one_line(text), limit)


def one_line(text: str) -> str:
    """``text`` on one line, each run of whitespace one space, and whatever else is not
    text shown as its escape (:func:`printable`)."""
    return printable(" ".join(text.split()))


def unturned(text: str) -> str:
    """``text`` with each bidirectional control shown as its escape (``\\u202e``), of the
    same type (markup a page made stays markup: the escape is plain text)."""
    if not _BIDI.search(text):
        return text
    return type(text)(_BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


# What is not text: C0 controls, DEL and C1 controls (a terminal obeys ESC and U+009B;
# PostgreSQL, under Jira, refuses NUL, so the issue would never be filed), line and
# paragraph separators, surrogates (a lone one cannot be encoded, so the request would
# never be sent) and non-characters (XML refuses U+FFFE: Jira's exports would fail).
_NON_CHARACTERS = "".join(
    f"{chr(p | 0xFFFE)}-{chr(p | 0xFFFF)}" for p in range(0, 0x110000, 0x10000)
)
_NOT_TEXT = "\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufdd0-\ufdef" + _NON_CHARACTERS
_NOT_A_LINE = re.compile(f"[{_NOT_TEXT}]")
# In text of several lines, a line break and a tab are text.
_NOT_LINES = re.compile(f"(?![\t\n])[{_NOT_TEXT}]")


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every character that is not text (control characters, line breaks
    among them; surrogates; non-characters) and every bidirectional control shown as its
    escape (``\\x1b``, ``\\u2028``), so that it can neither start a line of its own, nor steer
    the terminal that shows it, nor make a vendor refuse it. With ``lines``, for a field
    that holds several lines, line breaks (``\\r\\n`` as ``\\n``) and tabs are kept."""
    if lines:
        text = text.replace("\r\n", "\n")
    pattern = _NOT_LINES if lines else _NOT_A_LINE
    if pattern.search(text):
        text = pattern.sub(_escape, text)
    return unturned(text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, its last one "…" when it is cut; line breaks
    are kept."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each of ``secrets`` (in the order given: longest first, where one may
    hold another) replaced; empty or missing ones are skipped."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text
