"""Hostile input: target sites that misbehave through a whole job, and requests the API tests do not
already send (bodies too big to read, traversal in file names, huge headers, non-object JSON on every
POST route, odd numbers, one key peeking at another's events).

(CRLF in headers, deep JSON, bad UTF-8, batches of 1001 and the 2 MB body are in tests/test_api.py;
tests/test_schema_fuzz.py sends generated requests to every documented operation.)
"""

from __future__ import annotations

import asyncio
import collections
import functools
import http.client
import json
import socket
import sqlite3
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from starlette.routing import Mount, Route

from tests.support import Http, LoopThread, ServerThread, TargetSite, make_config, wait_until

KEYS = ("alice-key", "bob-key")
FAKE_JOB = "job_" + "0" * 32


def html(text: str = "<p>ok</p>") -> web.Response:
    return web.Response(text=text, content_type="text/html")


# --- targets that misbehave, through a whole job -------------------------------------------------------


@functools.cache
def gzip_bomb() -> bytes:
    """About 100 KB of gzip that inflates to 100 MB of zeros."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1024 * 1024)
    return b"".join(packer.compress(chunk) for _ in range(100)) + packer.flush()


async def never_answers(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return html()


async def one_byte_a_second(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": "30"})
    await response.prepare(request)
    for _ in range(30):
        await response.write(b"x")
        await asyncio.sleep(1)
    return response


async def fifty_megabytes(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html"})  # chunked: no size announced
    await response.prepare(request)
    for _ in range(50):
        try:
            await response.write(b"x" * 1024 * 1024)
        except ConnectionError:
            break
    return response


async def redirect_loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop")


async def gzip_bomb_page(request: web.Request) -> web.Response:
    return web.Response(body=gzip_bomb(), headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})


async def unknown_charset(request: web.Request) -> web.Response:
    body = "<p>naïve café</p>".encode() + b"<p>\xff</p>"
    return web.Response(body=body, headers={"Content-Type": "text/html; charset=klingon"})


RAW_REPLIES = {
    "reset": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000,
    "garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "silence": b"",
}


class RawServers:
    """TCP servers on 127.0.0.1 that read a request, send raw bytes, then reset the connection."""

    def __init__(self) -> None:
        self.loop = LoopThread("raw-servers")
        self._servers: list[asyncio.Server] = []
        self.urls = {name: self.loop.call(self._start(reply)) for name, reply in RAW_REPLIES.items()}

    async def _start(self, reply: bytes) -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
            # linger 0: close() sends a TCP RST instead of a FIN
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            writer.transport.abort()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        self._servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
                await server.wait_closed()

        self.loop.call(stop())
        self.loop.close()


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, str]]:
    site, raw = TargetSite(), RawServers()
    handlers = {
        "never_answers": never_answers,
        "one_byte_a_second": one_byte_a_second,
        "fifty_megabytes": fifty_megabytes,
        "loop": redirect_loop,
        "gzip_bomb": gzip_bomb_page,
        "unknown_charset": unknown_charset,
    }
    urls = {name: site.add(f"/{name}", handler) for name, handler in handlers.items()}
    yield {**urls, **raw.urls}
    raw.close()
    site.close()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path_factory.mktemp("targets"))) as server:
        yield server


@pytest.mark.parametrize(
    ("target", "timeout_s", "status", "code"),
    [
        ("never_answers", 1, "failed", "timeout"),
        ("one_byte_a_second", 2, "failed", "timeout"),
        ("fifty_megabytes", 30, "failed", "body_too_large"),
        ("loop", 30, "failed", "too_many_redirects"),
        ("gzip_bomb", 30, "failed", "body_too_large"),
        ("unknown_charset", 30, "completed", None),
        ("reset", 30, "failed", "network_error"),
        ("garbage", 30, "failed", "network_error"),
        ("silence", 30, "failed", "network_error"),
    ],
)
def test_a_misbehaving_target_ends_its_job_with_a_clear_code_and_frees_the_worker(
    shared_server: ServerThread, targets: dict[str, str], target: str, timeout_s: int, status: str, code: str | None
) -> None:
    http = shared_server.http
    started = time.monotonic()
    job = http.wait(
        http.submit({"url": targets[target], "output": ["text"]}, timeout_s=timeout_s, max_attempts=1)["job_id"]
    )
    assert job["status"] == status and time.monotonic() - started < timeout_s + 5
    if code is None:
        text = http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["text"]
        assert text.startswith("naïve café") and "\ufffd" in text
    else:
        assert job["error"]["code"] == code and len(job["error"]["message"]) > 20, job["error"]
    assert wait_until(lambda: http.get("/v1/stats").json["workers"]["busy"] == 0, 5)


# --- requests that misbehave ---------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path, auth={"keys": list(KEYS)})) as server:
        yield server


def raw_exchange(server: ServerThread, head: bytes, body_parts: Iterator[bytes], timeout_s: float = 5) -> bytes:
    """Send a request head and body parts on one socket, stopping early if the server answers, and
    return what it answered."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.setblocking(False)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # an answer is waiting: the server did not wait for the rest
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            sock.settimeout(timeout_s)
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_10_mb_body_is_refused_with_413_before_it_is_sent_in_full(api: ServerThread) -> None:
    sent = 0

    def parts(size: int) -> Iterator[bytes]:
        nonlocal sent
        for _ in range(size // 65536):
            time.sleep(0.002)
            sent += 65536
            yield b"x" * 65536

    auth = f"Authorization: Bearer {KEYS[0]}\r\n".encode()
    declared = b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + auth
    answer = raw_exchange(api, declared + b"Content-Length: 10000000\r\n\r\n", parts(10_000_000))
    assert answer.startswith(b"HTTP/1.1 413") and sent < 1_000_000, (answer[:100], sent)

    sent = 0
    chunked = b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + auth
    chunks = (b"10000\r\n" + part + b"\r\n" for part in parts(10_000_000))
    answer = raw_exchange(api, chunked + b"Transfer-Encoding: chunked\r\n\r\n", chunks)
    assert answer.startswith(b"HTTP/1.1 413") and sent < 3_000_000, (answer[:100], sent)


def test_an_idempotency_key_of_10_kb_is_refused(api: ServerThread) -> None:
    resp = api.http.post(
        "/v1/jobs", {"input": {"url": "http://127.0.0.1:9/"}}, headers={"Idempotency-Key": "k" * 10_240}
    )
    assert resp.status == 422 and resp.json["error"]["details"][0]["field"] == "Idempotency-Key"
    assert api.http.get("/v1/jobs").json["jobs"] == []


def test_traversal_in_a_file_name_finds_nothing(api: ServerThread, tmp_path: Path) -> None:
    assert api.app is not None
    files = api.app.files.root
    (files / FAKE_JOB).mkdir(parents=True)
    (files / "secret.txt").write_text("top secret")
    (files / FAKE_JOB / "screenshot.png").write_text("another job's file")
    job = api.http.submit({"url": "http://127.0.0.1:9/"}, delay_s=3600)["job_id"]
    names = [
        "..%2Fsecret.txt",
        "..%2F..%2Fsecret.txt",
        "%2e%2e%2fsecret.txt",
        "..%5Csecret.txt",
        f"..%2F{FAKE_JOB}%2Fscreenshot.png",
        "%2E%2E",
        "..",
        "secret.txt%00.png",
    ]
    for name in names:
        resp = api.http.get(f"/v1/files/{job}/{name}")
        assert resp.status == 404 and b"top secret" not in resp.body and b"another job" not in resp.body, name
    assert api.http.get(f"/v1/files/..%2F{FAKE_JOB}/screenshot.png").status == 404


def post_routes(routes: list[object], prefix: str = "") -> Iterator[str]:
    for route in routes:
        if isinstance(route, Mount):
            yield from post_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route) and "POST" in (route.methods or ()):
            yield prefix + route.path


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"null", b"1", b"true", b"[{}]", b'{"jobs": {}}'])
def test_json_that_is_not_an_object_gets_a_4xx_on_every_post_route(api: ServerThread, body: bytes) -> None:
    assert api.app is not None
    paths = sorted(set(post_routes(api.app.asgi.routes)))
    assert len(paths) > 10
    for template in paths:
        path = template.replace("{job_id}", FAKE_JOB)
        for name in ("{scraper}", "{kind}", "{name}"):
            path = path.replace(name, "fetch")
        resp = api.http.request("POST", path, raw=body, headers={"Content-Type": "application/json"})
        assert 400 <= resp.status < 500, (path, resp.status, resp.body[:300])


