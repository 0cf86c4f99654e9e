"""The native API over HTTP against the real server, on each store: a job from submit to result, and the reads.

Submitting, waiting, listing, stats, the synchronous scrape, health and the OpenAPI document.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema_rs
import pytest
from aiohttp import web

from tests.api_support import error_of
from tests.support import FakeClock, ServerThread, TargetSite, make_config

PAGE = """<html lang="en"><head><title>Shop</title><meta name="description" content="Things to buy">
<link rel="canonical" href="/shop"><meta property="og:title" content="The Shop"></head>
<body><h1>Welcome</h1><p>Hello <a href="/a#top">A</a> and <a href="https://example.org/b">B</a></p>
<script>var hidden = 1;</script></body></html>"""


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock, store_url: str) -> Iterator[ServerThread]:
    """The real server on SQLite, then on PostgreSQL (store_url is parametrized over both)."""
    with ServerThread(make_config(tmp_path, store={"url": store_url}), clock=clock) as running:
        yield running


def test_a_fetch_job_goes_from_202_to_a_result(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/shop", PAGE)
    outputs = ["html", "markdown", "text", "links", "metadata", "headers"]
    resp = server.http.post("/v1/jobs", {"kind": "fetch", "input": {"url": url, "output": outputs}, "meta": {"r": 1}})
    assert resp.status == 202
    job = resp.json
    assert resp.headers["location"] == f"/v1/jobs/{job['job_id']}"
    assert job["status"] == "waiting" and job["kind"] == "fetch" and job["meta"] == {"r": 1}
    assert job["created_at"].endswith("Z") and job["max_attempts"] == 3
    done = server.http.wait(job["job_id"])
    assert done["status"] == "completed" and done["attempts"] == 1 and done["result_available"]
    assert done["started_at"] and done["completed_at"] and done["expires_at"]
    result = server.http.get(f"/v1/jobs/{job['job_id']}/result").json
    out = result["outputs"]
    assert result["status"] == "completed" and result["kind"] == "fetch"
    assert out["status_code"] == 200 and out["final_url"] == url and out["content_type"] == "text/html"
    assert "# Welcome" in out["markdown"] and f"[A]({site.url('/a#top')})" in out["markdown"]
    assert "hidden" not in out["text"] and "Hello A and B" in out["text"]
    assert out["links"] == [site.url("/a"), "https://example.org/b"]
    assert out["metadata"]["title"] == "Shop" and out["metadata"]["description"] == "Things to buy"
    assert out["metadata"]["canonical"] == site.url("/shop") and out["metadata"]["language"] == "en"
    assert out["metadata"]["og"]["title"] == "The Shop"
    assert out["headers"]["Content-Type"].startswith("text/html")
    assert "<h1>Welcome</h1>" in out["html"]
    assert site.hits["/shop"] == 1


def test_a_job_can_post_json_and_forms_with_headers(server: ServerThread, site: TargetSite) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "type": request.content_type,
                "body": await request.text(),
                "x": request.headers.get("X-Token"),
            }
        )

    url = site.add("/echo", echo)
    as_json = server.http.submit(
        {"url": url, "method": "POST", "body": {"q": "shoes"}, "headers": {"X-Token": "t"}, "output": ["html"]}
    )
    as_form = server.http.submit(
        {
            "url": url,
            "method": "post",
            "body": "a=1&b=2",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            "output": ["html"],
        }
    )
    import json

    for job, expected_type, expected_body, token in (
        (as_json, "application/json", {"q": "shoes"}, "t"),
        (as_form, "application/x-www-form-urlencoded", "a=1&b=2", None),
    ):
        assert server.http.wait(job["job_id"])["status"] == "completed"
        seen = json.loads(server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["html"])
        assert seen["method"] == "POST" and seen["type"] == expected_type and seen["x"] == token
        body = json.loads(seen["body"]) if expected_type == "application/json" else seen["body"]
        assert body == expected_body


def test_delayed_jobs_run_when_due(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    job = server.http.submit({"url": url}, delay_s=0.5)
    assert job["status"] == "delayed"
    assert server.http.wait(job["job_id"])["status"] == "completed"


def test_get_with_wait_returns_as_soon_as_the_job_ends(server: ServerThread, site: TargetSite) -> None:
    job = server.http.submit({"url": site.add_html("/p", "<p>x</p>")})
    started = time.monotonic()
    resp = server.http.get(f"/v1/jobs/{job['job_id']}?wait=20")
    assert resp.json["status"] == "completed" and time.monotonic() - started < 5
    pending = server.http.submit({"url": site.url("/p")}, delay_s=60)
    started = time.monotonic()
    assert server.http.get(f"/v1/jobs/{pending['job_id']}?wait=0.5").json["status"] == "delayed"
    assert time.monotonic() - started >= 0.45
    too_long = server.http.get(f"/v1/jobs/{job['job_id']}?wait=61")
    assert too_long.status == 422 and error_of(too_long)["details"][0]["field"] == "wait"


def test_list_pages_newest_first_and_filters(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    ids = [server.http.submit({"url": url}, delay_s=60)["job_id"] for _ in range(5)]
    seen, cursor = [], None
    for _ in range(10):
        page = server.http.get("/v1/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")).json
        seen += [j["job_id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    assert len(server.http.get("/v1/jobs?status=delayed").json["jobs"]) == 5
    assert server.http.get("/v1/jobs?status=completed").json["jobs"] == []
    assert server.http.get("/v1/jobs?kind=render").json["jobs"] == []
    bad = server.http.get("/v1/jobs?status=sleeping")
    assert bad.status == 422 and error_of(bad)["details"][0]["field"] == "status"
    assert server.http.get("/v1/jobs?cursor=zzz").status == 422


def test_stats_count_jobs_by_status(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    server.http.wait(server.http.submit({"url": url})["job_id"])
    server.http.submit({"url": url}, delay_s=60)
    stats = server.http.get("/v1/stats").json
    assert stats["counts"]["completed"] == 1 and stats["counts"]["delayed"] == 1
    assert stats["queue_depth"] == 1 and stats["workers"]["total"] == 8
    assert "state" in stats["browser"]


def test_sync_scrape_answers_inline_or_504(tmp_path: Path, store_url: str, site: TargetSite) -> None:
    import asyncio

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    with ServerThread(make_config(tmp_path, store={"url": store_url}, limits={"sync_timeout_s": 0.5})) as server:
        ok = server.http.post("/v1/scrape", {"url": site.add_html("/p", "<h1>Now</h1>"), "output": ["markdown"]})
        assert ok.status == 200 and ok.json["outputs"]["markdown"].strip() == "# Now"
        late = server.http.post("/v1/scrape", {"url": site.add("/slow", slow)})
        assert late.status == 504
        assert error_of(late)["code"] == "sync_timeout" and "/v1/scrape/async" in error_of(late)["message"]
        down = server.http.post("/v1/scrape", {"url": "http://127.0.0.1:9/"})
        assert down.status == 502 and error_of(down)["code"] == "network_error"
        queued = server.http.post("/v1/scrape/async", {"url": site.url("/p")})
        assert queued.status == 202 and queued.json["kind"] == "fetch"
        assert server.http.wait(queued.json["job_id"])["status"] == "completed"


def test_health_readiness_and_openapi(server: ServerThread) -> None:
    assert server.http.get("/healthz").json == {"status": "ok"}
    ready = server.http.get("/readyz")
    assert ready.status == 200 and ready.json["ready"] and ready.json["store"] and ready.json["workers"]
    spec = server.http.get("/openapi.json").json
    assert spec["openapi"].startswith("3.1") and "/v1/jobs/{job_id}/result" in spec["paths"]


def test_a_405_names_every_method_the_path_takes(server: ServerThread) -> None:
    """One route per method: Starlette's Allow named only the first (`PUT /v1/jobs` → `POST`)."""
    for path, allowed in [
        ("/v1/jobs", "GET, HEAD, POST"),
        ("/v1/jobs/job_x", "DELETE, GET, HEAD"),
        ("/compat/scrapio/v1/jobs/x", "DELETE, GET, HEAD"),
    ]:
        resp = server.http.request("PUT", path)
        assert (resp.status, resp.headers.get("allow")) == (405, allowed), path
        assert resp.json["error"]["code"] == "method_not_allowed"


def test_openapi_says_what_the_server_takes(server: ServerThread, site: TargetSite) -> None:
    """The schema refused URLs the server takes (ports over 9999, IPv6 literals, user:pw@) and took a
    render's render_js, which the server refuses; /readyz and /openapi.json need a key like the rest."""
    spec = server.http.get("/openapi.json").json
    submission = jsonschema_rs.validator_for({**spec, "$ref": "#/components/schemas/Submission"})
    for url in [site.url("/p"), "http://[::1]:8080/x", "http://user:pw@127.0.0.1:65000/p"]:
        body = {"kind": "fetch", "input": {"url": url}, "delay_s": 3600}
        assert submission.is_valid(body), url
        assert server.http.post("/v1/jobs", body).status == 202, url
    render_js = {"kind": "render", "input": {"url": site.url("/p"), "render_js": False}}
    assert not submission.is_valid(render_js)
    assert server.http.post("/v1/jobs", render_js).status == 422
    for path in ("/readyz", "/openapi.json"):
        assert "security" not in spec["paths"][path]["get"] and "401" in spec["paths"][path]["get"]["responses"]
    assert "206" in spec["paths"]["/v1/files/{job_id}/{name}"]["get"]["responses"]
