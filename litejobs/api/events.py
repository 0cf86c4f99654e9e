"""Server-Sent Events: one job's changes, or all of the caller's, resumable with Last-Event-ID.

Jobs are snapshots, not deltas, so a stream needs no event log: an event's id is the job's
`updated_at` (ms), and a client that reconnects is sent every job changed in that millisecond or
later. The same millisecond again, because one id may stand for many jobs (a batch): sending a
snapshot twice is harmless, missing one is not. `/v1/events` sends the changes made here as the
feed publishes them, in order, so that no status is skipped; it reads the store (keyset pages on
(updated_at, seq)) for the rest: at the start, when another node announces a change, when it holds
more changes than `INBOX_MAX` for a slow client, and every `[store] recheck_s` for changes nothing
announced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from litejobs import jsontext
from litejobs.api.http import app_of, job_body
from litejobs.api.v1 import owner
from litejobs.jobs import Job
from litejobs.store import Store

#: a comment line this often keeps proxies from closing an idle stream
KEEPALIVE_S = 15.0
#: jobs per store read of `/v1/events`
PAGE = 500
#: changes published here that one `/v1/events` stream keeps for a client slower than they come;
#: past it they are dropped and the store read instead (each job's latest: statuses between are lost)
INBOX_MAX = 1000
#: jobs whose last sent version a stream remembers, so as not to send them again from a store read
REMEMBERED = 10_000


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
    if since is not None and job.is_terminal and job.updated_at <= since:
        return Response(status_code=204)  # an EventSource reconnects after a stream that ends, not a 204

    async def body() -> AsyncIterator[str]:
        # a queue, not a one-shot waiter: every change told while we are sending is kept; None
        # stands for a change made elsewhere, to be read from the store
        changes: asyncio.Queue[Job | None] = asyncio.Queue()
        unsubscribe = app.feed.watch_job(job.id, changes.put_nowait)
        pace = _Pace(app.config.store.recheck_s)
        sent = _Sent()
        current: Job | None = await app.store.get(job.id)
        read = True
        try:
            while current is not None:
                event = sent.record(current, read)
                if event and (since is None or current.updated_at > since):
                    yield sse(current, event)
                    pace.sent()
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
                read = changed is None
                if read:
                    current = await app.store.get(job.id)
                    pace.read()
                else:
                    current = changed
        finally:
            unsubscribe()

    return _stream(body())


class _Inbox:
    """The feed's reader for one `/v1/events` stream: the jobs changed here, in order, and whether to
    read the store (at the start, after a change made elsewhere, or after dropping what overflowed)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._jobs: list[Job] = []
        self._held: set[str] = set()
        self._read_store = True
        self._ready = asyncio.Event()

    def put(self, job: Job | None) -> None:
        """A job as changed here, or None: one changed elsewhere."""
        if job is None or len(self._jobs) >= self._capacity:
            if job is not None:  # a client this far behind gets each job's latest from the store
                self._jobs.clear()
                self._held.clear()
            self._read_store = True
        else:
            self._jobs.append(job)
            self._held.add(job.id)
        self._ready.set()

    def take(self) -> tuple[list[Job], bool]:
        """The jobs changed since the last take, in order, and whether to read the store."""
        jobs, read_store = self._jobs, self._read_store
        self._jobs, self._read_store = [], False
        self._held.clear()
        self._ready.clear()
        return jobs, read_store

    def holds(self, job_id: str) -> bool:
        """A change of this job waits here: it is the one to send, in its order among the others."""
        return job_id in self._held

    async def wait(self, timeout_s: float) -> bool:
        """Whether something came within `timeout_s`."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class _StoreCursor:
    """Where a `/v1/events` stream's next store read starts: after the last (updated_at, seq) read,
    so that any number of jobs changed in one millisecond page through, each once per change."""

    def __init__(self, after_ms: int) -> None:
        self.after = (after_ms, 0)  # seq counts from 1: before every job changed in that millisecond
        self._held_back: tuple[int, int] | None = None

    async def read(self, store: Store, owner: str) -> tuple[list[tuple[int, Job]], bool]:
        """The next page of (seq, job), and whether another may follow."""
        rows = await store.changed_after(owner, *self.after, PAGE)
        if rows:
            seq, job = rows[-1]
            self.after = (job.updated_at, seq)
        return rows, len(rows) == PAGE

    def hold_back(self, seq: int, job: Job) -> None:
        """Left to the inbox, which holds a change of this job: read it again next time, should it
        differ from what the inbox brings (also changed elsewhere) or the inbox drop it (overflow)."""
        if self._held_back is None:
            self._held_back = (job.updated_at, seq - 1)

    def rewind(self) -> None:
        """After a read: the next one starts at the first row held back, if any."""
        if self._held_back is not None:
            self.after, self._held_back = self._held_back, None


class _Sent:
    """The last version sent of each of the `REMEMBERED` latest jobs, and whether a store read sent it."""

    def __init__(self) -> None:
        self._versions: dict[str, tuple[int, str, bool]] = {}

    def record(self, job: Job, read: bool) -> str | None:
        """The event to send `job` as (`read` from the store, else published here), now recorded as
        sent; None when the client has it already."""
        last = self._versions.pop(job.id, None)
        if last is not None and _has_it(last, job, read):
            self._versions[job.id] = last
            return None
        self._versions[job.id] = (job.updated_at, job.status.value, read)
        if len(self._versions) > REMEMBERED:
            del self._versions[next(iter(self._versions))]
        return "status" if last is None or last[1] != job.status else "progress"


def _has_it(last: tuple[int, str, bool], job: Job, read: bool) -> bool:
    """Whether a client sent `last` has `job` or newer. Published snapshots come in the order they were
    made, though not always of rising `updated_at` (a claim may read the clock before the submit it
    races commits): after one of them, only a copy of it is old. A store read may be ahead of them or
    behind: between the two, an older `updated_at` is old."""
    if (job.updated_at, job.status) == last[:2]:
        return True
    return (read or last[2]) and job.updated_at < last[0]


async def all_events(request: Request) -> Response:
    who = owner(request)
    app = app_of(request)
    since = _last_event_id(request)

    async def body() -> AsyncIterator[str]:
        inbox, sent = _Inbox(INBOX_MAX), _Sent()
        unsubscribe = app.feed.watch_owner(who, inbox.put)
        pace = _Pace(app.config.store.recheck_s)
        cursor = _StoreCursor(since if since is not None else app.clock())
        try:
            while True:
                jobs, read_store = inbox.take()
                for job in jobs:
                    if event := sent.record(job, read=False):
                        yield sse(job, event)
                        pace.sent()
                if read_store or pace.read_due():
                    pace.read()
                    more = True
                    while more:
                        rows, more = await cursor.read(app.store, who)
                        for seq, job in rows:
                            if inbox.holds(job.id):
                                cursor.hold_back(seq, job)
                            elif event := sent.record(job, read=True):
                                yield sse(job, event)
                                pace.sent()
                    cursor.rewind()
                elif not await inbox.wait(pace.timeout_s()) and pace.keepalive_due():
                    pace.sent()
                    yield ": keep-alive\n\n"
        finally:
            unsubscribe()

    return _stream(body())


ROUTES = [
    Route("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/v1/events", all_events, methods=["GET"]),
]
