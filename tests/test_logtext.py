"""Text bound for logs, errors, dead letters and sinks: one line, cut short, secrets out,
bidirectional controls shown."""

from __future__ import annotations

from markupsafe import Markup

from receiver.logtext import DETAIL_MAX, clip, redact, unturned
from receiver.sinks.jira_markup import Paragraph, Text, adf, escape_wiki
from receiver.sinks.slack_blocks import escape


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


def test_bidirectional_controls_are_shown_never_obeyed_wherever_alert_text_goes() -> None:
    # A region ending in U+202E would turn the rest of a title around in every sink.
    title = "checkout/eu\u202e P2 — 1 alert in payment-service"
    shown = "checkout/eu\\u202e P2 — 1 alert in payment-service"
    assert unturned(title) == clip(title) == shown
    assert unturned("\u2066a\u2069 \u202ab\u202c") == "\\u2066a\\u2069 \\u202ab\\u202c"
    assert escape(title) == shown  # Slack mrkdwn
    # Jira wiki markup, whose backslash is drawn by a lookalike (a backslash escapes there).
    assert escape_wiki(title).startswith("checkout/eu\u29f5u202e P2")
    document = adf([Paragraph((Text(title),))])  # Jira's ADF
    assert document["content"][0]["content"][0]["text"] == shown
    # Markup a page made stays markup; a text without a control is the same object.
    assert isinstance(unturned(Markup("<b>eu\u202e</b>")), Markup)
    plain = "checkout/eu P2"
    assert unturned(plain) is plain
