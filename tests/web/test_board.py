"""The journey board (``/``) and the value page (``/stats``) in a real browser: incidents
seeded through the webhook, the scheduler stepped on the test's clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, expect

from tests.conftest import FakeClock, body, make_alert, resolved
from tests.support.browser import (
    READ_TOKEN,
    WRITE_TOKEN,
    Site,
    Tab,
    auth_with,
    check_tab,
    open_tab,
    serve,
    write_config,
)

PHONE = {"width": 390, "height": 844}
HOSTILE_SERVICE = "<script>alert(1)</script>"
HOSTILE_REGION = "<img src=x onerror=alert(1)>"
HOSTILE_ENV = "javascript:alert(1)"


@pytest.fixture
def site(tmp_path: Path, clock: FakeClock) -> Iterator[Site]:
    with serve(write_config(tmp_path / "receiver.yaml", auth_with()), clock) as served:
        yield served


def tick(site: Site, seconds: float = 0.0) -> None:
    site.tick(seconds)


def post(site: Site, *alerts: dict[str, Any]) -> None:
    site.post_webhook(body(list(alerts)))


def api(site: Site, path: str) -> Any:
    answer = httpx.get(
        f"{site.url}{path}", headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()


def sign_in(tab: Tab, site: Site, path: str = "/") -> None:
    tab.page.goto(f"{site.url}{path}")
    tab.page.fill("#token", READ_TOKEN)
    tab.page.click("button[type=submit]")
    expect(tab.page).to_have_url(f"{site.url}{path}")


def seed_board(site: Site, hostile: bool = True) -> None:
    """Three incidents of the example journeys, and with ``hostile`` an unmapped one whose
    labels are markup (left out of the board the README shows)."""
    post(
        site,
        make_alert("payment-service", alertname="PaymentErrors", region="eu"),
        make_alert("payments-db", alertname="DbLatency", region="eu", severity="critical"),
    )
    post(site, make_alert("cart-api", alertname="CartSlow", region="us", severity="warning"))
    post(site, make_alert("search-api", alertname="SearchErrors", region="eu", severity="warning"))
    if hostile:
        post(
            site,
            make_alert(
                HOSTILE_SERVICE,
                alertname="Hostile",
                region=HOSTILE_REGION,
                env=HOSTILE_ENV,
                severity="warning",
                annotations={"summary": HOSTILE_SERVICE, "runbook_url": HOSTILE_ENV},
            ),
        )
    tick(site, 31)  # past group_wait: decided, titled, causes ranked


def test_the_board_ranks_open_incidents_and_colours_each_stage(
    tab: Tab, site: Site, browser: Browser
) -> None:
    seed_board(site, hostile=False)
    listed = api(site, "/api/v1/incidents?status=open")["incidents"]
    by_score = [i["id"] for i in sorted(listed, key=lambda i: -i["score"])]
    assert len(by_score) == 3
    # Critical payment alerts outrank the warnings.
    assert [i["priority"] for i in sorted(listed, key=lambda i: -i["score"])] == ["P2", "P4", "P4"]

    sign_in(tab, site)
    page = tab.page
    expect(page.locator("h1")).to_have_text("Board")
    expect(page.locator("#open-count")).to_have_text(re.compile(r"^\s*3\s+open incidents\s*$"))

    rows = page.locator("#incidents tr.incident")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).get_attribute("data-id") for i in range(3)] == by_score
    first = rows.first
    expect(first.locator(".badge")).to_have_text("P2")
    expect(first).to_contain_text("checkout")
    expect(first).to_contain_text("payments")  # the owner
    expect(first.locator("a")).to_have_attribute("href", f"/incidents/{by_score[0]}")
    # Its alerts' startsAt (08:10:00) to the clock's now (08:13:51): its age by Alertmanager.
    expect(first.locator("time")).to_have_text("3 min")
    expect(first.locator(".cause")).not_to_be_empty()

    def cell(journey: str, stage: str) -> Any:
        return page.locator(f'tr[data-journey="{journey}"] td[data-stage="{stage}"]')

    expect(cell("checkout", "payment")).to_have_class(re.compile(r"\bp2\b"))
    expect(cell("checkout", "payment")).to_contain_text("P2 · 1 open")
    expect(cell("checkout", "fraud-check")).to_have_class(re.compile(r"\bnone\b"))
    expect(cell("checkout", "fraud-check")).to_contain_text("OK")
    cart = next(i for i in listed if "cart" in i["title"])
    expect(cell("checkout", "cart")).to_have_class(re.compile(rf"\b{cart['priority'].lower()}\b"))
    search = next(i for i in listed if i["journey"] == "browse")
    expect(cell("browse", "search")).to_have_class(re.compile(rf"\b{search['priority'].lower()}\b"))
    expect(cell("signup", "login")).to_have_class(re.compile(r"\bnone\b"))
    expect(page.locator('tr[data-journey="checkout"] th')).to_contain_text("regions: eu, us")
    for region in ("eu", "us"):
        expect(page.locator("#regions")).to_contain_text(region)
    tab.shot("board")

    phone = open_tab(browser, viewport=PHONE, is_mobile=True)
    try:
        sign_in(phone, site)
        expect(phone.page.locator("#incidents tr.incident")).to_have_count(3)
        phone.shot("board-phone")
        check_tab(phone)
    finally:
        phone.context.close()


def test_a_keyboard_or_screen_reader_user_can_stop_the_board_reloading(
    tab: Tab, site: Site
) -> None:
    seed_board(site, hostile=False)
    sign_in(tab, site)
    page = tab.page
    refresh = page.locator("meta[http-equiv=refresh]")
    expect(refresh).to_have_attribute("content", "30")  # the wall screen's board

    # Each reload sends keyboard focus and a screen reader back to the top of the page,
    # every 30 s, however far down the list of incidents they were (WCAG 2.2.1).
    stop = page.get_by_role("link", name="Stop refreshing")
    stop.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{site.url}/?refresh=off")
    expect(refresh).to_have_count(0)
    expect(page.locator("#incidents tr.incident")).to_have_count(3)
    expect(page.locator("#refresh")).to_have_text(
        "Not refreshing by itself: Refresh every 30 seconds."
    )

    page.get_by_role("link", name="Refresh every 30 seconds").click()
    expect(page).to_have_url(f"{site.url}/")
    expect(refresh).to_have_attribute("content", "30")


def test_hostile_labels_show_as_text_and_run_nothing(tab: Tab, site: Site) -> None:
    dialogs: list[str] = []

    def seen(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.page.on("dialog", seen)
    seed_board(site)
    sign_in(tab, site)
    page = tab.page

    row = page.locator("#incidents tr.incident", has_text=HOSTILE_REGION)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(HOSTILE_SERVICE)
    expect(row).to_contain_text(HOSTILE_ENV)
    expect(page.locator("#regions")).to_contain_text(HOSTILE_REGION)
    expect(page.locator('tr[data-journey="unmapped"]')).to_contain_text(HOSTILE_REGION)
    # Nothing the labels carried became an element, a handler or a link.
    assert page.locator("main script, main img, main [onerror]").count() == 0
    assert page.locator('main a[href^="javascript:"]').count() == 0
    page.reload()
    expect(page.locator("h1")).to_have_text("Board")
    assert dialogs == []
    assert tab.violations == []


def seed_history(site: Site) -> None:
    """A week of outcomes: a checkout incident notified and resolved, and a browse alert
    that came and went within group_wait (a blip) twice."""
    payment = make_alert("payment-service", alertname="PaymentErrors", region="eu")
    post(site, payment)
    tick(site, 31)
    for _ in range(2):
        flappy = make_alert("search-api", alertname="FlappySearch", severity="warning")
        post(site, flappy)
        tick(site, 5)
        post(site, resolved(flappy))
        tick(site, 31)
    post(site, resolved(payment))
    tick(site, 301)  # past resolve_after
    tick(site, 120)


def test_stats_show_the_three_buckets_and_switch_window(
    tab: Tab, site: Site, browser: Browser
) -> None:
    seed_history(site)
    figures = api(site, "/api/v1/stats?window=7d")
    assert figures["signal"]["blips"] == 2

    sign_in(tab, site, "/stats")
    page = tab.page
    expect(page.locator("h1")).to_have_text("Stats")
    for bucket in ("Signal quality", "Response", "Business impact", "Tuning suggestions"):
        expect(page.locator("h2", has_text=bucket)).to_be_visible()
    signal = page.locator("#signal")
    expect(signal.locator('tr[data-journey="checkout"] td').nth(1)).to_have_text("1")
    # The second flap reopened the same browse/eu incident: one incident, two blips.
    browse = figures["journeys"]["browse"]["signal"]
    assert (browse["incidents"], browse["blips"]) == (1, 2)
    expect(signal.locator('tr[data-journey="browse"] td').nth(1)).to_have_text("1")
    expect(signal.locator('tr[data-journey="browse"] td').nth(3)).to_have_text("2")
    expect(signal.locator("svg.bar-chart").first).to_be_visible()
    expect(page.locator("#business svg.bar-chart")).to_have_count(2)
    expect(page.locator("#response svg.bar-chart")).to_have_count(2)
    noisy = page.locator("#noisy-table")
    expect(noisy).to_contain_text("FlappySearch")
    expect(noisy).to_contain_text("longer for:")
    expect(page.locator(".tabs a[aria-current=page]")).to_have_text("Last 7 days")
    expect(page.locator("#window")).to_contain_text("(7d)")
    tab.shot("stats")

    page.click("text=Last 30 days")
    expect(page).to_have_url(f"{site.url}/stats?window=30d")
    expect(page.locator(".tabs a[aria-current=page]")).to_have_text("Last 30 days")
    # The example config keeps a week (store.retention): the page says the month is cut.
    expect(page.locator("#window")).to_contain_text("(30d, cut to store.retention")
    expect(page.locator('#signal tr[data-journey="browse"] td').nth(3)).to_have_text("2")

    # A window the API does not take falls back to the default, and the page says why.
    page.goto(f"{site.url}/stats?window=<b>9y</b>")
    expect(page.locator("#window")).to_contain_text("(7d)")
    expect(page.locator("#window-refused")).to_contain_text('got "<b>9y</b>"; showing 7d')
    expect(page.locator("main b")).to_have_count(0)  # shown as text
    page.goto(f"{site.url}/stats?window=91d")
    expect(page.locator("#window-refused")).to_have_text(
        'window: "91d" is longer than the maximum 90d; showing 7d'
    )

    phone = open_tab(browser, viewport=PHONE, is_mobile=True)
    try:
        sign_in(phone, site, "/stats")
        expect(phone.page.locator("#noisy-table")).to_contain_text("FlappySearch")
        phone.shot("stats-phone")
        check_tab(phone)
    finally:
        phone.context.close()


def test_any_window_the_api_takes_is_the_window_shown(tab: Tab, site: Site) -> None:
    seed_history(site)
    figures = api(site, "/api/v1/stats?window=14d")
    assert figures["window"] == "14d"

    tab.page.goto(f"{site.url}/stats?window=14d")
    expect(tab.page).to_have_url(re.compile(r"/signin\?next="))
    tab.page.fill("#token", READ_TOKEN)
    tab.page.click("button[type=submit]")
    expect(tab.page).to_have_url(f"{site.url}/stats?window=14d")
    window = tab.page.locator("#window")
    expect(window).to_contain_text(f"{figures['since']} to {figures['until']} (14d")
    expect(window.locator("code").last).to_have_text("GET /api/v1/stats?window=14d")
    expect(tab.page.locator("#window-refused")).to_have_count(0)
    expect(tab.page.locator(".tabs a[aria-current=page]")).to_have_count(0)  # neither tab
    incidents = figures["journeys"]["checkout"]["signal"]["incidents"]
    cell = tab.page.locator('#signal tr[data-journey="checkout"] td').nth(1)
    expect(cell).to_have_text(str(incidents))


def test_the_stats_charts_fit_a_small_phone(site: Site, browser: Browser) -> None:
    seed_history(site)
    phone = open_tab(browser, viewport={"width": 360, "height": 740}, is_mobile=True)
    try:
        sign_in(phone, site, "/stats")
        figures = phone.page.locator("main figure")
        expect(figures).to_have_count(6)
        # Each chart's column was at least 22rem: wider than a 360 px screen less its margins.
        rights = figures.evaluate_all("fs => fs.map(f => f.getBoundingClientRect().right)")
        width = phone.page.evaluate("document.documentElement.clientWidth")
        assert [r for r in rights if r > width] == []
        assert phone.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        check_tab(phone)
    finally:
        phone.context.close()


def test_writers_token_is_not_needed_for_the_pages(site: Site) -> None:
    answer = httpx.get(f"{site.url}/stats", follow_redirects=False, timeout=10)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/signin?next=/stats")
    assert WRITE_TOKEN not in answer.text
