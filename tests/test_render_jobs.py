"""Render, screenshot and interact jobs end to end: the real server driving the real Chromium."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import time
from pathlib import Path

import pytest
from aiohttp import web

from tests.support import Http, ServerThread, TargetSite, make_config

pytestmark = pytest.mark.browser

SCRIPTED = """<html><head><title>App</title></head><body><div id="root">loading</div>
<button id="btn" onclick="document.getElementById('out').textContent='clicked!'">Go</button>
<p id="out">not yet</p><input id="name" oninput="document.getElementById('echo').textContent=this.value">
<p id="echo"></p>
<script>setTimeout(() => { document.getElementById('root').innerHTML = '<h1>Hello ' + 'injected</h1>'; }, 200);</script>
</body></html>"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_render_sees_what_scripts_write_and_fetch_does_not(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/app", SCRIPTED)
    plain = server.http.submit({"url": url, "output": ["html"]})
    rendered = server.http.submit({"url": url, "wait_for": "h1", "output": ["html", "markdown"]}, kind="render")
    for job in (plain, rendered):
        assert server.http.wait(job["job_id"], 60)["status"] == "completed"
    plain_html = server.http.get(f"/v1/jobs/{plain['job_id']}/result").json["outputs"]["html"]
    outputs = server.http.get(f"/v1/jobs/{rendered['job_id']}/result").json["outputs"]
    assert "Hello injected" not in plain_html
    assert "Hello injected" in outputs["html"] and "# Hello injected" in outputs["markdown"]
    assert outputs["status_code"] == 200 and outputs["final_url"] == url


def test_a_screenshot_is_a_stored_png_served_to_its_owner(tmp_path: Path, site: TargetSite) -> None:
    config = make_config(tmp_path, auth={"keys": ["owner-key", "other-key"]})
    with ServerThread(config) as server:
        url = site.add_html("/app", SCRIPTED)
        job = server.http.submit({"url": url, "render_js": True, "output": ["screenshot"]})
        assert server.http.wait(job["job_id"], 60)["status"] == "completed"
        result = server.http.get(f"/v1/jobs/{job['job_id']}/result").json
        path = result["outputs"]["screenshot"]
        assert path == f"/v1/files/{job['job_id']}/screenshot.png"
        image = server.http.get(path)
        assert image.status == 200 and image.headers["content-type"] == "image/png"
        assert png_size(image.body) == (1280, 800)
        assert result["stats"]["files"][0]["size"] == len(image.body)
        assert Http(server.base_url, "other-key").get(path).status == 403
        assert Http(server.base_url).get(path).status == 401
        assert server.http.get(f"/v1/files/{job['job_id']}/nope.png").status == 404
        files_dir = Path(config.files_dir) / job["job_id"]
        assert (files_dir / "screenshot.png").is_file()
        assert server.app is not None
        server.app.clock = server.app.sweeper.clock = lambda: time.time_ns() // 1_000_000 + 10**11
        server.call(server.app.sweeper.sweep_once())
        assert not files_dir.exists() and server.http.get(path).status == 404


def test_interact_clicks_types_and_evaluates(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/app", SCRIPTED)
    actions = [
        {"type": "click", "selector": "#btn"},
        {"type": "type", "selector": "#name", "text": "Ada"},
        {"type": "evaluate", "script": "({out: document.getElementById('out').textContent, echo: document.getElementById('echo').textContent})"},
        {"type": "screenshot"},
    ]  # fmt: skip
    job = server.http.submit({"url": url, "actions": actions, "output": ["text"]}, kind="interact")
    assert server.http.wait(job["job_id"], 60)["status"] == "completed"
    outputs = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]
    assert [a["type"] for a in outputs["actions"]] == ["click", "type", "evaluate", "screenshot"]
    assert outputs["actions"][2]["result"] == {"out": "clicked!", "echo": "Ada"}
    assert "clicked!" in outputs["text"]
    assert server.http.get(outputs["action_screenshots"][0]).status == 200


def test_a_failing_action_fails_the_job_naming_it(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/app", SCRIPTED)
    job = server.http.submit({"url": url, "actions": [{"type": "click", "selector": "#missing"}]}, kind="interact")
    done = server.http.wait(job["job_id"], 60)
    assert done["status"] == "failed" and done["error"]["code"] == "action_failed" and done["attempts"] == 1
    assert "action 0 (click)" in done["error"]["message"] and "#missing" in done["error"]["message"]


def test_bad_actions_are_refused_at_submit(server: ServerThread) -> None:
    resp = server.http.post(
        "/v1/jobs", {"kind": "interact", "input": {"url": "http://127.0.0.1/", "actions": [{"type": "fly"}]}}
    )
    assert resp.status == 422 and resp.json["error"]["details"][0]["field"] == "input.actions[0].type"


@pytest.mark.slow
def test_a_killed_browser_is_relaunched_and_its_job_retried(server: ServerThread, site: TargetSite) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="<h1>slow but fine</h1>", content_type="text/html")

    url = site.add("/slow", slow)
    job = server.http.submit({"url": url, "output": ["markdown"]}, kind="render")
    assert server.app is not None and server.app.browser is not None
    pid = None
    for _ in range(200):
        pid = server.app.browser.state().get("pid")
        if pid and site.hits["/slow"] >= 1:
            break
        time.sleep(0.05)
    assert pid
    os.kill(pid, signal.SIGKILL)
    done = server.http.wait(job["job_id"], 60)
    assert done["status"] == "completed" and done["attempts"] == 2
    assert server.app.browser.state()["pid"] != pid


