"""A rendered page goes out with the agent a fetch sends: a `User-Agent` in `headers` wins over `user_agent`
(docs/api.md, docs/crawl.md), for the document, its subresources and navigator.userAgent alike."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from aiohttp import web

from tests.support import ServerThread, TargetSite

pytestmark = pytest.mark.browser

#: the document shows the agent its script sees; its image is fetched with the page's agent too
PAGE = """<!doctype html><html><body><p id="agent"></p><img src="/pixel.png">
<script>document.getElementById('agent').textContent = 'navigator=' + navigator.userAgent;</script>
</body></html>"""


def agents_site(site: TargetSite) -> dict[str, list[str]]:
    """Serve PAGE at /page and /next, an image at /pixel.png; record the User-Agent each path got."""
    seen: dict[str, list[str]] = defaultdict(list)

    async def page(request: web.Request) -> web.Response:
        seen[request.path].append(request.headers.get("User-Agent", ""))
        link = '<a href="/next">next</a>' if request.path == "/page" else ""
        return web.Response(text=PAGE.replace("<body>", f"<body>{link}"), content_type="text/html")

    async def pixel(request: web.Request) -> web.Response:
        seen[request.path].append(request.headers.get("User-Agent", ""))
        return web.Response(body=b"GIF89a", content_type="image/gif")

    site.add("/page", page)
    site.add("/next", page)
    site.add("/pixel.png", pixel)
    return seen


def finished(server: ServerThread, job: dict[str, Any]) -> dict[str, Any]:
    done = server.http.wait(job["job_id"], 60)
    assert done["status"] == "completed", done.get("error")
    return server.http.get(f"/v1/jobs/{job['job_id']}/result").json  # type: ignore[no-any-return]


def test_a_user_agent_header_wins_over_user_agent_in_a_render_as_in_a_fetch(
    server: ServerThread, site: TargetSite
) -> None:
    seen = agents_site(site)
    given = {"url": site.url("/page"), "headers": {"User-Agent": "FromHeaders"}, "user_agent": "FromField"}

    fetched = finished(server, server.http.submit({**given, "output": ["text"]}))
    fetched_agents = seen.pop("/page")
    rendered = finished(server, server.http.submit({**given, "output": ["text"]}, kind="render"))

    assert fetched_agents == ["FromHeaders"] and "navigator=" not in fetched["outputs"]["text"]
    assert seen["/page"] == ["FromHeaders"]
    assert seen["/pixel.png"] == ["FromHeaders"]
    assert "navigator=FromHeaders" in rendered["outputs"]["text"]


def test_the_header_wins_whatever_its_case_and_user_agent_alone_still_applies(
    server: ServerThread, site: TargetSite
) -> None:
    seen = agents_site(site)
    url = site.url("/page")

    lower = finished(
        server, server.http.submit({"url": url, "headers": {"user-agent": "Lower"}, "user_agent": "F"}, "render")
    )
    field = finished(server, server.http.submit({"url": url, "user_agent": "FieldOnly", "output": ["text"]}, "render"))

    assert seen["/page"] == ["Lower", "FieldOnly"]
    assert "navigator=Lower" in lower["outputs"]["markdown"]
    assert "navigator=FieldOnly" in field["outputs"]["text"]


def test_a_rendered_crawl_sends_the_header_agent_to_every_page(server: ServerThread, site: TargetSite) -> None:
    seen = agents_site(site)
    given = {"url": site.url("/page"), "headers": {"User-Agent": "FromHeaders"}, "user_agent": "FromField"}

    crawl = finished(server, server.http.submit({**given, "render_js": True, "max_pages": 2}, kind="crawl"))

    assert [page["success"] for page in crawl["pages"]] == [True, True]
    assert seen["/page"] == seen["/next"] == ["FromHeaders"]
    assert set(seen["/pixel.png"]) == {"FromHeaders"}
