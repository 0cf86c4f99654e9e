"""The egress proxy: SOCKS5 spoken by a real client, then the real Chromium connecting only through it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs import pyppeteer_fixes as fixes
from litejobs.browser import LOOPBACK_ONLY_RULES, SERVICE_HOST_RULES, BrowserPool, RenderRequest, find_chromium
from litejobs.chromium import WEBRTC_PROXIED_ONLY, chromium_args, spawn_chromium
from litejobs.config import BrowserConfig
from litejobs.egress_proxy import EgressProxy, HostRules
from litejobs.errors import BlockedAddress, NetworkError
from litejobs.netpolicy import NetworkPolicy
from tests.support import LoopThread, ServerThread, TargetSite, make_config

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


async def socks_connect(
    proxy_port: int, host: str, port: int, *, address_type: int = 3, command: int = 1
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Speak RFC 1928 to the proxy: no-auth greeting, then CONNECT; (reply code, reader, writer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    if address_type == 1:
        address = socket.inet_pton(socket.AF_INET, host)
    elif address_type == 4:
        address = socket.inet_pton(socket.AF_INET6, host)
    else:
        address = bytes([len(host)]) + host.encode()
    writer.write(bytes((5, command, 0, address_type)) + address + struct.pack(">H", port))
    version, code, _reserved, bound_type = await reader.readexactly(4)
    assert version == 5
    await reader.readexactly((16 if bound_type == 4 else 4) + 2)
    return code, reader, writer


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    return await reader.read(1024)


def proxy_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of any EgressProxy still running in this loop."""
    names = ("EgressProxy._serve", "_copy")
    return [t for t in asyncio.all_tasks() if not t.done() and t.get_coro().__qualname__ in names]  # type: ignore[union-attr]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- the proxy alone, with a real SOCKS5 client ---------------------------------------------------------------


def test_an_allowed_target_gets_bytes_through_both_ways() -> None:
    async def body() -> None:
        target = Listener()
        port = await target.start("127.0.0.1")
        resolver = resolving({"allowed.test": ["127.0.0.1"]})
        async with EgressProxy(POLICY, resolver=resolver) as proxy:
            for host, address_type in (("allowed.test", 3), ("127.0.0.1", 3), ("127.0.0.1", 1)):
                code, reader, writer = await socks_connect(proxy.port, host, port, address_type=address_type)
                assert code == 0
                assert await exchange(reader, writer, b"ping") == b"127.0.0.1:ping"
                assert await exchange(reader, writer, b"again") == b"127.0.0.1:again"
                writer.close()
            assert proxy.stats["tunnels_opened"] == 3 and proxy.refusals == 0
        await target.close()
        assert target.accepted == 3

    run(body())


def test_ipv6_targets_by_address_and_by_literal_name() -> None:
    async def body() -> None:
        target = Listener()
        port = await target.start("::1")
        async with EgressProxy(POLICY) as proxy:
            for address_type in (4, 3):
                code, reader, writer = await socks_connect(proxy.port, "::1", port, address_type=address_type)
                assert code == 0
                assert await exchange(reader, writer, b"six") == b"::1:six"
                writer.close()
        await target.close()

    run(body())


def test_a_forbidden_address_is_refused_with_0x02_and_never_connected() -> None:
    async def body() -> None:
        forbidden = Listener()
        port = await forbidden.start("127.0.0.2")
        resolver = resolving({"evil.test": ["127.0.0.2"]})
        async with EgressProxy(POLICY, resolver=resolver) as proxy:
            for host, address_type in (("127.0.0.2", 1), ("127.0.0.2", 3), ("evil.test", 3)):
                code, _reader, writer = await socks_connect(proxy.port, host, port, address_type=address_type)
                assert code == 0x02
                writer.close()
            assert proxy.refusals == 3
            refusal = proxy.refusal("evil.test", port)
            assert refusal is not None and "evil.test resolves to 127.0.0.2" in str(refusal)
            assert proxy.refusal("evil.test", port, after=3) is None
        await forbidden.close()
        assert forbidden.accepted == 0

    run(body())


def test_a_rebinding_name_is_connected_to_the_address_the_proxy_checked() -> None:
    async def body() -> None:
        allowed, forbidden, port = await listener_pair()
        resolver, answers = rebinding("127.0.0.1", "127.0.0.2")
        async with EgressProxy(POLICY, resolver=resolver) as proxy:
            code, reader, writer = await socks_connect(proxy.port, "rebind.test", port)
            assert code == 0
            assert await exchange(reader, writer, b"hi") == b"127.0.0.1:hi"
            writer.close()
            again, _reader, writer = await socks_connect(proxy.port, "rebind.test", port)
            writer.close()
        await allowed.close()
        await forbidden.close()
        assert answers == ["127.0.0.1", "127.0.0.2"]  # one lookup per CONNECT, none between check and connect
        assert (allowed.accepted, forbidden.accepted) == (1, 0)
        assert again == 0x02

    run(body())


