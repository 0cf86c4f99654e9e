"""Fetcher against real servers on 127.0.0.1 and 127.0.0.2: time limits, broken connections, the network policy."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import quote

import pytest

from litejobs.config import FetchConfig
from litejobs.errors import BlockedAddress, FetchTimeout, NetworkError
from litejobs.fetcher import Page
from litejobs.netpolicy import NetworkPolicy
from tests.fetcher_support import FakeDns, Site, echoed, fetch, serve_raw

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


def test_connection_reset_mid_body(run: Any) -> None:
    async def scenario() -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        server, port = await serve_raw(head + b"x" * 1000, reset=True)
        async with server:
            await fetch(f"http://127.0.0.1:{port}/")

    with pytest.raises(NetworkError, match="broke while reading the body"):
        run(scenario())


def test_invalid_http_response(run: Any) -> None:
    async def scenario() -> None:
        server, port = await serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", reset=False)
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
        server, port = await serve_raw(head + body, reset=False)
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
