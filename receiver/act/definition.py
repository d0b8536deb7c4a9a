"""What a run was decided under: the parts of ``journeys.yaml`` that decide whether an
action may run and what its run does, as a short digest the run's job carries.

Replicas do not all read the same ``journeys.yaml`` at once: a rolling change reaches one
pod, or one reload, after another. A run is asked for by one replica and may be carried
out by another, or by the same one after a reload; the job's ``definition`` lets whoever
carries it out see whether the action is still defined as it was asked for, and which part
moved (``moved``): the journey's ``automation``, its ``owner.responders``, the action's
``when``, or what its ``run.webhook`` asks for (``url``, ``method``, the ``headers``'
names, ``body``). How the request is sent is not part of it: a rotated ``secret`` or
header value (a token), a ``timeout`` or a ``ca_file`` applies to a run already asked
for, as a sink's new credentials do.

Each part is digested on its own (8 hex digits of SHA-256 of its JSON). The job is kept in
the store: the ``secret``, the headers' values and a password in the URL are no part of
it, even digested.

Each replica says in the store which definitions it has (``Defined``), so that one whose
``journeys.yaml`` defines an action otherwise can leave a run to a replica that defines it
as it was asked for, and knows when none does any more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from receiver.actions import action_key
from receiver.config import Action, Journey
from receiver.store.cache import Said, SharedCache

RESPONDERS = "owner.responders"
RUN_PARTS = ("url", "method", "headers", "body")
"""The parts that say what the run does: a run is never sent as anything but asked for."""
_PARTS = ("automation", RESPONDERS, "when", *RUN_PARTS)
# Said every half minute, remembered two minutes: a replica that stopped, or was reloaded
# since, leaves the list within that.
_NAMESPACE = "actions"
SAID_EVERY_MS = 30_000
SAID_FOR_MS = 120_000


def definition(journey: Journey, action: Action) -> str:
    """The digest of ``action`` of ``journey`` as it is defined now."""
    return ".".join(_digest(value) for value in _values(journey, action))


def moved(then: str, now: str | None) -> list[str]:
    """The parts that differ between two ``definition``s, in their order; every part when
    the action has no run now (``now`` None)."""
    old, new = then.split("."), (now or "").split(".")
    return [
        name
        for at, name in enumerate(_PARTS)
        if at >= len(old) or at >= len(new) or old[at] != new[at]
    ]


class Defined:
    """Which definitions of their runnable actions the replicas have (``Said``)."""

    def __init__(self, cache: SharedCache) -> None:
        self._said = Said(cache, _NAMESPACE, SAID_EVERY_MS, SAID_FOR_MS)

    async def say(self, journeys: Iterable[Journey], now_ms: int) -> int:
        """Say the definitions of ``journeys``' actions, every ``SAID_EVERY_MS`` and at
        once when a reload changed them; how many were said."""
        defined = (
            _field(journey.id, action_key(action), definition(journey, action))
            for journey in journeys
            for action in journey.actions
            if action.run is not None
        )
        return await self._said.say(defined, now_ms)

    async def elsewhere(self, journey: str, key: str, defined: str, now_ms: int) -> bool:
        """Whether another replica says it defines action ``key`` of ``journey`` as
        ``defined``."""
        return await self._said.elsewhere(_field(journey, key, defined), now_ms)


def _field(journey: str, key: str, defined: str) -> str:
    return hashlib.sha256(f"{journey}\0{key}\0{defined}".encode()).hexdigest()[:32]


def _values(journey: Journey, action: Action) -> list[object]:
    run = action.run.webhook if action.run is not None else None
    return [
        journey.automation,
        sorted({r.strip().lower() for r in journey.owner.responders}),
        action.when.model_dump(mode="json"),
        _without_password(run.url) if run else None,
        run.method if run else None,
        # Names only: a value may be a token, rotated without changing what the run does.
        sorted(name.lower() for name in run.headers) if run else None,
        run.body if run else None,
    ]


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@", 1)))


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]
