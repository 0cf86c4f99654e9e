"""A stored file is served so that a browser never runs it as a page of the API's origin (where the
dashboard keeps its key): nosniff, a sandboxing CSP, and a download for the types a browser would run.
Both places a file lives: a folder (SQLite, streamed from its open descriptor) and the database (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litejobs.kinds import KindContext
from litejobs.plugins import job_kind
from tests.support import ServerThread, make_config

KIND = {"save": "tests.test_file_headers:save"}
HOSTILE_HTML = b"<script>fetch('/v1/jobs', {headers: {Authorization: localStorage.key}})</script>"
#: name, type, inline?, sandboxed?
FILES = [
    ("page.html", "text/html; charset=utf-8", False, True),
    ("image.svg", "image/svg+xml", False, True),
    ("data.xml", "application/xml", False, True),
    ("code.js", "text/javascript", False, True),
    ("blob.bin", "application/octet-stream", False, True),
    ("shot.png", "image/png", True, True),
    ("notes.txt", "text/plain", True, True),
    ("print.pdf", "application/pdf", True, False),
]


@job_kind({"name": {"type": "string"}, "type": {"type": "string"}})
async def save(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Save HOSTILE_HTML under `name` with the content type `type`, as a plugin may."""
    return {"file": await ctx.save_file(input["name"], HOSTILE_HTML, input["type"])}


@pytest.fixture(params=["folder", "database"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    store = {"url": request.getfixturevalue("pg_url")} if request.param == "database" else {}
    with ServerThread(make_config(tmp_path, kinds=KIND, store=store)) as running:
        yield running


def test_stored_files_are_never_run_on_the_api_origin(server: ServerThread) -> None:
    for name, content_type, inline, sandboxed in FILES:
        job = server.http.submit({"name": name, "type": content_type}, kind="save")
        assert server.http.wait(job["job_id"])["status"] == "completed"
        path = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["file"]
        for headers in ({}, {"Range": "bytes=0-9"}):
            resp = server.http.get(path, headers=headers)
            assert resp.status in (200, 206) and resp.body == HOSTILE_HTML[: len(resp.body)], name
            assert resp.headers["x-content-type-options"] == "nosniff", name
            csp = resp.headers.get("content-security-policy", "")
            assert ("sandbox" in csp and "default-src 'none'" in csp) == sandboxed, (name, csp)
            disposition = resp.headers.get("content-disposition")
            assert disposition == (None if inline else f'attachment; filename="{name}"'), name
