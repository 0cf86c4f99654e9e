"""Scrapio's Jobs API and inline surfaces, as its docs show them, against /compat/scrapio."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.file_kinds import png_like
from tests.support import Http, ServerThread, TargetSite, make_config
from tests.test_compat_common import poll

KEY = "scrapio-key"
BASE = "/compat/scrapio"
PAGE = "<html><head><title>Example Domain</title></head><body><h1>Example Domain</h1><p>For examples.</p></body></html>"
STATUS_FIELDS = {
    "request_id",
    "job_id",
    "job_type",
    "status",
    "mode",
    "created_at",
    "started_at",
    "completed_at",
    "result_available",
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServerThread]:
    config = make_config(tmp_path, auth={"keys": [KEY]}, limits={"sync_timeout_s": 1.0})
    with ServerThread(config) as running:
        yield running


def http(api: ServerThread) -> Http:
    return Http(api.base_url, KEY)  # Authorization: Bearer KEY, as the docs send it


def until_settled(api: ServerThread, job_id: str) -> dict:  # type: ignore[type-arg]
    """The docs' loop: poll until result_available, or the status is failed or cancelled."""
    return poll(  # type: ignore[no-any-return]
        lambda: http(api).get(f"{BASE}/v1/jobs/{job_id}"),
        lambda s: s["result_available"] or s["status"] in ("failed", "cancelled"),
    )


