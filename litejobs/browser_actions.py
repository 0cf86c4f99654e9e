"""The interact steps a render runs on its page (click, type, scroll, ...), and the capture that ends it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pyppeteer.errors import PyppeteerError
from pyppeteer.network_manager import Response
from pyppeteer.page import Page

from litejobs import pyppeteer_fixes as fixes
from litejobs.browser_guard import RequestGuard
from litejobs.errors import ActionFailed, BodyTooLarge
from litejobs.render_request import RenderRequest, RenderResult


async def run_actions(
    page: Page, actions: list[dict[str, Any]], guard: RequestGuard, max_result_bytes: int
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Run the interact steps in order; the first failure raises ActionFailed naming its index and type.

    A result over max_result_bytes (the fetch's max_body_bytes, as UTF-8 JSON) fails with BodyTooLarge, as
    a page that large does: it would be stored whole otherwise.
    """
    outcomes: list[dict[str, Any]] = []
    shots: list[bytes] = []
    for index, action in enumerate(actions):
        kind = action.get("type")
        step = _STEPS.get(kind) if isinstance(kind, str) else None
        if step is None:
            raise ActionFailed(f"action {index} ({kind}): unknown action type (known: {', '.join(_STEPS)})")
        try:
            extra = await step(page, action, shots)
        except (ValueError, TypeError, PyppeteerError) as exc:
            raise ActionFailed(f"action {index} ({kind}): {exc}") from exc
        guard.raise_if_document_blocked()
        if extra and "result" in extra:
            _check_size(f"action {index} ({kind}): its result", _json_size(extra["result"]), max_result_bytes)
        outcomes.append({"index": index, "type": kind, "ok": True, **(extra or {})})
    return outcomes, shots


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


async def _wait_for(page: Page, action: dict[str, Any], shots: list[bytes]) -> None:
    selector = _arg(action, "selector", str)
    timeout_ms = _arg(action, "timeout_ms", (int, float), 0)
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


_STEPS = {
    "click": _click,
    "type": _type,
    "press": _press,
    "wait": _wait,
    "wait_for": _wait_for,
    "scroll": _scroll,
    "evaluate": _evaluate,
    "screenshot": _screenshot,
}


async def capture(
    page: Page,
    request: RenderRequest,
    response: Response | None,
    outcomes: list[dict[str, Any]],
    shots: list[bytes],
    max_html_bytes: int,
) -> RenderResult:
    """The page as the render leaves it: HTML, the navigation's status and headers, the captures asked for.

    HTML over max_html_bytes (UTF-8) fails with BodyTooLarge, as a fetched body that large does.
    """
    headers = dict(response.headers) if response is not None else {}
    html = await page.content()
    _check_size(f"the rendered page at {page.url}", len(html.encode(errors="replace")), max_html_bytes)
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
        actions=outcomes,
        action_screenshots=shots,
    )
