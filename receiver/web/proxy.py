"""Who is at the other end of the socket, and what a trusted proxy says about the person.

``server.auth.trusted_proxy`` believes a header such as ``X-Forwarded-User`` only on a
connection from one of its CIDRs. That check needs the TCP peer, which uvicorn's own
proxy-header handling would already have replaced by the address in ``X-Forwarded-For``
(a header anyone can send once ``FORWARDED_ALLOW_IPS`` is wide). :func:`served` wraps the app
so the socket peer is recorded first; ``journey-receiver serve`` runs it that way.
"""

from __future__ import annotations

import ipaddress
import logging
import os

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.config.receiver_yaml import TrustedProxyConfig

logger = logging.getLogger("journey_receiver.web")

PEER = "journey_receiver.peer"
"""The scope key holding the TCP peer's address, set before any proxy header is read."""
MAX_USER = 200


class SocketPeer:
    """Records the TCP peer's address in the scope, under :data:`PEER`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            scope[PEER] = client[0] if client else None
        await self.app(scope, receive, send)


def served(app: ASGIApp, forwarded_allow_ips: str | list[str] | None = None) -> ASGIApp:
    """``app`` as uvicorn should serve it, with ``proxy_headers=False``: the socket peer is
    recorded, then ``X-Forwarded-For``/``-Proto`` are honoured from ``forwarded_allow_ips``
    (default: ``$FORWARDED_ALLOW_IPS``, else loopback), exactly as uvicorn would."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    trusted = forwarded_allow_ips or os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    return SocketPeer(ProxyHeadersMiddleware(app, trusted_hosts=trusted))  # type: ignore[arg-type]


def peer_address(connection: HTTPConnection) -> str | None:
    """The TCP peer: as recorded by :class:`SocketPeer`, else the server's ``client``."""
    if PEER in connection.scope:
        peer: str | None = connection.scope[PEER]
        return peer
    return connection.client.host if connection.client else None


def trusted_peer(address: str | None, config: TrustedProxyConfig) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone ids
    except ValueError:
        return False  # a unix socket or a test client's made-up name
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in config.from_)


_UNRECORDED_WARNED = False


def proxy_user(connection: HTTPConnection, config: TrustedProxyConfig | None) -> str | None:
    """The person the trusted proxy names, or None: no proxy configured, a peer outside
    its CIDRs (the header is then ignored, whatever it says), or no usable name."""
    if config is None:
        return None
    if PEER not in connection.scope:
        # Served some other way than ``journey-receiver serve`` (whose server records the
        # TCP peer): the server's idea of the client may come from X-Forwarded-For, which
        # anyone can write, so the header is not believed.
        global _UNRECORDED_WARNED
        if not _UNRECORDED_WARNED:
            _UNRECORDED_WARNED = True
            logger.warning(
                "server.auth.trusted_proxy is ignored: the TCP peer is not recorded "
                "(run the receiver with journey-receiver serve)"
            )
        return None
    if not trusted_peer(connection.scope[PEER], config):
        return None
    name = connection.headers.get(config.header, "").strip()
    if not name or len(name) > MAX_USER or not name.isprintable():
        return None
    return name