def test_a_name_with_one_allowed_and_one_forbidden_address_is_refused() -> None:
    async def body() -> None:
        allowed, forbidden, port = await listener_pair()
        resolver = resolving({"mixed.test": ["127.0.0.1", "127.0.0.2"]})
        async with EgressProxy(POLICY, resolver=resolver) as proxy:
            code, _reader, writer = await socks_connect(proxy.port, "mixed.test", port)
            writer.close()
        await allowed.close()
        await forbidden.close()
        assert code == 0x02
        assert (allowed.accepted, forbidden.accepted) == (0, 0)

    run(body())


def test_reply_codes_say_why_there_is_no_tunnel() -> None:
    async def body() -> None:
        target = Listener()
        port = await target.start("127.0.0.1")
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        closed_port = closed.getsockname()[1]
        calls: list[tuple[str, int]] = []
        known = resolving({}, calls)

        async def resolver(host: str, port: int) -> list[str]:
            if host == "slow.test":
                await asyncio.sleep(3600)  # a DNS server that never answers
            return await known(host, port)

        rules = HostRules("MAP *.google.com ~NOTFOUND")
        async with EgressProxy(POLICY, resolver=resolver, rules=rules, connect_timeout_s=0.3) as proxy:
            outcomes = {}
            for case, host, target_port, command in (
                ("unknown name", "nowhere.test", port, 1),
                ("name that never resolves", "slow.test", port, 1),
                ("name the rules drop", "accounts.google.com", 443, 1),
                ("closed port", "127.0.0.1", closed_port, 1),
                ("BIND", "127.0.0.1", port, 2),
            ):
                outcomes[case], reader, writer = await socks_connect(proxy.port, host, target_port, command=command)
                assert await reader.read() == b""  # the proxy closes after a failure reply
                writer.close()
            assert proxy.refusals == 0
        closed.close()
        await target.close()
        assert outcomes == {
            "unknown name": 0x04,
            "name that never resolves": 0x04,
            "name the rules drop": 0x04,
            "closed port": 0x05,
            "BIND": 0x07,
        }
        assert calls == [("nowhere.test", port)]  # the rules answered without a lookup
        assert target.accepted == 0

    run(body())


def test_garbage_or_silence_is_cut_off_after_the_handshake_timeout_leaving_no_task() -> None:
    async def body() -> None:
        fds_before = open_fds()
        async with EgressProxy(POLICY, handshake_timeout_s=0.3) as proxy:
            http_reader, http = await asyncio.open_connection("127.0.0.1", proxy.port)
            http.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            silent_reader, silent = await asyncio.open_connection("127.0.0.1", proxy.port)
            half_reader, half = await asyncio.open_connection("127.0.0.1", proxy.port)
            half.write(b"\x05\x01\x00\x05\x01")  # a greeting, then a request cut short
            assert await asyncio.wait_for(http_reader.read(), 5) == b""
            assert await asyncio.wait_for(silent_reader.read(), 5) == b""
            assert await asyncio.wait_for(half_reader.read(), 5) == b"\x05\x00"
            for writer in (http, silent, half):
                writer.close()
            for _ in range(100):
                if not proxy_tasks():
                    break
                await asyncio.sleep(0.01)
            assert proxy_tasks() == [] and proxy.tunnels_open == 0
        assert open_fds() == fds_before

    run(body())


def test_close_with_open_tunnels_returns_promptly_and_cuts_them() -> None:
    async def body() -> None:
        fds_before = open_fds()
        target = Listener()
        port = await target.start("127.0.0.1")
        proxy = EgressProxy(POLICY)
        await proxy.start()
        tunnels = [await socks_connect(proxy.port, "127.0.0.1", port) for _ in range(3)]
        for _code, reader, writer in tunnels:
            assert await exchange(reader, writer, b"x") == b"127.0.0.1:x"
        waiting_reader, waiting = await asyncio.open_connection("127.0.0.1", proxy.port)  # mid-handshake
        assert proxy.tunnels_open == 4

        await asyncio.wait_for(proxy.close(), 3)

        assert proxy_tasks() == [] and proxy.tunnels_open == 0
        for _code, reader, writer in [*tunnels, (0, waiting_reader, waiting)]:
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await writer.wait_closed()
        await target.close()
        assert open_fds() == fds_before

    run(body())


def test_connections_past_the_cap_are_turned_away() -> None:
    async def body() -> None:
        target = Listener()
        port = await target.start("127.0.0.1")
        async with EgressProxy(POLICY, max_tunnels=2) as proxy:
            tunnels = [await socks_connect(proxy.port, "127.0.0.1", port) for _ in range(2)]
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert proxy.stats["turned_away"] == 1
            for _code, _reader, tunnel in tunnels:
                tunnel.close()
        await target.close()

    run(body())


