"""Two litejobs processes on one SQLite file: `max_depth` holds across them, and a cancel made
through the process that does not run the job stops its work within about `[store] recheck_s`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from tests.support import ServerProcess, TargetSite, wait_until


@contextlib.contextmanager
def two_processes(tmp_path: Path, **b_env: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers on one file. Leases of 60 s: a renewal (every 20 s) comes too late to explain
    a stop within 10 s."""
    env = {"LITEJOBS_QUEUE_LEASE_S": "60", "LITEJOBS_QUEUE_MAX_DEPTH": "100"}
    a = ServerProcess(tmp_path / "jobs.db", env=env)
    try:
        b = ServerProcess(tmp_path / "jobs.db", env={**env, **b_env})
    except BaseException:
        a.kill()
        raise
    try:
        yield a, b
    finally:
        for process in (a, b):
            process.kill()


def test_a_cancel_through_the_other_process_stops_the_work(tmp_path: Path, site: TargetSite) -> None:
    began, ended = threading.Event(), threading.Event()

    async def hold(request: web.Request) -> web.Response:
        began.set()
        try:
            await asyncio.sleep(30)  # cancelled when the fetcher drops the connection
        finally:
            ended.set()
        return web.Response(text="<p>late</p>", content_type="text/html")

    # b runs no jobs: the job runs in a, and is cancelled through b
    with two_processes(tmp_path, LITEJOBS_QUEUE_ENABLED="false") as (a, b):
        job = a.http.submit({"url": site.add("/hold", hold)})["job_id"]
        assert wait_until(began.is_set, 15)

        resp = b.http.delete(f"/v1/jobs/{job}")

        assert resp.status == 200 and resp.json["status"] == "cancelled"
        assert wait_until(ended.is_set, 10), "the job's request was still open 10 s after the cancel"
        assert a.http.get(f"/v1/jobs/{job}").json["status"] == "cancelled"
        assert site.hits["/hold"] == 1


def test_max_depth_holds_across_both_processes(tmp_path: Path) -> None:
    later = {"input": {"url": "http://127.0.0.1:9/never"}, "delay_s": 600}  # queued, never claimed
    with two_processes(tmp_path) as (a, b):
        assert a.http.post("/v1/jobs", later).status == 202  # a counts the queue: 1
        assert b.http.post("/v1/jobs/batch", {"jobs": [later] * 95}).status == 202  # 96

        refused = a.http.post("/v1/jobs/batch", {"jobs": [later] * 85})
        singles = [a.http.post("/v1/jobs", later).status for _ in range(5)]

        assert refused.status == 429 and refused.json["error"]["code"] == "queue_full"
        assert singles == [202, 202, 202, 202, 429]
        for process in (a, b):
            assert process.http.get("/v1/stats").json["queue_depth"] == 100
