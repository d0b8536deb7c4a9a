"""Sessions across replicas, keys that rotate, tokens taken away, the trusted proxy's peer,
and ``next`` kept local: what the browser tests cannot see from outside."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from receiver.config import TrustedProxyConfig
from receiver.store import GroupStore
from receiver.store.cache import LocalCache
from receiver.web.auth import NONCE_COOKIE, SESSION_COOKIE
from receiver.web.keys import WEEK_S, KeyRing
from receiver.web.pages import local_path
from receiver.web.proxy import PEER, proxy_user
from tests.conftest import FakeClock
from tests.support.browser import READ_TOKEN, WRITE_TOKEN, app_with_pages, auth_with, write_config

pytestmark = pytest.mark.anyio
SECRET = "a-session-secret-long-enough-0123456789"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def replica(config: Path, clock: FakeClock, store: GroupStore | None = None) -> Starlette:
    """A receiver with its pages; given ``store``, another replica sharing it, as Redis is."""
    return app_with_pages(config, clock, store=store)


@pytest.fixture
async def client_for() -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def make(app: Starlette) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://pages.test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def sign_in(client: httpx.AsyncClient, token: str = READ_TOKEN) -> str:
    """The session cookie a sign-in through the form gives."""
    client.cookies.clear()
    form = await client.get("/signin")
    match = _CSRF.search(form.text)
    assert match is not None
    answer = await client.post(
        "/signin", data={"csrf": match[1], "token": token, "next": "/"}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    cookie = answer.cookies.get(SESSION_COOKIE)
    assert cookie is not None
    return cookie


async def board_status(client: httpx.AsyncClient, cookie: str) -> int:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    answer = await client.get("/", follow_redirects=False)
    return answer.status_code


async def test_a_session_made_on_one_replica_works_on_another(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    config = write_config(tmp_path / "receiver.yaml", auth_with())
    first = replica(config, clock)
    second = replica(config, clock, first.state.receiver.store)

    cookie = await sign_in(client_for(first))

    assert await board_status(client_for(second), cookie) == 200
    # Another store is another deployment: its keys are its own.
    assert await board_status(client_for(replica(config, clock)), cookie) == 303


async def test_a_session_made_on_a_replica_whose_clock_is_ahead_works_at_once_on_another(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    config = write_config(tmp_path / "receiver.yaml", auth_with())
    ahead = replica(config, clock)
    behind = replica(config, FakeClock(clock.now - 3), ahead.state.receiver.store)

    cookie = await sign_in(client_for(ahead))

    # The redirect after signing in may well land on the other replica.
    assert await board_status(client_for(behind), cookie) == 200


async def test_a_configured_secret_needs_no_shared_store(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    config = write_config(tmp_path / "a.yaml", auth_with(session_secret=SECRET))
    other_secret = write_config(tmp_path / "b.yaml", auth_with(session_secret=SECRET[::-1]))

    cookie = await sign_in(client_for(replica(config, clock)))

    assert await board_status(client_for(replica(config, clock)), cookie) == 200
    assert await board_status(client_for(replica(other_secret, clock)), cookie) == 303


async def test_a_token_taken_out_of_the_config_ends_its_sessions(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    path = tmp_path / "receiver.yaml"
    app = replica(write_config(path, auth_with()), clock)
    client = client_for(app)
    reader, writer = await sign_in(client), await sign_in(client, WRITE_TOKEN)

    write_config(path, {"bearer_tokens": [WRITE_TOKEN], "read_bearer_tokens": ["a-new-one"]})
    app.state.receiver.reload()

    assert await board_status(client, reader) == 303
    assert await board_status(client, writer) == 200


async def test_a_shorter_session_ttl_shortens_running_sessions(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    path = tmp_path / "receiver.yaml"
    app = replica(write_config(path, auth_with()), clock)
    client = client_for(app)
    cookie = await sign_in(client)

    write_config(path, auth_with(session_ttl="1h"))
    app.state.receiver.reload()

    assert await board_status(client, cookie) == 303


async def test_a_tampered_cookie_is_refused(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    client = client_for(replica(write_config(tmp_path / "r.yaml", auth_with()), clock))
    cookie = await sign_in(client)
    payload, signature = cookie.split(".")

    for forged in (f"{payload}.{signature[:-2]}AA", f"{payload[:-2]}AA.{signature}", "x", ""):
        assert await board_status(client, forged) == 303


async def test_signing_in_over_an_expired_cookie_keeps_the_new_session(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    client = client_for(replica(write_config(tmp_path / "r.yaml", auth_with()), clock))
    old = await sign_in(client)
    clock.advance(13 * 3600)
    client.cookies.clear()
    form = await client.get("/signin")
    csrf = _CSRF.search(form.text)
    assert csrf is not None

    client.cookies.set(SESSION_COOKIE, old)
    answer = await client.post(
        "/signin", data={"csrf": csrf[1], "token": READ_TOKEN}, follow_redirects=False
    )

    assert answer.status_code == 303
    fresh = answer.cookies.get(SESSION_COOKIE)
    assert fresh and fresh != old
    assert await board_status(client, fresh) == 200


async def test_keys_rotate_weekly_and_the_last_one_still_verifies() -> None:
    cache = LocalCache(clock=lambda: 0.0)
    now = 100 * WEEK_S + 10
    signer = await KeyRing().signing(None, cache, now, 12 * 3600)
    # Another replica, its own memo, the same store: the same key.
    other = KeyRing()
    assert await other.signing(None, cache, now + 60, 12 * 3600) == signer

    a_week_on = await other.verifying(signer.kid, None, cache, now + WEEK_S, 12 * 3600)
    assert a_week_on == signer
    assert await other.verifying(signer.kid, None, cache, now + 2 * WEEK_S, 12 * 3600) is None
    assert await other.verifying("r12345", None, cache, now, 12 * 3600) is None
    assert await other.verifying("s-anything", None, cache, now, 12 * 3600) is None


async def test_a_key_a_replica_whose_clock_is_ahead_made_for_the_next_week_verifies() -> None:
    cache = LocalCache(clock=lambda: 0.0)
    turn = 101 * WEEK_S
    ahead = await KeyRing().signing(None, cache, turn + 1, 12 * 3600)

    behind = KeyRing()
    assert await behind.verifying(ahead.kid, None, cache, turn - 2, 12 * 3600) == ahead
    # Not a week's key from further on than clocks are apart.
    assert await behind.verifying(ahead.kid, None, cache, turn - 3600, 12 * 3600) is None


async def test_a_key_the_store_lost_is_followed_within_a_minute() -> None:
    cache = LocalCache(clock=lambda: 0.0)
    now = 100 * WEEK_S + 10
    ring = KeyRing()
    lost = await ring.signing(None, cache, now, 12 * 3600)
    await cache.set("web", f"key:{lost.kid}", "A" * 43, 86_400_000)  # another replica's

    assert await ring.signing(None, cache, now + 30, 12 * 3600) == lost
    followed = await ring.signing(None, cache, now + 61, 12 * 3600)
    assert followed.kid == lost.kid
    assert followed.secret == bytes(32) and followed != lost


async def test_replicas_racing_for_a_key_all_get_the_first_one(
    tmp_path: Path, clock: FakeClock
) -> None:
    receiver = replica(write_config(tmp_path / "r.yaml", auth_with()), clock).state.receiver
    shared = receiver.store.cache
    assert await shared.setdefault("web", "key:r1", "first", 60_000) == "first"
    assert await shared.setdefault("web", "key:r1", "second", 60_000) == "first"
    assert await shared.get("web", "key:r1") == "first"


def connection(peer: str | None, **headers: str) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("10.9.9.9", 5000),  # what X-Forwarded-For made of it
        PEER: peer,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "user", "seen"),
    [
        ("10.1.2.3", "alice", "alice"),
        ("::ffff:10.1.2.3", "alice", "alice"),
        ("fd00::7", "alice", "alice"),
        ("192.168.1.1", "alice", None),
        (None, "alice", None),
        ("10.1.2.3", "", None),
        ("10.1.2.3", "a\x07b", None),
        ("10.1.2.3", "x" * 201, None),
    ],
)
def test_the_proxy_header_is_believed_only_from_its_cidrs(
    peer: str | None, user: str, seen: str | None
) -> None:
    proxy = TrustedProxyConfig.model_validate({"from": ["10.0.0.0/8", "fd00::/8"]})
    request = connection(peer, **{"X-Forwarded-User": user})
    assert proxy_user(request, proxy) == seen
    assert proxy_user(request, None) is None


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/incidents/checkout-1?x=1", "/incidents/checkout-1?x=1"),
        ("/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/a\nb", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_next_is_a_local_path(target: str | None, kept: str) -> None:
    assert local_path(target) == kept


async def test_a_pasted_token_with_spaces_signs_in_and_stays_signed_in(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    app = replica(write_config(tmp_path / "receiver.yaml", auth_with()), clock)
    cookie = await sign_in(client_for(app), f" {READ_TOKEN} \n")
    assert await board_status(client_for(app), cookie) == 200


def test_without_the_recorded_tcp_peer_the_proxy_header_is_not_believed() -> None:
    """Served some other way than journey-receiver serve: the client address may come from
    X-Forwarded-For, so the header is ignored (fail closed)."""
    proxy = TrustedProxyConfig.model_validate({"from": ["10.0.0.0/8"]})
    request = connection("10.1.2.3", **{"X-Forwarded-User": "alice"})
    del request.scope[PEER]
    assert request.client is not None and request.client.host == "10.9.9.9"  # looks trusted
    assert proxy_user(request, proxy) is None


@pytest.mark.parametrize("path", ["/", "/stats", "/incidents/checkout-0000-1"])
async def test_no_page_is_reachable_without_read_access(
    tmp_path: Path, clock: FakeClock, client_for: Any, path: str
) -> None:
    client = client_for(replica(write_config(tmp_path / "receiver.yaml", auth_with()), clock))
    answer = await client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/signin?next=")


async def test_a_read_session_cannot_give_feedback_even_with_a_valid_csrf_token(
    tmp_path: Path, clock: FakeClock, client_for: Any
) -> None:
    app = replica(write_config(tmp_path / "receiver.yaml", auth_with()), clock)
    receiver = app.state.receiver
    client = client_for(app)
    token = {"authorization": f"Bearer {WRITE_TOKEN}"}
    webhook = {
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "r", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "", "alerts": [{
            "status": "firing", "labels": {"alertname": "X", "service": "payment-service",
            "env": "prod", "region": "eu"}, "annotations": {},
            "startsAt": "2026-04-18T08:10:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "00000000000000aa",
        }],
    }  # fmt: skip
    (incident_id,) = (
        await client.post("/webhook/alertmanager", json=webhook, headers=token)
    ).json()["incidents"]
    cookie = await sign_in(client, READ_TOKEN)
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    page = await client.get(f"/incidents/{incident_id}")
    assert page.status_code == 200
    match = _CSRF.search(page.text)
    assert match is not None  # the sign-out form's token: a valid one for this session
    answer = await client.post(
        f"/incidents/{incident_id}/feedback",
        data={"csrf": match[1], "useful": "yes"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    stored = await receiver.store.load(incident_id)
    assert stored is not None and stored.state.feedback == []


@pytest.mark.parametrize("path", ["/", "/stats", "/incidents/x", "/signin"])
async def test_a_forged_cookie_nested_too_deep_to_parse_is_refused_not_a_500(
    tmp_path: Path, clock: FakeClock, path: str
) -> None:
    app = app_with_pages(write_config(tmp_path / "receiver.yaml", auth_with()), clock)
    # Well under the cookie size limit: 3,000 nested JSON arrays, no key, no signature.
    payload = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://pages.test") as client:
        client.cookies.set(SESSION_COOKIE, f"{payload}.forged")
        answer = await client.get(path, follow_redirects=False)
    # Sent to sign in (or the sign-in form), the forged cookie cleared if anything.
    assert answer.status_code in (200, 303), answer.status_code
    assert answer.cookies.get(SESSION_COOKIE) in (None, "")


async def test_a_nonce_cookie_not_of_ours_is_replaced_and_the_form_it_came_with_works(
    tmp_path: Path, clock: FakeClock
) -> None:
    app = app_with_pages(write_config(tmp_path / "receiver.yaml", auth_with()), clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pages.test") as client:
        client.cookies.set(NONCE_COOKIE, "short")
        form = await client.get("/signin")
        replaced = form.cookies.get(NONCE_COOKIE)
        assert replaced and replaced != "short"
        client.cookies.clear()
        client.cookies.set(NONCE_COOKIE, replaced)  # what the browser sends back
        csrf = _CSRF.search(form.text)
        assert csrf is not None
        answer = await client.post(
            "/signin", data={"csrf": csrf[1], "token": READ_TOKEN, "next": "/"}
        )
        assert answer.status_code == 303
        assert answer.cookies.get(SESSION_COOKIE)
