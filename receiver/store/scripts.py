"""What every store module needs to run its Lua scripts: the script text, the one error
callers handle, and Redis answers as text."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from importlib import resources
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from receiver.errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")


_LUA = resources.files("receiver.store").joinpath("lua")
_USES = "-- uses: "


def script(name: str) -> str:
    """``lua/<name>.lua``, after the ``lua/shared/`` pieces its first line names, if it
    starts ``-- uses: a b``: scripts cannot load one another, so what several need is
    written once there and put in front of each."""
    text = _LUA.joinpath(f"{name}.lua").read_text()
    first = text.partition("\n")[0]
    uses = first.removeprefix(_USES).split() if first.startswith(_USES) else []
    return "".join(_LUA.joinpath(f"shared/{piece}.lua").read_text() for piece in uses) + text


# What a store that is down or failing over raises: a connection lost or timed out, and on a
# cluster a slot with no master yet (CLUSTERDOWN, MASTERDOWN, TRYAGAIN), no node reachable,
# or a slot moving that a transaction cannot follow (redis-py's transactions pass ASK and
# MOVED on). Each is a 503 that Alertmanager retries, never a 500.
_REFUSED = frozenset({"MISCONF", "BUSY"})
_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    TryAgainError,
    AskError,
    MovedError,
    RedisClusterException,
)


def unavailable(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn a connection failure into StoreUnavailable, the one error callers handle."""

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except _DOWN as exc:
            raise StoreUnavailable(f"store unreachable: {exc}") from exc
        except OutOfMemoryError as exc:
            # A full Redis under noeviction (docs/operating.md) refuses a script's first
            # write, so nothing of the call was written: a 503 that Alertmanager retries.
            raise StoreUnavailable(f"store full: {exc}") from exc
        except ReadOnlyError as exc:
            # store.url reaches a replica (a primary demoted by a failover behind a fixed
            # address): every write is refused before it is made, as a full Redis's.
            raise StoreUnavailable(f"store read-only (a replica): {exc}") from exc
        except ResponseError as exc:
            # Refusals before anything is written, as above: writes stopped after a failed
            # save (MISCONF), or a script running too long (BUSY).
            # A pipeline's command says it after "Command # n (...) of pipeline caused error: ".
            said = str(exc).rpartition(" of pipeline caused error: ")[2]
            if said.split(" ", 1)[0] in _REFUSED:
                raise StoreUnavailable(f"store refuses writes: {exc}") from exc
            raise

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
