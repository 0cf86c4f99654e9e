"""The map kind against the real server, and the sitemap reader it builds on."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from litejobs.sitemaps import decompressed, parse_sitemap
from tests.crawlsite import CrawlSite, path_of
from tests.support import Http, ServerThread, TargetSite


@pytest.fixture
def crawlsite(site: TargetSite) -> CrawlSite:
    return CrawlSite(site)


def map_site(http: Http, **input: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    job = http.wait(http.submit(input, kind="map")["job_id"])
    result = http.get(f"/v1/jobs/{job['job_id']}/result")
    return job, result.json if result.status == 200 else {}


def start_page_then_sitemaps(site: CrawlSite) -> list[str]:
    """What a map of the whole site lists: the start URL, its page's links, then the sitemaps' URLs."""
    paths = ["/", *site.links("/"), *(path_of(i) for i in range(site.pages))]
    return [site.url(p) for p in dict.fromkeys(paths)]


def test_a_map_lists_the_start_page_links_then_every_sitemap_url_once(
    server: ServerThread, crawlsite: CrawlSite
) -> None:
    job, result = map_site(server.http, url=crawlsite.url("/"))
    assert job["status"] == "completed"
    assert result["outputs"]["urls"] == start_page_then_sitemaps(crawlsite)
    assert result["stats"]["sitemaps_read"] == 3  # the index, its plain child and its gzipped child
    fetched = ["/", "/robots.txt", "/sitemap_index.xml", "/sitemaps/main.xml", "/sitemaps/extra.xml.gz"]
    assert {path: crawlsite.hits[path] for path in fetched} == dict.fromkeys(fetched, 1)
    assert crawlsite.hits["/sitemap.xml"] == 1  # tried too, and absent
    assert not any(path.startswith("/p/") for path in crawlsite.hits)  # no page content is fetched


def test_max_urls_keeps_the_first_urls(server: ServerThread, crawlsite: CrawlSite) -> None:
    _, result = map_site(server.http, url=crawlsite.url("/"), max_urls=20)
    assert result["outputs"]["urls"] == start_page_then_sitemaps(crawlsite)[:20]
    assert result["stats"]["from_page"] == 13 and result["stats"]["from_sitemaps"] == 6


def test_include_and_exclude_filter_the_urls(server: ServerThread, crawlsite: CrawlSite) -> None:
    _, result = map_site(server.http, url=crawlsite.url("/"), include=["/p/1*"], exclude=["/p/1?"])
    wanted = {crawlsite.url(f"/p/{n}") for n in [1, *range(100, 200)]}
    assert result["outputs"]["urls"] == [u for u in start_page_then_sitemaps(crawlsite) if u in wanted]


def test_without_sitemaps_a_map_lists_the_start_page_links(server: ServerThread, crawlsite: CrawlSite) -> None:
    _, result = map_site(server.http, url=crawlsite.url("/"), use_sitemap=False)
    assert result["outputs"]["urls"] == [crawlsite.url(p) for p in ["/", *crawlsite.links("/")]]
    assert crawlsite.hits["/sitemap_index.xml"] == 0 and crawlsite.hits["/sitemap.xml"] == 0


def test_sitemap_xml_is_found_without_robots_txt(server: ServerThread, site: TargetSite) -> None:
    site.add_html("/", "<a href='/about'>about</a><a href='mailto:x@y.z'>mail</a>")
    site.add_html("/sitemap.xml", f"{site.url('/a')}\n{site.url('/b')}\nnot a url\n{site.url('/a')}\n")
    job, result = map_site(server.http, url=site.url("/"), same_domain=True)
    assert job["status"] == "completed"
    assert result["outputs"]["urls"] == [site.url(p) for p in ("/", "/about", "/a", "/b")]
    assert site.hits["/robots.txt"] == 1


def test_a_map_fails_only_when_nothing_at_all_answers(server: ServerThread, site: TargetSite) -> None:
    site.add_html("/down", "boom", status=500)
    failed, _ = map_site(server.http, url=site.url("/down"))
    assert failed["status"] == "failed" and "500" in failed["error"]["message"]
    site.add_html("/sitemap.xml", f"<urlset><url><loc>{site.url('/listed')}</loc></url></urlset>")
    job, result = map_site(server.http, url=site.url("/down"), max_urls=5)
    assert job["status"] == "completed" and result["outputs"]["urls"] == [site.url("/down"), site.url("/listed")]


def test_a_start_page_that_fails_fails_the_map_with_a_fetch_jobs_code(server: ServerThread, site: TargetSite) -> None:
    site.add_html("/down", "busy", status=503)
    jobs = [
        server.http.submit({"url": site.url(path), "use_sitemap": False}, kind="map", max_attempts=2)["job_id"]
        for path in ("/down", "/missing")
    ]
    down, missing = (server.http.wait(job_id) for job_id in jobs)
    assert (down["status"], down["error"]["code"], down["attempts"]) == ("failed", "upstream_status", 2)
    assert (missing["status"], missing["error"]["code"], missing["attempts"]) == ("failed", "upstream_status", 1)


def test_bad_map_input_is_a_422(server: ServerThread) -> None:
    resp = server.http.post("/v1/jobs", {"kind": "map", "input": {"url": "ftp://x", "max_urls": 0, "nope": 1}})
    assert resp.status == 422
    fields = {d["field"] for d in resp.json["error"]["details"]}
    assert fields == {"input.url", "input.max_urls", "input.nope"}


# --- sitemaps ------------------------------------------------------------------------------------


def test_a_sitemap_index_lists_child_sitemaps_and_a_urlset_lists_pages() -> None:
    index = b"""<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <sitemap><loc> https://example.com/a.xml </loc><lastmod>2026-01-01</lastmod></sitemap>
      <sitemap><loc>https://example.com/b.xml.gz</loc></sitemap></sitemapindex>"""
    urlset = b"""<urlset xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
      <url><loc>https://example.com/?a=1&amp;b=2</loc><image:image><image:loc>https://example.com/i.png</image:loc>
      </image:image></url><url><loc><![CDATA[https://example.com/c]]></loc></url>
      <url><loc>javascript:alert(1)</loc></url><url><lastmod>no loc</lastmod></url></urlset>"""
    assert parse_sitemap(index).sitemaps == ["https://example.com/a.xml", "https://example.com/b.xml.gz"]
    pages = parse_sitemap(urlset)
    assert pages.urls == ["https://example.com/?a=1&b=2", "https://example.com/c"] and pages.sitemaps == []


