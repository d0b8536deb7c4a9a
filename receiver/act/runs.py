"""Runs of actions: asked for, decided, carried out through the outbox, and recorded.

Asked for by the receiver itself (``offer``, after each decision of an ``auto`` journey's
notified incident) or by a person pressing Run (``press``, from Slack or the incident
page; it goes ahead only while the action names the change its confirmation showed,
``receiver.actions.shown``). Each ask is decided by the journey's level (``levels.py``)
and the guard rails (``guards.py``); what they allow becomes one outbox job (kind ``run``,
sink ``action:<id>``) written in the same atomic step as its timeline entry and the
store's once-marker for the incident and action, so an action is queued at most once per
incident, whoever asked and however many replicas did. The job carries who asked and the values its
templates are filled with, fixed at that moment: every attempt sends the same request.

Carried out (``execute``) by the outbox like a delivery, with the outbox's retries; each
attempt checks again, under the config of the replica making it, what may have changed
since it was asked for (the kill switch, dry run, ``max_runs_per_hour``, the incident
resolved, the action removed, the journey's level, who may run it, its conditions, what
its run asks for: ``definition.py``). A replica whose ``journeys.yaml`` defines the action
otherwise than the job says (a rolling change, a reload) leaves the job to another one
that still says it defines it as asked (``say``), and, when none does, decides under its
own. The run's ``Idempotency-Key`` is ``<incident id>/<action id>``: a replica killed
after the call and before its record leaves the job in its queue, the next attempt sends
the same key, and the system acted on answers it without acting twice.

Every decision (ran, failed, refused, skipped, dry_run) is recorded once: in
``actions_run``, on the timeline, in ``journey_receiver_action_runs_total`` and, where the
incident went, as a reply in its Slack thread and a Jira comment. A run that went through
also makes the scheduler look again when its outcome window ends (``outcome.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from receiver.act import STATUS_WORDS, RunRequest, levels
from receiver.act.definition import RESPONDERS, RUN_PARTS, Defined, definition, moved
from receiver.act.guards import blocked, take_slot
from receiver.act.levels import Person
from receiver.act.outcome import kpi_off
from receiver.act.webhook import WebhookExecutor
from receiver.actions import (
    PREVIOUS_UNKNOWN,
    Match,
    action_key,
    changed,
    incident_values,
    match,
    render,
)
from receiver.config import Action, AutomationConfig, Journey
from receiver.config.actions import WebhookRun
from receiver.logtext import clip, printable
from receiver.retired import Retired
from receiver.settings import ms
from receiver.sinks._http import incident_url
from receiver.store.base import Annotation
from receiver.store.deliveries import Job
from receiver.store.records import ActionRunRecord, IncidentState, RunStatus, TimelineEntry

if TYPE_CHECKING:
    from receiver.pipeline import Pipeline

logger = logging.getLogger("journey_receiver.act")

SINK_PREFIX = "action:"
TIMELINE_KIND = "action"
_ASKED = ": run asked by "
# Where a decision is told besides the incident itself: the Slack thread, the Jira issue.
_POSTED = ("slack", "jira")
# Decisions after which the receiver does not ask for the same action again by itself.
_SETTLED = frozenset({"ran", "failed", "dry_run"})
UNKNOWN_ACTION = "unknown"
"""The ``action`` label of a decision about an action journeys.yaml does not name."""
DONE = frozenset({"ran", "failed"})
_KEY_SHOWN_MAX = 64
"""How much of an action id no journey names is shown and recorded: the click's or the
page URL's (Slack sends an ``action_id`` of up to 255 characters), untrusted."""
"""Statuses after which the action runs no more on the incident, whoever asks."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a person who pressed Run is told."""

    status: Literal["queued", "refused", "dry_run", "already"]
    text: str


def idempotency_key(incident_id: str, key: str) -> str:
    """The same for every attempt of the run of action ``key`` on the incident."""
    return f"{incident_id}/{key}"


