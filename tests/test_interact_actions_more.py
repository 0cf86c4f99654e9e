"""Interact actions where the page moves under them: popups, navigations an action starts, a `wait_for` that
never matches, and the limits of the actions' waits. The real server drives the real Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from litejobs.browser import find_chromium
from tests.support import ServerThread, TargetSite, make_config

pytestmark = [pytest.mark.browser, pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine")]

FORM = """<html><head><title>Form</title></head><body>
<button id="popup" onclick="window.open('/next')">open a window</button>
<a id="blank" href="/next" target="_blank">open a tab</a>
<button id="mark" onclick="document.getElementById('out').textContent = 'clicked'">mark</button>
<p id="out">not yet</p>
<a id="go" href="/next">go</a> <a id="empty" href="/empty">204</a> <a id="file" href="/file">download</a>
<form action="/next"><input id="q" name="q"></form>
</body></html>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One server for the module; two pages at a time keep the machine responsive."""
    config = make_config(tmp_path_factory.mktemp("actions"), browser={"max_pages": 2})
    with ServerThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def site() -> Iterator[TargetSite]:
    target = TargetSite()

    async def slow_next(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)  # the action has answered long before the next document commits
        html = "<html><head><title>Next</title></head><body><h1 id='arrived'>arrived</h1></body></html>"
        return web.Response(text=html, content_type="text/html")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def download(request: web.Request) -> web.Response:
        headers = {"Content-Disposition": "attachment; filename=a.bin"}
        return web.Response(body=b"x" * 10, headers=headers, content_type="application/octet-stream")

    target.add_html("/form", FORM)
    target.add("/next", slow_next)
    target.add("/empty", empty)
    target.add("/file", download)
    yield target
    target.close()


def run_job(server: ServerThread, input: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Submit an interact job, wait for its end; the job with its outputs (if it completed) under "outputs"."""
    job = server.http.wait(server.http.submit(input, kind="interact", **options)["job_id"], 90)
    if job["status"] == "completed":
        job["outputs"] = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]
    return job


@pytest.mark.parametrize("opener", ["#popup", "#blank"])
def test_a_click_after_the_page_opened_a_popup_is_made(server: ServerThread, site: TargetSite, opener: str) -> None:
    """It waited for the job's timeout: the popup took the foreground, and the page behind it never
    answered the click's scroll-into-view."""
    actions = [
        {"type": "click", "selector": opener},
        {"type": "click", "selector": "#mark"},
        {"type": "evaluate", "script": "document.getElementById('out').textContent"},
    ]

    job = run_job(server, {"url": site.url("/form"), "actions": actions}, timeout_s=20, max_attempts=1)

    assert job["status"] == "completed", job["error"]
    assert job["outputs"]["actions"][2]["result"] == "clicked"
    assert job["outputs"]["final_url"] == site.url("/form")


@pytest.mark.parametrize(
    ("starts", "final_path"),
    [
        ({"type": "click", "selector": "#go"}, "/next"),
        ({"type": "press", "selector": "#q", "key": "Enter"}, "/next?q="),
        ({"type": "type", "selector": "#q", "text": "ada\n"}, "/next?q=ada"),
        ({"type": "evaluate", "script": "location.href = '/next'; 1"}, "/next"),
    ],
    ids=["click", "press", "type", "evaluate"],
)
def test_the_action_after_one_that_navigates_runs_in_the_next_document(
    server: ServerThread, site: TargetSite, starts: dict[str, Any], final_path: str
) -> None:
    """The next action ran in the old document: "Execution context was destroyed", or its answer."""
    actions = [starts, {"type": "evaluate", "script": "document.title + ' ' + location.pathname"}]

    job = run_job(
        server, {"url": site.url("/form"), "actions": actions, "output": ["text"]}, timeout_s=20, max_attempts=1
    )

    assert job["status"] == "completed", job["error"]
    assert job["outputs"]["actions"][1]["result"] == "Next /next"
    assert job["outputs"]["final_url"] == site.url(final_path) and "arrived" in job["outputs"]["text"]


