"""What a soak left behind, held against what was acknowledged and decided.

- **Lost:** an alert of a batch answered 2xx that is not in the incident the answer named
  (or not in the state its last acknowledged batch reported).
- **Decisions** are the incident's own record: each ``notified`` entry of its timeline
  (``open P2 sent to jira, pagerduty, slack``) is one decision, one outbox job per sink.
  Held against the batches too: a wave that resolved all its alerts must have been opened
  once and resolved once, and be resolved.
- **Delivered exactly once**, per sink, what a person would see:
  Slack one message per incident and one thread reply per later decision (each reply
  carries its job id: a reply twice is a duplicate); Jira one issue per incident and one
  comment per later decision (each with its job's marker); PagerDuty one alert per
  incident, resolved. PagerDuty is told by dedup key, so an event sent again after a crash
  is absorbed by PagerDuty by design (README, "after a crash"): it is counted as resent,
  not as a duplicate.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from tests.support.fake_slack import Channel
from tests.support.sink_world import Fakes

if TYPE_CHECKING:
    from tests.support.balancer import Balancer
    from tests.support.fleet import DurableRedis, Replica
    from tests.support.soak import Batch

_JIRA_MARKER = re.compile(r"journey\\?-receiver job (\d+)")
_LABEL = "journey-receiver-"


@dataclass(frozen=True)
class Decision:
    kind: str  # open, update, resolve, reopen
    sinks: tuple[str, ...]


@dataclass
class Audit:
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each incident's detail as the receiver answers it."""
    decisions: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    """What the fakes hold, by (sink object) name."""
    resent: Counter[str] = field(default_factory=Counter)
    """PagerDuty events beyond the decisions (the same event again after a crash)."""
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [
            *(f"lost: {p}" for p in self.lost),
            *(f"duplicate: {p}" for p in self.duplicates),
            *(f"undelivered: {p}" for p in self.undelivered),
            *self.other,
        ]


def decisions(detail: dict[str, Any]) -> list[Decision]:
    """The incident's decisions, oldest first, from its timeline."""
    found = []
    for entry in detail["timeline"]:
        if entry["kind"] == "notified":
            kind, _, rest = entry["text"].partition(" ")
            routed = rest.partition(" sent to ")[2].partition(" (")[0]
            found.append(Decision(kind, tuple(s for s in routed.split(", ") if s)))
    return found


def audit(
    log: Sequence[Batch], url: str, token: str, world: Fakes, channels: Sequence[Channel]
) -> Audit:
    found = Audit()
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
    ) as client:
        for incident_id in sorted({i for b in log for i in b.incidents}):
            r = client.get(f"/api/v1/incidents/{incident_id}")
            if r.status_code != 200:
                found.lost.append(f"incident {incident_id} answers {r.status_code}")
                continue
            found.incidents[incident_id] = r.json()
        dead = client.get("/api/v1/deliveries", params={"state": "dead"}).json()["deliveries"]
    found.undelivered.extend(
        f"dead letter {d['sink']} {d['kind']} of {d['incident']}: {d['error']}" for d in dead
    )
    _alerts(log, found)
    _lifecycles(log, found)
    _pagerduty(world, found)
    _slack(world, channels, found)
    _jira(world, found)
    return found


