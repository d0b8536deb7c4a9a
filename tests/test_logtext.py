"""Text bound for logs, errors, dead letters and sinks: one line, cut short, secrets out,
bidirectional controls shown."""

from __future__ import annotations

from markupsafe import Markup

from receiver.logtext import DETAIL_MAX, clip, one_line, printable, redact, unturned
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


def test_what_is_not_text_is_shown_as_its_escape_lines_kept_where_asked() -> None:
    # NUL (PostgreSQL under Jira refuses it), ESC and a C1 CSI (terminals obey them), DEL,
    # a line separator, a lone surrogate (UTF-8 cannot carry it), non-characters.
    text = "a\x00b\x1b[31mc\x7fd\x9b2Je\u2028f\ud800g\ufffeh\U0010ffff\u202e"
    shown = "a\\x00b\\x1b[31mc\\x7fd\\x9b2Je\\u2028f\\ud800g\\ufffeh\\U0010ffff\\u202e"
    assert printable(text) == shown
    assert clip(text) == shown.replace("\\u2028", " ")  # a line separator is whitespace
    assert printable("one\r\n\ttwo\rthree\n") == "one\\x0d\\x0a\\x09two\\x0dthree\\x0a"
    # A field of several lines keeps its lines and tabs, CRLF read as a line break.
    assert printable(f"one\r\n\ttwo\rthree {text}\n", lines=True) == (
        f"one\n\ttwo\\x0dthree {shown}\n"
    )
    # One line: whitespace (a line separator among it) folded, the rest shown.
    assert one_line(" a\n\x00 \u2028 b ") == "a \\x00 b"
    plain = "checkout/eu P1 — ünïcödé 🙂"
    assert printable(plain) is plain
