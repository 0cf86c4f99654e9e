"""multi_fetch converts its pages in a worker thread: the server keeps answering while a page converts."""

from __future__ import annotations

import threading

import pytest

from litejobs.extract import Document
from tests.support import ServerThread, TargetSite

#: how long a conversion waits to hear that the server answered meanwhile; on the event loop it never
#: hears, as the server cannot answer until the conversion returns
HELD_S = 10.0


def test_the_server_answers_while_a_multi_fetch_page_converts(
    server: ServerThread, site: TargetSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    converting, answered = threading.Event(), threading.Event()
    heard: list[bool] = []
    original = Document.markdown

    def held_markdown(self: Document) -> str:
        converting.set()
        heard.append(answered.wait(HELD_S))
        return original(self)

    monkeypatch.setattr(Document, "markdown", held_markdown)
    url = site.add_html("/page", "<html><head><title>Big</title></head><body><h1>Big</h1></body></html>")
    job = server.http.submit({"urls": [url]}, kind="multi_fetch")
    assert converting.wait(30)
    health = server.http.get("/healthz")
    answered.set()
    assert health.status == 200
    assert server.http.wait(job["job_id"], 60)["status"] == "completed"
    pages = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["pages"]
    assert pages[0]["markdown"].startswith("# Big") and pages[0]["title"] == "Big"
    assert heard == [True]  # /healthz was answered while the page was still converting
