"""Spidra's scrape jobs, as its docs show them, against /compat/spidra (a fake local model for prompts)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support import Http, ServerThread, TargetSite, make_config
from tests.test_ai import FakeModel
from tests.test_compat_common import poll

KEY, OTHER = "spidra-key", "other-key"
BASE = "/compat/spidra"
PAGE = "<html><head><title>Example Domain</title></head><body><h1>Example Domain</h1><p>Tea: 4 EUR</p></body></html>"
STATS = {"durationMs", "captchaSolvedCount", "inputTokens", "outputTokens", "totalTokens"}


def spidra(tmp_path: Path, **sections: Any) -> ServerThread:
    return ServerThread(make_config(tmp_path, auth={"keys": [KEY, OTHER]}, **sections))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServerThread]:
    with spidra(tmp_path) as running:
        yield running


def headers(key: str = KEY) -> dict[str, str]:
    return {"x-api-key": key}


def wait_for_result(api: ServerThread, job_id: str) -> dict[str, Any]:
    """The docs' waitForResult: poll until completed or failed."""
    return poll(  # type: ignore[no-any-return]
        lambda: Http(api.base_url).get(f"{BASE}/api/scrape/{job_id}", headers=headers()),
        lambda b: b["status"] in ("completed", "failed"),
    )


def submit(api: ServerThread, body: dict[str, Any]) -> dict[str, Any]:
    resp = Http(api.base_url).post(f"{BASE}/api/scrape", body, headers=headers())
    assert resp.status == 200, resp.body
    return resp.json  # type: ignore[no-any-return]


