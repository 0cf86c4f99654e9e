"""LeaseKeeper: renew the leases of the jobs a worker pool runs, and stop the work of those it lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litejobs.errors import StorageFull, StoreUnavailable
from litejobs.store import Store

log = logging.getLogger("litejobs.worker")


class LeaseKeeper:
    """Renews every running job's lease each third of lease_s, and at once when asked
    (`check_now`: PostgreSQL's change notices say another node changed a job running here). A job
    found no longer this worker's (cancelled elsewhere, or recovered as lost) has its task cancelled.

    A store that cannot tell of other processes' changes (SQLite, where two processes may share the
    file) offers `lost_leases`, a read: it is asked every `[store] recheck_s`, so that a cancel
    made through the other process stops the work within about that time (1 s), not at the next
    renewal (10 s with the default lease_s). A read rather than a renewal, as it takes no write lock
    from the other process."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        running: Mapping[str, asyncio.Task[None]],
        *,
        lease_ms: int,
        recheck_s: float,
        clock: Callable[[], int],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        #: the pool's running jobs, by id (read, never changed here)
        self.running = running
        self.lease_ms = lease_ms
        self.recheck_s = recheck_s
        self.clock = clock
        self._lost_leases: Callable[[list[str], str], Awaitable[set[str]]] | None = getattr(store, "lost_leases", None)
        self._check = asyncio.Event()

    def check_now(self) -> None:
        """Renew (and so check) every lease now rather than at the next round."""
        self._check.set()

    async def keep_forever(self) -> None:
        renew_every_s = max(0.05, self.lease_ms / 3000)
        read_every_s = self.recheck_s if self._lost_leases is not None else renew_every_s
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + renew_every_s
        while True:
            timeout = min(read_every_s, renew_at - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check.wait(), max(0.0, timeout))
            asked = self._check.is_set()
            self._check.clear()
            if loop.time() >= renew_at:
                renew_at = loop.time() + renew_every_s
            elif not asked:
                await self.check_held()
                continue
            await self.renew()

    async def renew(self) -> None:
        """Extend the running jobs' leases, and stop the work of those no longer this pool's."""
        tasks = dict(self.running)
        if not tasks:
            return
        try:
            alive = await self.store.heartbeat(list(tasks), self.worker_id, self.clock() + self.lease_ms)
        except (StoreUnavailable, StorageFull):
            return  # logged once by the store; renewed at the first heartbeat once writes succeed again
        except Exception:
            log.exception("heartbeat failed")
            return
        self._stop(tasks, set(tasks) - alive)

    async def check_held(self) -> None:
        """Stop the work of running jobs the store no longer has under this worker (a read)."""
        tasks = dict(self.running)
        if not tasks or self._lost_leases is None:
            return
        try:
            lost = await self._lost_leases(list(tasks), self.worker_id)
        except Exception:  # the next round reads again, and a renewal logs a store that keeps failing
            return
        self._stop(tasks, lost)

    def _stop(self, tasks: Mapping[str, asyncio.Task[Any]], lost: set[str]) -> None:
        for job_id in lost:
            # only the attempt that was asked about: a later one of the same job may run here by now
            if self.running.get(job_id) is tasks[job_id]:
                tasks[job_id].cancel()
