"""Untrusted text (alert labels, a vendor's error) as the CLI prints it on a terminal."""

from __future__ import annotations

from receiver.logtext import clip

LINE = 160
"""What ``shown`` cuts text to: a line of a wide terminal."""


def escaped(text: str) -> str:
    """``text`` safe on a terminal at any length: every character that does not print
    (controls, line breaks, C1 escapes, bidi overrides) escaped."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def shown(text: str) -> str:
    """``text`` safe on a terminal (``escaped``) and cut to one line of ``LINE``
    characters."""
    return clip(escaped(text), LINE)