NOT_STRICT_JSON = {
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "a number past a double": b"1e400",
    "a lone surrogate": b'"\\ud800"',
}


@pytest.mark.parametrize("what", list(NOT_STRICT_JSON))
def test_json_that_is_not_strict_is_refused_on_every_post_route_and_stores_nothing(tmp_path: Path, what: str) -> None:
    """Python's json reads NaN, Infinity, 1e400 (as inf) and lone surrogates; the request then failed
    after its job was stored (500 for an accepted job, so a client retries and gets it twice)."""
    token = NOT_STRICT_JSON[what]
    with ServerThread(make_config(tmp_path)) as server:  # anonymous: every route reaches its parsing
        assert server.app is not None
        paths = sorted(set(post_routes(server.app.asgi.routes)))
        checked = 0
        for template in paths:
            path = template.replace("{job_id}", FAKE_JOB)
            for name in ("{scraper}", "{kind}", "{name}"):
                path = path.replace(name, "fetch")
            broken = server.http.request("POST", path, raw=b"{", headers={"Content-Type": "application/json"})
            for body in (
                b'{"url": "http://127.0.0.1:9/", "input": {"url": "http://127.0.0.1:9/"}, "meta": {"x": %s}}' % token,
                b'{"url": "http://127.0.0.1:9/", "input": {"url": "http://127.0.0.1:9/", "headers": {"a": %s}}}'
                % token,
            ):
                resp = server.http.request("POST", path, raw=body, headers={"Content-Type": "application/json"})
                # a route that reads a body refuses it as it refuses broken JSON; the others never read it
                assert resp.status == (400 if broken.status == 400 else broken.status), (path, resp.body[:300])
                if broken.status == 400 and path.startswith("/v1/"):
                    assert resp.json["error"]["code"] == "invalid_json", (path, resp.body[:300])
                    checked += 1
        assert checked >= 8  # /v1/jobs, /v1/jobs/batch, /v1/scrape, /v1/scrape/async, both bodies each
        counts = server.http.get("/v1/stats").json["counts"]
        assert sum(counts.values()) == 0, counts


