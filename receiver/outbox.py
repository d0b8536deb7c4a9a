"""The outbox worker: delivers the jobs decisions left in the store, with the retry policy.

Every replica runs it right after each scheduler tick. A queue (one incident, one sink) is
worked by one replica at a time under a lease, head first; a job leaves its queue only
once its sink took it (its receipt is recorded in the same step) or it is buried as a dead
letter, so a replica killed at any point loses nothing: the next holder attempts the job
again and the sink finds its own earlier write (label, metadata, dedup key) if it landed.

An update a later job makes moot is skipped for sinks that coalesce (PagerDuty).

Retry policy lives here only: exponential backoff with jitter (tenacity's wait strategy,
evaluated per attempt because the wait is spent in the store, not in a sleeping task),
a sink's ``Retry-After`` honoured, at most ``outbox.max_attempts`` attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import tenacity

from receiver.config import OutboxConfig
from receiver.config.receiver_yaml import ATTEMPT_SHARE
from receiver.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    StoreUnavailable,
)
from receiver.incident import Incident
from receiver.metrics import Metrics
from receiver.retired import Retired
from receiver.settings import Settings, ms
from receiver.sinks import Delivery, Receipt, Sink
from receiver.store import GroupStore
from receiver.store.deliveries import (
    GONE,
    MOVED,
    ClaimedJob,
    DeadLetter,
    Job,
    JobKind,
    Waiting,
    WaitingState,
)
from receiver.store.records import IncidentState, StoredIncident
from receiver.store.tokens import ClaimTokens

if TYPE_CHECKING:
    from receiver.act.runs import Runs

logger = logging.getLogger("journey_receiver.outbox")

_CONCURRENCY = 8
# How long closing the outbox, or a sink a reload replaced, waits for the sinks' asking
# who they are (one call, with the sink's own timeout) before it goes on.
_LEARN_WAIT_S = 10.0
# Reads of a dead letter's incident before its redrive gives up on one that keeps changing.
_REDRIVE_ATTEMPTS = 5
Clock = Callable[[], float]
Render = Callable[[StoredIncident], Awaitable[Incident]]


def backoff(attempt: int, cfg: OutboxConfig) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...)."""
    wait = tenacity.wait_exponential_jitter(
        multiplier=cfg.backoff_initial, max=cfg.backoff_max, jitter=cfg.backoff_initial
    )
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(wait(state))


def kind_now(kind: JobKind, status: str, acknowledged: bool) -> JobKind:
    """The kind a redriven job takes so that it tells the incident as it is now: an old
    open must not re-trigger an incident that has resolved since, and an acknowledgement
    that no longer stands (the incident reopened since: an episode nobody acknowledged)
    must not stop the sink's escalation of it. A run stays a run (its attempt checks the
    incident first)."""
    if kind == "run":
        return kind
    if status == "resolved":
        return "resolve"
    if kind == "acknowledge" and not acknowledged:
        return "update"
    return "update" if kind == "resolve" else kind


class _NotHere(Exception):
    """A run this replica leaves to another (``Runs.execute``): why."""


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str
    detail: str
    retry_after: float | None
    permanent: bool
    ambiguous: bool = False


