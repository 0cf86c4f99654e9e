"""Retrying a job starts a new run: the earlier runs' attempts stay on record, the queue's limit holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from litejobs.jobs import JobResult, JobSpec, JobState
from litejobs.store import open_store
from tests.support import FakeClock, ServerThread, TargetSite, make_config
from tests.test_api import error_of

T0 = 1_800_000_000_000
LEASE = 30_000


def runs_of(detail: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(a["run"], a["attempt"], a["outcome"]) for a in detail]


def test_a_retried_job_keeps_every_attempt_of_its_earlier_run(
    tmp_path: Path, clock: FakeClock, store_url: str, site: TargetSite
) -> None:
    async def down_twice(request: web.Request) -> web.Response:
        if site.hits["/flaky"] <= 2:
            return web.Response(status=503, text="busy")
        return web.Response(text="<p>back</p>", content_type="text/html")

    url = site.add("/flaky", down_twice)
    with ServerThread(make_config(tmp_path, store={"url": store_url}), clock=clock) as server:
        job_id = server.http.submit({"url": url}, max_attempts=2)["job_id"]
        first = server.http.wait(job_id)
        assert first["status"] == "failed" and first["attempts"] == 2
        first_run = server.http.get(f"/v1/jobs/{job_id}").json["attempts_detail"]
        clock.advance(60)  # the new run's times cannot be mistaken for the first run's

        retried = server.http.post(f"/v1/jobs/{job_id}/retry")
        assert retried.status == 202 and retried.json["attempts"] == 0 and retried.json["started_at"] is None
        done = server.http.wait(job_id)

        assert done["status"] == "completed" and done["attempts"] == 1
        detail = server.http.get(f"/v1/jobs/{job_id}").json["attempts_detail"]
        assert runs_of(detail) == [(1, 1, "retry"), (1, 2, "failed"), (2, 1, "completed")]
        assert detail[:2] == first_run
        assert done["started_at"] == detail[2]["started_at"] > first["started_at"]


def test_a_retry_on_a_full_queue_answers_429_and_the_job_stays_failed(
    tmp_path: Path, store_url: str, site: TargetSite
) -> None:
    url = site.add_html("/down", "oops", status=500)
    config = make_config(tmp_path, store={"url": store_url}, queue={"max_depth": 2})
    with ServerThread(config) as server:
        job_id = server.http.submit({"url": url}, max_attempts=1)["job_id"]
        assert server.http.wait(job_id)["status"] == "failed"
        before = server.http.get(f"/v1/jobs/{job_id}").json
        fillers = [server.http.submit({"url": url}, delay_s=60)["job_id"] for _ in range(2)]

        full = server.http.post(f"/v1/jobs/{job_id}/retry")

        assert full.status == 429 and error_of(full)["code"] == "queue_full"
        assert int(full.headers["retry-after"]) >= 1
        assert server.http.get(f"/v1/jobs/{job_id}").json == before
        assert server.http.get("/v1/stats").json["queue_depth"] == 2
        # with room again the same retry is taken
        server.http.delete(f"/v1/jobs/{fillers[0]}")
        assert server.http.post(f"/v1/jobs/{job_id}/retry").status == 202


def test_a_released_or_lost_attempt_is_numbered_within_its_run(tmp_path: Path, store_url: str) -> None:
    """Shutdown hands an attempt back uncounted (its row goes); a dead worker's attempt stays `lost`
    and counts. Neither may start a run of its own."""
    config = make_config(tmp_path, store={"url": store_url})

    async def main() -> list[tuple[int, int, str | None]]:
        async with open_store(config.store) as store:
            [sub] = await store.submit([JobSpec(kind="fetch", input={"url": "http://127.0.0.1/"}, owner="o")], T0, 9)
            job_id = sub.job.id
            await store.claim(1, "w", T0, LEASE)
            await store.fail(job_id, "w", {"code": "timeout", "message": "slow"}, None, T0 + 1, T0 + 10**9)
            await store.retry(job_id, T0 + 2, 9)
            await store.claim(1, "w", T0 + 3, LEASE)
            await store.release([job_id], "w", T0 + 4)  # shutdown: run 2's first attempt is not counted
            await store.claim(1, "w", T0 + 5, LEASE)
            await store.recover_expired(
                T0 + 6, 3, ["w"], retention_ms=86_400_000
            )  # its worker died: attempt 1 of run 2 is lost
            await store.claim(1, "w2", T0 + 7, LEASE)
            await store.finish(job_id, "w2", JobResult(JobState.COMPLETED), T0 + 8, T0 + 10**9)
            return [(a.run, a.number, a.outcome) for a in await store.attempts(job_id)]

    assert asyncio.run(main()) == [(1, 1, "failed"), (2, 1, "lost"), (2, 2, "completed")]
