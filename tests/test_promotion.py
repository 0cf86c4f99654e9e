"""A delayed job becomes `waiting` at its run_at, even while every worker is busy, and the move is
announced (webhooks, stats), after a `delay_s` as after a retry's backoff; on both stores."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support import ServerThread, TargetSite, make_config, wait_until

EVERY_STATUS = ["waiting", "delayed", "active", "completed"]


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[ServerThread]:
    """One worker, so that one held job keeps every worker busy; webhooks retried fast."""
    config = make_config(
        tmp_path, store={"url": store_url}, queue={"concurrency": 1}, webhooks={"backoff_base_s": 0.05}
    )
    with ServerThread(config) as running:
        yield running


def webhook_events(site: TargetSite) -> tuple[str, list[str]]:
    """A webhook receiver; the X-Litejobs-Event of each POST it got, in arrival order."""
    events: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        events.append(request.headers["X-Litejobs-Event"])
        return web.Response(text="ok")

    return site.add("/hook", handler), events


def held_page(site: TargetSite) -> tuple[str, threading.Event]:
    """A page that answers once the returned event is set (bounded: 30 s)."""
    release = threading.Event()

    async def handler(request: web.Request) -> web.Response:
        for _ in range(600):
            if release.is_set():
                break
            await asyncio.sleep(0.05)
        return web.Response(text="<p>held</p>", content_type="text/html")

    return site.add("/held", handler), release


def status_of(server: ServerThread, job_id: str) -> str:
    return str(server.http.get(f"/v1/jobs/{job_id}").json["status"])


def test_a_due_job_becomes_waiting_while_every_worker_is_busy(server: ServerThread, site: TargetSite) -> None:
    held, release = held_page(site)
    hook, events = webhook_events(site)
    busy = server.http.submit({"url": held})["job_id"]
    try:
        assert wait_until(lambda: status_of(server, busy) == "active", 10)
        job = server.http.submit(
            {"url": site.add_html("/page", "<p>hi</p>")}, delay_s=0.3, webhook={"url": hook, "events": EVERY_STATUS}
        )["job_id"]

        assert wait_until(lambda: status_of(server, job) == "waiting", 10)
        stats: dict[str, Any] = server.http.get("/v1/stats").json
        assert status_of(server, busy) == "active"  # no worker was free: the promotion did not wait for one
    finally:
        release.set()
    assert stats["counts"]["waiting"] == 1 and stats["counts"]["delayed"] == 0
    assert stats["oldest_waiting_age_s"] is not None
    assert server.http.wait(job)["status"] == "completed"
    assert wait_until(lambda: len(events) >= 4, 10)
    assert sorted(events) == sorted(EVERY_STATUS)  # delivery order is not kept


def test_a_retry_after_backoff_is_announced_waiting(server: ServerThread, site: TargetSite) -> None:
    hook, events = webhook_events(site)
    answers = iter([500])

    async def flaky(request: web.Request) -> web.Response:
        return web.Response(text="<p>ok</p>", content_type="text/html", status=next(answers, 200))

    job = server.http.submit({"url": site.add("/flaky", flaky)}, webhook={"url": hook, "events": EVERY_STATUS})

    assert server.http.wait(job["job_id"])["status"] == "completed"
    wait_until(lambda: len(events) >= 6, 10)
    # waiting, active, delayed (the backoff), waiting (due again), active, completed
    assert collections.Counter(events) == {"waiting": 2, "active": 2, "delayed": 1, "completed": 1}
