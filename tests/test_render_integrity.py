"""Rendered pages that arrive broken or never finish: a body cut off after its headers fails as a fetch of it
does; a page held back by a stalled image is returned as it is; a SIGKILLed server's Chromium profile is
removed by the next launch. The real server drives the real Chromium."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.browser import find_chromium
from litejobs.chromium import PROFILE_OWNER_FILE, PROFILE_PREFIX, this_process
from tests.support import ServerProcess, ServerThread, TargetSite, make_config

pytestmark = [pytest.mark.browser, pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine")]

TEXT = "<p id='text'>the text is here</p>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(tmp_path_factory.mktemp("integrity"), browser={"max_pages": 2})
    with ServerThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def site() -> Iterator[TargetSite]:
    target = TargetSite()
    yield target
    target.close()


async def reset_mid_body(request: web.Request) -> web.Response:
    """Declares 100,000 bytes, sends about 1 KB of them, then resets the connection."""
    transport = request.transport
    assert transport is not None
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n"
    transport.write(head + b"<html><body><p>start</p>" + b"x" * 1000)
    await asyncio.sleep(0.2)
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return web.Response()


async def bad_chunk(request: web.Request) -> web.Response:
    """A chunked body whose second chunk size is not a number."""
    transport = request.transport
    assert transport is not None
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
    transport.write(head + b"6\r\n<html>\r\nZZZ\r\nabc\r\n")
    await asyncio.sleep(0.3)
    transport.close()
    return web.Response()


async def never(request: web.Request) -> web.StreamResponse:
    """Headers, then nothing for as long as the test can last."""
    response = web.StreamResponse(headers={"Content-Type": "image/png"})
    await response.prepare(request)
    await asyncio.sleep(60)
    return response


async def stalled_document(request: web.Request) -> web.StreamResponse:
    """The start of a page, then nothing: the document never finishes parsing."""
    response = web.StreamResponse(headers={"Content-Type": "text/html"})
    await response.prepare(request)
    await response.write(b"<html><body><p>the start</p>")
    await asyncio.sleep(60)
    return response


def run_job(server: ServerThread, input: dict[str, Any], kind: str = "render", **options: Any) -> dict[str, Any]:
    """Submit, wait for the end, and return the job with its outputs (if it has a result) under "outputs"."""
    job = server.http.wait(server.http.submit(input, kind=kind, **options)["job_id"], 90)
    if job["status"] == "completed":
        result = server.http.get(f"/v1/jobs/{job['job_id']}/result").json
        job["outputs"], job["stats"] = result["outputs"], result["stats"]
    return job


# -- a main document cut off after its headers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "handler", "net_errors"),
    [
        ("/reset", reset_mid_body, "ERR_CONNECTION_RESET"),
        ("/badchunk", bad_chunk, "ERR_INVALID_CHUNKED_ENCODING"),
    ],
)
def test_a_rendered_page_cut_off_after_its_headers_fails_network_error_and_is_retried(
    server: ServerThread, site: TargetSite, path: str, handler: Any, net_errors: tuple[str, ...]
) -> None:
    url = site.add(f"/render{path}", handler)

    job = run_job(server, {"url": url, "output": ["html"]}, max_attempts=2)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "network_error"
    assert "broke off" in job["error"]["message"]
    assert any(f"net::{code}" in job["error"]["message"] for code in net_errors)
    assert job["attempts"] == 2 and site.hits[f"/render{path}"] == 2  # retried, as a fetch's network_error is


def test_a_fetch_with_render_js_and_a_scrape_of_a_cut_off_page_fail_as_a_fetch_does(
    server: ServerThread, site: TargetSite
) -> None:
    url = site.add("/js/reset", reset_mid_body)

    fetched = run_job(server, {"url": url, "output": ["html"]}, kind="fetch", max_attempts=1)
    rendered = run_job(server, {"url": url, "render_js": True, "output": ["html"]}, kind="fetch", max_attempts=1)
    scraped = server.http.post("/v1/scrape", {"url": url, "render_js": True})

    assert fetched["status"] == rendered["status"] == "failed"
    assert fetched["error"]["code"] == rendered["error"]["code"] == "network_error"
    assert scraped.status != 200
    assert scraped.json["error"]["code"] == "network_error"


def test_a_whole_page_still_renders(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/whole", f"<html><body>{TEXT}</body></html>")

    job = run_job(server, {"url": url, "output": ["html"]}, max_attempts=1)

    assert job["status"] == "completed"
    assert "the text is here" in job["outputs"]["html"]
    assert job["stats"]["wait_until_reached"] is True


# -- a page whose load event never comes ----------------------------------------------------------------


@pytest.mark.slow
def test_a_page_whose_image_never_loads_is_returned_as_it_is(server: ServerThread, site: TargetSite) -> None:
    site.add("/hang/never.png", never)
    url = site.add_html("/hang/page", f"<html><body>{TEXT}<img src='/hang/never.png'></body></html>")

    job = run_job(server, {"url": url, "output": ["html", "screenshot"]}, timeout_s=6, max_attempts=1)

    assert job["status"] == "completed"
    assert "the text is here" in job["outputs"]["html"]
    assert job["outputs"]["status_code"] == 200
    assert server.http.get(job["outputs"]["screenshot"]).body.startswith(b"\x89PNG")
    assert job["stats"]["wait_until_reached"] is False


@pytest.mark.slow
def test_a_render_whose_document_never_finishes_still_times_out(server: ServerThread, site: TargetSite) -> None:
    url = site.add("/stalled", stalled_document)

    job = run_job(server, {"url": url, "output": ["html"]}, timeout_s=4, max_attempts=1)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "timeout"


# -- Chromium profiles a SIGKILLed server left behind -----------------------------------------------------


def plant_profile(folder: Path, name: str, owner: dict[str, Any] | None) -> Path:
    profile = folder / name
    profile.mkdir()
    (profile / "Local State").write_text("{}")
    if owner is not None:
        (profile / PROFILE_OWNER_FILE).write_text(json.dumps(owner))
    return profile


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    return child.pid


@pytest.fixture
def temp() -> Iterator[Path]:
    """A temporary folder for the servers (TMPDIR). Short: Chromium's singleton socket lives in its profile,
    and a socket's path has at most 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="lj-profiles-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def render_once(server: ServerProcess, url: str) -> None:
    job = server.http.wait(server.http.submit({"url": url}, kind="render")["job_id"], 60)
    assert job["status"] == "completed", job["error"]


