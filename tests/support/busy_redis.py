"""A real Redis made slow on purpose, so that a reply gets lost the way it does in life.

While a Lua loop holds Redis's one thread, what clients send waits in their sockets. A
client whose socket timeout runs out gives up and closes its connection; once the loop
ends, Redis still runs what that connection had sent, and its reply goes nowhere. The
caller saw a timeout for a call that happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

# Spins until ARGV[1] microseconds have gone by on Redis's clock.
_SPIN = """
local t0 = redis.call('TIME')
while true do
  local t = redis.call('TIME')
  if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) >= tonumber(ARGV[1]) then return 1 end
end
"""


@contextlib.asynccontextmanager
async def busy(port: int, seconds: float) -> AsyncIterator[None]:
    """Redis on ``port`` busy for ``seconds`` from when the block starts (so the block's
    calls wait, and time out if their client says so); on the way out, until the loop
    has ended and Redis has run what waited."""
    spinner = Redis(port=port)
    spin = asyncio.create_task(spinner.eval(_SPIN, 0, int(seconds * 1_000_000)))
    try:
        await _until_busy(port, spin)
        yield
    finally:
        await spin
        await spinner.aclose()
        # Answered once Redis has run everything sent before it, on every connection.
        probe = Redis(port=port)
        await probe.ping()
        await probe.aclose()


async def _until_busy(port: int, spin: asyncio.Task[object]) -> None:
    """Returns once a PING goes unanswered for a quarter of a second: the loop holds the
    thread (a busy test machine can pause this process for less). Asked on a plain
    connection opened before: redis-py's own handshake on a new one would wait for the
    loop without a timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if spin.done():
                raise RuntimeError("Redis finished spinning before it was seen busy")
            writer.write(b"PING\r\n")
            try:
                await asyncio.wait_for(reader.readline(), 0.25)
            except TimeoutError:
                return
        raise TimeoutError("Redis never got busy")
    finally:
        writer.close()
