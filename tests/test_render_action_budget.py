"""An interact on a page whose `load` never comes keeps time for its actions' own waits: the render stops
waiting for `load` early enough that a `wait` and a `scroll`'s pauses still fit in the job's timeout_s."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from tests.support import ServerThread, TargetSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: 1.5 s of `wait` and 3 x 0.5 s of `scroll` pauses: 3 s of the actions' own, in a 10 s job (a 9 s render)
ACTIONS = [
    {"type": "wait", "ms": 1500},
    {"type": "scroll", "by": 100, "times": 3, "ms": 500},
    {"type": "evaluate", "script": "document.getElementById('t').textContent"},
]


def image_page(site: TargetSite, path: str, image_delay_s: float) -> str:
    """A page whose one image answers after `image_delay_s`: 30 s is an image that never loads."""

    async def image(request: web.Request) -> web.Response:
        await asyncio.sleep(image_delay_s)
        return web.Response(body=b"GIF89a", content_type="image/gif")

    site.add(f"{path}.gif", image)
    html = f'<!doctype html><html><body><p id="t">here</p><img src="{path}.gif"></body></html>'
    return site.add_html(path, html)


def interact(server: ServerThread, url: str) -> dict[str, Any]:
    return server.http.submit({"url": url, "actions": ACTIONS}, kind="interact", timeout_s=10, max_attempts=1)


def test_the_actions_waits_fit_when_an_image_never_loads(server: ServerThread, site: TargetSite) -> None:
    stalled = interact(server, image_page(site, "/stalled", 30))
    loading = interact(server, image_page(site, "/loads", 0.3))

    done = {name: server.http.wait(job["job_id"], 60) for name, job in (("stalled", stalled), ("loads", loading))}

    assert done["stalled"]["status"] == "completed", done["stalled"].get("error")
    assert done["loads"]["status"] == "completed", done["loads"].get("error")
    stalled_result = server.http.get(f"/v1/jobs/{stalled['job_id']}/result").json
    loaded_result = server.http.get(f"/v1/jobs/{loading['job_id']}/result").json
    # the stalled page went on without `load`; the page whose image came had it, waits or not
    assert stalled_result["stats"]["wait_until_reached"] is False
    assert loaded_result["stats"]["wait_until_reached"] is True
    for result in (stalled_result, loaded_result):
        assert [(a["type"], a["ok"]) for a in result["outputs"]["actions"]] == [
            ("wait", True),
            ("scroll", True),
            ("evaluate", True),
        ]
        assert result["outputs"]["actions"][2]["result"] == "here"