class Runs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._executors: dict[tuple[str, str], tuple[WebhookRun, WebhookExecutor]] = {}
        self._retired = Retired()
        self._defined = Defined(pipeline.store.cache)

    @property
    def cfg(self) -> AutomationConfig:
        return self.pipeline.settings.config.automation

    async def aclose(self) -> None:
        await self._retired.close()
        for _, executor in self._executors.values():
            await executor.aclose()

    async def between_rounds(self) -> None:
        """Close the executors a reload replaced or removed; call when no run is under way
        (between outbox rounds). Otherwise each one would hold its HTTP client, and maybe
        a connection, until the receiver stops: one more per reload that changed a run."""
        wanted = {
            (journey.id, action_key(action)): action.run.webhook
            for journey in self.pipeline.settings.catalog.journeys
            for action in journey.actions
            if action.run is not None
        }
        for where, (run, executor) in list(self._executors.items()):
            if wanted.get(where) != run:
                del self._executors[where]
                self._retired.add(executor)
        await self._retired.close()

    async def say(self) -> int:
        """Tell the other replicas which definitions of its actions this one has
        (``definition.Defined``); how many were said."""
        catalog = self.pipeline.settings.catalog
        return await self._defined.say(catalog.journeys, self.pipeline.now_ms())

    # -- asking ---------------------------------------------------------------------------

    async def offer(self, state: IncidentState, priority: str) -> None:
        """At ``auto``: ask for each runnable action whose conditions hold now, once the
        incident was notified (people hear of it before or with the run)."""
        journey = self.pipeline.settings.catalog.find(state.journey)
        if journey.automation != "auto" or state.status != "open" or state.notified_at is None:
            return
        settled = {r.action for r in state.actions_run if r.status in _SETTLED}
        for action in journey.actions:
            if action.run is None or action_key(action) in settled:
                continue
            found = match(action, state, priority)
            if isinstance(found, Match):
                await self._ask(state, journey, found, None, None)

    async def unasked(self, state: IncidentState, priority: str) -> bool:
        """Whether ``offer`` would ask for a run that was neither asked for (its mark) nor
        turned down by the receiver (its record) on the incident yet."""
        journey = self.pipeline.settings.catalog.find(state.journey)
        if journey.automation != "auto" or state.status != "open" or state.notified_at is None:
            return False
        told = {r.action for r in state.actions_run if r.by == "auto" or r.status in _SETTLED}
        for action in journey.actions:
            key = action_key(action)
            if action.run is None or key in told:
                continue
            if isinstance(match(action, state, priority), Match) and not (
                await self.pipeline.store.marked(_once("run", state.id, key, None))
            ):
                return True
        return False

    async def press(
        self,
        state: IncidentState,
        key: str,
        person: Person,
        press_id: str | None,
        shown: str | None,
    ) -> Answer:
        """A person pressed Run on action ``key`` (``press_id``: the click, so that one
        delivered twice is recorded once) after confirming it as ``shown``
        (``receiver.actions.shown``; None when the button or page did not say): it runs
        only while the action still names what was shown."""
        journey = self.pipeline.settings.catalog.find(state.journey)
        action = next((a for a in journey.actions if action_key(a) == key), None)
        if action is None:
            shown_key = clip(key, _KEY_SHOWN_MAX)
            why = f"the journey {journey.id} has no action {shown_key!r} (any more)"
            return await self._refuse(state, shown_key, shown_key, person, why, press_id)
        found = match(action, state, self.pipeline.settings.impact(state).priority)
        if isinstance(found, str):
            why = f"its conditions do not hold now: {found}"
            title = _unmatched_title(action, state)
            return await self._refuse(state, key, title, person, why, press_id)
        moved = _not_as_shown(found, shown)
        if moved is not None:
            title = _title(action, self._values(state, found))
            return await self._refuse(state, key, title, person, moved, press_id)
        return await self._ask(state, journey, found, person, press_id)

    async def _ask(
        self,
        state: IncidentState,
        journey: Journey,
        found: Match,
        person: Person | None,
        press_id: str | None,
    ) -> Answer:
        key = found.key
        values = self._values(state, found)
        title = _title(found.action, values)
        by = person.who if person else "auto"
        cfg = self.cfg
        defined = definition(journey, found.action)
        once = _once("run", state.id, key, None)
        if person is None and await self.pipeline.store.marked(once):
            # The receiver asked already (its job queued, or held back at its turn): each
            # attempt of that job tells what stops it; asking again tells nothing new.
            return Answer("already", f"{title} was already asked for on this incident")
        why = levels.refusal(journey.automation, person, journey.owner.responders)
        why = why or blocked(cfg, state, found, values)
        if why is not None:
            return await self._refuse(state, key, title, person, why, press_id, defined)
        done = next((r for r in state.actions_run if r.action == key and r.status in DONE), None)
        if done is not None:
            if done.status == "failed":
                # Nothing may have happened: never say it ran.
                return Answer(
                    "already",
                    f"{title} failed on this incident and is not tried again "
                    "(an action runs at most once per incident)",
                )
            return Answer("already", f"{title} already ran for this incident")
        if cfg.dry_run:
            text = "automation.dry_run is on: it would have run now"
            once = _once("dry", state.id, key, press_id if person else None)
            await self._record(state, key, title, by, "dry_run", text, once, defined=defined)
            return Answer("dry_run", f"Dry run: {title} would have run (automation.dry_run)")
        if await self.pipeline.store.marked(once):
            # Asked for already (queued, or held back at its turn): the mark stands, and
            # taking one of the hour's run slots for it would leave that slot unused.
            return _asked_already(state, key, title)
        holder = idempotency_key(state.id, key)
        if not await take_slot(self.pipeline.store, cfg, holder, self.pipeline.now_ms()):
            limit = cfg.max_runs_per_hour
            why = f"automation.max_runs_per_hour ({limit}) runs started in the last hour"
            if person is None and limit > 0:
                # Held back until a slot frees: the incident is looked at again every
                # group_interval meanwhile, so the run is asked for then, without waiting
                # for an alert to change.
                again = self.pipeline.now_ms() + self.pipeline.settings.timers.group_interval_ms
                await self.pipeline.store.look_at([state.id], again)
            return await self._refuse(state, key, title, person, why, press_id, defined)
        now = self.pipeline.now_ms()
        job = Job(
            incident=state.id,
            sink=SINK_PREFIX + key,
            kind="run",
            due=now,
            by=by,
            asked_as=sorted(person.ids) if person else [],
            values=values,
            definition=defined,
        )
        said = f"{title}{_ASKED}{by}"
        outcome = await self.pipeline.store.annotate(
            state.id,
            Annotation(
                timeline=[TimelineEntry(at=now, kind=TIMELINE_KIND, text=said)],
                jobs=[job],
                once=once,
            ),
            now,
        )
        if outcome != "ok":
            return Answer("already", f"{title} was already asked for on this incident")
        logger.info("action %s of incident %s queued (asked by %s)", key, state.id, by)
        return Answer("queued", f"{title}: running (asked by {by})")

    async def _refuse(
        self,
        state: IncidentState,
        key: str,
        title: str,
        person: Person | None,
        why: str,
        press_id: str | None,
        defined: str = "",
    ) -> Answer:
        # The receiver's own skips are told once per reason; each refused press is told.
        status: RunStatus = "refused" if person else "skipped"
        once = _once(status, state.id, key, press_id if person else why)
        who = person.who if person else "auto"
        await self._record(state, key, title, who, status, why, once, defined=defined)
        return Answer("refused", f"{title} was not run: {why}")

    # -- carrying out -----------------------------------------------------------------------

    async def execute(self, job: Job, state: IncidentState) -> str | None:
        """One attempt of ``job``; raises a DeliveryError for the outbox to retry or bury.
        Returns why the job is left to another replica (nothing done, nothing recorded),
        else None."""
        key = job.sink.removeprefix(SINK_PREFIX)
        journey = self.pipeline.settings.catalog.find(state.journey)
        action = next((a for a in journey.actions if action_key(a) == key), None)
        title = _title(action, job.values) if action else key
        once = f"done:{job.id}"
        if await self.pipeline.store.marked(once):
            # Decided and recorded by an attempt whose replica lost the store before the
            # job left its queue: a system that ignores Idempotency-Key would act again.
            return None
        cfg = self.cfg
        run = action.run if action is not None else None
        here = definition(journey, action) if action is not None and run is not None else None
        # A job from a release before definitions says none: the checks below stand alone.
        differ = moved(job.definition, here) if job.definition else []
        if job.by == "auto":
            # Who may press Run is nothing to the receiver's own run.
            differ = [part for part in differ if part != RESPONDERS]
        defined = job.definition or here or ""
        why = None
        if not cfg.enabled:
            why = "automation was switched off (automation.enabled: false) before it ran"
        elif state.status == "resolved":
            why = "the incident resolved before it ran"
        elif differ and await self._defined.elsewhere(
            state.journey, key, job.definition, self.pipeline.now_ms()
        ):
            # Replicas disagree (a rolling change, reloads a minute apart): the one whose
            # journeys.yaml defines the action as it was asked for carries it out. Asked by
            # the incident's journey id: one this replica lacks finds the unmapped one.
            return (
                f"action {key} is defined otherwise on this replica ({', '.join(differ)}); "
                "left to a replica that defines it as it was asked for"
            )
        elif action is None or run is None:
            why = "the action is no longer in journeys.yaml with a run"
        else:
            priority = self.pipeline.settings.impact(state).priority
            why = _changed_since_asked(job, journey, action, state, priority)
            redefined = [part for part in differ if part in RUN_PARTS]
            if why is None and redefined:
                why = (
                    "its run.webhook in journeys.yaml changed since it was asked for "
                    f"({', '.join(redefined)}): a request nobody decided on is not sent"
                )
        if (
            why is None
            and not cfg.dry_run
            and not await take_slot(
                self.pipeline.store, cfg, idempotency_key(state.id, key), self.pipeline.now_ms()
            )
        ):
            # Its slot was taken when it was asked for, and is kept: none now means the limit
            # here is 0, or the hour it was asked in is over and the new hour's runs taken.
            limit = cfg.max_runs_per_hour
            why = f"automation.max_runs_per_hour ({limit}) runs started in the last hour"
        if why is not None or run is None:
            text = why or ""
            await self._record(state, key, title, job.by, "skipped", text, once, defined=defined)
            return None
        if cfg.dry_run:
            text = "automation.dry_run was turned on before it ran"
            await self._record(state, key, title, job.by, "dry_run", text, once, defined=defined)
            return None
        executor = self._executor(journey.id, key, run.webhook)
        request = RunRequest(key, state.id, idempotency_key(state.id, key), job.values)
        result = await executor.run(request)
        due = self.pipeline.now_ms() + ms(cfg.outcome_window)
        said = f"{result.status}: {result.text}"
        await self._record(state, key, title, job.by, "ran", said, once, due, defined=defined)
        return None

    async def failed(self, job: Job, error: str, state: IncidentState) -> None:
        """The outbox gave up on ``job`` (a permanent answer, or every attempt failed)."""
        key = job.sink.removeprefix(SINK_PREFIX)
        journey = self.pipeline.settings.catalog.find(state.journey)
        action = next((a for a in journey.actions if action_key(a) == key), None)
        title = _title(action, job.values) if action else key
        once = f"done:{job.id}"
        await self._record(state, key, title, job.by, "failed", error, once, defined=job.definition)

    def _executor(self, journey: str, key: str, run: WebhookRun) -> WebhookExecutor:
        """The action's executor, built on first use and again when a reload changed it."""
        kept = self._executors.get((journey, key))
        if kept is not None and kept[0] == run:
            return kept[1]
        if kept is not None:
            self._retired.add(kept[1])
        executor = WebhookExecutor(run)
        self._executors[(journey, key)] = (run, executor)
        return executor

    # -- recording --------------------------------------------------------------------------

    def _values(self, state: IncidentState, found: Match) -> dict[str, str]:
        values = dict(found.values)
        values |= {
            "incident_id": state.id,
            "journey": state.journey,
            "action": found.key,
            "priority": self.pipeline.settings.impact(state).priority,
        }
        url = incident_url(self.pipeline.settings.config.server.external_url, state.id)
        if url is not None:
            values["incident_url"] = url
        return values

    async def _record(
        self,
        state: IncidentState,
        key: str,
        title: str,
        by: str,
        status: RunStatus,
        result: str,
        once: str,
        due: int | None = None,
        *,
        defined: str = "",
    ) -> None:
        now = self.pipeline.now_ms()
        record = ActionRunRecord(
            action=key,
            by=by,
            at=now,
            status=status,
            result=result,
            title=title,
            definition=defined,
            firing=state.firing_count,
            kpi_off=kpi_off(state.kpis),
        )
        said = f"{title}: {STATUS_WORDS[status]} (by {by})" + (f": {result}" if result else "")
        annotation = Annotation(
            append={"actions_run": [record.model_dump(mode="json")]},
            timeline=[TimelineEntry(at=now, kind=TIMELINE_KIND, text=said)],
            jobs=self._posts(state, said, now),
            once=once,
            due=due,
        )
        if await self.pipeline.store.annotate(state.id, annotation, now) == "ok":
            journey = self.pipeline.settings.catalog.find(state.journey)
            # A key pressed on a page is the URL's: one journeys.yaml does not name is
            # counted as "unknown", or each would add a series to /metrics.
            named = any(action_key(a) == key for a in journey.actions)
            counted = key if named else UNKNOWN_ACTION
            self.pipeline.metrics.action_runs.labels(state.journey, counted, status).inc()
            log = logger.warning if status in ("failed", "refused") else logger.info
            # The title is filled from alert labels and change events, the result is the
            # deploy system's answer and a key pressed on a page is the URL's: none may
            # start a log line of its own or steer the terminal showing it.
            log("action %s of incident %s: %s", printable(key), state.id, printable(said))

    def _posts(self, state: IncidentState, said: str, now: int) -> Sequence[Job]:
        """A reply in the Slack thread and a Jira comment, where the incident went."""
        return [
            Job(incident=state.id, sink=sink, kind="update", changes=[said], due=now)
            for sink in _POSTED
            if sink in self.pipeline.sinks and sink in state.sinks
        ]