@pytest.mark.parametrize("link", ["#empty", "#file"])
def test_a_click_whose_navigation_leaves_no_document_goes_on_in_the_page(
    server: ServerThread, site: TargetSite, link: str
) -> None:
    """A 204 or a (refused) download ends the navigation without a new document: the next action runs at
    once in the page, within a job far shorter than the wait for a navigation (30 s)."""
    actions = [
        {"type": "click", "selector": link},
        {"type": "click", "selector": "#mark"},
        {"type": "evaluate", "script": "document.getElementById('out').textContent"},
    ]

    job = run_job(server, {"url": site.url("/form"), "actions": actions}, timeout_s=10, max_attempts=1)

    assert job["status"] == "completed", job["error"]
    assert job["outputs"]["actions"][2]["result"] == "clicked"
    assert job["outputs"]["final_url"] == site.url("/form")


def test_a_wait_for_that_never_matches_fails_at_its_timeout_ms_and_is_not_retried(
    server: ServerThread, site: TargetSite
) -> None:
    actions = [{"type": "wait_for", "selector": "#never", "timeout_ms": 500}]

    job = run_job(server, {"url": site.url("/form"), "actions": actions}, timeout_s=20, max_attempts=3)

    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "action_failed"
    assert job["error"]["message"] == "action 0 (wait_for): '#never' did not appear within 500 ms"


@pytest.mark.slow
def test_a_wait_for_without_timeout_ms_fails_after_30_s_not_at_the_jobs_timeout(
    server: ServerThread, site: TargetSite
) -> None:
    """It waited for the whole job: `timeout`, retried, though the page would not change."""
    actions = [{"type": "wait_for", "selector": "#never"}]

    job = run_job(server, {"url": site.url("/form"), "actions": actions}, timeout_s=45, max_attempts=2)

    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "action_failed"
    assert job["error"]["message"] == "action 0 (wait_for): '#never' did not appear within 30000 ms"


@pytest.mark.parametrize(
    ("action", "field", "message"),
    [
        ({"type": "wait_for", "selector": "#q", "timeout_ms": -5}, "timeout_ms", "must be from 0 to 3600000"),
        ({"type": "wait_for", "selector": "#q", "timeout_ms": 3_600_001}, "timeout_ms", "must be from 0 to 3600000"),
        ({"type": "scroll", "to": "bottom", "ms": 1e9}, "ms", "must be from 0 to 60000"),
        ({"type": "scroll", "by": 100, "ms": -1}, "ms", "must be from 0 to 60000"),
        ({"type": "wait", "ms": 60_001}, "ms", "must be from 0 to 60000"),
    ],
)
def test_action_waits_out_of_range_are_refused_at_submit(
    server: ServerThread, action: dict[str, Any], field: str, message: str
) -> None:
    body = {"kind": "interact", "input": {"url": "http://127.0.0.1/", "actions": [{"type": "wait", "ms": 1}, action]}}

    resp = server.http.post("/v1/jobs", body)

    assert resp.status == 422
    assert resp.json["error"]["details"] == [{"field": f"input.actions[1].{field}", "problem": message}]


def test_action_waits_at_their_limits_are_accepted(server: ServerThread, site: TargetSite) -> None:
    actions = [
        {"type": "wait_for", "selector": "#q", "timeout_ms": 0},
        {"type": "wait_for", "selector": "#q", "timeout_ms": 3_600_000},
        {"type": "scroll", "by": 10, "ms": 0},
        {"type": "wait", "ms": 0},
    ]

    job = run_job(server, {"url": site.url("/form"), "actions": actions}, timeout_s=20, max_attempts=1)

    assert job["status"] == "completed", job["error"]
    assert [a["ok"] for a in job["outputs"]["actions"]] == [True] * 4
