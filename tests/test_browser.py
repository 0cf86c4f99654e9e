"""BrowserPool against the real Chromium and a local site on 127.0.0.1: rendering, actions, limits, policy."""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from litejobs import pyppeteer_fixes
from litejobs.browser import BrowserPool, RenderRequest, RenderTimeout
from litejobs.config import BrowserConfig
from litejobs.errors import ActionFailed, BlockedAddress, BodyTooLarge, BrowserCrashed
from tests.browser_support import TEST_RULES, Run, Site, hosted_site, make_policy, needs_chromium, serve, until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    """One event loop for the module, so the site and the shared pool outlive single tests."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture(scope="module")
def site(run: Run) -> Iterator[Site]:
    yield from hosted_site(run)


@pytest.fixture(scope="module")
def pool(run: Run) -> Iterator[BrowserPool]:
    shared = BrowserPool(BrowserConfig(), make_policy(), host_resolver_rules=TEST_RULES)
    run(shared.__aenter__())
    yield shared
    run(shared.__aexit__(None, None, None))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def pending_navigations() -> list[asyncio.Task[Any]]:
    """pyppeteer's navigation watchers still waiting in this loop."""
    return [t for t in asyncio.all_tasks() if "NavigatorWatcher" in repr(t)]


# -- rendering -----------------------------------------------------------------------------------------


@needs_chromium
def test_render_sees_content_inserted_by_javascript(run: Run, site: Site, pool: BrowserPool) -> None:
    result = run(pool.render(RenderRequest(site.url("/"), wait_for="#content")))

    assert "Hello injected" in result.html
    assert result.status_code == 200
    assert result.content_type == "text/html; charset=utf-8"
    assert result.headers["content-type"] == "text/html; charset=utf-8"
    assert result.final_url == site.url("/")
    assert result.elapsed_ms > 0


@needs_chromium
def test_final_url_and_status_follow_redirects(run: Run, site: Site, pool: BrowserPool) -> None:
    result = run(pool.render(RenderRequest(site.url("/redirect?to=/tall"), wait_until="domcontentloaded")))

    assert result.final_url == site.url("/tall")
    assert result.status_code == 200
    assert "tall" in result.html


@needs_chromium
def test_headers_user_agent_and_cookies_reach_the_site(run: Run, site: Site, pool: BrowserPool) -> None:
    request = RenderRequest(
        site.url("/echo"),
        headers={"X-Test": "yes"},
        user_agent="litejobs-test/1",
        cookies=[{"name": "given", "value": "42"}],
    )
    result = run(pool.render(request))

    assert '"User-Agent": "litejobs-test/1"' in result.html
    assert '"X-Test": "yes"' in result.html
    assert '"Cookie": "given=42"' in result.html


@needs_chromium
def test_cookies_and_local_storage_do_not_cross_renders(run: Run, site: Site, pool: BrowserPool) -> None:
    run(pool.render(RenderRequest(site.url("/cookie/set"))))
    result = run(pool.render(RenderRequest(site.url("/cookie/show"))))

    assert site.cookie_headers[-1] == ""
    assert '{"cookie":"","stored":null}' in result.html


@needs_chromium
def test_block_images_means_the_site_never_serves_one(run: Run, site: Site, pool: BrowserPool) -> None:
    before = site.hits["img"]
    result = run(pool.render(RenderRequest(site.url("/images"), block=frozenset({"images"}))))
    assert "pictures" in result.html
    assert site.hits["img"] == before

    run(pool.render(RenderRequest(site.url("/images"))))
    assert site.hits["img"] == before + 2