def _changed_since_asked(
    job: Job, journey: Journey, action: Action, state: IncidentState, priority: str
) -> str | None:
    """Why a run asked for earlier must not go ahead at this attempt (a retry may come
    minutes later): the journey's level or the action's conditions no longer allow it."""
    level = journey.automation
    if level != "auto" if job.by == "auto" else not levels.shows_run_button(level):
        return f"the journey was set to {level} before it ran"
    if job.by != "auto" and job.asked_as:
        # Who may run it is asked again too: one taken out of owner.responders since.
        person = Person(job.by, frozenset(job.asked_as))
        why = levels.refusal(level, person, journey.owner.responders)
        if why is not None:
            return f"by the time it was to run, {why}"
    found = match(action, state, priority)
    if isinstance(found, str):
        return f"its conditions no longer held when it was to run: {found}"
    differ = sorted(k for k, v in found.values.items() if job.values.get(k, v) != v)
    if differ:
        # Its conditions now name another change (another service, another version): the
        # request fixed at the ask is not the one they call for.
        return (
            "its conditions now name another change than the one it was asked for "
            f"({', '.join(differ)})"
        )
    return None


def _not_as_shown(found: Match, shown: str | None) -> str | None:
    """Why a press must not run ``found``: the person confirmed it as ``shown``, and the
    probable cause has moved since (a later deploy, say, and the message not yet edited),
    so it would act on a change nobody confirmed."""
    if shown is None:
        # A Slack message posted before Run buttons carried what they show (its next edit
        # brings one that does, and this refusal makes that edit), or a confirmation page
        # shown while the action was not suggested.
        return (
            "the Run pressed does not say which change it was confirmed for: press Run again "
            "where the action is shown as it is now"
        )
    differ = changed(shown, found.values)
    if differ:
        return (
            "it now names another change than the one you confirmed: "
            f"{', '.join(differ)} differ from what was shown; look again and press Run on it "
            "as it is shown now"
        )
    return None


