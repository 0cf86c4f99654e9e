"""A file kept in PostgreSQL answers `Range`, `If-Range`, `ETag` and `Last-Modified` as a file on disk
does (SQLite's folder): the same statuses, Content-Range and bytes for the same request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.file_kinds import png_like
from tests.support import Response, ServerThread, make_config

KIND = {"snapshot": "tests.file_kinds:snapshot"}
SIZE = 5000
#: what a client may send, good and bad: one range, open-ended, a suffix, several (overlapping or
#: not), past the end, inverted, another unit, not numbers, more ranges than are served
RANGES = [
    "bytes=0-9",
    "bytes=4990-",
    "bytes=-16",
    "bytes=0-0",
    "bytes=100-99999",
    "bytes=0-9,20-29",
    "bytes=0-9,5-14",
    "bytes=-5,0-3",
    f"bytes={SIZE}-",
    "bytes=9-3",
    "items=0-9",
    "bytes=x-y",
    "bytes",
    "bytes=" + ",".join(f"{n}-{n}" for n in range(0, 202, 2)),
]


def served(server: ServerThread) -> str:
    """The URL path of a file of SIZE bytes one job of `server` saved."""
    job = server.http.submit({"size": SIZE}, kind="snapshot")
    assert server.http.wait(job["job_id"])["status"] == "completed"
    path = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["file"]
    return str(path)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[ServerThread, str]]:
    """SQLite: the file in a folder, streamed from its open descriptor (answers as Starlette's FileResponse would)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    with ServerThread(make_config(folder, kinds=KIND)) as server:
        yield server, served(server)


@pytest.fixture
def database(tmp_path: Path, pg_url: str) -> Iterator[tuple[ServerThread, str]]:
    """PostgreSQL without files_dir: the file's bytes in the database."""
    folder = tmp_path / "database"
    folder.mkdir()
    with ServerThread(make_config(folder, store={"url": pg_url}, kinds=KIND)) as server:
        yield server, served(server)


def seen(resp: Response) -> tuple[int, str | None, str | None, bytes]:
    """What a client sees of an answer: status, Content-Range, Content-Type and body, with a
    multipart answer's random boundary taken out."""
    content_type = resp.headers.get("content-type")
    body = resp.body
    found = re.search(r"boundary=(\w+)", content_type or "")
    if found:
        content_type = content_type.replace(found.group(1), "B") if content_type else None
        body = body.replace(found.group(1).encode(), b"B")
    return resp.status, resp.headers.get("content-range"), content_type, body


def test_a_file_in_the_database_answers_each_range_as_a_file_on_disk_does(
    disk: tuple[ServerThread, str], database: tuple[ServerThread, str]
) -> None:
    (on_disk, disk_path), (in_db, db_path) = disk, database
    whole = in_db.http.get(db_path)
    assert whole.status == 200 and whole.body == png_like(SIZE) and whole.headers["accept-ranges"] == "bytes"

    for asked in RANGES:
        expected = on_disk.http.get(disk_path, headers={"Range": asked})
        got = in_db.http.get(db_path, headers={"Range": asked})
        assert seen(got) == seen(expected), asked
        head_disk = on_disk.http.request("HEAD", disk_path, headers={"Range": asked})
        head_db = in_db.http.request("HEAD", db_path, headers={"Range": asked})
        assert head_db.body == b"" and head_db.status == head_disk.status == expected.status, asked
        assert head_db.headers.get("content-length") == head_disk.headers.get("content-length"), asked

    ten = in_db.http.get(db_path, headers={"Range": "bytes=0-9"})
    assert ten.status == 206 and ten.headers["content-range"] == f"bytes 0-9/{SIZE}" and ten.body == png_like(SIZE)[:10]


def test_a_file_in_the_database_has_an_etag_and_last_modified_that_if_range_checks(
    database: tuple[ServerThread, str],
) -> None:
    server, path = database
    first = server.http.get(path)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert re.fullmatch(r'"[0-9a-f]+"', etag) and modified.endswith(" GMT")
    assert server.http.get(path).headers["etag"] == etag  # the same bytes, the same tag

    # a resumed download: the rest, if the file is still the one the client has; else all of it
    for validator in (etag, modified):
        rest = server.http.get(path, headers={"Range": "bytes=4000-", "If-Range": validator})
        assert rest.status == 206 and rest.body == png_like(SIZE)[4000:], validator
    changed = server.http.get(path, headers={"Range": "bytes=4000-", "If-Range": '"another"'})
    assert changed.status == 200 and changed.body == png_like(SIZE)

    # other bytes: another tag
    bigger = server.http.submit({"size": SIZE + 1}, kind="snapshot")
    assert server.http.wait(bigger["job_id"])["status"] == "completed"
    bigger_path = server.http.get(f"/v1/jobs/{bigger['job_id']}/result").json["outputs"]["file"]
    assert server.http.get(bigger_path).headers["etag"] != etag
