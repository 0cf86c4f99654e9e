"""Sweeper: recover jobs whose worker died, and delete terminal jobs (and their files) past retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from litejobs.config import Config
from litejobs.errors import StorageFull
from litejobs.files import FileArea
from litejobs.jobs import Job
from litejobs.store import Recovered, Store, StoreUnavailable
from litejobs.worker_ids import dead_local_owners

log = logging.getLogger("litejobs.sweeper")

SWEEP_BATCH = 500


class Sweeper:
    """Runs `sweep_once` every `sweep_interval_s`; the leases of dead workers are checked every
    lease period so that a lost job waits at most about one lease before it runs again."""

    def __init__(
        self,
        store: Store,
        files: FileArea,
        config: Config,
        *,
        clock: Callable[[], int],
        worker_id: str,
        on_requeue: Callable[[], None] = lambda: None,
        on_change: Callable[[Job], None] = lambda job: None,
    ) -> None:
        self.store = store
        self.files = files
        self.config = config
        self.clock = clock
        self.worker_id = worker_id
        self.on_requeue = on_requeue
        #: told of each job a recovery changed, as the worker tells of its own changes (ChangeFeed.publish)
        self.on_change = on_change
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sweeper:
        await self.recover_once(include_dead_local=True)
        self._task = asyncio.create_task(self._sweep_forever(), name="litejobs-sweeper")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def recover_once(self, include_dead_local: bool = False) -> Recovered:
        """Requeue or fail the jobs of dead workers, and announce each change: a job that ends here
        (worker_lost, poisoned) gets its webhook, metrics and events like any other end.

        Not within a lease period after this node found the database unreachable: an outage cuts
        every node off alike, so the leases that lapsed meanwhile are mostly live workers' ones, which
        they renew at their next heartbeat (a third of a lease) once the database is back."""
        if self._database_was_away():
            log.info("lease recovery waits: the database was unreachable within the last lease period")
            return Recovered([], [])
        dead = dead_local_owners(await self.store.active_owners(), self.worker_id) if include_dead_local else []
        retention_ms = int(self.config.store.retention_s * 1000)
        recovered = await self.store.recover_expired(
            self.clock(), self.config.queue.max_recoveries, dead, retention_ms=retention_ms
        )
        if recovered.requeued or recovered.failed:
            log.warning(
                "recovered %d jobs from dead workers (%d requeued, %d failed)",
                len(recovered.requeued) + len(recovered.failed),
                len(recovered.requeued),
                len(recovered.failed),
            )
            for job in recovered.jobs:
                self.on_change(job)
            self.on_requeue()
        return recovered

    def _database_was_away(self) -> bool:
        unreachable_within = getattr(self.store, "unreachable_within", None)  # PostgreSQL only
        return unreachable_within is not None and bool(unreachable_within(self.config.queue.lease_s))

    async def sweep_once(self) -> list[str]:
        """Delete every terminal job past its expires_at, with its files. Returns their ids."""
        deleted: list[str] = []
        while True:
            batch = await self.store.sweep_expired(self.clock(), SWEEP_BATCH)
            for job_id in batch:
                await self.files.delete_job(job_id)
            deleted.extend(batch)
            if len(batch) < SWEEP_BATCH:
                return deleted

    async def _sweep_forever(self) -> None:
        lease_s = self.config.queue.lease_s
        interval = min(self.config.store.sweep_interval_s, lease_s)
        since_sweep = 0.0
        while True:
            await asyncio.sleep(interval)
            since_sweep += interval
            try:
                await self.recover_once(include_dead_local=True)
                if since_sweep >= self.config.store.sweep_interval_s:
                    since_sweep = 0.0
                    await self.sweep_once()
            except (StoreUnavailable, StorageFull):
                continue  # the store logs an outage, or a full disk, once; the next round tries again
            except Exception:
                log.exception("sweep failed; trying again next round")
