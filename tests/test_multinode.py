"""Two litejobs processes on one PostgreSQL: one queue, no attempt run twice at once, a dead node's
jobs finished by the other once their leases expire."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support import ServerProcess, TargetSite

JOBS = 2000
BATCH = 100


async def _query(url: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def query(url: str, sql: str) -> list[Any]:
    return asyncio.run(_query(url, sql))


def statuses(url: str) -> dict[str, int]:
    return {r[0]: r[1] for r in query(url, "SELECT status, count(*) FROM jobs GROUP BY status")}


class Overlaps:
    """A target page that notes, per job (?n=), how many fetches of it were ever in flight at once."""

    def __init__(self, site: TargetSite, delay_s: float) -> None:
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.url = site.add("/job", self._handler)
        self.delay_s = delay_s

    async def _handler(self, request: web.Request) -> web.Response:
        n = request.query["n"]
        self.in_flight[n] += 1
        self.most[n] = max(self.most[n], self.in_flight[n])
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight[n] -= 1
        return web.Response(text=f"<p>{n}</p>", content_type="text/html")


def node(tmp_path: Path, name: str, pg_url: str) -> ServerProcess:
    return ServerProcess(
        tmp_path / f"{name}.db",
        env={
            "LITEJOBS_STORE_URL": pg_url,
            "LITEJOBS_STORE_FILES_DIR": str(tmp_path / "files"),
            "LITEJOBS_QUEUE_CONCURRENCY": "16",
            "LITEJOBS_QUEUE_LEASE_S": "2",
        },
    )


def wait_until(predicate: Any, timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return False


@pytest.mark.slow
def test_two_nodes_share_the_queue_and_survive_one_sigkill(tmp_path: Path, site: TargetSite, pg_url: str) -> None:
    target = Overlaps(site, 0.05)
    one, two = node(tmp_path, "one", pg_url), node(tmp_path, "two", pg_url)
    try:
        for start in range(0, JOBS, BATCH):
            body = {"jobs": [{"input": {"url": f"{target.url}?n={n}"}} for n in range(start, start + BATCH)]}
            resp = (one if start // BATCH % 2 == 0 else two).http.post("/v1/jobs/batch", body)
            assert resp.status == 202, resp.body

        def both_busy() -> bool:
            owners = query(pg_url, "SELECT DISTINCT split_part(lease_owner, ':', 2) FROM jobs WHERE status = 'active'")
            return len(owners) == 2 and statuses(pg_url).get("completed", 0) >= JOBS // 4

        assert wait_until(both_busy, 60), statuses(pg_url)
        one.kill()
        assert wait_until(lambda: statuses(pg_url) == {"completed": JOBS}, 120), statuses(pg_url)

        # the kill left jobs mid-run; the other node recovered them and finished them
        lost = query(pg_url, "SELECT count(*) FROM attempts WHERE outcome = 'lost'")
        assert lost[0][0] > 0
        assert max(target.most.values()) == 1  # no job was ever fetched twice at once
        assert len(target.most) == JOBS
        # the store's record agrees: each job's attempts follow one another
        overlapping = query(
            pg_url,
            "SELECT count(*) FROM attempts a JOIN attempts b ON a.job_id = b.job_id AND a.number < b.number "
            "WHERE a.ended_at IS NULL OR a.ended_at > b.started_at",
        )
        assert overlapping[0][0] == 0
        runners = query(pg_url, "SELECT DISTINCT split_part(lease_owner, ':', 2) FROM jobs")
        assert {r[0] for r in runners} == {str(one.proc.pid), str(two.proc.pid)}
    finally:
        if one.proc.poll() is None:
            one.kill()
        two.terminate()