def test_submit_poll_and_fetch_the_result(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    resp = http(api).post(f"{BASE}/v1/jobs", {"kind": "fetch", "input": {"url": url, "output": ["markdown"]}})
    assert resp.status == 202
    accepted = resp.json
    assert set(accepted) == {"request_id", "mode", "status", "job_id"}
    assert accepted["mode"] == "async" and accepted["status"] == "queued" and accepted["request_id"]
    status = until_settled(api, accepted["job_id"])
    assert set(status) == STATUS_FIELDS
    assert status["status"] == "completed" and status["job_type"] == "fetch" and status["mode"] == "async"
    assert status["created_at"].endswith("Z") and status["started_at"] and status["completed_at"]
    result = http(api).get(f"{BASE}/v1/jobs/{accepted['job_id']}/result")
    assert result.status == 200
    assert set(result.json) == (STATUS_FIELDS | {"outputs"})
    assert result.json["outputs"]["markdown"].startswith("# Example Domain")


def test_the_same_idempotency_key_returns_the_job_and_a_different_body_is_409(
    api: ServerThread, site: TargetSite
) -> None:
    body = {"kind": "fetch", "input": {"url": site.add_html("/", PAGE), "output": ["markdown"]}}
    headers = {"Idempotency-Key": "my-unique-key-123"}
    first = http(api).post(f"{BASE}/v1/jobs", body, headers=headers)
    again = http(api).post(f"{BASE}/v1/jobs", body, headers=headers)
    assert first.status == 202 and again.status == 200
    assert again.json["job_id"] == first.json["job_id"] and again.headers["idempotent-replayed"] == "true"
    other = http(api).post(f"{BASE}/v1/jobs", {**body, "input": {**body["input"], "output": ["html"]}}, headers=headers)
    assert other.status == 409 and other.json["error"]["code"] == "idempotency_conflict"
    assert until_settled(api, first.json["job_id"])["status"] == "completed"


def test_failed_partial_and_cancelled_jobs(api: ServerThread, site: TargetSite) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    good, bad = site.add_html("/", PAGE), site.add_html("/down", "oops", status=500)
    failed = http(api).post(f"{BASE}/v1/jobs", {"kind": "fetch", "input": {"url": bad}, "max_attempts": 1}).json
    partial = http(api).post(f"{BASE}/v1/jobs", {"kind": "multi_fetch", "input": {"urls": [good, bad]}}).json
    slow_job = http(api).post(f"{BASE}/v1/jobs", {"kind": "fetch", "input": {"url": site.add("/slow", slow)}}).json
    status = until_settled(api, failed["job_id"])
    assert status["status"] == "failed" and status["error"]["code"] == "upstream_status"
    assert not status["result_available"]
    assert http(api).get(f"{BASE}/v1/jobs/{failed['job_id']}/result").status == 409
    status = until_settled(api, partial["job_id"])
    assert status["status"] == "partial" and status["result_available"]
    pages = http(api).get(f"{BASE}/v1/jobs/{partial['job_id']}/result").json["outputs"]["pages"]
    assert [p["success"] for p in pages] == [True, False]
    assert http(api).delete(f"{BASE}/v1/jobs/{slow_job['job_id']}").json["status"] == "cancelled"
    assert until_settled(api, slow_job["job_id"])["status"] == "cancelled"


def test_search_without_a_search_backend_is_a_clear_422(api: ServerThread) -> None:
    resp = http(api).post(f"{BASE}/v1/jobs", {"kind": "search", "input": {"query": "tea"}})
    assert resp.status == 422 and resp.json["error"]["code"] == "unsupported_kind"
    assert "no search backend is configured" in resp.json["error"]["message"]
    assert http(api).post(f"{BASE}/v1/search", {"query": "tea"}).status == 422


def test_a_search_plugin_makes_search_work(tmp_path: Path) -> None:
    config = make_config(tmp_path, kinds={"search": "tests.plugin_example:search"})
    with ServerThread(config) as api:
        job = api.http.post(f"{BASE}/v1/jobs", {"kind": "search", "input": {"query": "tea", "limit": 2}}).json
        status = poll(lambda: api.http.get(f"{BASE}/v1/jobs/{job['job_id']}"), lambda s: s["result_available"])
        assert status["job_type"] == "search"
        outputs = api.http.get(f"{BASE}/v1/jobs/{job['job_id']}/result").json["outputs"]
        assert [r["title"] for r in outputs["results"]] == ["tea #0", "tea #1"]
        inline = api.http.post(f"{BASE}/v1/search", {"query": "tea", "limit": 1}).json
        assert inline["mode"] == "sync" and len(inline["outputs"]["results"]) == 1


def test_inline_fetch_answers_at_once_and_gives_up_at_the_cap(api: ServerThread, site: TargetSite) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    resp = http(api).post(f"{BASE}/v1/fetch", {"url": site.add_html("/", PAGE), "output": ["markdown"]})
    assert resp.status == 200
    assert resp.json["mode"] == "sync" and resp.json["status"] == "completed" and resp.json["job_type"] == "fetch"
    assert resp.json["outputs"]["markdown"].startswith("# Example Domain")
    bad = http(api).post(f"{BASE}/v1/fetch", {"url": "ftp://example.com"})
    assert bad.status == 422 and bad.json["error"]["details"][0]["field"] == "url"
    late = http(api).post(f"{BASE}/v1/fetch", {"url": site.add("/slow", slow)})
    assert late.status == 504 and late.json["error"]["code"] == "sync_timeout"
    assert "POST /v1/jobs" in late.json["error"]["message"]


def test_inline_crawl_returns_its_pages(api: ServerThread, site: TargetSite) -> None:
    site.add_html("/", '<a href="/a">A</a>')
    site.add_html("/a", "<h1>A</h1>")
    resp = http(api).post(f"{BASE}/v1/crawl", {"url": site.url("/"), "max_pages": 2, "respect_robots": False})
    assert resp.status == 200, resp.body
    assert sorted(p["url"] for p in resp.json["pages"]) == [site.url("/"), site.url("/a")]


def test_bearer_auth_is_required_and_an_unknown_job_is_404(api: ServerThread) -> None:
    assert (
        Http(api.base_url).post(f"{BASE}/v1/jobs", {"kind": "fetch", "input": {"url": "https://x.org"}}).status == 401
    )
    assert http(api).get(f"{BASE}/v1/jobs/job_00000000000000000000000000000000").status == 404


def test_a_file_output_is_an_absolute_url_that_serves_the_file(tmp_path: Path) -> None:
    config = make_config(tmp_path, auth={"keys": [KEY]}, kinds={"snapshot": "tests.file_kinds:snapshot"})
    with ServerThread(config) as api:
        job = http(api).post(f"{BASE}/v1/jobs", {"kind": "snapshot", "input": {"size": 64}}).json
        assert until_settled(api, job["job_id"])["status"] == "completed"
        link = http(api).get(f"{BASE}/v1/jobs/{job['job_id']}/result").json["outputs"]["file"]
        assert link == f"{api.base_url}/v1/files/{job['job_id']}/snapshot.png"
        served = http(api).get(link[len(api.base_url) :])
        assert served.status == 200 and served.body == png_like(64)


JOB_ONLY_PLUGIN = """
from litejobs.plugins import job_kind


@job_kind({"text": "string"}, sync_allowed=False)
async def slow_shout(input, ctx):
    return {"text": input["text"].upper()}
"""


def test_every_installed_kind_has_an_inline_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scrapio_job_only_plugin.py").write_text(JOB_ONLY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    kinds = {"shout": "tests.plugin_example:shout", "slow_shout": "scrapio_job_only_plugin:slow_shout"}
    with ServerThread(make_config(tmp_path, auth={"keys": [KEY]}, kinds=kinds)) as api:
        shouted = http(api).post(f"{BASE}/v1/shout", {"text": "hi"})
        assert shouted.status == 200, shouted.body
        assert shouted.json["mode"] == "sync" and shouted.json["job_type"] == "shout"
        assert shouted.json["status"] == "completed" and shouted.json["outputs"] == {"text": "HI"}
        bad = http(api).post(f"{BASE}/v1/shout", {"text": 3})
        assert bad.status == 422 and bad.json["error"]["details"][0]["field"] == "text"
        job_only = http(api).post(f"{BASE}/v1/slow_shout", {"text": "hi"})
        assert job_only.status == 422 and job_only.json["error"]["code"] == "unsupported_kind"
        assert "runs only as a job" in job_only.json["error"]["message"]
        assert "POST /v1/jobs" in job_only.json["error"]["message"]
        missing = http(api).post(f"{BASE}/v1/no_such_kind", {"text": "hi"})
        assert missing.status == 404 and missing.json["error"]["code"] == "not_found"
        assert Http(api.base_url).post(f"{BASE}/v1/shout", {"text": "hi"}).status == 401
        assert Http(api.base_url).post(f"{BASE}/v1/no_such_kind", {"text": "hi"}).status == 401


def test_inline_multi_fetch_a_built_in_kind_beyond_scrapios_own(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    resp = http(api).post(f"{BASE}/v1/multi_fetch", {"urls": [url]})
    assert resp.status == 200, resp.body
    assert resp.json["job_type"] == "multi_fetch" and resp.json["outputs"]["pages"][0]["success"] is True


def test_without_search_the_error_names_the_kinds_that_are_installed(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path, kinds={"shout": "tests.plugin_example:shout"})) as api:
        message = api.http.post(f"{BASE}/v1/jobs", {"kind": "search", "input": {}}).json["error"]["message"]
    installed = message.partition("the installed kinds are ")[2].split(", ")
    assert {"fetch", "crawl", "map", "interact", "render", "multi_fetch", "shout"} <= set(installed)


def test_with_the_queue_disabled_the_503_points_to_scrapios_inline_route(tmp_path: Path, site: TargetSite) -> None:
    with ServerThread(make_config(tmp_path, queue={"enabled": False})) as api:
        url = site.add_html("/", PAGE)
        refused = api.http.post(f"{BASE}/v1/jobs", {"kind": "fetch", "input": {"url": url}})
        inline = api.http.post(f"{BASE}/v1/fetch", {"url": url, "output": ["markdown"]})
    assert refused.status == 503 and refused.json["error"]["code"] == "queue_disabled"
    assert "POST /v1/fetch" in refused.json["error"]["message"]
    assert "/v1/scrape" not in refused.json["error"]["message"]
    assert inline.status == 200 and inline.json["outputs"]["markdown"].startswith("# Example Domain")
