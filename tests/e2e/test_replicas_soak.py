"""Many replicas under fire: three receivers behind nginx, a replica SIGKILLed every few
seconds and Redis SIGKILLed once, under a storm of webhooks (real processes, the sink
fakes; :mod:`tests.support.soak` drives it, ``benchmarks/soak.py`` runs it for minutes).

Every alert of every batch answered 2xx is in its incident, every decision reaches every
sink exactly once (one PagerDuty alert, one Slack message and one Jira issue per incident,
one thread reply and one comment per later decision), and every incident resolves.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.soak import Plan, run_soak

# About 20 s of storm: waves of 6 s, a kill every ~4 s (3-6 kills), Redis crashed at 8 s.
PLAN = Plan(duration=20.0, kill_every=4.0, lanes=8, batches_per_wave=12, batch_every=0.5)


def test_replicas_killed_and_redis_crashed_mid_storm_lose_nothing_and_double_nothing(
    tmp_path: Path,
) -> None:
    result = run_soak(PLAN, tmp_path)
    report = f"seed {PLAN.seed}\n{result.figures.table()}"
    print(f"\n{report}")
    assert result.chaos.kills, report
    assert result.chaos.redis_restarted_at is not None, report
    assert result.audit.incidents, report
    assert not result.problems, "\n".join([report, *result.problems[:40]])


def test_the_audit_holds_the_decisions_against_the_batches_not_the_receivers_record() -> None:
    # Every alert acknowledged and resolved, but the receiver never decided (still open,
    # nothing on its timeline): the receiver's own record expects no delivery; the batches
    # do.
    from tests.support.soak import Attempt, Batch
    from tests.support.soak_audit import Audit, _lifecycles

    alerts = [{"fingerprint": "f1", "status": "resolved"}]
    log = [Batch("checkout/eu", alerts, [Attempt(0.0, 0.1, 200)], ["checkout-abc-1"])]
    found = Audit(incidents={"checkout-abc-1": {"status": "open", "timeline": []}})
    _lifecycles(log, found)
    assert found.problems == [
        "undelivered: checkout/eu: checkout-abc-1 is open, not resolved",
        "checkout/eu: checkout-abc-1 decided [], not one open … one resolve",
    ]
    # Opened twice (two replicas deciding the same look): seen too.
    twice = [{"kind": "notified", "text": f"{k} P2 sent to slack"} for k in
             ("open", "open", "resolve")]  # fmt: skip
    found = Audit(incidents={"checkout-abc-1": {"status": "resolved", "timeline": twice}})
    _lifecycles(log, found)
    assert found.problems == [
        "checkout/eu: checkout-abc-1 decided ['open', 'open', 'resolve'], "
        "not one open … one resolve"
    ]
