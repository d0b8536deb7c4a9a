"""``journey-receiver rules``: Prometheus recording and alerting rules for every journey KPI.

Pure functions from the parsed ``journeys.yaml`` to a rules document; nothing here talks to
Prometheus. ``promql.py`` turns a KPI query for one incident into one for all label sets,
``routing.py`` picks the labels that bring the alert back to its journey, ``generate.py``
writes the baseline, bands, traffic guard and alert.
"""

from __future__ import annotations

from receiver.rules.generate import ALERTNAME, RuleOptions, RulesError, rules_document, to_yaml

__all__ = ["ALERTNAME", "RuleOptions", "RulesError", "rules_document", "to_yaml"]
