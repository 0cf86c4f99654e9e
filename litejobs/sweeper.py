"""Sweeper: recover jobs whose worker died, and delete terminal jobs (and their files) past retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from litejobs.config import Config
from litejobs.files import FileArea
from litejobs.jobs import Job
from litejobs.store import Recovered, Store

log = logging.getLogger("litejobs.sweeper")

SWEEP_BATCH = 500


def dead_local_owners(owners: list[str], my_worker_id: str) -> list[str]:
    """Lease owners on this host whose process is gone: their jobs need not wait for lease expiry.
    Owners on other hosts are judged by lease expiry alone."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        owner_host, _, rest = owner.partition(":")
        pid_text, _, _ = rest.partition(":")
        if owner_host != host or owner == my_worker_id or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or not _process_alive(pid):
            dead.append(owner)
    return dead


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        (worker_lost, poisoned) gets its webhook, metrics and events like any other end."""
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
            except Exception:
                log.exception("sweep failed; trying again next round")
