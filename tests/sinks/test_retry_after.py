"""``Retry-After`` as every HTTP sink reads it: a sink's header is untrusted text."""

from __future__ import annotations

import time

import pytest

from receiver.sinks._http import retry_after

NOW = 1_776_500_000.0


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Sat, 18 Apr 2026 08:13:40 GMT", 20.0),
        ("Sat, 18 Apr 2026 08:00:00 GMT", 0.0),  # a date gone by: at once
        ("31536000", 3600.0),  # a year: an hour at most
        ("Sun, 18 Apr 2027 08:13:20 GMT", 3600.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # delta-seconds are whole
        ("\u00b2", None),  # a digit to str.isdigit() (latin-1 header byte 0xB2), none to float()
        ("\u0663", None),  # an Arabic-Indic three: not HTTP's digits
    ],
)
def test_retry_after_reads_seconds_or_a_date_and_nothing_else(
    header: str | None, wait: float | None
) -> None:
    assert retry_after(header, NOW) == wait


@pytest.mark.parametrize(
    "header",
    [
        "Sat Apr 18 08:13:40 2026",  # asctime, one of HTTP's obsolete forms (RFC 9110 §5.6.7)
        "Sat, 18 Apr 2026 08:13:40 -0000",  # RFC 5322's "UTC, local zone unknown"
    ],
)
def test_a_retry_after_date_without_a_zone_is_gmt_not_the_servers_local_time(
    header: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HTTP dates are always GMT; read in the server's zone (India: 5.5 h ahead) it would be
    # an hour's wait (the cap) instead of 20 s, and west of Greenwich a retry at once.
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert retry_after(header, NOW) == 20.0
    finally:
        monkeypatch.undo()
        time.tzset()