def _title(action: Action, values: dict[str, str]) -> str:
    shown = {"version": "the version deployed", "previous_version": PREVIOUS_UNKNOWN}
    return render(action.title, shown | values)


def _asked_already(state: IncidentState, key: str, title: str) -> Answer:
    """What a press is told when the action was asked for on the incident before: under
    way, or held back at its turn (then it is not run, and never will be here)."""
    # The latest ask of any action (the timeline says when); a skip of this one since then
    # is its asked run's, held back at its turn (an earlier skip, the hour's runs taken
    # say, came before it was asked for).
    asks = [e.at for e in state.timeline if e.kind == TIMELINE_KIND and _ASKED in e.text]
    last = next(
        (r for r in reversed(state.actions_run) if r.action == key and r.status == "skipped"),
        None,
    )
    if last is not None and asks and last.at >= max(asks):
        return Answer(
            "already",
            f"{title} was asked for on this incident and not run ({last.result}); "
            "an action is asked for at most once per incident",
        )
    return Answer("already", f"{title} was already asked for on this incident")


def _unmatched_title(action: Action, state: IncidentState) -> str:
    """The title of an action whose conditions do not hold (no change to fill it with):
    the incident's own values, and neutral words for the change's, never a raw
    ``{service}`` or a claim that the version before is unknown."""
    neutral = {
        "service": "its service",
        "version": "the version deployed",
        "previous_version": "the version before",
    }
    values = {k: v for k, v in incident_values(state).items() if v}
    return render(action.title, neutral | values | {"incident_id": state.id})


def _once(what: str, incident_id: str, key: str, detail: str | None) -> str:
    return f"action:{what}:{incident_id}:{key}" + (f":{detail}" if detail else "")
