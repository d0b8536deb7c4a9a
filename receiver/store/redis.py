"""The store on Redis (or anything that speaks it): each batch is one Lua script call.

Every key lives under one Redis Cluster hash tag, ``{<prefix>}``, so each script's keys sit
in one slot: the same code runs on one Redis, behind Sentinel, or on a cluster.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import anyio
import orjson
from redis.exceptions import AskError, MovedError, TryAgainError

from receiver.errors import StoreUnavailable
from receiver.store.base import (
    AlertGroup,
    AnnotateOutcome,
    Annotation,
    Claim,
    CommitOutcome,
    IncidentStatusFilter,
    IngestOutcome,
    StoreSettings,
    capped,
)
from receiver.store.cache import SharedCache
from receiver.store.deliveries import DeliveryQueue, Job
from receiver.store.records import (
    SCHEDULER_FIELDS,
    TIMELINE_CAP,
    VIEW_FIELDS,
    AlertPage,
    IncidentState,
    StoredAlert,
    StoredIncident,
    TimelineEntry,
    stored_state,
)
from receiver.store.scripts import script, text, unavailable
from receiver.store.tokens import ClaimTokens

logger = logging.getLogger("journey_receiver.store")
P = ParamSpec("P")
T = TypeVar("T")

_LIST_PAGE = 200
_ALERTS_SCANNED = 1_000
"""Alerts of an incident read per round trip when a page of them is chosen."""
_RECENT_KEPT = 1_000
"""How many of an incident's latest firings ingest.lua keeps (rc:<id>): enough to choose a
page of ALERTS_SHOWN (500) from them while at least that many of them still fire."""
# A batch whose plan went stale is planned again; only a storm of new keys racing it would
# need a second try, so this many mean something is wrong.
_PLAN_ATTEMPTS = 10
# Keys whose incident this replica remembers between batches (a storm has a few dozen).
_INDEXES_KEPT = 10_000
# Batches that waited for a running call go together in the next one, up to about this
# many alerts: a script call blocks Redis for everyone while it runs.
_ALERTS_PER_CALL = 2_000
# Under load (the last call carried batches that had waited), the writer lets the event
# loop turn up to this many times, for at most _GATHER_SECONDS, before the next call:
# requests whose bytes have arrived reach the queue and share the call. Measured with 8
# requests in flight (benchmarks/ingest.py, A/B): a fifth more alerts/s at batch 1 and 10,
# a tenth at 100; 16 turns gain nothing more, and stopping after two turns that brought
# nothing loses a twentieth at batch 1. Once a call carries a single batch (quiet), the
# next goes at once.
_GATHER_TURNS = 8
# A turn runs every other ready task once: slow neighbours (a page of a big incident being
# chosen, ~14 ms a chunk) must not stretch the wait. Not less: a turn that parses a body of
# 100 alerts takes ~1 ms, and a cap of 1–3 ms cost 5–7% at batch 100 (A/B).
_GATHER_SECONDS = 0.005


@dataclass
class _Waiting:
    """A batch waiting for the next script call, and where its outcomes go."""

    groups: Sequence[AlertGroup]
    truncated: int
    now_ms: int
    done: asyncio.Future[list[IngestOutcome]]
    alerts: int


# How long an annotation's own marker lasts: longer than a cluster client's retries of one
# call (ten, each up to the socket timeout) take.
_CALL_MARKER_MS = 10 * 60_000

# What a decision reads of an incident's hash (``load``, ``load_many``).
_LOADED_FIELDS = ("state", "view", "ver", "tl_dropped")
# Due times moved per round trip when a reload shortens a timer.
_HASTEN_CHUNK = 1_000


def _since(state: IncidentState, since_ms: int) -> bool:
    return state.resolved_at is not None and state.resolved_at >= since_ms


def _stored(fields: Sequence[Any]) -> StoredIncident | None:
    """An incident from its hash's ``_LOADED_FIELDS``, without its timeline; None when it
    is gone."""
    raw_state, raw_view, ver, dropped = fields
    if raw_state is None:
        return None
    state = stored_state(raw_state, raw_view)
    if state.timeline:
        # Written into the document by versions before the timeline had its own list.
        state.timeline = []
    state.timeline_dropped = int(dropped or 0)
    return StoredIncident(state=state, version=int(ver or 0))


class RedisStore:
    """A GroupStore over a redis.asyncio client (or fakeredis for ``memory://``)."""

    def __init__(
        self,
        client: Any,
        settings: StoreSettings,
        *,
        helpers: Sequence[Any] = (),
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self._r = client
        self._helpers = list(helpers)
        self.settings = settings
        self._p = "{" + settings.key_prefix + "}:"
        self._due = self._p + "due"
        self._idx = self._p + "idx"
        self._alive = self._p + "alive"
        self._resolutions = self._p + "resolutions"
        self._owners = self._p + "owners:"
        self._widths_key = self._owners + "widths"
        # The owner index's other widths in use, as last read here (``_other_widths``).
        self._widths: list[int] | None = None
        # Set once the fp: keys of an earlier version were taken over (_adopt_fp_keys).
        self._adopted_key = self._owners + "adopted"
        self._ingest_keys = [k.encode() for k in (self._due, self._idx, self._alive)]
        self._claims = self._p + "claims"
        self._events = self._p + "events"
        # Whether the rollbacks a version before left out of their services' indexes were
        # indexed by this process (``_index_unnamed_rollbacks``).
        self._rollbacks_indexed = False
        self._rollbacks_indexing = anyio.Lock()
        self._observe = observe or (lambda op, seconds: None)
        # digest -> (current incident id, id counter) as last seen here, newest last.
        self._indexes: OrderedDict[str, tuple[str | bool, str | bool]] = OrderedDict()
        self._waiting: deque[_Waiting] = deque()
        self._writer: asyncio.Task[None] | None = None
        # Whether the last call carried batches that waited for the one before.
        self._busy = False
        self._ingest = client.register_script(script("ingest"))
        self._claim = client.register_script(script("claim"))
        self._commit = client.register_script(script("commit"))
        self._release = client.register_script(script("release"))
        self._annotate = client.register_script(script("annotate"))
        self._slot = client.register_script(script("slot"))
        self._claim_tokens = ClaimTokens()
        self.deliveries = DeliveryQueue(client, self._p, self._observe)
        self.cache = SharedCache(client, self._p)

    def configure(self, settings: StoreSettings) -> None:
        """Take new timers after a config reload; the key prefix stays as it was."""
        self.settings = replace(settings, key_prefix=self.settings.key_prefix)

    async def ingest(
        self, groups: Sequence[AlertGroup], truncated: int, now_ms: int
    ) -> list[IngestOutcome]:
        """Apply one batch; its outcomes once it is in the store.

        Batches that arrive while a script call is running wait for it and then go
        together in the next one (group commit): under load a call carries many small
        batches, so each incident's state is decoded and encoded once for all of them and
        the call's fixed cost is shared. After a call that carried several, the writer
        waits a few loop turns for more (``_gather``); once a call carries a single batch,
        the next goes at once.
        """
        done = asyncio.get_running_loop().create_future()
        waiting = _Waiting(groups, truncated, now_ms, done, sum(len(g.alerts) for g in groups))
        self._waiting.append(waiting)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
            self._writer.add_done_callback(self._writer_done)
        return await waiting.done

    async def _write_waiting(self) -> None:
        while self._waiting:
            taken: list[_Waiting] = []
            try:
                if self._busy:
                    await self._gather()
                alerts = 0
                # At least one batch, then whole batches up to the cap: a call stays short.
                while self._waiting and (not taken or alerts < _ALERTS_PER_CALL):
                    taken.append(self._waiting.popleft())
                    alerts += taken[-1].alerts
                self._busy = len(taken) > 1
                answers = await self._apply(taken)
            except Exception as exc:  # every batch of the call failed with it
                _fail(taken, exc)
            except BaseException:
                # Cancelled (the loop is going away): no batch may wait for ever.
                _fail([*taken, *self._waiting], StoreUnavailable("ingest cancelled"))
                self._waiting.clear()
                raise
            else:
                for w, outcomes in zip(taken, answers, strict=True):
                    if not w.done.done():
                        w.done.set_result(outcomes)

    async def _gather(self) -> None:
        """A few turns of the event loop (``_GATHER_TURNS``, ``_GATHER_SECONDS``), unless
        the queue already fills a call."""
        loop = asyncio.get_running_loop()
        until = loop.time() + _GATHER_SECONDS
        for _ in range(_GATHER_TURNS):
            if loop.time() >= until or sum(w.alerts for w in self._waiting) >= _ALERTS_PER_CALL:
                return
            await asyncio.sleep(0)  # one turn of the loop, no timer

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        # A writer cancelled before its first step never enters its loop (nor its except).
        if writer.cancelled() and self._waiting:
            _fail(list(self._waiting), StoreUnavailable("ingest cancelled"))
            self._waiting.clear()

    @unavailable
    async def _apply(self, batches: Sequence[_Waiting]) -> list[list[IngestOutcome]]:
        """One ingest.lua call for ``batches``, applied in order; their outcomes."""
        cfg = self.settings
        metas = []
        records = []
        # Alerts of one rule evaluation share their startsAt: each time is converted once.
        times = _Millis()
        groups = [g for b in batches for g in b.groups]
        for g in groups:
            for p in g.alerts:
                a = p.alert
                record = orjson.dumps(
                    {
                        "labels": a.labels,
                        "annotations": a.annotations,
                        "generator_url": a.generator_url,
                        "stage": p.stage,
                        "service": p.service,
                        "severity": p.severity,
                    }
                )
                records.append(record)
                metas.append(
                    (
                        a.fingerprint,
                        a.status,
                        times[a.starts_at],
                        times[a.ends_at],
                        p.service,
                        p.stage or "",
                        p.region,
                        p.impact_class,
                        len(record),
                    )
                )
        heads = [
            (g.key.text, g.key.digest, g.key.journey, g.key.label_map(), len(g.alerts))
            for g in groups
        ]
        # A handful of arguments whatever the batch size: redis-py packs each one in Python.
        now_ms = max(b.now_ms for b in batches)
        args = [
            self._p,
            now_ms,
            cfg.group_wait_ms,
            cfg.reopen_window_ms,
            cfg.retention_ms,
            TIMELINE_CAP,
            orjson.dumps([(len(b.groups), b.truncated) for b in batches]),
            orjson.dumps(heads),
            orjson.dumps(metas),
            b"".join(records),
        ]
        fingerprints = [m[0] for m in metas]
        journeys = {g.key.digest: g.key.journey for g in groups}
        started = time.perf_counter()
        # What this replica last saw of these keys spares the read; the script checks it
        # all the same, and a stale guess costs one more try.
        plan: Plan | None = self._remembered(journeys)
        for _ in range(_PLAN_ATTEMPTS):
            others = self._widths if self._widths is not None else await self._other_widths(now_ms)
            owner_keys = self._owner_keys(now_ms, cfg.retention_ms, others)
            if plan is None:
                # Looked up newest first: this width's bucket, the one before, the others.
                lookups = [owner_keys[2], owner_keys[1], *owner_keys[4:]]
                plan = await self._plan(fingerprints, lookups, journeys)
            keys = [
                *self._ingest_keys,
                *owner_keys,
                *self._planned_keys(plan, journeys, now_ms),
            ]
            raw = await self._run_ingest(
                keys,
                [
                    *args,
                    orjson.dumps(plan),
                    cfg.max_alerts_per_incident,
                    _RECENT_KEPT,
                    " ".join(map(str, others)),
                ],
            )
            if raw not in (b"retry", "retry"):
                break
            # The plan, or the owner index's widths in use, moved meanwhile.
            plan = None
            self._widths = None
        else:
            raise StoreUnavailable(
                f"ingest: the store's indexes kept moving over {_PLAN_ATTEMPTS} attempts"
            )
        self._observe("ingest", time.perf_counter() - started)
        answers = [results or [] for results in orjson.loads(raw)]
        self._remember([r for results in answers for r in results])
        return [
            [
                IngestOutcome(
                    incident_id=r["id"] or None,
                    journey=r["journey"],
                    opened=r["opened"],
                    reopened=r["reopened"],
                    changed=r["changed"],
                    duplicates=r["duplicates"],
                    ignored=r["ignored"],
                    alert_count=r["alert_count"],
                )
                for r in results
            ]
            for results in answers
        ]

    async def _run_ingest(self, keys: list[bytes], args: list[Any]) -> Any:
        """ingest.lua's answer; with ``replica_acks``, only once that many replicas hold
        what it wrote (else StoreUnavailable: a 503 that Alertmanager retries, and the
        retry is deduplicated)."""
        acks = self.settings.replica_acks
        if not acks:
            return await self._ingest(keys=keys, args=args)
        # WAIT counts the replicas that hold this connection's writes, so the script and
        # the WAIT go down one connection, in one pipeline.
        async with self._r.pipeline(transaction=False) as pipe:
            await self._ingest(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", acks, self.settings.replica_ack_timeout_ms)
            raw, held = await pipe.execute()
        if raw not in (b"retry", "retry") and int(held) < acks:
            raise StoreUnavailable(
                f"{held} of the {acks} replicas store.replica_acks asks for confirmed the "
                f"write within {self.settings.replica_ack_timeout_ms} ms"
            )
        return raw

    def _remembered(self, journeys: Mapping[str, str]) -> Plan | None:
        """The plan as this replica last left these keys, if it knows them all."""
        known = self._indexes
        if all(d in known for d in journeys):
            return {d: known[d] for d in journeys}
        return None

    def _remember(self, results: Sequence[Mapping[str, Any]]) -> None:
        """Each incident the batch reached is its key's current one, numbered by its
        counter: ``<journey>-<digest>-<n>``."""
        for r in results:
            if r["id"]:
                _, digest, number = r["id"].rsplit("-", 2)
                self._indexes[digest] = (r["id"], number)
                self._indexes.move_to_end(digest)
        while len(self._indexes) > _INDEXES_KEPT:
            self._indexes.popitem(last=False)

    async def _other_widths(self, now_ms: int) -> list[int]:
        """The owner index's widths in use besides this replica's retention, as Redis
        holds them (``owners:widths``: width -> when a call last used it). A width stays
        in use two widths after its last call, as long as its entries matter: the buckets
        of every width in use are read, so an owner outlives a change of ``store.retention``
        (raised or lowered, on one replica or all). A new index (a new store, one idle for
        three widths, an upgrade) first takes over the owners that versions before it kept
        a key each for (``_adopt_fp_keys``), unless that was done within two retentions
        (``owners:adopted``: by then every such key has expired)."""
        own = self.settings.retention_ms
        listed = await self._r.zrange(self._widths_key, 0, -1, withscores=True)
        if not listed and not await self._r.exists(self._adopted_key):
            await self._adopt_fp_keys(self._owner_keys(now_ms, own, [])[2], own)
            await self._r.set(self._adopted_key, 1, px=2 * own)
        self._widths = sorted(
            width
            for width, at in ((int(text(w)), float(at)) for w, at in listed)
            if width != own and at >= now_ms - 2 * width
        )
        return self._widths

    async def _adopt_fp_keys(self, bucket: bytes, width: int) -> None:
        """Owners kept by versions before the index as ``fp:<fingerprint>`` keys, copied
        into ``bucket`` a thousand at a time (never over an entry already there); the keys
        themselves expire within a retention. A SCAN of the whole key space, on the
        request path of the batch that begins the index: about a second per two million
        keys, once an upgrade (the next time the index begins, what is left is small)."""
        prefix = self._p + "fp:"
        async for names in _chunks(self._r.scan_iter(match=prefix + "*", count=1_000)):
            digests = await self._r.mget(names)
            async with self._r.pipeline(transaction=False) as pipe:
                for name, digest in zip(names, digests, strict=True):
                    if digest:
                        pipe.hsetnx(bucket, text(name).removeprefix(prefix), digest)
                pipe.pexpire(bucket, 3 * width)
                await pipe.execute()

    def _owner_keys(self, now_ms: int, width: int, others: Sequence[int]) -> list[bytes]:
        """The owner index's keys ingest.lua is given: of this replica's width, the bucket
        it unlinks, the one before now's and now's; the widths in use; then of each other
        width in use, now's bucket and the one before."""
        n = now_ms // width
        keys = [f"{self._owners}{width}:{n + step}" for step in (-2, -1, 0)]
        keys.append(self._widths_key)
        for other in others:
            m = now_ms // other
            keys += [f"{self._owners}{other}:{m}", f"{self._owners}{other}:{m - 1}"]
        return [k.encode() for k in keys]

    async def _plan(
        self, fingerprints: Sequence[str], buckets: Sequence[bytes], journeys: Mapping[str, str]
    ) -> Plan:
        """What ingest.lua will find: for the batch's digests and those of the incidents
        already holding its alerts, the current incident id and the id counter. One round
        trip: the owner buckets (``buckets``, the first that knows an alert answers), then
        each digest's index and counter (a cluster client pipelines no MGET)."""
        digests = list(journeys)
        async with self._r.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.hmget(bucket, fingerprints)
            for kind in ("key:", "seq:"):
                for d in digests:
                    pipe.get(self._p + kind + d)
            found = await pipe.execute()
        looked_up, answers = found[: len(buckets)], found[len(buckets) :]
        owners = [next((o for o in row if o), None) for row in zip(*looked_up, strict=True)]
        plan = _known(digests, answers)
        # Alerts held by an incident of another key (a reload moved them): theirs too.
        others = sorted({text(o) for o in owners if o} - plan.keys())
        if others:
            found = await self._r.mget(
                [self._p + "key:" + d for d in others] + [self._p + "seq:" + d for d in others]
            )
            plan |= _known(others, found)
        return plan

    def _planned_keys(self, plan: Plan, journeys: Mapping[str, str], now_ms: int) -> list[bytes]:
        """Per digest: its index and counter, and the keys of its current incident and of
        the one it would open next (ids as ingest.lua makes them: the counter's next, or now
        in seconds when there is none). Bytes, as ``owner_keys``."""
        p = self._p
        keys = []
        for digest, (current, seq) in plan.items():
            names = [f"{p}key:{digest}", f"{p}seq:{digest}"]
            ids = [current] if isinstance(current, str) else []
            if digest in journeys:
                n = int(seq) + 1 if seq else now_ms // 1000
                ids.append(f"{journeys[digest]}-{digest}-{n}")
            for i in ids:
                names += [p + part + i for part in ("inc:", "am:", "ab:", "ar:", "tl:", "rc:")]
            keys += [name.encode() for name in names]
        return keys

    @unavailable
    async def hasten(self, until_ms: int) -> int:
        # In chunks, each two plain commands: ZADD LT never puts a due time later. A decision
        # committing after this sets its own next due time (commit.lua): it was claimed
        # before the reload and decided under the timers it had, so the incident waits for
        # that time, as it would have without the reload.
        later = (f"({until_ms}", "+inf")
        chunks = await self._r.zcount(self._due, *later) // _HASTEN_CHUNK + 2
        moved = 0
        for _ in range(chunks):  # bounded: decisions keep adding later due times meanwhile
            ids = await self._r.zrangebyscore(self._due, *later, start=0, num=_HASTEN_CHUNK)
            if not ids:
                break
            moved += await self._r.zadd(self._due, dict.fromkeys(ids, until_ms), lt=True, ch=True)
        return moved

    @unavailable
    async def look_at(self, incident_ids: Sequence[str], at_ms: int) -> int:
        if not incident_ids:
            return 0
        # LT, as hasten (and, as there, a decision committing after this sets its own).
        return int(
            await self._r.zadd(self._due, dict.fromkeys(incident_ids, at_ms), lt=True, ch=True)
        )

    @unavailable
    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[Claim]:
        with self._claim_tokens.token() as token:
            flat = await self._claim(
                keys=[self._due, self._claims, self._p + "claimed:" + token],
                args=[now_ms, lease_ms, limit, token],
            )
        return [
            Claim(text(flat[i]), token, int(float(flat[i + 1]))) for i in range(0, len(flat), 2)
        ]

    @unavailable
    async def load(self, incident_id: str, timeline: bool = True) -> StoredIncident | None:
        if not timeline:
            return (await self.load_many([incident_id]))[0]
        started = time.perf_counter()
        state_key, timeline_key = self._p + "inc:" + incident_id, self._p + "tl:" + incident_id
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hmget(state_key, *_LOADED_FIELDS)
                pipe.lrange(timeline_key, 0, -1)
                fields, entries = await pipe.execute()
        except (AskError, MovedError, TryAgainError):
            # The store's slot is moving to another master (a reshard): redis-py's
            # transactions do not follow it, a command on its own does. Read apart, the
            # timeline may hold an entry the state does not show yet; both are as stored.
            fields = await self._r.hmget(state_key, *_LOADED_FIELDS)
            entries = await self._r.lrange(timeline_key, 0, -1)
        self._observe("load", time.perf_counter() - started)
        stored = _stored(fields)
        if stored is not None:
            stored.state.timeline = [TimelineEntry.model_validate_json(e) for e in entries]
        return stored

    @unavailable
    async def resolved_since(self, since_ms: int, limit: int) -> list[IncidentState]:
        ids = await self._r.zrevrangebyscore(
            self._resolutions, "+inf", since_ms, start=0, num=limit
        )
        found: list[IncidentState] = []
        for start in range(0, len(ids), _LIST_PAGE):
            chunk = [text(i) for i in ids[start : start + _LIST_PAGE]]
            states = [s.state for s in await self.load_many(chunk) if s is not None]
            # Reopened since (or expired): no longer resolved.
            found += [s for s in states if s.status == "resolved" and _since(s, since_ms)]
        return found

    @unavailable
    async def load_many(self, incident_ids: Sequence[str]) -> list[StoredIncident | None]:
        started = time.perf_counter()
        if len(incident_ids) == 1:
            found = [await self._r.hmget(self._p + "inc:" + incident_ids[0], *_LOADED_FIELDS)]
        else:
            async with self._r.pipeline(transaction=False) as pipe:
                for incident_id in incident_ids:
                    pipe.hmget(self._p + "inc:" + incident_id, *_LOADED_FIELDS)
                found = await pipe.execute()
        self._observe("load", time.perf_counter() - started)
        return [_stored(fields) for fields in found]

    @unavailable
    async def load_alerts(self, incident_id: str, limit: int) -> AlertPage:
        key = self._p + "am:" + incident_id
        shown = await self._chosen_alerts(incident_id, limit)
        if shown is None:
            # The scan went on where the hash was not laid out as where it began (a failover,
            # the slot moved): fields held throughout may have been skipped. Read it whole.
            whole: dict[str, str] = await self._r.hgetall(key)
            split = ((fp, meta.split("|", 5)) for fp, meta in whole.items())
            shown = heapq.nsmallest(limit, ((_rank(fp, m), m) for fp, m in split), key=_by_rank)
        fps = [rank[2] for rank, _ in shown]
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hlen(key)
            if fps:
                pipe.hmget(self._p + "ab:" + incident_id, fps)
            total, *answers = await pipe.execute()
        bodies = answers[0] if answers else []
        alerts = [
            _alert(rank[2], fields, body)
            for (rank, fields), body in zip(shown, bodies, strict=True)
            # Dropped while the page was chosen (the cap, the retention).
            if body is not None
        ]
        return AlertPage(alerts=alerts, total=max(int(total), len(alerts)))

    async def _chosen_alerts(self, incident_id: str, limit: int) -> list[_Ranked] | None:
        """The best ``limit`` alerts of the incident (``_rank``). A small incident comes
        whole with the first chunk; a large one is chosen from its latest firings
        (``_recent_alerts``) when they prove it, else ranked whole (``_scanned_alerts``).
        None: read it whole."""
        key = self._p + "am:" + incident_id
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hlen(key)
            pipe.hscan(key, 0, count=_ALERTS_SCANNED)
            pipe.lrange(self._p + "rc:" + incident_id, 0, -1)
            before, (cursor, found), recent = await pipe.execute()
        if cursor and len(recent) >= limit:
            proven = await self._recent_alerts(key, recent, limit)
            if proven is not None:
                return proven
        return await self._scanned_alerts(key, limit, int(before), cursor, found)

    async def _recent_alerts(
        self, key: str, recent: Sequence[str], limit: int
    ) -> list[_Ranked] | None:
        """The best ``limit`` alerts of the ``am:`` hash ``key`` chosen from ``recent``
        alone (its ``rc:`` list, ingest.lua) when that proves them the best; else None.

        Ingest pushes an alert's fingerprint on the list each time it starts firing (it
        arrives firing, or fires again), and that push's time is its ``changed_at`` while
        it fires. Those times never go back within an incident, whatever the replicas'
        clocks (ingest.lua stamps a change no earlier than the incident's last one). So a
        firing alert off the list started no later than the oldest entry on it, and every
        alert on it changed then or later: with ``limit`` firing alerts on it that changed
        after the earliest ``changed_at`` found there, none off the list ranks among the
        best ``limit`` (firing first, the latest change first; resolved ones after every
        firing one)."""
        fps = list(dict.fromkeys(recent))
        metas: list[str | None] = await self._r.hmget(key, fps)
        ranked = [
            (_rank(fp, fields), fields)
            for fp, meta in zip(fps, metas, strict=True)
            # Dropped since (the cap keeps firing alerts), or from an older layout.
            if meta is not None
            for fields in (meta.split("|", 5),)
        ]
        if not ranked:
            return None
        earliest = min(int(fields[4]) for _, fields in ranked)
        later = sum(1 for rank, fields in ranked if not rank[0] and int(fields[4]) > earliest)
        return heapq.nsmallest(limit, ranked, key=_by_rank) if later >= limit else None

    async def _scanned_alerts(
        self, key: str, limit: int, before: int, cursor: int, found: dict[str, str]
    ) -> list[_Ranked] | None:
        """The best ``limit`` alerts of the ``am:`` hash ``key`` (``_rank``), read a chunk
        at a time (HSCAN, the first chunk given with the hash's length ``before`` it) so
        that an incident of tens of thousands of alerts holds neither Redis nor this event
        loop for the whole of it: measured at 50,000 alerts, one HGETALL and its sort held
        the loop ~160 ms at once (every webhook waited, and a round of such incidents'
        updates or the stats' refresh stacked them); chunk by chunk, a page of 500 holds it
        ~14 ms at most. None when fewer fields came back than the hash held at both ends
        of the scan: it cannot be trusted to be whole."""
        seen: set[str] = set()
        best: dict[str, _Ranked] = {}
        # Once trimmed to ``limit``: what a field must beat to get in.
        cutoff: _Rank | None = None
        chunks = 0
        while True:
            chunks += 1
            seen.update(found)
            for fp, meta in found.items():
                fields = meta.split("|", 5)
                rank = _rank(fp, fields)
                # A field HSCAN returns again (the hash grew meanwhile): its latest value.
                if cutoff is None or rank < cutoff or fp in best:
                    best[fp] = (rank, fields)
            if len(best) > 2 * limit + _ALERTS_SCANNED:
                kept = heapq.nsmallest(limit, best.values(), key=_by_rank)
                best = {rank[2]: (rank, fields) for rank, fields in kept}
                cutoff = kept[-1][0] if kept else None
            if not cursor:
                break
            cursor, found = await self._r.hscan(key, cursor, count=_ALERTS_SCANNED)
        # One HSCAN is atomic: read whole in one, the hash was seen as it was then.
        if chunks > 1 and len(seen) < min(before, int(await self._r.hlen(key))):
            return None
        return heapq.nsmallest(limit, best.values(), key=_by_rank)

    @unavailable
    async def commit(
        self,
        claim: Claim,
        version: int,
        state: IncidentState,
        guard: Mapping[str, str | int | None],
        next_due_ms: int | None,
        appended: Sequence[TimelineEntry],
        now_ms: int,
        jobs: Sequence[Job] = (),
    ) -> CommitOutcome:
        started = time.perf_counter()
        result = text(
            await self._commit(
                keys=[
                    self._due,
                    self._claims,
                    self._p + "inc:" + claim.incident_id,
                    self._p + "tl:" + claim.incident_id,
                    self._p + "key:" + state.digest,
                    self._p + "seq:" + state.digest,
                    self.deliveries.job_counter,
                    self.deliveries.ready_key,
                    self._alive,
                    self._p + "am:" + claim.incident_id,
                    self._p + "ab:" + claim.incident_id,
                    self._p + "ar:" + claim.incident_id,
                    self._p + "rc:" + claim.incident_id,
                    self._resolutions,
                    *(self.deliveries.queue_key(job.queue) for job in jobs),
                ],
                args=[
                    claim.incident_id,
                    claim.token,
                    version,
                    now_ms,
                    _dumps(dict(guard)),
                    state.model_dump_json(include=_CORE_PATCH),
                    -1 if next_due_ms is None else next_due_ms,
                    self.settings.retention_ms,
                    TIMELINE_CAP,
                    len(jobs),
                    state.model_dump_json(include=_VIEW),
                    _VIEW_NAMES,
                    *(part for job in jobs for part in (job.queue, job.unnumbered())),
                    *(e.model_dump_json() for e in appended),
                ],
            )
        )
        self._observe("commit", time.perf_counter() - started)
        if result not in ("ok", "lost", "stale"):
            raise RuntimeError(f"commit script answered {result!r}")
        return result  # type: ignore[return-value]

    @unavailable
    async def release(self, claim: Claim, due_ms: int | None) -> None:
        await self._release(
            keys=[self._due, self._claims],
            args=[claim.incident_id, claim.token, "" if due_ms is None else due_ms],
        )

    async def list_incidents(
        self, status: IncidentStatusFilter, journey: str | None, limit: int
    ) -> list[IncidentState]:
        return await _first(self._walk(_Cursor("+inf", "-inf"), status, journey, _LIST_PAGE), limit)

    async def incidents_since(
        self, since_ms: int, journey: str | None, limit: int
    ) -> list[IncidentState]:
        return await _first(
            self._walk(_Cursor("+inf", since_ms), "all", journey, _LIST_PAGE), limit
        )

    def iter_incidents(
        self, status: IncidentStatusFilter, journey: str | None, page_size: int
    ) -> AsyncGenerator[list[IncidentState], None]:
        return self._walk(_Cursor("+inf", "-inf"), status, journey, page_size)

    def iter_incidents_since(
        self, since_ms: int, journey: str | None, page_size: int
    ) -> AsyncGenerator[list[IncidentState], None]:
        # The index is scored by creation time: the window is a range of it.
        return self._walk(_Cursor("+inf", since_ms), "all", journey, page_size)

    async def _walk(
        self,
        cursor: _Cursor,
        status: IncidentStatusFilter,
        journey: str | None,
        page_size: int,
    ) -> AsyncGenerator[list[IncidentState], None]:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        at: _Cursor | None = cursor
        while at is not None:
            page, at = await self._page(at, status, journey, page_size)
            if page:
                yield page

    @unavailable
    async def _page(
        self,
        cursor: _Cursor,
        status: IncidentStatusFilter,
        journey: str | None,
        page_size: int,
    ) -> tuple[list[IncidentState], _Cursor | None]:
        """The incidents of ``status`` and ``journey`` among the next ``page_size`` of the
        index below ``cursor``, newest first, and the cursor after them (None: the end)."""
        # A score, not a rank: incidents opened meanwhile (scored later) and entries pruned
        # meanwhile move no one past the cursor. The ids already read at the cursor's score
        # (one batch opens many incidents at one time) come back first: read past them.
        asked = len(cursor.tied) + page_size
        rows = await self._r.zrevrangebyscore(
            self._idx, cursor.top, cursor.floor, start=0, num=asked, withscores=True
        )
        unread = [(i, s) for i, s in ((text(m), s) for m, s in rows) if i not in cursor.tied]
        fresh = unread[:page_size]
        # An id names its incident's journey: another journey's state is not even read.
        wanted = [i for i, _ in fresh if journey is None or _journey_of(i) in (None, journey)]
        raws: list[list[Any]] = []
        if wanted:
            async with self._r.pipeline(transaction=False) as pipe:
                for i in wanted:
                    pipe.hmget(self._p + "inc:" + i, "state", "view")
                raws = await pipe.execute()
        gone = [i for i, (raw, _) in zip(wanted, raws, strict=True) if raw is None]
        if gone:
            # The incident expired with its retention; its index entry goes with it.
            await self._r.zrem(self._idx, *gone)
        found = [
            st
            for raw, view in raws
            if raw is not None and (st := _readable(raw, view)) is not None
            if (status == "all" or st.status == status) and journey in (None, st.journey)
        ]
        # Short of what was asked, the range is read out, unless tied ids went from the
        # index meanwhile (expired ones, pruned above or by ingest): then more may be left.
        if len(rows) < asked and len(unread) <= page_size:
            return found, None
        low = fresh[-1][1]
        tied = frozenset(i for i, s in fresh if s == low)
        if low == cursor.top:
            tied |= cursor.tied
        return found, _Cursor(low, cursor.floor, tied)

    @unavailable
    async def add_events(self, events: Sequence[tuple[int, str]], now_ms: int) -> None:
        oldest = now_ms - self.settings.events_retention_ms
        # Each service's changes that name a version also go to its own index, trimmed
        # alike, and its rollbacks that name none: after one, what runs is not known.
        versioned: dict[str, dict[str, int]] = {}
        for at, doc in events:
            fields = orjson.loads(doc)
            if fields.get("version") or fields.get("type") == "rollback":
                versioned.setdefault(fields["service"], {})[doc] = at
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.zadd(self._events, {doc: at for at, doc in events})
            pipe.zremrangebyscore(self._events, "-inf", oldest)
            for service, docs in versioned.items():
                key = self._versions(service)
                pipe.zadd(key, docs)
                pipe.zremrangebyscore(key, "-inf", oldest)
                pipe.pexpire(key, self.settings.events_retention_ms)
            await pipe.execute()

    def _versions(self, service: str) -> str:
        return self._p + "ver:" + service

    @unavailable
    async def versions_before(
        self, services: Sequence[str], before_ms: Sequence[int], limit: int
    ) -> list[list[str]]:
        if not services:
            return []
        if not self._rollbacks_indexed:
            async with self._rollbacks_indexing:
                if not self._rollbacks_indexed:
                    # Shielded: it runs within an incident's context budget, and one given
                    # up halfway would be begun again, and given up again, at every look.
                    with anyio.CancelScope(shield=True):
                        await self._index_unnamed_rollbacks()
                    self._rollbacks_indexed = True
        async with self._r.pipeline(transaction=False) as pipe:
            for service, before in zip(services, before_ms, strict=True):
                pipe.zrevrangebyscore(self._versions(service), f"({before}", "-inf", 0, limit)
            found = await pipe.execute()
        return [[text(doc) for doc in docs] for docs in found]

    async def _index_unnamed_rollbacks(self) -> None:
        """Put the stored rollbacks that name no version in their services' indexes, as
        ``add_events`` does now: versions before it indexed only the changes that name one,
        and without them a version a rollback undid would read as the one a later deploy
        replaced (the target of "roll back"). Once per process, at its first look, so that
        each replica of this version indexes what replicas of the one before took until
        then (a rolling upgrade); one read of the events (a retention's), a page at a time."""
        found: dict[str, dict[Any, float]] = {}
        async for doc, at in self._r.zscan_iter(self._events, count=_LIST_PAGE):
            fields = orjson.loads(doc)
            if fields.get("type") == "rollback" and not fields.get("version"):
                found.setdefault(fields["service"], {})[doc] = at
        if not found:
            return
        async with self._r.pipeline(transaction=False) as pipe:
            for service, docs in found.items():
                key = self._versions(service)
                pipe.zadd(key, docs)
                pipe.pexpire(key, self.settings.events_retention_ms)
            await pipe.execute()

    @unavailable
    async def events_between(self, start_ms: int, end_ms: int) -> list[str]:
        return [text(d) for d in await self._r.zrangebyscore(self._events, start_ms, end_ms)]

    @unavailable
    async def annotate(
        self, incident_id: str, annotation: Annotation, now_ms: int
    ) -> AnnotateOutcome:
        changes: dict[str, object] = {
            "append": annotation.append,
            "merge": annotation.merge,
            "fill": annotation.fill,
        }
        if annotation.expect is not None:
            changes["expect"] = list(annotation.expect)
        jobs = annotation.jobs
        once = annotation.once
        # Without a vendor's id, a marker of this call's own: a Redis Cluster client sends a
        # script again when its answer was lost (a timeout, a failover), and feedback, a
        # silence or a timeline entry must not land twice. It lives as long as such tries.
        marker = once or "call:" + secrets.token_hex(8)
        result = text(
            await self._annotate(
                keys=[
                    self._p + "inc:" + incident_id,
                    self._p + "tl:" + incident_id,
                    self._p + "once:" + marker,
                    self.deliveries.job_counter,
                    self.deliveries.ready_key,
                    self._due,
                    *(self.deliveries.queue_key(job.queue) for job in jobs),
                ],
                args=[
                    orjson.dumps(changes),
                    now_ms,
                    self.settings.retention_ms,
                    TIMELINE_CAP,
                    self.settings.retention_ms if once else _CALL_MARKER_MS,
                    -1 if annotation.due is None else annotation.due,
                    len(jobs),
                    *(part for job in jobs for part in (job.queue, job.unnumbered())),
                    *(e.model_dump_json() for e in annotation.timeline),
                ],
            )
        )
        if result not in ("ok", "unknown", "repeat", "stale"):
            raise RuntimeError(f"annotate script answered {result!r}")
        if result == "repeat" and once is None:
            return "ok"  # the client's own retry found the first try landed
        return result  # type: ignore[return-value]

    @unavailable
    async def take_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        return bool(await self._r.set(self._p + "lease:" + name, holder, nx=True, px=ttl_ms))

    @unavailable
    async def marked(self, once: str) -> bool:
        return bool(await self._r.exists(self._p + "once:" + once))

    @unavailable
    async def take_slot(
        self, name: str, holder: str, limit: int, window_ms: int, now_ms: int
    ) -> bool:
        taken = await self._slot(
            keys=[self._p + "slots:" + name], args=[holder, now_ms, window_ms, limit]
        )
        return bool(int(taken))

    @unavailable
    async def ping(self) -> None:
        await self._r.ping()

    async def aclose(self) -> None:
        if self._writer is not None and not self._writer.cancelled():
            await self._writer  # the batches already taken in get their answers
        await self._r.aclose()
        for helper in self._helpers:
            await helper.aclose()


# What commit.lua merges into the state document; the rest of the scheduler's fields are
# the view, written whole.
_CORE_PATCH = set(SCHEDULER_FIELDS - VIEW_FIELDS)
_VIEW = set(VIEW_FIELDS)
_VIEW_NAMES = " ".join(sorted(VIEW_FIELDS))

# json.dumps with non-default options builds a new encoder on every call; this is reused.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


Plan = dict[str, tuple[str | bool, str | bool]]


async def _chunks(keys: AsyncIterator[Any], size: int = 1_000) -> AsyncIterator[list[Any]]:
    """``keys`` a list of at most ``size`` at a time."""
    chunk: list[Any] = []
    async for key in keys:
        chunk.append(key)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _known(digests: Sequence[str], answers: Sequence[Any]) -> Plan:
    """digest -> (its current incident id, its id counter), False where there is none, from
    the answers to key:<digest>... then seq:<digest>..."""
    ids, seqs = answers[: len(digests)], answers[len(digests) :]
    return {
        d: (text(i) if i else False, text(q) if q else False)
        for d, i, q in zip(digests, ids, seqs, strict=True)
    }


@dataclass(frozen=True, slots=True)
class _Cursor:
    """Where a walk down the index stands: what is left is scored at most ``top`` (a
    score, or "+inf") and at least ``floor``, but for the ``tied`` ids, already read at
    ``top``."""

    top: float | str
    floor: int | str
    tied: frozenset[str] = frozenset()


async def _first(
    pages: AsyncGenerator[list[IncidentState], None], limit: int
) -> list[IncidentState]:
    """The first ``limit`` incidents of ``pages``."""
    return [state async for page in capped(pages, limit) for state in page]


def _readable(raw: bytes | str, view: bytes | str | None) -> IncidentState | None:
    try:
        return stored_state(raw, view)
    except ValueError:
        # One unreadable incident must not hide every other one.
        logger.warning("store: incident state not readable; skipped")
        return None


_Rank = tuple[bool, int, str]
_Ranked = tuple[_Rank, list[str]]


def _rank(fp: str, meta: list[str]) -> _Rank:
    """Firing first, then the latest to change: what a reader needs when not all fit."""
    return (meta[0] != "firing", -int(meta[4]), fp)


def _by_rank(ranked: _Ranked) -> _Rank:
    return ranked[0]


# ingest.lua's incident ids: ``<journey>-<digest>-<n>``, the journey a slug (it may hold
# dashes), the digest 12 hex digits; a journey is the one its incident opened under for
# good.
_INCIDENT_ID = re.compile(r"(.+)-[0-9a-f]{12}-[0-9]+")


def _journey_of(incident_id: str) -> str | None:
    """The journey an incident id names; None for an id of another shape (then the state
    says)."""
    named = _INCIDENT_ID.fullmatch(incident_id)
    return named.group(1) if named else None


def _fail(batches: Sequence[_Waiting], exc: Exception) -> None:
    for w in batches:
        if not w.done.done():
            w.done.set_exception(exc)
            w.done.exception()  # retrieved: a request that went away never asks


def _ms(at: datetime | None) -> str:
    return "" if at is None else str(int(at.timestamp() * 1000))


class _Millis(dict[datetime | None, str]):
    """``_ms`` of each time asked for, computed once (a call's worth: never shared)."""

    def __missing__(self, at: datetime | None) -> str:
        self[at] = text = _ms(at)
        return text


def _alert(fp: str, meta: list[str], body: str | None) -> StoredAlert:
    """Join the dedup meta fields and the record the ingest script keeps per alert."""
    status, starts, ends, first_seen, changed_at = meta[:5]
    # A record can only be missing if its hash expired alone: degrade, do not fail the read.
    record: dict[str, Any] = json.loads(body) if body else {}
    return StoredAlert(
        fp=fp,
        status=status,  # type: ignore[arg-type]  # the script writes only firing/resolved
        starts_at=int(starts) if starts else None,
        ends_at=int(ends) if ends else None,
        first_seen=int(first_seen),
        changed_at=int(changed_at),
        labels=record.get("labels", {}),
        annotations=record.get("annotations", {}),
        generator_url=record.get("generator_url", ""),
        stage=record.get("stage"),
        service=record.get("service", "unknown"),
        severity=record.get("severity", "none"),
    )
