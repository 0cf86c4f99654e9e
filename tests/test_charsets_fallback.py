"""A fetched page is decoded as Chromium decodes it: windows-1252 for an undeclared non-UTF-8 body, a
<meta> charset found by the browser's prescan, WHATWG labels only (never UTF-7)."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from tests.support import ServerThread, TargetSite

LATIN = "café “smart” €5 naïve"
CYRILLIC_META = b"<meta charset='windows-1251'>"
#: one byte that reads "é" in windows-1252 and "й" in windows-1251: which charset was used shows
MARK = b"caf\xe9"
PAGES: dict[str, tuple[str, bytes]] = {
    "/undeclared": ("text/html", f"<html><body><p>{LATIN}</p></body></html>".encode("cp1252")),
    "/undeclared-text": ("text/plain", LATIN.encode("cp1252")),
    "/meta-late": (
        "text/html",
        b"<html><head><style>" + b"p{margin:0}" * 300 + b"</style>" + CYRILLIC_META + b"</head><body>" + MARK,
    ),
    "/meta-after-body-early": ("text/html", b"<html><body><p>x</p>" + CYRILLIC_META + MARK + b"</body></html>"),
    "/meta-after-body-late": ("text/html", b"<html><body><p>" + b"x" * 1500 + b"</p>" + CYRILLIC_META + MARK),
    "/meta-in-comment": ("text/html", b"<html><head><!-- " + CYRILLIC_META + b" --></head><body>" + MARK),
    "/meta-in-script": ("text/html", b'<head><script>s="' + CYRILLIC_META + b'"</script></head><body>' + MARK),
    "/content-without-http-equiv": (
        "text/html",
        b"<head><meta content='text/html; charset=windows-1251'></head><body>" + MARK + b"</body>",
    ),
    "/http-equiv": (
        "text/html",
        b"<head><meta http-equiv=Content-Type content='text/html; charset=windows-1251'></head><body>" + MARK,
    ),
    "/utf-7": (
        "text/html; charset=utf-7",
        b"<html><body><p>+ADw-script+AD4-alert(1)+ADw-/script+AD4-</p></body></html>",
    ),
    "/x-user-defined": ("text/html", b"<meta charset=x-user-defined><body>" + MARK),
}
EXPECTED = {
    "/undeclared": LATIN,
    "/undeclared-text": LATIN,
    "/meta-late": "cafй",
    "/meta-after-body-early": "x\ncafй",
    "/meta-after-body-late": "x" * 1500 + "\ncafé",
    "/meta-in-comment": "café",
    "/meta-in-script": "café",
    "/content-without-http-equiv": "café",
    "/http-equiv": "cafй",
    "/utf-7": "+ADw-script+AD4-alert(1)+ADw-/script+AD4-",
    "/x-user-defined": "café",
}


def serve_pages(site: TargetSite) -> None:
    for path, (content_type, body) in PAGES.items():

        async def handler(request: web.Request, body: bytes = body, content_type: str = content_type) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": content_type})

        site.add(path, handler)


def text_of(server: ServerThread, url: str, **input: object) -> str:
    job = server.http.submit({"url": url, "output": ["text"], **input})
    assert server.http.wait(job["job_id"], 60)["status"] == "completed"
    return server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["text"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", list(PAGES))
def test_a_fetched_page_is_decoded_as_the_browser_decodes_it(server: ServerThread, site: TargetSite, path: str) -> None:
    serve_pages(site)
    assert text_of(server, site.url(path)) == EXPECTED[path]


@pytest.mark.browser
@pytest.mark.parametrize("path", [path for path, (kind, _) in PAGES.items() if kind.startswith("text/html")])
def test_fetch_and_render_of_a_page_read_the_same_text(server: ServerThread, site: TargetSite, path: str) -> None:
    serve_pages(site)
    assert text_of(server, site.url(path)) == text_of(server, site.url(path), render_js=True)


class _Untyped(socketserver.BaseRequestHandler):
    """Answers any request with a windows-1252 page and no Content-Type at all."""

    def handle(self) -> None:
        self.request.recv(65536)
        body = f"<p>{LATIN}</p>".encode("cp1252")
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )


@pytest.fixture
def untyped_url() -> Iterator[str]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Untyped) as raw:
        thread = threading.Thread(target=raw.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{raw.server_address[1]}/page"
        raw.shutdown()
        thread.join(10)


def test_a_page_without_content_type_falls_back_to_windows_1252(server: ServerThread, untyped_url: str) -> None:
    assert text_of(server, untyped_url) == LATIN
