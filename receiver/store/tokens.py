"""Claim tokens that outlive a lost reply.

A claim (claim.lua, outbox_claim.lua, outbox_heads.lua) moves what it takes a lease ahead
and keeps its answer under its token for that lease. When the reply does not reach us (a
socket timeout while Redis was slow, a connection cut after the script ran), the call did
happen: asking again with a new token would find nothing due, and what the lost call took
would wait its lease out (an incident's notification held back, a delivery delayed). So a
token whose call failed is the next call's token, and that call is answered with what the
lost one took. A Redis Cluster client's own resend of a call uses the same token too.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator


class ClaimTokens:
    """One kind of claim's tokens: new ones, and one whose call failed, given again."""

    def __init__(self) -> None:
        self._unanswered: str | None = None

    @contextlib.contextmanager
    def token(self) -> Iterator[str]:
        """A token for one claim, and for as many calls as it takes (a claim may be two);
        kept for the next claim if anything in the block fails. Taken out meanwhile, so a
        claim running at the same time never shares it. One token is kept: of two claims
        failing at once, the other's take waits its lease out (the scheduler and the outbox
        each run one claim at a time)."""
        token, self._unanswered = self._unanswered or secrets.token_hex(8), None
        try:
            yield token
        except BaseException:
            self._unanswered = token
            raise
