"""The real Chromium connecting only through the egress proxy: through the BrowserPool, then in render jobs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.browser import BrowserPool, RenderRequest
from litejobs.chromium import chromium_args
from litejobs.config import BrowserConfig
from litejobs.errors import BlockedAddress, NetworkError
from litejobs.netpolicy import NetworkPolicy
from tests.egress_support import POLICY, Routes, html, needs_chromium, pool_with, rebinding, resolving, run, serve
from tests.support import ServerThread, TargetSite, make_config

WEBSOCKET_PAGE = """<!doctype html><html><body><p id="state">waiting</p><script>
function done(state) {
  if (document.getElementById('done')) return;
  document.getElementById('state').textContent = state;
  const mark = document.createElement('i'); mark.id = 'done'; document.body.appendChild(mark);
}
const socket = new WebSocket("%s");
socket.onopen = () => done('open'); socket.onerror = () => done('error'); socket.onclose = () => done('closed');
</script></body></html>"""

SUBRESOURCES = """<!doctype html><html><body><img src="%(target)s/pixel.png">
<script>fetch("%(target)s/api").catch(() => 0)</script><p id="ok">ok</p></body></html>"""


async def websocket(request: web.Request) -> web.StreamResponse:
    socket_ = web.WebSocketResponse()
    await socket_.prepare(request)
    await socket_.close()
    return socket_


# -- the real Chromium, through the BrowserPool ---------------------------------------------------------------


@pytest.mark.browser
@needs_chromium
def test_chromium_hands_the_proxy_names_for_http_https_and_ws() -> None:
    """Names only the proxy's resolver knows: a page that renders proves Chromium never looked them up itself."""

    async def body() -> None:
        calls: list[tuple[str, int]] = []
        routes: Routes = {"/ws": websocket}
        site, port, hits = await serve("127.0.0.1", 0, routes)
        page = WEBSOCKET_PAGE % f"ws://ws.test:{port}/ws"
        routes["/"] = html(page.replace("<body>", f'<body><img src="http://img.test:{port}/i.png">'))
        names = {name: ["127.0.0.1"] for name in ("page.test", "ws.test", "img.test", "tls.test")}
        async with pool_with(POLICY, resolving(names, calls)) as pool:
            result = await pool.render(RenderRequest(f"http://page.test:{port}/", wait_for="#done"))
            with pytest.raises(NetworkError):  # no TLS on that port: what matters is where Chromium went
                await pool.render(RenderRequest(f"https://tls.test:{port}/", timeout_s=10))
        await site.cleanup()
        assert '<p id="state">open</p>' in result.html
        assert {("page.test", port), ("ws.test", port), ("img.test", port), ("tls.test", port)} <= set(calls)
        assert hits["/ws"] == 1 and hits["/i.png"] == 1

    run(body())


@pytest.mark.browser
@needs_chromium
def test_a_page_on_a_name_the_policy_refuses_fails_blocked_address_and_its_server_sees_nothing() -> None:
    async def body() -> None:
        evil, evil_port, evil_hits = await serve("127.0.0.2", 0, {})
        resolver = resolving({"evil.test": ["127.0.0.2"]})
        async with pool_with(POLICY, resolver) as pool:
            with pytest.raises(BlockedAddress, match=r"evil\.test resolves to 127\.0\.0\.2"):
                await pool.render(RenderRequest(f"http://evil.test:{evil_port}/page"))
            assert pool.state()["egress_refusals"] >= 1
        await evil.cleanup()
        assert sum(evil_hits.values()) == 0

    run(body())


@pytest.mark.browser
@needs_chromium
def test_images_and_fetches_to_a_refused_name_never_reach_it_and_the_page_still_renders() -> None:
    async def body() -> None:
        evil, evil_port, evil_hits = await serve("127.0.0.2", 0, {})
        page = html(SUBRESOURCES % {"target": f"http://evil.test:{evil_port}"})
        site, port, _hits = await serve("127.0.0.1", 0, {"/sub": page})
        resolver = resolving({"evil.test": ["127.0.0.2"]})
        async with pool_with(POLICY, resolver) as pool:
            result = await pool.render(RenderRequest(f"http://127.0.0.1:{port}/sub", wait_until="networkidle0"))
            refusals = pool.state()["egress_refusals"]
        async with pool_with(NetworkPolicy(allow_private=True), resolver) as open_pool:
            await open_pool.render(RenderRequest(f"http://127.0.0.1:{port}/sub", wait_until="networkidle0"))
        await site.cleanup()
        await evil.cleanup()
        assert '<p id="ok">ok</p>' in result.html and refusals >= 2
        # the same page with nothing blocked does reach the other host: the first render could have too
        assert evil_hits == Counter({"/pixel.png": 1, "/api": 1})

    run(body())


