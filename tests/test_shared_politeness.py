"""Per-host politeness across nodes on one PostgreSQL: the store's lease and spacing statements, the
SharedHostGate on top of them, and two real nodes crawling one host (at most per_host_concurrency
requests in flight, starts per_host_delay_ms apart, a Crawl-delay one node learned honoured by the
other, a SIGKILLed node's slot free again after its lease)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.config import load_config
from litejobs.politeness import Gate, HostGate
from litejobs.shared_politeness import SharedHostGate, host_gate_for
from litejobs.store.postgres import PostgresStore
from tests.crawlsite import CrawlSite
from tests.support import ServerProcess, TargetSite

HOST = "site.test:80"
LONG = 60_000
#: a gap this much shorter than the delay counts as short (the target saw two starts too close)
LATE_S = 0.08


async def _query(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(url: str, sql: str, *args: Any) -> list[Any]:
    return asyncio.run(_query(url, sql, *args))


@asynccontextmanager
async def nodes(pg_url: str, count: int = 2) -> AsyncIterator[list[PostgresStore]]:
    """`count` stores on one database: each stands for a node (its own pool and listener)."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(PostgresStore(pg_url)) for _ in range(count)]


def run_nodes(pg_url: str, body: Callable[[list[PostgresStore]], Awaitable[None]], count: int = 2) -> None:
    async def main() -> None:
        async with nodes(pg_url, count) as stores:
            await body(stores)

    asyncio.run(main())


async def until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    """Poll `predicate` every 20 ms; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# --- the store's statements ----------------------------------------------------------------------


def test_slots_are_leased_up_to_the_limit_across_nodes_and_a_release_frees_one(pg_url: str) -> None:
    async def body(stores: list[PostgresStore]) -> None:
        one, two = stores
        first = await one.take_host_slot(HOST, "one:a", 2, LONG, 0)
        second = await one.take_host_slot(HOST, "one:b", 2, LONG, 0)
        assert {first.slot, second.slot} == {0, 1}
        full = await two.take_host_slot(HOST, "two:a", 2, LONG, 0)
        assert full.slot is None and full.free_slots == 0
        await one.release_host_slot(HOST, "one:a")
        again = await two.take_host_slot(HOST, "two:a", 2, LONG, 0)
        assert again.slot == first.slot
        # another host has slots of its own
        assert (await two.take_host_slot("other.test:80", "two:b", 2, LONG, 0)).slot is not None

    run_nodes(pg_url, body)


def test_an_expired_lease_is_taken_over_and_its_old_holder_can_neither_renew_nor_free_it(pg_url: str) -> None:
    async def body(stores: list[PostgresStore]) -> None:
        dead, alive = stores
        assert (await dead.take_host_slot(HOST, "dead:a", 1, 1, 0)).slot == 0  # a 1 ms lease
        taken: list[int | None] = []

        async def taken_over() -> bool:
            taken.append((await alive.take_host_slot(HOST, "alive:a", 1, LONG, 0)).slot)
            return taken[-1] is not None

        await until(taken_over)
        assert taken[-1] == 0
        assert not await dead.renew_host_slot(HOST, "dead:a", LONG)
        await dead.release_host_slot(HOST, "dead:a")
        assert (await dead.take_host_slot(HOST, "dead:b", 1, LONG, 0)).slot is None
        assert await alive.renew_host_slot(HOST, "alive:a", LONG)

    run_nodes(pg_url, body)


def test_starts_are_reserved_a_delay_apart_and_a_stored_crawl_delay_spaces_every_node(pg_url: str) -> None:
    async def body(stores: list[PostgresStore]) -> None:
        one, two = stores
        # 10 s apart, so the few milliseconds between statements cannot hide the reservations
        first = await one.take_host_slot(HOST, "one:a", 3, LONG, 10_000)
        second = await two.take_host_slot(HOST, "two:a", 3, LONG, 10_000)
        third = await one.take_host_slot(HOST, "one:b", 3, LONG, 10_000)
        assert first.wait_s < 1 and 9 < second.wait_s <= 10 and 19 < third.wait_s <= 20
        assert first.delay_ms == second.delay_ms == 10_000
        # a try that finds no slot reserves nothing: the next start is still 30 s ahead, not 40
        assert (await two.take_host_slot(HOST, "two:b", 3, LONG, 10_000)).slot is None
        await one.release_host_slot(HOST, "one:a")
        fourth = await two.take_host_slot(HOST, "two:b", 3, LONG, 10_000)
        assert fourth.slot == first.slot and 29 < fourth.wait_s <= 30
        assert (await one.take_host_slot("other.test:80", "one:d", 1, LONG, 10_000)).wait_s < 1

        # a Crawl-delay one node stores spaces the other node, whose own delay is 0
        await one.take_host_slot("slow.test:80", "one:e", 4, LONG, 0, 30_000)
        later = await two.take_host_slot("slow.test:80", "two:e", 4, LONG, 0)
        assert later.delay_ms == 30_000 and 29 < later.wait_s <= 30

    run_nodes(pg_url, body)


def test_idle_host_rows_and_expired_leases_are_swept(pg_url: str) -> None:
    async def body(stores: list[PostgresStore]) -> None:
        [store] = stores
        await store.take_host_slot("idle.test:80", "n:a", 1, LONG, 0)
        await store.release_host_slot("idle.test:80", "n:a")
        await store.take_host_slot("busy.test:80", "n:b", 1, LONG, 0)
        await store.take_host_slot("dead.test:80", "n:c", 1, 1, 0)  # a 1 ms lease: expired at once
        assert await store.sweep_hosts(3600) == 0  # nothing has been idle for an hour
        await asyncio.sleep(0.01)
        assert await store.sweep_hosts(0) == 2
        hosts = await store._fetch("SELECT host FROM host_gates ORDER BY host")
        leases = await store._fetch("SELECT host FROM host_leases")
        assert [r["host"] for r in hosts] == ["busy.test:80"] and [r["host"] for r in leases] == ["busy.test:80"]

    run_nodes(pg_url, body, count=1)


def test_a_release_notifies_the_other_nodes_only_while_one_waits(pg_url: str) -> None:
    async def body(stores: list[PostgresStore]) -> None:
        one, two = stores
        heard: list[str] = []
        two.on_host_released(heard.append)
        await one.take_host_slot(HOST, "one:a", 1, LONG, 0)
        await one.release_host_slot(HOST, "one:a")  # nobody waited: no NOTIFY
        await one.take_host_slot(HOST, "one:b", 1, LONG, 0)
        assert (await two.take_host_slot(HOST, "two:a", 1, LONG, 0)).slot is None  # two waits
        await one.release_host_slot(HOST, "one:b")

        async def notified() -> bool:
            return bool(heard)

        await until(notified)
        await one.take_host_slot(HOST, "one:c", 1, LONG, 0)
        await one.release_host_slot("nobody-waits.test:80", "one:x")  # no such lease: no NOTIFY
        await one.release_host_slot(HOST, "one:c")
        await until(lambda: notified_twice(heard))
        # notifications arrive in commit order: the first release, unwaited for, sent none
        assert heard == [HOST, HOST]

    async def notified_twice(heard: list[str]) -> bool:
        return len(heard) >= 2

    run_nodes(pg_url, body)


# --- the gate ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "gate_type"), [("true", SharedHostGate), ("false", HostGate)])
def test_shared_gate_false_keeps_the_in_memory_gate_on_postgresql(pg_url: str, setting: str, gate_type: type) -> None:
    """[crawl] shared_gate = false: each node's limits hold for its own requests only, with no statements."""
    crawl = load_config(env={"LITEJOBS_CRAWL_SHARED_GATE": setting}).crawl

    async def body(stores: list[PostgresStore]) -> None:
        assert type(host_gate_for(stores[0], crawl, node="n")) is gate_type

    run_nodes(pg_url, body, count=1)


