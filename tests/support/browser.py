"""The receiver's pages in a real browser: the receiver served by uvicorn on a free port in
a thread (so the test holds its clock), and Debian's chromium driven by Playwright.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium`` (installed by
``scripts/setup --test``) through ``executable_path``. Every tab records what the page's
Content-Security-Policy refused (Chromium logs each violation to the console) and every
HTML answer it got; the ``tab`` fixture fails a test whose pages broke the policy or came
without it. ``Tab.shot(name)`` saves a screenshot: to ``docs/screenshots/`` with
``SCREENSHOTS=1``, else to ``tests/artifacts/screenshots/`` (not committed).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from playwright.sync_api import Response as PageResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from receiver import scheduler
from receiver.app import Receiver, create_app
from receiver.store import GroupStore
from receiver.web.proxy import served
from tests.conftest import EXAMPLE_JOURNEYS, FakeClock

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
WRITE_TOKEN = "write-token-for-pages-0123456789"
READ_TOKEN = "read-token-for-pages-0123456789"
# What this machine's closed network needs: no background calls home, no GPU.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 10_000


def write_config(path: Path, auth: dict[str, Any], **server: Any) -> Path:
    """A receiver.yaml on the memory:// store with ``server.auth`` set to ``auth``."""
    config = {
        "server": {"auth": auth, **server},
        "store": {"url": "memory://"},
        "journeys_file": str(EXAMPLE_JOURNEYS),
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def auth_with(**extra: Any) -> dict[str, Any]:
    """A write token and a read token, and ``extra`` (``trusted_proxy``...)."""
    return {"bearer_tokens": [WRITE_TOKEN], "read_bearer_tokens": [READ_TOKEN], **extra}


@dataclass
class Site:
    """A receiver serving its pages at ``url``."""

    url: str
    clock: FakeClock
    app: Starlette

    @property
    def receiver(self) -> Receiver:
        receiver: Receiver = self.app.state.receiver
        return receiver

    def api(self, method: str, path: str, payload: object = None) -> httpx.Response:
        """The JSON API with the write token."""
        return httpx.request(
            method,
            f"{self.url}{path}",
            content=None if payload is None else json.dumps(payload),
            headers={"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/json"},
            timeout=10,
        )

    def post_webhook(self, payload: bytes) -> httpx.Response:
        response = httpx.post(
            f"{self.url}/webhook/alertmanager",
            content=payload,
            headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        return response

    def tick(self, seconds: float = 0.0) -> None:
        """Let ``seconds`` pass on the receiver's clock, then run the scheduler once."""
        self.clock.advance(seconds)
        httpx.post(f"{self.url}{TICK_PATH}", timeout=10).raise_for_status()


TICK_PATH = "/-/test/tick"


def app_with_pages(config: Path, clock: FakeClock, store: GroupStore | None = None) -> Starlette:
    """The receiver's app with its pages and no scheduler loop: tests run its rounds with
    ``POST /-/test/tick`` (``Site.tick``), on the server's own event loop."""
    app = create_app(config, clock=clock, store=store, run_scheduler=False)

    async def tick(request: Request) -> Response:
        receiver: Receiver = app.state.receiver
        await scheduler.tick(receiver.pipeline, receiver.outbox, receiver.peer)
        return PlainTextResponse("ticked")

    app.router.routes.insert(0, Route(TICK_PATH, tick, methods=["POST"]))
    return app


@contextlib.contextmanager
def serve(
    config: Path, clock: FakeClock, *, forwarded_allow_ips: str | None = None
) -> Iterator[Site]:
    """The receiver on a free loopback port, served as ``journey-receiver serve`` serves it
    (the socket peer recorded before proxy headers are read)."""
    app = app_with_pages(config, clock)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            served(app, forwarded_allow_ips),
            proxy_headers=False,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start serving its pages")
            time.sleep(0.02)
        yield Site(f"http://127.0.0.1:{port}", clock, app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Tab:
    """One browser context and its page, with what they saw."""

    context: BrowserContext
    page: Page
    violations: list[str] = field(default_factory=list)
    html: list[PageResponse] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        """A full-page screenshot of what the tab shows now."""
        folder = DOCS if os.environ.get("SCREENSHOTS") == "1" else ARTIFACTS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def cookie(self, name: str) -> dict[str, Any] | None:
        return next((dict(c) for c in self.context.cookies() if c.get("name") == name), None)


def _record(tab: Tab) -> None:
    def console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            tab.violations.append(message.text)

    def response(answer: PageResponse) -> None:
        if answer.headers.get("content-type", "").startswith("text/html"):
            tab.html.append(answer)

    tab.page.on("console", console)
    tab.page.on("response", response)


# Module scope, not session: while Playwright's sync API is started it keeps an asyncio loop
# running on this thread, and every anyio test after it would fail ("Cannot run the event
# loop while another loop is running"). So browser tests live in modules of their own, with
# no async tests beside them, and the browser ends with its module.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup --test (it installs chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield chromium
    finally:
        chromium.close()


def open_tab(browser: Browser, **context: Any) -> Tab:
    ctx = browser.new_context(**context)
    ctx.set_default_timeout(PAGE_TIMEOUT_MS)
    tab = Tab(ctx, ctx.new_page())
    _record(tab)
    return tab


def check_tab(tab: Tab) -> None:
    """No page broke its Content-Security-Policy, and every HTML answer of the receiver
    (on loopback; a test's stand-in for another site is not ours) carried one."""
    assert tab.violations == [], "the Content-Security-Policy refused something"
    ours = [r for r in tab.html if r.url.startswith("http://127.0.0.1:")]
    missing = [r.url for r in ours if "content-security-policy" not in r.headers]
    assert missing == [], "HTML answers without a Content-Security-Policy"


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A fresh browser context (no cookies) at a laptop's size; checked when the test ends."""
    opened = open_tab(browser, viewport={"width": 1280, "height": 800})
    try:
        yield opened
        check_tab(opened)
    finally:
        opened.context.close()