def test_json_nested_past_the_limit_is_refused_before_anything_is_stored(api: ServerThread) -> None:
    """500 levels in a job's input.body parsed, then could not be encoded for storage: a 500."""
    alice = Http(api.base_url, KEYS[0])
    deep = b"[" * 500 + b"]" * 500
    for path, body in (
        ("/v1/jobs", b'{"input": {"url": "http://127.0.0.1:9/", "body": %s}, "delay_s": 999}' % deep),
        ("/v1/jobs/batch", b'{"jobs": [{"input": {"url": "http://127.0.0.1:9/"}, "meta": {"a": %s}}]}' % deep),
    ):
        resp = alice.request("POST", path, raw=body, headers={"Content-Type": "application/json"})
        assert resp.status == 400 and resp.json["error"]["code"] == "invalid_json", (path, resp.body[:300])
        assert "nested too deeply" in resp.json["error"]["message"]
    assert alice.get("/v1/jobs").json["jobs"] == []


ODD_VALUES = [
    b'"\\u0000"', b'"a\\u0000b"', b"-0", b"1e-400", b"1.7976931348623157e308", b"-1e308", b'""', b'"' + b"x" * 100_000 + b'"',
    b"[" * 100 + b"]" * 100, b'{"\\u0000":1}', b'{"":1}', b"0.1", b"-1", b"9007199254740993", b"18446744073709551616",
    b'"\\ud83d\\ude00"', b'"\\u202e"', b"true", b"null", b"[]", b"{}", b'"http://127.0.0.1:9/\\u0000"',
    b'"http://[::1]:9/"', b'"http://127.0.0.1:9/' + b"a" * 9000 + b'"', b'"HTTP://127.0.0.1:9/"', b'"http://u:p@127.0.0.1:9/"',
    b'["html","html"]', b'["markdown","text","links","metadata","headers","screenshot","pdf","extract"]',
    b'{"a":{"b":{"c":[1,2,{"d":null}]}}}',
]  # fmt: skip
TOP_FIELDS = ("kind", "input", "meta", "priority", "max_attempts", "timeout_s", "delay_s", "webhook")
INPUT_FIELDS = (
    "url", "output", "method", "headers", "body", "render_js", "wait_until", "wait_for", "wait_ms", "block", "cookies",
    "user_agent", "viewport", "screenshot_full_page", "extract",
)  # fmt: skip


