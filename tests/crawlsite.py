"""A generated website for crawl and map tests, served on 127.0.0.1, and the crawl it should produce."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from tests.support import TargetSite

FAILING = 7
SLOW = 55
REDIRECTS = {"/moved": "/p/25"}
#: redirects linked from `/hub` only (a start page outside the tree): to pages the hub links too, to
#: one page twice, to a disallowed page; HUB_FAR_REDIRECTS lead to the same pages on another origin
HUB_REDIRECTS = {"/docs": "/docs/", "/again": "/p/1", "/twice-1": "/p/2", "/twice-2": "/p/2", "/door": "/private/0"}
HUB_FAR_REDIRECTS = {"/far": "/p/4", "/far-door": "/private/0"}


def path_of(i: int) -> str:
    return "/" if i == 0 else f"/p/{i}"


class CrawlSite:
    """`CrawlSite(TargetSite(), pages=300)`; `hits` counts requests per path; limits are observed.

    Pages `/` and `/p/1` … `/p/{n-1}` form a ten-way tree with cycles (every page links home, to its
    parent and to its next sibling). Links come in awkward spellings (relative, upper-case scheme,
    fragments, escapes, empty queries) beside junk (mailto:, javascript:, images, another host).
    `/p/7` answers 500, `/p/55` is slow, `/moved` redirects to `/p/25`, robots.txt disallows
    `/private/`, and a sitemap index lists a plain and a gzipped child. `expected_crawl` is the
    breadth-first crawl of that model, written independently of litejobs. `/hub`, which no page
    links, links redirects (HUB_REDIRECTS, and HUB_FAR_REDIRECTS to `far_base_url`, the same site
    as `localhost`). `request_headers` keeps the headers of the last request for each page.
    """

    def __init__(self, site: TargetSite, pages: int = 300, *, delay_s: float = 0.0, slow_s: float = 0.5) -> None:
        self.site = site
        self.pages = pages
        self.delay_s = delay_s
        self.slow_s = slow_s
        self.in_flight = 0
        self.max_in_flight = 0
        #: (path, monotonic start) of every page request, in arrival order
        self.starts: list[tuple[str, float]] = []
        self.request_headers: dict[str, dict[str, str]] = {}
        self.far_base_url = f"http://localhost:{site.port}"
        for i in range(pages):
            site.add(path_of(i), self._page_handler(i))
        for i in range(0, pages, 50):
            site.add(f"/files/doc-{i}.txt", self._text(f"document {i}"))
        site.add("/private/0", self._html("<title>private</title><a href='/'>home</a>"))
        for old, new in REDIRECTS.items():
            site.add(old, self._redirect(new))
        site.add("/robots.txt", self._text(self.robots_txt()))
        site.add("/sitemap_index.xml", self._bytes(self.sitemap_index().encode(), "application/xml"))
        site.add("/sitemaps/main.xml", self._bytes(self.urlset(range(0, 150)).encode(), "application/xml"))
        extra = gzip.compress(self.urlset(range(150, pages), extra=True).encode())
        site.add("/sitemaps/extra.xml.gz", self._bytes(extra, "application/x-gzip"))
        self._add_hub()

    def _add_hub(self) -> None:
        redirects = {**HUB_REDIRECTS, **{old: self.far_base_url + new for old, new in HUB_FAR_REDIRECTS.items()}}
        hrefs = ["/docs", "/docs/", "/again", "/p/1", "/twice-1", "/twice-2", "/door", *HUB_FAR_REDIRECTS]
        anchors = "".join(f'<a href="{href}">link</a>' for href in hrefs)
        self.site.add("/hub", self._html(f"<title>hub</title>{anchors}"))
        self.site.add("/docs/", self._html("<title>docs</title><a href='/'>home</a>"))
        for old, new in redirects.items():
            self.site.add(old, self._redirect(new))

    @property
    def hits(self) -> Counter[str]:
        return self.site.hits

    def url(self, path: str) -> str:
        return self.site.url(path)

    # --- the model ---------------------------------------------------------------------------

    def links(self, path: str) -> list[str]:
        """The distinct same-site links of a page, normalised, in page order (the model)."""
        if path == "/":
            i = 0
        elif path.startswith("/p/"):
            i = int(path[3:])
        else:
            return []
        if i == FAILING:
            return []
        out = [] if i == 0 else ["/"]
        out += [path_of(c) for c in range(10 * i + 1, min(10 * i + 11, self.pages))]
        parent = (i - 1) // 10
        if i > 0 and parent > 0:
            out.append(path_of(parent))
        if 0 < i < self.pages - 1:
            out.append(path_of(i + 1))
        if i % 50 == 0:
            out.append(f"/files/doc-{i}.txt")
        if i == 0:
            out += ["/private/0", "/moved"]
        return list(dict.fromkeys(p for p in out if p != path))

    def expected_crawl(
        self,
        max_pages: int,
        max_depth: int,
        *,
        respect_robots: bool = True,
        follow: Callable[[str], bool] = lambda path: True,
    ) -> set[tuple[str, int]]:
        """(path, depth) of every page a breadth-first crawl from `/` stores; `follow` filters links."""
        level, seen, out, depth = ["/"], {"/"}, [], 0
        while level and len(out) < max_pages:
            fetched = level[: max_pages - len(out)]
            out += [(path, depth) for path in fetched]
            if depth == max_depth or len(out) >= max_pages:
                break
            finals = [REDIRECTS.get(path, path) for path in fetched]
            seen.update(finals)
            level = []
            for final in finals:
                for link in self.links(final):
                    if link not in seen and follow(link):
                        seen.add(link)
                        if not (respect_robots and link.startswith("/private/")):
                            level.append(link)
            depth += 1
        return set(out)

    # --- the pages ---------------------------------------------------------------------------

    def page_html(self, i: int) -> str:
        base = self.site.base_url
        here = path_of(i)
        hrefs = [] if i == 0 else [base.replace("http://", "HTTP://") + "/#top"]
        for n, child in enumerate(range(10 * i + 1, min(10 * i + 11, self.pages))):
            # one child through an escaped unreserved character, the rest relative, then a repeat
            hrefs.append(f"/%70/{child}" if n == 0 else (f"p/{child}" if i == 0 else f"{child}"))
            hrefs.append(f"{path_of(child)}#again")
        parent = (i - 1) // 10
        if i > 0 and parent > 0:
            hrefs.append(f"../p/{parent}")
        if 0 < i < self.pages - 1:
            hrefs.append(f"{base}/p/{i + 1}?")
        if i % 50 == 0:
            hrefs.append(f"/files/doc-{i}.txt")
        if i == 0:
            hrefs += ["/private/0", "/moved"]
        junk = ["mailto:a@example.org", "javascript:void(0)", "tel:+1555", f"/img/{i}.png", "#top", ""]
        junk += [f"http://localhost:{self.site.port}/offsite", "ftp://example.org/file"]
        anchors = "".join(f'<a href="{h}">link</a>' for h in hrefs + junk)
        return (
            f"<html><head><title>Page {i}</title></head><body><h1>Page {i}</h1>"
            f'<span class="n">{i}</span><p class="path">{here}</p>{anchors}</body></html>'
        )

    def _page_handler(self, i: int) -> object:
        async def handler(request: web.Request) -> web.Response:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.starts.append((request.path, time.monotonic()))
            self.request_headers[request.path] = dict(request.headers)
            try:
                await asyncio.sleep(self.delay_s + (self.slow_s if i == SLOW else 0.0))
                if i == FAILING:
                    return web.Response(status=500, text="boom")
                return web.Response(text=self.page_html(i), content_type="text/html")
            finally:
                self.in_flight -= 1

        return handler

    def robots_txt(self) -> str:
        return (
            "# test robots\nUser-agent: otherbot\nDisallow: /\n\n"
            "User-agent: *\nDisallow: /private/\nAllow: /p/\n\n"
            f"Sitemap: {self.site.base_url}/sitemap_index.xml\n"
        )

    def sitemap_index(self) -> str:
        children = "".join(
            f"<sitemap><loc>{self.url(p)}</loc></sitemap>" for p in ("/sitemaps/main.xml", "/sitemaps/extra.xml.gz")
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{children}</sitemapindex>'
        )

    def urlset(self, indexes: range, *, extra: bool = False) -> str:
        entries = [f"<url><loc>{self.url(path_of(i))}</loc><lastmod>2026-01-01</lastmod></url>" for i in indexes]
        if extra:  # another host, and a CDATA spelling of a page already listed
            entries.append("<url><loc>https://elsewhere.example/p/1</loc></url>")
            entries.append(f"<url><loc><![CDATA[{self.url('/p/1')}#x]]></loc></url>")
        body = "".join(entries)
        return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>'

    @staticmethod
    def _html(html: str) -> object:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        return handler

    @staticmethod
    def _text(text: str) -> object:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=text, content_type="text/plain")

        return handler

    @staticmethod
    def _bytes(data: bytes, content_type: str) -> object:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=data, content_type=content_type)

        return handler

    @staticmethod
    def _redirect(target: str) -> object:
        async def handler(request: web.Request) -> web.Response:
            raise web.HTTPMovedPermanently(target)

        return handler
