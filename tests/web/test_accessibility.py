"""Every page for people in a real browser (Chromium), held to what a keyboard, a screen
reader, a phone and dark mode need: axe-core's checks (the copy bundled in the
axe-playwright-python wheel, injected into the page: nothing is fetched) on each page in light
and dark colour schemes, at a laptop's width and a phone's, and a skip link past the header.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from tests.conftest import FakeClock, body, make_alert, resolved
from tests.support.browser import WRITE_TOKEN, Site, Tab, check_tab, open_tab, serve
from tests.support.prometheus import DATA, prometheus_server
from tests.web.test_incident_page import config, open_incident

# What fails a page: axe's serious and critical findings. Minor and moderate ones are
# best-practice advice (region, heading-order...) a page may have reasons to differ from.
FAILING = {"serious", "critical"}
WIDTHS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 360, "height": 740}}
HOSTILE = "<img src=x onerror=alert(1)>"
# Rules left out, each only where and why it is written here.
BOARD_RELOADING = {
    # The board reloads itself every 30 s by design (README, "Pages": a board on a wall
    # screen). axe flags any timed <meta http-equiv=refresh>; WCAG 2.2.1 is met by letting
    # the reader turn it off before it bites: "Stop refreshing" is the first link in the
    # main content (skip link, then that link), and `/?refresh=off` is checked with every
    # rule below.
    "meta-refresh",
}


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_server(
        tmp_path_factory.mktemp("prometheus-a11y"), DATA / "conversion.om"
    ) as url:
        yield url


@pytest.fixture
def site(tmp_path: Path, clock: FakeClock, prometheus_url: str) -> Iterator[Site]:
    with serve(config(tmp_path, prometheus={"url": prometheus_url}), clock) as served:
        yield served


def seed(site: Site) -> str:
    """A blip for the stats, a P1 checkout incident with its KPI chart, cause and action, a
    P4 one, and an unmapped one whose labels are markup; the checkout incident's id."""
    blip = make_alert("search-api", alertname="FlappySearch", severity="warning")
    site.post_webhook(body([blip]))
    site.tick(5)
    site.post_webhook(body([resolved(blip)]))
    incident_id = open_incident(site)
    cart = make_alert("cart-api", alertname="CartSlow", region="us", severity="warning")
    hostile = make_alert(HOSTILE, alertname="Hostile", region=HOSTILE, severity="warning")
    site.post_webhook(body([cart, hostile]))
    site.tick(31)
    return incident_id


def violations(page: Page, disabled: Collection[str] = ()) -> list[str]:
    """What fails ``page``, one line each: axe's findings (with their targets), and the page
    being wider than the screen. At a laptop's width a text whose contrast axe could not
    measure (over a gradient, say) fails too, since nobody checks it then; on a phone, what a
    table holds past the screen's edge is not measured either, and that is no fault. The
    charts' words (SVG ``<text>``) are the exception: axe cannot measure inside an SVG, and
    they are drawn in the page's text colour on its background (``test_charts.py``)."""
    options: dict[str, Any] = {"resultTypes": ["violations", "incomplete"]}
    if disabled:
        options["rules"] = {rule: {"enabled": False} for rule in disabled}
    found = Axe().run(page, options=options).response
    laptop = page.viewport_size == WIDTHS["laptop"]
    unmeasured = [
        {**v, "impact": "serious", "nodes": nodes, "help": "its contrast could not be measured"}
        for v in found["incomplete"]
        if laptop
        and v["id"] == "color-contrast"
        and (nodes := [n for n in v["nodes"] if not n["html"].startswith("<text")])
    ]
    failing = [
        f"{page.url} {v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]} {v['help']}"
        for v in [*found["violations"], *unmeasured]
        if v["impact"] in FAILING
    ]
    # Reflow (WCAG 1.4.10; a laptop zoomed to 350% is this narrow): only a table may scroll
    # sideways, inside its own box, never the page.
    if page.evaluate("document.documentElement.scrollWidth > window.innerWidth"):
        failing.append(f"{page.url} scrolls sideways at {page.viewport_size}")
    return failing


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_passes_axe_in_both_colour_schemes_and_on_a_phone(
    site: Site, browser: Browser, scheme: str
) -> None:
    incident_id = seed(site)
    tab = open_tab(browser, viewport=WIDTHS["laptop"], color_scheme=scheme)
    page = tab.page
    found: list[str] = []
    try:
        for size, viewport in WIDTHS.items():
            page.set_viewport_size(viewport)
            page.goto(f"{site.url}/signin")
            found += violations(page)
            page.fill("#token", "not-a-token")
            page.click("main button[type=submit]")
            expect(page.locator("main .error")).to_be_visible()
            found += violations(page)
            page.fill("#token", WRITE_TOKEN)
            page.click("main button[type=submit]")
            expect(page.locator("h1")).to_have_text("Board")
            found += violations(page, BOARD_RELOADING)
            for path in (
                "/?refresh=off",
                f"/incidents/{incident_id}",
                "/stats",
                "/stats?window=9y",
                "/incidents/no-such-incident",
            ):
                page.goto(f"{site.url}{path}")
                found += violations(page)
            if size == "laptop":  # the thanks, and the feedback counted, once
                page.goto(f"{site.url}/incidents/{incident_id}")
                page.check("input[name=useful][value=yes]")
                page.click("#feedback button[type=submit]")
                expect(page.locator("#thanks")).to_be_visible()
                found += violations(page)
            page.click("header button[type=submit]")  # signs out
            expect(page.locator("h1")).to_have_text("Sign in")
        assert found == [], "\n".join(found)
        check_tab(tab)
    finally:
        tab.context.close()


def test_a_skip_link_leads_past_the_header_to_the_main_content(site: Site, tab: Tab) -> None:
    seed(site)
    page = tab.page
    page.goto(f"{site.url}/signin")
    page.fill("#token", WRITE_TOKEN)
    page.click("main button[type=submit]")
    page.goto(f"{site.url}/?refresh=off")
    skip = page.get_by_role("link", name="Skip to main content")
    # Out of sight until a keyboard reaches it: the first stop of every page.
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    # Past the brand, the menu and "Sign out": the first link of the page's own content.
    expect(page.get_by_role("link", name="Refresh every 30 seconds")).to_be_focused()
