"""ScrapeLLM's async mode, as its docs show it, against /compat/scrapellm: every kind is a scraper."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.support import FakeClock, Http, ServerThread, TargetSite, make_config
from tests.test_compat_common import poll

KEY = "llm-key"
BASE = "/compat/scrapellm"
PAGE = "<html><head><title>Tea</title></head><body><h1>Tea</h1><p>Green tea and black tea.</p></body></html>"
STATUS_FIELDS = {"job_id", "status", "result", "error", "created_at", "completed_at"}


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[ServerThread]:
    config = make_config(tmp_path, auth={"keys": [KEY]}, kinds={"word_count": "tests.plugin_example:word_count"})
    with ServerThread(config, clock=clock) as running:
        yield running


def submit(api: ServerThread, scraper: str, params: dict[str, Any], body: Any = None) -> dict[str, Any]:
    resp = Http(api.base_url).post(f"{BASE}/scrapers/{scraper}/jobs?{urlencode(params)}", body, headers={})
    assert resp.status == 202, resp.body
    return resp.json  # type: ignore[no-any-return]


def until_done(api: ServerThread, job_id: str) -> dict[str, Any]:
    """The docs' loop: poll with no key until the status is done or failed."""
    return poll(  # type: ignore[no-any-return]
        lambda: Http(api.base_url).get(f"{BASE}/jobs/{job_id}"), lambda b: b["status"] in ("done", "failed")
    )


def test_submit_with_query_parameters_then_poll_with_no_key(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    job = submit(api, "fetch", {"api_key": KEY, "url": url, "output": "markdown"})
    assert job == {"job_id": job["job_id"], "status": "pending"}
    done = until_done(api, job["job_id"])
    assert set(done) == STATUS_FIELDS
    assert done["status"] == "done" and done["error"] is None and done["job_id"] == job["job_id"]
    assert done["result"]["markdown"].startswith("# Tea") and done["result"]["status_code"] == 200
    assert done["created_at"].endswith("Z") and done["completed_at"].endswith("Z")


def test_parameters_may_come_as_json_and_the_key_as_a_header(api: ServerThread, site: TargetSite) -> None:
    resp = Http(api.base_url).post(
        f"{BASE}/scrapers/fetch/jobs",
        {"url": site.add_html("/", PAGE), "output": ["text", "links"], "timeout": 30},
        headers={"X-API-Key": KEY},
    )
    assert resp.status == 202
    native = Http(api.base_url, KEY).wait(resp.json["job_id"])
    assert native["timeout_s"] == 30 and native["max_attempts"] == 3 and "timeout" not in native["input"]
    done = until_done(api, resp.json["job_id"])
    assert done["result"]["text"] == "Tea\nGreen tea and black tea." and done["result"]["links"] == []


def test_a_plugin_kind_is_a_scraper(api: ServerThread, site: TargetSite) -> None:
    job = submit(api, "word_count", {"api_key": KEY, "url": site.add_html("/", PAGE), "min_length": 4})
    done = until_done(api, job["job_id"])
    assert done["status"] == "done" and done["result"] == {"url": site.url("/"), "words": 3, "distinct": 3}


def test_a_failing_scrape_is_tried_three_times_then_failed(api: ServerThread, site: TargetSite) -> None:
    job = submit(api, "fetch", {"api_key": KEY, "url": site.add_html("/down", "oops", status=503)})
    done = until_done(api, job["job_id"])
    assert done["status"] == "failed" and "503" in done["error"] and done["result"] is None
    assert site.hits["/down"] == 3


def test_there_is_no_cancellation(api: ServerThread, site: TargetSite) -> None:
    job = submit(api, "fetch", {"api_key": KEY, "url": site.add_html("/", PAGE)})
    assert Http(api.base_url, KEY).delete(f"{BASE}/jobs/{job['job_id']}").status == 405
    assert until_done(api, job["job_id"])["status"] == "done"


def test_a_job_is_404_once_retention_has_passed(api: ServerThread, site: TargetSite, clock: FakeClock) -> None:
    job = submit(api, "fetch", {"api_key": KEY, "url": site.add_html("/", PAGE)})
    until_done(api, job["job_id"])
    clock.advance(api.config.store.retention_s + 1)
    assert api.app is not None
    assert api.call(api.app.sweeper.sweep_once()) == [job["job_id"]]
    assert Http(api.base_url).get(f"{BASE}/jobs/{job['job_id']}").status == 404


def test_an_unknown_scraper_or_a_missing_key_is_refused(api: ServerThread, site: TargetSite) -> None:
    unknown = Http(api.base_url).post(f"{BASE}/scrapers/chatgpt/jobs?api_key={KEY}&prompt=hi")
    assert unknown.status == 422 and unknown.json["error"]["code"] == "unsupported_kind"
    assert "word_count" in unknown.json["error"]["message"]
    assert Http(api.base_url).post(f"{BASE}/scrapers/fetch/jobs?url={site.url('/')}").status == 401
    bad = Http(api.base_url).post(f"{BASE}/scrapers/word_count/jobs?api_key={KEY}&url=x&min_length=0")
    assert bad.status == 422 and {d["field"] for d in bad.json["error"]["details"]} == {"url", "min_length"}


def test_without_a_queue_a_kind_is_pointed_to_a_route_that_runs_it(tmp_path: Path, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    with ServerThread(make_config(tmp_path, queue={"enabled": False})) as api:
        crawl = Http(api.base_url).post(f"{BASE}/scrapers/crawl/jobs?{urlencode({'url': url, 'max_pages': 1})}")
        route = f"{api.base_url}/compat/scrapio/v1/crawl"
        assert crawl.status == 503 and f"POST {route}" in crawl.json["error"]["message"]
        ran = Http(api.base_url).post(route[len(api.base_url) :], {"url": url, "max_pages": 1})
        assert ran.status == 200 and ran.json["outputs"]["pages_crawled"] == 1
