"""Server-Sent Events: one job's changes, or all of the caller's, resumable with Last-Event-ID.

Jobs are snapshots, not deltas, so a stream needs no event log: an event's id is the job's
`updated_at` (ms). That is its writer's clock, read before a commit that may land later (a
PostgreSQL transaction, a SQLite write waiting for another process's lock), and another node's clock
may be behind ours: jobs do not commit in the order of their ids. `/v1/events` sends the changes
made here as the feed publishes them, in order, so that no status is skipped, and reads the store
for the rest (keyset pages on (updated_at, seq)): at the start, when another node announces a
change, when it holds more changes than `INBOX_MAX` for a slow client, and every `[store] recheck_s`
for changes nothing announced. Each read starts `LOOKBACK_MS` before the time the last one began, to
find the changes that committed late; the stream remembers what it sent, so each snapshot goes once.
So that going over a window again costs little, a read gets each change's key and version only
(`Store.changes_after`), and the rows of the versions not sent yet (`Store.jobs_by_seq`).
A stream resumed from an id sends every job changed from `LOOKBACK_MS` before it on (a new stream:
from `LOOKBACK_MS` before now, as another node's clock may be behind), so jobs the client had may
come again, as they may when one id stands for many jobs (a batch): sending a snapshot twice is
harmless, missing one is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from litejobs import jsontext
from litejobs.api.http import app_of, job_body
from litejobs.api.v1 import owner
from litejobs.jobs import Job
from litejobs.store import Change, Store, StoreUnavailable

#: a comment line this often keeps proxies from closing an idle stream
KEEPALIVE_S = 15.0
#: jobs per store read of `/v1/events`
PAGE = 500
#: changes published here that one `/v1/events` stream keeps for a client slower than they come;
#: past it they are dropped and the store read instead (each job's latest: statuses between are lost)
INBOX_MAX = 1000
#: how far before the start of its last read a `/v1/events` store read begins: a change committed up to
#: this long after its `updated_at` (by this node's clock: a slow commit, plus how far the writer's clock
#: is behind ours) is still sent. One later than that may be missed by a stream that read past it.
LOOKBACK_MS = 5_000
#: least time between two store reads of one `/v1/events` stream asked for by other nodes' notices (each
#: read goes over the last LOOKBACK_MS of changes again, and they send one notice per change)
READ_GAP_S = 0.25
#: jobs whose last sent version a stream remembers, so as not to send them again from a store read;
#: past it, those no read can return again (changed before the next one's start) are forgotten
REMEMBERED = 10_000
#: ...and past this, the least recently sent whatever their age: a read may then send one of them twice
REMEMBERED_MAX = 50_000


class _Pace:
    """When a quiet stream must re-read the store (every `recheck_s`) or send a keep-alive."""

    def __init__(self, recheck_s: float, *, read_now: bool = False) -> None:
        self.recheck_s = recheck_s
        self.read_at = self.sent_at = time.monotonic()
        if read_now:
            self.read_at -= recheck_s

    def _read_after_s(self, asked: bool) -> float:
        """A read asked for by a notice waits READ_GAP_S after the last; else recheck_s."""
        return min(READ_GAP_S, self.recheck_s) if asked else self.recheck_s

    def timeout_s(self, asked: bool = False) -> float:
        read_at = self.read_at + self._read_after_s(asked)
        return max(0.0, min(read_at, self.sent_at + KEEPALIVE_S) - time.monotonic())

    def read(self) -> None:
        self.read_at = time.monotonic()

    def sent(self) -> None:
        self.sent_at = time.monotonic()

    def keepalive_due(self) -> bool:
        return time.monotonic() >= self.sent_at + KEEPALIVE_S

    def read_due(self, asked: bool = False) -> bool:
        return time.monotonic() >= self.read_at + self._read_after_s(asked)


def sse(job: Job, event: str) -> str:
    data = jsontext.text(job_body(job))
    return f"id: {job.updated_at}\nevent: {event}\ndata: {data}\n\n"


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    # ASCII digits only ("²".isdigit() is true, int() refuses it), and few enough for SQLite's int64
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def _stream(body: AsyncGenerator[str, None]) -> Response:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_ended_by_an_outage(body), media_type="text/event-stream", headers=headers)


async def _ended_by_an_outage(body: AsyncGenerator[str, None]) -> AsyncIterator[str]:
    """A stream whose store goes away (a PostgreSQL outage) ends cleanly, as at a stop: its answer has
    begun, so no 503 can be sent, and a stream cut mid-chunk logged two tracebacks. Its client
    reconnects with Last-Event-ID and is answered 503 store_unavailable until the database is back
    (the store logs the outage once)."""
    async with contextlib.aclosing(body):  # a client gone: the stream's own `finally` runs now, not at GC
        try:
            async for chunk in body:
                yield chunk
        except StoreUnavailable:
            return


async def job_events(request: Request) -> Response:
    who = owner(request)
    app = app_of(request)
    job = await app.engine.get(request.path_params["job_id"], who)
    since = _last_event_id(request)
    if since is not None and job.is_terminal and not _lacks(job, since):
        return Response(status_code=204)  # an EventSource reconnects after a stream that ends, not a 204

    async def body() -> AsyncIterator[str]:
        # a queue, not a one-shot waiter: every change told while we are sending is kept; None
        # stands for a change made elsewhere, to be read from the store
        changes: asyncio.Queue[Job | None] = asyncio.Queue()
        unsubscribe = app.feed.watch_job(job.id, changes.put_nowait)
        pace = _Pace(app.config.store.recheck_s)
        sent = _Sent()
        current: Job | None = await app.store.get(job.id)
        read = first = True
        try:
            while current is not None:
                event = sent.record(current, read)
                # `since` says what the client had before; every change made since is new to it
                if event and (not first or _lacks(current, since)):
                    yield sse(current, event)
                    pace.sent()
                first = False
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


def _lacks(job: Job, since: int | None) -> bool:
    """Whether a client whose last event of this job had id `since` lacks `job` as stored now (never
    older than what it was sent): unless that event was this version (the same id) or `since` is
    more than LOOKBACK_MS after it. A smaller id than `since` is a later change stamped by a node
    whose clock is behind."""
    return since is None or (job.updated_at != since and job.updated_at >= since - LOOKBACK_MS)


class _Inbox:
    """The feed's reader for one `/v1/events` stream: the jobs changed here, in order, and whether to
    read the store (after dropping what overflowed, or after a change made elsewhere)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._jobs: list[Job] = []
        self._held: set[str] = set()
        self._overflowed = self._noticed = False
        self._ready = asyncio.Event()

    def put(self, job: Job | None) -> None:
        """A job as changed here, or None: one changed elsewhere."""
        if job is None:
            self._noticed = True
        elif len(self._jobs) >= self._capacity:  # a client this far behind gets each job's latest from the store
            self._jobs.clear()
            self._held.clear()
            self._overflowed = True
        else:
            self._jobs.append(job)
            self._held.add(job.id)
        self._ready.set()

    def take(self) -> tuple[list[Job], bool, bool]:
        """The jobs changed since the last take, in order; whether to read the store at once (some
        were dropped), and whether soon (changed elsewhere)."""
        jobs, overflowed, noticed = self._jobs, self._overflowed, self._noticed
        self._jobs, self._overflowed, self._noticed = [], False, False
        self._held.clear()
        self._ready.clear()
        return jobs, overflowed, noticed

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
    """Where a `/v1/events` stream's store reads start. A read pages on (updated_at, seq), so that any
    number of jobs changed in one millisecond page through, from LOOKBACK_MS before the time the read
    before it began, never before `first_ms` (LOOKBACK_MS before a new stream's start or a resumed one's id):
    a change stamped then that committed during that read or after it is found, if within LOOKBACK_MS
    of its stamp."""

    def __init__(self, first_ms: int) -> None:
        self._first_ms = first_ms
        self._next = (self._first_ms, 0)  # seq counts from 1: before every job changed in that millisecond
        self._after = self._next

    @property
    def floor_ms(self) -> int:
        """The oldest `updated_at` the next read may return."""
        return self._next[0]

    def begin(self, now_ms: int) -> None:
        """A read starts at `now_ms` (this node's clock), where the one before said."""
        self._after = self._next
        self._next = (max(self._first_ms, now_ms - LOOKBACK_MS), 0)

    async def read(self, store: Store, owner: str) -> tuple[list[Change], bool]:
        """The next page of changes, and whether another may follow."""
        changes = await store.changes_after(owner, *self._after, PAGE)
        if changes:
            self._after = (changes[-1].updated_at, changes[-1].seq)
        return changes, len(changes) == PAGE

    def hold_back(self, seq: int, updated_at: int) -> None:
        """Left to the inbox, which holds a change of this job: the next read starts at it at the
        latest, should the row differ from what the inbox brings (also changed elsewhere) or the
        inbox drop it (overflow)."""
        self._next = min(self._next, (updated_at, seq - 1))


