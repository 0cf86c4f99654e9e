"""No job reaches the server's own Chromium DevTools port, even with private networks allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerThread, TargetSite

pytestmark = pytest.mark.browser


def devtools_port(server: ServerThread) -> int:
    """The port the running Chromium's DevTools listens on, as Chromium writes it into its profile."""
    browser: dict[str, Any] = server.http.get("/v1/stats").json["browser"]
    return int((Path(browser["user_data_dir"]) / "DevToolsActivePort").read_text().split()[0])


def run(server: ServerThread, input: dict[str, Any], kind: str = "fetch") -> dict[str, Any]:
    return server.http.wait(server.http.submit(input, kind=kind, max_attempts=1)["job_id"], 60)


def test_fetch_render_and_crawl_jobs_cannot_reach_the_devtools_port(server: ServerThread, site: TargetSite) -> None:
    page = site.add_html("/page", "<p>rendered</p>")
    assert run(server, {"url": page}, kind="render")["status"] == "completed"  # Chromium runs now
    devtools = f"http://127.0.0.1:{devtools_port(server)}"

    fetched = run(server, {"url": f"{devtools}/json/list"})
    rendered = run(server, {"url": f"{devtools}/json/version"}, kind="render")
    by_name = run(server, {"url": f"http://localhost:{devtools_port(server)}/json/list"})
    linked = site.add_html("/links", f"<a href='{devtools}/json/list'>list</a>")
    crawled = run(server, {"url": linked, "max_pages": 5}, kind="crawl")

    for job in (fetched, rendered, by_name):
        assert job["status"] == "failed"
        assert job["error"]["code"] == "blocked_address"
        assert "browser control endpoint" in job["error"]["message"]
    pages = server.http.get(f"/v1/jobs/{crawled['job_id']}/result").json.get("pages", [])
    assert not any(p.get("success") and "/json/" in p["url"] for p in pages)
    # the same loopback target on another port is still reachable: only the browser's own port is refused
    assert run(server, {"url": page})["status"] == "completed"