@pytest.mark.browser
@needs_chromium
def test_a_name_that_rebinds_to_a_refused_address_fails_the_render_and_is_never_connected() -> None:
    async def body() -> None:
        allowed_routes = {"/": html('<img src="/pixel.png"><script>fetch("/api").catch(() => 0)</script><p>ok</p>')}
        for _ in range(20):  # one port on both addresses: only the address the proxy picks tells them apart
            evil, port, evil_hits = await serve("127.0.0.2", 0, {})
            try:
                site, _port, _hits = await serve("127.0.0.1", port, allowed_routes)
                break
            except OSError:
                await evil.cleanup()
        else:
            raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")
        resolver, answers = rebinding("127.0.0.1", "127.0.0.2")
        async with pool_with(POLICY, resolver) as pool:
            with pytest.raises(BlockedAddress, match=r"rebind\.test resolves to 127\.0\.0\.2"):
                await pool.render(RenderRequest(f"http://rebind.test:{port}/"))
        await site.cleanup()
        await evil.cleanup()
        assert answers[0] == "127.0.0.1" and len(answers) >= 2
        assert sum(evil_hits.values()) == 0

    run(body())


def test_chromium_is_pointed_at_the_proxy_for_loopback_too_and_can_always_reach_it() -> None:
    args = chromium_args("MAP * ~NOTFOUND", as_root=False, proxy_port=4321)

    assert "--proxy-server=socks5://127.0.0.1:4321" in args
    assert "--proxy-bypass-list=<-loopback>" in args
    assert "--host-resolver-rules=MAP * 0.0.0.0, EXCLUDE 127.0.0.1, MAP * ~NOTFOUND" in args
    assert not any(arg.startswith("--proxy") for arg in chromium_args("", as_root=False))


@pytest.mark.browser
@needs_chromium
def test_rules_that_drop_every_name_but_one_still_let_chromium_reach_the_proxy() -> None:
    """Chromium applies "MAP * ~NOTFOUND" to the proxy's own 127.0.0.1 unless that is excluded."""

    async def body() -> None:
        site, port, hits = await serve("127.0.0.1", 0, {"/": html("<p id='ok'>ok</p>")})
        rules = "MAP * ~NOTFOUND, EXCLUDE localhost"
        async with BrowserPool(BrowserConfig(), POLICY, host_resolver_rules=rules) as pool:
            result = await pool.render(RenderRequest(f"http://localhost:{port}/"))
            with pytest.raises(NetworkError):  # the proxy applies the rules: 127.0.0.1 is not excluded for pages
                await pool.render(RenderRequest(f"http://127.0.0.1:{port}/", timeout_s=10))
        await site.cleanup()
        assert '<p id="ok">ok</p>' in result.html and hits["/"] == 1

    run(body())


# -- render jobs through the real server ----------------------------------------------------------------------


@pytest.fixture
def ws_host() -> Any:
    """A WebSocket server on 127.0.0.2 that counts the handshakes it gets."""
    host = TargetSite("127.0.0.2")
    host.add("/ws", websocket)
    yield host
    host.close()


def render_websocket_page(server: ServerThread, site: TargetSite, ws_host: TargetSite) -> tuple[dict[str, Any], str]:
    url = site.add_html("/ws-page", WEBSOCKET_PAGE % f"ws://127.0.0.2:{ws_host.port}/ws")
    job = server.http.submit({"url": url, "wait_for": "#done", "output": ["html"]}, kind="render")
    done = server.http.wait(job["job_id"], 60)
    outputs = server.http.get(f"/v1/jobs/{job['job_id']}/result").json.get("outputs", {})
    return done, outputs.get("html", "")


@pytest.mark.browser
@needs_chromium
def test_a_websocket_to_a_blocked_address_never_connects_and_the_render_job_completes(
    tmp_path: Path, site: TargetSite, ws_host: TargetSite
) -> None:
    with ServerThread(make_config(tmp_path, fetch={"blocked_networks": ["127.0.0.2/32"]})) as server:
        done, page = render_websocket_page(server, site, ws_host)
        assert server.app is not None and server.app.browser is not None
        refusals = server.app.browser.state()["egress_refusals"]

    assert done["status"] == "completed"
    assert '<p id="state">error</p>' in page
    assert ws_host.hits["/ws"] == 0 and refusals >= 1


@pytest.mark.browser
@needs_chromium
def test_a_websocket_to_an_allowed_address_does_connect(
    server: ServerThread, site: TargetSite, ws_host: TargetSite
) -> None:
    done, page = render_websocket_page(server, site, ws_host)

    assert done["status"] == "completed"
    assert '<p id="state">open</p>' in page
    assert ws_host.hits["/ws"] == 1


@pytest.mark.browser
@needs_chromium
def test_a_render_job_of_a_name_that_resolves_to_a_refused_address_fails_blocked_address(
    tmp_path: Path, site: TargetSite
) -> None:
    url = site.add_html("/private", "<p>private</p>").replace("127.0.0.1", "localhost")
    with ServerThread(make_config(tmp_path, fetch={"allow_private_networks": False})) as server:
        done = server.http.wait(server.http.submit({"url": url}, kind="render")["job_id"], 60)

    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["code"] == "blocked_address"
    assert "localhost resolves to" in done["error"]["message"]
    assert site.hits["/private"] == 0
