"""A rendered non-HTML page (JSON, text, XML, a PDF) gives its own body, as a fetch of it does, not the
viewer Chromium shows it in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.crawl_support import all_pages, crawl
from tests.support import ServerThread, TargetSite, make_config

pytestmark = pytest.mark.browser

JSON = b'{"a": "<b>caf\xc3\xa9</b>", "n": [1, 2]}'
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
    b"3 0 obj<</Type/Page/MediaBox[0 0 200 200]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
BODIES = {
    "/data.json": (JSON, "application/json"),
    "/plain": (b"plain <b>text</b>\nline two", "text/plain"),
    "/latin": (b"caf\xe9 \x93smart\x94", "text/plain; charset=windows-1252"),
    "/feed.xml": (b"<?xml version='1.0'?><feed><title>Feed</title><entry>one</entry></feed>", "application/xml"),
    "/doc.pdf": (PDF, "application/pdf"),
}
OUTPUTS = ["html", "markdown", "text"]


def serve_bodies(site: TargetSite) -> None:
    for path, (body, content_type) in BODIES.items():

        async def handler(request: web.Request, body: bytes = body, content_type: str = content_type) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": content_type})

        site.add(path, handler)


def outputs_of(server: ServerThread, input: dict[str, Any]) -> dict[str, Any]:
    job = server.http.submit(input)
    assert server.http.wait(job["job_id"], 60)["status"] == "completed"
    return server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", list(BODIES))
def test_a_rendered_non_html_page_gives_the_body_a_fetch_gives(
    server: ServerThread, site: TargetSite, path: str
) -> None:
    serve_bodies(site)
    fetched = outputs_of(server, {"url": site.url(path), "output": OUTPUTS})
    rendered = outputs_of(server, {"url": site.url(path), "render_js": True, "output": OUTPUTS})
    assert rendered == fetched
    assert "<pre" not in rendered["html"] and "json-formatter" not in rendered["html"]


def test_a_rendered_json_page_is_its_json_unescaped(server: ServerThread, site: TargetSite) -> None:
    serve_bodies(site)
    outputs = outputs_of(server, {"url": site.url("/data.json"), "render_js": True, "output": OUTPUTS})
    assert outputs["markdown"] == outputs["text"] == outputs["html"] == JSON.decode()
    assert outputs["content_type"] == "application/json"


def test_a_rendered_text_page_is_decoded_with_its_charset(server: ServerThread, site: TargetSite) -> None:
    serve_bodies(site)
    outputs = outputs_of(server, {"url": site.url("/latin"), "render_js": True, "output": ["text"]})
    assert outputs["text"] == "café “smart”"


def test_a_rendered_pdf_is_the_document_not_the_viewer(server: ServerThread, site: TargetSite) -> None:
    serve_bodies(site)
    outputs = outputs_of(server, {"url": site.url("/doc.pdf"), "render_js": True, "output": ["text"]})
    assert outputs["text"] == PDF.decode() and outputs["content_type"] == "application/pdf"


def test_a_rendered_pdf_over_max_body_bytes_fails_as_a_fetched_one_does(tmp_path: Path, site: TargetSite) -> None:
    big = PDF + b"%" + b"x" * 4000 + b"\n"
    site.add("/big.pdf", lambda request: _answer(big, "application/pdf"))
    with ServerThread(make_config(tmp_path, fetch={"max_body_bytes": 2000})) as server:
        job = server.http.submit({"url": site.url("/big.pdf"), "render_js": True, "output": ["text"]}, max_attempts=1)
        done = server.http.wait(job["job_id"], 60)
    assert done["status"] == "failed" and done["error"]["code"] == "body_too_large"


async def _answer(body: bytes, content_type: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": content_type})


def test_a_rendered_crawl_stores_json_and_text_pages_as_their_bodies(server: ServerThread, site: TargetSite) -> None:
    serve_bodies(site)
    links = '<a href="/data.json">json</a> <a href="/plain">plain</a>'
    site.add_html("/rj", f"<html><head><title>start</title></head><body>{links}</body></html>")
    job = crawl(server.http, url=site.url("/rj"), max_depth=1, render_js=True, output=["text"])
    assert job["status"] == "completed"
    texts = {page["url"].rsplit("/", 1)[1]: page["text"] for page in all_pages(server.http, job["job_id"])}
    assert texts == {"rj": "json plain", "data.json": JSON.decode(), "plain": "plain <b>text</b>\nline two"}
