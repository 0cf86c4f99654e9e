"""Every workaround pyppeteer 2.0.0 needs against Chromium 156, in one place (shared/notes/pyppeteer.md)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyppeteer
from pyppeteer import connection as _conn
from pyppeteer import helper
from pyppeteer.browser import Browser, BrowserContext
from pyppeteer.errors import PageError
from pyppeteer.launcher import DEFAULT_ARGS
from pyppeteer.navigator_watcher import NavigatorWatcher
from pyppeteer.network_manager import NetworkManager, Response
from pyppeteer.page import Page

from litejobs.errors import BrowserError

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
_FUNCTION = re.compile(r"^\s*(async\s+)?(function\b|\([^()]*\)\s*=>|[\w$]+\s*=>)")
_DEVTOOLS_LINE = re.compile(rb"DevTools listening on (ws://\S+)")
#: one switch with pyppeteer's own site-per-process: whether Chromium merges a repeated one is unverified
_DISABLED_FEATURES = (
    "site-per-process,Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
    "CalculateNativeWinOcclusion,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater,"
    "AutofillServerCommunication,PrivacySandboxSettings4"
)
_QUIET_ARGS = (
    "--headless",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-gpu",
    "--disable-quic",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--no-default-browser-check",
    "--no-pings",
    "--disable-field-trial-config",
    f"--disable-features={_DISABLED_FEATURES}",
)


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
    """Make pyppeteer's Connection and CDPSession skip futures whose caller gave up (idempotent)."""
    _conn.Connection.send = _send
    _conn.Connection._on_response = _on_response
    _conn.Connection._on_close = _on_close
    _conn.CDPSession._on_closed = _session_on_closed
    _conn.CDPSession._on_message = _session_on_message


# -- pitfalls 3 and 4: a crashed page must not kill the connection, nor leave calls pending forever ---------


class Interrupted(Exception):
    """A guarded call was abandoned because the page crashed or the browser went away."""

    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.reason = reason


async def open_page(context: BrowserContext) -> tuple[Page, asyncio.Future[Exception]]:
    """A new page with its 'error' listener attached at once, and a future that resolves if it crashes.

    pyee raises an 'error' event nobody listens to inside pyppeteer's receive loop, which then dies.
    """
    page = await context.newPage()
    crashed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def on_error(exc: Exception) -> None:
        if not crashed.done():
            crashed.set_result(exc)

    page.on("error", on_error)
    return page, crashed


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


def consume_exception(task: asyncio.Future[Any]) -> None:
    """A done-callback for tasks nobody awaits: their failure is not worth an asyncio error log."""
    if not task.cancelled():
        task.exception()


async def close_quietly(closing: Awaitable[Any], timeout_s: float) -> None:
    """Close a page or context, giving up after timeout_s: a dead renderer never answers."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(closing, timeout_s)


# -- page.goto leaves its watcher task pending forever when navigation fails or is cancelled --------------


async def goto(page: Page, url: str, wait_until: str) -> Response | None:
    """page.goto(url, waitUntil=wait_until, timeout=0) that always disposes of its navigation watcher.

    Otherwise each failed, blocked or cancelled navigation ends as "Task was destroyed but it is pending!".
    """
    frame = page.mainFrame
    requests: dict[str, Any] = {}
    listener = helper.addEventListener(
        page._networkManager, NetworkManager.Events.Request, lambda request: requests.setdefault(request.url, request)
    )
    watcher = NavigatorWatcher(page._frameManager, frame, 0, {"waitUntil": wait_until})
    try:
        error = await page._navigate(url, page._networkManager.extraHTTPHeaders().get("referer", ""))
        if error is not None:
            raise PageError(error)
        done, _pending = await watcher.navigationPromise()
        failure = done.pop().exception()
        if failure is not None:
            raise failure
    finally:
        watcher.cancel()
        watcher.navigationPromise().cancel()
        helper.removeEventListeners([listener])
    request = requests.get(frame._navigationURL)
    return request.response if request is not None else None


# -- pyppeteer takes any script containing "=>" for a function, so `[1, 2].map(x => x + 1)` fails ---------


async def evaluate_script(page: Page, script: str) -> Any:
    """Evaluate a function ("() => ...", "async function ...") or an expression; the JSON result."""
    return await page.evaluate(script, force_expr=not _FUNCTION.match(script))


# -- pitfall 1: Network.setRequestInterception is gone from Chromium; the Fetch domain replaces it ---------


async def intercept_requests(page: Page, decide: Callable[[dict[str, Any]], Awaitable[str | None]]) -> None:
    """Pause every request of `page` (redirect hops and subresources too) until `decide` answers.

    `decide(event)` returns None to let the request go, or a Fetch errorReason such as "BlockedByClient".
    """
    client = page._client
    pending: set[asyncio.Task[None]] = set()

    def on_paused(event: dict[str, Any]) -> None:
        task = asyncio.ensure_future(_settle(client, event, decide))
        pending.add(task)
        task.add_done_callback(pending.discard)

    client.on("Fetch.requestPaused", on_paused)
    await client.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})


async def _settle(client: Any, event: dict[str, Any], decide: Callable[..., Awaitable[str | None]]) -> None:
    try:
        reason = await decide(event)
    except Exception:
        reason = "Failed"  # fail closed: an unexpected error must not let a request through unchecked
    try:
        if reason:
            await client.send("Fetch.failRequest", {"requestId": event["requestId"], "errorReason": reason})
        else:
            await client.send("Fetch.continueRequest", {"requestId": event["requestId"]})
    except Exception:
        pass  # the page closed meanwhile: nothing is left to release


# -- pitfalls 5-9: pyppeteer's launch() blocks the loop, installs signal handlers and atexit hooks, -------
# -- and leaves Chromium running when the server is SIGKILLed. So Chromium is started here and connect()ed.


def chromium_args(host_resolver_rules: str, *, as_root: bool) -> list[str]:
    """Chromium's flags: pyppeteer's defaults, headless, no background traffic, DNS limited by the rules."""
    args = [arg for arg in DEFAULT_ARGS if not arg.startswith("--disable-features=")]
    args += [*_QUIET_ARGS, f"--host-resolver-rules={host_resolver_rules}"]
    if as_root:
        args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox on
    return args


@dataclass(eq=False)
class ChromiumProcess:
    """A Chromium we started in its own process group, and its throwaway profile directory."""

    proc: asyncio.subprocess.Process
    user_data_dir: str
    ws_endpoint: str = ""
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def stop(self, grace_s: float) -> None:
        """Wait up to grace_s for Chromium to exit, then kill whatever is left of its group; remove the profile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), grace_s)
        self.kill_group()
        await self.proc.wait()
        for _ in range(100):  # killed children still hold the profile for a few ms
            if not group_pids(self.pid, alive_only=True):
                break
            await asyncio.sleep(0.02)
        if self.drain is not None:
            self.drain.cancel()
        shutil.rmtree(self.user_data_dir, ignore_errors=True)

    def memory_mb(self) -> tuple[float, float]:
        """(RSS, PSS) of the whole Chromium tree in MiB; RSS counts shared pages once per process."""
        return tree_memory_mb(group_pids(self.pid, alive_only=True))


