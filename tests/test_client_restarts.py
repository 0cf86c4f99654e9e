"""Waiting across a server restart: `Client.wait`, `AsyncClient.wait` and `litejobs submit --wait` ride out a
restart within their reconnect budget, and give up (exit 3) on a server gone for good."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from litejobs.client import AsyncClient, Client, ServerUnreachable
from tests.support import PYTHON, ROOT, ServerProcess, TargetSite, wait_until

PAGE = "<h1>Title</h1><p>Body text</p>"
#: a short grace: the held jobs are handed back, and run again after the restart
FAST_STOP = {"LITEJOBS_SERVER_SHUTDOWN_GRACE_S": "2"}


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    opened = threading.Event()
    yield opened
    opened.set()  # the target's handlers end with the test


def held_page(site: TargetSite, gate: threading.Event) -> str:
    """A page that answers once `gate` is set (at most 30 s): a job fetching it stays active till then."""

    async def held(request: web.Request) -> web.Response:
        for _ in range(300):
            if gate.is_set():
                break
            await asyncio.sleep(0.1)
        return web.Response(text=PAGE, content_type="text/html")

    return site.add("/held", held)


def cli_submit_wait(server: ServerProcess, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LITEJOBS_URL": server.base_url}
    env.pop("LITEJOBS_API_KEY", None)
    cmd = [PYTHON, "-m", "litejobs", "submit", url, "--wait"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def async_wait(base_url: str, job_id: str, on_change: Callable[[dict[str, Any]], None] | None = None) -> Any:
    async def waited() -> Any:
        async with AsyncClient(base_url) as client:
            return await client.wait(job_id, on_change=on_change)

    return asyncio.run(waited())


def all_active(client: Client, count: int) -> Callable[[], bool]:
    return lambda: [job["status"] for job in client.list()] == ["active"] * count


@pytest.mark.slow
def test_waits_ride_out_a_server_restart(tmp_path: Path, site: TargetSite, gate: threading.Event) -> None:
    url = held_page(site, gate)
    first = ServerProcess(tmp_path / "jobs.db", env=FAST_STOP)
    client = Client(first.base_url)
    job_id = client.submit("fetch", {"url": url})["job_id"]
    cli = cli_submit_wait(first, url)
    with ThreadPoolExecutor(2) as pool:
        waited: list[Future[Any]] = [
            pool.submit(client.wait, job_id),
            pool.submit(async_wait, first.base_url, job_id),
        ]
        assert wait_until(all_active(client, 2), 20)
        first.terminate()
        second = ServerProcess(tmp_path / "jobs.db", "--port", str(urlsplit(first.base_url).port), env=FAST_STOP)
        try:
            gate.set()
            out, err = cli.communicate(timeout=60)
            sync_job, async_job = (future.result(timeout=60) for future in waited)
        finally:
            cli.kill()
            second.terminate()
    assert cli.returncode == 0, err
    assert out.startswith("# Title") and err.splitlines()[-1].endswith(" completed")
    assert sync_job["status"] == async_job["status"] == "completed"


@pytest.mark.slow
def test_a_wait_rides_out_a_crash_of_the_server(tmp_path: Path, site: TargetSite, gate: threading.Event) -> None:
    first = ServerProcess(tmp_path / "jobs.db")
    job_id = Client(first.base_url).submit("fetch", {"url": held_page(site, gate)})["job_id"]
    heard = [threading.Event(), threading.Event()]
    # timeout_s=2: long-polls of 1 s, so that the sync wait hears from the server before the crash
    sync_client = Client(first.base_url, timeout_s=2)
    with ThreadPoolExecutor(2) as pool:
        waited = [
            pool.submit(sync_client.wait, job_id, on_change=lambda job: heard[0].set()),
            pool.submit(async_wait, first.base_url, job_id, lambda job: heard[1].set()),
        ]
        assert all(event.wait(20) for event in heard)
        first.kill()
        second = ServerProcess(tmp_path / "jobs.db", "--port", str(urlsplit(first.base_url).port))
        try:
            Client(second.base_url).cancel(job_id)
            sync_job, async_job = (future.result(timeout=60) for future in waited)
        finally:
            second.terminate()
    assert sync_job["status"] == async_job["status"] == "cancelled"


def cut_then_answer(site: TargetSite, path: str, cuts: int) -> list[int]:
    """`path` takes its first `cuts` requests and closes each connection without an answer (a crash);
    later ones answer a completed job. Returns a count of the requests."""
    requests: list[int] = []
    done = {"job_id": "job_x", "kind": "fetch", "status": "completed", "updated_at": 300, "input": {}}

    async def answer(request: web.Request) -> web.StreamResponse:
        requests.append(1)
        if len(requests) <= cuts:
            assert request.transport is not None
            request.transport.close()
        return web.json_response(done)

    site.add(path, answer)
    return requests


def test_a_wait_whose_first_request_the_server_cut_tries_again(site: TargetSite) -> None:
    sync_polls = cut_then_answer(site, "/v1/jobs/job_s", cuts=1)
    # aiohttp sends a cut GET again once by itself: two cuts reach the client; its stream is always cut
    async_polls = cut_then_answer(site, "/v1/jobs/job_a", cuts=2)
    cut_then_answer(site, "/v1/jobs/job_a/events", cuts=100)

    sync_job = Client(site.base_url).wait("job_s")
    async_job = async_wait(site.base_url, "job_a")

    assert sync_job["status"] == async_job["status"] == "completed"
    assert len(sync_polls) == 2 and len(async_polls) == 3


@pytest.mark.slow
def test_a_wait_on_a_server_gone_for_good_gives_up_after_its_budget(
    tmp_path: Path, site: TargetSite, gate: threading.Event
) -> None:
    url = held_page(site, gate)
    server = ServerProcess(tmp_path / "jobs.db")
    client = Client(server.base_url)
    job_id = client.submit("fetch", {"url": url})["job_id"]
    cli = cli_submit_wait(server, url)
    with ThreadPoolExecutor(1) as pool:
        waited = pool.submit(client.wait, job_id)
        assert wait_until(all_active(client, 2), 20)
        server.kill()
        try:
            out, err = cli.communicate(timeout=60)
        finally:
            cli.kill()
        with pytest.raises(ServerUnreachable, match="cannot reach"):
            waited.result(timeout=60)
    assert cli.returncode == 3 and out == ""
    assert "cannot reach" in err.splitlines()[-1]
