"""Benchmark: renders/s through one pooled Chromium vs a Chromium per render, and the Chromium tree's memory.

Run on demand: `.venv/bin/python bench/bench_render.py [--renders 40] [--concurrency 4]`. Everything stays on
127.0.0.1: a local aiohttp page whose content JavaScript inserts after 200 ms, rendered with wait_for.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import warnings
from collections.abc import Awaitable, Callable

from aiohttp import web

from litejobs.browser import LOOPBACK_ONLY_RULES, BrowserPool, RenderRequest
from litejobs.chromium import group_pids, tree_memory_mb
from litejobs.config import BrowserConfig

# websockets 10.4, which pyppeteer pins, warns on every connect
warnings.filterwarnings("ignore", "remove loop argument", DeprecationWarning)

PAGE = """<!doctype html><html><head><title>bench</title></head><body><p>static part</p>
<script>setTimeout(() => {
  const div = document.createElement('div'); div.id = 'content'; div.textContent = 'Hello injected';
  document.body.appendChild(div);
}, 200);</script></body></html>"""


class AllowAll:
    def check_ip(self, ip: str) -> None:
        return None


def new_pool(max_pages: int) -> BrowserPool:
    return BrowserPool(BrowserConfig(max_pages=max_pages), AllowAll(), host_resolver_rules=LOOPBACK_ONLY_RULES)


async def start_site() -> tuple[web.AppRunner, str]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


async def timed_batch(
    count: int, concurrency: int, render_one: Callable[[], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run `count` renders, `concurrency` at a time; (wall seconds, per-render seconds)."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            started = time.monotonic()
            await render_one()
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.monotonic() - started, latencies


def report(label: str, count: int, wall_s: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(
        f"{label:<34} {count} renders in {wall_s:6.2f} s = {count / wall_s:5.2f} renders/s"
        f"   per render median {statistics.median(ordered):.3f} s, p95 {p95:.3f} s"
    )


async def pooled(url: str, count: int, concurrency: int) -> None:
    request = RenderRequest(url, wait_for="#content")
    async with new_pool(concurrency) as pool:
        await pool.render(request)  # launch outside the measurement

        async def render_one() -> None:
            assert "Hello injected" in (await pool.render(request)).html

        wall_s, latencies = await timed_batch(count, concurrency, render_one)
    report(f"pool (1 browser, {concurrency} pages)", count, wall_s, latencies)


async def browser_per_render(url: str, count: int, concurrency: int) -> None:
    request = RenderRequest(url, wait_for="#content")

    async def render_one() -> None:
        async with new_pool(1) as pool:
            assert "Hello injected" in (await pool.render(request)).html

    wall_s, latencies = await timed_batch(count, concurrency, render_one)
    report(f"a browser per render ({concurrency} at once)", count, wall_s, latencies)


def tree(pid: int) -> tuple[int, float, float]:
    pids = group_pids(pid, alive_only=True)
    rss_mb, pss_mb = tree_memory_mb(pids)
    return len(pids), rss_mb, pss_mb


async def memory(url: str, pages: int) -> None:
    async with new_pool(pages) as pool:
        await pool.render(RenderRequest(url))
        await asyncio.sleep(3)
        pid = pool.state()["pid"]
        idle = tree(pid)
        holding = [asyncio.ensure_future(pool.render(RenderRequest(url, wait_ms=4000))) for _ in range(pages)]
        await asyncio.sleep(2.5)
        busy = tree(pid)
        await asyncio.gather(*holding)
        await asyncio.sleep(5)
        after = tree(pid)
    for label, (procs, rss_mb, pss_mb) in (("idle", idle), (f"{pages} pages open", busy), ("5 s after", after)):
        print(f"chromium tree {label:<14} {procs:3d} processes  RSS {rss_mb:7.1f} MiB  PSS {pss_mb:6.1f} MiB")
    rss_mb, pss_mb = (busy[1] - idle[1]) / pages, (busy[2] - idle[2]) / pages
    print(f"per open page (busy - idle) / {pages}      RSS {rss_mb:7.1f} MiB  PSS {pss_mb:6.1f} MiB")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--renders", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    runner, url = await start_site()
    try:
        await pooled(url, args.renders, args.concurrency)
        await browser_per_render(url, args.renders, args.concurrency)
        await memory(url, args.concurrency)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
