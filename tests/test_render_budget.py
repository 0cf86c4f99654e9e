"""Rendered pages get the job's time budget, and inputs only the browser would refuse are refused at submit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support import ServerThread, TargetSite, make_config

URL = "http://127.0.0.1:9/"


def slow_page(delay_s: float) -> Any:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.Response(text="<h1>slow but fine</h1>", content_type="text/html")

    return handler


def refused_fields(server: ServerThread, input: dict[str, Any], kind: str = "fetch") -> list[str]:
    resp = server.http.post("/v1/jobs", {"kind": kind, "input": input})
    assert resp.status == 422, (resp.status, resp.body)
    return [detail["field"] for detail in resp.json["error"]["details"]]


# -- the time budget ---------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_render_may_take_the_jobs_timeout_past_the_default(tmp_path: Path, site: TargetSite) -> None:
    with ServerThread(make_config(tmp_path, limits={"default_timeout_s": 2})) as server:
        url = site.add("/slow", slow_page(3))

        job = server.http.submit({"url": url}, kind="render", timeout_s=15, max_attempts=1)

        done = server.http.wait(job["job_id"], 30)
        assert done["status"] == "completed", done.get("error")
        assert "slow but fine" in server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["markdown"]


@pytest.mark.browser
def test_an_inline_render_may_take_the_sync_timeout_past_the_default(tmp_path: Path, site: TargetSite) -> None:
    config = make_config(tmp_path, limits={"default_timeout_s": 2, "sync_timeout_s": 15})
    with ServerThread(config) as server:
        url = site.add("/slow", slow_page(3))

        resp = server.http.post("/v1/scrape", {"url": url, "render_js": True})

        assert resp.status == 200, resp.body
        assert "slow but fine" in resp.json["outputs"]["markdown"]


@pytest.mark.browser
def test_renders_queued_for_the_one_browser_page_do_not_time_out_waiting(tmp_path: Path, site: TargetSite) -> None:
    """Five renders of a 1 s page with timeout_s 4 and one page: the last waits over 4 s for it. The wait is
    queueing, not rendering (the later ones timed out before: their clocks ran while they waited)."""
    config = make_config(tmp_path, browser={"max_pages": 1}, queue={"concurrency": 5})
    with ServerThread(config) as server:
        url = site.add("/slow-1", slow_page(1.0))

        ids = [server.http.submit({"url": url}, kind="render", timeout_s=4, max_attempts=1)["job_id"] for _ in range(5)]

        jobs = [server.http.wait(job_id, 60) for job_id in ids]
        assert [job["status"] for job in jobs] == ["completed"] * 5, [job.get("error") for job in jobs]
        assert site.hits["/slow-1"] == 5


@pytest.mark.browser
def test_a_render_that_has_its_page_still_times_out(tmp_path: Path, site: TargetSite) -> None:
    config = make_config(tmp_path, browser={"max_pages": 1}, queue={"concurrency": 2})
    with ServerThread(config) as server:
        url = site.add("/slow-6", slow_page(6))

        job = server.http.wait(
            server.http.submit({"url": url}, kind="render", timeout_s=2, max_attempts=1)["job_id"], 30
        )

        assert job["status"] == "failed" and job["error"]["code"] == "timeout", job["error"]


@pytest.mark.browser
def test_a_crawl_whose_renders_queue_together_gives_every_page_back(tmp_path: Path, site: TargetSite) -> None:
    """Two renders of one crawl waiting for the one page at once: the second's end raised TypeError
    and the page was never given back, so every later render waited for ever."""
    links = "".join(f"<a href='/q/{n}'>{n}</a>" for n in range(4))
    start = site.add_html("/q/", links)
    for n in range(4):
        site.add_html(f"/q/{n}", f"<p>page {n}</p>")
    config = make_config(tmp_path, browser={"max_pages": 1}, crawl={"per_host_concurrency": 4, "per_host_delay_ms": 0})
    with ServerThread(config) as server:
        crawl = {"url": start, "max_pages": 5, "max_depth": 1, "render_js": True}
        crawled = server.http.wait(server.http.submit(crawl, kind="crawl", timeout_s=60)["job_id"], 90)
        assert crawled["status"] == "completed", crawled.get("error")
        assert crawled["progress"]["message"] == "5 pages crawled"

        after = server.http.wait(server.http.submit({"url": start}, kind="render", timeout_s=20)["job_id"], 40)
        assert after["status"] == "completed", after.get("error")  # the page was given back
        assert server.http.get("/v1/stats").json["browser"]["pages_open"] == 0


# -- a page loaded in the browser is a GET without a body ---------------------------------------------


@pytest.mark.parametrize("output", ["screenshot", "pdf"])
def test_browser_outputs_refuse_a_method_and_a_body(server: ServerThread, output: str) -> None:
    input = {"url": URL, "method": "POST", "body": {"q": 1}, "output": [output]}

    assert refused_fields(server, input) == ["input.method", "input.body"]


def test_render_and_interact_refuse_a_body(server: ServerThread) -> None:
    assert refused_fields(server, {"url": URL, "body": "x"}, kind="render") == ["input.body"]
    assert refused_fields(server, {"url": URL, "render_js": True, "body": "x"}) == ["input.body"]
    actions = [{"type": "wait", "ms": 1}]
    assert refused_fields(server, {"url": URL, "actions": actions, "body": "x"}, kind="interact") == ["input.body"]


def test_a_plain_fetch_still_posts_a_body(server: ServerThread) -> None:
    input = {"url": URL, "method": "POST", "body": "x", "output": ["html"]}

    resp = server.http.post("/v1/jobs", {"input": input, "delay_s": 3600})

    assert resp.status == 202


# -- inputs the browser would refuse -----------------------------------------------------------------


def test_a_wait_for_that_is_not_css_is_refused_at_submit(server: ServerThread) -> None:
    assert refused_fields(server, {"url": URL, "wait_for": "##bad(("}, kind="render") == ["input.wait_for"]
    actions = [{"type": "click", "selector": "a["}]
    assert refused_fields(server, {"url": URL, "actions": actions}, kind="interact") == ["input.actions[0].selector"]


@pytest.mark.parametrize("selector", ["#x", ":scope > p", "p::before", "a:not(:lang(en))", "input:-webkit-autofill"])
def test_css_that_chromium_takes_is_accepted(server: ServerThread, selector: str) -> None:
    # delayed: only the submit is under test
    resp = server.http.post(
        "/v1/jobs", {"kind": "render", "input": {"url": URL, "wait_for": selector}, "delay_s": 3600}
    )

    assert resp.status == 202, resp.body


@pytest.mark.parametrize(
    ("cookie", "field"),
    [
        ({"name": "a;b", "value": "x"}, "input.cookies[0].name"),
        ({"name": "a=b", "value": "x"}, "input.cookies[0].name"),
        ({"name": "a", "value": "x;y"}, "input.cookies[0].value"),
        ({"name": "a", "value": " x"}, "input.cookies[0].value"),
        ({"name": "a", "value": "x\x01"}, "input.cookies[0].value"),
        ({"name": "", "value": ""}, "input.cookies[0]"),
        ({"name": "a", "value": "x" * 5000}, "input.cookies[0]"),
        ({"name": "a", "value": "x", "domain": 5}, "input.cookies[0].domain"),
        ({"name": "a", "value": "x", "path": "rel"}, "input.cookies[0].path"),
        ({"name": "a", "value": "x", "secure": "yes"}, "input.cookies[0].secure"),
    ],
)
def test_cookies_chromium_refuses_are_refused_at_submit(
    server: ServerThread, cookie: dict[str, Any], field: str
) -> None:
    for kind in ("render", "fetch"):
        assert refused_fields(server, {"url": URL, "cookies": [cookie]}, kind=kind) == [field]


def test_cookies_given_as_an_object_are_named_by_their_name(server: ServerThread) -> None:
    assert refused_fields(server, {"url": URL, "cookies": {"a;b": "x"}}, kind="render") == ["input.cookies.a;b"]


def test_header_names_must_be_http_tokens(server: ServerThread) -> None:
    for kind in ("render", "fetch"):
        assert refused_fields(server, {"url": URL, "headers": {"Bad Name": "x"}}, kind=kind) == [
            "input.headers.Bad Name"
        ]
    assert refused_fields(server, {"url": URL, "headers": {"X-A": "x\x01"}}) == ["input.headers.X-A"]
    assert refused_fields(server, {"url": URL, "user_agent": "bot\x7f"}) == ["input.user_agent"]


def test_headers_chromium_reserves_are_refused_for_renders_only(server: ServerThread) -> None:
    headers = {"Host": "example.com", "Proxy-Authorization": "Basic eDp5"}

    assert refused_fields(server, {"url": URL, "headers": headers}, kind="render") == [
        "input.headers.Host",
        "input.headers.Proxy-Authorization",
    ]
    fetch = {"input": {"url": URL, "headers": {"Host": "example.com"}}, "delay_s": 3600}
    assert server.http.post("/v1/jobs", fetch).status == 202


@pytest.mark.browser
def test_a_cookie_with_an_empty_or_null_domain_is_the_urls(server: ServerThread, site: TargetSite) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"<p>cookie={request.headers.get('Cookie')}</p>", content_type="text/html")

    cookies = [
        {"name": "given", "value": "42", "domain": ""},
        {"name": "more", "value": "7", "domain": None, "path": ""},
    ]
    job = server.http.submit({"url": site.add("/echo", echo), "cookies": cookies}, kind="render", max_attempts=1)

    done = server.http.wait(job["job_id"], 30)
    assert done["status"] == "completed", done.get("error")
    assert "cookie=given=42; more=7" in server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["markdown"]