def test_host_rules_read_like_chromiums() -> None:
    rules = HostRules(LOOPBACK_ONLY_RULES + ", EXCLUDE 127.0.0.2")
    assert rules.rewrite("localhost", 80) == ("localhost", 80)
    assert rules.rewrite("127.0.0.2", 80) == ("127.0.0.2", 80)
    assert rules.rewrite("example.org", 80) is None and rules.rewrite("::1", 80) is None

    mapped = HostRules("MAP *.test:8080 127.0.0.1:9, MAP *.test ~NOTFOUND, MAP a.example [::1]:7")
    assert mapped.rewrite("a.test", 8080) == ("127.0.0.1", 9)
    assert mapped.rewrite("a.test", 80) is None
    assert mapped.rewrite("A.Example", 80) == ("::1", 7)
    assert HostRules("").rewrite("example.org", 443) == ("example.org", 443)
    with pytest.raises(ValueError, match="not a host resolver rule"):
        HostRules("MAP onlyonepart")


# -- the real Chromium, through the BrowserPool ---------------------------------------------------------------

WEBSOCKET_PAGE = """<!doctype html><html><body><p id="state">waiting</p><script>
function done(state) {
  if (document.getElementById('done')) return;
  document.getElementById('state').textContent = state;
  const mark = document.createElement('i'); mark.id = 'done'; document.body.appendChild(mark);
}
const socket = new WebSocket("%s");
socket.onopen = () => done('open'); socket.onerror = () => done('error'); socket.onclose = () => done('closed');
</script></body></html>"""

SUBRESOURCES = """<!doctype html><html><body><img src="%(target)s/pixel.png">
<script>fetch("%(target)s/api").catch(() => 0)</script><p id="ok">ok</p></body></html>"""


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


async def websocket(request: web.Request) -> web.StreamResponse:
    socket_ = web.WebSocketResponse()
    await socket_.prepare(request)
    await socket_.close()
    return socket_


#: the proxy resolves the tests' names (*.test, through the fake DNS) and loopback, and nothing else
TEST_RULES = f"{LOOPBACK_ONLY_RULES}, EXCLUDE 127.0.0.2, EXCLUDE *.test"


def pool_with(policy: NetworkPolicy, resolver: Any) -> BrowserPool:
    return BrowserPool(BrowserConfig(), policy, host_resolver_rules=TEST_RULES, resolver=resolver)


@pytest.mark.browser
@needs_chromium
def test_chromium_hands_the_proxy_names_for_http_https_and_ws() -> None:
    """Names only the proxy's resolver knows: a page that renders proves Chromium never looked them up itself."""

    async def body() -> None:
        calls: list[tuple[str, int]] = []
        routes: Routes = {"/ws": websocket}
        site, port, hits = await serve("127.0.0.1", 0, routes)
        page = WEBSOCKET_PAGE % f"ws://ws.test:{port}/ws"
        routes["/"] = html(page.replace("<body>", f'<body><img src="http://img.test:{port}/i.png">'))
        names = {name: ["127.0.0.1"] for name in ("page.test", "ws.test", "img.test", "tls.test")}
        async with pool_with(POLICY, resolving(names, calls)) as pool:
            result = await pool.render(RenderRequest(f"http://page.test:{port}/", wait_for="#done"))
            with pytest.raises(NetworkError):  # no TLS on that port: what matters is where Chromium went
                await pool.render(RenderRequest(f"https://tls.test:{port}/", timeout_s=10))
        await site.cleanup()
        assert '<p id="state">open</p>' in result.html
        assert {("page.test", port), ("ws.test", port), ("img.test", port), ("tls.test", port)} <= set(calls)
        assert hits["/ws"] == 1 and hits["/i.png"] == 1

    run(body())


@pytest.mark.browser
@needs_chromium
def test_a_page_on_a_name_the_policy_refuses_fails_blocked_address_and_its_server_sees_nothing() -> None:
    async def body() -> None:
        evil, evil_port, evil_hits = await serve("127.0.0.2", 0, {})
        resolver = resolving({"evil.test": ["127.0.0.2"]})
        async with pool_with(POLICY, resolver) as pool:
            with pytest.raises(BlockedAddress, match=r"evil\.test resolves to 127\.0\.0\.2"):
                await pool.render(RenderRequest(f"http://evil.test:{evil_port}/page"))
            assert pool.state()["egress_refusals"] >= 1
        await evil.cleanup()
        assert sum(evil_hits.values()) == 0

    run(body())