class Outbox:
    def __init__(
        self,
        store: GroupStore,
        sinks: Mapping[str, Sink],
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
        render: Render,
    ) -> None:
        self.store = store
        self.sinks = dict(sinks)
        self._retired = Retired()
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.render = render
        self.runs: Runs | None = None
        """Carries out ``run`` jobs (``receiver/act/runs.py``); set by the receiver."""
        self.learning: asyncio.Task[None] | None = None
        """The sinks asking who they are (``_learn_identities``), while they ask."""
        self._claim_tokens = ClaimTokens()

    @property
    def cfg(self) -> OutboxConfig:
        return self.settings.config.outbox

    def now_ms(self) -> int:
        return ms(self.clock())

    def replace_sinks(self, sinks: Mapping[str, Sink]) -> None:
        """Deliver with ``sinks`` from now on; deliveries under way finish on the old ones."""
        for sink in self.sinks.values():
            if sink not in sinks.values():
                self._retired.add(sink)
        self.sinks = dict(sinks)

    async def aclose(self) -> None:
        await self._learnt()
        if self.learning is not None:
            self.learning.cancel()
            await asyncio.gather(self.learning, return_exceptions=True)
        await self._retired.close()
        for sink in self.sinks.values():
            await sink.aclose()

    async def deliver_due(self) -> int:
        """Claim the queues whose head job may be attempted now and work each until it is
        empty or waiting; returns how many queues were claimed."""
        # Rounds run one after another: the last one, and every delivery it started on a
        # sink a reload replaced since, is over; a sink still asking who it is is let
        # finish before it is closed.
        if self._retired:
            await self._learnt()
        await self._retired.close()
        if self.runs is not None:
            await self.runs.between_rounds()
            # Before any job is claimed: a replica just started or reloaded is known to
            # define its actions as it does before another one gives it a run.
            await self.runs.say()
        self._learn_identities()
        cfg = self.cfg
        total = 0
        # Claimed a few at a time, no more than can start at once: a claim waiting for a
        # free slot could outlive its lease while another replica delivers its job.
        while total < cfg.batch:
            with self._claim_tokens.token() as token:
                claimed = await self.store.deliveries.claim(
                    self.now_ms(), ms(cfg.lease), min(_CONCURRENCY, cfg.batch - total), token
                )
            if not claimed:
                break
            total += len(claimed)
            await self._work(claimed)
        pending, dead = await self.store.deliveries.counts()
        self.metrics.outbox_pending.set(pending)
        self.metrics.dead_letters.set(dead)
        return total

    async def _learnt(self) -> None:
        """The sinks' asking who they are over, or ``_LEARN_WAIT_S`` gone by: its call runs
        in a thread, which cancelling would not stop, and the sink's client must not be
        closed under it."""
        if self.learning is not None and not self.learning.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.learning), _LEARN_WAIT_S)

    def _learn_identities(self) -> None:
        """Sinks that tell their own changes from people's in the vendor's webhooks by who
        they are there (the Jira sink asks ``myself``) ask from the first round on, in the
        background: a replica that has delivered nothing yet (just started, or the other
        replicas did the deliveries) must know them when a webhook comes its way, and a
        vendor that is slow to answer must not hold up the deliveries. Each sink asks until
        it is answered, at most every so often (``asks_own_names``, ``learn_own_names``):
        a round starts no task when none would ask."""
        if self.learning is not None and not self.learning.done():
            return
        # Looked up by name, as the inbound routes do: only the Jira sink has it.
        learners = [
            learn
            for sink in self.sinks.values()
            if getattr(sink, "asks_own_names", False)
            and (learn := getattr(sink, "learn_own_names", None)) is not None
        ]
        if learners:
            self.learning = asyncio.create_task(_learn(learners))

    async def _work(self, claimed: list[ClaimedJob]) -> None:
        unavailable: list[StoreUnavailable] = []

        async def work(job: ClaimedJob | None) -> None:
            try:
                while job is not None:
                    job = await self._attempt(job)
            except StoreUnavailable as exc:
                # The other queues finish their attempt; this one's lease lapses.
                unavailable.append(exc)

        async with anyio.create_task_group() as tg:
            for job in claimed:
                tg.start_soon(work, job)
        if unavailable:
            raise unavailable[0]

    async def _attempt(self, claimed: ClaimedJob) -> ClaimedJob | None:
        """One attempt at a queue's head job; the next job of the queue when this one went
        through and another follows."""
        job = claimed.job
        sink = self.sinks.get(job.sink)
        if sink is None and (job.kind != "run" or self.runs is None):
            # Not here, which need not be nowhere: replicas of a rolling change (or a
            # config reloaded a minute apart) may disagree, and a replica that has the sink
            # takes the job at its next try. One really removed still goes to the dead
            # letters, once the attempts are spent.
            detail = f'sink "{job.sink}" is not configured on this replica'
            # Nothing was sent now: whether an earlier attempt's write may have landed
            # still stands, for the replica that has the sink to look for it.
            unsure = _previous_ambiguous(claimed)
            failure = _Failure("unconfigured", detail, None, permanent=False, ambiguous=unsure)
            await self._failed(claimed, failure)
            return None
        if claimed.attempt > self.cfg.max_attempts:
            # Every attempt so far ended without an answer (the replica died mid-send).
            await self._bury(
                claimed, f"no attempt finished; last error: {claimed.last_error or 'none'}"
            )
            return None
        stored = await self.store.load(job.incident)
        if stored is None:
            await self._bury(claimed, "the incident expired before it could be delivered")
            return None
        if job.kind == "run" or sink is None:
            assert self.runs is not None
            runs = self.runs

            async def take() -> dict[str, str]:
                # Recorded by ``Runs`` before the job is dropped, so a replica killed in
                # between attempts it again under the same Idempotency-Key.
                elsewhere = await runs.execute(job, stored.state)
                if elsewhere is not None:
                    raise _NotHere(elsewhere)
                return {}

        else:
            if (
                job.kind == "update"
                and sink.coalesces_updates
                and await self.store.deliveries.superseded(job)
            ):
                # What comes next tells the sink the incident as it is then: this one is moot.
                self.metrics.deliveries.labels(job.sink, job.kind, "coalesced").inc()
                _, following = await self.store.deliveries.ack(
                    claimed, {}, self.now_ms(), ms(self.cfg.lease)
                )
                return following
            # A redrive of a dead job saying the same is one more attempt of it, whose
            # last one may have written before it failed: the sink looks its writes up.
            again = bool(job.follows) and claimed.attempt == 1
            delivery = Delivery(
                kind=job.kind,
                job_id=job.follows or job.id,
                owner=self.settings.catalog.find(stored.state.journey).owner,
                changes=tuple(job.changes),
                attempt=claimed.attempt + (1 if job.follows else 0),
                # A job buried before this one (its sink's receipt says "failed") may
                # have written before it failed, its receipt never recorded.
                previous_error_ambiguous=again
                or _previous_ambiguous(claimed)
                or (stored.state.sinks.get(job.sink) or {}).get("state") == "failed",
            )
            previous = _receipt(job.sink, stored.state.sinks.get(job.sink))
            deliver = sink.deliver

            async def take() -> dict[str, str]:
                receipt = await deliver(await self.render(stored), delivery, previous)
                return {"state": receipt.state, **receipt.refs}

        try:
            # A bound below the lease: past it another replica could take the job over.
            with anyio.fail_after(self.cfg.lease * ATTEMPT_SHARE):
                receipt = await take()
        except StoreUnavailable:
            raise
        except _NotHere as exc:
            # Given back, as a job for a sink this replica lacks is: nothing was sent.
            unsure = _previous_ambiguous(claimed)
            failure = _Failure("unconfigured", str(exc), None, permanent=False, ambiguous=unsure)
            await self._failed(claimed, failure)
            return None
        except Exception as exc:
            await self._failed(claimed, _failure(exc))
            return None
        now = self.now_ms()
        self.metrics.delivery_attempts.labels(job.sink, "delivered").inc()
        self.metrics.deliveries.labels(job.sink, job.kind, "delivered").inc()
        self.metrics.delivery_latency.labels(job.sink).observe(max(0.0, (now - job.due) / 1000))
        _, following = await self.store.deliveries.ack(claimed, receipt, now, ms(self.cfg.lease))
        return following

    async def _failed(self, claimed: ClaimedJob, failure: _Failure) -> None:
        job = claimed.job
        self.metrics.delivery_attempts.labels(job.sink, failure.reason).inc()
        if failure.permanent:
            await self._bury(claimed, failure.detail)
            return
        if claimed.attempt >= self.cfg.max_attempts:
            await self._bury(claimed, f"gave up after {claimed.attempt} attempts: {failure.detail}")
            return
        # A vendor's Retry-After is the least to wait, never more than the backoff allows
        # for: a second's rate limit in a storm would spend every attempt in seconds.
        wait = max(backoff(claimed.attempt, self.cfg), failure.retry_after or 0.0)
        logger.warning(
            "delivery of job %s (%s to %s) failed, attempt %d; next in %.1fs: %s",
            job.id, job.kind, job.sink, claimed.attempt, wait, failure.detail,
        )  # fmt: skip
        self.metrics.deliveries.labels(job.sink, job.kind, "retried").inc()
        await self.store.deliveries.retry(
            claimed, self.now_ms() + ms(wait), _recorded(claimed.attempt, failure)
        )

    async def _bury(self, claimed: ClaimedJob, error: str) -> None:
        job = claimed.job
        logger.error(
            "delivery of job %s (%s of incident %s to %s) is a dead letter: %s",
            job.id, job.kind, job.incident, job.sink, error,
        )  # fmt: skip
        if await self.store.deliveries.bury(
            claimed, error, self.now_ms(), self.cfg.dead_letters_max
        ):
            self.metrics.deliveries.labels(job.sink, job.kind, "dead").inc()
            self.metrics.dead_letters_total.labels(job.sink).inc()
            if job.kind == "run" and self.runs is not None:
                stored = await self.store.load(job.incident)
                if stored is not None:
                    await self.runs.failed(job, error, stored.state)

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        return await self.store.deliveries.dead_letters(limit)

    async def waiting(self, state: WaitingState, limit: int) -> list[Waiting]:
        return await self.store.deliveries.waiting(state, limit, self.now_ms())

    async def redrive(self, ids: Collection[str] = (), sink: str | None = None) -> Redriven:
        """Queue dead letters again (those with ``ids``, or all; of ``sink``, or any), each
        as a new job telling its incident as it is now; an action's run is cleared instead."""
        jobs: list[str] = []
        cleared: list[str] = []
        expired: list[str] = []
        # Oldest first (the list is newest first): each goes to the end of its queue, so
        # an incident's open is sent before the acknowledge buried after it.
        for letter in reversed(await self.store.deliveries.dead_letters(self.cfg.dead_letters_max)):
            old = letter.job
            if (ids and old.id not in ids) or (sink is not None and old.sink != sink):
                continue
            if old.kind == "run":
                # A run that failed is done for its incident (its record says so); sent
                # again it would pass by the guards a run is asked under (the hour's
                # budget, the level, who asked). Cleared, it stops counting as a dead
                # letter (and the alert on them); its failure stays on its incident.
                if await self.store.deliveries.discard(letter):
                    cleared.append(old.id)
                continue
            new_id = await self._redrive(letter)
            if new_id == GONE:
                # Its incident expired: nothing can ever deliver it. Left on the list it
                # would keep dead_letters_current (and the alert on it) up for good.
                if await self.store.deliveries.discard(letter):
                    expired.append(old.id)
            elif new_id is not None:
                jobs.append(new_id)
        return Redriven(jobs=jobs, cleared=cleared, expired=expired)

    async def _redrive(self, letter: DeadLetter) -> str | None:
        """``letter`` queued again as a job telling its incident as it is now; its id,
        ``GONE`` when its incident expired, or None when it cannot be (taken by another
        redrive, or the incident kept changing)."""
        old = letter.job
        retention = ms(self.settings.config.store.retention)
        for _ in range(_REDRIVE_ATTEMPTS):
            stored = await self.store.load(old.incident, timeline=False)
            if stored is None:
                return GONE
            now = self.now_ms()
            facts = (stored.state.status, _acknowledged(stored.state))
            kind = kind_now(old.kind, *facts)
            job = Job(
                incident=old.incident,
                sink=old.sink,
                kind=kind,
                changes=old.changes,
                due=now,
                follows=(old.follows or old.id) if kind == old.kind else "",
            )
            # Checked again where it is written: a decision landing in between (another
            # replica resolving it, say) would otherwise queue an open after its resolve.
            answer = await self.store.deliveries.redrive(letter, job, now, retention, facts)
            if answer != MOVED:
                return answer
        logger.warning("dead letter %s not redriven: its incident kept changing", old.id)
        return None


