"""Fetcher against a real aiohttp server on 127.0.0.1 that the tests start: pages, charsets, requests."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from litejobs.charsets import page_encoding
from litejobs.errors import FetchError
from litejobs.fetcher import Fetcher, Page
from tests.fetcher_support import (
    CONFIG,
    HTML,
    LOOPBACK_ALLOWED,
    Site,
    echoed,
    fetch,
)

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


def test_fetch_outside_async_with_is_an_error(run: Any) -> None:
    fetcher = Fetcher(CONFIG, LOOPBACK_ALLOWED)

    with pytest.raises(RuntimeError, match="async with"):
        run(fetcher.fetch("http://127.0.0.1:1/"))
