"""The servers a bench starts in processes of their own (the target site, the bare endpoint), and Child, which runs one.

bench_engine.py, bench_floors.py and bench_load.py start these children as `bench_engine.py --serve-target` and
`bench_engine.py --serve-bare`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
# a helper server exits by itself after this, whatever becomes of the bench (a soak sets it longer)
CHILD_MAX_S = float(os.environ.get("LITEJOBS_BENCH_CHILD_MAX_S", "3600"))


def make_page() -> bytes:
    """10 KB of ordinary HTML: headings, paragraphs with links and emphasis, lists."""
    part = "<h2>Part {0}</h2><p>Paragraph {0}: <a href='/item/{0}'>item {0}</a>, <b>bold</b> and <em>plain</em> words."
    body = "".join((part + "</p><ul><li>one</li><li>two</li></ul>").format(i) for i in range(75))
    return f"<!doctype html><html><head><title>Bench</title></head><body>{body}</body></html>".encode()


async def serve_target() -> None:
    """Child process: the site jobs fetch, one 10 KB page, aiohttp with keep-alive as shipped."""
    from aiohttp import web

    page = make_page()

    async def send_page(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/page", send_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"target listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), CHILD_MAX_S)
    await runner.cleanup()


async def serve_bare(durable_db: str | None = None, least_db: str | None = None) -> None:
    """Child process: a Starlette POST endpoint that parses JSON and writes nothing, on litejobs' uvicorn_config.
    With `durable_db`, it also stores each body as a job through litejobs' SqliteStore (group commit) before
    its 202, and does nothing else: the floor of a durable submit (bench_floors.py). With `least_db`, through
    least_store.LeastStore instead: the least a durable write could cost."""
    import uvicorn
    from least_store import LeastStore
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from litejobs.config import load_config
    from litejobs.jobs import JobSpec
    from litejobs.server import uvicorn_config
    from litejobs.store.sqlite import SqliteStore

    store: SqliteStore | None = None
    least = LeastStore(least_db) if least_db else None

    async def accept(request: Request) -> JSONResponse:
        body = await request.json()
        if least is not None:
            [job_id] = await least.submit([json.dumps(body["input"])])
            return JSONResponse({"job_id": job_id, "status": "waiting"}, status_code=202)
        if store is None:
            return JSONResponse({"accepted": isinstance(body, dict)}, status_code=202)
        spec = JobSpec(kind=body["kind"], input=body["input"], owner="anonymous", delay_s=body.get("delay_s", 0))
        [submitted] = await store.submit([spec], int(time.time() * 1000), 10**9)
        return JSONResponse({"job_id": submitted.job.id, "status": submitted.job.status.value}, status_code=202)

    # uvicorn_config reads only .asgi and .config of its App, so these are exactly litejobs' settings
    routes = [Route("/submit", accept, methods=["POST"])]
    stand_in = SimpleNamespace(asgi=Starlette(routes=routes), config=load_config(None, env={}))
    server = uvicorn.Server(uvicorn_config(cast(Any, stand_in), 0))
    async with contextlib.AsyncExitStack() as stack:
        if durable_db:
            store = await stack.enter_async_context(SqliteStore(durable_db))
        serving = asyncio.ensure_future(server.serve())
        for _ in range(3000):  # bounded: 30 s
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        print(f"bare listening on http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(serving, CHILD_MAX_S)  # uvicorn ends on SIGTERM by itself


class Child:
    """A server in its own process, output to a log file; RSS and CPU time read from /proc/<pid>."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log_path = name, log_dir / f"{name}.log"
        self._log = self.log_path.open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            preexec_fn=lambda: ctypes.CDLL(None).prctl(1, signal.SIGTERM),  # PR_SET_PDEATHSIG: die with the bench
        )  # fmt: skip
        for _ in range(600):  # bounded: 30 s
            found = [line for line in self.log_path.read_text().splitlines() if " listening on http://" in line]
            if found or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not found:
            self.stop()
            raise RuntimeError(f"{name} did not start:\n{self.log_path.read_text()[-3000:]}")
        self.base_url = found[0].split()[-1]

    def rss_mib(self) -> float:
        with contextlib.suppress(OSError):
            return int(Path(f"/proc/{self.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
        return math.nan

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
