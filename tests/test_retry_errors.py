"""A retry of a job that has not ended says so: `409 job_finished` (API.md's code for a job in the
wrong state) with a message naming the status and what to do, never that the job is finished."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support import ServerThread, TargetSite, make_config, wait_until


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path, store={"url": store_url})) as running:
        yield running


def test_retrying_an_active_or_delayed_job_says_it_has_not_finished(server: ServerThread, site: TargetSite) -> None:
    release = threading.Event()

    async def held(request: web.Request) -> web.Response:
        for _ in range(600):  # bounded: 30 s
            if release.is_set():
                break
            await asyncio.sleep(0.05)
        return web.Response(text="<p>done</p>", content_type="text/html")

    active = server.http.submit({"url": site.add("/held", held)})["job_id"]
    delayed = server.http.submit({"url": site.add_html("/later", "<p>later</p>")}, delay_s=600)["job_id"]
    try:
        assert wait_until(lambda: server.http.get(f"/v1/jobs/{active}").json["status"] == "active", 10)

        answers = {job: server.http.post(f"/v1/jobs/{job}/retry") for job in (active, delayed)}
    finally:
        release.set()

    for job, status in ((active, "active"), (delayed, "delayed")):
        resp = answers[job]
        assert resp.status == 409 and resp.json["error"]["code"] == "job_finished"
        message = resp.json["error"]["message"]
        assert f"this one is {status}" in message and "has not finished" in message, message
        assert server.http.get(f"/v1/jobs/{job}").json["status"] in (status, "completed")  # untouched


def test_retrying_a_completed_job_points_to_a_new_submit(server: ServerThread, site: TargetSite) -> None:
    job = server.http.submit({"url": site.add_html("/page", "<p>hi</p>")})["job_id"]
    assert server.http.wait(job)["status"] == "completed"

    resp = server.http.post(f"/v1/jobs/{job}/retry")

    assert resp.status == 409 and resp.json["error"]["code"] == "job_finished"
    assert "this one is completed" in resp.json["error"]["message"]
    assert "submit it again" in resp.json["error"]["message"]