@pytest.mark.browser
@needs_chromium
def test_images_and_fetches_to_a_refused_name_never_reach_it_and_the_page_still_renders() -> None:
    async def body() -> None:
        evil, evil_port, evil_hits = await serve("127.0.0.2", 0, {})
        page = html(SUBRESOURCES % {"target": f"http://evil.test:{evil_port}"})
        site, port, _hits = await serve("127.0.0.1", 0, {"/sub": page})
        resolver = resolving({"evil.test": ["127.0.0.2"]})
        async with pool_with(POLICY, resolver) as pool:
            result = await pool.render(RenderRequest(f"http://127.0.0.1:{port}/sub", wait_until="networkidle0"))
            refusals = pool.state()["egress_refusals"]
        async with pool_with(NetworkPolicy(allow_private=True), resolver) as open_pool:
            await open_pool.render(RenderRequest(f"http://127.0.0.1:{port}/sub", wait_until="networkidle0"))
        await site.cleanup()
        await evil.cleanup()
        assert '<p id="ok">ok</p>' in result.html and refusals >= 2
        # the same page with nothing blocked does reach the other host: the first render could have too
        assert evil_hits == Counter({"/pixel.png": 1, "/api": 1})

    run(body())


@pytest.mark.browser
@needs_chromium
def test_a_name_that_rebinds_to_a_refused_address_fails_the_render_and_is_never_connected() -> None:
    async def body() -> None:
        allowed_routes = {"/": html('<img src="/pixel.png"><script>fetch("/api").catch(() => 0)</script><p>ok</p>')}
        for _ in range(20):  # one port on both addresses: only the address the proxy picks tells them apart
            evil, port, evil_hits = await serve("127.0.0.2", 0, {})
            try:
                site, _port, _hits = await serve("127.0.0.1", port, allowed_routes)
                break
            except OSError:
                await evil.cleanup()
        else:
            raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")
        resolver, answers = rebinding("127.0.0.1", "127.0.0.2")
        async with pool_with(POLICY, resolver) as pool:
            with pytest.raises(BlockedAddress, match=r"rebind\.test resolves to 127\.0\.0\.2"):
                await pool.render(RenderRequest(f"http://rebind.test:{port}/"))
        await site.cleanup()
        await evil.cleanup()
        assert answers[0] == "127.0.0.1" and len(answers) >= 2
        assert sum(evil_hits.values()) == 0

    run(body())


def test_chromium_is_pointed_at_the_proxy_for_loopback_too_and_can_always_reach_it() -> None:
    args = chromium_args("MAP * ~NOTFOUND", as_root=False, proxy_port=4321)

    assert "--proxy-server=socks5://127.0.0.1:4321" in args
    assert "--proxy-bypass-list=<-loopback>" in args
    assert "--host-resolver-rules=MAP * 0.0.0.0, EXCLUDE 127.0.0.1, MAP * ~NOTFOUND" in args
    assert not any(arg.startswith("--proxy") for arg in chromium_args("", as_root=False))


@pytest.mark.browser
@needs_chromium
def test_rules_that_drop_every_name_but_one_still_let_chromium_reach_the_proxy() -> None:
    """Chromium applies "MAP * ~NOTFOUND" to the proxy's own 127.0.0.1 unless that is excluded."""

    async def body() -> None:
        site, port, hits = await serve("127.0.0.1", 0, {"/": html("<p id='ok'>ok</p>")})
        rules = "MAP * ~NOTFOUND, EXCLUDE localhost"
        async with BrowserPool(BrowserConfig(), POLICY, host_resolver_rules=rules) as pool:
            result = await pool.render(RenderRequest(f"http://localhost:{port}/"))
            with pytest.raises(NetworkError):  # the proxy applies the rules: 127.0.0.1 is not excluded for pages
                await pool.render(RenderRequest(f"http://127.0.0.1:{port}/", timeout_s=10))
        await site.cleanup()
        assert '<p id="ok">ok</p>' in result.html and hits["/"] == 1

    run(body())


# -- render jobs through the real server ----------------------------------------------------------------------


@pytest.fixture
def ws_host() -> Any:
    """A WebSocket server on 127.0.0.2 that counts the handshakes it gets."""
    host = TargetSite("127.0.0.2")
    host.add("/ws", websocket)
    yield host
    host.close()


def render_websocket_page(server: ServerThread, site: TargetSite, ws_host: TargetSite) -> tuple[dict[str, Any], str]:
    url = site.add_html("/ws-page", WEBSOCKET_PAGE % f"ws://127.0.0.2:{ws_host.port}/ws")
    job = server.http.submit({"url": url, "wait_for": "#done", "output": ["html"]}, kind="render")
    done = server.http.wait(job["job_id"], 60)
    outputs = server.http.get(f"/v1/jobs/{job['job_id']}/result").json.get("outputs", {})
    return done, outputs.get("html", "")


@pytest.mark.browser
@needs_chromium
def test_a_websocket_to_a_blocked_address_never_connects_and_the_render_job_completes(
    tmp_path: Path, site: TargetSite, ws_host: TargetSite
) -> None:
    with ServerThread(make_config(tmp_path, fetch={"blocked_networks": ["127.0.0.2/32"]})) as server:
        done, page = render_websocket_page(server, site, ws_host)
        assert server.app is not None and server.app.browser is not None
        refusals = server.app.browser.state()["egress_refusals"]

    assert done["status"] == "completed"
    assert '<p id="state">error</p>' in page
    assert ws_host.hits["/ws"] == 0 and refusals >= 1


