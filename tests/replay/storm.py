"""A storm with known answers, as Prometheus' ``ALERTS`` series in OpenMetrics.

Minutes from ``T0``, one rule evaluation a minute; an alert firing ``[start, end)`` has a
sample at each minute from ``start`` to ``end - 1``:

- A, B  PaymentErrors on payment-service and payments-db in eu, critical, 0–20
- C     CartLatency on cart-api in eu, warning, 2–15
- D     CartLatency on cart-api in us, warning, 30–50 (alone in us)
- E     SearchSlow on search-api in eu, warning, 5–35
- F     PaymentErrors on payment-service in us, critical, 60–61: one evaluation. Alertmanager
        (group_wait 10s, group_interval 30s) sends it firing at 60:10 and resolved at
        61:10, inside the receiver's group_wait of 2m: a blip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

T0 = datetime(2026, 4, 18, 8, 0, tzinfo=UTC)

STORM = [
    ("PaymentErrors", "payment-service", "eu", "critical", 0, 20),
    ("PaymentErrors", "payments-db", "eu", "critical", 1, 20),
    ("CartLatency", "cart-api", "eu", "warning", 2, 15),
    ("CartLatency", "cart-api", "us", "warning", 30, 50),
    ("SearchSlow", "search-api", "eu", "warning", 5, 35),
    ("PaymentErrors", "payment-service", "us", "critical", 60, 61),
]


def openmetrics() -> str:
    """``ALERTS`` for ``STORM``; pending samples too, which a replay must leave out."""
    start = int(T0.timestamp())
    lines = ["# TYPE ALERTS gauge"]
    for alertname, service, region, severity, first, end in STORM:
        for state, minutes in (("pending", [first - 1]), ("firing", range(first, end))):
            labels = (
                f'alertname="{alertname}",alertstate="{state}",env="prod",region="{region}",'
                f'service="{service}",severity="{severity}"'
            )
            lines += [f"ALERTS{{{labels}}} 1 {start + 60 * m}" for m in minutes]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


WINDOW = [
    "--since", "2026-04-18T07:50:00Z",
    "--until", "2026-04-18T09:30:00Z",
    "--am-group-wait", "10s",
    "--am-group-interval", "30s",
]  # fmt: skip
"""The storm's window, and Alertmanager's timers short enough to show blips."""


def replay_argv(url: str, *extra: str) -> list[str]:
    """``journey-receiver replay`` over the storm's ``WINDOW`` with the test receiver.yaml."""
    return [
        "replay",
        "--prometheus", url,
        "--config", str(Path(__file__).parent / "data" / "receiver.yaml"),
        *WINDOW,
        *extra,
    ]  # fmt: skip
