"""The `links` output writes each URL's host as a browser and a crawl do: one URL, one spelling."""

from __future__ import annotations

from litejobs.urls import normalize_url
from tests.support import ServerThread, TargetSite


def links_of(server: ServerThread, url: str) -> list[str]:
    job = server.http.submit({"url": url, "output": ["links"]})
    assert server.http.wait(job["job_id"])["status"] == "completed"
    return server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["links"]  # type: ignore[no-any-return]


def test_links_lower_case_the_host_and_write_an_idn_host_in_punycode(server: ServerThread, site: TargetSite) -> None:
    port = site.port
    hrefs = [
        f"HTTP://LOCALHOST:{port}/Upper",
        f"http://localhost:{port}/Upper",
        "https://BÜCHER.Example/Straße?Q=1",
        "http://Example.COM:80",
        "HTTPS://example.com:443/a",
    ]
    anchors = "".join(f'<a href="{href}">{index}</a>' for index, href in enumerate(hrefs))
    url = site.add_html("/links", f"<html><body>{anchors}</body></html>")
    assert links_of(server, url) == [
        f"http://localhost:{port}/Upper",
        "https://xn--bcher-kva.example/Stra%C3%9Fe?Q=1",
        "http://example.com/",
        "https://example.com/a",
    ]


def test_a_links_host_and_port_are_written_as_a_crawl_writes_them(server: ServerThread, site: TargetSite) -> None:
    hrefs = ["HTTP://WWW.Example.ORG/Path/", "http://Ünïcode.example:8080/x", "https://example.net?b=2&a=1"]
    anchors = "".join(f'<a href="{href}">x</a>' for href in hrefs)
    url = site.add_html("/crawlish", f"<html><body>{anchors}</body></html>")
    links = links_of(server, url)
    assert links == [normalize_url(href) for href in hrefs]
