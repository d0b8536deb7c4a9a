"""The journey SLOs on the value page (``/stats``) in a real browser: a checkout incident
at P2 (config/journeys.yaml gives checkout ``slo: {degraded_at: P2, objective: 99.9}``)
kept open on the test's clock, the page showing the minutes the API counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import T0, FakeClock, body, make_alert
from tests.support.browser import Site, Tab, auth_with, serve, write_config
from tests.web.test_board import api, sign_in

# The alerts' startsAt (make_alert's default): degraded time counts from it.
STARTS_AT = 1_776_499_800.123  # 2026-04-18T08:10:00.123Z


@pytest.fixture
def site(tmp_path: Path, clock: FakeClock) -> Iterator[Site]:
    with serve(write_config(tmp_path / "receiver.yaml", auth_with()), clock) as served:
        yield served


def test_the_value_page_shows_minutes_degraded_against_each_journeys_slo(
    tab: Tab, site: Site
) -> None:
    site.post_webhook(
        body(
            [
                make_alert("payment-service", alertname="PaymentErrors", region="eu"),
                make_alert("payments-db", alertname="DbLatency", region="eu"),
            ]
        )
    )
    # Below checkout's P2: its time does not count.
    site.post_webhook(
        body([make_alert("cart-api", alertname="CartSlow", region="us", severity="warning")])
    )
    site.tick(31)  # past group_wait: notified
    site.tick(600)
    figures = api(site, "/api/v1/stats?window=7d")["journeys"]
    checkout = figures["checkout"]
    minutes = round((T0 + 631 - STARTS_AT) / 60, 1)  # still open: until now
    assert checkout["minutes_degraded"] == minutes == 13.8
    assert checkout["slo"]["degraded_at"] == "P2"
    assert figures["browse"]["minutes_degraded"] == 0.0

    sign_in(tab, site, "/stats")
    page = tab.page
    slo = page.locator("#slo")
    expect(slo.locator("h2")).to_have_text("Journey SLOs")
    cells = slo.locator('tr[data-journey="checkout"] td')
    expect(cells.nth(0)).to_have_text("P2 or above")
    expect(cells.nth(1)).to_have_text(f"{minutes:g} min")
    expect(cells.nth(2)).to_have_text(f"{checkout['slo']['attainment_pct']:g}%")
    expect(cells.nth(3)).to_have_text("99.9%")
    # 13.8 minutes of a week is more than the 10.08 that 99.9% allows.
    expect(cells.nth(5)).to_have_text("missed")
    browse = slo.locator('tr[data-journey="browse"] td')
    expect(browse.nth(0)).to_have_text("P3 or above")
    expect(browse.nth(1)).to_have_text("0 min")
    expect(browse.nth(2)).to_have_text("100%")
    expect(browse.nth(5)).to_have_text("—")
    # The business table and its chart show the same minutes.
    expect(page.locator('#business tr[data-journey="checkout"] td').first).to_have_text(
        f"{minutes:g} min"
    )
    expect(page.locator("#business figcaption").first).to_have_text("Minutes degraded")
    tab.shot("stats-slo")
