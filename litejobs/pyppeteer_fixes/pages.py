"""Page calls pyppeteer gets wrong against Chromium 156: crashes, dialogs, navigation, evaluate, interception."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pyppeteer import helper
from pyppeteer.browser import BrowserContext
from pyppeteer.dialog import Dialog
from pyppeteer.errors import PageError, PyppeteerError
from pyppeteer.frame_manager import FrameManager
from pyppeteer.navigator_watcher import NavigatorWatcher
from pyppeteer.network_manager import NetworkManager, Request, Response
from pyppeteer.page import Page

from litejobs.pyppeteer_fixes.connection import consume_exception

T = TypeVar("T")

_FUNCTION = re.compile(r"^\s*(async\s+)?(function\b|\([^()]*\)\s*=>|[\w$]+\s*=>)")


# -- pitfalls 3 and 4: a crashed page must not kill the connection, nor leave calls pending forever ---------


class Interrupted(Exception):
    """A guarded call was abandoned because the page crashed or the browser went away."""

    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.reason = reason


async def open_page(context: BrowserContext) -> tuple[Page, asyncio.Future[Exception]]:
    """A new page with its 'error' listener attached at once, and a future that resolves if it crashes.

    pyee raises an 'error' event nobody listens to inside pyppeteer's receive loop, which then dies.
    JavaScript dialogs are answered at once (see `_answer_dialogs`).
    """
    page = await context.newPage()
    crashed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def on_error(exc: Exception) -> None:
        if not crashed.done():
            crashed.set_result(exc)

    page.on("error", on_error)
    _answer_dialogs(page)
    return page, crashed


def _answer_dialogs(page: Page) -> None:
    """Dismiss every alert, confirm and prompt (false, null), and accept every beforeunload.

    Nobody is there to click: an open dialog stops the page's scripts, its load event and every later call
    on it until the render times out. Accepting beforeunload lets a navigation the page asks for go ahead.
    """
    answering: set[asyncio.Task[None]] = set()

    def on_dialog(dialog: Dialog) -> None:
        answer = dialog.accept() if dialog.type == Dialog.Type.BeforeUnload else dialog.dismiss()
        task = asyncio.ensure_future(answer)
        answering.add(task)
        task.add_done_callback(answering.discard)
        task.add_done_callback(consume_exception)  # the page may close before the answer arrives

    page.on("dialog", on_dialog)


async def deny_downloads(context: BrowserContext) -> None:
    """Make Chromium refuse downloads in `context`: a page that is a download must not write to the disk."""
    await context._browser._connection.send(
        "Browser.setDownloadBehavior", {"behavior": "deny", "browserContextId": context._id}
    )


async def guarded(call: Awaitable[T], stops: Iterable[asyncio.Future[Any]], *, grace_s: float = 2.0) -> T:
    """Await `call`, but raise Interrupted as soon as one of `stops` resolves (a crash pyppeteer never reports).

    On cancellation the call is cancelled too and given `grace_s` to run its cleanup.
    """
    task = asyncio.ensure_future(call)
    stops = list(stops)
    try:
        await asyncio.wait({task, *stops}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _cancel_and_wait(task, grace_s)
        raise
    fired = next((stop for stop in stops if stop.done()), None)
    if fired is None or (task.done() and _failure(task) is None):
        return task.result()
    await _cancel_and_wait(task, grace_s)
    raise Interrupted(fired.result()) from _failure(task)


async def _cancel_and_wait(task: asyncio.Future[Any], grace_s: float) -> None:
    task.cancel()
    await asyncio.wait({task}, timeout=grace_s)
    task.add_done_callback(consume_exception)


def _failure(task: asyncio.Future[Any]) -> BaseException | None:
    return None if not task.done() or task.cancelled() else task.exception()


async def close_quietly(closing: Awaitable[Any], timeout_s: float) -> None:
    """Close a page or context, giving up after timeout_s: a dead renderer never answers."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(closing, timeout_s)


# -- page.goto leaves its watcher task pending forever when navigation fails or is cancelled --------------
# -- and takes a document whose body broke off (a reset, broken chunking) for a loaded page -----------------


class NavigationFailed(PageError):
    """Chromium could not load the page; `response` is what the server answered, if it answered."""

    def __init__(self, message: str, response: Response | None, *, cut_off: bool = False) -> None:
        super().__init__(message)
        self.response = response
        #: the server answered, then its body broke off: what Chromium shows is part of the page
        self.cut_off = cut_off


