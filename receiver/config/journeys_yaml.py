"""Schema of ``journeys.yaml``, the team leads' file: journeys, stages, owners, KPIs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, field_validator, model_validator

from receiver.config.actions import ActionRun
from receiver.config.fields import (
    ConfigModel,
    FieldIssue,
    HttpUrl,
    LabelName,
    Loc,
    MatcherField,
    OptionalSecret,
    PositiveDuration,
    Priority,
    Slug,
    Weight,
    check_alongside,
    column,
    raise_issues,
    show,
    value_at,
)
from receiver.enrich import EnrichmentError
from receiver.enrich.promql import check_brackets
from receiver.events import ChangeType
from receiver.topology import cycle

UNMAPPED = "unmapped"
"""Id of the built-in journey of alerts that no stage matches."""

Automation = Literal["observe", "recommend", "assist", "auto"]


class Owner(ConfigModel):
    team: str = Field(min_length=1)
    pagerduty_routing_key: OptionalSecret = None
    slack_channel: str | None = None
    jira_project: str | None = None
    responders: list[str] = Field(default_factory=list)
    """Who may press Run on this journey's actions (``automation: assist``): Slack user
    ids (``U024BE7LH``), ``@handles`` or the e-mail addresses the pages know people by."""


class Stage(ConfigModel):
    """A step of the journey; an alert belongs to it when all ``match`` matchers match."""

    id: Slug
    weight: Weight
    match: list[MatcherField] = Field(min_length=1)


class Kpi(ConfigModel):
    """A business metric; ``query`` is PromQL that may use ``$region`` or any group label."""

    name: str = Field(min_length=1)
    query: str = Field(min_length=1)
    unit: str
    bad_when: Literal["down", "up"]
    baseline_offset: PositiveDuration | None = None
    """Overrides ``prometheus.baseline_offset`` of receiver.yaml."""
    revenue_per_unit: float | None = Field(default=None, ge=0)
    revenue_query: str | None = None

    @field_validator("query", "revenue_query")
    @classmethod
    def _brackets_pair_up(cls, query: str | None) -> str | None:
        if query is not None:
            try:
                check_brackets(query)
            except EnrichmentError as exc:
                raise ValueError(f"{exc}: Prometheus would refuse the query") from None
        return query

    @model_validator(mode="after")
    def _one_revenue_source(self) -> Kpi:
        if self.revenue_per_unit is not None and self.revenue_query is not None:
            raise_issues(
                [FieldIssue(("revenue_query",), "set revenue_per_unit or revenue_query, not both")]
            )
        return self


class Runbook(ConfigModel):
    title: str = Field(min_length=1)
    url: HttpUrl
    """A web link: Slack, PagerDuty, Jira and the incident page link http(s) URLs only
    (anything else would be left out of every one of them, without a word)."""
    match: list[MatcherField] = Field(default_factory=list)
    """Show the runbook only for alerts matching all of these; none = every alert."""


class KpiCondition(ConfigModel):
    """A journey KPI off by at least this much (deviation_pct, in percent: -60.0 is 60%
    below its baseline)."""

    name: str = Field(min_length=1)
    deviation_pct_below: float | None = None
    deviation_pct_above: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> KpiCondition:
        if (self.deviation_pct_below is None) == (self.deviation_pct_above is None):
            raise_issues(
                [
                    FieldIssue(
                        ("deviation_pct_below",),
                        "set deviation_pct_below or deviation_pct_above (one of them)",
                    )
                ]
            )
        # deviation_pct_below: 30 holds for a KPI 5% down, or flat: almost always. The
        # bound is a signed percent, below the baseline is negative.
        below, above = self.deviation_pct_below, self.deviation_pct_above
        if below is not None and below > 0:
            raise_issues(
                [
                    FieldIssue(
                        ("deviation_pct_below",),
                        f"{show(below)} holds for a KPI anywhere up to {show(below)}% above its "
                        "baseline, a healthy one too; 30% below it is written -30 "
                        f"(did you mean {show(-below)}?)",
                    )
                ]
            )
        if above is not None and above < 0:
            raise_issues(
                [
                    FieldIssue(
                        ("deviation_pct_above",),
                        f"{show(above)} holds for a KPI anywhere down to {show(-above)}% below its "
                        "baseline, a healthy one too; 30% above it is written 30 "
                        f"(did you mean {show(-above)}?)",
                    )
                ]
            )
        return self


class ActionCondition(ConfigModel):
    """When an action is worth suggesting; every condition that is set must hold."""

    change_type: ChangeType | None = None
    """Type of a correlated change event: deploy, config, feature_flag, rollback, ..."""
    within: PositiveDuration | None = None
    """How long before the incident started that change may have happened."""
    single_service: bool | None = None
    """True: only when the incident's alerts are all of one service."""
    stages: list[Slug] | None = None
    """Only when the incident touches one of these stages."""
    priorities: list[Priority] | None = None
    """Only at these priorities."""
    kpi: KpiCondition | None = None
    """Only when this journey KPI is off by at least so much."""

    @model_validator(mode="after")
    def _within_a_change(self) -> ActionCondition:
        if self.within is not None and self.change_type is None:
            # Else ignored: the action would be suggested (or run) on every incident.
            raise_issues(
                [
                    FieldIssue(
                        ("within",),
                        "is how long before the incident a change_type change happened: it "
                        "needs change_type (without it the action holds on every incident)",
                    )
                ]
            )
        return self