async def spawn_chromium(executable: str, args: list[str], *, timeout_s: float) -> ChromiumProcess:
    """Start Chromium and read its DevTools address from stderr, without blocking the event loop."""
    profile = tempfile.mkdtemp(prefix="litejobs-chromium-")
    argv = [executable, *args, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    # Chromium's crashpad handler keeps its database under ~/.config unless told otherwise
    env = {**os.environ, "XDG_CONFIG_HOME": f"{profile}/.config", "XDG_CACHE_HOME": f"{profile}/.cache"}
    try:
        process = ChromiumProcess(await _start(argv, env), profile)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    try:
        process.ws_endpoint = await asyncio.wait_for(_read_endpoint(process), timeout_s)
    except BaseException as exc:
        await process.stop(grace_s=0)
        if isinstance(exc, TimeoutError):
            raise BrowserError(f"Chromium did not start within launch_timeout_s={timeout_s:g}") from None
        raise
    process.drain = asyncio.ensure_future(_drain(process))
    return process


async def _start(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    # The parent-death signal makes the kernel kill Chromium if this process dies, even by SIGKILL. It is
    # tied to the thread that forks, which is the event loop's. setpriv avoids running Python in the forked
    # child (preexec_fn is unsafe once threads exist, and getaddrinfo runs in executor threads).
    setpriv = shutil.which("setpriv")
    preexec: Callable[[], Any] | None = None
    if setpriv:
        argv = [setpriv, "--pdeathsig", "KILL", *argv]
    else:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        preexec = lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # noqa: E731
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
        env=env,
    )


async def _read_endpoint(process: ChromiumProcess) -> str:
    assert process.proc.stderr is not None
    while True:
        line = await process.proc.stderr.readline()
        if not line:
            tail = " | ".join(process.stderr_tail) or "no output"
            raise BrowserError(f"Chromium exited before it was ready: {tail}")
        match = _DEVTOOLS_LINE.search(line)
        if match:
            return match.group(1).decode()
        process.stderr_tail.append(line.decode(errors="replace").strip())


async def _drain(process: ChromiumProcess) -> None:
    # Chromium keeps logging to stderr; an unread pipe would fill up and stall it.
    assert process.proc.stderr is not None
    while line := await process.proc.stderr.readline():
        process.stderr_tail.append(line.decode(errors="replace").strip())


async def connect_browser(ws_endpoint: str, viewport: dict[str, int], *, timeout_s: float) -> Browser:
    """pyppeteer's connect(): no signal handlers, no atexit hook, no download, no blocking HTTP poll."""
    try:
        return await asyncio.wait_for(
            pyppeteer.connect(browserWSEndpoint=ws_endpoint, defaultViewport=viewport), timeout_s
        )
    except TimeoutError:
        raise BrowserError(f"could not connect to Chromium within launch_timeout_s={timeout_s:g}") from None


def group_pids(pgid: int, *, alive_only: bool = False) -> list[int]:
    """Processes in the group `pgid` (zombies too unless alive_only), from /proc."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat[stat.rindex(")") + 2 :].split(maxsplit=3)[:3]
        if int(group) == pgid and not (alive_only and state in "ZX"):
            pids.append(int(entry.name))
    return pids


def tree_memory_mb(pids: Iterable[int]) -> tuple[float, float]:
    """Summed (RSS, PSS) in MiB of `pids`; processes that vanished meanwhile count as 0."""
    rss_kb = pss_kb = 0
    for pid in pids:
        rss_kb += _status_kb(f"/proc/{pid}/status", "VmRSS:")
        pss_kb += _status_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
    return rss_kb / 1024, pss_kb / 1024


def _status_kb(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