@dataclass
class Navigation:
    """Where goto left the page: the main document's answer, and whether `wait_until` came."""

    request: Request | None
    #: False when goto stopped waiting for `wait_until` at `give_up_at`, the document parsed (DOMContentLoaded)
    complete: bool = True

    @property
    def response(self) -> Response | None:
        return self.request.response if self.request is not None else None

    def raise_if_cut_off(self) -> None:
        """NavigationFailed if the document's body broke off after its headers (net::ERR_CONNECTION_RESET,
        ERR_CONTENT_LENGTH_MISMATCH, ERR_INVALID_CHUNKED_ENCODING, ...). Chromium shows what arrived as
        if it were the page and fires its load event; a fetch of it fails. ERR_ABORTED is the page's own
        doing (window.stop(), a script that navigates away) and leaves a page."""
        failure = _broken_off(self.request)
        if failure is not None:
            url = self.request.url if self.request is not None else ""
            raise NavigationFailed(f"{failure} while loading the body of {url}", self.response, cut_off=True)


def _broken_off(request: Request | None) -> str | None:
    failure = request.failure() if request is not None and request.response is not None else None
    text = str(failure.get("errorText") or "") if failure else ""
    return text if text and "ERR_ABORTED" not in text else None


async def goto(page: Page, url: str, wait_until: str, *, give_up_at: float | None = None) -> Navigation:
    """page.goto(url, waitUntil=wait_until, timeout=0) that always disposes of its navigation watcher.

    Otherwise each failed, blocked or cancelled navigation ends as "Task was destroyed but it is pending!".
    A navigation Chromium refuses raises NavigationFailed, which keeps the answer that made it refuse (a
    download, a 204) so the error can name it; so does a document whose body broke off, at once (it never
    goes network-idle). Past `give_up_at` (event-loop time) goto stops waiting for `wait_until` and returns
    as soon as the document is parsed (Navigation.complete False): a stalled image holds back `load`.
    """
    frame = page.mainFrame
    requests: dict[str, Any] = {}
    documents: list[Request] = []
    loop = asyncio.get_running_loop()
    broken: asyncio.Future[Request] = loop.create_future()
    parsed: asyncio.Future[None] = loop.create_future()
    initial_loader = frame._loaderId

    def on_request(request: Request) -> None:
        requests.setdefault(request.url, request)
        if request.isNavigationRequest() and request.frame is frame:
            documents.append(request)

    def on_failed(request: Request) -> None:
        if request in documents and _broken_off(request) and not broken.done():
            broken.set_result(request)

    def on_lifecycle(changed: Any) -> None:
        new_document = frame._loaderId != initial_loader
        if changed is frame and new_document and "DOMContentLoaded" in frame._lifecycleEvents and not parsed.done():
            parsed.set_result(None)

    manager = page._networkManager
    listeners = [
        helper.addEventListener(manager, NetworkManager.Events.Request, on_request),
        helper.addEventListener(manager, NetworkManager.Events.RequestFailed, on_failed),
        helper.addEventListener(page._frameManager, FrameManager.Events.LifecycleEvent, on_lifecycle),
    ]
    watcher = NavigatorWatcher(page._frameManager, frame, 0, {"waitUntil": wait_until})
    try:
        error = await page._navigate(url, page._networkManager.extraHTTPHeaders().get("referer", ""))
        if error is not None:
            raise NavigationFailed(error, documents[-1].response if documents else None)
        complete = await _settled(watcher.navigationPromise(), broken, parsed, give_up_at)
        document = broken.result() if broken.done() else requests.get(frame._navigationURL)
    finally:
        watcher.cancel()
        watcher.navigationPromise().cancel()
        helper.removeEventListeners(listeners)
        for future in (broken, parsed):
            future.cancel()
    navigation = Navigation(document, complete)
    navigation.raise_if_cut_off()
    return navigation