class Action(ConfigModel):
    id: Slug | None = None
    """How feedback ("what fixed it") and history name the action; its title without."""
    title: str = Field(min_length=1)
    """May use ``{service}``, ``{previous_version}`` and the incident's group labels."""
    when: ActionCondition = ActionCondition()
    run: ActionRun | None = None
    """How the action is run (``receiver/act/``); without it, it is only suggested."""

    @model_validator(mode="after")
    def _run_needs_id(self) -> Action:
        # Runs are named by the id: the once-per-incident marker, the Idempotency-Key,
        # the Run button and the metric label must not change when a title is reworded.
        if self.run is not None and self.id is None:
            raise ValueError("an action with a run needs an id")
        return self


class Slo(ConfigModel):
    """The journey's service-level objective (receiver/outcomes/slo.py): the journey is
    degraded while one of its incidents is open at ``degraded_at`` or above (P1 is the
    highest), or a KPI of such an incident is outside its band; ``objective`` is the share
    of the stats window, in percent, it should not be (99.9: about 10 minutes a week)."""

    degraded_at: Priority = "P3"
    objective: float | None = Field(default=None, gt=0, lt=100)


class Journey(ConfigModel):
    id: Slug
    name: str = Field(min_length=1)
    weight: Weight
    owner: Owner
    group_by: list[LabelName] | None = None
    """Overrides ``grouping.group_by`` of receiver.yaml."""
    stages: list[Stage]
    kpis: list[Kpi] = Field(default_factory=list)
    runbooks: list[Runbook] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    automation: Automation = "observe"
    slo: Slo = Slo()

    @model_validator(mode="wrap")
    @classmethod
    def _unique_names(cls, data: Any, handler: ModelWrapValidatorHandler[Journey]) -> Journey:
        stages, kpis = column(data, "stages", "id"), column(data, "kpis", "name")
        # Runs, their once-per-incident marker and Idempotency-Key name an action by its
        # id (else its title): two alike would run the first one's webhook for both.
        keys = [
            key or title
            for key, title in zip(
                column(data, "actions", "id"), column(data, "actions", "title"), strict=True
            )
        ]
        issues = [
            *_duplicates("stages", "id", "stage id", stages),
            *_duplicates("kpis", "name", "KPI name", kpis),
            *_duplicates("actions", "id", "action id (or title, without an id)", keys),
            *_unknown_in_conditions(column(data, "actions", "when"), stages, kpis),
        ]
        return check_alongside(data, handler, issues)


