"""The store floor of the ingest benchmark: the parse-only floor plus the least a
deduplicating store does with a batch.

Besides ``WebhookMessage.model_validate_json``, each request writes its alerts to Redis
in one script call: read the stored record of every fingerprint (one HMGET), write those
that differ (one HSET), one hash per Alertmanager group. No incidents, no journeys, no
index of where an alert belongs, no state, no timeline, no scheduler, no group commit: a
receiver that keeps less than this cannot answer "was this alert seen before". The gap
between the two floors is what storing costs at all (Redis beside it on the same core);
the receiver's ratio to this one is what its own model costs. The benchmark starts it
with ``STORE_FLOOR_REDIS_URL`` set:

    STORE_FLOOR_REDIS_URL=redis://127.0.0.1:6379/0 \\
        uvicorn benchmarks.store_floor_app:app --port 9097 --no-access-log
"""

from __future__ import annotations

import os

import orjson
import redis.asyncio as redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.normalize import labels_fingerprint
from receiver.webhook import WebhookMessage

KEY_PREFIX = "store-floor:"

# KEYS[1] the group's hash; ARGV: n fingerprints, then their n records in the same order.
_WRITE = """
local n = #ARGV / 2
local stored = redis.call('HMGET', KEYS[1], unpack(ARGV, 1, n))
local changed = {}
for i = 1, n do
  if stored[i] ~= ARGV[n + i] then
    changed[#changed + 1] = ARGV[i]
    changed[#changed + 1] = ARGV[n + i]
  end
end
if #changed > 0 then redis.call('HSET', KEYS[1], unpack(changed)) end
return #changed / 2
"""

_redis = redis.Redis.from_url(os.environ.get("STORE_FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0"))
_write = _redis.register_script(_WRITE)


async def webhook(request: Request) -> Response:
    message = WebhookMessage.model_validate_json(await request.body())
    # As the receiver does for a sender that leaves the fingerprint out.
    fingerprints = [a.fingerprint or labels_fingerprint(a.labels) for a in message.alerts]
    records = [
        orjson.dumps(
            {
                "status": a.status,
                "labels": a.labels,
                "annotations": a.annotations,
                "starts_at": a.starts_at,
                "ends_at": a.ends_at,
            }
        )
        for a in message.alerts
    ]
    written = 0
    if records:
        key = KEY_PREFIX + message.group_key
        written = await _write(keys=[key], args=[*fingerprints, *records])
    return Response(
        orjson.dumps({"status": "accepted", "alerts": len(records), "written": written}),
        media_type="application/json",
    )


app = Starlette(routes=[Route("/webhook/alertmanager", webhook, methods=["POST"])])