@pytest.mark.parametrize(("shared", "peak"), [(True, 2), (False, 4)], ids=["shared", "per-node-control"])
def test_two_gates_on_one_database_keep_the_host_limit_together(pg_url: str, shared: bool, peak: int) -> None:
    """The control case: per-node HostGates let each node have 2 in flight, so 4 in all."""

    async def body(stores: list[PostgresStore]) -> None:
        gates: list[Gate] = [SharedHostGate(s, 2, 0, lease_s=5) if shared else HostGate(2, 0) for s in stores]
        in_flight, most = 0, 0

        async def request(gate: Gate) -> None:
            nonlocal in_flight, most
            async with gate.slot(HOST):
                in_flight += 1
                most = max(most, in_flight)
                await asyncio.sleep(0.02)
                in_flight -= 1

        await asyncio.gather(*(request(gate) for gate in gates for _ in range(8)))
        assert most == peak
        assert not await stores[0]._fetch("SELECT 1 FROM host_leases")

    run_nodes(pg_url, body)


def test_a_cancelled_waiter_and_a_cancelled_holder_leave_no_lease(pg_url: str) -> None:
    async def body(stores: list[PostgresStore]) -> None:
        holder_gate, waiter_gate = (SharedHostGate(s, 1, 0, lease_s=60) for s in stores)
        inside = asyncio.Event()

        async def hold() -> None:
            async with holder_gate.slot(HOST):
                inside.set()
                await asyncio.Event().wait()

        async def wait() -> None:
            async with waiter_gate.slot(HOST):
                raise AssertionError("the slot is held")

        holding = asyncio.create_task(hold())
        await inside.wait()
        waiting = asyncio.create_task(wait())

        async def waiter_has_polled() -> bool:
            rows = await stores[0]._fetch("SELECT waited_at FROM host_gates WHERE host = $1", HOST)
            return rows[0]["waited_at"] is not None

        await until(waiter_has_polled)
        waiting.cancel()
        holding.cancel()
        await asyncio.gather(holding, waiting, return_exceptions=True)
        assert not await stores[0]._fetch("SELECT holder FROM host_leases")
        async with asyncio.timeout(5), waiter_gate.slot(HOST):  # free at once, not after the 60 s lease
            pass

    run_nodes(pg_url, body)


