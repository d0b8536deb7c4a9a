"""The incident page in a real browser: the KPI chart from a real Prometheus, causes,
actions, timeline and alerts; the feedback form; and hostile alert text shown as text.

Prometheus holds ``tests/data/prometheus/conversion.om`` (the eu conversion drops from 0.93
to 0.41 at 08:00Z on 2026-04-18, and was 0.93 a week before); the checkout journey's
conversion KPI here reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, expect

from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, body, make_alert
from tests.support.browser import (
    READ_TOKEN,
    WRITE_TOKEN,
    Site,
    Tab,
    auth_with,
    check_tab,
    open_tab,
    serve,
)
from tests.support.prometheus import DATA, prometheus_server

HOSTILE_LABEL = "<script>alert(1)</script>"
HOSTILE_ANNOTATION = "<img src=x onerror=alert(1)>"
CONVERSION_QUERY = 'avg(journey_conversion_ratio{region="$region"})'
SMALL_PHONE = {"width": 360, "height": 740}
# Whatever of ``selector`` reaches past the right edge of the screen, as "tag#id right=x".
PAST_THE_EDGE = """selector => [...document.querySelectorAll(selector)]
    .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth)
    .map(e => `${e.tagName.toLowerCase()}#${e.id} right=${e.getBoundingClientRect().right}`)"""


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_server(
        tmp_path_factory.mktemp("prometheus-incident-page"), DATA / "conversion.om"
    ) as url:
        yield url


def journeys_with_conversion(path: Path, **kpi: str) -> Path:
    """The example journeys, the checkout conversion KPI (and ``kpi``'s fields) reading the
    test's history."""
    journeys = yaml.safe_load(EXAMPLE_JOURNEYS.read_text())
    checkout = next(j for j in journeys["journeys"] if j["id"] == "checkout")
    checkout["kpis"] = [
        {"name": "conversion", "query": CONVERSION_QUERY, "unit": "ratio", "bad_when": "down"} | kpi
    ]
    path.write_text(yaml.safe_dump(journeys, sort_keys=False))
    return path


def config(tmp_path: Path, kpi: dict[str, str] | None = None, **extra: Any) -> Path:
    path = tmp_path / "receiver.yaml"
    journeys = journeys_with_conversion(tmp_path / "journeys.yaml", **(kpi or {}))
    document = {
        "server": {"auth": auth_with()},
        "store": {"url": "memory://"},
        "journeys_file": str(journeys),
        **extra,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def site(tmp_path: Path, clock: FakeClock, prometheus_url: str) -> Iterator[Site]:
    with serve(config(tmp_path, prometheus={"url": prometheus_url}), clock) as served:
        yield served


def open_incident(site: Site, *extra_alerts: dict[str, Any], url: str | None = None) -> str:
    """A checkout/eu incident after a deploy of payment-service (its event linking
    ``url``), past group_wait."""
    for version, at in (("2026.04.17-1", "06:00"), ("2026.04.18-3", "08:05")):
        event = {"type": "deploy", "service": "payment-service", "version": version}
        event |= {"environment": "prod", "region": "eu", "at": f"2026-04-18T{at}:00Z"}
        event |= {"url": url} if url and version == "2026.04.18-3" else {}
        assert site.api("POST", "/api/v1/events", event).status_code == 202
    site.clock.advance(60)
    answer = site.post_webhook(body([make_alert("payment-service"), *extra_alerts]))
    incident_id: str = answer.json()["incidents"][0]
    site.clock.advance(31)  # past group_wait: the scheduler enriches and notifies
    site.tick()
    return incident_id


def incident_json(site: Site, incident_id: str) -> dict[str, Any]:
    answer = site.api("GET", f"/api/v1/incidents/{incident_id}")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def sign_in(tab: Tab, site: Site, target: str, token: str = WRITE_TOKEN) -> None:
    tab.page.goto(f"{site.url}{target}")
    expect(tab.page).to_have_url(re.compile(r"/signin\?next="))
    tab.page.fill("#token", token)
    tab.page.fill("#name", "Dana")
    tab.page.click("button[type=submit]")
    expect(tab.page).to_have_url(f"{site.url}{target}")


def test_the_incident_page_shows_the_chart(tab: Tab, site: Site) -> None:
    incident_id = open_incident(site)
    incident = incident_json(site, incident_id)
    sign_in(tab, site, f"/incidents/{incident_id}")
    page = tab.page

    expect(page.locator("h1")).to_have_text(incident["title"])
    expect(page.locator("#summary")).to_have_text(incident["summary"])
    chart = page.locator("#kpis svg.kpi-chart")
    expect(chart).to_have_count(1)
    expect(chart).to_have_attribute("aria-label", re.compile(r"^conversion now 0\.41 vs 0\.93"))
    expect(page.locator("#kpis figcaption")).to_contain_text("last week dashed")

    causes = page.locator("#causes li .cause-text")
    assert incident["probable_causes"], "the deploy should be a probable cause"
    expect(causes.first).to_have_text(incident["probable_causes"][0]["text"])
    actions = page.locator("#actions li strong")
    assert incident["suggested_actions"], "the deploy should suggest a rollback"
    expect(actions.first).to_have_text(incident["suggested_actions"][0]["title"])
    expect(page.locator("#timeline li")).to_have_count(len(incident["timeline"]))
    expect(page.locator("#alerts tbody tr")).to_have_count(1)
    expect(page.locator("#alerts tbody")).to_contain_text("HighErrorRate")
    expect(page.locator("#mtta")).to_have_text("—")
    expect(page.locator("#feedback-why")).to_have_count(0)
    tab.shot("incident")


def test_a_kpi_worse_than_its_baseline_says_so_in_words(tab: Tab, site: Site) -> None:
    incident_id = open_incident(site)
    [kpi] = incident_json(site, incident_id)["kpis"]
    assert kpi["bad"] is True
    sign_in(tab, site, f"/incidents/{incident_id}")
    # Red is not all it says (WCAG 1.4.1): a KPI that is bad when it goes up reads "+5%"
    # bad, one that is bad when it goes down reads "+5%" fine.
    expect(tab.page.locator(".kpi-values li")).to_have_text(
        "conversion: 0.41 ratio vs 0.93 ratio (-55.9%) — worse than the baseline"
    )


def test_a_change_cause_links_the_change(tab: Tab, site: Site) -> None:
    # What on-call opens first: the deploy's own page, when its event gave one.
    incident_id = open_incident(site, url="https://deploys.example/runs/8812")
    sign_in(tab, site, f"/incidents/{incident_id}")
    link = tab.page.locator("#causes li").first.locator("a.change-link")
    expect(link).to_have_attribute("href", "https://deploys.example/runs/8812")
    expect(link).to_have_text("the change")


def test_a_kpi_without_a_baseline_is_listed_as_no_data(
    tab: Tab, tmp_path: Path, clock: FakeClock, prometheus_url: str
) -> None:
    # Prometheus holds no sample a day before the incident: no baseline.
    document = config(tmp_path, {"baseline_offset": "1d"}, prometheus={"url": prometheus_url})
    with serve(document, clock) as site:
        incident_id = open_incident(site)
        [kpi] = incident_json(site, incident_id)["kpis"]
        assert (kpi["baseline"], kpi["value"]) == (None, pytest.approx(0.41))
        sign_in(tab, site, f"/incidents/{incident_id}")
        # Worded as the sinks word it (4 significant digits, "no data"), never Python's None.
        expect(tab.page.locator(".kpi-values li")).to_have_text(
            f"conversion: {kpi['value']:.4g} ratio vs no data"
        )


def test_feedback_given_in_the_browser_is_recorded(tab: Tab, site: Site) -> None:
    incident_id = open_incident(site)
    action = incident_json(site, incident_id)["suggested_actions"][0]
    sign_in(tab, site, f"/incidents/{incident_id}")
    page = tab.page

    page.check("input[name=useful][value=yes]")
    page.check("input[name=wrong_grouping]")
    page.select_option("#fixed_by", action["id"])
    page.fill("#fixed_text", "rolled back at 08:20")
    page.click("#feedback button[type=submit]")

    expect(page).to_have_url(f"{site.url}/incidents/{incident_id}?thanks=1#feedback")
    expect(page.locator("#thanks")).to_contain_text("Thank you")
    feedback = incident_json(site, incident_id)["feedback"]
    assert len(feedback) == 1
    given = {k: v for k, v in feedback[0].items() if k != "at"}
    assert given == {
        "useful": True,
        "wrong_grouping": True,
        "fixed_by": action["id"],
        "note": "rolled back at 08:20",
        "by": "Dana",
    }


def test_a_feedback_form_sent_twice_is_recorded_once(tab: Tab, site: Site) -> None:
    # A double click, or a resend after a slow answer: one record, one word in Slack.
    incident_id = open_incident(site)
    sign_in(tab, site, f"/incidents/{incident_id}")
    page = tab.page
    form = {
        name: page.locator(f"#feedback input[name={name}]").get_attribute("value") or ""
        for name in ("csrf", "sent")
    }
    url = f"{site.url}/incidents/{incident_id}/feedback"
    for _ in range(2):  # the browser's cookies, the same form
        sent = page.request.post(url, form={**form, "useful": "no"}, max_redirects=0)
        assert sent.status == 303
    assert [f["useful"] for f in incident_json(site, incident_id)["feedback"]] == [False]
    page.reload()  # a page shown again is a new form
    page.check("input[name=useful][value=yes]")
    page.click("#feedback button[type=submit]")
    expect(page.locator("#thanks")).to_contain_text("Thank you")
    assert [f["useful"] for f in incident_json(site, incident_id)["feedback"]] == [False, True]


def test_a_wrong_csrf_token_is_refused_and_changes_nothing(tab: Tab, site: Site) -> None:
    incident_id = open_incident(site)
    sign_in(tab, site, f"/incidents/{incident_id}")
    page = tab.page
    page.locator("#feedback input[name=csrf]").evaluate("e => { e.value = 'forged-token' }")
    page.check("input[name=useful][value=no]")
    page.click("#feedback button[type=submit]")

    expect(page.locator("h1")).to_have_text("This form was refused")
    assert tab.html[-1].status == 403
    assert incident_json(site, incident_id)["feedback"] == []


def test_a_reader_sees_the_form_disabled_and_why(tab: Tab, site: Site) -> None:
    incident_id = open_incident(site)
    sign_in(tab, site, f"/incidents/{incident_id}", token=READ_TOKEN)

    expect(tab.page.locator("#feedback-why")).to_contain_text("needs the write role")
    expect(tab.page.locator("#feedback fieldset")).to_have_attribute("disabled", "")
    expect(tab.page.locator("#feedback button[type=submit]")).to_be_disabled()


def test_an_unknown_incident_is_a_404_page(tab: Tab, site: Site) -> None:
    sign_in(tab, site, "/")
    answer = tab.page.goto(f"{site.url}/incidents/no-such-incident")
    assert answer is not None and answer.status == 404
    expect(tab.page.locator("h1")).to_have_text("No such incident")


def test_hostile_alert_text_is_shown_and_never_runs(tab: Tab, site: Site) -> None:
    dialogs: list[str] = []
    tab.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    hostile = make_alert(
        "cart",
        alertname=HOSTILE_ANNOTATION,
        annotations={"summary": HOSTILE_ANNOTATION, "description": HOSTILE_LABEL},
        note=HOSTILE_LABEL,
    )
    hostile["generatorURL"] = "javascript:alert(1)"
    linked = make_alert("payment-service", alertname="Latency")
    linked["generatorURL"] = "https://prometheus.example.com/graph?g0.expr=up"
    incident_id = open_incident(site, hostile, linked)
    sign_in(tab, site, f"/incidents/{incident_id}")
    page = tab.page

    alerts = page.locator("#alerts tbody")
    expect(alerts).to_contain_text(HOSTILE_LABEL)
    expect(alerts).to_contain_text(HOSTILE_ANNOTATION)
    expect(alerts.locator(f"text=note={HOSTILE_LABEL}")).to_have_count(1)
    expect(page.locator("#alerts img")).to_have_count(0)
    expect(page.locator("#alerts script")).to_have_count(0)
    expect(page.locator("a[href^='https://prometheus.example.com/']")).to_have_count(1)
    hrefs = page.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
    assert not [h for h in hrefs if h.lower().startswith("javascript:")]
    page.wait_for_timeout(200)
    assert dialogs == []


def test_without_prometheus_the_chart_says_why(tab: Tab, tmp_path: Path, clock: FakeClock) -> None:
    with serve(config(tmp_path), clock) as served:
        site = served
        incident_id = open_incident(site)
        sign_in(tab, site, f"/incidents/{incident_id}")
        expect(tab.page.locator("#kpis .chart-unavailable")).to_have_text(
            "chart unavailable: prometheus: not configured (prometheus.url)"
        )
        expect(tab.page.locator("#kpis svg")).to_have_count(0)


def test_the_feedback_form_fits_a_phone(browser: Browser, site: Site) -> None:
    incident_id = open_incident(site)
    [action] = incident_json(site, incident_id)["suggested_actions"]
    assert action["title"] == "Roll back payment-service to 2026.04.17-1"  # a plain title
    phone = open_tab(browser, viewport=SMALL_PHONE, is_mobile=True)
    try:
        sign_in(phone, site, f"/incidents/{incident_id}")
        page = phone.page
        expect(page.locator("#fixed_by option")).to_have_count(2)
        # The select as wide as the action's title widened the fieldset past the screen:
        # the text box and "Send feedback" were half off it, reached only by scrolling sideways.
        form = "#feedback fieldset, #feedback fieldset *"
        assert page.evaluate(PAST_THE_EDGE, form) == []
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        phone.shot("incident-feedback-phone")
        check_tab(phone)
    finally:
        phone.context.close()


def test_the_kpi_charts_fit_a_phone(browser: Browser, site: Site) -> None:
    incident_id = open_incident(site)
    phone = open_tab(browser, viewport=SMALL_PHONE, is_mobile=True)
    try:
        sign_in(phone, site, f"/incidents/{incident_id}")
        page = phone.page
        expect(page.locator("#kpis svg.kpi-chart")).to_have_count(1)
        # Each chart's column was at least 22rem, wider than a 360 px screen less its margins.
        assert page.evaluate(PAST_THE_EDGE, "#kpis figure, #kpis svg") == []
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        check_tab(phone)
    finally:
        phone.context.close()
