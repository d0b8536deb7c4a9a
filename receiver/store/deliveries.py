"""The store side of the outbox: durable delivery jobs, one queue per incident and sink.

A decision's jobs are written by the commit script, in the same atomic step as the
decision. A queue is worked by one replica at a time under a lease, head first, so an
incident's notifications reach each sink in the order they were decided; queues of
different incidents and sinks do not wait on each other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from receiver.models import NotificationKind
from receiver.store.records import StrList, StrMap
from receiver.store.scripts import script, text, unavailable

_WAITING_PAGE = 200
"""Queues read per round trip when listing waiting jobs."""
WAITING_SCAN = 5_000
"""Queues a listing of pending jobs looks at, at most: the ones attempted soonest."""

AckOutcome = Literal["gone", "ok", "next"]
WaitingState = Literal["pending", "retrying"]
JobKind = NotificationKind | Literal["run"]
"""A notification for a sink, or ``run``: one run of an action (sink ``action:<id>``)."""
_TELLS_ALL: frozenset[str] = frozenset({"open", "update", "reopen", "resolve"})
"""The kinds of job that tell a sink the whole incident as it is when they are sent."""
_SUPERSEDING_READ = 50
"""Jobs behind a head an update reads to know if it is moot (``superseded``)."""
MOVED = "moved"
"""``redrive``'s answer when what the job's kind was chosen from changed meanwhile."""
GONE = "gone"
"""``redrive``'s answer when the incident expired."""


class Job(BaseModel):
    """One notification for one sink. ``due`` is when it was decided (for the latency
    metric); the id is given by the store when the job is written."""

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    incident: str
    sink: str
    kind: JobKind
    changes: StrList = Field(default_factory=list)
    due: int
    # A run's order, fixed when it was asked for, so that every attempt sends the same
    # request under the same key: who asked (and every name they were known by, for the
    # journey's owner.responders), the values its templates are filled with, and the
    # action's definition it was decided under (``receiver/act/definition.py``; empty
    # from a release before it).
    by: str = ""
    asked_as: StrList = Field(default_factory=list)
    values: StrMap = Field(default_factory=dict)
    definition: str = ""
    follows: str = ""
    """A redriven job saying what its dead letter said (the same kind): the first dead
    job's id, under which a sink finds what that one may have written (a Jira comment, a
    Slack reply) before it failed."""

    @property
    def queue(self) -> str:
        return queue_of(self.incident, self.sink)

    def unnumbered(self) -> str:
        """The JSON the store writes, to which it adds the id."""
        return self.model_dump_json(exclude={"id"})


