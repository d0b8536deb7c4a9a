"""What every page shares: templates, the ``page`` guard, ``render``, forms, safety headers.

A page module writes its handlers as ``async def handler(request, receiver) -> Response``,
wraps them with :func:`page` (sign-in, CSRF on POST, store errors) and answers with
:func:`render`. Templates extend ``base.html``; Jinja2 escapes every value (autoescape on),
and the Content-Security-Policy forbids inline scripts and styles, so hostile alert text is
shown as text and never runs. No ``style=`` attributes either, in SVG too: use classes from
``static/style.css`` or presentation attributes (``fill=``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import jinja2
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver import __version__
from receiver.auth import Role
from receiver.errors import StoreUnavailable
from receiver.logtext import printable, unturned
from receiver.web.auth import (
    NONCE_COOKIE,
    ROLES,
    SESSION_COOKIE,
    Viewer,
    WebAuth,
    new_nonce,
    valid_nonce,
)

if TYPE_CHECKING:
    from receiver.app import Receiver

logger = logging.getLogger("journey_receiver")

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
NAME = "journey-receiver"
MAX_FORM_BYTES = 64 * 1024

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""Sent with every HTML answer. Never ``'unsafe-inline'``: add a source, not an exception."""
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show incidents to whoever is signed in: no shared cache may keep them.
    "Cache-Control": "no-store",
}

_OUTAGE_RETRY_S = 30


def _unturned(value: object) -> object:
    return unturned(value) if isinstance(value, str) else value


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # Every value printed, alert text above all: its bidirectional controls shown.
    finalize=_unturned,
)

PageHandler = Callable[[Request, "Receiver"], Awaitable[Response]]
Handler = Callable[[Request], Awaitable[Response]]


class SecurityHeaders:
    """ASGI middleware: the safety headers on every HTML answer (``HTML_HEADERS``, those a
    handler set itself kept) and ``nosniff`` on every other one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").startswith("text/html"):
                    for name, value in HTML_HEADERS.items():
                        headers.setdefault(name, value)
                headers.setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def state(request: Request) -> WebAuth:
    """The app's :class:`WebAuth` (made by ``receiver.web.install``, or here at first use)."""
    app_state = request.app.state
    web: WebAuth | None = getattr(app_state, "web", None)
    if web is None:
        web = app_state.web = WebAuth()
    return web


def receiver_of(request: Request) -> Receiver:
    receiver: Receiver = request.app.state.receiver
    return receiver


@dataclass(frozen=True, slots=True)
class Visit:
    """What :func:`page` learnt about a request, for :func:`render`."""

    viewer: Viewer | None
    csrf_token: str
    new_nonce: str | None
    """A CSRF nonce made for this visitor, to be set as a cookie with the answer."""
    back: str
    """The page signing in leads back to: this one, or for a form's POST the page the form
    is on (the POST's own address answers nothing else)."""


def page(
    handler: PageHandler,
    *,
    role: Role | None = "read",
    form_on: str = "/",
    csrf: Literal["always", "live session"] = "always",
) -> Handler:
    """A page: the visitor identified (and sent to sign in when ``role`` is needed and
    missing), a POST's CSRF token checked before ``handler`` runs, store outages shown as
    a 503 page.

    ``form_on``: for a POST, the page its form is on, as a path template of the route's
    parameters (``/incidents/{incident_id}``); a visitor sent to sign in comes back there.
    ``csrf="live session"``: the token is checked only when a valid session comes with the
    POST, for a form that can do nothing but end it (sign-out)."""

    async def endpoint(request: Request) -> Response:
        receiver = receiver_of(request)
        web = state(request)
        try:
            identity = await web.identify(request, receiver)
            viewer = identity.viewer
            nonce = request.cookies.get(NONCE_COOKIE)
            made = None if valid_nonce(nonce) else new_nonce()
            # A nonce cookie not of ours is replaced by ``made``: the form's token must be
            # for the cookie set with it, or the browser's next post is refused.
            subject = viewer.session.sid if viewer and viewer.session else (made or nonce)
            assert subject is not None
            token = await web.csrf_token(receiver, subject)
            request.state.visit = Visit(viewer, token, made, _back(request, form_on))
            live = viewer is not None and viewer.session is not None
            answer: Response
            try:
                if role is not None and _cookie_held_back(request, viewer):
                    # A link followed from Slack, PagerDuty or Jira: the browser kept the
                    # SameSite=Strict cookie back. Our own page reloading the same address
                    # is same-site, so it gets the cookie, and is not held back again.
                    answer = render(request, "continue.html", {"here": _here(request)})
                elif role is not None and (viewer is None or not viewer.may(role)):
                    answer = _refused(request, viewer, role, identity.stale)
                elif (
                    request.method == "POST"
                    and (csrf == "always" or live)
                    and not await _csrf_ok(request, receiver, subject)
                ):
                    answer = render(request, "refused.html", {"reason": "csrf"}, status=403)
                else:
                    answer = await handler(request, receiver)
            except FormError as exc:
                answer = render(request, "refused.html", {"reason": "form"}, status=exc.status)
        except StoreUnavailable as exc:
            logger.warning("page %s: %s", printable(request.url.path), exc)
            outage = error_page(request, 503, "store")
            if request.method == "GET":
                # A board on a wall screen reloads itself: it must come back on its own
                # once the store does (a form's answer is not sent again).
                outage.headers["Refresh"] = str(_OUTAGE_RETRY_S)
                outage.headers["Retry-After"] = str(_OUTAGE_RETRY_S)
            return outage
        if identity.stale and not _sets_cookie(answer, SESSION_COOKIE):
            answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return answer

    return endpoint


