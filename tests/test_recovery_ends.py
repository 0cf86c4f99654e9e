"""Ends by recovery: a job whose worker vanished (another process on the file, a lapsed lease) is
announced like any other change, and a job failed that way is kept for its retention."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web

from tests.support import FakeClock, ServerThread, TargetSite, wait_until

#: a worker of another host: only its lease's expiry tells that it is gone
ELSEWHERE = "otherhost:4242:w"
LEASE_MS = 1000


#: jobs are submitted this far ahead, so that the worker elsewhere, not this server's, takes them
DELAY_S = 3600


def claimed_elsewhere_then_lost(server: ServerThread, clock: FakeClock, job_id: str) -> None:
    """The job is taken by a worker elsewhere whose lease then lapses; the sweeper recovers it."""
    assert server.app is not None
    [job] = server.call(server.app.store.claim(1, ELSEWHERE, clock() + DELAY_S * 1000, LEASE_MS))
    assert job.id == job_id
    clock.advance(DELAY_S + LEASE_MS / 1000 + 1)
    server.call(server.app.sweeper.recover_once())


def test_a_job_failed_by_recovery_is_announced_and_kept(
    server: ServerThread, clock: FakeClock, site: TargetSite
) -> None:
    received: list[tuple[str, dict[str, object]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers["X-Litejobs-Event"], json.loads(await request.read())))
        return web.Response(status=204)

    job_id = server.http.submit(
        {"url": site.url("/page")}, max_attempts=1, delay_s=DELAY_S, webhook={"url": site.add("/hook", hook)}
    )["job_id"]
    claimed_elsewhere_then_lost(server, clock, job_id)

    job = server.http.get(f"/v1/jobs/{job_id}").json
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"
    assert wait_until(lambda: len(received) == 1, 10), "no webhook for the end"
    [(event, body)] = received
    assert event == "failed" and body["status"] == "failed"
    metrics = server.http.get("/metrics").body.decode()
    assert 'litejobs_jobs_finished_total{kind="fetch",status="failed"} 1.0' in metrics
    # kept retention_s like any ended job: a sweep an hour later leaves it
    clock.advance(3600)
    assert server.app is not None
    assert server.call(server.app.sweeper.sweep_once()) == []
    assert server.http.get(f"/v1/jobs/{job_id}").json["status"] == "failed"


def test_a_requeued_job_is_announced_as_waiting(
    server: ServerThread, clock: FakeClock, site: TargetSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="litejobs.jobs")
    job_id = server.http.submit({"url": site.url("/page")}, max_attempts=3, delay_s=DELAY_S)["job_id"]
    claimed_elsewhere_then_lost(server, clock, job_id)

    assert any(f"job {job_id} fetch waiting" in record.getMessage() for record in caplog.records)
