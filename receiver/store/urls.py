"""Pick the store from ``store.url``.

- ``memory://`` — an embedded server in this process: for trying the receiver out; one
  replica only, nothing survives a restart.
- ``redis://``, ``rediss://`` — one Redis (TLS options as URL query, e.g. ``ssl_ca_certs``).
- ``redis+sentinel://[user:pass@]host:port[,host:port…]/<master name>[/db][?options]`` —
  Sentinel. The user info is Redis's; the sentinels' own credentials are the options
  ``sentinel_username`` and ``sentinel_password`` (redis-py's ``sentinel_kwargs``).
  ``rediss+sentinel://`` speaks TLS to the sentinels and to Redis alike, with the options
  ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` and ``ssl_check_hostname``.
- ``redis+cluster://[user:pass@]host:port`` — Redis Cluster (all keys share one hash tag).
"""

from __future__ import annotations

import inspect
import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    URL_QUERY_ARGUMENT_PARSERS,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.sentinel import Sentinel

from receiver.store.base import StoreSettings
from receiver.store.redis import RedisStore

# Short socket timeouts keep a Redis outage a fast 503 (Alertmanager retries), not a hang.
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = ("memory", "redis", "rediss", "unix", *SENTINEL_SCHEMES, "redis+cluster")
_SENTINEL_FORM = "redis+sentinel://host:26379/mymaster[/db]"
_AUTH_OPTIONS = ("sentinel_username", "sentinel_password")
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_TLS_OPTIONS = (*_TLS_FILES, "ssl_check_hostname")
_SECRET_OPTIONS = frozenset({"sentinel_password", "password", "ssl_password"})
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def open_store(
    url: str,
    settings: StoreSettings | None = None,
    observe: Callable[[str, float], None] | None = None,
) -> RedisStore:
    client, helpers = client_for(url)
    return RedisStore(client, settings or StoreSettings(), helpers=helpers, observe=observe)


def check_url(url: str) -> None:
    """Raise ValueError naming what is wrong with ``url`` (never a secret of it)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise _unsupported(parts.scheme)
    if "@" not in parts.netloc and "@" in url[len(parts.scheme) + 3 + len(parts.netloc) :]:
        # A password holding "/", "?" or "#" ends the host part early: any message quoting
        # what follows would quote the rest of the password.
        raise ValueError(
            "the user info cannot be read: %-escape / ? # @ in the password (%2F %3F %23 %40)"
        )
    if "#" in url:
        # It ends the URL: the rest of a password, and every option after it, would be
        # dropped without a word (TLS options with them).
        raise ValueError('a "#" in a store URL must be written %23')
    _check_after_secrets(parts.query)
    if parts.scheme in SENTINEL_SCHEMES:
        SentinelUrl.parse(url)
    elif parts.scheme != "memory":
        _check_options(url, parts.scheme)


def _check_after_secrets(query: str) -> None:
    """Refuse what follows a secret option when it is no option: an unescaped "&" in the
    password cut it there, and any message quoting the rest would quote the password."""
    secret = None
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        name = unquote(name)
        if secret is not None and (not eq or name not in _KNOWN_OPTIONS):
            raise ValueError(
                f'what follows option "{secret}" is no option: a "&" in its value must be '
                "written %26"
            )
        if name in _SECRET_OPTIONS:
            secret = name


# The options a URL can give redis-py: those its URL parser reads into numbers and
# booleans, and those that take text as it is. Anything else arrives as a string where an
# object is wanted ("false" would even read as true) and fails, or misbehaves, later.
_URL_OPTIONS = frozenset(URL_QUERY_ARGUMENT_PARSERS) | {
    "client_name", "username", "password", "lib_name", "lib_version", "encoding",
    "encoding_errors", "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs",
    "ssl_ca_path", "ssl_ca_data", "ssl_password", "ssl_ciphers",
}  # fmt: skip
# What parse_url reads from the URL's other parts.
_URL_PARTS = frozenset({"host", "port", "path", "db", "username", "password"})
_KNOWN_OPTIONS = _URL_OPTIONS | _URL_PARTS | set(_AUTH_OPTIONS) | set(_TLS_OPTIONS)
_CONNECTIONS: dict[str, type] = {
    "redis": Connection,
    "rediss": SSLConnection,
    "unix": UnixDomainSocketConnection,
    "redis+cluster": RedisCluster,
}


def _check_options(url: str, scheme: str) -> None:
    """The options of a redis://, rediss://, unix:// or redis+cluster:// URL as redis-py
    reads them: a misspelt one would otherwise pass the config check and fail every store
    call with a TypeError, as the first connection is made."""
    cluster = scheme == "redis+cluster"
    # parse_url's own ValueError names the option whose value it cannot read.
    options: dict[str, Any] = dict(parse_url("redis" + url[len(scheme) :] if cluster else url))
    if isinstance(options.get("connection_class"), type):
        del options["connection_class"]  # the scheme's own (rediss://, unix://)
    target = _CONNECTIONS[scheme]
    accepted = _parameters(target) | ({"max_connections"} if not cluster else set())
    for name in options:
        if name in _URL_PARTS:
            continue
        if name.startswith("ssl") and (cluster or name not in accepted):
            raise ValueError(f"{name} needs rediss:// (TLS; not offered for a cluster)")
        if name not in _URL_OPTIONS or name not in accepted:
            raise ValueError(
                f'unknown option "{name}" in a {scheme}:// URL: use one of redis-py\'s '
                "connection options (socket_timeout, health_check_interval, client_name, …)"
            )
    if cluster and (options.get("db") or options.get("path")):
        raise ValueError("a redis+cluster:// URL has no database number: a cluster has one")
    _check_files(options)


def _check_files(options: Mapping[str, Any]) -> None:
    for name in _TLS_FILES:
        if name in options and not os.path.isfile(options[name]):
            raise ValueError(f"{name}: no file {options[name]}")


def _parameters(cls: type) -> set[str]:
    """The keyword parameters of ``cls`` and of the classes it passes its options up to."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= set(inspect.signature(init).parameters) - {"self", "args", "kwargs"}
    return names


