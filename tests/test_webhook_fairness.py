"""Webhook slots are shared fairly: one key's receiver that never answers cannot hold every other
key's webhooks back (both stores claim due deliveries in turns across receivers)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.pg import store_url  # noqa: F401 (a fixture)
from tests.support import Http, ServerThread, TargetSite, make_config
from tests.test_webhooks import eventually

KEYS = ["key-a", "key-b", "key-c"]


@pytest.fixture
def holes() -> Iterator[TargetSite]:
    """Another host for the receivers that never answer: slots are shared by host and port."""
    other = TargetSite()
    yield other
    other.close()


def black_hole(site: TargetSite, path: str) -> str:
    """A receiver that accepts the request and never answers (until the sender gives up)."""

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(3600)
        return web.Response(status=204)

    return site.add(path, handler)


def healthy(site: TargetSite, path: str) -> tuple[str, list[str]]:
    """A receiver that answers 204 at once; the job ids it got."""
    got: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        got.append(json.loads(await request.read())["job_id"])
        return web.Response(status=204)

    return site.add(path, handler), got


def server_config(tmp_path: Path, url: str, **webhooks: Any) -> Any:
    return make_config(
        tmp_path,
        store={"url": url},
        auth={"keys": KEYS},
        webhooks={"backoff_base_s": 0.05, "backoff_max_s": 0.2, **webhooks},
    )


def submit_with_hooks(http: Http, page: str, hook: str, count: int) -> list[str]:
    return [http.submit({"url": page}, webhook={"url": hook})["job_id"] for _ in range(count)]


def test_a_receiver_that_never_answers_leaves_a_slot_for_other_keys_webhooks(
    tmp_path: Path,
    site: TargetSite,
    holes: TargetSite,
    store_url: str,  # noqa: F811
) -> None:
    hole = black_hole(holes, "/hole")
    hook, got = healthy(site, "/hook")
    page = site.add_html("/page", "<p>hi</p>")
    # 60 s per attempt: without sharing, the hole's 12 deliveries hold all 4 slots for minutes
    with ServerThread(server_config(tmp_path, store_url, concurrency=4, timeout_s=60)) as server:
        submit_with_hooks(Http(server.base_url, "key-b"), page, hole, 12)
        eventually(lambda: holes.hits["/hole"] >= 3)
        mine = Http(server.base_url, "key-a").submit({"url": page}, webhook={"url": hook})
        eventually(lambda: mine["job_id"] in got)
        [delivery] = Http(server.base_url, "key-a").get(f"/v1/jobs/{mine['job_id']}/webhook").json["deliveries"]
        hole_hits = holes.hits["/hole"]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 1
    assert hole_hits == 3  # one receiver holds at most concurrency - 1 slots


@pytest.mark.slow
def test_failing_receivers_get_one_slot_each_and_half_the_slots_at_most(
    tmp_path: Path,
    site: TargetSite,
    holes: TargetSite,
    store_url: str,  # noqa: F811
) -> None:
    # two receivers (two hosts) that never answer, each with a backlog: once their first attempts
    # time out they are failing, and hold one slot each, two of the four at most
    urls = [black_hole(holes, "/hole-1"), black_hole(holes, "/hole-2").replace("127.0.0.1", "localhost")]
    hook, got = healthy(site, "/hook")
    page = site.add_html("/page", "<p>hi</p>")
    with ServerThread(server_config(tmp_path, store_url, concurrency=4, timeout_s=1.5)) as server:
        for hole, key in zip(urls, ("key-b", "key-c"), strict=True):
            submit_with_hooks(Http(server.base_url, key), page, hole, 12)
        eventually(lambda: holes.hits["/hole-1"] + holes.hits["/hole-2"] >= 4)
        mine = Http(server.base_url, "key-a").submit({"url": page}, webhook={"url": hook})
        eventually(lambda: mine["job_id"] in got)
        hole_hits = holes.hits["/hole-1"] + holes.hits["/hole-2"]
    # oldest first, the healthy webhook would wait for all 24 failing first attempts (1.5 s each)
    assert hole_hits < 12