@needs_chromium
def test_screenshots_are_pngs_of_the_viewport_or_the_full_page(run: Run, site: Site, pool: BrowserPool) -> None:
    viewport = run(pool.render(RenderRequest(site.url("/tall"), screenshot=True)))
    full = run(pool.render(RenderRequest(site.url("/tall"), screenshot=True, full_page=True)))
    small = run(pool.render(RenderRequest(site.url("/tall"), screenshot=True, viewport=(400, 300))))

    assert viewport.screenshot is not None and png_size(viewport.screenshot) == (1280, 800)
    assert full.screenshot is not None and png_size(full.screenshot) == (1280, 3000)
    assert small.screenshot is not None and png_size(small.screenshot) == (400, 300)


@needs_chromium
def test_pdf(run: Run, site: Site, pool: BrowserPool) -> None:
    result = run(pool.render(RenderRequest(site.url("/tall"), pdf=True)))

    assert result.pdf is not None and result.pdf.startswith(b"%PDF")


# -- actions -------------------------------------------------------------------------------------------


@needs_chromium
def test_click_type_and_press_change_the_page(run: Run, site: Site, pool: BrowserPool) -> None:
    actions = [
        {"type": "click", "selector": "#btn"},
        {"type": "type", "selector": "#inp", "text": "hello"},
        {"type": "press", "key": "Enter", "selector": "#inp"},
        {"type": "wait", "ms": 10},
        {"type": "wait_for", "selector": "#content", "timeout_ms": 5000},
    ]
    result = run(pool.render(RenderRequest(site.url("/"), actions=actions)))

    assert '<p id="out">clicked</p>' in result.html
    assert '<p id="echo">typed:hello</p>' in result.html
    assert [a["type"] for a in result.actions] == ["click", "type", "press", "wait", "wait_for"]
    assert all(a["ok"] for a in result.actions)


@needs_chromium
def test_scroll_to_bottom_loads_more_items(run: Run, site: Site, pool: BrowserPool) -> None:
    count = {"type": "evaluate", "script": "document.querySelectorAll('li').length"}
    scroll = {"type": "scroll", "to": "bottom", "times": 3, "ms": 300}
    request = RenderRequest(site.url("/scroll"), wait_for="li", actions=[count, scroll, count])
    result = run(pool.render(request))

    before, after = result.actions[0]["result"], result.actions[2]["result"]
    assert before == 20
    assert after >= 60


@needs_chromium
def test_evaluate_returns_json_and_screenshot_actions_are_indexed(run: Run, site: Site, pool: BrowserPool) -> None:
    actions = [
        {"type": "evaluate", "script": "() => ({title: document.title, n: [1, 2, 3].map(x => x * 2)})"},
        {"type": "evaluate", "script": "[1, 2].map(x => x + 1)"},
        {"type": "screenshot"},
        {"type": "scroll", "by": 100},
        {"type": "screenshot", "full_page": True},
    ]
    result = run(pool.render(RenderRequest(site.url("/"), actions=actions)))

    assert result.actions[0]["result"] == {"title": "index", "n": [2, 4, 6]}
    assert result.actions[1]["result"] == [2, 3]
    assert result.actions[2]["screenshot"] == 0 and result.actions[4]["screenshot"] == 1
    assert [png_size(shot)[0] for shot in result.action_screenshots] == [1280, 1280]


@needs_chromium
def test_a_failing_action_names_its_index_type_and_reason(run: Run, site: Site, pool: BrowserPool) -> None:
    actions = [{"type": "wait", "ms": 1}, {"type": "click", "selector": "#btn"}, {"type": "click", "selector": "#x"}]
    with pytest.raises(ActionFailed) as failed:
        run(pool.render(RenderRequest(site.url("/"), actions=actions)))
    assert str(failed.value) == "action 2 (click): no element matches '#x'"
    assert failed.value.retryable is False

    with pytest.raises(ActionFailed, match=r"action 0 \(dance\): unknown action type"):
        run(pool.render(RenderRequest(site.url("/"), actions=[{"type": "dance"}])))
    with pytest.raises(ActionFailed, match=r"action 0 \(evaluate\): Evaluation failed: ReferenceError"):
        run(pool.render(RenderRequest(site.url("/"), actions=[{"type": "evaluate", "script": "nope()"}])))
    with pytest.raises(ActionFailed, match=r"action 0 \(wait_for\): '#never' did not appear within 100 ms"):
        run(
            pool.render(
                RenderRequest(site.url("/"), actions=[{"type": "wait_for", "selector": "#never", "timeout_ms": 100}])
            )
        )