def test_cancelling_a_render_closes_its_page(server: ServerThread, site: TargetSite) -> None:
    async def never(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    job = server.http.submit({"url": site.add("/never", never)}, kind="render")
    assert server.app is not None and server.app.browser is not None
    for _ in range(200):
        if site.hits["/never"] >= 1:
            break
        time.sleep(0.05)
    started = time.monotonic()
    assert server.http.delete(f"/v1/jobs/{job['job_id']}").json["status"] == "cancelled"
    assert time.monotonic() - started < 2
    for _ in range(40):
        if server.app.browser.state()["pages_open"] == 0:
            break
        time.sleep(0.05)
    assert server.app.browser.state()["pages_open"] == 0


def test_without_chromium_render_fails_at_once_and_fetch_still_works(tmp_path: Path, site: TargetSite) -> None:
    with ServerThread(make_config(tmp_path, browser={"executable": "/nonexistent/chromium"})) as server:
        url = site.add_html("/p", "<p>x</p>")
        render = server.http.submit({"url": url}, kind="render")
        done = server.http.wait(render["job_id"])
        assert done["status"] == "failed" and done["error"]["code"] == "browser_unavailable" and done["attempts"] == 1
        assert "apt-get install" in done["error"]["message"]
        assert server.http.wait(server.http.submit({"url": url})["job_id"])["status"] == "completed"
        assert server.http.get("/readyz").json["browser"]["state"] == "unavailable"
        assert server.http.get("/v1/stats").json["browser"]["state"] == "unavailable"


def chromium_processes_of(pid: int) -> list[int]:
    """Chromium processes whose ancestry leads to `pid` or that are orphans of it (ppid 1)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"chromium" in cmdline and f"CHROMIUM_OWNER_MARK={pid}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_no_chromium_outlives_the_server(tmp_path: Path, site: TargetSite) -> None:
    from tests.support import ServerProcess

    url = site.add_html("/app", SCRIPTED)
    mark = {"CHROMIUM_OWNER_MARK": str(os.getpid())}
    server = ServerProcess(tmp_path / "a.db", env=mark)
    server.http.wait(server.http.submit({"url": url}, kind="render")["job_id"], 60)
    assert chromium_processes_of(os.getpid())
    assert server.terminate() == 0
    assert chromium_processes_of(os.getpid()) == []
    killed = ServerProcess(tmp_path / "b.db", env=mark)
    killed.http.wait(killed.http.submit({"url": url}, kind="render")["job_id"], 60)
    killed.kill()
    for _ in range(100):  # the parent-death signal takes the browser down with the server
        if not chromium_processes_of(os.getpid()):
            break
        time.sleep(0.05)
    assert chromium_processes_of(os.getpid()) == []


def test_render_jobs_waiting_for_a_page_do_not_hold_worker_slots(tmp_path: Path, site: TargetSite) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.Response(text="<h1>slow</h1>", content_type="text/html")

    config = make_config(tmp_path, queue={"concurrency": 2}, browser={"max_pages": 1})
    with ServerThread(config) as server:
        renders = [server.http.submit({"url": site.add("/slow", slow)}, kind="render") for _ in range(3)]
        time.sleep(0.5)  # the renders hold both slots: one renders, one waits for the page
        fetch = server.http.submit({"url": site.add_html("/quick", "<p>quick</p>")})
        assert server.http.wait(fetch["job_id"], 30)["status"] == "completed"
        statuses = [server.http.get(f"/v1/jobs/{r['job_id']}").json["status"] for r in renders]
        assert "completed" not in statuses[1:] and statuses.count("completed") <= 1
        for render in renders:
            assert server.http.wait(render["job_id"], 60)["status"] == "completed"
        assert server.app is not None and server.app.browser is not None
        assert server.app.browser.state()["pages_open_peak"] == 1


def test_a_rendered_page_gives_the_mime_type_as_a_fetched_one_does(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/app", SCRIPTED)  # served as text/html; charset=utf-8
    fetched = server.http.submit({"url": url})
    rendered = server.http.submit({"url": url}, kind="render")
    for job in (fetched, rendered):
        assert server.http.wait(job["job_id"], 60)["status"] == "completed"
        assert server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["content_type"] == "text/html"