class Unmapped(ConfigModel):
    """The built-in journey of alerts that no stage matches."""

    weight: Weight = 0.1
    owner: Owner = Owner(team="unowned")
    group_by: list[LabelName] | None = None
    slo: Slo = Slo()


class JourneysConfig(ConfigModel):
    """Everything in ``journeys.yaml``; journeys are matched in file order."""

    unmapped: Unmapped = Unmapped()
    journeys: list[Journey] = Field(default_factory=list)
    topology: dict[str, list[str]] = Field(default_factory=dict)
    """Which services each service calls: among an incident's firing services, the one the
    others depend on is the probable upstream cause (``receiver/topology.py``)."""

    @model_validator(mode="wrap")
    @classmethod
    def _listed_journeys(
        cls, data: Any, handler: ModelWrapValidatorHandler[JourneysConfig]
    ) -> JourneysConfig:
        # Rules for the journeys of the file rather than of Journey, which also describes
        # the built-in stage-less "unmapped" journey.
        ids = column(data, "journeys", "id")
        issues = list(_duplicates("journeys", "id", "journey id", ids))
        stages = column(data, "journeys", "stages")
        for index, (journey_id, journey_stages) in enumerate(zip(ids, stages, strict=True)):
            if journey_id == UNMAPPED:
                reason = f'"{UNMAPPED}" is reserved for alerts no stage matches'
                issues.append(FieldIssue(("journeys", index, "id"), reason))
            if journey_stages == []:
                issues.append(FieldIssue(("journeys", index, "stages"), "needs at least one stage"))
        issues.extend(_topology_issues(data.get("topology") if isinstance(data, dict) else None))
        return check_alongside(data, handler, issues)


def _topology_issues(raw: object) -> Iterable[FieldIssue]:
    """A service that calls itself, or calls that go round in a cycle, leave no service
    upstream of the others."""
    if not isinstance(raw, dict):
        return  # missing or mistyped: validation reports it
    calls = {
        str(k): [str(c) for c in v if isinstance(c, str)]
        for k, v in raw.items()
        if isinstance(v, list)
    }
    for service, callees in calls.items():
        for index, callee in enumerate(callees):
            if callee == service:
                yield FieldIssue(("topology", service, index), f"{service} cannot call itself")
    loop = cycle({s: [c for c in cs if c != s] for s, cs in calls.items()})
    if loop:
        where = calls[loop[0]].index(loop[1])
        yield FieldIssue(
            ("topology", loop[0], where), "calls go round in a cycle: " + " → ".join(loop)
        )


def _unknown_in_conditions(
    whens: list[object], stages: list[object], kpis: list[object]
) -> Iterable[FieldIssue]:
    """Stages and KPIs an action's ``when`` names that its journey does not have: the
    action would silently never be suggested."""
    for index, when in enumerate(whens):
        named = value_at(when, "stages")
        for n, stage in enumerate(named if isinstance(named, list) else []):
            if isinstance(stage, str) and stage not in stages:
                loc: Loc = ("actions", index, "when", "stages", n)
                yield FieldIssue(loc, f'the journey has no stage "{stage}"')
        kpi = value_at(when, "kpi", "name")
        if isinstance(kpi, str) and kpi not in kpis:
            yield FieldIssue(
                ("actions", index, "when", "kpi", "name"), f'the journey has no KPI "{kpi}"'
            )


def _duplicates(items: str, key: str, what: str, values: Iterable[object]) -> Iterable[FieldIssue]:
    first: dict[str, int] = {}
    for index, value in enumerate(values):
        if not isinstance(value, str):
            continue  # missing or mistyped: validation reports it
        if value in first:
            seen: Loc = (items, first[value], key)
            yield FieldIssue((items, index, key), f'duplicate {what} "{value}"', first=seen)
        else:
            first[value] = index
