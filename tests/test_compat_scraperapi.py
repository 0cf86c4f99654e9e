"""ScraperAPI's Async API flow, as its docs show it, against /compat/scraperapi."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from aiohttp import web

from litejobs.api.dialects.scraperapi import fetch_input
from tests.support import Http, ServerThread, TargetSite, make_config
from tests.test_compat_common import poll

KEY = "API_KEY"
PAGE = "<!doctype html><html><head><title>Example Domain</title></head><body><h1>Example Domain</h1></body></html>"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path, auth={"keys": [KEY, "OTHER_KEY"]})) as running:
        yield running


def client(api: ServerThread) -> Http:
    """No Authorization header: ScraperAPI's clients send the key in the body or the query."""
    return Http(api.base_url)


def status_path(status_url: str) -> str:
    return urlsplit(status_url).path


def test_submit_poll_the_status_url_and_read_the_response(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    resp = client(api).post("/compat/scraperapi/jobs", {"apiKey": KEY, "url": url})
    assert resp.status == 200
    job = resp.json
    assert set(job) == {"id", "status", "statusUrl", "url"}
    assert job["status"] == "running" and job["url"] == url
    assert job["statusUrl"] == f"{api.base_url}/compat/scraperapi/jobs/{job['id']}"
    # the docs poll the statusUrl with no key at all
    done = poll(lambda: client(api).get(status_path(job["statusUrl"])), lambda b: b["status"] != "running")
    assert done["status"] == "finished" and done["id"] == job["id"] and done["statusUrl"] == job["statusUrl"]
    response = done["response"]
    assert set(response) == {"headers", "body", "statusCode"}
    assert response["statusCode"] == 200 and response["body"] == PAGE
    assert response["headers"]["content-type"].startswith("text/html")
    assert response["headers"]["sa-final-url"] == url and response["headers"]["sa-statuscode"] == "200"


def test_a_post_job_sends_method_headers_and_body_and_meta_is_echoed(api: ServerThread, site: TargetSite) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"method": request.method, "type": request.content_type, "body": await request.text()})

    body = {
        "apiKey": KEY,
        "url": site.add("/post", echo),
        "method": "POST",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "body": "foo=bar",
        "meta": {"my_request_id": "abc"},
    }
    job = client(api).post("/compat/scraperapi/jobs", body).json
    assert job["meta"] == {"my_request_id": "abc"}
    done = poll(lambda: client(api).get(status_path(job["statusUrl"])), lambda b: b["status"] != "running")
    assert done["meta"] == {"my_request_id": "abc"}
    assert '"method": "POST"' in done["response"]["body"] and '"body": "foo=bar"' in done["response"]["body"]
    assert "application/x-www-form-urlencoded" in done["response"]["body"]