async def _settled(
    navigated: asyncio.Future[Any],
    broken: asyncio.Future[Request],
    parsed: asyncio.Future[None],
    give_up_at: float | None,
) -> bool:
    """Wait for `wait_until` (True), or past give_up_at for the document to be parsed (False); a broken-off
    document ends the wait at once (its failure is raised by the caller)."""
    timeout_s = None if give_up_at is None else max(0.0, give_up_at - asyncio.get_running_loop().time())
    await asyncio.wait({navigated, broken}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if not navigated.done() and not broken.done():
        await asyncio.wait({navigated, broken, parsed}, return_when=asyncio.FIRST_COMPLETED)
    if broken.done() or not navigated.done():
        return False
    done, _pending = navigated.result()
    failure = done.pop().exception()
    if failure is not None:
        raise failure
    return True


# -- pyppeteer takes any script containing "=>" for a function, so `[1, 2].map(x => x + 1)` fails ---------


async def evaluate_script(page: Page, script: str) -> Any:
    """Evaluate a function ("() => ...", "async function ...") or an expression; the JSON result."""
    return await page.evaluate(script, force_expr=not _FUNCTION.match(script))


# -- a call pending while the page navigates fails with "Inspected target navigated or closed" ------------

#: what Chromium answers a call whose document went away under it (a navigation, a renderer swap)
_NAVIGATED = ("Inspected target navigated or closed", "Execution context was destroyed", "Cannot find context")
#: between a document going away and its successor's context being ready
NAVIGATION_PAUSE_S = 0.05


def navigated_away(exc: BaseException) -> bool:
    """Whether a call failed only because its document was replaced (the next one may answer)."""
    return isinstance(exc, PyppeteerError) and any(marker in str(exc) for marker in _NAVIGATED)


async def across_navigations(page: Page, call: Callable[[float], Awaitable[T]], timeout_ms: float) -> T:
    """Run a read-only page call again in the next document while its document is replaced under it.

    `call` gets the milliseconds left (0 = no limit, as pyppeteer's timeouts). pyppeteer reruns a
    waitForSelector in the new document only when the old context's destruction is reported before the
    pending call fails; when Chromium swaps the document first, the call fails with "Inspected target
    navigated or closed" (measured: 6 of 18 jobs of 24 click-then-wait hops each). Past `timeout_ms`
    it raises TimeoutError, as the call would.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000 if timeout_ms else None
    while True:
        left_ms = 0.0 if deadline is None else (deadline - loop.time()) * 1000
        if deadline is not None and left_ms <= 0:
            raise TimeoutError(f"not done within {timeout_ms} ms")
        try:
            return await call(left_ms)
        except PyppeteerError as exc:
            if page.isClosed() or not navigated_away(exc):
                raise
        await asyncio.sleep(NAVIGATION_PAUSE_S)


async def wait_for_selector(page: Page, selector: str, timeout_ms: float) -> None:
    """page.waitForSelector that goes on waiting in the next document when the page navigates."""
    await across_navigations(page, lambda left_ms: page.waitForSelector(selector, timeout=left_ms), timeout_ms)


# -- pitfall 1: Network.setRequestInterception is gone from Chromium; the Fetch domain replaces it ---------


#: a paused request -> the headers to send it with instead of its own ({name, value} pairs), or None
HeaderRewrite = Callable[[dict[str, Any]], list[dict[str, str]] | None]


def _keep_headers(request: dict[str, Any]) -> list[dict[str, str]] | None:
    return None


async def intercept_requests(
    page: Page,
    decide: Callable[[dict[str, Any]], Awaitable[str | None]],
    rewrite: HeaderRewrite = _keep_headers,
) -> None:
    """Pause every request of `page` (redirect hops and subresources too) until `decide` answers.

    `decide(event)` returns None to let the request go, or a Fetch errorReason such as "BlockedByClient".
    A request let go is sent with the headers `rewrite(event["request"])` returns, if it returns any.
    """
    client = page._client
    pending: set[asyncio.Task[None]] = set()

    def on_paused(event: dict[str, Any]) -> None:
        task = asyncio.ensure_future(_settle(client, event, decide, rewrite))
        pending.add(task)
        task.add_done_callback(pending.discard)

    client.on("Fetch.requestPaused", on_paused)
    await client.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})


async def _settle(
    client: Any, event: dict[str, Any], decide: Callable[..., Awaitable[str | None]], rewrite: HeaderRewrite
) -> None:
    request_id = event["requestId"]
    headers: list[dict[str, str]] | None = None
    try:
        reason = await decide(event)
        headers = None if reason else rewrite(event["request"])
    except Exception:
        reason = "Failed"  # fail closed: an unexpected error must not let a request through unchecked
    try:
        if reason:
            await client.send("Fetch.failRequest", {"requestId": request_id, "errorReason": reason})
        elif headers is not None:
            await client.send("Fetch.continueRequest", {"requestId": request_id, "headers": headers})
        else:
            await client.send("Fetch.continueRequest", {"requestId": request_id})
    except Exception:
        if headers is None:
            return  # the page closed meanwhile: nothing is left to release
        # Chromium refused the headers ("Unsafe header"): fail the request rather than leave it paused
        with contextlib.suppress(Exception):
            await client.send("Fetch.failRequest", {"requestId": request_id, "errorReason": "Failed"})
