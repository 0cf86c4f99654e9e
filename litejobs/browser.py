"""BrowserPool: renders pages in the system Chromium through pyppeteer; page leases, recycling, crash and hang
relaunch. What a render does on its page is browser_render's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pyppeteer.browser import Browser

from litejobs import pyppeteer_fixes as fixes
from litejobs.browser_errors import explain
from litejobs.browser_guard import PolicyLike
from litejobs.browser_render import PageDriver
from litejobs.chromium import ChromiumProcess, chromium_args, find_chromium, spawn_chromium
from litejobs.config import BrowserConfig, FetchConfig
from litejobs.egress_proxy import EgressProxy, HostRules, Resolver, system_resolve
from litejobs.errors import BlockedAddress, BrowserError, BrowserUnavailable
from litejobs.netpolicy import OwnPorts
from litejobs.render_request import BLOCKABLE, WAIT_UNTIL, RenderRequest, RenderResult

__all__ = [
    "BLOCKABLE",
    "LOOPBACK_ONLY_RULES",
    "SERVICE_HOST_RULES",
    "WAIT_UNTIL",
    "BrowserPool",
    "RenderRequest",
    "RenderResult",
    "RenderTimeout",
    "find_chromium",
]

#: production: resolve every host but those Chromium phones home to on its own (notes §11; with the egress
#: proxy it also probes connectivitycheck.gstatic.com). The egress proxy applies these rules: Chromium itself
#: resolves no destination once it has a SOCKS5 proxy.
SERVICE_HOST_RULES = (
    "MAP accounts.google.com ~NOTFOUND, MAP update.googleapis.com ~NOTFOUND, MAP clients2.google.com ~NOTFOUND, "
    "MAP clientservices.googleapis.com ~NOTFOUND, MAP safebrowsing.googleapis.com ~NOTFOUND, MAP *.gvt1.com ~NOTFOUND, "
    "MAP connectivitycheck.gstatic.com ~NOTFOUND"
)
#: closed networks and tests: nothing but loopback names is resolved, so there are no outbound lookups
LOOPBACK_ONLY_RULES = "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
_CLOSE_TIMEOUT_S = 1.0
#: summing the tree's memory scans all of /proc (about 1 ms per 80 processes), so not after every render
_MEMORY_CHECK_INTERVAL_S = 1.0
#: after a render that timed out or was cancelled, a browser that takes longer than this to tell its version
#: is hung (a stopped process, a wedged main thread) and is replaced; a healthy one answers in milliseconds
_ALIVE_CHECK_TIMEOUT_S = 5.0


class RenderTimeout(BrowserError):
    """The render did not finish within its timeout_s."""

    code = "timeout"
    retryable = True


@dataclass(eq=False)
class _Running:
    """One launched Chromium and what the pool knows about it."""

    process: ChromiumProcess
    browser: Browser
    #: resolves (with the reason) when the browser goes away; in-flight renders race against it
    lost: asyncio.Future[str]
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    renders: int = 0
    retiring: bool = False
    closing: bool = False
    memory_checked_at: float = float("-inf")


class BrowserPool:
    """Renders pages in one lazily launched Chromium, at most config.max_pages at a time."""

    def __init__(
        self,
        config: BrowserConfig,
        policy: PolicyLike,
        *,
        user_agent: str | None = None,
        host_resolver_rules: str = SERVICE_HOST_RULES,
        resolver: Resolver = system_resolve,
        max_body_bytes: int = FetchConfig.max_body_bytes,
        own_ports: OwnPorts | None = None,
    ) -> None:
        """`resolver` replaces the system DNS lookup of the egress proxy (tests). A rendered page's HTML and each
        action's result may be at most `max_body_bytes` ([fetch] max_body_bytes), as a fetched body. Each
        Chromium's DevTools port is put in `own_ports` while it runs, so that no job reaches it."""
        fixes.apply_connection_patches()
        self._config = config
        self._own_ports = own_ports or OwnPorts()
        self._rules = host_resolver_rules
        #: every connection of the pool's Chromium goes through it; started with the first launch
        self._proxy = EgressProxy(policy, resolver=resolver, rules=HostRules(host_resolver_rules))
        self._driver = PageDriver(policy, self._proxy, user_agent=user_agent, max_body_bytes=max_body_bytes)
        self._executable = find_chromium(config.executable)
        self._slots = asyncio.Semaphore(config.max_pages)
        self._lease_lock = asyncio.Lock()
        self._current: _Running | None = None
        self._launching: asyncio.Task[_Running] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = self._crashed = False
        self._stats = {"launches": 0, "pages_rendered": 0, "pages_open": 0, "pages_open_peak": 0}

    async def __aenter__(self) -> BrowserPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closed = True
        launching = self._launching
        if launching is not None and not launching.done():
            launching.cancel()
            await asyncio.wait({launching})
        if launching is not None and not launching.cancelled() and not launching.exception():
            await self._close(launching.result())
        if self._current is not None:
            await self._close(self._current)
        while self._background:
            await asyncio.wait(set(self._background))
        await self._proxy.close()

    @property
    def available(self) -> bool:
        return self._executable is not None

    def state(self) -> dict[str, Any]:
        running = self._current if self._current is not None and not self._current.lost.done() else None
        if not self.available:
            state = "unavailable"
        else:
            state = "running" if running else "crashed" if self._crashed else "idle"
        return {
            "state": state,
            "executable": self._executable or self._config.executable or None,
            "max_pages": self._config.max_pages,
            "pid": running.process.pid if running else None,
            "user_data_dir": running.process.user_data_dir if running else None,
            **self._stats,
            "egress_tunnels_open": self._proxy.tunnels_open,
            "egress_refusals": self._proxy.refusals,
        }

    async def render(
        self, request: RenderRequest, *, waiting: contextlib.AbstractAsyncContextManager[Any] | None = None
    ) -> RenderResult:
        """Load request.url in a fresh incognito page, run the actions, capture what was asked for.
        `waiting` is entered while the render waits for a free page (the worker lends out its slot)."""
        if self._executable is None:
            where = self._config.executable or "PATH (chromium, chromium-browser, google-chrome)"
            raise BrowserUnavailable(f"{BrowserUnavailable.__doc__} Looked in: {where}.")
        if self._closed:
            raise BrowserError("the browser pool is closed")
        if urlsplit(request.url).scheme not in ("http", "https"):
            raise BlockedAddress(f"only http and https URLs can be rendered, not {request.url[:100]!r}")
        holding = False
        try:
            async with waiting or contextlib.nullcontext():
                await self._slots.acquire()
                holding = True
            started = time.monotonic()  # the render's time runs from its page: queueing for one is not rendering
            started_at = asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(request.timeout_s):
                    result = await self._render_leased(request, started_at)
            except TimeoutError:
                raise RenderTimeout(f"render exceeded timeout_s={request.timeout_s:g}") from None
        finally:
            if holding:  # whatever ends the render, leaving `waiting` included, gives the page back
                self._slots.release()
        result.elapsed_ms = (time.monotonic() - started) * 1000
        self._stats["pages_rendered"] += 1
        return result

    async def _render_leased(self, request: RenderRequest, started_at: float) -> RenderResult:
        running = await self._lease()
        try:
            return await fixes.guarded(self._render_on(running, request, started_at), [running.lost])
        except asyncio.CancelledError:
            self._in_background(self._check_alive(running))
            raise
        except Exception as exc:
            error = explain(exc, running.lost, request.url)
            if error is exc:
                raise
            raise error from exc
        finally:
            self._release(running)

    async def _render_on(self, running: _Running, request: RenderRequest, started_at: float) -> RenderResult:
        context = await running.browser.createIncognitoBrowserContext()
        try:
            await fixes.deny_downloads(context)
            page, crashed = await fixes.open_page(context)
            self._count_page(+1)
            try:
                return await fixes.guarded(self._driver.drive(page, request, started_at), [crashed])
            finally:
                await fixes.close_quietly(page.close(), _CLOSE_TIMEOUT_S)
                self._count_page(-1)
        finally:
            await fixes.close_quietly(context.close(), _CLOSE_TIMEOUT_S)

    def _count_page(self, delta: int) -> None:
        self._stats["pages_open"] += delta
        self._stats["pages_open_peak"] = max(self._stats["pages_open_peak"], self._stats["pages_open"])

    # -- the browser's life: lazy launch, leases, recycling, crash, hang ----------------------------------

    async def _lease(self) -> _Running:
        async with self._lease_lock:
            current = self._current
            if current is not None and current.retiring:
                await current.closed.wait()  # in-flight renders finish first; none start on it meanwhile
            if self._current is None or self._current.lost.done() or self._current.retiring:
                self._current = await self._launched()
            self._current.in_flight += 1
            return self._current

    async def _launched(self) -> _Running:
        # The launch is shared and shielded: a caller whose timeout ends mid-launch leaves it to the next one.
        task = self._launching
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._launching = asyncio.ensure_future(self._launch())
            task.add_done_callback(fixes.consume_exception)
        try:
            return await asyncio.shield(task)
        finally:
            if task.done() and self._launching is task:
                self._launching = None

    async def _launch(self) -> _Running:
        cfg = self._config
        proxy_port = await self._proxy.start()
        args = chromium_args(self._rules, as_root=os.geteuid() == 0, proxy_port=proxy_port)
        process = await spawn_chromium(self._executable or "", args, timeout_s=cfg.launch_timeout_s)
        devtools_port = urlsplit(process.ws_endpoint).port or 0
        self._own_ports.add(devtools_port)
        try:
            viewport = {"width": cfg.viewport_width, "height": cfg.viewport_height}
            browser = await fixes.connect_browser(process.ws_endpoint, viewport, timeout_s=cfg.launch_timeout_s)
        except BaseException:
            self._own_ports.discard(devtools_port)
            await process.stop(grace_s=0)
            raise
        running = _Running(process, browser, asyncio.get_running_loop().create_future())
        fixes.on_disconnect(browser, lambda reason: self._on_lost(running, reason))
        exited = asyncio.ensure_future(process.proc.wait())
        exited.add_done_callback(lambda _: self._own_ports.discard(devtools_port))
        exited.add_done_callback(lambda _: self._on_lost(running, f"Chromium exited ({process.proc.returncode})"))
        self._stats["launches"] += 1
        self._crashed = False
        return running

    async def _check_alive(self, running: _Running) -> None:
        """Replace a browser that no longer answers, as if it had crashed: a stopped or wedged Chromium never
        exits, so every later render would time out on it too."""
        if running.lost.done() or self._closed:
            return
        try:
            await asyncio.wait_for(running.browser.version(), _ALIVE_CHECK_TIMEOUT_S)
        except TimeoutError:
            self._on_lost(running, f"Chromium did not answer for {_ALIVE_CHECK_TIMEOUT_S:g} s")
            running.process.kill_group()  # SIGKILL ends a stopped process too; no graceful close to wait for
        except Exception:
            pass  # the connection is gone: the disconnect has reported it already

    def _on_lost(self, running: _Running, reason: str) -> None:
        if running.lost.done():
            return
        running.lost.set_result(reason)
        if not running.closing:
            self._crashed = self._crashed or running is self._current
            self._in_background(self._close(running))

    def _release(self, running: _Running) -> None:
        running.in_flight -= 1
        running.renders += 1
        if not running.retiring and not running.lost.done() and self._worn_out(running):
            running.retiring = True
        if running.retiring and running.in_flight == 0:
            self._in_background(self._close(running))

    def _worn_out(self, running: _Running) -> bool:
        if running.renders >= self._config.recycle_after_pages:
            return True
        now = time.monotonic()
        if now - running.memory_checked_at < _MEMORY_CHECK_INTERVAL_S:
            return False
        running.memory_checked_at = now
        rss_mb, _pss_mb = running.process.memory_mb()
        return rss_mb > self._config.max_rss_mb

    async def _close(self, running: _Running) -> None:
        if running.closing:
            await running.closed.wait()
            return
        running.closing = True
        if not running.lost.done():
            running.lost.set_result("the browser pool closed it")
        await fixes.close_quietly(running.browser.close(), 2.0)
        await running.process.stop(grace_s=2.0)
        await fixes.close_quietly(running.browser.disconnect(), 1.0)
        running.closed.set()

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
