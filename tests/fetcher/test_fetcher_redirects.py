"""Fetcher against real aiohttp servers on 127.0.0.1 and 127.0.0.2: statuses, redirects, credentials."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest

from litejobs.config import FetchConfig
from litejobs.errors import FetchError, TooManyRedirects
from litejobs.fetcher import Fetcher, Page
from tests.fetcher_support import (
    CONFIG,
    HTML,
    LOOPBACK_ALLOWED,
    Site,
    echoed,
    fetch,
)

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