@dataclass(frozen=True)
class Redriven:
    """What a redrive did: the new jobs' ids, the runs' dead letters it cleared, and the
    dead letters it dropped because their incident had expired."""

    jobs: list[str]
    cleared: list[str]
    expired: list[str] = field(default_factory=list)


def _acknowledged(state: IncidentState) -> bool:
    """Whether an acknowledgement stands (not lapsed in PagerDuty, which pages again)."""
    return state.response is not None and state.response.standing is not None


def _receipt(sink: str, recorded: Mapping[str, str] | None) -> Receipt | None:
    """The receipt last recorded for ``sink``, or None while nothing was delivered."""
    refs = {k: v for k, v in (recorded or {}).items() if k != "state"}
    state = (recorded or {}).get("state", "pending")
    if not refs and state in ("pending", "failed"):
        return None
    return Receipt(sink=sink, state=state, refs=refs)


def _recorded(attempt: int, failure: _Failure) -> str:
    """The error kept for the queue's next attempt, whichever replica makes it: which
    attempt failed and whether its write may have landed unheard, then what it said."""
    return f"attempt {attempt}{', no answer' if failure.ambiguous else ''}: {failure.detail}"


def _previous_ambiguous(claimed: ClaimedJob) -> bool:
    """Whether the attempt before ``claimed`` may have written without its receipt: unless
    the error recorded is that attempt's and it had an answer. None recorded for it means
    it never finished (its replica died, or its lease ran out mid-send)."""
    if claimed.attempt <= 1:
        return False
    return not (claimed.last_error or "").startswith(f"attempt {claimed.attempt - 1}: ")