def test_the_key_may_come_as_the_api_key_query_parameter(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    resp = client(api).post(f"/compat/scraperapi/jobs?api_key={KEY}", {"url": url})
    assert resp.status == 200
    assert resp.json["statusUrl"] == f"{api.base_url}/compat/scraperapi/jobs/{resp.json['id']}"
    done = poll(lambda: client(api).get(status_path(resp.json["statusUrl"])), lambda b: b["status"] != "running")
    assert done["status"] == "finished"


def test_a_target_that_keeps_failing_ends_failed(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/down", "oops", status=500)
    job = client(api).post("/compat/scraperapi/jobs", {"apiKey": KEY, "url": url}).json
    done = poll(lambda: client(api).get(status_path(job["statusUrl"])), lambda b: b["status"] != "running")
    assert done["status"] == "failed" and "500" in done["error"] and "response" not in done
    assert site.hits["/down"] == 3  # the engine's retries: [queue] max_attempts


def test_delete_cancels_a_running_job(api: ServerThread, site: TargetSite) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    job = client(api).post("/compat/scraperapi/jobs", {"apiKey": KEY, "url": site.add("/slow", slow)}).json
    poll(lambda: Http(api.base_url, KEY).get(f"/v1/jobs/{job['id']}"), lambda b: b["status"] == "active")
    started = time.monotonic()
    resp = client(api).delete(f"/compat/scraperapi/jobs/{job['id']}")
    assert resp.status == 200 and resp.json["status"] == "failed" and "cancelled" in resp.json["error"]
    assert time.monotonic() - started < 3
    assert client(api).get(f"/compat/scraperapi/jobs/{job['id']}").json["status"] == "failed"
    assert Http(api.base_url, KEY).get(f"/v1/jobs/{job['id']}").json["status"] == "cancelled"
    assert client(api).delete(f"/compat/scraperapi/jobs/{job['id']}").status == 409


def test_a_missing_or_wrong_key_is_401_and_a_missing_url_is_named(api: ServerThread) -> None:
    assert client(api).post("/compat/scraperapi/jobs", {"url": "https://example.com"}).status == 401
    assert client(api).post("/compat/scraperapi/jobs", {"apiKey": "nope", "url": "https://example.com"}).status == 401
    resp = client(api).post("/compat/scraperapi/jobs", {"apiKey": KEY, "urll": "https://example.com"})
    assert resp.status == 422
    fields = {d["field"] for d in resp.json["error"]["details"]}
    assert fields == {"urll", "url"}


def test_api_params_render_asks_for_a_rendered_page(api: ServerThread) -> None:
    native, key, meta = fetch_input({"apiKey": KEY, "url": "https://example.com", "apiParams": {"render": True}})
    assert native == {"url": "https://example.com", "output": ["html", "headers"], "render_js": True}
    assert (key, meta) == (KEY, {})
    body = {"apiKey": KEY, "url": "https://example.com", "apiParams": {"country_code": "us"}}
    bad = client(api).post("/compat/scraperapi/jobs", body)
    assert bad.status == 422 and bad.json["error"]["details"][0]["field"] == "apiParams.country_code"


def test_a_job_of_another_kind_reads_and_cancels_through_the_status_url(api: ServerThread, site: TargetSite) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    spidra = Http(api.base_url, KEY)  # a Spidra job is a multi_fetch: its input has `urls`, no `url`
    done_id = spidra.post("/compat/spidra/api/scrape", {"urls": [site.add_html("/", PAGE)]}).json["jobId"]
    slow_id = spidra.post("/compat/spidra/api/scrape", {"urls": [site.add("/slow", slow)]}).json["jobId"]
    done = poll(lambda: client(api).get(f"/compat/scraperapi/jobs/{done_id}"), lambda b: b["status"] != "running")
    assert done["status"] == "finished" and done["id"] == done_id and done["url"] is None
    poll(lambda: Http(api.base_url, KEY).get(f"/v1/jobs/{slow_id}"), lambda b: b["status"] == "active")
    resp = client(api).delete(f"/compat/scraperapi/jobs/{slow_id}")
    assert resp.status == 200 and resp.json["status"] == "failed" and "cancelled" in resp.json["error"]
    assert Http(api.base_url, KEY).get(f"/v1/jobs/{slow_id}").json["status"] == "cancelled"


def test_a_job_waiting_to_retry_is_running_with_no_error(tmp_path: Path, site: TargetSite) -> None:
    hits = []

    async def down_once(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(text=PAGE, status=500 if len(hits) == 1 else 200, content_type="text/html")

    config = make_config(tmp_path, auth={"keys": [KEY]}, queue={"backoff_base_s": 30, "backoff_max_s": 30})
    with ServerThread(config) as api:
        job = client(api).post("/compat/scraperapi/jobs", {"apiKey": KEY, "url": site.add("/flaky", down_once)}).json
        native = poll(
            lambda: Http(api.base_url, KEY).get(f"/v1/jobs/{job['id']}"),
            lambda b: b["status"] not in ("waiting", "active"),
        )
        assert native["status"] == "delayed" and native["error"]  # the first attempt failed; a retry is due
        between = client(api).get(status_path(job["statusUrl"])).json
        assert between["status"] == "running" and "error" not in between


def test_the_url_may_come_as_a_query_parameter_and_the_body_wins(api: ServerThread, site: TargetSite) -> None:
    in_query, in_body = site.add_html("/query", PAGE), site.add_html("/body", "<p>body</p>")
    resp = client(api).post(f"/compat/scraperapi/jobs?api_key={KEY}&url={quote(in_query, safe='')}")
    assert resp.status == 200 and resp.json["url"] == in_query
    done = poll(lambda: client(api).get(status_path(resp.json["statusUrl"])), lambda b: b["status"] != "running")
    assert done["status"] == "finished" and done["response"]["body"] == PAGE
    both = client(api).post(f"/compat/scraperapi/jobs?url={quote(in_query, safe='')}", {"apiKey": KEY, "url": in_body})
    assert both.status == 200 and both.json["url"] == in_body


def test_an_empty_meta_is_echoed_too(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    job = client(api).post("/compat/scraperapi/jobs", {"apiKey": KEY, "url": url, "meta": {}}).json
    assert job["meta"] == {}
    done = poll(lambda: client(api).get(status_path(job["statusUrl"])), lambda b: b["status"] != "running")
    assert done["status"] == "finished" and done["meta"] == {}
