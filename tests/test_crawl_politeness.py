"""Crawl politeness: per-host concurrency and delay across crawls, robots.txt's Crawl-delay, and the HostGate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from litejobs.politeness import MAX_CRAWL_DELAY_S, HostGate
from tests.crawl_support import crawl
from tests.crawlsite import CrawlSite
from tests.support import ServerThread, TargetSite, make_config


@pytest.fixture
def crawlsite(site: TargetSite) -> CrawlSite:
    return CrawlSite(site)


def test_one_hosts_limits_hold_across_two_concurrent_crawls(tmp_path: Path, site: TargetSite) -> None:
    crawlsite = CrawlSite(site, delay_s=0.02)
    with ServerThread(make_config(tmp_path, crawl={"per_host_concurrency": 2})) as server:
        ids = [
            server.http.submit({"url": crawlsite.url("/"), "max_pages": 40, "max_depth": 3}, kind="crawl")["job_id"]
            for _ in range(2)
        ]
        jobs = [server.http.wait(job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["partial", "partial"]
    assert jobs[0]["started_at"] < jobs[1]["completed_at"] and jobs[1]["started_at"] < jobs[0]["completed_at"]
    assert crawlsite.max_in_flight == 2


def test_the_per_host_delay_spaces_request_starts(tmp_path: Path, crawlsite: CrawlSite) -> None:
    with ServerThread(make_config(tmp_path, crawl={"per_host_delay_ms": 80, "per_host_concurrency": 4})) as server:
        crawl(server.http, url=crawlsite.url("/"), max_pages=8, max_depth=1)
    starts = [at for _, at in crawlsite.starts]
    # The gate spaces the starts it grants; arrival times add the client's jitter, so the span is checked.
    assert len(starts) == 8 and starts[-1] - starts[0] >= 7 * 0.08 - 0.05


def test_a_robots_crawl_delay_longer_than_the_configured_one_wins(server: ServerThread, site: TargetSite) -> None:
    starts: list[float] = []

    async def page(request: web.Request) -> web.Response:
        starts.append(time.monotonic())
        links = "".join(f'<a href="/d/{n}">{n}</a>' for n in range(3))
        return web.Response(text=f"<title>d</title>{links}", content_type="text/html")

    for path in ("/d/", "/d/0", "/d/1", "/d/2"):
        site.add(path, page)
    site.add_html("/robots.txt", "User-agent: *\nCrawl-delay: 0.25\n")
    job = crawl(server.http, url=site.url("/d/"), max_depth=1)
    assert job["status"] == "completed" and len(starts) == 4 and starts[-1] - starts[0] >= 3 * 0.25 - 0.05


# --- HostGate ------------------------------------------------------------------------------------


class FrozenTime:
    """A clock that never moves, and a sleep that only notes how long it was asked to wait."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def through_gate(gate: HostGate, host: str, count: int) -> None:
    async def one() -> None:
        async with gate.slot(host):
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(count)))

    asyncio.run(main())


def test_the_gate_holds_per_host_concurrency_and_hosts_do_not_wait_for_each_other() -> None:
    gate = HostGate(2, 0)
    peak: dict[str, int] = {}

    async def one(host: str, hold: Callable[[], Awaitable[object]]) -> None:
        async with gate.slot(host):
            peak[host] = max(peak.get(host, 0), gate.in_flight(host))
            await hold()

    async def main() -> None:
        release_a = asyncio.Event()
        stuck = [asyncio.create_task(one("a", release_a.wait)) for _ in range(6)]
        await asyncio.sleep(0)
        # every request to "a" is held (two in its slots, four queued), and "b" still goes through
        await asyncio.wait_for(asyncio.gather(*(one("b", lambda: asyncio.sleep(0.001)) for _ in range(6))), 10)
        assert gate.in_flight("a") == 2 and not any(task.done() for task in stuck)
        release_a.set()
        await asyncio.wait_for(asyncio.gather(*stuck), 10)

    asyncio.run(main())
    assert peak == {"a": 2, "b": 2}
    assert gate.in_flight("a") == 0 and gate._hosts == {}


def test_the_gate_spaces_starts_by_the_delay_or_a_longer_crawl_delay() -> None:
    time_ = FrozenTime()
    gate = HostGate(4, 100, clock=time_, sleep=time_.sleep)
    gate.set_crawl_delay("slow:80", 0.5)
    gate.set_crawl_delay("huge:80", 86_400)
    through_gate(gate, "fast:80", 4)
    assert time_.sleeps == pytest.approx([0.1, 0.2, 0.3])
    time_.sleeps.clear()
    through_gate(gate, "slow:80", 3)
    assert time_.sleeps == pytest.approx([0.5, 1.0])
    assert gate.delay_s("huge:80") == MAX_CRAWL_DELAY_S and gate.delay_s("other:80") == 0.1
