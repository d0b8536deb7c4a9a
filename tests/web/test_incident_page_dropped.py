"""The incident page says how many resolved alerts an incident let go past its cap
(``store.max_alerts_per_incident``), under its alerts, in a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect

from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, body, make_alert, resolved
from tests.support.browser import Site, Tab, auth_with, serve
from tests.web.test_incident_page import incident_json, sign_in

CAP = 500  # the smallest the config allows


@pytest.fixture
def site(tmp_path: Path, clock: FakeClock) -> Iterator[Site]:
    path = tmp_path / "receiver.yaml"
    document = {
        "server": {"auth": auth_with()},
        "store": {"url": "memory://", "max_alerts_per_incident": CAP},
        "journeys_file": str(EXAMPLE_JOURNEYS),
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with serve(path, clock) as served:
        yield served


def test_the_page_says_how_many_resolved_alerts_went_past_the_cap(tab: Tab, site: Site) -> None:
    fired = [make_alert("payment-service", alertname=f"A{n:03d}") for n in range(CAP)]
    incident_id = site.post_webhook(body(fired)).json()["incidents"][0]
    site.tick(31)
    sign_in(tab, site, f"/incidents/{incident_id}")
    expect(tab.page.locator("#alerts-dropped")).to_have_count(0)

    site.post_webhook(body([resolved(fired[0]), resolved(fired[1]), resolved(fired[2])]))
    site.clock.advance(1)
    more = [make_alert("payment-service", alertname=f"B{n}") for n in range(3)]
    site.post_webhook(body(more))
    assert incident_json(site, incident_id)["alerts_dropped"] == 3
    tab.page.goto(f"{site.url}/incidents/{incident_id}")
    expect(tab.page.locator("#alerts-dropped")).to_have_text(
        "3 resolved alerts dropped past the cap of 500 alerts per incident, oldest first "
        "(firing alerts are always kept)."
    )
