"""The egress tests' parts: TCP listeners, fake DNS, an aiohttp site, and a BrowserPool on the tests' rules."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from aiohttp import web

from litejobs.browser import LOOPBACK_ONLY_RULES, BrowserPool, find_chromium
from litejobs.config import BrowserConfig
from litejobs.netpolicy import NetworkPolicy

#: loopback is allowed (the tests' servers live there) but for 127.0.0.2, the address a job must never reach
POLICY = NetworkPolicy(allow_private=True, blocked=["127.0.0.2/32"])
needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(60):
            return await coro

    return asyncio.run(bounded())


class Listener:
    """A TCP server that counts the connections it accepts and answers each chunk with `<host>:<chunk>`."""

    def __init__(self) -> None:
        self.accepted = 0
        self.host = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, host: str, port: int = 0) -> int:
        self.host = host
        self._server = await asyncio.start_server(self._echo, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        while data := await reader.read(1024):
            writer.write(self.host.encode() + b":" + data)
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


async def listener_pair() -> tuple[Listener, Listener, int]:
    """Listeners on 127.0.0.1 and 127.0.0.2 on one port, so that only the address tells them apart."""
    for _ in range(20):
        forbidden = Listener()
        port = await forbidden.start("127.0.0.2")
        allowed = Listener()
        try:
            await allowed.start("127.0.0.1", port)
        except OSError:  # the port is taken on 127.0.0.1: try another
            await forbidden.close()
            continue
        return allowed, forbidden, port
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")


def resolving(table: dict[str, list[str]], calls: list[tuple[str, int]] | None = None) -> Any:
    """A fake DNS: names from `table`, anything else does not exist; records each lookup in `calls`."""

    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append((host, port))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def rebinding(first: str, later: str) -> tuple[Any, list[str]]:
    """A fake DNS that answers `first` once and `later` ever after; and the list of its answers."""
    answers: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        answers.append(later if answers else first)
        return [answers[-1]]

    return resolve, answers


Routes = dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


async def serve(host: str, port: int, routes: Routes) -> Any:
    """An aiohttp site on host:port (0: any) with `routes`, read at each request; (runner, port, hits by path)."""
    hits: Counter[str] = Counter()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        hits[request.path] += 1
        handler = routes.get(request.path)
        if handler is None:
            return web.Response(text="<p>other</p>", content_type="text/html", headers={"Connection": "close"})
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1], hits


def html(text: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def answer(request: web.Request) -> web.Response:
        # a fresh connection for every request, so each one is a CONNECT the proxy sees
        return web.Response(text=text, content_type="text/html", headers={"Connection": "close"})

    return answer


#: the proxy resolves the tests' names (*.test, through the fake DNS) and loopback, and nothing else
TEST_RULES = f"{LOOPBACK_ONLY_RULES}, EXCLUDE 127.0.0.2, EXCLUDE *.test"


def pool_with(policy: NetworkPolicy, resolver: Any) -> BrowserPool:
    return BrowserPool(BrowserConfig(), policy, host_resolver_rules=TEST_RULES, resolver=resolver)
