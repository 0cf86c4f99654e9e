"""A job cannot choose how its request is framed, so one owner cannot desynchronise a shared keep-alive
connection and read another owner's answers (request smuggling through the fetcher's pool)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Http, LoopThread, ServerThread, TargetSite, make_config, wait_until

FRAMING = ("Transfer-Encoding", "Content-Length", "Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Expect")
ALICE, BOB = "alice-key", "bob-key"
SMUGGLED = "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path, auth={"keys": [ALICE, BOB]})) as running:
        yield running


def refused_fields(resp: Any) -> set[str]:
    assert resp.status == 422, (resp.status, resp.body)
    return {d["field"] for d in resp.json["error"]["details"]}


@pytest.mark.parametrize("name", FRAMING)
def test_a_fetch_may_not_set_a_framing_header(shared: ServerThread, site: TargetSite, name: str) -> None:
    body = {"kind": "fetch", "input": {"url": site.url("/form"), "method": "POST", "headers": {name: "chunked"}}}
    resp = shared.http.post("/v1/jobs", body)
    assert refused_fields(resp) == {f"input.headers.{name}"}
    assert "HTTP client" in resp.json["error"]["details"][0]["problem"]


def test_every_kind_and_route_with_headers_refuses_them(shared: ServerThread, site: TargetSite) -> None:
    """fetch, render, interact and crawl read headers; the inline route and the dialects build the
    same inputs, so each is refused with the header named, whatever its case."""
    headers = {"transfer-ENCODING": "chunked"}
    url = site.url("/p")
    for kind, extra in (
        ("fetch", {}),
        ("render", {}),
        ("crawl", {}),
        ("interact", {"actions": [{"type": "wait", "ms": 1}]}),
    ):
        resp = shared.http.post("/v1/jobs", {"kind": kind, "input": {"url": url, "headers": headers, **extra}})
        assert refused_fields(resp) == {"input.headers.transfer-ENCODING"}, kind
    inline = shared.http.post("/v1/scrape", {"url": url, "headers": headers})
    assert inline.status == 422 and b"transfer-ENCODING" in inline.body
    vendor = Http(shared.base_url)
    scraperapi = vendor.post("/compat/scraperapi/jobs", {"apiKey": ALICE, "url": url, "headers": headers})
    assert scraperapi.status == 422 and b"transfer-ENCODING" in scraperapi.body
    scrapio = Http(shared.base_url, ALICE).post("/compat/scrapio/v1/fetch", {"url": url, "headers": headers})
    assert scrapio.status == 422 and b"transfer-ENCODING" in scrapio.body


def test_host_is_still_a_job_s_to_set(shared: ServerThread, site: TargetSite) -> None:
    """Host frames nothing (aiohttp writes it as the one Host line): naming a virtual host works."""
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"<p>host={request.headers['Host']}</p>", content_type="text/html")

    url = site.add("/host", echo)
    job = shared.http.submit({"url": url, "headers": {"Host": "vhost.test"}, "output": ["text"]})
    assert shared.http.wait(job["job_id"])["status"] == "completed"
    assert shared.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["text"] == "host=vhost.test"


class LenientSite:
    """A keep-alive HTTP/1.1 target that never reads a request's body (a "CL.0" server): the body's
    bytes are taken for the next request on the connection. /slow answers after 0.2 s; /private
    echoes the Authorization it was sent."""

    def __init__(self) -> None:
        self.served: list[str] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = LoopThread("lenient-site")
        self.port = self._loop.call(self._start())

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                path = head[0].split(" ")[1]
                headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
                if path.startswith("/slow"):
                    await asyncio.sleep(0.2)
                    text = "POISONED: attacker content"
                elif path.startswith("/private"):
                    text = f"private page for {headers.get('Authorization')}"
                else:
                    text = f"genuine page {path}"
                self.served.append(path)
                body = f"<html><body><p>{text}</p></body></html>".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        self._writers.discard(writer)
        writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

        self._loop.call(stop())
        self._loop.close()


def test_a_body_left_unread_by_the_target_does_not_reach_another_owner(shared: ServerThread) -> None:
    """Alice POSTs a body that is a request: the target takes it for the connection's next request.
    Bob's fetch of the same host then gets his own page, and Alice's next fetch hers."""
    lenient = LenientSite()
    try:
        base = f"http://127.0.0.1:{lenient.port}"
        alice, bob = Http(shared.base_url, ALICE), Http(shared.base_url, BOB)
        smuggle = alice.submit({"url": f"{base}/form", "method": "POST", "body": SMUGGLED, "output": ["text"]})
        assert alice.wait(smuggle["job_id"])["status"] == "completed"
        # the target read the smuggled request wherever it ended up: on a connection used once, or not
        wait_until(lambda: "/slow" in lenient.served, 5)
        secret = {"url": f"{base}/private/bob", "headers": {"Authorization": "Bearer BOBS-SECRET"}, "output": ["text"]}
        bobs = bob.submit(secret)
        assert bob.wait(bobs["job_id"])["status"] == "completed"
        assert bob.get(f"/v1/jobs/{bobs['job_id']}/result").json["outputs"]["text"] == (
            "private page for Bearer BOBS-SECRET"
        )
        next_one = alice.submit({"url": f"{base}/anything", "output": ["text"]})
        assert alice.wait(next_one["job_id"])["status"] == "completed"
        assert alice.get(f"/v1/jobs/{next_one['job_id']}/result").json["outputs"]["text"] == "genuine page /anything"
    finally:
        lenient.close()


def test_the_fetcher_refuses_them_for_any_caller(site: TargetSite) -> None:
    """Defence in depth for callers that bypass a kind's parser (a plugin's ctx.fetcher)."""
    from litejobs.config import FetchConfig
    from litejobs.errors import FetchError
    from litejobs.fetcher import Fetcher
    from litejobs.netpolicy import NetworkPolicy

    async def fetch() -> None:
        async with Fetcher(FetchConfig(timeout_s=5.0), NetworkPolicy(allow_private=True)) as fetcher:
            await fetcher.fetch(site.url("/p"), method="POST", body="x", headers={"Content-Length": "0"})

    with pytest.raises(FetchError, match="Content-Length") as refused:
        asyncio.run(fetch())
    assert not refused.value.retryable and site.hits["/p"] == 0
