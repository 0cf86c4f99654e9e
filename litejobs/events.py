"""In-process change notices: who changed, so that long-polls and streams wake without polling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from litejobs.jobs import Job

Listener = Callable[[Job], None]


class ChangeFeed:
    """`publish(job)` after every state or progress change; `wait_change(job_id, timeout_s)` wakes
    on the next change of that job; `subscribe(fn)` adds a listener for every change (webhooks and
    metrics hook in here from app.py, so the worker never imports them)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[Job]]] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, job: Job) -> None:
        for future in self._waiters.pop(job.id, ()):
            if not future.done():
                future.set_result(job)
        for listener in list(self._listeners):
            listener(job)

    async def wait_change(self, job_id: str, timeout_s: float) -> Job | None:
        """The job after its next change, or None when `timeout_s` passes first."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
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
