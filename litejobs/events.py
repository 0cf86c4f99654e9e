"""Change notices: who changed, so that long-polls and streams wake without polling.

Two kinds of notice reach the feed. `publish(job)`: a change made in this process, with the job as
it now is; it reaches readers (waiters, streams) and listeners (metrics, webhooks, transition
logs). `poke(job_id, owner)`: a change another node made (PostgreSQL NOTIFY); it reaches readers
only, which then re-read the store: the node that made the change has already counted it, sent
its webhook and logged it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from litejobs.jobs import Job

Listener = Callable[[Job], None]
#: told of a change: the job as it now is, or None when it changed elsewhere (re-read the store)
Reader = Callable[[Job | None], None]


class ChangeFeed:
    """`publish(job)` after every state or progress change made here; `poke(job_id, owner)` when
    another node made one; `wait_change(job_id, timeout_s)` wakes on the next change of that job;
    `watch_job` / `watch_owner` follow one job's or one owner's changes (event streams);
    `subscribe(fn)` adds a listener for every change made here (webhooks and metrics hook in here
    from app.py, so the worker never imports them)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[Job | None]]] = {}
        self._listeners: list[Listener] = []
        self._job_readers: dict[str, set[Reader]] = {}
        self._owner_readers: dict[str, set[Reader]] = {}

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def watch_job(self, job_id: str, reader: Reader) -> Callable[[], None]:
        """Call `reader` on every change of `job_id`, here or elsewhere; returns the unsubscribe."""
        return _add(self._job_readers, job_id, reader)

    def watch_owner(self, owner: str, reader: Reader) -> Callable[[], None]:
        """Call `reader` on every change of any of `owner`'s jobs; returns the unsubscribe."""
        return _add(self._owner_readers, owner, reader)

    def publish(self, job: Job) -> None:
        self._wake_readers(job.id, job.owner, job)
        for listener in list(self._listeners):
            listener(job)

    def poke(self, job_id: str, owner: str) -> None:
        """Another node changed this job: wake its waiters and streams (never the listeners)."""
        self._wake_readers(job_id, owner, None)

    def poke_all(self) -> None:
        """Changes elsewhere may have gone unannounced (a lost LISTEN connection): every waiter
        and stream re-reads the store."""
        for job_id in list(self._waiters):
            self._wake_waiters(job_id, None)
        for readers in [*self._job_readers.values(), *self._owner_readers.values()]:
            for reader in list(readers):
                reader(None)

    def _wake_readers(self, job_id: str, owner: str, job: Job | None) -> None:
        self._wake_waiters(job_id, job)
        for reader in [*self._job_readers.get(job_id, ()), *self._owner_readers.get(owner, ())]:
            reader(job)

    def _wake_waiters(self, job_id: str, job: Job | None) -> None:
        for future in self._waiters.pop(job_id, ()):
            if not future.done():
                future.set_result(job)

    async def wait_change(self, job_id: str, timeout_s: float) -> Job | None:
        """The job after its next change made here; None when `timeout_s` passes first or the job
        changed elsewhere (either way: re-read the store)."""
        future: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, set()).add(future)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    with contextlib.suppress(KeyError):
                        del self._waiters[job_id]


def _add(index: dict[str, set[Reader]], key: str, reader: Reader) -> Callable[[], None]:
    index.setdefault(key, set()).add(reader)

    def remove() -> None:
        readers = index.get(key)
        if readers is not None:
            readers.discard(reader)
            if not readers:
                del index[key]

    return remove
