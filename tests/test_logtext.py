"""Text bound for logs, errors and dead letters: one line, cut short, secrets out."""

from __future__ import annotations

from receiver.logtext import DETAIL_MAX, clip, redact


def test_clip_puts_text_on_one_line_and_marks_the_cut() -> None:
    assert clip("a\n  b\tc") == "a b c"
    cut = clip("x" * (DETAIL_MAX + 5))
    assert (len(cut), cut[-1]) == (DETAIL_MAX, "…")
    assert clip("abcdef", 4) == "abc…"
    assert clip("abcd", 4) == "abcd"


def test_redact_replaces_every_secret_given_and_skips_missing_ones() -> None:
    text = "token=s3cr3t url=https://u:pw@host s3cr3t"
    assert redact(text, ["s3cr3t", None, "", "pw"]) == (
        "token=<redacted> url=https://u:<redacted>@host <redacted>"
    )
