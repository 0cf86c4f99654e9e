"""Webhook routes: a job's deliveries (GET) and a re-send (POST) at /v1/jobs/{id}/webhook."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from litejobs.api.http import app_of
from litejobs.api.responses import JSONResponse
from litejobs.api.v1 import owner
from litejobs.errors import ValidationFailed
from litejobs.jobs import iso_ms
from litejobs.store import Delivery

#: deliveries listed per job: the latest ones (progress events can make many)
MAX_LISTED = 100


def delivery_body(delivery: Delivery) -> dict[str, Any]:
    return {
        "delivery_id": delivery.id,
        "event": delivery.event,
        "url": delivery.url,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "next_attempt_at": iso_ms(delivery.next_at) if delivery.state == "pending" else None,
        "created_at": iso_ms(delivery.created_at),
        "updated_at": iso_ms(delivery.updated_at),
    }


async def list_deliveries(request: Request) -> Response:
    who = owner(request)
    app = app_of(request)
    job = await app.engine.get(request.path_params["job_id"], who)
    deliveries = await app.store.deliveries(job.id, MAX_LISTED)
    return JSONResponse(
        {"job_id": job.id, "webhook": job.webhook, "deliveries": [delivery_body(d) for d in deliveries]}
    )


async def resend(request: Request) -> Response:
    """Deliver the job as it is now once more (its current status as the event); 202 with the delivery."""
    who = owner(request)
    app = app_of(request)
    job = await app.engine.get(request.path_params["job_id"], who)
    if job.webhook is None:
        raise ValidationFailed([{"field": "webhook", "problem": "the job was submitted without a webhook"}])
    delivery = await app.deliverer.resend(job)
    return JSONResponse(delivery_body(delivery), status_code=202)


ROUTES = [
    Route("/v1/jobs/{job_id}/webhook", list_deliveries, methods=["GET"]),
    Route("/v1/jobs/{job_id}/webhook", resend, methods=["POST"]),
]