@pytest.mark.browser
@needs_chromium
def test_a_websocket_to_an_allowed_address_does_connect(
    server: ServerThread, site: TargetSite, ws_host: TargetSite
) -> None:
    done, page = render_websocket_page(server, site, ws_host)

    assert done["status"] == "completed"
    assert '<p id="state">open</p>' in page
    assert ws_host.hits["/ws"] == 1


@pytest.mark.browser
@needs_chromium
def test_a_render_job_of_a_name_that_resolves_to_a_refused_address_fails_blocked_address(
    tmp_path: Path, site: TargetSite
) -> None:
    url = site.add_html("/private", "<p>private</p>").replace("127.0.0.1", "localhost")
    with ServerThread(make_config(tmp_path, fetch={"allow_private_networks": False})) as server:
        done = server.http.wait(server.http.submit({"url": url}, kind="render")["job_id"], 60)

    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["code"] == "blocked_address"
    assert "localhost resolves to" in done["error"]["message"]
    assert site.hits["/private"] == 0


# -- WebRTC and other UDP: nothing a page sends over UDP passes the proxy, so Chromium must send none -----------

#: `probe(win, iceServers, remoteCandidate)` makes an RTCPeerConnection in `win` that gathers candidates (STUN,
#: TURN) and, given a remote candidate, runs ICE checks against it; it answers "function" (the API exists) and
#: the candidates it gathered, "end" closing the list, or the type of a missing RTCPeerConnection
PROBE = r"""
async function probe(win, iceServers, remoteCandidate) {
  const kind = typeof win.RTCPeerConnection;
  if (kind !== 'function') return kind;
  const seen = [];
  try {
    const pc = new win.RTCPeerConnection({iceServers});
    pc.onicecandidate = (e) => seen.push(e.candidate ? e.candidate.type + '/' + e.candidate.protocol : 'end');
    pc.createDataChannel('probe');
    await pc.setLocalDescription(await pc.createOffer());
    if (remoteCandidate) {
      const peer = new win.RTCPeerConnection();
      await peer.setRemoteDescription(pc.localDescription);
      await peer.setLocalDescription(await peer.createAnswer());
      await pc.setRemoteDescription(peer.localDescription);
      await pc.addIceCandidate({candidate: remoteCandidate, sdpMid: '0'});
    }
  } catch (e) { seen.push('error ' + e); }
  await new Promise((wake) => setTimeout(wake, 2000));
  return [kind, ...seen].join(' ');
}
"""

WEBRTC_PAGE = """<!doctype html><html><body><p id="state">waiting</p><script>%(probe)s
const STUN = [{urls: 'stun:127.0.0.2:%(udp)d'}];
function done(state) {
  document.getElementById('state').textContent = state;
  const mark = document.createElement('i'); mark.id = 'done'; document.body.appendChild(mark);
}
Promise.resolve().then(() => %(variant)s).then(done, (e) => done('error ' + e));
</script></body></html>"""

#: a page of its own (in an iframe of another origin, or a popup) that probes and posts its answer back
WEBRTC_CHILD = """<!doctype html><html><body><script>%(probe)s
probe(window, [{urls: 'stun:127.0.0.2:%(udp)d'}]).then((s) => (window.opener || window.parent).postMessage(s, '*'));
</script></body></html>"""

#: variants whose answer comes back by postMessage
_POSTED = "new Promise((answer) => { window.onmessage = (e) => answer(e.data); %s })"
_WORKER = "new Promise((answer) => { const w = new Worker(%s); w.onmessage = (e) => answer(e.data); })"
_IFRAME = "const f = document.createElement('iframe');"

#: every way tried for a page to reach an RTCPeerConnection, or to make one send UDP: a JS expression each
WEBRTC_VARIANTS = {
    "STUN from the top document": "probe(window, STUN)",
    "TURN over UDP": "probe(window, [{urls: 'turn:127.0.0.2:%(udp)d?transport=udp', username: 'u', credential: 'p'}])",
    "ICE checks to a remote candidate": "probe(window, [], 'candidate:1 1 udp 2122260223 127.0.0.2 %(udp)d typ host')",
    "iframe appended and used at once": f"(() => {{ {_IFRAME} document.body.appendChild(f); "
    "return probe(f.contentWindow, STUN); })()",
    "about:blank iframe": f"new Promise((answer) => {{ {_IFRAME} f.src = 'about:blank'; "
    "f.onload = () => answer(probe(f.contentWindow, STUN)); document.body.appendChild(f); })",
    "srcdoc iframe with its own script": _POSTED
    % f"{_IFRAME} f.srcdoc = '<script>' + probe + '; probe(window, ' + JSON.stringify(STUN) + ')"
    ".then((s) => parent.postMessage(s, `*`))</' + 'script>'; document.body.appendChild(f);",
    "iframe of another origin": _POSTED % f"{_IFRAME} f.src = '%(other_origin_child)s'; document.body.appendChild(f);",
    "window.open of about:blank": "probe(window.open('about:blank'), STUN)",
    "window.open of a page": _POSTED % "window.open('%(child)s');",
    "blob: URL worker": _WORKER % "URL.createObjectURL(new Blob(['postMessage(typeof RTCPeerConnection)']))",
    "data: URL worker": _WORKER % "'data:text/javascript,postMessage(typeof RTCPeerConnection)'",
}
#: what a page answers under the pool's flags: the API is there, and gathering ends with no candidate at all
NO_CANDIDATES = "function end"

