"""Signing in to the pages, in a real browser: tokens, sessions that end, CSRF, the trusted
proxy, open reads, and the safety headers on every page."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from receiver.web.auth import NONCE_COOKIE, SESSION_COOKIE
from receiver.web.pages import CONTENT_SECURITY_POLICY
from tests.conftest import FakeClock, body, make_alert
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

TWELVE_HOURS = 12 * 3600


@pytest.fixture
def site(tmp_path: Path, clock: FakeClock) -> Iterator[Site]:
    """A receiver with a write token and a read token: reads, and so pages, need one."""
    with serve(write_config(tmp_path / "receiver.yaml", auth_with()), clock) as served:
        yield served


def sign_in(tab: Tab, site: Site, token: str = READ_TOKEN, name: str = "") -> None:
    tab.page.goto(f"{site.url}/")
    expect(tab.page).to_have_url(re.compile(r"/signin\?next=/$"))
    tab.page.fill("#token", token)
    if name:
        tab.page.fill("#name", name)
    tab.page.click("button[type=submit]")


def test_a_read_token_signs_in_and_the_board_shows(tab: Tab, site: Site) -> None:
    site.post_webhook(body([make_alert("payment-service")]))
    tab.page.goto(f"{site.url}/")
    expect(tab.page).to_have_url(f"{site.url}/signin?next=/")
    expect(tab.page.locator("h1")).to_have_text("Sign in")
    tab.shot("signin")

    sign_in(tab, site, name="Dana")

    expect(tab.page).to_have_url(f"{site.url}/")
    expect(tab.page.locator("h1")).to_have_text("Board")
    expect(tab.page.locator("#open-count")).to_have_text(re.compile(r"^\s*1\s+open incident\s*$"))
    expect(tab.page.locator(".who .user")).to_have_text("Dana")
    tab.shot("board-signed-in")


def test_the_session_cookie_is_httponly_and_samesite_strict(tab: Tab, site: Site) -> None:
    sign_in(tab, site)
    expect(tab.page.locator("h1")).to_have_text("Board")

    cookie = tab.cookie(SESSION_COOKIE)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["secure"] is False  # plain http on loopback; https would make it Secure
    # Max-Age: the browser's own clock, which the test does not hold.
    assert TWELVE_HOURS - 60 < cookie["expires"] - time.time() <= TWELVE_HOURS
    nonce = tab.cookie(NONCE_COOKIE)
    assert nonce is not None
    assert (nonce["httpOnly"], nonce["sameSite"]) == (True, "Strict")
    # Script on the page cannot read either (an isolated world still sees document.cookie).
    assert tab.page.evaluate("document.cookie") == ""


def test_a_wrong_token_shows_an_error_and_no_session(tab: Tab, site: Site) -> None:
    sign_in(tab, site, token="not-a-token-we-know")

    expect(tab.page.locator("[role=alert]")).to_contain_text("not one this receiver knows")
    assert tab.cookie(SESSION_COOKIE) is None
    tab.shot("signin-wrong-token")
    tab.page.goto(f"{site.url}/")
    expect(tab.page).to_have_url(re.compile(r"/signin\?next=/$"))


def test_a_wrong_token_is_told_on_its_field(tab: Tab, site: Site) -> None:
    sign_in(tab, site, token="not-a-token-we-know")
    # A screen reader lands on the field again (autofocus): it must hear the field is wrong
    # and why there, not only in a message announced once while the page loaded.
    token = tab.page.get_by_label("Token")
    expect(token).to_be_focused()
    expect(token).to_have_attribute("aria-invalid", "true")
    expect(token).to_have_accessible_description(
        "That token is not one this receiver knows. Check it and try again."
    )
    tab.page.fill("#token", WRITE_TOKEN)
    tab.page.click("button[type=submit]")
    expect(tab.page.locator("h1")).to_have_text("Board")


def test_an_expired_session_is_sent_back_to_sign_in(tab: Tab, site: Site) -> None:
    sign_in(tab, site)
    expect(tab.page.locator("h1")).to_have_text("Board")

    site.clock.advance(TWELVE_HOURS - 60)
    tab.page.reload()
    expect(tab.page.locator("h1")).to_have_text("Board")

    site.clock.advance(61)  # past session_ttl: the browser still holds the cookie
    assert tab.cookie(SESSION_COOKIE) is not None
    tab.page.reload()
    expect(tab.page).to_have_url(f"{site.url}/signin?next=/&why=expired")
    expect(tab.page.locator("[role=status]")).to_contain_text("session has ended")
    assert tab.cookie(SESSION_COOKIE) is None  # the refused cookie is deleted


def test_sign_out_ends_the_session_even_for_a_copy_of_the_cookie(tab: Tab, site: Site) -> None:
    sign_in(tab, site)
    expect(tab.page.locator("h1")).to_have_text("Board")
    copy = tab.cookie(SESSION_COOKIE)
    assert copy is not None

    tab.page.click("text=Sign out")
    expect(tab.page).to_have_url(f"{site.url}/signin?why=signedout")
    assert tab.cookie(SESSION_COOKIE) is None

    tab.context.add_cookies([copy])  # type: ignore[list-item]
    tab.page.goto(f"{site.url}/")
    expect(tab.page).to_have_url(re.compile(r"/signin\?next=/&why=expired$"))


def test_signing_out_after_the_session_ended_just_signs_out(tab: Tab, site: Site) -> None:
    sign_in(tab, site, name="Dana")
    expect(tab.page.locator("h1")).to_have_text("Board")

    site.clock.advance(TWELVE_HOURS + 1)  # the session ends; the board is still on screen
    with tab.page.expect_navigation() as landed:
        tab.page.click("text=Sign out")
    answer = landed.value
    assert answer is not None
    # What the person asked for, not "This form was refused": the form's CSRF token was for
    # the session that ended, and there is nothing left to end.
    assert (answer.url, answer.status) == (f"{site.url}/signin?why=signedout", 200)
    expect(tab.page.locator("h1")).to_have_text("Sign in")
    expect(tab.page.locator("[role=status]")).to_have_text("You are signed out.")
    assert tab.cookie(SESSION_COOKIE) is None


def test_a_form_sent_after_the_session_ended_leads_back_to_its_page(tab: Tab, site: Site) -> None:
    incident_id = site.post_webhook(body([make_alert("payment-service")])).json()["incidents"][0]
    here = f"{site.url}/incidents/{incident_id}"
    tab.page.goto(here)
    tab.page.fill("#token", WRITE_TOKEN)
    tab.page.fill("#name", "Dana")
    tab.page.click("button[type=submit]")
    expect(tab.page).to_have_url(here)

    site.clock.advance(TWELVE_HOURS + 1)  # the session ends while the page is open
    tab.page.check("input[name=useful][value=yes]")
    tab.page.click("form.feedback button[type=submit]")
    expect(tab.page).to_have_url(re.compile(r"/signin\?next=.*&why=expired$"))
    tab.page.fill("#token", WRITE_TOKEN)
    with tab.page.expect_navigation() as landed:
        tab.page.click("button[type=submit]")
    answer = landed.value
    # Back on the incident, whose form can be sent again: not the form's POST-only address.
    assert answer is not None and (answer.url, answer.status) == (here, 200)
    expect(tab.page.locator("form.feedback fieldset")).to_be_enabled()


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(tab: Tab, site: Site) -> None:
    sign_in(tab, site)
    expect(tab.page.locator("h1")).to_have_text("Board")

    # Without the token: 403, and the session it tried to end goes on.
    refused = tab.context.request.post(f"{site.url}/signout", form={}, max_redirects=0)
    assert refused.status == 403
    assert "Nothing was changed" in refused.text()
    assert refused.headers["content-security-policy"] == CONTENT_SECURITY_POLICY

    # With a forged one, through the page's own form.
    tab.page.locator(".who input[name=csrf]").evaluate("e => { e.value = 'r1.forged' }")
    tab.page.click("text=Sign out")
    expect(tab.page.locator("h1")).to_have_text("This form was refused")
    tab.shot("csrf-refused")

    tab.page.goto(f"{site.url}/")
    expect(tab.page.locator("h1")).to_have_text("Board")
    assert tab.cookie(SESSION_COOKIE) is not None


def test_sign_in_itself_needs_the_csrf_token(tab: Tab, site: Site) -> None:
    tab.page.goto(f"{site.url}/signin")
    form = {"token": READ_TOKEN, "next": "/"}
    for csrf in (None, "r1.forged"):
        fields = form if csrf is None else {**form, "csrf": csrf}
        answer = tab.context.request.post(f"{site.url}/signin", form=fields, max_redirects=0)
        assert answer.status == 403
        assert tab.cookie(SESSION_COOKIE) is None


def test_next_only_ever_leads_to_a_page_of_this_receiver(tab: Tab, site: Site) -> None:
    tab.page.goto(f"{site.url}/signin?next=//evil.example/steal")
    tab.page.fill("#token", READ_TOKEN)
    tab.page.click("button[type=submit]")
    expect(tab.page).to_have_url(f"{site.url}/")


def test_hostile_text_is_shown_as_text_and_never_runs(tab: Tab, site: Site) -> None:
    hostile = (
        "<img src=x onerror=\"document.title='owned'\"><script>document.title='owned'</script>"
    )
    sign_in(tab, site, name=hostile)

    expect(tab.page.locator(".who .user")).to_have_text(hostile[:80])
    assert tab.page.locator(".who img, .who script").count() == 0
    assert tab.page.title() != "owned"


def from_another_site(tab: Tab, url: str) -> int:
    """Follow a link to ``url`` from a chat's page (another site); how many HTML answers
    came before (those on the way there follow, once the page shows)."""

    def chat(route: Route) -> None:
        route.fulfill(content_type="text/html", body=f'<a id="go" href="{url}">P1</a>')

    tab.page.route("http://chat.example/**", chat)
    tab.page.goto("http://chat.example/channel")
    seen = len(tab.html)
    tab.page.click("#go")
    expect(tab.page).to_have_url(url)
    return seen


def test_a_link_from_another_site_keeps_the_session(tab: Tab, site: Site) -> None:
    """Links in Slack or PagerDuty are cross-site: the browser holds back a SameSite=Strict
    cookie on them, and the page gets it by reloading itself."""
    sign_in(tab, site)
    expect(tab.page.locator("h1")).to_have_text("Board")

    seen = from_another_site(tab, f"{site.url}/")
    expect(tab.page.locator("h1")).to_have_text("Board")
    # The way there: the cookie held back, a page that reloads itself, then the board.
    assert [(r.url, r.status) for r in tab.html[seen:]] == [(f"{site.url}/", 200)] * 2


def test_a_link_from_another_site_keeps_the_session_when_reads_are_open(
    tab: Tab, tmp_path: Path, clock: FakeClock
) -> None:
    """Reads open: without the cookie the page would show a writer as an anonymous reader,
    so it reloads itself as when reads need a token."""
    config = write_config(tmp_path / "receiver.yaml", {"bearer_tokens": [WRITE_TOKEN]})
    with serve(config, clock) as site:
        incident_id = site.post_webhook(body([make_alert()])).json()["incidents"][0]
        here = f"{site.url}/incidents/{incident_id}"
        tab.page.goto(f"{site.url}/signin?next=/incidents/{incident_id}")
        tab.page.fill("#token", WRITE_TOKEN)
        tab.page.fill("#name", "Dana")
        tab.page.click("button[type=submit]")
        expect(tab.page).to_have_url(here)
        expect(tab.page.locator(".who .user")).to_have_text("Dana")

        seen = from_another_site(tab, here)
        expect(tab.page.locator("h1#title")).to_be_visible()
        expect(tab.page.locator(".who .user")).to_have_text("Dana")
        expect(tab.page.locator("form.feedback fieldset")).to_be_enabled()
        # The page that reloads itself, then the incident: once, no loop.
        assert [(r.url, r.status) for r in tab.html[seen:]] == [(here, 200)] * 2


def test_the_trusted_proxy_header_signs_in_from_its_cidrs(
    browser: Browser, tmp_path: Path, clock: FakeClock
) -> None:
    proxy = {"header": "X-Forwarded-User", "from": ["127.0.0.0/8"]}
    config = write_config(tmp_path / "receiver.yaml", auth_with(trusted_proxy=proxy))
    tab = open_tab(browser, extra_http_headers={"X-Forwarded-User": "alice@example.com"})
    try:
        with serve(config, clock) as site:
            tab.page.goto(f"{site.url}/")
            expect(tab.page.locator("h1")).to_have_text("Board")
            expect(tab.page.locator(".who .user")).to_have_text("alice@example.com")
            assert tab.page.locator(".who button").count() == 0  # the proxy signs out
            tab.shot("board-proxy")
        check_tab(tab)
    finally:
        tab.context.close()


def test_the_trusted_proxy_header_from_another_address_is_ignored(
    browser: Browser, tmp_path: Path, clock: FakeClock
) -> None:
    proxy = {"header": "X-Forwarded-User", "from": ["10.0.0.0/8"]}
    config = write_config(tmp_path / "receiver.yaml", auth_with(trusted_proxy=proxy))
    # X-Forwarded-For names an address inside the CIDR, and uvicorn is told to believe it
    # from anyone: the check still looks at the socket's peer (127.0.0.1).
    headers = {"X-Forwarded-User": "mallory", "X-Forwarded-For": "10.1.2.3"}
    tab = open_tab(browser, extra_http_headers=headers)
    try:
        with serve(config, clock, forwarded_allow_ips="*") as site:
            tab.page.goto(f"{site.url}/")
            expect(tab.page).to_have_url(f"{site.url}/signin?next=/")
            expect(tab.page.locator(".who")).to_have_count(0)
        check_tab(tab)
    finally:
        tab.context.close()


def test_with_no_read_token_the_pages_are_open(tab: Tab, tmp_path: Path, clock: FakeClock) -> None:
    config = write_config(tmp_path / "receiver.yaml", {"bearer_tokens": [WRITE_TOKEN]})
    with serve(config, clock) as site:
        tab.page.goto(f"{site.url}/")
        expect(tab.page).to_have_url(f"{site.url}/")
        expect(tab.page.locator("h1")).to_have_text("Board")
        expect(tab.page.locator("#open-count")).to_contain_text("0")


def test_with_reads_open_a_reader_is_offered_to_sign_in_to_write(
    tab: Tab, tmp_path: Path, clock: FakeClock
) -> None:
    config = write_config(tmp_path / "receiver.yaml", {"bearer_tokens": [WRITE_TOKEN]})
    with serve(config, clock) as site:
        incident_id = site.post_webhook(body([make_alert()])).json()["incidents"][0]
        here = f"/incidents/{incident_id}"
        tab.page.goto(f"{site.url}{here}")
        why = tab.page.locator("#feedback-why")
        # Not "signed in to read only": an open reader is not signed in at all.
        expect(why).to_have_text(
            "Giving feedback needs the write role: sign in with a write or admin token."
        )
        expect(why.locator("a")).to_have_attribute("href", f"/signin?next={here}")
        expect(tab.page.locator(".who a")).to_have_text("Sign in")

        # A form sent anyway is refused with the same way out, not "Sign out".
        csrf = tab.page.locator("form.feedback input[name=csrf]").get_attribute("value")
        url = f"{site.url}{here}/feedback"
        refused = tab.context.request.post(url, form={"csrf": csrf or "", "useful": "yes"})
        assert refused.status == 403
        assert "Sign out" not in refused.text()
        assert f'<a href="/signin?next={here}">sign in</a>' in refused.text()

        why.locator("a").click()
        tab.page.fill("#token", WRITE_TOKEN)
        tab.page.fill("#name", "Dana")
        tab.page.click("button[type=submit]")
        expect(tab.page).to_have_url(f"{site.url}{here}")
        expect(tab.page.locator(".who .user")).to_have_text("Dana")
        expect(tab.page.locator("#feedback-why")).to_have_count(0)
        expect(tab.page.locator("form.feedback fieldset")).to_be_enabled()


def test_every_page_carries_the_safety_headers(tab: Tab, site: Site) -> None:
    answers = [tab.page.goto(f"{site.url}/signin")]
    sign_in(tab, site, token="wrong")
    answers.append(tab.html[-1])
    sign_in(tab, site)
    answers.append(tab.page.goto(f"{site.url}/"))
    for answer in answers:
        assert answer is not None
        headers = answer.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"
    css = tab.context.request.get(f"{site.url}/static/style.css")
    assert css.status == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"


def test_the_policy_check_sees_a_violation(browser: Browser, site: Site) -> None:
    """The ``tab`` fixture's check is real: an inline style is refused and reported."""
    tab = open_tab(browser)
    try:
        tab.page.goto(f"{site.url}/signin")
        with tab.page.expect_console_message(lambda m: "Content Security Policy" in m.text):
            tab.page.evaluate(
                "document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')"
            )
        assert any("style-src" in v for v in tab.violations), tab.violations
    finally:
        tab.context.close()


def test_the_pages_fit_a_phone(browser: Browser, site: Site) -> None:
    tab = open_tab(browser, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        sign_in(tab, site, name="Dana on call")
        expect(tab.page.locator("h1")).to_have_text("Board")
        fits = "document.documentElement.scrollWidth <= window.innerWidth"
        assert tab.page.evaluate(fits)
        tab.shot("board-phone-signed-in")
        check_tab(tab)
    finally:
        tab.context.close()
