"""pyppeteer's DevTools connection: patched against cancelled calls and lost targets, opened with connect(),
watched for its end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pyppeteer
from pyppeteer import connection as _conn
from pyppeteer.browser import Browser, BrowserContext

from litejobs.errors import BrowserError

# -- pitfall 2: a cancelled call's late reply (or close) must not kill pyppeteer's receive loop -----------


def _on_response(self: Any, msg: dict[str, Any]) -> None:
    callback = self._callbacks.pop(msg.get("id", -1), None)
    if callback is None or callback.done():
        return
    if msg.get("error"):
        callback.set_exception(_conn._createProtocolError(callback.error, callback.method, msg))
    else:
        callback.set_result(msg.get("result"))


def _fail_pending(callbacks: dict[int, asyncio.Future[Any]]) -> None:
    for callback in callbacks.values():
        if not callback.done():
            error = _conn._rewriteError(callback.error, f"Protocol error {callback.method}: Target closed.")
            callback.set_exception(error)
    callbacks.clear()


async def _on_close(self: Any) -> None:
    if self._closeCallback:
        self._closeCallback()
        self._closeCallback = None
    _fail_pending(self._callbacks)
    for session in self._sessions.values():
        session._on_closed()
    self._sessions.clear()
    if hasattr(self, "connection"):
        await self.connection.close()
    if not self._recv_fut.done():
        self._recv_fut.cancel()


def _session_on_closed(self: Any) -> None:
    _fail_pending(self._callbacks)
    self._connection = None


_original_session_on_message = _conn.CDPSession._on_message
_original_send = _conn.Connection.send


def _session_on_message(self: Any, msg: str) -> None:
    callback_id = json.loads(msg).get("id")
    if callback_id and callback_id in self._callbacks and self._callbacks[callback_id].done():
        del self._callbacks[callback_id]
        return
    _original_session_on_message(self, msg)


def _send(self: Any, method: str, params: dict[str, Any] | None = None) -> Any:
    future = _original_send(self, method, params)
    if method == "Target.sendMessageToTarget":
        # CDPSession.send never awaits this envelope (the reply comes in the session), so a failure of it
        # would be logged as "Future exception was never retrieved" whenever a page closes mid-call.
        future.add_done_callback(consume_exception)
    return future


def apply_connection_patches() -> None:
    """Make pyppeteer's Connection and CDPSession skip futures whose caller gave up, and its Browser let go of
    targets that close before they are ready (idempotent)."""
    _conn.Connection.send = _send
    _conn.Connection._on_response = _on_response
    _conn.Connection._on_close = _on_close
    _conn.CDPSession._on_closed = _session_on_closed
    _conn.CDPSession._on_message = _session_on_message
    Browser._targetDestroyed = _target_destroyed
    Browser._targetInfoChanged = _target_info_changed


# -- a popup closed before its first navigation commits left two tasks pending for ever ----------------------


async def _target_destroyed(self: Any, event: dict[str, Any]) -> None:
    """pyppeteer's _targetDestroyed, without waiting for a target that was never initialised.

    A page target is initialised once it has a URL. A popup still loading its first document has none, so
    pyppeteer's _targetCreated waits for it, and its _targetDestroyed waited for the same future before
    settling it: both stayed pending until the garbage collector logged "Task was destroyed but it is
    pending!" for each. Settling it first (False: never initialised) lets _targetCreated end too.
    """
    target = self._targets.pop(event["targetId"], None)
    if target is None:
        return
    if not target._isClosedPromise.done():
        target._isClosedPromise.set_result(None)
    initialized = target._initializedPromise
    if not initialized.done():
        initialized.set_result(False)
        return
    if initialized.result():
        self.emit(Browser.Events.TargetDestroyed, target)
        target.browserContext.emit(BrowserContext.Events.TargetDestroyed, target)
    target._initializedCallback(False)


_original_target_info_changed = Browser._targetInfoChanged


async def _target_info_changed(self: Any, event: dict[str, Any]) -> None:
    """pyppeteer's _targetInfoChanged, quiet about a target that is already gone (it raised, unawaited)."""
    if event["targetInfo"]["targetId"] in self._targets:
        await _original_target_info_changed(self, event)


def consume_exception(task: asyncio.Future[Any]) -> None:
    """A done-callback for tasks nobody awaits: their failure is not worth an asyncio error log."""
    if not task.cancelled():
        task.exception()


# -- pitfalls 5-8: launch() blocks the loop, installs signal handlers and atexit hooks; connect() does not --


async def connect_browser(ws_endpoint: str, viewport: dict[str, int], *, timeout_s: float) -> Browser:
    """pyppeteer's connect(): no signal handlers, no atexit hook, no download, no blocking HTTP poll."""
    try:
        return await asyncio.wait_for(
            pyppeteer.connect(browserWSEndpoint=ws_endpoint, defaultViewport=viewport), timeout_s
        )
    except TimeoutError:
        raise BrowserError(f"could not connect to Chromium within launch_timeout_s={timeout_s:g}") from None


# -- whatever still kills the receive loop must not leave the callers waiting for ever ---------------------


def on_disconnect(browser: Browser, lost: Callable[[str], None]) -> None:
    """Call lost(reason) once the browser's connection ends: closed, or its receive loop died on an error.

    pyppeteer emits 'disconnected' only for a closed socket; an exception in its receive loop (pitfalls 2
    and 3 and any like them) ends the loop silently and every later call would hang.
    """
    browser.on("disconnected", lambda: lost("the DevTools connection closed"))

    def loop_ended(task: asyncio.Future[None]) -> None:
        error = None if task.cancelled() else task.exception()
        lost(f"pyppeteer's connection failed: {error!r}" if error else "the DevTools connection closed")

    browser._connection._recv_fut.add_done_callback(loop_ended)
