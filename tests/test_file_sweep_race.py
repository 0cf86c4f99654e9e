"""A file downloaded while the expiry sweep deletes its job comes whole or not at all (404): never a
500, never a 200 whose body stops short of its Content-Length. The file is held open from the moment
the route finds it (a folder's file) or read whole (a database's row)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from starlette.responses import FileResponse
from starlette.types import Message

from tests.file_kinds import png_like
from tests.support import Response, ServerThread, make_config, wait_until
from tests.test_pg_file_ranges import RANGES, seen
from tests.test_pg_file_ranges import SIZE as SIZE_FOR_RANGES

KIND = {"snapshot": "tests.file_kinds:snapshot"}
SIZE = 64 * 1024
JOBS = 16
CLIENTS_PER_FILE = 4
#: bounds each client's loop: the sweep deletes a job about retention_s after it ends
LOOP_FOR_S = 30.0


@pytest.fixture(params=["folder", "database"])
def expiring(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    """Jobs deleted 1 s after they end, the sweep looking every 0.1 s."""
    store = {"retention_s": 1.0, "sweep_interval_s": 0.1}
    if request.param == "database":
        store["url"] = request.getfixturevalue("pg_url")
    with ServerThread(make_config(tmp_path, kinds=KIND, store=store)) as running:
        yield running


def file_paths(server: ServerThread, sizes: list[int]) -> list[str]:
    """The URL paths of one finished snapshot job's file per size."""
    jobs = [server.http.submit({"size": size}, kind="snapshot")["job_id"] for size in sizes]
    paths = []
    for job_id in jobs:
        assert server.http.wait(job_id)["status"] == "completed"
        paths.append(str(server.http.get(f"/v1/jobs/{job_id}/result").json["outputs"]["file"]))
    return paths


async def download_until_gone(base_url: str, paths: list[str]) -> collections.Counter[str]:
    """Several clients per file, each downloading it again and again until it answers 404: what a
    client sees, counted."""
    seen: collections.Counter[str] = collections.Counter()
    whole = png_like(SIZE)

    async def client(session: aiohttp.ClientSession, path: str) -> None:
        deadline = time.monotonic() + LOOP_FOR_S
        while time.monotonic() < deadline:
            try:
                async with session.get(base_url + path) as resp:
                    body = await resp.read()
            except aiohttp.ClientPayloadError:
                seen["a body cut short"] += 1
                continue
            if resp.status == 404:
                seen["404"] += 1
                return
            seen["200 whole" if resp.status == 200 and body == whole else f"{resp.status} {body[:80]!r}"] += 1
        seen["never gone"] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        await asyncio.gather(*(client(session, path) for path in paths for _ in range(CLIENTS_PER_FILE)))
    return seen


@pytest.mark.slow
def test_a_file_downloaded_as_the_sweep_deletes_it_comes_whole_or_404(expiring: ServerThread) -> None:
    paths = file_paths(expiring, [SIZE] * JOBS)

    seen = asyncio.run(download_until_gone(expiring.base_url, paths))

    assert set(seen) == {"200 whole", "404"}, seen
    assert seen["404"] == JOBS * CLIENTS_PER_FILE


def test_a_download_begun_before_the_sweep_ends_whole(expiring: ServerThread) -> None:
    size = 16 * 1024 * 1024  # more than the socket buffers hold: most is read after the delete
    [path] = file_paths(expiring, [size])

    async def read_across_the_sweep() -> tuple[int, int | None, bytes]:
        async with aiohttp.ClientSession() as session, session.get(expiring.base_url + path) as resp:
            first = await resp.content.readexactly(1024)
            job_id = path.split("/")[3]
            gone = await asyncio.to_thread(
                wait_until, lambda: expiring.http.get(f"/v1/jobs/{job_id}").status == 404, 15
            )
            assert gone, "the sweep did not delete the job"
            return resp.status, resp.content_length, first + await resp.read()

    status, length, body = asyncio.run(read_across_the_sweep())

    assert (status, length) == (200, size)
    assert body == png_like(size)
    assert expiring.http.get(path).status == 404


async def starlette_answer(path: Path, method: str, headers: dict[str, str]) -> Response:
    """What Starlette's own FileResponse answers for the file at `path`: the rules the held-open
    file keeps (it was what served a folder's files before)."""
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(3600)  # the client never goes away
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"spec_version": "2.4"},
        "method": method,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await FileResponse(path, media_type="image/png")(scope, receive, send)
    start = sent[0]
    answered = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"" if method == "HEAD" else b"".join(m.get("body", b"") for m in sent[1:])  # the server drops it
    return Response(start["status"], answered, body)


#: Range headers that are not a byte range set: an unknown unit, none, numbers that are not, an inverted
#: range. Starlette answers 400 in text/plain; litejobs ignores them, as RFC 9110 §14.2 says
NOT_A_RANGE_SET = {"items=0-9", "bytes", "bytes=x-y", "bytes=9-3"}


def test_a_file_on_disk_answers_each_range_as_starlettes_file_response(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path, kinds=KIND)) as server:
        [path] = file_paths(server, [SIZE_FOR_RANGES])
        _, _, _, job_id, name = path.split("/")
        on_disk = tmp_path / "litejobs.db.files" / job_id / name
        whole = server.http.get(path)
        for method, asked in [(m, r) for m in ("GET", "HEAD") for r in [None, *RANGES]]:
            headers = {} if asked is None else {"Range": asked}
            ours = server.http.request(method, path, headers=headers)
            if asked in NOT_A_RANGE_SET:  # RFC 9110 §14.2: ignored, the whole file (Starlette: 400 text/plain)
                assert ours.status == 200 and ours.headers["content-length"] == str(SIZE_FOR_RANGES), asked
                assert ours.body == (whole.body if method == "GET" else b""), (method, asked)
                continue
            theirs = asyncio.run(starlette_answer(on_disk, method, headers))
            assert seen(ours) == seen(theirs), (method, asked)
            for header in ("content-length", "etag", "last-modified", "accept-ranges"):
                assert ours.headers.get(header) == theirs.headers.get(header), (method, asked, header)
        etag = server.http.get(path).headers["etag"]
        rest = server.http.get(path, headers={"Range": f"bytes={SIZE_FOR_RANGES - 10}-", "If-Range": etag})
        assert rest.status == 206 and rest.body == png_like(SIZE_FOR_RANGES)[-10:]
