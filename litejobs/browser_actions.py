"""The interact steps a render runs on its page (click, type, scroll, ...), and the capture that ends it."""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from pyppeteer import helper
from pyppeteer.errors import PyppeteerError
from pyppeteer.network_manager import NetworkManager, Response
from pyppeteer.page import Page

from litejobs import jsontext
from litejobs import pyppeteer_fixes as fixes
from litejobs.browser_guard import RequestGuard
from litejobs.errors import ActionFailed, BodyTooLarge, UpstreamStatus
from litejobs.render_request import RenderRequest, RenderResult

#: how long an action waits of its own accord when not told: a `wait_for` without `timeout_ms`, and the
#: navigation a click, a key or a script starts (Puppeteer's and Playwright's default). Unbounded, such a
#: wait ran out the job's time instead: `timeout`, retried, on a page that would not change.
ACTION_WAIT_MS = 30_000
#: kept back from the render's time by a wait without a limit of its own, for the captures that follow it
#: (HTML, screenshot, PDF); at most half the time left, so that a short render still waits a little
CAPTURE_MARGIN_S = 1.0

#: an interact step: (page, action, the screenshots so far) -> the outcome's extra fields
Step = Callable[[Page, dict[str, Any], list[bytes]], Awaitable[dict[str, Any] | None]]


def render_wait_ms(ends_at: float) -> float:
    """The most a wait without a limit of its own may take in a render that ends at `ends_at` (event-loop
    time): the time left less CAPTURE_MARGIN_S. Unbounded, a `wait_for` whose element never appears ran
    out the job (`timeout`, retried) where it fails every attempt alike."""
    left_s = ends_at - asyncio.get_running_loop().time()
    # never 0 ms: that is "no limit" to the waits
    return max(1.0, (left_s - min(CAPTURE_MARGIN_S, left_s / 2)) * 1000)