def queue_of(incident_id: str, sink: str) -> str:
    return f"{incident_id}|{sink}"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A queue's head job, held by this replica until ``token``'s lease ends; ``attempt``
    counts this one (above 1: an earlier attempt may have landed)."""

    job: Job
    attempt: int
    last_error: str | None
    token: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """A job still in its queue. ``position`` 0 is the head: ``sending`` while an attempt
    of it is under way, else attempted next at ``next_attempt``; the jobs behind it go
    after it, in order. ``attempts`` counts the head's attempts, one under way included.
    Retrying: an earlier attempt of the head did not deliver it (``error`` says why, unless
    its worker died before it could say); pending: every other job."""

    job: Job
    position: int
    attempts: int
    error: str | None
    next_attempt: int | None
    sending: bool

    @property
    def state(self) -> WaitingState:
        earlier = self.attempts - (1 if self.sending else 0)
        return "retrying" if earlier > 0 else "pending"


class DeadLetter(BaseModel):
    """A job given up on, with why; ``raw`` is how the store holds it (for redrive)."""

    job: Job
    error: str
    dead_at: int
    attempts: int
    raw: str = ""


class DeliveryQueue:
    """Outbox operations over the store's Redis client, each one script call (a claim is
    two: the queues, then their heads). Every script is given every key it touches, all
    under the store's hash tag, as Redis Cluster requires."""

    def __init__(
        self, client: Any, prefix: str, observe: Callable[[str, float], None] | None = None
    ) -> None:
        self._r = client
        self._p = prefix
        self._observe = observe or (lambda op, seconds: None)
        self.ready_key = prefix + "ob:ready"
        self._lease = prefix + "ob:lease"
        self._att = prefix + "ob:att"
        self._err = prefix + "ob:err"
        self._dead_list = prefix + "ob:dead"
        self.job_counter = prefix + "ob:seq"
        self._claim = client.register_script(script("outbox_claim"))
        self._heads = client.register_script(script("outbox_heads"))
        self._ack = client.register_script(script("outbox_ack"))
        self._retry = client.register_script(script("outbox_retry"))
        self._dead = client.register_script(script("outbox_dead"))
        self._redrive = client.register_script(script("outbox_redrive"))

    def queue_key(self, queue: str) -> str:
        return self._p + "ob:q:" + queue

    def _heads_answer(self, token: str) -> str:
        return self._p + "ob:heads:" + token

    @unavailable
    async def claim(self, now_ms: int, lease_ms: int, limit: int, token: str) -> list[ClaimedJob]:
        started = time.perf_counter()
        queues = [
            text(q)
            for q in await self._claim(
                keys=[
                    self.ready_key,
                    self._lease,
                    self._p + "ob:claimed:" + token,
                    self._heads_answer(token),
                ],
                args=[now_ms, lease_ms, limit, token],
            )
        ]
        flat = (
            await self._heads(
                keys=[
                    self.ready_key,
                    self._lease,
                    self._att,
                    self._err,
                    self._heads_answer(token),
                    *map(self.queue_key, queues),
                ],
                args=[token, now_ms, lease_ms, *queues],
            )
            if queues
            else []
        )
        self._observe("outbox_claim", time.perf_counter() - started)
        return [
            _claimed(flat[i + 1], flat[i + 2], flat[i + 3], token) for i in range(0, len(flat), 4)
        ]

    @unavailable
    async def ack(
        self, claimed: ClaimedJob, receipt: dict[str, str], now_ms: int, lease_ms: int
    ) -> tuple[AckOutcome, ClaimedJob | None]:
        """Drop the delivered job and merge ``receipt`` into the incident's
        ``sinks.<sink>``; the next job of the queue comes back, still leased, if any."""
        job = claimed.job
        answer = await self._ack(
            keys=[
                self.queue_key(job.queue),
                self._att,
                self._err,
                self._p + "inc:" + job.incident,
                self.ready_key,
                self._lease,
            ],
            args=[job.queue, job.id, claimed.token, now_ms, lease_ms, job.sink, _dumps(receipt)],
        )
        outcome = text(answer[0])
        if outcome == "next":
            return "next", _claimed(answer[1], answer[2], answer[3], claimed.token)
        return ("gone" if outcome == "gone" else "ok"), None

    @unavailable
    async def retry(self, claimed: ClaimedJob, at_ms: int, error: str) -> bool:
        """Keep the job at its queue's head and attempt it again at ``at_ms``."""
        job = claimed.job
        answer = await self._retry(
            keys=[self.queue_key(job.queue), self._lease, self._err, self.ready_key],
            args=[job.queue, job.id, claimed.token, at_ms, error],
        )
        return text(answer) == "ok"

    @unavailable
    async def bury(self, claimed: ClaimedJob, error: str, now_ms: int, cap: int) -> bool:
        """Move the job to the dead-letter list, if this claim still holds it; the rest of
        its queue goes on."""
        job = claimed.job
        answer = await self._dead(
            keys=[
                self.queue_key(job.queue),
                self._lease,
                self._att,
                self._err,
                self._dead_list,
                self._p + "inc:" + job.incident,
                self.ready_key,
            ],
            args=[job.queue, job.id, error, now_ms, cap, job.sink, claimed.token],
        )
        return text(answer) == "ok"

    @unavailable
    async def superseded(self, job: Job) -> bool:
        """Whether a job queued behind ``job`` tells its sink the incident as it is then:
        an open, update, reopen or resolve (an acknowledge tells nothing of it). Only the
        next ``_SUPERSEDING_READ`` are read: a backlog after a long outage is read once per
        job, and past them the answer can only miss a coalescing, never lose an update."""
        later = await self._r.lrange(self.queue_key(job.queue), 1, _SUPERSEDING_READ)
        return any(json.loads(raw)["kind"] in _TELLS_ALL for raw in later)

    @unavailable
    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        raws = await self._r.lrange(self._dead_list, 0, limit - 1)
        return [_dead(text(raw)) for raw in raws]

    @unavailable
    async def discard(self, letter: DeadLetter) -> bool:
        """Take ``letter`` off the dead letters without sending it; False when another
        redrive took it first."""
        return bool(await self._r.lrem(self._dead_list, 1, letter.raw))

    @unavailable
    async def waiting(self, state: WaitingState, limit: int, now_ms: int) -> list[Waiting]:
        """Up to ``limit`` jobs in ``state``, the queue attempted soonest first.

        Retrying heads are found from the attempt counts (kept only for heads handed out);
        pending jobs by walking the queues in order of their next attempt, at most
        ``WAITING_SCAN`` queues. The outbox works meanwhile: a queue claimed during the
        walk moves later and is not listed twice, a job delivered meanwhile may still show."""
        if state == "retrying":
            queues = sorted(text(q) for q in await self._r.hkeys(self._att))
            found = [
                w
                for chunk in _chunks(queues, _WAITING_PAGE)
                for w in await self._heads_of(chunk, now_ms, 1)
                if w.state == "retrying"
            ]
            found.sort(key=lambda w: (w.next_attempt or 0, w.job.queue))
            return found[:limit]
        listed: list[Waiting] = []
        ids: set[str] = set()
        after: tuple[float, set[str]] = (float("-inf"), set())
        scanned = 0
        while len(listed) < limit and scanned < WAITING_SCAN:
            score, at_score = after
            answer = await self._r.zrangebyscore(
                self.ready_key,
                score,
                "+inf",
                start=0,
                num=_WAITING_PAGE + len(at_score),
                withscores=True,
            )
            # Queues at the score the last page ended on were listed with it.
            page = [(text(q), at) for q, at in answer if not (at == score and text(q) in at_score)]
            if not page:
                break
            scanned += len(page)
            last = page[-1][1]
            after = (
                last,
                {q for q, at in page if at == last} | (at_score if last == score else set()),
            )
            for w in await self._heads_of([q for q, _ in page], now_ms, limit - len(listed)):
                if w.state == "pending" and w.job.id not in ids:
                    ids.add(w.job.id)
                    listed.append(w)
        return listed[:limit]

    async def _heads_of(self, queues: list[str], now_ms: int, depth: int) -> list[Waiting]:
        """The first ``depth`` jobs of each of ``queues``, in one round trip."""
        if not queues:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.lrange(self.queue_key(queue), 0, depth - 1)
                pipe.zscore(self.ready_key, queue)
            pipe.hmget(self._att, queues)
            pipe.hmget(self._err, queues)
            pipe.hmget(self._lease, queues)
            *per_queue, attempts, errors, leases = await pipe.execute()
        found = []
        for i in range(len(queues)):
            jobs, at = per_queue[2 * i], per_queue[2 * i + 1]
            # Held, and its lease not yet over: an attempt is under way (a lease past its
            # end is a worker that died mid-send; the next claim takes the job over).
            sending = leases[i] is not None and at is not None and at > now_ms
            for position, raw in enumerate(jobs):
                head = position == 0
                found.append(
                    Waiting(
                        job=Job.model_validate_json(raw),
                        position=position,
                        attempts=int(attempts[i] or 0) if head else 0,
                        error=(text(errors[i]) or None) if head and errors[i] else None,
                        next_attempt=int(at) if head and at is not None and not sending else None,
                        sending=head and sending,
                    )
                )
        return found

    @unavailable
    async def redrive(
        self,
        letter: DeadLetter,
        job: Job,
        now_ms: int,
        retention_ms: int,
        chosen_from: tuple[str, bool],
    ) -> str | None:
        """Replace ``letter`` by ``job`` at the end of its queue: the new job's id; None
        when another redrive took the letter first; ``MOVED`` when the incident's (status,
        acknowledged), which ``job``'s kind was chosen from, ``chosen_from``, changed
        meanwhile; ``GONE`` when the incident expired."""
        status, acknowledged = chosen_from
        answer = await self._redrive(
            keys=[
                self._dead_list,
                self.job_counter,
                self.queue_key(job.queue),
                self.ready_key,
                self._p + "inc:" + job.incident,
            ],
            args=[
                letter.raw,
                job.queue,
                job.unnumbered(),
                now_ms,
                retention_ms,
                status,
                "1" if acknowledged else "0",
            ],
        )
        return text(answer) if answer else None

    @unavailable
    async def counts(self) -> tuple[int, int]:
        """(queues with jobs waiting, dead letters)."""
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zcard(self.ready_key)
            pipe.llen(self._dead_list)
            pending, dead = await pipe.execute()
        return int(pending), int(dead)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _claimed(raw: bytes | str, attempt: bytes | str, error: bytes | str, token: str) -> ClaimedJob:
    return ClaimedJob(
        job=Job.model_validate_json(raw),
        attempt=int(attempt),
        last_error=text(error) or None,
        token=token,
    )


def _dead(raw: str) -> DeadLetter:
    letter = DeadLetter.model_validate_json(raw)
    return letter.model_copy(update={"raw": raw})


def _dumps(data: dict[str, str]) -> str:
    return json.dumps(data, separators=(",", ":"))
