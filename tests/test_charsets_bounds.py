"""A hostile page cannot hold the server: the <meta> prescan does bounded work whatever the page.

The review's page (`<html><head><meta ` + `a ` x 4,000,000) held the event loop 5.7 s: the prescan read
every attribute of the one tag, one Python step each.
"""

from __future__ import annotations

import http.client
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.charsets import page_encoding
from tests.support import ServerThread, TargetSite, make_config

#: hostile heads by how many attribute-sized pieces they have; each reads as UTF-8 (the fallback)
HOSTILE: dict[str, Callable[[int], bytes]] = {
    "one tag of many attributes": lambda n: b"<html><head><meta " + b"a " * n + b">...",
    "a tag that never closes": lambda n: b"<html><head><meta " + b"a " * n,
    "many tags of a few attributes": lambda n: b"<html><head>" + b"<link a a a a>" * (n // 4),
    "quoted values": lambda n: b"<html><head><meta " + b"a='x' " * (n // 3),
    "many comments": lambda n: b"<html><head>" + b"<!---->" * (n // 3),
}
REVIEW_PIECES = 4_000_000


def calls_made(body: bytes) -> int:
    """How many Python and C functions page_encoding calls: its work, counted rather than timed."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        page_encoding("text/html", body)
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("shape", list(HOSTILE))
def test_the_prescan_does_no_more_work_on_a_long_hostile_page_than_on_a_short_one(shape: str) -> None:
    page = HOSTILE[shape]
    assert page_encoding("text/html", page(REVIEW_PIECES)) == "utf-8"
    assert calls_made(page(REVIEW_PIECES)) <= calls_made(page(100_000))


def test_a_meta_after_a_long_inline_style_is_still_found() -> None:
    # Chromium reads a head to its end: a charset after 70 KB of CSS is honoured (measured), and so here
    body = b"<html><head><style>" + b"p{margin:0}" * 6400 + b"</style><meta charset=windows-1251><body>caf\xe9"
    assert page_encoding("text/html", body) == "cp1251"


#: the review's page made five times longer (40 MB): the old prescan held the loop several times HANG_GUARD_S
HOSTILE_PIECES = 5 * REVIEW_PIECES
#: a hang guard, not a speed test: /healthz answers in milliseconds unless the loop is held
HANG_GUARD_S = 5.0


@pytest.fixture
def big_body_server(tmp_path: Path) -> Iterator[ServerThread]:
    config = make_config(tmp_path, fetch={"max_body_bytes": 8 * HOSTILE_PIECES})
    with ServerThread(config) as running:
        yield running


class HealthPoller:
    """Asks /healthz one request after another until stopped; `stalled` if one went unanswered."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered = 0
        self.stalled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set() and not self.stalled:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HANG_GUARD_S)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    self.answered += 1
            except TimeoutError:
                self.stalled = True
            finally:
                conn.close()
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(HANG_GUARD_S + 5)


def test_the_server_keeps_answering_while_it_fetches_a_hostile_page(
    big_body_server: ServerThread, site: TargetSite
) -> None:
    served, page = threading.Event(), HOSTILE["one tag of many attributes"](HOSTILE_PIECES)

    async def hostile(request: web.Request) -> web.Response:
        served.set()
        return web.Response(body=page, headers={"Content-Type": "text/html"})

    url = site.add("/attrs", hostile)
    poller = HealthPoller(big_body_server.port)
    try:
        job = big_body_server.http.submit({"url": url, "output": ["headers"]})
        done = big_body_server.http.wait(job["job_id"], 100)
    finally:
        poller.stop()
    assert served.is_set() and done["status"] == "completed"
    assert not poller.stalled  # every /healthz was answered while the page was read and decoded
    assert poller.answered > 0
