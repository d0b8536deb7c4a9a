"""Run on the incident page, in a real browser: a responder presses Run…, confirms on a page
of its own (no JavaScript), and the fake deploy system is called once; anyone else is
refused and the refusal recorded; a reader sees no button. And without the browser: the
run POST refused without its CSRF token, and the first POST only asks.

The checkout journey is at ``assist`` with one runnable action, ``rollback``, whose
``owner.responders`` are ``U0ALICE`` and ``alice@example.com``
(``tests/support/fake_deploy.py``). No anyio tests here: see ``tests/support/browser.py``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import expect

from receiver.web.auth import SESSION_COOKIE
from tests.conftest import FakeClock, body, make_alert
from tests.support.browser import READ_TOKEN, WRITE_TOKEN, Site, Tab, auth_with, serve
from tests.support.fake_deploy import FakeDeploy, journeys, serve_deploy

FIRST_ALERT = 1_776_499_800 - 30  # 2026-04-18T08:09:30Z
TITLE = "Roll back payment-service to v41"
HOSTILE = "<img src=x onerror=alert(1)>"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


def deploys(previous: str = "v41") -> list[dict[str, str]]:
    return [
        {"type": "deploy", "service": "payment-service", "version": previous,
         "at": "2026-04-17T10:00:00Z", "environment": "prod", "region": "eu"},
        {"type": "deploy", "service": "payment-service", "version": "v42",
         "at": "2026-04-18T08:07:30Z", "environment": "prod", "region": "eu"},
    ]  # fmt: skip


@pytest.fixture
def deploy() -> Iterator[FakeDeploy]:
    with serve_deploy() as fake:
        yield fake


@pytest.fixture
def site(tmp_path: Path, deploy: FakeDeploy) -> Iterator[Site]:
    config = tmp_path / "receiver.yaml"
    document = {
        "server": {"auth": auth_with()},
        "store": {"url": "memory://"},
        "grouping": {"group_wait": "30s", "group_interval": "2m", "resolve_after": "5m"},
        "journeys_file": str(journeys(tmp_path, deploy.url, "assist")),
    }
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    with serve(config, FakeClock(FIRST_ALERT - 60)) as served:
        yield served


def opened(site: Site, previous: str = "v41") -> str:
    """A checkout/eu incident two minutes after a deploy of payment-service, notified."""
    assert site.api("POST", "/api/v1/events", deploys(previous)).is_success
    site.clock.now = FIRST_ALERT
    incident_id: str = site.post_webhook(body([make_alert()])).json()["incidents"][0]
    site.tick(30)  # past group_wait
    return incident_id


def runs(site: Site, incident_id: str) -> list[dict[str, Any]]:
    answer = site.api("GET", f"/api/v1/incidents/{incident_id}")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["actions_run"]
    return found


def sign_in(tab: Tab, site: Site, target: str, name: str, token: str = WRITE_TOKEN) -> None:
    tab.page.goto(f"{site.url}{target}")
    expect(tab.page).to_have_url(re.compile(r"/signin\?next="))
    tab.page.fill("#token", token)
    tab.page.fill("#name", name)
    tab.page.click("button[type=submit]")
    expect(tab.page).to_have_url(f"{site.url}{target}")


def press_and_confirm(tab: Tab, incident_id: str, shot: str | None = None) -> None:
    page = tab.page
    page.click("#actions li[data-action=rollback] form.run-form button")
    expect(page.locator("h1")).to_have_text(f"Run {TITLE} on incident {incident_id}?")
    expect(page.locator("#confirm-what")).to_have_text(
        "It acts on a real system now, once for this incident, and is recorded with your name."
    )
    expect(page.locator("#cancel")).to_have_attribute("href", f"/incidents/{incident_id}#actions")
    if shot:
        tab.shot(shot)
    page.click("#confirm-run")


def test_a_responder_runs_it_from_the_page_once(tab: Tab, site: Site, deploy: FakeDeploy) -> None:
    incident_id = opened(site)
    here = f"/incidents/{incident_id}"
    sign_in(tab, site, here, "Alice@Example.com")
    page = tab.page
    action = page.locator("#actions li[data-action=rollback]")
    expect(action.locator("strong")).to_have_text(TITLE)
    expect(action.locator(".runnable")).to_contain_text("Runnable")
    expect(page.locator("#runs")).to_contain_text("No action has been run")
    assert deploy.calls == []  # assist: nothing runs by itself
    tab.shot("incident-run-button")
    other = tab.context.new_page()  # a second tab, left open on the page as it is now
    other.goto(f"{site.url}{here}")

    press_and_confirm(tab, incident_id, shot="incident-run-confirm")
    expect(page).to_have_url(f"{site.url}{here}?ran=queued#runs")
    expect(page.locator("#ran")).to_have_text(
        "Asked to run. It runs in a moment; its result shows under Runs."
    )

    site.tick(1)
    [effect] = deploy.effects
    assert effect.key == f"{incident_id}/rollback"
    assert len(deploy.calls) == 1
    page.reload()
    [run] = runs(site, incident_id)
    assert (run["status"], run["by"]) == ("ran", "Alice@Example.com")
    shown = page.locator("#runs li.run")
    expect(shown).to_have_count(1)
    expect(shown.locator(".run-title")).to_have_text(TITLE)
    expect(shown.locator(".run-status")).to_have_text("ran")
    expect(shown.locator(".run-by")).to_have_text("by Alice@Example.com")
    expect(shown.locator(".run-result")).to_contain_text("202")
    tab.shot("incident-run-ran")

    # It runs once per incident: no button any more, and a stale form runs nothing more.
    expect(page.locator("#actions form.run-form")).to_have_count(0)
    expect(page.locator("#actions .run-done")).to_contain_text("It has run on this incident")
    other.click("#actions li[data-action=rollback] form.run-form button")
    other.click("#confirm-run")
    expect(other.locator("#ran")).to_contain_text("Not run again")
    site.tick(1)
    assert len(deploy.calls) == 1 and len(runs(site, incident_id)) == 1

    # Once automation.outcome_window (15 min) has passed, whether it helped.
    site.tick(15 * 60)
    page.goto(f"{site.url}{here}")
    outcome = runs(site, incident_id)[0]["outcome"]
    expect(page.locator("#runs li.run .outcome")).to_contain_text(
        f"Outcome: {outcome['verdict'].replace('_', ' ')} — {outcome['because']}"
    )


def test_a_writer_who_is_not_a_responder_is_refused(
    tab: Tab, site: Site, deploy: FakeDeploy
) -> None:
    incident_id = opened(site)
    sign_in(tab, site, f"/incidents/{incident_id}", "bob@example.com")

    press_and_confirm(tab, incident_id)
    page = tab.page
    expect(page).to_have_url(re.compile(r"\?ran=refused#runs$"))
    expect(page.locator("#ran")).to_have_text(
        "Not run: refused. The reason is recorded under Runs."
    )
    refused = page.locator("#runs li.run-refused").first
    expect(refused.locator(".run-status")).to_have_text("refused")
    expect(refused.locator(".run-result")).to_have_text(
        "bob@example.com is not one of the journey's owner.responders"
    )
    tab.shot("incident-run-refused")
    # Each confirmed press is recorded, one per confirmation page.
    press_and_confirm(tab, incident_id)
    expect(page.locator("#runs li.run-refused")).to_have_count(2)
    site.tick(1)
    assert deploy.calls == []
    assert [(r["status"], r["by"]) for r in runs(site, incident_id)] == [
        ("refused", "bob@example.com")
    ] * 2


def test_a_confirm_sent_after_the_session_ended_leads_back_to_the_incident(
    tab: Tab, site: Site, deploy: FakeDeploy
) -> None:
    incident_id = opened(site)
    here = f"/incidents/{incident_id}"
    sign_in(tab, site, here, "alice@example.com")
    page = tab.page
    page.click("#actions li[data-action=rollback] form.run-form button")
    expect(page.locator("#confirm-run")).to_be_visible()

    site.clock.advance(12 * 3600 + 1)  # the session ends on the confirmation page
    page.click("#confirm-run")
    expect(page).to_have_url(re.compile(r"/signin\?next=.*&why=expired$"))
    page.fill("#token", WRITE_TOKEN)
    page.fill("#name", "alice@example.com")
    with page.expect_navigation() as landed:
        page.click("button[type=submit]")
    answer = landed.value
    # The incident, where Run… can be pressed again: not the POST-only address of the form.
    assert answer is not None and (answer.url, answer.status) == (f"{site.url}{here}", 200)
    expect(page.locator("#actions li[data-action=rollback] form.run-form")).to_have_count(1)
    site.tick(1)
    assert deploy.calls == [] and runs(site, incident_id) == []


def test_a_reader_sees_no_run_button(tab: Tab, site: Site, deploy: FakeDeploy) -> None:
    incident_id = opened(site)
    sign_in(tab, site, f"/incidents/{incident_id}", "alice@example.com", token=READ_TOKEN)

    action = tab.page.locator("#actions li[data-action=rollback]")
    expect(action.locator("strong")).to_have_text(TITLE)
    expect(tab.page.locator("#actions form.run-form")).to_have_count(0)
    expect(action.locator(".run-why")).to_have_text(
        "Running it needs the write role: you are signed in to read only."
    )
    tab.shot("incident-run-reader")


def test_a_hostile_version_is_shown_as_text_when_asked_to_confirm(
    tab: Tab, site: Site, deploy: FakeDeploy
) -> None:
    dialogs: list[str] = []
    tab.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    incident_id = opened(site, previous=HOSTILE)
    sign_in(tab, site, f"/incidents/{incident_id}", "alice@example.com")
    title = f"Roll back payment-service to {HOSTILE}"
    expect(tab.page.locator("#actions li[data-action=rollback] strong")).to_have_text(title)

    tab.page.click("#actions li[data-action=rollback] form.run-form button")
    expect(tab.page.locator("h1")).to_have_text(f"Run {title} on incident {incident_id}?")
    assert tab.page.locator("img").count() == 0
    assert dialogs == []


# -- without the browser ----------------------------------------------------------------------


@contextlib.contextmanager
def signed_in(site: Site, name: str = "alice@example.com") -> Iterator[tuple[httpx.Client, str]]:
    """A client with a write session, and the CSRF token its forms carry."""
    with httpx.Client(base_url=site.url, timeout=10) as client:
        match = _CSRF.search(client.get("/signin").text)
        assert match is not None
        fields = {"csrf": match[1], "token": WRITE_TOKEN, "name": name}
        answer = client.post("/signin", data=fields)
        assert answer.status_code == 303 and client.cookies.get(SESSION_COOKIE)
        match = _CSRF.search(client.get("/").text)
        assert match is not None
        yield client, match[1]


def test_a_run_post_without_its_csrf_token_runs_nothing(site: Site, deploy: FakeDeploy) -> None:
    incident_id = opened(site)
    target = f"/incidents/{incident_id}/actions/rollback/run"
    with signed_in(site) as (client, csrf):
        for fields in ({"confirm": "yes"}, {"confirm": "yes", "csrf": "forged.token"}):
            answer = client.post(target, data=fields)
            assert answer.status_code == 403
            assert "This form was refused" in answer.text
        # With its token, the first POST only asks.
        asked = client.post(target, data={"csrf": csrf})
        assert asked.status_code == 200 and 'name="confirm" value="yes"' in asked.text
    site.tick(1)
    assert deploy.calls == [] and runs(site, incident_id) == []


def test_an_action_named_in_the_url_cannot_forge_a_line_of_the_receivers_log(
    site: Site, deploy: FakeDeploy, caplog: pytest.LogCaptureFixture
) -> None:
    incident_id = opened(site)
    caplog.set_level(logging.INFO, logger="journey_receiver")
    forged = "x%0A2026-04-18 08:14:00,000 INFO journey_receiver.act all clear%1B[2K"
    target = f"/incidents/{incident_id}/actions/{forged}/run"
    with signed_in(site) as (client, csrf):
        answer = client.post(target, data={"csrf": csrf, "confirm": "yes"})
        metrics = client.get("/metrics").text
    assert answer.headers["location"] == f"/incidents/{incident_id}?ran=refused#runs"
    # Nor a series of /metrics of its own: any URL would add one.
    runs = [
        line for line in metrics.splitlines() if line.startswith("journey_receiver_action_runs")
    ]
    assert runs and all('action="unknown"' in line for line in runs), runs
    said = [r.getMessage() for r in caplog.records if r.name.startswith("journey_receiver")]
    pressed = [line for line in said if line.startswith("Run of x")]
    assert pressed, said
    assert all("\n" not in line and "\x1b" not in line for line in said), said
    assert deploy.calls == []


def test_a_run_post_for_an_unknown_incident_is_a_404(site: Site) -> None:
    target = "/incidents/no-such-incident/actions/rollback/run"
    with signed_in(site) as (client, csrf):
        answer = client.post(target, data={"csrf": csrf, "confirm": "yes"})
    assert answer.status_code == 404


def test_a_confirmation_runs_what_it_showed_or_nothing(site: Site, deploy: FakeDeploy) -> None:
    """The confirmation page says "Roll back payment-service to v41"; a deploy event that
    comes in while it is open moves the probable cause: confirming runs nothing, and the
    refusal says what changed."""
    incident_id = opened(site)
    target = f"/incidents/{incident_id}/actions/rollback/run"
    with signed_in(site) as (client, csrf):
        asked = client.post(target, data={"csrf": csrf})
        assert f"Run <bdi>{TITLE}</bdi> on incident" in asked.text
        confirm = dict(_HIDDEN.findall(asked.text))  # as the browser would send it
        late = [{"type": "deploy", "service": "payment-service", "version": "v42.1",
                 "at": "2026-04-18T08:08:30Z", "environment": "prod", "region": "eu"}]  # fmt: skip
        assert site.api("POST", "/api/v1/events", late).is_success
        site.clock.advance(120)
        site.post_webhook(body([make_alert(alertname="Latency")]))
        site.tick(1)

        answer = client.post(target, data=confirm)
        assert (answer.status_code, answer.headers["location"]) == (
            303,
            f"/incidents/{incident_id}?ran=refused#runs",
        )
    site.tick(1)
    assert deploy.calls == []
    [run] = runs(site, incident_id)
    assert (run["status"], run["title"]) == ("refused", "Roll back payment-service to v42")
    assert run["result"].startswith(
        "it now names another change than the one you confirmed: version, previous_version"
    )
