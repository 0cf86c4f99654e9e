"""The `map` kind: a site's URLs, fast and without their content, from sitemaps, robots.txt and the start page."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litejobs.errors import JobError, UpstreamStatus
from litejobs.extract import Document
from litejobs.fields import Fields
from litejobs.jobs import JobResult, JobState
from litejobs.kinds import Kind, KindContext
from litejobs.kinds.crawl import MAX_PATTERNS
from litejobs.politeness import HostGate
from litejobs.robots import RobotsCache
from litejobs.sitemaps import MAX_SITEMAP_BYTES, Sitemap, parse_sitemap
from litejobs.urls import Scope, host_key, normalize_url, origin_of

DEFAULT_MAX_URLS = 1000
MAX_URLS = 100_000
#: sitemap files read per map (indexes included), and their total size once decompressed
MAX_SITEMAP_FILES = 50
MAX_SITEMAP_TOTAL_BYTES = 200 * 1024 * 1024
#: sitemap files fetched at once
SITEMAP_CONCURRENCY = 4


@dataclass(frozen=True)
class MapParams:
    url: str
    max_urls: int = DEFAULT_MAX_URLS
    use_sitemap: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    same_domain: bool = True
    allow_subdomains: bool = False


def parse_map(raw: Mapping[str, Any]) -> MapParams:
    f = Fields(raw, "input")
    params = MapParams(
        url=f.url("url"),
        max_urls=f.int("max_urls", DEFAULT_MAX_URLS, low=1, high=MAX_URLS),
        use_sitemap=f.bool("use_sitemap", True),
        include=tuple(f.str_list("include", [], max_items=MAX_PATTERNS) or ()),
        exclude=tuple(f.str_list("exclude", [], max_items=MAX_PATTERNS) or ()),
        same_domain=f.bool("same_domain", True),
        allow_subdomains=f.bool("allow_subdomains", False),
    )
    for key in ("include", "exclude"):
        if any(not p.strip() or len(p) > 1000 for p in getattr(params, key)):
            f.problem(key, "patterns must be 1 to 1000 characters")
    f.finish()
    return params


class Found:
    """The URLs found so far: normalised, in scope, deduplicated, at most `limit`."""

    def __init__(self, scope: Scope, limit: int) -> None:
        self.scope = scope
        self.limit = limit
        self.urls: dict[str, None] = {}

    @property
    def full(self) -> bool:
        return len(self.urls) >= self.limit

    def add_all(self, urls: list[str]) -> int:
        added = 0
        for raw in urls:
            if self.full:
                break
            url = normalize_url(raw)
            if url is not None and url not in self.urls and self.scope.admits(url):
                self.urls[url] = None
                added += 1
        return added


class SiteMap:
    """One map run: the start page and the sitemaps, each fetched once through the host gate."""

    def __init__(self, params: MapParams, ctx: KindContext) -> None:
        self.params, self.ctx = params, ctx
        crawl = ctx.config.crawl
        self.gate = ctx.host_gate or HostGate(crawl.per_host_concurrency, crawl.per_host_delay_ms)
        self.start = normalize_url(params.url) or params.url
        scope = Scope.around(
            self.start,
            same_domain=params.same_domain,
            allow_subdomains=params.allow_subdomains,
            include=params.include,
            exclude=params.exclude,
        )
        self.found = Found(scope, params.max_urls)
        self.stats: dict[str, Any] = {"sitemaps_read": 0, "sitemaps_failed": 0, "from_sitemaps": 0, "from_page": 0}
        self.bytes_left = MAX_SITEMAP_TOTAL_BYTES

    async def run(self) -> JobResult:
        started = time.perf_counter()
        robots = RobotsCache(self.ctx.fetcher, self.gate, self.ctx.config.fetch.user_agent)
        try:
            async with asyncio.TaskGroup() as group:
                page_task = group.create_task(self._start_page())
                robots_task = group.create_task(robots.get(self.start))
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        links, error = page_task.result()
        self.found.add_all([self.start])
        self.stats["from_page"] = self.found.add_all(links)
        if self.params.use_sitemap:
            listed = [*robots_task.result().sitemaps, f"{origin_of(self.start)}/sitemap.xml"]
            await self._read_sitemaps(listed)
        if error is not None and self.stats["from_sitemaps"] == 0:
            raise error
        self.stats["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return JobResult(JobState.COMPLETED, {"urls": list(self.found.urls)}, self.stats)

    async def _start_page(self) -> tuple[list[str], JobError | None]:
        try:
            async with self.gate.slot(host_key(self.start)):
                page = await self.ctx.fetcher.fetch(self.start)
        except JobError as exc:
            return [], exc
        final = normalize_url(page.final_url) or self.start
        self.found.scope = self.found.scope.with_site_of(final)
        if page.status_code >= 400:
            exc = UpstreamStatus(page.status_code, f"the start page answered HTTP {page.status_code}")
            exc.retryable = page.status_code >= 500 or page.status_code == 429  # as a fetch job's
            return [], exc
        if "html" not in page.content_type and page.content_type:
            return [], None
        return await asyncio.to_thread(lambda: Document(page.text, page.final_url).links()), None

    async def _read_sitemaps(self, first: list[str]) -> None:
        """Sitemaps breadth-first (an index before its children), in order, a few at a time."""
        queue = deque(dict.fromkeys(u for u in (normalize_url(s) for s in first) if u))
        queued = set(queue)
        read = 0
        while queue and read < MAX_SITEMAP_FILES and self.bytes_left > 0 and not self.found.full:
            batch = [queue.popleft() for _ in range(min(SITEMAP_CONCURRENCY, len(queue), MAX_SITEMAP_FILES - read))]
            read += len(batch)
            for sitemap in await asyncio.gather(*(self._sitemap(url) for url in batch)):
                self.stats["from_sitemaps"] += self.found.add_all(sitemap.urls)
                for child in (normalize_url(c) for c in sitemap.sitemaps):
                    if child and child not in queued:
                        queued.add(child)
                        queue.append(child)

    async def _sitemap(self, url: str) -> Sitemap:
        cap = min(MAX_SITEMAP_BYTES, max(1, self.bytes_left))
        try:
            async with self.gate.slot(host_key(url)):
                page = await self.ctx.fetcher.fetch(url, max_body_bytes=min(cap, self.ctx.config.fetch.max_body_bytes))
        except JobError:
            self.stats["sitemaps_failed"] += 1
            return Sitemap()
        if page.status_code != 200:
            self.stats["sitemaps_failed"] += page.status_code != 404
            return Sitemap()
        sitemap = await asyncio.to_thread(parse_sitemap, page.body, cap)
        self.bytes_left -= sitemap.size
        self.stats["sitemaps_read"] += 1
        return sitemap


async def run_map(params: MapParams, ctx: KindContext) -> JobResult:
    return await SiteMap(params, ctx).run()


KIND = Kind("map", parse_map, run_map)