class _Sent:
    """The last version sent of each job a store read may return again, and whether a read sent it."""

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
        if len(self._versions) > REMEMBERED_MAX:
            del self._versions[next(iter(self._versions))]
        return "status" if last is None or last[1] != job.status else "progress"

    def has(self, change: Change) -> bool:
        """Whether the version a store read found is the last sent: what `record` of it from a read
        says, without its row."""
        last = self._versions.get(change.job_id)
        if last is None or (change.updated_at, change.status) != last[:2]:
            return False
        self._versions[change.job_id] = self._versions.pop(change.job_id)  # as `record` keeps it: sent last
        return True

    def forget_before(self, floor_ms: int) -> None:
        """Past REMEMBERED jobs, forget the least recently sent while no read can return them again:
        each is the job as it was before `floor_ms`, and a read returns none older."""
        versions = self._versions
        while len(versions) > REMEMBERED:
            job_id, (updated_at, _, _) = next(iter(versions.items()))
            if updated_at >= floor_ms:
                return
            del versions[job_id]


def _has_it(last: tuple[int, str, bool], job: Job, read: bool) -> bool:
    """Whether a client sent `last` has `job` or newer. `updated_at` cannot say which is newer: it is
    several writers' clocks, and they may differ. A store read is never older than what was sent
    before it began (a change is published after its commit, and a read leaves to the inbox the jobs
    it holds), and published snapshots come in the order they were made: after either, only a copy
    of `last` is old. A published one after a read may be older (changed again elsewhere before the
    read), which an older `updated_at` is taken to say; wrongly, between nodes whose clocks differ,
    the next read sends the newer again."""
    if (job.updated_at, job.status) == last[:2]:
        return True
    return not read and last[2] and job.updated_at < last[0]


