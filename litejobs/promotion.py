"""Promoter: delayed jobs become waiting at their run_at, whether or not a worker is free, announced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from litejobs.errors import StorageFull, StoreUnavailable
from litejobs.events import ChangeFeed
from litejobs.store import Store

log = logging.getLogger("litejobs.worker")

#: due jobs made waiting per store write; a longer backlog takes the writes that follow at once
PROMOTE_BATCH = 100
#: how often the next run_at is read anyway: another process may have delayed a job meanwhile
POLL_S = 1.0


class Promoter:
    """Sleeps until the next delayed job's run_at (read from the store, at most POLL_S ahead, sooner
    when `expect` hears of an earlier one), then makes the due jobs waiting and publishes each
    (events, webhooks and metrics see `waiting`, as API.md's lifecycle has it) and wakes the
    workers. Before, a claim promoted due jobs and leased them in one go: never announced, and
    not at all while every worker was busy (a due job stayed `delayed` and out of
    oldest_waiting_age_s until a slot freed). The promotion is a guarded update, so with several
    processes on one database each due job is promoted, and announced, once."""

    def __init__(
        self, store: Store, feed: ChangeFeed, *, clock: Callable[[], int], on_promoted: Callable[[], None]
    ) -> None:
        self.store = store
        self.feed = feed
        self.clock = clock
        self.on_promoted = on_promoted
        self._wake = asyncio.Event()
        #: when the current sleep ends (clock ms); None while awake: a job due later needs no wake
        self._sleep_ends_ms: int | None = None
        self._stopping = False

    def expect(self, due_at_ms: int) -> None:
        """A job was delayed until `due_at_ms` (a submit's delay_s, a retry's backoff)."""
        if self._sleep_ends_ms is None or due_at_ms < self._sleep_ends_ms:
            self._wake.set()

    def stop(self) -> None:
        """Promote nothing more (the pool stops claiming: the next start, or another process, will)."""
        self._stopping = True
        self._wake.set()

    async def promote_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()
            next_run: int | None = None
            try:
                next_run = await self.store.next_run_at()
                if next_run is not None and next_run <= self.clock():
                    if await self._promote_due() == PROMOTE_BATCH:
                        continue
                    next_run = await self.store.next_run_at()
            except (StoreUnavailable, StorageFull):
                next_run = None  # logged once by the store; tried again after POLL_S
            except Exception:
                log.exception("promoting due jobs failed; trying again")
                next_run = None
            await self._sleep_until(next_run)

    async def _promote_due(self) -> int:
        jobs = await self.store.promote_due(self.clock(), PROMOTE_BATCH)
        for job in jobs:
            self.feed.publish(job)
        if jobs:
            self.on_promoted()
        return len(jobs)

    async def _sleep_until(self, due_at_ms: int | None) -> None:
        timeout = POLL_S
        if due_at_ms is not None:
            # not 0: a due job another node is promoting (rows skipped) is read again, not spun on
            timeout = min(timeout, max(0.01, (due_at_ms - self.clock()) / 1000))
        self._sleep_ends_ms = self.clock() + int(timeout * 1000)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            self._sleep_ends_ms = None
