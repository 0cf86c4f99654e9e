"""Fetcher against real servers on 127.0.0.1: size caps and content encodings, gzip bombs included."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from typing import Any

import pytest

from litejobs.config import FetchConfig
from litejobs.errors import BodyTooLarge
from litejobs.fetcher import Page
from tests.fetcher_support import HTML, Site, fetch, serve_raw

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
        server, port = await serve_raw(head + body[:at], reset=False, then=body[at:])
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
