"""The floor of the ingest benchmark: a bare starlette handler that only parses and validates.

It does the one piece of work no receiver can skip: read the body and validate it with the
receiver's own wire model, ``WebhookMessage.model_validate_json``. Whatever the receiver
does beyond that (normalize, match journeys, group, the Redis round trip, metrics) is what
the benchmark's ratio measures. Run it the way the benchmark does:

    uvicorn benchmarks.floor_app:app --port 9096 --no-access-log
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver.webhook import WebhookMessage


async def webhook(request: Request) -> JSONResponse:
    message = WebhookMessage.model_validate_json(await request.body())
    return JSONResponse({"status": "accepted", "alerts": len(message.alerts)})


app = Starlette(routes=[Route("/webhook/alertmanager", webhook, methods=["POST"])])