def _alerts(log: Sequence[Batch], found: Audit) -> None:
    """Every acknowledged alert in its incident, as its last acknowledged batch said."""
    last: dict[str, tuple[str, str]] = {}  # fingerprint -> (incident, status)
    per_wave: dict[str, set[str]] = {}
    for batch in log:
        if not batch.acked:
            found.other.append(
                f"never acknowledged: a batch of {batch.wave} ({len(batch.attempts)} attempts,"
                f" answers {[a.status for a in batch.attempts][-5:]})"
            )
            continue
        per_wave.setdefault(batch.wave, set()).update(batch.incidents)
        if len(batch.incidents) != 1:
            found.other.append(f"a batch of {batch.wave} answered incidents {batch.incidents}")
            continue
        for alert in batch.alerts:
            last[alert["fingerprint"]] = (batch.incidents[0], alert["status"])
    for wave, ids in per_wave.items():
        if len(ids) != 1:
            found.other.append(f"{wave} split into incidents {sorted(ids)}")
    for fp, (incident_id, status) in last.items():
        detail = found.incidents.get(incident_id)
        if detail is None:
            continue
        stored = {a["fingerprint"]: a["status"] for a in detail["alerts"]}
        if fp not in stored:
            found.lost.append(f"alert {fp} of {incident_id}")
        elif stored[fp] != status:
            found.lost.append(f"alert {fp} of {incident_id} is {stored[fp]}, was sent {status}")


def _lifecycles(log: Sequence[Batch], found: Audit) -> None:
    """What each wave's batches call for, whatever the receiver recorded: a wave whose
    last acknowledged batch resolved every alert is one incident that was opened once and
    resolved once, in that order (a decision missed, or made twice by two replicas, shows)."""
    ended: dict[str, Batch] = {}
    for batch in log:
        if batch.acked and len(batch.incidents) == 1:
            ended[batch.wave] = batch
    for wave, batch in ended.items():
        if any(a["status"] != "resolved" for a in batch.alerts):
            continue  # the wave was cut off before its resolve: nothing to expect yet
        incident_id = batch.incidents[0]
        detail = found.incidents.get(incident_id)
        if detail is None:
            continue  # counted as lost already
        kinds = [d.kind for d in decisions(detail)]
        if detail["status"] != "resolved":
            found.undelivered.append(f"{wave}: {incident_id} is {detail['status']}, not resolved")
        if (
            kinds.count("open") != 1
            or kinds.count("resolve") != 1
            or kinds[0] != "open"
            or (kinds[-1] != "resolve")
        ):
            found.other.append(f"{wave}: {incident_id} decided {kinds}, not one open … one resolve")


def _expected(found: Audit, sink: str) -> dict[str, list[Decision]]:
    """Per incident, its decisions that went to ``sink``; counts them in ``decisions``."""
    routed = {}
    for incident_id, detail in found.incidents.items():
        mine = [d for d in decisions(detail) if sink in d.sinks]
        routed[incident_id] = mine
        for d in mine:
            found.decisions[f"{sink} {d.kind}"] += 1
        state = detail["sinks"].get(sink, {}).get("state")
        if mine and detail["status"] == "resolved" and state != "resolved":
            found.undelivered.append(f"{sink} of {incident_id} says {state}, not resolved")
    return routed


def _objects(found: Audit, sink: str, what: str, have: Counter[str], want: dict[str, int]) -> None:
    for incident_id in sorted(set(have) | set(want)):
        n, expected = have[incident_id], want.get(incident_id, 0)
        if incident_id not in found.incidents:
            found.other.append(f"{sink}: {n} {what} of an incident no answer named: {incident_id}")
        elif n > expected:
            found.duplicates.append(f"{sink}: {n} {what} for {incident_id}, {expected} expected")
        elif n < expected:
            found.undelivered.append(f"{sink}: {n} {what} for {incident_id}, {expected} expected")