async def run_actions(
    page: Page, actions: list[dict[str, Any]], guard: RequestGuard, max_result_bytes: int, ends_at: float
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Run the interact steps in order; the first failure raises ActionFailed naming its index and type.

    A result over max_result_bytes (the fetch's max_body_bytes, as UTF-8 JSON) fails with BodyTooLarge, as
    a page that large does: it would be stored whole otherwise. `ends_at` (event-loop time) is the render's
    end, which bounds a `wait_for` without its own `timeout_ms` (render_wait_ms).
    """
    outcomes: list[dict[str, Any]] = []
    shots: list[bytes] = []
    steps: dict[str, Step] = {**_STEPS, "wait_for": functools.partial(_wait_for, ends_at=ends_at)}
    for index, action in enumerate(actions):
        kind = action.get("type")
        step = steps.get(kind) if isinstance(kind, str) else None
        if step is None:
            raise ActionFailed(f"action {index} ({kind}): unknown action type (known: {', '.join(_STEPS)})")
        try:
            # A popup (window.open, a target=_blank link) takes the foreground, and Chromium runs no rendering
            # steps in a background page: pyppeteer's click then waits for ever on an IntersectionObserver.
            await page.bringToFront()
            extra = await _settling(page, step(page, action, shots))
        except (ValueError, TypeError, PyppeteerError) as exc:
            raise ActionFailed(f"action {index} ({kind}): {exc}") from exc
        guard.raise_if_document_blocked()
        if extra and "result" in extra:
            _check_size(f"action {index} ({kind}): its result", _json_size(extra["result"]), max_result_bytes)
        outcomes.append({"index": index, "type": kind, "ok": True, **(extra or {})})
    return outcomes, shots


async def _settling(page: Page, step: Awaitable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Run `step`; if it started a navigation of the page (a link followed, a form sent, `location` set),
    wait until the next document is parsed (DOMContentLoaded), the navigation comes to nothing (a 204, a
    download, an anchor) or ACTION_WAIT_MS pass, then go on. Otherwise the next action runs in the old
    document, or dies with it ("Execution context was destroyed"). Playwright's input actions wait so too.
    """
    client, frame = page._client, page.mainFrame
    loader = frame._loaderId
    loop = asyncio.get_running_loop()
    requested: asyncio.Future[None] = loop.create_future()
    ended: asyncio.Future[None] = loop.create_future()

    def on_requested(event: dict[str, Any]) -> None:
        # a popup's navigation (disposition newTab, newWindow) is not this page's
        if event.get("frameId") == frame._id and event.get("disposition", "currentTab") == "currentTab":
            _resolve(requested)

    def on_parsed(event: dict[str, Any]) -> None:
        new_document = event.get("loaderId") != loader
        if event.get("frameId") == frame._id and event.get("name") == "DOMContentLoaded" and new_document:
            _resolve(ended)

    def on_nothing_new(event: dict[str, Any]) -> None:
        if event.get("frameId") == frame._id and requested.done():
            _resolve(ended)

    listeners = [
        helper.addEventListener(client, "Page.frameRequestedNavigation", on_requested),
        helper.addEventListener(client, "Page.lifecycleEvent", on_parsed),
        helper.addEventListener(client, "Page.navigatedWithinDocument", on_nothing_new),
        helper.addEventListener(client, "Page.frameStoppedLoading", on_nothing_new),
    ]
    try:
        extra = await step
        if not requested.done():
            await _events_sent_before(page, requested)
        if requested.done():
            await asyncio.wait({ended}, timeout=ACTION_WAIT_MS / 1000)
        return extra
    finally:
        helper.removeEventListeners(listeners)
        requested.cancel()
        ended.cancel()


async def _events_sent_before(page: Page, requested: asyncio.Future[None]) -> None:
    """Let the events Chromium sent before now reach us: it announces a navigation an input started
    (Page.frameRequestedNavigation) about when it answers the input, at times just after. One round trip
    does; while a navigation is pending Chromium holds the answer until it commits, so `requested` ends it."""
    probe = asyncio.ensure_future(page._client.send("Page.getFrameTree"))
    probe.add_done_callback(fixes.consume_exception)
    await asyncio.wait({probe, requested}, timeout=ACTION_WAIT_MS / 1000, return_when=asyncio.FIRST_COMPLETED)
    probe.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(errors="replace"))


def _check_size(what: str, size: int, limit: int) -> None:
    if size > limit:
        raise BodyTooLarge(f"{what} is {size} bytes, more than the {limit}-byte limit (fetch.max_body_bytes)")


def _arg(action: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    value = action.get(name, default)
    if value is ...:
        raise ValueError(f"{name!r} is required")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name!r} has the wrong type: {value!r}")
    return value


async def _element(page: Page, action: dict[str, Any]) -> Any:
    selector = _arg(action, "selector", str)
    element = await fixes.across_navigations(page, lambda _: page.querySelector(selector), 0)
    if element is None:
        raise ValueError(f"no element matches {selector!r}")
    return element


async def _click(page: Page, action: dict[str, Any], shots: list[bytes]) -> None:
    await (await _element(page, action)).click()


async def _type(page: Page, action: dict[str, Any], shots: list[bytes]) -> None:
    text = _arg(action, "text", str)
    await (await _element(page, action)).type(text)


async def _press(page: Page, action: dict[str, Any], shots: list[bytes]) -> None:
    key = _arg(action, "key", str)
    if action.get("selector") is None:
        await page.keyboard.press(key)
    else:
        await (await _element(page, action)).press(key)


async def _wait(page: Page, action: dict[str, Any], shots: list[bytes]) -> None:
    await asyncio.sleep(_arg(action, "ms", (int, float)) / 1000)


async def _wait_for(page: Page, action: dict[str, Any], shots: list[bytes], *, ends_at: float = math.inf) -> None:
    """Wait `timeout_ms` for the selector (0: the render's time); by default ACTION_WAIT_MS, at most render_wait_ms."""
    selector = _arg(action, "selector", str)
    default_ms = round(min(ACTION_WAIT_MS, render_wait_ms(ends_at)))
    timeout_ms = _arg(action, "timeout_ms", (int, float), default_ms)  # 0: the render's time
    try:
        await fixes.wait_for_selector(page, selector, timeout_ms)
    except TimeoutError:
        raise ValueError(f"{selector!r} did not appear within {timeout_ms} ms") from None


async def _scroll(page: Page, action: dict[str, Any], shots: list[bytes]) -> None:
    """scroll {to: "bottom"} or {by: pixels}, `times` over (infinite scroll), waiting `ms` after each."""
    if action.get("to") == "bottom":
        script = "() => window.scrollTo(0, document.scrollingElement.scrollHeight)"
    else:
        script = f"() => window.scrollBy(0, {float(_arg(action, 'by', (int, float)))})"
    pause_s = _arg(action, "ms", (int, float), 0) / 1000
    for _ in range(_arg(action, "times", int, 1)):
        await page.evaluate(script)
        await asyncio.sleep(pause_s)


async def _evaluate(page: Page, action: dict[str, Any], shots: list[bytes]) -> dict[str, Any]:
    script = _arg(action, "script", str)
    return {"result": await fixes.evaluate_script(page, script)}


async def _screenshot(page: Page, action: dict[str, Any], shots: list[bytes]) -> dict[str, Any]:
    shots.append(await page.screenshot({"type": "png", "fullPage": bool(action.get("full_page"))}))
    return {"screenshot": len(shots) - 1}


_STEPS: dict[str, Step] = {
    "click": _click,
    "type": _type,
    "press": _press,
    "wait": _wait,
    "wait_for": _wait_for,
    "scroll": _scroll,
    "evaluate": _evaluate,
    "screenshot": _screenshot,
}


class ShownDocument:
    """Tells the answer of the document a page shows. An action may navigate (a link clicked, a form
    posted, `location.href` set): the result then describes the document the page shows at capture,
    not the first one. Chromium gives a navigation's request the id of the loader that commits it, and
    a redirect keeps that id: the last answer seen for the main frame's current loader is its own."""

    def __init__(self, page: Page) -> None:
        """Follow `page` from now on: before its first navigation."""
        self._frame = page.mainFrame
        self._answers: dict[str, Response] = {}
        helper.addEventListener(page._networkManager, NetworkManager.Events.Response, self._seen)

    def _seen(self, response: Response) -> None:
        request = response.request
        if request.isNavigationRequest() and request.frame is self._frame:
            self._answers[request._requestId] = response

    def left(self, first: Response | None) -> bool:
        """Whether the page has left the document `first` (goto's answer) brought; a same-document
        change (pushState, an anchor) does not leave it."""
        return first is not None and first.request._requestId != self._frame._loaderId

    def answer(self, first: Response | None) -> Response | None:
        """The answer of the document shown: `first` until the page leaves it; then its successor's,
        None for one that came with no HTTP answer (about:blank, Chromium's error page)."""
        return self._answers.get(self._frame._loaderId) if self.left(first) else first


async def capture(
    page: Page,
    request: RenderRequest,
    first: Response | None,
    shown: ShownDocument,
    outcomes: list[dict[str, Any]],
    shots: list[bytes],
    max_html_bytes: int,
) -> RenderResult:
    """The page as the render leaves it: HTML, the shown document's status and headers, the captures asked for.

    The first document's 5xx or 429 fails with UpstreamStatus (retried, as a fetch's), unless the page has
    left it: the actions then moved on (a form posted, a link followed), and the document shown is reported,
    whatever its status, rather than the actions replayed. HTML over max_html_bytes (UTF-8) fails with
    BodyTooLarge, as a fetched body that large does. Lone surrogates in what the page's scripts left (the
    HTML, evaluate results) are U+FFFD, as the browser shows them.
    """
    response = shown.answer(first)
    if response is first and response is not None and (response.status >= 500 or response.status == 429):
        raise UpstreamStatus(response.status)
    headers = dict(response.headers) if response is not None else {}
    html = jsontext.clean_text(await page.content())
    _check_size(f"the rendered page at {page.url}", len(html.encode()), max_html_bytes)
    return RenderResult(
        html=html,
        final_url=page.url,
        status_code=response.status if response is not None else 0,
        headers=headers,
        content_type=headers.get("content-type", ""),
        screenshot=await page.screenshot({"type": "png", "fullPage": request.full_page})
        if request.screenshot
        else None,
        pdf=await page.pdf() if request.pdf else None,
        actions=jsontext.without_surrogates(outcomes),
        action_screenshots=shots,
    )