# -- limits --------------------------------------------------------------------------------------------


@needs_chromium
def test_twenty_concurrent_renders_never_open_more_than_max_pages(run: Run, site: Site, pool: BrowserPool) -> None:
    site.peak_active = 0

    async def twenty() -> list[Any]:
        return await asyncio.gather(*(pool.render(RenderRequest(site.url("/slow"))) for _ in range(20)))

    results = run(twenty())

    assert all("done" in r.html for r in results)
    assert site.peak_active <= 4
    assert pool.state()["pages_open_peak"] == 4
    assert pool.state()["pages_open"] == 0


@needs_chromium
def test_timeout_covers_the_whole_render(run: Run, site: Site, pool: BrowserPool) -> None:
    started = time.monotonic()
    with pytest.raises(RenderTimeout) as timed_out:
        run(pool.render(RenderRequest(site.url("/hang"), timeout_s=1.5)))

    assert 1.5 <= time.monotonic() - started < 4.0
    assert timed_out.value.code == "timeout" and timed_out.value.retryable is True
    assert "timeout_s=1.5" in str(timed_out.value)


@needs_chromium
def test_cancelling_a_render_closes_its_page_within_two_seconds(run: Run, site: Site, pool: BrowserPool) -> None:
    async def cancel_midway() -> tuple[float, float]:
        site.hang_started, site.hang_closed_at = asyncio.Event(), None
        task = asyncio.ensure_future(pool.render(RenderRequest(site.url("/hang"), timeout_s=20)))
        await asyncio.wait_for(site.hang_started.wait(), 10)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        returned_s = time.monotonic() - cancelled_at
        await until(lambda: site.hang_closed_at is not None, 2.0)
        assert site.hang_closed_at is not None
        return returned_s, site.hang_closed_at - cancelled_at

    returned_s, connection_closed_s = run(cancel_midway())

    assert returned_s < 2.0 and connection_closed_s < 2.0
    assert pool.state()["pages_open"] == 0
    assert "Hello injected" in run(pool.render(RenderRequest(site.url("/"), wait_for="#content"))).html


@needs_chromium
def test_html_or_an_action_result_over_max_body_bytes_fails_body_too_large(run: Run, site: Site) -> None:
    def result_of(length: int) -> list[dict[str, Any]]:
        return [{"type": "evaluate", "script": f"'y'.repeat({length})"}]

    async def renders() -> None:
        async with BrowserPool(
            BrowserConfig(), make_policy(), host_resolver_rules=TEST_RULES, max_body_bytes=300
        ) as pool:
            assert "tall" in (await pool.render(RenderRequest(site.url("/tall"), actions=result_of(250)))).html
            with pytest.raises(BodyTooLarge, match=r"the rendered page at .* is \d+ bytes, more than the 300-byte"):
                await pool.render(RenderRequest(site.url("/")))
            with pytest.raises(BodyTooLarge, match=r"action 0 \(evaluate\): its result is 302 bytes"):
                await pool.render(RenderRequest(site.url("/tall"), actions=result_of(300)))

    run(renders())


