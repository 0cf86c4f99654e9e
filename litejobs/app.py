"""App: the composition root. It owns every resource and is the only module that knows every part."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from litejobs import __version__
from litejobs.api import dialects, events, system, v1
from litejobs.api import metrics as metrics_routes
from litejobs.api import webhooks as webhook_routes
from litejobs.api.auth import KeyRing
from litejobs.api.drain import HttpDrain
from litejobs.api.errors import allowed_methods, error_body, error_response, request_id_of
from litejobs.api.http import RequestIdMiddleware, job_body
from litejobs.api.ratelimit import RateLimiter
from litejobs.api.responses import JSONResponse
from litejobs.config import Config
from litejobs.engine import Engine
from litejobs.errors import LitejobsError
from litejobs.events import ChangeFeed
from litejobs.fetcher import Fetcher
from litejobs.files import DatabaseFiles, DirectoryFiles, FileArea
from litejobs.jobs import system_clock_ms
from litejobs.kinds import KindRegistry, builtin_kinds, multi
from litejobs.logs import RequestLogMiddleware, log_transition
from litejobs.metrics import Metrics
from litejobs.netpolicy import NetworkPolicy
from litejobs.plugins import plugin_kinds
from litejobs.shared_politeness import host_gate_for
from litejobs.store import Store, open_store
from litejobs.sweeper import Sweeper
from litejobs.webhooks import Deliverer, WebhookSender
from litejobs.worker import Resources, WorkerPool
from litejobs.worker_ids import new_worker_id

log = logging.getLogger("litejobs")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
#: of `[server] shutdown_grace_s`, the part kept for what follows the grace (cancelling the jobs
#: still running, handing them back, closing the browser and the store), so that a whole stop fits
#: in the grace: a Docker stop kills at 10 s, the default grace
HANDBACK_S = 1.0


def _browser_pool(config: Config, policy: NetworkPolicy) -> Any:
    try:
        from litejobs.browser import BrowserPool
    except ImportError:  # pyppeteer missing: rendering is reported unavailable, fetch still works
        return None
    return BrowserPool(
        config.browser,
        policy,
        user_agent=None,
        max_body_bytes=config.fetch.max_body_bytes,
        own_ports=policy.own_ports,
    )


def _file_area(config: Config, store: Store) -> FileArea:
    """PostgreSQL without an explicit files_dir keeps artefacts in the database, so that any node
    serves any node's files; otherwise they are files under files_dir (a folder all nodes mount)."""
    if config.store.url and not config.store.files_dir and hasattr(store, "put_file_data"):
        return DatabaseFiles(store)  # type: ignore[arg-type]
    return DirectoryFiles(config.files_dir)


