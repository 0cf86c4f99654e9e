"""The fetcher tests' target: a local aiohttp site on 127.0.0.1 or 127.0.0.2, a raw TCP server, a fake DNS.

The test modules keep their own `loop`, `run`, `site` and `other_site` fixtures (built here), so that pytest finds
them without a conftest.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import socket
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from litejobs.config import FetchConfig
from litejobs.fetcher import Fetcher, Page
from litejobs.netpolicy import NetworkPolicy

#: the `run` fixture: one coroutine run to its end on the test's loop
Run = Callable[[Awaitable[Any]], Any]

CONFIG = FetchConfig(timeout_s=5.0, user_agent="litejobs-test/1.0")
LOOPBACK_ALLOWED = NetworkPolicy(allow_private=True)
BOMB_INFLATED_BYTES = 200 * 1024 * 1024

HTML = "<html><head><title>Café</title></head><body><p>naïve résumé</p></body></html>"
LATIN1_PAGE = '<html><head><meta charset="iso-8859-1"><title>Café</title></head><body>crème</body></html>'
CP1252_PAGE = (
    b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
    b"</head><body>\x93quoted\x94</body></html>"
)


class Site:
    """A local target site: one aiohttp server on `host`, port 0, that counts the requests it gets."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.hits = 0
        self.closing = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._bomb: bytes | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def start(self) -> Site:
        app = web.Application(middlewares=[self._count])
        app.router.add_routes(self._routes())
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.closing.set()
        assert self.runner is not None
        await self.runner.cleanup()

    @web.middleware
    async def _count(self, request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
        self.hits += 1
        return await handler(request)

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/html", reply(lambda _: web.Response(text=HTML, content_type="text/html"))),
            web.get("/latin1", reply(lambda _: _raw(LATIN1_PAGE.encode("latin-1"), "text/html"))),
            web.get("/cp1252", reply(lambda _: _raw(CP1252_PAGE, "text/html"))),
            web.get("/bad-charset", reply(lambda _: _raw("naïve".encode(), "text/html; charset=klingon"))),
            web.route("*", "/echo", echo),
            web.get("/status/{code}", reply(lambda r: web.Response(status=int(r.match_info["code"]), text="oops"))),
            web.get("/redirect/{n}", redirect_chain),
            web.get("/loop", reply(lambda _: _redirect(302, "/loop"))),
            web.route("*", "/to", reply(lambda r: _redirect(int(r.query.get("status", "302")), r.query["url"]))),
            web.get("/set-cookie", set_cookie_and_redirect),
            web.get("/big", reply(lambda _: web.Response(body=b"x" * 5000))),
            web.get("/big-chunked", big_chunked),
            web.get("/gzip", reply(lambda _: _encoded(zlib.compressobj(6, zlib.DEFLATED, 31), "gzip"))),
            web.get("/deflate", reply(lambda _: _encoded(zlib.compressobj(6, zlib.DEFLATED, 15), "deflate"))),
            web.get("/raw-deflate", reply(lambda _: _encoded(zlib.compressobj(6, zlib.DEFLATED, -15), "deflate"))),
            web.get("/gzip-members", reply(lambda _: _gzipped(*_thirds(HTML.encode())))),
            web.get("/gzip-members-big", reply(lambda _: _gzipped(b"x" * 3000, b"y" * 3000, b"z" * 3000))),
            web.get("/gzip-padded", reply(lambda _: _gzipped(HTML.encode(), tail=bytes(10)))),
            web.get("/bomb", self._gzip_bomb),
            web.get("/hang", self._hang),
            web.get("/drip", self._drip),
        ]

    async def bomb(self) -> bytes:
        """About 200 KB of gzip that inflates to 200 MB of zeros, built once per site."""
        if self._bomb is None:
            self._bomb = await asyncio.to_thread(_bomb_body)
        return self._bomb

    async def _gzip_bomb(self, request: web.Request) -> web.Response:
        headers = {"Content-Type": "text/html", "Content-Encoding": "gzip"}
        return web.Response(body=await self.bomb(), headers=headers)

    async def _hang(self, request: web.Request) -> web.Response:
        await asyncio.wait_for(self.closing.wait(), 30)
        return web.Response(text="too late")

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "30"})
        await response.prepare(request)
        for _ in range(30):
            if self.closing.is_set():
                break
            try:
                await response.write(b"x")
            except ConnectionError:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), 1.0)
        return response