def _pagerduty(world: Fakes, found: Audit) -> None:
    routed = _expected(found, "pagerduty")
    events: dict[str, list[str]] = {}
    for seen in world.pagerduty.server.requests("/v2/enqueue"):
        event = json.loads(seen.body)
        events.setdefault(event["dedup_key"], []).append(event["event_action"])
    alerts = Counter({key: len(world.pagerduty.incidents(key)) for key in events})
    # A reopen opens a second PagerDuty incident under the same dedup key.
    want = {i: 1 + sum(d.kind == "reopen" for d in ds) for i, ds in routed.items() if ds}
    _objects(found, "pagerduty", "alerts", alerts, want)
    for incident_id, actions in events.items():
        found.delivered["pagerduty alerts"] += alerts[incident_id]
        for action in ("trigger", "resolve"):
            sent = actions.count(action)
            found.delivered[f"pagerduty {action} events"] += sent
            kinds = ("resolve",) if action == "resolve" else ("open", "update", "reopen")
            decided = sum(d.kind in kinds for d in routed.get(incident_id, []))
            found.resent[f"pagerduty {action}"] += max(0, sent - decided)
        opened = world.pagerduty.incidents(incident_id)
        status = found.incidents.get(incident_id, {}).get("status")
        if opened and status == "resolved" and opened[-1].status != "resolved":
            found.undelivered.append(f"pagerduty: {incident_id} still {opened[-1].status}")


def reply_jobs(world: Fakes, ts: str) -> Counter[str]:
    """How many times each job's thread reply is under the Slack message ``ts``."""
    return Counter(
        str((r.metadata or {}).get("event_payload", {}).get("job_id"))
        for r in world.slack.replies(ts)
    )


def comment_jobs(issue: Any) -> Counter[str]:
    """How many times each job's comment is on the Jira ``issue``."""
    return Counter(
        m.group(1) for c in issue.comments for m in [_JIRA_MARKER.search(str(c.body))] if m
    )


def _slack(world: Fakes, channels: Sequence[Channel], found: Audit) -> None:
    routed = _expected(found, "slack")
    messages: Counter[str] = Counter()
    replies: Counter[str] = Counter()
    for channel in channels:
        for message in world.slack.messages(channel.id):
            incident_id = str((message.metadata or {}).get("event_payload", {}).get("incident_id"))
            messages[incident_id] += 1
            jobs = reply_jobs(world, message.ts)
            replies[incident_id] += len(jobs)
            found.duplicates.extend(
                f"slack: the reply of job {job} to {incident_id} {n} times"
                for job, n in jobs.items()
                if n > 1
            )
    found.delivered["slack messages"] = sum(messages.values())
    found.delivered["slack thread replies"] = sum(replies.values())
    _objects(found, "slack", "messages", messages, {i: 1 for i, ds in routed.items() if ds})
    later = {i: sum(d.kind != "open" for d in ds) for i, ds in routed.items()}
    _objects(found, "slack", "thread replies (distinct jobs)", replies, later)


def _jira(world: Fakes, found: Audit) -> None:
    routed = _expected(found, "jira")
    issues: Counter[str] = Counter()
    comments: Counter[str] = Counter()
    for issue in world.jira.issues():
        ids = [label.removeprefix(_LABEL) for label in issue.labels if label.startswith(_LABEL)]
        incident_id = ids[0] if ids else f"(unlabelled {issue.key})"
        issues[incident_id] += 1
        jobs = comment_jobs(issue)
        comments[incident_id] += len(jobs)
        found.duplicates.extend(
            f"jira: the comment of job {job} on {issue.key} {n} times"
            for job, n in jobs.items()
            if n > 1
        )
        if found.incidents.get(incident_id, {}).get("status") == "resolved" and (
            issue.status == "Open"
        ):
            found.undelivered.append(f"jira: {issue.key} of {incident_id} still Open")
    found.delivered["jira issues"] = sum(issues.values())
    found.delivered["jira comments"] = sum(comments.values())
    _objects(found, "jira", "issues", issues, {i: 1 for i, ds in routed.items() if ds})
    later = {i: sum(d.kind != "open" for d in ds) for i, ds in routed.items()}
    _objects(found, "jira", "comments (distinct jobs)", comments, later)


@dataclass(frozen=True)
class Figures:
    rows: list[tuple[str, str]]

    def table(self) -> str:
        width = max(len(name) for name, _ in self.rows)
        return "\n".join(f"{name:<{width}} | {value}" for name, value in self.rows)


