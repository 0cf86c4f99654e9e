"""Test support: the real server in a thread or a process, a local target site, a small HTTP client.

Everything listens on 127.0.0.1, port 0. Nothing here mocks litejobs' own parts.
"""

from __future__ import annotations

import asyncio
import collections
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from aiohttp import web

from litejobs.app import App
from litejobs.config import Config, load_config
from litejobs.server import uvicorn_config

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A config on defaults, its database in tmp_path, fast backoff and leases, plus `sections`."""
    overrides: dict[str, dict[str, Any]] = {
        "store": {"path": str(tmp_path / "litejobs.db")},
        "server": {"port": 0, "shutdown_grace_s": 2.0},
        "queue": {"backoff_base_s": 0.05, "backoff_max_s": 0.2},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_config(None, env={}, overrides=overrides)


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes (bounded); its last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


class FakeClock:
    """Wall time plus an offset the test moves forward: leases and expiry without sleeping."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """A tiny blocking HTTP client (one connection per request) for tests."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.api_key = api_key

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> Response:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=90)
        all_headers = dict(headers or {})
        if self.api_key and "Authorization" not in all_headers:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=all_headers)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)

    def submit(self, input: dict[str, Any], kind: str = "fetch", **options: Any) -> dict[str, Any]:
        resp = self.post("/v1/jobs", {"kind": kind, "input": input, **options})
        assert resp.status == 202, (resp.status, resp.body)
        return resp.json  # type: ignore[no-any-return]

    def wait(self, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            resp = self.get(f"/v1/jobs/{job_id}?wait={max(0.1, min(remaining, 10)):.1f}")
            assert resp.status == 200, (resp.status, resp.body)
            job = resp.json
            if job["status"] in ("completed", "partial", "failed", "cancelled") or remaining <= 0:
                return job  # type: ignore[no-any-return]


class LoopThread:
    """An asyncio loop in a background thread, for servers the tests talk to over sockets."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ServerThread:
    """The real litejobs App behind uvicorn on 127.0.0.1:0, in a thread of this test process."""

    def __init__(self, config: Config, clock: Callable[[], int] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.app: App | None = None
        self._runner = LoopThread("litejobs-server")
        self._server: uvicorn.Server | None = None
        self._done: Any = None
        self.port = self._runner.call(self._start())
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http = Http(self.base_url, config.auth.keys[0] if config.auth.keys else None)

    async def _start(self) -> int:
        self.app = App(self.config, clock=self.clock) if self.clock else App(self.config)
        await self.app.__aenter__()
        self._server = uvicorn.Server(uvicorn_config(self.app, 0))
        self._server.install_signal_handlers = False  # type: ignore[attr-defined]
        self._done = asyncio.get_running_loop().create_task(self._server.serve())
        for _ in range(1000):
            if self._server.started:
                break
            await asyncio.sleep(0.005)
        return self._server.servers[0].sockets[0].getsockname()[1]  # type: ignore[no-any-return]

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 60) -> Any:
        """Run a coroutine on the server's loop (to drive the sweeper, read the store...)."""
        return self._runner.call(coro, timeout_s)

    async def _stop(self) -> None:
        assert self._server is not None and self.app is not None
        self._server.should_exit = True
        await self._done
        await self.app.__aexit__(None, None, None)

    def stop(self) -> None:
        if self._server is not None:
            self._runner.call(self._stop())
            self._server = None
        self._runner.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TargetSite:
    """A local website for jobs to fetch: `site.add("/path", handler)`; `site.hits["/path"]` counts."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self._routes: dict[str, Handler] = {}
        self._runner_thread = LoopThread("target-site")
        self.host = host
        self.port = self._runner_thread.call(self._start())
        self.base_url = f"http://{host}:{self.port}"

    def add(self, path: str, handler: Handler) -> str:
        self._routes[path] = handler
        return self.url(path)

    def add_html(self, path: str, html: str, status: int = 200) -> str:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=html, status=status, content_type="text/html")

        return self.add(path, handler)

    def url(self, path: str) -> str:
        return self.base_url + path

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        handler = self._routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="not found")
        return await handler(request)

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def close(self) -> None:
        self._runner_thread.call(self._runner.cleanup())
        self._runner_thread.close()


class ServerProcess:
    """`litejobs serve` as a child process: for crash, signal and restart tests."""

    def __init__(self, db: Path, *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> None:
        """`prefix` runs the server under another command (e.g. `unshare` for a PID namespace)."""
        self.db = db
        cmd = [*prefix, PYTHON, "-m", "litejobs", "serve", "--port", "0", "--db", str(db), *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env, cwd=ROOT
        )
        self.output: list[str] = []
        self.base_url = self._read_address()
        self.http = Http(self.base_url)
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _read_address(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            found = re.search(r"litejobs listening on (http://[\d.]+:\d+)", line)
            if found:
                return found.group(1)
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        raise RuntimeError("server did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def _closed(self) -> None:
        self._drainer.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._closed()

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM, then the exit code (a hung server is killed and fails the test)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise
        finally:
            self._closed()