def test_sitemaps_may_be_gzipped_prefixed_or_plain_text() -> None:
    xml = b"<sm:urlset xmlns:sm='http://www.sitemaps.org/schemas/sitemap/0.9'><sm:url><sm:loc>https://e.com/x</sm:loc></sm:url></sm:urlset>"
    assert parse_sitemap(gzip.compress(xml)).urls == ["https://e.com/x"]
    assert parse_sitemap(gzip.compress(gzip.compress(xml))).urls == ["https://e.com/x"]
    assert parse_sitemap(b"https://e.com/1\r\nhttps://e.com/2\n# comment\n").urls == [
        "https://e.com/1",
        "https://e.com/2",
    ]
    assert parse_sitemap(b"\x1f\x8bnot really gzip").urls == []


def test_a_sitemap_is_read_up_to_its_size_cap() -> None:
    body = "".join(f"<url><loc>https://e.com/{n}</loc></url>" for n in range(10_000)).encode()
    data, cut = decompressed(gzip.compress(body), 1000)
    assert cut and len(data) == 1000
    capped = parse_sitemap(gzip.compress(body), max_bytes=10_000)
    assert capped.truncated and capped.size == 10_000 and 0 < len(capped.urls) < 10_000
    assert capped.urls == [f"https://e.com/{n}" for n in range(len(capped.urls))]
    assert not parse_sitemap(body).truncated


def test_unclosed_or_hostile_xml_yields_what_is_well_formed() -> None:
    hostile = b"""<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>
      <urlset><url><loc>https://e.com/&b;</loc></url><url><loc>https://e.com/ok</loc></url><url><loc>https://e.com/open"""
    assert parse_sitemap(hostile).urls == ["https://e.com/&b;", "https://e.com/ok"]