def test_a_crawl_delay_set_on_one_gate_spaces_the_other(pg_url: str) -> None:
    async def body(stores: list[PostgresStore]) -> None:
        learner, other = (SharedHostGate(s, 4, 0, lease_s=5) for s in stores)
        learner.set_crawl_delay(HOST, 30)  # as RobotsCache does after reading robots.txt
        async with learner.slot(HOST):  # the next request carries it to the database
            pass
        waits: list[float] = []

        async def note_wait(seconds: float) -> None:
            waits.append(seconds)

        other.sleep = note_wait
        async with other.slot(HOST):
            pass
        assert len(waits) == 1 and 29 < waits[0] <= 30 and other.delay_s(HOST) == 30

    run_nodes(pg_url, body)


# --- two real nodes ------------------------------------------------------------------------------


def node(tmp_path: Path, name: str, pg_url: str, **crawl: Any) -> ServerProcess:
    env = {
        "LITEJOBS_STORE_URL": pg_url,
        "LITEJOBS_STORE_FILES_DIR": str(tmp_path / "files"),
        "LITEJOBS_QUEUE_CONCURRENCY": "1",  # one job per node: two crawls run on two nodes
    }
    env.update({f"LITEJOBS_CRAWL_{key.upper()}": str(value) for key, value in crawl.items()})
    return ServerProcess(tmp_path / f"{name}.db", env=env)


@pytest.fixture
def two_nodes(tmp_path: Path, pg_url: str, request: pytest.FixtureRequest) -> Iterator[list[ServerProcess]]:
    crawl = request.param
    started = [node(tmp_path, "one", pg_url, **crawl)]
    try:
        started.append(node(tmp_path, "two", pg_url, **crawl))
        yield started
    finally:
        for proc in started:
            if proc.proc.poll() is None:
                proc.terminate()


def crawl_on_both(nodes_: list[ServerProcess], pg_url: str, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Submit one crawl per node at once and wait for both; assert each ran on its own node."""
    jobs = [n.http.submit(body, kind="crawl", timeout_s=120) for n, body in zip(nodes_, inputs, strict=True)]
    done = [n.http.wait(job["job_id"], 120) for n, job in zip(nodes_, jobs, strict=True)]
    assert all(job["status"] in ("completed", "partial") for job in done), [
        (job["status"], job["error"], [a["error"] for a in job["attempts_detail"]]) for job in done
    ]
    owners = query(pg_url, "SELECT DISTINCT split_part(lease_owner, ':', 2) FROM jobs")
    assert {r[0] for r in owners} == {str(n.proc.pid) for n in nodes_}
    return done


def gaps(starts: list[float]) -> list[float]:
    ordered = sorted(starts)
    return [b - a for a, b in itertools.pairwise(ordered)]


def assert_spaced(starts: list[float], delay_s: float) -> None:
    """Starts at least `delay_s` apart, as the target saw them. The gate reserves starts exactly
    `delay_s` apart, but a request can reach the target late (a busy 2-core machine delays a
    process by 150 ms at times), never early: one late arrival makes one short gap after a long
    one. So: at most one short gap, a median gap of the delay, and the whole series at least as
    long as its delays less one. Two nodes spacing on their own interleave two series instead:
    about half the gaps short, the median half the delay, the series half as long."""
    between = gaps(starts)
    shown = [round(g, 3) for g in between]
    assert sum(g < delay_s - LATE_S for g in between) <= 1, shown
    assert sorted(between)[len(between) // 2] >= delay_s * 0.9, shown
    assert max(starts) - min(starts) >= (len(between) - 1) * delay_s, shown


class TreeSite:
    """A binary tree of pages (n links to 2n+1 and 2n+2) that notes how many requests were ever in
    flight at once. Answer times differ page to page, so one crawl's pages seldom finish together."""

    def __init__(self, site: TargetSite) -> None:
        self.in_flight = self.most = self.served = 0
        self.url = site.add("/tree", self._page)

    async def _page(self, request: web.Request) -> web.Response:
        n = int(request.query["n"])
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.02 + n % 7 * 0.013)
        finally:
            self.in_flight -= 1
            self.served += 1
        links = "".join(f'<a href="/tree?n={child}">{child}</a>' for child in (2 * n + 1, 2 * n + 2))
        return web.Response(text=f"<title>{n}</title>{links}", content_type="text/html")