class App:
    """`async with App(config) as app:` opens the store, starts the workers and the sweeper;
    `app.asgi` is the HTTP application. Leaving stops the workers (with a grace period for active
    jobs), then closes the browser, the fetcher and the store."""

    def __init__(self, config: Config, *, clock: Callable[[], int] = system_clock_ms) -> None:
        self.config = config
        self.clock = clock
        self.worker_id = new_worker_id()
        self.feed = ChangeFeed()
        self.keys = KeyRing(config.auth.keys)
        self.limiter = RateLimiter(config.auth.rate_per_s)
        self.policy = NetworkPolicy(config.allow_private_networks, config.fetch.blocked_networks)
        self.kinds = KindRegistry([*builtin_kinds(), multi.KIND])
        for kind in plugin_kinds(config.kinds, reserved=self.kinds.names()):
            self.kinds.add(kind)
        self.store = open_store(config.store)
        self.files = _file_area(config, self.store)
        self.fetcher = Fetcher(config.fetch, self.policy)
        self.browser = _browser_pool(config, self.policy)
        # on PostgreSQL the per-host limits hold across nodes (in the database); on SQLite, in memory
        gate = host_gate_for(self.store, config.crawl, node=self.worker_id)
        self.resources = Resources(config, self.fetcher, self.browser, self.files, host_gate=gate)
        self.workers: WorkerPool | None = None
        if config.queue.enabled:
            self.workers = WorkerPool(
                self.store, self.kinds, self.resources, self.feed, clock=clock, worker_id=self.worker_id
            )
            # a store shared by several nodes says when another node made work claimable (PostgreSQL:
            # LISTEN/NOTIFY); the workers' idle poll remains the fallback
            on_work = getattr(self.store, "on_work_available", None)
            if on_work is not None:
                on_work(self.workers.notify)
        # ...and when another node changed a job: its waiters and streams re-read it (the metrics,
        # webhooks and transition logs of that change are the other node's business)
        on_remote_change = getattr(self.store, "on_remote_change", None)
        if on_remote_change is not None:
            on_remote_change(self.feed.poke, self.feed.poke_all)
            if self.workers is not None:  # a job running here that another node cancelled stops at once
                on_remote_change(self.workers.changed_elsewhere, self.workers.recheck_leases)
        self.sweeper = Sweeper(
            self.store,
            self.files,
            config,
            clock=clock,
            worker_id=self.worker_id,
            on_requeue=self.workers.notify if self.workers else lambda: None,
            on_change=self.feed.publish,
        )
        self.engine = Engine(config, self.store, self.kinds, self.workers, self.feed, self.resources, clock=clock)
        self.metrics = Metrics(self.store, clock=clock, kinds=self.kinds.names, process_gauges=self._process_gauges)
        self.webhook_sender = WebhookSender(self.policy, config.webhooks.timeout_s, config.fetch.user_agent)
        self.deliverer = Deliverer(
            self.store,
            config.webhooks,
            self.webhook_sender,
            body_of=job_body,
            clock=clock,
            on_attempt=self.metrics.webhook_attempt,
        )
        for listener in (self.metrics.on_change, self.deliverer.on_change, log_transition):
            self.feed.subscribe(listener)
        self.drain = HttpDrain()
        self.asgi = self._build_asgi()
        self._stack = contextlib.AsyncExitStack()
        self._open = False
        self._workers_stopped: asyncio.Task[None] | None = None

    async def __aenter__(self) -> App:
        try:
            await self._stack.enter_async_context(self.store)
            await self._stack.enter_async_context(self.fetcher)
            if self.browser is not None:
                await self._stack.enter_async_context(self.browser)
            await self._stack.enter_async_context(self.sweeper)
            # before the workers, so that it closes after them and records their last changes
            await self._stack.enter_async_context(self.webhook_sender)
            await self._stack.enter_async_context(self.deliverer)
            if self.workers is not None:
                await self._stack.enter_async_context(self.workers)
        except BaseException:
            await self._stack.aclose()
            raise
        self._open = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.begin_shutdown()
        if self._workers_stopped is not None:
            await self._workers_stopped
        self._open = False
        await self._stack.aclose()

    def begin_shutdown(self) -> None:
        """The stop starts here (SIGTERM), while uvicorn still serves: claim nothing more, refuse
        new jobs, answer long-polls, end event streams, and start the grace of the active jobs and
        requests now. Leaving the App waits for the grace's end."""
        if self.engine.shutting_down:
            return
        grace_s = self.config.server.shutdown_grace_s
        grace_s -= min(HANDBACK_S, grace_s / 2)
        log.info("shutting down: active jobs get %.1f s", grace_s)
        self.engine.begin_shutdown()
        self.drain.begin(grace_s)
        if self.workers is not None:
            self._workers_stopped = asyncio.create_task(self.workers.stop(grace_s), name="litejobs-stop")

    def rate_limit(self, owner: str) -> None:
        self.limiter.take(owner)

    async def readiness(self) -> dict[str, Any]:
        """What /readyz reports. The store is asked (a cheap ping) where it can be away on its own
        (PostgreSQL): a node that cannot reach its database is not ready, though it runs."""
        ping = getattr(self.store, "ping", None)
        return {
            "store": self._open and (ping is None or await ping()),
            "workers": self.workers is not None and self.workers.running,
            "browser": self.browser.state() if self.browser is not None else {"state": "unavailable"},
            "version": __version__,
        }

    async def stats(self) -> dict[str, Any]:
        figures = await self.store.stats(self.clock())
        figures["workers"] = {
            "busy": self.workers.busy if self.workers else 0,
            "total": self.workers.concurrency if self.workers else 0,
        }
        figures["queue_enabled"] = self.config.queue.enabled
        figures["browser"] = self.browser.state() if self.browser is not None else {"state": "unavailable"}
        return figures

    def _process_gauges(self) -> dict[str, float]:
        gauges = {
            "workers_busy": float(self.workers.busy if self.workers else 0),
            "workers_total": float(self.workers.concurrency if self.workers else 0),
        }
        if self.browser is not None:
            gauges["browser_pages_open"] = float(self.browser.state().get("pages_open", 0))
        return gauges

    def _build_asgi(self) -> Starlette:
        async def on_litejobs_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, LitejobsError)
            return error_response(request, exc)

        async def on_http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            code = _HTTP_CODES.get(exc.status_code, "http_error")
            body = error_body(code, str(exc.detail), request_id_of(request))
            headers = dict(exc.headers or {})
            # routing moved root_path into a Mount's: match again from the app's own
            scope = {
                **request.scope,
                "root_path": request.scope.get("app_root_path", request.scope.get("root_path", "")),
            }
            if exc.status_code == 405 and (methods := allowed_methods(request.app.router.routes, scope)):
                headers["Allow"] = ", ".join(sorted(methods))
            return JSONResponse(body, status_code=exc.status_code, headers=headers)

        async def on_crash(request: Request, exc: Exception) -> Response:
            log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
            body = error_body("internal_error", "the server failed to answer; see its log", request_id_of(request))
            return JSONResponse(body, status_code=500)

        app = Starlette(
            routes=[
                *v1.ROUTES,
                *events.ROUTES,
                *webhook_routes.ROUTES,
                *metrics_routes.ROUTES,
                *dialects.ROUTES,
                *system.ROUTES,
            ],
            # the drain innermost: its 503 gets the request id and the request's log line
            middleware=[
                Middleware(RequestLogMiddleware),
                Middleware(RequestIdMiddleware),
                Middleware(self.drain.middleware),
            ],
            exception_handlers={LitejobsError: on_litejobs_error, HTTPException: on_http_error, Exception: on_crash},
        )
        app.state.litejobs = self
        return app
