"""The `multi_fetch` kind through the real server: one entry per URL submitted, a page deadline per URL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from litejobs.fields import Fields
from tests.support import ServerThread, TargetSite, make_config
from tests.test_ai import FakeModel

PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>"


def hanging(site: TargetSite, path: str, seconds: float = 10) -> str:
    """A URL that answers only after `seconds` (longer than the job may take)."""

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(text=PAGE.format("Late"), content_type="text/html")

    return site.add(path, handler)


def result_of(server: ServerThread, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit a multi_fetch job, wait for its end: the job and its result (or the 409 body)."""
    job = server.http.wait(server.http.submit(kind="multi_fetch", **body)["job_id"])
    return job, server.http.get(f"/v1/jobs/{job['job_id']}/result").json


def test_a_url_submitted_twice_is_fetched_once_and_has_an_entry_at_each_place(
    server: ServerThread, site: TargetSite
) -> None:
    good, down = site.add_html("/good", PAGE.format("Good")), site.add_html("/down", "oops", status=500)
    job, result = result_of(server, {"input": {"urls": [good, down, good]}, "max_attempts": 1})
    assert job["status"] == "partial"
    pages = result["outputs"]["pages"]
    assert [(page["url"], page["success"]) for page in pages] == [(good, True), (down, False), (good, True)]
    assert pages[0] == pages[2] and pages[0]["title"] == "Good"
    assert (result["stats"]["pages_ok"], result["stats"]["pages_failed"]) == (2, 1)
    assert result["outputs"]["content"].count("# Good") == 1  # the page's markdown once, as it was fetched once
    assert site.hits["/good"] == 1


def test_a_bad_url_after_a_repeated_one_is_named_at_its_own_index(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/a", PAGE.format("A"))
    resp = server.http.post("/v1/jobs", {"kind": "multi_fetch", "input": {"urls": [url, url, "ftp://x/y"]}})
    assert resp.status == 422
    assert [d["field"] for d in resp.json["error"]["details"]] == ["input.urls[2]"]


def test_a_hanging_url_fails_alone_and_the_job_keeps_the_pages_that_loaded(
    server: ServerThread, site: TargetSite
) -> None:
    first, last = site.add_html("/first", PAGE.format("First")), site.add_html("/last", PAGE.format("Last"))
    slow = hanging(site, "/slow")
    started = time.monotonic()
    job, result = result_of(server, {"input": {"urls": [first, slow, last]}, "timeout_s": 4, "max_attempts": 1})
    assert job["status"] == "partial", job["error"]
    assert time.monotonic() - started < 4
    pages = result["outputs"]["pages"]
    assert [(page["url"], page["success"]) for page in pages] == [(first, True), (slow, False), (last, True)]
    assert pages[1]["error"]["code"] == "timeout"
    assert "# First" in result["outputs"]["content"] and "# Last" in result["outputs"]["content"]


def test_a_model_slower_than_the_jobs_timeout_falls_back_to_the_markdown(tmp_path: Path, site: TargetSite) -> None:
    model = FakeModel(site, answer="too late", delay_s=10)
    url = site.add_html("/", PAGE.format("Tea"))
    with ServerThread(make_config(tmp_path, ai=model.config())) as server:
        body = {"input": {"urls": [url], "prompt": "the title"}, "timeout_s": 3, "max_attempts": 1}
        job, result = result_of(server, body)
    assert job["status"] == "completed", job["error"]
    assert result["outputs"]["ai_extraction_failed"] is True
    assert result["outputs"]["content"].startswith("# Tea")


# Fields is the input reader of every kind (its own test module would be tests/test_fields.py).


def test_an_object_default_is_a_fresh_copy_for_each_input() -> None:
    default = {"viewport": {"width": 800}}
    first = Fields({}, "input").dict("options", default)
    first["viewport"]["width"] = 1  # a kind that changes its input
    assert Fields({}, "input").dict("options", default) == {"viewport": {"width": 800}}
    assert default == {"viewport": {"width": 800}}


def test_a_list_default_is_a_fresh_copy_for_each_input() -> None:
    default = ["markdown"]
    Fields({}, "input").str_list("output", default).append("html")
    assert Fields({}, "input").str_list("output", default) == ["markdown"]