# -- the network policy --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_host(run: Run) -> Iterator[tuple[str, Counter[str]]]:
    """A server on 127.0.0.2 that counts every request it gets."""
    hits: Counter[str] = Counter()

    async def anything(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(text="<p>other host</p>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner, base = run(serve(app, "127.0.0.2"))
    yield base, hits
    run(runner.cleanup())


@needs_chromium
def test_policy_blocks_documents_redirects_and_subresources(
    run: Run, site: Site, other_host: tuple[str, Counter[str]]
) -> None:
    base, hits = other_host
    hits.clear()

    async def renders() -> None:
        async with BrowserPool(BrowserConfig(), make_policy(("127.0.0.2",)), host_resolver_rules=TEST_RULES) as pool:
            with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2"):
                await pool.render(RenderRequest(base + "/page"))
            assert await pending_navigations() == []  # pyppeteer's goto leaves its watcher behind on errors
            with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2"):
                await pool.render(RenderRequest(site.url(f"/redirect?to={base}/hop")))
            result = await pool.render(RenderRequest(site.url(f"/sub?target={base}"), wait_until="networkidle0"))
            assert '<p id="ok">ok</p>' in result.html
            with pytest.raises(BlockedAddress, match="file:"):
                await pool.render(RenderRequest("file:///etc/passwd"))

    run(renders())
    assert sum(hits.values()) == 0


@needs_chromium
def test_without_the_policy_the_other_host_is_reachable(
    run: Run, site: Site, other_host: tuple[str, Counter[str]], pool: BrowserPool
) -> None:
    base, hits = other_host
    hits.clear()

    run(pool.render(RenderRequest(site.url(f"/sub?target={base}"), wait_until="networkidle0")))

    assert hits["/pixel.png"] == 1 and hits["/api"] == 1


# -- crashes of one page or one call, on the shared pool ---------------------------------------------------


def page_at(pool: BrowserPool, url: str) -> Any:
    """The pool's open page showing `url`, if any (never browser.pages(): that opens a second Page object)."""
    running = pool._current
    targets = [] if running is None else running.browser.targets()
    return next((t._page for t in targets if t.url == url and t._page is not None), None)


@needs_chromium
def test_a_crashed_page_fails_its_render_and_other_pages_keep_working(run: Run, site: Site, pool: BrowserPool) -> None:
    """pyppeteer fixes 3 and 4: a page 'error' listener, and calls raced against the crash."""
    stuck = {"type": "evaluate", "script": "() => new Promise(resolve => setTimeout(resolve, 20000))"}

    async def crash_one() -> None:
        launches = pool.state()["launches"]
        victim = asyncio.ensure_future(pool.render(RenderRequest(site.url("/?victim"), actions=[stuck])))
        bystander = asyncio.ensure_future(pool.render(RenderRequest(site.url("/slow"), wait_ms=500)))
        await until(lambda: page_at(pool, site.url("/?victim")), 10.0)
        await asyncio.sleep(0.3)  # let the evaluate start
        crashing = page_at(pool, site.url("/?victim"))._client.send("Page.crash")
        crashing.add_done_callback(pyppeteer_fixes.consume_exception)
        crashed_at = time.monotonic()
        with pytest.raises(BrowserCrashed, match="page crashed"):
            await victim
        assert time.monotonic() - crashed_at < 3.0
        assert "done" in (await bystander).html
        assert "Hello injected" in (await pool.render(RenderRequest(site.url("/"), wait_for="#content"))).html
        assert pool.state()["launches"] == launches

    run(crash_one())


@needs_chromium
def test_a_call_abandoned_by_a_timeout_does_not_break_the_browser(run: Run, site: Site, pool: BrowserPool) -> None:
    """pyppeteer fix 2: the late reply to a cancelled call must not kill pyppeteer's receive loop."""
    stuck = {"type": "evaluate", "script": "() => new Promise(resolve => setTimeout(resolve, 8000))"}
    launches = pool.state()["launches"]

    with pytest.raises(RenderTimeout):
        run(pool.render(RenderRequest(site.url("/"), actions=[stuck], timeout_s=1.0)))
    result = run(pool.render(RenderRequest(site.url("/"), wait_for="#content", timeout_s=5)))

    assert "Hello injected" in result.html
    assert pool.state()["launches"] == launches