def reply(make: Callable[[web.Request], web.Response]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler from a plain function of the request."""

    async def handler(request: web.Request) -> web.Response:
        return make(request)

    return handler


def _raw(body: bytes, content_type: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": content_type})


def _redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def _encoded(compressor: Any, coding: str) -> web.Response:
    body = compressor.compress(HTML.encode()) + compressor.flush()
    headers = {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": coding}
    return web.Response(body=body, headers=headers)


def _thirds(data: bytes) -> list[bytes]:
    third = len(data) // 3
    return [data[:third], data[third : 2 * third], data[2 * third :]]


def _gzipped(*members: bytes, tail: bytes = b"") -> web.Response:
    """A gzip body of one member per part (RFC 1952 2.2), as `cat a.gz b.gz` makes, then `tail`."""
    body = b"".join(gzip.compress(member) for member in members) + tail
    return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"})


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.json_response(
        {
            "method": request.method,
            "headers": dict(request.headers),
            "body_b64": base64.b64encode(body).decode(),
            "client_port": peer[1] if peer else None,
        }
    )


async def redirect_chain(request: web.Request) -> web.Response:
    left = int(request.match_info["n"])
    if left == 0:
        return web.Response(text=HTML, content_type="text/html")
    # Alternate absolute and relative Locations: both must be followed.
    target = f"/redirect/{left - 1}" if left % 2 else str(request.url.with_path(f"/redirect/{left - 1}"))
    return _redirect(302, target)


async def set_cookie_and_redirect(request: web.Request) -> web.Response:
    response = _redirect(302, "/echo")
    response.set_cookie("sid", "abc123")
    return response


async def big_chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for _ in range(50):
            await response.write(b"y" * 1000)
    except ConnectionError:
        pass
    return response


def _bomb_body() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(BOMB_INFLATED_BYTES // len(block))]
    return b"".join([*parts, compressor.flush()])


class FakeDns(AbstractResolver):
    """Answers from a table, so name-based tests never send a DNS query anywhere."""

    def __init__(self, answers: dict[str, list[tuple[str, int]]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            {"hostname": host, "host": ip, "port": p, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for ip, p in self.answers[host]
        ]

    async def close(self) -> None:
        pass


async def fetch(
    url: str,
    *,
    config: FetchConfig = CONFIG,
    policy: NetworkPolicy = LOOPBACK_ALLOWED,
    resolver: AbstractResolver | None = None,
    **kwargs: Any,
) -> Page:
    async with Fetcher(config, policy, resolver=resolver) as fetcher:
        return await fetcher.fetch(url, **kwargs)


def echoed(page: Page) -> dict[str, Any]:
    return json.loads(page.text)


# -- the fixtures' parts ---------------------------------------------------------------------------


def new_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop of the test's own, closed after it."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def bounded_run(loop: asyncio.AbstractEventLoop) -> Run:
    """Run one coroutine to its end on the test's loop, never longer than 10 s."""

    def run_bounded(awaitable: Awaitable[Any]) -> Any:
        return loop.run_until_complete(asyncio.wait_for(awaitable, 10.0))

    return run_bounded


def site_on(loop: asyncio.AbstractEventLoop, host: str) -> Iterator[Site]:
    """A started Site on host, stopped after the test."""
    target = loop.run_until_complete(Site(host).start())
    yield target
    loop.run_until_complete(target.stop())


async def serve_raw(reply: bytes, *, reset: bool, then: bytes = b"") -> tuple[asyncio.Server, int]:
    """A raw TCP server that answers every request with `reply` (and `then`, in a later packet), then
    closes or resets."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        if then:
            await asyncio.sleep(0.1)  # so the client reads `reply` on its own first
            writer.write(then)
            await writer.drain()
        if reset:
            # Linger 0: close() sends a TCP RST instead of a FIN.
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            writer.transport.abort()
        else:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]
