"""Fetcher against real aiohttp servers on 127.0.0.1 and 127.0.0.2 that the tests start themselves."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import socket
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from litejobs.charsets import page_encoding
from litejobs.config import FetchConfig
from litejobs.errors import (
    BlockedAddress,
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    NetworkError,
    TooManyRedirects,
)
from litejobs.fetcher import Fetcher, Page
from litejobs.netpolicy import NetworkPolicy

T = TypeVar("T")
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


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[T]], T]:
    """Run one coroutine to its end on the test's loop, never longer than 10 s."""

    def run_bounded(awaitable: Awaitable[T]) -> T:
        return loop.run_until_complete(asyncio.wait_for(awaitable, 10.0))

    return run_bounded


@pytest.fixture
def site(loop: asyncio.AbstractEventLoop) -> Iterator[Site]:
    target = loop.run_until_complete(Site("127.0.0.1").start())
    yield target
    loop.run_until_complete(target.stop())


@pytest.fixture
def other_site(loop: asyncio.AbstractEventLoop) -> Iterator[Site]:
    """A second target on 127.0.0.2: another origin, or the forbidden one when the policy blocks it."""
    target = loop.run_until_complete(Site("127.0.0.2").start())
    yield target
    loop.run_until_complete(target.stop())


# --- pages and text -------------------------------------------------------------------------------


