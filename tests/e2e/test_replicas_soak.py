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
