"""Builders for store-level tests: placed alerts and groups without the HTTP layer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from receiver.fingerprint import GroupKey, group_key
from receiver.models import Alert
from receiver.store import AlertGroup, PlacedAlert

STARTS = datetime(2026, 4, 18, 8, 10, tzinfo=UTC)


def key(region: str = "eu", journey: str = "checkout") -> GroupKey:
    return group_key(journey, ["env", "region"], {"env": "prod", "region": region})


def placed(
    fp: str,
    status: str = "firing",
    service: str = "payment-service",
    stage: str | None = "payment",
    region: str = "eu",
    starts_at: datetime = STARTS,
    severity: str = "critical",
    ends_at: datetime | None = None,
) -> PlacedAlert:
    labels = {"alertname": "HighErrorRate", "service": service, "region": region, "env": "prod"}
    return PlacedAlert(
        alert=Alert(
            fingerprint=fp,
            status="firing" if status == "firing" else "resolved",
            labels=labels,
            annotations={"summary": "errors"},
            starts_at=starts_at,
            ends_at=ends_at,
            generator_url="",
        ),
        stage=stage,
        service=service,
        severity=severity,
        region=region,
        impact_class=json.dumps([stage or "", severity, ""]),
    )


def group(*alerts: PlacedAlert, region: str = "eu", journey: str = "checkout") -> AlertGroup:
    return AlertGroup(key(region, journey), list(alerts))
