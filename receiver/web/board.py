"""The journey board (``GET /``): every journey's stages as cells coloured by the worst
priority of their open incidents, and the open incidents ranked by score.

Read through the same calls as ``GET /api/v1/incidents`` (``store.list_incidents`` and
``Receiver.summary``, so a priority, score and title are the ones the API gives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from receiver.causes import leading
from receiver.incident import guessed, kpi_moved, rfc3339, worst_kpi
from receiver.scoring import badness
from receiver.store.base import capped
from receiver.store.records import IncidentState, KpiRecord

if TYPE_CHECKING:
    from receiver.app import Receiver

BOARD_LIMIT = 500
# Open incidents read for the board, at most (a storm of 10,000 is read whole), and how
# many a store read brings.
OPEN_READ = 20_000
_PAGE = 500
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
NO_STAGE = "(no stage)"


@dataclass
class Cell:
    """A journey's stage (or its incidents that matched no stage)."""

    stage: str
    incidents: int = 0
    priority: str | None = None
    kpi: KpiRecord | None = None
    regions: set[str] = field(default_factory=set)

    @property
    def css(self) -> str:
        """``p1``…``p5``, ``none``: the class the style sheet colours; ``kpi-bad`` added
        when a KPI of its open incidents is off in its bad direction (a dashed edge)."""
        base = self.priority.lower() if self.priority in PRIORITIES else "none"
        return f"{base} kpi-bad" if self.kpi is not None and self.kpi.bad else base

    @property
    def deviation(self) -> str:
        return deviation(self.kpi)

    def add(self, priority: str, state: IncidentState) -> None:
        self.incidents += 1
        self.priority = worse(self.priority, priority)
        self.kpi = worse_kpi(self.kpi, worst_kpi(state))
        self.regions.update(_regions(state))


@dataclass
class Row:
    id: str
    name: str
    owner: str
    cells: list[Cell]
    incidents: int = 0
    priority: str | None = None
    regions: set[str] = field(default_factory=set)

    @property
    def css(self) -> str:
        return self.priority.lower() if self.priority in PRIORITIES else "none"


@dataclass(frozen=True)
class Line:
    """An open incident as the board lists it."""

    id: str
    priority: str
    score: float
    title: str
    journey: str
    owner: str
    regions: list[str]
    stages: list[str]
    age: str
    started: str
    cause: str
    deviation: str

    @property
    def css(self) -> str:
        return self.priority.lower() if self.priority in PRIORITIES else "none"


@dataclass(frozen=True)
class Board:
    rows: list[Row]
    incidents: list[Line]
    """The highest-scored open incidents, at most the board's limit."""
    open_count: int
    capped: bool
    """More incidents are open than ``OPEN_READ``: ``open_count`` is a floor."""

    @property
    def regions(self) -> list[str]:
        return sorted({r for row in self.rows for r in row.regions})


def worse(a: str | None, b: str | None) -> str | None:
    """The more urgent of two priorities (P1 before P5; any priority before none)."""
    known = [p for p in (a, b) if p in PRIORITIES]
    return min(known, key=PRIORITIES.index) if known else (a or b)


def worse_kpi(a: KpiRecord | None, b: KpiRecord | None) -> KpiRecord | None:
    if a is None or b is None:
        return a or b
    return a if badness(a) >= badness(b) else b


def deviation(kpi: KpiRecord | None) -> str:
    """``conversion −61% vs last week``, or that no KPI has moved."""
    moved = kpi_moved(kpi) if kpi is not None else None
    if kpi is None or moved is None:
        return "no KPI deviation"
    return f"{kpi.name} {moved} vs {kpi.vs or 'baseline'}"


def top_cause(state: IncidentState) -> str:
    """The top probable cause as the incident's summary names it (a guess said to be one)."""
    if not state.probable_causes:
        return "not known yet" if state.pending else "none found"
    cause = leading(state)
    return guessed(state.probable_causes[0]) if cause is None else cause.text


class OpenIncidents:
    """The open incidents as last read, for ``FRESH_MS``: every viewer's board reloads
    itself every 30 s, and listing them reads the store's whole index."""

    FRESH_MS = 10_000

    def __init__(self) -> None:
        self._read: tuple[int, list[IncidentState]] | None = None

    async def get(self, receiver: Receiver) -> list[IncidentState]:
        """Every open incident (up to ``OPEN_READ``): the list is ranked by score, and the
        most urgent may be the oldest, so none can be left out before the ranking."""
        now = receiver.pipeline.now_ms()
        if self._read is not None and 0 <= now - self._read[0] < self.FRESH_MS:
            return self._read[1]
        pages = capped(receiver.store.iter_incidents("open", None, _PAGE), OPEN_READ)
        states = [state async for page in pages for state in page]
        self._read = (now, states)
        return states


async def load(receiver: Receiver, opened: OpenIncidents, limit: int = BOARD_LIMIT) -> Board:
    """The board of the open incidents, the ``limit`` highest-scored of them listed."""
    states = await opened.get(receiver)
    return build(receiver, states, receiver.pipeline.now_ms(), limit)


def build(
    receiver: Receiver, states: Sequence[IncidentState], now_ms: int, limit: int = BOARD_LIMIT
) -> Board:
    """The grid from every one of ``states``; the list, by score, from the ``limit`` first."""
    catalog = receiver.settings.catalog
    rows: dict[str, Row] = {}
    for journey in catalog.journeys:
        cells = [Cell(stage.id) for stage in journey.stages]
        rows[journey.id] = Row(journey.id, journey.name, journey.owner.team, cells)
    lines: list[Line] = []
    for state in states:
        summary = receiver.summary(state)
        priority = str(summary["priority"])
        journey = catalog.find(state.journey)
        row = rows.get(state.journey)
        if row is None:  # a journey a reload removed: shown under its own id
            row = rows[state.journey] = Row(state.journey, state.journey, journey.owner.team, [])
        row.incidents += 1
        row.priority = worse(row.priority, priority)
        row.regions.update(_regions(state))
        for stage in _stages(state) or [NO_STAGE]:
            _cell(row, stage).add(priority, state)
        lines.append(
            Line(
                id=state.id,
                priority=priority,
                score=float(summary["score"]),
                title=str(summary["title"]),
                journey=state.journey,
                owner=journey.owner.team,
                regions=_regions(state),
                stages=_stages(state),
                age=age(now_ms - state.started),
                started=rfc3339(state.started) or "",
                cause=top_cause(state),
                deviation=deviation(worst_kpi(state)),
            )
        )
    lines.sort(key=lambda line: (-line.score, line.priority, line.id))
    return Board(list(rows.values()), lines[:limit], len(states), len(states) >= OPEN_READ)


def _stages(state: IncidentState) -> list[str]:
    # As people were told them: a stage whose every alert was a blip lights nothing.
    return [s for s in state.shown_stages if state.stages[s] > 0]


def _cell(row: Row, stage: str) -> Cell:
    found = next((c for c in row.cells if c.stage == stage), None)
    if found is None:
        found = Cell(stage)
        row.cells.append(found)
    return found


def age(ms: int) -> str:
    """``less than 1 min``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    minutes = max(0, ms) // 60_000
    if minutes < 1:
        return "less than 1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _regions(state: IncidentState) -> list[str]:
    return sorted(r for r, n in state.regions.items() if r and n > 0)
