"""Text fit for a log line, an error or a dead letter: on one line, cut short, secrets out.

Alert labels and annotations, vendors' answers and exception messages all end up there.
"""

from __future__ import annotations

from collections.abc import Iterable

DETAIL_MAX = 300


def clip(text: str, limit: int = DETAIL_MAX) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    return cut(" ".join(text.split()), limit)


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