@pytest.mark.slow
def test_odd_values_in_any_submit_field_never_get_a_5xx_and_every_stored_job_reads_back(api: ServerThread) -> None:
    """Each odd value in each field of a submit, on the three submit routes (2,088 requests): a 4xx or a
    202, never a 5xx; then every job that was stored answers 200 to GET."""
    alice = Http(api.base_url, KEYS[0])
    bodies = []
    for value in ODD_VALUES:
        for field in TOP_FIELDS:
            fields = {"input": b'{"url":"http://127.0.0.1:9/"}', "delay_s": b"999", field: value}
            bodies.append(b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()) + b"}")
        for field in INPUT_FIELDS:
            fields = {"url": b'"http://127.0.0.1:9/"', field: value}
            given = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()) + b"}"
            bodies.append(b'{"input":%s,"delay_s":999}' % given)
    answers: collections.Counter[int] = collections.Counter()
    for body in bodies:
        for path, raw in (("/v1/jobs", body), ("/v1/jobs/batch", b'{"jobs":[%s]}' % body), ("/v1/scrape/async", body)):
            resp = alice.request("POST", path, raw=raw, headers={"Content-Type": "application/json"})
            answers[resp.status] += 1
            assert resp.status < 500, (path, raw[:200], resp.body[:300])
    assert answers[202] > 100 and answers[422] > 100, answers  # both kinds of answer were exercised
    cursor, seen = "", 0
    for _ in range(100):  # bounded: 100 pages of 100
        page = alice.get(f"/v1/jobs?limit=100{cursor}")
        assert page.status == 200, page.body[:300]
        for job in page.json["jobs"]:
            assert alice.get(f"/v1/jobs/{job['job_id']}").status == 200, job["job_id"]
            seen += 1
        if not page.json.get("next_cursor"):
            break
        cursor = f"&cursor={page.json['next_cursor']}"
    assert seen == answers[202]


def test_rows_written_before_json_was_strict_stay_readable(tmp_path: Path) -> None:
    """Python's json wrote NaN and Infinity into meta and results; strict parsing must not turn an
    upgraded server's old rows into 500s. They read back as null."""
    config = make_config(tmp_path)
    with ServerThread(config) as server:
        job_id = server.http.post("/v1/jobs", {"input": {"url": "http://127.0.0.1:9/"}, "delay_s": 999}).json["job_id"]
    with sqlite3.connect(config.store.path) as db:  # what the previous version left in the file
        db.execute("UPDATE jobs SET meta = ?, status = 'completed', result_available = 1 WHERE id = ?",
                   ('{"x":NaN,"n":123456789012345678901234567890}', job_id))  # fmt: skip
        db.execute("INSERT INTO results (job_id, outputs, stats) VALUES (?, ?, ?)",
                   (job_id, '{"score":Infinity,"status_code":200}', '{"elapsed_ms":-Infinity}'))  # fmt: skip
    with ServerThread(config) as server:
        job = server.http.get(f"/v1/jobs/{job_id}")
        assert job.status == 200 and job.json["meta"] == {"x": None, "n": 123456789012345678901234567890}
        result = server.http.get(f"/v1/jobs/{job_id}/result")
        assert result.status == 200, result.body[:300]
        assert result.json["outputs"]["score"] is None and result.json["outputs"]["status_code"] == 200
        assert server.http.get("/v1/jobs").status == 200


