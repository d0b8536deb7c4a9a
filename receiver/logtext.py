"""Text fit for a log line, an error, a dead letter or a title in a sink: on one line, cut
short, secrets out, and no bidirectional control obeyed.

Alert labels and annotations, vendors' answers and exception messages all end up there.
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
    """``text`` on one line, its bidirectional controls shown, cut to ``limit`` characters."""
    return cut(unturned(" ".join(text.split())), limit)


def unturned(text: str) -> str:
    """``text`` with each bidirectional control shown as its escape (``\\u202e``), of the
    same type (markup a page made stays markup: the escape is plain text)."""
    if not _BIDI.search(text):
        return text
    return type(text)(_BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` from a client (a request's path) fit for a log line: every control
    character (line breaks, ESC) shown as its escape, so it can neither start a line of
    its own nor steer the terminal that shows the log."""
    return unturned(
        _CONTROL.sub(
            lambda m: (
                f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"
            ),
            text,
        )
    )


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
