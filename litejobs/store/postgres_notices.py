"""The change notices a PostgresStore sends after its commits, so that other nodes' waits and event
streams wake: NOTIFY litejobs_changes, '<node> <job_id> <owner>', one per changed job.

Why after the commit and not in the changing transaction: PostgreSQL serializes the commits of all
transactions that NOTIFY with one lock, held through the commit's WAL flush, so a NOTIFY in every
claim, progress report and finish takes those commits out of group commit. This sender makes one
such commit per batch instead (docs/scaling.md, Sizing, has the figures: with fsync on, the store
ran 392–827 jobs/s this way, 162–587 with a NOTIFY in each transaction, 440–877 with none). The
price: a node that dies between a commit and its send loses those notices, and the readers
elsewhere see the change at their next re-read (`[store] recheck_s`), as when a LISTEN connection
is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from litejobs.store.postgres_schema import CHANGES_CHANNEL

log = logging.getLogger("litejobs.store")

#: how long closing the store waits for the last notices to go out
FLUSH_TIMEOUT_S = 5.0


class ChangeNotices:
    """`changed([(job_id, owner), ...])` after a commit queues notices; one task sends everything
    queued in one statement, so notices batch by themselves under load and go at once when quiet."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._pool: Any = None
        self._pending: list[str] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self, pool: Any) -> None:
        self._pool = pool
        self._task = asyncio.create_task(self._send_forever(), name="litejobs-change-notices")

    async def stop(self) -> None:
        """Send what is queued (briefly), then stop."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._send(), FLUSH_TIMEOUT_S)

    def changed(self, jobs: Iterable[tuple[str, str]]) -> None:
        """Announce committed changes of these (job_id, owner) pairs (dropped while not started)."""
        if self._task is None:
            return
        self._pending.extend(f"{self.node_id} {job_id} {owner}" for job_id, owner in jobs)
        if self._pending:
            self._ready.set()

    async def _send_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self._send()

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self._pool.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANGES_CHANNEL, batch)
        except Exception as exc:  # the readers elsewhere fall back to re-reading the store
            if not self._failing:
                log.warning("could not send change notices to other nodes (%s); their waits fall back to polling", exc)
            self._failing = True
        else:
            self._failing = False
