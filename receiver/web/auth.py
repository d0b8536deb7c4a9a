"""Who may see the pages: sessions signed in with a token, a trusted proxy's word, CSRF.

- Sign-in takes any configured bearer token (read, write or admin: ``Authenticator.check``
  decides, as for the API) and answers with a session cookie: ``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` over https. The cookie is the session: its id, the
  person's name, its roles, its expiry and a MAC of the token it was made with, signed with
  HMAC-SHA256 (``keys.py``), so any replica checks it without a lookup. It is refused
  once expired (the expiry inside the signed value decides, not the browser), once
  signed out (the store remembers a signed-out id until it would have expired), and once
  its token is no longer configured with the same roles.
- ``server.auth.trusted_proxy``: a person named by the proxy's header, believed only on a
  connection from its CIDRs (``proxy.py``), may read.
- With no read token configured, reads are open, and so are the pages.
- CSRF: every form carries ``HMAC(key, subject)``, the subject being the session's id, or
  before sign-in (and for proxy or open visitors) a random nonce in its own ``HttpOnly``,
  ``SameSite=Strict`` cookie. A POST whose token does not match is refused.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from starlette.requests import HTTPConnection

from receiver.auth import Role
from receiver.web.keys import CLOCK_SKEW_S, NAMESPACE, Key, KeyRing, b64, mac, unb64
from receiver.web.proxy import proxy_user

if TYPE_CHECKING:
    from receiver.app import Receiver

logger = logging.getLogger("journey_receiver")

SESSION_COOKIE = "jr_session"
NONCE_COOKIE = "jr_csrf"
ROLES: tuple[Role, ...] = ("read", "write", "admin")
MAX_COOKIE = 4096
MAX_TOKEN = 4096
MAX_NAME = 80


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    user: str
    roles: frozenset[Role]
    expires_at: float


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a page, and how we know: a session, the trusted proxy, or
    nobody in particular (reads open)."""

    name: str | None
    via: Literal["session", "proxy", "open"]
    roles: frozenset[Role]
    session: Session | None = None

    def may(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class Identity:
    viewer: Viewer | None
    """None: nobody the pages may show anything to; they send them to sign in."""
    stale: bool
    """A session cookie came and was refused (expired, signed out, forged, its token gone)."""


class WebAuth:
    """Sessions, CSRF tokens and identities for the pages of one app."""

    def __init__(self) -> None:
        self.keys = KeyRing()

    # -- keys -------------------------------------------------------------------------------

    async def _signing(self, receiver: Receiver) -> Key:
        auth = receiver.settings.config.server.auth
        return await self.keys.signing(
            _secret(receiver), receiver.store.cache, receiver.clock(), auth.session_ttl
        )

    async def _verifying(self, receiver: Receiver, kid: str) -> Key | None:
        auth = receiver.settings.config.server.auth
        return await self.keys.verifying(
            kid, _secret(receiver), receiver.store.cache, receiver.clock(), auth.session_ttl
        )

    # -- sessions ---------------------------------------------------------------------------

    async def sign_in(
        self, receiver: Receiver, token: str, name: str
    ) -> tuple[Session, str] | None:
        """A new session and its cookie value for a configured token, else None."""
        token = token.strip()  # as receiver/auth.py reads a header: a pasted token's spaces
        if not token or len(token) > MAX_TOKEN:
            return None
        roles = _roles(receiver, token)
        if not _known(receiver, roles):
            return None
        ttl = receiver.settings.config.server.auth.session_ttl
        user = _clean_name(name) or f"{_strongest(roles)} token"
        session = Session(secrets.token_urlsafe(16), user, roles, receiver.clock() + ttl)
        key = await self._signing(receiver)
        payload = b64(
            json.dumps(
                {
                    "k": key.kid,
                    "s": session.sid,
                    "u": session.user,
                    "r": sorted(session.roles),
                    "c": _credential(key, token, roles),
                    "e": session.expires_at,
                },
                separators=(",", ":"),
            ).encode()
        )
        return session, f"{payload}.{mac(key.secret, 'session', payload)}"

    async def session(self, receiver: Receiver, cookie: str) -> Session | None:
        """The session a cookie carries, if it is still good."""
        if len(cookie) > MAX_COOKIE or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        fields = _json(unb64(payload))
        kid = fields.get("k") if fields else None
        if not fields or not isinstance(kid, str):
            return None
        key = await self._verifying(receiver, kid)
        if key is None or not hmac.compare_digest(
            signature.encode(), mac(key.secret, "session", payload).encode()
        ):
            return None
        session = _session(fields)
        if session is None:
            return None
        now = receiver.clock()
        ttl = receiver.settings.config.server.auth.session_ttl
        # A session made under a longer session_ttl lasts no longer than the current one;
        # one made a moment ago on a replica whose clock is ahead is not such a session.
        if not now < session.expires_at <= now + ttl + CLOCK_SKEW_S:
            return None
        credential = fields.get("c")
        if not isinstance(credential, str) or not _still_configured(receiver, key, credential):
            return None
        if await receiver.store.cache.get(NAMESPACE, f"out:{session.sid}") is not None:
            return None
        return session

    async def sign_out(self, receiver: Receiver, session: Session) -> None:
        """Refuse this session from now on, on every replica, until it would have expired."""
        left_ms = int((session.expires_at - receiver.clock()) * 1000)
        if left_ms > 0:
            await receiver.store.cache.set(NAMESPACE, f"out:{session.sid}", "1", left_ms)

    # -- who is looking ---------------------------------------------------------------------

    async def identify(self, connection: HTTPConnection, receiver: Receiver) -> Identity:
        """A valid session first, then the trusted proxy's header, then open reads."""
        cookie = connection.cookies.get(SESSION_COOKIE)
        session = await self.session(receiver, cookie) if cookie else None
        opened = frozenset(r for r in ROLES if receiver.auth.check(r, None) == "allowed")
        viewer: Viewer | None = None
        if session is not None:
            viewer = Viewer(session.user, "session", session.roles | opened, session)
        elif user := proxy_user(connection, receiver.settings.config.server.auth.trusted_proxy):
            reader: frozenset[Role] = frozenset({"read"})
            viewer = Viewer(user, "proxy", reader | opened)
        elif "read" in opened:
            viewer = Viewer(None, "open", opened)
        return Identity(viewer, stale=cookie is not None and session is None)

    # -- CSRF -------------------------------------------------------------------------------

    async def csrf_token(self, receiver: Receiver, subject: str) -> str:
        key = await self._signing(receiver)
        return f"{key.kid}.{mac(key.secret, 'csrf', subject)}"

    async def csrf_valid(self, receiver: Receiver, subject: str | None, token: str) -> bool:
        if not subject or len(token) > 200 or token.count(".") != 1:
            return False
        kid, signature = token.split(".")
        key = await self._verifying(receiver, kid)
        return key is not None and hmac.compare_digest(
            signature.encode(), mac(key.secret, "csrf", subject).encode()
        )


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def valid_nonce(value: str | None) -> bool:
    return value is not None and 16 <= len(value) <= 64 and unb64(value) is not None


def _secret(receiver: Receiver) -> str | None:
    secret = receiver.settings.config.server.auth.session_secret
    return None if secret is None else secret.get_secret_value()


def _roles(receiver: Receiver, token: str) -> frozenset[Role]:
    header = f"Bearer {token}"
    return frozenset(r for r in ROLES if receiver.auth.check(r, header) == "allowed")


def _known(receiver: Receiver, roles: frozenset[Role]) -> bool:
    """Whether a token with these roles is one of ours: it has a role that is not open."""
    auth = receiver.auth
    opened = {"read": auth.read_open, "write": auth.write_open, "admin": auth.admin_open}
    return any(not opened[role] for role in roles)


def _strongest(roles: frozenset[Role]) -> str:
    return next(role for role in reversed(ROLES) if role in roles)


def _credential(key: Key, token: str, roles: frozenset[Role]) -> str:
    return mac(key.secret, "credential", f"{','.join(sorted(roles))}|{token}")


def _still_configured(receiver: Receiver, key: Key, credential: str) -> bool:
    """Whether a configured token still has the roles the session was signed in with."""
    auth = receiver.settings.config.server.auth
    tokens = {
        t.get_secret_value()
        for t in (*auth.bearer_tokens, *auth.read_bearer_tokens, *auth.admin_bearer_tokens)
    }
    found = False
    for token in tokens:  # every one compared, as receiver/auth.py does
        expected = _credential(key, token, _roles(receiver, token))
        found |= hmac.compare_digest(credential.encode(), expected.encode())
    return found


def _clean_name(name: str) -> str:
    return "".join(c for c in name.strip() if c.isprintable())[:MAX_NAME]


def _json(raw: bytes | None) -> dict[str, object] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # a forged cookie of 3,000 "[" is read unsigned
        return None
    return value if isinstance(value, dict) else None


def _session(fields: dict[str, object]) -> Session | None:
    sid, user, roles, expires = fields.get("s"), fields.get("u"), fields.get("r"), fields.get("e")
    if not isinstance(sid, str) or not isinstance(user, str) or not isinstance(roles, list):
        return None
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        return None
    held = frozenset(r for r in ROLES if r in roles)
    return Session(sid, user, held, float(expires))