def shown_url(url: str) -> str:
    """``url`` as it may be printed: without user info, secret options' values hidden."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    options = []
    secret = False
    for name, eq, value in (o.partition("=") for o in parts.query.split("&") if o):
        if secret and (not eq or name not in _KNOWN_OPTIONS):
            # No option: a stray "&" in the password before it; its rest is not shown.
            options.append("…")
            break
        secret = secret or name in _SECRET_OPTIONS
        options.append(f"{name}=…" if name in _SECRET_OPTIONS else f"{name}={value}")
    query = f"?{'&'.join(options)}" if options else ""
    return f"{parts.scheme}://{hosts}{parts.path}{query}"


@dataclass(frozen=True)
class SentinelUrl:
    """What a ``redis+sentinel://`` or ``rediss+sentinel://`` URL says."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    # Redis's credentials (the URL's user info) and the sentinels' own (the options).
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    # ``ssl`` and the ``ssl_*`` options, for the sentinels and Redis alike; {} without TLS.
    tls: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """Raise ValueError naming the part that is wrong; its text never holds a secret."""
        parts = urlsplit(url)
        path = [unquote(p) for p in parts.path.split("/") if p]
        if not path:
            raise ValueError(f"{parts.scheme}:// needs the master name: {_SENTINEL_FORM}")
        if len(path) > 2 or (len(path) == 2 and not (path[1].isascii() and path[1].isdigit())):
            raise ValueError(
                f'"{parts.path}" is not /<master name>[/<db number>]: {_SENTINEL_FORM}'
            )
        options = _options(parts.query, parts.scheme)
        tls: dict[str, Any] = {}
        if parts.scheme == "rediss+sentinel":
            tls = {"ssl": True} | {k: v for k, v in options.items() if k in _TLS_OPTIONS}
            if "ssl_check_hostname" in tls:
                tls["ssl_check_hostname"] = _BOOLEANS[tls["ssl_check_hostname"]]
        return cls(
            sentinels=_hosts(parts.netloc.rpartition("@")[2]),
            master=path[0],
            db=int(path[1]) if len(path) == 2 else 0,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            sentinel_username=options.get("sentinel_username") or None,
            sentinel_password=options.get("sentinel_password") or None,
            tls=tls,
        )

    def client(self) -> tuple[Redis, list[Any]]:
        """The master's client, which asks the sentinels where the master is on each new
        connection, and the sentinels' clients (closed with it)."""
        sentinel_auth = {"username": self.sentinel_username, "password": self.sentinel_password}
        sentinel = Sentinel(
            self.sentinels,
            sentinel_kwargs=_TIMEOUTS | self.tls | _given(sentinel_auth),
        )
        redis_auth = {"username": self.username, "password": self.password}
        connection: dict[str, Any] = _TIMEOUTS | self.tls | _given(redis_auth)
        master: Redis = sentinel.master_for(
            self.master, db=self.db, decode_responses=True, **connection
        )
        return master, list(sentinel.sentinels)