def test_a_byte_order_mark_is_ignored_and_big_integers_stay_exact(api: ServerThread) -> None:
    alice = Http(api.base_url, KEYS[0])
    body = b'\xef\xbb\xbf{"input": {"url": "http://127.0.0.1:9/"}, "meta": {"n": 123456789012345678901234567890}, "delay_s": 999}'
    resp = alice.request("POST", "/v1/jobs", raw=body, headers={"Content-Type": "application/json"})
    assert resp.status == 202, resp.body[:300]
    assert resp.json["meta"] == {"n": 123456789012345678901234567890}
    again = alice.get(f"/v1/jobs/{resp.json['job_id']}")
    assert (
        b'"n":123456789012345678901234567890' in again.body
        and again.json["meta"]["n"] == 123456789012345678901234567890
    )


def test_numbers_that_are_not_plain_or_do_not_fit_are_refused_or_ignored(api: ServerThread) -> None:
    for cursor in ("c²", "c١", "c" + "9" * 30, "c-1", "c 1"):
        resp = api.http.get(f"/v1/jobs?cursor={quote(cursor)}")
        assert resp.status == 422 and resp.json["error"]["details"][0]["field"] == "cursor", cursor
    for last_id in ("²", "9" * 40):
        head, open_ = read_stream(
            api, "/v1/events", {"Last-Event-ID": last_id, "Authorization": f"Bearer {KEYS[0]}"}, 1.2
        )
        assert head.startswith(b"HTTP/1.1 200") and open_, (last_id, head[:200])
    for value in ("1e999", "nan", "-inf", "99999999999999999999999"):
        assert api.http.get(f"/v1/jobs?limit={value}").status == 422, value
        assert api.http.get(f"/v1/jobs/{FAKE_JOB}?wait={value}").status in (404, 422), value


def read_stream(server: ServerThread, path: str, headers: dict[str, str], seconds: float) -> tuple[bytes, bool]:
    """The raw answer to a streaming GET, as much as arrives in `seconds`, and whether the stream
    was still open then."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=seconds)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    got = f"HTTP/1.1 {resp.status}\r\n".encode()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            chunk = resp.read1(65536)
            if not chunk:
                return got, False
            got += chunk
    except TimeoutError:
        pass
    finally:
        conn.close()
    return got, True


def test_one_key_never_sees_another_keys_events(api: ServerThread) -> None:
    alice, bob = (Http(api.base_url, key) for key in KEYS)
    job = alice.submit({"url": "http://192.0.2.1/"}, max_attempts=1)
    assert alice.wait(job["job_id"])["status"] == "failed"
    stolen = bob.get(f"/v1/jobs/{job['job_id']}/events")
    assert stolen.status == 403 and stolen.json["error"]["code"] == "forbidden"
    everything = {"Last-Event-ID": "0"}  # replay every change since the start of time
    seen_by_bob, _ = read_stream(api, "/v1/events", {**everything, "Authorization": f"Bearer {KEYS[1]}"}, 1.5)
    seen_by_alice, _ = read_stream(api, "/v1/events", {**everything, "Authorization": f"Bearer {KEYS[0]}"}, 1.5)
    assert seen_by_bob.startswith(b"HTTP/1.1 200") and b"data:" not in seen_by_bob
    assert job["job_id"].encode() in seen_by_alice
    events = [json.loads(line[5:]) for line in seen_by_alice.split(b"\n") if line.startswith(b"data:")]
    assert {e["job_id"] for e in events} == {job["job_id"]}
