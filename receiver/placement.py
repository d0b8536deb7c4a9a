"""Where each alert of a batch belongs: journey, stage, incident key, impact class. Pure.

Runs for every alert of every webhook, so it stays lean: the catalog memoises its match,
and each incident key is built once per group, not once per alert.
"""

from __future__ import annotations

from collections.abc import Mapping

from receiver.fingerprint import GroupKey, group_values, key_of
from receiver.models import UNKNOWN_SERVICE, Batch
from receiver.scoring import impact_class
from receiver.settings import Settings
from receiver.store import AlertGroup, PlacedAlert

# Which label names the service an alert is about, in order of preference.
SERVICE_LABELS = ("service", "app", "job")
REGION_LABEL = "region"


def service_of(labels: Mapping[str, str]) -> str:
    for name in SERVICE_LABELS:
        value = labels.get(name)
        if value:
            return value
    return UNKNOWN_SERVICE


def place(batch: Batch, settings: Settings) -> list[AlertGroup]:
    """The batch's alerts grouped by incident key, in order of first appearance."""
    catalog = settings.catalog
    rules = settings.rules
    severity_label = settings.config.scoring.severity_label
    tier_label = rules.tier_label
    groups: dict[tuple[str, tuple[str, ...]], tuple[GroupKey, list[PlacedAlert]]] = {}
    for alert in batch.alerts:
        labels = alert.labels
        severity = labels.get(severity_label, "none")
        journey, stage = catalog.match(labels)
        group_by = catalog.group_by(journey)
        values = group_values(group_by, labels)
        entry = groups.get((journey.id, values))
        if entry is None:
            entry = groups[(journey.id, values)] = (key_of(journey.id, group_by, values), [])
        stage_id = stage.id if stage else None
        entry[1].append(
            PlacedAlert(
                alert,
                stage_id,
                service_of(labels),
                severity,
                labels.get(REGION_LABEL, ""),
                impact_class(stage_id, severity, labels.get(tier_label), rules),
            )
        )
    return [AlertGroup(key, alerts) for key, alerts in groups.values()]
