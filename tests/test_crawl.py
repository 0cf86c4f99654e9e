"""The crawl kind against the real server and a generated site: page sets, robots, paging, extract, failures."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from litejobs.engine import SyncContext
from litejobs.fetcher import Fetcher
from litejobs.kinds.crawl import parse_crawl, run_crawl
from litejobs.netpolicy import NetworkPolicy
from litejobs.worker import Resources
from tests.crawl_support import all_pages, crawl, page_set
from tests.crawlsite import FAILING, CrawlSite
from tests.support import ServerThread, TargetSite, make_config
from tests.test_events import read_events


@pytest.fixture
def crawlsite(site: TargetSite) -> CrawlSite:
    return CrawlSite(site)


@pytest.mark.parametrize(("max_pages", "max_depth"), [(50, 0), (50, 1), (40, 2), (150, 2)])
def test_a_crawl_stores_exactly_the_breadth_first_pages_within_its_limits(
    server: ServerThread, crawlsite: CrawlSite, max_pages: int, max_depth: int
) -> None:
    job = crawl(server.http, url=crawlsite.url("/"), max_pages=max_pages, max_depth=max_depth)
    expected = crawlsite.expected_crawl(max_pages, max_depth)
    pages = all_pages(server.http, job["job_id"])
    assert page_set(pages) == expected
    assert job["status"] == ("partial" if (f"/p/{FAILING}", 1) in expected else "completed")


def test_a_whole_site_crawl_fetches_each_page_once_honours_robots_and_is_partial(
    server: ServerThread, crawlsite: CrawlSite
) -> None:
    job = crawl(server.http, url=crawlsite.url("/"), max_pages=1000, max_depth=20)
    expected = crawlsite.expected_crawl(1000, 20)
    result = server.http.get(f"/v1/jobs/{job['job_id']}/result?limit=1000").json
    assert result["status"] == "partial" and result["total_pages"] == len(expected)
    assert result["outputs"] == {"start_url": crawlsite.url("/"), "pages_crawled": len(expected), "pages_failed": 1}
    pages = result["pages"]
    assert page_set(pages) == expected and len(pages) == len(expected)
    failed = [p for p in pages if not p["success"]]
    assert [(urlsplit(p["url"]).path, p["status_code"], p["error"]["code"]) for p in failed] == [
        (f"/p/{FAILING}", 500, "upstream_status")
    ]
    ok = [p for p in pages if p["success"]]
    assert all(p["error"] is None and p["status_code"] == 200 and "markdown" in p for p in ok)
    home = next(p for p in pages if p["depth"] == 0)
    assert home["title"] == "Page 0" and "# Page 0" in home["markdown"]
    moved = next(p for p in pages if p["url"].endswith("/moved"))
    assert moved["final_url"] == crawlsite.url("/p/25") and moved["title"] == "Page 25"
    fetched = {path for path, _ in expected} | {"/p/25", "/robots.txt"}
    assert {path: crawlsite.hits[path] for path in fetched} == dict.fromkeys(fetched, 1)
    assert set(crawlsite.hits) == fetched  # nothing else: no /private/, /img/, /offsite, sitemaps


def test_progress_moves_forward_as_pages_finish_and_ends_at_one(tmp_path: Path, crawlsite: CrawlSite) -> None:
    with ServerThread(make_config(tmp_path, crawl={"per_host_delay_ms": 25})) as server:
        job = server.http.submit({"url": crawlsite.url("/"), "max_pages": 40}, kind="crawl")
        events = read_events(server, f"/v1/jobs/{job['job_id']}/events", until=1000)
        final = server.http.get(f"/v1/jobs/{job['job_id']}").json
    progress = [e["data"]["progress"]["progress"] for e in events if e["data"]["progress"]]
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] == 1
    assert final["status"] == "partial" and final["progress"] == {"message": "40 pages crawled", "progress": 1.0}


def test_result_pages_come_in_offset_and_limit_slices(server: ServerThread, crawlsite: CrawlSite) -> None:
    job = crawl(server.http, url=crawlsite.url("/"), max_pages=25)
    first = server.http.get(f"/v1/jobs/{job['job_id']}/result?limit=10").json
    last = server.http.get(f"/v1/jobs/{job['job_id']}/result?offset=20&limit=10").json
    assert len(first["pages"]) == 10 and first["total_pages"] == 25 and first["next_offset"] == 10
    assert len(last["pages"]) == 5 and last["next_offset"] is None
    pages = all_pages(server.http, job["job_id"], limit=7)
    assert len(pages) == 25 and len({p["url"] for p in pages}) == 25


def test_without_respect_robots_disallowed_pages_are_crawled(server: ServerThread, crawlsite: CrawlSite) -> None:
    job = crawl(server.http, url=crawlsite.url("/"), max_depth=1, respect_robots=False)
    pages = all_pages(server.http, job["job_id"])
    assert page_set(pages) == crawlsite.expected_crawl(50, 1, respect_robots=False)
    assert crawlsite.hits["/private/0"] == 1 and crawlsite.hits["/robots.txt"] == 0


def test_include_and_exclude_globs_choose_the_links_followed(server: ServerThread, crawlsite: CrawlSite) -> None:
    job = crawl(server.http, url=crawlsite.url("/"), max_pages=100, include=["/p/*"], exclude=["*5", "/p/1?"])

    def follow(path: str) -> bool:
        return path.startswith("/p/") and not path.endswith("5") and not re.fullmatch(r"/p/1\d", path)

    assert page_set(all_pages(server.http, job["job_id"])) == crawlsite.expected_crawl(100, 2, follow=follow)


def test_extract_values_come_with_every_crawled_page(server: ServerThread, crawlsite: CrawlSite) -> None:
    schema = {"fields": {"heading": "h1", "n": {"selector": ".n", "type": "number"}}}
    job = crawl(server.http, url=crawlsite.url("/"), max_depth=1, extract=schema, output=["text"])
    pages = [p for p in all_pages(server.http, job["job_id"]) if p.get("content_type") == "text/html" and p["success"]]
    assert len(pages) == 11
    for page in pages:
        n = int(page["title"].split()[-1])
        assert page["extract"] == {"heading": f"Page {n}", "n": n} and page["text"].startswith(f"Page {n}")


def test_bad_crawl_input_is_a_422_at_submit(server: ServerThread) -> None:
    bad = {
        "url": "http://example.com/",
        "max_depth": -1,
        "max_pages": 0,
        "include": [""],
        "output": ["screenshot"],
        "method": "POST",
        "extract": {"fields": {"x": "a[["}},
    }
    resp = server.http.post("/v1/jobs", {"kind": "crawl", "input": bad})
    assert resp.status == 422
    fields = {d["field"] for d in resp.json["error"]["details"]}
    assert {"input.max_depth", "input.max_pages", "input.include", "input.output", "input.method"} <= fields
    assert "input.extract.fields.x" in fields


def test_a_prompt_is_refused_for_a_crawl_rather_than_ignored(server: ServerThread) -> None:
    body = {"url": "http://example.com/", "extract": {"prompt": "summarise", "fields": {"h": "h1"}}}
    resp = server.http.post("/v1/jobs", {"kind": "crawl", "input": body})
    assert resp.status == 422
    [detail] = resp.json["error"]["details"]
    assert detail["field"] == "input.extract.prompt" and "multi_fetch" in detail["problem"]


def test_a_failing_start_page_fails_the_crawl(server: ServerThread, crawlsite: CrawlSite) -> None:
    server_error = crawl(server.http, {"max_attempts": 1}, url=crawlsite.url(f"/p/{FAILING}"))
    missing = server.http.submit({"url": crawlsite.url("/nope")}, kind="crawl", max_attempts=3)
    disallowed = server.http.submit({"url": crawlsite.url("/private/0")}, kind="crawl")
    assert server_error["status"] == "failed" and server_error["error"]["code"] == "upstream_status"
    gone = server.http.wait(missing["job_id"])
    assert gone["status"] == "failed" and gone["attempts"] == 1 and "HTTP 404" in gone["error"]["message"]
    robots = server.http.wait(disallowed["job_id"])
    assert robots["status"] == "failed" and "robots.txt" in robots["error"]["message"]
    assert robots["error"]["code"] == "robots_disallowed" and robots["attempts"] == 1
    assert crawlsite.hits["/private/0"] == 0


def test_a_site_whose_robots_txt_fails_is_not_crawled(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", "<a href='/a'>a</a>")
    site.add_html("/robots.txt", "down", status=503)
    job = crawl(server.http, url=url)
    assert job["status"] == "failed" and "robots.txt answered HTTP 503" in job["error"]["message"]
    assert site.hits["/"] == 0


@pytest.mark.parametrize(("outage", "code"), [(503, "upstream_status"), (429, "upstream_status"), (0, "network_error")])
def test_a_robots_txt_outage_is_retried_and_its_error_says_what_failed(
    server: ServerThread, site: TargetSite, outage: int, code: str
) -> None:
    url = site.add_html("/", "<a href='/a'>a</a>")
    site.add_html("/a", "<title>a</title>")
    failing_requests = 1 if outage else 2  # aiohttp sends a GET once more when the connection drops

    async def robots(request: web.Request) -> web.Response:
        if site.hits["/robots.txt"] > failing_requests:
            return web.Response(text="User-agent: *\nDisallow: /private\n")
        if not outage:  # the connection drops before an answer
            assert request.transport is not None
            request.transport.close()
        return web.Response(status=outage or 200, text="busy")

    site.add("/robots.txt", robots)
    job = crawl(server.http, {"max_attempts": 2}, url=url)
    assert job["status"] == "completed" and job["attempts"] == 2
    first = job["attempts_detail"][0]
    assert first["outcome"] == "retry" and first["error"]["code"] == code and "robots.txt" in first["error"]["message"]


def test_a_robots_txt_over_its_limit_is_read_for_its_first_512_kib(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", "<a href='/a'>a</a><a href='/private'>p</a><a href='/late'>l</a>")
    for path in ("/a", "/private", "/late"):
        site.add_html(path, f"<title>{path}</title>")
    padding = ("# " + "x" * 1000 + "\n") * 3000  # 3 MB: more than [fetch] max_body_bytes too
    site.add_html("/robots.txt", f"User-agent: *\nDisallow: /private\n{padding}Disallow: /late\n")
    job = crawl(server.http, url=url, max_depth=1)
    pages = all_pages(server.http, job["job_id"])
    assert job["status"] == "completed" and sorted(urlsplit(p["url"]).path for p in pages) == ["/", "/a", "/late"]
    assert site.hits["/private"] == 0 and job["attempts"] == 1


def test_a_crawl_sends_its_user_agent_and_cookies_and_reads_robots_txt_for_that_agent(
    server: ServerThread, crawlsite: CrawlSite
) -> None:
    offsite: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        offsite.append(dict(request.headers))
        return web.Response(text="<title>offsite</title>", content_type="text/html")

    crawlsite.site.add("/offsite", record)  # linked from / on another host, localhost
    refused = crawl(server.http, url=crawlsite.url("/"), user_agent="OtherBot/2.0")  # robots.txt: Disallow: /
    assert refused["status"] == "failed" and refused["error"]["code"] == "robots_disallowed"
    assert crawlsite.hits["/"] == 0
    options = {"user_agent": "MyBot/1.0", "cookies": {"sid": "abc"}}
    job = crawl(server.http, url=crawlsite.url("/"), max_depth=1, same_domain=False, **options)
    assert job["status"] == "partial"  # /p/7 answers 500
    for path in ("/", "/p/1", "/p/25"):  # /p/25 through the redirect of /moved
        assert crawlsite.request_headers[path]["User-Agent"] == "MyBot/1.0"
        assert crawlsite.request_headers[path]["Cookie"] == "sid=abc"
    assert [(h["User-Agent"], "Cookie" in h) for h in offsite] == [("MyBot/1.0", False)]


def test_a_fetch_job_sends_its_user_agent_and_the_cookies_that_match_its_url(
    server: ServerThread, crawlsite: CrawlSite
) -> None:
    cookies = [
        {"name": "sid", "value": "abc"},
        {"name": "elsewhere", "value": "1", "domain": "example.org"},
        {"name": "pages", "value": "2", "path": "/p"},
        {"name": "other_path", "value": "3", "path": "/q"},
        {"name": "tls_only", "value": "4", "secure": True},
    ]
    fetch = {"url": crawlsite.url("/p/3"), "user_agent": "MyBot/1.0", "cookies": cookies, "headers": {"Cookie": "a=0"}}
    job = server.http.wait(server.http.submit(fetch)["job_id"])
    assert job["status"] == "completed"
    assert crawlsite.request_headers["/p/3"]["User-Agent"] == "MyBot/1.0"
    assert crawlsite.request_headers["/p/3"]["Cookie"] == "a=0; sid=abc; pages=2"


def test_redirects_to_pages_reached_already_or_disallowed_are_not_followed(
    server: ServerThread, crawlsite: CrawlSite
) -> None:
    job = crawl(server.http, url=crawlsite.url("/hub"), max_depth=1, same_domain=False)
    result = server.http.get(f"/v1/jobs/{job['job_id']}/result?limit=100").json
    finals = Counter(page["final_url"] for page in result["pages"])
    stored = [crawlsite.url(p) for p in ("/hub", "/docs/", "/p/1", "/p/2")] + [crawlsite.far_base_url + "/p/4"]
    assert job["status"] == "completed" and finals == Counter(stored)
    assert result["stats"]["blocked_by_robots"] == 2  # /door and /far-door, both to /private/0
    assert {path: crawlsite.hits[path] for path in ("/docs/", "/p/1", "/p/2", "/p/4", "/private/0")} == {
        "/docs/": 1,
        "/p/1": 1,
        "/p/2": 1,
        "/p/4": 1,
        "/private/0": 0,
    }
    assert crawlsite.hits["/robots.txt"] == 2  # 127.0.0.1's, then localhost's before its redirect is followed


def test_hostile_sites_are_bounded(server: ServerThread, site: TargetSite) -> None:
    async def endless(request: web.Request) -> web.Response:
        n = int(request.query.get("n", "0"))
        links = "".join(f'<a href="/inf?n={n * 1200 + k}">x</a>' for k in range(1, 1201))
        return web.Response(text=f"<title>{n}</title><a href='/away'>away</a>{links}", content_type="text/html")

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{site.port}/inf?n=0")

    site.add("/inf", endless)
    site.add("/away", away)
    job = crawl(server.http, url=site.url("/inf"), max_pages=30, max_depth=100)
    result = server.http.get(f"/v1/jobs/{job['job_id']}/result?limit=100").json
    assert job["status"] == "completed" and result["total_pages"] == 30
    assert result["stats"]["skipped_off_site"] == 1
    assert not any(p["url"].endswith("/away") for p in result["pages"])


def test_a_crawl_runs_inline_with_its_pages_in_memory(tmp_path: Path, crawlsite: CrawlSite) -> None:
    config = make_config(tmp_path)

    async def run() -> tuple[Any, SyncContext]:
        async with Fetcher(config.fetch, NetworkPolicy(True)) as fetcher:
            context = SyncContext(Resources(config, fetcher))
            return await run_crawl(parse_crawl({"url": crawlsite.url("/"), "max_depth": 1}), context), context

    result, context = asyncio.run(run())
    assert result.status.value == "partial" and result.outputs["pages_crawled"] == len(context.pages)
    assert page_set(context.pages) == crawlsite.expected_crawl(50, 1)
    assert context.progress[-1]["progress"] == 1.0


@pytest.mark.browser
def test_a_rendered_crawl_follows_links_that_scripts_write(server: ServerThread, site: TargetSite) -> None:
    script = "<script>document.body.innerHTML += '<a href=\\'/js/' + (location.pathname.length) + '\\'>x</a>'</script>"
    site.add_html("/js", f"<html><head><title>start</title></head><body>{script}</body></html>")
    site.add_html("/js/3", "<html><head><title>written</title></head><body><p>found</p></body></html>")
    job = crawl(server.http, url=site.url("/js"), max_depth=1, render_js=True)
    pages = all_pages(server.http, job["job_id"])
    assert job["status"] == "completed" and sorted(p["title"] for p in pages) == ["start", "written"]
