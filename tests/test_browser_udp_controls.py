"""The controls of test_browser_webrtc.py: the same pages in a Chromium started without one of the pool's
measures (the WebRTC flag, the egress proxy) do send UDP, so the tests that count none can fail."""

from __future__ import annotations

import asyncio
import os

import pytest

from litejobs import pyppeteer_fixes as fixes
from litejobs.browser import find_chromium
from litejobs.chromium import WEBRTC_PROXIED_ONLY, chromium_args, spawn_chromium
from litejobs.egress_proxy import EgressProxy, HostRules
from tests.egress_support import POLICY, TEST_RULES, Routes, html, needs_chromium, run, serve
from tests.webrtc_support import WEBRTC_VARIANTS, WEBTRANSPORT_PAGE, page_state, udp_listener, webrtc_pages


async def render_states(args: list[str], urls: list[str]) -> list[str]:
    """Each url's #state, rendered at once in a Chromium started here with `args`. The controls use it: they
    launch Chromium without one of the measures the BrowserPool always takes."""
    executable = find_chromium()
    assert executable is not None
    fixes.apply_connection_patches()
    process = await spawn_chromium(executable, args, timeout_s=30)
    try:
        browser = await fixes.connect_browser(process.ws_endpoint, {"width": 800, "height": 600}, timeout_s=30)

        async def state_of(url: str) -> str:
            page, _crashed = await fixes.open_page(await browser.createIncognitoBrowserContext())
            await fixes.goto(page, url, "load")
            await page.waitForSelector("#done", timeout=30_000)
            return page_state(await page.content())

        try:
            return list(await asyncio.gather(*(state_of(url) for url in urls)))
        finally:
            await fixes.close_quietly(browser.close(), 2.0)
            await fixes.close_quietly(browser.disconnect(), 1.0)
    finally:
        await process.stop(grace_s=2.0)


@pytest.mark.browser
@needs_chromium
def test_without_the_webrtc_flag_the_same_pages_do_send_udp_to_the_blocked_address() -> None:
    """The control: the pool's flags and egress proxy but for WEBRTC_PROXIED_ONLY, so the cases above can fail."""

    async def body() -> None:
        variants = [variant for variant in WEBRTC_VARIANTS if "worker" not in variant]
        listeners = [await udp_listener("127.0.0.2") for _ in variants]
        routes: Routes = {}
        site, port, _hits = await serve("127.0.0.1", 0, routes)
        base = f"http://127.0.0.1:{port}"
        for index, (variant, (transport, _counter)) in enumerate(zip(variants, listeners, strict=True)):
            udp_port = transport.get_extra_info("sockname")[1]
            routes.update(
                {
                    path: html(page)
                    for path, page in webrtc_pages(WEBRTC_VARIANTS[variant], udp_port, base, f"/{index}").items()
                }
            )
        async with EgressProxy(POLICY, rules=HostRules(TEST_RULES)) as proxy:
            args = chromium_args(TEST_RULES, as_root=os.geteuid() == 0, proxy_port=proxy.port)
            args.remove(WEBRTC_PROXIED_ONLY)
            states = await render_states(args, [f"{base}/{index}" for index in range(len(variants))])
        await site.cleanup()
        received = {
            variant: counter.received for variant, (_transport, counter) in zip(variants, listeners, strict=True)
        }
        for transport, _counter in listeners:
            transport.close()
        # every variant reached the blocked address (gathering needs a network interface besides loopback)
        assert all(received.values()), (received, states)

    run(body())


@pytest.mark.browser
@needs_chromium
def test_without_the_egress_proxy_webtransport_does_send_udp() -> None:
    """The control: with the pool's other flags (--disable-quic included) but no proxy, QUIC goes out."""

    async def body() -> None:
        transport, counter = await udp_listener("127.0.0.1")
        site, port, _hits = await serve(
            "127.0.0.1", 0, {"/": html(WEBTRANSPORT_PAGE % {"udp": transport.get_extra_info("sockname")[1]})}
        )
        await render_states(chromium_args(TEST_RULES, as_root=os.geteuid() == 0), [f"http://127.0.0.1:{port}/"])
        await site.cleanup()
        transport.close()
        assert counter.received > 0

    run(body())