def _ms(values: Sequence[float], q: float) -> str:
    if not values:
        return "-"
    if q >= 1.0 or len(values) == 1:
        return f"{max(values) * 1000:.0f}"
    return f"{statistics.quantiles(values, n=1000)[round(q * 1000) - 1] * 1000:.0f}"


def _outages(fleet: Sequence[Replica]) -> tuple[float, float]:
    """Seconds with every replica down, and with at least one down (kill to ready)."""
    edges = sorted(
        (t, step)
        for r in fleet
        for killed, ready in r.down
        for t, step in ((killed, 1), (ready if ready is not None else killed, -1))
    )
    all_down = some_down = 0.0
    count, last = 0, 0.0
    for t, step in edges:
        if count:
            some_down += t - last
        if count == len(fleet):
            all_down += t - last
        count, last = count + step, t
    return all_down, some_down


def figures(
    log: Sequence[Batch],
    found: Audit,
    *,
    fleet: Sequence[Replica],
    store: DurableRedis,
    balancer: Balancer,
    kills: int,
    storm_seconds: float,
    settle_seconds: float | None,
) -> Figures:
    attempts = [a for b in log for a in b.attempts]
    refused = Counter(str(a.status or "no answer") for a in attempts if a.status != 200)
    refusals = ", ".join(f"{n} x {s}" for s, n in sorted(refused.items())) or "none"
    ok = sorted(a.answered_at - a.sent_at for a in attempts if a.status == 200)
    alerts = {a["fingerprint"] for b in log if b.acked for a in b.alerts}
    ready = sorted(t for r in fleet for t in r.ready_after[1:])
    routed = balancer.routed()
    all_down, some_down = _outages(fleet)
    decided = ", ".join(f"{k} {n}" for k, n in sorted(found.decisions.items()))
    rows = [
        ("storm", f"{storm_seconds:.0f} s, {len(fleet)} replicas behind nginx, 1 redis"),
        (
            "chaos",
            f"{kills} replica SIGKILLs (back ready in p50 {_ms(ready, 0.5)} ms, max"
            f" {_ms(ready, 1.0)} ms); {store.restarts} redis SIGKILL + restart (down"
            f" {', '.join(f'{d:.1f}' for d in store.down_for) or '-'} s, appendfsync"
            f" {store.appendfsync})",
        ),
        (
            "replicas down",
            f"{some_down:.0f} s with at least one down, {all_down:.1f} s with none up",
        ),
        (
            "batches",
            f"{len(log)} sent, {sum(b.acked for b in log)} acknowledged,"
            f" {sum(not b.acked for b in log)} never acknowledged",
        ),
        (
            "requests",
            f"{len(attempts)} ({refusals} refused, then retried)",
        ),
        ("alerts acknowledged", f"{len(alerts)}"),
        ("incidents", f"{len(found.incidents)}"),
        ("decisions", decided),
        ("delivered", ", ".join(f"{k} {n}" for k, n in sorted(found.delivered.items()))),
        (
            "pagerduty resent",
            ", ".join(f"{k} {n}" for k, n in sorted(found.resent.items())) or "0",
        ),
        ("duplicates", f"{len(found.duplicates)}"),
        ("lost", f"{len(found.lost)}"),
        ("undelivered", f"{len(found.undelivered)}"),
        ("other problems", f"{len(found.other)}"),
        (
            "webhook latency (2xx)",
            f"p50 {_ms(ok, 0.5)} ms, p99 {_ms(ok, 0.99)} ms, max {_ms(ok, 1.0)} ms",
        ),
        (
            "storm end → all delivered",
            "not within the timeout" if settle_seconds is None else f"{settle_seconds:.1f} s",
        ),
        (
            "nginx",
            ", ".join(f"{u} {n}" for u, n in sorted(routed.per_replica.items()))
            + f"; {routed.passed_on} passed on to another replica",
        ),
    ]
    return Figures(rows)
