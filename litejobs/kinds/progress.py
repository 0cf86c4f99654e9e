"""Progress reports at most every so often, the last one never dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("litejobs.kinds.progress")

#: how often a job's progress is written at most (a crawl stores pages far faster)
PROGRESS_EVERY_S = 0.25


class ThrottledProgress:
    """Writes `report()` at most every `every_s`. A report that comes too soon is not dropped but sent
    when the interval ends (with the state of then): a job whose next change is a slow page away would
    otherwise show a stale count until then."""

    def __init__(self, write: Callable[[], Awaitable[None]], every_s: float = PROGRESS_EVERY_S) -> None:
        self._write = write
        self._every_s = every_s
        self._written_at = float("-inf")
        self._later: asyncio.Task[None] | None = None

    async def report(self, *, now: bool = False) -> None:
        wait_s = self._every_s - (time.monotonic() - self._written_at)
        if now or wait_s <= 0:
            self._cancel_later()
            await self._write_now()
        elif self._later is None:
            self._later = asyncio.create_task(self._report_later(wait_s))

    async def _write_now(self) -> None:
        self._written_at = time.monotonic()
        await self._write()

    async def _report_later(self, wait_s: float) -> None:
        try:
            await asyncio.sleep(wait_s)
            await self._write_now()
        except Exception:  # progress is a courtesy: the job goes on, and its next report may pass
            log.warning("a progress report failed", exc_info=True)
        finally:
            if self._later is asyncio.current_task():
                self._later = None

    def _cancel_later(self) -> None:
        if self._later is not None:
            self._later.cancel()
        self._later = None

    async def close(self) -> None:
        """No report after this (the job is ending): a pending one, or one being written, is cancelled
        and awaited, so that it cannot land after the job's last word."""
        later, self._later = self._later, None
        if later is not None:
            later.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await later