def _cookie_held_back(request: Request, viewer: Viewer | None) -> bool:
    """Whether the browser may hold a session it did not send: a GET from another site,
    from a visitor known by no session (nobody, or an open reader while some role is not
    open, so a session could add to it)."""
    if request.method != "GET" or request.headers.get("sec-fetch-site") != "cross-site":
        return False
    return viewer is None or (viewer.via == "open" and viewer.roles != frozenset(ROLES))


def _refused(request: Request, viewer: Viewer | None, role: Role, stale: bool) -> Response:
    if viewer is not None:
        return render(request, "refused.html", {"reason": "role", "role": role}, status=403)
    target = _signin_url(request)
    if stale:
        target += "&why=expired"
    return RedirectResponse(target, status_code=303)


def _signin_url(request: Request) -> str:
    """Sign-in, leading back to this visit's page. Only under :func:`page`."""
    visit: Visit = request.state.visit
    return "/signin?next=" + quote(visit.back, safe="/")


def _sets_cookie(response: Response, name: str) -> bool:
    prefix = f"{name}=".encode()
    return any(k == b"set-cookie" and v.startswith(prefix) for k, v in response.raw_headers)


async def _csrf_ok(request: Request, receiver: Receiver, subject: str) -> bool:
    fields = await form(request)
    return await state(request).csrf_valid(receiver, subject, fields.get("csrf", ""))


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> HTMLResponse:
    """``template`` rendered with ``context``, the viewer and the CSRF token (``csrf_token``,
    for every form's hidden ``csrf`` field). Only under :func:`page`."""
    visit: Visit = request.state.visit
    html = environment.get_template(template).render(
        {
            **(context or {}),
            "name": NAME,
            "version": __version__,
            "viewer": visit.viewer,
            "csrf_token": visit.csrf_token,
            "path": request.url.path,
            "signin_url": _signin_url(request),
        }
    )
    response = HTMLResponse(html, status_code=status)
    if visit.new_nonce is not None:
        set_cookie(request, response, NONCE_COOKIE, visit.new_nonce, max_age=None)
    return response


def error_page(request: Request, status: int, reason: str) -> HTMLResponse:
    """A page saying why, for answers made before the visitor is known."""
    context = {"name": NAME, "version": __version__, "viewer": None, "csrf_token": ""}
    html = environment.get_template("refused.html").render(
        {**context, "path": request.url.path, "reason": reason}
    )
    return HTMLResponse(html, status_code=status)


def set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None
) -> None:
    """A cookie only this receiver's pages send back: HttpOnly, SameSite=Strict, Path=/,
    Secure when people reach the receiver over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=secure(request),
        httponly=True,
        samesite="strict",
    )


def secure(request: Request) -> bool:
    external = receiver_of(request).settings.config.server.external_url
    return request.url.scheme == "https" or str(external or "").startswith("https:")


class FormError(Exception):
    """A POST body that is no page form: wrong type, too large or undecodable."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def form(request: Request) -> dict[str, str]:
    """A page form's fields (``application/x-www-form-urlencoded``, the first value of each),
    read once and kept on the request."""
    kept: dict[str, str] | None = getattr(request.state, "form", None)
    if kept is not None:
        return kept
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError(415)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(413)
    fields: dict[str, str] = {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(400) from exc
    for name, value in pairs:
        fields.setdefault(name, value)
    request.state.form = fields
    return fields


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this receiver (``/incidents/x?y``), else ``default``:
    a ``next`` that pointed elsewhere would make sign-in an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(not c.isprintable() for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def _here(request: Request) -> str:
    query = request.url.query
    return local_path(request.url.path + (f"?{query}" if query else ""))


def _back(request: Request, form_on: str) -> str:
    if request.method != "POST":
        return _here(request)
    shown = {k: quote(str(v), safe="") for k, v in request.path_params.items()}
    return local_path(form_on.format_map(shown))
