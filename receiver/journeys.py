"""Which journey and stage an alert belongs to; called for every alert of every webhook."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from receiver.config import UNMAPPED, Journey, JourneysConfig, Stage
from receiver.matchers import Matcher

_MEMO_SIZE = 4096


class JourneyCatalog:
    """The journeys of ``journeys.yaml`` plus the built-in ``unmapped`` catch-all."""

    def __init__(self, journeys: JourneysConfig, default_group_by: Sequence[str]) -> None:
        fallback = journeys.unmapped
        self._unmapped = Journey(
            id=UNMAPPED,
            name="Unmapped alerts",
            weight=fallback.weight,
            owner=fallback.owner,
            group_by=fallback.group_by,
            stages=[],
            slo=fallback.slo,
        )
        self._journeys = (*journeys.journeys, self._unmapped)
        self._by_id = {journey.id: journey for journey in self._journeys}
        self._default_group_by = tuple(default_group_by)
        self._group_by = {journey.id: self._own_group_by(journey) for journey in self._journeys}
        # Flattened in file order, so that the first stage to match wins.
        self._rules: tuple[tuple[Journey, Stage, tuple[Matcher, ...]], ...] = tuple(
            (journey, stage, tuple(stage.match))
            for journey in journeys.journeys
            for stage in journey.stages
        )
        # The answer depends only on the labels some matcher reads; a storm repeats the same
        # few combinations of those, so each is worked out once.
        self._read = tuple(sorted({m.name for _, _, ms in self._rules for m in ms}))
        self._memo: dict[tuple[str | None, ...], tuple[Journey, Stage | None]] = {}

    def match(self, labels: Mapping[str, str]) -> tuple[Journey, Stage | None]:
        """The first stage, in file order, whose matchers all match; else ``unmapped``."""
        key = tuple([labels.get(name) for name in self._read])
        found = self._memo.get(key)
        if found is None:
            found = self._match(labels)
            if len(self._memo) >= _MEMO_SIZE:
                # Label values are untrusted: a flood of new ones empties the memo instead
                # of growing it.
                self._memo.clear()
            self._memo[key] = found
        return found

    def _match(self, labels: Mapping[str, str]) -> tuple[Journey, Stage | None]:
        for journey, stage, matchers in self._rules:
            for matcher in matchers:
                if not matcher.matches(labels):
                    break
            else:
                return journey, stage
        return self._unmapped, None

    def find(self, journey_id: str) -> Journey:
        """The journey with this id, or ``unmapped`` for one a reload removed since."""
        return self._by_id.get(journey_id, self._unmapped)

    @property
    def journeys(self) -> tuple[Journey, ...]:
        """Every journey in file order, ``unmapped`` last."""
        return self._journeys

    def group_by(self, journey: Journey) -> tuple[str, ...]:
        """Labels that split the journey's alerts into incidents: its own, else the default."""
        found = self._group_by.get(journey.id)
        # A journey of an earlier config (before a reload) is not in the table.
        return found if found is not None else self._own_group_by(journey)

    def _own_group_by(self, journey: Journey) -> tuple[str, ...]:
        return self._default_group_by if journey.group_by is None else tuple(journey.group_by)