@pytest.mark.slow
def test_the_profile_a_sigkilled_server_left_is_removed_by_the_next_launch(
    tmp_path: Path, temp: Path, site: TargetSite
) -> None:
    url = site.add_html("/profile", f"<html><body>{TEXT}</body></html>")
    env = {"TMPDIR": str(temp)}
    me = this_process()
    assert me is not None
    killed = ServerProcess(tmp_path / "a.db", env=env)
    try:
        render_once(killed, url)
        left = Path(killed.http.get("/v1/stats").json["browser"]["user_data_dir"])
    finally:
        killed.kill()
    alive = plant_profile(temp, f"{PROFILE_PREFIX}alive", me)  # this test process: alive
    reused = plant_profile(temp, f"{PROFILE_PREFIX}reused", {**me, "started": me["started"] - 1})
    dead = plant_profile(temp, f"{PROFILE_PREFIX}dead", {**me, "pid": dead_pid()})
    elsewhere = plant_profile(temp, f"{PROFILE_PREFIX}ns", {**me, "pid": dead_pid(), "pid_namespace": 1})
    other_host = plant_profile(temp, f"{PROFILE_PREFIX}host", {**me, "pid": dead_pid(), "host": "elsewhere"})
    rebooted = plant_profile(temp, f"{PROFILE_PREFIX}boot", {**me, "boot_id": "an-earlier-boot"})
    unowned = plant_profile(temp, f"{PROFILE_PREFIX}unowned", None)
    not_ours = plant_profile(temp, "other-chromium-x", {**me, "pid": dead_pid()})
    assert left.parent == temp and (left / PROFILE_OWNER_FILE).is_file()  # the SIGKILL left it

    second = ServerProcess(tmp_path / "b.db", env=env)
    try:
        render_once(second, url)
        own = Path(second.http.get("/v1/stats").json["browser"]["user_data_dir"])
        owner = json.loads((own / PROFILE_OWNER_FILE).read_text())
        remaining = sorted(path.name for path in temp.iterdir())  # Chromium's own temporary folders are inside
    finally:
        second.kill()

    assert not left.exists() and not dead.exists() and not reused.exists() and not rebooted.exists()
    kept = [alive, elsewhere, other_host, unowned, not_ours, own]
    assert remaining == sorted(path.name for path in kept)
    assert own.parent == temp and owner["pid"] == second.proc.pid
