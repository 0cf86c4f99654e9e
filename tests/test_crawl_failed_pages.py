"""A crawl's failed page has the keys every page has (docs/crawl.md): `final_url` and `content_type` too."""

from __future__ import annotations

from tests.crawl_support import all_pages, crawl
from tests.support import ServerThread, TargetSite

START = '<html><head><title>start</title></head><body><a href="/down">down</a> <a href="/ok">ok</a></body></html>'


def test_a_failed_page_has_final_url_and_content_type_as_a_stored_one_does(
    server: ServerThread, site: TargetSite
) -> None:
    site.add_html("/start", START)
    site.add_html("/ok", "<html><head><title>ok</title></head><body>fine</body></html>")
    site.add_html("/down", "broken", status=500)
    job = crawl(server.http, url=site.url("/start"), max_depth=1)
    pages = {page["url"]: page for page in all_pages(server.http, job["job_id"])}
    assert job["status"] == "partial"
    failed, stored = pages[site.url("/down")], pages[site.url("/ok")]
    assert failed["success"] is False and failed["error"]["code"] == "upstream_status"
    assert (failed["final_url"], failed["content_type"]) == (site.url("/down"), None)
    assert (stored["final_url"], stored["content_type"]) == (site.url("/ok"), "text/html")
    assert {"final_url", "content_type"} <= failed.keys() & stored.keys()