def test_html_page_with_charset(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/html")))

    assert page.status_code == 200
    assert page.url == page.final_url == site.url("/html")
    assert page.content_type == "text/html"
    assert page.encoding == "utf-8"
    assert page.text == HTML
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.redirects == []
    assert page.elapsed_ms > 0


def test_latin1_page_without_charset_header_uses_meta_charset(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/latin1")))

    assert page.headers["Content-Type"] == "text/html"
    assert page.encoding == "cp1252"  # what browsers use for an "iso-8859-1" label
    assert "<title>Café</title>" in page.text
    assert "crème" in page.text


def test_http_equiv_charset_is_sniffed(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/cp1252")))

    assert "\u201cquoted\u201d" in page.text


def test_unknown_charset_falls_back_to_utf8(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/bad-charset")))

    assert page.encoding == "utf-8"
    assert page.text == "naïve"


def test_text_never_raises() -> None:
    page = Page("u", "u", 200, {}, "text/html", b"caf\xe9 \xff", "no-such-codec", 1.0)

    assert page.text == "caf\ufffd \ufffd"


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/html; charset=UTF-8", b"<meta charset='latin1'>", "utf-8"),
        ('text/html; charset="windows-1251"', b"", "cp1251"),
        ("text/html", b"<META CHARSET=Shift_JIS>", "cp932"),
        ("text/xml", b'<?xml version="1.0" encoding="ISO-8859-2"?><r/>', "iso8859-2"),
        ("application/json", b'{"a": "<meta charset=latin1>"}', "utf-8"),
        ("text/html; charset=base64", b"", "utf-8"),
        ("text/html", b"<meta charset=utf-16>", "utf-8"),
        ("text/html; charset=iso-8859-1", b"\xef\xbb\xbfhi", "utf-8-sig"),
        ("", b"plain", "utf-8"),
    ],
)
def test_page_encoding(content_type: str, body: bytes, expected: str) -> None:
    assert page_encoding(content_type, body) == expected


# --- requests: methods, bodies, headers -----------------------------------------------------------


def test_post_json_body_reaches_the_server_intact(run: Any, site: Site) -> None:
    payload = json.dumps({"query": "café", "n": [1, 2, 3]})

    page = run(fetch(site.url("/echo"), method="POST", body=payload, headers={"Content-Type": "application/json"}))

    seen = echoed(page)
    assert seen["method"] == "POST"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert base64.b64decode(seen["body_b64"]).decode() == payload


def test_post_form_and_binary_bodies_reach_the_server_intact(run: Any, site: Site) -> None:
    form = "a=1&b=two+words&c=%C3%A9"
    binary = bytes(range(256))

    form_seen = echoed(
        run(
            fetch(
                site.url("/echo"),
                method="POST",
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        )
    )
    binary_seen = echoed(run(fetch(site.url("/echo"), method="PUT", body=binary)))

    assert form_seen["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert base64.b64decode(form_seen["body_b64"]).decode() == form
    assert binary_seen["method"] == "PUT"
    assert base64.b64decode(binary_seen["body_b64"]) == binary


def test_default_headers(run: Any, site: Site) -> None:
    seen = echoed(run(fetch(site.url("/echo"))))["headers"]

    assert seen["User-Agent"] == "litejobs-test/1.0"
    assert seen["Accept-Encoding"] == "gzip, deflate"
    assert "text/html" in seen["Accept"]


def test_custom_headers_arrive_and_override_defaults(run: Any, site: Site) -> None:
    headers = {"X-Custom": "yes", "user-agent": "MyBot/2", "Accept-Language": "fr"}

    seen = echoed(run(fetch(site.url("/echo"), headers=headers)))["headers"]

    assert seen["X-Custom"] == "yes"
    assert seen["User-Agent"] == "MyBot/2"
    assert seen["Accept-Language"] == "fr"


def test_header_injection_is_refused(run: Any, site: Site) -> None:
    with pytest.raises(FetchError, match="invalid request header"):
        run(fetch(site.url("/echo"), headers={"X-Evil": "a\r\nHost: other"}))
    assert site.hits == 0


def test_invalid_method_is_refused(run: Any, site: Site) -> None:
    with pytest.raises(FetchError, match="invalid request method"):
        run(fetch(site.url("/echo"), method="GET /admin"))
    assert site.hits == 0


def test_head_is_not_refused_for_the_size_it_announces(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/big"), method="HEAD", max_body_bytes=10))

    assert page.status_code == 200
    assert page.headers["Content-Length"] == "5000"
    assert page.body == b""


def test_connections_are_kept_alive(run: Any, site: Site) -> None:
    async def twice() -> tuple[Page, Page]:
        async with Fetcher(CONFIG, LOOPBACK_ALLOWED) as fetcher:
            return await fetcher.fetch(site.url("/echo")), await fetcher.fetch(site.url("/echo"))

    first, second = run(twice())

    assert echoed(first)["client_port"] == echoed(second)["client_port"]


# --- statuses and redirects -----------------------------------------------------------------------


@pytest.mark.parametrize("code", [404, 500, 503])
def test_error_statuses_are_returned_as_pages(run: Any, site: Site, code: int) -> None:
    page = run(fetch(site.url(f"/status/{code}")))

    assert page.status_code == code
    assert page.text == "oops"


def test_redirect_chain(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/redirect/3")))

    assert page.url == site.url("/redirect/3")
    assert page.final_url == site.url("/redirect/0")
    assert page.redirects == [site.url("/redirect/2"), site.url("/redirect/1"), site.url("/redirect/0")]
    assert page.text == HTML


def test_redirect_loop_stops_at_max_redirects(run: Any, site: Site) -> None:
    with pytest.raises(TooManyRedirects, match="more than 5 times") as caught:
        run(fetch(site.url("/loop"), config=FetchConfig(max_redirects=5)))

    assert caught.value.retryable is False
    assert site.hits == 6


def test_303_after_post_turns_into_get_without_body(run: Any, site: Site) -> None:
    page = run(
        fetch(
            site.url("/to?status=303&url=/echo"),
            method="POST",
            body="a=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )

    seen = echoed(page)
    assert seen["method"] == "GET"
    assert seen["body_b64"] == ""
    assert "Content-Type" not in seen["headers"]
    assert page.final_url == site.url("/echo")


def test_302_after_post_turns_into_get_but_307_keeps_post(run: Any, site: Site) -> None:
    after_302 = echoed(run(fetch(site.url("/to?status=302&url=/echo"), method="POST", body="a=1")))
    after_307 = echoed(run(fetch(site.url("/to?status=307&url=/echo"), method="POST", body="a=1")))

    assert after_302["method"] == "GET"
    assert after_307["method"] == "POST"
    assert base64.b64decode(after_307["body_b64"]) == b"a=1"


def test_credentials_are_not_sent_to_another_origin(run: Any, site: Site, other_site: Site) -> None:
    secret = {"Authorization": "Bearer s3cret", "X-Other": "kept"}
    elsewhere = quote(other_site.url("/echo"), safe="")

    same_origin = echoed(run(fetch(site.url("/to?url=/echo"), headers=secret)))["headers"]
    other_origin = echoed(run(fetch(site.url(f"/to?url={elsewhere}"), headers=secret)))["headers"]

    assert same_origin["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in other_origin
    assert other_origin["X-Other"] == "kept"


def test_cookies_last_for_one_fetch_only(run: Any, site: Site) -> None:
    async def two_fetches() -> tuple[Page, Page]:
        async with Fetcher(CONFIG, LOOPBACK_ALLOWED) as fetcher:
            return await fetcher.fetch(site.url("/set-cookie")), await fetcher.fetch(site.url("/echo"))

    through_redirect, next_fetch = run(two_fetches())

    assert echoed(through_redirect)["headers"]["Cookie"] == "sid=abc123"
    assert "Cookie" not in echoed(next_fetch)["headers"]


def test_before_redirect_sees_each_redirect_first_and_may_end_the_fetch(run: Any, site: Site) -> None:
    seen: list[str] = []

    def refuse_the_second(url: str) -> None:
        seen.append(url)
        if len(seen) == 2:
            raise LookupError(url)

    followed = run(fetch(site.url("/redirect/3"), before_redirect=seen.append))
    hits_then, redirects = site.hits, list(seen)
    seen.clear()
    with pytest.raises(LookupError, match="/redirect/1"):
        run(fetch(site.url("/redirect/3"), before_redirect=refuse_the_second))

    assert redirects == followed.redirects and len(redirects) == 3
    assert site.hits - hits_then == 2  # /redirect/3 and /redirect/2: the refused one was not requested


def test_redirect_to_another_scheme_is_refused(run: Any, site: Site) -> None:
    with pytest.raises(FetchError, match="must be an http or https URL") as caught:
        run(fetch(site.url("/to?url=ftp://127.0.0.1/file")))

    assert caught.value.retryable is False


def test_non_http_url_is_refused(run: Any) -> None:
    with pytest.raises(FetchError, match="must be an http or https URL"):
        run(fetch("file:///etc/passwd"))


# --- size caps and content encodings --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/raw-deflate"])
def test_compressed_bodies_are_decoded(run: Any, site: Site, path: str) -> None:
    page = run(fetch(site.url(path)))

    assert page.text == HTML


def test_a_gzip_body_of_several_members_is_decoded_whole(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/gzip-members")))

    assert page.text == HTML


def test_bytes_after_the_last_gzip_member_are_ignored(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/gzip-padded")))

    assert page.text == HTML


def test_the_size_cap_counts_the_bytes_of_every_gzip_member(run: Any, site: Site) -> None:
    with pytest.raises(BodyTooLarge, match="decompresses to more than the 5000-byte limit"):
        run(fetch(site.url("/gzip-members-big"), max_body_bytes=5000))

    cut = run(fetch(site.url("/gzip-members-big"), max_body_bytes=5000, truncate=True))

    assert cut.truncated and cut.body == b"x" * 3000 + b"y" * 2000


@pytest.mark.parametrize("split", [-3, 0, 1, 2], ids=["in-trailer", "at-boundary", "in-magic", "after-magic"])
def test_gzip_members_are_decoded_whole_wherever_the_reads_split_them(run: Any, split: int) -> None:
    first, second = gzip.compress(b"first half, "), gzip.compress(b"second half")
    body = first + second
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)

    async def scenario() -> Page:
        at = len(first) + split
        server, port = await _serve_raw(head + body[:at], reset=False, then=body[at:])
        async with server:
            return await fetch(f"http://127.0.0.1:{port}/")

    assert run(scenario()).text == "first half, second half"


def test_body_at_the_cap_is_accepted(run: Any, site: Site) -> None:
    page = run(fetch(site.url("/big"), max_body_bytes=5000))

    assert len(page.body) == 5000


def test_content_length_over_the_cap_is_refused_at_once(run: Any, site: Site) -> None:
    with pytest.raises(BodyTooLarge, match=r"announced 5000 bytes \(Content-Length\)") as caught:
        run(fetch(site.url("/big"), max_body_bytes=4999))

    assert caught.value.retryable is False


@pytest.mark.parametrize(("path", "cap"), [("/big", 1000), ("/big-chunked", 10_000), ("/gzip", 20)])
def test_a_body_over_the_cap_is_cut_there_when_asked(run: Any, site: Site, path: str, cap: int) -> None:
    whole = run(fetch(site.url(path), max_body_bytes=100_000, truncate=True))

    cut = run(fetch(site.url(path), max_body_bytes=cap, truncate=True))

    assert not whole.truncated and cut.truncated
    assert cut.body == whole.body[:cap] and len(cut.body) == cap


def test_chunked_body_over_the_cap_is_refused(run: Any, site: Site) -> None:
    with pytest.raises(BodyTooLarge, match="larger than the 10000-byte limit"):
        run(fetch(site.url("/big-chunked"), config=FetchConfig(max_body_bytes=10_000)))


def test_gzip_bomb_is_stopped_at_the_cap(run: Any, site: Site) -> None:
    run(site.bomb())  # built before measuring: the server's own memory is not the point
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before_bytes, _ = tracemalloc.get_traced_memory()
    try:
        started = time.monotonic()
        with pytest.raises(BodyTooLarge, match="decompresses to more than the 1000000-byte limit"):
            run(fetch(site.url("/bomb"), max_body_bytes=1_000_000))
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        if not already_tracing:
            tracemalloc.stop()

    assert time.monotonic() - started < 5
    # One 64 KiB read of this bomb inflates to 64 MB if the inflater is not held to the cap.
    assert peak_bytes - before_bytes < 16 * 1024 * 1024


# --- time limits and broken connections -----------------------------------------------------------


def test_server_that_never_answers_times_out(run: Any, site: Site) -> None:
    started = time.monotonic()

    with pytest.raises(FetchTimeout, match=r"within 0\.5 s") as caught:
        run(fetch(site.url("/hang"), timeout_s=0.5))

    assert 0.4 < time.monotonic() - started < 2
    assert caught.value.retryable is True


def test_timeout_covers_a_body_sent_one_byte_a_second(run: Any, site: Site) -> None:
    started = time.monotonic()

    with pytest.raises(FetchTimeout):
        run(fetch(site.url("/drip"), config=FetchConfig(timeout_s=1.5)))

    assert time.monotonic() - started < 3


def test_connection_refused(run: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    with pytest.raises(NetworkError, match=f"connection refused by 127.0.0.1:{closed_port}") as caught:
        run(fetch(f"http://127.0.0.1:{closed_port}/"))

    assert caught.value.retryable is True


async def _serve_raw(reply: bytes, *, reset: bool, then: bytes = b"") -> tuple[asyncio.Server, int]:
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


def test_connection_reset_mid_body(run: Any) -> None:
    async def scenario() -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        server, port = await _serve_raw(head + b"x" * 1000, reset=True)
        async with server:
            await fetch(f"http://127.0.0.1:{port}/")

    with pytest.raises(NetworkError, match="broke while reading the body"):
        run(scenario())


def test_invalid_http_response(run: Any) -> None:
    async def scenario() -> None:
        server, port = await _serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", reset=False)
        async with server:
            await fetch(f"http://127.0.0.1:{port}/")

    with pytest.raises(NetworkError, match="sent an invalid HTTP response"):
        run(scenario())


def test_a_repeated_content_type_is_read_from_its_last_value(run: Any) -> None:
    body = "<p>café</p>".encode("latin-1")
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Type: text/html; charset=iso-8859-1"
        b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )

    async def scenario() -> Page:
        server, port = await _serve_raw(head + body, reset=False)
        async with server:
            return await fetch(f"http://127.0.0.1:{port}/")

    page = run(scenario())

    assert (page.content_type, page.text) == ("text/html", "<p>café</p>")
    assert page.headers["Content-Type"] == "text/plain; charset=utf-8, text/html; charset=iso-8859-1"


def test_unknown_host_is_a_network_error(run: Any) -> None:
    with pytest.raises(NetworkError, match=r"could not resolve nowhere\.test: Name or service not known"):
        run(fetch("http://nowhere.test/", resolver=FakeDns({})))


# --- the network policy ---------------------------------------------------------------------------

BLOCKS_127_0_0_2 = NetworkPolicy(allow_private=True, blocked=["127.0.0.2/32"])


def test_blocked_address_is_refused_before_connecting(run: Any, other_site: Site) -> None:
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2, which is in the blocked range") as caught:
        run(fetch(other_site.url("/echo"), policy=BLOCKS_127_0_0_2))

    assert caught.value.retryable is False
    assert other_site.hits == 0


def test_redirect_to_a_blocked_address_is_refused(run: Any, site: Site, other_site: Site) -> None:
    target = quote(other_site.url("/echo"), safe="")

    with pytest.raises(BlockedAddress):
        run(fetch(site.url(f"/to?url={target}"), policy=BLOCKS_127_0_0_2))

    assert site.hits == 1
    assert other_site.hits == 0


def test_loopback_is_refused_unless_private_networks_are_allowed(run: Any, site: Site) -> None:
    with pytest.raises(BlockedAddress, match="loopback"):
        run(fetch(site.url("/html"), policy=NetworkPolicy(allow_private=False)))

    assert site.hits == 0


def test_name_resolving_to_a_blocked_address_is_refused(run: Any, other_site: Site) -> None:
    dns = FakeDns({"rebound.test": [("127.0.0.2", other_site.port)]})

    with pytest.raises(BlockedAddress, match=r"rebound.test: it resolves to 127\.0\.0\.2"):
        run(fetch(f"http://rebound.test:{other_site.port}/echo", policy=BLOCKS_127_0_0_2, resolver=dns))

    assert other_site.hits == 0


def test_only_the_allowed_addresses_of_a_name_are_used(run: Any, site: Site, other_site: Site) -> None:
    dns = FakeDns({"mixed.test": [("127.0.0.2", other_site.port), ("127.0.0.1", site.port)]})

    page = run(fetch(f"http://mixed.test:{site.port}/echo", policy=BLOCKS_127_0_0_2, resolver=dns))

    assert echoed(page)["headers"]["Host"] == f"mixed.test:{site.port}"
    assert site.hits == 1
    assert other_site.hits == 0


def test_fetch_outside_async_with_is_an_error(run: Any) -> None:
    fetcher = Fetcher(CONFIG, LOOPBACK_ALLOWED)

    with pytest.raises(RuntimeError, match="async with"):
        run(fetcher.fetch("http://127.0.0.1:1/"))
