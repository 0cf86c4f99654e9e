"""The `crawl` kind: breadth-first from a URL, depth by depth, each page stored as it finishes (docs/crawl.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

from litejobs.errors import BrowserError, JobError, JobTimeout, RobotsDisallowed, TooManyRedirects, UpstreamStatus
from litejobs.jobs import JobResult, JobState
from litejobs.kinds import Kind, KindContext
from litejobs.kinds.crawl_input import MAX_PATTERNS as MAX_PATTERNS  # map's globs are a crawl's
from litejobs.kinds.crawl_input import CrawlParams, parse_crawl
from litejobs.kinds.crawl_pages import LINKS_KEY, digest_page, failed_page
from litejobs.kinds.fetch import FetchParams, finish_by
from litejobs.kinds.page_loads import Schedule, browser_fault, charged_to_the_attempt, load_by
from litejobs.kinds.progress import ThrottledProgress
from litejobs.politeness import HostGate
from litejobs.robots import Robots, RobotsCache
from litejobs.urls import Scope, host_key, normalize_url, origin_of

log = logging.getLogger("litejobs.crawl")

#: a crawl never runs more page fetches at once than this, whatever the per-host limit
MAX_CONCURRENCY = 8
#: new links kept per page, and candidate URLs per depth: a hostile site cannot grow memory past them
MAX_LINKS_PER_PAGE = 1000
FRONTIER_CAP = 200_000
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
#: fetches of one page started again to read the robots.txt of origins its redirects lead to
MAX_ROBOTS_DETOURS = 3


class _Unwanted(Exception):
    """A redirect of a page leads where the crawl must not go: the page is dropped, unfetched."""

    def __init__(self, target: str, *, by_robots: bool) -> None:
        super().__init__(target)
        self.target, self.by_robots = target, by_robots


class _RobotsUnknown(Exception):
    """A redirect leads to an origin whose robots.txt is not read yet: read it, then fetch again."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class Crawl:
    """One attempt of one crawl: the frontier, the pages done, the counts."""

    def __init__(self, params: CrawlParams, ctx: KindContext) -> None:
        self.params, self.ctx = params, ctx
        crawl_config = ctx.config.crawl
        self.max_pages = min(params.max_pages, crawl_config.max_pages)
        self.gate = ctx.host_gate or HostGate(crawl_config.per_host_concurrency, crawl_config.per_host_delay_ms)
        self.concurrency = min(MAX_CONCURRENCY, 2 * crawl_config.per_host_concurrency)
        # The agent the pages are fetched with: a User-Agent header wins over user_agent, as in load_page.
        agent = next((v for k, v in params.page.headers.items() if k.lower() == "user-agent"), None)
        agent = agent or params.page.user_agent or ctx.config.fetch.user_agent
        self.robots = RobotsCache(ctx.fetcher, self.gate, agent)
        self.start = normalize_url(params.url) or params.url
        self.scope = Scope.around(
            self.start,
            same_domain=params.same_domain,
            allow_subdomains=params.allow_subdomains,
            include=params.include,
            exclude=params.exclude,
        )
        self.start_hosts = {host_key(self.start)}
        #: URLs placed in a depth (or reached by a redirect): never placed again
        self.seen: set[str] = {self.start}
        #: pages stored (this attempt or an earlier one) → their new links (None: not known), final URL
        self.done: dict[str, tuple[list[str] | None, str]] = {}
        self.counted = self.failed = self.in_flight = self.skipped = self.blocked = self.resumed = 0
        self.depth = 0
        #: the deepest depth of a page stored (stats.max_depth_reached): a depth the time cut may store none
        self.deepest = 0
        #: the pages' deadline within the job's timeout_s (set as the attempt starts); whether it cut the crawl
        self.schedule = Schedule()
        self.timed_out = False
        #: pages that had their host's slot, so were requested (a page still queued for it was not)
        self.requested: set[str] = set()
        self.progress = ThrottledProgress(self._write_progress)

    async def run(self) -> JobResult:
        try:
            return await self._run()
        finally:
            await self.progress.close()

    async def _run(self) -> JobResult:
        started = time.perf_counter()
        # every page loads by the time the job's timeout_s leaves for answering, and none starts after
        # it: a hanging page fails alone, and the crawl ends with the pages it has (docs/crawl.md)
        done_by = finish_by(self.ctx, asyncio.get_running_loop().time())
        self.schedule = Schedule(pages_by=done_by, finish_by=done_by)
        await self._resume()
        if self.resumed:  # the claim of this attempt cleared the job's progress: show where it stands
            await self.progress.report(now=True)
        level = [self.start]
        if self.start not in self.done and not await self._allowed(self.start, start=True):
            raise RobotsDisallowed("robots.txt disallows the start URL")
        while level and self.counted < self.max_pages:
            await self._crawl_level(level)
            if self.depth >= self.params.max_depth or self.counted >= self.max_pages or self.timed_out:
                break
            try:
                # the robots.txt of new origins, read within the pages' time (a next depth is cut by pull)
                async with asyncio.timeout_at(self.schedule.pages_by):
                    level = await self._next_level(level)
            except TimeoutError:
                self.timed_out = True
                break
            if level:
                self.depth += 1
        await self.progress.close()
        await self.ctx.report_progress(f"{self.counted} pages crawled", 1.0)
        outputs = {"start_url": self.params.url, "pages_crawled": self.counted, "pages_failed": self.failed}
        stats = {
            "max_pages": self.max_pages,
            "max_depth_reached": self.deepest,
            "skipped_off_site": self.skipped,
            "blocked_by_robots": self.blocked,
            "resumed_pages": self.resumed,
            "timed_out": self.timed_out,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        return JobResult(JobState.PARTIAL if self.failed or self.timed_out else JobState.COMPLETED, outputs, stats)

    def _out_of_time(self) -> bool:
        return self.schedule.out_of_time(asyncio.get_running_loop().time())

    async def _resume(self) -> None:
        """Take in the pages an earlier attempt stored: counted, never fetched again."""
        offset = 0
        while batch := await self.ctx.saved_pages(offset, 500):
            for page in batch:
                self._take_saved(page)
            offset += len(batch)

    def _take_saved(self, page: Mapping[str, Any]) -> None:
        final = normalize_url(page.get("final_url") or "") or page["url"]
        self.done[page["url"]] = (page.get(LINKS_KEY), final)
        if final != page["url"]:
            # A redirect target is claimed when it is reached, not when its depth is placed: claim it
            # now, so no page of any depth redirects there again. (A page's own URL is claimed when
            # its depth is replayed, as it was the first time.)
            self.seen.add(final)
        self.counted += 1
        self.resumed += 1
        self.deepest = max(self.deepest, page.get("depth", 0))
        self.failed += not page.get("success", True)
        if page["url"] == self.start:
            self.scope = self.scope.with_site_of(final)

    async def _crawl_level(self, level: list[str]) -> None:
        position = 0

        async def pull() -> None:
            nonlocal position
            while position < len(level) and self.counted + self.in_flight < self.max_pages:
                if self._out_of_time():
                    self.timed_out = True  # the pages left of this depth are not started
                    return
                url = level[position]
                position += 1
                if url in self.done:
                    if self.done[url][0] is None and self.depth < self.params.max_depth:
                        await self._visit(url, stored=True)
                        self.requested.discard(url)
                    self.seen.add(self.done[url][1])
                    continue
                self.in_flight += 1
                try:
                    await self._visit(url)
                finally:
                    self.in_flight -= 1
                    self.requested.discard(url)

        # A TaskGroup: a cancelled crawl cancels and awaits every fetch, so no task outlives the job.
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency, len(level))):
                    group.create_task(pull())
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None  # the job's error, not a group of one

    async def _visit(self, url: str, *, stored: bool = False) -> None:
        depth = self.depth
        claimed: set[str] = set()  # the redirect targets this fetch reached: in `seen`, yet its own
        try:
            loaded = await self._load(url, depth, claimed, stored)
            final = normalize_url(loaded["final_url"]) or url
            if not await self._landing_allowed(url, final, depth, claimed, stored):
                return
        except _Unwanted as unwanted:
            self._drop(unwanted, depth)
            return
        except Exception as exc:
            if isinstance(exc, BrowserError) and browser_fault(exc):
                # our browser failed under the page, and again after its relaunch: not the page's fault, so
                # the attempt fails (retried) and the next one resumes from the pages stored
                raise charged_to_the_attempt(exc, url) from exc
            if isinstance(exc, JobTimeout) and depth and url not in self.requested:
                self.timed_out = True  # the time ran out before it was asked for: not started, as those after it
                return
            if depth == 0:
                raise
            if not isinstance(exc, JobError):
                log.exception("crawl page %s failed", url)
            if stored:
                self.done[url] = ([], url)
            else:
                await self._record(failed_page(url, depth, exc))
            return
        self.seen.add(final)
        page = await asyncio.to_thread(digest_page, url, depth, loaded, self.params, self.scope)
        if depth == 0 and not page["success"]:
            error = UpstreamStatus(page["status_code"], f"the start page answered HTTP {page['status_code']}")
            error.retryable = False  # a 4xx: 5xx answers were raised by load_page, and are retried
            raise error
        if stored:  # fetched again only for its links (see _resume)
            self.done[url] = (page.get(LINKS_KEY) or [], final)
            return
        await self._record(page)

    async def _load(self, url: str, depth: int, claimed: set[str], stored: bool) -> dict[str, Any]:
        """Fetch one page through its host's slot, each redirect checked before it is followed.

        A redirect to an origin whose robots.txt is not read yet stops the fetch: that file is read
        outside the slot (waiting for another host's slot while holding one could deadlock two
        crawls), then the page is fetched again.
        """
        guard = None if stored else self._redirect_guard(url, depth, claimed)
        params = self._page_params(url)
        # a fetched page keeps [fetch] timeout_s when the job's time allows it; a render may use what is left
        longest_s = None if params.needs_browser else self.ctx.config.fetch.timeout_s
        for _ in range(MAX_ROBOTS_DETOURS):
            try:
                return await load_by(
                    params,
                    self.ctx,
                    self.schedule.pages_by,
                    slot=lambda: self._slot(url),
                    before_redirect=guard,
                    longest_s=longest_s,
                )
            except _RobotsUnknown as unknown:
                await self._robots_in_time(unknown.target, url)
        raise TooManyRedirects(f"{url} redirected to more than {MAX_ROBOTS_DETOURS} origins new to the crawl")

    @contextlib.asynccontextmanager
    async def _slot(self, url: str) -> AsyncIterator[None]:
        async with self.gate.slot(host_key(url)):
            self.requested.add(url)
            yield

    def _redirect_guard(self, url: str, depth: int, claimed: set[str]) -> Callable[[str], None]:
        """The check of each redirect of `url`, before the fetcher follows it (docs/crawl.md, "URLs").

        A target this crawl placed or reached already is not fetched again, nor one robots.txt
        disallows (checked for targets in scope; at depth 0 for any, since the start page's redirects
        choose the site). A target that passes is claimed: no other page of the crawl fetches it.
        """

        def check(location: str) -> None:
            target = normalize_url(location) or location
            if target == url or target in claimed:
                return  # a chain that comes back: the fetcher's redirect limit ends it
            if target in self.seen:
                raise _Unwanted(target, by_robots=False)
            if self.params.respect_robots and (depth == 0 or self.scope.covers_host(target)):
                robots = self.robots.known(target)
                if robots is None:
                    raise _RobotsUnknown(target)
                if not robots.allows(target):
                    raise _Unwanted(target, by_robots=True)
            claimed.add(target)
            self.seen.add(target)

        return check

    def _drop(self, unwanted: _Unwanted, depth: int) -> None:
        """A page whose redirect was refused: not stored, not counted, its links not followed."""
        if not unwanted.by_robots:
            return
        if depth == 0:
            robots = self.robots.known(unwanted.target)
            if robots is not None and robots.unreachable is not None:
                raise robots.unreachable
            raise RobotsDisallowed(f"robots.txt disallows {unwanted.target}, where the start URL redirects")
        self.blocked += 1

    async def _landing_allowed(self, url: str, final: str, depth: int, claimed: set[str], stored: bool) -> bool:
        """Whether a fetched page is kept, by where its redirects ended: on a host in scope, and, for
        a page the browser rendered (its redirects were not checked one by one), on a URL that is
        neither reached already nor disallowed."""
        if depth == 0:
            self.scope = self.scope.with_site_of(final)
        elif not self.scope.covers_host(final):
            self.skipped += 1
            return False
        if final == url or final in claimed or stored:
            return True
        if final in self.seen:
            return False
        if await self._allowed(final, start=depth == 0, page=url):
            return True
        if depth == 0:
            raise RobotsDisallowed(f"robots.txt disallows {final}, where the start URL redirects")
        return False

    def _page_params(self, url: str) -> FetchParams:
        """A page's fetch: credentials (those headers, and cookies that name no domain) go only to
        the start URL's host; a cookie that names its domain goes where that domain matches."""
        page = self.params.page
        if host_key(url) in self.start_hosts:
            return replace(page, url=url)
        headers = {k: v for k, v in page.headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
        cookies = tuple(cookie for cookie in page.cookies if cookie.get("domain"))
        return replace(page, url=url, headers=headers, cookies=cookies)

    async def _record(self, page: dict[str, Any]) -> None:
        links: list[str] = []
        if page["depth"] < self.params.max_depth:
            # Links already placed need not be stored; the cap bounds a page full of links.
            links = [u for u in page.get(LINKS_KEY) or () if u not in self.seen][:MAX_LINKS_PER_PAGE]
            page[LINKS_KEY] = links
        self.done[page["url"]] = (links, normalize_url(page.get("final_url") or "") or page["url"])
        await self.ctx.save_pages([page])
        self.counted += 1
        self.deepest = max(self.deepest, page["depth"])
        self.failed += not page["success"]
        await self.progress.report()

    async def _write_progress(self) -> None:
        await self.ctx.report_progress(f"{self.counted}/{self.max_pages} pages", self.counted / self.max_pages)

    async def _next_level(self, level: list[str]) -> list[str]:
        """The next depth: new links of this depth's pages, in page order then link order."""
        candidates: list[str] = []
        for url in level:
            links, _ = self.done.get(url, (None, ""))
            for link in links or ():
                if len(candidates) < FRONTIER_CAP and link not in self.seen:
                    self.seen.add(link)
                    candidates.append(link)
            if url in self.done:
                self.done[url] = ([], self.done[url][1])  # placed: free the memory
        return [url for url in candidates if await self._allowed(url)]

    async def _allowed(self, url: str, *, start: bool = False, page: str | None = None) -> bool:
        """Whether robots.txt lets `url` be fetched; read within the pages' time when `page` waits for it."""
        if not self.params.respect_robots:
            return True
        robots = await (self._robots_in_time(url, page) if page else self.robots.get(url))
        if robots.allows(url):
            return True
        if start and robots.unreachable is not None:
            raise robots.unreachable  # retried when robots.txt failed as a fetch would be (5xx, 429, network)
        self.blocked += 1
        return False

    async def _robots_in_time(self, url: str, page: str) -> Robots:
        """The robots.txt of `url`'s origin, read by the pages' deadline: one that has not answered by
        then fails `page`, which waits for it, alone (timeout), as a page that did not load does."""
        try:
            async with asyncio.timeout_at(self.schedule.pages_by):
                return await self.robots.get(url)
        except TimeoutError:
            origin = origin_of(url)
            message = f"{page} was not fetched: {origin}/robots.txt did not answer within the job's timeout_s"
            raise JobTimeout(message) from None


async def run_crawl(params: CrawlParams, ctx: KindContext) -> JobResult:
    return await Crawl(params, ctx).run()


KIND = Kind("crawl", parse_crawl, run_crawl)
