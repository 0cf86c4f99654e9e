"""The egress proxy: SOCKS5 spoken by a real client, then the real Chromium connecting only through it."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.browser import LOOPBACK_ONLY_RULES, BrowserPool, RenderRequest, find_chromium
from litejobs.chromium import chromium_args
from litejobs.config import BrowserConfig
from litejobs.egress_proxy import EgressProxy, HostRules
from litejobs.errors import BlockedAddress, BrowserError
from litejobs.netpolicy import NetworkPolicy
from tests.support import ServerThread, TargetSite, make_config

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
            with pytest.raises(BrowserError):  # no TLS on that port: what matters is where Chromium went
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
    assert "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" in args
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
            with pytest.raises(BrowserError):  # the proxy applies the rules: 127.0.0.1 is not excluded for pages
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
