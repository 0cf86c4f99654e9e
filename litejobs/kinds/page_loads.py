"""One page of a many-page job (multi_fetch, crawl): loaded within its share of the job's time, and
rendered again when our browser, not the page, failed under it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from litejobs.errors import BrowserError, JobError, JobTimeout
from litejobs.kinds import KindContext
from litejobs.kinds.fetch import FetchParams, load_page

log = logging.getLogger("litejobs.kinds.page_loads")

#: of the pages' time left, what each page still to come is promised at most: a hanging page cannot
#: take the time of the pages after it, yet one slow page may still use most of the job's time
PAGE_RESERVE_S = 1.0
#: renders of a page tried again within the attempt when the browser failed under it: a Chromium crash
#: fails every page in flight at once, and the pool relaunches Chromium for the next render
BROWSER_RETRIES = 2
#: the codes of a render that failed for the browser's sake (it crashed, went away, could not start):
#: its timeout and the refusals of the page or of the input are the page's (BrowserError subclasses too)
_BROWSER_FAULTS = frozenset({"browser_crashed", "browser_error"})


@dataclass(frozen=True)
class Schedule:
    """When the pages, and then the whole run, must be done (event-loop time), so that the job answers
    with the pages it has before its timeout_s ends it; None: the run has no time limit of its own."""

    pages_by: float | None = None
    finish_by: float | None = None

    def page_deadline(self, pages_left: int, now: float) -> float | None:
        """The next page's deadline: the pages' time left, less a reserve for each page after it."""
        if self.pages_by is None:
            return None
        reserve_s = min(PAGE_RESERVE_S, (self.pages_by - now) / pages_left)
        return self.pages_by - max(0.0, reserve_s) * (pages_left - 1)

    def out_of_time(self, now: float) -> bool:
        """Whether the pages' time is spent: no page may start."""
        return self.pages_by is not None and now >= self.pages_by


def browser_fault(exc: BaseException) -> bool:
    """Whether a page failed for our browser's sake (a crash, a lost or unlaunchable Chromium), which is
    no fault of the page: such a failure is never stored as the page's error."""
    return isinstance(exc, BrowserError) and exc.retryable and exc.code in _BROWSER_FAULTS


def charged_to_the_attempt(exc: BrowserError, url: str) -> BrowserError:
    """The attempt's error when a page's renders kept failing for the browser: retried like a render
    job's, naming the page (a crawl resumes from the pages it stored)."""
    return type(exc)(f"{exc.message} (rendering {url}, retried within the attempt)", retryable=True)


async def load_by(
    fetch: FetchParams,
    ctx: KindContext,
    deadline: float | None,
    *,
    slot: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    before_redirect: Callable[[str], None] | None = None,
    longest_s: float | None = None,
) -> dict[str, Any]:
    """load_page, given up at `deadline` (event-loop time) with a `timeout` for this page alone.

    `slot()` is entered around each try, within the deadline (a crawl's per-host slot); `longest_s`
    caps one try when the deadline is further away. A render that failed for a browser fault is tried
    again (BROWSER_RETRIES times) while time is left; the last such failure is raised as it came."""
    loop, retries = asyncio.get_running_loop(), 0
    while True:
        try:
            return await _load_once(fetch, ctx, deadline, slot, before_redirect, longest_s)
        except JobError as exc:
            out_of_time = deadline is not None and loop.time() >= deadline
            if not browser_fault(exc) or retries == BROWSER_RETRIES or out_of_time:
                raise
            retries += 1
            log.info("rendering %s failed for the browser (%s); rendering it again", fetch.url, exc.message)


async def _load_once(
    fetch: FetchParams,
    ctx: KindContext,
    deadline: float | None,
    slot: Callable[[], AbstractAsyncContextManager[Any]] | None,
    before_redirect: Callable[[str], None] | None,
    longest_s: float | None,
) -> dict[str, Any]:
    if deadline is None:
        async with slot() if slot else contextlib.nullcontext():
            return await load_page(fetch, ctx, longest_s, before_redirect=before_redirect)
    left_s = deadline - asyncio.get_running_loop().time()
    if left_s <= 0:
        raise JobTimeout(f"{fetch.url} was not fetched: the job's timeout_s left no time for it")
    timeout_s = max(0.1, round(left_s, 1)) if longest_s is None else max(0.1, min(longest_s, round(left_s, 1)))
    try:
        # the fetcher and the browser stop by themselves about then; this bounds what they do not
        # (the wait for a free browser page, or for the host's slot)
        async with asyncio.timeout_at(deadline), slot() if slot else contextlib.nullcontext():
            return await load_page(fetch, ctx, timeout_s, before_redirect=before_redirect)
    except TimeoutError:
        raise JobTimeout(f"{fetch.url} did not load within the {left_s:.1f} s the job's timeout_s left it") from None