def test_submit_then_poll_until_completed_without_a_prompt(api: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/", PAGE)
    job = submit(api, {"urls": [{"url": url}]})
    assert set(job) == {"jobId", "status"} and job["status"] == "waiting"
    done = wait_for_result(api, job["jobId"])
    assert set(done) == {"status", "progress", "result", "error"}
    assert done["status"] == "completed" and done["error"] is None
    assert done["progress"] == {"message": "Scrape completed successfully", "progress": 1}
    result = done["result"]
    assert set(result) == {"content", "data", "screenshots", "ai_extraction_failed", "stats"}
    assert result["content"].startswith("# Example Domain") and result["ai_extraction_failed"] is False
    assert result["data"] == [
        {
            "url": url,
            "title": "Example Domain",
            "markdownContent": result["content"],
            "success": True,
            "screenshotUrl": None,
        }
    ]
    assert result["screenshots"] == [] and set(result["stats"]) == STATS
    assert result["stats"]["totalTokens"] == 0 and result["stats"]["durationMs"] >= 0


def test_several_urls_give_one_entry_each_and_a_failed_one_says_so(api: ServerThread, site: TargetSite) -> None:
    good, bad = site.add_html("/", PAGE), site.add_html("/down", "oops", status=500)
    done = wait_for_result(api, submit(api, {"urls": [{"url": good}, {"url": bad}], "output": "markdown"})["jobId"])
    assert done["status"] == "completed"
    assert [(d["url"], d["success"]) for d in done["result"]["data"]] == [(good, True), (bad, False)]


def test_a_url_submitted_twice_has_an_entry_each_time(api: ServerThread, site: TargetSite) -> None:
    good, bad = site.add_html("/", PAGE), site.add_html("/down", "oops", status=500)
    done = wait_for_result(api, submit(api, {"urls": [{"url": good}, {"url": bad}, {"url": good}]})["jobId"])
    assert done["status"] == "completed"
    assert [(d["url"], d["success"]) for d in done["result"]["data"]] == [(good, True), (bad, False), (good, True)]


def test_a_job_whose_every_url_fails_is_failed_with_the_reason(api: ServerThread, site: TargetSite) -> None:
    bad = site.add_html("/down", "oops", status=500)
    done = wait_for_result(api, submit(api, {"urls": [{"url": bad}]})["jobId"])
    assert done["status"] == "failed" and "500" in done["error"] and done["result"] is None


def test_a_prompt_goes_to_the_model_with_the_page_and_fills_the_token_stats(tmp_path: Path, site: TargetSite) -> None:
    model = FakeModel(site, answer='{"heading": "Example Domain", "price": "4 EUR"}')
    with spidra(tmp_path, ai=model.config()) as api:
        job = submit(
            api, {"urls": [{"url": site.add_html("/", PAGE)}], "prompt": "heading and price", "output": "json"}
        )
        result = wait_for_result(api, job["jobId"])["result"]
    assert result["content"] == {"heading": "Example Domain", "price": "4 EUR"}
    assert result["ai_extraction_failed"] is False
    stats = result["stats"]
    assert (stats["inputTokens"], stats["outputTokens"], stats["totalTokens"]) == (312, 84, 396)
    assert "Tea: 4 EUR" in model.requests[0]["body"]["messages"][-1]["content"]
    assert result["data"][0]["markdownContent"].startswith("# Example Domain")


def test_without_a_model_a_prompt_falls_back_to_the_markdown(api: ServerThread, site: TargetSite) -> None:
    job = submit(api, {"urls": [{"url": site.add_html("/", PAGE)}], "prompt": "the price"})
    result = wait_for_result(api, job["jobId"])["result"]
    assert result["ai_extraction_failed"] is True and result["content"].startswith("# Example Domain")


def test_progress_is_reported_per_url_while_the_job_runs(api: ServerThread, site: TargetSite) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response(text=PAGE, content_type="text/html")

    fast, held = site.add_html("/", PAGE), site.add("/slow", slow)
    job = submit(api, {"urls": [{"url": fast}, {"url": held}]})
    active = poll(
        lambda: Http(api.base_url).get(f"{BASE}/api/scrape/{job['jobId']}", headers=headers()),
        lambda b: b["status"] != "waiting" and "(2/2)" in b["progress"]["message"],
    )
    assert active["status"] == "active" and active["result"] is None and active["error"] is None
    assert active["progress"] == {"message": f"Scraping {held} (2/2)", "progress": 0.5}
    assert wait_for_result(api, job["jobId"])["status"] == "completed"


def test_another_keys_job_is_403_and_an_unknown_one_404_in_spidras_shape(api: ServerThread, site: TargetSite) -> None:
    job = submit(api, {"urls": [{"url": site.add_html("/", PAGE)}]})
    wait_for_result(api, job["jobId"])
    theirs = Http(api.base_url).get(f"{BASE}/api/scrape/{job['jobId']}", headers=headers(OTHER))
    assert theirs.status == 403
    assert theirs.json == {"status": "error", "message": "You do not have permission to access this job."}
    unknown = Http(api.base_url).get(f"{BASE}/api/scrape/job_00000000000000000000000000000000", headers=headers())
    assert unknown.status == 404 and unknown.json == {"status": "error", "message": "Scrape not found"}


def test_routing_errors_under_the_mount_are_in_spidras_shape(api: ServerThread) -> None:
    wrong_method = Http(api.base_url).delete(f"{BASE}/api/scrape/job_x", headers=headers())
    assert wrong_method.status == 405 and wrong_method.headers["allow"] == "GET, HEAD"
    assert wrong_method.json == {"status": "error", "message": "Method Not Allowed"}
    nowhere = Http(api.base_url).get(f"{BASE}/api/nothing", headers=headers())
    assert nowhere.status == 404 and nowhere.json == {"status": "error", "message": "Not Found"}


def test_a_bad_body_is_422_naming_spidras_fields(api: ServerThread) -> None:
    body = {"urls": [{"url": "ftp://x"}, {"url": "https://example.com", "actions": []}], "output": "csv"}
    resp = Http(api.base_url).post(f"{BASE}/api/scrape", body, headers=headers())
    assert resp.status == 422 and resp.json["status"] == "error"
    assert {d["field"] for d in resp.json["details"]} == {"urls[0]", "urls[1].actions", "output"}


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium")
def test_a_screenshot_is_a_url_that_serves_the_png(api: ServerThread, site: TargetSite) -> None:
    job = submit(api, {"urls": [{"url": site.add_html("/", PAGE)}], "screenshot": True})
    done = wait_for_result(api, job["jobId"])
    assert done["status"] == "completed", done
    shot = done["result"]["data"][0]["screenshotUrl"]
    assert shot.startswith(f"{api.base_url}/v1/files/") and done["result"]["screenshots"] == [shot]
    png = Http(api.base_url).get(shot[len(api.base_url) :], headers=headers())
    assert png.status == 200 and png.body.startswith(b"\x89PNG")
