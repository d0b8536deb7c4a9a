"""Links from an incident to Alertmanager, from the externalURL its webhooks carry."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from receiver.alertmanager.links import alerts_link, silence_link
from tests.conftest import FakeClock, make_alert
from tests.support.harness import harness, write_config

pytestmark = pytest.mark.anyio


def test_the_alert_list_is_filtered_to_the_group_with_hostile_values_quoted() -> None:
    link = alerts_link("https://am.example.com/", {"region": 'eu", x="1', "env": "prod"})
    base, query = link.split("?filter=")
    assert base == "https://am.example.com/#/alerts"
    assert "&" not in query and " " not in query and '"' not in query
    assert unquote(query) == '{env="prod",region="eu\\", x=\\"1"}'
    assert silence_link("https://am.example.com", "a/b") == (
        "https://am.example.com/#/silences/a%2Fb"
    )


async def test_an_incident_links_to_the_alertmanager_that_sent_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path), clock) as rx:
        (incident_id,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        detail = await rx.incident(incident_id)
        # tests/conftest.py's batches say externalURL http://alertmanager:9093.
        assert detail["links"]["alertmanager"] == alerts_link(
            "http://alertmanager:9093", detail["group_labels"]
        )
        assert [a["suppressed"] for a in detail["alerts"]] == [None]
