"""Server-Sent Events: one job's changes, or all of the caller's, resumable with Last-Event-ID.

Jobs are snapshots, not deltas, so a stream needs no event log: an event's id is the job's
`updated_at` (ms), and a client that reconnects is sent every job changed since that id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from litejobs.api.http import app_of, job_body
from litejobs.api.v1 import owner
from litejobs.jobs import Job

#: a comment line this often keeps proxies from closing an idle stream
KEEPALIVE_S = 15.0
#: re-read the store at least this often: another process may have changed the job
RECHECK_S = 1.0
BATCH = 500


def sse(job: Job, event: str) -> str:
    data = json.dumps(job_body(job), separators=(",", ":"))
    return f"id: {job.updated_at}\nevent: {event}\ndata: {data}\n\n"


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    # ASCII digits only ("²".isdigit() is true, int() refuses it), and few enough for SQLite's int64
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def _stream(body: AsyncIterator[str]) -> Response:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


async def job_events(request: Request) -> Response:
    who = owner(request)
    app = app_of(request)
    job = await app.engine.get(request.path_params["job_id"], who)
    since = _last_event_id(request)

    async def body() -> AsyncIterator[str]:
        # a queue, not a one-shot waiter: every change published while we are sending is kept
        changes: asyncio.Queue[Job] = asyncio.Queue()
        unsubscribe = app.feed.subscribe(lambda changed: changes.put_nowait(changed) if changed.id == job.id else None)
        current: Job | None = await app.store.get(job.id)
        sent_at, sent_status = -1, None
        quiet_s = 0.0
        try:
            while current is not None:
                if current.updated_at >= sent_at and (current.updated_at, current.status) != (sent_at, sent_status):
                    if since is None or current.updated_at > since:
                        yield sse(current, "status" if current.status != sent_status else "progress")
                    sent_at, sent_status, quiet_s = current.updated_at, current.status, 0.0
                if current.is_terminal:
                    return
                try:
                    current = await asyncio.wait_for(changes.get(), RECHECK_S)
                except TimeoutError:  # another process may have changed it: read the store
                    quiet_s += RECHECK_S
                    if quiet_s >= KEEPALIVE_S:
                        quiet_s = 0.0
                        yield ": keep-alive\n\n"
                    current = await app.store.get(job.id)
        finally:
            unsubscribe()

    return _stream(body())


async def all_events(request: Request) -> Response:
    who = owner(request)
    app = app_of(request)
    since = _last_event_id(request)

    async def body() -> AsyncIterator[str]:
        wake = asyncio.Event()
        unsubscribe = app.feed.subscribe(lambda job: wake.set() if job.owner == who else None)
        cursor = since + 1 if since is not None else app.clock()
        statuses: dict[str, Any] = {}
        sent_at_cursor: set[str] = set()
        quiet_s = 0.0
        try:
            while True:
                changed = await app.store.changed_since(who, cursor, BATCH)
                for job in changed:
                    if job.updated_at == cursor and job.id in sent_at_cursor:
                        continue  # already sent: same job, same millisecond
                    if job.updated_at > cursor:
                        cursor, sent_at_cursor = job.updated_at, set()
                    sent_at_cursor.add(job.id)
                    yield sse(job, "status" if statuses.get(job.id) != job.status else "progress")
                    statuses[job.id] = job.status
                    quiet_s = 0.0
                if len(changed) == BATCH:
                    continue
                if len(statuses) > 10_000:
                    statuses.clear()
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), RECHECK_S)
                except TimeoutError:
                    quiet_s += RECHECK_S
                    if quiet_s >= KEEPALIVE_S:
                        quiet_s = 0.0
                        yield ": keep-alive\n\n"
        finally:
            unsubscribe()

    return _stream(body())


ROUTES = [
    Route("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/v1/events", all_events, methods=["GET"]),
]