#: WebTransport is HTTP/3, so QUIC over UDP; its target here is an allowed address, 127.0.0.1
WEBTRANSPORT_PAGE = """<!doctype html><html><body><p id="state">waiting</p><script>
async function attempt() {
  const session = new WebTransport('https://127.0.0.1:%(udp)d/');
  const late = new Promise((wake) => setTimeout(() => wake('no answer within 2 s'), 2000));
  try { return 'ready? ' + await Promise.race([session.ready, late]); } catch (e) { return 'failed: ' + e.name; }
}
attempt().then((state) => {
  document.getElementById('state').textContent = state;
  const mark = document.createElement('i'); mark.id = 'done'; document.body.appendChild(mark);
});
</script></body></html>"""


class Datagrams(asyncio.DatagramProtocol):
    """Counts the UDP datagrams that reach its socket."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1


async def udp_listener(host: str) -> tuple[asyncio.DatagramTransport, Datagrams]:
    """A UDP socket on host (any port) and the count of what it receives."""
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Datagrams, local_addr=(host, 0))


class UdpListener:
    """`udp_listener` on a loop of its own, for tests that drive the server synchronously."""

    def __init__(self, host: str) -> None:
        self._thread = LoopThread(f"udp-{host}")
        self._transport, self._counter = self._thread.call(udp_listener(host))
        self.port = int(self._transport.get_extra_info("sockname")[1])

    @property
    def received(self) -> int:
        return self._counter.received

    def close(self) -> None:
        self._thread.call(closed(self._transport))
        self._thread.close()


async def closed(transport: asyncio.BaseTransport) -> None:
    """Close transport and let the loop run the callback that closes its socket."""
    transport.close()
    await asyncio.sleep(0)


def webrtc_pages(script: str, udp_port: int, base_url: str, path: str) -> dict[str, str]:
    """The page running `script` (as in WEBRTC_VARIANTS) at `path`, and the child page it may open: {path: html}."""
    child = f"{path}-child"
    params = {
        "udp": udp_port,
        "child": base_url + child,
        "other_origin_child": base_url.replace("127.0.0.1", "localhost") + child,
    }
    return {
        path: WEBRTC_PAGE % {"probe": PROBE, "udp": udp_port, "variant": script % params},
        child: WEBRTC_CHILD % {"probe": PROBE, "udp": udp_port},
    }


def page_state(html_text: str) -> str:
    match = re.search(r'<p id="state">(.*?)</p>', html_text, re.S)
    return match.group(1) if match else f"no state in {html_text[:200]!r}"


@pytest.fixture(scope="module")
def webrtc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One server (so one Chromium) for every WebRTC case; 127.0.0.2 is blocked."""
    config = make_config(tmp_path_factory.mktemp("webrtc"), fetch={"blocked_networks": ["127.0.0.2/32"]})
    with ServerThread(config) as server:
        yield server


@pytest.fixture(scope="module")
def webrtc_site() -> Iterator[TargetSite]:
    target = TargetSite()
    yield target
    target.close()


@pytest.fixture
def blocked_udp() -> Iterator[UdpListener]:
    """A UDP listener on the blocked 127.0.0.2."""
    listener = UdpListener("127.0.0.2")
    yield listener
    listener.close()


def render_job(server: ServerThread, url: str) -> tuple[dict[str, Any], str]:
    """A render job of url that waits for #done: (the finished job, the page's #state)."""
    job = server.http.submit({"url": url, "wait_for": "#done", "output": ["html"]}, kind="render")
    done = server.http.wait(job["job_id"], 60)
    outputs = server.http.get(f"/v1/jobs/{job['job_id']}/result").json.get("outputs", {})
    return done, page_state(outputs.get("html", ""))


def test_chromium_is_started_with_webrtc_udp_allowed_only_through_a_proxy() -> None:
    for proxy_port in (None, 4321):
        assert WEBRTC_PROXIED_ONLY in chromium_args("", as_root=False, proxy_port=proxy_port)
    assert WEBRTC_PROXIED_ONLY == "--webrtc-ip-handling-policy=disable_non_proxied_udp"


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("variant", list(WEBRTC_VARIANTS))
def test_a_page_sends_no_webrtc_udp_to_a_blocked_address_and_its_render_job_completes(
    variant: str, webrtc_server: ServerThread, webrtc_site: TargetSite, blocked_udp: UdpListener
) -> None:
    path = f"/webrtc/{list(WEBRTC_VARIANTS).index(variant)}"
    for route, page in webrtc_pages(WEBRTC_VARIANTS[variant], blocked_udp.port, webrtc_site.base_url, path).items():
        webrtc_site.add_html(route, page)

    done, state = render_job(webrtc_server, webrtc_site.url(path))

    assert blocked_udp.received == 0
    assert done["status"] == "completed"
    assert state == ("undefined" if "worker" in variant else NO_CANDIDATES)  # the API is there, but not in workers


