"""Incidents as the sinks receive them, for the sink tests."""

from __future__ import annotations

from typing import Any

from receiver.incident import Incident, rfc3339
from receiver.store.records import IncidentState, KpiRecord

CREATED_MS = 1_776_506_400_000  # 2026-04-18T10:00:00Z
RUNBOOK_URL = "https://runbooks.example.com/rb-17"


def conversion(**overrides: Any) -> KpiRecord:
    """The checkout conversion KPI down 61% against last week (0.012 now, 0.031 then), with
    1,200/min of revenue at risk; ``overrides`` replace any field (``None`` removes the
    revenue)."""
    fields: dict[str, Any] = {
        "name": "conversion",
        "value": 0.012,
        "baseline": 0.031,
        "deviation_pct": -61.3,
        "unit": "ratio",
        "bad": True,
        "revenue_at_risk_per_min": 1200.0,
        "vs": "last week",
    }
    return KpiRecord(**(fields | overrides))


def make_incident(**overrides: Any) -> Incident:
    """An open P1 checkout incident in prod/eu: two firing alerts in cart and
    payment-service, conversion down 61% with revenue at risk, a deploy as the probable
    cause, one runbook and one suggested action. ``overrides`` replace any field."""
    # The title names the priority, as receiver.incident.title does, so that a test which
    # only lowers the priority still gets a coherent header.
    priority = overrides.get("priority", "P1")
    fields: dict[str, Any] = {
        "id": "checkout-eu-1",
        "key": "checkout|prod|eu",
        "journey": "checkout",
        "journey_name": "Add to cart → checkout → payment",
        "stages": ["payment"],
        "status": "open",
        "priority": "P1",
        "score": 87.5,
        "score_breakdown": [],
        "title": (
            f"checkout/eu {priority} — 2 alerts in payment-service, cart; "
            "conversion −61% vs last week"
        ),
        "summary": "Checkout (checkout) in env prod, region eu: 2 of 2 alert(s) firing.",
        "group_labels": {"env": "prod", "region": "eu"},
        "services": ["cart", "payment-service"],
        "regions": ["eu"],
        "alerts": [],
        "alerts_omitted": 0,
        "alert_count": 2,
        "firing_count": 2,
        "kpis": [conversion().model_dump()],
        "changes": [],
        "probable_causes": [
            {
                "kind": "change",
                "text": "deploy 2026.04.18-3 to payment-service",
                "score": 87.5,
                "evidence": ["2 min before the first alert"],
            }
        ],
        "runbooks": [{"title": "Payment gateway errors", "url": RUNBOOK_URL}],
        "suggested_actions": [{"title": "Roll back payment-service", "because": "deploy"}],
        "automation": "recommend",
        "actions_run": [],
        "owner": {"team": "payments"},
        "timeline": [],
        "timeline_omitted": 0,
        "sinks": {},
        "context_notes": [],
        "blips": 0,
        "truncated_alerts": 0,
        "created_at": rfc3339(CREATED_MS),
        "started_at": rfc3339(CREATED_MS),
        "notified_at": None,
        "updated_at": rfc3339(CREATED_MS + 60_000),
        "resolved_at": None,
        "reopened_count": 0,
        "feedback": [],
        "response": None,
        "mtta_s": None,
        "mttr_s": None,
        "silences": [],
        "links": {},
        "similar": [],
    }
    return Incident(**(fields | overrides))


def incident_state(n: int = 1, **fields: Any) -> IncidentState:
    """A bare open checkout incident's state (times 0), with ``fields`` on top."""
    base: dict[str, Any] = {
        "id": f"checkout-x-{n}",
        "key": "checkout",
        "digest": "x",
        "journey": "checkout",
        "group_labels": {},
        "status": "open",
        "created_at": 0,
        "updated_at": 0,
        "first_firing_at": 0,
    }
    return IncidentState.model_validate(base | fields)
