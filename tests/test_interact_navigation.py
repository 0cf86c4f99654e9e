"""After an action navigates, an interact's `status_code`, `content_type` and `headers` are those of the
document the page shows at the end; a first page's 5xx fails the job `upstream_status` only when the
actions did not leave it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from tests.support import ServerThread, TargetSite

pytestmark = pytest.mark.browser

START = """<html><body><a id=to404 href='/missing'>missing</a><a id=tojson href='/data.json'>data</a>
<form id=f method=post action='/broken'><button id=send>send</button></form></body></html>"""
ARRIVED = "<html><body><p id=arrived>arrived</p></body></html>"


def serve(site: TargetSite) -> None:
    async def start(request: web.Request) -> web.Response:
        return web.Response(text=START, content_type="text/html", headers={"X-Page": "start"})

    async def missing(request: web.Request) -> web.Response:
        body = "<html><body><p id=nope>nope</p></body></html>"
        return web.Response(status=404, text=body, content_type="text/html", headers={"X-Page": "missing"})

    async def data(request: web.Request) -> web.Response:
        return web.Response(text='{"n": 1}', content_type="application/json", headers={"X-Page": "data"})

    async def broken(request: web.Request) -> web.Response:
        body = "<html><body><p id=oops>try later</p></body></html>"
        return web.Response(status=503, text=body, content_type="text/html")

    async def failing_start(request: web.Request) -> web.Response:
        body = "<html><body><a id=on href='/arrived'>on</a></body></html>"
        return web.Response(status=500, text=body, content_type="text/html")

    async def arrived(request: web.Request) -> web.Response:
        return web.Response(text=ARRIVED, content_type="text/html")

    for path, handler in {
        "/start": start,
        "/missing": missing,
        "/data.json": data,
        "/broken": broken,
        "/failing": failing_start,
        "/arrived": arrived,
    }.items():
        site.add(path, handler)


def interact(server: ServerThread, url: str, actions: list[dict[str, Any]], output: list[str]) -> dict[str, Any]:
    job = server.http.submit({"url": url, "actions": actions, "output": output}, kind="interact", max_attempts=2)
    finished = server.http.wait(job["job_id"], 60)
    if finished["status"] != "completed":
        return finished  # type: ignore[no-any-return]
    return {**finished, **server.http.get(f"/v1/jobs/{job['job_id']}/result").json}


def test_a_click_to_a_404_reports_the_404(server: ServerThread, site: TargetSite) -> None:
    serve(site)
    actions = [{"type": "click", "selector": "#to404"}, {"type": "wait_for", "selector": "#nope", "timeout_ms": 10000}]
    result = interact(server, site.url("/start"), actions, ["text", "headers"])
    outputs = result["outputs"]
    assert outputs["final_url"] == site.url("/missing") and outputs["text"].strip() == "nope"
    assert outputs["status_code"] == 404 and outputs["content_type"] == "text/html"
    assert {name.lower(): value for name, value in outputs["headers"].items()}["x-page"] == "missing"


def test_a_click_to_json_reports_the_json_and_its_body(server: ServerThread, site: TargetSite) -> None:
    serve(site)
    actions = [{"type": "click", "selector": "#tojson"}, {"type": "wait_for", "selector": "pre", "timeout_ms": 10000}]
    outputs = interact(server, site.url("/start"), actions, ["html", "headers"])["outputs"]
    assert outputs["final_url"] == site.url("/data.json") and outputs["status_code"] == 200
    assert outputs["content_type"] == "application/json" and outputs["html"] == '{"n": 1}'
    assert {name.lower(): value for name, value in outputs["headers"].items()}["x-page"] == "data"


def test_a_first_page_answering_500_is_left_behind_by_the_actions(server: ServerThread, site: TargetSite) -> None:
    serve(site)
    actions = [{"type": "click", "selector": "#on"}, {"type": "wait_for", "selector": "#arrived", "timeout_ms": 10000}]
    result = interact(server, site.url("/failing"), actions, ["text"])
    assert result["status"] == "completed", result["error"]
    assert result["outputs"]["status_code"] == 200 and result["outputs"]["final_url"] == site.url("/arrived")
    assert site.hits["/failing"] == 1  # not retried


def test_a_first_page_answering_500_the_actions_stay_on_fails_upstream_status(
    server: ServerThread, site: TargetSite
) -> None:
    serve(site)
    result = interact(server, site.url("/failing"), [{"type": "evaluate", "script": "1 + 1"}], ["text"])
    assert result["status"] == "failed" and result["error"]["code"] == "upstream_status"
    assert site.hits["/failing"] == 2  # retried, as a fetch's 5xx is


def test_a_form_posted_to_a_5xx_reports_it_without_posting_again(server: ServerThread, site: TargetSite) -> None:
    serve(site)
    actions = [{"type": "click", "selector": "#send"}, {"type": "wait_for", "selector": "#oops", "timeout_ms": 10000}]
    result = interact(server, site.url("/start"), actions, ["text"])
    assert result["status"] == "completed", result["error"]
    assert result["outputs"]["status_code"] == 503 and result["outputs"]["final_url"] == site.url("/broken")
    assert site.hits["/broken"] == 1
