"""Everything derived from the two YAML files, swapped as one value on reload."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from receiver.config import UNMAPPED, JourneysConfig, ReceiverConfig
from receiver.journeys import JourneyCatalog
from receiver.lifecycle import Timers
from receiver.scoring import Impact, JourneyWeights, ScoringRules, assess, kept
from receiver.store.records import IncidentState, StoredAlert
from receiver.topology import Ranking, rank, rank_state


def ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Settings:
    config: ReceiverConfig
    journeys: JourneysConfig
    catalog: JourneyCatalog
    rules: ScoringRules
    timers: Timers
    weights: dict[str, JourneyWeights]
    routing: dict[str, frozenset[str]]

    @property
    def context_budget_s(self) -> float:
        """How long one incident's context may take in all: the KPI budget, plus a second
        for the change feeds that run beside it to answer."""
        return self.config.prometheus.budget + 1.0

    def impact(self, state: IncidentState) -> Impact:
        """The incident's score, with the weights of its journey. One whose journey a reload
        removed or renamed keeps the score it was last given (the weights it was scored
        with are gone: ``unmapped``'s would demote a live outage, or raise it); one never
        scored takes ``unmapped``'s."""
        weights = self.weights.get(state.journey)
        if weights is None and state.score is not None and state.priority is not None:
            return kept(state)
        return assess(weights or self.weights[UNMAPPED], state, self.rules)

    def rank_incident(self, state: IncidentState) -> Ranking:
        """The incident's firing services, the probable upstream one first."""
        rules = self.rules
        return rank_state(
            state, self.journeys.topology, rules.severity_weights, rules.default_severity_weight
        )

    def rank_services(self, alerts: Sequence[StoredAlert], now_ms: int) -> Ranking:
        """The firing services of ``alerts``, the probable upstream one first."""
        rules = self.rules
        return rank(
            alerts,
            self.journeys.topology,
            rules.severity_weights,
            rules.default_severity_weight,
            now_ms,
        )

    def sinks_for(self, priority: str) -> set[str]:
        """The sinks ``routing`` sends this priority to."""
        return {name for name, prios in self.routing.items() if priority in prios}

    @classmethod
    def build(cls, config: ReceiverConfig, journeys: JourneysConfig) -> Settings:
        catalog = JourneyCatalog(journeys, config.grouping.group_by)
        scoring = config.scoring
        return cls(
            config=config,
            journeys=journeys,
            catalog=catalog,
            rules=ScoringRules(
                thresholds=dict(scoring.thresholds),
                severity_weights=dict(scoring.severity_weights),
                default_severity_weight=scoring.default_severity_weight,
                tier_label=scoring.tier.label,
                tier_weights=dict(scoring.tier.weights),
                default_tier_weight=scoring.tier.default,
            ),
            timers=Timers(
                group_wait_ms=ms(config.grouping.group_wait),
                group_interval_ms=ms(config.grouping.group_interval),
                resolve_after_ms=ms(config.grouping.resolve_after),
            ),
            weights={
                j.id: JourneyWeights(
                    id=j.id,
                    name=j.name,
                    weight=j.weight,
                    stage_weights={s.id: s.weight for s in j.stages},
                    has_kpis=bool(j.kpis),
                )
                for j in catalog.journeys
            },
            routing={sink: frozenset(prios) for sink, prios in config.routing.items()},
        )