@pytest.mark.slow
@pytest.mark.parametrize("two_nodes", [{"per_host_concurrency": 2}], indirect=True)
def test_two_nodes_crawling_one_host_keep_its_concurrency_together(
    two_nodes: list[ServerProcess], site: TargetSite, pg_url: str
) -> None:
    target = TreeSite(site)
    crawl = {"url": f"{target.url}?n=0", "max_pages": 40, "max_depth": 10, "respect_robots": False}
    crawl_on_both(two_nodes, pg_url, [crawl, crawl])
    assert target.served >= 80
    # each node alone runs 4 fetches for its crawl and would keep 2 in flight: 4 at once with two nodes
    assert target.most == 2


@pytest.mark.slow
@pytest.mark.parametrize("two_nodes", [{"per_host_concurrency": 1, "per_host_delay_ms": 200}], indirect=True)
def test_two_nodes_crawling_one_host_space_their_starts_by_the_delay(
    two_nodes: list[ServerProcess], site: TargetSite, pg_url: str
) -> None:
    target = CrawlSite(site, pages=30)
    crawl = {"url": target.url("/"), "max_pages": 8, "max_depth": 2, "respect_robots": False}
    crawl_on_both(two_nodes, pg_url, [crawl, crawl])
    starts = [at for _, at in target.starts]
    assert len(starts) == 16
    assert_spaced(starts, 0.2)


def robots_site(site: TargetSite, delay_s: float) -> list[float]:
    """A chain of fast pages behind a robots.txt with a Crawl-delay; returns the page starts."""
    starts: list[float] = []
    site.add("/robots.txt", lambda _: text(f"User-agent: *\nCrawl-delay: {delay_s}\n"))

    async def page(request: web.Request) -> web.Response:
        starts.append(time.monotonic())
        n = int(request.query.get("n", "0"))
        return web.Response(text=f'<a href="/page?n={n + 1}">next</a>', content_type="text/html")

    site.add("/page", page)
    return starts


async def text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain")


@pytest.mark.slow
def test_a_crawl_delay_learned_by_one_node_spaces_the_next_node(tmp_path: Path, site: TargetSite, pg_url: str) -> None:
    starts = robots_site(site, 0.3)
    learner = node(tmp_path, "learner", pg_url)
    try:  # reads robots.txt, and stores its Crawl-delay with its next request
        job = learner.http.submit({"url": site.url("/page?n=0"), "max_pages": 2, "max_depth": 5}, kind="crawl")
        assert learner.http.wait(job["job_id"])["status"] == "completed"
    finally:
        learner.terminate()
    starts.clear()
    other = node(tmp_path, "other", pg_url)
    try:  # never reads robots.txt itself
        crawl = {"url": site.url("/page?n=0"), "max_pages": 6, "max_depth": 10, "respect_robots": False}
        job = other.http.submit(crawl, kind="crawl")
        assert other.http.wait(job["job_id"])["status"] == "completed"
    finally:
        other.terminate()
    assert site.hits["/robots.txt"] == 1 and len(starts) == 6
    assert_spaced(starts, 0.3)


@pytest.mark.slow
@pytest.mark.parametrize("two_nodes", [{"per_host_concurrency": 1, "host_lease_s": 1}], indirect=True)
def test_a_sigkilled_node_frees_its_slot_once_its_lease_expires(
    two_nodes: list[ServerProcess], site: TargetSite, pg_url: str
) -> None:
    doomed, survivor = two_nodes
    hanging = asyncio.Event()  # set on the first request to /hang, which then never answers
    fast_starts: list[float] = []

    async def hang(request: web.Request) -> web.Response:
        if not hanging.is_set():
            hanging.set()
            await asyncio.sleep(3600)
        return web.Response(text="late", content_type="text/html")

    async def fast(request: web.Request) -> web.Response:
        fast_starts.append(time.monotonic())
        return web.Response(text="fast", content_type="text/html")

    site.add("/hang", hang)
    site.add("/fast", fast)
    doomed.http.submit({"url": site.url("/hang"), "max_depth": 0, "respect_robots": False}, kind="crawl")
    assert wait_for(hanging.is_set)
    waiting = survivor.http.submit({"url": site.url("/fast"), "max_depth": 0, "respect_robots": False}, kind="crawl")
    assert wait_for(lambda: survivor.http.get(f"/v1/jobs/{waiting['job_id']}").json["status"] == "active")
    time.sleep(2.0)  # two lease lengths: the doomed node renews its lease meanwhile
    assert fast_starts == []
    killed_at = time.monotonic()
    doomed.kill()
    assert survivor.http.wait(waiting["job_id"], 30)["status"] == "completed"
    assert len(fast_starts) == 1 and fast_starts[0] > killed_at


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
