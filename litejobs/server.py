"""Run an App under uvicorn in the same event loop as its workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
from collections.abc import Callable, Iterator

import uvicorn

from litejobs.app import App
from litejobs.config import Config
from litejobs.logs import install_logging

log = logging.getLogger("litejobs")


def uvicorn_config(app: App, port: int) -> uvicorn.Config:
    # ws="none": pyppeteer pins websockets 10, whose API uvicorn>=0.50 cannot import; we serve none.
    # lifespan="off": App is entered by us, around the server, so workers outlive in-flight requests.
    return uvicorn.Config(
        app.asgi,
        host=app.config.server.host,
        port=port,
        ws="none",
        lifespan="off",
        log_level="warning",
        log_config=None,  # uvicorn's lines go through the root handler of install_logging (text or JSON)
        access_log=False,
        # a backstop: App.drain has ended every request by the grace's end (past it, uvicorn would
        # cancel them into a bare 500)
        timeout_graceful_shutdown=math.ceil(app.config.server.shutdown_grace_s) + 1,
    )


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its own shutdown, which would kill the process before the
    workers' grace period and the store's close; here a signal only asks the server to exit, once
    `on_stop` has begun the App's stop (so that it starts at the signal, not once uvicorn is done)."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._ask_exit)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _ask_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for open connections
        else:
            self._on_stop()
        self.should_exit = True


async def _announce_when_started(server: uvicorn.Server) -> None:
    for _ in range(6000):  # bounded: 60 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    for listener in server.servers:
        for sock in listener.sockets:
            host, port = sock.getsockname()[:2]
            # one line a script can wait for and parse, flushed at once
            # one write, so a log line from the writer thread cannot land inside it
            sys.stdout.write(f"litejobs listening on http://{host}:{port}\n")
            sys.stdout.flush()


def run(config: Config) -> None:
    """Serve on uvloop when it is installed (measured: faster HTTP and aiohttp), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config))


async def serve(config: Config) -> None:
    """Serve until SIGINT/SIGTERM; then stop taking requests and jobs, give active ones their grace
    (App.begin_shutdown), close."""
    install_logging(config.server.log_format)
    async with App(config) as app:
        server = _Server(uvicorn_config(app, config.server.port), on_stop=app.begin_shutdown)
        announce = asyncio.create_task(_announce_when_started(server))
        try:
            await server.serve()
        finally:
            announce.cancel()
