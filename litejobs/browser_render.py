"""PageDriver: one render's work on its page: the job's settings, the guarded load, waits, actions, captures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urldefrag

from pyppeteer.errors import PyppeteerError
from pyppeteer.network_manager import Response
from pyppeteer.page import Page

from litejobs import pyppeteer_fixes as fixes
from litejobs.browser_actions import ShownDocument, capture, render_wait_ms, run_actions
from litejobs.browser_errors import bad_selector, refused_setting, unsendable_header
from litejobs.browser_guard import CredentialScope, PolicyLike, RequestGuard
from litejobs.egress_proxy import EgressProxy
from litejobs.errors import BlockedAddress, BrowserError
from litejobs.render_request import RenderRequest, RenderResult, resource_text, shown_in_a_viewer


class PageDriver:
    """Drives a fresh page through one render; the pool owns the browser, the page and their lifetimes."""

    def __init__(self, policy: PolicyLike, proxy: EgressProxy, *, user_agent: str | None, max_body_bytes: int) -> None:
        """`proxy` is the pool's egress proxy: its refusals of a render's document fail that render."""
        self._policy = policy
        self._proxy = proxy
        self._user_agent = user_agent
        self._max_body_bytes = max_body_bytes

    async def drive(self, page: Page, request: RenderRequest, started_at: float) -> RenderResult:
        """`started_at` (event-loop time): when the render's timeout_s began; it ends timeout_s later."""
        give_up_at = request.give_up_on_load_at(started_at)  # stop waiting for `wait_until`, go on with the page
        ends_at = started_at + request.timeout_s
        refused = unsendable_header(request.headers)
        if refused is not None:
            raise refused
        since = self._proxy.refusals  # refusals of this render's documents come after it

        def refusal(host: str, port: int) -> BlockedAddress | None:
            return self._proxy.refusal(host, port, after=since)

        guard = RequestGuard(self._policy, request.block, page.mainFrame._id, refusal)
        scope = CredentialScope(request.url, request.headers)
        await fixes.intercept_requests(page, guard.decide, scope.headers_for)
        await self._prepare(page, request, scope.others)
        shown = ShownDocument(page)  # an action may navigate: the result is the document shown at the end
        try:
            navigation = await fixes.goto(page, request.url, request.wait_until, give_up_at=give_up_at)
        except PyppeteerError:
            guard.raise_if_document_blocked()
            raise
        guard.raise_if_document_blocked()
        if request.wait_for:
            await self._wait_for(page, request.wait_for, ends_at)
        if request.wait_ms:
            await asyncio.sleep(request.wait_ms / 1000)
        outcomes, shots = await run_actions(page, request.actions, guard, self._max_body_bytes, ends_at)
        result = await capture(page, request, navigation.response, shown, outcomes, shots, self._max_body_bytes)
        body = await self._own_body(page, shown.answer(navigation.response))
        if body is not None:  # a JSON, text or PDF page: its body is the page, not Chromium's viewer of it
            result.html = body
        navigation.raise_if_cut_off()  # a break reported after the load event: goto could not see it
        result.wait_until_reached = navigation.complete
        return result

    async def _wait_for(self, page: Page, selector: str, ends_at: float) -> None:
        """Wait for the input's `wait_for` until the render's end less the captures' margin (render_wait_ms): an
        element that never appears would fail every attempt alike, so it fails, not retried, before timeout_s
        ends the render as `timeout`, retried."""
        timeout_ms = render_wait_ms(ends_at)
        try:
            await fixes.wait_for_selector(page, selector, timeout_ms)
        except TimeoutError:
            message = f"wait_for {selector!r}: no element matched it in the {timeout_ms:.0f} ms the render had left"
            raise BrowserError(message, retryable=False) from None
        except PyppeteerError as exc:
            error = bad_selector(exc, selector)
            if error is None:
                raise
            raise error from exc

    async def _own_body(self, page: Page, response: Response | None) -> str | None:
        """The body of a document Chromium shows in a viewer (shown_in_a_viewer), as Chromium keeps it;
        None for a page, or once the page has left that document."""
        content_type = response.headers.get("content-type", "") if response is not None else ""
        # after an action led elsewhere, that document's DOM is what there is
        if response is None or not shown_in_a_viewer(content_type) or urldefrag(page.url)[0] != response.url:
            return None
        try:
            where = {"frameId": page.mainFrame._id, "url": response.url}
            resource = await page._client.send("Page.getResourceContent", where)
        except PyppeteerError:
            return None  # the document went meanwhile
        return resource_text(resource, content_type, page.url, self._max_body_bytes)

    async def _prepare(self, page: Page, request: RenderRequest, headers: dict[str, str]) -> None:
        """Apply the job's settings; `headers` go with every request (the credentials are added per request)."""
        user_agent = request.page_agent(self._user_agent)  # a User-Agent in `headers` wins, as in a fetch
        viewport = {"width": request.viewport[0], "height": request.viewport[1]} if request.viewport else None
        cookies = [{"url": request.url, **c} if "domain" not in c else c for c in request.cookies]
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        if user_agent:
            steps.append(("user_agent", lambda: page.setUserAgent(user_agent)))
        if headers:
            steps.append(("headers", lambda: page.setExtraHTTPHeaders(headers)))
        if viewport:
            steps.append(("viewport", lambda: page.setViewport(viewport)))
        if cookies:
            steps.append(("cookies", lambda: page.setCookie(*cookies)))
        for what, step in steps:
            try:
                await step()
            except PyppeteerError as exc:
                error = refused_setting(exc, what)
                if error is None:
                    raise
                raise error from exc