async def render_states(args: list[str], urls: list[str]) -> list[str]:
    """Each url's #state, rendered at once in a Chromium started here with `args`. The controls use it: they
    launch Chromium without one of the measures the BrowserPool always takes."""
    executable = find_chromium()
    assert executable is not None
    fixes.apply_connection_patches()
    process = await spawn_chromium(executable, args, timeout_s=30)
    try:
        browser = await fixes.connect_browser(process.ws_endpoint, {"width": 800, "height": 600}, timeout_s=30)

        async def state_of(url: str) -> str:
            page, _crashed = await fixes.open_page(await browser.createIncognitoBrowserContext())
            await fixes.goto(page, url, "load")
            await page.waitForSelector("#done", timeout=30_000)
            return page_state(await page.content())

        try:
            return list(await asyncio.gather(*(state_of(url) for url in urls)))
        finally:
            await fixes.close_quietly(browser.close(), 2.0)
            await fixes.close_quietly(browser.disconnect(), 1.0)
    finally:
        await process.stop(grace_s=2.0)


@pytest.mark.browser
@needs_chromium
def test_without_the_webrtc_flag_the_same_pages_do_send_udp_to_the_blocked_address() -> None:
    """The control: the pool's flags and egress proxy but for WEBRTC_PROXIED_ONLY, so the cases above can fail."""

    async def body() -> None:
        variants = [variant for variant in WEBRTC_VARIANTS if "worker" not in variant]
        listeners = [await udp_listener("127.0.0.2") for _ in variants]
        routes: Routes = {}
        site, port, _hits = await serve("127.0.0.1", 0, routes)
        base = f"http://127.0.0.1:{port}"
        for index, (variant, (transport, _counter)) in enumerate(zip(variants, listeners, strict=True)):
            udp_port = transport.get_extra_info("sockname")[1]
            routes.update(
                {
                    path: html(page)
                    for path, page in webrtc_pages(WEBRTC_VARIANTS[variant], udp_port, base, f"/{index}").items()
                }
            )
        async with EgressProxy(POLICY, rules=HostRules(TEST_RULES)) as proxy:
            args = chromium_args(TEST_RULES, as_root=os.geteuid() == 0, proxy_port=proxy.port)
            args.remove(WEBRTC_PROXIED_ONLY)
            states = await render_states(args, [f"{base}/{index}" for index in range(len(variants))])
        await site.cleanup()
        received = {
            variant: counter.received for variant, (_transport, counter) in zip(variants, listeners, strict=True)
        }
        for transport, _counter in listeners:
            transport.close()
        # every variant reached the blocked address (gathering needs a network interface besides loopback)
        assert all(received.values()), (received, states)

    run(body())


@pytest.mark.browser
@needs_chromium
def test_webtransport_sends_no_udp_through_the_egress_proxy_and_the_render_job_completes(
    webrtc_server: ServerThread, webrtc_site: TargetSite
) -> None:
    """Chromium carries no QUIC over a SOCKS5 proxy, so WebTransport sends nothing, even to an allowed address."""
    allowed = UdpListener("127.0.0.1")
    url = webrtc_site.add_html("/webtransport", WEBTRANSPORT_PAGE % {"udp": allowed.port})

    done, state = render_job(webrtc_server, url)
    allowed.close()

    assert done["status"] == "completed"
    assert state.startswith("failed: ")
    assert allowed.received == 0


@pytest.mark.browser
@needs_chromium
def test_without_the_egress_proxy_webtransport_does_send_udp() -> None:
    """The control: with the pool's other flags (--disable-quic included) but no proxy, QUIC goes out."""

    async def body() -> None:
        transport, counter = await udp_listener("127.0.0.1")
        site, port, _hits = await serve(
            "127.0.0.1", 0, {"/": html(WEBTRANSPORT_PAGE % {"udp": transport.get_extra_info("sockname")[1]})}
        )
        await render_states(chromium_args(TEST_RULES, as_root=os.geteuid() == 0), [f"http://127.0.0.1:{port}/"])
        await site.cleanup()
        transport.close()
        assert counter.received > 0

    run(body())


TURN_TCP_PAGE = WEBRTC_PAGE.replace(
    "Promise.resolve()",
    "const TURN = (host) => ({urls: `turn:${host}:%(tcp)d?transport=tcp`, username: 'u', credential: 'p'});\n"
    "Promise.resolve()",
)