def client_for(url: str) -> tuple[Any, list[Any]]:
    """The client for ``url`` and any helper clients it depends on (closed with it)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from fakeredis import FakeServer
        from fakeredis.aioredis import FakeRedis

        return FakeRedis(server=FakeServer(), decode_responses=True), []
    if scheme in ("redis", "rediss", "unix"):
        return Redis.from_url(url, decode_responses=True, **_TIMEOUTS), []
    if scheme == "redis+cluster":
        cluster_url = "redis" + url[len("redis+cluster") :]
        return _Cluster.from_url(cluster_url, decode_responses=True, **_TIMEOUTS), []
    if scheme in SENTINEL_SCHEMES:
        return SentinelUrl.parse(url).client()
    raise _unsupported(scheme)


class _Cluster(RedisCluster):
    """A cluster client whose node an ASK redirect points to hands out the connection
    released last first. redis-py sends the ASKING an ASK calls for as a command of its
    own and then the redirected command, each on a connection it takes from the node: the
    oldest free one first, so a node with more than one idle connection gets them on two,
    the command arrives without its ASKING and is MOVED back, until the retries run out
    (every read of a key already moved fails while the slot migrates). Taken last-first,
    the command goes down the connection the ASKING just went down (nothing runs in
    between: the two calls follow without a wait). That node keeps handing out its
    connections last-first: under light load the ones at the back stay idle, and one a
    server or network closed meanwhile costs a retry when a burst reaches it."""

    def get_node(
        self, host: str | None = None, port: int | None = None, node_name: str | None = None
    ) -> ClusterNode | None:
        # redis-py looks the node up this way on an ASK redirect and nowhere on its hot path.
        node = super().get_node(host, port, node_name)
        if node is not None and not isinstance(node._free, _LastFirst):
            node._free = _LastFirst(node._free, node._free.maxlen)
        return node


class _LastFirst(deque[Any]):
    """A node's free connections, the one released last taken first (``popleft``)."""

    def append(self, connection: Any) -> None:
        self.appendleft(connection)


def _unsupported(scheme: str) -> ValueError:
    return ValueError(
        f'unsupported store scheme "{scheme}": use memory://, redis://, rediss://, '
        "unix://, redis+sentinel://, rediss+sentinel:// or redis+cluster://"
    )


def _hosts(netloc: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for hostport in netloc.split(","):
        if hostport.startswith("["):  # [IPv6]:port
            host, _, rest = hostport[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, colon, port = hostport.rpartition(":")
            host, port = (host, port) if colon else (hostport, "")
        if (
            not host
            or not ((port.isascii() and port.isdigit()) or port == "")
            or int(port or 0) > 65535
        ):
            raise ValueError(f'"{hostport}" is not a sentinel host:port: {_SENTINEL_FORM}')
        hosts.append((host, int(port or 26379)))
    return tuple(hosts)


def _options(query: str, scheme: str) -> dict[str, str]:
    """The URL's options, percent-decoded; each one known, given once and well-formed.
    ``+`` stays a plus (unlike in a form), so a password needs only ``%``-escapes."""
    known = (*_AUTH_OPTIONS, *_TLS_OPTIONS)
    options: dict[str, str] = {}
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        name = unquote(name)
        if name not in known:
            raise ValueError(f'unknown option "{name}" in a {scheme}:// URL: use {_listed(known)}')
        if name in options:
            raise ValueError(f'option "{name}" is given twice')
        options[name] = unquote(value)
    for name in _TLS_OPTIONS:
        if name in options and scheme != "rediss+sentinel":
            raise ValueError(f"{name} needs rediss+sentinel:// (TLS to the sentinels and Redis)")
    _check_files(options)
    check = options.get("ssl_check_hostname")
    if check is not None and check.lower() not in _BOOLEANS:
        raise ValueError(f'ssl_check_hostname: expected true or false, got "{check}"')
    if check is not None:
        options["ssl_check_hostname"] = check.lower()
    return options


def _given(values: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _listed(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"
