"""Firing intervals → Alertmanager's batches (``receiver/replay/batches.py``) and ALERTS
points → firing intervals (``receiver/replay/history.py``), on Alertmanager's timers."""

from __future__ import annotations

from receiver.normalize import labels_fingerprint
from receiver.replay.batches import Notification, Route, plan
from receiver.replay.history import Firing, firings, grid

S = 1000
M = 60 * S
ROUTE = Route(("alertname",), group_wait_ms=10 * S, group_interval_ms=30 * S,
              repeat_interval_ms=4 * 60 * M)  # fmt: skip


def firing(start_s: float, end_s: float | None, alertname: str = "Down", **labels: str) -> Firing:
    own = {"alertname": alertname, "service": "api", **labels}
    return Firing(labels_fingerprint(own), own, round(start_s * S),
                  None if end_s is None else round(end_s * S))  # fmt: skip


def sent(notifications: list[Notification]) -> list[tuple[float, list[tuple[str, str]]]]:
    """(seconds, [(service, status), ...]) per batch."""
    return [
        (n.at_ms / S, [(a.labels["service"], a.status) for a in n.message.alerts])
        for n in notifications
    ]


def test_the_first_batch_waits_group_wait_then_changes_go_every_group_interval() -> None:
    result = plan([firing(0, 100, service="api"), firing(12, 200, service="db")], ROUTE, 3600 * S)
    assert sent(result.notifications) == [
        (10.0, [("api", "firing")]),
        # db arrived at 12 s: sent with the group's next flush, not at once.
        (40.0, [("api", "firing"), ("db", "firing")]),
        (100.0, [("api", "resolved"), ("db", "firing")]),
        # api left the group after its resolve was sent; the last resolve ends the group.
        (220.0, [("db", "resolved")]),
    ]
    assert result.groups == [
        frozenset({firing(0, 1).fingerprint, firing(12, 1, service="db").fingerprint})
    ]


def test_an_alert_that_comes_and_goes_before_group_wait_is_never_sent() -> None:
    assert plan([firing(0, 5)], ROUTE, 3600 * S).notifications == []
    assert plan([firing(0, 5)], ROUTE, 3600 * S).groups == []


def test_an_emptied_group_ends_and_the_next_alert_waits_group_wait_again() -> None:
    result = plan([firing(0, 20), firing(100, 200)], ROUTE, 3600 * S)
    assert [n.at_ms / S for n in result.notifications] == [10.0, 40.0, 110.0, 200.0]
    assert len(result.groups) == 2


def test_nothing_new_is_sent_again_only_after_repeat_interval() -> None:
    route = Route(("alertname",), 10 * S, 30 * S, repeat_interval_ms=10 * M)
    result = plan([firing(0, None)], route, 25 * M)
    # Flushes every 30 s; the repeat goes with the first flush past 10 min after the last.
    assert [n.at_ms / S for n in result.notifications] == [10.0, 640.0, 1270.0]


def test_groups_follow_group_by_and_a_missing_label_is_an_empty_value() -> None:
    route = Route(("alertname", "region"), 10 * S, 30 * S, 4 * 60 * M)
    alerts = [
        firing(0, 50, region="eu"),
        firing(0, 50, service="db", region="eu"),
        firing(0, 50, region="us"),
        firing(0, 50, service="web"),
    ]
    result = plan(alerts, route, 3600 * S)
    first = [n.message for n in result.notifications if n.at_ms == 10 * S]
    assert sorted(len(m.alerts) for m in first) == [1, 1, 2]
    assert {m.group_key for m in first} == {
        '{}:{alertname="Down", region="eu"}',
        '{}:{alertname="Down", region="us"}',
        '{}:{alertname="Down"}',
    }
    everything = Route(("...",), 10 * S, 30 * S, 4 * 60 * M)
    assert len(plan(alerts, everything, 3600 * S).groups) == 4


def test_a_batch_is_a_webhook_message_with_alertmanagers_fingerprints() -> None:
    alert = firing(0, 40)
    (first, last) = plan([alert], ROUTE, 3600 * S).notifications
    (a,) = first.message.alerts
    assert (first.message.status, a.status, a.fingerprint) == (
        "firing",
        "firing",
        alert.fingerprint,
    )
    assert a.starts_at is not None and a.starts_at.timestamp() == 0
    (b,) = last.message.alerts
    assert (last.message.status, b.status) == ("resolved", "resolved")
    assert b.ends_at is not None and b.ends_at.timestamp() == 40


def test_nothing_is_sent_after_the_window() -> None:
    result = plan([firing(0, None), firing(100, None, service="db")], ROUTE, 60 * S)
    assert [n.at_ms / S for n in result.notifications] == [10.0]


def test_consecutive_points_make_one_firing_ending_one_step_after_the_last() -> None:
    labels = {"__name__": "ALERTS", "alertstate": "firing", "alertname": "Down"}
    points = [0, 60, 120, 300, 360, 600]
    (a, b, c) = firings([(labels, [t * S for t in points])], 60 * S, 600 * S)
    assert [(f.start_ms // S, None if f.end_ms is None else f.end_ms // S) for f in (a, b, c)] == [
        (0, 180),
        (300, 420),
        (600, None),  # still firing at the window's last point
    ]
    assert a.labels == {"alertname": "Down"}
    assert a.fingerprint == labels_fingerprint({"alertname": "Down"})


def test_the_window_is_read_on_a_grid_of_whole_steps() -> None:
    assert grid(61 * S, 600 * S + 5, 60 * S) == (120 * S, 600 * S)