@pytest.mark.browser
@needs_chromium
def test_webrtc_keeps_tcp_only_through_the_egress_proxy_and_its_policy() -> None:
    """TURN over TCP is what WebRTC has left: Chromium hands the proxy the TURN server's name (only the proxy's
    resolver knows these names), and the proxy refuses the blocked one and connects the allowed one."""

    async def body() -> None:
        allowed, forbidden, tcp_port = await listener_pair()
        calls: list[tuple[str, int]] = []
        resolver = resolving({"turn-ok.test": ["127.0.0.1"], "turn-evil.test": ["127.0.0.2"]}, calls)
        variant = "probe(window, [TURN('turn-evil.test'), TURN('turn-ok.test')])"
        page = TURN_TCP_PAGE % {"probe": PROBE, "udp": 9, "tcp": tcp_port, "variant": variant}
        site, port, _hits = await serve("127.0.0.1", 0, {"/": html(page)})
        async with pool_with(POLICY, resolver) as pool:
            result = await pool.render(RenderRequest(f"http://127.0.0.1:{port}/", wait_for="#done"))
            refusals = pool.state()["egress_refusals"]
        await site.cleanup()
        await allowed.close()
        await forbidden.close()
        assert page_state(result.html).startswith("function")
        assert {("turn-ok.test", tcp_port), ("turn-evil.test", tcp_port)} <= set(calls)
        assert allowed.accepted >= 1 and forbidden.accepted == 0 and refusals >= 1

    run(body())


#: remote ICE candidates named in ways Chromium resolves by multicast DNS: lower case, upper case with the
#: root's dot, a subdomain
MDNS_CANDIDATES = ("secret-lower.local", "SECRET-UPPER.LOCAL.", "a.b.secret-sub.local")
STRACE = shutil.which("strace")


def traced_chromium(tmp_path: Path) -> tuple[str, Path]:
    """A Chromium executable that runs the real one under strace, logging every socket call that can carry a
    datagram or open a connection, with the kind of socket (-yy); (the executable, the log)."""
    log = tmp_path / "strace.log"
    script = tmp_path / "chromium"
    calls = "connect,sendto,sendmsg,sendmmsg"
    script.write_text(f'#!/bin/sh\nexec {STRACE} -f -qq -yy -e trace={calls} -s 100 -o {log} {find_chromium()} "$@"\n')
    script.chmod(0o755)
    return str(script), log


def not_to_the_proxy(call: str) -> bool:
    """Whether a logged socket call names an IP address other than the proxy's 127.0.0.1. Sends on TCP and on
    connected sockets name none; Chromium's WebRTC and mDNS sockets name their peer in each sendto."""
    return any(address != "127.0.0.1" for address in re.findall(r'inet_(?:addr|pton)\((?:AF_INET6, )?"([^"]+)"', call))


@pytest.mark.browser
@needs_chromium
@pytest.mark.skipif(STRACE is None, reason="no strace on this machine")
def test_no_chromium_process_sends_a_datagram_not_even_mdns_for_a_local_candidate(tmp_path: Path) -> None:
    """A `.local` ICE candidate would be looked up by multicast DNS, which no listener on loopback can see; so
    strace watches every Chromium process, run by the pool with the production rules (SERVICE_HOST_RULES)."""

    async def body() -> None:
        executable, log = traced_chromium(tmp_path)
        transport, counter = await udp_listener("127.0.0.2")
        udp_port = transport.get_extra_info("sockname")[1]
        scripts = [WEBRTC_VARIANTS["STUN from the top document"]]
        scripts += [
            f"probe(window, [], 'candidate:1 1 udp 2122260223 {name} %(udp)d typ host')" for name in MDNS_CANDIDATES
        ]
        routes: Routes = {}
        site, port, _hits = await serve("127.0.0.1", 0, routes)
        base = f"http://127.0.0.1:{port}"
        for index, script in enumerate(scripts):
            routes.update(
                {path: html(page) for path, page in webrtc_pages(script, udp_port, base, f"/{index}").items()}
            )
        config = BrowserConfig(executable=executable)
        async with BrowserPool(config, POLICY, host_resolver_rules=SERVICE_HOST_RULES, resolver=resolving({})) as pool:
            states = [
                page_state((await pool.render(RenderRequest(f"{base}/{index}", wait_for="#done"))).html)
                for index in range(len(scripts))
            ]
        await site.cleanup()
        transport.close()
        calls = log.read_text().splitlines()
        sends_away = [call for call in calls if re.match(r"\d+ send(to|msg|mmsg)\(", call) and not_to_the_proxy(call)]
        proxy_connects = [call for call in calls if " connect(" in call and 'inet_addr("127.0.0.1")' in call]
        assert states == [NO_CANDIDATES] * len(scripts) and counter.received == 0
        assert proxy_connects  # strace did watch the process that makes Chromium's connections
        assert sends_away == []
        assert [call for call in calls if "secret" in call.lower() and re.search(r"sin6?_port|<UDP|<TCP", call)] == []

    run(body())
