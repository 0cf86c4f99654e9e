"""Markdown keeps content nested deeper than its converter goes (about 1020 elements) as text."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import ServerThread, TargetSite


def outputs_of(server: ServerThread, url: str) -> dict[str, Any]:
    job = server.http.submit({"url": url, "output": ["markdown", "text"]})
    assert server.http.wait(job["job_id"], 60)["status"] == "completed"
    return server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("depth", [1021, 1022, 5000])
def test_deeply_nested_content_is_in_the_markdown(server: ServerThread, site: TargetSite, depth: int) -> None:
    nested = "<div><p>level</p>" * depth + "<p>deep <b>text</b></p>" + "</div>" * depth
    url = site.add_html("/deep", f"<html><body><h1>Before</h1>{nested}<p>After</p></body></html>")
    outputs = outputs_of(server, url)
    markdown = outputs["markdown"]
    assert markdown.startswith("# Before\n") and markdown.rstrip().endswith("After")
    assert "deep" in markdown and "text" in markdown and markdown.count("level") == depth
    assert outputs["text"].split("\n") == ["Before", *["level"] * depth, "deep text", "After"]


def test_an_ordinary_page_keeps_its_markdown_formatting(server: ServerThread, site: TargetSite) -> None:
    nested = "<div>" * 50 + '<p>deep <b>bold</b> <a href="/x">link</a></p>' + "</div>" * 50
    url = site.add_html("/shallow", f"<html><body><h1>Title</h1>{nested}</body></html>")
    markdown = outputs_of(server, url)["markdown"]
    assert markdown == f"# Title\n\ndeep **bold** [link]({site.url('/x')})\n"
