"""Server-Sent Events: one job's changes, or all of the caller's, resumable with Last-Event-ID.

Jobs are snapshots, not deltas, so a stream needs no event log: an event's id is the job's
`updated_at` (ms), and a client that reconnects is sent every job changed since that id. A stream
wakes on the change feed (changes made here, and on PostgreSQL those other nodes announce), and
re-reads the store every `[store] recheck_s` for changes nothing announced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from litejobs import jsontext
from litejobs.api.http import app_of, job_body
from litejobs.api.v1 import owner
from litejobs.jobs import Job

#: a comment line this often keeps proxies from closing an idle stream
KEEPALIVE_S = 15.0
BATCH = 500


class _Pace:
    """When a quiet stream must re-read the store (every `recheck_s`) or send a keep-alive."""

    def __init__(self, recheck_s: float) -> None:
        self.recheck_s = recheck_s
        self.read_at = self.sent_at = time.monotonic()

    def timeout_s(self) -> float:
        return max(0.0, min(self.read_at + self.recheck_s, self.sent_at + KEEPALIVE_S) - time.monotonic())

    def read(self) -> None:
        self.read_at = time.monotonic()

    def sent(self) -> None:
        self.sent_at = time.monotonic()

    def keepalive_due(self) -> bool:
        return time.monotonic() >= self.sent_at + KEEPALIVE_S

    def read_due(self) -> bool:
        return time.monotonic() >= self.read_at + self.recheck_s


def sse(job: Job, event: str) -> str:
    data = jsontext.text(job_body(job))
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
        # a queue, not a one-shot waiter: every change told while we are sending is kept; None
        # stands for a change made elsewhere, to be read from the store
        changes: asyncio.Queue[Job | None] = asyncio.Queue()
        unsubscribe = app.feed.watch_job(job.id, changes.put_nowait)
        pace = _Pace(app.config.store.recheck_s)
        current: Job | None = await app.store.get(job.id)
        sent_at, sent_status = -1, None
        try:
            while current is not None:
                if current.updated_at >= sent_at and (current.updated_at, current.status) != (sent_at, sent_status):
                    if since is None or current.updated_at > since:
                        yield sse(current, "status" if current.status != sent_status else "progress")
                        pace.sent()
                    sent_at, sent_status = current.updated_at, current.status
                if current.is_terminal:
                    return
                try:
                    changed = await asyncio.wait_for(changes.get(), pace.timeout_s())
                except TimeoutError:
                    if pace.keepalive_due():
                        pace.sent()
                        yield ": keep-alive\n\n"
                    if not pace.read_due():
                        continue
                    changed = None  # unannounced changes (another process on the SQLite file): look
                if changed is None:
                    current = await app.store.get(job.id)
                    pace.read()
                else:
                    current = changed
        finally:
            unsubscribe()

    return _stream(body())


async def all_events(request: Request) -> Response:
    who = owner(request)
    app = app_of(request)
    since = _last_event_id(request)

    async def body() -> AsyncIterator[str]:
        wake = asyncio.Event()
        unsubscribe = app.feed.watch_owner(who, lambda _job: wake.set())
        pace = _Pace(app.config.store.recheck_s)
        cursor = since + 1 if since is not None else app.clock()
        statuses: dict[str, Any] = {}
        sent_at_cursor: set[str] = set()
        try:
            while True:
                wake.clear()  # before the read: a change told while reading wakes the next wait
                changed = await app.store.changed_since(who, cursor, BATCH)
                pace.read()
                for job in changed:
                    if job.updated_at == cursor and job.id in sent_at_cursor:
                        continue  # already sent: same job, same millisecond
                    if job.updated_at > cursor:
                        cursor, sent_at_cursor = job.updated_at, set()
                    sent_at_cursor.add(job.id)
                    yield sse(job, "status" if statuses.get(job.id) != job.status else "progress")
                    pace.sent()
                    statuses[job.id] = job.status
                if len(changed) == BATCH:
                    continue
                if len(statuses) > 10_000:
                    statuses.clear()
                while not wake.is_set() and not pace.read_due():
                    try:
                        await asyncio.wait_for(wake.wait(), pace.timeout_s())
                    except TimeoutError:
                        if pace.keepalive_due():
                            pace.sent()
                            yield ": keep-alive\n\n"
        finally:
            unsubscribe()

    return _stream(body())


ROUTES = [
    Route("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/v1/events", all_events, methods=["GET"]),
]