async def _unsent(
    store: Store, changes: list[Change], inbox: _Inbox, cursor: _StoreCursor, sent: _Sent
) -> list[tuple[Job, str]]:
    """The jobs of a page of changes to send, each with its event, now recorded as sent. Only the
    versions not sent yet are read whole; those jobs are read as they are now (changed again since,
    maybe: a later read finds that change as sent). A job the inbox holds is left to it."""
    unsent: list[Change] = []
    for change in changes:
        if inbox.holds(change.job_id):
            cursor.hold_back(change.seq, change.updated_at)
        elif not sent.has(change):
            unsent.append(change)
    if not unsent:
        return []
    jobs = await store.jobs_by_seq([change.seq for change in unsent])
    out: list[tuple[Job, str]] = []
    for change in unsent:
        job = jobs.get(change.seq)
        if job is None:
            continue  # deleted meanwhile (expired): no event
        if inbox.holds(job.id):  # published while its row was read
            cursor.hold_back(change.seq, min(change.updated_at, job.updated_at))
        elif event := sent.record(job, read=True):
            out.append((job, event))
    return out


async def all_events(request: Request) -> Response:
    who = owner(request)
    app = app_of(request)
    since = _last_event_id(request)

    async def body() -> AsyncIterator[str]:
        inbox, sent = _Inbox(INBOX_MAX), _Sent()
        unsubscribe = app.feed.watch_owner(who, inbox.put)
        pace = _Pace(app.config.store.recheck_s, read_now=True)
        # a new stream starts as one resumed from now: its jobs stamped just before may commit after
        cursor = _StoreCursor((since if since is not None else app.clock()) - LOOKBACK_MS)
        asked = False  # another node's change asked for a read, which waits out READ_GAP_S
        try:
            while True:
                jobs, overflowed, noticed = inbox.take()
                asked = asked or noticed
                for job in jobs:
                    if event := sent.record(job, read=False):
                        yield sse(job, event)
                        pace.sent()
                if overflowed or pace.read_due(asked):
                    asked = False
                    pace.read()
                    cursor.begin(app.clock())
                    more = True
                    while more:
                        changes, more = await cursor.read(app.store, who)
                        for job, event in await _unsent(app.store, changes, inbox, cursor, sent):
                            yield sse(job, event)
                            pace.sent()
                    sent.forget_before(cursor.floor_ms)
                elif not await inbox.wait(pace.timeout_s(asked)) and pace.keepalive_due():
                    pace.sent()
                    yield ": keep-alive\n\n"
        finally:
            unsubscribe()

    return _stream(body())


ROUTES = [
    Route("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/v1/events", all_events, methods=["GET"]),
]
