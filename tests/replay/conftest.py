"""The storm of ``storm.py`` in a real Prometheus, backfilled once for every replay test
that reads it (each only reads)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.replay.storm import openmetrics
from tests.support.prometheus import prometheus_server


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("replay-storm")
    history = workdir / "alerts.om"
    history.write_text(openmetrics())
    with prometheus_server(workdir, history) as url:
        yield url
