"""OmniScrape's sync scrape and async jobs, as its docs show them, against /compat/omniscrape."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support import Http, ServerThread, TargetSite, make_config
from tests.test_ai import FakeModel
from tests.test_compat_common import poll

KEY = "omni-key"
BASE = "/compat/omniscrape"
H = {"X-API-Key": KEY}
PAGE = "<html><head><title>Example</title></head><body><h1>Example Domain</h1></body></html>"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServerThread]:
    config = make_config(tmp_path, auth={"keys": [KEY]}, fetch={"timeout_s": 0.5}, queue={"max_attempts": 2})
    with ServerThread(config) as running:
        yield running


def http(api: ServerThread) -> Http:
    return Http(api.base_url)


def until_done(api: ServerThread, poll_path: str) -> dict:  # type: ignore[type-arg]
    """The docs' loop: poll until completed, failed or timed_out."""
    body = poll(
        lambda: http(api).get(BASE + poll_path, headers=H),
        lambda r: r["data"]["status"] in ("completed", "failed", "timed_out"),
    )
    assert body["success"] is True
    return body["data"]  # type: ignore[no-any-return]


def test_sync_scrape_answers_with_the_page(api: ServerThread, site: TargetSite) -> None:
    resp = http(api).post(f"{BASE}/v1/scrape", {"url": site.add_html("/", PAGE)}, headers=H)
    assert resp.status == 200
    assert resp.json["success"] is True
    assert resp.json["data"]["content"] == PAGE and resp.json["data"]["status_code"] == 200
    assert resp.json["metadata"]["elapsed_time"] >= 0
    as_markdown = http(api).post(f"{BASE}/v1/scrape", {"url": site.url("/"), "output": "markdown"}, headers=H)
    assert as_markdown.json["data"]["content"].startswith("# Example Domain")
    with_links = http(api).post(f"{BASE}/v1/scrape", {"url": site.url("/"), "output": ["text", "links"]}, headers=H)
    assert with_links.json["data"]["content"] == "Example Domain" and with_links.json["data"]["links"] == []