def _failure(exc: Exception) -> _Failure:
    if isinstance(exc, PermanentDeliveryError):
        return _Failure(exc.reason, str(exc), None, permanent=True)
    if isinstance(exc, RetryableDeliveryError):
        return _Failure(
            exc.reason, str(exc), exc.retry_after, permanent=False, ambiguous=exc.ambiguous
        )
    if isinstance(exc, DeliveryError):
        return _Failure(exc.reason, str(exc), None, permanent=False)
    if isinstance(exc, TimeoutError):
        # The sink's request may still be on its way: what it writes goes unheard.
        return _Failure(
            "timeout", "no answer within the outbox lease", None, permanent=False, ambiguous=True
        )
    # A sink's bug: worth the bounded retries (it may be a passing state), then a dead
    # letter; the traceback is logged once per attempt. It may have come after a write.
    logger.error("sink raised an unexpected error", exc_info=exc)
    detail = f"{type(exc).__name__}: {exc}"
    return _Failure("error", detail, None, permanent=False, ambiguous=True)


async def _learn(learners: list[Callable[[], Awaitable[None]]]) -> None:
    for learn in learners:
        try:
            await learn()
        except Exception:
            # A sink that cannot tell yet is asked again next round.
            logger.exception("a sink failed to learn who it is")
