"""Page routes: sign-in, sign-out, the board, an incident (feedback, Run); ``/static/``.

The pages read through the same store calls as the JSON API (no second query path).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from receiver.web import board as journey_board
from receiver.web import incident_page, stats_page
from receiver.web.auth import SESSION_COOKIE, WebAuth
from receiver.web.pages import (
    STATIC,
    SecurityHeaders,
    Visit,
    form,
    local_path,
    page,
    render,
    set_cookie,
    state,
)
from receiver.web.proxy import peer_address

if TYPE_CHECKING:
    from receiver.app import Receiver

logger = logging.getLogger("journey_receiver")

BOARD_LIMIT = 500
_WHY = ("expired", "signedout")


async def board(request: Request, receiver: Receiver) -> Response:
    shown = await journey_board.load(receiver, _opened(request), BOARD_LIMIT)
    return render(
        request,
        "board.html",
        {
            "board": shown,
            "open_count": shown.open_count,
            "capped": shown.capped,
            # A wall screen reloads the board every 30 s; a person reading it with a keyboard
            # or a screen reader is sent back to the top by each reload, so may turn it off.
            "refresh": request.query_params.get("refresh") != "off",
        },
    )


def _opened(request: Request) -> journey_board.OpenIncidents:
    """This app's short-lived list of open incidents (one per app: tests run several)."""
    app_state = request.app.state
    if not hasattr(app_state, "open_incidents"):
        app_state.open_incidents = journey_board.OpenIncidents()
    opened: journey_board.OpenIncidents = app_state.open_incidents
    return opened


async def stats(request: Request, receiver: Receiver) -> Response:
    shown = await stats_page.load(receiver, request.query_params.get("window"))
    return render(request, "stats.html", {"page": shown, "fmt": stats_page})


async def signin_form(request: Request, receiver: Receiver) -> Response:
    target = local_path(request.query_params.get("next"))
    visit: Visit = request.state.visit
    if visit.viewer is not None and visit.viewer.session is not None:
        return RedirectResponse(target, status_code=303)
    why = request.query_params.get("why")
    return _signin_page(request, receiver, target, why if why in _WHY else None)


async def signin(request: Request, receiver: Receiver) -> Response:
    fields = await form(request)
    target = local_path(fields.get("next"))
    made = await state(request).sign_in(receiver, fields.get("token", ""), fields.get("name", ""))
    client = peer_address(request) or "unknown client"
    if made is None:
        # Where from, never what was typed: it may be a real secret of another system.
        logger.warning("sign-in refused from %s: not a configured token", client)
        return _signin_page(request, receiver, target, "wrong", status=401)
    session, cookie = made
    roles = ", ".join(sorted(session.roles))
    logger.info("signed in from %s: %s (%s)", client, session.user, roles)
    answer = RedirectResponse(target, status_code=303)
    ttl = receiver.settings.config.server.auth.session_ttl
    set_cookie(request, answer, SESSION_COOKIE, cookie, max_age=max(1, int(ttl)))
    return answer


async def signout(request: Request, receiver: Receiver) -> Response:
    visit: Visit = request.state.visit
    if visit.viewer is not None and visit.viewer.session is not None:
        await state(request).sign_out(receiver, visit.viewer.session)
    answer = RedirectResponse("/signin?why=signedout", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return answer


def _signin_page(
    request: Request, receiver: Receiver, target: str, why: str | None, status: int = 200
) -> Response:
    auth = receiver.auth
    answer = render(
        request,
        "signin.html",
        {
            "next": target,
            "why": why,
            "reads_open": auth.read_open,
            "proxy": receiver.settings.config.server.auth.trusted_proxy is not None,
        },
        status=status,
    )
    if status == 401:
        answer.headers["WWW-Authenticate"] = 'Bearer realm="journey-receiver"'
    return answer


INCIDENT_PAGE = "/incidents/{incident_id}"

routes: list[BaseRoute] = [
    Route("/", page(board), methods=["GET"]),
    Route("/stats", page(stats), methods=["GET"]),
    Route(INCIDENT_PAGE, page(incident_page.incident_page), methods=["GET"]),
    Route(
        "/incidents/{incident_id}/feedback",
        page(incident_page.post_incident_feedback, role="write", form_on=INCIDENT_PAGE),
        methods=["POST"],
    ),
    Route(
        "/incidents/{incident_id}/actions/{action_id}/run",
        page(incident_page.post_run, role="write", form_on=INCIDENT_PAGE),
        methods=["POST"],
    ),
    Route("/signin", page(signin_form, role=None), methods=["GET"]),
    Route("/signin", page(signin, role=None), methods=["POST"]),
    # Signing out a session that has ended (or ended in another tab) just says signed out:
    # its form's CSRF token was for that session, and there is nothing left to end.
    Route("/signout", page(signout, role=None, csrf="live session"), methods=["POST"]),
    Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
]


def install(app: Starlette) -> None:
    """The pages and ``/static/`` on ``app``, and the safety headers on its answers. Call
    before the app serves its first request (Starlette builds its middleware then)."""
    app.router.routes.extend(routes)
    app.add_middleware(SecurityHeaders)
    app.state.web = WebAuth()