def test_async_with_the_identical_body_then_poll_until_completed(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    resp = http(api).post(f"{BASE}/v1/scrape/async", {"url": url}, headers=H)
    assert resp.status == 202
    job = resp.json
    assert set(job) == {"success", "job_id", "status", "poll"}
    assert job["success"] is True and job["status"] == "queued" and job["poll"] == f"/v1/jobs/{job['job_id']}"
    data = until_done(api, job["poll"])
    assert data["status"] == "completed" and data["job_id"] == job["job_id"] and data["url"] == url
    assert data["created_at"].endswith("Z") and data["updated_at"].endswith("Z")
    result = data["result"]
    assert result["success"] is True
    assert result["data"]["content"] == PAGE and result["data"]["status_code"] == 200
    assert result["metadata"]["elapsed_time"] >= 0


def test_while_waiting_the_job_is_queued_and_has_no_result(tmp_path: Path, site: TargetSite) -> None:
    with ServerThread(make_config(tmp_path, queue={"concurrency": 1})) as api:

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(1)
            return web.Response(text="done")

        first = api.http.post(f"{BASE}/v1/scrape/async", {"url": site.add("/slow", slow)}).json
        second = api.http.post(f"{BASE}/v1/scrape/async", {"url": site.add_html("/", PAGE)}).json
        data = api.http.get(BASE + second["poll"]).json["data"]
        assert data["status"] == "queued" and "result" not in data
        running = poll(lambda: api.http.get(BASE + first["poll"]), lambda b: b["data"]["status"] != "queued")
        assert running["data"]["status"] == "processing"
        for job in (first, second):
            poll(lambda j=job: api.http.get(BASE + j["poll"]), lambda b: b["data"]["status"] == "completed")


def test_a_target_past_the_timeout_is_timed_out_and_a_failing_one_failed(api: ServerThread, site: TargetSite) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    slow_job = http(api).post(f"{BASE}/v1/scrape/async", {"url": site.add("/slow", slow)}, headers=H).json
    down_job = http(api).post(f"{BASE}/v1/scrape/async", {"url": site.add_html("/down", "x", 500)}, headers=H).json
    timed_out = until_done(api, slow_job["poll"])
    assert timed_out["status"] == "timed_out" and timed_out["error"]["code"] == "timeout"
    failed = until_done(api, down_job["poll"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "upstream_status" and "result" not in failed


def test_async_is_503_without_a_queue_while_sync_works(tmp_path: Path, site: TargetSite) -> None:
    with ServerThread(make_config(tmp_path, queue={"enabled": False})) as api:
        resp = api.http.post(f"{BASE}/v1/scrape/async", {"url": site.add_html("/", PAGE)})
        assert resp.status == 503
        assert resp.json["success"] is False and resp.json["error"]["code"] == "queue_disabled"
        assert "/v1/scrape" in resp.json["error"]["message"]
        assert api.http.post(f"{BASE}/v1/scrape", {"url": site.url("/")}).json["data"]["content"] == PAGE


def test_x_api_key_is_required_and_errors_say_success_false(api: ServerThread) -> None:
    resp = http(api).post(f"{BASE}/v1/scrape/async", {"url": "https://example.com"})
    assert resp.status == 401 and resp.json["success"] is False and resp.json["error"]["code"] == "unauthorized"
    bad = http(api).post(f"{BASE}/v1/scrape/async", {"url": "ftp://example.com"}, headers=H)
    assert bad.status == 422 and bad.json["error"]["details"][0]["field"] == "url"
    missing = http(api).get(f"{BASE}/v1/jobs/job_00000000000000000000000000000000", headers=H)
    assert missing.status == 404 and missing.json["success"] is False


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium")
def test_an_async_screenshot_is_an_absolute_url_that_serves_the_png(tmp_path: Path, site: TargetSite) -> None:
    body = {"url": site.add_html("/", PAGE), "output": ["markdown", "screenshot"]}
    with ServerThread(make_config(tmp_path, auth={"keys": [KEY]})) as api:  # the browser's own timeouts
        job = http(api).post(f"{BASE}/v1/scrape/async", body, headers=H).json
        data = until_done(api, job["poll"])
        assert data["status"] == "completed", data
        shot = data["result"]["data"]["screenshot"]
        assert shot == f"{api.base_url}/v1/files/{job['job_id']}/screenshot.png"
        png = http(api).get(shot[len(api.base_url) :], headers=H)
        assert png.status == 200 and png.body.startswith(b"\x89PNG")


def test_extract_fields_and_the_models_answer_come_back_sync_and_async(tmp_path: Path, site: TargetSite) -> None:
    model = FakeModel(site)
    body = {"url": site.add_html("/", PAGE), "extract": {"prompt": "the heading", "fields": {"h": "h1"}}}
    with ServerThread(make_config(tmp_path, auth={"keys": [KEY]}, ai=model.config())) as api:
        sync = http(api).post(f"{BASE}/v1/scrape", body, headers=H).json
        job = http(api).post(f"{BASE}/v1/scrape/async", body, headers=H).json
        polled = until_done(api, job["poll"])["result"]
        fields_only = http(api).post(f"{BASE}/v1/scrape", {**body, "extract": {"fields": {"h": "h1"}}}, headers=H)
    assert len(model.requests) == 2
    for answer in (sync, polled):
        data = answer["data"]
        assert data["content"] == PAGE  # the page, as without extract
        assert data["extract"] == {"h": "Example Domain"}
        assert data["ai_content"] == "Tea: 4 EUR" and data["ai_extraction_failed"] is False
        assert answer["metadata"]["ai"]["model"] == "tiny" and answer["metadata"]["ai"]["total_tokens"] == 396
    plain = fields_only.json
    assert plain["data"]["extract"] == {"h": "Example Domain"}
    assert "ai_content" not in plain["data"] and "ai" not in plain["metadata"]


def test_without_a_model_the_prompt_says_it_failed_and_why(api: ServerThread, site: TargetSite) -> None:
    body = {"url": site.add_html("/", PAGE), "output": "markdown", "extract": {"prompt": "the heading"}}
    data = http(api).post(f"{BASE}/v1/scrape", body, headers=H).json["data"]
    assert data["content"].startswith("# Example Domain")
    assert data["ai_extraction_failed"] is True and data["ai_content"] == data["content"] and data["ai_error"]


def test_routing_errors_under_the_mount_say_success_false(api: ServerThread) -> None:
    wrong_method = http(api).delete(f"{BASE}/v1/jobs/job_x", headers=H)
    assert wrong_method.status == 405 and wrong_method.headers["allow"] == "GET, HEAD"
    assert wrong_method.json["success"] is False and wrong_method.json["error"]["code"] == "method_not_allowed"
    nowhere = http(api).get(f"{BASE}/v1/nothing", headers=H)
    assert nowhere.status == 404
    assert nowhere.json["success"] is False and nowhere.json["error"]["code"] == "not_found"
    assert nowhere.json["request_id"] == nowhere.headers["x-request-id"]
